//! How the core names peers: a generic peer type (a libp2p `PeerId` in the node, an index in
//! the simulator) and the contact record (peer, IP, port) carried in messages.

use std::fmt::Debug;
use std::hash::Hash;
use std::net::IpAddr;

use bincode::{Decode, Encode};

use crate::key::Key;

/// What the core needs of a peer identifier.
pub trait PeerRef: Clone + Eq + Ord + Hash + Debug + Encode + Decode<()> + 'static {
    /// The peer's position in the DHT key space.
    fn key(&self) -> Key;
}

/// Simulated peers are numbered; their keys only need to be spread evenly over the key space,
/// so a SplitMix64 expansion stands in for SHA-256 (the simulator computes millions of them).
impl PeerRef for u32 {
    fn key(&self) -> Key {
        let mut key = [0u8; 32];
        let mut state = u64::from(*self);
        for word in key.chunks_exact_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            word.copy_from_slice(&(z ^ (z >> 31)).to_be_bytes());
        }
        Key(key)
    }
}

/// A peer and where to reach it.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct Contact<P> {
    pub peer: P,
    pub ip: IpAddr,
    /// TCP port (0 when unknown or not dialable, e.g. behind NAT).
    pub port: u16,
}

impl<P: PeerRef> Contact<P> {
    pub fn new(peer: P, ip: IpAddr, port: u16) -> Self {
        Contact { peer, ip, port }
    }
}

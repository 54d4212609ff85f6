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
        // `Rng::new` folds its constant into the seed: undo it, so the stream starts at `self`.
        let mut rng = crate::rng::Rng::new(u64::from(*self) ^ 0x9E37_79B9_7F4A_7C15);
        let mut key = [0u8; 32];
        for word in key.chunks_exact_mut(8) {
            word.copy_from_slice(&rng.next_u64().to_be_bytes());
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

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

impl PeerRef for u32 {
    fn key(&self) -> Key {
        Key::for_peer_bytes(&self.to_le_bytes())
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

//! The protocol core's peer type in the real node: a libp2p `PeerId`, bincode-encoded as bytes.

use bincode::de::{BorrowDecoder, Decoder};
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{BorrowDecode, Decode, Encode};
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use nearcast_proto::key::Key;
use nearcast_proto::{Contact, PeerRef};

/// A libp2p peer id as the core sees it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NetPeer(pub PeerId);

impl PeerRef for NetPeer {
    fn key(&self) -> Key {
        Key::for_peer_bytes(&self.0.to_bytes())
    }
}

impl Encode for NetPeer {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.0.to_bytes().encode(encoder)
    }
}

/// Longest encoded peer id accepted (identity multihash of a large key).
const MAX_PEER_ID_BYTES: usize = 128;

impl<C> Decode<C> for NetPeer {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let bytes: Vec<u8> = Vec::decode(decoder)?;
        if bytes.len() > MAX_PEER_ID_BYTES {
            return Err(DecodeError::Other("peer id too long"));
        }
        PeerId::from_bytes(&bytes)
            .map(NetPeer)
            .map_err(|_| DecodeError::Other("malformed peer id"))
    }
}

impl<'de, C> BorrowDecode<'de, C> for NetPeer {
    fn borrow_decode<D: BorrowDecoder<'de, Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        let bytes: Vec<u8> = Vec::borrow_decode(decoder)?;
        if bytes.len() > MAX_PEER_ID_BYTES {
            return Err(DecodeError::Other("peer id too long"));
        }
        PeerId::from_bytes(&bytes)
            .map(NetPeer)
            .map_err(|_| DecodeError::Other("malformed peer id"))
    }
}

/// The TCP dial address of a contact.
pub fn contact_addr(c: &Contact<NetPeer>) -> Option<Multiaddr> {
    if c.port == 0 {
        return None;
    }
    let mut a = Multiaddr::empty();
    a.push(match c.ip {
        std::net::IpAddr::V4(ip) => Protocol::Ip4(ip),
        std::net::IpAddr::V6(ip) => Protocol::Ip6(ip),
    });
    a.push(Protocol::Tcp(c.port));
    Some(a)
}

/// IP, TCP port and peer id of a multiaddr such as `/ip4/1.2.3.4/tcp/4001/p2p/12D3…`.
pub fn parse_contact(addr: &Multiaddr) -> Option<(std::net::IpAddr, u16, Option<PeerId>)> {
    let mut ip = None;
    let mut port = None;
    let mut peer = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            Protocol::P2p(id) => peer = Some(id),
            _ => {}
        }
    }
    Some((ip?, port.unwrap_or(0), peer))
}

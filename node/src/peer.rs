//! The protocol core's peer type in the real node: a libp2p `PeerId`, bincode-encoded as bytes;
//! and the contact (IP, port, peer id) in a multiaddr, with DNS names resolved at start.

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

/// How long resolving one DNS name may take at start.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `addrs` with each `/dns`, `/dns4` or `/dns6` name resolved to an address of its family
/// (`/ip4` or `/ip6`; `/dns` prefers IPv4): the core ranks peers and seeders by their IP
/// address. An address whose name does not resolve is left out with a warning, unless none
/// resolves: then it is an error naming the first (the daemon would have no seeder at all).
pub async fn resolve_names(addrs: &[Multiaddr]) -> anyhow::Result<Vec<Multiaddr>> {
    let mut out = Vec::with_capacity(addrs.len());
    let mut first_error = None;
    for addr in addrs {
        match resolve_one(addr).await {
            Ok(a) => out.push(a),
            Err(e) => {
                tracing::warn!(error = %e, "bootstrap address left out");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if out.is_empty() => Err(e),
        _ => Ok(out),
    }
}

async fn resolve_one(addr: &Multiaddr) -> anyhow::Result<Multiaddr> {
    let port = addr
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) | Protocol::Udp(port) => Some(port),
            _ => None,
        })
        .unwrap_or(0);
    let mut resolved = Multiaddr::empty();
    for p in addr.iter() {
        let (name, want_v4, want_v6) = match &p {
            Protocol::Dns(n) => (n.to_string(), true, true),
            Protocol::Dns4(n) => (n.to_string(), true, false),
            Protocol::Dns6(n) => (n.to_string(), false, true),
            _ => {
                resolved.push(p);
                continue;
            }
        };
        let found = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            tokio::net::lookup_host((name.as_str(), port)),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {}s", RESOLVE_TIMEOUT.as_secs()))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .and_then(|it| {
            let found: Vec<std::net::SocketAddr> = it.collect();
            let v4 = found.iter().find(|a| a.is_ipv4() && want_v4);
            let v6 = found.iter().find(|a| a.is_ipv6() && want_v6);
            v4.or(v6)
                .copied()
                .ok_or_else(|| anyhow::anyhow!("no address of that family"))
        })
        .map_err(|e| anyhow::anyhow!("cannot resolve {name} in {addr}: {e}"))?;
        resolved.push(match found.ip() {
            std::net::IpAddr::V4(a) => Protocol::Ip4(a),
            std::net::IpAddr::V6(a) => Protocol::Ip6(a),
        });
    }
    Ok(resolved)
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

#[cfg(test)]
mod resolve_tests {
    use super::*;

    #[tokio::test]
    async fn dns_names_in_addresses_are_resolved() {
        let id = PeerId::random();
        let named: Multiaddr = format!("/dns4/localhost/tcp/4000/p2p/{id}")
            .parse()
            .expect("multiaddr");
        let plain: Multiaddr = format!("/ip4/127.1.0.1/tcp/4001/p2p/{id}")
            .parse()
            .expect("multiaddr");
        let out = resolve_names(&[named, plain.clone()])
            .await
            .expect("resolve");
        assert_eq!(
            out[0],
            format!("/ip4/127.0.0.1/tcp/4000/p2p/{id}")
                .parse::<Multiaddr>()
                .expect("multiaddr")
        );
        assert_eq!(out[1], plain);
        // (An unresolvable name is not tried: it would send a query to the DNS server.)
    }
}

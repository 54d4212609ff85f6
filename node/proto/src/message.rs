//! Wire messages between nodes (control plane) and their size limits.
//!
//! Control messages are request/response pairs encoded with bincode 2 under a hard byte limit;
//! every list a peer sends is bounded again after decoding. Chunks travel separately (see
//! [`ChunkRequest`]). The protocol version is part of the transport's protocol name.

use bincode::{Decode, Encode};

use crate::content::{MAX_MANIFEST_BYTES, ObjectId};
use crate::key::Key;
use crate::peer::{Contact, PeerRef};

/// Protocol name of the control protocol (versioned).
pub const CONTROL_PROTOCOL: &str = "/nearcast/control/1";
/// Protocol name of the chunk stream protocol (versioned).
pub const CHUNK_PROTOCOL: &str = "/nearcast/chunk/1";
/// Largest encoded request accepted.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Largest encoded response accepted (a manifest of the largest object fits).
pub const MAX_RESPONSE_BYTES: usize = MAX_MANIFEST_BYTES + 4096;
/// Most contacts in one message.
pub const MAX_CONTACTS: usize = 32;
/// Most object ids in one `Have`.
pub const MAX_HAVE: usize = 4096;
/// Most chunks described in one chunk map.
pub const MAX_CHUNK_MAP_BITS: usize = 64 * 1024;

/// Role a node plays in the overlay.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Encode, Decode)]
pub enum Role {
    Seeder,
    Supernode,
    Leaf,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Seeder => "seeder",
            Role::Supernode => "supernode",
            Role::Leaf => "leaf",
        }
    }

    /// Seeders and supernodes are DHT servers and accept children.
    pub fn is_server(self) -> bool {
        self != Role::Leaf
    }
}

/// A holder of an object as reported by a supernode or seeder.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct Holder<P> {
    pub contact: Contact<P>,
    /// False while the holder is still fetching it (it has some chunks).
    pub complete: bool,
}

/// Control requests.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub enum Request<P> {
    /// Kademlia: the closest DHT servers to `target` you know.
    FindNode { target: Key },
    /// Kademlia: providers of `object`, or closer servers.
    GetProviders { object: ObjectId },
    /// Kademlia: `provider` holds `object` (sent only for hot objects).
    AddProvider {
        object: ObjectId,
        provider: Contact<P>,
    },
    /// A leaf (or supernode) asks to become a child; `me` is how to reach it.
    Attach { me: Contact<P>, role: Role },
    /// A child leaves.
    Detach,
    /// A child's holdings changed; also its heartbeat.
    Have {
        added: Vec<ObjectId>,
        removed: Vec<ObjectId>,
    },
    /// Who near me holds `object`? Also registers `me` as about to hold it.
    Locate { me: Contact<P>, object: ObjectId },
    /// The encoded manifest of `object`.
    GetManifest { object: ObjectId },
    /// Which chunks of `object` do you hold? (`me` is fetching it too.)
    GetChunkMap { me: Contact<P>, object: ObjectId },
    /// A supernode tells a seeder it serves (so seeders can point leaves to it).
    RegisterSupernode { me: Contact<P> },
    /// Which proximity map do you publish? (Answered with [`Response::AsMap`]; only answers
    /// from configured seeders are followed.)
    GetAsMap,
    /// A peer tells a seeder which of the seeder's objects it holds, once per session, so that
    /// the seeder's index of last resort covers copies kept from earlier sessions.
    Holding {
        me: Contact<P>,
        objects: Vec<ObjectId>,
    },
}

/// A published proximity map: the object holding it and its build time (seconds since the
/// Unix epoch), which orders maps: a node never replaces a map with one not built later.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Encode, Decode)]
pub struct AsMapRef {
    pub object: ObjectId,
    pub built: u64,
}

/// Control responses.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub enum Response<P> {
    Ack,
    Nodes {
        closer: Vec<Contact<P>>,
    },
    Providers {
        providers: Vec<Contact<P>>,
        closer: Vec<Contact<P>>,
    },
    /// Attach accepted; `supernodes` lists other supernodes near the child.
    Attached {
        supernodes: Vec<Contact<P>>,
    },
    /// Overloaded or full: try these instead (brownout, not disconnect).
    Busy {
        alternatives: Vec<Contact<P>>,
    },
    /// The receiver does not know the sender as a child (it must attach again).
    NotAttached,
    Located {
        holders: Vec<Holder<P>>,
    },
    Manifest {
        bytes: Vec<u8>,
    },
    /// Bit i set when chunk i is held; `complete` when all are. `peers`: other holders of
    /// the object the responder knows (peer exchange: a swarm finds all its members).
    ChunkMap {
        complete: bool,
        bits: Vec<u8>,
        peers: Vec<Holder<P>>,
    },
    NotFound,
    /// The proximity map the responder publishes or uses, if any.
    AsMap {
        current: Option<AsMapRef>,
    },
    /// The request made no sense (for example a role it does not have).
    Refused {
        reason: String,
    },
}

/// A request for one chunk, sent on its own stream.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct ChunkRequest {
    pub object: ObjectId,
    pub index: u32,
}

/// Status preceding a chunk's bytes on the stream.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode)]
pub enum ChunkStatus {
    /// `len` bytes follow.
    Data {
        len: u32,
    },
    NotHeld,
    Busy,
}

/// A message that decoded but breaks a limit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("message could not be decoded: {0}")]
    Decode(String),
    #[error("message has {0} trailing bytes")]
    Trailing(usize),
    #[error("message lists too many entries ({0})")]
    TooMany(usize),
}

fn check_len(n: usize, max: usize) -> Result<(), MessageError> {
    if n > max {
        Err(MessageError::TooMany(n))
    } else {
        Ok(())
    }
}

macro_rules! codec {
    ($encode:ident, $decode:ident, $ty:ident, $limit:expr) => {
        /// Encodes under the protocol's size limit.
        pub fn $encode<P: PeerRef>(msg: &$ty<P>) -> Vec<u8> {
            bincode::encode_to_vec(msg, bincode::config::standard().with_limit::<{ $limit }>())
                .unwrap_or_default()
        }

        /// Decodes, refusing anything over the limit, trailing bytes or oversized lists.
        pub fn $decode<P: PeerRef>(bytes: &[u8]) -> Result<$ty<P>, MessageError> {
            if bytes.len() > $limit {
                return Err(MessageError::TooMany(bytes.len()));
            }
            let (msg, used): ($ty<P>, usize) = bincode::decode_from_slice(
                bytes,
                bincode::config::standard().with_limit::<{ $limit }>(),
            )
            .map_err(|e| MessageError::Decode(e.to_string()))?;
            if used != bytes.len() {
                return Err(MessageError::Trailing(bytes.len() - used));
            }
            msg.check_limits()?;
            Ok(msg)
        }
    };
}

codec!(encode_request, decode_request, Request, MAX_REQUEST_BYTES);
codec!(
    encode_response,
    decode_response,
    Response,
    MAX_RESPONSE_BYTES
);

impl<P> Request<P> {
    fn check_limits(&self) -> Result<(), MessageError> {
        match self {
            Request::Have { added, removed } => check_len(added.len() + removed.len(), MAX_HAVE),
            Request::Holding { objects, .. } => check_len(objects.len(), MAX_HAVE),
            _ => Ok(()),
        }
    }
}

impl<P> Response<P> {
    fn check_limits(&self) -> Result<(), MessageError> {
        match self {
            Response::Nodes { closer } => check_len(closer.len(), MAX_CONTACTS),
            Response::Providers { providers, closer } => {
                check_len(providers.len(), MAX_CONTACTS)?;
                check_len(closer.len(), MAX_CONTACTS)
            }
            Response::Attached { supernodes } => check_len(supernodes.len(), MAX_CONTACTS),
            Response::Busy { alternatives } => check_len(alternatives.len(), MAX_CONTACTS),
            Response::Located { holders } => check_len(holders.len(), MAX_CONTACTS),
            Response::ChunkMap { bits, peers, .. } => {
                check_len(bits.len() * 8, MAX_CHUNK_MAP_BITS)?;
                check_len(peers.len(), MAX_CONTACTS)
            }
            _ => Ok(()),
        }
    }
}

/// Encodes a chunk request (small, fixed limit).
pub fn encode_chunk_request(req: &ChunkRequest) -> Vec<u8> {
    bincode::encode_to_vec(req, bincode::config::standard().with_limit::<128>()).unwrap_or_default()
}

/// Decodes a chunk request.
pub fn decode_chunk_request(bytes: &[u8]) -> Result<ChunkRequest, MessageError> {
    let (req, _): (ChunkRequest, usize) =
        bincode::decode_from_slice(bytes, bincode::config::standard().with_limit::<128>())
            .map_err(|e| MessageError::Decode(e.to_string()))?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn round_trip_and_limits() {
        let c = Contact::new(7u32, IpAddr::V4(Ipv4Addr::new(127, 1, 0, 2)), 4001);
        let req = Request::Locate {
            me: c.clone(),
            object: ObjectId([3; 32]),
        };
        let bytes = encode_request(&req);
        assert_eq!(decode_request::<u32>(&bytes), Ok(req));

        let resp: Response<u32> = Response::Located {
            holders: vec![
                Holder {
                    contact: c.clone(),
                    complete: true
                };
                MAX_CONTACTS + 1
            ],
        };
        let bytes = encode_response(&resp);
        assert!(matches!(
            decode_response::<u32>(&bytes),
            Err(MessageError::TooMany(_))
        ));
    }

    #[test]
    fn hostile_bytes_are_refused_cheaply() {
        // A length prefix claiming 2^60 entries must not allocate.
        let mut bytes = vec![5u8]; // Have variant
        bytes.push(0xFF);
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_request::<u32>(&bytes).is_err());
        assert!(decode_request::<u32>(&[200, 1, 2]).is_err());
        assert!(decode_response::<u32>(&[]).is_err());
        let big = vec![0u8; MAX_REQUEST_BYTES + 1];
        assert!(decode_request::<u32>(&big).is_err());
    }
}

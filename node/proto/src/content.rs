//! Content model: object ids, manifests, chunking and verification.
//!
//! An object is described by a [`Manifest`] (size, media type, chunk size and the SHA-256 of
//! each chunk, or the bytes themselves for small objects). The object's id is the SHA-256 of the
//! manifest's canonical encoding, so a manifest is self-certifying and every chunk can be checked
//! against it before it is stored, served or shown.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

/// Size of every chunk but the last one.
pub const CHUNK_SIZE: u32 = 256 * 1024;
/// Objects up to this size are carried inside their manifest.
pub const INLINE_MAX: u64 = 4 * 1024;
/// Largest object the protocol handles (the manifest of a larger one would exceed the limits).
pub const MAX_OBJECT_SIZE: u64 = 8 * 1024 * 1024 * 1024;
/// Longest media type accepted.
pub const MAX_MEDIA_TYPE: usize = 128;
/// Largest encoded manifest accepted from anyone.
pub const MAX_MANIFEST_BYTES: usize = 1024 + 32 * (MAX_OBJECT_SIZE / CHUNK_SIZE as u64) as usize;

const MANIFEST_VERSION: u8 = 1;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// The id of an object: the SHA-256 of its manifest. Printed in base58.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct ObjectId(pub Hash);

/// The bytes' order, compared eight at a time: ids key the maps a node looks up most, and a
/// digest's first eight bytes almost always settle the comparison.
impl Ord for ObjectId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let words = |h: &Hash| {
            let mut w = [0u64; 4];
            for (w, b) in w.iter_mut().zip(h.chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                *w = u64::from_be_bytes(a);
            }
            w
        };
        words(&self.0).cmp(&words(&other.0))
    }
}

impl PartialOrd for ObjectId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl ObjectId {
    /// Raw digest bytes.
    pub fn as_bytes(&self) -> &Hash {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.to_string();
        write!(f, "ObjectId({})", &s[..s.len().min(10)])
    }
}

/// Why a text id could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdParseError {
    #[error("object id is not base58: {0}")]
    NotBase58(String),
    #[error("object id must decode to 32 bytes, got {0}")]
    WrongLength(usize),
}

impl FromStr for ObjectId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > 64 {
            return Err(IdParseError::WrongLength(s.len()));
        }
        let bytes = bs58::decode(s.trim())
            .into_vec()
            .map_err(|e| IdParseError::NotBase58(e.to_string()))?;
        let hash: Hash = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IdParseError::WrongLength(bytes.len()))?;
        Ok(ObjectId(hash))
    }
}

/// Where an object's bytes live.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Body {
    /// Small objects: the bytes themselves.
    Inline(Vec<u8>),
    /// Larger objects: the SHA-256 of each chunk, in order.
    Chunks(Vec<Hash>),
}

/// Describes an object; its SHA-256 is the object's id.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Manifest {
    pub version: u8,
    pub size: u64,
    pub media_type: String,
    pub chunk_size: u32,
    pub body: Body,
}

/// Content that does not match what its manifest or id promise.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentError {
    #[error("manifest does not hash to the requested id")]
    IdMismatch,
    #[error("malformed manifest: {0}")]
    Malformed(String),
    #[error("chunk {index} out of range (object has {count} chunks)")]
    NoSuchChunk { index: u32, count: u32 },
    #[error("chunk {index} has {got} bytes, expected {expected}")]
    WrongChunkLength {
        index: u32,
        got: usize,
        expected: usize,
    },
    #[error("chunk {index} fails its SHA-256 check")]
    BadChunkHash { index: u32 },
}

fn manifest_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MANIFEST_BYTES>()
}

impl Manifest {
    /// Canonical encoding: what the id is computed over and what goes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec only fails on a limit we keep below by construction.
        bincode::encode_to_vec(self, manifest_config()).unwrap_or_default()
    }

    /// The id of this manifest.
    pub fn id(&self) -> ObjectId {
        ObjectId(sha256(&self.encode()))
    }

    /// Decodes and checks a manifest received for `id`.
    pub fn decode_for(id: &ObjectId, bytes: &[u8]) -> Result<Manifest, ContentError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ContentError::Malformed("manifest too large".into()));
        }
        if sha256(bytes) != id.0 {
            return Err(ContentError::IdMismatch);
        }
        let (m, used): (Manifest, usize) = bincode::decode_from_slice(bytes, manifest_config())
            .map_err(|e| ContentError::Malformed(e.to_string()))?;
        if used != bytes.len() {
            return Err(ContentError::Malformed("trailing bytes".into()));
        }
        m.validate()?;
        Ok(m)
    }

    /// Checks internal consistency (sizes, counts, version).
    pub fn validate(&self) -> Result<(), ContentError> {
        let bad = |s: &str| Err(ContentError::Malformed(s.to_string()));
        if self.version != MANIFEST_VERSION {
            return bad("unknown manifest version");
        }
        if self.media_type.len() > MAX_MEDIA_TYPE {
            return bad("media type too long");
        }
        if self.size > MAX_OBJECT_SIZE {
            return bad("object too large");
        }
        if self.chunk_size == 0 || self.chunk_size > 4 * CHUNK_SIZE {
            return bad("bad chunk size");
        }
        match &self.body {
            Body::Inline(b) => {
                if b.len() as u64 != self.size || self.size > INLINE_MAX {
                    return bad("inline body does not match size");
                }
            }
            Body::Chunks(h) => {
                let expected = self.size.div_ceil(self.chunk_size as u64);
                if h.len() as u64 != expected || self.size == 0 {
                    return bad("chunk count does not match size");
                }
            }
        }
        Ok(())
    }

    /// Number of chunks (0 for inline objects).
    pub fn chunk_count(&self) -> u32 {
        match &self.body {
            Body::Inline(_) => 0,
            Body::Chunks(h) => h.len() as u32,
        }
    }

    /// Length in bytes of chunk `index`.
    pub fn chunk_len(&self, index: u32) -> usize {
        let start = index as u64 * self.chunk_size as u64;
        (self.size.saturating_sub(start)).min(self.chunk_size as u64) as usize
    }

    /// Byte offset of chunk `index` in the object.
    pub fn chunk_offset(&self, index: u32) -> u64 {
        index as u64 * self.chunk_size as u64
    }

    /// Verifies one chunk against this manifest.
    pub fn verify_chunk(&self, index: u32, data: &[u8]) -> Result<(), ContentError> {
        let Body::Chunks(hashes) = &self.body else {
            return Err(ContentError::NoSuchChunk { index, count: 0 });
        };
        let Some(expected_hash) = hashes.get(index as usize) else {
            return Err(ContentError::NoSuchChunk {
                index,
                count: hashes.len() as u32,
            });
        };
        let expected = self.chunk_len(index);
        if data.len() != expected {
            return Err(ContentError::WrongChunkLength {
                index,
                got: data.len(),
                expected,
            });
        }
        if &sha256(data) != expected_hash {
            return Err(ContentError::BadChunkHash { index });
        }
        Ok(())
    }
}

/// Builds a manifest from an object's bytes fed in order, hashing chunks as they complete.
pub struct ManifestBuilder {
    media_type: String,
    size: u64,
    hashes: Vec<Hash>,
    current: Sha256,
    current_len: u32,
    inline: Vec<u8>,
}

impl ManifestBuilder {
    pub fn new(media_type: &str) -> Self {
        let mut media_type = media_type.to_string();
        media_type.truncate(MAX_MEDIA_TYPE);
        ManifestBuilder {
            media_type,
            size: 0,
            hashes: Vec::new(),
            current: Sha256::new(),
            current_len: 0,
            inline: Vec::new(),
        }
    }

    /// Feeds the next bytes of the object.
    pub fn update(&mut self, mut data: &[u8]) {
        if self.size < INLINE_MAX {
            let take = data.len().min((INLINE_MAX + 1 - self.size) as usize);
            self.inline.extend_from_slice(&data[..take]);
        }
        self.size += data.len() as u64;
        while !data.is_empty() {
            let room = (CHUNK_SIZE - self.current_len) as usize;
            let take = room.min(data.len());
            self.current.update(&data[..take]);
            self.current_len += take as u32;
            data = &data[take..];
            if self.current_len == CHUNK_SIZE {
                let h = std::mem::take(&mut self.current).finalize().into();
                self.hashes.push(h);
                self.current_len = 0;
            }
        }
    }

    /// Completes the manifest.
    pub fn finish(mut self) -> Manifest {
        let body = if self.size <= INLINE_MAX {
            Body::Inline(self.inline)
        } else {
            if self.current_len > 0 {
                self.hashes.push(self.current.finalize().into());
            }
            Body::Chunks(self.hashes)
        };
        Manifest {
            version: MANIFEST_VERSION,
            size: self.size,
            media_type: self.media_type,
            chunk_size: CHUNK_SIZE,
            body,
        }
    }
}

/// Manifest of an in-memory object.
pub fn manifest_for(data: &[u8], media_type: &str) -> Manifest {
    let mut b = ManifestBuilder::new(media_type);
    b.update(data);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_as_their_bytes() {
        let ids: Vec<ObjectId> = (0u8..40)
            .map(|i| {
                let mut h = sha256(&[i]);
                // Ties in the first words, so that later words decide.
                h[..8 * (i as usize % 4)].fill(7);
                ObjectId(h)
            })
            .collect();
        for a in &ids {
            for b in &ids {
                assert_eq!(a.cmp(b), a.0.cmp(&b.0), "{a:?} against {b:?}");
            }
        }
    }

    #[test]
    fn small_objects_are_inline_and_round_trip() {
        let m = manifest_for(b"hello", "text/plain");
        assert_eq!(m.body, Body::Inline(b"hello".to_vec()));
        let id = m.id();
        let back = Manifest::decode_for(&id, &m.encode()).expect("decodes");
        assert_eq!(back, m);
        let text = id.to_string();
        assert_eq!(text.parse::<ObjectId>(), Ok(id));
    }

    #[test]
    fn large_objects_are_chunked_and_verified() {
        let data: Vec<u8> = (0..(CHUNK_SIZE as usize * 2 + 10))
            .map(|i| (i % 251) as u8)
            .collect();
        let m = manifest_for(&data, "application/octet-stream");
        assert_eq!(m.chunk_count(), 3);
        assert_eq!(m.chunk_len(2), 10);
        let c0 = &data[..CHUNK_SIZE as usize];
        assert!(m.verify_chunk(0, c0).is_ok());
        let mut bad = c0.to_vec();
        bad[7] ^= 1;
        assert_eq!(
            m.verify_chunk(0, &bad),
            Err(ContentError::BadChunkHash { index: 0 })
        );
        assert!(matches!(
            m.verify_chunk(3, c0),
            Err(ContentError::NoSuchChunk { .. })
        ));
        // Feeding in odd pieces gives the same manifest.
        let mut b = ManifestBuilder::new("application/octet-stream");
        for piece in data.chunks(7777) {
            b.update(piece);
        }
        assert_eq!(b.finish(), m);
    }

    #[test]
    fn tampered_manifests_are_rejected() {
        let m = manifest_for(&[1u8; 5000], "image/png");
        let id = m.id();
        let mut bytes = m.encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            Manifest::decode_for(&id, &bytes),
            Err(ContentError::IdMismatch)
        );
        assert!(Manifest::decode_for(&id, &[0xff; 3]).is_err());
        assert!("not-an-id".parse::<ObjectId>().is_err());
        assert!("1111".parse::<ObjectId>().is_err());
    }
}

//! Errors of the store: what went wrong, and on which path or object.
//!
//! Every I/O failure names the file it happened on; corrupted data names the object and the part
//! (manifest or chunk index) so that the caller can fetch it again.

use std::fmt;
use std::io;
use std::path::PathBuf;

use nearcast_proto::content::{ContentError, ObjectId};

/// Result type of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which part of an object was found corrupted on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptPart {
    /// The manifest file (the whole object has been removed).
    Manifest,
    /// One chunk of the data file (only that chunk has been dropped from the held set).
    Chunk(u32),
}

impl fmt::Display for CorruptPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptPart::Manifest => f.write_str("manifest"),
            CorruptPart::Chunk(i) => write!(f, "chunk {i}"),
        }
    }
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store directory cannot be used (not a directory, not writable, ...).
    #[error("store directory {path} is unusable: {reason}")]
    Unusable { path: PathBuf, reason: String },
    /// An I/O operation failed (disk full, permissions, ...). Data stored before is intact.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Data on disk failed verification; it has been removed (a manifest) or dropped from the
    /// held set (a chunk) and should be fetched again.
    #[error("corrupt {part} of object {id} at {path}: {reason} (removed from the store)")]
    Corrupt {
        id: ObjectId,
        part: CorruptPart,
        path: PathBuf,
        reason: String,
    },
    /// The object's manifest is not in the store.
    #[error("object {0} is not in the store")]
    NotFound(ObjectId),
    /// A chunk needed to read the object is not in the store.
    #[error("chunk {index} of object {id} is not in the store")]
    MissingChunk { id: ObjectId, index: u32 },
    /// A manifest given to the store is not valid.
    #[error("invalid manifest: {0}")]
    InvalidManifest(#[source] ContentError),
    /// A chunk given to the store does not match the object's manifest; nothing was stored.
    #[error("chunk {index} rejected for object {id}: {source}")]
    Rejected {
        id: ObjectId,
        index: u32,
        #[source]
        source: ContentError,
    },
    /// A read started beyond the end of the object.
    #[error("range starts at {offset}, past the end of the object ({size} bytes)")]
    Range { offset: u64, size: u64 },
}

impl StoreError {
    /// Builds an [`StoreError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the disk (or the user's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }

    /// True for an I/O error of kind `NotFound`.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

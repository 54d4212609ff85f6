//! Error type of the pure core: decoding a map file and parsing text tables.
//!
//! Every way a hostile or damaged input can fail has its own variant, so that a caller can log a
//! clear reason and keep its previous map.

/// Why a map could not be decoded or a table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AsMapError {
    /// The input does not start with `NCASMAP\0`.
    #[error("not an asmap file (bad magic)")]
    BadMagic,
    /// The file's format version is not one this build reads.
    #[error(
        "unsupported asmap format version {found} (this build reads versions 1 to {supported})"
    )]
    UnsupportedVersion {
        /// Version found in the header.
        found: u32,
        /// Newest version this build reads (it reads every version from 1).
        supported: u32,
    },
    /// The input ended before a complete header or value.
    #[error("asmap truncated: {what} needs {needed} bytes at offset {offset}, {available} left")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Byte offset in the input.
        offset: usize,
        /// Bytes needed.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// The header's body length differs from the bytes present.
    #[error("asmap body length {declared} does not match the {actual} bytes present")]
    LengthMismatch {
        /// Length given in the header.
        declared: u64,
        /// Bytes after the header.
        actual: usize,
    },
    /// The SHA-256 of the body differs from the header's.
    #[error("asmap checksum mismatch: the body is corrupt")]
    ChecksumMismatch,
    /// A count that the remaining bytes cannot possibly hold.
    #[error("asmap {what} count {count} exceeds what the remaining {remaining} bytes can hold")]
    CountTooLarge {
        /// What is counted.
        what: &'static str,
        /// The declared count.
        count: u64,
        /// Bytes left.
        remaining: usize,
    },
    /// A variable-length integer that is too long or overflows its type.
    #[error("asmap malformed integer ({what}) at offset {offset}")]
    BadVarint {
        /// What was being read.
        what: &'static str,
        /// Byte offset in the body.
        offset: usize,
    },
    /// A prefix length beyond 32 (IPv4) or 128 (IPv6).
    #[error("invalid IPv{family} prefix length {len}")]
    PrefixLength {
        /// 4 or 6.
        family: u8,
        /// The length found.
        len: u8,
    },
    /// A prefix whose host bits are not zero.
    #[error("IPv{family} prefix at index {index} has host bits set")]
    HostBits {
        /// 4 or 6.
        family: u8,
        /// Index of the prefix.
        index: usize,
    },
    /// An address beyond the family's range, or a sum that overflows.
    #[error("asmap {what} out of range at index {index}")]
    OutOfRange {
        /// What overflowed.
        what: &'static str,
        /// Index of the entry.
        index: usize,
    },
    /// Entries that are not strictly ascending (or are duplicated).
    #[error("asmap {what} not strictly ascending at index {index}")]
    NotSorted {
        /// Which list.
        what: &'static str,
        /// Index of the entry.
        index: usize,
    },
    /// A reference to an AS index beyond the AS table.
    #[error("asmap {what} references AS index {index}, but the AS table has {count} entries")]
    UnknownAsIndex {
        /// Which list.
        what: &'static str,
        /// The index found.
        index: u64,
        /// Size of the AS table.
        count: usize,
    },
    /// Bytes after the last section.
    #[error("asmap has {0} unexpected bytes after its last section")]
    TrailingBytes(usize),
    /// A malformed line in a range CSV or prefix table.
    #[error("line {line}: {reason}")]
    Parse {
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading the input failed.
    #[error("reading input failed: {0}")]
    Io(#[from] std::io::Error),
}

//! The `held` log of a chunked object: which chunks of its `data` file are fully written.
//!
//! The log is a sequence of 8-byte records, appended with `O_APPEND` (one `write` each, so
//! records of concurrent writers never interleave):
//!
//! ```text
//! bytes 0..4   chunk index, u32 little-endian
//! bytes 4..8   check, u32 little-endian: check(index, kind), kind = HELD or DROPPED
//! ```
//!
//! A `HELD` record is appended only after the chunk's bytes are in `data` (and, when chunks are
//! synced, after `data` was fdatasync'ed); a `DROPPED` record is appended when a chunk fails
//! verification on read. Replaying the log in order gives the held set. Nothing in it is
//! trusted beyond that: every chunk is still verified against the manifest when read, so a
//! record that lies (a power cut that kept the record but not the data) only costs a refetch.
//!
//! Reading is bounded and tolerant: a record whose check does not match (a torn or zeroed tail
//! after a power cut, garbage) is skipped one byte at a time until records line up again, a
//! partial record at the end is ignored, indices beyond the manifest's chunk count are ignored,
//! and at most [`max_records`] records are read. A log longer than that is rewritten
//! (atomically) from what was read, so its size stays bounded by the chunk count.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use crate::atomic;
use crate::error::{Result, StoreError};

/// Size of one record.
pub(crate) const RECORD: usize = 8;

const HELD_TAG: u32 = 0x4845_4c44; // "HELD"
const DROPPED_TAG: u32 = 0x4452_4f50; // "DROP"

/// What a record says about its chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Held,
    Dropped,
}

fn check(index: u32, kind: Kind) -> u32 {
    let tag = match kind {
        Kind::Held => HELD_TAG,
        Kind::Dropped => DROPPED_TAG,
    };
    (index ^ 0x6e63_6173)
        .wrapping_mul(0x9e37_79b1)
        .rotate_left(13)
        ^ tag
}

/// The encoding of one record.
pub(crate) fn encode(index: u32, kind: Kind) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..4].copy_from_slice(&index.to_le_bytes());
    r[4..].copy_from_slice(&check(index, kind).to_le_bytes());
    r
}

/// The record at the start of `b`, if it is one.
pub(crate) fn decode(b: &[u8]) -> Option<(u32, Kind)> {
    let index = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
    let c = u32::from_le_bytes(b.get(4..RECORD)?.try_into().ok()?);
    [Kind::Held, Kind::Dropped]
        .into_iter()
        .find(|k| check(index, *k) == c)
        .map(|k| (index, k))
}

/// Most records read from the log of an object of `chunks` chunks: room for every chunk to be
/// stored, dropped and stored again a few times.
pub(crate) fn max_records(chunks: u32) -> u64 {
    4 * u64::from(chunks) + 64
}

/// The held set replayed from the log at `path`.
pub(crate) struct Replay {
    /// One flag per chunk.
    pub held: Vec<bool>,
    /// The log is over [`max_records`] and should be rewritten.
    pub too_long: bool,
    /// Bytes that were not valid records.
    pub skipped: u64,
}

/// Reads the log at `path` for an object of `chunks` chunks. A missing log holds nothing.
pub(crate) fn read(path: &Path, chunks: u32) -> Result<Replay> {
    let mut held = vec![false; chunks as usize];
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Replay {
                held,
                too_long: false,
                skipped: 0,
            });
        }
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let limit = max_records(chunks) * RECORD as u64;
    let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let mut bytes = Vec::with_capacity(len.min(limit) as usize);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io(path, e))?;
    let mut pos = 0;
    let mut skipped = 0;
    while let Some(rest) = bytes.get(pos..) {
        if rest.len() < RECORD {
            break;
        }
        match decode(rest) {
            Some((index, kind)) => {
                if let Some(flag) = held.get_mut(index as usize) {
                    *flag = kind == Kind::Held;
                }
                pos += RECORD;
            }
            None => {
                skipped += 1;
                pos += 1;
            }
        }
    }
    Ok(Replay {
        held,
        too_long: len > limit,
        skipped,
    })
}

/// Appends one record to the existing log at `path`, fdatasync'ing it if `sync`.
pub(crate) fn append(path: &Path, index: u32, kind: Kind, sync: bool) -> Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    file.write_all(&encode(index, kind))
        .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
        .map_err(|e| StoreError::io(path, e))
}

/// The bytes of a log naming every chunk flagged in `held`.
pub(crate) fn log_of(held: &[bool]) -> Vec<u8> {
    held.iter()
        .enumerate()
        .filter(|(_, h)| **h)
        .flat_map(|(i, _)| encode(i as u32, Kind::Held))
        .collect()
}

/// Atomically replaces the log at `path` with one naming every chunk flagged in `held`.
pub(crate) fn rewrite(tmp_dir: &Path, path: &Path, held: &[bool]) -> Result<()> {
    atomic::write_atomic(tmp_dir, path, &log_of(held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_zeros_are_not_records() {
        for i in [0, 1, 7, 1023, u32::MAX] {
            assert_eq!(decode(&encode(i, Kind::Held)), Some((i, Kind::Held)));
            assert_eq!(decode(&encode(i, Kind::Dropped)), Some((i, Kind::Dropped)));
        }
        assert_eq!(decode(&[0; RECORD]), None);
        assert_eq!(decode(&[0xff; RECORD]), None);
        assert_eq!(decode(&[1, 2, 3]), None);
    }

    #[test]
    fn replay_skips_garbage_torn_tails_and_out_of_range_indices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("held");
        let mut log = Vec::new();
        log.extend(encode(0, Kind::Held));
        log.extend([0u8; 13]); // zeroed region after a power cut
        log.extend(encode(2, Kind::Held));
        log.extend(encode(99, Kind::Held)); // beyond the chunk count
        log.extend(encode(3, Kind::Held));
        log.extend(encode(0, Kind::Dropped));
        log.extend(&encode(1, Kind::Held)[..5]); // torn last record
        std::fs::write(&path, &log).expect("write");
        let r = read(&path, 4).expect("read");
        assert_eq!(r.held, vec![false, false, true, true]);
        assert!(!r.too_long);
        assert_eq!(r.skipped, 13);
        // Missing: nothing held.
        let r = read(&dir.path().join("nope"), 2).expect("read");
        assert_eq!(r.held, vec![false, false]);
    }

    #[test]
    fn a_huge_log_is_read_only_up_to_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("held");
        let mut log = Vec::new();
        for _ in 0..max_records(2) {
            log.extend(encode(0, Kind::Held));
        }
        log.extend(encode(1, Kind::Held)); // past the bound: not read
        std::fs::write(&path, &log).expect("write");
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(1 << 34).expect("sparse 16 GiB"); // a garbage tail of 16 GiB
        let r = read(&path, 2).expect("read");
        assert_eq!(r.held, vec![true, false]);
        assert!(r.too_long);
    }
}

//! The binary map format: encoding an [`AsMap`] to bytes and decoding it back, safely.
//!
//! ```text
//! header (52 bytes)
//!   magic        8 bytes   "NCASMAP\0"
//!   version      u32 LE    FORMAT_VERSION
//!   body length  u64 LE    bytes after the header
//!   checksum     32 bytes  SHA-256 of the body
//! body (all integers unsigned LEB128 varints unless noted)
//!   built        u64 LE    (version 2 only) build time, seconds since the Unix epoch: the
//!                          map's version, so that peers never go back to an older map
//!   AS table     n (< 2^24), then n AS numbers: the first as is, then ascending deltas (>= 1)
//!   IPv4         n, then n prefixes: network delta from the previous network (the first from
//!                0), length (1 byte), AS index into the AS table; canonical order, i.e.
//!                ascending by (network, length), no duplicates, host bits zero
//!   IPv6         the same with 128-bit networks
//!   edges        n, then n undirected edges (a, b) of AS indices, a < b, ascending by (a, b):
//!                a as a delta from the previous a; b as a delta from the previous b when a
//!                is unchanged, else as a delta from a (always >= 1)
//! ```
//!
//! Version 1 files (no build time) are still read, with build time 0 (older than any built
//! map); other versions are refused with [`AsMapError::UnsupportedVersion`].
//!
//! The decoder trusts nothing: it checks magic, version, length and checksum before parsing,
//! checks every count against the bytes left before allocating, and checks order, ranges and
//! references, returning an [`AsMapError`] instead of panicking.

use sha2::{Digest, Sha256};

use crate::graph::AsGraph;
use crate::table::{Key, MAX_TABLE_ASES, PrefixTable, host_mask, max_addr};
use crate::{AsMap, AsMapError};

/// Magic bytes at the start of every map file.
pub const MAGIC: &[u8; 8] = b"NCASMAP\0";
/// The format version this build writes (it also reads version 1).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Length of the fixed header.
pub(crate) const HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// Largest count any section may declare (indices and slots are `u32`, with `u32::MAX` reserved).
const MAX_COUNT: u64 = (u32::MAX / 2) as u64;

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Encodes a map (see the module doc for the layout).
pub(crate) fn encode(map: &AsMap) -> Vec<u8> {
    let g = &map.graph;
    let mut body = Vec::with_capacity(
        24 + g.asns.len() * 3 + map.v4.len() * 6 + map.v6.len() * 12 + g.edge_count() * 4,
    );
    body.extend_from_slice(&map.built.to_le_bytes());
    put_varint(&mut body, g.asns.len() as u128);
    let mut prev = 0u32;
    for (i, &asn) in g.asns.iter().enumerate() {
        put_varint(&mut body, u128::from(if i == 0 { asn } else { asn - prev }));
        prev = asn;
    }
    encode_table(&mut body, &map.v4, g);
    encode_table(&mut body, &map.v6, g);
    put_varint(&mut body, g.edge_count() as u128);
    let (mut pa, mut pb) = (0u32, 0u32);
    for (i, (a, b)) in g.edges().enumerate() {
        put_varint(&mut body, u128::from(a - pa));
        if i > 0 && a == pa {
            put_varint(&mut body, u128::from(b - pb));
        } else {
            put_varint(&mut body, u128::from(b - a));
        }
        (pa, pb) = (a, b);
    }

    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&body));
    out.extend_from_slice(&body);
    out
}

fn encode_table<T: Key>(body: &mut Vec<u8>, t: &PrefixTable<T>, g: &AsGraph) {
    put_varint(body, t.len() as u128);
    let mut prev = 0u128;
    for ((&net, &len), &asn) in t.nets.iter().zip(&t.lens).zip(&t.asns) {
        let net = net.to_u128();
        put_varint(body, net - prev);
        body.push(len);
        // Every prefix AS is in the AS table by construction.
        put_varint(body, u128::from(g.index(asn).unwrap_or(0)));
        prev = net;
    }
}

/// Cursor over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the whole input, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AsMapError> {
        let available = self.remaining();
        if n > available {
            return Err(AsMapError::Truncated {
                what,
                offset: self.base + self.pos,
                needed: n,
                available,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, AsMapError> {
        Ok(self.take(1, what)?[0])
    }

    /// Reads a varint of at most `bits` significant bits.
    fn varint(&mut self, bits: u32, what: &'static str) -> Result<u128, AsMapError> {
        let start = self.base + self.pos;
        let mut v: u128 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.u8(what)?;
            let part = u128::from(byte & 0x7f);
            if shift >= bits || (shift > 0 && part >> (bits - shift).min(127) != 0) {
                return Err(AsMapError::BadVarint {
                    what,
                    offset: start,
                });
            }
            v |= part << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    fn u32v(&mut self, what: &'static str) -> Result<u32, AsMapError> {
        Ok(self.varint(32, what)? as u32)
    }

    /// Reads a count whose entries take at least `min_entry` bytes each.
    fn count(&mut self, min_entry: usize, what: &'static str) -> Result<usize, AsMapError> {
        let count = self.varint(64, what)? as u64;
        let remaining = self.remaining();
        if count > MAX_COUNT || count > (remaining / min_entry) as u64 {
            return Err(AsMapError::CountTooLarge {
                what,
                count,
                remaining,
            });
        }
        Ok(count as usize)
    }
}

/// Decodes and validates a map (see the module doc).
pub(crate) fn decode(bytes: &[u8]) -> Result<AsMap, AsMapError> {
    let mut header = Reader {
        buf: bytes,
        pos: 0,
        base: 0,
    };
    if header.take(8, "magic")? != MAGIC {
        return Err(AsMapError::BadMagic);
    }
    let mut word = [0u8; 4];
    word.copy_from_slice(header.take(4, "version")?);
    let version = u32::from_le_bytes(word);
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(AsMapError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let mut dword = [0u8; 8];
    dword.copy_from_slice(header.take(8, "body length")?);
    let declared = u64::from_le_bytes(dword);
    let checksum = header.take(32, "checksum")?;
    let body = &bytes[HEADER_LEN..];
    if declared != body.len() as u64 {
        return Err(AsMapError::LengthMismatch {
            declared,
            actual: body.len(),
        });
    }
    if Sha256::digest(body).as_slice() != checksum {
        return Err(AsMapError::ChecksumMismatch);
    }

    let mut r = Reader {
        buf: body,
        pos: 0,
        base: HEADER_LEN,
    };
    let built = if version >= 2 {
        let mut word = [0u8; 8];
        word.copy_from_slice(r.take(8, "build time")?);
        u64::from_le_bytes(word)
    } else {
        0
    };
    let n_as = r.count(1, "AS")?;
    if n_as > MAX_TABLE_ASES {
        return Err(AsMapError::CountTooLarge {
            what: "AS",
            count: n_as as u64,
            remaining: r.remaining(),
        });
    }
    let mut asns = Vec::with_capacity(n_as);
    let mut prev = 0u32;
    for i in 0..n_as {
        let d = r.u32v("AS number")?;
        let asn = if i == 0 {
            d
        } else {
            if d == 0 {
                return Err(AsMapError::NotSorted {
                    what: "AS",
                    index: i,
                });
            }
            prev.checked_add(d).ok_or(AsMapError::OutOfRange {
                what: "AS number",
                index: i,
            })?
        };
        asns.push(asn);
        prev = asn;
    }
    let v4 = decode_table::<u32>(&mut r, &asns, 4, "IPv4 prefix")?;
    let v6 = decode_table::<u128>(&mut r, &asns, 6, "IPv6 prefix")?;

    let n_edges = r.count(2, "edge")?;
    let mut edges = Vec::with_capacity(n_edges);
    let (mut pa, mut pb) = (0u32, 0u32);
    for i in 0..n_edges {
        let da = r.u32v("edge")?;
        let db = r.u32v("edge")?;
        let a = pa.checked_add(da);
        let b = match a {
            Some(a) if i > 0 && a == pa => pb.checked_add(db),
            Some(a) => a.checked_add(db),
            None => None,
        };
        let (Some(a), Some(b)) = (a, b) else {
            return Err(AsMapError::OutOfRange {
                what: "edge",
                index: i,
            });
        };
        if db == 0 {
            return Err(AsMapError::NotSorted {
                what: "edge",
                index: i,
            });
        }
        if b as usize >= n_as {
            return Err(AsMapError::UnknownAsIndex {
                what: "edge",
                index: u64::from(b),
                count: n_as,
            });
        }
        edges.push((a, b));
        (pa, pb) = (a, b);
    }
    if r.remaining() != 0 {
        return Err(AsMapError::TrailingBytes(r.remaining()));
    }
    Ok(AsMap {
        v4,
        v6,
        graph: AsGraph::from_canonical(asns, &edges),
        built,
    })
}

fn decode_table<T: Key>(
    r: &mut Reader<'_>,
    as_table: &[u32],
    family: u8,
    what: &'static str,
) -> Result<PrefixTable<T>, AsMapError> {
    let n = r.count(3, what)?;
    let mut nets = Vec::with_capacity(n);
    let mut lens = Vec::with_capacity(n);
    let mut asns = Vec::with_capacity(n);
    let mut prev_net = 0u128;
    let mut prev_len = 0u8;
    for i in 0..n {
        let delta = r.varint(u32::from(T::BITS), what)?;
        let len = r.u8(what)?;
        let as_index = r.varint(64, what)?;
        if len > T::BITS {
            return Err(AsMapError::PrefixLength { family, len });
        }
        let net = prev_net
            .checked_add(delta)
            .filter(|&v| v <= max_addr::<T>())
            .ok_or(AsMapError::OutOfRange { what, index: i })?;
        if i > 0 && delta == 0 && len <= prev_len {
            return Err(AsMapError::NotSorted { what, index: i });
        }
        if net & host_mask::<T>(len) != 0 {
            return Err(AsMapError::HostBits { family, index: i });
        }
        let Some(&asn) = usize::try_from(as_index).ok().and_then(|i| as_table.get(i)) else {
            return Err(AsMapError::UnknownAsIndex {
                what,
                index: as_index as u64,
                count: as_table.len(),
            });
        };
        nets.push(T::from_u128(net));
        lens.push(len);
        asns.push(asn);
        prev_net = net;
        prev_len = len;
    }
    Ok(PrefixTable::from_canonical(nets, lens, asns))
}

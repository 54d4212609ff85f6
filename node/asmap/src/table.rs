//! Longest-prefix-match tables, one per address family.
//!
//! A [`PrefixTable`] owns a canonical prefix list (sorted by network then length, host bits zero,
//! no duplicates) and a flattened view of it: the address space cut into non-overlapping
//! intervals, each labelled with the most specific prefix that covers it (or none) by an info
//! word (the covering prefix's length and AS index), so the interval a search ends on already
//! holds the answer. Intervals are kept as flat sorted `u64` search keys (see [`Key`]), apart
//! from the rest of an IPv6 interval, so a binary search reads 8 bytes per step. A lookup narrows the search with a 2^16-entry index on the top
//! 16 address bits, then binary-searches that bucket: a handful of cache lines, no allocation.

/// Slot value for an interval that no prefix covers.
const NONE: u32 = u32::MAX;
/// Number of top-level buckets (top 16 address bits).
const BUCKETS: usize = 1 << 16;
/// Bits of an entry's info word that hold the prefix length.
const LEN_BITS: u32 = 8;
/// Most distinct ASes one table can name (AS indices use the upper 24 bits of the info word,
/// and the all-ones info word means "no prefix").
pub(crate) const MAX_TABLE_ASES: usize = (1 << 24) - 1;

/// An address as an unsigned integer: `u32` for IPv4, `u128` for IPv6.
///
/// Interval starts are searched as one `u64` key each, in a dense array of their own so that a
/// binary search reads 8 bytes per step. An IPv4 key packs the start and the info word
/// (`start << 32 | info`), so the key a search ends on holds the answer. An IPv6 key is the top
/// 64 bits of the start; the low 64 bits and the info word sit in parallel arrays, the low bits
/// consulted only when several intervals start inside the same /64.
pub(crate) trait Key: Copy + Ord + Default + std::fmt::Debug {
    /// Address width in bits.
    const BITS: u8;
    /// True when the key packs the info word (IPv4); else starts have low bits and a separate
    /// info word (IPv6).
    const PACKED: bool;
    /// Widen to `u128`.
    fn to_u128(self) -> u128;
    /// Narrow from `u128` (the caller guarantees the value fits).
    fn from_u128(v: u128) -> Self;
    /// The top 16 bits, as a bucket index.
    fn bucket(self) -> usize;
    /// The search key of an interval starting at `start` with `info`.
    fn key(start: Self, info: u32) -> u64;
    /// The largest key of an interval starting at `ip`: keys `<=` it start at or below `ip`
    /// (for IPv6, in `ip`'s /64 or below).
    fn probe(ip: Self) -> u64;
    /// The low bits of a start that its key leaves out (0 for IPv4).
    fn lo(self) -> u64;
}

impl Key for u32 {
    const BITS: u8 = 32;
    const PACKED: bool = true;
    #[inline]
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    #[inline]
    fn from_u128(v: u128) -> Self {
        v as u32
    }
    #[inline]
    fn bucket(self) -> usize {
        (self >> 16) as usize
    }
    #[inline]
    fn key(start: Self, info: u32) -> u64 {
        (u64::from(start) << 32) | u64::from(info)
    }
    #[inline]
    fn probe(ip: Self) -> u64 {
        (u64::from(ip) << 32) | u64::from(u32::MAX)
    }
    #[inline]
    fn lo(self) -> u64 {
        0
    }
}

impl Key for u128 {
    const BITS: u8 = 128;
    const PACKED: bool = false;
    #[inline]
    fn to_u128(self) -> u128 {
        self
    }
    #[inline]
    fn from_u128(v: u128) -> Self {
        v
    }
    #[inline]
    fn bucket(self) -> usize {
        (self >> 112) as usize
    }
    #[inline]
    fn key(start: Self, _info: u32) -> u64 {
        (start >> 64) as u64
    }
    #[inline]
    fn probe(ip: Self) -> u64 {
        (ip >> 64) as u64
    }
    #[inline]
    fn lo(self) -> u64 {
        self as u64
    }
}

/// The largest address of the family, as `u128`.
#[inline]
pub(crate) fn max_addr<T: Key>() -> u128 {
    u128::MAX >> (128 - u32::from(T::BITS))
}

/// Host-bit mask of a prefix of length `len` (`len <= T::BITS`), as `u128`.
#[inline]
pub(crate) fn host_mask<T: Key>(len: u8) -> u128 {
    max_addr::<T>().checked_shr(u32::from(len)).unwrap_or(0)
}

/// Prefix list plus its flattened interval view. See the module doc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PrefixTable<T: Key> {
    /// Network addresses, canonical order.
    pub(crate) nets: Vec<T>,
    /// Prefix lengths, parallel to `nets`.
    pub(crate) lens: Vec<u8>,
    /// Origin AS numbers, parallel to `nets`.
    pub(crate) asns: Vec<u32>,
    /// Distinct origin ASes of this table, ascending; entries name them by index.
    as_list: Vec<u32>,
    /// Interval search keys ([`Key::key`]), ascending; the first interval starts at 0.
    keys: Vec<u64>,
    /// IPv6: interval starts' low bits ([`Key::lo`]), parallel to `keys`; empty for IPv4.
    los: Vec<u64>,
    /// IPv6: interval info words, parallel to `keys` (IPv4 packs them into the keys). Info
    /// word: `as_index << LEN_BITS | len`, or `NONE` where no prefix covers the interval.
    infos: Vec<u32>,
    /// `buckets[b]` = first interval whose start is `>= b << (BITS - 16)`; `BUCKETS + 1`
    /// entries.
    buckets: Vec<u32>,
}

impl<T: Key> PrefixTable<T> {
    /// Builds a table from a canonical prefix list: sorted by `(net, len)` strictly ascending,
    /// `len <= T::BITS`, host bits zero. The caller (builder or decoder) guarantees this, and
    /// that there are fewer than `u32::MAX` prefixes. Prefixes whose AS would be beyond the
    /// first [`MAX_TABLE_ASES`] distinct ones do not answer lookups (the decoder refuses such
    /// maps; no real table comes near).
    pub(crate) fn from_canonical(nets: Vec<T>, lens: Vec<u8>, asns: Vec<u32>) -> Self {
        debug_assert_eq!(nets.len(), lens.len());
        debug_assert_eq!(nets.len(), asns.len());
        if nets.is_empty() {
            return Self::default();
        }
        let mut as_list = asns.clone();
        as_list.sort_unstable();
        as_list.dedup();
        let (starts, slots) = flatten::<T>(&nets, &lens);
        let infos: Vec<u32> = slots
            .iter()
            .map(|&slot| match slot {
                NONE => NONE,
                i => {
                    let i = i as usize;
                    match as_list.binary_search(&asns[i]) {
                        Ok(a) if a < MAX_TABLE_ASES => {
                            ((a as u32) << LEN_BITS) | u32::from(lens[i])
                        }
                        _ => NONE,
                    }
                }
            })
            .collect();
        let buckets = bucket_index::<T>(&starts);
        let keys = starts
            .iter()
            .zip(&infos)
            .map(|(&s, &info)| T::key(s, info))
            .collect();
        let (los, infos) = if T::PACKED {
            (Vec::new(), Vec::new())
        } else {
            (starts.iter().map(|s| s.lo()).collect(), infos)
        };
        PrefixTable {
            nets,
            lens,
            asns,
            as_list,
            keys,
            los,
            infos,
            buckets,
        }
    }

    /// Number of prefixes.
    pub(crate) fn len(&self) -> usize {
        self.nets.len()
    }

    /// `(prefix length, origin AS)` of the longest prefix that contains `ip`.
    #[inline]
    pub(crate) fn lookup(&self, ip: T) -> Option<(u8, u32)> {
        let b = ip.bucket();
        let first = *self.buckets.get(b)? as usize;
        let end = *self.buckets.get(b + 1)? as usize;
        let probe = T::probe(ip);
        let keys = self.keys.get(first..end)?;
        // Intervals in `first..first + k` start at or below `probe`.
        let mut k = keys.partition_point(|&h| h <= probe);
        if !T::PACKED && k > 0 && keys[k - 1] == probe {
            // Intervals starting inside `ip`'s /64: compare their low bits too.
            let run = keys.partition_point(|&h| h < probe);
            let los = self.los.get(first + run..first + k)?;
            k = run + los.partition_point(|&l| l <= ip.lo());
        }
        // The interval holding `ip` is the last one starting at or below it (in an earlier
        // bucket when none of this bucket's starts at or below `ip`).
        let i = (first + k).checked_sub(1)?;
        let info = if T::PACKED {
            *self.keys.get(i)? as u32
        } else {
            *self.infos.get(i)?
        };
        match info {
            NONE => None,
            info => {
                let asn = *self.as_list.get((info >> LEN_BITS) as usize)?;
                Some((info as u8, asn))
            }
        }
    }

    /// Number of flattened intervals (for size estimates).
    pub(crate) fn interval_count(&self) -> usize {
        self.keys.len()
    }

    /// Heap bytes held.
    pub(crate) fn heap_size(&self) -> usize {
        let t = std::mem::size_of::<T>();
        self.nets.capacity() * t
            + self.lens.capacity()
            + self.asns.capacity() * 4
            + self.as_list.capacity() * 4
            + self.keys.capacity() * 8
            + self.los.capacity() * 8
            + self.infos.capacity() * 4
            + self.buckets.capacity() * 4
    }
}

/// Cuts the address space into intervals labelled with their most specific covering prefix.
///
/// Canonical order puts a prefix before everything it contains, so a stack of open prefixes
/// (each nested in the one below) is enough: when a prefix starts past the end of the top of the
/// stack, that one closes and the space after it falls back to its parent.
fn flatten<T: Key>(nets: &[T], lens: &[u8]) -> (Vec<T>, Vec<u32>) {
    let mut starts: Vec<T> = Vec::with_capacity(nets.len() * 2 + 1);
    let mut slots: Vec<u32> = Vec::with_capacity(nets.len() * 2 + 1);
    let max = max_addr::<T>();
    // Pushes interval (pos, slot), merging with the previous one where possible.
    let mut emit = |pos: u128, slot: u32| {
        let pos_t = T::from_u128(pos);
        if starts.last() == Some(&pos_t) {
            // An interval of zero width: the new label replaces it.
            slots.pop();
            starts.pop();
        }
        if slots.last() == Some(&slot) {
            return;
        }
        starts.push(pos_t);
        slots.push(slot);
    };
    emit(0, NONE);
    // (last address, prefix index) of open prefixes, innermost on top.
    let mut stack: Vec<(u128, u32)> = Vec::with_capacity(T::BITS as usize + 1);
    for (i, (&net, &len)) in nets.iter().zip(lens).enumerate() {
        let start = net.to_u128();
        while let Some(&(last, _)) = stack.last() {
            if last >= start {
                break;
            }
            stack.pop();
            let parent = stack.last().map_or(NONE, |&(_, idx)| idx);
            emit(last + 1, parent);
        }
        let last = start | host_mask::<T>(len);
        emit(start, i as u32);
        stack.push((last, i as u32));
    }
    while let Some((last, _)) = stack.pop() {
        if last == max {
            break;
        }
        let parent = stack.last().map_or(NONE, |&(_, idx)| idx);
        emit(last + 1, parent);
    }
    starts.shrink_to_fit();
    slots.shrink_to_fit();
    (starts, slots)
}

/// Builds the top-16-bit index over interval starts.
fn bucket_index<T: Key>(starts: &[T]) -> Vec<u32> {
    let mut buckets = Vec::with_capacity(BUCKETS + 1);
    let shift = u32::from(T::BITS) - 16;
    let mut i = 0usize;
    for b in 0..BUCKETS {
        let bucket_start = (b as u128) << shift;
        while i < starts.len() && starts[i].to_u128() < bucket_start {
            i += 1;
        }
        buckets.push(i as u32);
    }
    buckets.push(starts.len() as u32);
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(prefixes: &[(u32, u8, u32)]) -> PrefixTable<u32> {
        let mut p = prefixes.to_vec();
        p.sort();
        PrefixTable::from_canonical(
            p.iter().map(|x| x.0).collect(),
            p.iter().map(|x| x.1).collect(),
            p.iter().map(|x| x.2).collect(),
        )
    }

    fn asn_at(t: &PrefixTable<u32>, ip: u32) -> Option<u32> {
        t.lookup(ip).map(|(_, asn)| asn)
    }

    #[test]
    fn nested_and_adjacent() {
        let t = table(&[
            (0x0a00_0000, 8, 1),  // 10/8
            (0x0a01_0000, 16, 2), // 10.1/16
            (0x0a01_0100, 24, 3), // 10.1.1/24
            (0x0a02_0000, 16, 4), // 10.2/16, adjacent to 10.1/16
            (0x0b00_0000, 8, 5),  // 11/8, adjacent to 10/8
        ]);
        assert_eq!(asn_at(&t, 0x09ff_ffff), None);
        assert_eq!(asn_at(&t, 0x0a00_0000), Some(1));
        assert_eq!(asn_at(&t, 0x0a00_ffff), Some(1));
        assert_eq!(asn_at(&t, 0x0a01_0000), Some(2));
        assert_eq!(asn_at(&t, 0x0a01_0100), Some(3));
        assert_eq!(asn_at(&t, 0x0a01_01ff), Some(3));
        assert_eq!(asn_at(&t, 0x0a01_0200), Some(2));
        assert_eq!(asn_at(&t, 0x0a02_0000), Some(4));
        assert_eq!(asn_at(&t, 0x0a03_0000), Some(1));
        assert_eq!(asn_at(&t, 0x0b00_0000), Some(5));
        assert_eq!(asn_at(&t, 0x0bff_ffff), Some(5));
        assert_eq!(asn_at(&t, 0x0c00_0000), None);
    }

    #[test]
    fn whole_space_and_edges() {
        let t = table(&[(0, 0, 7), (0xffff_ffff, 32, 8), (0, 32, 9)]);
        assert_eq!(asn_at(&t, 0), Some(9));
        assert_eq!(asn_at(&t, 1), Some(7));
        assert_eq!(asn_at(&t, 0xffff_fffe), Some(7));
        assert_eq!(asn_at(&t, 0xffff_ffff), Some(8));
        let t6 = PrefixTable::<u128>::from_canonical(vec![0, u128::MAX], vec![0, 128], vec![1, 2]);
        assert_eq!(t6.lookup(5), Some((0, 1)));
        assert_eq!(t6.lookup(u128::MAX), Some((128, 2)));
    }

    #[test]
    fn empty_table() {
        let t = PrefixTable::<u32>::from_canonical(vec![], vec![], vec![]);
        assert_eq!(t.lookup(12345), None);
    }

    #[test]
    fn matches_naive_scan_v6_crowded() {
        // Many prefixes inside 2001::/16, as in real IPv6 data: a deep search tree.
        let mut x: u64 = 0x0123_4567_89ab_cdef;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = 0x2001u128 << 112;
        let mut set = std::collections::BTreeMap::new();
        for _ in 0..5000 {
            let len = (next() % 48) as u8 + 16;
            let r = (u128::from(next()) << 48) & (u128::MAX >> 16);
            let net = (base | r) & !host_mask::<u128>(len);
            set.entry((net, len)).or_insert((next() % 1000) as u32);
        }
        let list: Vec<(u128, u8, u32)> = set.iter().map(|(&(n, l), &a)| (n, l, a)).collect();
        let t = PrefixTable::<u128>::from_canonical(
            list.iter().map(|x| x.0).collect(),
            list.iter().map(|x| x.1).collect(),
            list.iter().map(|x| x.2).collect(),
        );
        let naive = |ip: u128| {
            list.iter()
                .filter(|&&(n, l, _)| ip & !host_mask::<u128>(l) == n)
                .max_by_key(|&&(_, l, _)| l)
                .map(|&(_, l, a)| (l, a))
        };
        for k in 0..5000 {
            let &(n, l, _) = &list[(next() % list.len() as u64) as usize];
            let inside =
                n | (((u128::from(next()) << 64) | u128::from(next())) & host_mask::<u128>(l));
            for ip in [n, n | host_mask::<u128>(l), n.wrapping_sub(1), inside] {
                assert_eq!(t.lookup(ip), naive(ip), "probe {k} {ip:#x}");
            }
        }
    }

    #[test]
    fn matches_naive_scan() {
        // Deterministic pseudo-random prefixes checked against a linear longest-match scan.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut set = std::collections::BTreeMap::new();
        for _ in 0..2000 {
            let len = (next() % 25) as u8 + 8;
            let net = (next() as u32) & !(host_mask::<u32>(len) as u32);
            set.entry((net, len)).or_insert((next() % 1000) as u32);
        }
        let list: Vec<(u32, u8, u32)> = set.iter().map(|(&(n, l), &a)| (n, l, a)).collect();
        let t = table(&list);
        for _ in 0..20000 {
            let ip = next() as u32;
            let naive = list
                .iter()
                .filter(|&&(n, l, _)| ip & !(host_mask::<u32>(l) as u32) == n)
                .max_by_key(|&&(_, l, _)| l)
                .map(|&(_, l, a)| (l, a));
            assert_eq!(t.lookup(ip), naive, "ip {ip:#x}");
            // Also probe prefix boundaries.
            let &(n, l, _) = &list[(next() % list.len() as u64) as usize];
            for probe in [n, n | host_mask::<u32>(l) as u32, n.wrapping_sub(1)] {
                let naive = list
                    .iter()
                    .filter(|&&(pn, pl, _)| probe & !(host_mask::<u32>(pl) as u32) == pn)
                    .max_by_key(|&&(_, pl, _)| pl)
                    .map(|&(_, _, a)| a);
                assert_eq!(asn_at(&t, probe), naive, "probe {probe:#x}");
            }
        }
    }
}

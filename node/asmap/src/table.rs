//! Longest-prefix-match tables, one per address family.
//!
//! A [`PrefixTable`] owns a canonical prefix list (sorted by network then length, host bits zero,
//! no duplicates) and a flattened view of it: the address space cut into non-overlapping
//! intervals, each labelled with the most specific prefix that covers it (or none). A lookup
//! finds the last interval start at or below the address through a small static search tree:
//! levels of every `FANOUT`-th start above the start array, each level searched only inside the
//! block its parent picked, so a lookup touches one block per level and the upper levels stay
//! in cache. Unlike a fixed top-bits index this does not degrade where prefixes crowd (IPv6
//! lives in a few /16s).

/// Slot value for an interval that no prefix covers.
const NONE: u32 = u32::MAX;
/// Info value for an interval that no prefix covers.
const NO_INFO: u64 = u64::MAX;

/// An address as an unsigned integer: `u32` for IPv4, `u128` for IPv6.
pub(crate) trait Key: Copy + Ord + Default + std::fmt::Debug {
    /// Address width in bits.
    const BITS: u8;
    /// Widen to `u128`.
    fn to_u128(self) -> u128;
    /// Narrow from `u128` (the caller guarantees the value fits).
    fn from_u128(v: u128) -> Self;
    /// Keys per block of the search tree (one or two cache lines).
    const FANOUT: usize;
}

impl Key for u32 {
    const BITS: u8 = 32;
    #[inline]
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    #[inline]
    fn from_u128(v: u128) -> Self {
        v as u32
    }
    const FANOUT: usize = 16;
}

impl Key for u128 {
    const BITS: u8 = 128;
    #[inline]
    fn to_u128(self) -> u128 {
        self
    }
    #[inline]
    fn from_u128(v: u128) -> Self {
        v
    }
    const FANOUT: usize = 8;
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
pub(crate) struct PrefixTable<T> {
    /// Network addresses, canonical order.
    pub(crate) nets: Vec<T>,
    /// Prefix lengths, parallel to `nets`.
    pub(crate) lens: Vec<u8>,
    /// Origin AS numbers, parallel to `nets`.
    pub(crate) asns: Vec<u32>,
    /// Interval starts, ascending; `starts[0] == 0` when not empty.
    starts: Vec<T>,
    /// For each interval, its covering prefix as `(asn << 8) | len`, or `NO_INFO`: all a lookup
    /// needs, so that it touches neither the prefix arrays nor a slot-to-prefix indirection.
    info: Vec<u64>,
    /// Search tree over `starts`, root level first: `levels[k][j] == levels[k + 1][j * FANOUT]`,
    /// the last level samples `starts`, the root has at most `FANOUT` keys.
    levels: Vec<Vec<T>>,
}

impl<T: Key> PrefixTable<T> {
    /// Builds a table from a canonical prefix list: sorted by `(net, len)` strictly ascending,
    /// `len <= T::BITS`, host bits zero. The caller (builder or decoder) guarantees this, and
    /// that there are fewer than `u32::MAX` prefixes.
    pub(crate) fn from_canonical(nets: Vec<T>, lens: Vec<u8>, asns: Vec<u32>) -> Self {
        debug_assert_eq!(nets.len(), lens.len());
        debug_assert_eq!(nets.len(), asns.len());
        if nets.is_empty() {
            return Self::default();
        }
        let (starts, slots) = flatten::<T>(&nets, &lens);
        let info = slots
            .iter()
            .map(|&s| match s {
                NONE => NO_INFO,
                i => (u64::from(asns[i as usize]) << 8) | u64::from(lens[i as usize]),
            })
            .collect();
        let levels = search_levels(&starts);
        PrefixTable {
            nets,
            lens,
            asns,
            starts,
            info,
            levels,
        }
    }

    /// Number of prefixes.
    pub(crate) fn len(&self) -> usize {
        self.nets.len()
    }

    /// `(prefix length, origin AS)` of the longest prefix that contains `ip`.
    #[inline]
    pub(crate) fn lookup(&self, ip: T) -> Option<(u8, u32)> {
        // Index of the last key <= ip, level by level; every level starts with address 0.
        let mut j = 0usize;
        for level in self
            .levels
            .iter()
            .map(Vec::as_slice)
            .chain([self.starts.as_slice()])
        {
            let lo = j * T::FANOUT;
            let block = level.get(lo..(lo + T::FANOUT).min(level.len()))?;
            j = (lo + block.partition_point(|&s| s <= ip)).checked_sub(1)?;
        }
        let i = j;
        match *self.info.get(i)? {
            NO_INFO => None,
            info => Some((info as u8, (info >> 8) as u32)),
        }
    }

    /// Number of flattened intervals (for size estimates).
    pub(crate) fn interval_count(&self) -> usize {
        self.starts.len()
    }

    /// Heap bytes held.
    pub(crate) fn heap_size(&self) -> usize {
        let t = std::mem::size_of::<T>();
        self.nets.capacity() * t
            + self.lens.capacity()
            + self.asns.capacity() * 4
            + self.starts.capacity() * t
            + self.info.capacity() * 8
            + self.levels.iter().map(|l| l.capacity() * t).sum::<usize>()
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

/// Builds the search-tree levels over interval starts (see [`PrefixTable::levels`]).
fn search_levels<T: Key>(starts: &[T]) -> Vec<Vec<T>> {
    let mut levels: Vec<Vec<T>> = Vec::new();
    let mut next: Vec<T> = starts.iter().step_by(T::FANOUT).copied().collect();
    loop {
        let root = next.len() <= T::FANOUT;
        let up = if root {
            Vec::new()
        } else {
            next.iter().step_by(T::FANOUT).copied().collect()
        };
        levels.push(next);
        if root {
            break;
        }
        next = up;
    }
    levels.reverse();
    levels
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

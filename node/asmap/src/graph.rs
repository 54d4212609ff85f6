//! The AS graph: every known AS number and the undirected adjacency between them, in CSR form
//! (one sorted neighbour array per AS), and the bounded AS distance over it.

use crate::MAX_AS_DISTANCE;

/// Known ASes and their adjacency. See the module doc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AsGraph {
    /// AS numbers, strictly ascending. Indices into this array name ASes below.
    pub(crate) asns: Vec<u32>,
    /// `offsets[i]..offsets[i + 1]` is AS `i`'s range in `adj`; `asns.len() + 1` entries.
    offsets: Vec<u32>,
    /// Neighbour indices, ascending within each AS.
    adj: Vec<u32>,
}

impl AsGraph {
    /// Builds the graph from a strictly ascending AS list and undirected edges given as index
    /// pairs `(a, b)` with `a < b < asns.len()`, strictly ascending (so no duplicates). The
    /// caller guarantees both, and fewer than `u32::MAX / 2` edges.
    pub(crate) fn from_canonical(asns: Vec<u32>, edges: &[(u32, u32)]) -> Self {
        let n = asns.len();
        if n == 0 {
            return Self::default();
        }
        let mut degree = vec![0u32; n + 1];
        for &(a, b) in edges {
            degree[a as usize] += 1;
            degree[b as usize] += 1;
        }
        let mut offsets = Vec::with_capacity(n + 1);
        let mut acc = 0u32;
        for d in &degree[..n] {
            offsets.push(acc);
            acc += d;
        }
        offsets.push(acc);
        let mut fill: Vec<u32> = offsets[..n].to_vec();
        let mut adj = vec![0u32; acc as usize];
        for &(a, b) in edges {
            adj[fill[a as usize] as usize] = b;
            fill[a as usize] += 1;
            adj[fill[b as usize] as usize] = a;
            fill[b as usize] += 1;
        }
        for i in 0..n {
            adj[offsets[i] as usize..offsets[i + 1] as usize].sort_unstable();
        }
        AsGraph { asns, offsets, adj }
    }

    /// Index of an AS number.
    #[inline]
    pub(crate) fn index(&self, asn: u32) -> Option<u32> {
        self.asns.binary_search(&asn).ok().map(|i| i as u32)
    }

    /// Neighbour indices of AS index `i`.
    #[inline]
    pub(crate) fn neighbours(&self, i: u32) -> &[u32] {
        let i = i as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&lo), Some(&hi)) => self.adj.get(lo as usize..hi as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Number of undirected edges.
    pub(crate) fn edge_count(&self) -> usize {
        self.adj.len() / 2
    }

    /// Undirected edges as index pairs `(a, b)`, `a < b`, ascending.
    pub(crate) fn edges(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..self.asns.len() as u32).flat_map(move |a| {
            self.neighbours(a)
                .iter()
                .filter(move |&&b| b > a)
                .map(move |&b| (a, b))
        })
    }

    /// Heap bytes held.
    pub(crate) fn heap_size(&self) -> usize {
        (self.asns.capacity() + self.offsets.capacity() + self.adj.capacity()) * 4
    }

    /// Hop count between two ASes, capped at [`MAX_AS_DISTANCE`].
    ///
    /// Bidirectional breadth-first search: each round expands whichever side's frontier has
    /// fewer outgoing edges by one full level, so a hub AS with thousands of neighbours is only
    /// expanded when the other side is larger still. Levels are kept as sorted vectors, so the
    /// result is deterministic and no hash map is involved.
    pub(crate) fn distance(&self, a: u32, b: u32) -> u8 {
        if a == b {
            return 0;
        }
        let (Some(ia), Some(ib)) = (self.index(a), self.index(b)) else {
            return MAX_AS_DISTANCE;
        };
        if MAX_AS_DISTANCE <= 1 {
            return MAX_AS_DISTANCE;
        }
        if self.neighbours(ia).binary_search(&ib).is_ok() {
            return 1;
        }
        let mut side = [Side::new(ia), Side::new(ib)];
        let mut scratch = Vec::new();
        // Distance found so far is more than depth_a + depth_b.
        while side[0].depth + side[1].depth + 1 < u32::from(MAX_AS_DISTANCE) {
            let cost =
                |s: &Side| -> usize { s.frontier.iter().map(|&v| self.neighbours(v).len()).sum() };
            let pick = usize::from(cost(&side[1]) < cost(&side[0]));
            let (this, other) = if pick == 0 {
                let (x, y) = side.split_at_mut(1);
                (&mut x[0], &y[0])
            } else {
                let (x, y) = side.split_at_mut(1);
                (&mut y[0], &x[0])
            };
            scratch.clear();
            for &v in &this.frontier {
                scratch.extend_from_slice(self.neighbours(v));
            }
            scratch.sort_unstable();
            scratch.dedup();
            scratch.retain(|v| this.seen.binary_search(v).is_err());
            if scratch.is_empty() {
                return MAX_AS_DISTANCE;
            }
            this.depth += 1;
            if scratch.iter().any(|v| other.seen.binary_search(v).is_ok()) {
                let d = this.depth + other.depth;
                return d.min(u32::from(MAX_AS_DISTANCE)) as u8;
            }
            this.seen = merge_sorted(&this.seen, &scratch);
            std::mem::swap(&mut this.frontier, &mut scratch);
        }
        MAX_AS_DISTANCE
    }
}

impl AsGraph {
    /// Hop counts from AS index `from` to every AS index, capped at [`MAX_AS_DISTANCE`]: one
    /// breadth-first search, for callers that rank many ASes against the same one.
    pub(crate) fn distances_from(&self, from: u32) -> Vec<u8> {
        let mut dist = vec![MAX_AS_DISTANCE; self.asns.len()];
        let Some(d) = dist.get_mut(from as usize) else {
            return dist;
        };
        *d = 0;
        let mut frontier = vec![from];
        let mut next = Vec::new();
        let mut depth = 0u8;
        while !frontier.is_empty() && depth + 1 < MAX_AS_DISTANCE {
            depth += 1;
            for &v in &frontier {
                for &w in self.neighbours(v) {
                    if let Some(d) = dist.get_mut(w as usize)
                        && *d == MAX_AS_DISTANCE
                        && w != from
                    {
                        *d = depth;
                        next.push(w);
                    }
                }
            }
            frontier.clear();
            std::mem::swap(&mut frontier, &mut next);
        }
        dist
    }
}

/// One side of the bidirectional search.
struct Side {
    depth: u32,
    frontier: Vec<u32>,
    seen: Vec<u32>,
}

impl Side {
    fn new(start: u32) -> Self {
        Side {
            depth: 0,
            frontier: vec![start],
            seen: vec![start],
        }
    }
}

/// Merges two sorted, mutually disjoint vectors.
fn merge_sorted(x: &[u32], y: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(x.len() + y.len());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i] < y[j] {
            out.push(x[i]);
            i += 1;
        } else {
            out.push(y[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&x[i..]);
    out.extend_from_slice(&y[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path 10-20-30-40-50-60 plus a hub 99 linked to 10 and 70.
    fn graph() -> AsGraph {
        let asns = vec![10, 20, 30, 40, 50, 60, 70, 99];
        let idx = |a: u32| asns.binary_search(&a).unwrap_or(0) as u32;
        let mut edges: Vec<(u32, u32)> = [
            (10, 20),
            (20, 30),
            (30, 40),
            (40, 50),
            (50, 60),
            (10, 99),
            (70, 99),
        ]
        .iter()
        .map(|&(a, b)| {
            let (x, y) = (idx(a), idx(b));
            (x.min(y), x.max(y))
        })
        .collect();
        edges.sort_unstable();
        AsGraph::from_canonical(asns, &edges)
    }

    #[test]
    fn distances() {
        let g = graph();
        assert_eq!(g.edge_count(), 7);
        assert_eq!(g.distance(10, 10), 0);
        assert_eq!(g.distance(12345, 12345), 0);
        assert_eq!(g.distance(10, 20), 1);
        assert_eq!(g.distance(20, 10), 1);
        assert_eq!(g.distance(10, 30), 2);
        assert_eq!(g.distance(10, 40), 3);
        assert_eq!(g.distance(40, 10), 3);
        assert_eq!(g.distance(10, 50), MAX_AS_DISTANCE);
        assert_eq!(g.distance(10, 60), MAX_AS_DISTANCE);
        assert_eq!(g.distance(70, 20), 3);
        assert_eq!(g.distance(70, 30), MAX_AS_DISTANCE);
        assert_eq!(g.distance(10, 12345), MAX_AS_DISTANCE);
    }

    #[test]
    fn one_search_from_an_as_agrees_with_each_pair() {
        let g = graph();
        for (i, &a) in g.asns.iter().enumerate() {
            let row = g.distances_from(i as u32);
            for (j, &b) in g.asns.iter().enumerate() {
                assert_eq!(row[j], g.distance(a, b), "{a} to {b}");
            }
        }
    }

    #[test]
    fn edges_round_trip() {
        let g = graph();
        let e: Vec<_> = g.edges().collect();
        let g2 = AsGraph::from_canonical(g.asns.clone(), &e);
        assert_eq!(g, g2);
        for i in 0..g.asns.len() as u32 {
            assert!(g.neighbours(i).windows(2).all(|w| w[0] < w[1]));
        }
    }
}

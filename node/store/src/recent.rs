//! Recently verified chunks kept in memory, so that a chunk served many times (a popular object
//! passed on to other peers just after it arrived) is read from disk and hashed once, not once
//! per upload.
//!
//! Entries are content-addressed: the bytes of `(object, index)` were checked against the
//! object's manifest, whose hash is the object's id, so an entry can never go stale. The store
//! still answers from it only while its index holds the chunk. Oldest entries go first once
//! the byte budget is spent.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use nearcast_proto::ObjectId;

/// Verified chunks, oldest first, within a byte budget.
#[derive(Debug, Default)]
pub struct RecentChunks {
    chunks: HashMap<(ObjectId, u32), Bytes>,
    order: VecDeque<(ObjectId, u32)>,
    bytes: usize,
    budget: usize,
}

impl RecentChunks {
    /// Keeps up to `budget` bytes of chunks (0: none).
    pub fn new(budget: usize) -> Self {
        RecentChunks {
            budget,
            ..Self::default()
        }
    }

    /// The verified bytes of chunk `index` of `object`, if kept.
    pub fn get(&self, object: &ObjectId, index: u32) -> Option<Bytes> {
        self.chunks.get(&(*object, index)).cloned()
    }

    /// Keeps `data`, which the caller verified as chunk `index` of `object`.
    pub fn insert(&mut self, object: ObjectId, index: u32, data: Bytes) {
        if data.len() > self.budget || self.chunks.contains_key(&(object, index)) {
            return;
        }
        while self.bytes + data.len() > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.chunks.remove(&old) {
                self.bytes -= gone.len();
            }
        }
        self.bytes += data.len();
        self.order.push_back((object, index));
        self.chunks.insert((object, index), data);
    }

    /// Bytes kept.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId([n; 32])
    }

    #[test]
    fn the_oldest_chunks_go_first_and_the_budget_holds() {
        let mut recent = RecentChunks::new(10);
        recent.insert(id(1), 0, Bytes::from(vec![1; 4]));
        recent.insert(id(1), 1, Bytes::from(vec![2; 4]));
        recent.insert(id(2), 0, Bytes::from(vec![3; 4]));
        assert_eq!(recent.bytes(), 8);
        assert!(recent.get(&id(1), 0).is_none(), "oldest evicted");
        assert_eq!(recent.get(&id(1), 1).as_deref(), Some(&[2u8; 4][..]));
        assert_eq!(recent.get(&id(2), 0).as_deref(), Some(&[3u8; 4][..]));
        recent.insert(id(3), 0, Bytes::from(vec![4; 11]));
        assert!(recent.get(&id(3), 0).is_none(), "larger than the budget");
        assert_eq!(recent.bytes(), 8);
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let mut recent = RecentChunks::new(0);
        recent.insert(id(1), 0, Bytes::from(vec![1; 4]));
        assert!(recent.get(&id(1), 0).is_none());
        assert_eq!(recent.bytes(), 0);
    }
}

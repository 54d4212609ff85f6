//! Super-seeding: which chunks a seeder handed out lately, so that each chunk of an object
//! many peers fetch at once goes to one of them, and the others take it from that peer.
//!
//! Fetchers ask a seeder only for chunks no peer source of theirs has, but their chunk maps are
//! a moment old: peers that start together ask the seeder for the same chunks, and towards the
//! end of a swarm every peer asks it for the last few. Within [`HANDOUT_MS`] of serving a chunk
//! to one peer, a seeder answers another peer's request for that chunk `Busy`, once: the asker
//! picks another chunk, and finds this one at the first peer with its next chunk-map refresh.
//! Asked again within the window, the seeder serves it (the asker may know no other source).

use std::collections::{BTreeMap, VecDeque};

use crate::content::ObjectId;

/// How long after handing a chunk to one peer a seeder defers others asking for it.
pub const HANDOUT_MS: u64 = 1_000;
/// Chunks remembered at once (the oldest are forgotten first).
pub const MAX_REMEMBERED: usize = 16_384;
/// Peers deferred per handed-out chunk; others beyond are served.
const MAX_DEFERRED: usize = 16;

struct Handout<P> {
    at: u64,
    to: P,
    deferred: Vec<P>,
}

/// Chunks a seeder served recently, and to whom.
pub struct Handouts<P> {
    chunks: BTreeMap<(ObjectId, u32), Handout<P>>,
    /// Serving order, for forgetting the oldest; may name entries replaced since.
    order: VecDeque<(u64, ObjectId, u32)>,
}

impl<P> Default for Handouts<P> {
    fn default() -> Self {
        Handouts {
            chunks: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<P: Clone + PartialEq> Handouts<P> {
    /// Whether to defer `from`'s request for chunk `index` of `object` at `now`: true once per
    /// asker while another peer got the chunk less than [`HANDOUT_MS`] ago.
    pub fn defer(&mut self, now: u64, from: &P, object: &ObjectId, index: u32) -> bool {
        let Some(h) = self.chunks.get_mut(&(*object, index)) else {
            return false;
        };
        if now.saturating_sub(h.at) >= HANDOUT_MS
            || h.to == *from
            || h.deferred.contains(from)
            || h.deferred.len() >= MAX_DEFERRED
        {
            return false;
        }
        h.deferred.push(from.clone());
        true
    }

    /// Records that chunk `index` of `object` was served to `to` at `now`.
    pub fn served(&mut self, now: u64, to: &P, object: &ObjectId, index: u32) {
        let key = (*object, index);
        match self.chunks.get_mut(&key) {
            // Still within the window: the first taker stays the one others wait for.
            Some(h) if now.saturating_sub(h.at) < HANDOUT_MS => return,
            Some(h) => {
                h.at = now;
                h.to = to.clone();
                h.deferred.clear();
            }
            None => {
                self.chunks.insert(
                    key,
                    Handout {
                        at: now,
                        to: to.clone(),
                        deferred: Vec::new(),
                    },
                );
            }
        }
        self.order.push_back((now, *object, index));
        while self.order.len() > MAX_REMEMBERED
            || self
                .order
                .front()
                .is_some_and(|(at, _, _)| now.saturating_sub(*at) >= HANDOUT_MS)
        {
            let Some((at, o, i)) = self.order.pop_front() else {
                break;
            };
            if self.chunks.get(&(o, i)).is_some_and(|h| h.at == at) {
                self.chunks.remove(&(o, i));
            }
        }
    }

    /// Chunks remembered.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJ: ObjectId = ObjectId([7; 32]);

    #[test]
    fn a_chunk_just_handed_out_is_deferred_once_per_other_asker() {
        let mut h = Handouts::default();
        assert!(!h.defer(0, &1u32, &OBJ, 3), "nothing handed out yet");
        h.served(0, &1, &OBJ, 3);
        assert!(!h.defer(10, &1, &OBJ, 3), "the taker itself is served");
        assert!(h.defer(10, &2, &OBJ, 3));
        assert!(!h.defer(20, &2, &OBJ, 3), "asked again: served");
        assert!(h.defer(20, &3, &OBJ, 3));
        assert!(!h.defer(20, &3, &OBJ, 4), "another chunk");
        assert!(!h.defer(HANDOUT_MS, &4, &OBJ, 3), "the window is over");
    }

    #[test]
    fn memory_stays_bounded_and_old_handouts_are_forgotten() {
        let mut h = Handouts::default();
        for i in 0..(MAX_REMEMBERED as u32 + 100) {
            h.served(0, &1u32, &OBJ, i);
        }
        assert_eq!(h.len(), MAX_REMEMBERED);
        h.served(HANDOUT_MS, &1, &OBJ, 0);
        assert_eq!(h.len(), 1, "everything older than the window went");
    }
}

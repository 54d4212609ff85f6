//! Maps keyed by object id for the large per-node indexes (holders, DHT provider records):
//! hashed with SipHash-1-3 under a per-node key derived from the node's RNG seed, so lookups
//! stay constant-time however many objects are indexed, and ids a peer makes up cannot be
//! picked to collide (a real node's seed is random). Nothing iterates them in an order
//! that reaches an output, so the simulator stays deterministic.

use std::collections::HashMap;
use std::hash::BuildHasher;

use siphasher::sip::SipHasher13;

use crate::content::ObjectId;
use crate::rng::Rng;

/// The hashing key of one node's id maps.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHashKey(u64, u64);

impl IdHashKey {
    /// A key derived from a node's RNG seed, on a stream of its own (the node's other random
    /// choices stay as they were).
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x6964_6d61_705f_6b65);
        IdHashKey(rng.next_u64(), rng.next_u64())
    }
}

impl BuildHasher for IdHashKey {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.0, self.1)
    }
}

/// A map from object id, hashed under an [`IdHashKey`].
pub type IdMap<V> = HashMap<ObjectId, V, IdHashKey>;

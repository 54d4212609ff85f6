//! Decaying request counts: which objects are hot enough to announce to the DHT.
//!
//! Each request adds one; counts halve every `half_life_ms`. Only objects whose count reaches
//! the threshold are announced, so DHT load follows the hot set, not the catalogue.

use std::collections::BTreeMap;

use crate::content::ObjectId;

/// Objects tracked at most (the coldest are forgotten first).
pub const MAX_TRACKED: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Count {
    value: f64,
    at: u64,
}

/// Decaying per-object request counter.
pub struct HotSet {
    half_life_ms: u64,
    threshold: f64,
    counts: BTreeMap<ObjectId, Count>,
    /// No sweep before this instant (one every half-life is enough).
    next_sweep: u64,
}

impl HotSet {
    pub fn new(half_life_ms: u64, threshold: f64) -> Self {
        HotSet {
            half_life_ms: half_life_ms.max(1),
            threshold,
            counts: BTreeMap::new(),
            next_sweep: 0,
        }
    }

    fn decayed(&self, c: Count, now: u64) -> f64 {
        let dt = now.saturating_sub(c.at) as f64;
        c.value * (0.5f64).powf(dt / self.half_life_ms as f64)
    }

    /// Counts one request; returns true when this request makes the object hot.
    pub fn record(&mut self, object: ObjectId, now: u64) -> bool {
        let before = self.count(&object, now);
        let after = before + 1.0;
        self.counts.insert(
            object,
            Count {
                value: after,
                at: now,
            },
        );
        if self.counts.len() > MAX_TRACKED {
            self.forget_coldest(now);
        }
        before < self.threshold && after >= self.threshold
    }

    pub fn count(&self, object: &ObjectId, now: u64) -> f64 {
        self.counts
            .get(object)
            .map(|c| self.decayed(*c, now))
            .unwrap_or(0.0)
    }

    /// Forgets objects whose count decayed below a sixteenth of the threshold: they are as
    /// good as never requested, and a node that keeps them grows with everything it ever
    /// fetched or served (up to [`MAX_TRACKED`]).
    pub fn sweep(&mut self, now: u64) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + self.half_life_ms;
        let floor = self.threshold / 16.0;
        let half_life = self.half_life_ms as f64;
        self.counts.retain(|_, c| {
            let dt = now.saturating_sub(c.at) as f64;
            c.value * (0.5f64).powf(dt / half_life) >= floor
        });
    }

    /// Objects tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_hot(&self, object: &ObjectId, now: u64) -> bool {
        self.count(object, now) >= self.threshold
    }

    /// Currently hot objects.
    pub fn hot(&self, now: u64) -> Vec<ObjectId> {
        self.counts
            .iter()
            .filter(|(_, c)| self.decayed(**c, now) >= self.threshold)
            .map(|(id, _)| *id)
            .collect()
    }

    fn forget_coldest(&mut self, now: u64) {
        let mut all: Vec<(f64, ObjectId)> = self
            .counts
            .iter()
            .map(|(id, c)| (self.decayed(*c, now), *id))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, id) in all.into_iter().take(MAX_TRACKED / 4) {
            self.counts.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn becomes_hot_then_cools() {
        let mut h = HotSet::new(1000, 2.5);
        let id = ObjectId([9; 32]);
        assert!(!h.record(id, 0));
        assert!(!h.record(id, 10));
        assert!(h.record(id, 20));
        assert!(h.is_hot(&id, 20));
        assert!(!h.is_hot(&id, 5000));
        // Spread-out requests never make it hot.
        let cold = ObjectId([1; 32]);
        for i in 0..10 {
            assert!(!h.record(cold, i * 10_000));
        }
    }

    #[test]
    fn cold_objects_are_forgotten() {
        let mut h = HotSet::new(1000, 2.5);
        for i in 0..100u8 {
            h.record(ObjectId([i; 32]), 0);
        }
        h.record(ObjectId([200; 32]), 4_000);
        h.record(ObjectId([200; 32]), 4_000);
        h.record(ObjectId([200; 32]), 4_000);
        // Four half-lives later the single requests are at 1/16, under a sixteenth of the
        // threshold; the object requested three times just now stays.
        h.sweep(4_000);
        assert_eq!(h.len(), 1);
        assert!(h.is_hot(&ObjectId([200; 32]), 4_000));
    }
}

//! Rendezvous (highest-random-weight) hashing: which seeders hold which object.

use crate::content::{ObjectId, sha256};
use crate::peer::PeerRef;

/// The `replication` seeders responsible for `object`, best first.
pub fn seeders_for<'a, P: PeerRef>(
    object: &ObjectId,
    seeders: impl IntoIterator<Item = &'a P>,
    replication: usize,
) -> Vec<&'a P> {
    let mut scored: Vec<([u8; 32], &P)> = seeders
        .into_iter()
        .map(|p| {
            let mut buf = Vec::with_capacity(64);
            buf.extend_from_slice(&object.0);
            buf.extend_from_slice(&p.key().0);
            (sha256(&buf), p)
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(replication)
        .map(|(_, p)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ObjectId;

    #[test]
    fn stable_and_spread() {
        let seeders: Vec<u32> = (0..5).collect();
        let mut firsts = std::collections::BTreeMap::new();
        for i in 0..200u32 {
            let id = ObjectId(sha256(&i.to_le_bytes()));
            let picked = seeders_for(&id, &seeders, 2);
            assert_eq!(picked.len(), 2);
            assert_ne!(picked[0], picked[1]);
            assert_eq!(picked, seeders_for(&id, &seeders, 2));
            *firsts.entry(*picked[0]).or_insert(0) += 1;
        }
        assert_eq!(firsts.len(), 5);
        // Removing a seeder only moves the objects it held.
        let fewer: Vec<u32> = (0..4).collect();
        for i in 0..200u32 {
            let id = ObjectId(sha256(&i.to_le_bytes()));
            let before = *seeders_for(&id, &seeders, 1)[0];
            if before != 4 {
                assert_eq!(*seeders_for(&id, &fewer, 1)[0], before);
            }
        }
    }
}

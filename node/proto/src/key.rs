//! The 256-bit Kademlia key space: keys of peers and objects, XOR distance, bucket indices.

use bincode::{Decode, Encode};

use crate::content::{ObjectId, sha256};

/// A point in the DHT key space.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Encode, Decode)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// Key of a peer, from its canonical bytes.
    pub fn for_peer_bytes(bytes: &[u8]) -> Key {
        Key(sha256(bytes))
    }

    /// Key under which providers of an object are stored.
    pub fn for_object(id: &ObjectId) -> Key {
        Key(id.0)
    }

    /// XOR distance, comparable as a big-endian number.
    pub fn distance(&self, other: &Key) -> Distance {
        let mut d = [0u64; 4];
        for (i, word) in d.iter_mut().enumerate() {
            let at = 8 * i;
            let a = u64::from_be_bytes(self.0[at..at + 8].try_into().unwrap_or_default());
            let b = u64::from_be_bytes(other.0[at..at + 8].try_into().unwrap_or_default());
            *word = a ^ b;
        }
        Distance(d)
    }

    /// Index of the k-bucket `other` falls in (0 = farthest half), or None for the key itself.
    pub fn bucket_index(&self, other: &Key) -> Option<usize> {
        let d = self.distance(other);
        let mut zeros = 0usize;
        for word in d.0 {
            if word == 0 {
                zeros += 64;
            } else {
                zeros += word.leading_zeros() as usize;
                return Some(zeros);
            }
        }
        None
    }
}

/// XOR distance between two keys as four big-endian words: compares as the 256-bit number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Distance(pub [u64; 4]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_and_buckets() {
        let a = Key([0; 32]);
        let mut b = Key([0; 32]);
        b.0[0] = 0x80;
        assert_eq!(a.bucket_index(&b), Some(0));
        let mut c = Key([0; 32]);
        c.0[31] = 1;
        assert_eq!(a.bucket_index(&c), Some(255));
        assert_eq!(a.bucket_index(&a), None);
        assert!(a.distance(&c) < a.distance(&b));
    }
}

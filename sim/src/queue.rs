//! The event queue: a binary heap ordered by (time, class, sequence number within the class).
//!
//! Each class numbers its own events, so the order of churn, workload and fault events does not
//! depend on how many protocol events a baseline produced: every baseline sees the same workload.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Event classes, in the order they run within one millisecond.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    Fault = 0,
    Churn = 1,
    Workload = 2,
    Protocol = 3,
}

struct Entry<E> {
    at: u64,
    class: u8,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap pops the earliest first.
        (other.at, other.class, other.seq).cmp(&(self.at, self.class, self.seq))
    }
}

/// Deterministic discrete-event queue.
pub struct Queue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: [u64; 4],
    pub now: u64,
    pub popped: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Queue<E> {
    pub fn new() -> Self {
        Queue {
            heap: BinaryHeap::with_capacity(1 << 16),
            seq: [0; 4],
            now: 0,
            popped: 0,
        }
    }

    /// Schedules `event` at `at` (never before now).
    pub fn push(&mut self, at: u64, class: Class, event: E) {
        let c = class as usize;
        self.seq[c] += 1;
        self.heap.push(Entry {
            at: at.max(self.now),
            class: c as u8,
            seq: self.seq[c],
            event,
        });
    }

    /// The next event if it is due by `until`; advances the clock.
    pub fn pop_until(&mut self, until: u64) -> Option<E> {
        if self.heap.peek()?.at > until {
            return None;
        }
        let e = self.heap.pop()?;
        self.now = e.at;
        self.popped += 1;
        Some(e.event)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

//! The event queue, ordered by (time, class, sequence number within the class).
//!
//! Each class numbers its own events, so the order of churn, workload and fault events does not
//! depend on how many protocol events a baseline produced: every baseline sees the same workload.
//!
//! A calendar of one bucket per millisecond over the next [`HORIZON_MS`], each bucket a FIFO per
//! class (events of one class and millisecond are pushed in sequence order, so FIFO is that
//! order), and a binary heap for events further ahead, moved into the calendar as it nears them.
//! Nearly every protocol event falls within the horizon, and a push or pop there is O(1).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// Event classes, in the order they run within one millisecond.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    Fault = 0,
    Churn = 1,
    Workload = 2,
    Protocol = 3,
}

const CLASSES: usize = 4;
/// Span of the calendar, in ms (a power of two).
const HORIZON_MS: u64 = 1 << 16;

struct Far<E> {
    at: u64,
    class: u8,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Far<E> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<E> Eq for Far<E> {}
impl<E> PartialOrd for Far<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Far<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap pops the earliest first.
        (other.at, other.class, other.seq).cmp(&(self.at, self.class, self.seq))
    }
}

/// Deterministic discrete-event queue.
pub struct Queue<E> {
    /// `buckets[t % HORIZON_MS][class]` holds the events due at `t`, for `now <= t <
    /// horizon_end <= now + HORIZON_MS`.
    buckets: Vec<[VecDeque<E>; CLASSES]>,
    /// Events in the calendar.
    near: usize,
    /// Every event due before this is in the calendar; the rest are in `far`.
    horizon_end: u64,
    far: BinaryHeap<Far<E>>,
    seq: [u64; CLASSES],
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
            buckets: (0..HORIZON_MS).map(|_| Default::default()).collect(),
            near: 0,
            horizon_end: HORIZON_MS,
            far: BinaryHeap::new(),
            seq: [0; CLASSES],
            now: 0,
            popped: 0,
        }
    }

    /// Schedules `event` at `at` (never before now).
    pub fn push(&mut self, at: u64, class: Class, event: E) {
        let c = class as usize;
        self.seq[c] += 1;
        let at = at.max(self.now);
        if at < self.horizon_end {
            self.buckets[(at % HORIZON_MS) as usize][c].push_back(event);
            self.near += 1;
        } else {
            self.far.push(Far {
                at,
                class: c as u8,
                seq: self.seq[c],
                event,
            });
        }
    }

    /// Moves far events due before the new horizon into the calendar, in (time, class, seq)
    /// order, so each bucket's FIFOs stay in sequence order.
    fn advance_horizon(&mut self, to: u64) {
        self.horizon_end = to;
        while self.far.peek().is_some_and(|f| f.at < to) {
            let Some(f) = self.far.pop() else { break };
            self.buckets[(f.at % HORIZON_MS) as usize][usize::from(f.class)].push_back(f.event);
            self.near += 1;
        }
    }

    /// The next event if it is due by `until`; advances the clock (up to `until` when none is).
    pub fn pop_until(&mut self, until: u64) -> Option<E> {
        loop {
            if self.near == 0 {
                // Jump straight to the next far event.
                let next = self.far.peek()?.at;
                if next > until {
                    return None;
                }
                self.now = self.now.max(next);
                self.advance_horizon(self.now + HORIZON_MS);
                continue;
            }
            let t = self.now;
            if t > until {
                return None;
            }
            let bucket = &mut self.buckets[(t % HORIZON_MS) as usize];
            if let Some(e) = bucket.iter_mut().find_map(VecDeque::pop_front) {
                self.near -= 1;
                self.popped += 1;
                return Some(e);
            }
            // Nothing left at `t`: step on, keeping the horizon one span ahead.
            if t + 1 > until {
                return None;
            }
            self.now = t + 1;
            if self.now + HORIZON_MS > self.horizon_end {
                self.advance_horizon(self.now + HORIZON_MS);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.near + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pops everything, returning (time, payload).
    fn drain(q: &mut Queue<u32>) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        while let Some(e) = q.pop_until(u64::MAX) {
            out.push((q.now, e));
        }
        out
    }

    #[test]
    fn orders_by_time_then_class_then_push_order_across_the_horizon() {
        let mut q = Queue::new();
        let far = 3 * HORIZON_MS + 5;
        q.push(far, Class::Protocol, 1);
        q.push(far, Class::Fault, 2);
        q.push(10, Class::Protocol, 3);
        q.push(10, Class::Churn, 4);
        q.push(10, Class::Protocol, 5);
        q.push(HORIZON_MS - 1, Class::Workload, 6);
        q.push(HORIZON_MS, Class::Workload, 7);
        assert_eq!(q.len(), 7);
        assert_eq!(q.pop_until(9), None);
        assert_eq!(q.pop_until(10), Some(4));
        assert_eq!(q.pop_until(10), Some(3));
        // Pushed while time 10 runs, a fault at 10 still runs before the rest of 10.
        q.push(0, Class::Fault, 8);
        assert_eq!(
            drain(&mut q),
            vec![
                (10, 8),
                (10, 5),
                (HORIZON_MS - 1, 6),
                (HORIZON_MS, 7),
                (far, 2),
                (far, 1)
            ]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn matches_a_sorted_reference() {
        let mut q = Queue::new();
        let mut reference = Vec::new();
        let mut x = 12345u64;
        let mut seq = [0u64; 4];
        for i in 0..5000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (x >> 33) % (5 * HORIZON_MS);
            let class = [Class::Fault, Class::Churn, Class::Workload, Class::Protocol]
                [(x >> 20) as usize % 4];
            seq[class as usize] += 1;
            q.push(at, class, i);
            reference.push((at, class as u8, seq[class as usize], i));
        }
        reference.sort();
        let want: Vec<(u64, u32)> = reference.iter().map(|r| (r.0, r.3)).collect();
        assert_eq!(drain(&mut q), want);
    }
}

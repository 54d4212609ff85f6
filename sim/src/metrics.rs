//! What a run measures: latency histograms (log-bucketed, fixed memory at any scale), byte and
//! request counters, and the rows of the time series.

use serde::Serialize;

/// Log-bucketed histogram of millisecond values: exact below 64, then 16 buckets per doubling
/// (relative error under 5%).
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB: u64 = 16;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; 64 + 40 * SUB as usize],
            total: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < 64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() as u64; // >= 6
    let mant = (v >> (exp - 4)) & (SUB - 1);
    (64 + (exp - 6) * SUB + mant) as usize
}

fn bucket_value(b: usize) -> u64 {
    if b < 64 {
        return b as u64;
    }
    let k = (b - 64) as u64;
    let exp = k / SUB + 6;
    let mant = k % SUB;
    // Midpoint of the bucket.
    ((SUB + mant) << (exp - 4)) + (1 << (exp - 4)) / 2
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        let b = bucket(v).min(self.counts.len() - 1);
        self.counts[b] += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let target = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return bucket_value(b);
            }
        }
        0
    }

    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            p50: self.quantile(0.5),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
        }
    }

    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
}

/// Byte classes, by the driver's knowledge of the network (not the core's).
pub const LOCAL: usize = 0;
pub const SAME_PREFIX: usize = 1;
pub const SAME_AS: usize = 2;
pub const OTHER_AS: usize = 3;
pub const SEEDER: usize = 4;

/// Counters over an interval (the whole measurement or one time-series step).
#[derive(Clone, Default)]
pub struct Counters {
    pub requests: u64,
    pub done: u64,
    pub failed: u64,
    /// The requester left before the fetch ended.
    pub aborted: u64,
    pub bytes: [u64; 5],
    /// Content bytes seeders sent (including chunks of fetches that later failed).
    pub seeder_egress: u64,
    pub miss_bytes: u64,
    pub miss_distinct_bytes: u64,
    /// Peer bytes from the requester's own AS / all peer bytes, over requests with a copy there.
    pub in_as_when_available: u64,
    pub peer_when_available: u64,
    pub control_msgs: u64,
    pub control_bytes: u64,
    pub chunks: u64,
    pub chunk_failures: u64,
    pub corrupt_chunks: u64,
    pub ttfb: Histogram,
    pub completion: Histogram,
}

impl Counters {
    pub fn success(&self) -> f64 {
        let n = self.done + self.failed;
        if n == 0 {
            1.0
        } else {
            self.done as f64 / n as f64
        }
    }
}

/// One row of the time series.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub baseline: String,
    pub t_min: f64,
    pub online: u64,
    pub supernodes: u64,
    pub mean_children: f64,
    pub max_children: u64,
    /// Online leaves with at least one parent that is not a seeder (or any parent).
    pub attached: f64,
    pub attached_any: f64,
    pub requests: u64,
    pub success: f64,
    pub local: u64,
    pub same_prefix: u64,
    pub same_as: u64,
    pub other_as: u64,
    pub seeder: u64,
    pub seeder_egress: u64,
    pub miss_bytes: u64,
    pub ttfb_p50: u64,
    pub ttfb_p95: u64,
    pub ttfb_p99: u64,
    pub control_bytes_per_node_s: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.05, "{p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.05, "{p99}");
        assert_eq!(h.quantile(0.0), 1);
    }
}

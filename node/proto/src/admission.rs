//! Admission control: token buckets that decide whether to serve, and the brownout that
//! answers "busy, try these" instead of dropping peers when overloaded.

/// A token bucket refilled continuously at `rate` per second up to `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    at: u64,
}

impl TokenBucket {
    pub fn new(rate_per_s: f64, burst: f64) -> Self {
        TokenBucket {
            rate_per_s,
            burst,
            tokens: burst,
            at: 0,
        }
    }

    fn refill(&mut self, now: u64) {
        let dt = now.saturating_sub(self.at) as f64 / 1000.0;
        self.tokens = (self.tokens + dt * self.rate_per_s).min(self.burst);
        self.at = now.max(self.at);
    }

    /// Takes `cost` tokens if available.
    pub fn try_take(&mut self, now: u64, cost: f64) -> bool {
        self.refill(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Fraction of the burst currently used (0 idle, 1 exhausted).
    pub fn load(&mut self, now: u64) -> f64 {
        self.refill(now);
        1.0 - self.tokens / self.burst
    }
}

/// Exponential moving average of a rate (events or bytes per second).
#[derive(Clone, Debug, Default)]
pub struct RateMeter {
    rate: f64,
    pending: f64,
    at: u64,
}

impl RateMeter {
    const WINDOW_MS: f64 = 10_000.0;

    pub fn add(&mut self, now: u64, amount: f64) {
        self.roll(now);
        self.pending += amount;
    }

    fn roll(&mut self, now: u64) {
        let dt = now.saturating_sub(self.at) as f64;
        if dt >= 1000.0 {
            let inst = self.pending / (dt / 1000.0);
            let w = (dt / Self::WINDOW_MS).min(1.0);
            self.rate = self.rate * (1.0 - w) + inst * w;
            self.pending = 0.0;
            self.at = now;
        }
    }

    pub fn rate(&mut self, now: u64) -> f64 {
        self.roll(now);
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_and_refills() {
        let mut b = TokenBucket::new(10.0, 5.0);
        for _ in 0..5 {
            assert!(b.try_take(0, 1.0));
        }
        assert!(!b.try_take(0, 1.0));
        assert!(b.try_take(200, 1.0));
        assert!(b.load(200) > 0.5);
    }

    #[test]
    fn meter_tracks_rate() {
        let mut m = RateMeter::default();
        for s in 0..60u64 {
            m.add(s * 1000, 100.0);
        }
        let r = m.rate(60_000);
        assert!((r - 100.0).abs() < 20.0, "{r}");
    }
}

//! fluentd's phi accrual failure detector (`out_forward/failure_detector.rb`), which
//! out_forward's heartbeats feed: a server whose phi passes `phi_threshold` (or whose
//! last heartbeat is older than `hard_timeout`) is detached.

/// fluentd's phi accrual failure detector (out_forward/failure_detector.rb), in seconds.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    interval: f64,
    hard_timeout: f64,
    init_gap_us: i64,
    last: f64,
    window: std::collections::VecDeque<i64>,
}

impl FailureDetector {
    const SAMPLE_SIZE: usize = 1000;

    pub fn new(interval: f64, hard_timeout: f64, now: f64) -> Self {
        let init_gap_us = (interval * 1e6) as i64;
        FailureDetector { interval, hard_timeout, init_gap_us, last: now, window: [init_gap_us].into() }
    }

    pub fn hard_timeout(&self, now: f64) -> bool {
        now - self.last > self.hard_timeout
    }

    pub fn add(&mut self, now: f64) {
        if self.window.is_empty() {
            self.window.push_back(self.init_gap_us);
        } else {
            self.window.push_back(((now - self.last) * 1e6) as i64);
            if self.window.len() > Self::SAMPLE_SIZE {
                self.window.pop_front();
            }
        }
        self.last = now;
    }

    pub fn phi(&self, now: f64) -> f64 {
        if self.window.is_empty() {
            return 0.0;
        }
        let (mut sum, mut fact) = (0i128, 0i128);
        for (i, g) in self.window.iter().enumerate() {
            sum += *g as i128 * (i as i128 + 1);
            fact += i as i128 + 1;
        }
        // Integer division, as in Ruby.
        let mean_us = sum / fact;
        let mean = mean_us as f64 / 1e6 - self.interval + 1.0;
        let t = now - self.last - self.interval + 1.0;
        (1.0 / std::f64::consts::LN_10) * t / mean
    }

    pub fn sample_size(&self) -> usize {
        self.window.len()
    }

    pub fn clear(&mut self) {
        self.window.clear();
        self.last = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_grows_with_silence_as_in_fluentd() {
        // Heartbeats every second, then silence.
        let mut f = FailureDetector::new(1.0, 60.0, 0.0);
        for t in 1..=20 {
            f.add(t as f64);
        }
        // Ruby: mean = 1.0 - 1 + 1 = 1.0; phi = (1/ln 10) * (t - last - 1 + 1) / 1.0
        assert!((f.phi(21.0) - 1.0 / std::f64::consts::LN_10).abs() < 1e-9);
        assert!(f.phi(20.0 + 40.0) > 16.0);
        assert!(f.phi(20.0 + 30.0) < 16.0);
        assert!(!f.hard_timeout(80.0) && f.hard_timeout(80.5));
        f.clear();
        assert_eq!(f.sample_size(), 0);
        f.add(100.0);
        assert_eq!(f.sample_size(), 1);
    }
}

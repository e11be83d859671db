//! Percentiles from per-call latencies (microseconds), computed the same way
//! for Rust measurements and pgbench's per-transaction logs.

/// Summary of one set of latencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Calls counted.
    pub count: usize,
    /// Median, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// Longest, microseconds.
    pub max_us: f64,
}

/// Nearest-rank percentiles of `latencies_us` (sorted in place).
pub fn summarize(latencies_us: &mut [u64]) -> Summary {
    latencies_us.sort_unstable();
    let rank = |p: f64| -> f64 {
        if latencies_us.is_empty() {
            return f64::NAN;
        }
        let n = latencies_us.len();
        let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
        latencies_us[i] as f64
    };
    Summary {
        count: latencies_us.len(),
        p50_us: rank(0.50),
        p99_us: rank(0.99),
        max_us: latencies_us.last().map_or(f64::NAN, |&v| v as f64),
    }
}

#[cfg(test)]
mod unit {
    use super::summarize;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let s = summarize(&mut v);
        assert_eq!(
            (s.count, s.p50_us, s.p99_us, s.max_us),
            (100, 50.0, 99.0, 100.0)
        );
        let s = summarize(&mut [7]);
        assert_eq!((s.p50_us, s.p99_us), (7.0, 7.0));
    }
}

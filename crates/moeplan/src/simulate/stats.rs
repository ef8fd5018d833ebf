//! Streaming statistics with flat memory: the mean exactly, percentiles
//! from a log-spaced histogram (buckets 0.5% wide from 1 µs to 10^6 s, so
//! any percentile is within 0.5% of the true sample quantile).

use serde::Serialize;

/// Buckets per factor of ten.
const PER_DECADE: f64 = 460.0;
/// The smallest value resolved (seconds); below it everything is one bucket.
const FLOOR: f64 = 1e-6;
/// Decades covered above `FLOOR`.
const DECADES: f64 = 12.0;

/// A histogram of non-negative values, each with a weight.
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    counts: Vec<f64>,
    total: f64,
    sum: f64,
    max: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0.0; (PER_DECADE * DECADES) as usize + 2],
            total: 0.0,
            sum: 0.0,
            max: 0.0,
        }
    }
}

/// Mean and percentiles of one figure (in milliseconds in output).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Summary {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Histogram {
    fn bucket(x: f64) -> usize {
        if x <= FLOOR {
            return 0;
        }
        let i = ((x / FLOOR).log10() * PER_DECADE) as usize + 1;
        i.min((PER_DECADE * DECADES) as usize + 1)
    }

    /// The value a bucket stands for (its geometric middle).
    fn value(i: usize) -> f64 {
        if i == 0 {
            return 0.0;
        }
        FLOOR * 10f64.powf((i as f64 - 0.5) / PER_DECADE)
    }

    /// Adds `x` with weight `w` (e.g. one step's gap, for each of its tokens).
    pub(crate) fn add(&mut self, x: f64, w: f64) {
        if w <= 0.0 || !x.is_finite() {
            return;
        }
        self.counts[Self::bucket(x)] += w;
        self.total += w;
        self.sum += x * w;
        self.max = self.max.max(x);
    }

    /// The mean (exact).
    pub(crate) fn mean(&self) -> f64 {
        if self.total > 0.0 {
            self.sum / self.total
        } else {
            0.0
        }
    }

    /// The `q` quantile (0..1), never above the largest value seen.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let target = q * self.total;
        let mut seen = 0.0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target && *c > 0.0 {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }

    /// Mean, P50, P90, P99, scaled by `unit` (1000 for milliseconds).
    pub(crate) fn summary(&self, unit: f64) -> Summary {
        Summary {
            mean: self.mean() * unit,
            p50: self.quantile(0.5) * unit,
            p90: self.quantile(0.9) * unit,
            p99: self.quantile(0.99) * unit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles of 1..=10000 ms are within 0.5% of the exact ones.
    #[test]
    fn percentiles_within_half_a_percent() {
        let mut h = Histogram::default();
        for i in 1..=10_000 {
            h.add(i as f64 / 1000.0, 1.0);
        }
        for (q, exact) in [(0.5, 5.0), (0.9, 9.0), (0.99, 9.9)] {
            let got = h.quantile(q);
            assert!((got / exact - 1.0).abs() < 0.005, "q{q}: {got} vs {exact}");
        }
        assert!((h.mean() - 5.0005).abs() < 1e-9);
    }
}

//! A small deterministic random source (SplitMix64) and the draws the
//! traffic needs: uniform, exponential, gamma (Marsaglia–Tsang), lognormal
//! (Box–Muller). Same seed, same sequence, on every platform.

/// SplitMix64: 64 bits of state, passes BigCrush, trivially seedable.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1): never exactly 0, so logarithms stay finite.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Exponential with mean `mean`.
    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.uniform().ln()
    }

    /// Standard normal (Box–Muller; one of the pair is used).
    pub(crate) fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Gamma of shape `k` and scale `theta` (mean k·θ, CV 1/√k), by
    /// Marsaglia and Tsang; shapes below 1 through the boost `U^(1/k)`.
    pub fn gamma(&mut self, k: f64, theta: f64) -> f64 {
        if k < 1.0 {
            let boost = self.uniform().powf(1.0 / k);
            return self.gamma(k + 1.0, theta) * boost;
        }
        let d = k - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v * theta;
            }
        }
    }

    /// Lognormal with the given mean and coefficient of variation.
    pub fn lognormal(&mut self, mean: f64, cv: f64) -> f64 {
        let sigma2 = (1.0 + cv * cv).ln();
        let mu = mean.ln() - sigma2 / 2.0;
        (mu + sigma2.sqrt() * self.normal()).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(mut draw: impl FnMut() -> f64) -> (f64, f64) {
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| draw()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        (mean, var.sqrt() / mean)
    }

    /// Each draw has the mean and CV it is asked for (within 1–2% on 200k draws).
    #[test]
    fn draws_have_their_moments() {
        let mut r = Rng::new(7);
        let (m, cv) = moments(|| r.exponential(2.0));
        assert!(
            (m / 2.0 - 1.0).abs() < 0.01 && (cv - 1.0).abs() < 0.02,
            "{m} {cv}"
        );
        // Gamma with CV 2: shape 1/4, scale mean/shape.
        let (m, cv) = moments(|| r.gamma(0.25, 4.0));
        assert!(
            (m - 1.0).abs() < 0.03 && (cv - 2.0).abs() < 0.06,
            "{m} {cv}"
        );
        let (m, cv) = moments(|| r.lognormal(1000.0, 0.5));
        assert!(
            (m / 1000.0 - 1.0).abs() < 0.01 && (cv - 0.5).abs() < 0.02,
            "{m} {cv}"
        );
    }

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        assert!((0..100).all(|_| a.uniform() == b.uniform()));
        assert_ne!(Rng::new(1).uniform(), Rng::new(2).uniform());
    }
}

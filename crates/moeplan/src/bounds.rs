//! The physical bounds every input is checked against: one table, used by
//! the spec readers and the CLI flags alike, each bound with why it is
//! there. A value outside is bad input (exit 2) naming the bound, never a
//! confident figure computed from nonsense.

/// A closed range an input must lie in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    /// What the value is, for the message.
    pub what: &'static str,
    /// Smallest accepted value.
    pub min: f64,
    /// Largest accepted value.
    pub max: f64,
    /// Why these are the bounds.
    pub why: &'static str,
}

impl Range {
    /// `x` when it is finite and within the range; otherwise the message
    /// that names the bound.
    pub fn check(&self, x: f64) -> Result<f64, String> {
        if x.is_finite() && x >= self.min && x <= self.max {
            Ok(x)
        } else {
            Err(format!(
                "{x} is outside [{}, {}], the range of {}",
                self.min, self.max, self.what
            ))
        }
    }
}

/// A compute or bandwidth efficiency (fraction of the datasheet peak).
pub const EFFICIENCY: Range = Range {
    what: "an efficiency (fraction of peak)",
    min: 0.01,
    max: 1.0,
    why: "measured kernels reach 0.05-0.95 of peak; below 1% every figure is an artefact of the input",
};

/// The share of GPU memory an engine may use.
pub const MEMORY_FRACTION: Range = Range {
    what: "a memory fraction",
    min: 0.05,
    max: 1.0,
    why: "engines take 0.8-0.95 of memory; below 5% no weights fit",
};

/// The power-law exponent of expert popularity.
pub const ROUTING_SKEW: Range = Range {
    what: "a routing skew (power-law exponent, 0 = uniform)",
    min: 0.0,
    max: 4.0,
    why: "measured MoE routing fits exponents below 1.5; at 4 one expert takes almost every token",
};

/// The share of prompt tokens whose KV a prefix cache already holds.
pub const CACHE_HIT_RATE: Range = Range {
    what: "a prefix-cache hit rate (fraction of prompt tokens)",
    min: 0.0,
    max: 0.99,
    why: "a request's last prompt token is always computed (its logits start the output), so a hit rate of 1 is impossible; production reports 40-60% (DeepSeek's 56.3%), and above 99% the prefill cost is an artefact of the input",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_reject_non_finite_and_outside_values() {
        assert_eq!(EFFICIENCY.check(0.6), Ok(0.6));
        for x in [1e-300, 0.0, -0.5, 1.01, f64::NAN, f64::INFINITY] {
            let e = EFFICIENCY.check(x).expect_err("outside");
            assert!(e.contains("[0.01, 1]"), "{e}");
        }
        assert!(ROUTING_SKEW.check(f64::NAN).is_err());
        assert!(ROUTING_SKEW.check(-1.0).is_err());
        assert_eq!(ROUTING_SKEW.check(0.0), Ok(0.0));
        assert_eq!(CACHE_HIT_RATE.check(0.0), Ok(0.0));
        assert_eq!(CACHE_HIT_RATE.check(0.56), Ok(0.56));
        assert!(CACHE_HIT_RATE.check(1.0).is_err());
        assert!(CACHE_HIT_RATE.check(-0.1).is_err());
    }
}

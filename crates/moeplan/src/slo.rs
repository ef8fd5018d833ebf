//! Service levels against a deployment's figures: one rule per level, the
//! one evaluation the planner, the audit and `--fix` share.
//!
//! Latency and memory are judged at the worst case a scenario states (the
//! longest prompt and output), throughput at its mean lengths, the expert
//! load imbalance as the estimate applies it, the GPUs against the budget.

use crate::spec::scenario::Slo;
use serde::{Serialize, Serializer};

/// A service level (and the GPU budget, which the planner treats as one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Memory of the fullest GPU ≤ a fraction of its capacity.
    Memory,
    /// Mean time to first token ≤ a limit.
    Ttft,
    /// Mean time per output token ≤ a limit.
    Tpot,
    /// Output tokens/s per GPU ≥ a floor.
    ThroughputPerGpu,
    /// Output tokens/s per request ≥ a floor.
    ThroughputPerUser,
    /// Expert load imbalance (max/mean − 1) ≤ a limit.
    LoadImbalance,
    /// GPUs ≤ the budget.
    Gpus,
}

/// Whether a level bounds its figure from above or below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The figure must not exceed the limit.
    AtMost,
    /// The figure must reach the limit.
    AtLeast,
}

impl Level {
    /// Every level, in the order violations are listed.
    pub const ALL: [Level; 7] = [
        Level::Memory,
        Level::Ttft,
        Level::Tpot,
        Level::ThroughputPerGpu,
        Level::ThroughputPerUser,
        Level::LoadImbalance,
        Level::Gpus,
    ];

    /// The stable name (JSON, scenario keys without their prefix).
    pub fn name(self) -> &'static str {
        match self {
            Level::Memory => "memory",
            Level::Ttft => "ttft",
            Level::Tpot => "tpot",
            Level::ThroughputPerGpu => "throughput_per_gpu",
            Level::ThroughputPerUser => "throughput_per_user",
            Level::LoadImbalance => "load_imbalance",
            Level::Gpus => "gpus",
        }
    }

    /// The unit of its limit and value.
    pub fn unit(self) -> &'static str {
        match self {
            Level::Ttft | Level::Tpot => "ms",
            Level::ThroughputPerGpu | Level::ThroughputPerUser => "output tokens/s",
            Level::Gpus => "GPUs",
            Level::Memory | Level::LoadImbalance => "fraction",
        }
    }

    /// Upper or lower bound.
    pub fn bound(self) -> Bound {
        match self {
            Level::ThroughputPerGpu | Level::ThroughputPerUser => Bound::AtLeast,
            Level::Memory | Level::Ttft | Level::Tpot | Level::LoadImbalance | Level::Gpus => {
                Bound::AtMost
            }
        }
    }

    /// The scenario key that states it (`slo.ttft`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Level::Memory => "slo.max_memory_fraction",
            Level::Ttft => "slo.ttft",
            Level::Tpot => "slo.tpot",
            Level::ThroughputPerGpu => "slo.min_throughput_per_gpu",
            Level::ThroughputPerUser => "slo.min_throughput_per_user",
            Level::LoadImbalance => "slo.max_load_imbalance",
            Level::Gpus => "hardware.gpus",
        }
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl schemars::JsonSchema for Level {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Level".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = Level::ALL.iter().map(|l| l.name()).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

/// The figures the levels judge (see the module note for which case each is at).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judged {
    /// Memory of the fullest GPU over its capacity (worst case).
    pub memory_fraction: f64,
    /// What the engine may use of that GPU over its capacity: the memory
    /// limit where the service levels state none.
    pub usable_fraction: f64,
    /// TTFT in ms (worst case).
    pub ttft_ms: f64,
    /// TPOT in ms (worst case).
    pub tpot_ms: f64,
    /// Output tokens/s per GPU (mean lengths).
    pub throughput_per_gpu: f64,
    /// Output tokens/s per request (mean lengths).
    pub throughput_per_user: f64,
    /// Expert load imbalance applied (max/mean − 1).
    pub load_imbalance: f64,
    /// GPUs of the deployment (u64: a request rate can ask for more than u32 holds).
    pub gpus: u64,
}

/// A level a deployment misses, and by how much.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Violation {
    /// The level.
    #[serde(rename = "constraint")]
    pub level: Level,
    /// Its limit.
    pub limit: f64,
    /// The deployment's figure.
    pub value: f64,
    /// The unit of both.
    pub unit: &'static str,
}

impl Violation {
    /// How far off, as a ratio ≥ 1 (the figure over the limit, or the limit
    /// over the figure for a floor).
    pub(crate) fn shortfall(&self) -> f64 {
        match self.level.bound() {
            Bound::AtLeast => self.limit / self.value.max(1e-12),
            Bound::AtMost => self.value / self.limit.max(1e-12),
        }
    }
}

impl std::fmt::Display for Violation {
    /// `ttft: 1.200 s > 1.000 s`, `throughput_per_gpu: 800.0 tokens/s < 1000.0 tokens/s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |x: f64| match self.level {
            Level::Ttft | Level::Tpot => crate::units::Seconds::from_ms(x).to_string(),
            Level::ThroughputPerGpu | Level::ThroughputPerUser => format!("{x:.1} tokens/s"),
            Level::Memory | Level::LoadImbalance => format!("{:.1}%", x * 100.0),
            Level::Gpus => format!("{x:.0} GPUs"),
        };
        let op = match self.level.bound() {
            Bound::AtMost => ">",
            Bound::AtLeast => "<",
        };
        write!(
            f,
            "{}: {} {op} {}",
            self.level.name(),
            show(self.value),
            show(self.limit)
        )
    }
}

/// The limit a scenario sets for a level, in the level's unit (None: no
/// limit; for memory, `evaluate` then holds the deployment to what its
/// engine may use, `Judged::usable_fraction`).
pub fn limit(slo: &Slo, level: Level, gpu_budget: Option<u64>) -> Option<f64> {
    match level {
        Level::Memory => slo.max_memory_fraction.map(|f| f.value()),
        Level::Ttft => slo.ttft.map(|t| t.ms()),
        Level::Tpot => slo.tpot.map(|t| t.ms()),
        Level::ThroughputPerGpu => slo.min_throughput_per_gpu.map(|r| r.0),
        Level::ThroughputPerUser => slo.min_throughput_per_user.map(|r| r.0),
        Level::LoadImbalance => slo.max_load_imbalance,
        Level::Gpus => gpu_budget.map(|g| g as f64),
    }
}

/// The figure a level judges.
pub fn value(f: &Judged, level: Level) -> f64 {
    match level {
        Level::Memory => f.memory_fraction,
        Level::Ttft => f.ttft_ms,
        Level::Tpot => f.tpot_ms,
        Level::ThroughputPerGpu => f.throughput_per_gpu,
        Level::ThroughputPerUser => f.throughput_per_user,
        Level::LoadImbalance => f.load_imbalance,
        Level::Gpus => f.gpus as f64,
    }
}

/// Every level the figures miss, in `Level::ALL` order.
pub fn evaluate(slo: &Slo, f: &Judged, gpu_budget: Option<u64>) -> Vec<Violation> {
    Level::ALL
        .iter()
        .filter_map(|&level| {
            let limit = match level {
                // No stated limit: what the engine holds.
                Level::Memory => limit(slo, level, gpu_budget).unwrap_or(f.usable_fraction),
                _ => limit(slo, level, gpu_budget)?,
            };
            let value = value(f, level);
            let missed = match level.bound() {
                Bound::AtMost => value > limit,
                Bound::AtLeast => value < limit,
            };
            missed.then_some(Violation {
                level,
                limit,
                value,
                unit: level.unit(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Fraction;
    use crate::units::{Seconds, TokensPerSecond};

    fn judged() -> Judged {
        Judged {
            memory_fraction: 0.5,
            usable_fraction: 0.9,
            ttft_ms: 200.0,
            tpot_ms: 20.0,
            throughput_per_gpu: 1000.0,
            throughput_per_user: 50.0,
            load_imbalance: 0.05,
            gpus: 8,
        }
    }

    #[test]
    fn every_level_is_judged_by_its_own_rule() {
        let slo = Slo {
            ttft: Some(Seconds(0.1)),
            tpot: Some(Seconds(0.03)),
            min_throughput_per_gpu: Some(TokensPerSecond(2000.0)),
            min_throughput_per_user: Some(TokensPerSecond(60.0)),
            max_memory_fraction: Some(Fraction::known(0.4)),
            max_load_imbalance: Some(0.01),
            percentiles: Vec::new(),
        };
        let v = evaluate(&slo, &judged(), Some(4));
        let levels: Vec<Level> = v.iter().map(|x| x.level).collect();
        // TPOT 20 ms meets 30 ms; everything else misses.
        assert_eq!(
            levels,
            vec![
                Level::Memory,
                Level::Ttft,
                Level::ThroughputPerGpu,
                Level::ThroughputPerUser,
                Level::LoadImbalance,
                Level::Gpus
            ]
        );
        // 2000 required, 1000 reached: 2× short; TTFT 200 vs 100: 2× over.
        assert_eq!(v[2].shortfall(), 2.0);
        assert_eq!(v[1].shortfall(), 2.0);
        assert_eq!(v[3].unit, "output tokens/s");
        assert_eq!(v[1].to_string(), "ttft: 200.0 ms > 100.0 ms");
        assert_eq!(
            v[2].to_string(),
            "throughput_per_gpu: 1000.0 tokens/s < 2000.0 tokens/s"
        );
    }

    #[test]
    fn no_limit_no_violation() {
        let slo = Slo {
            max_memory_fraction: Some(Fraction::known(0.9)),
            ..Slo::default()
        };
        assert!(evaluate(&slo, &judged(), None).is_empty());
        // Without a stated memory limit, the engine's holds: 50% of the GPU
        // used of the 90% it may use meets it, 95% does not.
        assert!(evaluate(&Slo::default(), &judged(), None).is_empty());
        let full = Judged {
            memory_fraction: 0.95,
            ..judged()
        };
        let v = evaluate(&Slo::default(), &full, None);
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].level, v[0].limit, v[0].value),
            (Level::Memory, 0.9, 0.95)
        );
    }
}

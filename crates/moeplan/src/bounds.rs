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
    /// The unit the value is in (base units: "B", "B/s", "FLOP/s", "s"),
    /// shown with an SI prefix; empty for a plain number.
    pub unit: &'static str,
}

impl Range {
    /// `x` when it is finite and within the range; otherwise the message
    /// that names the bound.
    pub fn check(&self, x: f64) -> Result<f64, String> {
        if x.is_finite() && x >= self.min && x <= self.max {
            Ok(x)
        } else {
            Err(format!(
                "{} is outside [{}, {}], the range of {}",
                self.show(x),
                self.show(self.min),
                self.show(self.max),
                self.what
            ))
        }
    }

    /// `n` when it lies within the range (a count or size: the message
    /// writes it whole, however large).
    pub fn check_count(&self, n: u64) -> Result<u64, String> {
        match self.check(n as f64) {
            Ok(_) => Ok(n),
            Err(_) => Err(format!(
                "{n} is outside [{}, {}], the range of {}",
                self.show(self.min),
                self.show(self.max),
                self.what
            )),
        }
    }

    /// The hint of a value outside: the accepted range and why.
    pub fn hint(&self) -> String {
        format!(
            "moeplan accepts {} from {} to {}: {}",
            self.what,
            self.show(self.min),
            self.show(self.max),
            self.why
        )
    }

    /// A value in the range's unit: a plain number, or with an SI prefix
    /// ("100 TB"); scientific notation beyond the prefixes ("1e30 B").
    fn show(&self, x: f64) -> String {
        const UP: [(f64, &str); 6] = [
            (1e15, "P"),
            (1e12, "T"),
            (1e9, "G"),
            (1e6, "M"),
            (1e3, "k"),
            (1.0, ""),
        ];
        const DOWN: [(f64, &str); 3] = [(1e-3, "m"), (1e-6, "µ"), (1e-9, "n")];
        if self.unit.is_empty() {
            // Plain numbers whole or decimal ("1048576", "0.000001"), very
            // large or small ones in scientific notation ("1e300").
            let plain = x == 0.0 || (1e-6..1e16).contains(&x.abs());
            return if plain {
                format!("{x}")
            } else {
                format!("{x:e}")
            };
        }
        if x == 0.0 {
            return format!("0 {}", self.unit);
        }
        let abs = x.abs();
        // Seconds take no prefix above one: "86400 s", not "86.4 ks".
        let up = if self.unit == "s" { &UP[5..] } else { &UP[..] };
        let prefixes = if abs < 1.0 { &DOWN[..] } else { up };
        match prefixes.iter().find(|(s, _)| abs >= *s) {
            Some((scale, prefix)) if x.is_finite() && abs < 1e18 => {
                format!("{} {prefix}{}", round4(x / scale), self.unit)
            }
            _ => format!("{} {}", scientific(x), self.unit),
        }
    }
}

/// `x` in scientific notation to four significant figures ("1e39", "2.5e-9").
fn scientific(x: f64) -> String {
    let s = format!("{x:.3e}");
    match s.split_once('e') {
        Some((mantissa, exp)) if mantissa.contains('.') => {
            format!(
                "{}e{exp}",
                mantissa.trim_end_matches('0').trim_end_matches('.')
            )
        }
        _ => s,
    }
}

/// `x` rounded to four significant figures, for messages.
fn round4(x: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// A compute or bandwidth efficiency (fraction of the datasheet peak).
pub const EFFICIENCY: Range = Range {
    what: "an efficiency (fraction of peak)",
    min: 0.01,
    max: 1.0,
    why: "measured kernels reach 0.05-0.95 of peak; below 1% every figure is an artefact of the input",
    unit: "",
};

/// The share of GPU memory an engine may use.
pub const MEMORY_FRACTION: Range = Range {
    what: "a memory fraction",
    min: 0.05,
    max: 1.0,
    why: "engines take 0.8-0.95 of memory; below 5% no weights fit",
    unit: "",
};

/// The power-law exponent of expert popularity.
pub const ROUTING_SKEW: Range = Range {
    what: "a routing skew (power-law exponent, 0 = uniform)",
    min: 0.0,
    max: 4.0,
    why: "measured MoE routing fits exponents below 1.5; at 4 one expert takes almost every token",
    unit: "",
};

// Workloads and service levels, from flags and scenario files alike.

/// A prompt or output length, in tokens.
pub const TOKENS: Range = Range {
    what: "a prompt or output length (tokens)",
    min: 1.0,
    max: 16_777_216.0,
    why: "published context windows reach 10 million tokens (Llama 4 Scout)",
    unit: "",
};

/// Requests in flight on one replica (or one disaggregated deployment).
pub const CONCURRENCY: Range = Range {
    what: "requests in flight",
    min: 1.0,
    max: 1_048_576.0,
    why: "engines hold at most a few thousand requests per GPU; a million is beyond any replica",
    unit: "",
};

/// Workers of a disaggregated pool (each at least one GPU).
pub const WORKERS: Range = Range {
    what: "workers of a pool",
    min: 1.0,
    max: 10_000_000.0,
    why: "each worker holds at least one GPU, and the largest GPU fleets hold about a million",
    unit: "",
};

/// A measured mean latency (TTFT or TPOT) of a benchmark run.
pub const MEASURED_LATENCY: Range = Range {
    what: "a measured mean latency",
    min: 1e-6,
    max: 86_400.0,
    why: "no GPU step is faster than a microsecond, and a benchmark whose mean latency is above a day measured something else",
    unit: "s",
};

/// Requests a simulation sends.
pub const SIMULATED_REQUESTS: Range = Range {
    what: "requests to simulate",
    min: 1.0,
    max: 10_000_000.0,
    why: "benchmarks send thousands of requests; ten million take about half a minute to simulate, and percentiles have long settled",
    unit: "",
};

/// Requests per second a deployment must serve.
pub const REQUEST_RATE: Range = Range {
    what: "a request rate (requests/s)",
    min: 1e-6,
    max: 1e6,
    why: "the busiest public services take about 100,000 requests/s in all, over many deployments",
    unit: "",
};

/// A throughput service level (output tokens/s per GPU or per user).
pub const TOKEN_RATE_LEVEL: Range = Range {
    what: "a throughput level (output tokens/s)",
    min: 1e-6,
    max: 1e8,
    why: "a GPU decodes at most a few hundred thousand tokens per second; a hundred million is a unit slip",
    unit: "",
};

/// A latency service level (TTFT, TPOT, end to end, percentiles).
pub const LATENCY_LIMIT: Range = Range {
    what: "a latency limit",
    min: 1e-6,
    max: 86_400.0,
    why: "no GPU step is faster than a microsecond, and a limit above a day is no service level",
    unit: "s",
};

/// The GPUs a plan may use.
pub const GPU_BUDGET: Range = Range {
    what: "a GPU budget",
    min: 1.0,
    max: 10_000_000.0,
    why: "the largest GPU fleets hold about a million GPUs; a replica spans at most 1,024 and more replicas are counted, not searched",
    unit: "",
};

// GPU specs. Each bound spans what hardware exists by orders of magnitude:
// beyond it, a figure is a typo or a unit slip ("1e30 GB", "1e-9 TFLOP/s"),
// and every number computed from it would be confident nonsense.

/// The memory of one GPU.
pub(crate) const GPU_MEMORY: Range = Range {
    what: "the memory of one GPU",
    min: 1e9,
    max: 1e14,
    why: "GPUs carry 16-288 GB; 100 TB is 300 times the largest",
    unit: "B",
};

/// A dense tensor-core peak, any precision.
pub(crate) const PEAK_FLOPS: Range = Range {
    what: "a GPU's dense peak",
    min: 1e12,
    max: 1e17,
    why: "datasheet peaks run from about 100 TFLOP/s (L4, BF16) to 15 PFLOP/s (GB300, FP4)",
    unit: "FLOP/s",
};

/// The memory bandwidth of one GPU.
pub(crate) const MEMORY_BANDWIDTH: Range = Range {
    what: "a GPU's memory bandwidth",
    min: 1e9,
    max: 1e15,
    why: "GPU memory delivers 0.3-8 TB/s",
    unit: "B/s",
};

/// A scale-up or scale-out link's bandwidth per GPU and direction.
pub(crate) const LINK_BANDWIDTH: Range = Range {
    what: "a link bandwidth per GPU",
    min: 1e9,
    max: 1e15,
    why: "links carry 12.5 GB/s (100 Gb/s Ethernet) to 900 GB/s (NVLink 5) per GPU",
    unit: "B/s",
};

/// A link's small-message latency.
pub(crate) const LINK_LATENCY: Range = Range {
    what: "a link latency",
    min: 1e-7,
    max: 1e-2,
    why: "NVLink, InfiniBand and RoCE take 1-15 µs for a small message; TCP tens of µs",
    unit: "s",
};

/// GPUs in one node (NVLink domain).
pub const GPUS_PER_NODE: Range = Range {
    what: "GPUs per node",
    min: 1.0,
    max: 1024.0,
    why: "NVLink domains hold 4-72 GPUs (GB200 NVL72)",
    unit: "",
};

// Model shapes. Each bound is far above any published model, and low
// enough that the accounting stays finite and the per-layer tables small.

/// The residual width (also bounds low-rank projections, which are narrower).
pub(crate) const HIDDEN_SIZE: Range = Range {
    what: "a model width",
    min: 1.0,
    max: 1_048_576.0,
    why: "published models are at most 18,432 wide (PaLM 540B)",
    unit: "",
};

/// An MLP's or an expert's intermediate width.
pub(crate) const INTERMEDIATE_SIZE: Range = Range {
    what: "an intermediate width",
    min: 1.0,
    max: 4_194_304.0,
    why: "published MLPs are at most 73,728 wide (PaLM 540B)",
    unit: "",
};

/// The vocabulary.
pub(crate) const VOCAB_SIZE: Range = Range {
    what: "a vocabulary size",
    min: 1.0,
    max: 16_777_216.0,
    why: "published vocabularies have at most about 262,000 tokens (Gemma 3)",
    unit: "",
};

/// Attention heads (query, KV, indexer, linear-attention).
pub(crate) const HEADS: Range = Range {
    what: "a head count",
    min: 1.0,
    max: 16_384.0,
    why: "published models have at most 128 attention heads",
    unit: "",
};

/// A head's dimension.
pub(crate) const HEAD_DIM: Range = Range {
    what: "a head dimension",
    min: 1.0,
    max: 65_536.0,
    why: "published heads are 64-576 wide",
    unit: "",
};

/// Experts of a MoE layer (routed, shared, or chosen per token).
pub(crate) const EXPERTS: Range = Range {
    what: "an expert count",
    min: 1.0,
    max: 65_536.0,
    why: "published MoE models have at most 512 routed experts",
    unit: "",
};

/// The convolution window of a linear-attention layer.
pub(crate) const CONV_KERNEL: Range = Range {
    what: "a convolution window",
    min: 1.0,
    max: 1024.0,
    why: "published linear attention convolves over 4 tokens",
    unit: "",
};

/// Decoder (or vision encoder) layers.
pub(crate) const LAYERS: Range = Range {
    what: "a layer count",
    min: 1.0,
    max: 4096.0,
    why: "published models have at most a few hundred layers; beyond this a typo would allocate without bound",
    unit: "",
};

/// The share of prompt tokens whose KV a prefix cache already holds.
pub const CACHE_HIT_RATE: Range = Range {
    what: "a prefix-cache hit rate (fraction of prompt tokens)",
    min: 0.0,
    max: 0.99,
    why: "a request's last prompt token is always computed (its logits start the output), so a hit rate of 1 is impossible; production reports 40-60% (DeepSeek's 56.3%), and above 99% the prefill cost is an artefact of the input",
    unit: "",
};

// The serving layer (`calibration::ServingParams`): what `moeplan
// calibrate` fits and a profile file states. The fit's search space stops at
// these bounds, and a profile read from a file is checked against them.

/// The scheduler's and launches' time per step outside the kernels.
pub const STEP_OVERHEAD: Range = Range {
    what: "a serving layer's step overhead",
    min: 0.0,
    max: 1.0,
    why: "engines spend tens to hundreds of microseconds per step outside the kernels; a second per step is a stall, not an overhead",
    unit: "s",
};

/// The scheduler's time per running request in a step.
pub const SEQUENCE_OVERHEAD: Range = Range {
    what: "a serving layer's sequence overhead",
    min: 0.0,
    max: 1e-3,
    why: "engines spend microseconds to tens of microseconds per running request per step on the CPU; a millisecond each would make a batch of a hundred take a tenth of a second outside the kernels",
    unit: "s",
};

/// The fixed time of a request outside the steps.
pub const REQUEST_OVERHEAD: Range = Range {
    what: "a serving layer's request overhead",
    min: 0.0,
    max: 60.0,
    why: "HTTP, tokenisation and the first detokenisation take milliseconds; a minute per request is a queue the runs did not state",
    unit: "s",
};

/// Rounds of `concurrency` requests a benchmark runs.
pub const BENCHMARK_ROUNDS: Range = Range {
    what: "a benchmark's rounds of concurrency requests",
    min: 1.0,
    max: 100.0,
    why: "clients send a few to about ten times their concurrency (InferenceMAX: ten); past 100 the first round weighs under 1% of the mean TTFT, so runs cannot tell more apart, and the simulator, which sends that many rounds, would run 10,000 of them when a fit drifts to the bound (SGLang's aggregated fit did once the MoE kernels' width terms came in)",
    unit: "",
};

/// Steady-state steps a new request spends outside the steps carrying its prompt.
pub const ARRIVAL_WAIT: Range = Range {
    what: "a serving layer's arrival wait (steps)",
    min: 0.0,
    max: 1000.0,
    why: "a request waits for the step in progress and its first token's streaming, a few steps; a thousand is the whole of a long output",
    unit: "",
};

/// Steps of arrival wait per request running on the rank.
pub const ARRIVAL_WAIT_PER_REQUEST: Range = Range {
    what: "a serving layer's arrival wait per running request (steps)",
    min: 0.0,
    max: 1.0,
    why: "train.csv's stacks wait 0.003-0.5 steps more per running request (median 0.03); a whole step each would make a batch of a hundred wait a hundred steps for its first token",
    unit: "",
};

/// A ratio of measured to modelled kernel time (prefill or decode steps).
pub const KERNEL_TIME_RATIO: Range = Range {
    what: "a ratio of measured to modelled kernel time",
    min: 1e-3,
    max: 1e3,
    why: "the kernel tables put it at 1 and the fitted layers at 0.5-1.3; a factor of a thousand either way is a unit slip",
    unit: "",
};

/// The share of the kernels' fixed costs a CUDA-graph step keeps.
pub const GRAPH_FIXED_SHARE: Range = Range {
    what: "the CUDA-graph share of kernels' fixed costs",
    min: 0.0,
    max: 1.0,
    why: "a graph replays launches without the CPU: it keeps at most all of their fixed cost",
    unit: "",
};

/// Requests per rank a benchmark kept waiting above the engine's batch.
pub const HELD_SLOTS: Range = Range {
    what: "held slots (requests per rank above the engine's batch)",
    min: 0.0,
    max: 64.0,
    why: "a harness that runs its client a request or two above the engine's batch holds them; 64 more per rank is a queue, not a quirk",
    unit: "",
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

    /// Quantities are shown with their unit, counts whole.
    #[test]
    fn messages_show_units_and_whole_counts() {
        // Zero in a unit is "0 s", not scientific notation.
        let e = STEP_OVERHEAD.check(2.0).expect_err("outside");
        assert!(e.starts_with("2 s is outside [0 s, 1 s]"), "{e}");
        let e = GPU_MEMORY.check(1e39).expect_err("outside");
        assert!(e.contains("1e39 B is outside [1 GB, 100 TB]"), "{e}");
        let e = PEAK_FLOPS.check(1e3).expect_err("outside");
        assert!(
            e.contains("1 kFLOP/s is outside [1 TFLOP/s, 100 PFLOP/s]"),
            "{e}"
        );
        let e = LINK_LATENCY.check(5.0).expect_err("outside");
        assert!(e.contains("5 s is outside [100 ns, 10 ms]"), "{e}");
        let e = HIDDEN_SIZE.check_count(1 << 31).expect_err("outside");
        assert!(e.contains("2147483648 is outside [1, 1048576]"), "{e}");
        assert_eq!(VOCAB_SIZE.check_count(151_936), Ok(151_936));
        assert!(GPU_MEMORY.hint().contains("from 1 GB to 100 TB"));
        let e = LATENCY_LIMIT.check(1e297).expect_err("outside");
        assert!(e.contains("1e297 s is outside [1 µs, 86400 s]"), "{e}");
    }
}

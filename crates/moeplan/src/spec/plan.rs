//! The plan file of `moeplan audit`: a scenario (model, hardware,
//! workload, service levels) plus the deployment someone chose and every
//! figure they claim for it.
//!
//! ```toml
//! [model]
//! catalog = "seed-moe"
//! declared_params = "10B"
//! [hardware]
//! gpu = "seed-gpu"
//! mfu = 0.6
//! bandwidth_utilization = 0.8
//! [workload]
//! isl = 4096
//! osl = 1024
//! batch_size = 128
//! [slo]
//! ttft = "10 s"
//! [deployment]
//! mode = "aggregated"      # or "disaggregated" with [deployment.prefill] / [deployment.decode]
//! pp = 2
//! tp = 2
//! ep = 2
//! replicas = 3
//! [claims]
//! total_gpus = 24
//! throughput_per_gpu = "35 tokens/ms"
//! memory_per_gpu = "4.95 GB"
//! ```
//!
//! The model, hardware, workload and service-level sections are the
//! scenario's (`spec::scenario`), read by the same validators. Claims are
//! strings with their unit; a bare number where a unit is needed is a
//! diagnostic naming the accepted units, never a guess.

use super::scenario::{self, RawHardware, RawModelSection, RawSlo, RawWorkload};
use super::{Problem, Problems, SpecError};
use crate::layout::Layout;
use crate::quantity::{
    parse_bytes, parse_flop, parse_fraction, parse_params, parse_time, parse_token_rate, Dimension,
};
use crate::spec::scenario::{KvCache, Scenario};
use crate::spec::source::Source;
use crate::units::{Bytes, Flop, Params, Seconds, TokensPerSecond};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A plan as written.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    /// A name for reports (default: the file stem).
    pub name: Option<String>,
    /// The model (as in a scenario).
    pub model: RawModelSection,
    /// The hardware (as in a scenario); `mfu` and `bandwidth_utilization` are the plan's efficiency assumptions.
    pub hardware: RawHardware,
    /// The requests (as in a scenario); `concurrency`/`batch_size` is per replica for an aggregated plan and the whole deployment's for a disaggregated one.
    pub workload: RawWorkload,
    /// The plan's own requirements.
    pub slo: Option<RawSlo>,
    /// The layout the plan chose.
    pub deployment: RawDeployment,
    /// Every figure the plan states (all optional).
    pub claims: Option<RawClaims>,
    /// Assumptions made while transcribing the plan.
    pub assumptions: Option<Vec<String>>,
}

/// Aggregated (prefill and decode on the same GPUs) or disaggregated pools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One pool serves both phases.
    #[default]
    Aggregated,
    /// A prefill pool and a decode pool.
    Disaggregated,
}

/// The degrees of one pool, as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Pipeline stages (default 1).
    #[schemars(range(min = 1))]
    pub pp: Option<u32>,
    /// Tensor parallel (default 1).
    #[schemars(range(min = 1))]
    pub tp: Option<u32>,
    /// Attention data parallel inside a replica (default 1).
    #[schemars(range(min = 1))]
    pub dp: Option<u32>,
    /// Context parallel (default 1).
    #[schemars(range(min = 1))]
    pub cp: Option<u32>,
    /// Expert parallel (default: 1, or the stage's GPUs / etp).
    #[schemars(range(min = 1))]
    pub ep: Option<u32>,
    /// Expert tensor parallel (default: the stage's GPUs / ep).
    #[schemars(range(min = 1))]
    pub etp: Option<u32>,
    /// Copies of the replica (default 1).
    #[schemars(range(min = 1))]
    pub replicas: Option<u32>,
    /// Redundant expert slots per replica beyond one per expert (EPLB; default 0).
    pub redundant_experts: Option<u32>,
    /// `"two-batch"`: each step runs as two micro-batches, one's collectives
    /// (EP dispatch/combine, TP all-reduce) overlapping the other's compute
    /// (SGLang's two-batch overlap, DeepSeek's dual micro-batch); default `"none"`.
    pub overlap: Option<crate::ops::Overlap>,
}

/// The deployment section.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    /// `aggregated` (default) or `disaggregated`.
    pub mode: Option<Mode>,
    /// Pipeline stages of a replica (aggregated).
    #[schemars(range(min = 1))]
    pub pp: Option<u32>,
    /// Tensor parallel (aggregated).
    #[schemars(range(min = 1))]
    pub tp: Option<u32>,
    /// Attention data parallel inside a replica (aggregated).
    #[schemars(range(min = 1))]
    pub dp: Option<u32>,
    /// Context parallel (aggregated).
    #[schemars(range(min = 1))]
    pub cp: Option<u32>,
    /// Expert parallel (aggregated).
    #[schemars(range(min = 1))]
    pub ep: Option<u32>,
    /// Expert tensor parallel (aggregated).
    #[schemars(range(min = 1))]
    pub etp: Option<u32>,
    /// Copies of the replica (aggregated).
    #[schemars(range(min = 1))]
    pub replicas: Option<u32>,
    /// Redundant expert slots per replica (EPLB; aggregated).
    pub redundant_experts: Option<u32>,
    /// `"two-batch"`: each step runs as two overlapped micro-batches
    /// (aggregated; a disaggregated plan states it in each pool); default `"none"`.
    pub overlap: Option<crate::ops::Overlap>,
    /// The prefill pool (disaggregated).
    pub prefill: Option<RawPool>,
    /// The decode pool (disaggregated).
    pub decode: Option<RawPool>,
}

/// Figures a plan states for one phase's pool (`[claims.prefill]`, `[claims.decode]`).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPhaseClaims {
    /// GPUs of this pool.
    #[schemars(range(min = 1))]
    pub gpus: Option<u32>,
    /// Weight bytes per GPU, e.g. "2.5 GB".
    pub weights_per_gpu: Option<String>,
    /// KV cache bytes per GPU.
    pub kv_cache_per_gpu: Option<String>,
    /// Activation bytes per GPU.
    pub activations_per_gpu: Option<String>,
    /// Communication buffer bytes per GPU.
    pub(crate) comm_buffers_per_gpu: Option<String>,
    /// Optimizer state per GPU (does not belong to inference; accepted so it can be flagged).
    pub optimizer_per_gpu: Option<String>,
    /// Gradients per GPU (does not belong to inference; accepted so it can be flagged).
    pub(crate) gradients_per_gpu: Option<String>,
    /// Total memory per GPU.
    pub memory_per_gpu: Option<String>,
    /// Memory used as a fraction of capacity, e.g. "19%".
    pub memory_utilization: Option<String>,
    /// Tokens/s per GPU (output tokens unless `throughput_tokens = "input"`), e.g. "35 tokens/ms".
    pub throughput_per_gpu: Option<String>,
    /// Prompt tokens/s per GPU.
    pub(crate) prefill_throughput_per_gpu: Option<String>,
    /// Time to first token.
    pub ttft: Option<String>,
    /// Time per output token.
    pub tpot: Option<String>,
    /// GPU (compute) utilisation, e.g. "75%".
    pub gpu_utilization: Option<String>,
}

/// The claims section: every figure the plan states.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClaims {
    /// GPUs the plan says it uses.
    #[schemars(range(min = 1))]
    pub total_gpus: Option<u32>,
    /// The parameter total the plan computes with, e.g. "10B".
    pub params_total: Option<String>,
    /// FLOP per token, e.g. "20 GFLOP".
    pub flops_per_token: Option<String>,
    /// HBM bytes read per generated token, e.g. "100 GB".
    pub(crate) bytes_read_per_token: Option<String>,
    /// A compute-bound throughput the plan derives, e.g. "32550 tokens/s".
    pub compute_bound_throughput_per_gpu: Option<String>,
    /// A bandwidth-bound throughput the plan derives, e.g. "14.4 tokens/ms".
    pub bandwidth_bound_throughput_per_gpu: Option<String>,
    /// Whether `throughput_per_gpu` counts `output` (default) or `input` tokens.
    pub(crate) throughput_tokens: Option<TokenKind>,
    /// Weight bytes per GPU.
    pub weights_per_gpu: Option<String>,
    /// KV cache bytes per GPU.
    pub kv_cache_per_gpu: Option<String>,
    /// Activation bytes per GPU.
    pub activations_per_gpu: Option<String>,
    /// Communication buffer bytes per GPU.
    pub(crate) comm_buffers_per_gpu: Option<String>,
    /// Optimizer state per GPU (flagged: inference has none).
    pub optimizer_per_gpu: Option<String>,
    /// Gradients per GPU (flagged: inference has none).
    pub(crate) gradients_per_gpu: Option<String>,
    /// Total memory per GPU.
    pub memory_per_gpu: Option<String>,
    /// Memory used as a fraction of capacity, e.g. "19%".
    pub memory_utilization: Option<String>,
    /// Tokens/s per GPU, e.g. "35 tokens/ms".
    pub throughput_per_gpu: Option<String>,
    /// Prompt tokens/s per GPU.
    pub(crate) prefill_throughput_per_gpu: Option<String>,
    /// Time to first token.
    pub ttft: Option<String>,
    /// Time per output token.
    pub tpot: Option<String>,
    /// Communication share of step time, e.g. "12%".
    pub comm_overhead: Option<String>,
    /// Expert load imbalance (max/mean − 1), e.g. "10%".
    pub load_imbalance: Option<String>,
    /// GPU (compute) utilisation, e.g. "75%".
    pub gpu_utilization: Option<String>,
    /// Whether the plan says it meets every service level.
    pub meets_slo: Option<bool>,
    /// Claims about the prefill pool (disaggregated).
    pub prefill: Option<RawPhaseClaims>,
    /// Claims about the decode pool (disaggregated).
    pub decode: Option<RawPhaseClaims>,
}

/// Which tokens a throughput figure counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TokenKind {
    /// Generated tokens.
    #[default]
    Output,
    /// Prompt tokens.
    Input,
}

/// One pool: the layout of a replica and how many replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Pool {
    /// Degrees of one replica (ep/etp folded as engines do when not written).
    pub layout: Layout,
    /// Copies.
    #[schemars(range(min = 1))]
    pub replicas: u32,
    /// Redundant expert slots per replica (EPLB).
    pub redundant_experts: u32,
    /// The product of every degree as written, times replicas (the classic mistaken total).
    pub(crate) written_product: u64,
    /// Whether its steps overlap communication with computation.
    #[serde(skip_serializing_if = "crate::ops::Overlap::is_none")]
    pub overlap: crate::ops::Overlap,
}

impl Pool {
    /// GPUs the pool holds: replicas × pp × tp × cp × dp.
    pub fn gpus(&self) -> u64 {
        self.replicas as u64 * self.layout.gpus() as u64
    }
}

/// The validated deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Deployment {
    /// One pool.
    Aggregated {
        /// The pool.
        pool: Pool,
    },
    /// Separate prefill and decode pools.
    Disaggregated {
        /// Prefill pool.
        prefill: Pool,
        /// Decode pool.
        decode: Pool,
    },
}

impl Deployment {
    /// Every pool with its key prefix in the plan file (`deployment`, `deployment.prefill`, ...).
    pub fn pools(&self) -> Vec<(&'static str, Pool)> {
        match *self {
            Deployment::Aggregated { pool } => vec![("deployment", pool)],
            Deployment::Disaggregated { prefill, decode } => vec![
                ("deployment.prefill", prefill),
                ("deployment.decode", decode),
            ],
        }
    }
    /// GPUs of every pool together.
    pub fn gpus(&self) -> u64 {
        self.pools().iter().map(|(_, p)| p.gpus()).sum()
    }
}

/// Claims about one pool (or the whole deployment).
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PhaseClaims {
    /// GPUs of the pool.
    pub gpus: Option<u32>,
    /// Weights per GPU.
    pub weights_per_gpu: Option<Bytes>,
    /// KV cache per GPU.
    pub kv_cache_per_gpu: Option<Bytes>,
    /// Activations per GPU.
    pub activations_per_gpu: Option<Bytes>,
    /// Communication buffers per GPU.
    pub(crate) comm_buffers_per_gpu: Option<Bytes>,
    /// Optimizer state per GPU.
    pub optimizer_per_gpu: Option<Bytes>,
    /// Gradients per GPU.
    pub(crate) gradients_per_gpu: Option<Bytes>,
    /// Memory per GPU.
    pub memory_per_gpu: Option<Bytes>,
    /// Memory as a fraction of capacity.
    pub memory_utilization: Option<f64>,
    /// Tokens/s per GPU.
    pub throughput_per_gpu: Option<TokensPerSecond>,
    /// Prompt tokens/s per GPU.
    pub(crate) prefill_throughput_per_gpu: Option<TokensPerSecond>,
    /// TTFT.
    pub ttft: Option<Seconds>,
    /// TPOT.
    pub tpot: Option<Seconds>,
    /// Compute utilisation.
    pub gpu_utilization: Option<f64>,
}

/// The validated claims.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Claims {
    /// Total GPUs.
    pub total_gpus: Option<u32>,
    /// Parameter total.
    pub params_total: Option<Params>,
    /// FLOP per token.
    pub flops_per_token: Option<Flop>,
    /// HBM bytes per generated token.
    pub(crate) bytes_read_per_token: Option<Bytes>,
    /// Compute-bound throughput the plan derives.
    pub compute_bound_throughput_per_gpu: Option<TokensPerSecond>,
    /// Bandwidth-bound throughput the plan derives.
    pub bandwidth_bound_throughput_per_gpu: Option<TokensPerSecond>,
    /// What `throughput_per_gpu` counts.
    pub(crate) throughput_tokens: TokenKind,
    /// Figures about the whole deployment (top-level keys of `[claims]`).
    pub(crate) overall: PhaseClaims,
    /// Communication share of step time.
    pub comm_overhead: Option<f64>,
    /// Expert load imbalance.
    pub load_imbalance: Option<f64>,
    /// The plan says it meets its service levels.
    pub meets_slo: Option<bool>,
    /// Prefill pool claims.
    pub prefill: Option<PhaseClaims>,
    /// Decode pool claims.
    pub decode: Option<PhaseClaims>,
}

/// A validated plan: its scenario (model, hardware, workload, requirements)
/// and what the plan says about deploying it.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Model, hardware, workload, requirements, name and assumptions.
    pub scenario: Scenario,
    /// The layout.
    pub deployment: Deployment,
    /// The figures the plan states.
    pub claims: Claims,
}

fn pool(raw: &RawPool, prefix: &str, pr: &mut Problems) -> Pool {
    let mut deg = |key: &str, v: Option<u32>| -> u32 {
        match v {
            Some(0) => {
                pr.push(
                    Problem::at(format!("{prefix}.{key}"), "must be at least 1")
                        .hint("a degree of 1 means no split along this dimension"),
                );
                1
            }
            Some(v) => v,
            None => 1,
        }
    };
    let pp = deg("pp", raw.pp);
    let tp = deg("tp", raw.tp);
    let dp = deg("dp", raw.dp);
    let cp = deg("cp", raw.cp);
    let ep = raw.ep.map(|v| deg("ep", Some(v)));
    let etp = raw.etp.map(|v| deg("etp", Some(v)));
    let replicas = deg("replicas", raw.replicas);
    let written_product = [pp, tp, dp, cp, ep.unwrap_or(1), etp.unwrap_or(1)]
        .iter()
        .fold(replicas as u64, |p, d| p.saturating_mul(*d as u64));
    if let Err(m) = Layout::degrees_within_bounds(pp, tp, cp, dp, ep.unwrap_or(1), etp.unwrap_or(1))
    {
        pr.push(Problem::at(prefix, m).hint("degrees multiply: tp 8 with dp 8 is 64 GPUs"));
        return Pool {
            layout: Layout::default(),
            replicas,
            redundant_experts: 0,
            written_product,
            overlap: raw.overlap.unwrap_or_default(),
        };
    }
    Pool {
        layout: Layout::folded(pp, tp, cp, dp, ep, etp),
        replicas,
        redundant_experts: raw.redundant_experts.unwrap_or(0),
        written_product,
        overlap: raw.overlap.unwrap_or_default(),
    }
}

fn deployment(raw: &RawDeployment, pr: &mut Problems) -> Deployment {
    let top = RawPool {
        pp: raw.pp,
        tp: raw.tp,
        dp: raw.dp,
        cp: raw.cp,
        ep: raw.ep,
        etp: raw.etp,
        replicas: raw.replicas,
        redundant_experts: raw.redundant_experts,
        overlap: raw.overlap,
    };
    let any_top = [
        raw.pp,
        raw.tp,
        raw.dp,
        raw.cp,
        raw.ep,
        raw.etp,
        raw.replicas,
        raw.redundant_experts,
    ]
    .iter()
    .any(Option::is_some)
        || raw.overlap.is_some();
    match raw.mode.unwrap_or_default() {
        Mode::Aggregated => {
            for (key, sec) in [("prefill", &raw.prefill), ("decode", &raw.decode)] {
                if sec.is_some() {
                    pr.push(
                        Problem::at(
                            format!("deployment.{key}"),
                            format!(
                                "[deployment.{key}] is only read when mode = \"disaggregated\""
                            ),
                        )
                        .hint(
                            "set mode = \"disaggregated\", or move the degrees into [deployment]",
                        ),
                    );
                }
            }
            Deployment::Aggregated {
                pool: pool(&top, "deployment", pr),
            }
        }
        Mode::Disaggregated => {
            if any_top {
                pr.push(
                    Problem::at(
                        "deployment",
                        "a disaggregated deployment takes its degrees from [deployment.prefill] and [deployment.decode]",
                    )
                    .hint("move pp/tp/dp/cp/ep/etp/replicas/overlap into each pool's table"),
                );
            }
            let mut get = |key: &str, sec: &Option<RawPool>| match sec {
                Some(p) => pool(p, &format!("deployment.{key}"), pr),
                None => {
                    pr.push(
                        Problem::at("deployment", format!("no [deployment.{key}] table")).hint(
                            "a disaggregated deployment needs both a prefill and a decode pool",
                        ),
                    );
                    pool(&RawPool::default(), "deployment", pr)
                }
            };
            let prefill = get("prefill", &raw.prefill);
            let decode = get("decode", &raw.decode);
            Deployment::Disaggregated { prefill, decode }
        }
    }
}

/// Parses an optional quantity of a claim, recording a problem that names the accepted units.
fn quantity<T>(
    pr: &mut Problems,
    path: &str,
    v: &Option<String>,
    dim: Dimension,
    parse: fn(&str) -> Result<T, String>,
) -> Option<T> {
    let s = v.as_ref()?;
    match parse(s) {
        Ok(x) => Some(x),
        Err(e) => {
            pr.push(Problem::at(path, e).hint(format!("write the unit: {}", dim.accepted())));
            None
        }
    }
}

fn nonneg_fraction(pr: &mut Problems, path: &str, v: &Option<String>) -> Option<f64> {
    let f = quantity(pr, path, v, Dimension::Fraction, parse_fraction)?;
    if f < 0.0 {
        pr.push(Problem::at(path, format!("{f} is negative")).hint("e.g. \"12%\""));
        return None;
    }
    Some(f)
}

fn phase_claims(raw: &RawPhaseClaims, prefix: &str, pr: &mut Problems) -> PhaseClaims {
    let p = |k: &str| format!("{prefix}.{k}");
    let bytes = |pr: &mut Problems, k: &str, v: &Option<String>| {
        quantity(pr, &p(k), v, Dimension::Bytes, parse_bytes)
    };
    let rate = |pr: &mut Problems, k: &str, v: &Option<String>| {
        quantity(pr, &p(k), v, Dimension::TokenRate, parse_token_rate)
    };
    let time = |pr: &mut Problems, k: &str, v: &Option<String>| {
        quantity(pr, &p(k), v, Dimension::Time, parse_time)
    };
    PhaseClaims {
        gpus: raw.gpus,
        weights_per_gpu: bytes(pr, "weights_per_gpu", &raw.weights_per_gpu),
        kv_cache_per_gpu: bytes(pr, "kv_cache_per_gpu", &raw.kv_cache_per_gpu),
        activations_per_gpu: bytes(pr, "activations_per_gpu", &raw.activations_per_gpu),
        comm_buffers_per_gpu: bytes(pr, "comm_buffers_per_gpu", &raw.comm_buffers_per_gpu),
        optimizer_per_gpu: bytes(pr, "optimizer_per_gpu", &raw.optimizer_per_gpu),
        gradients_per_gpu: bytes(pr, "gradients_per_gpu", &raw.gradients_per_gpu),
        memory_per_gpu: bytes(pr, "memory_per_gpu", &raw.memory_per_gpu),
        memory_utilization: nonneg_fraction(pr, &p("memory_utilization"), &raw.memory_utilization),
        throughput_per_gpu: rate(pr, "throughput_per_gpu", &raw.throughput_per_gpu),
        prefill_throughput_per_gpu: rate(
            pr,
            "prefill_throughput_per_gpu",
            &raw.prefill_throughput_per_gpu,
        ),
        ttft: time(pr, "ttft", &raw.ttft),
        tpot: time(pr, "tpot", &raw.tpot),
        gpu_utilization: nonneg_fraction(pr, &p("gpu_utilization"), &raw.gpu_utilization),
    }
}

fn claims(raw: &RawClaims, pr: &mut Problems) -> Claims {
    let overall = RawPhaseClaims {
        gpus: None,
        weights_per_gpu: raw.weights_per_gpu.clone(),
        kv_cache_per_gpu: raw.kv_cache_per_gpu.clone(),
        activations_per_gpu: raw.activations_per_gpu.clone(),
        comm_buffers_per_gpu: raw.comm_buffers_per_gpu.clone(),
        optimizer_per_gpu: raw.optimizer_per_gpu.clone(),
        gradients_per_gpu: raw.gradients_per_gpu.clone(),
        memory_per_gpu: raw.memory_per_gpu.clone(),
        memory_utilization: raw.memory_utilization.clone(),
        throughput_per_gpu: raw.throughput_per_gpu.clone(),
        prefill_throughput_per_gpu: raw.prefill_throughput_per_gpu.clone(),
        ttft: raw.ttft.clone(),
        tpot: raw.tpot.clone(),
        gpu_utilization: raw.gpu_utilization.clone(),
    };
    let rate = |pr: &mut Problems, k: &str, v: &Option<String>| {
        quantity(
            pr,
            &format!("claims.{k}"),
            v,
            Dimension::TokenRate,
            parse_token_rate,
        )
    };
    if raw.total_gpus == Some(0) {
        pr.push(Problem::at("claims.total_gpus", "must be at least 1").hint("GPUs the plan uses"));
    }
    Claims {
        total_gpus: raw.total_gpus.filter(|g| *g > 0),
        params_total: quantity(
            pr,
            "claims.params_total",
            &raw.params_total,
            Dimension::Params,
            parse_params,
        ),
        flops_per_token: quantity(
            pr,
            "claims.flops_per_token",
            &raw.flops_per_token,
            Dimension::Flop,
            parse_flop,
        ),
        bytes_read_per_token: quantity(
            pr,
            "claims.bytes_read_per_token",
            &raw.bytes_read_per_token,
            Dimension::Bytes,
            parse_bytes,
        ),
        compute_bound_throughput_per_gpu: rate(
            pr,
            "compute_bound_throughput_per_gpu",
            &raw.compute_bound_throughput_per_gpu,
        ),
        bandwidth_bound_throughput_per_gpu: rate(
            pr,
            "bandwidth_bound_throughput_per_gpu",
            &raw.bandwidth_bound_throughput_per_gpu,
        ),
        throughput_tokens: raw.throughput_tokens.unwrap_or_default(),
        overall: phase_claims(&overall, "claims", pr),
        comm_overhead: nonneg_fraction(pr, "claims.comm_overhead", &raw.comm_overhead),
        load_imbalance: nonneg_fraction(pr, "claims.load_imbalance", &raw.load_imbalance),
        meets_slo: raw.meets_slo,
        prefill: raw
            .prefill
            .as_ref()
            .map(|p| phase_claims(p, "claims.prefill", pr)),
        decode: raw
            .decode
            .as_ref()
            .map(|p| phase_claims(p, "claims.decode", pr)),
    }
}

fn convert(
    raw: &RawPlan,
    stem: &str,
    dir: &Path,
    pr: &mut Problems,
    nested: &mut dyn FnMut(SpecError),
) -> Option<Plan> {
    let model = scenario::resolve_model(&raw.model, dir, pr, nested);
    let gpu = scenario::resolve_gpu(&raw.hardware, dir, pr, nested);
    let (mfu, bandwidth_utilization) = scenario::efficiencies(&raw.hardware, pr);
    let gpus_available = scenario::gpu_budget(&raw.hardware, pr);
    let workload = scenario::workload(&raw.workload, pr);
    let routing_skew = scenario::routing_skew(&raw.workload, pr);
    if raw.hardware.redundant_experts.is_some() {
        pr.push(
            Problem::at(
                "hardware.redundant_experts",
                "a plan states its redundant expert slots per pool",
            )
            .hint("write redundant_experts under [deployment] (or each of its pools)"),
        );
    }
    let slo = scenario::slo(&raw.slo.clone().unwrap_or_default(), pr);
    let deployment = deployment(&raw.deployment, pr);
    let claims = claims(&raw.claims.clone().unwrap_or_default(), pr);
    if let Deployment::Aggregated { .. } = deployment {
        for (key, c) in [("prefill", &claims.prefill), ("decode", &claims.decode)] {
            if c.is_some() {
                pr.push(
                    Problem::at(
                        format!("claims.{key}"),
                        format!("[claims.{key}] describes a pool an aggregated deployment does not have"),
                    )
                    .hint("put the figures at the top of [claims], or make the deployment disaggregated"),
                );
            }
        }
    }
    let engine = scenario::engine(&raw.hardware, pr);
    let h = &raw.hardware;
    let mut assumptions = raw.assumptions.clone().unwrap_or_default();
    assumptions.extend(scenario::engine_version(h, engine, gpu.as_ref(), pr));
    let (mut model, gpu) = (model?, gpu?);
    if scenario::model_dtypes(&raw.model, &mut model, &gpu, engine, pr) == KvCache::Searched {
        pr.push(
            Problem::at(
                "model.kv_cache_dtype",
                "a plan runs one KV cache type, not \"auto\"",
            )
            .hint("bf16, fp16 or fp8; \"auto\" is for a scenario the planner searches"),
        );
    }
    Some(Plan {
        scenario: Scenario {
            name: raw.name.clone().unwrap_or_else(|| stem.to_string()),
            model,
            gpu,
            gpus_available,
            mfu,
            bandwidth_utilization,
            engine,
            engine_version: scenario::stated_version(h),
            workload,
            slo,
            assumptions,
            redundant_experts: 0,
            routing_skew,
            kv_cache: KvCache::Stated,
        },
        deployment,
        claims,
    })
}

/// Reads a plan from a source; relative model/GPU paths resolve against `dir`.
pub fn load(source: &Source, dir: &Path) -> Result<Plan, SpecError> {
    let stem = source.stem("plan");
    let mut nested: Vec<SpecError> = Vec::new();
    let out = super::load_spec(source, |raw: &RawPlan, pr| {
        let mut nest = |e: SpecError| nested.push(e);
        convert(raw, &stem, dir, pr, &mut nest)
    })?;
    match (out, nested.pop()) {
        (_, Some(e)) => Err(e),
        (Some(p), None) => Ok(p),
        (None, None) => Err(SpecError::in_source(
            source,
            vec![Problem::at("", "the plan could not be built")],
        )),
    }
}

/// Whether the file at `path` is a plan (it has a `deployment` section) rather
/// than a scenario; a file that does not parse is an error.
pub fn is_plan(path: &Path) -> Result<bool, SpecError> {
    let value = Source::read(path)?.parse()?;
    Ok(value.get("deployment").is_some())
}

/// Reads a plan file.
pub fn read(path: &Path) -> Result<(Plan, Source), SpecError> {
    let source = Source::read(path)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let plan = load(&source, &dir)?;
    Ok((plan, source))
}

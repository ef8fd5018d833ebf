//! A deployment's headline figures: the one evaluation the planner, the
//! audit, `--fix`, the DAG and the report share.
//!
//! A deployment (`replica::Deployment`: one aggregated replica copied
//! `replicas` times, or a disaggregated pair of pools) is estimated at the
//! scenario's worst-case lengths (the longest prompt and output: latency and
//! memory) and at its mean lengths (throughput), and summarised in
//! `Figures`. `slo::evaluate` judges them.

use crate::layout::{Layout, LayoutProblem};
use crate::ops::Bound;
use crate::replica::{Deployment, PoolRole};
use crate::serving::disagg::{estimate_disaggregated, DisaggEstimate};
use crate::serving::{estimate_at, Detail, Estimate, JsonDetail, Workload};
use crate::slo::Judged;
use crate::units::{Bytes, Seconds, Tokens, TokensPerSecond};
use serde::{Serialize, Serializer};

/// Serving mode.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Prefill and decode share GPUs.
    Aggregated,
    /// Separate pools.
    Disaggregated,
}

/// The estimate behind a deployment's figures (at the mean lengths).
#[derive(Clone, Debug, PartialEq)]
pub enum Predicted {
    /// One aggregated replica.
    Aggregated(Box<Estimate>),
    /// A disaggregated deployment.
    Disaggregated(Box<DisaggEstimate>),
}

impl Predicted {
    /// Share of a decode step's HBM bytes that are KV cache (0 without a decode step).
    pub(crate) fn kv_share(&self) -> f64 {
        match self {
            Predicted::Aggregated(e) => {
                let c = &e.ceilings;
                c.decode_kv_bytes_per_step_per_gpu.0 / c.decode_bytes_per_step_per_gpu.0.max(1.0)
            }
            Predicted::Disaggregated(_) => 0.0,
        }
    }

    /// Memory of the fullest GPU (of either pool when disaggregated).
    pub fn fullest_memory(&self) -> &crate::memory::MemoryBreakdown {
        match self {
            Predicted::Aggregated(e) => &e.memory,
            Predicted::Disaggregated(e) => {
                let frac =
                    |m: &crate::memory::MemoryBreakdown| m.total_bytes.0 / m.capacity_bytes.0;
                if frac(&e.prefill.memory) >= frac(&e.decode.memory) {
                    &e.prefill.memory
                } else {
                    &e.decode.memory
                }
            }
        }
    }

    /// The physical ceilings per GPU (aggregated only).
    pub fn ceilings(&self) -> Option<&crate::serving::Ceilings> {
        match self {
            Predicted::Aggregated(e) => Some(&e.ceilings),
            Predicted::Disaggregated(_) => None,
        }
    }

    /// Where the efficiencies come from.
    pub fn efficiency_source(&self) -> &str {
        match self {
            Predicted::Aggregated(e) => &e.efficiency_source,
            Predicted::Disaggregated(e) => &e.efficiency_source,
        }
    }

    /// Mean time to first token at the mean lengths.
    pub fn ttft(&self) -> Seconds {
        match self {
            Predicted::Aggregated(e) => e.ttft,
            Predicted::Disaggregated(e) => e.ttft,
        }
    }

    /// Mean time per output token at the mean lengths.
    pub fn tpot(&self) -> Seconds {
        match self {
            Predicted::Aggregated(e) => e.tpot,
            Predicted::Disaggregated(e) => e.tpot,
        }
    }

    /// The derivation of one figure (`ttft`, `tpot`, `output_tokens_per_s_per_gpu`, ...).
    pub fn explain(&self, key: crate::serving::ExplainKey) -> Option<&crate::report::Derivation> {
        match self {
            Predicted::Aggregated(e) => e.explain.get(&key),
            Predicted::Disaggregated(e) => e.explain.get(&key),
        }
    }

    /// The estimate's warnings.
    pub fn warnings(&self) -> &[String] {
        match self {
            Predicted::Aggregated(e) => &e.warnings,
            Predicted::Disaggregated(e) => &e.warnings,
        }
    }
}

/// The estimate's JSON without the per-step breakdown and derivations.
impl Serialize for Predicted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Predicted::Aggregated(e) => e.json(JsonDetail::Summary).serialize(s),
            Predicted::Disaggregated(e) => e.json(JsonDetail::Summary).serialize(s),
        }
    }
}

impl schemars::JsonSchema for Predicted {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Predicted".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let aggregated = g.subschema_for::<crate::serving::EstimateJson<'static>>();
        let disaggregated =
            g.subschema_for::<crate::serving::disagg::DisaggEstimateJson<'static>>();
        schemars::json_schema!({ "anyOf": [aggregated, disaggregated] })
    }
}

/// One pool of a deployment.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PoolFigures {
    /// What it serves.
    pub role: PoolRole,
    /// The layout of one worker (pp, tp, cp, dp, ep, etp in JSON).
    #[serde(flatten)]
    pub layout: Layout,
    /// Workers (replicas) in the pool.
    pub workers: u64,
    /// GPUs of the pool.
    pub gpus: u64,
    /// Requests in flight per worker.
    pub concurrency: u64,
    /// Redundant expert slots (EPLB) per worker, as the deployment states
    /// them (written only when there are some).
    #[serde(skip_serializing_if = "crate::model::is_zero")]
    pub redundant_experts: u32,
}

fn as_ms<S: Serializer>(t: &Seconds, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(t.ms())
}

fn lower<S: Serializer>(b: &Bound, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(b.name())
}

/// The headline figures of a deployment.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Figures {
    /// Serving mode.
    pub mode: Mode,
    /// Its pools (one for aggregated; prefill and decode otherwise).
    pub pools: Vec<PoolFigures>,
    /// The KV cache type the planner chose for this candidate, written only
    /// when it searched more than one (`model.kv_cache_dtype = "auto"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache_dtype: Option<crate::dtype::DType>,
    /// GPUs of the whole deployment.
    pub gpus: u64,
    /// What a plan file's `workload.concurrency` holds for this deployment:
    /// the requests in flight per replica when aggregated, on the whole
    /// deployment (its decode pool) when disaggregated.
    pub plan_concurrency: u64,
    /// Output tokens/s of the deployment over all its GPUs (mean lengths).
    pub output_tokens_per_s_per_gpu: TokensPerSecond,
    /// Output tokens/s one request sees (mean lengths).
    pub output_tokens_per_s_per_user: TokensPerSecond,
    /// Requests/s the deployment completes (mean lengths).
    pub requests_per_s: f64,
    /// TTFT at the worse of the longest and the mean lengths (`ttft_ms` in
    /// JSON): in a closed loop the longest outputs hold requests longer and
    /// so can leave less queueing before the first token than the mean.
    #[serde(rename = "ttft_ms", serialize_with = "as_ms")]
    pub ttft: Seconds,
    /// TPOT at the worse of the longest and the mean lengths (`tpot_ms` in JSON).
    #[serde(rename = "tpot_ms", serialize_with = "as_ms")]
    pub tpot: Seconds,
    /// Memory of the fullest GPU of any pool at the longest context.
    #[serde(rename = "memory_per_gpu_bytes")]
    pub memory_per_gpu: Bytes,
    /// That memory as a fraction of capacity.
    pub memory_fraction: f64,
    /// What the engine may use of that GPU, as a fraction of capacity (its
    /// memory limit: a service level's, else the engine's own).
    #[serde(skip)]
    pub usable_fraction: f64,
    /// Expert load imbalance applied (max/mean − 1).
    pub load_imbalance: f64,
    /// Whether every pool fits in memory at the longest context.
    #[serde(skip)]
    pub fits: bool,
    /// What limits the decode step.
    #[serde(serialize_with = "lower")]
    pub bottleneck: Bound,
    /// The estimate at the mean lengths, as `moeplan estimate --json` gives it (without the op breakdown).
    pub estimate: Predicted,
}

impl Figures {
    /// These figures' deployment written as a plan file would be: its
    /// layouts and workers, and the workload's concurrency (per replica
    /// when aggregated, the whole deployment's when disaggregated).
    pub fn as_plan(&self, s: &crate::spec::scenario::Scenario) -> crate::spec::plan::Plan {
        use crate::spec::plan::{Claims, Deployment as Written, Plan, Pool};
        let pool = |i: usize| {
            let p = &self.pools[i.min(self.pools.len().saturating_sub(1))];
            Pool {
                layout: p.layout,
                replicas: u32::try_from(p.workers).unwrap_or(u32::MAX),
                redundant_experts: p.redundant_experts,
                written_product: p.gpus,
                overlap: crate::ops::Overlap::None,
            }
        };
        let deployment = match &self.estimate {
            Predicted::Aggregated(_) => Written::Aggregated { pool: pool(0) },
            Predicted::Disaggregated(_) => Written::Disaggregated {
                prefill: pool(0),
                decode: pool(1),
            },
        };
        let mut scenario = match self.kv_cache_dtype {
            Some(kv) => s.with_kv_cache(kv),
            None => s.clone(),
        };
        scenario.workload.concurrency = Some(self.plan_concurrency);
        Plan {
            scenario,
            deployment,
            claims: Claims::default(),
        }
    }

    /// `replicas` copies of a replica with `concurrency` requests in flight
    /// each, estimated at the worst-case and the mean lengths.
    pub fn aggregated(
        worst: &Estimate,
        mean: Estimate,
        replicas: u64,
        concurrency: u64,
    ) -> Figures {
        let l = worst.layout;
        let per_replica_gpus = l.gpus() as u64;
        let gpus = replicas.saturating_mul(per_replica_gpus);
        let per_gpu = mean.output_tokens_per_s_per_gpu;
        let requests = per_gpu.0 * per_replica_gpus as f64 * replicas as f64
            / mean.workload.osl.get().max(1) as f64;
        Figures {
            mode: Mode::Aggregated,
            pools: vec![PoolFigures {
                role: PoolRole::Aggregated,
                layout: l,
                workers: replicas,
                gpus,
                concurrency,
                redundant_experts: 0,
            }],
            kv_cache_dtype: None,
            gpus,
            plan_concurrency: concurrency,
            output_tokens_per_s_per_gpu: per_gpu,
            output_tokens_per_s_per_user: mean.output_tokens_per_s_per_user,
            requests_per_s: requests,
            ttft: worst.ttft.max(mean.ttft),
            tpot: worst.tpot.max(mean.tpot),
            memory_per_gpu: worst.memory.total_bytes,
            memory_fraction: worst.memory.total_bytes.0 / worst.memory.capacity_bytes.0,
            usable_fraction: worst.memory.usable_bytes.0 / worst.memory.capacity_bytes.0,
            load_imbalance: mean.load_imbalance.used.max(worst.load_imbalance.used),
            fits: worst.fits,
            bottleneck: mean.bottleneck.decode,
            estimate: Predicted::Aggregated(Box::new(mean)),
        }
    }

    /// A disaggregated deployment estimated at the worst-case and the mean lengths.
    pub fn disaggregated(worst: &DisaggEstimate, mean: DisaggEstimate) -> Figures {
        // Requests in flight per worker: a prefill worker's prompts per
        // step, a decode worker's share of the deployment's requests.
        let pool = |role, p: &crate::serving::disagg::PoolEstimate, concurrency: u64| PoolFigures {
            role,
            layout: p.layout,
            workers: p.workers as u64,
            gpus: p.gpus,
            concurrency,
            redundant_experts: 0,
        };
        let prefill_c =
            (mean.prefill.requests_per_rank * mean.prefill.layout.dp as f64).round() as u64;
        let decode_c = mean
            .workload
            .concurrency
            .div_ceil(mean.decode.workers.max(1) as u64);
        // The pool with the least room left under what its engine may use
        // (under a share of the GPU, the fuller one).
        let mem = |e: &DisaggEstimate| {
            let (p, d) = (&e.prefill.memory, &e.decode.memory);
            if p.room().0 <= d.room().0 {
                p.clone()
            } else {
                d.clone()
            }
        };
        let fullest = mem(worst);
        Figures {
            mode: Mode::Disaggregated,
            pools: vec![
                pool(PoolRole::Prefill, &mean.prefill, prefill_c),
                pool(PoolRole::Decode, &mean.decode, decode_c),
            ],
            kv_cache_dtype: None,
            gpus: mean.gpus,
            plan_concurrency: mean.workload.concurrency,
            output_tokens_per_s_per_gpu: mean.output_tokens_per_s_per_gpu,
            output_tokens_per_s_per_user: mean.output_tokens_per_s_per_user,
            requests_per_s: mean.requests_per_s,
            ttft: worst.ttft.max(mean.ttft),
            tpot: worst.tpot.max(mean.tpot),
            memory_per_gpu: fullest.total_bytes,
            memory_fraction: fullest.total_bytes.0 / fullest.capacity_bytes.0,
            usable_fraction: fullest.usable_bytes.0 / fullest.capacity_bytes.0,
            load_imbalance: mean.load_imbalance.max(worst.load_imbalance),
            fits: worst.fits,
            bottleneck: mean.decode.step.bottleneck,
            estimate: Predicted::Disaggregated(Box::new(mean)),
        }
    }

    /// What the service levels judge.
    pub(crate) fn judged(&self) -> Judged {
        Judged {
            memory_fraction: self.memory_fraction,
            usable_fraction: self.usable_fraction,
            ttft_ms: self.ttft.ms(),
            tpot_ms: self.tpot.ms(),
            throughput_per_gpu: self.output_tokens_per_s_per_gpu.0,
            throughput_per_user: self.output_tokens_per_s_per_user.0,
            load_imbalance: self.load_imbalance,
            gpus: self.gpus,
        }
    }
}

/// The lengths a deployment is judged at: its workload's (the mean) and the
/// worst case.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorstCase {
    /// The longest prompt.
    pub isl: u64,
    /// The longest output.
    pub osl: u64,
}

/// Why a deployment has no figures: a pool's layout breaks a rule.
pub(crate) type Invalid = Vec<(PoolRole, LayoutProblem)>;

/// Estimates a deployment (its workload: the mean lengths) and its worst
/// case, aggregated ones as `replicas` copies.
pub fn evaluate(
    d: &Deployment,
    worst: WorstCase,
    replicas: u64,
    detail: Detail,
) -> Result<Figures, Invalid> {
    let at = |w: Workload| Workload {
        isl: Tokens::new(worst.isl.max(1)),
        osl: Tokens::new(worst.osl.max(1)),
        ..w
    };
    match d {
        Deployment::Aggregated(r) => {
            let tag = |p: Vec<LayoutProblem>| -> Invalid {
                p.into_iter().map(|x| (PoolRole::Aggregated, x)).collect()
            };
            let input = r.input();
            let mean = estimate_at(&input, detail).map_err(tag)?;
            let fixed = at(r.workload) == r.workload;
            let worst_e = if fixed {
                mean.clone()
            } else {
                estimate_at(
                    &crate::serving::EstimateInput {
                        workload: at(r.workload),
                        ..input
                    },
                    Detail::Summary,
                )
                .map_err(tag)?
            };
            let mut f = Figures::aggregated(&worst_e, mean, replicas, r.workload.concurrency);
            f.pools[0].redundant_experts = r.redundant_experts;
            Ok(f)
        }
        Deployment::Disaggregated(x) => {
            let input = x.input();
            let mean = estimate_disaggregated(&input)?;
            let worst_e = if at(x.workload) == x.workload {
                mean.clone()
            } else {
                estimate_disaggregated(&crate::serving::disagg::DisaggInput {
                    workload: at(x.workload),
                    ..input
                })?
            };
            let mut f = Figures::disaggregated(&worst_e, mean);
            f.pools[0].redundant_experts = x.prefill.redundant_experts;
            f.pools[1].redundant_experts = x.decode.redundant_experts;
            Ok(f)
        }
    }
}

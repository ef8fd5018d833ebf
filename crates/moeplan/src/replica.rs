//! One replica ready to be estimated or drawn: the owned inputs of an
//! estimate (model, GPU, kernel curves, layout, workload, engine settings,
//! expert placement). Every command builds its replicas through this type,
//! from flags, a scenario or a measured run.

use crate::calibration::Calibration;
use crate::hardware::Gpu;
use crate::layout::Layout;
use crate::memory::EngineConfig;
use crate::model::Model;
use crate::ops::Overlap;
use crate::serving::disagg::{DisaggInput, Pool};
use crate::serving::{EstimateInput, Workload};
use crate::spec::plan::{Deployment as PlanDeployment, Plan, Pool as PlanPool};
use crate::spec::scenario::Scenario;
use crate::units::Tokens;
use serde::Serialize;

/// What a pool of workers serves: both phases, or one of them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PoolRole {
    /// Prefill and decode on the same GPUs.
    Aggregated,
    /// Prompts only (disaggregated).
    Prefill,
    /// Decode steps only (disaggregated).
    Decode,
}

impl PoolRole {
    /// The name used in output and plan files.
    pub fn name(self) -> &'static str {
        match self {
            PoolRole::Aggregated => "aggregated",
            PoolRole::Prefill => "prefill",
            PoolRole::Decode => "decode",
        }
    }
}

impl std::fmt::Display for PoolRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One replica ready to be estimated or drawn.
pub struct Replica {
    /// The model.
    pub model: Model,
    /// The GPU.
    pub gpu: Gpu,
    /// The kernel curves (a profile, or flat efficiencies).
    pub calibration: Calibration,
    /// The replica's layout.
    pub layout: Layout,
    /// The requests.
    pub workload: Workload,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Redundant expert slots (EPLB).
    pub redundant_experts: u32,
    /// Power-law exponent of expert popularity (0 = uniform).
    pub routing_skew: f64,
    /// Whether its steps overlap communication with computation.
    pub overlap: Overlap,
}

impl Replica {
    /// One replica of `layout` serving a scenario's workload at its mean
    /// lengths, with the scenario's efficiencies and memory limit on `engine`.
    pub fn from_scenario(
        s: Scenario,
        layout: Layout,
        concurrency: u64,
        engine: EngineConfig,
    ) -> Replica {
        Replica {
            calibration: s.calibration(engine.engine),
            layout,
            workload: Workload {
                isl: Tokens::new(s.workload.isl.mean().max(1)),
                osl: Tokens::new(s.workload.osl.mean().max(1)),
                concurrency: concurrency.max(1),
                cache_hit_rate: s.workload.cache_hit_rate,
                client: s.workload.client,
            },
            engine: s.engine(engine),
            redundant_experts: s.redundant_experts_for(&layout),
            routing_skew: s.routing_skew,
            overlap: Overlap::None,
            model: s.model,
            gpu: s.gpu,
        }
    }

    /// The estimate's input.
    pub fn input(&self) -> EstimateInput<'_> {
        EstimateInput {
            model: &self.model,
            gpu: &self.gpu,
            calibration: self.calibration.clone(),
            layout: self.layout,
            workload: self.workload,
            engine: self.engine,
            redundant_experts: self.redundant_experts,
            routing_skew: self.routing_skew,
            overlap: self.overlap,
        }
    }
}

/// A disaggregated deployment ready to be estimated: the owned inputs of
/// `serving::disagg::estimate_disaggregated`.
pub struct Disaggregated {
    /// The model.
    pub model: Model,
    /// The GPU (both pools).
    pub gpu: Gpu,
    /// The kernel curves and serving layer.
    pub calibration: Calibration,
    /// The prefill pool.
    pub prefill: Pool,
    /// The decode pool.
    pub decode: Pool,
    /// Lengths, and the requests in flight on the whole deployment.
    pub workload: Workload,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Power-law exponent of expert popularity (0 = uniform).
    pub routing_skew: f64,
    /// What was assumed because the input did not say (worker counts).
    pub assumed: Vec<String>,
}

impl Disaggregated {
    /// Fills unstated worker counts (0): the decode pool gets the fewest
    /// workers that hold every request in KV memory, the prefill pool the
    /// workers that keep up with that decode pool (rate matching). Each
    /// assumption is recorded in `assumed`.
    pub fn infer_workers(&mut self) {
        let w = self.workload;
        if self.decode.workers == 0 {
            let (workers, per_worker) = self.fewest_decode_workers();
            self.decode.workers = workers;
            self.assumed.push(format!(
                "decode workers not stated: {}, the fewest that hold {} requests ({} per worker)",
                self.decode.workers, w.concurrency, per_worker
            ));
        }
        if self.prefill.workers == 0 {
            let n = self.rate_matched_prefill_workers();
            self.prefill.workers = n;
            self.assumed.push(format!(
                "prefill workers not stated: {n}, what keeps up with the decode pool"
            ));
        }
    }

    /// Re-sizes both pools as `infer_workers` sizes unstated ones: the
    /// decode pool keeps its workers, at least the fewest that hold every
    /// request in KV memory, and the prefill pool gets the workers that keep
    /// up with it (rate matching).
    pub(crate) fn rate_match(&mut self) {
        self.decode.workers = self.decode.workers.max(self.fewest_decode_workers().0);
        self.prefill.workers = self.rate_matched_prefill_workers();
    }

    /// The fewest decode workers that hold every request in KV memory, and
    /// the requests one worker holds.
    fn fewest_decode_workers(&self) -> (u32, u64) {
        let w = self.workload;
        let per_worker = crate::memory::max_concurrency(
            &self.model,
            &self.gpu,
            &self.decode.layout,
            &self.engine,
            self.decode.redundant_experts,
            w.steady_context(),
        )
        .max(1);
        let workers = w.concurrency.div_ceil(per_worker).max(1);
        (workers.min(u64::from(u32::MAX)) as u32, per_worker)
    }

    /// Prefill workers that keep up with the decode pool
    /// (`serving::disagg::rate_matched_prefill_workers`).
    fn rate_matched_prefill_workers(&self) -> u32 {
        let mut one = self.input();
        one.prefill.workers = 1;
        crate::serving::disagg::rate_matched_prefill_workers(&one)
    }

    /// The estimate's input.
    pub fn input(&self) -> DisaggInput<'_> {
        DisaggInput {
            model: &self.model,
            gpu: &self.gpu,
            calibration: self.calibration.clone(),
            prefill: self.prefill,
            decode: self.decode,
            workload: self.workload,
            engine: self.engine,
            routing_skew: self.routing_skew,
        }
    }
}

/// A deployment ready to be estimated: one aggregated replica, or a
/// disaggregated pair of pools.
pub enum Deployment {
    /// One replica of an aggregated deployment.
    Aggregated(Replica),
    /// A disaggregated deployment.
    Disaggregated(Disaggregated),
}

/// Requests in flight when a plan does not say: per replica (aggregated) or
/// on the whole deployment (disaggregated).
pub(crate) const DEFAULT_CONCURRENCY: u64 = 64;

impl Deployment {
    /// The model it serves.
    pub fn model(&self) -> &Model {
        match self {
            Deployment::Aggregated(r) => &r.model,
            Deployment::Disaggregated(d) => &d.model,
        }
    }

    /// The GPU it runs on.
    pub fn gpu(&self) -> &Gpu {
        match self {
            Deployment::Aggregated(r) => &r.gpu,
            Deployment::Disaggregated(d) => &d.gpu,
        }
    }

    /// How the user profile (`--profile`) applies to it: the fit of its
    /// GPU, engine and mode, or why none (None: no profile in use).
    pub fn profile_use(&self) -> Option<crate::profile::ProfileUse> {
        let mode = match self {
            Deployment::Aggregated(_) => crate::profile::ServingMode::Aggregated,
            Deployment::Disaggregated(_) => crate::profile::ServingMode::Disaggregated,
        };
        crate::profile::user_profile_use(self.gpu(), self.engine().engine, mode)
    }

    /// Its engine settings.
    pub fn engine(&self) -> &EngineConfig {
        match self {
            Deployment::Aggregated(r) => &r.engine,
            Deployment::Disaggregated(d) => &d.engine,
        }
    }

    /// Its workload: lengths, and the requests in flight (on one replica
    /// when aggregated, on the whole deployment when disaggregated).
    pub fn workload(&self) -> Workload {
        match self {
            Deployment::Aggregated(r) => r.workload,
            Deployment::Disaggregated(d) => d.workload,
        }
    }

    /// The deployment a plan file describes, on `engine`. Its workload's
    /// `concurrency` counts the requests in flight on one replica of an
    /// aggregated plan, and on the whole deployment of a disaggregated one
    /// (the decode pool's requests); lengths are the scenario's means.
    pub fn from_plan(plan: &Plan, engine: EngineConfig) -> Deployment {
        let s = &plan.scenario;
        let concurrency = s.workload.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        match plan.deployment {
            PlanDeployment::Aggregated { pool } => Deployment::Aggregated(Replica {
                redundant_experts: pool.redundant_experts,
                overlap: pool.overlap,
                ..Replica::from_scenario(s.clone(), pool.layout, concurrency, engine)
            }),
            PlanDeployment::Disaggregated { prefill, decode } => {
                let pool = |p: PlanPool| Pool {
                    layout: p.layout,
                    workers: p.replicas,
                    prompts_per_rank: 1,
                    redundant_experts: p.redundant_experts,
                    overlap: p.overlap,
                };
                let calibration =
                    crate::profile::resolve_disaggregated(&s.model, &s.gpu, engine.engine)
                        .kernels
                        .flat(s.mfu, s.bandwidth_utilization);
                Deployment::Disaggregated(Disaggregated {
                    model: s.model.clone(),
                    gpu: s.gpu.clone(),
                    calibration,
                    prefill: pool(prefill),
                    decode: pool(decode),
                    workload: Workload {
                        isl: Tokens::new(s.workload.isl.mean().max(1)),
                        osl: Tokens::new(s.workload.osl.mean().max(1)),
                        concurrency: concurrency.max(1),
                        cache_hit_rate: s.workload.cache_hit_rate,
                        client: s.workload.client,
                    },
                    engine: s.engine(engine),
                    routing_skew: s.routing_skew,
                    assumed: Vec::new(),
                })
            }
        }
    }
}

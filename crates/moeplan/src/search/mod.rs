//! The planner: every valid layout of a scenario, costed and ranked.
//!
//! Aggregated serving (`aggregated`): each layout (PP, TP, CP,
//! attention-DP, EP, ETP) of a replica is estimated over a sweep of
//! concurrencies; replicas fill the GPU budget (or serve the request rate).
//! Disaggregated serving (`disaggregated`): the best prefill workers and
//! decode workers are paired, with worker counts matched so prefill keeps up
//! with decode, and each pair is estimated as a whole deployment (queueing
//! for prefill, KV transfer, decode batch). Every candidate's figures come
//! from `figures` and are judged by `slo::evaluate`: the same evaluation the
//! audit and `moeplan estimate` use.
//!
//! Length ranges are checked at their worst case (longest prompt and output)
//! for memory and latency, and ranked by throughput at their mean. Ranking
//! (`rank`) is deterministic: the objective, then fewer GPUs, then the
//! layout's degrees in a fixed order.

mod aggregated;
mod disaggregated;
mod enumerate;
pub mod percentiles;
mod rank;

pub use crate::figures::{Mode, PoolFigures as Pool};
pub use enumerate::enumerate;
pub use rank::describe;

use crate::calibration::Calibration;
use crate::figures::Figures;
use crate::layout::Layout;
use crate::memory::EngineConfig;
use crate::report::Derivation;
use crate::slo::{Level, Violation};
use crate::spec::scenario::Scenario;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the planner maximises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Output tokens/s per GPU under the service levels.
    ThroughputPerGpu,
    /// The fewest GPUs that serve the scenario's request rate.
    FewestGpus,
    /// The Pareto front of tokens/s per GPU against tokens/s per user.
    Pareto,
}

impl Objective {
    /// Every objective, in the order `--objective` lists them.
    pub const ALL: [Objective; 3] = [
        Objective::ThroughputPerGpu,
        Objective::FewestGpus,
        Objective::Pareto,
    ];

    /// The `--objective` value.
    pub fn flag(self) -> &'static str {
        match self {
            Objective::ThroughputPerGpu => "throughput",
            Objective::FewestGpus => "fewest-gpus",
            Objective::Pareto => "pareto",
        }
    }
}

/// Which serving modes to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Modes {
    /// Aggregated replicas and disaggregated pools.
    Both,
    /// Prefill and decode on the same GPUs only.
    Aggregated,
    /// Separate prefill and decode pools only.
    Disaggregated,
}

impl Modes {
    /// Every choice, in the order `--mode` lists them.
    pub const ALL: [Modes; 3] = [Modes::Both, Modes::Aggregated, Modes::Disaggregated];

    /// The `--mode` value.
    pub fn flag(self) -> &'static str {
        match self {
            Modes::Both => "both",
            Modes::Aggregated => "aggregated",
            Modes::Disaggregated => "disaggregated",
        }
    }

    /// Whether `mode` is searched.
    pub(crate) fn includes(self, mode: Mode) -> bool {
        match (self, mode) {
            (Modes::Both, _) => true,
            (Modes::Aggregated, Mode::Aggregated) => true,
            (Modes::Disaggregated, Mode::Disaggregated) => true,
            (Modes::Aggregated, Mode::Disaggregated) => false,
            (Modes::Disaggregated, Mode::Aggregated) => false,
        }
    }
}

/// Planner options.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// What to maximise.
    pub objective: Objective,
    /// Modes searched.
    pub modes: Modes,
    /// GPU budget when the scenario states none.
    pub default_gpus: u32,
    /// Candidates kept per mode.
    pub top_n: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            objective: Objective::ThroughputPerGpu,
            modes: Modes::Both,
            default_gpus: 64,
            top_n: 5,
        }
    }
}

/// A costed deployment.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Candidate {
    /// Its figures (the same as `moeplan estimate` gives the deployment).
    #[serde(flatten)]
    pub figures: Figures,
    /// Service levels missed (empty when it meets them all).
    pub violations: Vec<Violation>,
    /// How the headline figures were derived (filled for the recommendation).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub explain: crate::serving::Explain,
}

impl Candidate {
    /// A candidate judged against the scenario's levels and the budget.
    pub(crate) fn judged(s: &Scenario, figures: Figures, budget: u32) -> Candidate {
        let violations = crate::slo::evaluate(&s.slo, &figures.judged(), Some(budget as u64));
        Candidate {
            figures,
            violations,
            explain: BTreeMap::new(),
        }
    }

    /// Meets every service level.
    pub fn meets(&self) -> bool {
        self.violations.is_empty()
    }

    /// Misses one of these levels.
    pub fn misses(&self, levels: &[Level]) -> bool {
        self.violations.iter().any(|v| levels.contains(&v.level))
    }
}

/// How many layouts failed, by the first rule or service level they failed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Rejections {
    /// Layouts enumerated.
    pub layouts: usize,
    /// Estimates computed.
    pub estimates: usize,
    /// Invalid splits (heads, KV heads, experts, expert width, layers, folding).
    pub divisibility: usize,
    /// A TP group wider than a node.
    pub node_fit: usize,
    /// Layouts the serving engine (the scenario's, else the default) cannot express (`launch::express`).
    pub engine: usize,
    /// More GPUs than the budget.
    pub gpu_budget: usize,
    /// Weights and one request do not fit.
    pub memory: usize,
    /// Cannot meet TTFT even with one request.
    pub ttft: usize,
    /// Cannot meet TPOT even with one request.
    pub tpot: usize,
    /// Meets latency but not the per-GPU throughput floor.
    pub throughput: usize,
    /// Meets latency but not the per-user throughput floor.
    pub throughput_per_user: usize,
    /// Exceeds the load-imbalance limit.
    pub load_imbalance: usize,
}

impl Rejections {
    /// Counts a layout whose best candidate misses `level` first.
    fn count(&mut self, level: Level) {
        match level {
            Level::Memory => self.memory += 1,
            Level::Ttft => self.ttft += 1,
            Level::Tpot => self.tpot += 1,
            Level::ThroughputPerGpu => self.throughput += 1,
            Level::ThroughputPerUser => self.throughput_per_user += 1,
            Level::LoadImbalance => self.load_imbalance += 1,
            Level::Gpus => self.gpu_budget += 1,
        }
    }

    fn add(&mut self, o: &Rejections) {
        self.layouts += o.layouts;
        self.divisibility += o.divisibility;
        self.node_fit += o.node_fit;
        self.engine += o.engine;
        self.memory += o.memory;
        self.ttft += o.ttft;
        self.tpot += o.tpot;
        self.throughput += o.throughput;
        self.throughput_per_user += o.throughput_per_user;
        self.load_imbalance += o.load_imbalance;
        self.gpu_budget += o.gpu_budget;
    }
}

/// The level that decides the outcome, when nothing meets every level.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Binding {
    /// The level.
    #[serde(rename = "constraint")]
    pub level: Level,
    /// Its limit.
    pub limit: f64,
    /// The best any candidate achieves for it (meeting the others where possible).
    pub best: f64,
    /// What would satisfy it.
    pub advice: Vec<String>,
}

/// The planner's answer (`moeplan plan --json`; keys are stable).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PlanResult {
    /// The recommendation (best meeting every level; else the closest, flagged by its violations).
    pub recommended: Option<Candidate>,
    /// Why it won.
    pub rationale: Vec<String>,
    /// Ranked candidates, the top of each mode.
    pub candidates: Vec<Candidate>,
    /// The Pareto front (tokens/s per GPU vs per user) over all candidates that meet the levels.
    pub pareto: Vec<Candidate>,
    /// Rejection counts.
    pub rejected: Rejections,
    /// Set when nothing meets every level.
    pub binding: Option<Binding>,
    /// The GPU budget searched.
    pub gpu_budget: u32,
}

/// Context for evaluating candidates of one scenario.
pub(crate) struct Eval<'a> {
    pub s: &'a Scenario,
    /// Curves and serving layer of aggregated replicas.
    pub cal: Calibration,
    /// The same kernels with the disaggregated serving layer.
    pub(crate) cal_disagg: Calibration,
    pub engine: EngineConfig,
    pub objective: Objective,
    pub budget: u32,
    pub count: &'a AtomicUsize,
}

impl Eval<'_> {
    /// Counts one estimate.
    pub(crate) fn tick(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The evaluation context of one scenario's search.
fn eval<'a>(s: &'a Scenario, opts: &PlanOptions, budget: u32, count: &'a AtomicUsize) -> Eval<'a> {
    // The scenario's engine (the one it states, else the best-fitting one).
    let engine = s.engine_config();
    Eval {
        s,
        cal: s.calibration(engine.engine),
        cal_disagg: crate::profile::resolve_disaggregated(&s.model, &s.gpu, engine.engine)
            .kernels
            .flat(s.mfu, s.bandwidth_utilization),
        engine,
        objective: opts.objective,
        budget,
        count,
    }
}

/// What the search of one KV cache type found: each aggregated layout's
/// best candidate and every point meeting the levels, the disaggregated
/// pairs, and the rejections.
#[derive(Default)]
struct Found {
    agg: Vec<Candidate>,
    agg_points: Vec<Candidate>,
    disagg: Vec<Candidate>,
    rej: Rejections,
}

impl Found {
    /// Every candidate marked with the KV cache type it was searched with.
    fn mark(&mut self, kv: crate::dtype::DType) {
        for c in self
            .agg
            .iter_mut()
            .chain(self.agg_points.iter_mut())
            .chain(self.disagg.iter_mut())
        {
            c.figures.kv_cache_dtype = Some(kv);
        }
    }

    fn extend(&mut self, o: Found) {
        self.agg.extend(o.agg);
        self.agg_points.extend(o.agg_points);
        self.disagg.extend(o.disagg);
        self.rej.add(&o.rej);
    }
}

/// Every layout of one scenario (one KV cache type), costed.
fn search(e: &Eval, modes: Modes, progress: &(dyn Fn(usize, usize) + Sync)) -> Found {
    let mut found = Found::default();
    let layouts = enumerate(e.s, e.budget, &mut found.rej);
    let done = AtomicUsize::new(0);
    let total = layouts.len();
    if modes.includes(Mode::Aggregated) {
        let results: Vec<(Option<Candidate>, Vec<Candidate>, Rejections)> = layouts
            .par_iter()
            .map(|l| {
                let mut r = Rejections::default();
                let (c, points) = aggregated::best(e, *l, &mut r);
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                (c, points, r)
            })
            .collect();
        for (c, points, r) in results {
            found.agg_points.extend(points);
            found.rej.add(&r);
            found.agg.extend(c);
        }
    }
    if modes.includes(Mode::Disaggregated) && e.budget >= 2 {
        found.disagg = disaggregated::candidates(e, &layouts);
    }
    found
}

/// Searches a scenario: every layout of each KV cache type it allows
/// (`Scenario::kv_cache_dtypes`; candidates say which type they use when
/// there are several), ranked together.
pub fn plan(
    s: &Scenario,
    opts: &PlanOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> PlanResult {
    let budget = s.gpus_available.unwrap_or(opts.default_gpus);
    let kvs = s.kv_cache_dtypes();
    let variants: Vec<Scenario> = match kvs.as_slice() {
        [_] => vec![s.clone()],
        _ => kvs.iter().map(|kv| s.with_kv_cache(*kv)).collect(),
    };
    let count = AtomicUsize::new(0);
    let mut found = Found::default();
    for v in &variants {
        let mut f = search(&eval(v, opts, budget, &count), opts.modes, progress);
        if variants.len() > 1 {
            f.mark(v.model.dtypes.kv_cache);
        }
        found.extend(f);
    }
    let Found {
        mut agg,
        agg_points,
        mut disagg,
        mut rej,
    } = found;
    agg.sort_by(|a, b| rank::rank(a, b, opts.objective));
    disagg.sort_by(|a, b| rank::rank(a, b, opts.objective));
    let pareto = rank::pareto_front(agg_points.iter().chain(disagg.iter()).filter(|c| c.meets()));
    let mut all: Vec<Candidate> = agg.iter().chain(disagg.iter()).cloned().collect();
    all.sort_by(|a, b| rank::rank(a, b, opts.objective));
    let recommended = all.first().cloned().map(|r| {
        // Explained on the scenario of its own KV cache type.
        let v = variants
            .iter()
            .find(|v| {
                r.figures
                    .kv_cache_dtype
                    .is_none_or(|kv| v.model.dtypes.kv_cache == kv)
            })
            .unwrap_or(s);
        explained(&eval(v, opts, budget, &count), r)
    });
    let binding = if recommended.as_ref().is_some_and(Candidate::meets) {
        None
    } else {
        rank::binding(s, &all)
    };
    let rationale = rank::rationale(&all, recommended.as_ref());
    let mut candidates: Vec<Candidate> = agg.into_iter().take(opts.top_n).collect();
    candidates.extend(disagg.into_iter().take(opts.top_n));
    candidates.sort_by(|a, b| rank::rank(a, b, opts.objective));
    rej.estimates = count.load(Ordering::Relaxed);
    PlanResult {
        recommended,
        rationale,
        candidates,
        pareto,
        rejected: rej,
        binding,
        gpu_budget: budget,
    }
}

/// The recommendation with every derivation of its estimate, and how its
/// GPUs add up.
fn explained(e: &Eval, mut r: Candidate) -> Candidate {
    let mut explain = match r.figures.mode {
        Mode::Aggregated => aggregated::explain(e, &r),
        Mode::Disaggregated => disaggregated::explain(&r),
    };
    let parts: Vec<String> = r
        .figures
        .pools
        .iter()
        .map(|p| format!("{} {} × {} GPUs", p.role, p.workers, p.layout.gpus()))
        .collect();
    explain.insert(
        crate::serving::ExplainKey::Gpus,
        Derivation::new(
            "Σ over pools of workers × GPUs per worker (pp · tp · cp · dp; EP and ETP fold onto the same GPUs)",
            &[("pools", parts.join(" + ")), ("gpus", r.figures.gpus.to_string())],
        ),
    );
    r.explain = explain;
    r
}

/// The planner as the audit's fallback when a plan's own layout is hopeless:
/// the best aggregated layout (the corrected plan keeps the plan's form)
/// meeting every requirement, with its replica count.
pub struct SearchPlanner;

impl crate::audit::fix::Planner for SearchPlanner {
    fn recommend(&self, plan: &crate::spec::plan::Plan) -> Option<(Layout, u32)> {
        let s = plan.scenario.clone();
        let opts = PlanOptions {
            modes: Modes::Aggregated,
            ..PlanOptions::default()
        };
        let r = self::plan(&s, &opts, &|_, _| {});
        let rec = r.recommended.filter(Candidate::meets)?;
        let pool = rec.figures.pools.first()?;
        Some((pool.layout, u32::try_from(pool.workers).ok()?))
    }
}

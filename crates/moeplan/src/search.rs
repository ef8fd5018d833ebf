//! The planner: every valid layout of a scenario, costed and ranked.
//!
//! Aggregated serving: each layout (PP, TP, CP, attention-DP, EP, ETP) of a
//! replica is costed over a sweep of concurrencies; the best concurrency that
//! meets every service level is kept, replicas fill the GPU budget (or serve
//! the request rate). Disaggregated serving: the best prefill worker and the
//! best decode worker are paired, with worker counts matched so prefill keeps
//! up with decode, and the KV cache shipped between them on the network.
//!
//! Length ranges are checked at their worst case (longest prompt and output)
//! for memory and latency, and ranked by throughput at their mean. Ranking
//! is deterministic: the objective, then fewer GPUs, then the layout's
//! degrees in a fixed order.

use crate::layout::Layout;
use crate::memory::{self, EngineConfig};
use crate::ops::{CostContext, StepShape};
use crate::report::Derivation;
use crate::serving::{
    estimate, estimate_summary, load_imbalance, Estimate, EstimateInput, Workload,
};
use crate::spec::scenario::Scenario;
use crate::units::{Bytes, Seconds, TokensPerSecond};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the planner maximises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Output tokens/s per GPU under the service levels.
    ThroughputPerGpu,
    /// The fewest GPUs that serve the scenario's request rate.
    FewestGpus,
    /// The Pareto front of tokens/s per GPU against tokens/s per user.
    Pareto,
}

/// Which serving modes to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Modes {
    /// Prefill and decode on the same GPUs.
    pub aggregated: bool,
    /// Separate prefill and decode pools.
    pub disaggregated: bool,
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
    /// Engine settings.
    pub engine: EngineConfig,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            objective: Objective::ThroughputPerGpu,
            modes: Modes {
                aggregated: true,
                disaggregated: true,
            },
            default_gpus: 64,
            top_n: 5,
            engine: EngineConfig::default(),
        }
    }
}

/// Serving mode of a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Prefill and decode share GPUs.
    Aggregated,
    /// Separate pools.
    Disaggregated,
}

/// One pool of identical workers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pool {
    /// `aggregated`, `prefill` or `decode`.
    pub role: &'static str,
    /// The layout of one worker (pp, tp, cp, dp, ep, etp in JSON).
    #[serde(flatten)]
    pub layout: Layout,
    /// Workers (replicas) in the pool.
    pub workers: u32,
    /// GPUs of the pool.
    pub gpus: u32,
    /// Requests in flight per worker.
    pub concurrency: u64,
}

impl Pool {
    fn new(role: &'static str, layout: Layout, workers: u32, concurrency: u64) -> Pool {
        Pool {
            role,
            layout,
            workers,
            gpus: workers * layout.gpus(),
            concurrency,
        }
    }
}

fn as_ms<S: serde::Serializer>(t: &Seconds, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(t.ms())
}

/// A service level a candidate misses, and by how much.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// `memory`, `ttft`, `tpot`, `throughput_per_gpu`, `throughput_per_user`, `load_imbalance`, `gpus`.
    pub constraint: &'static str,
    /// The limit.
    pub limit: f64,
    /// The predicted value.
    pub value: f64,
    /// The unit of `limit` and `value`.
    pub unit: &'static str,
}

impl Violation {
    fn new(constraint: &'static str, limit: f64, value: f64) -> Violation {
        let unit = match constraint {
            "ttft" | "tpot" => "ms",
            "throughput_per_gpu" | "throughput_per_user" => "output tokens/s",
            "gpus" => "GPUs",
            // memory and load imbalance
            _ => "fraction",
        };
        Violation {
            constraint,
            limit,
            value,
            unit,
        }
    }
}

/// A costed deployment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// Serving mode.
    pub mode: Mode,
    /// Its pools (one for aggregated; prefill and decode otherwise).
    pub pools: Vec<Pool>,
    /// GPUs of the whole deployment.
    pub gpus: u32,
    /// Output tokens/s of the deployment divided by all its GPUs (at the mean lengths).
    pub output_tokens_per_s_per_gpu: TokensPerSecond,
    /// Output tokens/s one request sees.
    pub output_tokens_per_s_per_user: TokensPerSecond,
    /// Requests/s the deployment completes.
    pub requests_per_s: f64,
    /// TTFT at the longest prompt (`ttft_ms` in JSON).
    #[serde(rename = "ttft_ms", serialize_with = "as_ms")]
    pub ttft: Seconds,
    /// TPOT at the longest context (`tpot_ms` in JSON).
    #[serde(rename = "tpot_ms", serialize_with = "as_ms")]
    pub tpot: Seconds,
    /// Memory of the fullest GPU at the longest context.
    #[serde(rename = "memory_per_gpu_bytes")]
    pub memory_per_gpu: Bytes,
    /// That memory as a fraction of capacity.
    pub memory_fraction: f64,
    /// Expert load imbalance (max/mean − 1).
    pub load_imbalance: f64,
    /// What limits decode.
    pub bottleneck: String,
    /// Service levels missed (empty when it meets them all).
    pub violations: Vec<Violation>,
    /// The estimate of the (aggregated or decode) worker at the mean lengths, as `moeplan estimate --json` gives it.
    pub estimate: serde_json::Value,
    /// How the headline figures were derived (filled for the recommendation).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub explain: BTreeMap<String, Derivation>,
}

impl Candidate {
    /// Meets every service level.
    pub fn meets(&self) -> bool {
        self.violations.is_empty()
    }
}

/// How many layouts failed, by the first rule or service level they failed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rejections {
    /// Layouts enumerated.
    pub layouts: usize,
    /// Estimates computed.
    pub estimates: usize,
    /// Invalid splits (heads, KV heads, experts, expert width, layers, folding).
    pub divisibility: usize,
    /// A TP group wider than a node.
    pub node_fit: usize,
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

/// The constraint that decides the outcome, when nothing meets every level.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Binding {
    /// The constraint.
    pub constraint: &'static str,
    /// Its limit.
    pub limit: f64,
    /// The best any candidate achieves for it (meeting the others where possible).
    pub best: f64,
    /// What would satisfy it.
    pub advice: Vec<String>,
}

/// The planner's answer (`moeplan plan --json`; keys are stable).
#[derive(Clone, Debug, PartialEq, Serialize)]
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

const PP: [u32; 5] = [1, 2, 4, 8, 16];
const POW2: [u32; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/// Every layout of at most `budget` GPUs the enumeration considers, with the
/// count of those rejected before costing.
pub fn enumerate(s: &Scenario, budget: u32, rej: &mut Rejections) -> Vec<Layout> {
    let m = &s.model;
    let node = s.gpu.gpus_per_node;
    let mut out = Vec::new();
    let cps: &[u32] = if s.workload.isl.max >= 16384 {
        &[1, 2, 4, 8]
    } else {
        &[1]
    };
    // Attention-DP: every degree up to 16, then whole nodes.
    let dps: Vec<u32> = (1..=budget).filter(|d| *d <= 16 || d % node == 0).collect();
    for &pp in PP.iter().filter(|p| **p as usize <= m.n_layers()) {
        for &tp in &POW2 {
            for &cp in cps {
                for &dp in &dps {
                    let stage = tp * cp * dp;
                    if pp * stage > budget {
                        continue;
                    }
                    let divisors: Vec<u32> = (1..=stage).filter(|e| stage % e == 0).collect();
                    for &ep in &divisors {
                        if m.moe.is_none() && ep > 1 {
                            continue;
                        }
                        // Experts sharded over the whole stage (edp = 1), or, without
                        // EP, replicated per attention-DP rank (etp = tp·cp).
                        // A dense model has no experts to split: etp stays 1.
                        let mut etps = vec![if m.moe.is_some() { stage / ep } else { 1 }];
                        if ep == 1 && dp > 1 && m.moe.is_some() {
                            etps.push(tp * cp);
                        }
                        for etp in etps {
                            let l = Layout {
                                pp,
                                tp,
                                cp,
                                dp,
                                ep,
                                etp,
                            };
                            rej.layouts += 1;
                            if !l.check(m, &s.gpu, 0).0.is_empty() {
                                rej.divisibility += 1;
                                continue;
                            }
                            if tp > node {
                                rej.node_fit += 1;
                                continue;
                            }
                            out.push(l);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Context for evaluating candidates of one scenario.
struct Eval<'a> {
    s: &'a Scenario,
    cal: crate::calibration::Calibration,
    engine: EngineConfig,
    objective: Objective,
    count: &'a AtomicUsize,
}

impl Eval<'_> {
    fn input(&self, l: Layout, isl: u64, osl: u64, concurrency: u64) -> EstimateInput<'_> {
        EstimateInput {
            model: &self.s.model,
            gpu: &self.s.gpu,
            calibration: self.cal.clone(),
            layout: l,
            workload: Workload {
                isl,
                osl,
                concurrency,
            },
            engine: self.engine,
            redundant_experts: 0,
            routing_skew: 0.0,
        }
    }

    /// The figures of one deployment, without the explanation (the hot path).
    fn estimate(&self, l: Layout, isl: u64, osl: u64, concurrency: u64) -> Option<Estimate> {
        self.count.fetch_add(1, Ordering::Relaxed);
        estimate_summary(&self.input(l, isl, osl, concurrency)).ok()
    }

    /// The same with every derivation (for the recommendation).
    fn explained(&self, l: Layout, isl: u64, osl: u64, concurrency: u64) -> Option<Estimate> {
        self.count.fetch_add(1, Ordering::Relaxed);
        estimate(&self.input(l, isl, osl, concurrency)).ok()
    }

    /// Service levels missed by a worst-case and a mean-case estimate.
    fn violations(
        &self,
        worst: &Estimate,
        mean: &Estimate,
        per_gpu: f64,
        per_user: f64,
    ) -> Vec<Violation> {
        let slo = &self.s.slo;
        let mut v = Vec::new();
        let mem_frac = worst.memory.total_bytes.0 / worst.memory.capacity_bytes.0;
        if mem_frac > slo.max_memory_fraction {
            v.push(Violation::new("memory", slo.max_memory_fraction, mem_frac));
        }
        if let Some(t) = slo.ttft {
            if worst.ttft.0 > t.0 {
                v.push(Violation::new("ttft", t.ms(), worst.ttft.ms()));
            }
        }
        if let Some(t) = slo.tpot {
            if worst.tpot.0 > t.0 {
                v.push(Violation::new("tpot", t.ms(), worst.tpot.ms()));
            }
        }
        if let Some(r) = slo.min_throughput_per_gpu {
            if per_gpu < r.0 {
                v.push(Violation::new("throughput_per_gpu", r.0, per_gpu));
            }
        }
        if let Some(r) = slo.min_throughput_per_user {
            if per_user < r.0 {
                v.push(Violation::new("throughput_per_user", r.0, per_user));
            }
        }
        if let Some(li) = slo.max_load_imbalance {
            let used = mean.load_imbalance.used.max(worst.load_imbalance.used);
            if used > li {
                v.push(Violation::new("load_imbalance", li, used));
            }
        }
        v
    }

    /// The best concurrency of one aggregated layout.
    /// Also returns every concurrency point that meets the levels (for the Pareto front).
    fn aggregated(
        &self,
        l: Layout,
        budget: u32,
        rej: &mut Rejections,
    ) -> (Option<Candidate>, Vec<Candidate>) {
        let mut points = Vec::new();
        let w = &self.s.workload;
        let (isl_w, osl_w) = (w.isl.max, w.osl.max);
        let (isl_m, osl_m) = (w.isl.mean(), w.osl.mean());
        let limit = memory::max_concurrency(
            &self.s.model,
            &self.s.gpu,
            &l,
            &self.engine,
            0,
            isl_w + osl_w,
        );
        if limit == 0 {
            rej.memory += 1;
            return (None, points);
        }
        let levels = concurrency_levels(&l, limit, w.concurrency);
        let replicas_for = |per_replica_rps: f64| -> u32 {
            match w.request_rate {
                Some(rate) => ((rate / per_replica_rps).ceil() as u32).max(1),
                None => (budget / l.gpus()).max(1),
            }
        };
        let mut best: Option<Candidate> = None;
        for c in levels {
            let Some(worst) = self.estimate(l, isl_w, osl_w, c) else {
                break;
            };
            // Fixed lengths: the worst case is the mean case (no second estimate, no copy).
            let mean_owned;
            let mean: &Estimate = if w.isl.is_fixed() && w.osl.is_fixed() {
                &worst
            } else {
                match self.estimate(l, isl_m, osl_m, c) {
                    Some(m) => {
                        mean_owned = m;
                        &mean_owned
                    }
                    None => break,
                }
            };
            let per_gpu = mean.output_tokens_per_s_per_gpu.0;
            let per_user = mean.output_tokens_per_s_per_user.0;
            let rps = per_gpu * l.gpus() as f64 / osl_m as f64;
            let replicas = replicas_for(rps);
            let mut v = self.violations(&worst, mean, per_gpu, per_user);
            if replicas * l.gpus() > budget {
                v.push(Violation::new(
                    "gpus",
                    budget as f64,
                    (replicas * l.gpus()) as f64,
                ));
            }
            let latency_fails = v
                .iter()
                .any(|x| matches!(x.constraint, "ttft" | "tpot" | "memory" | "gpus"));
            let cand = Candidate {
                mode: Mode::Aggregated,
                pools: vec![Pool::new("aggregated", l, replicas, c)],
                gpus: replicas * l.gpus(),
                output_tokens_per_s_per_gpu: TokensPerSecond(per_gpu),
                output_tokens_per_s_per_user: TokensPerSecond(per_user),
                requests_per_s: rps * replicas as f64,
                ttft: worst.ttft,
                tpot: worst.tpot,
                memory_per_gpu: worst.memory.total_bytes,
                memory_fraction: worst.memory.total_bytes.0 / worst.memory.capacity_bytes.0,
                load_imbalance: mean.load_imbalance.used,
                bottleneck: format!("{:?}", mean.bottleneck.decode).to_lowercase(),
                violations: v,
                estimate: summary_json(mean),
                explain: BTreeMap::new(),
            };
            if cand.meets() {
                points.push(cand.clone());
            }
            if better(&cand, best.as_ref(), self.objective) {
                best = Some(cand);
            }
            // Higher concurrency only lengthens latency: stop once latency fails
            // after a success.
            if latency_fails && best.as_ref().is_some_and(Candidate::meets) {
                break;
            }
        }
        if let Some(b) = &best {
            if !b.meets() {
                match b.violations[0].constraint {
                    "memory" => rej.memory += 1,
                    "ttft" => rej.ttft += 1,
                    "tpot" => rej.tpot += 1,
                    "throughput_per_gpu" => rej.throughput += 1,
                    "throughput_per_user" => rej.throughput_per_user += 1,
                    "load_imbalance" => rej.load_imbalance += 1,
                    _ => rej.gpu_budget += 1,
                }
            }
        }
        (best, points)
    }
}

/// Requests in flight tried per worker: the scenario's when it fixes one,
/// else doublings from one per attention-DP rank up to what memory holds.
fn concurrency_levels(l: &Layout, limit: u64, fixed: Option<u64>) -> Vec<u64> {
    if let Some(c) = fixed {
        return vec![c];
    }
    let v: Vec<u64> = (0..16)
        .map(|i| (l.dp as u64) << i)
        .take_while(|c| *c <= limit.min(4096 * l.dp as u64))
        .collect();
    if v.is_empty() {
        vec![limit.max(1)]
    } else {
        v
    }
}

/// The fields of an estimate a candidate carries (without the per-op breakdown).
fn summary_json(e: &Estimate) -> serde_json::Value {
    let mut j = e.to_json();
    if let Some(o) = j.as_object_mut() {
        for k in ["prefill", "decode", "explain"] {
            o.remove(k);
        }
    }
    j
}

/// Ranking key: meeting every level first, then tokens/s per GPU, then fewer
/// GPUs, then lower TTFT, then the layout in a fixed order.
fn better(a: &Candidate, b: Option<&Candidate>, objective: Objective) -> bool {
    match b {
        None => true,
        Some(b) => rank(a, b, objective) == std::cmp::Ordering::Less,
    }
}

fn rank(a: &Candidate, b: &Candidate, objective: Objective) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let meets = b.meets().cmp(&a.meets());
    if meets != Ordering::Equal {
        return meets;
    }
    if !a.meets() {
        // Fewer violations, then the smaller worst relative shortfall.
        let by_count = a.violations.len().cmp(&b.violations.len());
        if by_count != Ordering::Equal {
            return by_count;
        }
    }
    let primary = match objective {
        Objective::FewestGpus => a.gpus.cmp(&b.gpus).then(
            b.output_tokens_per_s_per_gpu
                .total_cmp(&a.output_tokens_per_s_per_gpu),
        ),
        _ => b
            .output_tokens_per_s_per_gpu
            .total_cmp(&a.output_tokens_per_s_per_gpu)
            .then(a.gpus.cmp(&b.gpus)),
    };
    primary
        .then(a.ttft.total_cmp(&b.ttft))
        .then(a.mode.cmp(&b.mode))
        .then_with(|| layout_key(a).cmp(&layout_key(b)))
}

fn layout_key(c: &Candidate) -> Vec<(Layout, u32, u64)> {
    c.pools
        .iter()
        .map(|p| (p.layout, p.workers, p.concurrency))
        .collect()
}

/// A disaggregated worker's throughput, from pure prefill or decode steps.
struct PhaseWorker {
    layout: Layout,
    /// Prefill: prompts/s; decode: requests/s completed.
    requests_per_s: f64,
    /// Prefill: time of one prompt; decode: TPOT.
    latency: Seconds,
    concurrency: u64,
    memory: Bytes,
    memory_fraction: f64,
    imbalance: f64,
    estimate: Option<Estimate>,
}

fn prefill_worker(e: &Eval, l: Layout) -> Option<PhaseWorker> {
    let s = e.s;
    let isl = s.workload.isl.max as f64;
    let m = &s.model;
    if memory::max_concurrency(m, &s.gpu, &l, &e.engine, 0, s.workload.isl.max) == 0 {
        return None;
    }
    e.count.fetch_add(1, Ordering::Relaxed);
    // A prefill worker fills each step with whole prompts (at least one).
    let per_rank = (e.engine.max_step_tokens as f64 / isl).floor().max(1.0);
    let rows =
        per_rank * isl * l.dp as f64 * m.moe.as_ref().map_or(0, |x| x.experts_per_token) as f64
            / l.edp() as f64;
    let imb = m.moe.as_ref().map_or(0.0, |x| {
        load_imbalance(x.n_routed_experts, l.ep, 0, rows, 0.0)
    });
    let ctx = CostContext::new(m, &s.gpu, l, 0, imb, &e.cal);
    let one = ctx.step(&StepShape::prefill(1.0, isl));
    let batch = ctx.step(&StepShape::prefill(per_rank, isl));
    let prompts = per_rank * l.dp as f64;
    let mem = memory::memory(
        m,
        &s.gpu,
        &l,
        &e.engine,
        0,
        prompts as u64,
        s.workload.isl.max,
    );
    Some(PhaseWorker {
        layout: l,
        requests_per_s: prompts / batch.stage_time().0,
        latency: one.traversal(),
        concurrency: prompts as u64,
        memory: mem.total_bytes,
        memory_fraction: mem.total_bytes.0 / mem.capacity_bytes.0,
        imbalance: imb,
        estimate: None,
    })
}

fn decode_worker(e: &Eval, l: Layout, concurrency: u64) -> Option<PhaseWorker> {
    let s = e.s;
    let w = &s.workload;
    // A decode worker receives finished prompts: one output token per step
    // for every request, no prefill in its steps (osl ≫ isl is not assumed:
    // the estimate with a zero-length prompt share is a pure decode).
    let est = e.estimate(l, w.isl.max, w.osl.max, concurrency)?;
    let mean_ctx = (w.isl.mean() + w.osl.mean() / 2) as f64;
    let c_rank = (concurrency as f64 / l.dp as f64).max(1.0);
    let ctx = CostContext::new(&s.model, &s.gpu, l, 0, est.load_imbalance.used, &e.cal);
    let mb = (l.pp as f64).min(c_rank.ceil()).max(1.0);
    let step = ctx.step(&StepShape::decode(c_rank / mb, mean_ctx));
    let tpot = step.traversal().max(step.stage_time() * mb);
    let tokens = c_rank * l.dp as f64 / tpot.0;
    Some(PhaseWorker {
        layout: l,
        requests_per_s: tokens / w.osl.mean() as f64,
        latency: tpot,
        concurrency,
        memory: est.memory.total_bytes,
        memory_fraction: est.memory.total_bytes.0 / est.memory.capacity_bytes.0,
        imbalance: est.load_imbalance.used,
        estimate: Some(est),
    })
}

/// Searches a scenario.
pub fn plan(
    s: &Scenario,
    opts: &PlanOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> PlanResult {
    let budget = s.gpus_available.unwrap_or(opts.default_gpus);
    let mut rej = Rejections::default();
    let layouts = enumerate(s, budget, &mut rej);
    let engine = s.engine(opts.engine);
    let count = AtomicUsize::new(0);
    let eval = Eval {
        s,
        cal: s.calibration(crate::memory::Engine::Neutral),
        engine,
        objective: opts.objective,
        count: &count,
    };
    let done = AtomicUsize::new(0);
    let total = layouts.len();

    let mut agg: Vec<Candidate> = Vec::new();
    let mut agg_points: Vec<Candidate> = Vec::new();
    if opts.modes.aggregated {
        let results: Vec<(Option<Candidate>, Vec<Candidate>, Rejections)> = layouts
            .par_iter()
            .map(|l| {
                let mut r = Rejections::default();
                let (c, points) = eval.aggregated(*l, budget, &mut r);
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                (c, points, r)
            })
            .collect();
        for (c, points, r) in results {
            agg_points.extend(points);
            rej.memory += r.memory;
            rej.ttft += r.ttft;
            rej.tpot += r.tpot;
            rej.throughput += r.throughput;
            rej.throughput_per_user += r.throughput_per_user;
            rej.load_imbalance += r.load_imbalance;
            rej.gpu_budget += r.gpu_budget;
            agg.extend(c);
        }
    }

    let mut disagg: Vec<Candidate> = Vec::new();
    if opts.modes.disaggregated && budget >= 2 {
        disagg = disaggregated(&eval, &layouts, budget, opts.objective);
    }

    agg.sort_by(|a, b| rank(a, b, opts.objective));
    disagg.sort_by(|a, b| rank(a, b, opts.objective));
    let pareto = pareto_front(agg_points.iter().chain(disagg.iter()).filter(|c| c.meets()));
    let mut all: Vec<Candidate> = agg.iter().chain(disagg.iter()).cloned().collect();
    all.sort_by(|a, b| rank(a, b, opts.objective));
    let recommended = all.first().cloned().map(|mut r| {
        if r.mode == Mode::Aggregated {
            let pool = &r.pools[0];
            let w = &s.workload;
            if let Some(e) = eval.explained(pool.layout, w.isl.mean(), w.osl.mean(), pool.concurrency) {
                r.explain = e.explain.clone();
                r.explain.insert(
                    "gpus".into(),
                    Derivation::new(
                        "replicas × GPUs per replica (pp · tp · cp · dp; EP and ETP fold onto the same GPUs)",
                        &[("replicas", pool.workers.to_string()), ("gpus_per_replica", pool.layout.gpus().to_string())],
                    ),
                );
            }
        }
        r
    });
    let binding = if recommended.as_ref().is_some_and(Candidate::meets) {
        None
    } else {
        binding(s, &all)
    };
    let rationale = rationale(&all, recommended.as_ref());
    let mut candidates: Vec<Candidate> = agg.into_iter().take(opts.top_n).collect();
    candidates.extend(disagg.into_iter().take(opts.top_n));
    candidates.sort_by(|a, b| rank(a, b, opts.objective));
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

fn disaggregated(
    e: &Eval,
    layouts: &[Layout],
    budget: u32,
    objective: Objective,
) -> Vec<Candidate> {
    let s = e.s;
    let w = &s.workload;
    // Prefill workers: the best prompts/s per GPU among those meeting TTFT
    // (half the budget goes to the KV transfer and first decode step).
    let prefill: Vec<PhaseWorker> = layouts
        .par_iter()
        .filter(|l| l.pp == 1 || l.pp <= 4)
        .filter_map(|l| prefill_worker(e, *l))
        .filter(|p| p.memory_fraction <= s.slo.max_memory_fraction)
        .collect();
    let kv_bytes = s.model.kv_bytes_for_context(w.isl.max);
    let transfer = |p: &PhaseWorker, d: &Layout| -> Seconds {
        let lanes = p.layout.gpus().min(d.gpus()).max(1) as f64;
        s.gpu.network_latency + kv_bytes / (s.gpu.network_bandwidth * (e.cal.network_eff * lanes))
    };
    let ttft_limit = s.slo.ttft.map_or(f64::INFINITY, |t| t.0);
    let mut best_prefill: Vec<&PhaseWorker> = prefill
        .iter()
        .filter(|p| p.latency.0 < ttft_limit)
        .collect();
    best_prefill.sort_by(|a, b| {
        (b.requests_per_s / b.layout.gpus() as f64)
            .total_cmp(&(a.requests_per_s / a.layout.gpus() as f64))
            .then(a.latency.0.total_cmp(&b.latency.0))
            .then(a.layout.cmp(&b.layout))
    });
    best_prefill.truncate(3);
    if best_prefill.is_empty() {
        return Vec::new();
    }
    // Decode workers over a concurrency sweep, meeting TPOT.
    let decode: Vec<PhaseWorker> = layouts
        .par_iter()
        .flat_map_iter(|l| {
            let limit =
                memory::max_concurrency(&s.model, &s.gpu, l, &e.engine, 0, w.isl.max + w.osl.max);
            let levels = concurrency_levels(l, limit, w.concurrency);
            levels
                .into_iter()
                .filter_map(move |c| decode_worker(e, *l, c))
        })
        .filter(|d| {
            s.slo.tpot.is_none_or(|t| d.latency.0 <= t.0)
                && d.memory_fraction <= s.slo.max_memory_fraction
        })
        .collect();
    let mut out = Vec::new();
    for p in &best_prefill {
        for d in &decode {
            let gp = p.layout.gpus();
            let gd = d.layout.gpus();
            // Workers: enough decode workers to use the budget (or serve the
            // rate); enough prefill workers that prompts keep up.
            let (np, nd) = match w.request_rate {
                Some(rate) => (
                    ((rate / p.requests_per_s).ceil() as u32).max(1),
                    ((rate / d.requests_per_s).ceil() as u32).max(1),
                ),
                None => {
                    let mut best = (0, 0);
                    for nd in 1..=budget / gd {
                        let np = ((nd as f64 * d.requests_per_s / p.requests_per_s).ceil() as u32)
                            .max(1);
                        if np * gp + nd * gd <= budget {
                            best = (np, nd);
                        }
                    }
                    best
                }
            };
            if np == 0 || nd == 0 {
                continue;
            }
            let gpus = np * gp + nd * gd;
            let served_rps = (nd as f64 * d.requests_per_s).min(np as f64 * p.requests_per_s);
            let per_gpu = served_rps * w.osl.mean() as f64 / gpus as f64;
            let ttft = p.latency + transfer(p, &d.layout) + d.latency;
            let mut v = Vec::new();
            if gpus > budget {
                v.push(Violation::new("gpus", budget as f64, gpus as f64));
            }
            if let Some(t) = s.slo.ttft {
                if ttft.0 > t.0 {
                    v.push(Violation::new("ttft", t.ms(), ttft.ms()));
                }
            }
            if let Some(r) = s.slo.min_throughput_per_gpu {
                if per_gpu < r.0 {
                    v.push(Violation::new("throughput_per_gpu", r.0, per_gpu));
                }
            }
            if let Some(r) = s.slo.min_throughput_per_user {
                if 1.0 / d.latency.0 < r.0 {
                    v.push(Violation::new(
                        "throughput_per_user",
                        r.0,
                        1.0 / d.latency.0,
                    ));
                }
            }
            let imb = p.imbalance.max(d.imbalance);
            if let Some(li) = s.slo.max_load_imbalance {
                if imb > li {
                    v.push(Violation::new("load_imbalance", li, imb));
                }
            }
            let mem = p.memory.max(d.memory);
            out.push(Candidate {
                mode: Mode::Disaggregated,
                pools: vec![
                    Pool::new("prefill", p.layout, np, p.concurrency),
                    Pool::new("decode", d.layout, nd, d.concurrency),
                ],
                gpus,
                output_tokens_per_s_per_gpu: TokensPerSecond(per_gpu),
                output_tokens_per_s_per_user: TokensPerSecond(1.0 / d.latency.0),
                requests_per_s: served_rps,
                ttft,
                tpot: d.latency,
                memory_per_gpu: mem,
                memory_fraction: p.memory_fraction.max(d.memory_fraction),
                load_imbalance: imb,
                bottleneck: d.estimate.as_ref().map_or(String::new(), |e| {
                    format!("{:?}", e.bottleneck.decode).to_lowercase()
                }),
                violations: v,
                estimate: d
                    .estimate
                    .as_ref()
                    .map_or(serde_json::Value::Null, summary_json),
                explain: disagg_explain(
                    p,
                    d,
                    np,
                    nd,
                    transfer(p, &d.layout),
                    kv_bytes,
                    served_rps,
                    gpus,
                ),
            });
        }
    }
    out.sort_by(|a, b| rank(a, b, objective));
    out.truncate(64);
    out
}

#[allow(clippy::too_many_arguments)]
fn disagg_explain(
    p: &PhaseWorker,
    d: &PhaseWorker,
    np: u32,
    nd: u32,
    transfer: Seconds,
    kv: Bytes,
    rps: f64,
    gpus: u32,
) -> BTreeMap<String, Derivation> {
    let mut m = BTreeMap::new();
    m.insert(
        "workers".into(),
        Derivation::new(
            "decode workers fill the budget; prefill workers = ⌈decode workers × decode requests/s ÷ prefill prompts/s⌉ so prompts keep up",
            &[
                ("decode_requests_per_s_per_worker", format!("{:.2}", d.requests_per_s)),
                ("prefill_prompts_per_s_per_worker", format!("{:.2}", p.requests_per_s)),
                ("decode_workers", nd.to_string()),
                ("prefill_workers", np.to_string()),
            ],
        ),
    );
    m.insert(
        "ttft".into(),
        Derivation::new(
            "prefill of the longest prompt + KV transfer (latency + KV bytes ÷ (network bandwidth × lanes)) + one decode step",
            &[("prefill", p.latency.to_string()), ("kv_bytes", kv.to_string()), ("transfer", transfer.to_string()), ("decode_step", d.latency.to_string())],
        ),
    );
    m.insert(
        "output_tokens_per_s_per_gpu".into(),
        Derivation::new(
            "min(decode and prefill pools' requests/s) × mean output length ÷ all GPUs of both pools",
            &[("requests_per_s", format!("{rps:.2}")), ("gpus", gpus.to_string())],
        ),
    );
    m
}

/// Candidates not dominated in (tokens/s per GPU, tokens/s per user).
fn pareto_front<'a>(cands: impl Iterator<Item = &'a Candidate>) -> Vec<Candidate> {
    let mut v: Vec<&Candidate> = cands.collect();
    v.sort_by(|a, b| {
        b.output_tokens_per_s_per_user
            .total_cmp(&a.output_tokens_per_s_per_user)
            .then(
                b.output_tokens_per_s_per_gpu
                    .total_cmp(&a.output_tokens_per_s_per_gpu),
            )
    });
    let mut front: Vec<Candidate> = Vec::new();
    let mut best_gpu = f64::NEG_INFINITY;
    for c in v {
        if c.output_tokens_per_s_per_gpu.0 > best_gpu {
            best_gpu = c.output_tokens_per_s_per_gpu.0;
            front.push(c.clone());
        }
    }
    front
}

/// When nothing meets every level: the constraint with the largest shortfall
/// at the candidate closest to meeting everything, and what would fix it.
fn binding(s: &Scenario, all: &[Candidate]) -> Option<Binding> {
    let c = all.first()?;
    let v = c.violations.iter().max_by(|a, b| {
        shortfall(a)
            .total_cmp(&shortfall(b))
            .then(b.constraint.cmp(a.constraint))
    })?;
    // The best any candidate reaches for this constraint.
    let best = all
        .iter()
        .filter_map(|x| match v.constraint {
            "throughput_per_gpu" => Some(x.output_tokens_per_s_per_gpu.0),
            "throughput_per_user" => Some(x.output_tokens_per_s_per_user.0),
            "ttft" => Some(-x.ttft.ms()),
            "tpot" => Some(-x.tpot.ms()),
            "memory" => Some(-x.memory_fraction),
            "load_imbalance" => Some(-x.load_imbalance),
            _ => None,
        })
        .fold(f64::NEG_INFINITY, f64::max);
    let best = if matches!(v.constraint, "ttft" | "tpot" | "memory" | "load_imbalance") {
        -best
    } else {
        best
    };
    let kv_share = c.estimate.get("ceilings").map_or(0.0, |ce| {
        let kv = ce
            .get("decode_kv_bytes_per_step_per_gpu")
            .and_then(|x| x.as_f64())
            .unwrap_or(0.0);
        let all = ce
            .get("decode_bytes_per_step_per_gpu")
            .and_then(|x| x.as_f64())
            .unwrap_or(1.0);
        kv / all
    });
    let mut advice = Vec::new();
    match v.constraint {
        "throughput_per_gpu" => {
            advice.push(format!(
                "the best layout reaches {:.1} output tokens/ms per GPU against the {:.1} required ({:.0}% of it)",
                best / 1e3,
                v.limit / 1e3,
                best / v.limit * 100.0
            ));
            if kv_share > 0.5 {
                advice.push(format!(
                    "decode is bound by KV-cache reads ({:.0}% of the bytes per step): an fp8 KV cache halves them; shorter contexts (the longest prompt is {} tokens) cut them in proportion",
                    kv_share * 100.0,
                    s.workload.isl.max
                ));
            }
            advice.push(format!("or relax min_throughput_per_gpu to {:.1} tokens/ms", best / 1e3 * 0.95));
        }
        "ttft" => advice.push(format!("the fastest TTFT is {:.0} ms: relax ttft to that, shorten prompts, or use more TP/CP per replica (more GPUs)", best)),
        "tpot" => advice.push(format!("the fastest TPOT is {:.1} ms: relax tpot, lower the concurrency, use fp8 weights or KV cache, or more GPUs per replica", best)),
        "memory" => advice.push("the model does not fit: add GPUs per replica (TP/EP/PP), an fp8 KV cache or fp8 weights, or shorter contexts".into()),
        "load_imbalance" => advice.push(format!("the lowest expert load imbalance is {:.1}%: add redundant expert slots (EPLB), lower EP, or raise max_load_imbalance", best * 100.0)),
        _ => advice.push(format!("more GPUs: the budget is {} and the closest plan needs {}", s.gpus_available.unwrap_or(0), c.gpus)),
    }
    Some(Binding {
        constraint: v.constraint,
        limit: v.limit,
        best,
        advice,
    })
}

fn shortfall(v: &Violation) -> f64 {
    match v.constraint {
        "throughput_per_gpu" | "throughput_per_user" => v.limit / v.value.max(1e-12),
        _ => v.value / v.limit.max(1e-12),
    }
}

fn rationale(all: &[Candidate], rec: Option<&Candidate>) -> Vec<String> {
    let Some(r) = rec else {
        return vec!["no valid layout fits the model on the GPUs available".into()];
    };
    let mut out = Vec::new();
    if !r.meets() {
        out.push(format!(
            "no candidate meets every service level; this one misses the fewest ({})",
            r.violations
                .iter()
                .map(|v| v.constraint)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // The runner-up differs in what matters: the mode, or the layout of the
    // pool that produces the tokens (aggregated or decode).
    let main = |c: &Candidate| (c.mode, c.pools.last().map(|p| p.layout));
    let runner = all
        .iter()
        .skip(1)
        .find(|c| c.meets() == r.meets() && main(c) != main(r));
    if let Some(u) = runner {
        let gain =
            r.output_tokens_per_s_per_gpu.0 / u.output_tokens_per_s_per_gpu.0.max(1e-12) - 1.0;
        out.push(format!(
            "{:.1}% more output tokens/s per GPU than the runner-up ({}: {:.0} vs {:.0})",
            gain * 100.0,
            describe(u),
            r.output_tokens_per_s_per_gpu.0,
            u.output_tokens_per_s_per_gpu.0
        ));
        if u.ttft < r.ttft {
            out.push(format!(
                "the runner-up has a shorter TTFT ({:.0} vs {:.0} ms), but both meet the limit",
                u.ttft.ms(),
                r.ttft.ms()
            ));
        }
        if u.output_tokens_per_s_per_user > r.output_tokens_per_s_per_user {
            out.push(format!("the runner-up is faster per user ({:.1} vs {:.1} tokens/s): see the Pareto front for that trade-off", u.output_tokens_per_s_per_user.0, r.output_tokens_per_s_per_user.0));
        }
    }
    out.push(format!(
        "decode is {}-bound; memory per GPU {:.0}% of capacity",
        r.bottleneck,
        r.memory_fraction * 100.0
    ));
    out
}

/// A one-line description of a candidate's pools.
pub fn describe(c: &Candidate) -> String {
    c.pools
        .iter()
        .map(|p| {
            let l = p.layout;
            format!("{} {}×[{}] c{}", p.role, p.workers, l, p.concurrency)
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The planner as the audit's fallback when a plan's own layout is hopeless:
/// the best aggregated layout (the corrected plan keeps the plan's form)
/// meeting every requirement, with its replica count.
pub struct SearchPlanner;

impl crate::audit::fix::Planner for SearchPlanner {
    fn recommend(&self, plan: &crate::spec::plan::Plan) -> Option<(Layout, u32)> {
        let s = plan.scenario.clone();
        let opts = PlanOptions {
            modes: Modes {
                aggregated: true,
                disaggregated: false,
            },
            ..PlanOptions::default()
        };
        let r = self::plan(&s, &opts, &|_, _| {});
        let rec = r.recommended.filter(Candidate::meets)?;
        let pool = rec.pools.first()?;
        Some((pool.layout, pool.workers))
    }
}

//! The corrected plan.
//!
//! The nearest valid layout that meets the plan's own requirements (memory,
//! TTFT, TPOT, throughput per GPU, load imbalance): a small local search
//! over aggregated layouts of at most the GPUs the plan has per replica
//! (or states, or `hardware.gpus` allows), each estimated with
//! `serving::estimate`, nearest first (distance in log2 of each degree).
//! When no layout meets every requirement the plan is hopeless as
//! specified: a [`Planner`] (the `search` module) is asked when one is
//! given, else the layout missing the fewest requirements by the least is
//! returned, labelled `best_effort`, with what it misses. A disaggregated
//! plan is corrected as a disaggregated plan (`super::fix_disagg`).

use super::claim::{bytes, pct, time};
use super::{evaluate_layout, PoolEval};
use crate::figures::Figures;
use crate::layout::Layout;
use crate::replica::PoolRole;
use crate::serving::Estimate;
use crate::spec::plan::{Deployment, Plan, Pool};
use crate::spec::source::{Format, Source};
use crate::units::{Bytes, Flop, Params, Seconds, TokensPerSecond};
use serde::Serialize;

/// A planner the audit can ask for a layout when the plan's own is hopeless.
pub trait Planner {
    /// The best layout and replica count for the plan's model, hardware,
    /// workload and requirements, if any meets them.
    fn recommend(&self, plan: &Plan) -> Option<(Layout, u32)>;
}

/// Where the corrected layout comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionSource {
    /// The plan's layout already meets its requirements: only the figures change.
    Unchanged,
    /// The nearest valid layout meeting every requirement.
    NearestLayout,
    /// The planner's recommendation (the plan's layout is hopeless).
    Planner,
    /// No layout searched meets every requirement: the closest miss.
    BestEffort,
}

/// The figures of the corrected plan, recomputed.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CorrectedClaims {
    /// GPUs.
    pub total_gpus: u64,
    /// Parameters of the architecture.
    pub params_total: Params,
    /// FLOP per token at the mean prompt.
    pub flops_per_token: Flop,
    /// Weights on the fullest GPU.
    pub weights_per_gpu: Bytes,
    /// KV cache on the fullest GPU at the longest prompt.
    pub kv_cache_per_gpu: Bytes,
    /// Activations.
    pub activations_per_gpu: Bytes,
    /// Total on the fullest GPU at the longest prompt.
    pub memory_per_gpu: Bytes,
    /// Memory / capacity.
    pub memory_utilization: f64,
    /// Output tokens/s per GPU at the mean prompt.
    pub throughput_per_gpu: TokensPerSecond,
    /// TTFT: the worse of the longest and the mean lengths.
    pub ttft: Seconds,
    /// TPOT: the worse of the longest and the mean lengths.
    pub tpot: Seconds,
    /// Expert load imbalance the estimate applies (at the plan's routing
    /// skew and redundant experts), as `estimate`, `plan` and `dag` show it.
    pub load_imbalance: f64,
    /// Communication share of a steady-state step.
    pub comm_overhead: f64,
    /// Whether every requirement is met.
    pub meets_slo: bool,
}

/// The corrected plan.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Corrected {
    /// Where the layout comes from.
    pub source: CorrectionSource,
    /// Why, in a sentence.
    pub reason: String,
    /// Aggregated layout of one replica.
    pub layout: Layout,
    /// Replicas.
    pub replicas: u32,
    /// Redundant expert slots per replica (EPLB): the plan's, where the
    /// layout has expert parallelism.
    #[serde(skip_serializing_if = "crate::model::is_zero")]
    pub redundant_experts: u32,
    /// Whether its steps overlap communication with computation (the plan's).
    #[serde(skip_serializing_if = "crate::ops::Overlap::is_none")]
    pub overlap: crate::ops::Overlap,
    /// GPUs in all.
    pub gpus: u64,
    /// Requirements the corrected plan still misses (empty when it meets them all).
    pub unmet: Vec<String>,
    /// The smallest replica (GPUs) found meeting every requirement, if any.
    pub(crate) min_gpus_per_replica: Option<u32>,
    /// Layouts estimated by the search.
    pub(crate) candidates_evaluated: usize,
    /// Recomputed figures.
    pub claims: CorrectedClaims,
    /// Both pools, when the plan is disaggregated (`layout` and `replicas`
    /// are then the decode pool's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pools: Option<super::CorrectedPools>,
}

const POW2: [u32; 7] = [1, 2, 4, 8, 16, 32, 64];

/// The redundant expert slots a corrected aggregated layout keeps: the
/// plan's, where the layout spreads experts over ranks (EP > 1).
fn redundant_for(plan: &Plan, l: Layout) -> u32 {
    match plan.deployment {
        Deployment::Aggregated { pool } if l.ep > 1 => pool.redundant_experts,
        _ => 0,
    }
}

/// Valid aggregated layouts with experts folded over every GPU of a stage
/// (edp = 1), in a fixed order, of at most `max_gpus` GPUs.
pub fn candidates(plan: &Plan, cp: u32, max_gpus: u32) -> Vec<Layout> {
    let m = &plan.scenario.model;
    let n_layers = m.n_layers() as u32;
    let mut out = Vec::new();
    for pp in POW2.iter().copied().filter(|p| *p <= n_layers.min(16)) {
        for tp in POW2.iter().copied().filter(|t| *t <= 8) {
            for dp in POW2 {
                let stage = tp * cp * dp;
                if pp * stage > max_gpus {
                    continue;
                }
                let eps: Vec<u32> = if m.moe.is_some() {
                    POW2.iter().copied().filter(|e| stage % e == 0).collect()
                } else {
                    vec![1]
                };
                for ep in eps {
                    let l = Layout {
                        pp,
                        tp,
                        cp,
                        dp,
                        ep,
                        etp: stage / ep,
                    };
                    if l.check(m, &plan.scenario.gpu, 0).0.is_empty() {
                        out.push(l);
                    }
                }
            }
        }
    }
    out
}

fn log2_ratio(a: u32, b: u32) -> f64 {
    ((a.max(1) as f64) / (b.max(1) as f64)).log2().abs()
}

/// How far a layout is from another: log2 steps of each degree.
fn distance(a: &Layout, b: &Layout) -> f64 {
    log2_ratio(a.pp, b.pp)
        + log2_ratio(a.tp, b.tp)
        + log2_ratio(a.dp, b.dp)
        + log2_ratio(a.ep, b.ep)
        + 0.5 * log2_ratio(a.etp, b.etp)
}

/// The valid layout nearest to a pool's written one (for an invalid
/// layout, the reading its per-GPU claims are checked against). Ties go
/// to the GPU count closest to what the author multiplied out.
pub(crate) fn nearest_valid(plan: &Plan, pool: &Pool) -> Option<Layout> {
    let written = pool.layout;
    let intended = (pool.written_product / pool.replicas.max(1) as u64).max(1) as u32;
    let max = written.gpus().max(intended).clamp(1, 512);
    candidates(plan, written.cp, max.max(64))
        .into_iter()
        .map(|l| {
            (
                distance(&l, &written),
                log2_ratio(l.gpus(), intended),
                l.gpus(),
                l,
            )
        })
        .min_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.cmp(&b.2))
                .then(a.3.cmp(&b.3))
        })
        .map(|x| x.3)
}

/// Requirements a layout misses (`slo::evaluate`, the planner's rule), with
/// how badly (sum of the log shortfalls).
fn unmet(plan: &Plan, typical: &Estimate, worst: &Estimate) -> (Vec<String>, f64) {
    let f = Figures::aggregated(worst, typical.clone(), 1, typical.workload.concurrency);
    let missed = crate::slo::evaluate(&plan.scenario.slo, &f.judged(), None);
    let by = missed.iter().map(|v| v.shortfall().max(1.0).ln()).sum();
    (missed.iter().map(|v| v.to_string()).collect(), by)
}

struct Candidate {
    layout: Layout,
    typical: Estimate,
    worst: Estimate,
    unmet: Vec<String>,
    shortfall: f64,
    distance: f64,
}

/// The layout a correction starts from (the plan's, or the nearest valid
/// reading of it) and the replicas it keeps (a disaggregated plan, which
/// `super::fix_disagg` corrects, reads as its decode pool).
fn origin(plan: &Plan, evals: &[PoolEval]) -> (Layout, u32) {
    match plan.deployment {
        Deployment::Aggregated { pool } => (
            evals
                .first()
                .and_then(|e| e.reference)
                .unwrap_or(pool.layout),
            pool.replicas,
        ),
        Deployment::Disaggregated { decode, .. } => (
            evals
                .iter()
                .find(|e| e.role == crate::replica::PoolRole::Decode)
                .and_then(|e| e.reference)
                .unwrap_or(decode.layout),
            1,
        ),
    }
}

/// The GPUs a replica may use to start with: what the plan holds, states or
/// has available, at least the origin's, at most 64.
fn first_budget(plan: &Plan, origin: Layout, replicas: u32) -> u32 {
    let per_replica_claim = plan.claims.total_gpus.map_or(0, |t| t / replicas.max(1));
    [
        plan.deployment.gpus().min(u32::MAX as u64) as u32 / replicas.max(1),
        per_replica_claim,
        plan.scenario.gpus_available.unwrap_or(0) / replicas.max(1),
        origin.gpus(),
    ]
    .into_iter()
    .max()
    .unwrap_or(1)
    .clamp(1, 64)
}

/// Every valid layout estimated, the budget widened (doubling, up to 64
/// GPUs per replica) until one meets every requirement: the nearest fix may
/// need more GPUs than the plan has. Returns them and the last budget.
fn search(plan: &Plan, origin: Layout, mut budget: u32) -> (Vec<Candidate>, u32) {
    let mut evaluated: Vec<Candidate> = Vec::new();
    let mut seen: std::collections::BTreeSet<Layout> = Default::default();
    loop {
        for l in candidates(plan, origin.cp, budget) {
            if !seen.insert(l) {
                continue;
            }
            let redundant = redundant_for(plan, l);
            let (Some(typical), Some(worst)) =
                evaluate_layout(plan, l, PoolRole::Aggregated, redundant)
            else {
                continue;
            };
            let (u, by) = unmet(plan, &typical, &worst);
            evaluated.push(Candidate {
                layout: l,
                distance: distance(&l, &origin),
                typical,
                worst,
                unmet: u,
                shortfall: by,
            });
        }
        if budget >= 64 || evaluated.iter().any(|c| c.unmet.is_empty()) {
            return (evaluated, budget);
        }
        budget = (budget * 2).min(64);
    }
}

/// The nearest layout meeting every requirement (fewer GPUs, then more
/// tokens/s per GPU, break ties).
fn nearest_meeting(evaluated: &[Candidate]) -> Option<&Candidate> {
    evaluated
        .iter()
        .filter(|c| c.unmet.is_empty())
        .min_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then(a.layout.gpus().cmp(&b.layout.gpus()))
                .then(
                    b.typical
                        .output_tokens_per_s_per_gpu
                        .0
                        .total_cmp(&a.typical.output_tokens_per_s_per_gpu.0),
                )
                .then(a.layout.cmp(&b.layout))
        })
}

/// The layout that misses the fewest requirements, by the least.
fn closest_miss(evaluated: &[Candidate]) -> Option<&Candidate> {
    evaluated.iter().min_by(|a, b| {
        a.unmet
            .len()
            .cmp(&b.unmet.len())
            .then(a.shortfall.total_cmp(&b.shortfall))
            .then(a.distance.total_cmp(&b.distance))
            .then(a.layout.cmp(&b.layout))
    })
}

/// Builds the corrected plan.
pub fn correct(
    plan: &Plan,
    evals: &[PoolEval],
    options: &super::AuditOptions,
) -> Option<Corrected> {
    if let Deployment::Disaggregated { .. } = plan.deployment {
        return super::fix_disagg::correct(plan, evals);
    }
    let (origin, replicas) = origin(plan, evals);
    let written = match plan.deployment {
        Deployment::Aggregated { pool } => Some(pool),
        Deployment::Disaggregated { .. } => None,
    };
    let (evaluated, budget) = search(plan, origin, first_budget(plan, origin, replicas));
    let n = evaluated.len();
    let min_gpus = evaluated
        .iter()
        .filter(|c| c.unmet.is_empty())
        .map(|c| c.layout.gpus())
        .min();
    let (chosen, source, reason): (&Candidate, CorrectionSource, String) =
        match nearest_meeting(&evaluated) {
            Some(c) if written.is_some_and(|p| p.layout == c.layout) => (
                c,
                CorrectionSource::Unchanged,
                "the plan's layout meets every requirement; only its figures are recomputed".into(),
            ),
            Some(c) => (c, CorrectionSource::NearestLayout, format!(
                "the nearest valid layout to {origin} that meets every requirement, among {n} valid layouts of at most {budget} GPUs per replica"
            )),
            None => {
                if let Some((l, r)) = options.planner.and_then(|p| p.recommend(plan)) {
                    return planned(plan, l, r, n);
                }
                let searched = if options.planner.is_some() {
                    "the planner's full search found none either"
                } else {
                    "no planner was available to search further"
                };
                (closest_miss(&evaluated)?, CorrectionSource::BestEffort, format!(
                    "no valid layout of at most {budget} GPUs per replica ({n} estimated) meets every requirement: this one misses the fewest, by the least; the requirements themselves need revisiting ({searched})"
                ))
            }
        };
    Some(build(
        plan,
        chosen.layout,
        replicas,
        source,
        reason,
        &chosen.typical,
        &chosen.worst,
        chosen.unmet.clone(),
        min_gpus,
        n,
    ))
}

fn planned(plan: &Plan, l: Layout, replicas: u32, n: usize) -> Option<Corrected> {
    let (Some(t), Some(w)) = evaluate_layout(plan, l, PoolRole::Aggregated, redundant_for(plan, l))
    else {
        return None;
    };
    let (u, _) = unmet(plan, &t, &w);
    Some(build(
        plan,
        l,
        replicas,
        CorrectionSource::Planner,
        "no nearby layout meets the requirements; the planner's recommendation".into(),
        &t,
        &w,
        u,
        None,
        n,
    ))
}

/// Replicas of `layout` that serve the plan's request rate, as the planner
/// counts them (`WorkloadSpec::replicas_for_rate`); 0 without a rate.
fn replicas_for_rate(plan: &Plan, layout: Layout, typical: &Estimate) -> u32 {
    let w = &plan.scenario.workload;
    let per_replica =
        w.requests_per_s(typical.output_tokens_per_s_per_gpu.0 * layout.gpus() as f64);
    w.replicas_for_rate(per_replica)
        .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32)
}

#[allow(clippy::too_many_arguments)]
fn build(
    plan: &Plan,
    layout: Layout,
    replicas: u32,
    source: CorrectionSource,
    reason: String,
    typical: &Estimate,
    worst: &Estimate,
    unmet: Vec<String>,
    min_gpus: Option<u32>,
    n: usize,
) -> Corrected {
    let replicas = replicas.max(replicas_for_rate(plan, layout, typical));
    let m = &plan.scenario.model;
    let mean_ctx = plan.scenario.workload.isl.mean();
    let comm = typical
        .decode
        .by_bound
        .get("communication")
        .map_or(0.0, |s| s.0);
    let mem = &worst.memory;
    Corrected {
        source,
        reason,
        layout,
        replicas,
        redundant_experts: redundant_for(plan, layout),
        overlap: super::overlap_of(plan, PoolRole::Aggregated),
        gpus: replicas as u64 * layout.gpus() as u64,
        min_gpus_per_replica: min_gpus,
        candidates_evaluated: n,
        claims: CorrectedClaims {
            total_gpus: replicas as u64 * layout.gpus() as u64,
            params_total: m.params().total,
            flops_per_token: m.linear_flop_per_token() + m.attention_flop_per_token(mean_ctx),
            weights_per_gpu: mem.weights_bytes,
            kv_cache_per_gpu: mem.kv_cache_bytes,
            activations_per_gpu: mem.activation_bytes,
            memory_per_gpu: mem.total_bytes,
            memory_utilization: mem.total_bytes / mem.capacity_bytes,
            throughput_per_gpu: typical.output_tokens_per_s_per_gpu,
            ttft: worst.ttft.max(typical.ttft),
            tpot: worst.tpot.max(typical.tpot),
            load_imbalance: typical.load_imbalance.used,
            comm_overhead: comm / typical.decode.time.0.max(f64::MIN_POSITIVE),
            meets_slo: unmet.is_empty(),
        },
        unmet,
        pools: None,
    }
}

/// The corrected plan as a tree of the plan file: the original's model,
/// hardware, workload and requirements, the corrected deployment, and the
/// recomputed claims (units written out).
pub(crate) fn corrected_tree(original: &serde_json::Value, c: &Corrected) -> serde_json::Value {
    let mut v = original.clone();
    let k = &c.claims;
    let deployment = deployment_tree(c);
    let mut claims = serde_json::json!({
        "total_gpus": k.total_gpus,
        "params_total": k.params_total.to_string(),
        "flops_per_token": k.flops_per_token.to_string(),
        "weights_per_gpu": bytes(k.weights_per_gpu.0),
        "kv_cache_per_gpu": bytes(k.kv_cache_per_gpu.0),
        "activations_per_gpu": bytes(k.activations_per_gpu.0),
        "memory_per_gpu": bytes(k.memory_per_gpu.0),
        "memory_utilization": pct(k.memory_utilization),
        "throughput_per_gpu": format!("{:.1} tokens/s", k.throughput_per_gpu.0),
        "ttft": time(k.ttft.0),
        "tpot": time(k.tpot.0),
        "load_imbalance": pct(k.load_imbalance),
        "comm_overhead": pct(k.comm_overhead),
        "meets_slo": k.meets_slo,
    });
    if c.pools.is_some() {
        // The audit reads a disaggregated plan's memory claims against each
        // pool run as a replica, not the pair's fullest GPU: left out.
        if let Some(o) = claims.as_object_mut() {
            for key in [
                "weights_per_gpu",
                "kv_cache_per_gpu",
                "activations_per_gpu",
                "memory_per_gpu",
                "memory_utilization",
            ] {
                o.remove(key);
            }
        }
    }
    let note = format!(
        "corrected by moeplan audit ({}): {}{}",
        serde_json::to_value(c.source)
            .ok()
            .and_then(|s| s.as_str().map(String::from))
            .unwrap_or_default(),
        c.reason,
        if c.unmet.is_empty() {
            String::new()
        } else {
            format!("; still misses: {}", c.unmet.join("; "))
        }
    );
    if let Some(obj) = v.as_object_mut() {
        // A declared size the architecture does not have is corrected too
        // (a catalog model may carry one even when the plan does not).
        if let Some(model) = obj.get_mut("model").and_then(|m| m.as_object_mut()) {
            let is_ref = ["catalog", "hf_config", "spec"]
                .iter()
                .any(|k| model.contains_key(*k));
            if is_ref || model.contains_key("declared_params") {
                model.insert("declared_params".into(), k.params_total.to_string().into());
            }
        }
        obj.insert("deployment".into(), deployment);
        obj.insert("claims".into(), claims);
        if let Some(p) = &c.pools {
            in_flight(obj, p.concurrency);
        }
        let mut assumptions: Vec<serde_json::Value> = obj
            .get("assumptions")
            .and_then(|a| a.as_array().cloned())
            .unwrap_or_default();
        assumptions.push(note.into());
        obj.insert("assumptions".into(), assumptions.into());
    }
    strip_nulls(&mut v);
    v
}

/// The corrected deployment as the plan file writes it: one aggregated
/// layout with its replicas, or both pools of a disaggregated plan.
fn deployment_tree(c: &Corrected) -> serde_json::Value {
    let degrees = |l: Layout| {
        serde_json::json!({
            "pp": l.pp, "tp": l.tp, "dp": l.dp, "cp": l.cp, "ep": l.ep, "etp": l.etp,
        })
    };
    let with = |mut v: serde_json::Value, extra: serde_json::Value| {
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    let overlap = |o: crate::ops::Overlap| match o {
        crate::ops::Overlap::None => serde_json::json!({}),
        crate::ops::Overlap::TwoBatch => serde_json::json!({ "overlap": o.name() }),
    };
    match &c.pools {
        None => with(
            with(
                degrees(c.layout),
                serde_json::json!({
                    "mode": "aggregated",
                    "replicas": c.replicas,
                    "redundant_experts": c.redundant_experts,
                }),
            ),
            overlap(c.overlap),
        ),
        Some(p) => {
            let pool = |x: &super::CorrectedPool| {
                with(
                    with(
                        degrees(x.layout),
                        serde_json::json!({
                            "replicas": x.workers,
                            "redundant_experts": x.redundant_experts,
                        }),
                    ),
                    overlap(x.overlap),
                )
            };
            serde_json::json!({
                "mode": "disaggregated",
                "prefill": pool(&p.prefill),
                "decode": pool(&p.decode),
            })
        }
    }
}

/// The requests in flight a corrected disaggregated plan is sized for,
/// written as the workload's concurrency (in place of a batch size).
fn in_flight(obj: &mut serde_json::Map<String, serde_json::Value>, concurrency: u64) {
    if let Some(w) = obj.get_mut("workload").and_then(|w| w.as_object_mut()) {
        w.remove("batch_size");
        w.insert("concurrency".into(), concurrency.into());
    }
}

fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            o.retain(|_, x| !x.is_null());
            o.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The corrected plan in the format of the original file.
pub fn render(original: &Source, c: &Corrected) -> Result<String, String> {
    let tree = original.parse().map_err(|e| e.to_string())?;
    let v = corrected_tree(&tree, c);
    let header = format!(
        "# Corrected by moeplan audit from {} ({}). Comments of the original are not kept.\n",
        original.name,
        serde_json::to_value(c.source)
            .ok()
            .and_then(|s| s.as_str().map(String::from))
            .unwrap_or_default()
    );
    match original.format {
        Format::Json => serde_json::to_string_pretty(&v)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Format::Toml => toml::to_string(&v)
            .map(|s| header + &s)
            .map_err(|e| e.to_string()),
        Format::Yaml => serde_saphyr::to_string(&v)
            .map(|s| header + &s)
            .map_err(|e| e.to_string()),
    }
}

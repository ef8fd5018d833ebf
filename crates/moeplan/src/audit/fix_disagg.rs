//! The corrected plan of a disaggregated plan: still disaggregated.
//!
//! Each pool keeps its layout (its nearest valid one when the written one
//! breaks a rule) and its redundant experts (dropped only where the
//! corrected layout cannot split them); the worker counts are re-sized by
//! rate matching as an unstated count is (`replica::Disaggregated`): the
//! decode pool keeps its workers, at least the fewest that hold every
//! request in KV memory, and the prefill pool gets the workers that keep up
//! with it. A request rate the pair does not serve scales both pools and
//! the requests in flight, as the planner counts pairs for a rate. The pair
//! is estimated whole (`serving::disagg`) at the mean and the longest
//! lengths and judged by `slo::evaluate`.

use super::fix::{Corrected, CorrectedClaims, CorrectionSource};
use super::PoolEval;
use crate::figures::Figures;
use crate::layout::Layout;
use crate::memory::MemoryBreakdown;
use crate::replica::{Deployment as Built, Disaggregated, PoolRole};
use crate::serving::disagg::{estimate_disaggregated, DisaggEstimate, DisaggInput};
use crate::serving::Workload;
use crate::spec::plan::{Deployment, Plan, Pool};
use crate::units::Tokens;
use serde::Serialize;

/// One pool of a corrected disaggregated plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct CorrectedPool {
    /// Degrees of one worker.
    pub layout: Layout,
    /// Workers.
    pub workers: u32,
    /// Redundant expert slots (EPLB) per worker.
    pub redundant_experts: u32,
    /// Whether its steps overlap communication with computation (the plan's).
    #[serde(skip_serializing_if = "crate::ops::Overlap::is_none")]
    pub overlap: crate::ops::Overlap,
}

/// Both pools of a corrected disaggregated plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct CorrectedPools {
    /// The prefill pool.
    pub prefill: CorrectedPool,
    /// The decode pool.
    pub decode: CorrectedPool,
    /// Requests in flight on the whole deployment.
    pub concurrency: u64,
}

/// A pool at its reference layout (the written one, or its nearest valid
/// one), with its redundant experts where that layout splits them.
fn reference(plan: &Plan, evals: &[PoolEval], role: PoolRole, pool: Pool) -> Option<Pool> {
    let layout = evals.iter().find(|e| e.role == role)?.reference?;
    let s = &plan.scenario;
    let splits = layout
        .check(&s.model, &s.gpu, pool.redundant_experts)
        .0
        .is_empty();
    Some(Pool {
        layout,
        redundant_experts: if splits { pool.redundant_experts } else { 0 },
        ..pool
    })
}

/// The pools at their reference layouts and written worker counts,
/// re-sized by rate matching (and for the plan's request rate).
fn resized(plan: &Plan, evals: &[PoolEval]) -> Option<Disaggregated> {
    let Deployment::Disaggregated { prefill, decode } = plan.deployment else {
        return None;
    };
    let at = Plan {
        deployment: Deployment::Disaggregated {
            prefill: reference(plan, evals, PoolRole::Prefill, prefill)?,
            decode: reference(plan, evals, PoolRole::Decode, decode)?,
        },
        ..plan.clone()
    };
    let Built::Disaggregated(mut d) = Built::from_plan(&at, plan.scenario.engine_config()) else {
        return None;
    };
    d.rate_match();
    let rate = plan.scenario.workload.request_rate.unwrap_or(0.0);
    let served = estimate_disaggregated(&d.input()).ok()?.requests_per_s;
    if rate > served {
        // Copies of the pair, each with its requests in flight.
        let k = (rate / served.max(1e-12)).ceil().min(1e6) as u64;
        d.decode.workers = (d.decode.workers as u64 * k).min(u64::from(u32::MAX)) as u32;
        d.workload.concurrency = d.workload.concurrency.saturating_mul(k);
        d.rate_match();
    }
    Some(d)
}

/// The corrected plan of a disaggregated plan (None when a pool has no
/// valid layout or the pair cannot be estimated).
pub(super) fn correct(plan: &Plan, evals: &[PoolEval]) -> Option<Corrected> {
    let d = resized(plan, evals)?;
    let w = &plan.scenario.workload;
    let input = d.input();
    let mean = estimate_disaggregated(&input).ok()?;
    let worst = estimate_disaggregated(&DisaggInput {
        workload: Workload {
            isl: Tokens::new(w.isl.max.max(1)),
            osl: Tokens::new(w.osl.max.max(1)),
            ..input.workload
        },
        ..input
    })
    .ok()?;
    let claims = claims(plan, &mean, &worst);
    let f = Figures::disaggregated(&worst, mean);
    let budget = plan.scenario.gpus_available.map(u64::from);
    let unmet: Vec<String> = crate::slo::evaluate(&plan.scenario.slo, &f.judged(), budget)
        .iter()
        .map(|v| v.to_string())
        .collect();
    let pool = |p: &crate::serving::disagg::Pool| CorrectedPool {
        layout: p.layout,
        workers: p.workers,
        redundant_experts: p.redundant_experts,
        overlap: p.overlap,
    };
    let pools = CorrectedPools {
        prefill: pool(&d.prefill),
        decode: pool(&d.decode),
        concurrency: d.workload.concurrency,
    };
    let (source, reason) = verdict(plan, &pools, &unmet);
    let meets_slo = unmet.is_empty();
    Some(Corrected {
        source,
        reason,
        layout: pools.decode.layout,
        replicas: pools.decode.workers,
        redundant_experts: pools.decode.redundant_experts,
        overlap: pools.decode.overlap,
        gpus: f.gpus,
        unmet,
        min_gpus_per_replica: None,
        candidates_evaluated: 1,
        claims: CorrectedClaims {
            meets_slo,
            ..claims
        },
        pools: Some(pools),
    })
}

/// Where the correction comes from, and why, in a sentence.
fn verdict(plan: &Plan, pools: &CorrectedPools, unmet: &[String]) -> (CorrectionSource, String) {
    let written = match plan.deployment {
        Deployment::Disaggregated { prefill, decode } => Some((prefill, decode)),
        Deployment::Aggregated { .. } => None,
    };
    let same = |p: &Pool, c: &CorrectedPool| {
        p.layout == c.layout
            && p.replicas == c.workers
            && p.redundant_experts == c.redundant_experts
    };
    let unchanged =
        written.is_some_and(|(p, d)| same(&p, &pools.prefill) && same(&d, &pools.decode));
    let (p, d) = (&pools.prefill, &pools.decode);
    let what = format!(
        "disaggregated as written: prefill {} × {}, decode {} × {} (each pool's layout, its nearest valid one where invalid; workers re-sized by rate matching: the decode pool holds every request, the prefill pool keeps up with it)",
        p.workers, p.layout, d.workers, d.layout
    );
    match (unmet.is_empty(), unchanged) {
        (true, true) => (
            CorrectionSource::Unchanged,
            "the plan's pools meet every requirement and their rates match; only the figures are recomputed".into(),
        ),
        (true, false) => (CorrectionSource::NearestLayout, what),
        (false, _) => (
            CorrectionSource::BestEffort,
            format!("{what}; the requirements it still misses need more than re-sizing the pools"),
        ),
    }
}

/// The fullest GPU of either pool.
fn fullest(e: &DisaggEstimate) -> &MemoryBreakdown {
    let frac = |m: &MemoryBreakdown| m.total_bytes.0 / m.capacity_bytes.0;
    if frac(&e.prefill.memory) >= frac(&e.decode.memory) {
        &e.prefill.memory
    } else {
        &e.decode.memory
    }
}

/// The corrected plan's figures: memory of the fullest GPU at the longest
/// lengths, throughput at the mean, the decode pool's communication share
/// and imbalance floor.
fn claims(plan: &Plan, mean: &DisaggEstimate, worst: &DisaggEstimate) -> CorrectedClaims {
    let m = &plan.scenario.model;
    let mem = fullest(worst);
    let step = &mean.decode.step;
    let comm = step.by_bound.get("communication").map_or(0.0, |s| s.0);
    CorrectedClaims {
        total_gpus: mean.gpus,
        params_total: m.params().total,
        flops_per_token: m.linear_flop_per_token()
            + m.attention_flop_per_token(plan.scenario.workload.isl.mean()),
        weights_per_gpu: mem.weights_bytes,
        kv_cache_per_gpu: mem.kv_cache_bytes,
        activations_per_gpu: mem.activation_bytes,
        memory_per_gpu: mem.total_bytes,
        memory_utilization: mem.total_bytes / mem.capacity_bytes,
        throughput_per_gpu: mean.output_tokens_per_s_per_gpu,
        ttft: worst.ttft,
        tpot: worst.tpot,
        load_imbalance: mean.decode_imbalance.used,
        comm_overhead: comm / step.time.0.max(f64::MIN_POSITIVE),
        // Set from the service levels by `correct`.
        meets_slo: false,
    }
}

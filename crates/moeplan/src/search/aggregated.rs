//! Aggregated candidates: one layout over a sweep of concurrencies.

use super::{Candidate, Eval, Rejections};
use crate::figures::Figures;
use crate::layout::Layout;
use crate::memory;
use crate::serving::{estimate, estimate_summary, Estimate, EstimateInput, Workload};
use crate::slo::Level;
use crate::units::Tokens;

impl Eval<'_> {
    fn input(&self, l: Layout, isl: u64, osl: u64, concurrency: u64) -> EstimateInput<'_> {
        EstimateInput {
            model: &self.s.model,
            gpu: &self.s.gpu,
            calibration: self.cal.clone(),
            layout: l,
            workload: Workload {
                isl: Tokens::new(isl),
                osl: Tokens::new(osl),
                concurrency,
                cache_hit_rate: self.s.workload.cache_hit_rate,
                client: self.s.workload.client,
            },
            engine: self.engine,
            redundant_experts: self.s.redundant_experts_for(&l),
            routing_skew: self.s.routing_skew,
            overlap: crate::ops::Overlap::None,
        }
    }

    /// The figures of one replica, without the explanation (the hot path).
    fn estimate(&self, l: Layout, isl: u64, osl: u64, concurrency: u64) -> Option<Estimate> {
        self.tick();
        estimate_summary(&self.input(l, isl, osl, concurrency)).ok()
    }
}

/// Replicas of a layout: enough for the request rate, else what the budget
/// holds. u64: an absurd rate asks for more than u32 holds, and the
/// candidate must say how many.
fn replicas(e: &Eval, l: Layout, requests_per_s_per_replica: f64) -> u64 {
    e.s.workload
        .replicas_for_rate(requests_per_s_per_replica)
        .unwrap_or_else(|| (e.budget / l.gpus()).max(1) as u64)
}

/// The candidate of `l` at `c` requests per replica (None: invalid or no estimate).
fn at(e: &Eval, l: Layout, c: u64) -> Option<Candidate> {
    let w = &e.s.workload;
    let worst = e.estimate(l, w.isl.max, w.osl.max, c)?;
    let mean = if w.isl.is_fixed() && w.osl.is_fixed() {
        worst.clone()
    } else {
        e.estimate(l, w.isl.mean(), w.osl.mean(), c)?
    };
    let per_replica = w.requests_per_s(mean.output_tokens_per_s_per_gpu.0 * l.gpus() as f64);
    let n = replicas(e, l, per_replica);
    let mut f = Figures::aggregated(&worst, mean, n, c);
    f.pools[0].redundant_experts = e.s.redundant_experts_for(&l);
    Some(Candidate::judged(e.s, f, e.budget))
}

/// The best concurrency of one aggregated layout, and every concurrency
/// point that meets the levels (for the Pareto front).
pub(super) fn best(
    e: &Eval,
    l: Layout,
    rej: &mut Rejections,
) -> (Option<Candidate>, Vec<Candidate>) {
    let mut points = Vec::new();
    let w = &e.s.workload;
    let limit = memory::max_concurrency(
        &e.s.model,
        &e.s.gpu,
        &l,
        &e.engine,
        e.s.redundant_experts_for(&l),
        w.isl.max + w.osl.max,
    );
    if limit == 0 {
        rej.memory += 1;
        return (None, points);
    }
    let mut best: Option<Candidate> = None;
    for c in concurrency_levels(&l, limit, w.concurrency) {
        let Some(cand) = at(e, l, c) else { break };
        let latency_fails = cand.misses(&[Level::Ttft, Level::Tpot, Level::Memory, Level::Gpus]);
        if cand.meets() {
            points.push(cand.clone());
        }
        if super::rank::better(&cand, best.as_ref(), e.objective) {
            best = Some(cand);
        }
        // Higher concurrency only lengthens latency: stop once latency fails
        // after a success.
        if latency_fails && best.as_ref().is_some_and(Candidate::meets) {
            break;
        }
    }
    if let Some(v) = best.as_ref().and_then(|b| b.violations.first()) {
        rej.count(v.level);
    }
    (best, points)
}

/// Requests in flight tried per worker: the scenario's when it fixes one,
/// else doublings from one per attention-DP rank up to what memory holds.
pub(super) fn concurrency_levels(l: &Layout, limit: u64, fixed: Option<u64>) -> Vec<u64> {
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

/// The derivations of an aggregated recommendation's estimate.
pub(super) fn explain(e: &Eval, r: &Candidate) -> crate::serving::Explain {
    let pool = &r.figures.pools[0];
    let w = &e.s.workload;
    e.tick();
    estimate(&e.input(pool.layout, w.isl.mean(), w.osl.mean(), pool.concurrency))
        .map(|x| x.explain)
        .unwrap_or_default()
}

//! Disaggregated candidates: the best prefill workers paired with the best
//! decode workers, worker counts matched, each pair estimated whole.
//!
//! Workers are screened by their own step: a prefill worker by the prompts
//! per second per GPU of its prefill step (one prompt per attention-DP rank,
//! as a prefill worker runs them), among those whose step fits the TTFT
//! limit; a decode worker by its output tokens per second per GPU at each
//! concurrency whose decode step fits the TPOT limit. The best few of each
//! are paired: decode workers fill the budget (or serve the request rate),
//! prefill workers keep up with them, and the pair is estimated as one
//! deployment (`serving::disagg`) at the mean and the worst-case lengths.

use super::aggregated::concurrency_levels;
use super::{Candidate, Eval};
use crate::figures::Figures;
use crate::layout::Layout;
use crate::memory;
use crate::report::Derivation;
use crate::serving::disagg::{
    decode_step_time, estimate_disaggregated, prefill_step_time, DisaggInput, Pool,
};
use crate::serving::Workload;
use crate::serving::{Explain, ExplainKey};
use crate::units::{Seconds, Tokens};
use rayon::prelude::*;

/// Prefill layouts paired per search.
const PREFILL_KEPT: usize = 3;
/// Decode (layout, concurrency) points paired per search.
const DECODE_KEPT: usize = 24;

/// A screened worker: its layout, requests per second, and (decode) its
/// requests in flight and TPOT.
#[derive(Clone, Copy, Debug)]
struct Worker {
    layout: Layout,
    concurrency: u64,
    requests_per_s: f64,
    step: Seconds,
}

impl Eval<'_> {
    /// A disaggregated input with these pools at lengths (isl, osl).
    fn disagg(
        &self,
        prefill: Pool,
        decode: Pool,
        isl: u64,
        osl: u64,
        concurrency: u64,
    ) -> DisaggInput<'_> {
        DisaggInput {
            model: &self.s.model,
            gpu: &self.s.gpu,
            calibration: self.cal_disagg.clone(),
            prefill,
            decode,
            workload: Workload {
                isl: Tokens::new(isl),
                osl: Tokens::new(osl),
                concurrency,
                cache_hit_rate: self.s.workload.cache_hit_rate,
                client: self.s.workload.client,
            },
            engine: self.engine,
            routing_skew: self.s.routing_skew,
        }
    }

    /// `workers` workers of `layout`, with the scenario's redundant expert
    /// slots where the layout splits experts.
    fn pool(&self, layout: Layout, workers: u32) -> Pool {
        Pool {
            layout,
            workers,
            prompts_per_rank: 1,
            redundant_experts: self.s.redundant_experts_for(&layout),
            overlap: crate::ops::Overlap::None,
        }
    }
}

/// Prefill workers meeting memory and the TTFT limit, best prompts/s per GPU first.
fn prefill_workers(e: &Eval, layouts: &[Layout]) -> Vec<Worker> {
    let w = &e.s.workload;
    let ttft = e.s.slo.ttft.map_or(f64::INFINITY, |t| t.0);
    let mut out: Vec<Worker> = layouts
        .par_iter()
        .filter(|l| l.pp <= 4)
        .filter(|l| {
            let r = e.s.redundant_experts_for(l);
            memory::max_concurrency(&e.s.model, &e.s.gpu, l, &e.engine, r, w.isl.max) > 0
        })
        .map(|l| {
            e.tick();
            let p = e.pool(*l, 1);
            let step = prefill_step_time(&e.disagg(p, p, w.isl.max, w.osl.max, 1), &p);
            Worker {
                layout: *l,
                concurrency: l.dp as u64,
                requests_per_s: l.dp as f64 / step.0.max(1e-12),
                step,
            }
        })
        .filter(|p| p.step.0 < ttft)
        .collect();
    out.sort_by(|a, b| {
        per_gpu(b)
            .total_cmp(&per_gpu(a))
            .then(a.step.total_cmp(&b.step))
            .then(a.layout.cmp(&b.layout))
    });
    out.truncate(PREFILL_KEPT);
    out
}

fn per_gpu(w: &Worker) -> f64 {
    w.requests_per_s / w.layout.gpus() as f64
}

/// Decode (layout, concurrency) points meeting memory and the TPOT limit,
/// best output tokens/s per GPU first.
fn decode_workers(e: &Eval, layouts: &[Layout]) -> Vec<Worker> {
    let w = &e.s.workload;
    let tpot = e.s.slo.tpot.map_or(f64::INFINITY, |t| t.0);
    let osl = w.osl.mean().max(1) as f64;
    let mut out: Vec<Worker> = layouts
        .par_iter()
        .flat_map_iter(|l| {
            let limit = memory::max_concurrency(
                &e.s.model,
                &e.s.gpu,
                l,
                &e.engine,
                e.s.redundant_experts_for(l),
                w.isl.max + w.osl.max,
            );
            let levels = if limit == 0 {
                Vec::new()
            } else {
                concurrency_levels(l, limit, None)
            };
            levels.into_iter().map(move |c| {
                e.tick();
                let p = e.pool(*l, 1);
                let step = decode_step_time(
                    &e.disagg(p, p, w.isl.max, w.osl.max, c),
                    &p,
                    c as f64 / l.dp as f64,
                );
                Worker {
                    layout: *l,
                    concurrency: c,
                    requests_per_s: c as f64 / (osl * step.0.max(1e-12)),
                    step,
                }
            })
        })
        .filter(|d| d.step.0 <= tpot)
        .collect();
    out.sort_by(|a, b| {
        per_gpu(b)
            .total_cmp(&per_gpu(a))
            .then(a.layout.cmp(&b.layout))
            .then(a.concurrency.cmp(&b.concurrency))
    });
    out.truncate(DECODE_KEPT);
    out
}

/// Worker counts (prefill, decode): decode workers for the rate or to fill
/// the budget, prefill workers that keep up with them.
fn counts(e: &Eval, p: &Worker, d: &Worker) -> Option<(u32, u32)> {
    let (gp, gd) = (p.layout.gpus(), d.layout.gpus());
    let keep_up =
        |nd: u32| ((nd as f64 * d.requests_per_s / p.requests_per_s).ceil() as u32).max(1);
    let n = |x: f64| e.s.workload.replicas_for_rate(x).map(u32::try_from);
    match (n(p.requests_per_s), n(d.requests_per_s)) {
        // More workers than a pool can count is no pair (the aggregated
        // candidates, counted in u64, give the true order), never a
        // clamped count that understates the GPUs.
        (Some(np), Some(nd)) => Some((np.ok()?, nd.ok()?)),
        _ => {
            // Both pools grow with the decode workers, so the counts that
            // fit are a prefix of 1..=budget/gd.
            let nd = last_fitting(e.budget / gd, |nd| {
                keep_up(nd) as u64 * gp as u64 + nd as u64 * gd as u64 <= e.budget as u64
            });
            (nd > 0).then(|| (keep_up(nd), nd))
        }
    }
}

/// The largest `n` in 1..=`most` for which `fits` holds, 0 if none, when
/// the `n` that fit are a prefix: by bisection, 24 tries at 10^7 GPUs where
/// a scan took 10 s.
fn last_fitting(most: u32, fits: impl Fn(u32) -> bool) -> u32 {
    // `lo` fits (or is 0); nothing above `hi` does.
    let (mut lo, mut hi) = (0, most);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// The pair estimated whole, at the mean and the worst-case lengths.
fn pair(e: &Eval, p: &Worker, d: &Worker) -> Option<Candidate> {
    let (np, nd) = counts(e, p, d)?;
    let w = &e.s.workload;
    let c = d.concurrency.saturating_mul(nd as u64);
    let (pp, dp) = (e.pool(p.layout, np), e.pool(d.layout, nd));
    e.tick();
    let mean = estimate_disaggregated(&e.disagg(pp, dp, w.isl.mean(), w.osl.mean(), c)).ok()?;
    let worst = if w.isl.is_fixed() && w.osl.is_fixed() {
        mean.clone()
    } else {
        e.tick();
        estimate_disaggregated(&e.disagg(pp, dp, w.isl.max, w.osl.max, c)).ok()?
    };
    let mut f = Figures::disaggregated(&worst, mean);
    f.pools[0].redundant_experts = pp.redundant_experts;
    f.pools[1].redundant_experts = dp.redundant_experts;
    Some(Candidate::judged(e.s, f, e.budget))
}

/// Every pair of the screened prefill and decode workers, ranked.
pub(super) fn candidates(e: &Eval, layouts: &[Layout]) -> Vec<Candidate> {
    let prefill = prefill_workers(e, layouts);
    if prefill.is_empty() {
        return Vec::new();
    }
    let decode = decode_workers(e, layouts);
    let mut out: Vec<Candidate> = prefill
        .iter()
        .flat_map(|p| decode.iter().map(move |d| (p, d)))
        .collect::<Vec<_>>()
        .par_iter()
        .filter_map(|(p, d)| pair(e, p, d))
        .collect();
    out.sort_by(|a, b| super::rank::rank(a, b, e.objective));
    out.truncate(64);
    out
}

/// The derivations of a disaggregated recommendation: its estimate's, and
/// how the worker counts were matched.
pub(super) fn explain(r: &Candidate) -> Explain {
    let crate::figures::Predicted::Disaggregated(d) = &r.figures.estimate else {
        return Explain::new();
    };
    let mut m = d.explain.clone();
    m.insert(
        ExplainKey::Workers,
        Derivation::new(
            "decode workers fill the budget (or serve the rate); prefill workers = ⌈decode workers × decode requests/s ÷ prefill prompts/s⌉ so prompts keep up",
            &[
                ("prefill_workers", d.prefill.workers.to_string()),
                ("decode_workers", d.decode.workers.to_string()),
                ("prefill_utilization", format!("{:.2}", d.prefill.utilization)),
                ("requests_per_s", format!("{:.2}", d.requests_per_s)),
            ],
        ),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::last_fitting;

    /// Bisection finds what a scan finds: for prefixes of every length
    /// (none, some, all) of ranges 0..=40 long.
    #[test]
    fn bisection_finds_the_end_of_the_prefix_a_scan_finds() {
        for most in 0..=40u32 {
            for end in 0..=most + 1 {
                let fits = |n: u32| n <= end;
                let scan = (1..=most).filter(|n| fits(*n)).max().unwrap_or(0);
                assert_eq!(last_fitting(most, fits), scan, "most {most}, end {end}");
            }
        }
        assert_eq!(last_fitting(u32::MAX, |n| n <= 7_777_777), 7_777_777);
    }
}

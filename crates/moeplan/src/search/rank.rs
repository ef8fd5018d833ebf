//! Ranking, the Pareto front, the binding level and the rationale.

use super::{Binding, Candidate, Objective};
use crate::layout::Layout;
use crate::slo::{Bound, Level};
use crate::spec::scenario::Scenario;
use std::cmp::Ordering;

/// Ranking key: meeting every level first, then tokens/s per GPU, then fewer
/// GPUs, then lower TTFT, then the layout in a fixed order.
pub(super) fn better(a: &Candidate, b: Option<&Candidate>, objective: Objective) -> bool {
    match b {
        None => true,
        Some(b) => rank(a, b, objective) == Ordering::Less,
    }
}

pub(super) fn rank(a: &Candidate, b: &Candidate, objective: Objective) -> Ordering {
    let meets = b.meets().cmp(&a.meets());
    if meets != Ordering::Equal {
        return meets;
    }
    if !a.meets() {
        // Fewer violations first.
        let by_count = a.violations.len().cmp(&b.violations.len());
        if by_count != Ordering::Equal {
            return by_count;
        }
    }
    let (fa, fb) = (&a.figures, &b.figures);
    let primary = match objective {
        Objective::FewestGpus => fa.gpus.cmp(&fb.gpus).then(
            fb.output_tokens_per_s_per_gpu
                .total_cmp(&fa.output_tokens_per_s_per_gpu),
        ),
        _ => fb
            .output_tokens_per_s_per_gpu
            .total_cmp(&fa.output_tokens_per_s_per_gpu)
            .then(fa.gpus.cmp(&fb.gpus)),
    };
    primary
        .then(fa.ttft.total_cmp(&fb.ttft))
        .then(fa.mode.cmp(&fb.mode))
        .then_with(|| layout_key(a).cmp(&layout_key(b)))
}

fn layout_key(c: &Candidate) -> Vec<(Layout, u64, u64)> {
    c.figures
        .pools
        .iter()
        .map(|p| (p.layout, p.workers, p.concurrency))
        .collect()
}

/// Candidates not dominated in (tokens/s per GPU, tokens/s per user).
pub(super) fn pareto_front<'a>(cands: impl Iterator<Item = &'a Candidate>) -> Vec<Candidate> {
    let mut v: Vec<&Candidate> = cands.collect();
    v.sort_by(|a, b| {
        b.figures
            .output_tokens_per_s_per_user
            .total_cmp(&a.figures.output_tokens_per_s_per_user)
            .then(
                b.figures
                    .output_tokens_per_s_per_gpu
                    .total_cmp(&a.figures.output_tokens_per_s_per_gpu),
            )
    });
    let mut front: Vec<Candidate> = Vec::new();
    let mut best_gpu = f64::NEG_INFINITY;
    for c in v {
        if c.figures.output_tokens_per_s_per_gpu.0 > best_gpu {
            best_gpu = c.figures.output_tokens_per_s_per_gpu.0;
            front.push(c.clone());
        }
    }
    front
}

/// The best any candidate reaches for a level (the highest floor figure,
/// the lowest ceiling figure).
fn best_for(all: &[Candidate], level: Level) -> f64 {
    let values = all
        .iter()
        .map(|c| crate::slo::value(&c.figures.judged(), level));
    match level.bound() {
        Bound::AtLeast => values.fold(f64::NEG_INFINITY, f64::max),
        Bound::AtMost => values.fold(f64::INFINITY, f64::min),
    }
}

/// When nothing meets every level: the level with the largest shortfall at
/// the candidate closest to meeting everything, and what would fix it.
pub(super) fn binding(s: &Scenario, all: &[Candidate]) -> Option<Binding> {
    let c = all.first()?;
    let v = c.violations.iter().max_by(|a, b| {
        a.shortfall()
            .total_cmp(&b.shortfall())
            .then(b.level.cmp(&a.level))
    })?;
    let best = best_for(all, v.level);
    Some(Binding {
        level: v.level,
        limit: v.limit,
        best,
        advice: advice(s, c, v.level, v.limit, best),
    })
}

/// What would satisfy a level, one arm per level.
fn advice(s: &Scenario, c: &Candidate, level: Level, limit: f64, best: f64) -> Vec<String> {
    let mut out = Vec::new();
    match level {
        Level::ThroughputPerGpu => {
            out.push(format!(
                "the best layout reaches {:.1} output tokens/ms per GPU against the {:.1} required ({:.0}% of it)",
                best / 1e3,
                limit / 1e3,
                best / limit * 100.0
            ));
            let kv_share = c.figures.estimate.kv_share();
            let kv = c.figures.kv_cache_dtype.unwrap_or(s.model.dtypes.kv_cache);
            if kv_share > 0.5 && kv.bytes() > crate::dtype::DType::Fp8.bytes() {
                out.push(format!(
                    "decode is bound by KV-cache reads ({:.0}% of the bytes per step): an fp8 KV cache halves them; shorter contexts (the longest prompt is {} tokens) cut them in proportion",
                    kv_share * 100.0,
                    s.workload.isl.max
                ));
            }
            out.push(format!("or relax min_throughput_per_gpu to {:.1} tokens/ms", best / 1e3 * 0.95));
        }
        Level::ThroughputPerUser => out.push(format!(
            "the fastest a request is served is {best:.1} output tokens/s against the {limit:.1} required: fewer requests per replica, more TP per replica (shorter steps), fp8 weights or KV cache; or relax min_throughput_per_user to {:.1}",
            best * 0.95
        )),
        Level::Ttft => out.push(format!("the fastest TTFT is {best:.0} ms: relax ttft to that, shorten prompts, or use more TP/CP per replica (more GPUs)")),
        Level::Tpot => out.push(format!("the fastest TPOT is {best:.1} ms: relax tpot, lower the concurrency, use fp8 weights or KV cache, or more GPUs per replica")),
        Level::Memory => out.push("the model does not fit: add GPUs per replica (TP/EP/PP), an fp8 KV cache or fp8 weights, or shorter contexts".into()),
        Level::LoadImbalance => out.push(format!("the lowest expert load imbalance is {:.1}%: add redundant expert slots (EPLB), lower EP, or raise max_load_imbalance", best * 100.0)),
        Level::Gpus => out.push(format!(
            "more GPUs: the budget is {limit:.0} and the closest plan needs {best:.0}{}",
            match s.workload.request_rate {
                Some(r) => format!(" to serve {r} requests/s"),
                None => String::new(),
            }
        )),
    }
    out
}

pub(super) fn rationale(all: &[Candidate], rec: Option<&Candidate>) -> Vec<String> {
    let Some(r) = rec else {
        return vec!["no valid layout fits the model on the GPUs available".into()];
    };
    let mut out = Vec::new();
    if !r.meets() {
        out.push(format!(
            "no candidate meets every service level; this one misses the fewest ({})",
            r.violations
                .iter()
                .map(|v| v.level.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // The runner-up differs in what matters: the mode, or the layout of the
    // pool that produces the tokens (aggregated or decode).
    let main = |c: &Candidate| (c.figures.mode, c.figures.pools.last().map(|p| p.layout));
    let runner = all
        .iter()
        .skip(1)
        .find(|c| c.meets() == r.meets() && main(c) != main(r));
    let rf = &r.figures;
    if let Some(u) = runner {
        let uf = &u.figures;
        let gain =
            rf.output_tokens_per_s_per_gpu.0 / uf.output_tokens_per_s_per_gpu.0.max(1e-12) - 1.0;
        out.push(format!(
            "{:.1}% more output tokens/s per GPU than the runner-up ({}: {:.0} vs {:.0})",
            gain * 100.0,
            describe(u),
            rf.output_tokens_per_s_per_gpu.0,
            uf.output_tokens_per_s_per_gpu.0
        ));
        if uf.ttft < rf.ttft {
            out.push(format!(
                "the runner-up has a shorter TTFT ({:.0} vs {:.0} ms), but both meet the limit",
                uf.ttft.ms(),
                rf.ttft.ms()
            ));
        }
        if uf.output_tokens_per_s_per_user > rf.output_tokens_per_s_per_user {
            out.push(format!("the runner-up is faster per user ({:.1} vs {:.1} tokens/s): see the Pareto front for that trade-off", uf.output_tokens_per_s_per_user.0, rf.output_tokens_per_s_per_user.0));
        }
    }
    out.push(format!(
        "decode is {}-bound; the fullest GPU of any pool uses {:.0}% of its memory at the longest lengths",
        rf.bottleneck.name(),
        rf.memory_fraction * 100.0
    ));
    out
}

/// A one-line description of a candidate's pools, and its KV cache type
/// when the planner chose it (` · KV fp8`).
pub fn describe(c: &Candidate) -> String {
    let pools = c
        .figures
        .pools
        .iter()
        .map(|p| format!("{} {}×[{}] c{}", p.role, p.workers, p.layout, p.concurrency))
        .collect::<Vec<_>>()
        .join(" + ");
    match c.figures.kv_cache_dtype {
        Some(kv) => format!("{pools} · KV {kv}"),
        None => pools,
    }
}

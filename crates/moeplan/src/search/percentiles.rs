//! Percentile service levels at a request rate ("P99 TTFT ≤ 2 s at 40
//! requests/s"): the search screens layouts with the closed-form estimate,
//! then this module simulates the best aggregated and the best
//! disaggregated candidates under Poisson arrivals of the scenario's
//! lengths (`crate::simulate`) and finds, for each, the fewest replicas
//! (or prefill and decode workers) whose simulated percentiles meet every
//! level. The recommendation is the candidate that needs the fewest GPUs.

use super::{Candidate, PlanResult};
use crate::figures::Predicted;
use crate::layout::Layout;
use crate::replica::Deployment;
use crate::simulate::{self, Arrivals, Lengths, Levels, Router, SimResult, Traffic};
use crate::spec::scenario::Scenario;
use serde::Serialize;

pub use crate::spec::scenario::{Latency, PercentileLevel, Quantile};

/// The simulated value of a level's figure and percentile (seconds).
pub fn simulated(level: &PercentileLevel, r: &SimResult) -> f64 {
    let s = match level.figure {
        Latency::Ttft => r.ttft_ms,
        Latency::Tpot => r.tpot_ms,
    };
    match level.quantile {
        Quantile::P90 => s.p90 / 1000.0,
        Quantile::P99 => s.p99 / 1000.0,
    }
}

/// The prefill pool of a disaggregated candidate simulated at the rate.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PrefillCheck {
    /// One prefill worker's layout.
    pub layout: Layout,
    /// Prefill workers the closed form sized.
    pub workers_planned: u32,
    /// The fewest prefill workers that meet every level beside the decode
    /// workers needed (None: not met).
    pub workers_needed: Option<u32>,
}

/// One candidate simulated at the rate.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PercentileCheck {
    /// Its rank among the closed-form candidates (0 first).
    pub rank: usize,
    /// One replica's layout (disaggregated: one decode worker's).
    pub layout: Layout,
    /// Replicas the closed form sized for the rate (disaggregated: decode workers).
    pub replicas_planned: u32,
    /// The fewest replicas whose simulation meets every level (None: not
    /// within four times the planned ones; disaggregated: decode workers).
    pub replicas_needed: Option<u32>,
    /// Disaggregated: the prefill pool (the fields above are the decode pool's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefill: Option<PrefillCheck>,
    /// GPUs at the replicas needed.
    pub gpus_needed: Option<u64>,
    /// The simulated level values (seconds) at the replicas needed, else at the most tried.
    pub simulated: Vec<(PercentileLevel, f64)>,
}

/// What the percentile check found.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PercentileReport {
    /// Requests per second simulated (Poisson arrivals).
    pub rate: f64,
    /// Requests simulated per run.
    pub requests: u64,
    /// The levels.
    pub levels: Vec<PercentileLevel>,
    /// Each candidate simulated.
    pub checked: Vec<PercentileCheck>,
    /// Index in `checked` of the one needing the fewest GPUs.
    pub recommended: Option<usize>,
}

/// Requests of each simulation: enough for a stable P99 (a hundred beyond it).
const REQUESTS: u64 = 10_000;

/// Simulates the first `top` aggregated and the first `top` disaggregated
/// candidates of `r` at `rate`.
pub fn check(
    s: &Scenario,
    r: &PlanResult,
    levels: &[PercentileLevel],
    rate: f64,
    top: usize,
) -> PercentileReport {
    let lengths = |l: &crate::spec::scenario::Lengths| match l.min == l.max {
        true => Lengths::Fixed(l.max),
        false => Lengths::Uniform(l.min, l.max),
    };
    let traffic = Traffic {
        arrivals: Arrivals::Poisson { rate },
        isl: lengths(&s.workload.isl),
        osl: lengths(&s.workload.osl),
        requests: REQUESTS,
        duration: None,
        seed: 1,
        warmup: 0,
    };
    let of_kind = |disaggregated: fn(&Predicted) -> bool| {
        r.candidates
            .iter()
            .enumerate()
            .filter(move |(_, c)| disaggregated(&c.figures.estimate))
            .take(top)
    };
    let aggregated = of_kind(|p| matches!(p, Predicted::Aggregated(_)));
    let disaggregated = of_kind(|p| matches!(p, Predicted::Disaggregated(_)));
    let mut picked: Vec<(usize, &Candidate)> = aggregated.chain(disaggregated).collect();
    picked.sort_by_key(|(rank, _)| *rank);
    let checked: Vec<PercentileCheck> = picked
        .into_iter()
        .filter_map(|(rank, c)| check_one(s, rank, c, levels, &traffic))
        .collect();
    let recommended = (0..checked.len())
        .filter(|i| checked[*i].gpus_needed.is_some())
        .min_by_key(|i| (checked[*i].gpus_needed, checked[*i].rank));
    PercentileReport {
        rate,
        requests: REQUESTS,
        levels: levels.to_vec(),
        checked,
        recommended,
    }
}

/// The fewest replicas of one candidate meeting every level: from the
/// planned count up, doubling, then bisecting (at most four times planned).
fn check_one(
    s: &Scenario,
    rank: usize,
    c: &Candidate,
    levels: &[PercentileLevel],
    traffic: &Traffic,
) -> Option<PercentileCheck> {
    let plan = c.figures.as_plan(s);
    let replicas_planned = plan
        .deployment
        .pools()
        .first()
        .map_or(1, |(_, p)| p.replicas.max(1));
    let replica = match Deployment::from_plan(&plan, s.engine_config()) {
        Deployment::Aggregated(replica) => replica,
        Deployment::Disaggregated(d) => return Some(check_disaggregated(rank, d, levels, traffic)),
    };
    let inp = replica.input();
    let run = |n: u32| {
        simulate::simulate(
            &inp,
            n,
            Router::LeastLoaded,
            traffic.clone(),
            Levels::default(),
        )
    };
    let (needed, shown) = fewest(replicas_planned, &|n| run(n), levels);
    Some(PercentileCheck {
        rank,
        layout: replica.layout,
        replicas_planned,
        replicas_needed: needed,
        prefill: None,
        gpus_needed: needed.map(|n| n as u64 * replica.layout.gpus() as u64),
        simulated: levels.iter().map(|l| (*l, simulated(l, &shown))).collect(),
    })
}

/// Whether a simulation kept up and meets every level.
fn meets(r: &SimResult, levels: &[PercentileLevel]) -> bool {
    r.stopped.is_none() && levels.iter().all(|l| simulated(l, r) <= l.limit.value())
}

/// The fewest `n` whose `run(n)` meets the levels: from `planned` up,
/// doubling (at most four times planned), then bisecting down to 1; and
/// the simulation at it (else at the most tried). Assumes more is never worse.
fn fewest(
    planned: u32,
    run: &dyn Fn(u32) -> SimResult,
    levels: &[PercentileLevel],
) -> (Option<u32>, SimResult) {
    let most = planned.saturating_mul(4).max(4);
    let mut lo = 0;
    let mut n = planned.max(1);
    let (mut needed, mut shown) = loop {
        let r = run(n);
        if meets(&r, levels) {
            break (Some(n), r);
        }
        lo = n;
        if n >= most {
            break (None, r);
        }
        n = (n * 2).min(most);
    };
    while let Some(h) = needed.filter(|h| h - lo > 1) {
        let mid = lo + (h - lo) / 2;
        let r = run(mid);
        if meets(&r, levels) {
            (needed, shown) = (Some(mid), r);
        } else {
            lo = mid;
        }
    }
    (needed, shown)
}

/// A disaggregated candidate: both pools scaled together from the planned
/// workers until the levels are met (at most four times), then the fewest
/// prefill workers beside those decode workers, then the fewest decode
/// workers beside those prefill workers.
fn check_disaggregated(
    rank: usize,
    d: crate::replica::Disaggregated,
    levels: &[PercentileLevel],
    traffic: &Traffic,
) -> PercentileCheck {
    let (p0, d0) = (d.prefill.workers.max(1), d.decode.workers.max(1));
    let run = |p: u32, k: u32| {
        let mut x = d.input();
        x.prefill.workers = p;
        x.decode.workers = k;
        simulate::simulate_disaggregated(
            &x,
            Router::LeastLoaded,
            traffic.clone(),
            Levels::default(),
        )
    };
    // Both pools together, as a multiple of the plan (in quarters of it
    // below, as `fewest` bisects): then each pool on its own.
    let scaled = |m: u32| run((p0 * m).div_ceil(4), (d0 * m).div_ceil(4));
    let (multiple, mut shown) = fewest(4, &scaled, levels);
    let mut needed = multiple.map(|m| ((p0 * m).div_ceil(4), (d0 * m).div_ceil(4)));
    if let Some((p, k)) = needed {
        let (np, r) = fewest(p, &|n| run(n, k), levels);
        let np = np.unwrap_or(p).min(p);
        let (nk, r2) = fewest(k, &|n| run(np, n), levels);
        needed = Some((np, nk.unwrap_or(k).min(k)));
        shown = if nk.is_some() { r2 } else { r };
    }
    let gpus = |(p, k): (u32, u32)| {
        p as u64 * d.prefill.layout.gpus() as u64 + k as u64 * d.decode.layout.gpus() as u64
    };
    PercentileCheck {
        rank,
        layout: d.decode.layout,
        replicas_planned: d0,
        replicas_needed: needed.map(|(_, k)| k),
        prefill: Some(PrefillCheck {
            layout: d.prefill.layout,
            workers_planned: p0,
            workers_needed: needed.map(|(p, _)| p),
        }),
        gpus_needed: needed.map(gpus),
        simulated: levels.iter().map(|l| (*l, simulated(l, &shown))).collect(),
    }
}

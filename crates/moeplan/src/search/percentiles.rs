//! Percentile service levels at a request rate ("P99 TTFT ≤ 2 s at 40
//! requests/s"): the search screens layouts with the closed-form estimate,
//! then this module simulates the best aggregated candidates under Poisson
//! arrivals of the scenario's lengths (`crate::simulate`) and finds, for
//! each, the fewest replicas whose simulated percentiles meet every level.
//! The recommendation is the candidate that needs the fewest GPUs.

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

/// One candidate simulated at the rate.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PercentileCheck {
    /// Its rank among the closed-form candidates (0 first).
    pub rank: usize,
    /// One replica's layout.
    pub layout: Layout,
    /// Replicas the closed form sized for the rate.
    pub replicas_planned: u32,
    /// The fewest replicas whose simulation meets every level (None: not
    /// within four times the planned ones).
    pub replicas_needed: Option<u32>,
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

/// Simulates the first `top` aggregated candidates of `r` at `rate`.
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
    let checked: Vec<PercentileCheck> = r
        .candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.figures.estimate, Predicted::Aggregated(_)))
        .take(top)
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
    let Deployment::Aggregated(replica) = Deployment::from_plan(&plan, s.engine_config()) else {
        return None;
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
    let meets = |r: &SimResult| {
        r.stopped.is_none() && levels.iter().all(|l| simulated(l, r) <= l.limit.value())
    };
    let most = replicas_planned.saturating_mul(4).max(4);
    let mut lo = 0;
    let mut n = replicas_planned;
    let (mut needed, mut shown) = loop {
        let r = run(n);
        if meets(&r) {
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
        if meets(&r) {
            (needed, shown) = (Some(mid), r);
        } else {
            lo = mid;
        }
    }
    Some(PercentileCheck {
        rank,
        layout: replica.layout,
        replicas_planned,
        replicas_needed: needed,
        gpus_needed: needed.map(|n| n as u64 * replica.layout.gpus() as u64),
        simulated: levels.iter().map(|l| (*l, simulated(l, &shown))).collect(),
    })
}

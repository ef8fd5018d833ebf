//! Throughput and latency claims: the deployment's and each pool's
//! throughput per GPU and the physical ceilings it cannot pass, TTFT and
//! TPOT, the soft figures (communication share, expert load imbalance, GPU
//! utilisation), and the throughput bounds a plan derives itself.

use super::claim::{
    band_of, cause, compare, error_band, explained, factor, finding, pct, rate, set_key, time,
    unit_slip, Claim, BOUND, LATENCY, THROUGHPUT,
};
use super::{decode_eval, evaluate_layout, prefill_eval, Finding, PoolEval, Severity};
use crate::figures::{Figures, Predicted};
use crate::layout::Layout;
use crate::replica::PoolRole;
use crate::report::Derivation;
use crate::serving::disagg::DisaggEstimate;
use crate::serving::{Ceilings, Estimate, Explain, ExplainKey, LoadImbalance, PhaseCost};
use crate::spec::plan::{Deployment, Plan, TokenKind};
use crate::units::{FlopPerSecond, Fraction, Seconds, TokensPerSecond};

/// Output tokens/s per GPU of the whole deployment (mean lengths), with its
/// derivation: the figure the planner ranks by (`figures::evaluate`).
pub(super) fn overall_throughput(fig: Option<&Figures>) -> Option<(f64, f64, Derivation)> {
    let f = fig?;
    let v = f.output_tokens_per_s_per_gpu.0;
    let ev = explained(
        f.estimate.explain(ExplainKey::OutputTokensPerSPerGpu),
        "estimate",
    );
    Some((v, v, ev))
}

/// The disaggregated estimate behind a deployment's figures.
pub(super) fn disaggregated(f: &Figures) -> Option<&DisaggEstimate> {
    match &f.estimate {
        Predicted::Disaggregated(e) => Some(e),
        Predicted::Aggregated(_) => None,
    }
}

/// Prompt tokens/s a disaggregated deployment's prefill pool can prefill:
/// every rank's prompts per step, each `isl` tokens, per prefill step.
pub(super) fn prefill_capacity(e: &DisaggEstimate) -> f64 {
    let p = &e.prefill;
    let ranks = p.workers as f64 * p.layout.dp as f64;
    ranks * p.requests_per_rank * e.workload.isl.as_f64() / p.step.time.0.max(1e-12)
}

/// One step the soft figures read, with the rates its pool achieves at
/// this load: an aggregated replica's decode step (prompts beside, as its
/// loop mixes them), or a disaggregated pool's own pure step.
struct PoolStep<'a> {
    /// The layout of a worker (a replica).
    layout: Layout,
    /// The step: its time, its time by bound, what limits it.
    step: &'a PhaseCost,
    /// The step in words (`a steady-state step`, `the decode pool's decode step`).
    what: &'static str,
    /// The phase it runs (`decode`, `prefill`).
    phase: &'static str,
    /// Output tokens/s per GPU.
    output_per_gpu: f64,
    /// Prompt tokens/s per GPU.
    input_per_gpu: f64,
}

/// Which part of a deployment a figure concerns.
#[derive(Clone, Copy)]
enum Part {
    /// All its GPUs.
    Whole,
    /// The pool that prefills (aggregated: the replica).
    Prefill,
    /// The pool that decodes (aggregated: the replica).
    Decode,
}

/// The step and rates of a part of the deployment: an aggregated plan's
/// decode step at the mean prompt (whatever the part), a disaggregated
/// plan's pure step of that pool from the disaggregated estimate (the
/// decode pool's for the whole deployment), never the decode layout run as
/// an aggregated replica (which charges the decode pool with prompts).
fn pool_step<'a>(
    plan: &Plan,
    evals: &'a [PoolEval],
    fig: Option<&'a Figures>,
    part: Part,
) -> Option<PoolStep<'a>> {
    let Deployment::Disaggregated { .. } = plan.deployment else {
        let t = decode_eval(evals)?.typical.as_ref()?;
        return Some(PoolStep {
            layout: t.layout,
            step: &t.decode,
            what: "a steady-state step",
            phase: "decode",
            output_per_gpu: t.output_tokens_per_s_per_gpu.0,
            input_per_gpu: t.input_tokens_per_s_per_gpu.0,
        });
    };
    let e = fig.and_then(disaggregated)?;
    let per_gpu = |tokens: f64, gpus: u64| e.requests_per_s * tokens / gpus.max(1) as f64;
    let (isl, osl) = (e.workload.isl.as_f64(), e.workload.osl.get().max(1) as f64);
    let decode = PoolStep {
        layout: e.decode.layout,
        step: &e.decode.step,
        what: "the decode pool's decode step",
        phase: "decode",
        output_per_gpu: per_gpu(osl, e.decode.gpus),
        input_per_gpu: 0.0,
    };
    Some(match part {
        Part::Decode => decode,
        Part::Whole => PoolStep {
            output_per_gpu: e.output_tokens_per_s_per_gpu.0,
            input_per_gpu: e.input_tokens_per_s_per_gpu.0,
            ..decode
        },
        Part::Prefill => PoolStep {
            layout: e.prefill.layout,
            step: &e.prefill.step,
            what: "the prefill pool's prefill step",
            phase: "prefill",
            output_per_gpu: 0.0,
            input_per_gpu: per_gpu(isl, e.prefill.gpus),
        },
    })
}

/// What the bound and imbalance checks read of the step that decodes: its
/// expert load imbalance, its ceilings per GPU and their derivations.
pub(super) struct DecodeBounds<'a> {
    /// The layout of a worker (a replica).
    pub(super) layout: Layout,
    /// Requests one worker decodes per step.
    pub(super) decoding_requests: f64,
    /// Expert load imbalance of the step.
    pub(super) imbalance: &'a LoadImbalance,
    /// Ceilings per GPU.
    pub(super) ceilings: &'a Ceilings,
    /// Derivations of the ceilings and the imbalance.
    pub(super) explain: &'a Explain,
}

/// The decode step's bounds: an aggregated plan's at the mean prompt, a
/// disaggregated plan's decode pool's pure decode step (disaggregated
/// estimate).
pub(super) fn decode_bounds<'a>(
    plan: &Plan,
    evals: &'a [PoolEval],
    fig: Option<&'a Figures>,
) -> Option<DecodeBounds<'a>> {
    match plan.deployment {
        Deployment::Aggregated { .. } => {
            let t = decode_eval(evals)?.typical.as_ref()?;
            Some(DecodeBounds {
                layout: t.layout,
                decoding_requests: t.decoding_requests,
                imbalance: &t.load_imbalance,
                ceilings: &t.ceilings,
                explain: &t.explain,
            })
        }
        Deployment::Disaggregated { .. } => {
            let e = fig.and_then(disaggregated)?;
            Some(DecodeBounds {
                layout: e.decode.layout,
                decoding_requests: e.decode.requests_per_rank * e.decode.layout.dp as f64,
                imbalance: &e.decode_imbalance,
                ceilings: &e.ceilings,
                explain: &e.explain,
            })
        }
    }
}

/// TTFT at the mean and at the longest lengths (lower, higher).
fn ttft_range(fig: Option<&Figures>) -> Option<(f64, f64)> {
    let f = fig?;
    let (m, w) = (f.estimate.ttft().0, f.ttft.0);
    Some((m.min(w), m.max(w)))
}

/// TPOT at the mean and at the longest lengths (lower, higher).
fn tpot_range(fig: Option<&Figures>) -> Option<(f64, f64)> {
    let f = fig?;
    let (m, w) = (f.estimate.tpot().0, f.tpot.0);
    Some((m.min(w), m.max(w)))
}

/// Peak FLOP/s of the plan's GPU at the precision its experts compute in.
fn peak_flops(plan: &Plan) -> f64 {
    plan.scenario
        .gpu
        .peak_for(plan.scenario.model.dtypes.experts.preferred_compute())
        .1
         .0
}

/// Runs every throughput, latency and soft-figure check.
pub(super) fn performance(
    plan: &Plan,
    evals: &[PoolEval],
    fig: Option<&Figures>,
    out: &mut Vec<Finding>,
) {
    throughput(plan, evals, fig, out);
    prefill_throughput(plan, evals, fig, out);
    decode_pool_throughput(plan, fig, out);
    latencies(plan, evals, fig, out);
    if let (Some(claim), Some(t)) = (
        plan.claims.comm_overhead,
        pool_step(plan, evals, fig, Part::Decode),
    ) {
        comm_overhead(claim, &t, out);
    }
    if let (Some(claim), Some(b)) = (plan.claims.load_imbalance, decode_bounds(plan, evals, fig)) {
        load_imbalance(claim, &b, out);
    }
    gpu_utilization(plan, evals, fig, out);
}

/// Checks the deployment's throughput per GPU (output or prompt tokens, as
/// the plan counts them) against the computed one and the physical ceiling.
fn throughput(plan: &Plan, evals: &[PoolEval], fig: Option<&Figures>, out: &mut Vec<Finding>) {
    let c = &plan.claims;
    let (Some(claim), Some((lo, hi, ev))) = (c.overall.throughput_per_gpu, overall_throughput(fig))
    else {
        return;
    };
    let isl = plan.scenario.workload.isl.mean().max(1) as f64;
    let osl = plan.scenario.workload.osl.mean().max(1) as f64;
    let (lo, hi, what, other) = match c.throughput_tokens {
        TokenKind::Output => (lo, hi, "output tokens/s per GPU", isl / osl),
        TokenKind::Input => (
            lo * isl / osl,
            hi * isl / osl,
            "prompt tokens/s per GPU",
            osl / isl,
        ),
    };
    let gpus_per_replica = decode_eval(evals).map_or(1.0, |e| e.pool.layout.gpus() as f64);
    compare(
        Claim {
            field: "claims.throughput_per_gpu".into(),
            what,
            claimed: claim.0,
            lo,
            hi,
            fmt: rate,
            tol: THROUGHPUT.within_band(band_of(evals).tpot_p90),
            causes: vec![
                unit_slip(hi * 1e3, "tokens/ms and tokens/s"),
                unit_slip(lo * 1e-3, "tokens/ms and tokens/s"),
                cause(
                    hi * other,
                    "input_output_confused",
                    "prompt and output tokens confused (a factor of isl/osl)",
                ),
                cause(
                    hi * gpus_per_replica,
                    "per_replica_as_per_gpu",
                    "the throughput of a replica, not of one GPU",
                ),
            ],
            evidence: ev,
            fix: format!("throughput_per_gpu = \"{:.1} tokens/s\"", hi),
        },
        out,
    );
    if let Some(b) = decode_bounds(plan, evals, fig) {
        throughput_ceiling(plan, &b, claim, hi, out);
    }
}

/// A throughput claim above the physical ceiling: HBM for output tokens,
/// tensor cores for prompt tokens (`computed`: the figure to claim instead).
fn throughput_ceiling(
    plan: &Plan,
    t: &DecodeBounds,
    claim: TokensPerSecond,
    computed: f64,
    out: &mut Vec<Finding>,
) {
    let (ceiling, d) = match plan.claims.throughput_tokens {
        TokenKind::Output => (
            t.ceilings.decode_tokens_per_s_per_gpu.0,
            t.explain.get(&ExplainKey::DecodeCeiling),
        ),
        TokenKind::Input => (
            t.ceilings.prefill_tokens_per_s_per_gpu.0,
            t.explain.get(&ExplainKey::PrefillCeiling),
        ),
    };
    if claim.0 > ceiling {
        out.push(finding(
            Severity::Error,
            "above_ceiling",
            "claims.throughput_per_gpu",
            Some(rate(claim.0)),
            Some(rate(ceiling)),
            format!(
                "{} is above the physical ceiling of {} per GPU ({:.1}× too high) for this model, batch and context, with no overhead at all",
                rate(claim.0),
                rate(ceiling),
                claim.0 / ceiling
            ),
            explained(d, "roofline"),
            format!("claim at most the computed {}", rate(computed)),
        ));
    }
}

/// Checks every claimed prompt tokens/s a GPU prefills against the
/// computed rate and the compute ceiling.
fn prefill_throughput(
    plan: &Plan,
    evals: &[PoolEval],
    fig: Option<&Figures>,
    out: &mut Vec<Finding>,
) {
    let c = &plan.claims;
    let prefill = c.prefill.as_ref();
    let claims = [
        (
            "claims.prefill_throughput_per_gpu",
            c.overall.prefill_throughput_per_gpu,
        ),
        (
            "claims.prefill.throughput_per_gpu",
            prefill.and_then(|p| p.throughput_per_gpu),
        ),
        (
            "claims.prefill.prefill_throughput_per_gpu",
            prefill.and_then(|p| p.prefill_throughput_per_gpu),
        ),
    ];
    if claims.iter().all(|(_, v)| v.is_none()) {
        return;
    }
    let Some(p) = prefill_eval(evals).and_then(|pe| prefill_estimate(plan, pe)) else {
        return;
    };
    // A disaggregated prefill pool's capacity is the one its loop runs at
    // (the same figure the rate matching uses).
    let pool = fig.and_then(disaggregated).map(prefill_pool_rate);
    let (v, ev) = match pool {
        Some(rate_and_evidence) => rate_and_evidence,
        None => (p.input_tokens_per_s_per_gpu.0, prefill_only_evidence(&p)),
    };
    for (field, claim) in claims {
        let Some(claim) = claim else { continue };
        compare(
            Claim {
                field: field.into(),
                what: "prompt tokens/s per GPU when prefilling",
                claimed: claim.0,
                lo: v,
                hi: v,
                fmt: rate,
                tol: THROUGHPUT,
                causes: vec![
                    unit_slip(v * 1e3, "tokens/ms and tokens/s"),
                    unit_slip(v * 1e-3, "tokens/ms and tokens/s"),
                ],
                evidence: ev.clone(),
                fix: set_key(field, format!("{v:.0} tokens/s")),
            },
            out,
        );
        prefill_ceiling(field, claim, v, &p, out);
    }
}

/// The prefill estimate: the prefill pool's own when disaggregated, else
/// the reference layout run with prefill only (None without one).
fn prefill_estimate(plan: &Plan, pe: &PoolEval) -> Option<Estimate> {
    match (plan.deployment, pe.reference) {
        (Deployment::Disaggregated { .. }, _) => pe.typical.clone(),
        (_, Some(l)) => evaluate_layout(plan, l, PoolRole::Prefill, pe.pool.redundant_experts).0,
        _ => None,
    }
}

/// Prompt tokens/s per GPU of a disaggregated prefill pool, with its
/// derivation.
fn prefill_pool_rate(e: &DisaggEstimate) -> (f64, Derivation) {
    let gpus = e.prefill.gpus.max(1) as f64;
    (
        prefill_capacity(e) / gpus,
        Derivation::new(
            "prompts per step of every prefill rank × isl / prefill step / prefill GPUs (disaggregated estimate)",
            &[
                ("prompts_per_rank", format!("{:.0}", e.prefill.requests_per_rank)),
                ("ranks", (e.prefill.workers as u64 * e.prefill.layout.dp as u64).to_string()),
                ("isl", e.workload.isl.to_string()),
                ("prefill_step", e.prefill.step.time.to_string()),
                ("prefill_gpus", e.prefill.gpus.to_string()),
            ],
        ),
    )
}

/// How a prefill-only estimate derives its prompt tokens/s per GPU.
fn prefill_only_evidence(p: &Estimate) -> Derivation {
    match p.explain.get(&ExplainKey::OutputTokensPerSPerGpu) {
        Some(d) => {
            let mut d = d.clone();
            d.formula = format!(
                "prefill only (osl = 1): prompt tokens per step / step time / GPUs ({})",
                d.formula
            )
            .into();
            d
        }
        None => Derivation::new("estimate", &[]),
    }
}

/// A prefill throughput claim above the compute ceiling (`computed`: the
/// figure to claim instead).
fn prefill_ceiling(
    field: &str,
    claim: TokensPerSecond,
    computed: f64,
    p: &Estimate,
    out: &mut Vec<Finding>,
) {
    let ceiling = p.ceilings.prefill_tokens_per_s_per_gpu.0;
    if claim.0 > ceiling {
        out.push(finding(
            Severity::Error,
            "above_ceiling",
            field,
            Some(rate(claim.0)),
            Some(rate(ceiling)),
            format!(
                "{} is above the compute ceiling of {} per GPU",
                rate(claim.0),
                rate(ceiling)
            ),
            explained(
                p.explain.get(&ExplainKey::PrefillCeiling),
                "peak / FLOP per token",
            ),
            format!("claim at most {}", rate(computed)),
        ));
    }
}

/// Checks a disaggregated decode pool's output tokens/s per GPU: its share
/// of the deployment's output in the disaggregated loop, which charges the
/// decode pool with decode steps only (prefill is the other pool's).
fn decode_pool_throughput(plan: &Plan, fig: Option<&Figures>, out: &mut Vec<Finding>) {
    let (Some(claim), Some(e)) = (
        plan.claims
            .decode
            .as_ref()
            .and_then(|d| d.throughput_per_gpu),
        fig.and_then(disaggregated),
    ) else {
        return;
    };
    let osl = e.workload.osl.get().max(1) as f64;
    let v = e.requests_per_s * osl / e.decode.gpus.max(1) as f64;
    compare(
        Claim {
            field: "claims.decode.throughput_per_gpu".into(),
            what: "output tokens/s per GPU of the decode pool",
            claimed: claim.0,
            lo: v,
            hi: v,
            fmt: rate,
            tol: THROUGHPUT.within_band(error_band().disaggregated.tpot_p90),
            causes: vec![unit_slip(v * 1e3, "tokens/ms and tokens/s")],
            evidence: Derivation::new(
                "requests/s the deployment completes × osl / decode GPUs (disaggregated estimate: decode steps only)",
                &[
                    ("requests_per_s", format!("{:.2}", e.requests_per_s)),
                    ("osl", format!("{osl:.0}")),
                    ("decode_gpus", e.decode.gpus.to_string()),
                    ("decode_step", e.decode.step.time.to_string()),
                ],
            ),
            fix: format!("throughput_per_gpu = \"{v:.1} tokens/s\""),
        },
        out,
    );
}

/// Which latency a claim states.
#[derive(Clone, Copy)]
enum Latency {
    /// Time to first token.
    Ttft,
    /// Time per output token.
    Tpot,
}

impl Latency {
    /// What the latency is, in words.
    fn what(self) -> &'static str {
        match self {
            Latency::Ttft => "time to first token",
            Latency::Tpot => "time per output token",
        }
    }

    /// The estimate's derivation of it.
    fn key(self) -> ExplainKey {
        match self {
            Latency::Ttft => ExplainKey::Ttft,
            Latency::Tpot => ExplainKey::Tpot,
        }
    }

    /// The computed latency at the mean and at the longest lengths.
    fn range(self, fig: Option<&Figures>) -> Option<(f64, f64)> {
        match self {
            Latency::Ttft => ttft_range(fig),
            Latency::Tpot => tpot_range(fig),
        }
    }
}

/// Checks the claimed TTFT and TPOT of the deployment and of its pools.
fn latencies(plan: &Plan, evals: &[PoolEval], fig: Option<&Figures>, out: &mut Vec<Finding>) {
    let c = &plan.claims;
    for (field, kind, claim) in [
        ("claims.ttft", Latency::Ttft, c.overall.ttft),
        ("claims.tpot", Latency::Tpot, c.overall.tpot),
        (
            "claims.prefill.ttft",
            Latency::Ttft,
            c.prefill.as_ref().and_then(|p| p.ttft),
        ),
        (
            "claims.decode.tpot",
            Latency::Tpot,
            c.decode.as_ref().and_then(|p| p.tpot),
        ),
    ] {
        latency(evals, fig, field, kind, claim, out);
    }
}

/// Checks one latency claim against the computed range.
fn latency(
    evals: &[PoolEval],
    fig: Option<&Figures>,
    field: &str,
    kind: Latency,
    claim: Option<Seconds>,
    out: &mut Vec<Finding>,
) {
    let (Some(claim), Some((lo, hi))) = (claim, kind.range(fig)) else {
        return;
    };
    // The figure's own derivation: a disaggregated plan's is its
    // disaggregated estimate's, not the decode layout's as a replica.
    let derivation = match fig.map(|f| &f.estimate) {
        Some(p @ Predicted::Disaggregated(_)) => p.explain(kind.key()),
        _ => decode_eval(evals)
            .and_then(|e| e.typical.as_ref())
            .and_then(|t| t.explain.get(&kind.key())),
    };
    let ev = explained(derivation, "estimate");
    compare(
        Claim {
            field: field.into(),
            what: kind.what(),
            claimed: claim.0,
            lo,
            hi,
            fmt: time,
            tol: LATENCY.within_band(match kind {
                Latency::Ttft => band_of(evals).ttft_p90,
                Latency::Tpot => band_of(evals).tpot_p90,
            }),
            causes: vec![
                unit_slip(lo * 1e-3, "ms and s"),
                unit_slip(hi * 1e3, "ms and s"),
            ],
            evidence: ev,
            fix: set_key(field, time(hi)),
        },
        out,
    );
}

/// Checks the claimed communication share of the step that decodes.
fn comm_overhead(claim: f64, t: &PoolStep, out: &mut Vec<Finding>) {
    let comm = t.step.by_bound.get("communication").map_or(0.0, |s| s.0);
    let share = comm / t.step.time.0.max(f64::MIN_POSITIVE);
    if (claim - share).abs() > 0.10 {
        out.push(finding(
            Severity::Warning,
            "claim_mismatch",
            "claims.comm_overhead",
            Some(pct(claim)),
            Some(pct(share)),
            format!(
                "communication is {} of {}, not {}",
                pct(share),
                t.what,
                pct(claim)
            ),
            Derivation::new(
                "communication time of the step / step time",
                &[
                    ("communication", Seconds(comm).to_string()),
                    ("step", t.step.time.to_string()),
                    ("layout", t.layout.to_string()),
                ],
            ),
            format!("comm_overhead = \"{}\"", pct(share)),
        ));
    }
}

/// An expert load imbalance claimed below what uniform routing gives: a
/// physical floor, since the busiest of ep ranks draws more than the mean
/// by chance alone (balls into bins), before any skew.
fn load_imbalance(claim: f64, t: &DecodeBounds, out: &mut Vec<Finding>) {
    let li = t.imbalance;
    if claim + 0.02 < li.uniform {
        out.push(finding(
            Severity::Error,
            "below_physical_floor",
            "claims.load_imbalance",
            Some(pct(claim)),
            Some(format!("{} (uniform routing) – {} (skewed)", pct(li.uniform), pct(li.skewed))),
            format!("even perfectly uniform routing leaves the busiest EP rank {} above the mean at this batch; real routing is skewed", pct(li.uniform)),
            explained(t.explain.get(&ExplainKey::LoadImbalance), "estimate"),
            "plan for the computed imbalance, or add redundant experts (EPLB)",
        ));
    }
}

/// Checks every claimed GPU utilisation against the plan's own MFU and the
/// utilisation the computed load achieves: of the whole deployment, of the
/// prefill pool and of the decode pool (each its own pure step when
/// disaggregated).
fn gpu_utilization(plan: &Plan, evals: &[PoolEval], fig: Option<&Figures>, out: &mut Vec<Finding>) {
    let c = &plan.claims;
    let claims = [
        (
            "claims.gpu_utilization",
            Part::Whole,
            c.overall.gpu_utilization,
        ),
        (
            "claims.prefill.gpu_utilization",
            Part::Prefill,
            c.prefill.as_ref().and_then(|p| p.gpu_utilization),
        ),
        (
            "claims.decode.gpu_utilization",
            Part::Decode,
            c.decode.as_ref().and_then(|p| p.gpu_utilization),
        ),
    ];
    for (field, part, claim) in claims {
        let Some(claim) = claim else { continue };
        if let Some(mfu) = plan.scenario.mfu {
            utilization_above_mfu(field, claim, mfu.value(), out);
        }
        if let Some(t) = pool_step(plan, evals, fig, part) {
            utilization_above_achieved(plan, &t, field, claim, out);
        }
    }
}

/// A utilisation claim above the MFU the plan itself assumes.
fn utilization_above_mfu(field: &str, claim: f64, mfu: f64, out: &mut Vec<Finding>) {
    if claim > mfu + 1e-9 {
        out.push(finding(
            Severity::Warning,
            "claims_contradict",
            field,
            Some(pct(claim)),
            Some(pct(mfu)),
            format!(
                "the plan counts on {} utilisation while assuming an MFU of {} (hardware.mfu)",
                pct(claim),
                pct(mfu)
            ),
            Derivation::new(
                "a GPU cannot run above the efficiency the plan itself assumes",
                &[("hardware.mfu", pct(mfu))],
            ),
            "use one efficiency assumption throughout",
        ));
    }
}

/// A utilisation claim far above the share of peak FLOP/s the computed
/// load achieves.
fn utilization_above_achieved(
    plan: &Plan,
    t: &PoolStep,
    field: &str,
    claim: f64,
    out: &mut Vec<Finding>,
) {
    let peak = peak_flops(plan);
    let flop = plan.scenario.model.linear_flop_per_token().0;
    let achieved = t.output_per_gpu * flop / peak + t.input_per_gpu * flop / peak;
    if claim > 3.0 * achieved && claim - achieved > 0.1 {
        out.push(finding(
            Severity::Warning,
            "claim_mismatch",
            field,
            Some(pct(claim)),
            Some(pct(achieved)),
            format!(
                "the GPUs do {} of their peak FLOP/s at this load, not {} (the share of all the time, waits between steps included; a {} step is {}-bound while it runs)",
                pct(achieved),
                pct(claim),
                t.phase,
                t.step.bottleneck.name()
            ),
            Derivation::new(
                "(output + prompt tokens/s per GPU) × linear FLOP per token / peak",
                &[
                    ("output_tokens_per_s", format!("{:.0}", t.output_per_gpu)),
                    ("prompt_tokens_per_s", format!("{:.0}", t.input_per_gpu)),
                    ("peak", FlopPerSecond(peak).to_string()),
                ],
            ),
            "quote the computed utilisation",
        ));
    }
}

/// Throughput bounds the plan derives itself, against its own inputs and
/// against the computed ceilings.
pub(super) fn bounds(
    plan: &Plan,
    evals: &[PoolEval],
    fig: Option<&Figures>,
    out: &mut Vec<Finding>,
) {
    let c = &plan.claims;
    let t = decode_bounds(plan, evals, fig);
    let t = t.as_ref();
    if let Some(cb) = c.compute_bound_throughput_per_gpu {
        compute_bound(plan, t, cb, out);
    }
    if let Some(bb) = c.bandwidth_bound_throughput_per_gpu {
        bandwidth_bound(plan, t, bb, out);
    }
    if let Some(claim) = c.overall.throughput_per_gpu {
        above_own_bounds(plan, claim, out);
    }
}

/// A bound the plan states that its own inputs do not give (a factor of
/// 1000 is named a unit slip).
fn against_own_inputs(
    claim: TokensPerSecond,
    field: &str,
    implied: f64,
    evidence: Derivation,
    out: &mut Vec<Finding>,
) {
    let f = factor(claim.0 / implied);
    if f > 1.2 {
        let slip = (f.ln() - 1e3f64.ln()).abs() < 1.2f64.ln();
        out.push(finding(
            Severity::Error,
            if slip {
                "unit_slip"
            } else {
                "claims_contradict"
            },
            field,
            Some(rate(claim.0)),
            Some(rate(implied)),
            format!(
                "the plan's own inputs give {}, not {}{}",
                rate(implied),
                rate(claim.0),
                if slip {
                    ": a factor of 1000, tokens/s written as tokens/ms or the reverse"
                } else {
                    ""
                }
            ),
            evidence,
            set_key(field, format!("{implied:.1} tokens/s")),
        ));
    }
}

/// Checks the compute-bound throughput claim against the plan's own FLOP
/// per token and the computed one.
fn compute_bound(
    plan: &Plan,
    t: Option<&DecodeBounds>,
    cb: TokensPerSecond,
    out: &mut Vec<Finding>,
) {
    let peak = peak_flops(plan);
    let mfu = plan.scenario.mfu.map_or(1.0, Fraction::value);
    if let Some(f) = plan.claims.flops_per_token {
        against_own_inputs(
            cb,
            "claims.compute_bound_throughput_per_gpu",
            peak * mfu / f.0,
            Derivation::new(
                "peak × mfu / flops_per_token (both from the plan)",
                &[
                    ("peak", FlopPerSecond(peak).to_string()),
                    ("mfu", pct(mfu)),
                    ("flops_per_token", f.to_string()),
                ],
            ),
            out,
        );
    }
    let Some(t) = t else { return };
    let v = peak * mfu / t.ceilings.prefill_flop_per_token.0;
    compare(
        Claim {
            field: "claims.compute_bound_throughput_per_gpu".into(),
            what: "compute-bound tokens/s per GPU",
            claimed: cb.0,
            lo: v,
            hi: v,
            fmt: rate,
            tol: BOUND,
            causes: vec![unit_slip(v * 1e-3, "tokens/ms and tokens/s")],
            evidence: Derivation::new(
                "peak × mfu / computed FLOP per token",
                &[
                    ("peak", FlopPerSecond(peak).to_string()),
                    ("mfu", pct(mfu)),
                    (
                        "flop_per_token",
                        t.ceilings.prefill_flop_per_token.to_string(),
                    ),
                ],
            ),
            fix: format!("compute_bound_throughput_per_gpu = \"{v:.0} tokens/s\""),
        },
        out,
    );
}

/// Checks the bandwidth-bound throughput claim against the plan's own bytes
/// per token and the computed HBM ceiling.
fn bandwidth_bound(
    plan: &Plan,
    t: Option<&DecodeBounds>,
    bb: TokensPerSecond,
    out: &mut Vec<Finding>,
) {
    let bw = plan.scenario.gpu.memory_bandwidth.0;
    let bwu = plan
        .scenario
        .bandwidth_utilization
        .map_or(1.0, Fraction::value);
    if let Some(b) = plan.claims.bytes_read_per_token {
        against_own_inputs(
            bb,
            "claims.bandwidth_bound_throughput_per_gpu",
            bw * bwu / b.0,
            Derivation::new(
                "bandwidth × bandwidth_utilization / bytes_read_per_token (both from the plan)",
                &[
                    ("bandwidth", plan.scenario.gpu.memory_bandwidth.to_string()),
                    ("bandwidth_utilization", pct(bwu)),
                    ("bytes_read_per_token", b.to_string()),
                ],
            ),
            out,
        );
    }
    let Some(t) = t else { return };
    let v = t.ceilings.decode_tokens_per_s_per_gpu.0 * bwu;
    compare(
        Claim {
            field: "claims.bandwidth_bound_throughput_per_gpu".into(),
            what: "bandwidth-bound output tokens/s per GPU",
            claimed: bb.0,
            lo: v,
            hi: v,
            fmt: rate,
            tol: BOUND,
            causes: vec![unit_slip(v * 1e3, "tokens/ms and tokens/s")],
            evidence: explained(t.explain.get(&ExplainKey::DecodeCeiling), "roofline"),
            fix: format!("bandwidth_bound_throughput_per_gpu = \"{v:.0} tokens/s\""),
        },
        out,
    );
}

/// A throughput claim above a bound the plan derives itself.
fn above_own_bounds(plan: &Plan, claim: TokensPerSecond, out: &mut Vec<Finding>) {
    let c = &plan.claims;
    for (bound, name) in [
        (c.bandwidth_bound_throughput_per_gpu, "bandwidth-bound"),
        (c.compute_bound_throughput_per_gpu, "compute-bound"),
    ] {
        let Some(b) = bound else { continue };
        if claim.0 > b.0 * 1.05 {
            out.push(finding(
                Severity::Error,
                "claims_contradict",
                "claims.throughput_per_gpu",
                Some(rate(claim.0)),
                Some(rate(b.0)),
                format!("the plan claims {} per GPU above its own {name} limit of {}", rate(claim.0), rate(b.0)),
                Derivation::new("a throughput cannot exceed a bound the plan derives itself", &[(name, rate(b.0))]),
                "resolve the contradiction: the bound or the claim is wrong (see their own findings)",
            ));
        }
    }
}

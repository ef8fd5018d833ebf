//! The checks of the audit: `all` runs every family (layout, GPU counts,
//! model figures, memory, performance, bounds, service levels) and `waste`
//! the ones that need the corrected plan. Each compares what the plan
//! states (or implies) with what moeplan computes and pushes a `Finding`
//! with its evidence. The memory and performance families live in their
//! own modules (`memory`, `performance`), the comparison itself in `claim`.
//! To add a check: write a function here or in its family's module, call
//! it from `all` (or `waste`), give it a new stable code, and add a broken
//! plan to `examples/audit/broken/` that it must catch.

use super::claim::{
    bytes, cause, compare, explained, finding, flop, layout_input, params, pct, rate, time,
    unit_slip, with_layout, Cause, Claim, BYTES_PER_TOKEN, FLOP, PARAMS,
};
use super::fix::Corrected;
use super::memory::memory_all;
use super::performance::{
    bounds, decode_bounds, disaggregated, overall_throughput, performance, prefill_capacity,
};
use super::{Computed, Finding, PoolEval, PoolFigures, Severity};
use crate::figures::Figures;
use crate::model::{Component, ParamReport};
use crate::report::Derivation;
use crate::serving::disagg::DisaggEstimate;
use crate::serving::Estimate;
use crate::serving::ExplainKey;
use crate::slo::Level;
use crate::spec::plan::{Deployment, Plan, Pool, TokenKind};
use crate::units::{Bytes, Flop, Params};

/// Runs every check that needs only the plan and its evaluation.
pub(super) fn all(plan: &Plan, evals: &[PoolEval], fig: Option<&Figures>) -> Vec<Finding> {
    let mut out = Vec::new();
    layout(plan, evals, &mut out);
    gpus(plan, evals, &mut out);
    model(plan, evals, fig, &mut out);
    memory_all(plan, evals, &mut out);
    performance(plan, evals, fig, &mut out);
    bounds(plan, evals, fig, &mut out);
    slo(plan, evals, fig, &mut out);
    if plan.scenario.workload.concurrency.is_none() {
        out.push(finding(
            Severity::Info,
            "assumed_concurrency",
            "workload.concurrency",
            None,
            Some(super::DEFAULT_CONCURRENCY.to_string()),
            format!(
                "the plan states no concurrency or batch size: {} requests in flight per replica assumed",
                super::DEFAULT_CONCURRENCY
            ),
            Derivation::new("default", &[]),
            "state workload.concurrency (or batch_size)",
        ));
    }
    out
}

/// Invalid layouts (with the nearest valid one the figures use instead) and costly ones.
fn layout(plan: &Plan, evals: &[PoolEval], out: &mut Vec<Finding>) {
    for e in evals {
        let (problems, warnings) = e.pool.layout.check(
            &plan.scenario.model,
            &plan.scenario.gpu,
            e.pool.redundant_experts,
        );
        let l = e.pool.layout;
        let ev = Derivation::new(
            "gpus_per_stage = tp·cp·dp = ep·etp·edp; heads divisible by tp; experts by ep; expert width by etp; pp ≤ layers (domain.md §2)",
            &[
                ("written", l.to_string()),
                ("gpus_per_stage", l.gpus_per_stage().to_string()),
                ("ep·etp", (l.ep * l.etp).to_string()),
                ("heads", plan.scenario.model.attention.n_heads().to_string()),
                (
                    "routed_experts",
                    plan.scenario.model
                        .moe
                        .as_ref()
                        .map_or("none".into(), |m| m.n_routed_experts.to_string()),
                ),
                layout_input(e),
            ],
        );
        for p in problems {
            let mut message = format!("invalid layout {l}: {}", p.message);
            match e.reference {
                Some(r) => message.push_str(&format!(
                    "; per-GPU figures below are computed for the nearest valid layout, {r}"
                )),
                None => {
                    message.push_str("; no valid layout nearby: per-GPU figures cannot be checked")
                }
            }
            out.push(finding(
                Severity::Error,
                "invalid_layout",
                format!("{}.{}", e.prefix, p.field),
                Some(format!("{} = {}", p.field, degree(&l, p.field))),
                e.reference.map(|r| format!("{r}")),
                message,
                ev.clone(),
                p.hint.clone(),
            ));
        }
        for w in warnings {
            out.push(finding(
                Severity::Warning,
                "layout_cost",
                e.prefix,
                None,
                None,
                w,
                ev.clone(),
                "keep TP and EP groups inside one node unless the network cost is accepted",
            ));
        }
    }
}

/// The written degree a layout problem names (`pp`, `tp`, ...); 0 for another field.
fn degree(l: &crate::layout::Layout, field: &str) -> u32 {
    match field {
        "pp" => l.pp,
        "tp" => l.tp,
        "cp" => l.cp,
        "dp" => l.dp,
        "ep" => l.ep,
        "etp" => l.etp,
        _ => 0,
    }
}

/// Checks every GPU count the plan states against the GPUs its layout
/// holds, and the layout against the GPUs available.
fn gpus(plan: &Plan, evals: &[PoolEval], out: &mut Vec<Finding>) {
    let count = GpuCount::new(plan, evals);
    let folded = plan.deployment.gpus();
    if let Some(c) = plan.claims.total_gpus {
        let holds = Holds {
            gpus: folded,
            product: count.product,
            replicas: evals.first().map_or(1, |e| e.pool.replicas),
        };
        count.check("claims.total_gpus", c as u64, holds, out);
    }
    if let Deployment::Disaggregated { prefill, decode } = plan.deployment {
        for (key, claims, pool) in [
            ("prefill", &plan.claims.prefill, prefill),
            ("decode", &plan.claims.decode, decode),
        ] {
            if let Some(g) = claims.as_ref().and_then(|c| c.gpus) {
                count.check(
                    &format!("claims.{key}.gpus"),
                    g as u64,
                    Holds::of(&pool),
                    out,
                );
            }
        }
        total_contradicts_pools(plan, out);
    }
    if let Some(avail) = plan.scenario.gpus_available {
        if folded > avail as u64 {
            out.push(finding(
                Severity::Error,
                "exceeds_available_gpus",
                "deployment",
                Some(folded.to_string()),
                Some(avail.to_string()),
                format!("the layout holds {folded} GPUs but hardware.gpus allows {avail}"),
                count.evidence.clone(),
                "fewer replicas or smaller degrees",
            ));
        }
    }
}

/// The GPUs a layout holds, and the figures a wrong count of them is
/// usually made of.
#[derive(Clone, Copy)]
struct Holds {
    /// replicas × pp × tp·cp·dp.
    gpus: u64,
    /// The product of every written degree, replicas included.
    product: u64,
    replicas: u32,
}

impl Holds {
    /// What one pool holds.
    fn of(pool: &Pool) -> Holds {
        Holds {
            gpus: pool.gpus(),
            product: pool.written_product,
            replicas: pool.replicas,
        }
    }
}

/// What every GPU-count check shares: the model's routed experts, the
/// pools, and how GPUs are counted, as evidence.
struct GpuCount<'a> {
    experts: Option<u64>,
    evals: &'a [PoolEval],
    /// The product of every written degree, over all pools.
    product: u64,
    evidence: Derivation,
}

impl<'a> GpuCount<'a> {
    /// The shared figures of a plan's pools.
    fn new(plan: &Plan, evals: &'a [PoolEval]) -> GpuCount<'a> {
        let product: u64 = evals.iter().map(|e| e.pool.written_product).sum();
        let expr: Vec<String> = evals
            .iter()
            .map(|e| {
                let l = e.pool.layout;
                format!(
                    "{} replicas × pp {} × tp {} × cp {} × dp {} = {}",
                    e.pool.replicas,
                    l.pp,
                    l.tp,
                    l.cp,
                    l.dp,
                    e.pool.gpus()
                )
            })
            .collect();
        let evidence = Derivation::new(
            "GPUs = replicas × pp × (tp·cp·dp); ep and etp fold onto the same GPUs (tp·cp·dp = ep·etp·edp), they do not multiply",
            &[
                ("pools", expr.join("; ")),
                ("product_of_every_written_degree", product.to_string()),
            ],
        );
        GpuCount {
            experts: plan.scenario.model.moe.as_ref().map(|m| m.n_routed_experts),
            evals,
            product,
            evidence,
        }
    }

    /// A stated GPU count that is not what the layout holds, named by its
    /// likely mistake.
    fn check(&self, field: &str, claimed: u64, holds: Holds, out: &mut Vec<Finding>) {
        let computed = holds.gpus;
        if claimed == computed {
            return;
        }
        let (code, message) = self.miscount(claimed, holds);
        out.push(finding(
            Severity::Error,
            code,
            field,
            Some(claimed.to_string()),
            Some(computed.to_string()),
            message,
            self.evidence.clone(),
            format!("either state {computed} GPUs, or change the degrees so that replicas × pp × tp·cp·dp gives the GPUs intended (ep must divide tp·cp·dp)"),
        ));
    }

    /// The likely mistake behind a wrong GPU count: one GPU per expert, the
    /// product of every degree (with or without the replicas), or none
    /// known; as a code and a message.
    fn miscount(&self, claimed: u64, holds: Holds) -> (&'static str, String) {
        let Holds {
            gpus: computed,
            product,
            replicas,
        } = holds;
        let experts = self.experts;
        let per_replica = product / replicas.max(1) as u64;
        let one_per_expert =
            experts.is_some_and(|n| claimed == n || claimed == n * replicas as u64);
        if one_per_expert
            && experts.is_some_and(|n| self.evals.iter().any(|e| e.pool.layout.ep as u64 == n))
        {
            (
                "gpus_one_per_expert",
                format!("{claimed} GPUs counts one GPU per expert; experts are placed on the GPUs of a stage (ep divides tp·cp·dp), so the layout holds {computed}"),
            )
        } else if claimed == product && product != computed {
            (
                "gpus_product_of_degrees",
                format!("{claimed} GPUs is the product of every degree; attention and experts run on the same GPUs of a stage, so the layout holds {computed}"),
            )
        } else if claimed == per_replica && replicas > 1 && per_replica != computed {
            (
                "gpus_product_of_degrees",
                format!("{claimed} GPUs is the product of a replica's degrees, with the {replicas} replicas left out; attention and experts run on the same GPUs of a stage, so the layout holds {computed}"),
            )
        } else if one_per_expert {
            (
                "gpus_one_per_expert",
                format!("{claimed} GPUs counts one GPU per expert; experts are placed on the GPUs of a stage (ep divides tp·cp·dp), so the layout holds {computed}"),
            )
        } else {
            (
                "gpus_mismatch",
                format!("the plan says {claimed} GPUs; its layout holds {computed}"),
            )
        }
    }
}

/// A stated total that is not the sum of the stated pools.
fn total_contradicts_pools(plan: &Plan, out: &mut Vec<Finding>) {
    let c = &plan.claims;
    let (Some(t), Some(p), Some(d)) = (
        c.total_gpus,
        c.prefill.as_ref().and_then(|c| c.gpus),
        c.decode.as_ref().and_then(|c| c.gpus),
    ) else {
        return;
    };
    if t != p + d {
        out.push(finding(
            Severity::Warning,
            "claims_contradict",
            "claims.total_gpus",
            Some(t.to_string()),
            Some((p + d).to_string()),
            format!("the plan says {t} GPUs in total but {p} prefill + {d} decode"),
            Derivation::new(
                "total = prefill pool + decode pool",
                &[("prefill", p.to_string()), ("decode", d.to_string())],
            ),
            "make the total the sum of the pools",
        ));
    }
}

/// FLOP per token: linear layers + attention at a context.
fn flop_range(plan: &Plan) -> (f64, f64) {
    let m = &plan.scenario.model;
    let linear = m.linear_flop_per_token().0;
    let w = &plan.scenario.workload;
    (
        linear + m.attention_flop_per_token(w.isl.min).0,
        linear + m.attention_flop_per_token(w.isl.max + w.osl.max).0,
    )
}

/// Checks the model figures: the declared parameter count, and the
/// parameters, FLOP and HBM bytes per token the plan states.
fn model(plan: &Plan, evals: &[PoolEval], fig: Option<&Figures>, out: &mut Vec<Finding>) {
    let report = plan.scenario.model.params();
    let ev = params_evidence(plan, &report);
    if let Some(d) = plan.scenario.model.declared_params {
        declared_params(&report, d, ev.clone(), out);
    }
    if let Some(p) = plan.claims.params_total {
        params_total(plan, &report, p, ev, out);
    }
    if let Some(f) = plan.claims.flops_per_token {
        flops_per_token(plan, &report, f, out);
    }
    if let Some(b) = plan.claims.bytes_read_per_token {
        bytes_read_per_token(plan, evals, fig, &report, b, out);
    }
}

/// How the architecture's parameters are counted, as evidence.
fn params_evidence(plan: &Plan, report: &ParamReport) -> Derivation {
    let m = &plan.scenario.model;
    Derivation::new(
        "sum of every component's parameters from the architecture (moeplan model)",
        &[
            ("layers", m.n_layers().to_string()),
            ("hidden", m.hidden_size.to_string()),
            ("total", params(report.total.0)),
            ("active_per_token", params(report.active.0)),
        ],
    )
}

/// Checks the model's declared parameter count against its architecture.
fn declared_params(report: &ParamReport, declared: f64, ev: Derivation, out: &mut Vec<Finding>) {
    let total = report.total.0;
    compare(
        Claim {
            field: "model.declared_params".into(),
            what: "declared parameters vs the architecture",
            claimed: declared,
            lo: total,
            hi: total,
            fmt: params,
            tol: PARAMS,
            causes: vec![cause(
                report.active.0,
                "declared_params_mismatch",
                "the active (per-token) parameters, not the total",
            )],
            evidence: ev,
            fix: format!(
                "declare {} (or fix the dimensions if the declared size is the intended one)",
                params(total)
            ),
        },
        out,
    );
    if let Some(f) = out.last_mut() {
        if f.field == "model.declared_params" && f.code == "claim_mismatch" {
            f.code = "declared_params_mismatch";
            f.message
                .push_str(": the stated dimensions cannot give the declared size");
        }
    }
}

/// Checks the claimed parameter total against the architecture's.
fn params_total(
    plan: &Plan,
    report: &ParamReport,
    claimed: Params,
    ev: Derivation,
    out: &mut Vec<Finding>,
) {
    let total = report.total.0;
    compare(
        Claim {
            field: "claims.params_total".into(),
            what: "parameter total",
            claimed: claimed.0,
            lo: total,
            hi: total,
            fmt: params,
            tol: PARAMS,
            causes: vec![
                cause(
                    report.active.0,
                    "active_as_total",
                    "the active (per-token) parameters, not the total",
                ),
                cause(
                    plan.scenario.model.declared_params.unwrap_or(0.0),
                    "declared_params_used",
                    "the declared count, which the architecture does not support",
                ),
            ],
            evidence: ev,
            fix: format!("params_total = \"{}\"", params(total)),
        },
        out,
    );
}

/// Checks the claimed FLOP per token against the linear layers and the
/// attention core over the plan's contexts.
fn flops_per_token(plan: &Plan, report: &ParamReport, claimed: Flop, out: &mut Vec<Finding>) {
    let (lo, hi) = flop_range(plan);
    compare(
        Claim {
            field: "claims.flops_per_token".into(),
            what: "FLOP per token",
            claimed: claimed.0,
            lo,
            hi,
            fmt: flop,
            tol: FLOP,
            causes: flop_causes(plan, report, lo, hi),
            evidence: Derivation::new(
                "2 FLOP per active parameter (linear layers, LM head included) + attention core at the context",
                &[
                    ("active_params", params(report.active.0)),
                    ("linear_flop_per_token", flop(plan.scenario.model.linear_flop_per_token().0)),
                    ("context", format!("{} – {}", plan.scenario.workload.isl.min, plan.scenario.workload.isl.max + plan.scenario.workload.osl.max)),
                ],
            ),
            fix: format!("flops_per_token = \"{}\"", flop(lo)),
        },
        out,
    );
}

/// The mistakes that give a wrong FLOP-per-token figure (`lo`, `hi`: the
/// computed range).
fn flop_causes(plan: &Plan, report: &ParamReport, lo: f64, hi: f64) -> Vec<Cause> {
    let m = &plan.scenario.model;
    let total = report.total.0;
    let lm_head = report
        .by_component
        .get(&Component::LmHead)
        .map_or(0.0, |c| c.active.0);
    let per_layer = (m.linear_flop_per_token().0 - 2.0 * lm_head) / m.n_layers().max(1) as f64;
    let mut causes = vec![
        unit_slip(hi * 1e3, "GFLOP and TFLOP (or MFLOP and GFLOP)"),
        unit_slip(lo * 1e-3, "GFLOP and TFLOP (or MFLOP and GFLOP)"),
        cause(
            per_layer,
            "per_layer_as_per_token",
            format!(
                "the FLOP of one layer ({}) used as the FLOP of a token through all {} layers",
                flop(per_layer),
                m.n_layers()
            ),
        ),
    ];
    // Only a model that declares a parameter count can have it misused.
    if let Some(d) = m.declared_params.filter(|d| *d > 0.0) {
        causes.push(cause(
            2.0 * d,
            "declared_params_used",
            format!(
                "2 × the declared {} parameters, which the architecture does not have",
                params(d)
            ),
        ));
        causes.push(cause(2e3 * d, "unit_slip", format!("2 × the declared {} parameters written in TFLOP instead of GFLOP: a factor-1000 unit slip on top of a parameter count the architecture does not support", params(d))));
    }
    causes.push(cause(
        2.0 * total,
        "all_params_active",
        "2 FLOP per stored parameter: an MoE token passes only through its top-k experts",
    ));
    causes.push(cause(
        lo / 2.0,
        "half_flop",
        "one FLOP per parameter instead of two (a multiply-add is 2 FLOP)",
    ));
    causes
}

/// Checks the claimed HBM bytes read per generated token against a decode
/// step's bytes per token produced (a disaggregated decode pool's pure
/// decode step).
fn bytes_read_per_token(
    plan: &Plan,
    evals: &[PoolEval],
    fig: Option<&Figures>,
    report: &ParamReport,
    claimed: Bytes,
    out: &mut Vec<Finding>,
) {
    let Some(e) = decode_bounds(plan, evals, fig) else {
        return;
    };
    let bw = plan.scenario.gpu.memory_bandwidth.0;
    let per_token = bw / e.ceilings.decode_tokens_per_s_per_gpu.0;
    compare(
        Claim {
            field: "claims.bytes_read_per_token".into(),
            what: "HBM bytes read per generated token",
            claimed: claimed.0,
            lo: per_token,
            hi: per_token,
            fmt: bytes,
            tol: BYTES_PER_TOKEN,
            causes: vec![
                unit_slip(per_token * 1e3, "MB and GB"),
                cause(report.weight_bytes.0, "weights_per_token", "the whole model's weights read for every token; a decode step reads them once for the whole batch"),
            ],
            evidence: Derivation::new(
                "HBM bytes of one decode step per GPU / tokens the GPU produces in that step",
                &[
                    ("bytes_per_step", e.ceilings.decode_bytes_per_step_per_gpu.to_string()),
                    ("of_which_kv_cache", e.ceilings.decode_kv_bytes_per_step_per_gpu.to_string()),
                    ("decoding_requests", format!("{:.0}", e.decoding_requests)),
                    ("layout", e.layout.to_string()),
                ],
            ),
            fix: format!("bytes_read_per_token = \"{}\"", bytes(per_token)),
        },
        out,
    );
}

/// How the audit words one service level: what it bounds, how its figure
/// prints (from the level's unit), what the plan claims for it, and the
/// derivation behind the figure.
struct LevelWords {
    what: &'static str,
    fmt: fn(f64) -> String,
    /// Level values are in the level's unit; the words print SI.
    to_si: f64,
    claimed: Option<f64>,
    explain: Option<ExplainKey>,
}

/// How the audit words a service level; None for the levels judged elsewhere (memory, GPUs).
fn level_words(plan: &Plan, level: Level) -> Option<LevelWords> {
    let c = &plan.claims;
    let w = |what, fmt, to_si, claimed, explain| {
        Some(LevelWords {
            what,
            fmt,
            to_si,
            claimed,
            explain,
        })
    };
    match level {
        Level::Ttft => w(
            "TTFT",
            time,
            1e-3,
            c.overall
                .ttft
                .or(c.prefill.as_ref().and_then(|p| p.ttft))
                .map(|v| v.0),
            Some(ExplainKey::Ttft),
        ),
        Level::Tpot => w(
            "TPOT",
            time,
            1e-3,
            c.overall
                .tpot
                .or(c.decode.as_ref().and_then(|p| p.tpot))
                .map(|v| v.0),
            Some(ExplainKey::Tpot),
        ),
        Level::ThroughputPerGpu => w(
            "output throughput per GPU",
            rate,
            1.0,
            match c.throughput_tokens {
                TokenKind::Output => c.overall.throughput_per_gpu.map(|v| v.0),
                TokenKind::Input => None,
            },
            Some(ExplainKey::OutputTokensPerSPerGpu),
        ),
        Level::ThroughputPerUser => w("output throughput per user", rate, 1.0, None, None),
        Level::LoadImbalance => w(
            "expert load imbalance",
            pct,
            1.0,
            c.load_imbalance,
            Some(ExplainKey::LoadImbalance),
        ),
        // Memory is judged per pool below; the GPU count by `gpus`.
        Level::Memory | Level::Gpus => None,
    }
}

/// Every service level of `[slo]` judged once, by `slo::evaluate` on the
/// deployment's figures (the planner's rule), against the plan's claims.
fn slo(plan: &Plan, evals: &[PoolEval], fig: Option<&Figures>, out: &mut Vec<Finding>) {
    let c = &plan.claims;
    let mut missed: Vec<String> = Vec::new();
    if let Some(f) = fig {
        let judged = f.judged();
        let violations = crate::slo::evaluate(&plan.scenario.slo, &judged, None);
        for level in Level::ALL {
            let (Some(words), Some(limit)) = (
                level_words(plan, level),
                crate::slo::limit(&plan.scenario.slo, level, None),
            ) else {
                continue;
            };
            let computed = crate::slo::value(&judged, level) * words.to_si;
            let limit = limit * words.to_si;
            let upper = level.bound() == crate::slo::Bound::AtMost;
            let fails = violations.iter().any(|v| v.level == level);
            let claimed_fails = words
                .claimed
                .map(|v| if upper { v > limit } else { v < limit });
            let req = format!("{} {}", if upper { "≤" } else { "≥" }, (words.fmt)(limit));
            let ev = explained(
                words.explain.and_then(|k| f.estimate.explain(k)),
                "estimate",
            );
            let fmt = words.fmt;
            let field = level.key();
            if fails {
                missed.push(format!("{field} {req}"));
                // A hard level the deployment misses is an error even when
                // the plan admits it: the plan does not do what it must.
                let admitted = claimed_fails == Some(true) || c.meets_slo == Some(false);
                out.push(finding(
                    Severity::Error,
                    "slo_missed",
                    field,
                    words.claimed.map(fmt),
                    Some(fmt(computed)),
                    format!(
                        "{} must be {req}; moeplan computes {}{}",
                        words.what,
                        fmt(computed),
                        match (words.claimed, admitted) {
                            (_, true) => " (the plan admits it)".to_string(),
                            (Some(v), false) =>
                                format!(", while the plan claims {} and a pass", fmt(v)),
                            (None, false) =>
                                ", and the plan presents its layout as meeting it".to_string(),
                        }
                    ),
                    ev,
                    "see the corrected plan for a layout that meets it, or relax the requirement",
                ));
            } else if claimed_fails == Some(true) {
                out.push(finding(
                    Severity::Info,
                    "slo_met",
                    field,
                    words.claimed.map(fmt),
                    Some(fmt(computed)),
                    format!("the plan's figure misses {} {req}, but moeplan computes {}: the layout meets it", words.what, fmt(computed)),
                    ev,
                    "update the claimed figure",
                ));
            }
        }
    }
    memory_limit(plan, evals, &mut missed, out);
    meets_slo(plan, &missed, out);
}

/// A pool whose fullest GPU exceeds the memory limit at the longest prompt.
fn memory_limit(plan: &Plan, evals: &[PoolEval], missed: &mut Vec<String>, out: &mut Vec<Finding>) {
    let c = &plan.claims;
    for e in evals {
        let Some(w) = &e.worst else { continue };
        if !w.fits {
            let m = &w.memory;
            missed.push(format!("{} memory", e.prefix));
            out.push(finding(
                Severity::Error,
                "memory_exceeds_limit",
                e.prefix,
                c.overall.memory_per_gpu.map(|b| b.to_string()),
                Some(m.total_bytes.to_string()),
                format!(
                    "at the longest prompt the fullest GPU needs {} of the {} allowed (of {}: {}); at most {} requests fit",
                    m.total_bytes,
                    m.usable_bytes,
                    m.capacity_bytes,
                    plan.scenario.engine_config().describe_memory(),
                    w.max_concurrency
                ),
                w.explain.get(&ExplainKey::Memory).cloned().map(|d| with_layout(d, e)).unwrap_or_else(|| Derivation::new("estimate", &[])),
                "shard further (pp, tp, ep), lower the batch, or use a GPU with more memory",
            ));
        }
    }
}

/// The plan's `meets_slo` against what the levels found.
fn meets_slo(plan: &Plan, missed: &[String], out: &mut Vec<Finding>) {
    match plan.claims.meets_slo {
        Some(true) if !missed.is_empty() => out.push(finding(
            Severity::Error,
            "slo_claimed_pass",
            "claims.meets_slo",
            Some("true".into()),
            Some("false".into()),
            format!(
                "the plan says it meets its requirements; it misses {}",
                missed.join(", ")
            ),
            Derivation::new(
                "every service level of [slo] against the recomputed figures",
                &[("missed", missed.join("; "))],
            ),
            "meets_slo = false, or adopt the corrected plan",
        )),
        Some(false) if missed.is_empty() => out.push(finding(
            Severity::Info,
            "slo_met",
            "claims.meets_slo",
            Some("false".into()),
            Some("true".into()),
            "the plan says it misses its requirements, but the recomputed figures meet every one"
                .into(),
            Derivation::new(
                "every service level of [slo] against the recomputed figures",
                &[],
            ),
            "meets_slo = true",
        )),
        _ => {}
    }
}

/// Idle and surplus GPUs: a prefill pool its decode pool cannot absorb, a
/// replica far larger than the smallest layout meeting the requirements,
/// more replicas than the request rate needs.
pub(super) fn waste(
    plan: &Plan,
    evals: &[PoolEval],
    fig: Option<&Figures>,
    corrected: &Corrected,
    out: &mut Vec<Finding>,
) {
    if let (Deployment::Disaggregated { prefill, decode }, Some(e)) =
        (plan.deployment, fig.and_then(disaggregated))
    {
        pool_rates_mismatch(plan, prefill, decode, e, out);
    }
    if let (Some(min), Deployment::Aggregated { pool }) =
        (corrected.min_gpus_per_replica, plan.deployment)
    {
        oversized_replica(evals, pool, min, out);
    }
    if let (Some(rr), Some((_, per_gpu, _))) =
        (plan.scenario.workload.request_rate, overall_throughput(fig))
    {
        replicas_for_request_rate(plan, rr, per_gpu, out);
    }
}

/// A disaggregated prefill pool far faster than the deployment completes
/// prompts (idle prefill GPUs), or one that sets the pace (idle decode GPUs).
fn pool_rates_mismatch(
    plan: &Plan,
    prefill: Pool,
    decode: Pool,
    e: &DisaggEstimate,
    out: &mut Vec<Finding>,
) {
    let isl = plan.scenario.workload.isl.mean().max(1) as f64;
    let capacity = prefill_capacity(e);
    let demand = e.requests_per_s * isl;
    let ev = Derivation::new(
        "prefill capacity (prompts per step of every prefill rank × isl / prefill step) vs the prompt tokens/s the deployment completes (its requests/s × isl), from the disaggregated estimate",
        &[
            ("prefill_gpus", prefill.gpus().to_string()),
            ("prefill_capacity", format!("{capacity:.0} tokens/s")),
            ("decode_gpus", decode.gpus().to_string()),
            ("completed_prompt_tokens", format!("{demand:.0} tokens/s")),
            ("regime", e.regime.to_string()),
        ],
    );
    if capacity > 1.5 * demand {
        let idle = prefill.gpus() as f64 * (1.0 - demand / capacity);
        out.push(finding(
            Severity::Warning,
            "idle_gpus",
            "deployment.prefill.replicas",
            Some(format!("{} prefill GPUs", prefill.gpus())),
            Some(format!("{:.0} needed", (prefill.gpus() as f64 - idle).ceil())),
            format!("the prefill pool can prefill {capacity:.0} prompt tokens/s but the deployment completes only {demand:.0}: about {idle:.0} of its {} GPUs sit idle", prefill.gpus()),
            ev,
            "shrink the prefill pool (or grow the decode pool) until the rates match",
        ));
    } else if e.regime == crate::serving::Regime::Prefill {
        out.push(finding(
            Severity::Warning,
            "idle_gpus",
            "deployment.decode.replicas",
            Some(format!("{} decode GPUs", decode.gpus())),
            None,
            format!("the prefill pool sets the pace ({capacity:.0} prompt tokens/s at most): requests queue for it and decode GPUs wait for prompts"),
            ev,
            "grow the prefill pool or shrink the decode pool",
        ));
    }
}

/// A valid replica twice or more the size of the smallest one (`min` GPUs)
/// that meets every requirement of the plan.
fn oversized_replica(evals: &[PoolEval], pool: Pool, min: u32, out: &mut Vec<Finding>) {
    let have = pool.layout.gpus();
    if have >= 2 * min && evals.first().is_some_and(|e| e.valid) {
        out.push(finding(
            Severity::Warning,
            "overprovisioned",
            "deployment",
            Some(format!("{have} GPUs per replica")),
            Some(format!("{min} GPUs per replica")),
            format!("a replica of {min} GPUs already meets every requirement of the plan; this one holds {have}"),
            Derivation::new("smallest valid layout (local search) meeting memory, TTFT, TPOT, throughput and imbalance requirements", &[("smallest", min.to_string())]),
            "use the smaller replica (see the corrected plan) and add replicas for load",
        ));
    }
}

/// Too few GPUs for the plan's request rate, or more than twice enough
/// (`per_gpu`: the deployment's output tokens/s per GPU).
fn replicas_for_request_rate(plan: &Plan, rr: f64, per_gpu: f64, out: &mut Vec<Finding>) {
    let osl = plan.scenario.workload.osl.mean().max(1) as f64;
    let need = rr * osl;
    let have = per_gpu * plan.deployment.gpus() as f64;
    let ev = Derivation::new(
        "requests/s × osl output tokens vs the deployment's output tokens/s",
        &[
            ("request_rate", format!("{rr}")),
            ("osl", format!("{osl:.0}")),
            ("deployment_output_tokens_per_s", format!("{have:.0}")),
        ],
    );
    if have < need {
        out.push(finding(
            Severity::Error,
            "too_few_gpus",
            "workload.request_rate",
            Some(format!("{rr} requests/s")),
            Some(format!("{:.2} requests/s", have / osl)),
            format!("the deployment produces {have:.0} output tokens/s; {rr} requests/s of {osl:.0} tokens need {need:.0}"),
            ev,
            "add replicas",
        ));
    } else if have > 2.0 * need {
        out.push(finding(
            Severity::Warning,
            "overprovisioned",
            "deployment.replicas",
            Some(format!("{have:.0} tokens/s")),
            Some(format!("{need:.0} tokens/s needed")),
            format!(
                "the deployment produces {:.1}× the output the request rate needs",
                have / need
            ),
            ev,
            "fewer replicas",
        ));
    }
}

/// Headline figures for reports.
pub(super) fn headline(plan: &Plan, evals: &[PoolEval], fig: Option<&Figures>) -> Computed {
    Computed {
        gpus: plan.deployment.gpus(),
        pools: evals
            .iter()
            .map(|e| PoolFigures {
                prefix: e.prefix.to_string(),
                written: e.pool.layout,
                replicas: e.pool.replicas,
                valid: e.valid,
                reference: e.reference,
                gpus: e.pool.gpus(),
                memory_per_gpu: e.worst.as_ref().map(|w: &Estimate| w.memory.total_bytes),
                fits: e.worst.as_ref().map(|w| w.fits),
            })
            .collect(),
        ttft: fig.map(|f| f.ttft),
        tpot: fig.map(|f| f.tpot),
        throughput_per_gpu: fig.map(|f| f.output_tokens_per_s_per_gpu),
    }
}

//! `moeplan audit`: check a deployment plan someone wrote.
//!
//! The audit recomputes everything a plan states or implies with the same
//! code `moeplan estimate` uses (`layout`, `memory`, `serving`), and turns
//! every disagreement into a [`Finding`]: a severity, a stable code, the
//! dotted key of the plan file it concerns, the claimed and computed values,
//! the evidence (formula and inputs) and a fix. Then it proposes a corrected
//! plan (`fix`).
//!
//! Where things live:
//! - `evaluate` (here): the plan's pools estimated at the typical (mean) and
//!   worst (longest) prompt; an invalid layout is read as its nearest valid
//!   layout so per-GPU claims can still be checked, and the findings say so.
//! - `checks`: runs every family of checks (`checks::all`, then
//!   `checks::waste` once the corrected plan is known) and holds layout and
//!   GPU accounting, model figures, service levels and waste. A new check
//!   is a function there or in its family's module, called from
//!   `checks::all`, with a new stable code.
//! - `memory`: the per-GPU memory claims of each pool (training state,
//!   weights, KV cache, activations, total, utilisation).
//! - `performance`: throughput per GPU and its physical ceilings, TTFT and
//!   TPOT, communication share, load imbalance, GPU utilisation, and the
//!   throughput bounds a plan derives itself. A disaggregated plan's pools
//!   are read from its disaggregated estimate (each pool's own pure step),
//!   never as aggregated replicas that would charge the decode pool with
//!   prompts.
//! - `claim`: how a claimed figure is compared with the computed one
//!   (tolerances, likely causes of a mismatch) and turned into a finding.
//! - `fix`: the corrected plan (nearest valid layout meeting the plan's own
//!   requirements, the planner's recommendation, or a best effort) and its
//!   rendering back into the plan's file format; `fix_disagg` that of a
//!   disaggregated plan (both pools kept, their workers rate-matched).
//!
//! Tolerances depend on what a claim can know: weights are exact, memory
//! depends on the context the author assumed, activations on engine
//! settings, throughput and latency on a cost model with its own error.

mod checks;
mod claim;
pub mod fix;
mod fix_disagg;
mod memory;
mod performance;

use crate::figures::{self, Figures, WorstCase};
use crate::layout::Layout;
use crate::replica::PoolRole;
use crate::report::Derivation;
use crate::serving::{estimate, Detail, Estimate, EstimateInput, Workload};
use crate::spec::plan::{Deployment, Plan, Pool};
use crate::units::{Seconds, Tokens, TokensPerSecond};
use serde::Serialize;

pub use claim::error_band;
pub use fix::{Corrected, CorrectionSource, Planner};
pub(crate) use fix_disagg::{CorrectedPool, CorrectedPools};

/// How serious a finding is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The plan is wrong: a figure off by a factor, an impossible layout, a requirement missed.
    Error,
    /// Doubtful or wasteful, but not wrong by itself.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One result of the audit.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Finding {
    /// How serious.
    pub severity: Severity,
    /// Stable code (`gpus_product_of_degrees`, `claim_off`, ...).
    pub code: &'static str,
    /// The dotted key of the plan file (`claims.memory_per_gpu`, `deployment.ep`;
    /// `deployment` for the whole layout).
    pub field: String,
    /// What the plan says, with its unit.
    pub claimed: Option<String>,
    /// What moeplan computes, with its unit.
    pub computed: Option<String>,
    /// What is wrong, for a reviewer.
    pub message: String,
    /// Formula and inputs behind `computed`.
    pub evidence: Derivation,
    /// What to change.
    pub fix: String,
}

/// The recomputed figures of one pool of the plan.
#[derive(Clone, Debug)]
pub struct PoolEval {
    /// Key prefix in the plan file (`deployment`, `deployment.prefill`, `deployment.decode`).
    pub prefix: &'static str,
    /// What the pool does.
    pub role: PoolRole,
    /// The pool as written.
    pub pool: Pool,
    /// Whether the written layout is valid.
    pub valid: bool,
    /// The layout the figures were computed for: the written one when
    /// valid, else its nearest valid layout (None when there is none).
    pub reference: Option<Layout>,
    /// Estimate at the mean prompt length (throughput).
    pub typical: Option<Estimate>,
    /// Estimate at the longest prompt length (memory, TTFT, TPOT).
    pub worst: Option<Estimate>,
}

/// Headline figures of the plan as moeplan computes them.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Computed {
    /// GPUs the written layout holds (replicas × pp × tp × cp × dp, summed over pools).
    pub gpus: u64,
    /// Per pool: prefix, layout used, GPUs.
    pub pools: Vec<PoolFigures>,
    /// TTFT at the longest prompt.
    pub ttft: Option<Seconds>,
    /// TPOT at the longest prompt.
    pub tpot: Option<Seconds>,
    /// Output tokens/s per GPU of the whole deployment at the mean prompt.
    pub throughput_per_gpu: Option<TokensPerSecond>,
}

/// Figures of one pool.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PoolFigures {
    /// Key prefix.
    pub prefix: String,
    /// The layout as written.
    pub written: Layout,
    /// Replicas.
    pub replicas: u32,
    /// Whether the written layout is valid.
    pub valid: bool,
    /// The layout the figures were computed for.
    pub reference: Option<Layout>,
    /// GPUs of the pool as written.
    pub gpus: u64,
    /// Memory of the fullest GPU at the longest prompt.
    pub memory_per_gpu: Option<crate::units::Bytes>,
    /// Whether it fits.
    pub fits: Option<bool>,
}

/// Whether a plan passes its audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No error finding.
    Pass,
    /// At least one error finding.
    Fail,
}

impl Verdict {
    /// `pass` or `fail`, as the JSON writes it.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }

    /// `PASS` or `FAIL`, as the text report heads it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
        }
    }
}

/// Counts and verdict.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Summary {
    /// The plan's name.
    pub plan: String,
    /// Model name.
    pub model: String,
    /// GPU id.
    pub gpu: String,
    /// Error findings.
    pub errors: usize,
    /// Warning findings.
    pub warnings: usize,
    /// Info findings.
    pub infos: usize,
    /// `pass` (no error) or `fail`.
    pub verdict: Verdict,
    /// GPUs the plan claims, if it does.
    pub gpus_claimed: Option<u32>,
    /// GPUs the written layout holds.
    pub gpus_computed: u64,
}

/// The result of auditing one plan.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Audit {
    /// Findings, sorted by severity, then field, then code.
    pub findings: Vec<Finding>,
    /// Counts and verdict.
    pub summary: Summary,
    /// The plan's figures as recomputed.
    pub computed: Computed,
    /// The corrected plan.
    pub corrected: Option<Corrected>,
    /// The user profile in use (`--profile`), and whether it applies to
    /// the plan's GPU, engine and mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::ProfileUse>,
}

impl Audit {
    /// True when some finding is an error.
    pub fn has_errors(&self) -> bool {
        self.summary.errors > 0
    }
}

/// Options of an audit.
#[derive(Default)]
pub struct AuditOptions<'a> {
    /// The planner to ask for a layout when the plan's own is hopeless
    /// (`search`); without one, a local search over aggregated layouts.
    pub planner: Option<&'a dyn Planner>,
}

/// Requests in flight per replica when the plan does not say.
pub(crate) const DEFAULT_CONCURRENCY: u64 = 64;

/// The estimate input for a layout of the plan.
pub(crate) fn input<'a>(
    plan: &'a Plan,
    layout: Layout,
    workload: Workload,
    redundant_experts: u32,
    phase: PoolRole,
) -> EstimateInput<'a> {
    EstimateInput {
        model: &plan.scenario.model,
        gpu: &plan.scenario.gpu,
        calibration: plan.scenario.calibration(plan.scenario.serving_engine()),
        layout,
        workload,
        engine: plan.scenario.engine_config(),
        redundant_experts,
        routing_skew: plan.scenario.routing_skew,
        overlap: overlap_of(plan, phase),
    }
}

/// The overlap the plan states for the pool that runs `phase`.
pub(crate) fn overlap_of(plan: &Plan, phase: PoolRole) -> crate::ops::Overlap {
    match (plan.deployment, phase) {
        (Deployment::Aggregated { pool }, _) => pool.overlap,
        (Deployment::Disaggregated { prefill, .. }, PoolRole::Prefill) => prefill.overlap,
        (Deployment::Disaggregated { decode, .. }, PoolRole::Decode | PoolRole::Aggregated) => {
            decode.overlap
        }
    }
}

pub(crate) fn concurrency(plan: &Plan) -> u64 {
    plan.scenario
        .workload
        .concurrency
        .unwrap_or(DEFAULT_CONCURRENCY)
}

/// Estimates a layout for a phase at the typical and the worst prompt.
pub(crate) fn evaluate_layout(
    plan: &Plan,
    layout: Layout,
    phase: PoolRole,
    redundant_experts: u32,
) -> (Option<Estimate>, Option<Estimate>) {
    let w = &plan.scenario.workload;
    let c = match (phase, plan.deployment) {
        // A disaggregated decode worker holds its share of the requests.
        (PoolRole::Decode, Deployment::Disaggregated { decode, .. }) => {
            concurrency(plan).div_ceil(u64::from(decode.replicas.max(1)))
        }
        _ => concurrency(plan),
    };
    let (osl, c_worst) = match phase {
        PoolRole::Prefill => (1, 1),
        _ => (w.osl.mean().max(1), c),
    };
    let typical = estimate(&input(
        plan,
        layout,
        Workload {
            isl: Tokens::new(w.isl.mean().max(1)),
            osl: Tokens::new(osl),
            concurrency: c,
            cache_hit_rate: w.cache_hit_rate,
            client: w.client,
        },
        redundant_experts,
        phase,
    ))
    .ok();
    let worst = if w.isl.is_fixed() && phase != PoolRole::Prefill {
        typical.clone()
    } else {
        estimate(&input(
            plan,
            layout,
            Workload {
                isl: Tokens::new(w.isl.max.max(1)),
                osl: Tokens::new(osl),
                concurrency: c_worst,
                cache_hit_rate: w.cache_hit_rate,
                client: w.client,
            },
            redundant_experts,
            phase,
        ))
        .ok()
    };
    (typical, worst)
}

/// The pool that decodes (aggregated: the only one).
fn decode_eval(evals: &[PoolEval]) -> Option<&PoolEval> {
    evals
        .iter()
        .find(|e| e.role != PoolRole::Prefill)
        .or(evals.first())
}

/// The pool that prefills (aggregated: the only one).
fn prefill_eval(evals: &[PoolEval]) -> Option<&PoolEval> {
    evals
        .iter()
        .find(|e| e.role == PoolRole::Prefill)
        .or(evals.first())
}

/// Estimates every pool of the plan.
pub fn evaluate(plan: &Plan) -> Vec<PoolEval> {
    let roles = match plan.deployment {
        Deployment::Aggregated { .. } => vec![PoolRole::Aggregated],
        Deployment::Disaggregated { .. } => vec![PoolRole::Prefill, PoolRole::Decode],
    };
    plan.deployment
        .pools()
        .into_iter()
        .zip(roles)
        .map(|((prefix, pool), phase)| {
            let (problems, _) = pool.layout.check(
                &plan.scenario.model,
                &plan.scenario.gpu,
                pool.redundant_experts,
            );
            let valid = problems.is_empty();
            let reference = if valid {
                Some(pool.layout)
            } else {
                fix::nearest_valid(plan, &pool)
            };
            let (typical, worst) = match reference {
                Some(l) => evaluate_layout(plan, l, phase, pool.redundant_experts),
                None => (None, None),
            };
            PoolEval {
                prefix,
                role: phase,
                pool,
                valid,
                reference,
                typical,
                worst,
            }
        })
        .collect()
}

/// The plan with each pool at its reference layout (the written one when
/// valid, else its nearest valid one); None when a pool has none.
fn reference_plan(plan: &Plan, evals: &[PoolEval]) -> Option<Plan> {
    let at = |role: PoolRole, p: Pool| {
        let e = evals.iter().find(|e| e.role == role)?;
        Some(Pool {
            layout: e.reference?,
            ..p
        })
    };
    let deployment = match plan.deployment {
        Deployment::Aggregated { pool } => Deployment::Aggregated {
            pool: at(PoolRole::Aggregated, pool)?,
        },
        Deployment::Disaggregated { prefill, decode } => Deployment::Disaggregated {
            prefill: at(PoolRole::Prefill, prefill)?,
            decode: at(PoolRole::Decode, decode)?,
        },
    };
    Some(Plan {
        deployment,
        ..plan.clone()
    })
}

/// The deployment's figures, as the planner computes them
/// (`figures::evaluate`), at the reference layouts on the plan's engine: the
/// headline figures and every service-level verdict of the audit come from
/// here.
pub fn figures(plan: &Plan, evals: &[PoolEval]) -> Option<Figures> {
    let reference = reference_plan(plan, evals)?;
    let w = &plan.scenario.workload;
    let replicas = match plan.deployment {
        Deployment::Aggregated { pool } => pool.replicas as u64,
        Deployment::Disaggregated { .. } => 1,
    };
    figures::evaluate(
        &crate::replica::Deployment::from_plan(&reference, plan.scenario.engine_config()),
        WorstCase {
            isl: w.isl.max,
            osl: w.osl.max,
        },
        replicas,
        Detail::Full,
    )
    .ok()
}

/// Audits a plan.
pub fn audit(plan: &Plan, options: &AuditOptions) -> Audit {
    let evals = evaluate(plan);
    let fig = figures(plan, &evals);
    let mut findings = checks::all(plan, &evals, fig.as_ref());
    let corrected = fix::correct(plan, &evals, options);
    if let Some(c) = &corrected {
        checks::waste(plan, &evals, fig.as_ref(), c, &mut findings);
    }
    findings.sort_by(|a, b| {
        (a.severity, &a.field, a.code, &a.message).cmp(&(b.severity, &b.field, b.code, &b.message))
    });
    findings.dedup();
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let errors = count(Severity::Error);
    let computed = checks::headline(plan, &evals, fig.as_ref());
    Audit {
        summary: Summary {
            plan: plan.scenario.name.clone(),
            model: plan.scenario.model.name.clone(),
            gpu: plan.scenario.gpu.id.clone(),
            errors,
            warnings: count(Severity::Warning),
            infos: count(Severity::Info),
            verdict: if errors == 0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            gpus_claimed: plan.claims.total_gpus,
            gpus_computed: plan.deployment.gpus(),
        },
        findings,
        computed,
        corrected,
        profile: profile_use(plan),
    }
}

/// How the user profile applies to the plan's stack.
fn profile_use(plan: &Plan) -> Option<crate::profile::ProfileUse> {
    let mode = match plan.deployment {
        crate::spec::plan::Deployment::Aggregated { .. } => crate::profile::ServingMode::Aggregated,
        crate::spec::plan::Deployment::Disaggregated { .. } => {
            crate::profile::ServingMode::Disaggregated
        }
    };
    crate::profile::user_profile_use(&plan.scenario.gpu, plan.scenario.serving_engine(), mode)
}

//! The JSON shape of each command's `--json` output, one type each.
//!
//! The CLI serializes these and nothing else, and `schemas/output/` holds
//! their JSON Schemas (`moeplan schema output-<command>`), kept current by
//! `tests/library/schemas.rs`; the CLI's tests check real outputs against them.
//! Keys are written in sorted order at every level (`to_sorted_value`), so
//! the output does not depend on field order.

use crate::accuracy::Summary as AccuracySummary;
use crate::audit::Audit;
use crate::calibrate::{RunFit, Validation};
use crate::dag::check::{Diagnostic, PhaseReport, Report};
use crate::dag::{Dag, Device, Granularity, Group, Node, PhaseInfo, StageInfo};
use crate::layout::Layout;
use crate::profile::UserProfile;
use crate::report::ModelReport;
use crate::search::{Binding, Candidate, PlanResult, Rejections};
use crate::serving::disagg::DisaggEstimateJson;
use crate::serving::EstimateJson;
use crate::units::{Bytes, Fraction};
use schemars::JsonSchema;
use serde::Serialize;

/// `moeplan estimate --json`.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EstimateOutput<'a> {
    /// One aggregated replica.
    Aggregated(EstimateJson<'a>),
    /// Prefill and decode pools.
    Disaggregated(DisaggOutput<'a>),
}

/// A disaggregated estimate with what was assumed to answer it.
#[derive(Serialize, JsonSchema)]
pub struct DisaggOutput<'a> {
    /// The estimate.
    #[serde(flatten)]
    pub estimate: DisaggEstimateJson<'a>,
    /// What the input did not say and was assumed (worker counts).
    pub assumed: &'a [String],
}

/// The scenario a plan searched, as `moeplan plan --json` echoes it.
#[derive(Serialize, JsonSchema)]
pub struct ScenarioEcho<'a> {
    /// Scenario name.
    pub name: &'a str,
    /// Model name.
    pub model: &'a str,
    /// GPU id.
    pub gpu: &'a str,
    /// GPUs per node.
    pub gpus_per_node: u32,
    /// The GPU budget, if the scenario states one.
    pub gpus_available: Option<u32>,
    /// The workload.
    pub workload: &'a crate::spec::scenario::WorkloadSpec,
    /// The service levels.
    pub slo: &'a crate::spec::scenario::Slo,
    /// Flat MFU, when the scenario overrides the calibration.
    pub mfu: Option<Fraction>,
    /// Flat bandwidth utilisation, when the scenario overrides the calibration.
    pub bandwidth_utilization: Option<Fraction>,
    /// What the scenario assumed.
    pub assumptions: &'a [String],
}

/// `moeplan plan --json`.
#[derive(Serialize, JsonSchema)]
pub struct PlanOutput<'a> {
    /// The scenario searched.
    pub scenario: ScenarioEcho<'a>,
    /// The recommendation.
    pub recommended: &'a Option<Candidate>,
    /// Why it won.
    pub rationale: &'a [String],
    /// Ranked candidates.
    pub candidates: &'a [Candidate],
    /// The Pareto front.
    pub pareto: &'a [Candidate],
    /// Rejection counts.
    pub rejected: &'a Rejections,
    /// The binding constraint when nothing meets every level.
    pub binding: &'a Option<Binding>,
    /// The GPU budget searched.
    pub gpu_budget: u32,
    /// Percentile levels at the request rate, simulated (when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentiles: Option<&'a crate::search::percentiles::PercentileReport>,
}

impl<'a> PlanOutput<'a> {
    /// The output of a search of `scenario`.
    pub fn new(scenario: ScenarioEcho<'a>, r: &'a PlanResult) -> Self {
        PlanOutput {
            scenario,
            recommended: &r.recommended,
            rationale: &r.rationale,
            candidates: &r.candidates,
            pareto: &r.pareto,
            rejected: &r.rejected,
            binding: &r.binding,
            gpu_budget: r.gpu_budget,
            percentiles: None,
        }
    }
}

/// `moeplan audit --json`.
pub(crate) type AuditOutput = Audit;

/// `moeplan model --json`.
pub(crate) type ModelOutput = ModelReport;

/// `moeplan dag --format json` (schema `moeplan-dag/1`).
#[derive(Serialize, JsonSchema)]
pub struct DagOutput<'a> {
    /// `moeplan-dag/1`.
    pub schema: &'static str,
    /// Model name.
    pub model: &'a str,
    /// GPU id.
    pub gpu: &'a str,
    /// Layout of the replica.
    pub layout: &'a Layout,
    /// GPUs per node.
    pub gpus_per_node: u32,
    /// Level of detail.
    pub granularity: Granularity,
    /// Whether identical ranks were kept apart.
    pub expanded: bool,
    /// How GPU ids map to ranks.
    pub rank_order: &'static str,
    /// Load imbalance applied to the expert GEMMs.
    pub load_imbalance: f64,
    /// Routed experts per MoE layer.
    pub(crate) n_experts: u32,
    /// Expert slots per MoE layer.
    pub n_slots: u32,
    /// Stages.
    pub stages: &'a [StageInfo],
    /// Phases drawn, with their checked figures.
    pub phases: Vec<DagPhase<'a>>,
    /// GPUs.
    pub devices: &'a [Device],
    /// Communication groups.
    pub groups: &'a [Group],
    /// Nodes.
    pub nodes: &'a [Node],
    /// Edges, by node id.
    pub edges: Vec<DagEdge<'a>>,
    /// The graph's check.
    pub check: DagCheck<'a>,
    /// The user profile in use (`--profile`): its serving layer sets each
    /// phase's `engine_step_s`, when it applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'a crate::profile::ProfileUse>,
}

/// One phase of the graph with its checked figures.
#[derive(Serialize, JsonSchema)]
pub struct DagPhase<'a> {
    /// The phase as the cost model sees it.
    #[serde(flatten)]
    pub info: &'a PhaseInfo,
    /// Its figures from the check.
    #[serde(flatten)]
    pub report: Option<&'a PhaseReport>,
}

/// A data dependency between two nodes.
#[derive(Serialize, JsonSchema)]
pub struct DagEdge<'a> {
    /// Producing node id.
    pub from: &'a str,
    /// Consuming node id.
    pub to: &'a str,
    /// Bytes handed over, per GPU.
    pub bytes: Bytes,
}

/// The outcome of the graph's check.
#[derive(Serialize, JsonSchema)]
pub struct DagCheck<'a> {
    /// No errors.
    pub ok: bool,
    /// Errors.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
    /// Every diagnostic.
    pub diagnostics: &'a [Diagnostic],
}

impl<'a> DagOutput<'a> {
    /// The JSON form of a graph and its check.
    pub fn new(dag: &'a Dag, report: &'a Report) -> Self {
        let phases = dag
            .phases
            .iter()
            .map(|p| DagPhase {
                info: p,
                report: report.phases.iter().find(|r| r.phase == p.phase),
            })
            .collect();
        let edges = dag
            .edges
            .iter()
            .map(|e| DagEdge {
                from: &dag.nodes[e.from].id,
                to: &dag.nodes[e.to].id,
                bytes: e.bytes,
            })
            .collect();
        DagOutput {
            schema: "moeplan-dag/1",
            model: &dag.model,
            gpu: &dag.gpu,
            layout: &dag.layout,
            gpus_per_node: dag.gpus_per_node,
            granularity: dag.granularity,
            expanded: dag.expanded,
            rank_order: crate::dag::export::RANK_ORDER,
            load_imbalance: dag.load_imbalance,
            n_experts: dag.n_experts,
            n_slots: dag.n_slots,
            stages: &dag.stages,
            phases,
            devices: &dag.devices,
            groups: &dag.groups,
            nodes: &dag.nodes,
            edges,
            check: DagCheck {
                ok: report.ok(),
                errors: report.errors(),
                warnings: report.warnings(),
                diagnostics: &report.diagnostics,
            },
            profile: dag.profile.as_ref(),
        }
    }
}

/// `moeplan catalog --json`.
#[derive(Serialize, JsonSchema)]
pub struct CatalogOutput<'a> {
    /// Catalog models.
    pub models: Vec<CatalogModel>,
    /// Catalog GPUs.
    pub gpus: Vec<CatalogGpu<'a>>,
}

/// One catalog model.
#[derive(Serialize, JsonSchema)]
pub struct CatalogModel {
    /// Catalog id.
    pub id: String,
    /// The Hugging Face id of its checkpoint (also accepted as `--model`).
    pub hf_id: Option<&'static str>,
    /// Architecture class.
    pub architecture: String,
    /// Parameters.
    pub params_total: u64,
    /// Parameters active per token.
    pub params_active: u64,
    /// Bytes of weights.
    #[serde(serialize_with = "crate::units::json::count")]
    pub weight_bytes: f64,
}

/// One catalog GPU.
#[derive(Serialize, JsonSchema)]
pub struct CatalogGpu<'a> {
    /// Catalog id.
    pub id: String,
    /// Marketing name.
    pub name: String,
    /// HBM bytes.
    pub memory_bytes: u64,
    /// HBM bytes/s.
    pub memory_bandwidth: u64,
    /// Dense peak FLOP/s by precision.
    pub peak_flops:
        &'a std::collections::BTreeMap<crate::dtype::Precision, crate::units::FlopPerSecond>,
    /// GPUs per node.
    pub gpus_per_node: u32,
    /// NVLink bytes/s per GPU.
    pub nvlink_bandwidth: u64,
    /// Network bytes/s per GPU.
    pub network_bandwidth: u64,
}

/// `moeplan calibrate --json`.
#[derive(Serialize, JsonSchema)]
pub struct CalibrateOutput<'a> {
    /// The fitted profile (absent with `--validate` alone).
    pub profile: Option<&'a UserProfile>,
    /// The held-out check of each stack (`--validate`).
    pub validation: Option<&'a [Validation]>,
    /// Each run before and after (`--explain`).
    pub runs: Option<&'a [RunFit]>,
}

/// `moeplan accuracy --json`.
#[derive(Serialize, JsonSchema)]
pub struct AccuracyOutput<'a> {
    /// Errors by group, in sample.
    pub summaries: &'a [AccuracySummary],
    /// Errors by group, leaving each model out (`--cv`).
    pub cross_validated: Option<&'a [AccuracySummary]>,
    /// Errors by group on the held-back fifth of the runs, everything
    /// fitted to the rest (`--holdout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out: Option<&'a [AccuracySummary]>,
    /// How far measurements of one stated configuration are from each other
    /// (`--repeats`): each distinct measurement against the geometric median
    /// of its configuration's; runs without a repeat, and copies of a
    /// measurement, unanswered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeats: Option<&'a [AccuracySummary]>,
    /// Each run (`--runs`).
    pub runs: Option<Vec<AccuracyRun<'a>>>,
    /// Every run not answered, with why (also warned of on stderr in text).
    pub unanswered: Vec<AccuracyUnanswered<'a>>,
}

/// A run `moeplan accuracy` could not answer.
#[derive(Serialize, JsonSchema)]
pub struct AccuracyUnanswered<'a> {
    /// Run id (`file:line` unless the file has an `id` column).
    pub id: &'a str,
    /// Why (unknown model, invalid layout, predicted not to fit).
    pub why: &'a str,
}

/// One run of `moeplan accuracy --runs --json`.
#[derive(Serialize, JsonSchema)]
pub struct AccuracyRun<'a> {
    /// Run id.
    pub id: &'a str,
    /// Measured TTFT.
    pub measured_ttft_ms: f64,
    /// Measured TPOT.
    pub measured_tpot_ms: f64,
    /// Predicted TTFT (absent when unanswered).
    pub predicted_ttft_ms: Option<f64>,
    /// Predicted TPOT (absent when unanswered).
    pub predicted_tpot_ms: Option<f64>,
    /// Why the run was not answered.
    pub unanswered: Option<&'a str>,
    /// With `--cv`: the TTFT predicted by serving layers fitted without any
    /// run of this run's model (leave one model out).
    pub cross_validated_ttft_ms: Option<f64>,
    /// With `--cv`: the TPOT so predicted.
    pub cross_validated_tpot_ms: Option<f64>,
    /// Output tokens per second the run states (absent when it states none).
    pub measured_throughput_tok_s: Option<f64>,
    /// Output tokens per second the predicted TTFT and TPOT give the run's
    /// closed loop by Little's law (absent when unanswered).
    pub predicted_throughput_tok_s: Option<f64>,
}

/// The JSON of a failed command (`--json`, exit 2).
#[derive(Serialize, JsonSchema)]
pub struct ErrorOutput {
    /// What went wrong.
    pub error: ErrorBody,
}

/// The body of [`ErrorOutput`].
#[derive(Serialize, JsonSchema)]
pub struct ErrorBody {
    /// `input`.
    pub kind: &'static str,
    /// The diagnostic.
    pub message: String,
    /// Hints.
    pub help: Vec<String>,
}

/// `value` as JSON with the keys of every object in sorted order.
pub fn to_sorted_value<T: Serialize>(value: &T) -> serde_json::Value {
    // serde_json's map is ordered by key without `preserve_order`.
    serde_json::to_value(value).expect("outputs serialise")
}

/// The commands with a `--json` output (and `error`, the shape of a failure).
pub const COMMANDS: [&str; 11] = [
    "accuracy",
    "audit",
    "calibrate",
    "catalog",
    "dag",
    "error",
    "estimate",
    "launch",
    "model",
    "plan",
    "simulate",
];

/// The JSON Schema of `command`'s `--json` output (one of [`COMMANDS`]).
pub fn schema(command: &str) -> Option<schemars::Schema> {
    // The shape written (`for_serialize`): a key skipped when empty is optional.
    fn schema_for<T: JsonSchema>() -> schemars::Schema {
        schemars::generate::SchemaSettings::default()
            .for_serialize()
            .into_generator()
            .into_root_schema_for::<T>()
    }
    Some(match command {
        "accuracy" => schema_for::<AccuracyOutput<'static>>(),
        "audit" => schema_for::<AuditOutput>(),
        "calibrate" => schema_for::<CalibrateOutput<'static>>(),
        "catalog" => schema_for::<CatalogOutput<'static>>(),
        "dag" => schema_for::<DagOutput<'static>>(),
        "error" => schema_for::<ErrorOutput>(),
        "estimate" => schema_for::<EstimateOutput<'static>>(),
        "launch" => schema_for::<crate::launch::Launch>(),
        "simulate" => schema_for::<SimulateOutput<'static>>(),
        "model" => schema_for::<ModelOutput>(),
        "plan" => schema_for::<PlanOutput<'static>>(),
        _ => return None,
    })
}

/// The prefill pool of a simulated disaggregated deployment.
#[derive(Clone, Copy, Debug, Serialize, JsonSchema)]
pub struct PrefillEcho {
    /// A prefill worker's layout.
    pub layout: crate::layout::Layout,
    /// Prefill workers.
    pub workers: u32,
}

/// `moeplan simulate --json`: the deployment, the traffic and what the
/// simulation measured (`ttft_ms`, `tpot_ms`, `itl_ms`, `e2e_ms` each with
/// mean, p50, p90, p99; `output_tokens_per_s`, `goodput_requests_per_s`,
/// `requests`, `preemptions`, ...).
#[derive(Serialize, JsonSchema)]
pub struct SimulateOutput<'a> {
    /// The model.
    pub model: &'a str,
    /// The GPU.
    pub gpu: &'a str,
    /// The engine whose scheduler and serving layer ran.
    pub engine: crate::engine::Engine,
    /// One replica's layout (disaggregated: a decode worker's).
    pub layout: crate::layout::Layout,
    /// Replicas behind the router (disaggregated: decode workers).
    pub replicas: u32,
    /// Disaggregated: the prefill pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefill: Option<PrefillEcho>,
    /// GPUs of the whole deployment.
    pub gpus: u64,
    /// The traffic, in words.
    pub traffic: String,
    /// The service levels of the goodput (seconds).
    pub levels: crate::simulate::Levels,
    /// The user profile in use (`--profile`), and whether it applies here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::ProfileUse>,
    /// The figures.
    #[serde(flatten)]
    pub result: &'a crate::simulate::SimResult,
}

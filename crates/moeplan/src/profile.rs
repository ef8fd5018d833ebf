//! Calibration profiles: what one engine's kernels achieve on one GPU, as data.
//!
//! A profile is a TOML file in `crates/moeplan/profiles/`, embedded in the
//! binary: the efficiency curves of every kernel family (`[kernels]`, see
//! `crate::calibration`) fitted to that engine's own kernel timings on that
//! GPU, the measurement tables and engine version they came from, and each
//! family's fit error (`[fit]`), or where its value comes from when no table
//! of that engine identifies it. `tools/calibration/fit.py` writes them all
//! (`docs/calibration.md`). Adding a GPU, an engine or an engine version is
//! adding a file and a line in `FILES`.
//!
//! A GPU without a profile of its own (a catalog card nobody measured, or a
//! custom card) uses the profile of the nearest measured GPU by datasheet:
//! the same fractions of its own peaks and bandwidths. With no engine named
//! (`Engine::Neutral`), the engine whose profile fits that GPU best. The
//! resolved profile's `source` says which profile, why, and what was scaled.

use crate::calibration::{Calibration, ServingParams};
use crate::dtype::{DType, Precision};
use crate::hardware::Gpu;
use crate::memory::Engine;
use crate::model::Model;
use crate::serving::Client;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The embedded profile files.
pub(crate) const FILES: &[(&str, &str)] = &[
    (
        "h100-sxm-vllm",
        include_str!("../profiles/h100-sxm-vllm.toml"),
    ),
    (
        "h100-sxm-sglang",
        include_str!("../profiles/h100-sxm-sglang.toml"),
    ),
    (
        "h100-sxm-trtllm",
        include_str!("../profiles/h100-sxm-trtllm.toml"),
    ),
    (
        "h200-sxm-vllm",
        include_str!("../profiles/h200-sxm-vllm.toml"),
    ),
    (
        "h200-sxm-sglang",
        include_str!("../profiles/h200-sxm-sglang.toml"),
    ),
    (
        "h200-sxm-trtllm",
        include_str!("../profiles/h200-sxm-trtllm.toml"),
    ),
    ("b200-vllm", include_str!("../profiles/b200-vllm.toml")),
    ("b200-sglang", include_str!("../profiles/b200-sglang.toml")),
    ("b200-trtllm", include_str!("../profiles/b200-trtllm.toml")),
];

/// How one kernel family's value was obtained: its fit error on the table
/// it was fitted to, or where it comes from when no table identifies it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitError {
    /// The measurement table it was fitted to, or `fallback`.
    pub table: String,
    /// Median |predicted/measured − 1| (absent for a fallback or a value read off a table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    /// 90th percentile of the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    /// Rows of the table it was fitted to (or read from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// The `kernel_source` fitted: what the engine runs for this family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// How the value was read off its table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where the value comes from when no table of this engine identifies it
    /// (another profile's value, or a stated assumption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl FitError {
    /// The median error of a family fitted to measurements (None for a
    /// fallback, an assumption or a value read off a table).
    pub(crate) fn fitted_median(&self) -> Option<f64> {
        match self.fallback {
            Some(_) => None,
            None => self.median,
        }
    }
}

/// One GPU × engine calibration profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `<gpu>-<engine>`.
    pub id: String,
    /// The catalog GPU it was measured on.
    pub gpu: String,
    /// The engine whose kernels were measured.
    pub engine: Engine,
    /// The engine version of the measurements.
    pub engine_version: String,
    /// Where the figures come from.
    pub source: String,
    /// The fitted kernel curves.
    pub kernels: Calibration,
    /// Fit error (or fallback) per kernel family.
    #[serde(default)]
    pub fit: BTreeMap<String, FitError>,
}

/// The serving layer of each engine, fitted to end-to-end runs.
pub const SERVING: &str = include_str!("../profiles/serving.toml");

/// One engine's fitted serving layer with its provenance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineServing {
    /// What the parameters were fitted to.
    pub source: String,
    /// Runs fitted.
    pub runs: usize,
    /// Mean loss of the log errors (TTFT + TPOT) before and after the fit.
    pub(crate) loss_before: f64,
    /// After.
    pub(crate) loss_after: f64,
    /// The parameters.
    pub params: ServingParams,
    /// The aggregated serving layer fitted to InferenceMAX's runs (the
    /// table's own is fitted to fixed-length runs), where there are some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inferencemax: Option<ServingFit>,
    /// The serving layer fitted to disaggregated runs, where there are some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disaggregated: Option<ServingFit>,
}

/// A serving layer fitted to one kind of runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingFit {
    /// What the parameters were fitted to.
    pub source: String,
    /// Runs fitted.
    pub runs: usize,
    /// Mean loss before and after the fit, weighted as `source` says.
    pub(crate) loss_before: f64,
    /// After.
    pub(crate) loss_after: f64,
    /// The parameters.
    pub params: ServingParams,
}

/// The embedded serving layers by engine name, parsed once.
pub fn serving_table() -> &'static BTreeMap<String, EngineServing> {
    static ALL: OnceLock<BTreeMap<String, EngineServing>> = OnceLock::new();
    ALL.get_or_init(|| {
        toml::from_str(SERVING).unwrap_or_else(|e| panic!("profiles/serving.toml: {e}"))
    })
}

/// Serving layers fitted to one model's own runs on one GPU × engine,
/// written by `moeplan calibrate --built-in-stacks` from `train.csv`.
pub const STACKS: &str = include_str!("../profiles/stacks.toml");

/// The file of built-in model stacks (`profiles/stacks.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackTable {
    /// What the layers were fitted to, and how.
    pub source: String,
    /// One entry per model × GPU × engine × mode (× client, aggregated).
    #[serde(default)]
    pub stack: Vec<ModelStack>,
}

/// A model's serving layer on one GPU × engine, fitted to its own runs as
/// `moeplan calibrate` fits a user's (from the engine's layer, moving only
/// what the runs pin down).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelStack {
    /// The model (`Model::name`: a catalog id).
    pub model: String,
    /// The precision its runs stored the weights in (`stack_weights`).
    pub weights: DType,
    /// The catalog GPU.
    pub gpu: String,
    /// The engine.
    pub engine: Engine,
    /// Aggregated or disaggregated.
    pub mode: ServingMode,
    /// The benchmark client of the runs (aggregated layers are per client;
    /// the disaggregated ones are not, and say `fixed`).
    pub client: Client,
    /// The runs' engine versions, as they state them.
    pub versions: Vec<String>,
    /// The fit.
    pub fit: UserFit,
}

/// The embedded model stacks, parsed once.
pub fn stack_table() -> &'static StackTable {
    static ALL: OnceLock<StackTable> = OnceLock::new();
    ALL.get_or_init(|| {
        toml::from_str(STACKS).unwrap_or_else(|e| panic!("profiles/stacks.toml: {e}"))
    })
}

/// The precision a model stack is keyed by: the routed experts' for a MoE
/// model (most of its bytes and FLOPs), the dense MLPs' otherwise. An FP4
/// and an FP8 checkpoint of one model run other kernels, and their runs
/// leave the kernel tables off by other amounts.
pub fn stack_weights(m: &Model) -> DType {
    match m.moe {
        Some(_) => m.dtypes.experts,
        None => m.dtypes.dense,
    }
}

/// What a model stack is the layer of: the model (`Model::name`) and the
/// precision of its weights (`stack_weights`), the catalog GPU, the
/// engine, the mode and the benchmark client (`Client::Fixed` for every
/// disaggregated one: those layers are not per client).
/// `calibrate::stack_key` reads a run's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StackKey {
    /// `Model::name`.
    pub(crate) model: String,
    /// `stack_weights` of the model.
    pub(crate) weights: DType,
    /// The catalog GPU's id.
    pub(crate) gpu: String,
    /// The engine.
    pub(crate) engine: Engine,
    /// Aggregated or disaggregated.
    pub(crate) mode: ServingMode,
    /// The benchmark client (fixed for a disaggregated stack).
    pub(crate) client: Client,
}

impl StackKey {
    /// The key of `model` on `gpu` × `engine` in `mode` under `client`.
    pub(crate) fn new(
        model: &Model,
        gpu: &Gpu,
        engine: Engine,
        mode: ServingMode,
        client: Client,
    ) -> StackKey {
        StackKey {
            model: model.name.clone(),
            weights: stack_weights(model),
            gpu: gpu.id.clone(),
            engine,
            mode,
            client: match mode {
                ServingMode::Aggregated => client,
                ServingMode::Disaggregated => Client::Fixed,
            },
        }
    }
}

impl ModelStack {
    /// Whether this is the layer of `key`.
    pub(crate) fn is(&self, key: &StackKey) -> bool {
        self.model == key.model
            && self.weights == key.weights
            && self.gpu == key.gpu
            && self.engine == key.engine
            && self.mode == key.mode
            && self.client == key.client
    }
}

/// The built-in layer of `key`, where the embedded stacks hold one.
pub(crate) fn model_stack(key: &StackKey) -> Option<&'static ModelStack> {
    stack_table().stack.iter().find(|s| s.is(key))
}

/// The built-in layer of `key` over `p`'s, named in its source, unless a
/// user profile covers its GPU × engine × mode (which wins over both).
fn apply_model_stack(p: &mut Profile, key: &StackKey) {
    let user = user_fit(&key.gpu, key.engine, key.mode);
    if user.is_some_and(|f| serves(f, Some(key))) {
        return;
    }
    let Some(s) = model_stack(key) else { return };
    if let (Some(f), Some((name, _))) = (user, user_stack(&key.gpu, key.engine)) {
        p.source = format!(
            "{} (the {name} profile's layer of {} × {} was fitted to runs of {}, not {}: the model's own built-in layer serves it)",
            p.source,
            key.gpu,
            key.engine.name(),
            f.models.join(", "),
            key.model
        );
    }
    p.kernels.serving = s.fit.params;
    p.source = format!(
        "{}, with the {} serving layer fitted to {} runs of {} ({} weights) on {} × {} (built-in stacks, profiles/stacks.toml)",
        p.source,
        s.mode.name(),
        s.fit.runs,
        s.model,
        s.weights,
        s.gpu,
        s.engine.name()
    );
}

/// The aggregated serving layer of `engine` under `client` (the kernels
/// alone for `Engine::Neutral` or an engine not fitted; the fixed-length
/// client's where the client has none).
pub fn serving_params(engine: Engine, client: Client) -> ServingParams {
    let Some(s) = serving_table().get(engine.name()) else {
        return ServingParams::default();
    };
    match client {
        Client::Fixed => s.params,
        Client::InferenceMax => s.inferencemax.as_ref().map_or(s.params, |f| f.params),
    }
}

/// The serving layer of `engine` fitted to disaggregated runs, where there
/// is one.
pub(crate) fn disaggregated_serving_params(engine: Engine) -> Option<ServingParams> {
    serving_table()
        .get(engine.name())
        .and_then(|s| s.disaggregated.as_ref())
        .map(|d| d.params)
}

/// The serving table as the file `moeplan calibrate --built-in` writes.
pub fn serving_file(table: &BTreeMap<String, EngineServing>) -> String {
    let body = toml::to_string(table).expect("serving parameters serialise");
    format!(
        "# The serving layer of each engine: what end-to-end runs add to the\n\
         # kernels' step times. Generated by `moeplan calibrate --built-in`\n\
         # (tools/accuracy.sh); do not edit by hand.\n\n{body}"
    )
}

/// Every embedded profile, parsed once.
pub fn embedded() -> &'static [Profile] {
    static ALL: OnceLock<Vec<Profile>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            .map(|(id, text)| parse(text).unwrap_or_else(|e| panic!("profile {id}: {e}")))
            .collect()
    })
}

/// Parses one profile file.
pub fn parse(text: &str) -> Result<Profile, String> {
    let mut p: Profile = toml::from_str(text).map_err(|e| e.to_string())?;
    p.kernels.source = p.source.clone();
    Ok(p)
}

/// Mean of the per-family median fit errors of `p` over `families`.
fn mean_median(p: &Profile, families: &[&String]) -> f64 {
    let v: Vec<f64> = families
        .iter()
        .filter_map(|f| p.fit.get(*f).and_then(FitError::fitted_median))
        .collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The families every profile in `ps` fitted to measurements.
fn common_families<'p>(ps: &[&'p Profile]) -> Vec<&'p String> {
    let Some(first) = ps.first() else {
        return Vec::new();
    };
    first
        .fit
        .iter()
        .filter(|(_, e)| e.fitted_median().is_some())
        .map(|(k, _)| k)
        .filter(|k| {
            ps.iter()
                .all(|p| p.fit.get(*k).and_then(FitError::fitted_median).is_some())
        })
        .collect()
}

/// A serving layer the user fitted to their own runs of one GPU × engine
/// (`moeplan calibrate`): it replaces the built-in one for that stack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserStack {
    /// The catalog GPU the runs were measured on.
    pub gpu: String,
    /// The engine they ran.
    pub engine: Engine,
    /// The built-in profile the fit started from.
    pub base: String,
    /// Aggregated runs fitted, and the fitted serving layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregated: Option<UserFit>,
    /// Disaggregated runs fitted, and their serving layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disaggregated: Option<UserFit>,
}

/// One serving layer of a user profile, with how it was fitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserFit {
    /// Runs fitted (suspect runs excluded).
    pub runs: usize,
    /// The fitted parameters.
    pub params: ServingParams,
    /// Each parameter that moved: its name, the value it started from, what pinned it.
    pub moved: Vec<MovedParam>,
    /// Median |error| of TTFT and TPOT on the fitted runs, before and after.
    pub ttft_median_before: f64,
    /// After.
    pub ttft_median_after: f64,
    /// TPOT before.
    pub tpot_median_before: f64,
    /// TPOT after.
    pub tpot_median_after: f64,
    /// 90th percentile |error| of TTFT on the fitted runs, before (0 in a
    /// profile written before it was recorded).
    #[serde(default)]
    pub ttft_p90_before: f64,
    /// After.
    #[serde(default)]
    pub ttft_p90_after: f64,
    /// TPOT before.
    #[serde(default)]
    pub tpot_p90_before: f64,
    /// TPOT after.
    #[serde(default)]
    pub tpot_p90_after: f64,
    /// The models whose runs it was fitted to (their catalog names): for
    /// another model with a built-in stack of its own on this GPU × engine,
    /// that stack serves it. Empty (a profile written before it was
    /// recorded): every model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

impl UserFit {
    /// Whether the fit serves `model`: fitted to its runs, or recorded
    /// without its models.
    pub(crate) fn covers(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}

/// A parameter a calibration let move.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MovedParam {
    /// Its field name in `params`.
    pub name: String,
    /// The built-in value.
    pub before: f64,
    /// The fitted value.
    pub after: f64,
    /// What in the runs determines it.
    pub determined_by: String,
}

/// A profile file `moeplan calibrate` writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserProfile {
    /// What it was fitted to.
    pub source: String,
    /// Runs left out of the fit as contradicting the physics, each with why.
    #[serde(default)]
    pub suspect: Vec<String>,
    /// One entry per GPU × engine.
    #[serde(default)]
    pub stack: Vec<UserStack>,
}

static USER: OnceLock<(String, UserProfile)> = OnceLock::new();

/// Makes every estimate of this process use `profile` (named `name` in the
/// output) for the stacks it covers. Once per process: a second call fails.
pub fn use_user_profile(name: &str, profile: UserProfile) -> Result<(), String> {
    USER.set((name.to_string(), profile))
        .map_err(|_| "a user profile is already in use".to_string())
}

/// The user's stack for `gpu` and `engine`, with the profile's name.
fn user_stack(gpu: &str, engine: Engine) -> Option<(&'static str, &'static UserStack)> {
    let (name, p) = USER.get()?;
    p.stack
        .iter()
        .find(|s| s.gpu == gpu && s.engine == engine)
        .map(|s| (name.as_str(), s))
}

/// Which of a stack's serving layers a deployment uses.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ServingMode {
    /// One pool doing prefill and decode (`resolve`).
    Aggregated,
    /// Prefill and decode pools (`resolve_disaggregated`).
    Disaggregated,
}

impl ServingMode {
    /// Its name in prose and reports.
    pub fn name(self) -> &'static str {
        match self {
            ServingMode::Aggregated => "aggregated",
            ServingMode::Disaggregated => "disaggregated",
        }
    }
}

/// The user profile (`--profile`) as a command's output names it.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ProfileUse {
    /// The profile file, as given.
    pub file: String,
    /// Whether one of its serving layers replaces the built-in one here.
    pub applied: bool,
    /// Which of its fits is used, or why none is.
    pub detail: String,
}

impl std::fmt::Display for ProfileUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "profile {}: {}", self.file, self.detail)
    }
}

/// How the user profile applies to `engine` on `gpu` in `mode` (None: no
/// profile is in use). The same rule as `resolve` and
/// `resolve_disaggregated`: a stack's fit of that mode, or nothing.
pub(crate) fn user_profile_use(gpu: &Gpu, engine: Engine, mode: ServingMode) -> Option<ProfileUse> {
    let (file, p) = USER.get()?;
    let mode_name = mode.name();
    let fit = user_fit(&gpu.id, engine, mode);
    let detail = match fit {
        Some(f) => format!(
            "its {mode_name} serving layer of {} × {} (fitted to {} of your runs)",
            gpu.id,
            engine.name(),
            f.runs
        ),
        None => {
            let has: Vec<String> = p
                .stack
                .iter()
                .map(|s| format!("{} × {}", s.gpu, s.engine.name()))
                .collect();
            format!(
                "not used: it has no {mode_name} fit of {} × {} (it has {}); the built-in serving layer is used",
                gpu.id,
                engine.name(),
                if has.is_empty() { "none".to_string() } else { has.join(", ") }
            )
        }
    };
    Some(ProfileUse {
        file: file.clone(),
        applied: fit.is_some(),
        detail,
    })
}

/// The engine of the user's profile for `gpu`, when it has one.
fn user_engine(gpu: &Gpu) -> Option<Engine> {
    let (_, p) = USER.get()?;
    p.stack.iter().find(|s| s.gpu == gpu.id).map(|s| s.engine)
}

/// The engine whose profile an estimate uses when the user names none: of
/// the engines measured on this GPU (or on the nearest measured GPU), the one
/// whose profile fits its measurements best, by the mean of the per-family
/// median errors over the families every one of them fitted.
pub fn default_engine(gpu: &Gpu) -> Engine {
    user_engine(gpu).unwrap_or_else(|| default_choice(gpu).0.engine)
}

/// The default profile for `gpu` and the mean median error that chose it.
fn default_choice(gpu: &Gpu) -> (&'static Profile, f64, usize) {
    let measured_on = nearest(gpu, None).gpu.clone();
    let candidates: Vec<&Profile> = embedded().iter().filter(|p| p.gpu == measured_on).collect();
    let families = common_families(&candidates);
    let best = candidates
        .iter()
        .min_by(|a, b| {
            mean_median(a, &families)
                .total_cmp(&mean_median(b, &families))
                .then(a.id.cmp(&b.id))
        })
        .expect("at least one embedded profile");
    (best, mean_median(best, &families), candidates.len())
}

/// The profile of `engine` on `gpu`: its own when measured, else the
/// nearest measured GPU's for that engine (else for any engine), with the
/// GPU spec's efficiency overrides applied. `Engine::Neutral` takes the
/// profile of the default engine (`default_engine`), and its `source` says so.
/// No model's own stack: `resolve_for` adds it.
pub fn resolve(gpu: &Gpu, engine: Engine) -> Profile {
    let mut p = engine_profile(gpu, engine, Client::Fixed);
    apply_user(&mut p, (gpu, engine, None), |s| s.aggregated.as_ref(), "");
    finish(p, gpu)
}

/// `resolve` with the serving layer fitted to `client`'s runs, and where
/// the built-in stacks (`profiles/stacks.toml`) hold one for `model` on
/// this GPU × engine × client (in its weights' precision), the layer fitted
/// to that model's own runs (a user profile's layer wins over both).
pub fn resolve_for(model: &Model, gpu: &Gpu, engine: Engine, client: Client) -> Profile {
    let mut p = engine_profile(gpu, engine, client);
    let key = StackKey::new(model, gpu, engine, ServingMode::Aggregated, client);
    apply_model_stack(&mut p, &key);
    apply_user(
        &mut p,
        (gpu, engine, Some(&key)),
        |s| s.aggregated.as_ref(),
        "",
    );
    finish(p, gpu)
}

/// `p` with its curves named by its source and the GPU spec's efficiency
/// overrides applied, last (their note is the curves' source where they
/// give one).
fn finish(mut p: Profile, gpu: &Gpu) -> Profile {
    p.kernels.source = p.source.clone();
    gpu.efficiency.apply(&mut p.kernels);
    p
}

/// The profile of `engine` on `gpu` with the engine's serving layer for
/// `client` (no model's own layer, no user profile; `finish` completes it).
fn engine_profile(gpu: &Gpu, engine: Engine, client: Client) -> Profile {
    let base = match engine {
        Engine::Neutral => default_choice(gpu).0,
        e => nearest(gpu, Some(e)),
    };
    let mut p = base.clone();
    if engine == Engine::Neutral {
        let (_, err, n) = default_choice(gpu);
        p.source = format!(
            "{} (no engine named: {}, the best-fitting of the {n} engines measured on {}, mean median kernel error {:.1}%)",
            p.source,
            p.engine.name(),
            p.gpu,
            err * 100.0
        );
    }
    if base.gpu != gpu.id {
        p.source = format!(
            "the {} profile ({}) applied to the {} datasheet peaks and bandwidths; not measured on this GPU",
            base.id, p.source, gpu.id
        );
    }
    p.kernels.serving = serving_params(engine, client);
    if client != Client::Fixed && engine != Engine::Neutral {
        p.source = format!(
            "{}, with the serving layer fitted to {} runs",
            p.source,
            client.name()
        );
    }
    p
}

/// The user profile's fit of `mode` for the GPU `gpu` (its id) × `engine`,
/// when it has one.
fn user_fit(gpu: &str, engine: Engine, mode: ServingMode) -> Option<&'static UserFit> {
    user_stack(gpu, engine).and_then(|(_, s)| match mode {
        ServingMode::Aggregated => s.aggregated.as_ref(),
        ServingMode::Disaggregated => s.disaggregated.as_ref(),
    })
}

/// Whether a user's fit serves the deployment of `key` (None: no model
/// named): its own runs' model, or a model without a built-in stack of its
/// own there; another model's calibration yields to that model's stack.
fn serves(fit: &UserFit, key: Option<&StackKey>) -> bool {
    key.is_none_or(|k| fit.covers(&k.model) || model_stack(k).is_none())
}

/// The user's serving layer for `gpu` × `engine` (the mode `pick` chooses)
/// over `p`'s, named in its source.
fn apply_user(
    p: &mut Profile,
    (gpu, engine, key): (&Gpu, Engine, Option<&StackKey>),
    pick: impl Fn(&UserStack) -> Option<&UserFit>,
    mode: &str,
) {
    let Some((name, fit)) = user_stack(&gpu.id, engine).and_then(|(n, s)| pick(s).map(|f| (n, f)))
    else {
        return;
    };
    if !serves(fit, key) {
        return;
    }
    p.kernels.serving = fit.params;
    p.source = format!(
        "{}, with the {mode}serving layer of {name} (fitted to {} of your runs)",
        p.source, fit.runs
    );
}

/// The profile of `engine` on `gpu` for a disaggregated deployment of
/// `model`: the same kernels, with the engine's serving layer fitted to
/// disaggregated runs where there is one, the model's own (built-in
/// stacks) where there is one, and the user profile's over both.
pub fn resolve_disaggregated(model: &Model, gpu: &Gpu, engine: Engine) -> Profile {
    let mut p = engine_profile(gpu, engine, Client::Fixed);
    let key = StackKey::new(
        model,
        gpu,
        engine,
        ServingMode::Disaggregated,
        Client::Fixed,
    );
    match disaggregated_serving_params(engine) {
        Some(d) => p.kernels.serving = d,
        // No disaggregated layer (no engine named): the aggregated one,
        // the user's where the profile has it.
        None => apply_user(
            &mut p,
            (gpu, engine, Some(&key)),
            |s| s.aggregated.as_ref(),
            "",
        ),
    }
    apply_model_stack(&mut p, &key);
    apply_user(
        &mut p,
        (gpu, engine, Some(&key)),
        |s| s.disaggregated.as_ref(),
        "disaggregated ",
    );
    finish(p, gpu)
}

/// The profile measured on `gpu`'s id, or on the GPU closest to it by
/// datasheet (16-bit peak, HBM bandwidth, FP4 support); among equals the
/// engine asked for wins.
/// The catalog GPU each embedded profile was measured on (None where the
/// catalog lacks it), parsed once.
fn measured_gpus() -> &'static [Option<Gpu>] {
    static ALL: OnceLock<Vec<Option<Gpu>>> = OnceLock::new();
    ALL.get_or_init(|| {
        embedded()
            .iter()
            .map(|p| crate::catalog::gpu(&p.gpu).and_then(Result::ok))
            .collect()
    })
}

fn nearest(gpu: &Gpu, engine: Option<Engine>) -> &'static Profile {
    let all = embedded();
    let gpus = measured_gpus();
    let distance = |i: usize| -> f64 {
        let p = &all[i];
        let measured = gpus[i].as_ref();
        let engine_miss = match engine {
            Some(e) if e != p.engine => 100.0,
            _ => 0.0,
        };
        match measured {
            Some(m) if m.id == gpu.id => engine_miss,
            Some(m) => {
                let fp4 = |g: &Gpu| g.peak.contains_key(&Precision::Fp4);
                engine_miss
                    + 1.0
                    + (m.peak_bf16().0 / gpu.peak_bf16().0).ln().abs()
                    + (m.memory_bandwidth.0 / gpu.memory_bandwidth.0).ln().abs()
                    + if fp4(m) == fp4(gpu) { 0.0 } else { 1.0 }
            }
            None => engine_miss + 1000.0,
        }
    };
    let best = (0..all.len())
        .map(|i| (distance(i), i))
        .min_by(|a, b| a.0.total_cmp(&b.0).then(all[a.1].id.cmp(&all[b.1].id)))
        .expect("at least one embedded profile");
    &all[best.1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(id: &str) -> Gpu {
        crate::catalog::gpu(id)
            .expect("catalog GPU")
            .expect("loads")
    }

    /// Every family of the schema has a `[fit]` entry saying how its value
    /// was obtained, and a fallback never poses as a fit.
    #[test]
    fn every_family_says_where_it_comes_from() {
        let families = match toml::Value::try_from(&embedded()[0].kernels).expect("serialises") {
            toml::Value::Table(t) => t.keys().cloned().collect::<Vec<_>>(),
            _ => unreachable!(),
        };
        for p in embedded() {
            assert_eq!(p.id, format!("{}-{}", p.gpu, p.engine.name()));
            assert!(crate::catalog::gpu(&p.gpu).is_some(), "{}: GPU", p.id);
            for f in &families {
                let key = f.trim_end_matches("_us").trim_end_matches("_mib");
                let e = p
                    .fit
                    .get(key)
                    .unwrap_or_else(|| panic!("{}: no [fit] entry for {key}", p.id));
                match &e.fallback {
                    Some(why) => {
                        assert_eq!(e.table, "fallback", "{}: {key}", p.id);
                        assert!(e.median.is_none() && !why.is_empty(), "{}: {key}", p.id);
                    }
                    None => assert!(e.rows.unwrap_or(0) > 0, "{}: {key} has no rows", p.id),
                }
            }
        }
    }

    #[test]
    fn each_measured_gpu_resolves_to_its_own_profiles() {
        for (g, e) in [
            ("h100-sxm", Engine::Vllm),
            ("h200-sxm", Engine::Sglang),
            ("b200", Engine::Trtllm),
        ] {
            let p = resolve(&gpu(g), e);
            assert_eq!((p.gpu.as_str(), p.engine), (g, e));
            assert!(!p.source.contains("not measured"), "{}", p.source);
        }
    }

    /// With no engine named, the best-fitting engine of the GPU, named in the source.
    #[test]
    fn neutral_takes_the_best_fitting_engine() {
        for g in ["h100-sxm", "h200-sxm", "b200"] {
            let gpu = gpu(g);
            let chosen = default_engine(&gpu);
            let p = resolve(&gpu, Engine::Neutral);
            assert_eq!(p.engine, chosen);
            assert!(p.source.contains("best-fitting"), "{}", p.source);
            let candidates: Vec<&Profile> = embedded().iter().filter(|p| p.gpu == g).collect();
            assert_eq!(candidates.len(), 3);
            let families = common_families(&candidates);
            assert!(
                families.len() >= 10,
                "{g}: {} common families",
                families.len()
            );
            for c in &candidates {
                assert!(mean_median(&p, &families) <= mean_median(c, &families));
            }
        }
    }

    /// Blackwell cards nobody measured take a B200 profile, scaled to their datasheet.
    #[test]
    fn unmeasured_blackwell_scales_from_b200() {
        for g in ["gb200", "b300", "gb300"] {
            let p = resolve(&gpu(g), Engine::Vllm);
            assert_eq!((p.gpu.as_str(), p.engine), ("b200", Engine::Vllm), "{g}");
            assert!(
                p.source.contains("not measured on this GPU"),
                "{}",
                p.source
            );
        }
        let h800 = resolve(&gpu("h800"), Engine::Trtllm);
        assert_eq!(h800.engine, Engine::Trtllm);
        assert!(h800.gpu.starts_with('h'), "{}", h800.gpu);
    }
}

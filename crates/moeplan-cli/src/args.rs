//! Command-line definitions (clap). No logic lives here.
use clap::{Args, Parser, Subcommand};
use moeplan::dag::export::Format;
use moeplan::dag::{Granularity, Phase, Steps};
use moeplan::launch::Target;
use moeplan::search::{Modes, Objective};
use moeplan::simulate::traffic::Process;
use moeplan::simulate::Router;

/// An `--engine` value: `auto` or an engine of the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineFlag {
    /// The engine whose kernels fit the GPU's measurements best.
    Auto,
    /// This engine.
    Named(moeplan::engine::Engine),
}

/// `--engine` values: `auto` and every engine the library has a preset for
/// (`moeplan::engine::Engine::ALL`), so a new engine needs no CLI change.
fn engines() -> impl clap::builder::TypedValueParser<Value = EngineFlag> {
    use clap::builder::TypedValueParser;
    use moeplan::engine::Engine;
    clap::builder::PossibleValuesParser::new(
        std::iter::once("auto").chain(Engine::ALL.iter().map(|e| e.name())),
    )
    .map(|s| {
        Engine::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .map_or(EngineFlag::Auto, EngineFlag::Named)
    })
}

/// A flag whose values are a library enum's (`all`, spelled by `name`), so
/// the enum is the one list of what the flag accepts.
fn choice<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    name: fn(T) -> &'static str,
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(all.iter().map(|v| name(*v))).map(move |s| {
        *all.iter()
            .find(|v| name(**v) == s)
            .expect("clap accepts only the listed values")
    })
}

/// Plan, check and explain parallel deployments of Mixture-of-Experts inference.
///
/// Exit codes: 0 success; 1 the input is valid but the answer is negative
/// (a deployment that does not fit, with `plan --require-slo` no valid
/// layout or a recommendation that misses a service level, or an
/// output a missing tool cannot produce: `dag --svg` without Graphviz);
/// 2 bad input (unreadable or invalid file, unknown model or GPU, invalid
/// layout); 3 internal error.
#[derive(Parser, Debug)]
#[command(name = "moeplan", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// A profile written by `moeplan calibrate`: every estimate of a GPU × engine it covers uses its fitted serving layer (default: $MOEPLAN_PROFILE).
    #[arg(long, global = true, value_name = "FILE")]
    pub profile: Option<std::path::PathBuf>,
    /// Print tables at their full width; by default, on a terminal, they are
    /// fitted to its width (cells wrapped at spaces, minor columns left out,
    /// or one block per row) and prose wrapped; $MOEPLAN_COLUMNS sets that
    /// width. Output to a file or a pipe is never wrapped.
    #[arg(long, global = true)]
    pub wide: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parameters, weight bytes, KV cache and FLOP per token of a model.
    Model(ModelArgs),
    /// List the built-in models and GPUs.
    Catalog(CatalogArgs),
    /// Search every valid layout and recommend the best deployment (default: the seed documents' scenario).
    Plan(PlanArgs),
    /// Predict TTFT, TPOT, throughput and memory of one deployment.
    Estimate(EstimateArgs),
    /// Print the JSON Schema of a native spec file (model, gpu, scenario, plan, or a calibrate profile) or of a command's --json output.
    Schema(SchemaArgs),
    /// Check a deployment plan: every error with its evidence, and the corrected plan.
    ///
    /// Exit 0 when no finding is an error, 1 when one is, 2 for unreadable input.
    Audit(AuditArgs),
    /// The operator and communication graph of a deployment: validated, timed, exported.
    ///
    /// The deployment comes from the `estimate` flags, a plan file (the
    /// format `moeplan audit` reads), or a scenario file (the planner's
    /// recommended layout).
    Dag(DagArgs),
    /// Compare predictions with measured benchmark runs: median and p90 error of TTFT and TPOT.
    ///
    /// Reads files of runs (the native CSV, AIConfigurator's silicon CSV as
    /// it is, or a vLLM/SGLang benchmark client's JSON result with a
    /// `<file>.moeplan.toml` sidecar) and estimates each run as it was
    /// deployed; a run it cannot estimate is warned of and counted unanswered.
    Accuracy(AccuracyArgs),
    /// Fit the serving layer of your own stack (GPU × engine) to your benchmark runs, and write a profile.
    ///
    /// Reads the same runs files as `accuracy`: moeplan's CSV, AIConfigurator's
    /// silicon CSV, or a benchmark client's result (`vllm bench serve
    /// --save-result` JSON, SGLang `bench_serving` JSON lines) with a
    /// `<file>.moeplan.toml` sidecar saying how the server was deployed
    /// (`model`, `gpu`, optional `engine`, `engine_version`, `weight_dtype`,
    /// `tp`, `pp`, `dp`, `ep`, `etp`, `client`). A run's benchmark client
    /// (a CSV's `client` column, a silicon row's provenance) picks the
    /// built-in serving layer its stack starts from: fixed lengths or
    /// InferenceMAX's. Each stack starts from the
    /// built-in profile and lets move only what its runs can pin down; runs
    /// that contradict the physics are left out, each named. A row moeplan
    /// cannot estimate (an unknown GPU or model, a layout invalid for its
    /// model) is bad input: every such row is reported at once, at its line
    /// and column (exit 2). Use the profile with `--profile FILE` on any
    /// command.
    Calibrate(CalibrateArgs),
    /// The engine commands and deployment files that run a plan: vLLM, SGLang or TensorRT-LLM, as shell scripts or Kubernetes manifests.
    ///
    /// The deployment comes from a plan file, a scenario file (the planner's
    /// recommendation) or the `estimate` flags (aggregated or with
    /// --prefill-*/--decode-*). A layout the engine cannot express is refused
    /// with the rule and the nearest layout it can run (exit 2); memory
    /// settings hold the planned requests (exit 1 when they do not fit).
    /// Every emitted flag is checked against the engine's flag table, read
    /// from its released source. Beside the files: bench.sh (the plan's
    /// workload on the engine's own benchmark client) and bench_to_csv.py
    /// (its result as a row for `moeplan calibrate`).
    Launch(LaunchArgs),
    /// Latency percentiles and goodput of a deployment under real traffic: a step-level simulation on the same cost model as `estimate`, aggregated or disaggregated.
    ///
    /// Traffic: --rate with Poisson or gamma (bursty) arrivals, a --trace
    /// (arrival_s,isl,osl CSV; Azure LLM inference traces; Mooncake JSON
    /// lines), or, without either, a closed loop of --concurrency clients
    /// (what benchmarks run). Each replica runs its engine's scheduler
    /// (chunked-prefill budget, running cap, prefill/decode mixing, KV
    /// cache admission and preemption) behind a router. A run whose queue
    /// grows without bound stops early with the rate it could sustain (exit 1).
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Files of measured runs: moeplan's CSV, AIConfigurator's silicon CSV, a `vllm bench serve --save-result` .json or an SGLang `bench_serving` .jsonl (each with its `<file>.moeplan.toml` sidecar).
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// Write the profile (TOML) to this file. Without it the fit is shown
    /// (in the JSON with --json) and nothing is written.
    #[arg(long, value_name = "PROFILE.toml")]
    pub out: Option<std::path::PathBuf>,
    /// Check that the calibration generalises: fit each stack on half of its layouts and lengths, and report the error on the other half, before and after. Alone (without --out or --explain) it only checks: no profile is fitted.
    #[arg(long)]
    pub validate: bool,
    /// Start from this profile (an earlier `calibrate --out`) instead of the built-in serving layer: recalibrate after new runs.
    #[arg(long, value_name = "PROFILE.toml")]
    pub base: Option<std::path::PathBuf>,
    /// Also list every run: measured, predicted before and after.
    #[arg(long)]
    pub explain: bool,
    /// Print JSON: the profile (written too with --out), --validate's and --explain's rows.
    #[arg(long)]
    pub json: bool,
    /// Fit moeplan's built-in serving layer instead of a user profile: each
    /// engine's, over every GPU of the runs (aggregated and disaggregated
    /// apart), from the kernel tables' defaults, written to FILE in the
    /// format of crates/moeplan/profiles/serving.toml (tools/accuracy.sh
    /// regenerates that file this way from the shared train.csv).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["out", "validate", "base", "explain", "json", "built_in_stacks"])]
    pub built_in: Option<std::path::PathBuf>,
    /// Fit moeplan's built-in model stacks: each model's runs on one GPU ×
    /// engine × mode (of at least 5 runs) calibrated as a user's stack is,
    /// from the embedded serving layer, written to FILE in the format of
    /// crates/moeplan/profiles/stacks.toml (tools/accuracy.sh regenerates
    /// that file this way, after serving.toml).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["out", "validate", "base", "explain", "json"])]
    pub built_in_stacks: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct AccuracyArgs {
    /// Files of measured runs: moeplan's CSV, AIConfigurator's silicon CSV, a `vllm bench serve --save-result` .json or an SGLang `bench_serving` .jsonl (each with its `<file>.moeplan.toml` sidecar).
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// Print the report as Markdown (what docs/accuracy.md holds).
    #[arg(long)]
    pub markdown: bool,
    /// List every run with its prediction and error (with --cv, also its
    /// error when its model is left out of the fit).
    #[arg(long)]
    pub runs: bool,
    /// Also report leave-one-model-out cross-validation: each model's runs
    /// predicted by serving layers fitted without them.
    #[arg(long)]
    pub cv: bool,
    /// Also report a fifth of the runs held back (chosen by their ids): the
    /// engines' serving layers and the model stacks fitted to the other
    /// runs, the held ones predicted with them; what moeplan does on unseen
    /// runs of the models and stacks it was fitted to.
    #[arg(long)]
    pub holdout: bool,
    /// Also report how far measurements of one stated configuration are from
    /// each other: each distinct measurement of a configuration measured
    /// more than once against their geometric median, a reference for how
    /// much of the figures depends on what the rows do not state.
    #[arg(long)]
    pub repeats: bool,
    /// Predict each run with `moeplan simulate`'s step-level closed loop instead of the estimate's closed form.
    #[arg(long, conflicts_with_all = ["cv", "holdout"])]
    pub simulate: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Output options shared by every command.
#[derive(Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Print machine-readable JSON (base units: bytes, FLOP, seconds).
    #[arg(long)]
    pub json: bool,
    /// Show the formula and inputs behind every figure.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// A catalog id (see `moeplan catalog`), a Hugging Face config.json, or a native model spec (.toml/.yaml/.json).
    pub model: std::ffi::OsString,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct CatalogArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Which spec: model, gpu, scenario, plan, or profile (what `moeplan calibrate` writes);
    /// or `output-<command>`, the shape of a command's `--json` output.
    #[arg(value_parser = crate::commands::schema::KINDS)]
    pub kind: String,
}

/// The deployment of one replica (shared by `estimate` and `dag`).
#[derive(Args, Debug, Clone)]
pub struct DeploymentArgs {
    /// Model: a catalog id, a config.json, or a native model spec.
    #[arg(long)]
    pub model: Option<std::ffi::OsString>,
    /// GPU: a catalog id or a GPU spec file.
    #[arg(long)]
    pub gpu: Option<std::ffi::OsString>,
    /// GPUs per node (NVLink domain), overriding the GPU's.
    #[arg(long)]
    pub gpus_per_node: Option<u32>,
    /// Prompt tokens per request.
    #[arg(long)]
    pub isl: Option<u64>,
    /// Output tokens per request.
    #[arg(long)]
    pub osl: Option<u64>,
    /// Requests in flight on the whole replica (each attention-DP rank serves 1/dp of them).
    #[arg(long)]
    pub concurrency: Option<u64>,
    /// Share of prompt tokens served from the prefix cache, 0 to 0.99 (e.g. 0.56): prefill computes only the rest, attending the whole context; decode and KV memory unchanged.
    #[arg(long)]
    pub cache_hit_rate: Option<f64>,
    /// The benchmark client whose measurements to predict: fixed (every request exactly --isl/--osl tokens: `vllm bench serve`, SGLang `bench_serving` with fixed lengths, AIConfigurator's harness) or inferencemax (InferenceMAX's client: lengths drawn in [0.8, 1] × --isl/--osl, so a prefill-first engine's arrivals spread out); each has its own fitted serving layer, and `moeplan launch` writes a benchmark that draws lengths as it does. Default: the plan's or scenario's `workload.client`, else fixed.
    #[arg(long, value_parser = choice(&moeplan::serving::Client::ALL, moeplan::serving::Client::name))]
    pub client: Option<moeplan::serving::Client>,
    /// Pipeline stages (default 1).
    #[arg(long)]
    pub pp: Option<u32>,
    /// Tensor parallel degree (attention, dense MLP) (default 1).
    #[arg(long)]
    pub tp: Option<u32>,
    /// Context parallel degree (default 1).
    #[arg(long)]
    pub cp: Option<u32>,
    /// Attention data parallel degree inside the replica (default 1).
    #[arg(long)]
    pub dp: Option<u32>,
    /// Expert parallel degree (default: 1, or the stage's GPUs / etp).
    #[arg(long)]
    pub ep: Option<u32>,
    /// Expert tensor parallel degree (default: the stage's GPUs / ep, so experts are split over every GPU of a stage as engines do).
    #[arg(long)]
    pub etp: Option<u32>,
    #[command(flatten)]
    pub levers: LeverArgs,
    /// two-batch: each step runs as two micro-batches, one's EP dispatch/combine and TP all-reduces overlapping the other's compute (SGLang's two-batch overlap, DeepSeek's dual micro-batch); of both pools when disaggregated (a plan file states each pool's `overlap`). Default: the plan's, else none.
    #[arg(long, value_parser = choice(&moeplan::ops::Overlap::ALL, moeplan::ops::Overlap::name))]
    pub overlap: Option<moeplan::ops::Overlap>,
    /// Flat compute efficiency (fraction of peak) instead of the calibrated curves.
    #[arg(long)]
    pub mfu: Option<f64>,
    /// Flat memory-bandwidth efficiency instead of the calibrated curves.
    #[arg(long)]
    pub bandwidth_utilization: Option<f64>,
    /// The serving engine whose kernels, scheduler defaults (step budget, running-request cap, memory share) and fitted serving overheads to assume; the flags below override them. Default: the one a plan or scenario file states, else auto, the engine whose kernels fit this GPU's measurements best (docs/calibration.md); neutral: those kernels with no engine's scheduler or overheads.
    #[arg(long, value_parser = engines())]
    pub engine: Option<EngineFlag>,
    /// Tokens per scheduler step per attention-DP rank (chunked prefill budget; default: the engine's).
    #[arg(long)]
    pub max_step_tokens: Option<u64>,
    /// Requests one attention-DP rank runs at once; more wait for a slot (default: the engine's).
    #[arg(long)]
    pub max_running_requests: Option<u64>,
    /// Fraction of the GPU's memory the engine may use, weights included
    /// (default: a plan file's `slo.max_memory_fraction`, else the engine's
    /// own limit; TensorRT-LLM's is 90% of what the model leaves, for its KV cache).
    #[arg(long)]
    pub max_memory_fraction: Option<f64>,
}

/// The levers the planner's advice names: weight and KV cache types,
/// redundant expert slots, routing skew. `plan` and the deployment flags
/// share them; over a scenario or plan file they replace its values
/// (`model.weight_dtype`, `model.kv_cache_dtype`, `hardware.redundant_experts`,
/// `workload.routing_skew`).
#[derive(Args, Debug, Clone, Default)]
pub struct LeverArgs {
    /// Store the weights in this type (bf16, fp16, fp8, fp4, int4, mxfp4, nvfp4): the checkpoint's own type (its routed experts') leaves it as it is; otherwise all weights at 8 bits or more, and a 4-bit type stores the routed experts (a dense model's MLPs too) while attention and an MoE model's dense MLPs stay in 8 bits (fp8, or the checkpoint's type where it has at most 8), as NVIDIA's NVFP4 checkpoints keep them.
    #[arg(long)]
    pub weight_dtype: Option<String>,
    /// KV cache type: bf16, fp16, fp8 (nvfp4 on Blackwell GPUs, which TensorRT-LLM offers); with a scenario, auto: the planner searches the model's type and fp8, and says which each candidate uses.
    #[arg(long)]
    pub kv_dtype: Option<String>,
    /// Redundant expert slots (EPLB; default 0); of both pools when disaggregated (a
    /// plan file states each pool's own); with a scenario, of every layout the planner tries with ep > 1.
    #[arg(long)]
    pub redundant_experts: Option<u32>,
    /// Power-law exponent of expert popularity (0 = uniform routing, the default).
    #[arg(long)]
    pub routing_skew: Option<f64>,
}

#[derive(Args, Debug)]
pub struct EstimateArgs {
    /// A plan file (`moeplan schema plan`, aggregated or disaggregated):
    /// estimate its deployment; or a scenario file: estimate the planner's
    /// recommendation for it (told apart by content). Flags override the
    /// file's values; layout flags do not apply to a scenario.
    pub file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(flatten)]
    pub pools: PoolArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The two pools of a disaggregated deployment (`estimate`). Any of them
/// makes the estimate disaggregated; `--concurrency` then counts the
/// requests in flight on the whole deployment.
#[derive(Args, Debug, Clone, Default)]
pub struct PoolArgs {
    /// Prefill pool: tensor parallel degree of a worker.
    #[arg(long)]
    pub prefill_tp: Option<u32>,
    /// Prefill pool: pipeline stages of a worker.
    #[arg(long)]
    pub prefill_pp: Option<u32>,
    /// Prefill pool: attention data parallel degree of a worker.
    #[arg(long)]
    pub prefill_dp: Option<u32>,
    /// Prefill pool: expert parallel degree.
    #[arg(long)]
    pub prefill_ep: Option<u32>,
    /// Prefill pool: expert tensor parallel degree.
    #[arg(long)]
    pub prefill_etp: Option<u32>,
    /// Prefill workers (default: what keeps up with the decode pool).
    #[arg(long)]
    pub prefill_workers: Option<u32>,
    /// Prompts one attention-DP rank of a prefill worker runs per step (default 1).
    #[arg(long)]
    pub prefill_batch: Option<u64>,
    /// Decode pool: tensor parallel degree of a worker.
    #[arg(long)]
    pub decode_tp: Option<u32>,
    /// Decode pool: pipeline stages of a worker.
    #[arg(long)]
    pub decode_pp: Option<u32>,
    /// Decode pool: attention data parallel degree of a worker.
    #[arg(long)]
    pub decode_dp: Option<u32>,
    /// Decode pool: expert parallel degree.
    #[arg(long)]
    pub decode_ep: Option<u32>,
    /// Decode pool: expert tensor parallel degree.
    #[arg(long)]
    pub decode_etp: Option<u32>,
    /// Decode workers (default: the fewest that hold every request).
    #[arg(long)]
    pub decode_workers: Option<u32>,
}

impl PoolArgs {
    /// Whether any pool flag was given.
    pub fn any(&self) -> bool {
        [
            self.prefill_tp,
            self.prefill_pp,
            self.prefill_dp,
            self.prefill_ep,
            self.prefill_etp,
            self.prefill_workers,
            self.decode_tp,
            self.decode_pp,
            self.decode_dp,
            self.decode_ep,
            self.decode_etp,
            self.decode_workers,
        ]
        .iter()
        .any(Option::is_some)
            || self.prefill_batch.is_some()
    }
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A scenario file (TOML/YAML/JSON; `moeplan schema scenario`). Without one, the embedded seed scenario (examples/seed.toml).
    pub scenario: Option<std::path::PathBuf>,
    /// Model: a catalog id, a config.json or a native spec (overrides the scenario's).
    #[arg(long)]
    pub model: Option<std::ffi::OsString>,
    /// GPU: a catalog id or a spec file (overrides the scenario's).
    #[arg(long)]
    pub gpu: Option<std::ffi::OsString>,
    /// GPUs available.
    #[arg(long)]
    pub gpus: Option<u32>,
    /// GPUs per node.
    #[arg(long)]
    pub gpus_per_node: Option<u32>,
    /// Prompt tokens (a fixed length).
    #[arg(long)]
    pub isl: Option<u64>,
    /// Output tokens (a fixed length).
    #[arg(long)]
    pub osl: Option<u64>,
    /// Requests in flight per replica (default: searched).
    #[arg(long)]
    pub concurrency: Option<u64>,
    /// Requests per second the deployment must serve.
    #[arg(long)]
    pub request_rate: Option<f64>,
    /// Share of prompt tokens served from the prefix cache, 0 to 0.99 (over the scenario's `workload.cache_hit_rate`).
    #[arg(long)]
    pub cache_hit_rate: Option<f64>,
    /// The benchmark client whose measurements to predict: fixed or inferencemax (over the scenario's `workload.client`; see `moeplan estimate --help`).
    #[arg(long, value_parser = choice(&moeplan::serving::Client::ALL, moeplan::serving::Client::name))]
    pub client: Option<moeplan::serving::Client>,
    /// TTFT limit in milliseconds.
    #[arg(long)]
    pub ttft_ms: Option<f64>,
    /// TPOT limit in milliseconds.
    #[arg(long)]
    pub tpot_ms: Option<f64>,
    /// Least output throughput per GPU, with its unit (e.g. "15 tokens/ms").
    #[arg(long)]
    pub min_throughput_per_gpu: Option<String>,
    /// Least output throughput each request sees, with its unit (e.g. "50 tokens/s").
    #[arg(long)]
    pub min_throughput_per_user: Option<String>,
    /// Largest fraction of GPU memory used (default: the scenario's, else
    /// the engine's own limit).
    #[arg(long)]
    pub max_memory_fraction: Option<f64>,
    /// Flat compute efficiency instead of the calibrated curves.
    #[arg(long)]
    pub mfu: Option<f64>,
    /// Flat memory-bandwidth efficiency instead of the calibrated curves.
    #[arg(long)]
    pub bandwidth_utilization: Option<f64>,
    /// The serving engine to assume, over the scenario's `hardware.engine` (auto: the best-fitting engine on this GPU; neutral: its kernels with no engine's scheduler or overheads).
    #[arg(long, value_parser = engines())]
    pub engine: Option<EngineFlag>,
    #[command(flatten)]
    pub levers: LeverArgs,
    /// What to optimise: throughput (tokens/s per GPU), fewest-gpus (for the request rate), pareto.
    #[arg(long, default_value = "throughput", value_parser = choice(&Objective::ALL, Objective::flag))]
    pub objective: Objective,
    /// Serving modes to search.
    #[arg(long, default_value = "both", value_parser = choice(&Modes::ALL, Modes::flag))]
    pub mode: Modes,
    /// Candidates shown per mode (at least 1).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub top: u32,
    /// Percentile service levels at the request rate (ms): the best aggregated candidates are simulated under Poisson arrivals (`moeplan simulate`) and each gets the fewest replicas that meet them.
    #[arg(long)]
    pub ttft_p99_ms: Option<f64>,
    /// P99 TPOT level (ms), as --ttft-p99-ms.
    #[arg(long)]
    pub tpot_p99_ms: Option<f64>,
    /// P90 TTFT level (ms), as --ttft-p99-ms.
    #[arg(long)]
    pub ttft_p90_ms: Option<f64>,
    /// P90 TPOT level (ms), as --ttft-p99-ms.
    #[arg(long)]
    pub tpot_p90_ms: Option<f64>,
    /// How many of the best aggregated, and of the best disaggregated, candidates to simulate for the percentile levels.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub simulate_top: u32,
    /// Exit 1 when no layout meets every service level, none fitting included, for CI (default: exit 0 with a recommendation or the analysis of why no layout fits).
    #[arg(long)]
    pub require_slo: bool,
    /// Write a Markdown deployment plan to this file.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// Write the Pareto front (tokens/s per GPU vs per user) as SVG to this file.
    #[arg(long)]
    pub pareto: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The plan file (.toml, .yaml or .json; `moeplan schema plan`).
    pub plan: std::path::PathBuf,
    /// Print `{"findings": [...], "summary": {...}, "corrected": {...}}` instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Also write a Markdown review document to this file.
    #[arg(long, value_name = "FILE.md")]
    pub report: Option<std::path::PathBuf>,
    /// Write the corrected plan (same format as the input) to this file.
    #[arg(long, value_name = "FILE")]
    pub fix: Option<std::path::PathBuf>,
    /// The serving engine the figures assume, over the plan's `hardware.engine` (as `plan --engine`).
    #[arg(long, value_parser = engines())]
    pub engine: Option<EngineFlag>,
}

/// `moeplan dag`: the deployment comes from a plan file, a scenario's
/// recommended plan, or the `estimate` flags; flags override a file's values.
#[derive(Args, Debug)]
pub struct DagArgs {
    /// A plan file (`moeplan schema plan`: draw one replica of its layout; for a disaggregated plan, one worker of the --pool) or a scenario file (draw the planner's recommended layout), told apart by their content. Without one, the flags describe the deployment as for `moeplan estimate`.
    #[arg(conflicts_with_all = ["plan", "scenario"])]
    pub file: Option<std::path::PathBuf>,
    /// A scenario file (the same as giving it as FILE).
    #[arg(long, conflicts_with = "plan")]
    pub scenario: Option<std::path::PathBuf>,
    /// A plan file (the same as giving it as FILE).
    #[arg(long)]
    pub plan: Option<std::path::PathBuf>,
    /// With a disaggregated deployment: which pool's worker to draw.
    #[arg(long, default_value = "decode", value_parser = choice(&Phase::ALL, Phase::name))]
    pub pool: Phase,
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(flatten)]
    pub pools: PoolArgs,
    /// Which step to draw.
    #[arg(long, default_value = "both", value_parser = choice(&Steps::ALL, Steps::name))]
    pub phase: Steps,
    /// One node per layer, or per operator.
    #[arg(long, default_value = "op", value_parser = choice(&Granularity::ALL, Granularity::name))]
    pub granularity: Granularity,
    /// One node per GPU (and per group) instead of collapsing identical ranks.
    #[arg(long)]
    pub expand: bool,
    /// In dot, mermaid and SVG output, draw every layer instead of folding runs of identical layers.
    #[arg(long)]
    pub all_layers: bool,
    /// Print the graph in this format instead of the summary (the summary then goes to stderr).
    #[arg(long, value_parser = choice(&Format::ALL, Format::name))]
    pub format: Option<Format>,
    /// Also render the graph as SVG to this file with Graphviz `dot`.
    #[arg(long)]
    pub svg: Option<std::path::PathBuf>,
    /// Validate the graph and print every violation; exit 1 if any.
    #[arg(long)]
    pub check: bool,
}

/// `moeplan launch`.
#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// A plan file (its deployment and replicas) or a scenario file (the
    /// planner's recommendation), told apart by content. Flags override it.
    pub file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(flatten)]
    pub pools: PoolArgs,
    /// Copies of an aggregated replica (default: the plan's, else 1).
    #[arg(long)]
    pub replicas: Option<u32>,
    /// The engine version to emit flags for, one with a flag table (`0.11` names the newest 0.11.x; default: the file's `hardware.engine_version`, else the newest, or with --target dynamo the release Dynamo's image runs); others are refused, listing those there are.
    #[arg(long)]
    pub engine_version: Option<String>,
    /// What to write: shell scripts, a LeaderWorkerSet per role (lws), a DynamoGraphDeployment (dynamo), or llm-d modelservice values (llm-d, vLLM only).
    #[arg(long, default_value = "shell", value_parser = choice(&Target::ALL, Target::name))]
    pub target: Target,
    /// The weights the engine loads: a Hugging Face id or a directory, taken to be stored as the plan stores them (one the catalog knows is checked). Default: the model's own checkpoint by its Hugging Face id, which must store the expert and dense weights as the plan does: a plan that stores them otherwise (--weight-dtype, model.weight_dtype) needs this flag.
    #[arg(long)]
    pub model_path: Option<String>,
    /// The container image of the engine (default: its release image of the version its flags were checked against).
    #[arg(long)]
    pub image: Option<String>,
    /// Write the files into this folder (created if missing; files of the same names are replaced). Without it they are listed, not written.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Print JSON: engine, version, target, GPUs, each role's nodes and commands, and every file with its content.
    #[arg(long)]
    pub json: bool,
}

/// `moeplan simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// A plan file (its deployment, replicas and service levels) or a scenario file (the planner's recommendation, its request rate and length ranges).
    pub file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(flatten)]
    pub pools: PoolArgs,
    /// Requests per second (open loop); without --rate or --trace, a closed loop of --concurrency clients.
    #[arg(long, conflicts_with = "trace")]
    pub rate: Option<f64>,
    /// Inter-arrival times of --rate.
    #[arg(long, default_value = "poisson", value_parser = choice(&Process::ALL, Process::name))]
    pub arrivals: Process,
    /// Coefficient of variation of gamma inter-arrival times (1 = Poisson, above 1 bursty).
    #[arg(long, default_value_t = 2.0)]
    pub cv: f64,
    /// A trace of requests: CSV `arrival_s,isl,osl`, Azure's `TIMESTAMP,ContextTokens,GeneratedTokens`, or Mooncake JSON lines.
    #[arg(long)]
    pub trace: Option<std::path::PathBuf>,
    /// Prompt lengths around --isl: fixed, uniform:MIN-MAX, lognormal:CV, or a CSV histogram file `tokens,weight`. Left fixed, a scenario's length range applies, else the --client's lengths (inferencemax: uniform in [0.8, 1] × --isl).
    #[arg(long, default_value = "fixed")]
    pub isl_dist: String,
    /// Output lengths around --osl (as --isl-dist).
    #[arg(long, default_value = "fixed")]
    pub osl_dist: String,
    /// Requests to send (default 10,000; a trace: all of its own).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Stop sending after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The first requests sent that the latency figures and goodput leave out (a benchmark's warm-up); they still run.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Replicas behind the router (default: the plan's, else 1).
    #[arg(long)]
    pub replicas: Option<u32>,
    /// How the router picks a replica.
    #[arg(long, default_value = "least-loaded", value_parser = choice(&Router::ALL, Router::name))]
    pub router: Router,
    /// TTFT service level of the goodput, in ms (default: the file's).
    #[arg(long)]
    pub ttft_slo: Option<f64>,
    /// TPOT service level of the goodput, in ms (default: the file's).
    #[arg(long)]
    pub tpot_slo: Option<f64>,
    /// End-to-end latency service level of the goodput, in ms.
    #[arg(long)]
    pub e2e_slo: Option<f64>,
    /// Draw the queue and KV cache use over time as SVG to this file.
    #[arg(long)]
    pub timeline: Option<std::path::PathBuf>,
    /// Draw a progress bar of the requests completed on stderr even when it is not a terminal (on a terminal it is drawn anyway).
    #[arg(long)]
    pub progress: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

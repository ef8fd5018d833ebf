//! `moeplan launch`: the engine commands and deployment files that run a
//! plan, for vLLM, SGLang or TensorRT-LLM, as shell scripts or Kubernetes
//! manifests (LeaderWorkerSet, NVIDIA Dynamo, llm-d).
//!
//! Correct by construction: the layout is first read as the engine can
//! express it (`express.rs`: a layout it cannot run is refused with the rule
//! and the nearest one it can); the memory settings come from
//! `crate::memory` at the plan's concurrency (`Settings`); the commands
//! (`command.rs`) are checked against the engine's flag table, extracted
//! from its released source (`flags.rs`, `engines/flags/*.toml`); the pods
//! of a target (`target.rs`) never ask for more GPUs than a node has and
//! add up to the plan's GPUs.

mod bench;
mod command;
pub mod express;
pub mod flags;
mod k8s;
mod target;

use crate::dtype::DType;
use crate::engine::Engine;
use crate::hardware::Gpu;
use crate::layout::Layout;
use crate::memory::EngineConfig;
use crate::model::{Model, Requantised};
use crate::replica::{Deployment, PoolRole};
use crate::units::Tokens;
use serde::Serialize;

pub(crate) use express::{Refusal, Split};

/// The NVIDIA Dynamo release whose runtime images and CRD the `dynamo` target writes for.
pub(crate) const DYNAMO_VERSION: &str = "0.9.0";

/// What the files are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Shell scripts, one per role, run on each node by hand or by a scheduler.
    Shell,
    /// Plain Kubernetes: a LeaderWorkerSet and a Service per role.
    Lws,
    /// NVIDIA Dynamo: one DynamoGraphDeployment.
    Dynamo,
    /// llm-d: the values of its modelservice Helm chart (vLLM only).
    LlmD,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 4] = [Target::Shell, Target::Lws, Target::Dynamo, Target::LlmD];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Shell => "shell",
            Target::Lws => "lws",
            Target::Dynamo => "dynamo",
            Target::LlmD => "llm-d",
        }
    }
}

/// Everything `launch` needs: a resolved deployment and how to run it.
pub struct Request<'a> {
    /// The deployment (one aggregated replica, or the two pools).
    pub deployment: &'a Deployment,
    /// Copies of the aggregated replica (ignored when disaggregated: the
    /// pools carry their worker counts).
    pub replicas: u32,
    /// The engine to run.
    pub engine: Engine,
    /// The engine version asked for (default: the one its flag table was read from).
    pub engine_version: Option<String>,
    /// What to write.
    pub target: Target,
    /// The weights the engine loads.
    pub weights: Weights,
    /// The longest prompt + output a request may have (the engine's maximum model length).
    pub max_context: u64,
    /// The container image (default: the engine's release image of its version).
    pub image: Option<String>,
}

/// The weights a launch loads: a Hugging Face id or a directory the engine
/// can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Weights {
    /// The model's own checkpoint: it stores the weights as it was
    /// published, so the plan must store them so too.
    Checkpoint(String),
    /// Weights the user names, taken to be stored as the plan stores them.
    Given(String),
}

impl Weights {
    /// Where the engine reads them.
    pub fn path(&self) -> &str {
        match self {
            Weights::Checkpoint(p) | Weights::Given(p) => p,
        }
    }
}

/// The engine settings of one role, each derived from moeplan's memory
/// model at the plan's concurrency.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Settings {
    /// Requests in flight on one replica (worker) of the role.
    pub concurrency: u64,
    /// Requests one attention-DP rank runs at once (its scheduler cap).
    pub max_running_per_rank: u64,
    /// Tokens one scheduler step may carry (the engine's chunked-prefill budget).
    pub step_tokens: u64,
    /// The longest request (prompt + output).
    pub max_context: u64,
    /// KV cache type.
    pub kv_cache_dtype: DType,
    /// Fraction of GPU memory the engine takes (vLLM `gpu_memory_utilization`).
    pub memory_fraction: f64,
    /// SGLang `mem_fraction_static`: weights and KV pool over GPU memory.
    pub static_fraction: f64,
    /// TensorRT-LLM `free_gpu_memory_fraction`: KV pool over what the weights and activations leave.
    pub kv_free_fraction: f64,
    /// Largest batch captured as a CUDA graph.
    pub(crate) cuda_graph_max_batch: u64,
    /// Redundant expert slots (EPLB).
    pub redundant_experts: u32,
}

/// One node of a replica and the command it runs.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Node {
    /// Rank of the node inside its replica (0 leads).
    pub node_rank: u32,
    /// GPUs it uses.
    pub gpus: u32,
    /// The shell command (placeholders: `$LEADER_ADDR`, `$MODEL_PATH` where the target sets it).
    pub command: String,
}

/// One role of the deployment: its replicas and the nodes of one replica.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Role {
    /// Aggregated, prefill or decode.
    pub role: PoolRole,
    /// Copies of the replica (workers).
    pub replicas: u32,
    /// The replica's layout as the engine runs it.
    pub layout: Layout,
    /// GPUs of one replica.
    pub gpus_per_replica: u32,
    /// The settings its commands carry.
    pub settings: Settings,
    /// The nodes of one replica.
    pub nodes: Vec<Node>,
}

/// One file to write.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct File {
    /// Path relative to the output folder.
    pub path: String,
    /// Its text.
    pub content: String,
}

/// Everything that runs a plan.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Launch {
    /// The engine.
    pub engine: Engine,
    /// Its version (the one whose flags were checked).
    pub engine_version: String,
    /// What the files are for.
    pub target: Target,
    /// GPUs of the whole deployment.
    pub gpus: u64,
    /// GPUs per node.
    pub gpus_per_node: u32,
    /// Every role.
    pub roles: Vec<Role>,
    /// The files: launch scripts or manifests, engine configs, the benchmark.
    pub files: Vec<File>,
    /// What to know before running them.
    pub notes: Vec<String>,
    /// The user profile in use (`--profile`), and whether it applies to
    /// the deployment (its figures; the files' settings come from the
    /// memory model, which no profile changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::ProfileUse>,
}

/// Why a deployment cannot be launched as asked.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LaunchError {
    /// No engine was named.
    #[error("launch needs an engine: --engine vllm, sglang or trtllm")]
    NoEngine,
    /// The engine version has no flag table.
    #[error(
        "no flag table for {engine} {asked}: moeplan checks its flags against {engine} {}", known.join(", ")
    )]
    UnknownVersion {
        /// The engine.
        engine: &'static str,
        /// The version asked for.
        asked: String,
        /// The versions there are tables of, newest first.
        known: Vec<String>,
    },
    /// The target cannot run this deployment as planned.
    #[error("{target}: {reason}")]
    Target {
        /// The target.
        target: &'static str,
        /// Why.
        reason: String,
    },
    /// The target does not run this engine.
    #[error("{target} runs vLLM only; use --target shell, lws or dynamo for {engine}")]
    TargetEngine {
        /// The target.
        target: &'static str,
        /// The engine.
        engine: &'static str,
    },
    /// A role's layout cannot be expressed by the engine.
    #[error("{role}: {refusal}")]
    Inexpressible {
        /// The role.
        role: PoolRole,
        /// The rule and the nearest layout the engine can run.
        refusal: Refusal,
    },
    /// The plan stores weights otherwise than the checkpoint the engine
    /// would load: moeplan's commands load a checkpoint as it is stored
    /// (they pass no online quantisation).
    #[error("the plan stores the {} weights as {}, but {checkpoint} stores them as {}, and the commands moeplan writes load a checkpoint as it is stored", .requantised.group.name(), .requantised.planned, .requantised.checkpoint)]
    Weights {
        /// The checkpoint.
        checkpoint: String,
        /// The first group stored otherwise, in both types.
        requantised: Requantised,
    },
    /// moeplan emitted a flag its table does not hold (a bug: exit 3).
    #[error("internal: an emitted command breaks the engine's flag table: {0}")]
    Unchecked(String),
    /// The planned requests do not fit in memory.
    #[error("{role}: {concurrency} requests of {context} tokens do not fit on {layout} ({fit} do); lower the concurrency or add GPUs")]
    DoesNotFit {
        /// The role.
        role: PoolRole,
        /// Its layout.
        layout: Layout,
        /// Requests planned on one replica.
        concurrency: u64,
        /// Their context.
        context: u64,
        /// Requests that fit.
        fit: u64,
    },
}

/// One role before its commands: what `command.rs` and `target.rs` read.
pub(crate) struct RolePlan<'a> {
    pub(crate) role: PoolRole,
    pub(crate) replicas: u32,
    pub(crate) layout: Layout,
    pub(crate) split: Split,
    pub(crate) settings: Settings,
    pub(crate) model: &'a Model,
    pub(crate) gpu: &'a Gpu,
    /// Disaggregated: the other pool exists and a KV connector is needed.
    pub(crate) disaggregated: bool,
}

/// The context of a launch shared by every role.
pub(crate) struct Ctx<'a> {
    pub(crate) engine: Engine,
    pub(crate) version: &'a str,
    /// The flags of that version: where releases spell a setting
    /// differently, the command writes the spelling this table holds.
    pub(crate) table: &'static flags::FlagTable,
    pub(crate) target: Target,
    pub(crate) model_path: &'a str,
    /// What a benchmark row names as the model and its weight type.
    pub(crate) measured_as: MeasuredAs,
    /// Where TensorRT-LLM's YAML configs are read from.
    pub(crate) config_dir: &'a str,
    /// The container image asked for.
    pub(crate) image: Option<&'a str>,
}

/// The engine commands and files of a deployment.
pub fn launch(req: &Request) -> Result<Launch, LaunchError> {
    let table = flag_table(req)?;
    let version = table.version.as_str();
    if req.target == Target::LlmD && req.engine != Engine::Vllm {
        return Err(LaunchError::TargetEngine {
            target: req.target.name(),
            engine: req.engine.name(),
        });
    }
    checkpoint_stores_the_plan(req)?;
    let roles = role_plans(req, version)?;
    target_limits(req, table, &roles)?;
    let ctx = Ctx {
        engine: req.engine,
        version,
        table,
        target: req.target,
        model_path: req.weights.path(),
        measured_as: measured_as(req),
        config_dir: match req.target {
            Target::Shell => ".",
            Target::Lws | Target::Dynamo | Target::LlmD => target::CONFIG_MOUNT,
        },
        image: req.image.as_deref(),
    };
    let out_roles: Vec<Role> = roles.iter().map(|r| command::role(&ctx, r)).collect();
    for r in &out_roles {
        for n in &r.nodes {
            table
                .check_command(&n.command)
                .map_err(LaunchError::Unchecked)?;
        }
    }
    if req.engine == Engine::Trtllm {
        for p in &roles {
            table
                .check_config(&command::trtllm_config(p, target::TRTLLM_TRANSCEIVER))
                .map_err(LaunchError::Unchecked)?;
        }
    }
    bench::check_client(&ctx, req.deployment.workload().client).map_err(LaunchError::Unchecked)?;
    if req.target == Target::Dynamo {
        for p in &roles {
            k8s::check_dynamo_worker(&ctx, p).map_err(LaunchError::Unchecked)?;
        }
    }
    let gpu = req.deployment.gpu();
    let files = target::files(&ctx, &roles, &out_roles, req);
    Ok(Launch {
        engine: req.engine,
        engine_version: version.to_string(),
        target: req.target,
        gpus: out_roles
            .iter()
            .map(|r| r.replicas as u64 * r.gpus_per_replica as u64)
            .sum(),
        gpus_per_node: gpu.gpus_per_node,
        notes: target::notes(&ctx, &roles),
        roles: out_roles,
        files,
        profile: req.deployment.profile_use(),
    })
}

/// The flag table of the engine version asked for; by default the newest,
/// or for Dynamo the release its runtime image pins.
fn flag_table(req: &Request) -> Result<&'static flags::FlagTable, LaunchError> {
    let bundled = (req.target == Target::Dynamo)
        .then(|| flags::dynamo().bundles.get(req.engine.name()))
        .flatten();
    let asked = req
        .engine_version
        .as_ref()
        .or(bundled.filter(|v| flags::select(req.engine, v).is_ok_and(|t| &t.version == *v)));
    match asked {
        None => flags::table(req.engine).ok_or(LaunchError::NoEngine),
        Some(v) => flags::select(req.engine, v).map_err(|known| match known.as_slice() {
            [] => LaunchError::NoEngine,
            _ => LaunchError::UnknownVersion {
                engine: req.engine.name(),
                asked: v.clone(),
                known,
            },
        }),
    }
}

/// A launch needs weights stored as the plan stores them
/// (`Model::requantised`): the model's own checkpoint, unless the plan
/// changed its types; named weights that the catalog knows (a Hugging Face
/// id of the model or of a quantised re-release), unless their types
/// differ from the plan's. Other named weights are taken as planned.
fn checkpoint_stores_the_plan(req: &Request) -> Result<(), LaunchError> {
    let model = req.deployment.model();
    let (checkpoint, requantised) = match &req.weights {
        Weights::Checkpoint(c) => (c, model.requantised()),
        Weights::Given(g) => {
            let Some(Ok(known)) = crate::catalog::model_by_hf_id(g) else {
                return Ok(());
            };
            (g, model.requantised_against(&known))
        }
    };
    match requantised {
        None => Ok(()),
        Some(requantised) => Err(LaunchError::Weights {
            checkpoint: checkpoint.clone(),
            requantised,
        }),
    }
}

/// What the benchmark's row (`bench_to_csv.py`) names as the model and its
/// weight type, for `calibrate` to estimate the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MeasuredAs {
    /// The model cell: a catalog-resolvable id, or the weights' path.
    pub(crate) model: String,
    /// The weight-type cell (None: the checkpoint's own, left blank).
    pub(crate) weight_dtype: Option<DType>,
}

/// The checkpoint launched, as it stores its weights; named weights as the
/// catalog model (where the catalog knows it, else their path) stored as
/// the plan stores them.
fn measured_as(req: &Request) -> MeasuredAs {
    let model = req.deployment.model();
    match &req.weights {
        Weights::Checkpoint(p) => MeasuredAs {
            model: p.clone(),
            weight_dtype: None,
        },
        Weights::Given(p) => MeasuredAs {
            model: crate::catalog::hf_id(&model.name).map_or_else(|| p.clone(), String::from),
            weight_dtype: model.weights_stored_as(),
        },
    }
}

/// What a target cannot do: llm-d's chart passes no node rank to a
/// multi-node vLLM replica; Dynamo's runtime image runs the engine release
/// Dynamo pins, so another version needs an image of its own; a Kubernetes
/// target needs a real image, which a flag table read from unreleased
/// source does not name.
fn target_limits(
    req: &Request,
    table: &flags::FlagTable,
    roles: &[RolePlan],
) -> Result<(), LaunchError> {
    let version = &table.version;
    let refuse = |reason: String| {
        Err(LaunchError::Target {
            target: req.target.name(),
            reason,
        })
    };
    if req.target == Target::LlmD && roles.iter().any(|r| r.split.nodes > 1) {
        return refuse("the modelservice chart starts every pod of a multi-node replica as node 0 (it passes no start rank): use --target lws or dynamo".into());
    }
    let bundled = flags::dynamo().bundles.get(req.engine.name());
    if req.target == Target::Dynamo && req.image.is_none() && table.release {
        if let Some(b) = bundled.filter(|b| **b != table.version) {
            return refuse(format!(
                "Dynamo {DYNAMO_VERSION}'s runtime image runs {e} {b}, not {e} {version}: launch {b} (--engine-version {b}) or give an image of {version} with --image",
                e = req.engine.name()
            ));
        }
    }
    if req.target != Target::Shell && !table.release && req.image.is_none() {
        return refuse(format!(
            "{}'s flag table was read from unreleased source ({version}), which names no image: give one with --image",
            req.engine.name()
        ));
    }
    Ok(())
}

/// Each role of the deployment, read as the engine runs it, with its settings.
fn role_plans<'a>(req: &'a Request, version: &str) -> Result<Vec<RolePlan<'a>>, LaunchError> {
    match req.deployment {
        Deployment::Aggregated(r) => {
            let one = PoolSpec {
                role: PoolRole::Aggregated,
                replicas: req.replicas.max(1),
                layout: r.layout,
                concurrency: r.workload.concurrency,
                redundant_experts: r.redundant_experts,
            };
            Ok(vec![plan_role(
                req,
                version,
                &one,
                (&r.model, &r.gpu, &r.engine),
            )?])
        }
        Deployment::Disaggregated(d) => {
            let c = d.workload.concurrency;
            let pools = [
                PoolSpec {
                    role: PoolRole::Prefill,
                    replicas: d.prefill.workers.max(1),
                    layout: d.prefill.layout,
                    concurrency: d.prefill.prompts_per_rank * d.prefill.layout.dp as u64,
                    redundant_experts: d.prefill.redundant_experts,
                },
                PoolSpec {
                    role: PoolRole::Decode,
                    replicas: d.decode.workers.max(1),
                    layout: d.decode.layout,
                    concurrency: c.div_ceil(d.decode.workers.max(1) as u64),
                    redundant_experts: d.decode.redundant_experts,
                },
            ];
            pools
                .iter()
                .map(|p| plan_role(req, version, p, (&d.model, &d.gpu, &d.engine)))
                .collect()
        }
    }
}

/// One pool as the plan states it.
struct PoolSpec {
    role: PoolRole,
    replicas: u32,
    layout: Layout,
    concurrency: u64,
    /// Its redundant expert slots (EPLB) per replica.
    redundant_experts: u32,
}

/// A role's layout as the engine expresses it, split over nodes, with its
/// settings from the memory model.
fn plan_role<'a>(
    req: &Request,
    version: &str,
    p: &PoolSpec,
    (model, gpu, deployed): (&'a Model, &'a Gpu, &EngineConfig),
) -> Result<RolePlan<'a>, LaunchError> {
    let engine = &at_version(req.engine, version, deployed, gpu);
    let redundant_experts = p.redundant_experts;
    let inexpressible = |refusal| LaunchError::Inexpressible {
        role: p.role,
        refusal,
    };
    express::check(req.engine, model, gpu, &p.layout, redundant_experts).map_err(inexpressible)?;
    let split = express::split(req.engine, &p.layout, gpu.gpus_per_node).map_err(inexpressible)?;
    let settings = settings(
        model,
        gpu,
        &p.layout,
        engine,
        redundant_experts,
        p,
        req.max_context,
    )?;
    Ok(RolePlan {
        role: p.role,
        replicas: p.replicas,
        layout: p.layout,
        split,
        settings,
        model,
        gpu,
        disaggregated: p.role != PoolRole::Aggregated,
    })
}

/// The deployment's engine settings at `version`: where the deployment
/// kept the engine's default, the version's preset
/// (`engines/versions/<engine>/<version>.toml`); what a flag set stays.
fn at_version(engine: Engine, version: &str, deployed: &EngineConfig, gpu: &Gpu) -> EngineConfig {
    fn pick<T: PartialEq>(deployed: T, default: T, at: T) -> T {
        if deployed == default {
            at
        } else {
            deployed
        }
    }
    let base = engine.config(gpu.memory);
    let at = engine.config_of(engine.spec_at(version), gpu.memory);
    // The memory fraction and what it is a fraction of go together.
    let share = |c: &EngineConfig| (c.max_memory_fraction, c.memory_share);
    let (max_memory_fraction, memory_share) = pick(share(deployed), share(&base), share(&at));
    EngineConfig {
        max_step_tokens: pick(
            deployed.max_step_tokens,
            base.max_step_tokens,
            at.max_step_tokens,
        ),
        max_running_requests: pick(
            deployed.max_running_requests,
            base.max_running_requests,
            at.max_running_requests,
        ),
        max_memory_fraction,
        memory_share,
        runtime_reserve: pick(
            deployed.runtime_reserve,
            base.runtime_reserve,
            at.runtime_reserve,
        ),
        cuda_graphs: pick(deployed.cuda_graphs, base.cuda_graphs, at.cuda_graphs),
        ..*deployed
    }
}

/// Memory settings that hold the role's planned requests at their longest,
/// in each engine's terms, from `crate::memory` (the one memory model).
fn settings(
    model: &Model,
    gpu: &Gpu,
    layout: &Layout,
    cfg: &EngineConfig,
    redundant_experts: u32,
    p: &PoolSpec,
    max_context: u64,
) -> Result<Settings, LaunchError> {
    let context = Tokens::new(max_context.max(1)).get();
    let concurrency = p.concurrency.max(1);
    let mem = crate::memory::memory(
        model,
        gpu,
        layout,
        cfg,
        redundant_experts,
        concurrency,
        context,
    );
    if !mem.fits() {
        return Err(LaunchError::DoesNotFit {
            role: p.role,
            layout: *layout,
            concurrency,
            context,
            fit: crate::memory::max_concurrency(
                model,
                gpu,
                layout,
                cfg,
                redundant_experts,
                context,
            ),
        });
    }
    let capacity = mem.capacity_bytes.0;
    let usable = mem.usable_bytes.0;
    let fixed = mem.weights_bytes.0 + mem.activation_bytes.0 + mem.other_bytes.0;
    let per_rank = concurrency.div_ceil(layout.dp as u64);
    Ok(Settings {
        concurrency,
        max_running_per_rank: per_rank,
        step_tokens: cfg.max_step_tokens,
        max_context: context,
        kv_cache_dtype: model.dtypes.kv_cache,
        // vLLM's share of the whole GPU: the engine's own where it states
        // one, else (TensorRT-LLM's share of the free memory) its equivalent.
        memory_fraction: ceil3(usable / capacity),
        // SGLang's pool is this share of the GPU less what is in use when it
        // profiles (weights, CUDA context, buffers): activations stay outside.
        static_fraction: ceil3((usable - mem.activation_bytes.0) / capacity)
            .min(ceil3(usable / capacity)),
        kv_free_fraction: ceil3((usable - fixed) / (capacity - fixed)).min(1.0),
        cuda_graph_max_batch: per_rank.min(cfg.cuda_graphs.max_batch).max(1),
        redundant_experts,
    })
}

/// Rounded up to three decimals, so a fraction never grants less than the
/// planned requests need (the engine's share stays within a tenth of a
/// percent of the computed one).
fn ceil3(x: f64) -> f64 {
    // Less a hair, so 0.9 stays 0.9 rather than 0.901.
    ((x * 1000.0) - 1e-6).ceil() / 1000.0
}

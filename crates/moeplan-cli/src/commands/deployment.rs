//! The deployment flags `estimate` and `dag` share, turned into the inputs
//! of one estimate: model and GPU resolved, dtypes and efficiencies applied,
//! the layout folded, every flag checked.
use crate::args::{DeploymentArgs, EngineFlag, EstimateArgs, LeverArgs, PoolArgs};
use crate::output::{ArgError, Failure, Format};
use moeplan::bounds::{CONCURRENCY, GPUS_PER_NODE, TOKENS, WORKERS};
use moeplan::dtype::DType;
use moeplan::hardware::Gpu;
use moeplan::layout::{Layout, LayoutProblem};
use moeplan::memory::{Engine, EngineConfig};
use moeplan::model::Model;
pub use moeplan::replica::Replica as Deployment;
use moeplan::replica::{Deployment as ReplicaDeployment, Disaggregated};
use moeplan::serving::disagg::Pool;
use moeplan::serving::Workload;
use moeplan::spec::scenario::{KvCache, Lengths, Scenario};
use moeplan::units::Fraction;
use std::fmt::Write;

/// A dtype flag's value, parsed.
fn dtype(s: &Option<String>, flag: &str, format: Format) -> Result<Option<DType>, Failure> {
    match s {
        None => Ok(None),
        Some(s) => s
            .parse::<DType>()
            .map(Some)
            .map_err(|e| ArgError::failure(format!("--{flag}: {e}"), None, format)),
    }
}

/// The hint of a KV cache type the GPU or the engine cannot hold.
const KV_HINT: &str = "use bf16, fp16 or fp8 (nvfp4 on Blackwell with TensorRT-LLM)";

/// `--weight-dtype` (attention, experts and dense weights) and `--kv-dtype`
/// over a model's dtypes (`Model::store_weights`, `Model::store_kv_cache`,
/// as a scenario's `model.weight_dtype` and `model.kv_cache_dtype`).
fn apply_dtypes(
    a: &LeverArgs,
    model: &mut Model,
    gpu: &Gpu,
    format: Format,
) -> Result<(), Failure> {
    if let Some(w) = dtype(&a.weight_dtype, "weight-dtype", format)? {
        model.store_weights(w);
    }
    if let Some(k) = dtype(&a.kv_dtype, "kv-dtype", format)? {
        model.store_kv_cache(k, gpu).map_err(|m| {
            ArgError::failure(format!("--kv-dtype {k}: {m}"), Some(KV_HINT.into()), format)
        })?;
    }
    Ok(())
}

/// `--kv-dtype auto`: the planner's choice, which only a scenario offers.
fn kv_auto(a: &LeverArgs) -> bool {
    a.kv_dtype
        .as_deref()
        .is_some_and(|k| k.eq_ignore_ascii_case("auto"))
}

/// The lever flags over a scenario, after its engine is settled: the
/// dtypes (`auto` lets the planner search the KV cache type), redundant
/// expert slots and routing skew, each checked as the scenario's own keys
/// are. `plan` and every command reading a scenario or plan file use it.
pub fn apply_levers(a: &LeverArgs, s: &mut Scenario, format: Format) -> Result<(), Failure> {
    let typed = LeverArgs {
        kv_dtype: a.kv_dtype.clone().filter(|_| !kv_auto(a)),
        ..a.clone()
    };
    apply_dtypes(&typed, &mut s.model, &s.gpu, format)?;
    if kv_auto(a) {
        s.kv_cache = KvCache::Searched;
    } else if typed.kv_dtype.is_some() {
        s.kv_cache = KvCache::Stated;
        kv_dtype_on_engine(&typed, &s.model, s.serving_engine(), format)?;
    }
    if let Some(r) = a.redundant_experts {
        s.redundant_experts = moeplan::spec::scenario::check_redundant_experts(&s.model, &s.gpu, r)
            .map_err(|(m, hint)| {
                ArgError::failure(format!("--redundant-experts {r}: {m}"), Some(hint), format)
            })?;
    }
    if a.routing_skew.is_some() {
        s.routing_skew = skew(a, format)?;
    }
    Ok(())
}

/// `--kv-dtype`, when given, is a type the serving engine stores (its
/// `kv_cache_dtypes`, `engines/*.toml`): an NVFP4 cache is TensorRT-LLM's
/// alone, and an estimate of an engine that cannot store it is of nothing
/// that runs.
fn kv_dtype_on_engine(
    a: &LeverArgs,
    model: &Model,
    engine: Engine,
    format: Format,
) -> Result<(), Failure> {
    if a.kv_dtype.is_none() {
        return Ok(());
    }
    let kv = model.dtypes.kv_cache;
    engine.stores_kv_cache(kv).map_err(|m| {
        ArgError::failure(
            format!("--kv-dtype {kv}: {m}"),
            Some("choose an engine that stores it with --engine, or --kv-dtype fp8".into()),
            format,
        )
    })
}

/// A flag checked against its physical bound (`moeplan::bounds`).
pub fn bounded(
    v: Option<f64>,
    flag: &str,
    range: moeplan::bounds::Range,
    format: Format,
) -> Result<Option<f64>, Failure> {
    v.map(|x| range.check(x))
        .transpose()
        .map_err(|m| ArgError::failure(format!("--{flag} {m}"), Some(range.why.into()), format))
}

/// `--routing-skew`, within its bound (NaN, negative or infinite exponents
/// are bad input); 0 when not given.
fn skew(a: &LeverArgs, format: Format) -> Result<f64, Failure> {
    Ok(bounded(
        a.routing_skew,
        "routing-skew",
        moeplan::bounds::ROUTING_SKEW,
        format,
    )?
    .unwrap_or(0.0))
}

/// `--max-memory-fraction`: the share of the GPU's memory a deployment may
/// use, within `bounds::MEMORY_FRACTION`.
pub fn memory_limit(v: Option<f64>, format: Format) -> Result<Option<Fraction>, Failure> {
    let f = bounded(
        v,
        "max-memory-fraction",
        moeplan::bounds::MEMORY_FRACTION,
        format,
    )?;
    // Within [0.05, 1], so a fraction.
    Ok(f.and_then(Fraction::new))
}

/// An efficiency flag (`--mfu`, `--bandwidth-utilization`): 0.6 means 60% of peak.
pub fn fraction(v: Option<f64>, flag: &str, format: Format) -> Result<Option<Fraction>, Failure> {
    let f = bounded(v, flag, moeplan::bounds::EFFICIENCY, format)?;
    // Within [0.01, 1], so a fraction.
    Ok(f.and_then(Fraction::new))
}

/// A count flag, which must be at least 1 when given.
pub fn at_least_one<T: Copy + Into<u64>>(
    flag: &str,
    v: Option<T>,
    format: Format,
) -> Result<Option<T>, Failure> {
    match v {
        Some(n) if n.into() == 0 => Err(ArgError::failure(
            format!("--{flag} must be at least 1"),
            None,
            format,
        )),
        v => Ok(v),
    }
}

/// A count flag within its bound (`moeplan::bounds`): 0, and a value
/// above the bound, are bad input naming it.
pub fn within<T: Copy + Into<u64>>(
    flag: &str,
    v: Option<T>,
    range: moeplan::bounds::Range,
    format: Format,
) -> Result<Option<T>, Failure> {
    at_least_one(flag, v, format)?;
    match v.map(|n| range.check_count(n.into())) {
        Some(Err(m)) => Err(ArgError::failure(
            format!("--{flag} {m}"),
            Some(range.why.into()),
            format,
        )),
        _ => Ok(v),
    }
}

/// A latency flag in milliseconds, within `bounds::LATENCY_LIMIT`.
pub fn latency_ms(
    v: Option<f64>,
    flag: &str,
    format: Format,
) -> Result<Option<moeplan::units::Seconds>, Failure> {
    let range = moeplan::bounds::LATENCY_LIMIT;
    v.map(|ms| {
        range
            .check(ms / 1e3)
            .map(moeplan::units::Seconds::new)
            .map_err(|m| {
                ArgError::failure(
                    format!("--{flag} {ms} (ms): {m}"),
                    Some(range.why.into()),
                    format,
                )
            })
    })
    .transpose()
}

/// The parallel degrees the flags give one replica or one pool's worker
/// (None where not given).
#[derive(Clone, Copy)]
struct Degrees {
    pp: Option<u32>,
    tp: Option<u32>,
    cp: Option<u32>,
    dp: Option<u32>,
    ep: Option<u32>,
    etp: Option<u32>,
}

impl Degrees {
    /// `--pp`, `--tp`, `--cp`, `--dp`, `--ep`, `--etp`: an aggregated replica's.
    fn replica(a: &DeploymentArgs) -> Self {
        Degrees {
            pp: a.pp,
            tp: a.tp,
            cp: a.cp,
            dp: a.dp,
            ep: a.ep,
            etp: a.etp,
        }
    }

    /// `--prefill-*`: a prefill worker's (pools have no context parallelism).
    fn prefill(p: &PoolArgs) -> Self {
        Degrees {
            pp: p.prefill_pp,
            tp: p.prefill_tp,
            cp: None,
            dp: p.prefill_dp,
            ep: p.prefill_ep,
            etp: p.prefill_etp,
        }
    }

    /// `--decode-*`: a decode worker's.
    fn decode(p: &PoolArgs) -> Self {
        Degrees {
            pp: p.decode_pp,
            tp: p.decode_tp,
            cp: None,
            dp: p.decode_dp,
            ep: p.decode_ep,
            etp: p.decode_etp,
        }
    }

    /// An input error when these degrees (over `base` where not given) ask
    /// for more GPUs than a replica may span: checked before any product.
    fn within_bounds(&self, base: Layout, format: Format) -> Result<(), Failure> {
        Layout::degrees_within_bounds(
            self.pp.unwrap_or(base.pp),
            self.tp.unwrap_or(base.tp),
            self.cp.unwrap_or(base.cp),
            self.dp.unwrap_or(base.dp),
            self.ep.unwrap_or(1),
            self.etp.unwrap_or(1),
        )
        .map_err(|m| {
            ArgError::failure(
                m,
                Some("degrees multiply: --tp 8 --dp 8 is 64 GPUs".into()),
                format,
            )
        })
    }

    /// Whether any degree was given.
    fn any(&self) -> bool {
        [self.pp, self.tp, self.cp, self.dp, self.ep, self.etp]
            .iter()
            .any(Option::is_some)
    }

    /// The layout of these degrees (1 where not given), experts folded as
    /// engines do.
    fn layout(&self, model: &Model) -> Layout {
        let mut l = Layout::folded(
            self.pp.unwrap_or(1),
            self.tp.unwrap_or(1),
            self.cp.unwrap_or(1),
            self.dp.unwrap_or(1),
            self.ep,
            self.etp,
        );
        // A dense model has no experts: unless the user wrote an expert
        // split (which the layout check then rejects), there is none.
        if model.moe.is_none() && self.ep.is_none() && self.etp.is_none() {
            l.etp = 1;
        }
        l
    }

    /// `l` with these degrees over it (the expert split refolded), or `l`
    /// itself when none was given.
    fn over(&self, l: Layout) -> Layout {
        if !self.any() {
            return l;
        }
        // The file's expert parallelism stays unless a flag changes the
        // expert split: `--tp 4` over an ep8 plan keeps ep 8 (etp refolds),
        // never silently dropping it.
        let ep = match (self.ep, self.etp) {
            (None, None) => Some(l.ep),
            (ep, _) => ep,
        };
        Layout::folded(
            self.pp.unwrap_or(l.pp),
            self.tp.unwrap_or(l.tp),
            self.cp.unwrap_or(l.cp),
            self.dp.unwrap_or(l.dp),
            ep,
            self.etp,
        )
    }
}

/// Resolves the flags of `command`; every problem is an input error (exit 2).
pub fn resolve(a: &DeploymentArgs, command: &str, format: Format) -> Result<Deployment, Failure> {
    require(a, command, format)?;
    let workload = workload(a, format)?;
    at_least_one("max-step-tokens", a.max_step_tokens, format)?;
    at_least_one("max-running-requests", a.max_running_requests, format)?;
    let (model, gpu) = model_and_gpu(a, format)?;
    let mfu = fraction(a.mfu, "mfu", format)?;
    let bw = fraction(a.bandwidth_utilization, "bandwidth-utilization", format)?;
    let engine = engine(a, &gpu, format)?;
    kv_dtype_on_engine(&a.levers, &model, engine.engine, format)?;
    Degrees::replica(a).within_bounds(Layout::default(), format)?;
    Ok(Deployment {
        calibration: moeplan::profile::resolve_for(&model, &gpu, engine.engine, workload.client)
            .kernels
            .flat(mfu, bw),
        layout: Degrees::replica(a).layout(&model),
        workload,
        engine,
        redundant_experts: a.levers.redundant_experts.unwrap_or(0),
        routing_skew: skew(&a.levers, format)?,
        overlap: a.overlap.unwrap_or_default(),
        model,
        gpu,
    })
}

/// The flags a deployment cannot do without: an input error naming every
/// one missing.
fn require(a: &DeploymentArgs, command: &str, format: Format) -> Result<(), Failure> {
    let missing: Vec<&str> = [
        ("--model", a.model.is_none()),
        ("--gpu", a.gpu.is_none()),
        ("--isl", a.isl.is_none()),
        ("--osl", a.osl.is_none()),
        ("--concurrency", a.concurrency.is_none()),
    ]
    .iter()
    .filter(|x| x.1)
    .map(|x| x.0)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let help = if command == "dag" {
        "describe the deployment as for `moeplan estimate`, or give --scenario FILE to draw the planner's recommendation".to_string()
    } else {
        format!("e.g. moeplan {command} --model mixtral-8x7b --gpu h100-sxm --tp 2 --isl 1000 --osl 1000 --concurrency 64, or give a plan or scenario file")
    };
    Err(ArgError::failure(
        format!("moeplan {command} needs {}", missing.join(", ")),
        Some(help),
        format,
    ))
}

/// The lengths and requests in flight, each at least 1.
fn workload(a: &DeploymentArgs, format: Format) -> Result<Workload, Failure> {
    Ok(Workload {
        isl: moeplan::units::Tokens::new(within("isl", a.isl, TOKENS, format)?.unwrap_or(1)),
        osl: moeplan::units::Tokens::new(within("osl", a.osl, TOKENS, format)?.unwrap_or(1)),
        concurrency: within("concurrency", a.concurrency, CONCURRENCY, format)?.unwrap_or(1),
        cache_hit_rate: cache_hit_rate(a.cache_hit_rate, format)?.unwrap_or(Fraction::ZERO),
        client: a.client.unwrap_or_default(),
    })
}

/// `--cache-hit-rate`, within its bound (so a fraction).
pub(crate) fn cache_hit_rate(v: Option<f64>, format: Format) -> Result<Option<Fraction>, Failure> {
    let h = bounded(v, "cache-hit-rate", moeplan::bounds::CACHE_HIT_RATE, format)?;
    Ok(h.and_then(Fraction::new))
}

/// The model and the GPU the flags name, with the dtype and node-size
/// flags over them.
fn model_and_gpu(a: &DeploymentArgs, format: Format) -> Result<(Model, Gpu), Failure> {
    let mut model = moeplan::catalog::resolve_model(a.model.as_deref().unwrap_or_default())
        .map_err(Failure::input(format))?;
    let mut gpu = moeplan::catalog::resolve_gpu(a.gpu.as_deref().unwrap_or_default())
        .map_err(Failure::input(format))?;
    if kv_auto(&a.levers) {
        return Err(ArgError::failure(
            "--kv-dtype auto is the planner's choice: it needs a scenario".into(),
            Some("give a scenario file, or a KV cache type: bf16, fp16 or fp8".into()),
            format,
        ));
    }
    apply_dtypes(&a.levers, &mut model, &gpu, format)?;
    if let Some(n) = within("gpus-per-node", a.gpus_per_node, GPUS_PER_NODE, format)? {
        gpu.gpus_per_node = n;
    }
    Ok((model, gpu))
}

/// The engine `--engine` names on `gpu`: `auto` is the engine whose kernels
/// fit this GPU's measurements best (`profile::default_engine`).
pub fn engine_named(flag: EngineFlag, gpu: &Gpu) -> Engine {
    match flag {
        EngineFlag::Auto => moeplan::profile::default_engine(gpu),
        EngineFlag::Named(e) => e,
    }
}

/// `--engine` over a scenario's or plan's `hardware.engine`: `auto` clears
/// it (the best-fitting engine), a name sets it (and drops a version
/// stated for another engine).
pub fn apply_engine(flag: Option<EngineFlag>, s: &mut Scenario) {
    let stated = s.engine;
    match flag {
        None => {}
        Some(EngineFlag::Auto) => s.engine = None,
        Some(EngineFlag::Named(e)) => s.engine = Some(e),
    }
    if s.engine != stated {
        // The file's engine version is of the engine it stated.
        s.engine_version = None;
    }
}

/// The engine preset for this GPU (`--engine`, default auto), with the
/// explicit flags applied.
pub fn engine(a: &DeploymentArgs, gpu: &Gpu, format: Format) -> Result<EngineConfig, Failure> {
    let e = engine_named(a.engine.unwrap_or(EngineFlag::Auto), gpu);
    overrides(a, e.config(gpu.memory), format)
}

/// The explicit engine flags over `c`.
pub fn overrides(
    a: &DeploymentArgs,
    mut c: EngineConfig,
    format: Format,
) -> Result<EngineConfig, Failure> {
    if let Some(t) = a.max_step_tokens {
        c.max_step_tokens = t;
    }
    if let Some(r) = a.max_running_requests {
        c.max_running_requests = Some(r);
    }
    if let Some(f) = memory_limit(a.max_memory_fraction, format)? {
        c = c.limited_to(f);
    }
    Ok(c)
}

/// An invalid layout as an input error naming every rule it breaks.
pub fn invalid_layout(
    layout: &Layout,
    model: &str,
    gpu: &str,
    problems: &[LayoutProblem],
    format: Format,
) -> Failure {
    let mut msg = format!("invalid layout {layout} for {model} on {gpu}:");
    for p in problems {
        let _ = write!(msg, "\n  - [{}] {}: {}", p.rule, p.field, p.message);
    }
    let help = problems
        .iter()
        .map(|p| p.hint.clone())
        .collect::<Vec<_>>()
        .join("\n");
    ArgError::failure(msg, Some(help), format)
}

/// The deployment the flags alone describe: the pools of
/// `--prefill-*`/`--decode-*` (`--concurrency` the whole deployment's), else
/// one aggregated replica.
pub fn from_flags(
    f: &DeploymentArgs,
    pools: &PoolArgs,
    command: &str,
    format: Format,
) -> Result<(ReplicaDeployment, PlanFacts), Failure> {
    let d = if pools.any() {
        resolve_disaggregated(f, pools, command, format)?
    } else {
        ReplicaDeployment::Aggregated(resolve(f, command, format)?)
    };
    let facts = PlanFacts::of_flags(d.workload());
    Ok((d, facts))
}

/// What `moeplan estimate` estimates: a plan file's deployment with the
/// flags over it, a disaggregated deployment from the pool flags, or one
/// aggregated replica from the flags.
pub fn resolve_estimate(a: &EstimateArgs, format: Format) -> Result<ReplicaDeployment, Failure> {
    match &a.file {
        Some(path) => {
            let (d, origin, facts) = from_file_with_facts(
                path,
                &a.deployment,
                &a.pools,
                moeplan::search::Modes::Both,
                format,
            )?;
            if format == Format::Text {
                crate::output::print(&format!("from {origin}"));
                if let Some(note) = estimate_scope(&facts) {
                    crate::output::print(&note);
                }
            }
            Ok(d)
        }
        None => from_flags(&a.deployment, &a.pools, "estimate", format).map(|(d, _)| d),
    }
}

/// Warns on stderr when the longest request (`isl` + `osl`) is beyond the
/// context `model` was trained for: the estimate's own warning
/// (`Model::context_warning`), for the commands that print no estimate
/// (`plan`, `launch`, `simulate`).
pub fn warn_context(model: &Model, isl: u64, osl: u64) {
    if let Some(w) = model.context_warning(isl, osl) {
        crate::output::note(&format!("warning: {w}"));
    }
}

/// The longest prompt and output of a deployment: its file's length ranges
/// at their maxima, else its own lengths.
pub fn longest(d: &ReplicaDeployment, facts: &PlanFacts) -> (u64, u64) {
    match &facts.workload {
        Some(w) => (w.isl.max, w.osl.max),
        None => (d.workload().isl.get(), d.workload().osl.get()),
    }
}

/// What an estimate of a plan file covers when the plan is more than one
/// replica at one length: one replica, at the mean of its length ranges.
fn estimate_scope(facts: &PlanFacts) -> Option<String> {
    let mut parts = Vec::new();
    if facts.replicas > 1 {
        parts.push(format!("one of its {} replicas", facts.replicas));
    }
    if let Some(w) = facts
        .workload
        .as_ref()
        .filter(|w| !(w.isl.is_fixed() && w.osl.is_fixed()))
    {
        parts.push(format!(
            "at the mean of its lengths ({} + {} tokens); plan and audit judge TTFT and TPOT at the worse of these and the longest ({} + {})",
            w.isl.mean(),
            w.osl.mean(),
            w.isl.max,
            w.osl.max
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A disaggregated deployment from the flags alone (`--prefill-*`,
/// `--decode-*`; `--concurrency` counts the whole deployment's requests).
pub fn resolve_disaggregated(
    f: &DeploymentArgs,
    pools: &PoolArgs,
    command: &str,
    format: Format,
) -> Result<ReplicaDeployment, Failure> {
    let r = resolve(f, command, format)?;
    if Degrees::replica(f).any() {
        return Err(ArgError::failure(
            "--tp/--pp/--dp/--cp/--ep/--etp describe an aggregated replica; a disaggregated deployment takes --prefill-* and --decode-*".into(),
            Some("e.g. --prefill-tp 8 --decode-dp 8 --decode-ep 8".into()),
            format,
        ));
    }
    Ok(ReplicaDeployment::Disaggregated(disaggregate(
        r, f, pools, format,
    )?))
}

/// The disaggregated deployment of a resolved replica's model, GPU and
/// workload, with the pools of the flags (`--concurrency` is the whole
/// deployment's).
fn disaggregate(
    r: Deployment,
    a: &DeploymentArgs,
    p: &PoolArgs,
    format: Format,
) -> Result<Disaggregated, Failure> {
    within("prefill-workers", p.prefill_workers, WORKERS, format)?;
    within("decode-workers", p.decode_workers, WORKERS, format)?;
    at_least_one("prefill-batch", p.prefill_batch, format)?;
    let mfu = fraction(a.mfu, "mfu", format)?;
    let bw = fraction(a.bandwidth_utilization, "bandwidth-utilization", format)?;
    Degrees::prefill(p).within_bounds(Layout::default(), format)?;
    Degrees::decode(p).within_bounds(Layout::default(), format)?;
    let prefill = Degrees::prefill(p).layout(&r.model);
    let decode = Degrees::decode(p).layout(&r.model);
    let mut d = Disaggregated {
        calibration: moeplan::profile::resolve_disaggregated(&r.model, &r.gpu, r.engine.engine)
            .kernels
            .flat(mfu, bw),
        prefill: Pool {
            layout: prefill,
            workers: p.prefill_workers.unwrap_or(0),
            prompts_per_rank: p.prefill_batch.unwrap_or(1),
            redundant_experts: r.redundant_experts,
            overlap: r.overlap,
        },
        decode: Pool {
            layout: decode,
            workers: p.decode_workers.unwrap_or(0),
            prompts_per_rank: 1,
            redundant_experts: r.redundant_experts,
            overlap: r.overlap,
        },
        workload: r.workload,
        engine: r.engine,
        routing_skew: r.routing_skew,
        model: r.model,
        gpu: r.gpu,
        assumed: Vec::new(),
    };
    if let Some(problems) = invalid_pools(&d, format) {
        return Err(problems);
    }
    d.infer_workers();
    Ok(d)
}

/// An input error naming every rule either pool's layout breaks.
fn invalid_pools(d: &Disaggregated, format: Format) -> Option<Failure> {
    let mut msg = String::new();
    let mut hints = Vec::new();
    for (role, pool) in [("prefill", &d.prefill), ("decode", &d.decode)] {
        let (problems, _) = pool.layout.check(&d.model, &d.gpu, pool.redundant_experts);
        for p in problems {
            let _ = write!(
                msg,
                "\n  - {role} pool {}: [{}] {}: {}",
                pool.layout, p.rule, p.field, p.message
            );
            hints.push(p.hint);
        }
    }
    (!msg.is_empty()).then(|| {
        ArgError::failure(
            format!("invalid layout for {} on {}:{msg}", d.model.name, d.gpu.id),
            Some(hints.join("\n")),
            format,
        )
    })
}

/// The deployment flags that describe the scenario (model, GPU, lengths,
/// concurrency, efficiencies, node size, engine, then the levers: dtypes,
/// redundant experts, routing skew) over a scenario or
/// a plan's scenario: the one place flags are merged over a file.
pub fn apply_to_scenario(
    f: &DeploymentArgs,
    s: &mut Scenario,
    format: Format,
) -> Result<(), Failure> {
    if let Some(m) = &f.model {
        s.model = moeplan::catalog::resolve_model(m).map_err(Failure::input(format))?;
    }
    if let Some(g) = &f.gpu {
        s.gpu = moeplan::catalog::resolve_gpu(g).map_err(Failure::input(format))?;
    }
    let isl = within("isl", f.isl, TOKENS, format)?;
    let osl = within("osl", f.osl, TOKENS, format)?;
    let concurrency = within("concurrency", f.concurrency, CONCURRENCY, format)?;
    let w = &mut s.workload;
    if let Some(v) = isl {
        w.isl = Lengths { min: v, max: v };
    }
    if let Some(v) = osl {
        w.osl = Lengths { min: v, max: v };
    }
    if concurrency.is_some() {
        w.concurrency = concurrency;
    }
    if let Some(h) = cache_hit_rate(f.cache_hit_rate, format)? {
        s.workload.cache_hit_rate = h;
    }
    if let Some(c) = f.client {
        s.workload.client = c;
    }
    if let Some(m) = f.mfu {
        s.mfu = fraction(Some(m), "mfu", format)?;
    }
    if let Some(b) = f.bandwidth_utilization {
        s.bandwidth_utilization = fraction(Some(b), "bandwidth-utilization", format)?;
    }
    if let Some(n) = within("gpus-per-node", f.gpus_per_node, GPUS_PER_NODE, format)? {
        s.gpu.gpus_per_node = n;
    }
    // The file's memory limit is the scenario's (`Scenario::engine` applies
    // it to every pool): the flag replaces it there.
    if let Some(m) = memory_limit(f.max_memory_fraction, format)? {
        s.slo.max_memory_fraction = Some(m);
    }
    apply_engine(f.engine, s);
    apply_levers(&f.levers, s, format)
}

/// A plan or scenario file's deployment with the flags over it, and where
/// it comes from: a plan's own, or the planner's recommendation for a
/// scenario (told apart by content). Flags that do not apply are errors,
/// never ignored.
pub fn from_file(
    path: &std::path::Path,
    f: &DeploymentArgs,
    pools: &PoolArgs,
    format: Format,
) -> Result<(ReplicaDeployment, String), Failure> {
    from_file_with_facts(path, f, pools, moeplan::search::Modes::Both, format)
        .map(|(d, origin, _)| (d, origin))
}

/// What a plan states beyond one replica: its aggregated replicas and the
/// longest request of its workload (prompt + output at their maxima).
#[derive(Clone, Debug)]
pub struct PlanFacts {
    /// Copies of the aggregated replica (1 when disaggregated).
    pub replicas: u32,
    /// The longest request.
    pub max_context: u64,
    /// The file's TTFT and TPOT service levels.
    pub levels: (
        Option<moeplan::units::Seconds>,
        Option<moeplan::units::Seconds>,
    ),
    /// The file's workload (length ranges, request rate), flags over it.
    pub workload: Option<moeplan::spec::scenario::WorkloadSpec>,
    /// The engine and version the file states (`hardware.engine`, `hardware.engine_version`).
    pub engine_version: Option<(moeplan::engine::Engine, String)>,
}

impl PlanFacts {
    /// What flags alone say: one replica, fixed lengths, no levels.
    fn of_flags(w: moeplan::serving::Workload) -> PlanFacts {
        PlanFacts {
            replicas: 1,
            max_context: w.full_context(),
            levels: (None, None),
            workload: None,
            engine_version: None,
        }
    }

    fn of(plan: &moeplan::spec::plan::Plan) -> PlanFacts {
        let w = &plan.scenario.workload;
        PlanFacts {
            replicas: match &plan.deployment {
                moeplan::spec::plan::Deployment::Aggregated { pool } => pool.replicas,
                moeplan::spec::plan::Deployment::Disaggregated { .. } => 1,
            },
            max_context: w.isl.max + w.osl.max,
            levels: (plan.scenario.slo.ttft, plan.scenario.slo.tpot),
            workload: Some(w.clone()),
            engine_version: plan
                .scenario
                .engine
                .zip(plan.scenario.engine_version.clone()),
        }
    }
}

/// `from_file`, with the plan's facts; a scenario's recommendation is
/// searched among `modes`.
pub fn from_file_with_facts(
    path: &std::path::Path,
    f: &DeploymentArgs,
    pools: &PoolArgs,
    modes: moeplan::search::Modes,
    format: Format,
) -> Result<(ReplicaDeployment, String, PlanFacts), Failure> {
    let input = Failure::input(format);
    if moeplan::spec::plan::is_plan(path).map_err(&input)? {
        let (mut plan, _) = moeplan::spec::plan::read(path).map_err(&input)?;
        apply_to_scenario(f, &mut plan.scenario, format)?;
        if plan.scenario.kv_cache == KvCache::Searched {
            return Err(ArgError::failure(
                format!("{} is a plan, which runs one KV cache type: --kv-dtype auto is for a scenario the planner searches", path.display()),
                Some("give --kv-dtype bf16, fp16 or fp8".into()),
                format,
            ));
        }
        let facts = PlanFacts::of(&plan);
        let d = plan_deployment(plan, path, f, pools, format)?;
        return Ok((d, format!("the plan {}", path.display()), facts));
    }
    if Degrees::replica(f).any() || pools.any() {
        return Err(ArgError::failure(
            format!("{} is a scenario, whose layout is the planner's choice: --tp/--pp/--dp/--cp/--ep/--etp and the pool flags do not apply", path.display()),
            Some("give a plan file for a layout of your own, or describe it with the flags alone".into()),
            format,
        ));
    }
    let mut s = moeplan::spec::scenario::read(path).map_err(&input)?;
    apply_to_scenario(f, &mut s, format)?;
    let opts = moeplan::search::PlanOptions {
        modes,
        ..moeplan::search::PlanOptions::default()
    };
    let result = moeplan::search::plan(&s, &opts, &|_, _| {});
    let Some(rec) = result.recommended else {
        crate::output::note(&format!(
            "error: no valid layout of {} fits {}, so there is no deployment (exit 1)",
            s.model.name,
            path.display()
        ));
        return Err(Failure::Negative);
    };
    let origin = format!(
        "the planner's recommendation for {}: {}",
        s.name,
        moeplan::search::describe(&rec)
    );
    let plan = rec.figures.as_plan(&s);
    let facts = PlanFacts::of(&plan);
    // The planner already gave each pool the scenario's redundant slots
    // (none where ep = 1): the flag is not laid over its choice again.
    let searched = DeploymentArgs {
        levers: LeverArgs {
            redundant_experts: None,
            ..f.levers.clone()
        },
        ..f.clone()
    };
    Ok((
        plan_deployment(plan, path, &searched, pools, format)?,
        origin,
        facts,
    ))
}

/// A plan's deployment with the layout and pool flags over it.
fn plan_deployment(
    plan: moeplan::spec::plan::Plan,
    path: &std::path::Path,
    f: &DeploymentArgs,
    pools: &PoolArgs,
    format: Format,
) -> Result<ReplicaDeployment, Failure> {
    // The plan's memory limit, as `plan` and `audit` price it and as
    // `launch` writes it into the engine's flags.
    let engine = overrides(f, plan.scenario.engine_config(), format)?;
    match ReplicaDeployment::from_plan(&plan, engine) {
        ReplicaDeployment::Aggregated(r) => {
            over_aggregated(r, path, f, pools, format).map(ReplicaDeployment::Aggregated)
        }
        ReplicaDeployment::Disaggregated(d) => {
            over_disaggregated(d, path, f, pools, format).map(ReplicaDeployment::Disaggregated)
        }
    }
}

/// An aggregated plan's replica with the layout flags over it; the pool
/// flags do not apply.
fn over_aggregated(
    mut r: Deployment,
    path: &std::path::Path,
    f: &DeploymentArgs,
    pools: &PoolArgs,
    format: Format,
) -> Result<Deployment, Failure> {
    if pools.any() {
        return Err(ArgError::failure(
            format!(
                "{} is an aggregated plan: --prefill-*/--decode-* do not apply",
                path.display()
            ),
            Some("use --tp/--pp/--dp/--ep/--etp to change its layout".into()),
            format,
        ));
    }
    Degrees::replica(f).within_bounds(r.layout, format)?;
    r.layout = Degrees::replica(f).over(r.layout);
    if let Some(n) = f.levers.redundant_experts {
        r.redundant_experts = n;
    }
    if let Some(o) = f.overlap {
        r.overlap = o;
    }
    Ok(r)
}

/// A disaggregated plan with the pool flags over its pools; the layout
/// flags of an aggregated replica do not apply.
fn over_disaggregated(
    mut d: Disaggregated,
    path: &std::path::Path,
    f: &DeploymentArgs,
    p: &PoolArgs,
    format: Format,
) -> Result<Disaggregated, Failure> {
    if Degrees::replica(f).any() {
        return Err(ArgError::failure(
            format!(
                "{} is a disaggregated plan: --tp/--pp/--dp/--cp/--ep/--etp do not apply",
                path.display()
            ),
            Some("use --prefill-tp, --decode-dp, ... to change a pool".into()),
            format,
        ));
    }
    Degrees::prefill(p).within_bounds(d.prefill.layout, format)?;
    Degrees::decode(p).within_bounds(d.decode.layout, format)?;
    d.prefill.layout = Degrees::prefill(p).over(d.prefill.layout);
    d.decode.layout = Degrees::decode(p).over(d.decode.layout);
    if let Some(w) = p.prefill_workers {
        d.prefill.workers = w;
    }
    if let Some(w) = p.decode_workers {
        d.decode.workers = w;
    }
    if let Some(b) = p.prefill_batch {
        d.prefill.prompts_per_rank = b.max(1);
    }
    // The flag states both pools' slots; otherwise each keeps the plan's.
    if let Some(o) = f.overlap {
        d.prefill.overlap = o;
        d.decode.overlap = o;
    }
    if let Some(n) = f.levers.redundant_experts {
        d.prefill.redundant_experts = n;
        d.decode.redundant_experts = n;
    }
    if let Some(problems) = invalid_pools(&d, format) {
        return Err(problems);
    }
    d.infer_workers();
    Ok(d)
}

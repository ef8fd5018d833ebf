//! The deployment flags `estimate` and `dag` share, turned into the inputs
//! of one estimate: model and GPU resolved, dtypes and efficiencies applied,
//! the layout folded, every flag checked.
use crate::args::{DeploymentArgs, EstimateArgs, PoolArgs};
use crate::output::{ArgError, Failure, Format};
use moeplan::dtype::DType;
use moeplan::hardware::Gpu;
use moeplan::layout::{Layout, LayoutProblem};
use moeplan::memory::{Engine, EngineConfig};
pub use moeplan::replica::Replica as Deployment;
use moeplan::replica::{Deployment as ReplicaDeployment, Disaggregated};
use moeplan::serving::disagg::Pool;
use moeplan::serving::Workload;
use std::fmt::Write;

fn dtype(s: &Option<String>, flag: &str, format: Format) -> Result<Option<DType>, Failure> {
    match s {
        None => Ok(None),
        Some(s) => s
            .parse::<DType>()
            .map(Some)
            .map_err(|e| ArgError::failure(format!("--{flag}: {e}"), None, format)),
    }
}

/// A flag that must be a fraction in (0, 1].
pub fn fraction(v: Option<f64>, flag: &str, format: Format) -> Result<Option<f64>, Failure> {
    match v {
        Some(x) if x.is_nan() || x <= 0.0 || x > 1.0 => Err(ArgError::failure(
            format!("--{flag} {x} is not a fraction in (0, 1]"),
            Some("0.6 means 60%".into()),
            format,
        )),
        v => Ok(v),
    }
}

/// Resolves the flags of `command`; every problem is an input error (exit 2).
pub fn resolve(a: &DeploymentArgs, command: &str, format: Format) -> Result<Deployment, Failure> {
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
    if !missing.is_empty() {
        let help = if command == "dag" {
            "describe the deployment as for `moeplan estimate`, or give --scenario FILE to draw the planner's recommendation"
        } else {
            "e.g. moeplan estimate --model mixtral-8x7b --gpu h100-sxm --tp 2 --isl 1000 --osl 1000 --concurrency 64"
        };
        return Err(ArgError::failure(
            format!("moeplan {command} needs {}", missing.join(", ")),
            Some(help.into()),
            format,
        ));
    }
    let (isl, osl, concurrency) = (
        a.isl.unwrap_or(1),
        a.osl.unwrap_or(1),
        a.concurrency.unwrap_or(1),
    );
    for (flag, v) in [
        ("isl", isl),
        ("osl", osl),
        ("concurrency", concurrency),
        ("max-step-tokens", a.max_step_tokens.unwrap_or(1)),
        ("max-running-requests", a.max_running_requests.unwrap_or(1)),
    ] {
        if v == 0 {
            return Err(ArgError::failure(
                format!("--{flag} must be at least 1"),
                None,
                format,
            ));
        }
    }
    let input = |e| Failure::Input(Box::new(e), format);
    let mut model =
        moeplan::catalog::resolve_model(a.model.as_deref().unwrap_or_default()).map_err(input)?;
    let mut gpu =
        moeplan::catalog::resolve_gpu(a.gpu.as_deref().unwrap_or_default()).map_err(input)?;
    if let Some(w) = dtype(&a.weight_dtype, "weight-dtype", format)? {
        model.dtypes.attention = w;
        model.dtypes.experts = w;
        model.dtypes.dense = w;
    }
    if let Some(k) = dtype(&a.kv_dtype, "kv-dtype", format)? {
        model.dtypes.kv_cache = k;
    }
    if let Some(n) = a.gpus_per_node {
        if n == 0 {
            return Err(ArgError::failure(
                "--gpus-per-node must be at least 1".into(),
                None,
                format,
            ));
        }
        gpu.gpus_per_node = n;
    }
    let mfu = fraction(a.mfu, "mfu", format)?;
    let bw = fraction(a.bandwidth_utilization, "bandwidth-utilization", format)?;
    let engine = engine(a, &gpu, format)?;
    Ok(Deployment {
        calibration: moeplan::profile::resolve(&gpu, engine.engine)
            .kernels
            .flat(mfu, bw),
        layout: {
            let mut l = Layout::folded(
                a.pp.unwrap_or(1),
                a.tp.unwrap_or(1),
                a.cp.unwrap_or(1),
                a.dp.unwrap_or(1),
                a.ep,
                a.etp,
            );
            // A dense model has no experts: unless the user wrote an expert
            // split (which the layout check then rejects), there is none.
            if model.moe.is_none() && a.ep.is_none() && a.etp.is_none() {
                l.etp = 1;
            }
            l
        },
        workload: Workload {
            isl,
            osl,
            concurrency,
        },
        engine,
        redundant_experts: a.redundant_experts,
        routing_skew: a.routing_skew.max(0.0),
        model,
        gpu,
    })
}

/// The engine `--engine` names on `gpu`: `auto` is the engine whose kernels
/// fit this GPU's measurements best (`profile::default_engine`).
pub fn engine_named(name: &str, gpu: &Gpu, format: Format) -> Result<Engine, Failure> {
    match name {
        "auto" => Ok(moeplan::profile::default_engine(gpu)),
        n => n.parse().map_err(|m| ArgError::failure(m, None, format)),
    }
}

/// `--engine` over a scenario's or plan's `hardware.engine`: `auto` clears
/// it (the best-fitting engine), a name sets it.
pub fn apply_engine(
    flag: Option<&str>,
    s: &mut moeplan::spec::scenario::Scenario,
    format: Format,
) -> Result<(), Failure> {
    match flag {
        None => {}
        Some("auto") => s.engine = None,
        Some(n) => s.engine = Some(engine_named(n, &s.gpu, format)?),
    }
    Ok(())
}

/// The engine preset for this GPU (`--engine`, default auto), with the
/// explicit flags applied.
pub fn engine(a: &DeploymentArgs, gpu: &Gpu, format: Format) -> Result<EngineConfig, Failure> {
    let e = engine_named(a.engine.as_deref().unwrap_or("auto"), gpu, format)?;
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
    if let Some(f) = fraction(a.max_memory_fraction, "max-memory-fraction", format)? {
        c.max_memory_fraction = f;
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

/// What `moeplan estimate` estimates: a plan file's deployment with the
/// flags over it, a disaggregated deployment from the pool flags, or one
/// aggregated replica from the flags.
pub fn resolve_estimate(a: &EstimateArgs, format: Format) -> Result<ReplicaDeployment, Failure> {
    match &a.file {
        Some(path) => {
            let (d, origin) = from_file(path, &a.deployment, &a.pools, format)?;
            if format == Format::Text {
                crate::output::print(&format!("from {origin}"));
            }
            Ok(d)
        }
        None if a.pools.any() => resolve_disaggregated(&a.deployment, &a.pools, "estimate", format),
        None => resolve(&a.deployment, "estimate", format).map(ReplicaDeployment::Aggregated),
    }
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
    let layout_flags = [f.tp, f.pp, f.dp, f.cp, f.ep, f.etp];
    if layout_flags.iter().any(Option::is_some) {
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

/// A pool's layout from its flags (degrees default to 1; experts fold as engines do).
fn pool_layout(model: &moeplan::model::Model, d: [Option<u32>; 5]) -> Layout {
    let [tp, pp, dp, ep, etp] = d;
    let mut l = Layout::folded(
        pp.unwrap_or(1),
        tp.unwrap_or(1),
        1,
        dp.unwrap_or(1),
        ep,
        etp,
    );
    if model.moe.is_none() && ep.is_none() && etp.is_none() {
        l.etp = 1;
    }
    l
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
    for (flag, v) in [
        ("prefill-workers", p.prefill_workers),
        ("decode-workers", p.decode_workers),
    ] {
        if v == Some(0) {
            return Err(ArgError::failure(
                format!("--{flag} must be at least 1"),
                None,
                format,
            ));
        }
    }
    if p.prefill_batch == Some(0) {
        return Err(ArgError::failure(
            "--prefill-batch must be at least 1".into(),
            None,
            format,
        ));
    }
    let mfu = fraction(a.mfu, "mfu", format)?;
    let bw = fraction(a.bandwidth_utilization, "bandwidth-utilization", format)?;
    let prefill = pool_layout(
        &r.model,
        [
            p.prefill_tp,
            p.prefill_pp,
            p.prefill_dp,
            p.prefill_ep,
            p.prefill_etp,
        ],
    );
    let decode = pool_layout(
        &r.model,
        [
            p.decode_tp,
            p.decode_pp,
            p.decode_dp,
            p.decode_ep,
            p.decode_etp,
        ],
    );
    let mut d = Disaggregated {
        calibration: moeplan::profile::resolve_disaggregated(&r.gpu, r.engine.engine)
            .kernels
            .flat(mfu, bw),
        prefill: Pool {
            layout: prefill,
            workers: p.prefill_workers.unwrap_or(0),
            prompts_per_rank: p.prefill_batch.unwrap_or(1),
        },
        decode: Pool {
            layout: decode,
            workers: p.decode_workers.unwrap_or(0),
            prompts_per_rank: 1,
        },
        workload: r.workload,
        engine: r.engine,
        redundant_experts: r.redundant_experts,
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
        let (problems, _) = pool.layout.check(&d.model, &d.gpu, d.redundant_experts);
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
/// concurrency, efficiencies, dtypes, node size, engine) over a scenario or
/// a plan's scenario: the one place flags are merged over a file.
pub fn apply_to_scenario(
    f: &DeploymentArgs,
    s: &mut moeplan::spec::scenario::Scenario,
    format: Format,
) -> Result<(), Failure> {
    let input = |e| Failure::Input(Box::new(e), format);
    if let Some(m) = &f.model {
        s.model = moeplan::catalog::resolve_model(m).map_err(input)?;
    }
    if let Some(g) = &f.gpu {
        s.gpu = moeplan::catalog::resolve_gpu(g).map_err(input)?;
    }
    for (flag, v) in [
        ("isl", f.isl),
        ("osl", f.osl),
        ("concurrency", f.concurrency),
    ] {
        if v == Some(0) {
            return Err(ArgError::failure(
                format!("--{flag} must be at least 1"),
                None,
                format,
            ));
        }
    }
    let w = &mut s.workload;
    if let Some(v) = f.isl {
        w.isl = moeplan::spec::scenario::Lengths { min: v, max: v };
    }
    if let Some(v) = f.osl {
        w.osl = moeplan::spec::scenario::Lengths { min: v, max: v };
    }
    if f.concurrency.is_some() {
        w.concurrency = f.concurrency;
    }
    if let Some(m) = f.mfu {
        s.mfu = fraction(Some(m), "mfu", format)?;
    }
    if let Some(b) = f.bandwidth_utilization {
        s.bandwidth_utilization = fraction(Some(b), "bandwidth-utilization", format)?;
    }
    if let Some(d) = dtype(&f.weight_dtype, "weight-dtype", format)? {
        s.model.dtypes.attention = d;
        s.model.dtypes.experts = d;
        s.model.dtypes.dense = d;
    }
    if let Some(k) = dtype(&f.kv_dtype, "kv-dtype", format)? {
        s.model.dtypes.kv_cache = k;
    }
    if let Some(n) = f.gpus_per_node {
        if n == 0 {
            return Err(ArgError::failure(
                "--gpus-per-node must be at least 1".into(),
                None,
                format,
            ));
        }
        s.gpu.gpus_per_node = n;
    }
    apply_engine(f.engine.as_deref(), s, format)
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
    let input = |e| Failure::Input(Box::new(e), format);
    if moeplan::spec::plan::is_plan(path).map_err(input)? {
        let (mut plan, _) = moeplan::spec::plan::read(path).map_err(input)?;
        apply_to_scenario(f, &mut plan.scenario, format)?;
        let d = plan_deployment(plan, path, f, pools, format)?;
        return Ok((d, format!("the plan {}", path.display())));
    }
    let layout = [f.tp, f.pp, f.dp, f.cp, f.ep, f.etp]
        .iter()
        .any(Option::is_some);
    if layout || pools.any() || f.redundant_experts > 0 {
        return Err(ArgError::failure(
            format!("{} is a scenario, whose layout is the planner's choice: --tp/--pp/--dp/--cp/--ep/--etp, --redundant-experts and the pool flags do not apply", path.display()),
            Some("give a plan file for a layout of your own, or describe it with the flags alone".into()),
            format,
        ));
    }
    let mut s = moeplan::spec::scenario::read(path).map_err(input)?;
    apply_to_scenario(f, &mut s, format)?;
    let result = moeplan::search::plan(&s, &moeplan::search::PlanOptions::default(), &|_, _| {});
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
    Ok((plan_deployment(plan, path, f, pools, format)?, origin))
}

/// A plan's deployment with the layout and pool flags over it.
fn plan_deployment(
    plan: moeplan::spec::plan::Plan,
    path: &std::path::Path,
    f: &DeploymentArgs,
    pools: &PoolArgs,
    format: Format,
) -> Result<ReplicaDeployment, Failure> {
    let engine = overrides(
        f,
        plan.scenario
            .serving_engine()
            .config(plan.scenario.gpu.memory),
        format,
    )?;
    let aggregated_flags = [f.tp, f.pp, f.dp, f.cp, f.ep, f.etp]
        .iter()
        .any(Option::is_some);
    match ReplicaDeployment::from_plan(&plan, engine) {
        ReplicaDeployment::Aggregated(mut r) => {
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
            if aggregated_flags {
                r.layout = Layout::folded(
                    f.pp.unwrap_or(r.layout.pp),
                    f.tp.unwrap_or(r.layout.tp),
                    f.cp.unwrap_or(r.layout.cp),
                    f.dp.unwrap_or(r.layout.dp),
                    f.ep,
                    f.etp,
                );
            }
            if f.redundant_experts > 0 {
                r.redundant_experts = f.redundant_experts;
            }
            r.routing_skew = f.routing_skew.max(0.0);
            Ok(ReplicaDeployment::Aggregated(r))
        }
        ReplicaDeployment::Disaggregated(mut d) => {
            if aggregated_flags {
                return Err(ArgError::failure(
                    format!(
                        "{} is a disaggregated plan: --tp/--pp/--dp/--cp/--ep/--etp do not apply",
                        path.display()
                    ),
                    Some("use --prefill-tp, --decode-dp, ... to change a pool".into()),
                    format,
                ));
            }
            let p = pools;
            let over = |l: Layout, d: [Option<u32>; 5]| {
                let [tp, pp, dp, ep, etp] = d;
                if d.iter().all(Option::is_none) {
                    l
                } else {
                    Layout::folded(
                        pp.unwrap_or(l.pp),
                        tp.unwrap_or(l.tp),
                        l.cp,
                        dp.unwrap_or(l.dp),
                        ep,
                        etp,
                    )
                }
            };
            d.prefill.layout = over(
                d.prefill.layout,
                [
                    p.prefill_tp,
                    p.prefill_pp,
                    p.prefill_dp,
                    p.prefill_ep,
                    p.prefill_etp,
                ],
            );
            d.decode.layout = over(
                d.decode.layout,
                [
                    p.decode_tp,
                    p.decode_pp,
                    p.decode_dp,
                    p.decode_ep,
                    p.decode_etp,
                ],
            );
            if let Some(w) = p.prefill_workers {
                d.prefill.workers = w;
            }
            if let Some(w) = p.decode_workers {
                d.decode.workers = w;
            }
            if let Some(b) = p.prefill_batch {
                d.prefill.prompts_per_rank = b.max(1);
            }
            if f.redundant_experts > 0 {
                d.redundant_experts = f.redundant_experts;
            }
            d.routing_skew = f.routing_skew.max(0.0);
            if let Some(problems) = invalid_pools(&d, format) {
                return Err(problems);
            }
            d.infer_workers();
            Ok(ReplicaDeployment::Disaggregated(d))
        }
    }
}

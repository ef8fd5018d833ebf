//! The deployment flags `estimate` and `dag` share, turned into the inputs
//! of one estimate: model and GPU resolved, dtypes and efficiencies applied,
//! the layout folded, every flag checked.
use crate::args::DeploymentArgs;
use crate::output::{ArgError, Failure};
use moeplan::dtype::DType;
use moeplan::hardware::Gpu;
use moeplan::layout::{Layout, LayoutProblem};
use moeplan::memory::{Engine, EngineConfig};
pub use moeplan::replica::Replica as Deployment;
use moeplan::serving::Workload;
use std::fmt::Write;

fn dtype(s: &Option<String>, flag: &str, json: bool) -> Result<Option<DType>, Failure> {
    match s {
        None => Ok(None),
        Some(s) => s
            .parse::<DType>()
            .map(Some)
            .map_err(|e| ArgError::failure(format!("--{flag}: {e}"), None, json)),
    }
}

/// A flag that must be a fraction in (0, 1].
pub fn fraction(v: Option<f64>, flag: &str, json: bool) -> Result<Option<f64>, Failure> {
    match v {
        Some(x) if x.is_nan() || x <= 0.0 || x > 1.0 => Err(ArgError::failure(
            format!("--{flag} {x} is not a fraction in (0, 1]"),
            Some("0.6 means 60%".into()),
            json,
        )),
        v => Ok(v),
    }
}

/// Resolves the flags of `command`; every problem is an input error (exit 2).
pub fn resolve(a: &DeploymentArgs, command: &str, json: bool) -> Result<Deployment, Failure> {
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
            json,
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
                json,
            ));
        }
    }
    let input = |e| Failure::Input(Box::new(e), json);
    let mut model =
        moeplan::catalog::resolve_model(a.model.as_deref().unwrap_or_default()).map_err(input)?;
    let mut gpu =
        moeplan::catalog::resolve_gpu(a.gpu.as_deref().unwrap_or_default()).map_err(input)?;
    if let Some(w) = dtype(&a.weight_dtype, "weight-dtype", json)? {
        model.dtypes.attention = w;
        model.dtypes.experts = w;
        model.dtypes.dense = w;
    }
    if let Some(k) = dtype(&a.kv_dtype, "kv-dtype", json)? {
        model.dtypes.kv_cache = k;
    }
    if let Some(n) = a.gpus_per_node {
        if n == 0 {
            return Err(ArgError::failure(
                "--gpus-per-node must be at least 1".into(),
                None,
                json,
            ));
        }
        gpu.gpus_per_node = n;
    }
    let mfu = fraction(a.mfu, "mfu", json)?;
    let bw = fraction(a.bandwidth_utilization, "bandwidth-utilization", json)?;
    let engine = engine(a, &gpu, json)?;
    Ok(Deployment {
        calibration: moeplan::profile::resolve(&gpu, engine.engine)
            .kernels
            .flat(mfu, bw),
        layout: {
            let mut l = Layout::folded(a.pp, a.tp, a.cp, a.dp, a.ep, a.etp);
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

/// The engine preset for this GPU, with the explicit flags applied.
pub fn engine(a: &DeploymentArgs, gpu: &Gpu, json: bool) -> Result<EngineConfig, Failure> {
    let e: Engine = a
        .engine
        .parse()
        .map_err(|m| ArgError::failure(m, None, json))?;
    let mut c = e.config(gpu.memory);
    if let Some(t) = a.max_step_tokens {
        c.max_step_tokens = t;
    }
    if let Some(r) = a.max_running_requests {
        c.max_running_requests = Some(r);
    }
    if let Some(f) = fraction(a.max_memory_fraction, "max-memory-fraction", json)? {
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
    json: bool,
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
    ArgError::failure(msg, Some(help), json)
}

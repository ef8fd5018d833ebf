//! `moeplan dag`: the operator and communication graph of a deployment,
//! validated against the layout and the cost model, and exported.
use crate::args::{DagArgs, EstimateArgs, OutputArgs};

use crate::output::{self, ArgError, Failure};
use moeplan::dag::{self, export, DagOptions, Granularity, Phase};
use moeplan::dtype::DType;
use moeplan::memory::EngineConfig;
use moeplan::search::{self, PlanOptions};
use moeplan::serving::{EstimateInput, Workload};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

fn bad(message: String, help: Option<String>) -> Failure {
    ArgError::failure(message, help, false)
}

fn fraction(v: Option<f64>, flag: &str) -> Result<Option<f64>, Failure> {
    match v {
        Some(x) if !(x > 0.0 && x <= 1.0) => Err(bad(
            format!("--{flag} {x} is not a fraction in (0, 1]"),
            Some("0.6 means 60%".into()),
        )),
        v => Ok(v),
    }
}

fn dtype(s: &Option<String>, flag: &str) -> Result<Option<DType>, Failure> {
    match s {
        None => Ok(None),
        Some(s) => s
            .parse::<DType>()
            .map(Some)
            .map_err(|e| bad(format!("--{flag}: {e}"), None)),
    }
}

/// What to draw: the model, GPU, calibration, layout and workload, and the phases.
struct Deployment {
    model: moeplan::model::Model,
    gpu: moeplan::hardware::Gpu,
    calibration: moeplan::calibration::Calibration,
    layout: moeplan::layout::Layout,
    workload: Workload,
    engine: EngineConfig,
    redundant_experts: u32,
    routing_skew: f64,
    phases: Vec<Phase>,
    origin: Option<String>,
}

fn phases(a: &DagArgs) -> Vec<Phase> {
    match a.phase.as_str() {
        "prefill" => vec![Phase::Prefill],
        "decode" => vec![Phase::Decode],
        _ => vec![Phase::Prefill, Phase::Decode],
    }
}

fn from_flags(a: &DagArgs) -> Result<Deployment, Failure> {
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
        return Err(bad(
            format!("moeplan dag needs {} (or --scenario FILE)", missing.join(", ")),
            Some("describe the deployment as for `moeplan estimate`, or give a scenario to draw the planner's recommendation".into()),
        ));
    }
    let est_args = EstimateArgs {
        model: a.model.clone().unwrap_or_default(),
        gpu: a.gpu.clone().unwrap_or_default(),
        gpus_per_node: a.gpus_per_node,
        isl: a.isl.unwrap_or(1),
        osl: a.osl.unwrap_or(1),
        concurrency: a.concurrency.unwrap_or(1),
        pp: a.pp,
        tp: a.tp,
        cp: a.cp,
        dp: a.dp,
        ep: a.ep,
        etp: a.etp,
        weight_dtype: a.weight_dtype.clone(),
        kv_dtype: a.kv_dtype.clone(),
        redundant_experts: a.redundant_experts,
        routing_skew: a.routing_skew,
        mfu: a.mfu,
        bandwidth_utilization: a.bandwidth_utilization,
        max_step_tokens: a.max_step_tokens,
        max_memory_fraction: 0.9,
        output: OutputArgs {
            json: false,
            explain: false,
        },
    };
    for (flag, v) in [
        ("isl", est_args.isl),
        ("osl", est_args.osl),
        ("concurrency", est_args.concurrency),
        ("max-step-tokens", est_args.max_step_tokens),
    ] {
        if v == 0 {
            return Err(bad(format!("--{flag} must be at least 1"), None));
        }
    }
    let mut model = moeplan::catalog::resolve_model(&est_args.model)
        .map_err(|e| Failure::Input(Box::new(e), false))?;
    let mut gpu = moeplan::catalog::resolve_gpu(&est_args.gpu)
        .map_err(|e| Failure::Input(Box::new(e), false))?;
    if let Some(w) = dtype(&a.weight_dtype, "weight-dtype")? {
        model.dtypes.attention = w;
        model.dtypes.experts = w;
        model.dtypes.dense = w;
    }
    if let Some(k) = dtype(&a.kv_dtype, "kv-dtype")? {
        model.dtypes.kv_cache = k;
    }
    if let Some(n) = a.gpus_per_node {
        if n == 0 {
            return Err(bad("--gpus-per-node must be at least 1".into(), None));
        }
        gpu.gpus_per_node = n;
    }
    let calibration = gpu.calibration.flat(
        fraction(a.mfu, "mfu")?,
        fraction(a.bandwidth_utilization, "bandwidth-utilization")?,
    );
    Ok(Deployment {
        layout: moeplan::layout::Layout::folded(
            est_args.pp,
            est_args.tp,
            est_args.cp,
            est_args.dp,
            est_args.ep,
            est_args.etp,
        ),
        workload: Workload {
            isl: est_args.isl,
            osl: est_args.osl,
            concurrency: est_args.concurrency,
        },
        engine: EngineConfig {
            max_step_tokens: a.max_step_tokens,
            ..EngineConfig::default()
        },
        model,
        gpu,
        calibration,
        redundant_experts: a.redundant_experts,
        routing_skew: a.routing_skew.max(0.0),
        phases: phases(a),
        origin: None,
    })
}

fn from_scenario(a: &DagArgs, path: &str) -> Result<Deployment, Failure> {
    let mut s = moeplan::spec::scenario::read(Path::new(path))
        .map_err(|e| Failure::Input(Box::new(e), false))?;
    if let Some(n) = a.gpus_per_node {
        if n == 0 {
            return Err(bad("--gpus-per-node must be at least 1".into(), None));
        }
        s.gpu.gpus_per_node = n;
    }
    let opts = PlanOptions {
        engine: EngineConfig {
            max_step_tokens: a.max_step_tokens,
            ..EngineConfig::default()
        },
        ..PlanOptions::default()
    };
    let result = search::plan(&s, &opts, &|_, _| {});
    let Some(rec) = result.recommended else {
        output::note(&format!(
            "error: no valid layout of {} fits the scenario, so there is no deployment to draw (exit 1)",
            s.model.name
        ));
        return Err(Failure::Negative);
    };
    let (pool, phases) = match rec.pools.iter().find(|p| p.role == "aggregated") {
        Some(p) => (p, phases(a)),
        None => {
            let want = a.pool.as_str();
            let p = rec
                .pools
                .iter()
                .find(|p| p.role == want)
                .or_else(|| rec.pools.first())
                .ok_or_else(|| bad("the recommended plan has no pool".into(), None))?;
            let phase = if p.role == "prefill" {
                Phase::Prefill
            } else {
                Phase::Decode
            };
            (p, vec![phase])
        }
    };
    let origin = format!(
        "the planner's recommendation for {}: {} (one worker of the {} pool, {} × {} GPUs{})",
        s.name,
        search::describe(&rec),
        pool.role,
        pool.workers,
        pool.layout.gpus(),
        if pool.role == "aggregated" {
            String::new()
        } else {
            format!(", which runs only the {} step", pool.role)
        }
    );
    Ok(Deployment {
        calibration: s.gpu.calibration.flat(s.mfu, s.bandwidth_utilization),
        layout: pool.layout,
        workload: Workload {
            isl: s.workload.isl.mean().max(1),
            osl: s.workload.osl.mean().max(1),
            concurrency: pool.concurrency.max(1),
        },
        engine: EngineConfig {
            max_step_tokens: a.max_step_tokens,
            max_memory_fraction: s.slo.max_memory_fraction,
            ..EngineConfig::default()
        },
        model: s.model,
        gpu: s.gpu,
        redundant_experts: 0,
        routing_skew: 0.0,
        phases,
        origin: Some(origin),
    })
}

/// Renders DOT to SVG with Graphviz.
fn render_svg(dot: &str, path: &Path) -> Result<(), Failure> {
    let child = Command::new("dot")
        .arg("-Tsvg")
        .arg("-o")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(
                format!(
                    "--svg needs Graphviz's `dot` program, which is not on PATH; {} was not written",
                    path.display()
                ),
                Some("install Graphviz (e.g. `apt-get install graphviz`), or write DOT with --format dot and render it elsewhere".into()),
            ))
        }
        Err(e) => return Err(bad(format!("could not run Graphviz `dot`: {e}"), None)),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(dot.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| bad(format!("Graphviz `dot` failed: {e}"), None))?;
    if !out.status.success() {
        return Err(bad(
            format!(
                "Graphviz `dot` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            None,
        ));
    }
    Ok(())
}

pub fn run(a: &DagArgs) -> Result<(), Failure> {
    let d = match &a.scenario {
        Some(p) => from_scenario(a, p)?,
        None => from_flags(a)?,
    };
    let input = EstimateInput {
        model: &d.model,
        gpu: &d.gpu,
        calibration: d.calibration.clone(),
        layout: d.layout,
        workload: d.workload,
        engine: d.engine,
        redundant_experts: d.redundant_experts,
        routing_skew: d.routing_skew,
    };
    let opts = DagOptions {
        phases: d.phases.clone(),
        granularity: if a.granularity == "layer" {
            Granularity::Layer
        } else {
            Granularity::Op
        },
        expand: a.expand,
    };
    let graph = match dag::build(&input, &opts) {
        Ok(g) => g,
        Err(problems) => {
            let mut msg = format!(
                "invalid layout {} for {} on {}:",
                d.layout, d.model.name, d.gpu.id
            );
            for p in &problems {
                let _ = write!(msg, "\n  - [{}] {}: {}", p.rule, p.field, p.message);
            }
            let help = problems
                .iter()
                .map(|p| p.hint.clone())
                .collect::<Vec<_>>()
                .join("\n");
            return Err(bad(msg, Some(help)));
        }
    };
    let report = dag::check(&graph);
    let mut summary = export::summary(&graph, &report);
    if let Some(o) = &d.origin {
        summary = format!("from {o}\n{summary}");
    }
    let view = export::ViewOptions {
        fold_layers: !a.all_layers,
    };
    if !report.ok() {
        // Never export a graph that fails its own checks.
        if a.format.is_some() {
            output::note(&summary);
        } else {
            output::print(&summary);
        }
        output::note(&format!(
            "error: the graph fails {} check(s){} (exit 1)",
            report.errors(),
            if a.format.is_some() || a.svg.is_some() {
                "; nothing exported"
            } else {
                ""
            }
        ));
        return Err(Failure::Negative);
    }
    match a.format.as_deref() {
        Some("json") => output::json(&export::to_json(&graph, &report)),
        Some("dot") => output::print(&export::to_dot(&graph, view)),
        Some("mermaid") => output::print(&export::to_mermaid(&graph, view)),
        _ => output::print(&summary),
    }
    if a.format.is_some() {
        output::note(&summary);
    }
    if let Some(path) = &a.svg {
        render_svg(&export::to_dot(&graph, view), path)?;
        output::note(&format!("wrote {}", path.display()));
    }
    Ok(())
}

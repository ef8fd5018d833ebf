//! `moeplan dag`: the operator and communication graph of a deployment,
//! validated against the layout and the cost model, and exported.
use crate::args::DagArgs;
use crate::commands::deployment::{self, Deployment};

use crate::output::{self, ArgError, Failure};
use moeplan::dag::export::Format;
use moeplan::dag::{self, export, DagOptions, Phase};
use moeplan::replica::PoolRole;
use moeplan::search::{self, PlanOptions};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

fn bad(message: String, help: Option<String>) -> Failure {
    ArgError::failure(message, help, false)
}

/// What to draw: one replica and the phases, and where it came from.
struct Drawing {
    d: Deployment,
    phases: Vec<Phase>,
    origin: Option<String>,
}

fn phases(a: &DagArgs) -> Vec<Phase> {
    a.phase.phases()
}

fn from_flags(a: &DagArgs) -> Result<Drawing, Failure> {
    let d = deployment::resolve(&a.deployment, "dag", false)?;
    Ok(Drawing {
        d,
        phases: phases(a),
        origin: None,
    })
}

/// Applies --gpus-per-node to a scenario read from a file.
fn node_size(a: &DagArgs, s: &mut moeplan::spec::scenario::Scenario) -> Result<(), Failure> {
    if let Some(n) = a.deployment.gpus_per_node {
        if n == 0 {
            return Err(bad("--gpus-per-node must be at least 1".into(), None));
        }
        s.gpu.gpus_per_node = n;
    }
    Ok(())
}

fn from_plan(a: &DagArgs, path: &str) -> Result<Drawing, Failure> {
    use moeplan::spec::plan::Deployment as Written;
    let (plan, _) = moeplan::spec::plan::read(Path::new(path))
        .map_err(|e| Failure::Input(Box::new(e), false))?;
    let mut s = plan.scenario.clone();
    node_size(a, &mut s)?;
    let (pool, role, phases) = match &plan.deployment {
        Written::Aggregated { pool } => (pool, "aggregated", phases(a)),
        Written::Disaggregated { prefill, .. } if a.pool == Phase::Prefill => {
            (prefill, "prefill", vec![Phase::Prefill])
        }
        Written::Disaggregated { decode, .. } => (decode, "decode", vec![Phase::Decode]),
    };
    let concurrency = s
        .workload
        .concurrency
        .unwrap_or(moeplan::audit::DEFAULT_CONCURRENCY);
    let origin = format!(
        "the plan {path}: one replica of the {role} pool, {} × {} GPUs{}",
        pool.replicas,
        pool.layout.gpus(),
        if s.workload.concurrency.is_none() {
            format!(" ({concurrency} requests in flight assumed: the plan states none)")
        } else {
            String::new()
        }
    );
    deployment::apply_engine(a.deployment.engine.as_deref(), &mut s, false)?;
    let engine = deployment::overrides(
        &a.deployment,
        s.serving_engine().config(s.gpu.memory),
        false,
    )?;
    Ok(Drawing {
        d: Deployment::from_scenario(s, pool.layout, concurrency, engine),
        phases,
        origin: Some(origin),
    })
}

fn from_scenario(a: &DagArgs, path: &str) -> Result<Drawing, Failure> {
    let mut s = moeplan::spec::scenario::read(Path::new(path))
        .map_err(|e| Failure::Input(Box::new(e), false))?;
    node_size(a, &mut s)?;
    deployment::apply_engine(a.deployment.engine.as_deref(), &mut s, false)?;
    let opts = PlanOptions::default();
    let result = search::plan(&s, &opts, &|_, _| {});
    let Some(rec) = result.recommended else {
        output::note(&format!(
            "error: no valid layout of {} fits the scenario, so there is no deployment to draw (exit 1)",
            s.model.name
        ));
        return Err(Failure::Negative);
    };
    let (pool, phases) = match rec
        .figures
        .pools
        .iter()
        .find(|p| p.role == PoolRole::Aggregated)
    {
        Some(p) => (p, phases(a)),
        None => {
            let want = a.pool.name();
            let p = rec
                .figures
                .pools
                .iter()
                .find(|p| p.role.name() == want)
                .or_else(|| rec.figures.pools.first())
                .ok_or_else(|| bad("the recommended plan has no pool".into(), None))?;
            let phase = match p.role {
                PoolRole::Prefill => Phase::Prefill,
                _ => Phase::Decode,
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
        if pool.role == PoolRole::Aggregated {
            String::new()
        } else {
            format!(", which runs only the {} step", pool.role)
        }
    );
    let engine = deployment::engine(&a.deployment, &s.gpu, false)?;
    Ok(Drawing {
        d: Deployment::from_scenario(s, pool.layout, pool.concurrency, engine),
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
    let Drawing { d, phases, origin } = match (&a.plan, &a.scenario) {
        (Some(p), _) => from_plan(a, p)?,
        (None, Some(p)) => from_scenario(a, p)?,
        (None, None) => from_flags(a)?,
    };
    let input = d.input();
    let opts = DagOptions {
        phases: phases.clone(),
        granularity: a.granularity,
        expand: a.expand,
    };
    let graph = match dag::build(&input, &opts) {
        Ok(g) => g,
        Err(problems) => {
            return Err(deployment::invalid_layout(
                &d.layout,
                &d.model.name,
                &d.gpu.id,
                &problems,
                false,
            ))
        }
    };
    let report = dag::check(&graph);
    let mut summary = export::summary(&graph, &report);
    if let Some(o) = &origin {
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
    match a.format {
        Some(Format::Json) => output::json(&moeplan::output::DagOutput::new(&graph, &report)),
        Some(Format::Dot) => output::print(&export::to_dot(&graph, view)),
        Some(Format::Mermaid) => output::print(&export::to_mermaid(&graph, view)),
        None => output::print(&summary),
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

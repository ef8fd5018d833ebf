//! `moeplan dag`: the operator and communication graph of a deployment,
//! validated against the layout and the cost model, and exported.
use crate::args::DagArgs;
use crate::commands::deployment::{self, Deployment};

use crate::output::{self, Failure};
use moeplan::dag::export::Format;
use moeplan::dag::{self, export, DagOptions, Phase};
use moeplan::replica::{Deployment as ReplicaDeployment, Disaggregated};
use moeplan::serving::disagg::estimate_disaggregated;
use moeplan::serving::PhaseCost;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// How failures are written: as JSON when the graph is asked for as JSON
/// (like every `--json`), as text otherwise.
fn errors(a: &DagArgs) -> output::Format {
    match a.format {
        Some(Format::Json) => output::Format::Json,
        Some(Format::Dot | Format::Mermaid) | None => output::Format::Text,
    }
}

/// What to draw: one replica and the phases, and where it came from.
struct Drawing {
    d: Deployment,
    phases: Vec<Phase>,
    origin: Option<String>,
    /// A disaggregated pool's own step (the disaggregated estimate's prefill
    /// batch or pure decode step) and the expert imbalance it was costed at.
    pool_step: Option<(PhaseCost, f64)>,
    /// How the user profile applies to the deployment (by its mode).
    profile: Option<moeplan::profile::ProfileUse>,
}

fn phases(a: &DagArgs) -> Vec<Phase> {
    a.phase.phases()
}

/// One worker of the pool `--pool` names, drawn with that pool's step only.
/// A disaggregated plan's `concurrency` counts the requests of the whole
/// deployment: a worker holds its share.
fn pool_worker(
    a: &DagArgs,
    d: Disaggregated,
) -> (Deployment, Vec<Phase>, String, Option<(PhaseCost, f64)>) {
    // The step the disaggregated estimate costs for this pool, so that the
    // graph and `estimate` of the same plan agree.
    let step = estimate_disaggregated(&d.input()).ok().map(|e| {
        let pool = match a.pool {
            Phase::Prefill => e.prefill,
            Phase::Decode => e.decode,
        };
        let imbalance = pool.step.load_imbalance;
        (pool.step, imbalance)
    });
    let pool = match a.pool {
        Phase::Prefill => d.prefill,
        Phase::Decode => d.decode,
    };
    let workers = pool.workers.max(1);
    let concurrency = d.workload.concurrency.div_ceil(u64::from(workers));
    let held = match a.pool {
        // A prefill worker holds the prompts it is computing, not a share
        // of the requests in flight: its step says how many.
        Phase::Prefill => "the disaggregated estimate's prefill batch".to_string(),
        Phase::Decode => format!(
            "{concurrency} of the {} requests in flight",
            d.workload.concurrency
        ),
    };
    let text = format!(
        "one worker of the {} pool ({} × {} GPUs, {held})",
        a.pool.name(),
        workers,
        pool.layout.gpus(),
    );
    let replica = Deployment {
        calibration: d.calibration,
        layout: pool.layout,
        workload: moeplan::serving::Workload {
            concurrency,
            ..d.workload
        },
        engine: d.engine,
        redundant_experts: pool.redundant_experts,
        routing_skew: d.routing_skew,
        overlap: pool.overlap,
        model: d.model,
        gpu: d.gpu,
    };
    (replica, vec![a.pool], text, step)
}

/// What a resolved deployment draws: the replica, or one worker of a pool.
fn drawing(a: &DagArgs, rd: ReplicaDeployment, origin: Option<String>) -> Drawing {
    let profile = rd.profile_use();
    match rd {
        ReplicaDeployment::Aggregated(d) => Drawing {
            d,
            phases: phases(a),
            origin,
            pool_step: None,
            profile,
        },
        ReplicaDeployment::Disaggregated(d) => {
            let (d, phases, worker, pool_step) = pool_worker(a, d);
            Drawing {
                d,
                phases,
                pool_step,
                origin: Some(match origin {
                    Some(o) => format!("{o}: {worker}"),
                    None => worker,
                }),
                profile,
            }
        }
    }
}

fn from_flags(a: &DagArgs) -> Result<Drawing, Failure> {
    let rd = if a.pools.any() {
        deployment::resolve_disaggregated(&a.deployment, &a.pools, "dag", errors(a))?
    } else {
        ReplicaDeployment::Aggregated(deployment::resolve(&a.deployment, "dag", errors(a))?)
    };
    Ok(drawing(a, rd, None))
}

fn from_file(a: &DagArgs, path: &Path) -> Result<Drawing, Failure> {
    let (rd, origin) = deployment::from_file(path, &a.deployment, &a.pools, errors(a))?;
    let origin = match &rd {
        ReplicaDeployment::Aggregated(r) => format!(
            "{origin}: one replica of the aggregated pool, {} GPUs, {} requests in flight",
            r.layout.gpus(),
            r.workload.concurrency
        ),
        ReplicaDeployment::Disaggregated(_) => origin,
    };
    Ok(drawing(a, rd, Some(origin)))
}

/// The file to draw: FILE, --plan or --scenario (all told apart by content).
fn source(a: &DagArgs) -> Option<&Path> {
    a.file
        .as_deref()
        .or(a.plan.as_deref())
        .or(a.scenario.as_deref())
}

/// Renders DOT to SVG with Graphviz.
/// How long Graphviz may take to lay out a graph.
const RENDER_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Nodes above which a drawing is warned to be slow to lay out.
const LARGE_GRAPH: usize = 3_000;

/// What draws a graph Graphviz can lay out.
const LARGE_GRAPH_HINT: &str =
    "draw fewer nodes: --granularity layer, without --expand or --all-layers, or one --phase";

/// Graphviz missing, failing or too slow: the input was fine, the drawing
/// could not be made (exit 1, the message on stderr).
fn tool_failure(message: String) -> Failure {
    output::note(&format!("error: {message} (exit 1)"));
    Failure::Negative
}

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
            // The input was fine: the machine lacks a tool. Not bad input
            // (exit 2) but an answer not fully given (exit 1).
            return Err(tool_failure(format!(
                "--svg needs Graphviz's `dot` program, which is not on PATH; {} was not written\nhelp: install Graphviz (e.g. `apt-get install graphviz`), or write DOT with --format dot and render it elsewhere",
                path.display()
            )));
        }
        Err(e) => return Err(tool_failure(format!("could not run Graphviz `dot`: {e}"))),
    };
    // Feed the graph and drain Graphviz's complaints on their own threads:
    // a `dot` that writes more than a pipe holds to stderr before it has read
    // its input (or while we wait) would otherwise block forever.
    let feed = child.stdin.take().map(|mut stdin| {
        let dot = dot.to_string();
        std::thread::spawn(move || {
            let _ = stdin.write_all(dot.as_bytes());
        })
    });
    let drain = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut buf);
            buf
        })
    });
    // Graphviz can lay out a huge graph for many minutes: stop waiting
    // after RENDER_LIMIT, and show only the first lines of its complaints.
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < RENDER_LIMIT => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(tool_failure(format!(
                    "Graphviz `dot` did not finish within {} s; {} was not written\nhelp: {LARGE_GRAPH_HINT}",
                    RENDER_LIMIT.as_secs(),
                    path.display()
                )));
            }
            Err(e) => return Err(tool_failure(format!("Graphviz `dot` failed: {e}"))),
        }
    }
    let status = child
        .wait()
        .map_err(|e| tool_failure(format!("Graphviz `dot` failed: {e}")))?;
    if let Some(f) = feed {
        let _ = f.join();
    }
    let stderr = drain.and_then(|d| d.join().ok()).unwrap_or_default();
    if !status.success() {
        return Err(tool_failure(format!(
            "Graphviz `dot` failed ({status}): {}",
            first_lines(&String::from_utf8_lossy(&stderr), 5)
        )));
    }
    Ok(())
}

/// The first `n` lines of a tool's complaints, and how many more there were.
fn first_lines(err: &str, n: usize) -> String {
    let lines: Vec<&str> = err.lines().collect();
    let more = match lines.len() {
        k if k > n => format!("\n(and {} more lines)", k - n),
        _ => String::new(),
    };
    let first = lines.iter().take(n).copied().collect::<Vec<_>>().join("\n");
    format!("{}{more}", first.trim())
}

/// The graph of the drawing: its own estimate's steps, or a disaggregated
/// pool's step; an invalid layout is bad input.
fn graph(
    a: &DagArgs,
    d: &Deployment,
    phases: Vec<Phase>,
    pool_step: Option<&(PhaseCost, f64)>,
    profile: Option<moeplan::profile::ProfileUse>,
) -> Result<dag::Dag, Failure> {
    let input = d.input();
    let first = phases.first().copied();
    let opts = DagOptions {
        phases,
        granularity: a.granularity,
        expand: a.expand,
    };
    let built = match (pool_step, first) {
        (Some((step, imbalance)), Some(phase)) => Ok(dag::build_steps(
            &input,
            &opts,
            &[(phase, step)],
            *imbalance,
        )),
        _ => dag::build(&input, &opts),
    };
    built
        .map(|g| dag::Dag { profile, ..g })
        .map_err(|problems| {
            deployment::invalid_layout(&d.layout, &d.model.name, &d.gpu.id, &problems, errors(a))
        })
}

pub fn run(a: &DagArgs) -> Result<(), Failure> {
    let Drawing {
        d,
        phases,
        origin,
        pool_step,
        profile,
    } = match source(a) {
        Some(path) => from_file(a, path)?,
        None => from_flags(a)?,
    };
    let graph = graph(a, &d, phases, pool_step.as_ref(), profile)?;
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
        if graph.nodes.len() > LARGE_GRAPH {
            output::note(&format!(
                "warning: {} nodes: Graphviz may take minutes to lay them out (it is stopped after {} s); {LARGE_GRAPH_HINT}",
                graph.nodes.len(),
                RENDER_LIMIT.as_secs()
            ));
        }
        render_svg(&export::to_dot(&graph, view), path)?;
        output::note(&format!("wrote {}", path.display()));
    }
    Ok(())
}

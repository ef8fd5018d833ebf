//! `moeplan launch`: the engine commands and deployment files of a plan.
use crate::args::LaunchArgs;
use crate::commands::deployment::{self, PlanFacts};
use crate::output::{self, ArgError, Failure, Format};
use moeplan::launch::{self, Launch, LaunchError, Request, Weights};
use moeplan::replica::Deployment;
use std::fmt::Write;

/// Resolves the deployment, builds its launch and prints or writes it.
pub fn run(a: &LaunchArgs) -> Result<(), Failure> {
    let format = Format::from(a.json);
    let (d, origin, facts) = resolve(a, format)?;
    let (isl, osl) = deployment::longest(&d, &facts);
    deployment::warn_context(d.model(), isl, osl);
    let replicas =
        deployment::at_least_one("replicas", a.replicas, format)?.unwrap_or(facts.replicas);
    let (model, engine) = (d.model(), d.engine().engine);
    let weights = weights(a, model, format)?;
    let req = Request {
        deployment: &d,
        replicas,
        engine,
        // The flag, else the file's stated version when it is of the engine that runs.
        engine_version: a.engine_version.clone().or_else(|| {
            facts
                .engine_version
                .clone()
                .filter(|(e, _)| *e == engine)
                .map(|(_, v)| v)
        }),
        target: a.target,
        weights,
        max_context: facts.max_context,
        image: a.image.clone(),
    };
    let l = launch::launch(&req).map_err(|e| refusal(e, format))?;
    if let Some(dir) = &a.out {
        write_files(dir, &l, format)?;
    }
    if format == Format::Json {
        output::json(&l);
    } else {
        output::print(&render(&l, origin.as_deref(), a.out.as_deref()));
    }
    Ok(())
}

/// The deployment, where it comes from, and what its plan says beyond one replica.
fn resolve(
    a: &LaunchArgs,
    format: Format,
) -> Result<(Deployment, Option<String>, PlanFacts), Failure> {
    if let Some(path) = &a.file {
        let (d, origin, facts) = deployment::from_file_with_facts(
            path,
            &a.deployment,
            &a.pools,
            moeplan::search::Modes::Both,
            format,
        )?;
        return Ok((d, Some(origin), facts));
    }
    let (d, facts) = deployment::from_flags(&a.deployment, &a.pools, "launch", format)?;
    Ok((d, None, facts))
}

/// The weights to load: `--model-path`, else the model's own checkpoint:
/// the folder or Hugging Face id typed as `--model` (a folder is its own
/// checkpoint, whatever its name), or the catalog model's.
fn weights(
    a: &LaunchArgs,
    model: &moeplan::model::Model,
    format: Format,
) -> Result<Weights, Failure> {
    if let Some(p) = &a.model_path {
        return Ok(Weights::Given(p.clone()));
    }
    let folder = a
        .deployment
        .model
        .as_deref()
        .map(std::path::Path::new)
        .filter(|m| m.is_dir());
    if let Some(dir) = folder {
        return Ok(Weights::Checkpoint(dir.display().to_string()));
    }
    let typed = a
        .deployment
        .model
        .as_deref()
        .and_then(|m| m.to_str())
        .filter(|m| m.contains('/') && !std::path::Path::new(m).exists());
    let known = typed
        .map(String::from)
        .or_else(|| moeplan::catalog::hf_id(&model.name).map(String::from))
        .or_else(|| model.name.contains('/').then(|| model.name.clone()));
    known.map(Weights::Checkpoint).ok_or_else(|| {
        ArgError::failure(
            format!("{} has no known Hugging Face id to load", model.name),
            Some("give the weights with --model-path (a Hugging Face id or a directory)".into()),
            format,
        )
    })
}

/// A refusal as the CLI reports it: bad input (exit 2) with the nearest
/// runnable layout as help, or a plan that does not fit (exit 1).
fn refusal(e: LaunchError, format: Format) -> Failure {
    match e {
        LaunchError::DoesNotFit { .. } => {
            if format == Format::Text {
                output::note(&format!("error: {e} (exit 1)"));
            }
            Failure::Negative
        }
        LaunchError::Inexpressible { role, ref refusal } => {
            let help = refusal.nearest.map(|n| {
                format!(
                    "run {n} instead (the {} pool's layout), or choose another engine",
                    role.name()
                )
            });
            ArgError::failure(e.to_string(), help, format)
        }
        LaunchError::Unchecked(msg) => panic!("{msg}"),
        LaunchError::Weights { requantised, .. } => {
            let help = format!(
                "give a checkpoint whose {} weights are stored as {} with --model-path (a Hugging Face id or a directory; moeplan takes it to be stored as planned), or plan with the checkpoint's own types (without --weight-dtype or model.weight_dtype)",
                requantised.group.name(),
                requantised.planned
            );
            ArgError::failure(e.to_string(), Some(help), format)
        }
        LaunchError::NoEngine
        | LaunchError::UnknownVersion { .. }
        | LaunchError::TargetEngine { .. }
        | LaunchError::Target { .. } => ArgError::failure(e.to_string(), None, format),
    }
}

/// Writes every file under `dir` (scripts executable).
fn write_files(dir: &std::path::Path, l: &Launch, format: Format) -> Result<(), Failure> {
    let fail =
        |what: String, e: std::io::Error| ArgError::failure(format!("{what}: {e}"), None, format);
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(format!("cannot create {}", dir.display()), e))?;
    for f in &l.files {
        let path = dir.join(&f.path);
        std::fs::write(&path, &f.content)
            .map_err(|e| fail(format!("cannot write {}", path.display()), e))?;
        #[cfg(unix)]
        if f.path.ends_with(".sh") || f.path.ends_with(".py") {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
        }
    }
    Ok(())
}

/// The launch as text: each role's replicas and node commands, the files, the notes.
fn render(l: &Launch, origin: Option<&str>, out: Option<&std::path::Path>) -> String {
    let mut s = String::new();
    if let Some(o) = origin {
        let _ = writeln!(s, "from {o}");
    }
    let _ = writeln!(
        s,
        "{} {} on {} GPUs ({} per node), target {}",
        l.engine.name(),
        l.engine_version,
        l.gpus,
        l.gpus_per_node,
        l.target.name()
    );
    if let Some(p) = &l.profile {
        let _ = writeln!(s, "{p}");
    }
    for r in &l.roles {
        let _ = writeln!(
            s,
            "\n{}: {} replica(s) of {}, {} GPUs each over {} node(s)",
            r.role.name(),
            r.replicas,
            r.layout,
            r.gpus_per_replica,
            r.nodes.len()
        );
        for n in &r.nodes {
            let _ = writeln!(
                s,
                "  node {} ({} GPUs):\n    {}",
                n.node_rank, n.gpus, n.command
            );
        }
    }
    let names: Vec<&str> = l.files.iter().map(|f| f.path.as_str()).collect();
    let _ = match out {
        Some(dir) => writeln!(
            s,
            "\nwrote {} files to {}: {}",
            names.len(),
            dir.display(),
            names.join(", ")
        ),
        None => writeln!(
            s,
            "\nfiles (not written; add --out DIR): {}",
            names.join(", ")
        ),
    };
    for n in &l.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

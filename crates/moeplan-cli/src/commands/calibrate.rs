//! `moeplan calibrate`: fit the serving layer of the user's stacks to their
//! runs, write the profile, and load one for every other command.
use crate::args::CalibrateArgs;
use crate::output::{self, ArgError, Failure, Format};
use moeplan::calibrate::{self, RunFit, Validation};
use moeplan::profile::{UserFit, UserProfile};
use moeplan::runs::{self, Run};
use std::path::Path;

pub fn run(a: &CalibrateArgs) -> Result<(), Failure> {
    let format = Format::from(a.json);
    let all: Vec<Run> = runs::read_each(&a.files, runs::Usability::Estimable)
        .map_err(|e| Failure::Input(e.into_diagnostic(), format))?;
    let names: Vec<String> = a.files.iter().map(|f| f.display().to_string()).collect();
    if let Some(path) = &a.built_in {
        return write_built_in(path, &all, &a.files, calibrate::built_in_serving);
    }
    if let Some(path) = &a.built_in_stacks {
        return write_built_in(path, &all, &a.files, calibrate::built_in_stacks);
    }
    let suspect = calibrate::suspects(&all);
    if !a.validate && suspect.len() == all.len() {
        for s in suspect {
            output::note(&format!("warning: {}", s.why));
        }
        output::note(
            "nothing fitted: every run contradicts the physics (above); no profile written",
        );
        return Err(Failure::Negative);
    }
    let source = format!("{} runs of {}", all.len(), names.join(", "));
    let base = match &a.base {
        Some(path) => Some(read_profile(path, format)?),
        None => None,
    };
    let validation = a.validate.then(|| calibrate::validate(&all));
    // `--validate` alone only checks; anything else fits the profile.
    let fit = !a.validate || a.out.is_some() || a.explain;
    let profile = fit.then(|| calibrate::recalibrate(&all, &source, base.as_ref()));
    let runs = match (&profile, a.explain) {
        (Some(p), true) => Some(calibrate::explain(&all, p, base.as_ref())),
        _ => None,
    };
    if let (Some(path), Some(p)) = (&a.out, &profile) {
        std::fs::write(path, calibrate::to_toml(p)).map_err(|e| {
            ArgError::failure(
                format!("cannot write {}: {e}", path.display()),
                None,
                format,
            )
        })?;
    }
    if a.json {
        output::json(&moeplan::output::CalibrateOutput {
            profile: profile.as_ref(),
            validation: validation.as_deref(),
            runs: runs.as_deref(),
        });
        return Ok(());
    }
    if let Some(p) = &profile {
        output::print(&render(p));
    }
    if let Some(r) = &runs {
        output::print(&render_runs(r));
    }
    if let Some(v) = &validation {
        output::print(&render_validation(v));
    }
    match (&a.out, &profile) {
        (Some(path), _) => output::note(&format!(
            "wrote {}: use it with --profile {0} (or MOEPLAN_PROFILE={0})",
            path.display()
        )),
        (None, Some(_)) => output::note("not written: add --out PROFILE.toml to save it"),
        (None, None) => {}
    }
    Ok(())
}

/// Fits a built-in file to `runs` with `fit` and writes it (`--built-in`:
/// the serving layers, `--built-in-stacks`: the model stacks); the file
/// names the runs files by their names alone, so the same runs give the
/// same bytes wherever they lie.
fn write_built_in(
    path: &Path,
    runs: &[Run],
    files: &[std::path::PathBuf],
    fit: fn(&[Run], &str) -> String,
) -> Result<(), Failure> {
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned())
        })
        .collect();
    let text = fit(runs, &names.join(", "));
    std::fs::write(path, text).map_err(|e| {
        ArgError::failure(
            format!("cannot write {}: {e}", path.display()),
            None,
            Format::Text,
        )
    })?;
    output::note(&format!("wrote {}", path.display()));
    Ok(())
}

/// Reads a profile file `calibrate --out` wrote.
fn read_profile(path: &Path, format: Format) -> Result<UserProfile, Failure> {
    let bad = |m: String| {
        ArgError::failure(
            format!("{}: {m}", path.display()),
            Some("a file written by `moeplan calibrate --out` (`moeplan schema profile`)".into()),
            format,
        )
    };
    let text = moeplan::spec::source::read_text(path, moeplan::spec::source::SPEC_FILE)
        .map_err(Failure::input(format))?;
    calibrate::from_toml(&text).map_err(bad)
}

/// Loads a profile for every estimate of this process.
pub fn use_profile(path: &Path) -> Result<(), Failure> {
    let p = read_profile(path, Format::Text)?;
    moeplan::profile::use_user_profile(&path.display().to_string(), p).map_err(|m| {
        ArgError::failure(
            format!("--profile {}: {m}", path.display()),
            None,
            Format::Text,
        )
    })
}

fn render_runs(runs: &[RunFit]) -> String {
    let mut t = output::table(&[
        "run",
        "TTFT measured",
        "predicted before → after",
        "TPOT measured",
        "predicted before → after",
        "",
    ]);
    for r in runs {
        t.add_row(vec![
            r.run.clone(),
            r.measured.0.to_string(),
            format!("{} → {}", r.before.0, r.after.0),
            r.measured.1.to_string(),
            format!("{} → {}", r.before.1, r.after.1),
            if r.suspect {
                "left out".into()
            } else {
                String::new()
            },
        ]);
    }
    output::fit(&t)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// `before → after`, as percentages.
fn change(before: f64, after: f64) -> String {
    format!("{} → {}", pct(before), pct(after))
}

fn fit_rows(t: &mut comfy_table::Table, stack: &str, mode: &str, f: &UserFit) {
    let moved: Vec<String> = f
        .moved
        .iter()
        .map(|m| {
            format!(
                "{} {:.4} → {:.4} ({})",
                m.name, m.before, m.after, m.determined_by
            )
        })
        .collect();
    t.add_row(vec![
        stack.to_string(),
        mode.to_string(),
        f.runs.to_string(),
        change(f.ttft_median_before, f.ttft_median_after),
        change(f.ttft_p90_before, f.ttft_p90_after),
        change(f.tpot_median_before, f.tpot_median_after),
        change(f.tpot_p90_before, f.tpot_p90_after),
        moved.join("\n"),
    ]);
}

fn render(p: &UserProfile) -> String {
    let mut t = output::table(&[
        "stack",
        "mode",
        "runs",
        "TTFT |error| median (before → after)",
        "p90",
        "TPOT |error| median",
        "p90",
        "parameters moved (built in → fitted, pinned by)",
    ]);
    for s in &p.stack {
        let name = format!("{} {} (from {})", s.gpu, s.engine.name(), s.base);
        if let Some(f) = &s.aggregated {
            fit_rows(&mut t, &name, "aggregated", f);
        }
        if let Some(f) = &s.disaggregated {
            fit_rows(&mut t, &name, "disaggregated", f);
        }
    }
    let mut o = output::fit(&t);
    for s in &p.suspect {
        o.push_str(&format!(
            "\nwarning: left out, contradicts the physics or itself: {s}"
        ));
    }
    o
}

fn render_validation(v: &[Validation]) -> String {
    let mut t = output::table(&[
        "stack",
        "fitted on",
        "predicted",
        "TTFT |error| median",
        "p90",
        "TPOT |error| median",
        "p90",
    ]);
    for x in v {
        t.add_row(vec![
            x.stack.clone(),
            x.fitted.to_string(),
            x.predicted.to_string(),
            change(x.ttft_before, x.ttft_after),
            change(x.ttft_p90_before, x.ttft_p90_after),
            change(x.tpot_before, x.tpot_after),
            change(x.tpot_p90_before, x.tpot_p90_after),
        ]);
    }
    format!(
        "generalisation: each stack fitted on half of its layouts and lengths, predicting the other half (|error| built in → calibrated)\n{}",
        output::fit(&t)
    )
}

//! `moeplan accuracy`: predictions against measured benchmark runs.
use crate::args::AccuracyArgs;
use crate::output::{self, Failure, Format};
use moeplan::accuracy::{self, ErrorStats, Outcome, Summary};
use moeplan::output::{AccuracyOutput, AccuracyRun, AccuracyUnanswered};
use moeplan::runs::{self, Run};
use std::fmt::Write;

pub fn run(a: &AccuracyArgs) -> Result<(), Failure> {
    let format = Format::from(a.json);
    let all: Vec<Run> = runs::read_each(&a.files, runs::Usability::AnyWellFormed)
        .map_err(|e| Failure::Input(e.into_diagnostic(), format))?;
    let predictor = match a.simulate {
        true => accuracy::Predictor::Simulate,
        false => accuracy::Predictor::Estimate,
    };
    let outcomes = accuracy::evaluate_with(&all, predictor);
    let report = accuracy::report(&all, &outcomes);
    let samples = if a.cv || a.holdout {
        accuracy::samples(&all)
    } else {
        Vec::new()
    };
    let left_out =
        a.cv.then(|| accuracy::cross_validate(&all, &outcomes, &samples));
    let cv = left_out.as_ref().map(|o| accuracy::report(&all, o));
    let left_out = left_out.as_deref();
    let held = a
        .holdout
        .then(|| accuracy::report(&all, &accuracy::hold_out(&all, &outcomes, &samples)));
    let repeats = a
        .repeats
        .then(|| accuracy::report(&all, &accuracy::repeats(&all, &outcomes)));
    if a.json {
        output::json(&AccuracyOutput {
            summaries: &report,
            cross_validated: cv.as_deref(),
            held_out: held.as_deref(),
            repeats: repeats.as_deref(),
            runs: a.runs.then(|| run_rows(&all, &outcomes, left_out)),
            unanswered: unanswered(&all, &outcomes),
        });
        return Ok(());
    }
    for u in unanswered(&all, &outcomes) {
        output::note(&format!("warning: {}: not answered: {}", u.id, u.why));
    }
    if a.markdown {
        let tables = Tables {
            report: &report,
            cv: cv.as_deref(),
            held: held.as_deref(),
            repeats: repeats.as_deref(),
        };
        output::print(&markdown(&tables, &all, &outcomes));
    } else {
        output::print(&output::fit(&table(&report)));
        if let Some(cv) = &cv {
            output::print("\nleave-one-model-out cross-validation:");
            output::print(&output::fit(&table(cv)));
        }
        if let Some(held) = &held {
            output::print("\nheld-back fifth (everything fitted to the other runs):");
            output::print(&output::fit(&table(held)));
        }
        if let Some(repeats) = &repeats {
            output::print("\nrepeats (each distinct measurement of a stated configuration measured more than once against their geometric median):");
            output::print(&output::fit(&table(repeats)));
        }
        if let Some(line) = throughput_line(&all, &outcomes) {
            output::print(&format!("\n{line}"));
        }
        if a.runs {
            output::print(&runs_table(&all, &outcomes, left_out));
        }
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn signed(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

fn table(report: &[Summary]) -> comfy_table::Table {
    let mut t = output::table(&[
        "group",
        "runs",
        "answered",
        "TTFT median",
        "p90",
        "bias",
        "TPOT median",
        "p90",
        "bias",
    ]);
    for s in report {
        t.add_row(summary_cells(s));
    }
    t
}

/// A summary's row; a group with no answered run has no errors to show.
fn summary_cells(s: &Summary) -> Vec<String> {
    let stats = |e: Option<ErrorStats>| match e {
        Some(e) => [pct(e.median), pct(e.p90), signed(e.signed_median)],
        None => ["–".to_string(), "–".to_string(), "–".to_string()],
    };
    let mut cells = vec![s.group.clone(), s.runs.to_string(), s.answered.to_string()];
    cells.extend(stats(s.ttft));
    cells.extend(stats(s.tpot));
    cells
}

fn markdown_table(o: &mut String, report: &[Summary]) {
    let _ = writeln!(
        o,
        "| group | runs | answered | TTFT median | TTFT p90 | TTFT bias | TPOT median | TPOT p90 | TPOT bias |\n|---|---|---|---|---|---|---|---|---|"
    );
    for s in report {
        let _ = writeln!(o, "| {} |", summary_cells(s).join(" | "));
    }
}

/// The report's tables: in-sample, and those `--cv`, `--holdout` and
/// `--repeats` add.
struct Tables<'a> {
    report: &'a [Summary],
    cv: Option<&'a [Summary]>,
    held: Option<&'a [Summary]>,
    repeats: Option<&'a [Summary]>,
}

fn markdown(t: &Tables, runs: &[Run], outcomes: &[Outcome]) -> String {
    let (report, cv) = (t.report, t.cv);
    let mut o = String::new();
    if let Some(cv) = cv {
        let _ = writeln!(o, "### Leave-one-model-out cross-validation\n\nEach model's runs predicted by the engines' serving layers fitted without them (and so without a stack of that model's own): the figure for models nobody fitted to.\n");
        markdown_table(&mut o, cv);
    }
    if let Some(held) = t.held {
        let _ = writeln!(o, "\n### A fifth of the runs held back\n\nA fifth of the runs held back, chosen by a hash of their ids; the engines' serving layers and the model stacks fitted to the other four fifths as the embedded ones are fitted to every run, the held runs predicted with them: the figure for unseen runs of the models and stacks moeplan was fitted to.\n");
        markdown_table(&mut o, held);
    }
    if cv.is_some() || t.held.is_some() {
        let _ = writeln!(
            o,
            "\n### With the embedded serving layers (fitted to every run)\n\nThe engines' layers, and each model's own where the built-in stacks hold one (`profiles/stacks.toml`): what `moeplan estimate` predicts for these deployments. In-sample; how a stack's layer does on layouts and lengths it was not fitted to is the calibration split at the end.\n"
        );
    }
    markdown_table(&mut o, report);
    if let Some(line) = throughput_line(runs, outcomes) {
        let _ = writeln!(o, "\n{line}");
    }
    if let Some(repeats) = t.repeats {
        let _ = writeln!(o, "\n### Runs against their repeats\n\nRuns whose every stated column (model, GPU, engine and version, weight and KV types, node size, lengths, layout, concurrency, replicas or workers, client) is another run's, with a different measurement: each configuration's distinct measurements against their geometric median (`moeplan accuracy --repeats`; a measurement reported twice is scored once, so \"answered\" counts the distinct measurements of configurations measured more than once). A predictor that sees only these columns gives a configuration one figure: this spread is a reference for how much of the figures depends on what the rows do not state (worker counts, speculative decoding, the harness) or on chance, not a bound on any predictor's median error.\n");
        markdown_table(&mut o, repeats);
    }
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for out in outcomes {
        if let Err(e) = &out.predicted {
            let key = reason_kind(e);
            match reasons.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => reasons.push((key, 1)),
            }
        }
    }
    if !reasons.is_empty() {
        let _ = writeln!(
            o,
            "\nUnanswered runs ({} of {}):\n",
            outcomes.iter().filter(|x| x.predicted.is_err()).count(),
            runs.len()
        );
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (k, n) in reasons {
            let _ = writeln!(o, "- {n}: {k}");
        }
    }
    o
}

/// The reason of an unanswered run without its run-specific figures.
fn reason_kind(e: &str) -> String {
    match e.find(':') {
        Some(i) if e.starts_with("predicted not to fit") => e[..i].to_string(),
        _ => e.to_string(),
    }
}

/// The runs not answered, each with why.
fn unanswered<'a>(runs: &'a [Run], outcomes: &'a [Outcome]) -> Vec<AccuracyUnanswered<'a>> {
    outcomes
        .iter()
        .filter_map(|o| {
            let why = o.predicted.as_ref().err()?;
            Some(AccuracyUnanswered {
                id: &runs[o.run].id,
                why,
            })
        })
        .collect()
}

/// Each run's predictions: `outcomes`, and where given `left_out` (the
/// leave-one-model-out outcomes, in the same order).
fn run_rows<'a>(
    runs: &'a [Run],
    outcomes: &'a [Outcome],
    left_out: Option<&[Outcome]>,
) -> Vec<AccuracyRun<'a>> {
    outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let r = &runs[o.run];
            let cv = left_out.and_then(|l| l[i].predicted.as_ref().ok());
            AccuracyRun {
                cross_validated_ttft_ms: cv.map(|p| p.ttft.ms()),
                cross_validated_tpot_ms: cv.map(|p| p.tpot.ms()),
                id: &r.id,
                measured_ttft_ms: r.ttft.ms(),
                measured_tpot_ms: r.tpot.ms(),
                predicted_ttft_ms: o.predicted.as_ref().ok().map(|p| p.ttft.ms()),
                predicted_tpot_ms: o.predicted.as_ref().ok().map(|p| p.tpot.ms()),
                unanswered: o.predicted.as_ref().err().map(|e| e.as_str()),
                measured_throughput_tok_s: r.throughput.map(|t| t.value()),
                predicted_throughput_tok_s: o.throughput(r).map(|t| t.value()),
            }
        })
        .collect()
}

fn runs_table(runs: &[Run], outcomes: &[Outcome], left_out: Option<&[Outcome]>) -> String {
    let mut head = vec![
        "run",
        "TTFT ms",
        "predicted",
        "error",
        "TPOT ms",
        "predicted",
        "error",
    ];
    let stated = runs.iter().any(|r| r.throughput.is_some());
    if stated {
        head.extend(["tokens/s", "predicted", "error"]);
    }
    if left_out.is_some() {
        head.extend(["TTFT error, model left out", "TPOT error, model left out"]);
    }
    let mut t = output::table(&head);
    for (i, o) in outcomes.iter().enumerate() {
        let r = &runs[o.run];
        let (pt, et, pp, ep) = match (&o.predicted, o.errors(r)) {
            (Ok(p), Some((et, ep))) => (
                format!("{:.1}", p.ttft.ms()),
                signed(et),
                format!("{:.2}", p.tpot.ms()),
                signed(ep),
            ),
            (Err(e), _) => (e.clone(), String::new(), String::new(), String::new()),
            (Ok(_), None) => Default::default(),
        };
        let mut row = vec![
            r.id.clone(),
            format!("{:.1}", r.ttft.ms()),
            pt,
            et,
            format!("{:.2}", r.tpot.ms()),
            pp,
            ep,
        ];
        if stated {
            row.extend(throughput_cells(r, o));
        }
        if let Some(l) = left_out {
            let (t, p) = l[i]
                .errors(r)
                .map_or_else(Default::default, |(t, p)| (signed(t), signed(p)));
            row.extend([t, p]);
        }
        t.add_row(row);
    }
    output::fit(&t)
}

/// A run's stated throughput, the predicted one and the error (blank where
/// the run states none or is unanswered).
fn throughput_cells(r: &Run, o: &Outcome) -> [String; 3] {
    let show = |t: Option<f64>| t.map_or_else(String::new, |t| format!("{t:.1}"));
    [
        show(r.throughput.map(|t| t.value())),
        show(o.throughput(r).map(|t| t.value())),
        o.throughput_error(r).map_or_else(String::new, signed),
    ]
}

/// The throughput errors of the runs that state a throughput, in a line
/// (None when none does).
fn throughput_line(runs: &[Run], outcomes: &[Outcome]) -> Option<String> {
    let (n, s) = accuracy::throughput_errors(runs, outcomes)?;
    Some(format!(
        "output throughput of the {n} answered runs that state one (predicted by Little's law from the predicted TTFT and TPOT): median |error| {}, p90 {}, bias {}",
        pct(s.median),
        pct(s.p90),
        signed(s.signed_median)
    ))
}

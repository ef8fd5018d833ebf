//! `moeplan audit`: check a deployment plan, report every finding with its
//! evidence, and write the corrected plan.
use crate::args::AuditArgs;
use crate::output::{self, ArgError, Failure, Format};
use moeplan::audit::{audit, Audit, AuditOptions, Finding, Severity};
use moeplan::spec::source::Source;
use std::fmt::Write;
use std::path::Path;

pub fn run(a: &AuditArgs) -> Result<(), Failure> {
    let format = Format::from(a.json);
    let (plan, source) = moeplan::spec::plan::read(&a.plan).map_err(Failure::input(format))?;
    // A hopeless plan's correction comes from the planner.
    let planner = moeplan::search::SearchPlanner;
    let mut plan = plan;
    super::deployment::apply_engine(a.engine, &mut plan.scenario);
    let result = audit(
        &plan,
        &AuditOptions {
            planner: Some(&planner),
        },
    );
    if let Some(path) = &a.report {
        write(path, &markdown(&result), format)?;
    }
    if let Some(path) = &a.fix {
        match &result.corrected {
            Some(c) => {
                let text = moeplan::audit::fix::render(&source, c).map_err(|e| {
                    ArgError::failure(
                        format!("cannot render the corrected plan: {e}"),
                        None,
                        format,
                    )
                })?;
                write(path, &text, format)?;
            }
            None => output::note("note: no corrected plan could be built (no valid layout found)"),
        }
    }
    if a.json {
        output::json(&result);
    } else {
        output::print(&terminal(&result, &source));
    }
    if result.has_errors() {
        return Err(Failure::Negative);
    }
    Ok(())
}

fn write(path: &Path, text: &str, format: Format) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|e| {
        ArgError::failure(
            format!("cannot write {}: {e}", path.display()),
            Some("check the directory exists and is writable".into()),
            format,
        )
    })
}

const GROUPS: [(Severity, &str); 3] = [
    (Severity::Error, "errors"),
    (Severity::Warning, "warnings"),
    (Severity::Info, "notes"),
];

fn headline(r: &Audit) -> String {
    let s = &r.summary;
    format!(
        "{}: {} errors, {} warnings, {} notes",
        s.verdict.label(),
        s.errors,
        s.warnings,
        s.infos
    )
}

fn computed_lines(r: &Audit) -> Vec<String> {
    let c = &r.computed;
    let mut lines = Vec::new();
    for p in &c.pools {
        let mut line = format!(
            "{}: {} × {} replicas = {} GPUs",
            p.prefix, p.written, p.replicas, p.gpus
        );
        if !p.valid {
            match p.reference {
                Some(l) => {
                    let _ = write!(line, " (invalid; figures for the nearest valid layout {l})");
                }
                None => line.push_str(" (invalid; no valid layout nearby)"),
            }
        }
        if let (Some(m), Some(fits)) = (p.memory_per_gpu, p.fits) {
            let _ = write!(
                line,
                ", memory {m} per GPU{}",
                if fits { "" } else { " (does not fit)" }
            );
        }
        lines.push(line);
    }
    let mut perf = Vec::new();
    if let Some(t) = c.ttft {
        perf.push(format!("TTFT {t}"));
    }
    if let Some(t) = c.tpot {
        perf.push(format!("TPOT {t}"));
    }
    if let Some(t) = c.throughput_per_gpu {
        perf.push(format!(
            "{:.1} output tokens/s per GPU ({:.3} per ms)",
            t.value(),
            t.per_ms()
        ));
    }
    if !perf.is_empty() {
        lines.push(format!(
            "computed (latency the worse of the longest and mean lengths; throughput at the mean): {}",
            perf.join(", ")
        ));
    }
    lines
}

fn finding_text(s: &mut String, i: usize, f: &Finding) {
    let _ = writeln!(s, "  {i}. {} [{}]", f.field, f.code);
    let _ = writeln!(s, "     {}", f.message);
    if f.claimed.is_some() || f.computed.is_some() {
        let _ = writeln!(
            s,
            "     claimed {} · computed {}",
            f.claimed.as_deref().unwrap_or("—"),
            f.computed.as_deref().unwrap_or("—")
        );
    }
    let _ = writeln!(s, "     evidence: {}", f.evidence.formula);
    for (k, v) in &f.evidence.inputs {
        let _ = writeln!(s, "       {k} = {v}");
    }
    let _ = writeln!(s, "     fix: {}", f.fix);
}

fn corrected_text(r: &Audit) -> Vec<String> {
    let Some(c) = &r.corrected else {
        return vec!["no corrected plan: no valid layout found".into()];
    };
    let k = &c.claims;
    let source = serde_json::to_value(c.source)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let mut v = vec![
        format!(
            "corrected plan ({source}): {} × {} replicas = {} GPUs",
            c.layout, c.replicas, c.gpus
        ),
        format!("  {}", c.reason),
        format!(
            "  TTFT {}, TPOT {}, {:.1} output tokens/s per GPU, memory {} per GPU ({:.1}%), load imbalance {:.1}%",
            k.ttft,
            k.tpot,
            k.throughput_per_gpu.value(),
            k.memory_per_gpu,
            k.memory_utilization * 100.0,
            k.load_imbalance * 100.0
        ),
    ];
    if !c.unmet.is_empty() {
        v.push(format!("  still misses: {}", c.unmet.join("; ")));
    }
    v
}

fn terminal(r: &Audit, source: &Source) -> String {
    let s0 = &r.summary;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "audit of {} ({} on {}): {}",
        source.name,
        s0.model,
        s0.gpu,
        headline(r)
    );
    for l in computed_lines(r) {
        let _ = writeln!(s, "  {l}");
    }
    if let Some(p) = &r.profile {
        let _ = writeln!(s, "  {p}");
    }
    let mut i = 0;
    for (sev, title) in GROUPS {
        let group: Vec<&Finding> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{title} ({})", group.len());
        for f in group {
            i += 1;
            finding_text(&mut s, i, f);
        }
    }
    let _ = writeln!(s);
    for l in corrected_text(r) {
        let _ = writeln!(s, "{l}");
    }
    s
}

fn markdown(r: &Audit) -> String {
    let s0 = &r.summary;
    let mut s = String::new();
    let _ = writeln!(s, "# Review of plan `{}`\n", s0.plan);
    let _ = writeln!(
        s,
        "Model `{}` on `{}`. **{}**\n",
        s0.model,
        s0.gpu,
        headline(r)
    );
    let _ = writeln!(s, "## What moeplan computes\n");
    for l in computed_lines(r) {
        let _ = writeln!(s, "- {l}");
    }
    if let Some(p) = &r.profile {
        let _ = writeln!(s, "- {p}");
    }
    for (sev, title) in GROUPS {
        let group: Vec<&Finding> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        let mut t = title.to_string();
        t[..1].make_ascii_uppercase();
        let _ = writeln!(s, "\n## {t} ({})\n", group.len());
        let _ = writeln!(
            s,
            "| field | code | claimed | computed |\n|---|---|---|---|"
        );
        for f in &group {
            let _ = writeln!(
                s,
                "| `{}` | `{}` | {} | {} |",
                f.field,
                f.code,
                f.claimed.as_deref().unwrap_or("—"),
                f.computed.as_deref().unwrap_or("—")
            );
        }
        for f in group {
            let _ = writeln!(s, "\n### `{}` — {}\n", f.field, f.code);
            let _ = writeln!(s, "{}\n", f.message);
            let _ = writeln!(s, "- evidence: {}", f.evidence.formula);
            for (k, v) in &f.evidence.inputs {
                let _ = writeln!(s, "  - `{k}` = {v}");
            }
            let _ = writeln!(s, "- fix: {}", f.fix);
        }
    }
    let _ = writeln!(s, "\n## Corrected plan\n");
    for l in corrected_text(r) {
        let _ = writeln!(s, "{}", l.trim_start());
    }
    s
}

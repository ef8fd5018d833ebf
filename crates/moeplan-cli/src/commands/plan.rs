//! `moeplan plan`: search every valid layout and recommend the best.
use super::deployment::{bounded, fraction, latency_ms, within};
use crate::args::PlanArgs;
use crate::output::{self, ArgError, Detail, Failure, Format};
use moeplan::bounds::{CONCURRENCY, GPUS_PER_NODE, GPU_BUDGET, REQUEST_RATE, TOKENS};
use moeplan::memory::EngineConfig;
use moeplan::output::{PlanOutput, ScenarioEcho};
use moeplan::search::percentiles::{self, Latency, PercentileLevel, PercentileReport, Quantile};
use moeplan::search::{self, describe, Candidate, Objective, PlanOptions, PlanResult};
use moeplan::spec::scenario::{self, Lengths, Scenario};
use moeplan::units::Seconds;
use std::fmt::Write;
use std::time::{Duration, Instant};

mod pareto;
mod report;

/// A scenario from flags alone: model, GPU and lengths are required; the
/// budget defaults to one node; service levels are only those given.
fn from_flags(a: &PlanArgs) -> Result<Scenario, Failure> {
    let format = Format::from(a.output.json);
    let missing: Vec<&str> = [
        ("--model", a.model.is_none()),
        ("--gpu", a.gpu.is_none()),
        ("--isl", a.isl.is_none()),
        ("--osl", a.osl.is_none()),
    ]
    .iter()
    .filter(|x| x.1)
    .map(|x| x.0)
    .collect();
    if !missing.is_empty() {
        return Err(ArgError::failure(
            format!("moeplan plan without a scenario file needs {}", missing.join(", ")),
            Some("give them all (e.g. --model qwen3-30b-a3b --gpu h100-sxm --isl 4000 --osl 500), write a scenario file, or run `moeplan plan` alone for the seed scenario".into()),
            format,
        ));
    }
    let model = moeplan::catalog::resolve_model(a.model.as_deref().unwrap_or_default())
        .map_err(Failure::input(format))?;
    let gpu = moeplan::catalog::resolve_gpu(a.gpu.as_deref().unwrap_or_default())
        .map_err(Failure::input(format))?;
    let node = gpu.gpus_per_node;
    let name = format!("{}-on-{}", model.name, gpu.id);
    Ok(Scenario::fixed(
        &name,
        model,
        gpu,
        node,
        a.isl.unwrap_or(1).max(1),
        a.osl.unwrap_or(1).max(1),
    ))
}

/// The scenario the flags describe: a file or the embedded seed, with overrides.
fn scenario(a: &PlanArgs) -> Result<Scenario, Failure> {
    let format = Format::from(a.output.json);
    let mut s = base_scenario(a, format)?;
    apply_workload(a, &mut s, format)?;
    apply_slo(a, &mut s, format)?;
    if let Some(m) = fraction(a.mfu, "mfu", format)? {
        s.mfu = Some(m);
    }
    if let Some(b) = fraction(a.bandwidth_utilization, "bandwidth-utilization", format)? {
        s.bandwidth_utilization = Some(b);
    }
    super::deployment::apply_engine(a.engine, &mut s);
    super::deployment::apply_levers(&a.levers, &mut s, format)?;
    if a.objective == Objective::FewestGpus && s.workload.request_rate.is_none() {
        return Err(ArgError::failure(
            "--objective fewest-gpus needs a request rate".into(),
            Some("add --request-rate N (requests/s) or workload.request_rate".into()),
            format,
        ));
    }
    Ok(s)
}

/// The scenario before the flags' overrides: a file, the flags alone, or
/// the embedded seed; then `--model` and `--gpu` over it.
fn base_scenario(a: &PlanArgs, format: Format) -> Result<Scenario, Failure> {
    let mut s = match (&a.scenario, a.model.is_some() || a.gpu.is_some()) {
        (Some(p), _) => scenario::read(p).map_err(Failure::input(format))?,
        // Flags alone describe a whole scenario: no requirement of the seed
        // documents (nor their flat efficiencies) leaks into another model.
        (None, true) => from_flags(a)?,
        (None, false) => scenario::seed(),
    };
    if let Some(m) = &a.model {
        s.model = moeplan::catalog::resolve_model(m).map_err(Failure::input(format))?;
    }
    if let Some(g) = &a.gpu {
        s.gpu = moeplan::catalog::resolve_gpu(g).map_err(Failure::input(format))?;
    }
    Ok(s)
}

/// The GPU budget, node size, lengths, concurrency and request rate flags.
fn apply_workload(a: &PlanArgs, s: &mut Scenario, format: Format) -> Result<(), Failure> {
    if let Some(n) = within("gpus-per-node", a.gpus_per_node, GPUS_PER_NODE, format)? {
        s.gpu.gpus_per_node = n;
    }
    if let Some(n) = within("gpus", a.gpus, GPU_BUDGET, format)? {
        s.gpus_available = Some(n);
    }
    if let Some(v) = within("isl", a.isl, TOKENS, format)? {
        s.workload.isl = Lengths { min: v, max: v };
    }
    if let Some(v) = within("osl", a.osl, TOKENS, format)? {
        s.workload.osl = Lengths { min: v, max: v };
    }
    if let Some(v) = within("concurrency", a.concurrency, CONCURRENCY, format)? {
        s.workload.concurrency = Some(v);
    }
    if let Some(r) = bounded(a.request_rate, "request-rate", REQUEST_RATE, format)? {
        s.workload.request_rate = Some(r);
    }
    if let Some(h) = crate::commands::deployment::cache_hit_rate(a.cache_hit_rate, format)? {
        s.workload.cache_hit_rate = h;
    }
    if let Some(c) = a.client {
        s.workload.client = c;
    }
    Ok(())
}

/// The service-level flags: latency limits, throughput floors and the
/// memory share.
fn apply_slo(a: &PlanArgs, s: &mut Scenario, format: Format) -> Result<(), Failure> {
    for (flag, v, slot) in [
        ("ttft-ms", a.ttft_ms, &mut s.slo.ttft),
        ("tpot-ms", a.tpot_ms, &mut s.slo.tpot),
    ] {
        if let Some(limit) = latency_ms(v, flag, format)? {
            *slot = Some(limit);
        }
    }
    for (flag, value, slot) in [
        (
            "--min-throughput-per-gpu",
            &a.min_throughput_per_gpu,
            &mut s.slo.min_throughput_per_gpu,
        ),
        (
            "--min-throughput-per-user",
            &a.min_throughput_per_user,
            &mut s.slo.min_throughput_per_user,
        ),
    ] {
        if let Some(t) = value {
            let r = moeplan::quantity::parse_token_rate(t)
                .map_err(|e| ArgError::failure(format!("{flag}: {e}"), None, format))?;
            *slot = Some(r);
        }
    }
    if let Some(f) = super::deployment::memory_limit(a.max_memory_fraction, format)? {
        s.slo.max_memory_fraction = Some(f);
    }
    Ok(())
}

/// Plans the scenario the flags describe: searches, writes the requested
/// files and prints the result.
pub fn run(a: &PlanArgs) -> Result<(), Failure> {
    let s = scenario(a)?;
    let opts = PlanOptions {
        objective: a.objective,
        modes: a.mode,
        top_n: a.top as usize,
        ..PlanOptions::default()
    };
    let levels = percentile_levels(a, &s)?;
    let w = &s.workload;
    super::deployment::warn_context(&s.model, w.isl.max, w.osl.max);
    let (result, elapsed) = search_with_progress(&s, &opts);
    write_files(a, &s, &result)?;
    let rate = s.workload.request_rate.unwrap_or(0.0);
    let percentiles = (!levels.is_empty())
        .then(|| percentiles::check(&s, &result, &levels, rate, a.simulate_top as usize));
    if a.output.json {
        output::json(&PlanOutput {
            percentiles: percentiles.as_ref(),
            ..PlanOutput::new(scenario_echo(&s), &result)
        });
    } else {
        output::print(&render(&s, &result, s.engine_config(), View::of(a)));
        if let Some(p) = &percentiles {
            output::print(&render_percentiles(p));
        }
        output::note(&format!(
            "searched {} layouts ({} estimates) in {:.2} s",
            result.rejected.layouts,
            result.rejected.estimates,
            elapsed.as_secs_f64()
        ));
    }
    // A recommendation is the answer, met or not, and so is the analysis of
    // why no layout fits (both say what would change it): exit 0. Under
    // --require-slo a miss, or no layout at all, is the negative answer.
    let percentiles_met = percentiles.as_ref().is_none_or(|p| p.recommended.is_some());
    match (&result.recommended, a.require_slo) {
        (_, false) => Ok(()),
        (Some(c), true) if c.meets() && percentiles_met => Ok(()),
        (_, true) => Err(Failure::Negative),
    }
}

/// The percentile levels: the scenario's (`slo.ttft_p99`, ...), each
/// replaced by its flag where one is given; they need a request rate.
fn percentile_levels(a: &PlanArgs, s: &Scenario) -> Result<Vec<PercentileLevel>, Failure> {
    let format = Format::from(a.output.json);
    let flags = [
        (a.ttft_p99_ms, Latency::Ttft, Quantile::P99, "ttft-p99-ms"),
        (a.tpot_p99_ms, Latency::Tpot, Quantile::P99, "tpot-p99-ms"),
        (a.ttft_p90_ms, Latency::Ttft, Quantile::P90, "ttft-p90-ms"),
        (a.tpot_p90_ms, Latency::Tpot, Quantile::P90, "tpot-p90-ms"),
    ];
    let mut levels = s.slo.percentiles.clone();
    for (v, figure, quantile, flag) in flags {
        let Some(limit) = latency_ms(v, flag, format)? else {
            continue;
        };
        levels.retain(|l| (l.figure, l.quantile) != (figure, quantile));
        levels.push(PercentileLevel {
            figure,
            quantile,
            limit,
        });
    }
    if !levels.is_empty() && s.workload.request_rate.is_none() {
        return Err(ArgError::failure(
            "percentile levels are judged at a request rate".into(),
            Some("add --request-rate N (requests/s) or workload.request_rate".into()),
            format,
        ));
    }
    Ok(levels)
}

/// A simulated candidate's deployment, what the closed form planned and
/// what the simulation needs, in words.
fn sized(c: &percentiles::PercentileCheck) -> (String, String, String) {
    let most = |n: u32| n.saturating_mul(4).max(4);
    match &c.prefill {
        None => (
            c.layout.to_string(),
            format!("{} replica(s)", c.replicas_planned),
            match (c.replicas_needed, c.gpus_needed) {
                (Some(n), Some(g)) => format!("needs {n} replica(s) ({g} GPUs)"),
                _ => format!(
                    "misses them even with {} replicas",
                    most(c.replicas_planned)
                ),
            },
        ),
        Some(p) => (
            format!("prefill [{}] + decode [{}]", p.layout, c.layout),
            format!(
                "{} prefill + {} decode worker(s)",
                p.workers_planned, c.replicas_planned
            ),
            match (p.workers_needed, c.replicas_needed, c.gpus_needed) {
                (Some(a), Some(b), Some(g)) => {
                    format!("needs {a} prefill + {b} decode worker(s) ({g} GPUs)")
                }
                _ => format!(
                    "misses them even with {} prefill + {} decode workers",
                    most(p.workers_planned),
                    most(c.replicas_planned)
                ),
            },
        ),
    }
}

/// The percentile check as text: each simulated candidate and what it needs.
fn render_percentiles(p: &PercentileReport) -> String {
    let names: Vec<String> = p
        .levels
        .iter()
        .map(|l| format!("{} ≤ {}", l.name(), l.limit))
        .collect();
    let mut out = format!(
        "\nPercentile levels {} at {} requests/s (Poisson, {} requests simulated per run, `moeplan simulate`):\n",
        names.join(", "),
        p.rate,
        p.requests
    );
    for (i, c) in p.checked.iter().enumerate() {
        let sim: Vec<String> = c
            .simulated
            .iter()
            .map(|(l, v)| format!("{} {}", l.name(), Seconds::new(*v)))
            .collect();
        let (what, planned, need) = sized(c);
        let mark = if p.recommended == Some(i) {
            "  <- fewest GPUs"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  #{} {what}: planned {planned}, {need}; simulated {}{mark}",
            c.rank + 1,
            sim.join(", ")
        );
    }
    if p.recommended.is_none() {
        out += "  no candidate simulated meets the percentile levels within four times its planned replicas (or workers)\n";
    }
    out
}

/// The search, with a progress bar on a terminal once it takes over a
/// second, and how long it took.
fn search_with_progress(s: &Scenario, opts: &PlanOptions) -> (PlanResult, Duration) {
    let start = Instant::now();
    let bar = indicatif::ProgressBar::hidden();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = |done: usize, total: usize| {
        if terminal && start.elapsed() > Duration::from_secs(1) {
            if bar.is_hidden() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_message("layouts");
            }
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    };
    let result = search::plan(s, opts, &progress);
    bar.finish_and_clear();
    (result, start.elapsed())
}

/// The Markdown report (`--report`) and the Pareto plot (`--pareto`), in
/// that order.
fn write_files(a: &PlanArgs, s: &Scenario, result: &PlanResult) -> Result<(), Failure> {
    let format = Format::from(a.output.json);
    if let Some(path) = &a.report {
        std::fs::write(path, report::markdown(s, result))
            .map_err(|e| cannot_write(path, e, format))?;
    }
    if let Some(path) = &a.pareto {
        pareto::pareto_svg(path, result).map_err(|e| cannot_write(path, e, format))?;
    }
    Ok(())
}

/// The input error for a file that could not be written.
fn cannot_write(path: &std::path::Path, e: impl std::fmt::Display, format: Format) -> Failure {
    ArgError::failure(
        format!("cannot write {}: {e}", path.display()),
        None,
        format,
    )
}

/// The scenario as `plan --json` echoes it.
fn scenario_echo(s: &Scenario) -> ScenarioEcho<'_> {
    ScenarioEcho {
        name: &s.name,
        model: &s.model.name,
        gpu: &s.gpu.id,
        gpus_per_node: s.gpu.gpus_per_node,
        gpus_available: s.gpus_available,
        workload: &s.workload,
        slo: &s.slo,
        mfu: s.mfu,
        bandwidth_utilization: s.bandwidth_utilization,
        assumptions: &s.assumptions,
    }
}

/// A fixed length, or a range as `min–max`.
fn lengths(l: &Lengths) -> String {
    if l.is_fixed() {
        l.min.to_string()
    } else {
        format!("{}–{}", l.min, l.max)
    }
}

/// The service levels the scenario sets, in one line.
fn slo_line(s: &Scenario) -> String {
    let mut parts = Vec::new();
    if let Some(t) = s.slo.ttft {
        parts.push(format!("TTFT ≤ {t}"));
    }
    if let Some(t) = s.slo.tpot {
        parts.push(format!("TPOT ≤ {t}"));
    }
    if let Some(r) = s.slo.min_throughput_per_gpu {
        parts.push(format!("≥ {:.1} output tokens/ms per GPU", r.per_ms()));
    }
    if let Some(r) = s.slo.min_throughput_per_user {
        parts.push(format!("≥ {:.1} tokens/s per user", r.value()));
    }
    if let Some(f) = s.slo.max_memory_fraction {
        parts.push(format!("memory ≤ {:.0}%", f.value() * 100.0));
    }
    if let Some(l) = s.slo.max_load_imbalance {
        parts.push(format!("load imbalance ≤ {:.0}%", l * 100.0));
    }
    parts.join(", ")
}

/// Candidates as a table: layout, GPUs, throughput, latency, memory,
/// imbalance and the levels each misses.
fn table(cands: &[&Candidate]) -> String {
    let mut t = output::table(&[
        "#",
        "mode",
        "layout per phase (workers × [degrees] c=concurrency)",
        "GPUs",
        "tok/s/GPU",
        "tok/s/user",
        "TTFT",
        "TPOT",
        "mem/GPU",
        "imbalance",
        "meets",
    ]);
    for (i, c) in cands.iter().enumerate() {
        t.add_row(vec![
            (i + 1).to_string(),
            format!("{:?}", c.figures.mode).to_lowercase(),
            describe(c),
            c.figures.gpus.to_string(),
            format!("{:.0}", c.figures.output_tokens_per_s_per_gpu.value()),
            format!("{:.1}", c.figures.output_tokens_per_s_per_user.value()),
            c.figures.ttft.to_string(),
            c.figures.tpot.to_string(),
            format!(
                "{} ({:.0}%)",
                c.figures.memory_per_gpu,
                c.figures.memory_fraction * 100.0
            ),
            format!("{:.1}%", c.figures.load_imbalance * 100.0),
            if c.meets() {
                "yes".to_string()
            } else {
                c.violations
                    .iter()
                    .map(|v| v.level.name())
                    .collect::<Vec<_>>()
                    .join(",")
            },
        ]);
    }
    output::fit(&t)
}

/// What the text report shows besides the candidates and the
/// recommendation.
#[derive(Clone, Copy)]
struct View {
    /// The recommendation's derivations and its worker's estimate (`--explain`).
    detail: Detail,
    /// The Pareto front's table (`--objective pareto`).
    front: Front,
}

/// Whether the text report lists the Pareto front.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Front {
    /// Not listed (every objective but pareto).
    Omitted,
    /// Listed after the candidates of each mode.
    Listed,
}

impl View {
    /// The view the flags ask for.
    fn of(a: &PlanArgs) -> Self {
        View {
            detail: Detail::from(a.output.explain),
            front: if a.objective == Objective::Pareto {
                Front::Listed
            } else {
                Front::Omitted
            },
        }
    }
}

/// The text report: the scenario, the best candidates, the recommendation
/// and why, what binds, what the search rejected, and (with --explain) the
/// derivations.
fn render(s: &Scenario, r: &PlanResult, engine: EngineConfig, view: View) -> String {
    let mut o = header(s, r, engine);
    o += &candidates(r, view.front);
    o += &lengths_legend(s);
    o += &recommendation(r);
    o += &binding(r);
    o += &rejected(s, r);
    if view.detail == Detail::Derivations {
        if let Some(rec) = &r.recommended {
            o += &derivations(s, rec, engine);
        }
    }
    o
}

/// The scenario in a few lines: model, GPUs, lengths, service levels,
/// engine, efficiencies and assumptions.
fn header(s: &Scenario, r: &PlanResult, engine: EngineConfig) -> String {
    let mut o = String::new();
    let w = &s.workload;
    let _ = writeln!(
        o,
        "{}: {} on up to {} × {} ({} per node); prompts {} tokens, outputs {} tokens{}",
        s.name,
        s.model.name,
        r.gpu_budget,
        s.gpu.id,
        s.gpu.gpus_per_node,
        lengths(&w.isl),
        lengths(&w.osl),
        w.concurrency.map_or(String::new(), |c| format!(
            ", {c} requests in flight per replica"
        ))
    );
    let _ = writeln!(o, "service levels: {}", slo_line(s));
    let _ = writeln!(
        o,
        "engine: {} ({})",
        engine.engine.name(),
        moeplan::profile::resolve_for(&s.model, &s.gpu, engine.engine, s.workload.client).source
    );
    if let (Some(m), Some(b)) = (s.mfu, s.bandwidth_utilization) {
        let _ = writeln!(
            o,
            "efficiency assumed by the scenario: {:.0}% MFU, {:.0}% bandwidth",
            m.value() * 100.0,
            b.value() * 100.0
        );
    }
    for a in s.model.assumptions.iter().chain(s.assumptions.iter()) {
        let _ = writeln!(o, "assumption: {a}");
    }
    o
}

/// Which lengths the table's figures are at, when the scenario's lengths
/// vary: throughput at the mean prompt and output, latency and memory at
/// the longest (the service levels' worst case).
fn lengths_legend(s: &Scenario) -> String {
    let w = &s.workload;
    if w.isl.is_fixed() && w.osl.is_fixed() {
        return String::new();
    }
    format!(
        "tok/s/GPU and tok/s/user at the mean lengths ({} + {} tokens); mem/GPU at the longest ({} + {}); TTFT and TPOT the worse of the two\n",
        w.isl.mean(),
        w.osl.mean(),
        w.isl.max,
        w.osl.max
    )
}

/// The best candidates of each mode, and the Pareto front when listed.
fn candidates(r: &PlanResult, front: Front) -> String {
    let mut o = String::new();
    for mode in [search::Mode::Aggregated, search::Mode::Disaggregated] {
        let c: Vec<&Candidate> = r
            .candidates
            .iter()
            .filter(|c| c.figures.mode == mode)
            .collect();
        if c.is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            "\n{} (best {}):\n{}",
            format!("{mode:?}").to_lowercase(),
            c.len(),
            table(&c)
        );
    }
    if front == Front::Listed {
        let front: Vec<&Candidate> = r.pareto.iter().collect();
        let _ = writeln!(o, "\nPareto front (no point is beaten on both tokens/s per GPU and per user; {} points):\n{}", front.len(), table(&front));
    }
    o
}

/// The recommendation with its rationale, or that no layout fits.
fn recommendation(r: &PlanResult) -> String {
    let mut o = String::new();
    match &r.recommended {
        Some(rec) => {
            let _ = writeln!(
                o,
                "\nRecommendation{}: {} — {} GPUs, {:.0} output tokens/s per GPU ({:.2} per ms), {:.1} per user, TTFT {}, TPOT {}",
                if rec.meets() { "" } else { " (misses service levels)" },
                describe(rec),
                rec.figures.gpus,
                rec.figures.output_tokens_per_s_per_gpu.value(),
                rec.figures.output_tokens_per_s_per_gpu.value() / 1e3,
                rec.figures.output_tokens_per_s_per_user.value(),
                rec.figures.ttft,
                rec.figures.tpot
            );
            for why in &r.rationale {
                let _ = writeln!(o, "  - {why}");
            }
        }
        None => {
            let _ = writeln!(o, "\nNo layout fits the model on the GPUs available.");
        }
    }
    o
}

/// The binding constraint when nothing meets every service level, with
/// what would relieve it.
fn binding(r: &PlanResult) -> String {
    let mut o = String::new();
    if let Some(b) = &r.binding {
        let _ = writeln!(
            o,
            "\nNothing meets every service level; the binding constraint is {}:",
            b.level.name()
        );
        for a in &b.advice {
            let _ = writeln!(o, "  - {a}");
        }
    }
    o
}

/// How many layouts the search enumerated and why it rejected the others.
fn rejected(s: &Scenario, r: &PlanResult) -> String {
    let j = &r.rejected;
    format!(
        "\nSearched {} layouts: {} invalid splits (heads, KV heads, experts, expert width, layers, folding), {} TP groups wider than a node{}; of the rest, {} do not fit in memory, {} cannot meet TTFT, {} cannot meet TPOT, {} miss the throughput floor, {} exceed the load-imbalance limit, {} need more GPUs than available.\n",
        j.layouts, j.divisibility, j.node_fit, engine_rejections(s, j.engine), j.memory, j.ttft, j.tpot, j.throughput + j.throughput_per_user, j.load_imbalance, j.gpu_budget
    )
}

/// ", N the stated engine cannot express" (or the default engine, named)
/// when the serving engine ruled some layouts out.
pub fn engine_rejections(s: &Scenario, n: usize) -> String {
    match (n, s.engine) {
        (0, _) => String::new(),
        (n, Some(_)) => format!(", {n} the stated engine cannot express"),
        (n, None) => format!(
            ", {n} {} (the default engine) cannot express",
            s.serving_engine().name()
        ),
    }
}

/// The recommendation's derivations, then the estimate of its last pool's
/// worker at the mean lengths, with its own derivations.
fn derivations(s: &Scenario, rec: &Candidate, engine: EngineConfig) -> String {
    let mut o = String::from("\nDerivations of the recommendation:\n");
    o += &output::derivation_list(&rec.explain);
    let pool = rec.figures.pools.last().expect("a candidate has a pool");
    // The same engine (and KV cache type) the search ranked with.
    let s = rec.figures.as_plan(s).scenario;
    let d = super::deployment::Deployment::from_scenario(
        s.clone(),
        pool.layout,
        pool.concurrency,
        engine,
    );
    let input = d.input();
    if let Ok(e) = moeplan::serving::estimate(&input) {
        let _ = writeln!(
            o,
            "\nThe {} worker at the mean lengths:\n{}",
            pool.role,
            super::estimate::render(&e, &s.model, &s.gpu.id, Detail::Derivations)
        );
    }
    o
}

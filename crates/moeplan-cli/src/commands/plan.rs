//! `moeplan plan`: search every valid layout and recommend the best.
use super::deployment::{at_least_one, fraction};
use crate::args::PlanArgs;
use crate::output::{self, ArgError, Detail, Failure, Format};
use moeplan::memory::EngineConfig;
use moeplan::output::{PlanOutput, ScenarioEcho};
use moeplan::search::{self, describe, Candidate, Objective, PlanOptions, PlanResult};
use moeplan::spec::scenario::{self, Lengths, Scenario};
use moeplan::units::Seconds;
use std::fmt::Write;
use std::time::{Duration, Instant};

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
    super::deployment::apply_engine(a.engine.as_deref(), &mut s, format)?;
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
        (Some(p), _) => scenario::read(std::path::Path::new(p)).map_err(Failure::input(format))?,
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
    if let Some(n) = at_least_one("gpus-per-node", a.gpus_per_node, format)? {
        s.gpu.gpus_per_node = n;
    }
    if let Some(n) = at_least_one("gpus", a.gpus, format)? {
        s.gpus_available = Some(n);
    }
    if let Some(v) = at_least_one("isl", a.isl, format)? {
        s.workload.isl = Lengths { min: v, max: v };
    }
    if let Some(v) = at_least_one("osl", a.osl, format)? {
        s.workload.osl = Lengths { min: v, max: v };
    }
    if let Some(v) = at_least_one("concurrency", a.concurrency, format)? {
        s.workload.concurrency = Some(v);
    }
    if let Some(r) = a.request_rate {
        if !(r > 0.0 && r.is_finite()) {
            return Err(ArgError::failure(
                format!("--request-rate {r} is not a positive rate"),
                None,
                format,
            ));
        }
        s.workload.request_rate = Some(r);
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
        if let Some(ms) = v {
            if ms.is_nan() || ms <= 0.0 {
                return Err(ArgError::failure(
                    format!("--{flag} must be positive"),
                    None,
                    format,
                ));
            }
            *slot = Some(Seconds::from_ms(ms));
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
    if let Some(f) = fraction(a.max_memory_fraction, "max-memory-fraction", format)? {
        s.slo.max_memory_fraction = f;
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
        top_n: a.top.max(1),
        ..PlanOptions::default()
    };
    let (result, elapsed) = search_with_progress(&s, &opts);
    write_files(a, &s, &result)?;
    if a.output.json {
        output::json(&PlanOutput::new(scenario_echo(&s), &result));
    } else {
        output::print(&render(&s, &result, s.engine_config(), View::of(a)));
        output::note(&format!(
            "searched {} layouts ({} estimates) in {:.2} s",
            result.rejected.layouts,
            result.rejected.estimates,
            elapsed.as_secs_f64()
        ));
    }
    // A recommendation is the answer, met or not (its misses and what
    // would meet them are in the output); no valid layout at all is the
    // negative answer, and so is a miss under --require-slo.
    match &result.recommended {
        Some(c) if c.meets() || !a.require_slo => Ok(()),
        _ => Err(Failure::Negative),
    }
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
        std::fs::write(path, markdown(s, result)).map_err(|e| cannot_write(path, e, format))?;
    }
    if let Some(path) = &a.pareto {
        pareto_svg(path, result).map_err(|e| cannot_write(path, e, format))?;
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

fn lengths(l: &Lengths) -> String {
    if l.is_fixed() {
        l.min.to_string()
    } else {
        format!("{}–{}", l.min, l.max)
    }
}

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
        parts.push(format!("≥ {:.1} tokens/s per user", r.0));
    }
    parts.push(format!(
        "memory ≤ {:.0}%",
        s.slo.max_memory_fraction * 100.0
    ));
    if let Some(l) = s.slo.max_load_imbalance {
        parts.push(format!("load imbalance ≤ {:.0}%", l * 100.0));
    }
    parts.join(", ")
}

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
            format!("{:.0}", c.figures.output_tokens_per_s_per_gpu.0),
            format!("{:.1}", c.figures.output_tokens_per_s_per_user.0),
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
    t.to_string()
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
    o += &recommendation(r);
    o += &binding(r);
    o += &rejected(r);
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
        moeplan::profile::resolve(&s.gpu, engine.engine).source
    );
    if let (Some(m), Some(b)) = (s.mfu, s.bandwidth_utilization) {
        let _ = writeln!(
            o,
            "efficiency assumed by the scenario: {:.0}% MFU, {:.0}% bandwidth",
            m * 100.0,
            b * 100.0
        );
    }
    for a in s.model.assumptions.iter().chain(s.assumptions.iter()) {
        let _ = writeln!(o, "assumption: {a}");
    }
    o
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
                rec.figures.output_tokens_per_s_per_gpu.0,
                rec.figures.output_tokens_per_s_per_gpu.0 / 1e3,
                rec.figures.output_tokens_per_s_per_user.0,
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
fn rejected(r: &PlanResult) -> String {
    let j = &r.rejected;
    format!(
        "\nSearched {} layouts: {} invalid splits (heads, KV heads, experts, expert width, layers, folding), {} TP groups wider than a node; of the rest, {} do not fit in memory, {} cannot meet TTFT, {} cannot meet TPOT, {} miss the throughput floor, {} exceed the load-imbalance limit, {} need more GPUs than available.\n",
        j.layouts, j.divisibility, j.node_fit, j.memory, j.ttft, j.tpot, j.throughput + j.throughput_per_user, j.load_imbalance, j.gpu_budget
    )
}

/// The recommendation's derivations, then the estimate of its last pool's
/// worker at the mean lengths, with its own derivations.
fn derivations(s: &Scenario, rec: &Candidate, engine: EngineConfig) -> String {
    let mut o = String::from("\nDerivations of the recommendation:\n");
    o += &output::derivation_list(&rec.explain);
    let pool = rec.figures.pools.last().expect("a candidate has a pool");
    // The same engine the search ranked with.
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
            super::estimate::render(&e, &s.model.name, &s.gpu.id, Detail::Derivations)
        );
    }
    o
}

/// A Markdown deployment plan: every number comes from the search result.
fn markdown(s: &Scenario, r: &PlanResult) -> String {
    let mut o = String::new();
    let m = &s.model;
    let p = m.params();
    let _ = writeln!(o, "# Deployment plan: {}\n", s.name);
    let _ = writeln!(o, "Generated by moeplan from the scenario; every figure below is derived, none is typed in.\n");
    let _ = writeln!(o, "## Model analysis\n");
    let _ = writeln!(o, "| quantity | value |\n|---|---|");
    let _ = writeln!(o, "| model | {} ({}) |", m.name, m.architecture);
    let _ = writeln!(o, "| parameters (derived) | {} |", p.total);
    if let Some(d) = m.declared_params {
        let _ = writeln!(
            o,
            "| parameters (declared) | {} ({:.2}× the derived count{}) |",
            moeplan::units::Params(d),
            d / p.total.0,
            if (d / p.total.0 - 1.0).abs() > 0.05 {
                ": inconsistent with the architecture"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(o, "| active per token | {} |", p.active);
    let _ = writeln!(o, "| weights | {} |", p.weight_bytes);
    let _ = writeln!(
        o,
        "| linear FLOP per token | {} |",
        m.linear_flop_per_token()
    );
    let _ = writeln!(o, "| KV cache per token | {} |", m.kv_bytes_per_token());
    let _ = writeln!(
        o,
        "| layers / MoE layers | {} / {} |",
        m.n_layers(),
        m.n_moe_layers()
    );
    for a in m.assumptions.iter().chain(s.assumptions.iter()) {
        let _ = writeln!(o, "\n- Assumption: {a}");
    }
    let g = &s.gpu;
    let _ = writeln!(o, "\n## Hardware\n\n{} ({}): {} HBM at {}, {} dense BF16, {} GPUs per node, scale-up {} per direction, network {} per GPU. Budget: {} GPUs.", g.name, g.id, g.memory, g.memory_bandwidth, g.peak_bf16(), g.gpus_per_node, g.nvlink_bandwidth, g.network_bandwidth, r.gpu_budget);
    let _ = writeln!(
        o,
        "Efficiencies: {}.",
        s.calibration(moeplan::memory::Engine::Neutral).source
    );
    let _ = writeln!(
        o,
        "\n## Requirements\n\nPrompts {} tokens, outputs {} tokens. {}.",
        lengths(&s.workload.isl),
        lengths(&s.workload.osl),
        slo_line(s)
    );
    let Some(rec) = &r.recommended else {
        let _ = writeln!(
            o,
            "\n## Result\n\nNo layout fits the model on the GPUs available."
        );
        return o;
    };
    let _ = writeln!(
        o,
        "\n## Chosen strategy\n\n**{}** ({} GPUs).\n",
        describe(rec),
        rec.figures.gpus
    );
    for why in &r.rationale {
        let _ = writeln!(o, "- {why}");
    }
    let _ = writeln!(o, "\n## GPU allocation by role\n\n| role | workers | PP | TP | CP | attention DP | EP | ETP | GPUs | requests in flight per worker |\n|---|---|---|---|---|---|---|---|---|---|");
    for pool in &rec.figures.pools {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            pool.role,
            pool.workers,
            pool.layout.pp,
            pool.layout.tp,
            pool.layout.cp,
            pool.layout.dp,
            pool.layout.ep,
            pool.layout.etp,
            pool.gpus,
            pool.concurrency
        );
    }
    let mem = rec.figures.estimate.fullest_memory();
    let _ = writeln!(o, "\n## Memory per GPU (fullest GPU of any pool, mean lengths)\n\n| component | bytes |\n|---|---|\n| weights | {} |\n| KV cache | {} |\n| activations | {} |\n| buffers and runtime | {} |\n| total | {} of {} |", mem.weights_bytes, mem.kv_cache_bytes, mem.activation_bytes, mem.other_bytes, mem.total_bytes, mem.capacity_bytes);
    let _ = writeln!(o, "\n## Performance\n\n| metric | value |\n|---|---|\n| output tokens/s per GPU | {:.0} ({:.2} per ms) |\n| output tokens/s per user | {:.1} |\n| requests/s | {:.2} |\n| TTFT (longest prompt) | {} |\n| TPOT (longest context) | {} |\n| decode bottleneck | {} |\n| expert load imbalance | {:.1}% |", rec.figures.output_tokens_per_s_per_gpu.0, rec.figures.output_tokens_per_s_per_gpu.0 / 1e3, rec.figures.output_tokens_per_s_per_user.0, rec.figures.requests_per_s, rec.figures.ttft, rec.figures.tpot, rec.figures.bottleneck.name(), rec.figures.load_imbalance * 100.0);
    if let Some(ce) = rec.figures.estimate.ceilings() {
        let _ = writeln!(o, "| decode ceiling per GPU (HBM) | {:.0} tokens/s |\n| prefill ceiling per GPU (peak FLOP/s) | {:.0} tokens/s |", ce.decode_tokens_per_s_per_gpu.0, ce.prefill_tokens_per_s_per_gpu.0);
    }
    let _ = writeln!(o, "\n## Validation checklist\n\n| requirement | limit | predicted | pass |\n|---|---|---|---|");
    let check = |name: &str, limit: String, value: String, ok: bool| {
        format!(
            "| {name} | {limit} | {value} | {} |\n",
            if ok { "pass" } else { "FAIL" }
        )
    };
    let failed = |c: &str| rec.violations.iter().any(|v| v.level.name() == c);
    if let Some(t) = s.slo.ttft {
        o += &check(
            "TTFT",
            t.to_string(),
            rec.figures.ttft.to_string(),
            !failed("ttft"),
        );
    }
    if let Some(t) = s.slo.tpot {
        o += &check(
            "TPOT",
            t.to_string(),
            rec.figures.tpot.to_string(),
            !failed("tpot"),
        );
    }
    if let Some(t) = s.slo.min_throughput_per_gpu {
        o += &check(
            "throughput per GPU",
            format!("{:.1} tokens/ms", t.per_ms()),
            format!(
                "{:.2} tokens/ms",
                rec.figures.output_tokens_per_s_per_gpu.0 / 1e3
            ),
            !failed("throughput_per_gpu"),
        );
    }
    o += &check(
        "memory",
        format!("{:.0}%", s.slo.max_memory_fraction * 100.0),
        format!("{:.1}%", rec.figures.memory_fraction * 100.0),
        !failed("memory"),
    );
    if let Some(l) = s.slo.max_load_imbalance {
        o += &check(
            "load imbalance",
            format!("{:.0}%", l * 100.0),
            format!("{:.1}%", rec.figures.load_imbalance * 100.0),
            !failed("load_imbalance"),
        );
    }
    let _ = writeln!(o, "\n## Risks\n");
    if let Some(b) = &r.binding {
        for a in &b.advice {
            let _ = writeln!(o, "- Binding constraint `{}`: {a}", b.level.name());
        }
    }
    for w in rec.figures.estimate.warnings() {
        let _ = writeln!(o, "- {w}");
    }
    let _ = writeln!(o, "- Expert routing is assumed uniform; skewed routing raises the load imbalance (see `moeplan estimate --routing-skew`).");
    let _ = writeln!(
        o,
        "- Efficiencies: {}.",
        rec.figures.estimate.efficiency_source()
    );
    let j = &r.rejected;
    let _ = writeln!(o, "\n## Search\n\n{} layouts enumerated, {} estimates: {} invalid splits, {} TP groups wider than a node, {} out of memory, {} miss TTFT, {} miss TPOT, {} miss the throughput floor, {} exceed the load-imbalance limit, {} over the GPU budget.", j.layouts, j.estimates, j.divisibility, j.node_fit, j.memory, j.ttft, j.tpot, j.throughput + j.throughput_per_user, j.load_imbalance, j.gpu_budget);
    o
}

fn pareto_svg(path: &std::path::Path, r: &PlanResult) -> Result<(), String> {
    use plotters::prelude::*;
    let pts: Vec<&Candidate> = r.candidates.iter().chain(r.pareto.iter()).collect();
    if pts.is_empty() {
        return Err("no candidate to plot".into());
    }
    let max_x = pts
        .iter()
        .map(|c| c.figures.output_tokens_per_s_per_user.0)
        .fold(1.0, f64::max)
        * 1.1;
    let max_y = pts
        .iter()
        .map(|c| c.figures.output_tokens_per_s_per_gpu.0)
        .fold(1.0, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Pareto front: throughput per GPU vs per user",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("output tokens/s per user")
        .y_desc("output tokens/s per GPU")
        .draw()
        .map_err(|e| e.to_string())?;
    let mut front: Vec<(f64, f64)> = r
        .pareto
        .iter()
        .map(|c| {
            (
                c.figures.output_tokens_per_s_per_user.0,
                c.figures.output_tokens_per_s_per_gpu.0,
            )
        })
        .collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(front, &BLACK))
        .map_err(|e| e.to_string())?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    let agg: Vec<(f64, f64)> = pts
        .iter()
        .filter(|c| c.figures.mode == search::Mode::Aggregated)
        .map(|c| {
            (
                c.figures.output_tokens_per_s_per_user.0,
                c.figures.output_tokens_per_s_per_gpu.0,
            )
        })
        .collect();
    let dis: Vec<(f64, f64)> = pts
        .iter()
        .filter(|c| c.figures.mode == search::Mode::Disaggregated)
        .map(|c| {
            (
                c.figures.output_tokens_per_s_per_user.0,
                c.figures.output_tokens_per_s_per_gpu.0,
            )
        })
        .collect();
    chart
        .draw_series(agg.iter().map(|p| Circle::new(*p, 5, BLUE.filled())))
        .map_err(|e| e.to_string())?
        .label("aggregated")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, BLUE.filled()));
    chart
        .draw_series(dis.iter().map(|p| TriangleMarker::new(*p, 7, RED.filled())))
        .map_err(|e| e.to_string())?
        .label("disaggregated")
        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 7, RED.filled()));
    if let Some(rec) = &r.recommended {
        let p = (
            rec.figures.output_tokens_per_s_per_user.0,
            rec.figures.output_tokens_per_s_per_gpu.0,
        );
        chart
            .draw_series(std::iter::once(Circle::new(p, 11, GREEN.stroke_width(3))))
            .map_err(|e| e.to_string())?
            .label("recommended")
            .legend(|(x, y)| Circle::new((x + 10, y), 7, GREEN.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

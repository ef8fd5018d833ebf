//! `moeplan simulate`: latency percentiles and goodput under real traffic.
use crate::args::SimulateArgs;
use crate::commands::deployment::{self, PlanFacts};
use crate::output::{self, ArgError, Failure, Format};
use moeplan::output::{PrefillEcho, SimulateOutput};
use moeplan::replica::Deployment;
use moeplan::simulate::{self, Arrivals, Lengths, Levels, SimResult, Traffic};
use std::fmt::Write;

/// Requests a simulation sends when neither --requests nor a trace says.
const DEFAULT_REQUESTS: u64 = 10_000;

/// Simulates the deployment under the traffic; exit 1 when the queue grows without bound.
pub fn run(a: &SimulateArgs) -> Result<(), Failure> {
    let format = Format::from(a.json);
    let trace = match &a.trace {
        Some(p) => Some(simulate::traffic::read_trace(p).map_err(Failure::input(format))?),
        None => None,
    };
    let (d, facts) = resolve(a, trace.as_deref(), format)?;
    let (isl, osl) = deployment::longest(&d, &facts);
    deployment::warn_context(d.model(), isl, osl);
    let traffic = traffic(a, d.workload(), trace, facts.workload.as_ref(), format)?;
    let replicas =
        deployment::at_least_one("replicas", a.replicas, format)?.unwrap_or(facts.replicas);
    let levels = Levels {
        ttft: deployment::latency_ms(a.ttft_slo, "ttft-slo", format)?.or(facts.levels.0),
        tpot: deployment::latency_ms(a.tpot_slo, "tpot-slo", format)?.or(facts.levels.1),
        e2e: deployment::latency_ms(a.e2e_slo, "e2e-slo", format)?,
    };
    let describe = describe_traffic(&traffic);
    let draw = match a.progress {
        true => output::ProgressDraw::Forced,
        false => output::ProgressDraw::OnTerminal,
    };
    let bar = output::progress_bar(traffic.requests, "requests", draw);
    let mut observe = |p: simulate::Progress| {
        bar.set_length(p.requests);
        bar.set_position(p.completed);
    };
    let result = match &d {
        Deployment::Aggregated(r) => simulate::simulate_observed(
            &r.input(),
            (replicas, a.router),
            traffic,
            levels,
            &mut observe,
        ),
        Deployment::Disaggregated(x) => simulate::simulate_disaggregated_observed(
            &x.input(),
            a.router,
            traffic,
            levels,
            &mut observe,
        ),
    };
    bar.finish_and_clear();
    if let Some(path) = &a.timeline {
        super::simulate_timeline::svg(path, &result).map_err(|e| {
            ArgError::failure(format!("cannot draw {}: {e}", path.display()), None, format)
        })?;
    }
    let out = output_of(&d, replicas, describe, levels, &result);
    if format == Format::Json {
        output::json(&out);
    } else {
        output::print(&render(&out, &result));
    }
    let failed = match &result.stopped {
        Some(s) => Some(s.reason.clone()),
        None if result.requests == 0 => Some(format!(
            "no request could run: {} refused, their prompt alone beyond a rank's KV cache",
            result.rejected
        )),
        None => None,
    };
    match failed {
        Some(reason) => {
            if format == Format::Text {
                output::note(&format!("error: {reason} (exit 1)"));
            }
            Err(Failure::Negative)
        }
        None => Ok(()),
    }
}

/// The JSON shape of a simulation of `d`.
fn output_of<'a>(
    d: &'a Deployment,
    replicas: u32,
    traffic: String,
    levels: Levels,
    result: &'a SimResult,
) -> SimulateOutput<'a> {
    let (model, gpu, engine) = (d.model(), d.gpu(), d.engine().engine);
    let (layout, replicas, prefill) = match d {
        Deployment::Aggregated(r) => (r.layout, replicas, None),
        Deployment::Disaggregated(x) => (
            x.decode.layout,
            x.decode.workers,
            Some(PrefillEcho {
                layout: x.prefill.layout,
                workers: x.prefill.workers,
            }),
        ),
    };
    let prefill_gpus = prefill.map_or(0, |p| p.layout.gpus() as u64 * p.workers as u64);
    SimulateOutput {
        model: &model.name,
        gpu: &gpu.id,
        engine,
        layout,
        replicas,
        prefill,
        gpus: replicas as u64 * layout.gpus() as u64 + prefill_gpus,
        traffic,
        levels,
        profile: d.profile_use(),
        result,
    }
}

/// The deployment to simulate, from a file or the flags (aggregated, or
/// the pools of --prefill-*/--decode-*); its lengths default to the trace's means.
fn resolve(
    a: &SimulateArgs,
    trace: Option<&[simulate::TraceRequest]>,
    format: Format,
) -> Result<(Deployment, PlanFacts), Failure> {
    let mut flags = a.deployment.clone();
    if let Some(t) = trace {
        let mean = |f: fn(&simulate::TraceRequest) -> u64| {
            (t.iter().map(f).sum::<u64>() / t.len().max(1) as u64).max(1)
        };
        flags.isl = flags.isl.or(Some(mean(|r| r.isl)));
        flags.osl = flags.osl.or(Some(mean(|r| r.osl)));
    }
    // An open loop has no concurrency of its own: the estimate's inputs need one.
    if a.rate.is_some() || trace.is_some() {
        flags.concurrency = flags.concurrency.or(Some(1));
    }
    let (d, facts) = match &a.file {
        Some(path) => {
            let (d, _, facts) = deployment::from_file_with_facts(
                path,
                &flags,
                &a.pools,
                moeplan::search::Modes::Both,
                format,
            )?;
            (d, facts)
        }
        None => deployment::from_flags(&flags, &a.pools, "simulate", format)?,
    };
    Ok((d, facts))
}

/// The traffic the flags describe, over a file's workload: its request
/// rate (Poisson) when no --rate or --trace is given, its length ranges
/// (uniform) where --isl-dist/--osl-dist are left fixed, else the lengths
/// the workload's benchmark client draws.
fn traffic(
    a: &SimulateArgs,
    w: moeplan::serving::Workload,
    trace: Option<Vec<simulate::TraceRequest>>,
    file: Option<&moeplan::spec::scenario::WorkloadSpec>,
    format: Format,
) -> Result<Traffic, Failure> {
    let bad = |msg: String, help: &str| ArgError::failure(msg, Some(help.into()), format);
    let isl = Lengths::parse(&a.isl_dist, w.isl.get()).map_err(|e| {
        bad(
            format!("--isl-dist: {e}"),
            "fixed, uniform:MIN-MAX, lognormal:CV or a tokens,weight CSV",
        )
    })?;
    let osl = Lengths::parse(&a.osl_dist, w.osl.get()).map_err(|e| {
        bad(
            format!("--osl-dist: {e}"),
            "fixed, uniform:MIN-MAX, lognormal:CV or a tokens,weight CSV",
        )
    })?;
    // Where the flags leave the lengths fixed: a file's length range, else
    // the lengths the benchmark client draws (InferenceMAX's range).
    let range = |dist: &str,
                 l: Option<moeplan::spec::scenario::Lengths>,
                 parsed: Lengths,
                 stated: u64| match l {
        Some(l) if dist == "fixed" && l.min < l.max => Lengths::Uniform(l.min, l.max),
        _ if dist == "fixed" => Lengths::drawn_by(w.client, stated),
        _ => parsed,
    };
    let isl = range(&a.isl_dist, file.map(|w| w.isl), isl, w.isl.get());
    let osl = range(&a.osl_dist, file.map(|w| w.osl), osl, w.osl.get());
    if !(a.cv.is_finite() && a.cv > 0.0 && a.cv <= 100.0) {
        return Err(bad(
            format!("--cv {} is not a coefficient of variation", a.cv),
            "a number in (0, 100]: 1 is Poisson, above 1 bursty",
        ));
    }
    let rate = deployment::bounded(a.rate, "rate", moeplan::bounds::REQUEST_RATE, format)?
        .or(file.and_then(|w| w.request_rate));
    let arrivals = match (&trace, rate) {
        (Some(t), _) => Arrivals::Trace(t.clone()),
        (None, Some(rate)) if !(rate.is_finite() && rate > 0.0 && (1.0 / rate).is_finite()) => {
            return Err(bad(
                format!("--rate {rate} is not a request rate"),
                "requests per second, above 0 and finite",
            ));
        }
        (None, Some(rate)) => a.arrivals.at(rate, a.cv),
        (None, None) => Arrivals::Closed {
            clients: w.concurrency.max(1),
        },
    };
    if let Some(d) = a.duration.filter(|d| !(d.is_finite() && *d > 0.0)) {
        return Err(bad(
            format!("--duration {d} is not a duration"),
            "seconds, above 0",
        ));
    }
    let requests = deployment::within(
        "requests",
        a.requests,
        moeplan::bounds::SIMULATED_REQUESTS,
        format,
    )?;
    let requests =
        requests.unwrap_or_else(|| trace.as_ref().map_or(DEFAULT_REQUESTS, |t| t.len() as u64));
    if a.warmup >= requests {
        return Err(bad(
            format!(
                "--warmup {} leaves none of the {requests} requests sent to measure",
                a.warmup
            ),
            "fewer warm-up requests than --requests (or the trace's length)",
        ));
    }
    Ok(Traffic {
        arrivals,
        isl,
        osl,
        requests,
        duration: a.duration,
        seed: a.seed,
        warmup: a.warmup,
    })
}

/// One line naming the traffic.
fn describe_traffic(t: &Traffic) -> String {
    let lengths = |l: &Lengths| match l {
        Lengths::Fixed(n) => format!("{n}"),
        Lengths::Uniform(a, b) => format!("uniform {a}-{b}"),
        Lengths::Lognormal { mean, cv } => format!("lognormal mean {mean:.0} CV {cv}"),
        Lengths::Empirical(bins) => format!("histogram of {} bins", bins.len()),
    };
    let arrivals = match &t.arrivals {
        Arrivals::Poisson { rate } => format!("Poisson arrivals at {rate} requests/s"),
        Arrivals::Gamma { rate, cv } => format!("gamma arrivals at {rate} requests/s, CV {cv}"),
        Arrivals::Closed { clients } => format!("closed loop of {clients} clients"),
        Arrivals::Trace(r) => format!("trace of {} requests", r.len()),
    };
    let warmup = match t.warmup {
        0 => String::new(),
        n => format!(", the first {n} left out of the figures (warm-up)"),
    };
    match &t.arrivals {
        Arrivals::Trace(_) => format!(
            "{arrivals} at their own times and lengths, {} sent{warmup}",
            t.requests
        ),
        Arrivals::Poisson { .. } | Arrivals::Gamma { .. } | Arrivals::Closed { .. } => format!(
            "{arrivals}, {} requests, prompts {} tokens, outputs {} tokens, seed {}{warmup}",
            t.requests,
            lengths(&t.isl),
            lengths(&t.osl),
            t.seed
        ),
    }
}

/// The goodput's service levels in words.
fn levels_words(lv: Levels) -> String {
    let levels: Vec<String> = [("TTFT", lv.ttft), ("TPOT", lv.tpot), ("end to end", lv.e2e)]
        .iter()
        .filter_map(|(n, v)| v.map(|v| format!("{n} ≤ {:.0} ms", v.value() * 1000.0)))
        .collect();
    if levels.is_empty() {
        "no service level: every request counts".to_string()
    } else {
        levels.join(", ")
    }
}

/// The simulation as text.
fn render(o: &SimulateOutput, r: &SimResult) -> String {
    let mut s = String::new();
    let deployment = match o.prefill {
        Some(p) => format!(
            "prefill {} × [{}] + decode {} × [{}]",
            p.workers, p.layout, o.replicas, o.layout
        ),
        None => format!("{} replica(s) of {}", o.replicas, o.layout),
    };
    let _ = writeln!(
        s,
        "{}: {deployment} on {} ({} GPUs), {}",
        o.model,
        o.gpu,
        o.gpus,
        o.engine.name()
    );
    let _ = writeln!(s, "  traffic     {}", o.traffic);
    if let Some(p) = &o.profile {
        let _ = writeln!(s, "  {p}");
    }
    let _ = writeln!(
        s,
        "  {:<11} {:>10} {:>10} {:>10} {:>10}",
        "ms", "mean", "p50", "p90", "p99"
    );
    for (name, x) in [
        ("TTFT", r.ttft_ms),
        ("TPOT", r.tpot_ms),
        ("ITL", r.itl_ms),
        ("end to end", r.e2e_ms),
    ] {
        let _ = writeln!(
            s,
            "  {name:<11} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            x.mean, x.p50, x.p90, x.p99
        );
    }
    let per_gpu = r.output_tokens_per_s / o.gpus.max(1) as f64;
    let _ = writeln!(
        s,
        "  throughput  {:.0} output tokens/s ({per_gpu:.0} per GPU) over {:.1} s",
        r.output_tokens_per_s, r.duration_s
    );
    let levels = levels_words(o.levels);
    let _ = writeln!(
        s,
        "  goodput     {:.2} requests/s meeting {levels}",
        r.goodput_requests_per_s
    );
    let _ = writeln!(s, "  requests    {} completed of {} sent; {} refused (prompt beyond the KV cache); {} preemptions; longest queue {}", r.requests, r.sent, r.rejected, r.preemptions, r.max_queue);
    if let Some(h) = r.prefix_cache_hit_rate {
        let _ = writeln!(
            s,
            "  prefix cache {:.1}% of the prompt tokens cached (the trace's hash_ids, blocks of {} tokens, LRU per replica)",
            h * 100.0,
            moeplan::simulate::prefix::BLOCK_TOKENS
        );
    }
    let _ = writeln!(
        s,
        "  cost model  {} steps from {} step shapes priced (the estimate's op-level model)",
        r.steps, r.step_shapes
    );
    if let Some(st) = &r.stopped {
        let _ = writeln!(
            s,
            "  stopped     {}; it sustained {:.2} requests/s",
            st.reason, st.sustainable_requests_per_s
        );
    }
    s
}

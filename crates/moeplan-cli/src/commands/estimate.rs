//! `moeplan estimate`: TTFT, TPOT, throughput and memory of one deployment.
use crate::args::EstimateArgs;
use crate::commands::deployment;
use crate::output::{self, Detail, Failure, Format};
use moeplan::output::{DisaggOutput, EstimateOutput};
use moeplan::replica::Deployment as ReplicaDeployment;
use moeplan::replica::Disaggregated;
use moeplan::report::Derivation;
use moeplan::serving::disagg::{estimate_disaggregated, DisaggEstimate};
use moeplan::serving::{estimate, Estimate, JsonDetail, PhaseCost};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Estimates the deployment the flags or the file describe; exit 1 when it
/// does not fit in memory.
pub fn run(a: &EstimateArgs) -> Result<(), Failure> {
    let format = Format::from(a.output.json);
    let dep = deployment::resolve_estimate(a, format)?;
    // A profile in use that has no layer for this deployment is said.
    let unused = dep
        .profile_use()
        .filter(|u| !u.applied)
        .map(|u| u.to_string());
    let d = match dep {
        ReplicaDeployment::Aggregated(d) => d,
        ReplicaDeployment::Disaggregated(d) => {
            return run_disaggregated(&d, a, format, unused);
        }
    };
    let input = d.input();
    let mut est = estimate(&input).map_err(|problems| {
        deployment::invalid_layout(&d.layout, &d.model.name, &d.gpu.id, &problems, format)
    })?;
    est.warnings.extend(unused);
    if format == Format::Json {
        output::json(&EstimateOutput::Aggregated(est.json(JsonDetail::Full)));
    } else {
        output::print(&render(
            &est,
            &d.model,
            &d.gpu.id,
            Detail::from(a.output.explain),
        ));
    }
    if !est.fits {
        if format == Format::Text {
            output::note("error: the deployment does not fit in memory (exit 1)");
        }
        return Err(Failure::Negative);
    }
    Ok(())
}

/// Estimates a disaggregated deployment and prints it.
fn run_disaggregated(
    d: &Disaggregated,
    a: &EstimateArgs,
    format: Format,
    unused_profile: Option<String>,
) -> Result<(), Failure> {
    let mut est = estimate_disaggregated(&d.input()).map_err(|problems| {
        let msg: Vec<String> = problems
            .iter()
            .map(|(role, p)| format!("{} pool: [{}] {}", role.name(), p.rule, p.message))
            .collect();
        crate::output::ArgError::failure(msg.join("\n"), None, format)
    })?;
    est.warnings.extend(unused_profile);
    if format == Format::Json {
        output::json(&EstimateOutput::Disaggregated(DisaggOutput {
            estimate: est.json(JsonDetail::Full),
            assumed: &d.assumed,
        }));
    } else {
        output::print(&render_disaggregated(
            &est,
            d,
            Detail::from(a.output.explain),
        ));
    }
    if !est.fits {
        if format == Format::Text {
            output::note("error: the deployment does not fit in memory (exit 1)");
        }
        return Err(Failure::Negative);
    }
    Ok(())
}

/// A disaggregated estimate as text: both pools, latency, throughput and
/// memory, with the derivations at `Detail::Derivations`.
fn render_disaggregated(e: &DisaggEstimate, d: &Disaggregated, detail: Detail) -> String {
    let mut s = String::new();
    let w = d.workload;
    let _ = writeln!(
        s,
        "{} on {} × {}, disaggregated: prefill {}×[{}] + decode {}×[{}], {} requests in flight",
        d.model.name,
        e.gpus,
        d.gpu.id,
        e.prefill.workers,
        e.prefill.layout,
        e.decode.workers,
        e.decode.layout,
        w.concurrency
    );
    let _ = writeln!(
        s,
        "  TTFT              {} (first round {}, later rounds {}; KV transfer {}, queue {})",
        e.ttft, e.first_round_ttft, e.steady_ttft, e.kv_transfer, e.queue_wait
    );
    let _ = writeln!(s, "  TPOT              {}", e.tpot);
    let _ = writeln!(s, "  request latency   {}", e.request_latency);
    let _ = writeln!(
        s,
        "  throughput        {:.1} output tokens/s per GPU ({:.3} per ms), {:.1} per user; {:.2} requests/s ({}-bound)",
        e.output_tokens_per_s_per_gpu.value(),
        e.output_tokens_per_s_per_gpu.per_ms(),
        e.output_tokens_per_s_per_user.value(),
        e.requests_per_s,
        e.regime
    );
    for (name, p) in [("prefill", &e.prefill), ("decode", &e.decode)] {
        let m = &p.memory;
        let _ = writeln!(
            s,
            "  {name:<8} pool     {} × [{}] = {} GPUs; {:.1} per rank, utilisation {:.0}%; step {}; memory {} of {} usable{}",
            p.workers,
            p.layout,
            p.gpus,
            p.requests_per_rank,
            p.utilization * 100.0,
            p.step.time,
            m.total_bytes,
            m.usable_bytes,
            if p.fits { "" } else { "  DOES NOT FIT" }
        );
    }
    s += &overlap_line(&[("prefill", &e.prefill.step), ("decode", &e.decode.step)]);
    s += &cache_line(&e.workload);
    let _ = writeln!(s, "  efficiencies      {}", e.efficiency_source);
    for a in &d.assumed {
        let _ = writeln!(s, "assumed: {a}");
    }
    for w in &e.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    if detail == Detail::Derivations {
        s += &derivations(&e.explain);
    }
    s
}

/// What two-batch overlap hid in each step that overlaps (nothing without
/// overlap).
fn overlap_line(steps: &[(&str, &moeplan::serving::PhaseCost)]) -> String {
    let parts: Vec<String> = steps
        .iter()
        .filter_map(|(name, p)| {
            p.overlap.map(|o| {
                format!(
                    "{name} step hides {} of {} communication ({} with overlap, {} as one batch)",
                    o.hidden, o.communication, o.overlapped, o.single_batch
                )
            })
        })
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    format!("  two-batch overlap {}\n", parts.join("; "))
}

/// What prefix-cache hits take off each prompt (nothing without hits).
fn cache_line(w: &moeplan::serving::Workload) -> String {
    if w.cache_hit_rate.is_zero() {
        return String::new();
    }
    format!(
        "  prefix cache      {:.1}% of prompt tokens hit: prefill computes {:.0} of {} tokens per prompt, attending the whole context; decode and KV memory unchanged\n",
        w.cache_hit_rate.value() * 100.0,
        w.computed_prompt(),
        w.isl
    )
}

/// An aggregated estimate as text: latency and throughput, memory, the
/// pure phases and ceilings, the engine; at `Detail::Derivations` also the
/// derivations and each phase's operators.
pub fn render(e: &Estimate, model: &moeplan::model::Model, gpu: &str, detail: Detail) -> String {
    let mut s = latency_and_throughput(e, model, gpu);
    s += &memory(e);
    s += &phases(e);
    s += &overlap_line(&[("prefill", &e.prefill), ("decode", &e.decode)]);
    s += &cache_line(&e.workload);
    let _ = writeln!(s, "  efficiencies      {}", e.efficiency_source);
    for w in &e.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    if detail == Detail::Derivations {
        s += &derivations(&e.explain);
        for p in [&e.prefill, &e.decode] {
            let _ = writeln!(s, "\n{}", ops_table(p));
        }
    }
    s
}

/// The deployment line, then TTFT, TPOT, request latency, throughput and
/// the steady state.
fn latency_and_throughput(e: &Estimate, model: &moeplan::model::Model, gpu: &str) -> String {
    let mut s = String::new();
    // Expert data parallelism means something only where there are experts.
    let edp = match model.moe {
        Some(_) => format!(" (edp {})", e.layout.edp()),
        None => String::new(),
    };
    let _ = writeln!(
        s,
        "{} on {} × {gpu}, layout {}{edp}",
        model.name, e.gpus, e.layout
    );
    let _ = writeln!(s, "  TTFT              {}", e.ttft);
    let _ = writeln!(s, "  TPOT              {}", e.tpot);
    let _ = writeln!(s, "  request latency   {}", e.request_latency);
    let _ = writeln!(
        s,
        "  throughput        {:.1} output tokens/s per GPU ({:.3} per ms), {:.1} per user; {:.1} input tokens/s per GPU",
        e.output_tokens_per_s_per_gpu.value(),
        e.output_tokens_per_s_per_gpu.per_ms(),
        e.output_tokens_per_s_per_user.value(),
        e.input_tokens_per_s_per_gpu.value()
    );
    let _ = writeln!(
        s,
        "  steady state      {:.1} requests decoding per step ({}-bound regime)",
        e.decoding_requests, e.regime
    );
    s
}

/// Memory per GPU by component, the concurrency it holds, and the expert
/// load imbalance.
fn memory(e: &Estimate) -> String {
    let mut s = String::new();
    let m = &e.memory;
    let _ = writeln!(
        s,
        "  memory per GPU    {} of {} usable ({} capacity): weights {}, KV cache {}, activations {}, buffers+runtime {}{}",
        m.total_bytes,
        m.usable_bytes,
        m.capacity_bytes,
        m.weights_bytes,
        m.kv_cache_bytes,
        m.activation_bytes,
        m.other_bytes,
        if e.fits { "" } else { "  DOES NOT FIT" }
    );
    // Why the context differs by engine (`serving::Load::of` sizes it): the
    // neutral reading holds every request at its end, an engine's steady
    // state holds them half-way.
    use moeplan::memory::Engine;
    let why = match e.engine.engine {
        Engine::Neutral => "prompt + output: every request at its end, the engine-neutral bound; an engine holds prompt + half the output",
        Engine::Vllm | Engine::Sglang | Engine::Trtllm => {
            "prompt + half the output: the engine's steady state, requests half-way through"
        }
    };
    let _ = writeln!(
        s,
        "  max concurrency   {} requests of {} tokens each ({why})",
        e.max_concurrency, e.memory_context
    );
    let _ = writeln!(
        s,
        "  load imbalance    {:.1}% used (uniform {:.1}%, power-law {:.2}: {:.1}%)",
        e.load_imbalance.used * 100.0,
        e.load_imbalance.uniform * 100.0,
        e.load_imbalance.skew,
        e.load_imbalance.skewed * 100.0
    );
    s
}

/// The pure prefill and decode phases, their bottlenecks, the per-GPU
/// ceilings and the engine's scheduler settings.
fn phases(e: &Estimate) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  pure phases       prefill of {:.0} prompt(s) of {:.0} tokens per rank: {} ({:.0} prompt tokens/s per GPU); decode of {:.1} sequences at context {:.0}: {} per step ({:.0} output tokens/s per GPU)",
        e.pure.prefill.sequences_per_rank,
        e.pure.prefill.tokens_per_sequence,
        e.pure.prefill.step_time,
        e.pure.prefill.tokens_per_s_per_gpu.value(),
        e.pure.decode.sequences_per_rank,
        e.pure.decode.tokens_per_sequence,
        e.pure.decode.step_time,
        e.pure.decode.tokens_per_s_per_gpu.value()
    );
    let _ = writeln!(
        s,
        "  bottleneck        prefill {:?}, decode {:?}",
        e.bottleneck.prefill, e.bottleneck.decode
    );
    let _ = writeln!(
        s,
        "  ceilings per GPU  decode ≤ {:.0} tokens/s (HBM-bound, {} read per step, {} of it KV cache); prefill ≤ {:.0} tokens/s ({} per token)",
        e.ceilings.decode_tokens_per_s_per_gpu.value(),
        e.ceilings.decode_bytes_per_step_per_gpu,
        e.ceilings.decode_kv_bytes_per_step_per_gpu,
        e.ceilings.prefill_tokens_per_s_per_gpu.value(),
        e.ceilings.prefill_flop_per_token
    );
    let _ = writeln!(
        s,
        "  engine            {}: {} tokens per step, {} running requests per rank, {}",
        e.engine.engine.name(),
        e.engine.max_step_tokens,
        e.engine
            .max_running_requests
            .map_or("unlimited".to_string(), |r| r.to_string()),
        e.engine.describe_memory()
    );
    s
}

/// Derivations one after another: `name = formula` after a blank line,
/// each input below it as `    input = value`.
fn derivations<K: std::fmt::Display>(explain: &BTreeMap<K, Derivation>) -> String {
    let mut s = String::new();
    for (name, d) in explain {
        let _ = writeln!(s, "\n{name} = {}", d.formula);
        for (k, v) in &d.inputs {
            let _ = writeln!(s, "    {k} = {v}");
        }
    }
    s
}

/// One phase's operators as a table: count, time, FLOP, bytes and bound
/// of each, under the phase's step time by bound.
fn ops_table(p: &PhaseCost) -> String {
    let mut t = output::table(&[
        "op",
        "×",
        "time each",
        "total",
        "FLOP each",
        "bytes each",
        "bound",
    ]);
    for op in &p.ops {
        t.add_row(vec![
            op.kind.name().to_string(),
            op.count.to_string(),
            op.time.to_string(),
            op.total().to_string(),
            op.flop.to_string(),
            op.bytes.to_string(),
            format!("{:?}", op.bound).to_lowercase(),
        ]);
    }
    let parts: Vec<String> = p
        .by_bound
        .iter()
        .map(|(b, t)| format!("{b} {}", t))
        .collect();
    format!(
        "{} — step {} ({}), bottleneck {:?}\n{}",
        p.description,
        p.time,
        parts.join(", "),
        p.bottleneck,
        output::fit(&t)
    )
}

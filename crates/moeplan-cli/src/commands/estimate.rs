//! `moeplan estimate`: TTFT, TPOT, throughput and memory of one deployment.
use crate::args::EstimateArgs;
use crate::output::{self, ArgError, Failure};
use moeplan::dtype::DType;
use moeplan::layout::Layout;
use moeplan::memory::EngineConfig;
use moeplan::serving::{estimate, Estimate, EstimateInput, PhaseCost, Workload};
use moeplan::units::{Bytes, Flop, Seconds};
use std::fmt::Write;

fn dtype(s: &Option<String>, flag: &str, json: bool) -> Result<Option<DType>, Failure> {
    match s {
        None => Ok(None),
        Some(s) => s
            .parse::<DType>()
            .map(Some)
            .map_err(|e| ArgError::failure(format!("--{flag}: {e}"), None, json)),
    }
}

fn fraction(v: Option<f64>, flag: &str, json: bool) -> Result<Option<f64>, Failure> {
    match v {
        Some(x) if !(x > 0.0 && x <= 1.0) => Err(ArgError::failure(
            format!("--{flag} {x} is not a fraction in (0, 1]"),
            Some("0.6 means 60%".into()),
            json,
        )),
        v => Ok(v),
    }
}

pub fn run(a: &EstimateArgs) -> Result<(), Failure> {
    let json = a.output.json;
    let mut model =
        moeplan::catalog::resolve_model(&a.model).map_err(|e| Failure::Input(Box::new(e), json))?;
    let mut gpu =
        moeplan::catalog::resolve_gpu(&a.gpu).map_err(|e| Failure::Input(Box::new(e), json))?;
    if let Some(w) = dtype(&a.weight_dtype, "weight-dtype", json)? {
        model.dtypes.attention = w;
        model.dtypes.experts = w;
        model.dtypes.dense = w;
    }
    if let Some(k) = dtype(&a.kv_dtype, "kv-dtype", json)? {
        model.dtypes.kv_cache = k;
    }
    if let Some(n) = a.gpus_per_node {
        if n == 0 {
            return Err(ArgError::failure(
                "--gpus-per-node must be at least 1".into(),
                None,
                json,
            ));
        }
        gpu.gpus_per_node = n;
    }
    let mfu = fraction(a.mfu, "mfu", json)?;
    let bw = fraction(a.bandwidth_utilization, "bandwidth-utilization", json)?;
    let mmf = fraction(Some(a.max_memory_fraction), "max-memory-fraction", json)?.unwrap_or(0.9);
    for (flag, v) in [
        ("isl", a.isl),
        ("osl", a.osl),
        ("concurrency", a.concurrency),
        ("max-step-tokens", a.max_step_tokens),
    ] {
        if v == 0 {
            return Err(ArgError::failure(
                format!("--{flag} must be at least 1"),
                None,
                json,
            ));
        }
    }
    let input = EstimateInput {
        model: &model,
        gpu: &gpu,
        calibration: gpu.calibration.flat(mfu, bw),
        layout: Layout::folded(a.pp, a.tp, a.cp, a.dp, a.ep, a.etp),
        workload: Workload {
            isl: a.isl,
            osl: a.osl,
            concurrency: a.concurrency,
        },
        engine: EngineConfig {
            max_step_tokens: a.max_step_tokens,
            max_memory_fraction: mmf,
            ..EngineConfig::default()
        },
        redundant_experts: a.redundant_experts,
        routing_skew: a.routing_skew.max(0.0),
    };
    let est = match estimate(&input) {
        Ok(e) => e,
        Err(problems) => {
            let mut msg = format!(
                "invalid layout {} for {} on {}:",
                input.layout, model.name, gpu.id
            );
            for p in &problems {
                let _ = write!(msg, "\n  - [{}] {}: {}", p.rule, p.field, p.message);
            }
            let help = problems
                .iter()
                .map(|p| p.hint.clone())
                .collect::<Vec<_>>()
                .join("\n");
            return Err(ArgError::failure(msg, Some(help), json));
        }
    };
    if json {
        output::json(&est.to_json());
    } else {
        output::print(&render(&est, &model.name, &gpu.id, a.output.explain));
    }
    if !est.fits {
        if !json {
            output::note("error: the deployment does not fit in memory (exit 1)");
        }
        return Err(Failure::Negative);
    }
    Ok(())
}

pub fn render(e: &Estimate, model: &str, gpu: &str, explain: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{model} on {} × {gpu}, layout {} (edp {})",
        e.gpus,
        e.layout,
        e.layout.edp()
    );
    let _ = writeln!(s, "  TTFT              {}", e.ttft);
    let _ = writeln!(s, "  TPOT              {}", e.tpot);
    let _ = writeln!(s, "  request latency   {}", e.request_latency);
    let _ = writeln!(
        s,
        "  throughput        {:.1} output tokens/s per GPU ({:.3} per ms), {:.1} per user; {:.1} input tokens/s per GPU",
        e.output_tokens_per_s_per_gpu.0,
        e.output_tokens_per_s_per_gpu.per_ms(),
        e.output_tokens_per_s_per_user.0,
        e.input_tokens_per_s_per_gpu.0
    );
    let _ = writeln!(
        s,
        "  steady state      {:.1} requests decoding per step ({}-bound regime)",
        e.decoding_requests, e.regime
    );
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
    let _ = writeln!(
        s,
        "  max concurrency   {} requests at isl+osl",
        e.max_concurrency
    );
    let _ = writeln!(
        s,
        "  load imbalance    {:.1}% used (uniform {:.1}%, power-law {:.2}: {:.1}%)",
        e.load_imbalance.used * 100.0,
        e.load_imbalance.uniform * 100.0,
        e.load_imbalance.skew,
        e.load_imbalance.skewed * 100.0
    );
    let _ = writeln!(
        s,
        "  bottleneck        prefill {:?}, decode {:?}",
        e.bottleneck.prefill, e.bottleneck.decode
    );
    let _ = writeln!(
        s,
        "  ceilings per GPU  decode ≤ {:.0} tokens/s (HBM-bound, {} read per step, {} of it KV cache); prefill ≤ {:.0} tokens/s ({} per token)",
        e.ceilings.decode_tokens_per_s_per_gpu.0,
        e.ceilings.decode_bytes_per_step_per_gpu,
        e.ceilings.decode_kv_bytes_per_step_per_gpu,
        e.ceilings.prefill_tokens_per_s_per_gpu.0,
        e.ceilings.prefill_flop_per_token
    );
    let _ = writeln!(s, "  efficiencies      {}", e.efficiency_source);
    for w in &e.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    if explain {
        for (name, d) in &e.explain {
            let _ = writeln!(s, "\n{name} = {}", d.formula);
            for (k, v) in &d.inputs {
                let _ = writeln!(s, "    {k} = {v}");
            }
        }
        for p in [&e.prefill, &e.decode] {
            let _ = writeln!(s, "\n{}", ops_table(p));
        }
    }
    s
}

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
            op.name.to_string(),
            op.count.to_string(),
            op.time.to_string(),
            op.total().to_string(),
            Flop(op.flop.0).to_string(),
            Bytes(op.bytes.0).to_string(),
            format!("{:?}", op.bound).to_lowercase(),
        ]);
    }
    let parts: Vec<String> = p
        .by_bound
        .iter()
        .map(|(b, t)| format!("{b} {}", Seconds(t.0)))
        .collect();
    format!(
        "{} — step {} ({}), bottleneck {:?}\n{t}",
        p.description,
        p.time,
        parts.join(", "),
        p.bottleneck
    )
}

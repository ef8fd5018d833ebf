//! `moeplan model`: the accounting of one model.
use crate::args::ModelArgs;
use crate::output::{self, Detail, Failure, Format};
use moeplan::report::{model_report, ModelReport};
use moeplan::units::{Bytes, Flop, Params};
use std::fmt::Write;

/// Prints the accounting of the model `a.model` names.
pub fn run(a: &ModelArgs) -> Result<(), Failure> {
    let model = moeplan::catalog::resolve_model(&a.model)
        .map_err(Failure::input(Format::from(a.output.json)))?;
    let report = model_report(&model);
    if a.output.json {
        output::json(&report);
    } else {
        output::print(&render(&report, Detail::from(a.output.explain)));
    }
    Ok(())
}

/// The report as text: parameters, layers, KV cache, FLOP, warnings and
/// assumptions; at `Detail::Derivations` also the derivations.
fn render(r: &ModelReport, detail: Detail) -> String {
    let mut s = parameters(r);
    s += &layers(r);
    s += &memory_and_flop(r);
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for a in &r.assumptions {
        let _ = writeln!(s, "assumption: {a}");
    }
    if detail == Detail::Derivations {
        let _ = writeln!(s, "\nDerivations:");
        s += &output::derivation_list(&r.explain);
    }
    s
}

/// The name line, the parameter totals and the table by component.
fn parameters(r: &ModelReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} ({})", r.name, r.architecture);
    let _ = writeln!(
        s,
        "  {} parameters, {} active per token; {} of weights",
        Params::new(r.params_total),
        Params::new(r.params_active),
        Bytes::new(r.weight_bytes)
    );
    let mut t = output::table(&["component", "parameters", "active", "dtype", "bytes"]);
    for (name, c) in &r.params_by_component {
        t.add_row(vec![
            name.clone(),
            Params::new(c.total).to_string(),
            Params::new(c.active).to_string(),
            c.dtype.to_string(),
            Bytes::new(c.bytes).to_string(),
        ]);
    }
    let _ = writeln!(s, "{}", output::fit(&t));
    s
}

/// The layer runs and, for an MoE model, its experts.
fn layers(r: &ModelReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Layers ({}; {} MoE):", r.n_layers, r.n_moe_layers);
    for line in layer_lines(r) {
        let _ = writeln!(s, "  {line}");
    }
    if r.n_routed_experts > 0 {
        let _ = writeln!(
            s,
            "MoE: {} routed experts, top-{}, {} shared",
            r.n_routed_experts, r.experts_per_token, r.n_shared_experts
        );
    }
    s
}

/// KV cache and linear-attention state per sequence, FLOP per token, and
/// attention's FLOP and KV cache by context length.
fn memory_and_flop(r: &ModelReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "KV cache: {} per token of context ({}); at fp8: {}",
        Bytes::new(r.kv_cache_bytes_per_token),
        r.kv_cache_dtype,
        Bytes::new(
            r.kv_cache_bytes_per_token_by_dtype
                .get("fp8")
                .copied()
                .unwrap_or(0.0)
        )
    );
    if r.linear_state_bytes_per_sequence > 0.0 {
        let _ = writeln!(
            s,
            "Linear-attention state: {} per sequence, whatever its length",
            Bytes::new(r.linear_state_bytes_per_sequence)
        );
    }
    let _ = writeln!(
        s,
        "FLOP per token: {} in linear layers, plus attention:",
        Flop::new(r.linear_flop_per_token)
    );
    let mut t = output::table(&["context", "attention FLOP/token", "KV cache/sequence"]);
    for c in &r.attention_by_context {
        t.add_row(vec![
            c.context.to_string(),
            Flop::new(c.flop).to_string(),
            Bytes::new(c.kv_cache_bytes).to_string(),
        ]);
    }
    let _ = writeln!(s, "{}", output::fit(&t));
    s
}

/// What a layer run holds: its mixer and its FFN, each when present
/// (a Nemotron-H layer is one of the two).
fn describe(run: &moeplan::report::LayerRun) -> String {
    let mixer = match run.mixer.as_str() {
        "none" => None,
        "mamba2" => Some("Mamba-2 mixer".to_string()),
        m => Some(format!("{m} attention")),
    };
    let ffn = (run.ffn != "none").then(|| format!("{} FFN", run.ffn));
    [mixer, ffn]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Layer runs as lines; a long alternating pattern (gpt-oss, Llama 4,
/// Qwen3.5) is folded into its repeating period, a long irregular one
/// (Nemotron-H) counted by kind.
fn layer_lines(r: &ModelReport) -> Vec<String> {
    let line = |run: &moeplan::report::LayerRun| {
        let range = if run.first == run.last {
            format!("{}", run.first)
        } else {
            format!("{}-{}", run.first, run.last)
        };
        format!("{range:>7}  {}", describe(run))
    };
    let runs = &r.layers;
    if runs.len() <= 6 {
        return runs.iter().map(line).collect();
    }
    for period in 2..=8 {
        for start in 0..3.min(runs.len()) {
            let body = &runs[start..];
            if body.len() < 2 * period {
                continue;
            }
            let same = |a: &moeplan::report::LayerRun, b: &moeplan::report::LayerRun| {
                a.mixer == b.mixer && a.ffn == b.ffn && a.last - a.first == b.last - b.first
            };
            let whole = body.len() / period * period;
            if (period..whole).all(|i| same(&body[i], &body[i - period])) {
                let mut out: Vec<String> = runs[..start].iter().map(line).collect();
                let pattern: Vec<String> = body[..period]
                    .iter()
                    .map(|run| format!("{}× {}", run.last - run.first + 1, describe(run)))
                    .collect();
                let last = body[whole - 1].last;
                out.push(format!(
                    "{:>7}  repeating [{}]",
                    format!("{}-{}", body[0].first, last),
                    pattern.join(", ")
                ));
                out.extend(body[whole..].iter().map(line));
                return out;
            }
        }
    }
    if runs.len() > 12 {
        return kind_counts(runs);
    }
    runs.iter().map(line).collect()
}

/// An irregular pattern by kind: how many layers each holds, and where the
/// rarer kinds sit.
fn kind_counts(runs: &[moeplan::report::LayerRun]) -> Vec<String> {
    let mut kinds: Vec<(String, Vec<usize>)> = Vec::new();
    for run in runs {
        let d = describe(run);
        let at = match kinds.iter_mut().find(|(k, _)| *k == d) {
            Some((_, at)) => at,
            None => {
                kinds.push((d, Vec::new()));
                &mut kinds.last_mut().expect("just pushed").1
            }
        };
        at.extend(run.first..=run.last);
    }
    kinds
        .into_iter()
        .map(|(d, at)| {
            if at.len() <= 12 {
                let list: Vec<String> = at.iter().map(usize::to_string).collect();
                format!("{:>4}× {d} (layers {})", at.len(), list.join(", "))
            } else {
                format!("{:>4}× {d}", at.len())
            }
        })
        .collect()
}

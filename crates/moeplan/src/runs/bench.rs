//! Benchmark clients' own result files as runs: the JSON object
//! `vllm bench serve --save-result` writes, and the JSON lines SGLang's
//! `bench_serving` appends (one object a run). Both give the run's
//! `max_concurrency`, `completed` requests, `total_input_tokens`,
//! `total_output_tokens`, `mean_ttft_ms` and `mean_tpot_ms`; neither says how
//! the server was deployed, so a sidecar next to the file,
//! `<file>.moeplan.toml`, does (`Sidecar`). A run is a closed loop of
//! `max_concurrency` requests in flight (at most `completed`); a finite
//! `request_rate` (Poisson arrivals, an open loop) is refused.

use super::usable::{gpu_hint, Column};
use super::{model_ref, quant_dtype, Rows, Run, RunDeployment};
use crate::bounds;
use crate::dtype::DType;
use crate::engine::Engine;
use crate::layout::Layout;
use crate::spec::source::{read_text, SPEC_FILE};
use crate::spec::{Problem, SpecError};
use crate::units::{Seconds, TokensPerSecond};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What a benchmark client's file does not say: the deployment it measured.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    /// A catalog id, a Hugging Face id, or a config.json path (relative to the sidecar).
    model: String,
    /// A catalog GPU id.
    gpu: String,
    /// vllm, sglang or trtllm (default: vllm for .json, sglang for .jsonl).
    engine: Option<String>,
    /// The engine version.
    engine_version: Option<String>,
    /// The weights' quantisation (default: the checkpoint's).
    weight_dtype: Option<String>,
    /// The KV cache's type (`--kv-cache-dtype`; default: the checkpoint's).
    kv_dtype: Option<String>,
    /// GPUs in one NVLink node (default: the catalog GPU's).
    gpus_per_node: Option<u32>,
    tp: Option<u32>,
    pp: Option<u32>,
    dp: Option<u32>,
    ep: Option<u32>,
    etp: Option<u32>,
    /// The client's lengths: fixed (the default: `--random-range-ratio` 0
    /// for vLLM, 1 for SGLang) or inferencemax (drawn in [0.8, 1] × the
    /// stated lengths).
    client: Option<crate::serving::Client>,
}

/// The fields of one benchmark result that make a run (others are ignored).
#[derive(Debug, Deserialize)]
struct Record {
    completed: f64,
    total_input_tokens: f64,
    total_output_tokens: f64,
    max_concurrency: Option<u64>,
    mean_ttft_ms: f64,
    mean_tpot_ms: f64,
    /// Output tokens per second over the run (both clients write it).
    output_throughput: Option<f64>,
    /// The arrival rate asked for: `"inf"` (vLLM) or `Infinity` (SGLang)
    /// for a closed loop, a number for Poisson arrivals.
    #[serde(default)]
    request_rate: Option<serde_json::Value>,
    /// The server the client spoke to (`vllm`, `sglang`, `trt`, or an API
    /// such as `openai` that names none).
    #[serde(default)]
    backend: Option<String>,
}

impl Record {
    /// The engine the record's `backend` names, if it names one.
    fn engine(&self) -> Option<Engine> {
        let b = self.backend.as_deref()?.to_ascii_lowercase();
        if b.starts_with("sglang") {
            Some(Engine::Sglang)
        } else if b.starts_with("vllm") {
            Some(Engine::Vllm)
        } else if b.starts_with("trt") || b.starts_with("tensorrt") {
            Some(Engine::Trtllm)
        } else {
            None
        }
    }

    /// The finite arrival rate of an open-loop run (None: a closed loop,
    /// every request sent at once and held to `max_concurrency`).
    fn open_loop_rate(&self) -> Option<f64> {
        self.request_rate
            .as_ref()
            .and_then(serde_json::Value::as_f64)
            .filter(|r| *r < 1e300)
    }
}

/// The numbers of a result that make a run, and those it may leave null.
const NUMBERS: [&str; 5] = [
    "completed",
    "total_input_tokens",
    "total_output_tokens",
    "mean_ttft_ms",
    "mean_tpot_ms",
];
const OPTIONAL_NUMBERS: [&str; 2] = ["max_concurrency", "output_throughput"];

/// One result's record: a JSON object whose numbers are numbers, each that
/// is not named (NaN is written `null` by `python_json`).
fn record(json: &str) -> Result<Record, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let Some(obj) = v.as_object() else {
        return Err(format!(
            "a benchmark result is one JSON object, not {}",
            match v {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                _ => "a bare value",
            }
        ));
    };
    for key in NUMBERS.iter().chain(&OPTIONAL_NUMBERS) {
        match obj.get(*key) {
            Some(x) if x.is_null() && NUMBERS.contains(key) => {
                return Err(format!("`{key}` is null or NaN, not a number"));
            }
            Some(x) if !x.is_number() && !x.is_null() => {
                return Err(format!("`{key}` is {x}, not a number"));
            }
            _ => {}
        }
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

const SIDECAR_EXAMPLE: &str =
    "model = \"qwen3-30b-a3b\"\ngpu = \"h100-sxm\"\nengine = \"vllm\"\ntp = 2";

/// The sidecar of `path`.
fn sidecar_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".moeplan.toml");
    PathBuf::from(s)
}

/// Whether `path` is a benchmark client's result file (by extension).
pub(crate) fn is_bench_result(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("json" | "jsonl")
    )
}

/// Reads a result file and its sidecar.
pub(crate) fn read(
    path: &Path,
    name: &str,
    text: &str,
    accept: Rows,
) -> Result<Vec<Run>, SpecError> {
    let side_path = sidecar_path(path);
    let side_name = side_path.display().to_string();
    if !side_path.exists() {
        return Err(SpecError::whole_file(
            &side_name,
            format!("{name} says nothing of the deployment, and it has no sidecar"),
            &format!("write the deployment next to it, e.g.\n{SIDECAR_EXAMPLE}"),
        ));
    }
    let side_text = read_text(&side_path, SPEC_FILE)?;
    let mut side: Sidecar = toml::from_str(&side_text)
        .map_err(|e| SpecError::whole_file(&side_name, e.to_string(), SIDECAR_EXAMPLE))?;
    side.gpu = match crate::catalog::gpu(&side.gpu) {
        Some(Ok(g)) => g.id,
        _ => {
            let p = Problem::at("gpu", format!("unknown GPU `{}`", side.gpu)).hint(gpu_hint());
            return Err(SpecError::new(&side_name, side_text, vec![p]));
        }
    };
    let client = if path.extension().is_some_and(|e| e == "jsonl") {
        Client::SglangBenchServing
    } else {
        Client::VllmBenchServe
    };
    let base = side_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let template = template(&side, client, &base, (&side_name, &side_text))?;
    let mut problems = Vec::new();
    let mut runs = Vec::new();
    let records: Vec<(usize, &str)> = if client == Client::SglangBenchServing {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l))
            .collect()
    } else {
        vec![(1, text)]
    };
    for (line, json) in records {
        // Without an engine in the sidecar, the server the record names
        // (else the client's own).
        let served = |r: &Record, mut run: Run| {
            if side.engine.is_none() {
                run.engine = r.engine().unwrap_or(run.engine);
            }
            run
        };
        match record(&python_json(json))
            .and_then(|r| run_of(&template, &r, name, line).map(|run| served(&r, run)))
        {
            Ok(run) => runs.push(run),
            Err(m) => problems.push(
                Problem::at("", format!("line {line}: {m}")).hint(
                    "a result of `vllm bench serve --save-result` or SGLang's bench_serving, from a run with --max-concurrency",
                ),
            ),
        }
    }
    if !problems.is_empty() {
        return Err(SpecError::new(name, text.to_string(), problems));
    }
    match accept {
        Rows::Usable => usable(runs, &side_name, side_text),
        Rows::WellFormed => Ok(runs),
    }
}

/// The runs, if moeplan can estimate them: the deployment is the
/// sidecar's, so a problem is located at its key there.
fn usable(runs: Vec<Run>, side_name: &str, side_text: String) -> Result<Vec<Run>, SpecError> {
    let mut problems: Vec<Problem> = Vec::new();
    for r in &runs {
        for p in r.problems() {
            let key = match p.column {
                Column::Model => "model",
                Column::Gpu => "gpu",
                Column::KvDtype => "kv_dtype",
                Column::Degree { degree, .. } => degree,
            };
            let message = format!("{}: {}", r.id, p.message);
            if !problems.iter().any(|q| q.path == key) {
                problems.push(Problem::at(key, message).hint(p.hint));
            }
        }
    }
    if problems.is_empty() {
        Ok(runs)
    } else {
        Err(SpecError::new(side_name, side_text, problems))
    }
}

/// Python's `json` writes an infinite request rate as a bare `Infinity`
/// (and NaN as `NaN`), which JSON does not have: read them as null.
fn python_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string {
            if let Some(word) = ["-Infinity", "Infinity", "NaN"]
                .iter()
                .find(|w| rest.starts_with(**w))
            {
                out.push_str("null");
                rest = &rest[word.len()..];
                continue;
            }
        }
        match c {
            '"' if !escaped => in_string = !in_string,
            _ => {}
        }
        escaped = in_string && c == '\\' && !escaped;
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The benchmark client that wrote a result file (by its extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// `vllm bench serve --save-result`: one JSON object.
    VllmBenchServe,
    /// SGLang's `bench_serving`: JSON lines, one record per run.
    SglangBenchServing,
}

/// A run with the sidecar's deployment and placeholder figures; the engine
/// defaults to the client's own when the sidecar does not name one (each
/// record's `backend`, where it names a server, then overrides it). Every
/// bad key of the sidecar is a problem located at it, all at once.
fn template(
    side: &Sidecar,
    client: Client,
    base: &Path,
    (name, text): (&str, &str),
) -> Result<Run, SpecError> {
    let mut problems = Vec::new();
    let engine = match &side.engine {
        Some(e) => e.parse::<Engine>(),
        None => Ok(match client {
            Client::SglangBenchServing => Engine::Sglang,
            Client::VllmBenchServe => Engine::Vllm,
        }),
    };
    let weights = side.weight_dtype.clone().unwrap_or_default();
    let node = side.gpus_per_node.map(|n| {
        bounds::GPUS_PER_NODE
            .check_count(n.into())
            .map(|n| n as u32)
    });
    let engine = keyed(&mut problems, "engine", engine, "vllm, sglang or trtllm");
    let dtype = keyed(
        &mut problems,
        "weight_dtype",
        quant_dtype(&weights.to_ascii_lowercase()),
        "bf16, fp8, nvfp4, mxfp4 or int4_wo",
    );
    let kv = DType::kv_cache(side.kv_dtype.as_deref().unwrap_or(""));
    let kv_dtype = keyed(&mut problems, "kv_dtype", kv, DType::KV_HINT);
    let why = bounds::GPUS_PER_NODE.why;
    let gpus_per_node = keyed(&mut problems, "gpus_per_node", node.transpose(), why);
    problems.extend(zero_degrees(side));
    let (Some(engine), Some(dtype), Some(kv_dtype), Some(gpus_per_node), true) =
        (engine, dtype, kv_dtype, gpus_per_node, problems.is_empty())
    else {
        return Err(SpecError::new(name, text.to_string(), problems));
    };
    let d = |v: Option<u32>| v.unwrap_or(1).max(1);
    let (tp, dp) = (d(side.tp), d(side.dp));
    let ep = d(side.ep);
    Ok(Run {
        file: String::new(),
        line: 0,
        id: String::new(),
        model: model_ref(&side.model, base),
        gpu: side.gpu.clone(),
        engine,
        engine_version: side.engine_version.clone().unwrap_or_default(),
        gemm_dtype: dtype,
        moe_dtype: dtype,
        isl: 1,
        osl: 1,
        deployment: RunDeployment::Aggregated {
            layout: Layout {
                pp: d(side.pp),
                tp,
                cp: 1,
                dp,
                ep,
                etp: side.etp.unwrap_or((tp * dp / ep).max(1)),
            },
            concurrency: 1,
            replicas: 1,
        },
        ttft: Seconds(1.0),
        tpot: Seconds(1.0),
        client: side.client.unwrap_or_default(),
        kv_dtype,
        gpus_per_node,
        throughput: None,
        reading: crate::runs::Reading::AsStated,
    })
}

/// A problem at each degree the sidecar states as 0 (it was read as 1).
fn zero_degrees(side: &Sidecar) -> Vec<Problem> {
    [
        ("tp", side.tp),
        ("pp", side.pp),
        ("dp", side.dp),
        ("ep", side.ep),
        ("etp", side.etp),
    ]
    .into_iter()
    .filter(|(_, v)| *v == Some(0))
    .map(|(key, _)| {
        Problem::at(key, format!("{key} = 0: a degree is at least 1"))
            .hint("leave the key out for 1")
    })
    .collect()
}

/// `r`'s value, or None with its problem recorded at the sidecar's `key`.
fn keyed<T>(problems: &mut Vec<Problem>, key: &str, r: Result<T, String>, hint: &str) -> Option<T> {
    r.map_err(|m| problems.push(Problem::at(key, m).hint(hint)))
        .ok()
}

/// One record as a run of the template's deployment.
fn run_of(t: &Run, r: &Record, name: &str, line: usize) -> Result<Run, String> {
    let Some(concurrency) = r.max_concurrency.filter(|c| *c > 0) else {
        return Err(
            "no max_concurrency: moeplan models closed-loop runs (--max-concurrency N)".into(),
        );
    };
    if r.completed < 1.0 || r.mean_ttft_ms <= 0.0 || r.mean_tpot_ms <= 0.0 {
        return Err("no completed request, or a non-positive mean TTFT/TPOT".into());
    }
    crate::bounds::CONCURRENCY.check_count(concurrency)?;
    for ms in [r.mean_ttft_ms, r.mean_tpot_ms] {
        crate::bounds::MEASURED_LATENCY.check(ms / 1e3)?;
    }
    // A run of fewer requests than its cap never held more in flight.
    let concurrency = concurrency.min(r.completed as u64).max(1);
    let per_request = |total: f64, what: &str| {
        let n = (total / r.completed).round();
        if n < 1.0 {
            return Err(format!(
                "{what} is {total} over {} completed requests: under one token each",
                r.completed
            ));
        }
        crate::bounds::TOKENS.check_count(n as u64)
    };
    let isl = per_request(r.total_input_tokens, "total_input_tokens")?;
    let osl = per_request(r.total_output_tokens, "total_output_tokens")?;
    if let Some(rate) = r.open_loop_rate() {
        return Err(format!(
            "request_rate {rate} requests/s: an open-loop run (Poisson arrivals), whose latencies depend on the rate, not on max_concurrency alone; moeplan calibrates closed loops (--request-rate inf with --max-concurrency N); `moeplan simulate --rate` predicts open loops"
        ));
    }
    let RunDeployment::Aggregated { layout, .. } = t.deployment else {
        unreachable!("the template is aggregated")
    };
    Ok(Run {
        file: name.to_string(),
        line,
        id: format!("{name}:{line}"),
        isl,
        osl,
        deployment: RunDeployment::Aggregated {
            layout,
            concurrency,
            replicas: 1,
        },
        ttft: Seconds::from_ms(r.mean_ttft_ms),
        tpot: Seconds::from_ms(r.mean_tpot_ms),
        throughput: r
            .output_throughput
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(TokensPerSecond),
        ..t.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::python_json;

    #[test]
    fn python_non_finite_numbers_read_as_null_outside_strings() {
        let text = r#"{"a": "Infinity", "b": Infinity, "c": -Infinity, "d": "x\"NaN", "e": NaN}"#;
        assert_eq!(
            python_json(text),
            r#"{"a": "Infinity", "b": null, "c": null, "d": "x\"NaN", "e": null}"#
        );
    }
}

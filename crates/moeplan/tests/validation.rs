//! End-to-end predictions against published serving figures.
//!
//! Uses `../shared/validation/published.csv` when it is present (skips
//! otherwise): for every row whose layout, workload and metric are stated,
//! run `estimate` and print prediction, published value and relative error.
//! Run with `cargo test -p moeplan --test validation -- --nocapture`.
//! It asserts only that every prediction is finite: accuracy is reported,
//! not tested, because the published figures mix engines and versions.

use moeplan::dtype::DType;
use moeplan::layout::Layout;
use moeplan::memory::Engine;
use moeplan::search::{plan, Modes, PlanOptions};
use moeplan::serving::{estimate, EstimateInput, Workload};
use moeplan::spec::scenario::Scenario;
use std::path::PathBuf;

fn catalog_id(hf: &str) -> Option<&'static str> {
    let name = hf.rsplit('/').next()?.to_ascii_lowercase();
    Some(match name.as_str() {
        "mixtral-8x7b-v0.1" => "mixtral-8x7b",
        "mixtral-8x22b-v0.1" => "mixtral-8x22b",
        n if n.starts_with("qwen3-235b-a22b") => "qwen3-235b-a22b",
        n if n.starts_with("deepseek-r1") => "deepseek-r1",
        n if n.starts_with("deepseek-v3") => "deepseek-v3",
        n if n.starts_with("gpt-oss-120b") => "gpt-oss-120b",
        n if n.starts_with("llama-4-maverick") => "llama-4-maverick",
        _ => return None,
    })
}

#[test]
fn published_figures() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/validation/published.csv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("skipped: {} is absent", path.display());
        return;
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut errors = Vec::new();
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "id", "predicted", "published", "error"
    );
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < header.len() {
            continue;
        }
        let get = |n: &str| f[col(n)].trim();
        let num = |n: &str| get(n).parse::<u32>().ok();
        let metric = get("metric");
        let per_gpu = metric == "output_tokens_per_s_per_gpu";
        if !(metric == "output_tokens_per_s" || per_gpu) || get("mode") != "agg" {
            continue;
        }
        let (Some(id), Some(tp), Some(pp), Ok(isl), Ok(osl), Ok(value), Ok(gpus)) = (
            catalog_id(get("model")),
            num("tp"),
            num("pp"),
            get("isl").parse::<u64>(),
            get("osl").parse::<u64>(),
            get("value").parse::<f64>(),
            get("gpus").parse::<u32>(),
        ) else {
            continue;
        };
        let gpu_id = match get("gpu") {
            "h100" => "h100-sxm",
            "h200" => "h200-sxm",
            g => g,
        };
        let Some(Ok(gpu)) = moeplan::catalog::gpu(gpu_id) else {
            continue;
        };
        let mut m = moeplan::catalog::model(id).unwrap().unwrap();
        if get("precision") == "fp8" {
            m.dtypes.attention = DType::Fp8;
            m.dtypes.experts = DType::Fp8;
            m.dtypes.dense = DType::Fp8;
        }
        let dp = num("dp_attn").unwrap_or(1);
        let ep = num("ep").unwrap_or(1);
        // The CSV's tp counts the GPUs of a stage; with attention DP, each DP
        // rank runs attention with tp / dp (TensorRT-LLM's and SGLang's convention).
        let tp = (tp / dp.max(1)).max(1);
        let stage = tp * dp;
        let layout = Layout {
            pp,
            tp,
            dp,
            ep,
            etp: stage / ep.max(1),
            ..Layout::default()
        };
        // The engine the figure was measured on sets the scheduler: its step
        // budget, running-request cap and memory share.
        let engine_name = get("engine");
        let kind = if engine_name.starts_with("trtllm") {
            Engine::Trtllm
        } else if engine_name.starts_with("sglang") {
            Engine::Sglang
        } else if engine_name.starts_with("vllm") {
            Engine::Vllm
        } else {
            Engine::Neutral
        };
        let engine = kind.config(gpu.memory);
        // Offline peak throughput: the engine runs as many requests as its
        // cap and memory admit; more only wait.
        let concurrency = get("load")
            .strip_prefix("concurrency ")
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(8192 * layout.dp as u64);
        let inp = EstimateInput {
            model: &m,
            gpu: &gpu,
            calibration: gpu.calibration.clone(),
            layout,
            workload: Workload {
                isl,
                osl,
                concurrency,
            },
            engine,
            redundant_experts: 0,
            routing_skew: 0.0,
        };
        // Rows that used attention-DP/EP without stating the degrees are
        // compared with the best aggregated layout the planner finds on the
        // same GPUs (the published figure comes from a tuned deployment too).
        let unstated = get("dp_attn").is_empty() || get("ep").is_empty();
        let (per_gpu_predicted, how) = if unstated {
            let mut sc = Scenario::fixed("validation", m.clone(), gpu.clone(), gpus, isl, osl);
            sc.slo.max_memory_fraction = engine.max_memory_fraction;
            let opts = PlanOptions {
                modes: Modes {
                    aggregated: true,
                    disaggregated: false,
                },
                engine,
                ..PlanOptions::default()
            };
            let r = plan(&sc, &opts, &|_, _| {});
            let Some(best) = r.recommended else { continue };
            (
                best.output_tokens_per_s_per_gpu.0,
                format!("  (degrees unstated: best layout {})", best.pools[0].layout),
            )
        } else {
            let Ok(e) = estimate(&inp) else { continue };
            (e.output_tokens_per_s_per_gpu.0, String::new())
        };
        let predicted = if per_gpu {
            per_gpu_predicted
        } else {
            per_gpu_predicted * gpus as f64
        };
        assert!(predicted.is_finite() && predicted > 0.0);
        let err = predicted / value - 1.0;
        errors.push(err.abs());
        println!(
            "{:<44} {:>12.0} {:>12.0} {:>+7.1}%{how}",
            get("id"),
            predicted,
            value,
            err * 100.0
        );
    }
    errors.sort_by(f64::total_cmp);
    if !errors.is_empty() {
        println!(
            "rows: {}, median |error| {:.1}%, p90 {:.1}%",
            errors.len(),
            errors[errors.len() / 2] * 100.0,
            errors[(errors.len() * 9 / 10).min(errors.len() - 1)] * 100.0
        );
    }
}

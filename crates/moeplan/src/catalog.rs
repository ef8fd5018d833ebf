//! The built-in catalog: model configs and GPU datasheets embedded in the
//! binary. Models are the published Hugging Face `config.json` files (facts,
//! not derived figures) plus the seed documents' model as a native spec;
//! they go through the same importers as user files, so the catalog cannot
//! drift from what a user's file would give. GPUs are spec files citing
//! their datasheets.
//!
//! To add a model: drop its `config.json` in `catalog/models/<id>.json` and
//! add a line below. To add a GPU: write `catalog/gpus/<id>.toml`.

use crate::dtype::DType;
use crate::hardware::Gpu;
use crate::model::Model;
use crate::spec::source::{Format, Source};
use crate::spec::{Problem, SpecError};
use std::ffi::OsStr;
use std::path::Path;

/// Embedded model files by catalog id.
pub const MODELS: &[(&str, &str)] = &[
    (
        "deepseek-r1",
        include_str!("../catalog/models/deepseek-r1.json"),
    ),
    (
        "deepseek-v3",
        include_str!("../catalog/models/deepseek-v3.json"),
    ),
    (
        "deepseek-v4-flash",
        include_str!("../catalog/models/deepseek-v4-flash.json"),
    ),
    (
        "deepseek-v4-flash-fp8",
        include_str!("../catalog/models/deepseek-v4-flash-fp8.json"),
    ),
    (
        "deepseek-v4-flash-nvfp4",
        include_str!("../catalog/models/deepseek-v4-flash-nvfp4.json"),
    ),
    (
        "deepseek-v4-pro",
        include_str!("../catalog/models/deepseek-v4-pro.json"),
    ),
    (
        "deepseek-v4-pro-fp8",
        include_str!("../catalog/models/deepseek-v4-pro-fp8.json"),
    ),
    (
        "deepseek-v4-pro-nvfp4",
        include_str!("../catalog/models/deepseek-v4-pro-nvfp4.json"),
    ),
    (
        "gemma-4-26b-a4b",
        include_str!("../catalog/models/gemma-4-26b-a4b.json"),
    ),
    (
        "gemma-4-31b-it-nvfp4",
        include_str!("../catalog/models/gemma-4-31b-it-nvfp4.json"),
    ),
    (
        "glm-5-fp8",
        include_str!("../catalog/models/glm-5-fp8.json"),
    ),
    ("glm-5", include_str!("../catalog/models/glm-5.json")),
    (
        "gpt-oss-120b",
        include_str!("../catalog/models/gpt-oss-120b.json"),
    ),
    (
        "gpt-oss-20b",
        include_str!("../catalog/models/gpt-oss-20b.json"),
    ),
    (
        "kimi-k2.5",
        include_str!("../catalog/models/kimi-k2.5.json"),
    ),
    ("kimi-k2", include_str!("../catalog/models/kimi-k2.json")),
    ("kimi-k3", include_str!("../catalog/models/kimi-k3.json")),
    (
        "llama-3.1-70b",
        include_str!("../catalog/models/llama-3.1-70b.json"),
    ),
    (
        "llama-3.1-8b",
        include_str!("../catalog/models/llama-3.1-8b.json"),
    ),
    (
        "llama-3.3-nemotron-super-49b",
        include_str!("../catalog/models/llama-3.3-nemotron-super-49b.json"),
    ),
    (
        "llama-4-maverick",
        include_str!("../catalog/models/llama-4-maverick.json"),
    ),
    (
        "llama-4-scout",
        include_str!("../catalog/models/llama-4-scout.json"),
    ),
    ("mimo-7b", include_str!("../catalog/models/mimo-7b.json")),
    (
        "mimo-v2-flash",
        include_str!("../catalog/models/mimo-v2-flash.json"),
    ),
    (
        "minimax-m2.5",
        include_str!("../catalog/models/minimax-m2.5.json"),
    ),
    (
        "minimax-m3",
        include_str!("../catalog/models/minimax-m3.json"),
    ),
    (
        "minimax-m3-nvfp4",
        include_str!("../catalog/models/minimax-m3-nvfp4.json"),
    ),
    (
        "mixtral-8x22b",
        include_str!("../catalog/models/mixtral-8x22b.json"),
    ),
    (
        "mixtral-8x7b",
        include_str!("../catalog/models/mixtral-8x7b.json"),
    ),
    (
        "nemotron-3-nano-30b-a3b",
        include_str!("../catalog/models/nemotron-3-nano-30b-a3b.json"),
    ),
    (
        "nemotron-h-56b",
        include_str!("../catalog/models/nemotron-h-56b.json"),
    ),
    (
        "qwen3-235b-a22b-fp8",
        include_str!("../catalog/models/qwen3-235b-a22b-fp8.json"),
    ),
    (
        "qwen3-235b-a22b",
        include_str!("../catalog/models/qwen3-235b-a22b.json"),
    ),
    (
        "qwen3-30b-a3b",
        include_str!("../catalog/models/qwen3-30b-a3b.json"),
    ),
    (
        "qwen3-32b",
        include_str!("../catalog/models/qwen3-32b.json"),
    ),
    (
        "qwen3-vl-235b-a22b",
        include_str!("../catalog/models/qwen3-vl-235b-a22b.json"),
    ),
    (
        "qwen3-vl-8b",
        include_str!("../catalog/models/qwen3-vl-8b.json"),
    ),
    (
        "qwen3.5-27b",
        include_str!("../catalog/models/qwen3.5-27b.json"),
    ),
    (
        "qwen3.5-35b-a3b",
        include_str!("../catalog/models/qwen3.5-35b-a3b.json"),
    ),
    (
        "qwen3.5-397b-a17b",
        include_str!("../catalog/models/qwen3.5-397b-a17b.json"),
    ),
    ("seed-moe", include_str!("../catalog/models/seed-moe.toml")),
    // AIConfigurator's flattened config of stepfun-ai/Step-3.7-Flash, with
    // the two keys of the published text_config the flattening drops put
    // back: attention_other_setting (the sliding layers' 96 query heads) and
    // use_head_wise_attn_gate (each layer's g_proj).
    (
        "step-3.7-flash",
        include_str!("../catalog/models/step-3.7-flash.json"),
    ),
];

/// Embedded GPU files by catalog id.
pub const GPUS: &[(&str, &str)] = &[
    (
        "a100-sxm-80g",
        include_str!("../catalog/gpus/a100-sxm-80g.toml"),
    ),
    (
        "a100-sxm-40g",
        include_str!("../catalog/gpus/a100-sxm-40g.toml"),
    ),
    ("b200", include_str!("../catalog/gpus/b200.toml")),
    ("b300", include_str!("../catalog/gpus/b300.toml")),
    ("gb200", include_str!("../catalog/gpus/gb200.toml")),
    ("gb300", include_str!("../catalog/gpus/gb300.toml")),
    ("h100-nvl", include_str!("../catalog/gpus/h100-nvl.toml")),
    ("h100-pcie", include_str!("../catalog/gpus/h100-pcie.toml")),
    ("h100-sxm", include_str!("../catalog/gpus/h100-sxm.toml")),
    ("h200-sxm", include_str!("../catalog/gpus/h200-sxm.toml")),
    ("h20", include_str!("../catalog/gpus/h20.toml")),
    ("h800", include_str!("../catalog/gpus/h800.toml")),
    ("l4", include_str!("../catalog/gpus/l4.toml")),
    ("l40s", include_str!("../catalog/gpus/l40s.toml")),
    ("mi300x", include_str!("../catalog/gpus/mi300x.toml")),
    ("mi325x", include_str!("../catalog/gpus/mi325x.toml")),
    ("mi355x", include_str!("../catalog/gpus/mi355x.toml")),
    (
        "rtx-pro-6000-server",
        include_str!("../catalog/gpus/rtx-pro-6000-server.toml"),
    ),
    ("seed-gpu", include_str!("../catalog/gpus/seed-gpu.toml")),
];

/// Hugging Face ids of the catalog's checkpoints, and of checkpoints
/// published with the same architecture under other ids, with the weight
/// type they store where it differs from the catalog config's (a quantised
/// re-release stores its weights as `Model::store_weights` says).
pub(crate) const HF_IDS: &[(&str, &str, Option<DType>)] = &[
    ("deepseek-ai/DeepSeek-R1", "deepseek-r1", None),
    ("deepseek-ai/DeepSeek-R1-0528", "deepseek-r1", None),
    (
        "nvidia/DeepSeek-R1-NVFP4",
        "deepseek-r1",
        Some(DType::Nvfp4),
    ),
    (
        "nvidia/DeepSeek-R1-0528-NVFP4",
        "deepseek-r1",
        Some(DType::Nvfp4),
    ),
    ("deepseek-ai/DeepSeek-V3", "deepseek-v3", None),
    ("deepseek-ai/DeepSeek-V3-0324", "deepseek-v3", None),
    ("deepseek-ai/DeepSeek-V3.1", "deepseek-v3", None),
    (
        "nvidia/DeepSeek-V3.1-NVFP4",
        "deepseek-v3",
        Some(DType::Nvfp4),
    ),
    ("deepseek-ai/DeepSeek-V4-Flash", "deepseek-v4-flash", None),
    (
        "sgl-project/DeepSeek-V4-Flash-FP8",
        "deepseek-v4-flash-fp8",
        None,
    ),
    (
        "nvidia/DeepSeek-V4-Flash-NVFP4",
        "deepseek-v4-flash-nvfp4",
        None,
    ),
    ("deepseek-ai/DeepSeek-V4-Pro", "deepseek-v4-pro", None),
    (
        "sgl-project/DeepSeek-V4-Pro-FP8",
        "deepseek-v4-pro-fp8",
        None,
    ),
    (
        "nvidia/DeepSeek-V4-Pro-NVFP4",
        "deepseek-v4-pro-nvfp4",
        None,
    ),
    ("zai-org/GLM-5", "glm-5", None),
    ("zhipuai/GLM-5", "glm-5", None),
    ("zai-org/GLM-5-FP8", "glm-5-fp8", None),
    ("openai/gpt-oss-120b", "gpt-oss-120b", None),
    ("openai/gpt-oss-20b", "gpt-oss-20b", None),
    ("moonshotai/Kimi-K2.5", "kimi-k2.5", None),
    ("moonshotai/Kimi-K2-Instruct", "kimi-k2", None),
    ("moonshotai/Kimi-K3", "kimi-k3", None),
    ("meta-llama/Llama-3.1-70B", "llama-3.1-70b", None),
    ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b", None),
    ("meta-llama/Meta-Llama-3.1-70B", "llama-3.1-70b", None),
    (
        "meta-llama/Meta-Llama-3.1-70B-Instruct",
        "llama-3.1-70b",
        None,
    ),
    (
        "nvidia/Llama-3.1-70B-Instruct-FP8",
        "llama-3.1-70b",
        Some(DType::Fp8),
    ),
    ("meta-llama/Llama-3.1-8B", "llama-3.1-8b", None),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b", None),
    ("meta-llama/Meta-Llama-3.1-8B", "llama-3.1-8b", None),
    (
        "meta-llama/Meta-Llama-3.1-8B-Instruct",
        "llama-3.1-8b",
        None,
    ),
    (
        "nvidia/Llama-3.1-8B-Instruct-FP8",
        "llama-3.1-8b",
        Some(DType::Fp8),
    ),
    (
        "nvidia/Llama-3_3-Nemotron-Super-49B-v1",
        "llama-3.3-nemotron-super-49b",
        None,
    ),
    (
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
        "llama-4-maverick",
        None,
    ),
    (
        "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        "llama-4-scout",
        None,
    ),
    ("google/gemma-4-26B-A4B", "gemma-4-26b-a4b", None),
    ("google/gemma-4-26B-A4B-it", "gemma-4-26b-a4b", None),
    (
        "nvidia/Gemma-4-26B-A4B-NVFP4",
        "gemma-4-26b-a4b",
        Some(DType::Nvfp4),
    ),
    ("nvidia/Gemma-4-31B-IT-NVFP4", "gemma-4-31b-it-nvfp4", None),
    ("XiaomiMiMo/MiMo-7B-Base", "mimo-7b", None),
    ("XiaomiMiMo/MiMo-V2-Flash", "mimo-v2-flash", None),
    ("MiniMaxAI/MiniMax-M2.5", "minimax-m2.5", None),
    (
        "nvidia/MiniMax-M2.5-NVFP4",
        "minimax-m2.5",
        Some(DType::Nvfp4),
    ),
    ("MiniMaxAI/MiniMax-M3", "minimax-m3", None),
    ("nvidia/MiniMax-M3-NVFP4", "minimax-m3-nvfp4", None),
    ("mistralai/Mixtral-8x22B-v0.1", "mixtral-8x22b", None),
    (
        "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
        "nemotron-3-nano-30b-a3b",
        None,
    ),
    (
        "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4",
        "nemotron-3-nano-30b-a3b",
        Some(DType::Nvfp4),
    ),
    ("nvidia/Nemotron-H-56B-Base-8K", "nemotron-h-56b", None),
    ("mistralai/Mixtral-8x7B-v0.1", "mixtral-8x7b", None),
    ("Qwen/Qwen3-235B-A22B", "qwen3-235b-a22b", None),
    ("Qwen/Qwen3-235B-A22B-FP8", "qwen3-235b-a22b-fp8", None),
    (
        "nvidia/Qwen3-235B-A22B-NVFP4",
        "qwen3-235b-a22b",
        Some(DType::Nvfp4),
    ),
    ("Qwen/Qwen3-30B-A3B", "qwen3-30b-a3b", None),
    ("Qwen/Qwen3-32B", "qwen3-32b", None),
    ("Qwen/Qwen3-32B-FP8", "qwen3-32b", Some(DType::Fp8)),
    ("nvidia/Qwen3-32B-NVFP4", "qwen3-32b", Some(DType::Nvfp4)),
    (
        "Qwen/Qwen3-VL-235B-A22B-Instruct",
        "qwen3-vl-235b-a22b",
        None,
    ),
    ("Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl-8b", None),
    ("Qwen/Qwen3.5-27B", "qwen3.5-27b", None),
    ("Qwen/Qwen3.5-35B-A3B", "qwen3.5-35b-a3b", None),
    ("Qwen/Qwen3.5-397B-A17B", "qwen3.5-397b-a17b", None),
    (
        "nvidia/Qwen3.5-397B-A17B-NVFP4",
        "qwen3.5-397b-a17b",
        Some(DType::Nvfp4),
    ),
    ("stepfun-ai/Step-3.7-Flash", "step-3.7-flash", None),
    (
        "stepfun-ai/Step-3.7-Flash-FP8",
        "step-3.7-flash",
        Some(DType::Fp8),
    ),
];

/// The Hugging Face id of a catalog model's own checkpoint (the first listed
/// for it without a precision override), if it has one.
pub fn hf_id(key: &str) -> Option<&'static str> {
    HF_IDS
        .iter()
        .find(|(_, k, d)| *k == key && d.is_none())
        .map(|(h, _, _)| *h)
}

/// A catalog model by Hugging Face id (case-insensitive); a quantised
/// re-release stores its weights as `Model::store_weights` says.
pub(crate) fn model_by_hf_id(id: &str) -> Option<Result<Model, SpecError>> {
    let (_, key, dtype) = HF_IDS.iter().find(|(h, _, _)| h.eq_ignore_ascii_case(id))?;
    Some(model(key)?.map(|m| match dtype {
        Some(d) => m.released_as(*d),
        None => m,
    }))
}

/// Other names users type for catalog entries.
const MODEL_ALIASES: &[(&str, &str)] = &[
    ("minimax-m2", "minimax-m2.5"),
    ("nemotron-3-nano", "nemotron-3-nano-30b-a3b"),
    ("nemotron-super-49b", "llama-3.3-nemotron-super-49b"),
    ("kimi-k2-instruct", "kimi-k2"),
    ("qwen3-235b", "qwen3-235b-a22b"),
    ("qwen3-30b", "qwen3-30b-a3b"),
    ("step-3.7", "step-3.7-flash"),
];
const GPU_ALIASES: &[(&str, &str)] = &[
    ("h100", "h100-sxm"),
    ("h200", "h200-sxm"),
    ("a100", "a100-sxm-80g"),
    ("a100-80g", "a100-sxm-80g"),
    ("a100-40g", "a100-sxm-40g"),
    ("rtx-pro-6000", "rtx-pro-6000-server"),
];

fn format_of(id: &str, text: &str) -> Format {
    if text.trim_start().starts_with('{') {
        Format::Json
    } else {
        let _ = id;
        Format::Toml
    }
}

fn lookup<'a>(
    table: &'a [(&'a str, &'a str)],
    aliases: &[(&str, &str)],
    id: &str,
) -> Option<(&'a str, &'a str)> {
    let id = id.to_ascii_lowercase();
    let id = aliases
        .iter()
        .find(|(a, _)| *a == id)
        .map_or(id.as_str(), |(_, t)| t)
        .to_string();
    table.iter().find(|(k, _)| *k == id).copied()
}

/// A catalog model by id.
pub fn model(id: &str) -> Option<Result<Model, SpecError>> {
    let (key, text) = lookup(MODELS, MODEL_ALIASES, id)?;
    let source = Source::from_text(&format!("catalog:{key}"), text, format_of(key, text));
    Some(load_model_source(&source).map(|mut m| {
        m.name = key.to_string();
        m
    }))
}

/// A catalog GPU by id.
pub fn gpu(id: &str) -> Option<Result<Gpu, SpecError>> {
    let (key, text) = lookup(GPUS, GPU_ALIASES, id)?;
    let source = Source::from_text(&format!("{key}.toml"), text, Format::Toml);
    Some(crate::spec::gpu::load(&source).map(|mut g| {
        g.id = key.to_string();
        g
    }))
}

/// Reads a model from a source: a Hugging Face config when it names
/// `architectures`, a native spec otherwise. A ModelOpt quantization file
/// (`hf_quant_config.json`: `quantization` with its `quant_algo`, often a
/// `producer`, no model dimensions) given in the config's place is refused as such: read as a
/// native spec it would only list the dimensions it lacks.
pub fn load_model_source(source: &Source) -> Result<Model, SpecError> {
    if source.format == Format::Json {
        let value = source.parse()?;
        if value.get("architectures").is_some() || value.get("model_type").is_some() {
            return crate::hf::load(source);
        }
        // Nemotron-3 Super's and Ultra's files hold only the quantization.
        let quantization = value.get("quantization");
        if quantization.is_some_and(serde_json::Value::is_object)
            && (value.get("producer").is_some()
                || quantization.is_some_and(|q| q.get("quant_algo").is_some()))
        {
            return Err(SpecError::in_source(
                source,
                vec![Problem::at(
                    "quantization",
                    "this is a checkpoint's quantization file (ModelOpt's hf_quant_config.json), not its config",
                )
                .hint("give the config.json beside it: moeplan reads the quantization from this file there (`<id>_hf_quant_config.json` beside `<id>_config.json`, or both in the snapshot folder)")],
            ));
        }
    }
    crate::spec::model::load(source)
}

/// Resolves what a user typed for a model: a catalog id, a Hugging Face id
/// of a catalog checkpoint, or a file path (any bytes the system allows).
pub fn resolve_model(arg: impl AsRef<OsStr>) -> Result<Model, SpecError> {
    let path = Path::new(arg.as_ref());
    let text = arg.as_ref().to_str();
    if let Some(m) = text.and_then(model) {
        return m;
    }
    if !path.exists() {
        if let Some(m) = text.and_then(model_by_hf_id) {
            return m;
        }
    }
    if path.is_dir() {
        // A Hugging Face snapshot: config.json (and hf_quant_config.json) inside.
        return load_model_source(&Source::read(&path.join("config.json"))?);
    }
    if path.exists() || Format::from_path(&path.to_string_lossy()).is_some() {
        return load_model_source(&Source::read(path)?);
    }
    let shown = path.display().to_string();
    Err(SpecError::new(
        &shown,
        String::new(),
        vec![Problem::at(
            "",
            format!("`{shown}` is not a catalog model, a Hugging Face id of one, or a file"),
        )
        .hint(format!(
            "closest catalog models: {}; or pass a config.json, a Hugging Face snapshot folder or a model spec (`moeplan catalog` lists the models)",
            closest(&shown, MODELS.iter().map(|(k, _)| *k)).join(", ")
        ))],
    ))
}

/// The three catalog ids closest to `arg` (edit distance on lowercase, the
/// part after an `org/` ignored), nearest first.
fn closest<'a>(arg: &str, ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let want = arg.rsplit('/').next().unwrap_or(arg).to_ascii_lowercase();
    let mut scored: Vec<(usize, &str)> = ids.map(|id| (edit_distance(&want, id), id)).collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, id)| id).collect()
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Resolves what a user typed for a GPU: a catalog id or a spec file path
/// (any bytes the system allows).
pub fn resolve_gpu(arg: impl AsRef<OsStr>) -> Result<Gpu, SpecError> {
    let path = Path::new(arg.as_ref());
    if let Some(g) = arg.as_ref().to_str().and_then(gpu) {
        return g;
    }
    let shown = path.display().to_string();
    if path.exists() || shown.contains('/') || shown.contains('.') {
        return crate::spec::gpu::load(&Source::read(path)?);
    }
    let ids: Vec<&str> = GPUS.iter().map(|(k, _)| *k).collect();
    Err(SpecError::new(
        &shown,
        String::new(),
        vec![
            Problem::at("", format!("`{shown}` is neither a catalog GPU nor a file")).hint(
                format!(
                    "catalog GPUs: {}; or pass a GPU spec file path",
                    ids.join(", ")
                ),
            ),
        ],
    ))
}

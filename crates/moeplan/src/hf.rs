//! Import of Hugging Face `config.json` files.
//!
//! One function per architecture family turns the config's keys into a
//! `Model`; shared readers collect every missing or mistyped key with its
//! path, so a broken config is reported whole. Multimodal wrappers keep the
//! language model under `text_config`; `quantization_config` (at either
//! level) decides the stored type of each weight group.

use crate::bounds::{self, Range};
use crate::dtype::DType;
use crate::model::{
    Attention, Dtypes, Ffn, Gating, HyperConnections, Layer, LinearAttention, LinearGates, Mamba2,
    Mixer, Model, Moe, NormPlacement, OutputGate, Selection, SparseIndexer, Values, VisionBlocks,
    VisionEncoder, VisionProjector,
};
use crate::spec::source::Source;
use crate::spec::{Problem, Problems, SpecError};
use serde_json::{Map, Value};

mod quant;
use quant::{dtypes, mixed_precision, modelopt_dtype, quant_method, READ_METHODS};

/// Architectures the importer reads, with the family each belongs to.
pub const SUPPORTED: &[&str] = &[
    "MixtralForCausalLM",
    "Qwen2MoeForCausalLM",
    "Qwen3MoeForCausalLM",
    "Qwen3NextForCausalLM",
    "Qwen3_5MoeForConditionalGeneration",
    "Qwen3_5MoeForCausalLM",
    "Qwen3_5ForConditionalGeneration",
    "Qwen3VLMoeForConditionalGeneration",
    "Qwen3VLForConditionalGeneration",
    "DeepseekV2ForCausalLM",
    "DeepseekV3ForCausalLM",
    "DeepseekV32ForCausalLM",
    "DeepseekV4ForCausalLM",
    "KimiK25ForConditionalGeneration",
    "GlmMoeDsaForCausalLM",
    "Glm4MoeForCausalLM",
    "GptOssForCausalLM",
    "MiniMaxM2ForCausalLM",
    "MiniMaxM3ForCausalLM",
    "MiniMaxM3SparseForCausalLM",
    "MiniMaxM3SparseForConditionalGeneration",
    "KimiK3ForConditionalGeneration",
    "KimiLinearForCausalLM",
    "Llama4ForConditionalGeneration",
    "Llama4ForCausalLM",
    "Gemma4ForConditionalGeneration",
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "MiMoForCausalLM",
    "MiMoV2FlashForCausalLM",
    "NemotronHForCausalLM",
    "Step3p5ForCausalLM",
    "Step3p7ForConditionalGeneration",
    "Step3p7FlashForCausalLM",
    "DeciLMForCausalLM",
];

/// The config keys of model sizes, each with its bound (`crate::bounds`):
/// a config far outside what any model has is a broken file, not a model
/// to plan for (`hidden_size: 2^31` would be petabytes of weights).
const BOUNDED: &[(&[&str], Range)] = &[
    (
        &[
            "hidden_size",
            "q_lora_rank",
            "kv_lora_rank",
            "out_hidden_size",
            "routed_expert_hidden_size",
        ],
        bounds::HIDDEN_SIZE,
    ),
    (
        &[
            "intermediate_size",
            "moe_intermediate_size",
            "shared_expert_intermediate_size",
            "shared_intermediate_size",
            "intermediate_size_mlp",
            "dense_intermediate_size",
            "share_expert_dim",
        ],
        bounds::INTERMEDIATE_SIZE,
    ),
    (&["vocab_size"], bounds::VOCAB_SIZE),
    (
        &[
            "num_attention_heads",
            "num_key_value_heads",
            "index_n_heads",
            "linear_num_key_heads",
            "linear_num_value_heads",
            "num_heads",
            "sparse_num_index_heads",
            "num_attention_groups",
        ],
        bounds::HEADS,
    ),
    (
        &[
            "head_dim",
            "qk_nope_head_dim",
            "qk_rope_head_dim",
            "v_head_dim",
            "index_head_dim",
            "linear_key_head_dim",
            "linear_value_head_dim",
            "sparse_index_dim",
        ],
        bounds::HEAD_DIM,
    ),
    (
        &[
            "num_local_experts",
            "num_experts",
            "n_routed_experts",
            "n_shared_experts",
            "num_experts_per_tok",
            "experts_per_token",
            "num_experts_per_token",
            "num_shared_experts",
            "moe_num_experts",
            "moe_top_k",
        ],
        bounds::EXPERTS,
    ),
    (
        &["linear_conv_kernel_dim", "short_conv_kernel_size"],
        bounds::CONV_KERNEL,
    ),
    (&["num_hidden_layers", "depth"], bounds::LAYERS),
];

/// Typed access to a config object, collecting problems with their paths.
struct Cfg<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'a str,
}

impl Cfg<'_> {
    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }
    fn has(&self, key: &str) -> bool {
        self.obj.get(key).is_some_and(|v| !v.is_null())
    }
    fn opt_u64(&self, key: &str, pr: &mut Problems) -> Option<u64> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(0) => {
                    pr.push(
                        Problem::at(self.path(key), "must be greater than 0")
                            .hint("sizes and counts in config.json start at 1"),
                    );
                    Some(1)
                }
                Some(x) => Some(self.bounded(key, x, pr)),
                None => {
                    pr.push(
                        Problem::at(
                            self.path(key),
                            format!("expected a positive integer, found {v}"),
                        )
                        .hint("config.json sizes are whole numbers"),
                    );
                    Some(1)
                }
            },
        }
    }
    /// `x` when `key` has no bound (`BOUNDED`) or lies within it; else a
    /// problem naming the bound, and 1.
    fn bounded(&self, key: &str, x: u64, pr: &mut Problems) -> u64 {
        let Some((_, range)) = BOUNDED.iter().find(|(keys, _)| keys.contains(&key)) else {
            return x;
        };
        match range.check_count(x) {
            Ok(x) => x,
            Err(message) => {
                pr.push(Problem::at(self.path(key), message).hint(range.hint()));
                1
            }
        }
    }
    /// A size where the published value 0 means "none" (Qwen3-Coder's
    /// `shared_expert_intermediate_size: 0`: no shared expert).
    fn size_or_none(&self, key: &str, pr: &mut Problems) -> u64 {
        match self.obj.get(key).and_then(Value::as_u64) {
            Some(0) => 0,
            _ => self.opt_u64(key, pr).unwrap_or(0),
        }
    }
    fn u64(&self, key: &str, pr: &mut Problems) -> u64 {
        if self.obj.get(key).is_some_and(Value::is_null) {
            pr.push(
                Problem::at(
                    self.path(key),
                    "expected a positive integer, found null (or NaN)",
                )
                .hint("this architecture needs the value; write the size the checkpoint has"),
            );
            return 1;
        }
        self.opt_u64(key, pr).unwrap_or_else(|| {
            pr.push(
                Problem::at(self.prefix, format!("missing key `{}`", self.path(key)))
                    .hint("this architecture's config.json always has it; is the file complete?"),
            );
            1
        })
    }
    /// The first of several alias keys that is present.
    fn u64_any(&self, keys: &[&str], pr: &mut Problems) -> u64 {
        for k in keys {
            if self.has(k) {
                return self.u64(k, pr);
            }
        }
        self.u64(keys[0], pr)
    }
    fn bool(&self, key: &str, default: bool) -> bool {
        self.obj
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }
    fn str(&self, key: &str) -> Option<&str> {
        self.obj.get(key).and_then(Value::as_str)
    }
    fn array(&self, key: &str) -> Option<&Vec<Value>> {
        self.obj.get(key).and_then(Value::as_array)
    }
}

/// The type the checkpoint stores its weights as: `torch_dtype` (or the
/// newer `dtype`), in the text config or at the top; bf16 when none is
/// written. A value moeplan cannot read is a problem, not a silent bf16
/// (`"float7"` was read as bf16, half of float32's bytes).
fn stored_dtype(c: &Cfg, root: &Map<String, Value>, pr: &mut Problems) -> DType {
    let found = ["torch_dtype", "dtype"].iter().find_map(|&k| {
        let at_text = c
            .obj
            .get(k)
            .filter(|v| !v.is_null())
            .map(|v| (c.path(k), v));
        at_text.or_else(|| {
            root.get(k)
                .filter(|v| !v.is_null())
                .map(|v| (k.to_string(), v))
        })
    });
    let Some((key, v)) = found else {
        return DType::Bf16;
    };
    let read = v
        .as_str()
        .map(|s| s.strip_prefix("torch.").unwrap_or(s))
        .and_then(|s| s.parse::<DType>().ok());
    read.unwrap_or_else(|| {
        pr.push(
            Problem::at(key, format!("`{v}` is not a weight type moeplan reads"))
                .hint("the type the checkpoint stores its weights as: \"bfloat16\", \"float16\" or \"float32\""),
        );
        DType::Bf16
    })
}

/// Reads a `config.json`.
pub fn load(source: &Source) -> Result<Model, SpecError> {
    let mut value = source.parse()?;
    let name = model_name(&source.name);
    let mut pr = Problems::default();
    let sidecar = with_quant_sidecar(&mut value, &source.name)?;
    let mut model = from_value(&value, &name, &mut pr);
    if let (Some(m), Some(note)) = (model.as_mut(), sidecar) {
        m.assumptions.push(note);
    }
    match model {
        Some(m) if pr.is_empty() => Ok(m),
        _ => Err(SpecError::in_source(source, pr.0)),
    }
}

/// The `hf_quant_config.json` beside a `config.json` (or
/// `<id>_hf_quant_config.json` beside `<id>_config.json`): where NVIDIA's
/// ModelOpt checkpoints keep their quantization. When the config states
/// none itself, the sidecar's becomes its `quantization_config`; returns
/// what was read, for the model's assumptions.
fn with_quant_sidecar(value: &mut Value, config_path: &str) -> Result<Option<String>, SpecError> {
    let Some(stem) = config_path.strip_suffix("config.json") else {
        return Ok(None);
    };
    let path = format!("{stem}hf_quant_config.json");
    let root = value.as_object_mut();
    let states_own = root.as_ref().is_some_and(|r| {
        r.contains_key("quantization_config")
            || r.get("text_config")
                .is_some_and(|t| t.get("quantization_config").is_some())
    });
    if states_own || !std::path::Path::new(&path).is_file() {
        return Ok(None);
    }
    let side = Source::read(std::path::Path::new(&path))?.parse()?;
    let Some(mut q) = side.get("quantization").and_then(Value::as_object).cloned() else {
        return Ok(None);
    };
    q.insert("quant_method".into(), Value::from("modelopt"));
    let algo = q
        .get("quant_algo")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let kv = q
        .get("kv_cache_quant_algo")
        .and_then(Value::as_str)
        .map_or(String::new(), |k| format!(", KV cache {k}"));
    if let Some(r) = root {
        r.insert("quantization_config".into(), Value::Object(q));
    }
    let file = std::path::Path::new(&path)
        .file_name()
        .map_or(path.clone(), |f| f.to_string_lossy().into_owned());
    Ok(Some(format!(
        "quantization read from {file} beside the config (ModelOpt {algo}{kv}); modules it excludes stay in the config's dtype"
    )))
}

/// The model's name from its path: the parent folder for `.../Name/config.json`,
/// and the Hugging Face id for a file named after it
/// (`org--name_config.json` → `org/name`).
fn model_name(path: &str) -> String {
    let p = std::path::Path::new(path);
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    if stem == "config" {
        if let Some(parent) = p
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|s| s.to_str())
        {
            return parent.to_string();
        }
    }
    match stem.strip_suffix("_config") {
        Some(id) if id.contains("--") => id.replacen("--", "/", 1),
        _ => stem.to_string(),
    }
}

/// Builds a model from a parsed config, collecting problems.
pub fn from_value(value: &Value, name: &str, pr: &mut Problems) -> Option<Model> {
    let Some(root) = value.as_object() else {
        pr.push(
            Problem::at("", "config.json must be a JSON object")
                .hint("a Hugging Face config is {\"architectures\": [...], ...}"),
        );
        return None;
    };
    let arch = root
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    let Some(arch) = arch else {
        pr.push(
            Problem::at(
                "architectures",
                "no `architectures` entry names the model class",
            )
            .hint(
                "a Hugging Face config.json lists e.g. \"architectures\": [\"MixtralForCausalLM\"]",
            ),
        );
        return None;
    };
    if !SUPPORTED.contains(&arch) {
        pr.push(
            Problem::at("architectures", format!("unsupported architecture `{arch}`"))
                .hint(format!(
                    "supported: {}. For another model, write a native model spec (moeplan schema model) with its dimensions",
                    SUPPORTED.join(", ")
                )),
        );
        return None;
    }
    let (text, prefix) = match root.get("text_config").and_then(Value::as_object) {
        Some(t) => (t, "text_config"),
        None => (root, ""),
    };
    let c = Cfg { obj: text, prefix };
    let quant = text
        .get("quantization_config")
        .or_else(|| root.get("quantization_config"))
        .and_then(Value::as_object);
    let torch_dtype = stored_dtype(&c, root, pr);

    let mut m = family(arch, &c, root, pr);
    m.name = name.to_string();
    m.tie_word_embeddings = c.bool(
        "tie_word_embeddings",
        root.get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    stored_types(&mut m, arch, &c, quant, torch_dtype);
    check_shapes(&m, &c, pr);
    Some(m)
}

/// The stored type of each weight group and cache: the config's dtype under
/// its quantization (a method moeplan does not read is said), DeepSeek-V4's
/// own expert types, and a Mamba state type where the config states one.
fn stored_types(
    m: &mut Model,
    arch: &str,
    c: &Cfg,
    quant: Option<&Map<String, Value>>,
    torch_dtype: DType,
) {
    let (d, notes) = dtypes(torch_dtype, quant, m, arch);
    m.dtypes = d;
    m.assumptions.extend(notes);
    if arch == "DeepseekV4ForCausalLM" {
        deepseek_v4_dtypes(c, quant, m);
    }
    if let Some(method) = quant
        .map(quant_method)
        .filter(|q| !READ_METHODS.contains(q))
    {
        m.assumptions.push(format!(
            "its quantization_config (method `{method}`) is not one moeplan reads: weights are taken as {torch_dtype}, which may overstate them"
        ));
    }
    // Nemotron-H keeps the Mamba-2 SSM state in its own type (fp32 by default).
    if let Some(d) = c
        .str("mamba_ssm_cache_dtype")
        .and_then(|s| s.parse::<DType>().ok())
    {
        m.dtypes.state = d;
    }
}

/// The model of one supported architecture, read by its family's reader.
fn family(arch: &str, c: &Cfg, root: &Map<String, Value>, pr: &mut Problems) -> Model {
    match arch {
        "MixtralForCausalLM" | "MiniMaxM2ForCausalLM" => mixtral_like(c, arch, pr),
        "Qwen2MoeForCausalLM" | "Qwen3MoeForCausalLM" => qwen_moe(c, arch, pr),
        "Qwen3VLMoeForConditionalGeneration" => with_qwen_vision(qwen_moe(c, arch, pr), root, pr),
        "Qwen3NextForCausalLM" | "Qwen3_5MoeForConditionalGeneration" | "Qwen3_5MoeForCausalLM" => {
            with_qwen_vision(qwen_next(c, arch, pr), root, pr)
        }
        "Qwen3_5ForConditionalGeneration" => {
            let dense = gated_delta_net(dense(c, arch, pr), c, pr);
            with_qwen_vision(dense, root, pr)
        }
        "Qwen3VLForConditionalGeneration" => with_qwen_vision(dense(c, arch, pr), root, pr),
        "DeepseekV2ForCausalLM"
        | "DeepseekV3ForCausalLM"
        | "DeepseekV32ForCausalLM"
        | "KimiK25ForConditionalGeneration"
        | "GlmMoeDsaForCausalLM" => deepseek(c, arch, pr),
        "DeepseekV4ForCausalLM" => deepseek_v4(c, arch, pr),
        "Glm4MoeForCausalLM" => glm4_moe(c, arch, pr),
        "GptOssForCausalLM" => gpt_oss(c, arch, pr),
        "Llama4ForConditionalGeneration" | "Llama4ForCausalLM" => llama4(c, root, arch, pr),
        "NemotronHForCausalLM" => nemotron_h(c, arch, pr),
        "MiMoV2FlashForCausalLM" => mimo_v2_flash(c, arch, pr),
        "KimiK3ForConditionalGeneration" => with_kimi_k3_vision(kimi_linear(c, arch, pr), root, pr),
        "KimiLinearForCausalLM" => kimi_linear(c, arch, pr),
        "MiniMaxM3ForCausalLM" | "MiniMaxM3SparseForCausalLM" => minimax_m3(c, arch, pr),
        "MiniMaxM3SparseForConditionalGeneration" => {
            with_minimax_vision(minimax_m3(c, arch, pr), root, pr)
        }
        "Gemma4ForConditionalGeneration" => with_gemma4_vision(gemma4(c, arch, pr), root, pr),
        "Step3p5ForCausalLM" | "Step3p7ForConditionalGeneration" | "Step3p7FlashForCausalLM" => {
            step3p5(c, root, arch, pr)
        }
        "DeciLMForCausalLM" => decilm(c, arch, pr),
        _ => dense(c, arch, pr),
    }
}

fn base(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let n_layers = c.u64("num_hidden_layers", pr);
    base_with_layers(c, arch, n_layers, pr)
}

/// The common fields of a model of `n_layers` full-attention dense layers.
fn base_with_layers(c: &Cfg, arch: &str, n_layers: u64, pr: &mut Problems) -> Model {
    let hidden = c.u64("hidden_size", pr);
    Model {
        name: String::new(),
        architecture: arch.to_string(),
        hidden_size: hidden,
        vocab_size: c.u64("vocab_size", pr),
        tie_word_embeddings: false,
        attention: gqa(c, hidden, pr),
        sliding_attention: None,
        norms: NormPlacement::Pre,
        indexer: None,
        linear_attention: None,
        mamba: None,
        gating: Gating::Gated,
        moe: None,
        dense_intermediate_size: c.opt_u64("intermediate_size", pr).unwrap_or(0),
        layers: vec![
            Layer {
                mixer: Mixer::Full,
                ffn: Ffn::Dense
            };
            n_layers as usize
        ],
        vision: None,
        dtypes: Dtypes::uniform(DType::Bf16),
        declared_params: None,
        assumptions: Vec::new(),
        max_context: c.obj.get("max_position_embeddings").and_then(Value::as_u64),
        hyper_connections: None,
        mtp_layers: 0,
        checkpoint_weights: None,
    }
}

fn gqa(c: &Cfg, hidden: u64, pr: &mut Problems) -> Attention {
    let n_heads = c.u64("num_attention_heads", pr);
    let n_kv_heads = c.opt_u64("num_key_value_heads", pr).unwrap_or(n_heads);
    let head_dim = c
        .opt_u64("head_dim", pr)
        .unwrap_or((hidden / n_heads.max(1)).max(1));
    Attention::Gqa {
        n_heads,
        n_kv_heads,
        head_dim,
        values: Values::Projected { head_dim },
        qkv_bias: c.bool("attention_bias", false),
        o_bias: false,
        qk_norm: false,
        sinks: false,
        output_gate: OutputGate::Ungated,
    }
}

fn set_gqa(
    m: &mut Model,
    f: impl FnOnce(&mut bool, &mut bool, &mut bool, &mut bool, &mut OutputGate),
) {
    if let Attention::Gqa {
        qkv_bias,
        o_bias,
        qk_norm,
        sinks,
        output_gate,
        ..
    } = &mut m.attention
    {
        f(qkv_bias, o_bias, qk_norm, sinks, output_gate);
    }
}

fn all_moe(m: &mut Model) {
    for l in &mut m.layers {
        l.ffn = Ffn::Moe;
    }
}

fn mixtral_like(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    let inter = c.u64("intermediate_size", pr);
    let shared = c.size_or_none("shared_intermediate_size", pr);
    m.moe = Some(Moe {
        n_routed_experts: c.u64("num_local_experts", pr),
        experts_per_token: c.u64("num_experts_per_tok", pr),
        expert_intermediate_size: inter,
        n_shared_experts: u64::from(shared > 0),
        shared_intermediate_size: shared,
        shared_expert_gate: false,
        router_bias: c.bool("use_routing_bias", false),
        expert_bias: false,
        latent_size: None,
    });
    m.dense_intermediate_size = 0;
    all_moe(&mut m);
    let qk_norm = c.bool("use_qk_norm", false);
    set_gqa(&mut m, |_, _, q, _, _| *q = qk_norm);
    if let Some(w) = c.opt_u64("sliding_window", pr) {
        if c.bool("use_sliding_window", true) {
            for l in &mut m.layers {
                l.mixer = Mixer::Sliding { window: w };
            }
        }
    }
    m
}

fn qwen_moe(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    let shared = c.size_or_none("shared_expert_intermediate_size", pr);
    m.moe = Some(Moe {
        n_routed_experts: c.u64("num_experts", pr),
        experts_per_token: c.u64("num_experts_per_tok", pr),
        expert_intermediate_size: c.u64("moe_intermediate_size", pr),
        n_shared_experts: u64::from(shared > 0),
        shared_intermediate_size: shared,
        shared_expert_gate: shared > 0,
        router_bias: false,
        expert_bias: false,
        latent_size: None,
    });
    let step = c.opt_u64("decoder_sparse_step", pr).unwrap_or(1);
    let mlp_only: Vec<u64> = c
        .array("mlp_only_layers")
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    for (i, l) in m.layers.iter_mut().enumerate() {
        let i = i as u64;
        if !mlp_only.contains(&i) && (i + 1).is_multiple_of(step) {
            l.ffn = Ffn::Moe;
        }
    }
    let qwen3 = arch.starts_with("Qwen3");
    let bias = !qwen3 || c.bool("attention_bias", false);
    set_gqa(&mut m, |qkv, _, q, _, _| {
        *qkv = bias;
        *q = qwen3;
    });
    m
}

fn qwen_next(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    gated_delta_net(qwen_moe(c, arch, pr), c, pr)
}

/// Qwen3-Next / Qwen3.5: Gated-DeltaNet linear attention in most layers and
/// gated full attention (q/k norm, a sigmoid output gate) in every
/// `full_attention_interval`-th, over the model's MoE or dense MLPs.
fn gated_delta_net(mut m: Model, c: &Cfg, pr: &mut Problems) -> Model {
    let gate = c.bool("attn_output_gate", true);
    set_gqa(&mut m, |qkv, _, q, _, g| {
        *qkv = false;
        *q = true;
        *g = if gate {
            OutputGate::PerChannel
        } else {
            OutputGate::Ungated
        };
    });
    m.linear_attention = Some(LinearAttention {
        n_key_heads: c.u64("linear_num_key_heads", pr),
        n_value_heads: c.u64("linear_num_value_heads", pr),
        key_head_dim: c.u64("linear_key_head_dim", pr),
        value_head_dim: c.u64("linear_value_head_dim", pr),
        conv_kernel: c.u64("linear_conv_kernel_dim", pr),
        gates: LinearGates::GatedDeltaNet,
    });
    let n = m.layers.len();
    let types = c.array("layer_types");
    let interval = c.opt_u64("full_attention_interval", pr).unwrap_or(4);
    for (i, l) in m.layers.iter_mut().enumerate() {
        let kind = types.and_then(|t| t.get(i)).and_then(Value::as_str);
        l.mixer = match kind {
            Some("linear_attention") => Mixer::Linear,
            Some(_) => Mixer::Full,
            None if (i as u64 + 1).is_multiple_of(interval) => Mixer::Full,
            None => Mixer::Linear,
        };
    }
    if let Some(t) = types {
        if t.len() != n {
            pr.push(
                Problem::at(
                    c.path("layer_types"),
                    format!("{} entries for {n} layers", t.len()),
                )
                .hint("layer_types lists one entry per hidden layer"),
            );
        }
    }
    mtp_not_counted(&mut m, c);
    m
}

/// The checkpoint's `vision_config`, if it has one.
fn vision_cfg(root: &Map<String, Value>) -> Option<Cfg<'_>> {
    let obj = root.get("vision_config").and_then(Value::as_object)?;
    Some(Cfg {
        obj,
        prefix: "vision_config",
    })
}

/// The vision tower of Qwen3-VL and Qwen3.5 (`vision_config`): ViT blocks,
/// a Conv3d patch embedding with bias (in_channels · temporal_patch ·
/// patch² · h + h), a learned position table, and patch mergers (the final
/// one plus one per DeepStack level).
fn with_qwen_vision(mut m: Model, root: &Map<String, Value>, pr: &mut Problems) -> Model {
    let Some(vc) = vision_cfg(root) else {
        return m;
    };
    let h = vc.u64("hidden_size", pr);
    let patch = vc.u64("patch_size", pr);
    let channels = vc.opt_u64("in_channels", pr).unwrap_or(3);
    let temporal = vc.opt_u64("temporal_patch_size", pr).unwrap_or(2);
    let positions = vc.opt_u64("num_position_embeddings", pr).unwrap_or(0);
    let merge = vc.opt_u64("spatial_merge_size", pr).unwrap_or(2);
    let deepstack = vc.array("deepstack_visual_indexes").map_or(0, Vec::len) as u64;
    let conv = channels
        .saturating_mul(temporal)
        .saturating_mul(patch.saturating_mul(patch))
        .saturating_mul(h);
    m.vision = Some(VisionEncoder {
        n_layers: vc.u64("depth", pr),
        hidden_size: h,
        intermediate_size: vc.u64("intermediate_size", pr),
        out_hidden_size: vc.opt_u64("out_hidden_size", pr).unwrap_or(m.hidden_size),
        embedding_params: conv
            .saturating_add(h)
            .saturating_add(positions.saturating_mul(h)),
        blocks: VisionBlocks::PlainWithBiases,
        projector: VisionProjector::PatchMerger {
            merge: merge.saturating_mul(merge),
            mergers: 1 + deepstack,
        },
    });
    m
}

/// A multi-token-prediction module in the checkpoint is stated, not counted.
fn mtp_not_counted(m: &mut Model, c: &Cfg) {
    let mtp = [
        "num_nextn_predict_layers",
        "mtp_num_hidden_layers",
        "num_mtp_modules",
    ]
    .iter()
    .filter_map(|k| c.obj.get(*k).and_then(Value::as_u64))
    .max()
    .unwrap_or(0);
    m.mtp_layers = u32::try_from(mtp).unwrap_or(u32::MAX);
    if mtp > 0 {
        m.assumptions.push("the multi-token-prediction (MTP) module is not counted: published totals exclude it and engines load it only for speculative decoding".into());
    }
}

/// A block of a Nemotron-H layer pattern: one mixer or one FFN per layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NemotronBlock {
    /// `M` / `mamba`: a Mamba-2 mixer.
    Mamba,
    /// `*` / `attention`: GQA attention.
    Attention,
    /// `-` / `mlp`: a squared-ReLU MLP.
    Mlp,
    /// `E` / `moe`: the MoE block.
    Moe,
}

impl NemotronBlock {
    /// A character of `hybrid_override_pattern`.
    fn from_code(c: char) -> Option<Self> {
        match c {
            'M' => Some(NemotronBlock::Mamba),
            '*' => Some(NemotronBlock::Attention),
            '-' => Some(NemotronBlock::Mlp),
            'E' => Some(NemotronBlock::Moe),
            _ => None,
        }
    }

    /// An entry of `layers_block_type` (Nemotron-3 Ultra, Nemotron-3.5).
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "mamba" => Some(NemotronBlock::Mamba),
            "attention" => Some(NemotronBlock::Attention),
            "mlp" => Some(NemotronBlock::Mlp),
            "moe" => Some(NemotronBlock::Moe),
            _ => None,
        }
    }

    /// The layer the block is: a mixer alone or an FFN alone.
    fn layer(self) -> Layer {
        let (mixer, ffn) = match self {
            NemotronBlock::Mamba => (Mixer::Mamba, Ffn::Absent),
            NemotronBlock::Attention => (Mixer::Full, Ffn::Absent),
            NemotronBlock::Mlp => (Mixer::Absent, Ffn::Dense),
            NemotronBlock::Moe => (Mixer::Absent, Ffn::Moe),
        };
        Layer { mixer, ffn }
    }
}

/// The layers of a Nemotron-H config: `hybrid_override_pattern` (one
/// character per layer), or `layers_block_type` (one name per layer).
fn nemotron_layers(c: &Cfg, pr: &mut Problems) -> Vec<Layer> {
    let (key, blocks): (&str, Vec<Option<NemotronBlock>>) = if let Some(p) =
        c.str("hybrid_override_pattern")
    {
        let codes = p.chars().map(NemotronBlock::from_code).collect();
        ("hybrid_override_pattern", codes)
    } else if let Some(list) = c.array("layers_block_type") {
        let names = list
            .iter()
            .map(|v| v.as_str().and_then(NemotronBlock::from_name))
            .collect();
        ("layers_block_type", names)
    } else {
        pr.push(
                Problem::at(c.prefix, "missing key `hybrid_override_pattern`").hint(
                    "Nemotron-H names each layer's block in hybrid_override_pattern (M, *, -, E) or layers_block_type",
                ),
            );
        return vec![NemotronBlock::Attention.layer()];
    };
    if let Some(i) = blocks.iter().position(Option::is_none) {
        pr.push(
            Problem::at(c.path(key), format!("layer {i} has an unknown block kind"))
                .hint("blocks are M (mamba), * (attention), - (mlp) and E (moe)"),
        );
    }
    let n = blocks.len() as u64;
    if let Err(message) = crate::bounds::LAYERS.check_count(n) {
        pr.push(Problem::at(c.path(key), message).hint(crate::bounds::LAYERS.hint()));
        return vec![NemotronBlock::Attention.layer()];
    }
    if let Some(declared) = c.opt_u64("num_hidden_layers", pr).filter(|d| *d != n) {
        pr.push(
            Problem::at(
                c.path("num_hidden_layers"),
                format!("{declared} layers, but `{key}` names {n}"),
            )
            .hint("the pattern has one entry per layer"),
        );
    }
    blocks
        .into_iter()
        .map(|b| b.unwrap_or(NemotronBlock::Attention).layer())
        .collect()
}

/// Nemotron-H and Nemotron-3 (`NemotronHForCausalLM`): one pre-norm block
/// per layer, Mamba-2, GQA attention, a squared-ReLU MLP (up and down
/// only) or the MoE block (squared-ReLU experts, a shared expert, a router
/// with a correction bias, and LatentMoE's latent when `moe_latent_size` is
/// set). Mamba-2's inner width is heads × head_dim, as the modelling code
/// builds it (`expand` is not read: Nemotron-3 Nano's 2 × 2688 is not its
/// 64 × 64).
fn nemotron_h(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let layers = nemotron_layers(c, pr);
    let mut m = base_with_layers(c, arch, layers.len() as u64, pr);
    m.layers = layers;
    m.gating = Gating::Plain;
    let head_dim = c.u64_any(&["head_dim", "attention_head_dim"], pr);
    m.attention = Attention::Gqa {
        n_heads: c.u64("num_attention_heads", pr),
        n_kv_heads: c.u64("num_key_value_heads", pr),
        head_dim,
        values: Values::Projected { head_dim },
        qkv_bias: c.bool("attention_bias", false),
        o_bias: c.bool("attention_bias", false),
        qk_norm: false,
        sinks: false,
        output_gate: OutputGate::Ungated,
    };
    m.mamba = Some(Mamba2 {
        n_heads: c.u64("mamba_num_heads", pr),
        head_dim: c.u64("mamba_head_dim", pr),
        n_groups: c.u64("n_groups", pr),
        state_size: c.u64("ssm_state_size", pr),
        conv_kernel: c.u64("conv_kernel", pr),
        conv_bias: c.bool("use_conv_bias", true),
        proj_bias: c.bool("mamba_proj_bias", c.bool("use_bias", false)),
        chunk_size: c.opt_u64("chunk_size", pr).unwrap_or(128),
    });
    if m.layers.iter().any(|l| l.ffn == Ffn::Moe) {
        m.moe = Some(nemotron_moe(c, pr));
    }
    nemotron_assumptions(c, &mut m);
    m
}

/// Nemotron-3's MoE block: routed experts of `moe_intermediate_size`
/// (in the latent when `moe_latent_size` is set), shared experts of
/// `moe_shared_expert_intermediate_size` in the hidden width, a sigmoid
/// router with an `e_score_correction_bias`.
fn nemotron_moe(c: &Cfg, pr: &mut Problems) -> Moe {
    let shared = c.size_or_none("moe_shared_expert_intermediate_size", pr);
    Moe {
        n_routed_experts: c.u64("n_routed_experts", pr),
        experts_per_token: c.u64("num_experts_per_tok", pr),
        expert_intermediate_size: c.u64("moe_intermediate_size", pr),
        n_shared_experts: if shared > 0 {
            c.opt_u64("n_shared_experts", pr).unwrap_or(1)
        } else {
            0
        },
        shared_intermediate_size: shared,
        shared_expert_gate: false,
        router_bias: true,
        expert_bias: c.bool("mlp_bias", false),
        latent_size: c.opt_u64("moe_latent_size", pr),
    }
}

/// What a Nemotron-H model is read as beyond its config's keys.
fn nemotron_assumptions(c: &Cfg, m: &mut Model) {
    mtp_not_counted(m, c);
    if c.bool("mlp_bias", false) {
        m.assumptions
            .push("the dense MLPs' and shared experts' biases are not counted".into());
    }
    m.assumptions.push("Mamba-2 layers are costed like linear attention: projections as GEMMs, the scan reading and writing each sequence's state in decode and running chunked in prefill, with the attention-decode curve (no Mamba kernel was measured); their projections share the attention weights' stored type".into());
}

/// The DeepSeek MoE block (routed + shared experts of one width, the first
/// `first_k_dense_replace` layers dense, then every `moe_layer_freq`-th),
/// which DeepSeek-V2/V3, Kimi, GLM-4.5 and GLM-5 share.
fn deepseek_moe_model(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    let inter = c.u64("moe_intermediate_size", pr);
    m.moe = Some(Moe {
        n_routed_experts: c.u64("n_routed_experts", pr),
        experts_per_token: c.u64("num_experts_per_tok", pr),
        expert_intermediate_size: inter,
        n_shared_experts: c.opt_u64("n_shared_experts", pr).unwrap_or(0),
        shared_intermediate_size: inter,
        shared_expert_gate: false,
        // noaux_tc routing adds a per-expert selection bias (GLM-4.5 always has it).
        router_bias: c.str("topk_method").is_none_or(|t| t == "noaux_tc"),
        expert_bias: false,
        latent_size: None,
    });
    let first_dense = c
        .obj
        .get("first_k_dense_replace")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let freq = c.opt_u64("moe_layer_freq", pr).unwrap_or(1);
    for (i, l) in m.layers.iter_mut().enumerate() {
        let i = i as u64;
        if i >= first_dense && i.is_multiple_of(freq) {
            l.ffn = Ffn::Moe;
        }
    }
    mtp_not_counted(&mut m, c);
    m
}

/// MLA attention as the DeepSeek family's configs state it; Kimi-K3 adds a
/// per-head output gate (`mla_use_output_gate`, absent elsewhere: none).
fn mla_attention(c: &Cfg, pr: &mut Problems) -> Attention {
    Attention::Mla {
        n_heads: c.u64("num_attention_heads", pr),
        q_lora_rank: c.opt_u64("q_lora_rank", pr),
        kv_lora_rank: c.u64("kv_lora_rank", pr),
        qk_nope_head_dim: c.u64("qk_nope_head_dim", pr),
        qk_rope_head_dim: c.u64("qk_rope_head_dim", pr),
        v_head_dim: c.u64("v_head_dim", pr),
        output_gate: c.bool("mla_use_output_gate", false),
    }
}

/// DeepSeek-V2/V3/V3.2, Kimi K2/K2.5, GLM-5: MLA attention (with the DSA
/// indexer when the config has one) over the DeepSeek MoE block.
fn deepseek(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = deepseek_moe_model(c, arch, pr);
    m.attention = mla_attention(c, pr);
    if c.has("index_topk") {
        m.indexer = Some(SparseIndexer {
            n_heads: c.u64("index_n_heads", pr),
            head_dim: c.u64("index_head_dim", pr),
            topk: c.u64("index_topk", pr),
        });
    }
    m.dense_intermediate_size = c.u64("intermediate_size", pr);
    m
}

/// The compression ratio whose layers select their entries through the
/// indexer (CSA): vLLM's and SGLang's DeepSeek-V4 build the indexer in the
/// layers of ratio 4 (`compress_ratio == 4`), and read every entry of the
/// others (HCA, ratio 128).
const CSA_RATIO: u64 = 4;

/// DeepSeek-V4 (`DeepseekV4ForCausalLM`): multi-query attention over one
/// shared key-value head (`Attention::SharedKv`) in every layer, each
/// layer by its `compress_ratios` entry either sliding-window only (ratio
/// 0 or 1) or compressed (`Mixer::Compressed`: CSA with the indexer at ratio 4,
/// HCA otherwise), hyper-connections (`hc_mult`), and the DeepSeek MoE
/// block in every layer (routed and shared experts, no dense layers).
fn deepseek_v4(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    let n = m.layers.len();
    m.attention = Attention::SharedKv {
        n_heads: c.u64("num_attention_heads", pr),
        q_lora_rank: c.u64("q_lora_rank", pr),
        head_dim: c.u64("head_dim", pr),
        qk_rope_head_dim: c.u64("qk_rope_head_dim", pr),
        o_lora_rank: c.u64("o_lora_rank", pr),
        o_groups: c.u64("o_groups", pr),
    };
    m.indexer = Some(SparseIndexer {
        n_heads: c.u64("index_n_heads", pr),
        head_dim: c.u64("index_head_dim", pr),
        topk: c.u64("index_topk", pr),
    });
    let window = c.u64("sliding_window", pr);
    let ratios = compress_ratios(c, n, pr);
    for (l, ratio) in m.layers.iter_mut().zip(ratios) {
        l.mixer = match ratio {
            0 | 1 => Mixer::Sliding { window },
            CSA_RATIO => Mixer::Compressed {
                window,
                ratio,
                selection: Selection::Indexed,
            },
            _ => Mixer::Compressed {
                window,
                ratio,
                selection: Selection::All,
            },
        };
        l.ffn = Ffn::Moe;
    }
    let inter = c.u64("moe_intermediate_size", pr);
    let shared = c.opt_u64("n_shared_experts", pr).unwrap_or(0);
    m.moe = Some(Moe {
        n_routed_experts: c.u64("n_routed_experts", pr),
        experts_per_token: c.u64("num_experts_per_tok", pr),
        expert_intermediate_size: inter,
        n_shared_experts: u64::from(shared > 0),
        shared_intermediate_size: inter.saturating_mul(shared),
        shared_expert_gate: false,
        router_bias: c.str("topk_method").is_none_or(|t| t == "noaux_tc"),
        expert_bias: false,
        latent_size: None,
    });
    m.dense_intermediate_size = 0;
    m.hyper_connections = c
        .opt_u64("hc_mult", pr)
        .filter(|s| *s > 1)
        .map(|streams| HyperConnections { streams });
    deepseek_v4_assumptions(c, &mut m, pr);
    m
}

/// DeepSeek-V4's `compress_ratios`: one per layer, the checkpoint's MTP
/// layers' entries after them (not read).
fn compress_ratios(c: &Cfg, n: usize, pr: &mut Problems) -> Vec<u64> {
    let values: Vec<Option<u64>> = c
        .array("compress_ratios")
        .map(|a| a.iter().map(Value::as_u64).collect())
        .unwrap_or_default();
    if values.len() < n || values.iter().any(Option::is_none) {
        pr.push(
            Problem::at(
                c.path("compress_ratios"),
                format!(
                    "expected at least {n} integers, one per layer, found {}",
                    values.len()
                ),
            )
            .hint("DeepSeek-V4 lists each layer's KV compression ratio (0: sliding window only)"),
        );
        return vec![0; n];
    }
    values.into_iter().take(n).map(|v| v.unwrap_or(0)).collect()
}

/// What a DeepSeek-V4 model is read as beyond its config's keys.
fn deepseek_v4_assumptions(c: &Cfg, m: &mut Model, pr: &mut Problems) {
    mtp_not_counted(m, c);
    let hash = c.size_or_none("num_hash_layers", pr);
    if hash > 0 {
        m.assumptions.push(format!("the first {hash} layers route by token id (hash routing, a vocab × top-k lookup table, not counted as weights): they are costed like learned routing, with a learned router's weights and correction bias counted"));
    }
    m.assumptions.push("compressors, the indexer's weights projection and the hyper-connection mixing are counted in the attention's and the norms' stored types (the checkpoint keeps them in bf16 and fp32: under 0.2% of the weight bytes)".into());
    if let Some(hc) = m.hyper_connections {
        m.assumptions.push(format!("the hyper-connections (hc_mult {}) are costed with each layer's norms: around each block 2·m·h·((2+m)·m + m + 3) FLOP and 2·(3·m·h + h) bytes per token (the m copies of the residual in bf16, read by hc_pre, read and written by hc_post), the block's fp32 mixing weights read once per step, and the m-times-wider residual between pipeline stages; the Sinkhorn iterations on the m × m mix are left out", hc.streams));
    }
    m.assumptions.push("the KV cache is DeepSeek-V4's FlashMLA layout whatever the config says: each entry of the shared head 448 fp8 + 64 bf16 rotary + 8 scale bytes, each indexer key 128 fp8 + 4 scale bytes; a compressor's partial window (its fp32 state) is not counted".into());
}

/// DeepSeek-V4's weight types: the `quantization_config` covers the
/// linear layers (fp8 blocks); the routed experts are `expert_dtype`
/// (`fp4`: MXFP4, as vLLM reads DeepSeek's checkpoints; `fp8` or absent,
/// as in SGLang's FP8 repack: the config's fp8) unless a ModelOpt
/// `MIXED_PRECISION` form names theirs (`quantized_layers`, or its
/// `moe_quant_algo`); the cache is fp8. Said in the assumptions.
fn deepseek_v4_dtypes(c: &Cfg, quant: Option<&Map<String, Value>>, m: &mut Model) {
    let mixed = quant.and_then(|q| {
        let algo = q.get("quant_algo").and_then(Value::as_str)?;
        (algo == "MIXED_PRECISION").then_some(q)
    });
    let named = mixed.and_then(|q| {
        let from_layers = mixed_precision(m.dtypes.clone(), q, &[]).experts;
        Some(from_layers)
            .filter(|t| *t != m.dtypes.experts)
            .or_else(|| {
                q.get("moe_quant_algo")
                    .and_then(Value::as_str)
                    .and_then(modelopt_dtype)
            })
    });
    let (experts, source) = match (named, c.str("expert_dtype")) {
        (Some(t), _) => (t, "its ModelOpt MIXED_PRECISION quantization"),
        (None, Some("fp4")) => (DType::Mxfp4, "expert_dtype fp4 (DeepSeek's MXFP4)"),
        (None, _) => (
            m.dtypes.experts,
            "the quantization_config (no fp4 expert_dtype)",
        ),
    };
    m.dtypes.experts = experts;
    m.dtypes.kv_cache = DType::Fp8;
    m.assumptions.push(format!(
        "weights: routed experts {experts} from {source}; attention and shared experts {}, embedding and LM head {}",
        m.dtypes.attention, m.dtypes.embedding
    ));
}

/// GLM-4.5: GQA attention over the DeepSeek MoE block.
fn glm4_moe(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = deepseek_moe_model(c, arch, pr);
    let qk_norm = c.bool("use_qk_norm", false);
    set_gqa(&mut m, |_, _, q, _, _| *q = qk_norm);
    m
}

fn gpt_oss(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    m.moe = Some(Moe {
        n_routed_experts: c.u64_any(&["num_local_experts", "num_experts"], pr),
        experts_per_token: c.u64_any(&["num_experts_per_tok", "experts_per_token"], pr),
        expert_intermediate_size: c.u64("intermediate_size", pr),
        n_shared_experts: 0,
        shared_intermediate_size: 0,
        shared_expert_gate: false,
        router_bias: true,
        expert_bias: true,
        latent_size: None,
    });
    m.dense_intermediate_size = 0;
    all_moe(&mut m);
    set_gqa(&mut m, |qkv, o, _, s, _| {
        *qkv = true;
        *o = true;
        *s = true;
    });
    let window = c.opt_u64("sliding_window", pr).unwrap_or(128);
    let types = c.array("layer_types");
    for (i, l) in m.layers.iter_mut().enumerate() {
        let sliding = match types.and_then(|t| t.get(i)).and_then(Value::as_str) {
            Some(t) => t == "sliding_attention",
            None => i % 2 == 0,
        };
        if sliding {
            l.mixer = Mixer::Sliding { window };
        }
    }
    m
}

fn llama4(c: &Cfg, root: &Map<String, Value>, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    let inter = c.u64("intermediate_size", pr);
    m.moe = Some(Moe {
        n_routed_experts: c.u64("num_local_experts", pr),
        experts_per_token: c.u64("num_experts_per_tok", pr),
        expert_intermediate_size: inter,
        n_shared_experts: 1,
        shared_intermediate_size: inter,
        shared_expert_gate: false,
        router_bias: false,
        expert_bias: false,
        latent_size: None,
    });
    m.dense_intermediate_size = c.opt_u64("intermediate_size_mlp", pr).unwrap_or(inter);
    let step = c.opt_u64("interleave_moe_layer_step", pr).unwrap_or(1);
    let chunk = c.opt_u64("attention_chunk_size", pr);
    for (i, l) in m.layers.iter_mut().enumerate() {
        let i = i as u64;
        if (i + 1).is_multiple_of(step) {
            l.ffn = Ffn::Moe;
        }
        // Three of every four layers use chunked local attention with RoPE;
        // the fourth is global attention without RoPE (iRoPE).
        if let Some(w) = chunk {
            if !(i + 1).is_multiple_of(4) {
                l.mixer = Mixer::Sliding { window: w };
            }
        }
    }
    let qk_norm = c.bool("use_qk_norm", false);
    set_gqa(&mut m, |_, _, q, _, _| *q = qk_norm);
    if let Some(vc) = vision_cfg(root) {
        m.vision = Some(VisionEncoder {
            n_layers: vc.u64("num_hidden_layers", pr),
            hidden_size: vc.u64("hidden_size", pr),
            intermediate_size: vc.u64("intermediate_size", pr),
            out_hidden_size: m.hidden_size,
            embedding_params: 0,
            blocks: VisionBlocks::PlainWithBiases,
            projector: VisionProjector::Linear,
        });
    }
    m
}

fn dense(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    m.dense_intermediate_size = c.u64("intermediate_size", pr);
    let qwen2 = matches!(arch, "Qwen2ForCausalLM" | "MiMoForCausalLM");
    let qwen3 = matches!(arch, "Qwen3ForCausalLM" | "Qwen3VLForConditionalGeneration");
    set_gqa(&mut m, |qkv, _, q, _, _| {
        *qkv = *qkv || qwen2;
        *q = qwen3;
    });
    mtp_not_counted(&mut m, c);
    m
}

/// One entry per layer of the integer list at `key` (None when absent;
/// a list of another length or with non-integers is a problem).
fn per_layer_list(c: &Cfg, key: &str, n: usize, pr: &mut Problems) -> Option<Vec<u64>> {
    let list = c.array(key)?;
    let values: Vec<Option<u64>> = list.iter().map(Value::as_u64).collect();
    if list.len() != n || values.iter().any(Option::is_none) {
        pr.push(
            Problem::at(
                c.path(key),
                format!("expected {n} integers, one per layer, found {}", list.len()),
            )
            .hint("the list has one entry per hidden layer"),
        );
        return None;
    }
    Some(values.into_iter().map(|v| v.unwrap_or(0)).collect())
}

/// One GQA shape of MiMo-V2-Flash from the keys with `prefix` (`swa_` for
/// the sliding layers): query/key and value head dims of their own, no
/// biases or q/k norms, a learned sink per head where `sinks_key` says.
fn mimo_attention(c: &Cfg, prefix: &str, sinks_key: &str, pr: &mut Problems) -> Attention {
    let key = |k: &str| format!("{prefix}{k}");
    let head_dim = c.u64(&key("head_dim"), pr);
    Attention::Gqa {
        n_heads: c.u64(&key("num_attention_heads"), pr),
        n_kv_heads: c.u64(&key("num_key_value_heads"), pr),
        head_dim,
        values: Values::Projected {
            head_dim: c.opt_u64(&key("v_head_dim"), pr).unwrap_or(head_dim),
        },
        qkv_bias: c.bool("attention_bias", false),
        o_bias: false,
        qk_norm: false,
        sinks: c.bool(sinks_key, false),
        output_gate: OutputGate::Ungated,
    }
}

/// MiMo-V2-Flash: full and sliding-window layers with GQA shapes of their
/// own (`hybrid_layer_pattern`, 1 = sliding), values narrower than keys, a
/// sink per head on the sliding layers; a dense MLP where `moe_layer_freq`
/// is 0, elsewhere routed experts (sigmoid router with a correction bias,
/// no shared expert).
fn mimo_v2_flash(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    let n = m.layers.len();
    m.attention = mimo_attention(c, "", "add_full_attention_sink_bias", pr);
    m.sliding_attention = Some(mimo_attention(c, "swa_", "add_swa_attention_sink_bias", pr));
    let window = c.u64_any(&["sliding_window", "sliding_window_size"], pr);
    let pattern = per_layer_list(c, "hybrid_layer_pattern", n, pr).unwrap_or_else(|| vec![0; n]);
    let moe_layers = per_layer_list(c, "moe_layer_freq", n, pr).unwrap_or_else(|| vec![1; n]);
    for ((l, swa), moe) in m.layers.iter_mut().zip(pattern).zip(moe_layers) {
        if swa == 1 {
            l.mixer = Mixer::Sliding { window };
        }
        if moe != 0 {
            l.ffn = Ffn::Moe;
        }
    }
    m.moe = Some(Moe {
        n_routed_experts: c.u64("n_routed_experts", pr),
        experts_per_token: c.u64("num_experts_per_tok", pr),
        expert_intermediate_size: c.u64("moe_intermediate_size", pr),
        n_shared_experts: 0,
        shared_intermediate_size: 0,
        shared_expert_gate: false,
        router_bias: c.str("topk_method").is_none_or(|t| t == "noaux_tc"),
        expert_bias: false,
        latent_size: None,
    });
    mtp_not_counted(&mut m, c);
    m
}

/// A global layer's `key` as transformers 5.15 and later save it: not as
/// the flat `global_head_dim` / `num_global_key_value_heads` but in
/// `per_layer_config`, one override per full-attention layer index.
fn gemma4_per_layer(c: &Cfg, key: &str) -> Option<u64> {
    let layers = c.obj.get("per_layer_config")?.as_object()?;
    layers
        .values()
        .find_map(|l| l.get(key).and_then(Value::as_u64))
}

/// Gemma-4's two attention shapes (`Gemma4TextAttention`): sliding layers
/// of `head_dim` and `num_key_value_heads`; global layers of
/// `global_head_dim` and, when `attention_k_eq_v`,
/// `num_global_key_value_heads` whose keys are also the values (no
/// v_proj); either global figure from `per_layer_config` when the flat key
/// is absent. Both have q/k RMSNorms (the v norm has no weight), and
/// `attention_bias` on q, k, v and o.
fn gemma4_attention(c: &Cfg, pr: &mut Problems) -> (Attention, Attention) {
    let n_heads = c.u64("num_attention_heads", pr);
    let head_dim = c.u64("head_dim", pr);
    let kv = c.u64("num_key_value_heads", pr);
    let shape = |n_kv_heads: u64, head_dim: u64, values: Values| Attention::Gqa {
        n_heads,
        n_kv_heads,
        head_dim,
        values,
        qkv_bias: c.bool("attention_bias", false),
        o_bias: c.bool("attention_bias", false),
        qk_norm: true,
        sinks: false,
        output_gate: OutputGate::Ungated,
    };
    let global_dim = c
        .opt_u64("global_head_dim", pr)
        .or_else(|| gemma4_per_layer(c, "head_dim"))
        .unwrap_or(head_dim);
    let global = if c.bool("attention_k_eq_v", false) {
        let global_kv = c
            .opt_u64("num_global_key_value_heads", pr)
            .or_else(|| gemma4_per_layer(c, "num_key_value_heads"))
            .unwrap_or(kv);
        shape(global_kv, global_dim, Values::Keys)
    } else {
        shape(
            kv,
            global_dim,
            Values::Projected {
                head_dim: global_dim,
            },
        )
    };
    let sliding = shape(kv, head_dim, Values::Projected { head_dim });
    (global, sliding)
}

/// Gemma-4 (`Gemma4ForConditionalGeneration`): sliding and global layers
/// by `layer_types` (default: every sixth global) with their own
/// attention shapes, sandwich norms, GeGLU MLPs; with `enable_moe_block`
/// each layer keeps its dense MLP (`intermediate_size`, counted as a
/// shared expert: every token runs it) beside `num_experts` routed
/// experts (top `top_k_experts`) whose router has a per-expert scale.
fn gemma4(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    let n = m.layers.len();
    let (global, sliding) = gemma4_attention(c, pr);
    m.attention = global;
    m.sliding_attention = Some(sliding);
    m.norms = NormPlacement::Sandwich;
    m.dense_intermediate_size = c.u64("intermediate_size", pr);
    let window = c.u64("sliding_window", pr);
    let types = c.array("layer_types");
    for (i, l) in m.layers.iter_mut().enumerate() {
        let global = match types.and_then(|t| t.get(i)).and_then(Value::as_str) {
            Some(t) => t == "full_attention",
            None => (i + 1).is_multiple_of(6),
        };
        if !global {
            l.mixer = Mixer::Sliding { window };
        }
    }
    if types.is_some_and(|t| t.len() != n) {
        pr.push(
            Problem::at(
                c.path("layer_types"),
                format!("{} entries for {n} layers", types.map_or(0, Vec::len)),
            )
            .hint("layer_types lists one entry per hidden layer"),
        );
    }
    if c.bool("enable_moe_block", false) {
        m.moe = Some(Moe {
            n_routed_experts: c.u64("num_experts", pr),
            experts_per_token: c.u64("top_k_experts", pr),
            expert_intermediate_size: c.u64("moe_intermediate_size", pr),
            n_shared_experts: 1,
            shared_intermediate_size: m.dense_intermediate_size,
            shared_expert_gate: false,
            router_bias: true,
            expert_bias: false,
            latent_size: None,
        });
        all_moe(&mut m);
    }
    gemma4_assumptions(c, &mut m, pr);
    m
}

/// What a Gemma-4 model is read as beyond its config's keys.
fn gemma4_assumptions(c: &Cfg, m: &mut Model, pr: &mut Problems) {
    if m.moe.is_some() {
        m.assumptions.push("each MoE layer's dense MLP, which every token runs beside the routed experts, is counted and sharded as a shared expert".into());
    }
    if c.size_or_none("hidden_size_per_layer_input", pr) > 0 {
        m.assumptions.push("the per-layer embeddings (hidden_size_per_layer_input) are not counted: a lookup table and two small projections per layer".into());
    }
    if c.size_or_none("num_kv_shared_layers", pr) > 0 {
        m.assumptions.push("layers that reuse an earlier layer's KV (num_kv_shared_layers) are counted with their own k/v projections and cache, which overstates both".into());
    }
    if c.bool("attention_k_eq_v", false) {
        m.assumptions.push("global layers whose keys are also their values (attention_k_eq_v) cache K and V apart, as Hugging Face's cache does: the value is the key projection under a weightless norm, the key under its own norm and RoPE".into());
    }
}

/// Gemma-4's vision tower (`vision_config`, `Gemma4VisionModel`): blocks
/// of q, k, v, o, a gated MLP (gate, up, down), no biases, four RMSNorms and
/// per-head q/k norms; a patch embedding (3 · patch² · width, no bias), a
/// two-axis position table (2 · `position_embedding_size` · width), with
/// `standardize` a bias and a scale of the width on its output; and
/// `Gemma4MultimodalEmbedder`, one projection into the language model
/// behind a weightless norm.
fn with_gemma4_vision(mut m: Model, root: &Map<String, Value>, pr: &mut Problems) -> Model {
    let Some(vc) = vision_cfg(root) else {
        return m;
    };
    let h = vc.u64("hidden_size", pr);
    let patch = vc.u64("patch_size", pr);
    let heads = vc.u64("num_attention_heads", pr);
    let head_dim = vc.opt_u64("head_dim", pr).unwrap_or(h / heads.max(1));
    let kv_heads = vc.opt_u64("num_key_value_heads", pr).unwrap_or(heads);
    let positions = vc.opt_u64("position_embedding_size", pr).unwrap_or(0);
    let standardize = if vc.bool("standardize", false) { 2 } else { 0 };
    let embedding = (3u64.saturating_mul(patch.saturating_mul(patch)))
        .saturating_add(2u64.saturating_mul(positions))
        .saturating_add(standardize)
        .saturating_mul(h);
    m.vision = Some(VisionEncoder {
        n_layers: vc.u64("num_hidden_layers", pr),
        hidden_size: h,
        intermediate_size: vc.u64("intermediate_size", pr),
        out_hidden_size: m.hidden_size,
        embedding_params: embedding,
        blocks: VisionBlocks::GatedNoBias { head_dim },
        projector: VisionProjector::Linear,
    });
    if heads.saturating_mul(head_dim) != h || kv_heads != heads {
        m.assumptions.push(format!("the vision tower's q, k, v and o are counted at its width {h}, although its {heads} heads ({kv_heads} KV heads) of {head_dim} are not that wide"));
    }
    m.assumptions.push(
        "the vision tower (Google states ~550M) counts towards the weights, not per token".into(),
    );
    m
}

/// The 1-based layer numbers Kimi's `linear_attn_config` lists under
/// `key`, as 0-based indices below `n` (a number outside 1..=n is a
/// problem and left out).
fn kimi_layer_list(lc: &Cfg, key: &str, n: usize, pr: &mut Problems) -> Vec<usize> {
    let Some(list) = lc.array(key) else {
        pr.push(
            Problem::at(lc.prefix, format!("missing key `{}`", lc.path(key)))
                .hint("Kimi-Linear lists its KDA and MLA layers as 1-based layer numbers"),
        );
        return Vec::new();
    };
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        match v.as_u64().map(|x| x as usize) {
            Some(x) if (1..=n).contains(&x) => out.push(x - 1),
            _ => pr.push(
                Problem::at(
                    lc.path(key),
                    format!("{v} is not a layer number in 1..={n}"),
                )
                .hint("the lists number layers from 1 (Kimi's modelling code tests layer_idx + 1)"),
            ),
        }
    }
    out
}

/// Each layer's mixer from `kda_layers` (Kimi Delta Attention) and
/// `full_attn_layers` (MLA): every layer in exactly one of them.
fn kimi_mixers(m: &mut Model, lc: &Cfg, pr: &mut Problems) {
    let n = m.layers.len();
    let kda = kimi_layer_list(lc, "kda_layers", n, pr);
    let full = kimi_layer_list(lc, "full_attn_layers", n, pr);
    for (i, l) in m.layers.iter_mut().enumerate() {
        l.mixer = match (kda.contains(&i), full.contains(&i)) {
            (true, false) => Mixer::Linear,
            (false, true) => Mixer::Full,
            (both, _) => {
                let how = if both {
                    "in both lists"
                } else {
                    "in neither list"
                };
                pr.push(
                    Problem::at(lc.prefix, format!("layer {} is {how}", i + 1))
                        .hint("kda_layers and full_attn_layers together number every layer once"),
                );
                Mixer::Full
            }
        };
    }
}

/// Kimi-Linear's and Kimi-K3's MoE block: `num_experts` routed experts of
/// `moe_intermediate_size` (in the latent `routed_expert_hidden_size`
/// when set, K3's LatentMoE), `num_shared_experts` shared experts of the
/// same width in the hidden width, a sigmoid router with a correction bias.
fn kimi_moe(c: &Cfg, pr: &mut Problems) -> Moe {
    let inter = c.u64("moe_intermediate_size", pr);
    Moe {
        n_routed_experts: c.u64("num_experts", pr),
        experts_per_token: c.u64("num_experts_per_token", pr),
        expert_intermediate_size: inter,
        n_shared_experts: c.size_or_none("num_shared_experts", pr),
        shared_intermediate_size: inter,
        shared_expert_gate: false,
        router_bias: c.str("topk_method").is_none_or(|t| t == "noaux_tc"),
        expert_bias: false,
        latent_size: c.opt_u64("routed_expert_hidden_size", pr),
    }
}

/// Kimi-Linear and Kimi-K3 (`KimiLinearForCausalLM`, K3's
/// `KimiK3ForConditionalGeneration` wrapper): Kimi Delta Attention in the
/// layers `linear_attn_config.kda_layers` numbers, MLA (NoPE, with K3's
/// sigmoid output gate) in `full_attn_layers`; a dense MLP in the first
/// `first_k_dense_replace` layers, the MoE block after; K3's attention
/// residuals (`attn_res_block_size`).
fn kimi_linear(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    m.attention = mla_attention(c, pr);
    let Some(lac) = c.obj.get("linear_attn_config").and_then(Value::as_object) else {
        pr.push(
            Problem::at(
                c.prefix,
                format!("missing key `{}`", c.path("linear_attn_config")),
            )
            .hint("Kimi-Linear states its KDA shape and layer lists in linear_attn_config"),
        );
        return m;
    };
    let path = c.path("linear_attn_config");
    let lc = Cfg {
        obj: lac,
        prefix: &path,
    };
    let (heads, dim) = (lc.u64("num_heads", pr), lc.u64("head_dim", pr));
    let full_rank = lc.bool("use_full_rank_gate", false);
    m.linear_attention = Some(LinearAttention {
        n_key_heads: heads,
        n_value_heads: heads,
        key_head_dim: dim,
        value_head_dim: dim,
        conv_kernel: lc.opt_u64("short_conv_kernel_size", pr).unwrap_or(4),
        gates: LinearGates::KimiDelta {
            decay_rank: dim,
            output_gate_rank: if full_rank { None } else { Some(dim) },
        },
    });
    kimi_mixers(&mut m, &lc, pr);
    m.moe = Some(kimi_moe(c, pr));
    let first_dense = c.obj.get("first_k_dense_replace").and_then(Value::as_u64);
    let freq = c.opt_u64("moe_layer_freq", pr).unwrap_or(1);
    for (i, l) in m.layers.iter_mut().enumerate() {
        let i = i as u64;
        if i >= first_dense.unwrap_or(0) && i.is_multiple_of(freq) {
            l.ffn = Ffn::Moe;
        }
    }
    m.dense_intermediate_size = c.u64("intermediate_size", pr);
    if let Some(block_size) = c.opt_u64("attn_res_block_size", pr) {
        m.norms = NormPlacement::AttentionResiduals { block_size };
    }
    kimi_linear_assumptions(c, &mut m);
    m
}

/// What a Kimi-Linear / Kimi-K3 model is read as beyond its config's keys.
fn kimi_linear_assumptions(c: &Cfg, m: &mut Model) {
    mtp_not_counted(m, c);
    m.assumptions.push("Kimi Delta Attention layers are costed like Gated DeltaNet's: the same per-head dk × dv state (fp32) and convolution window per sequence, the same recurrence FLOP, the attention-decode curve for the state update; their own projections (q, k, v, the low-rank channel-wise decay, β, the output gate) are counted exactly, A_log as one per head".into());
    if c.bool("mla_use_nope", false) {
        m.assumptions.push("the MLA layers use no RoPE (mla_use_nope): their q/k still carry the qk_rope_head_dim part and the cache its rope key, so weights and cache are counted as for MLA with RoPE".into());
    }
    if m.moe.as_ref().is_some_and(|x| x.latent_size.is_some())
        && c.bool("latent_moe_use_norm", false)
    {
        m.assumptions.push("the routed experts' latent RMSNorm (latent_moe_use_norm, one latent-wide vector per MoE layer) is not counted".into());
    }
    if c.str("hidden_act") == Some("situ") {
        m.assumptions.push("the SiTU-GLU activation (hidden_act situ) gates like SwiGLU: gate, up and down matrices".into());
    }
    if let NormPlacement::AttentionResiduals { block_size } = m.norms {
        m.assumptions.push(format!("attention residuals (attn_res_block_size {block_size}) count an RMSNorm and a pseudo-query vector per block and for the output; each block's norms also read the stored block residuals (half of them on average)"));
    }
}

/// Kimi-K3's vision tower (`vision_config`, MoonViT3d), read from the
/// checkpoint-named port of Moonshot's `modeling_kimi_k3.py` in AMD's ATOM
/// (`KimiK3VisionTower`, `KimiK3PatchMergerProjector`; Moonshot's own file
/// is not in the searchable index): a patch convolution (3 · patch² ·
/// width, `patch_embed_proj_bias`), a learned `init_pos_emb_height` ×
/// `init_pos_emb_width` position grid (the temporal table is a fixed
/// sin/cos buffer), `vt_num_hidden_layers` blocks (`PlainNoBias`: wqkv to
/// three `qkv_hidden_size`, wo, the `mlp2` fc0/fc1 of
/// `vt_intermediate_size`, two RMSNorms), a final RMSNorm; the
/// `sd2_tpool` merge has no weights, and the `patchmergerv2` projector
/// takes the `merge_kernel_size` patches of `mm_hidden_size` to the
/// language width (`MergedMlp`).
fn with_kimi_k3_vision(mut m: Model, root: &Map<String, Value>, pr: &mut Problems) -> Model {
    let Some(vc) = vision_cfg(root) else {
        return m;
    };
    let h = vc.u64("vt_hidden_size", pr);
    let patch = vc.u64("patch_size", pr);
    let grid = vc
        .opt_u64("init_pos_emb_height", pr)
        .unwrap_or(64)
        .saturating_mul(vc.opt_u64("init_pos_emb_width", pr).unwrap_or(64));
    let merge = vc
        .array("merge_kernel_size")
        .map_or(4, |k| k.iter().filter_map(Value::as_u64).product::<u64>());
    let conv = 3u64.saturating_mul(patch.saturating_mul(patch));
    let conv_bias = u64::from(vc.bool("patch_embed_proj_bias", false));
    m.vision = Some(VisionEncoder {
        n_layers: vc.u64("vt_num_hidden_layers", pr),
        hidden_size: h,
        intermediate_size: vc.u64("vt_intermediate_size", pr),
        out_hidden_size: vc.opt_u64("text_hidden_size", pr).unwrap_or(m.hidden_size),
        embedding_params: (conv + conv_bias + grid + 1).saturating_mul(h),
        blocks: VisionBlocks::PlainNoBias {
            attention_width: vc.opt_u64("qkv_hidden_size", pr).unwrap_or(h),
        },
        projector: VisionProjector::MergedMlp {
            merged_width: merge.saturating_mul(vc.opt_u64("mm_hidden_size", pr).unwrap_or(h)),
        },
    });
    let unlike: Vec<String> = [
        ("norm_type", "rmsnorm"),
        ("mlp_type", "mlp2"),
        ("mm_projector_type", "patchmergerv2"),
    ]
    .iter()
    .filter(|(k, v)| vc.str(k).is_some_and(|x| x != *v))
    .map(|(k, _)| (*k).to_string())
    .chain(
        ["attn_bias", "linear_bias"]
            .iter()
            .filter(|k| vc.bool(k, false))
            .map(|k| (*k).to_string()),
    )
    .collect();
    if !unlike.is_empty() {
        m.assumptions.push(format!("the vision tower is counted as Kimi-K3's published MoonViT3d (RMSNorms, a two-matrix MLP, no biases, the patchmergerv2 projector); this config's {} differ", unlike.join(", ")));
    }
    m.assumptions.push(
        "the vision tower (MoonViT3d and its projector) counts towards the weights, not per token"
            .into(),
    );
    m
}

/// MiniMax-M3 (`MiniMaxM3ForCausalLM`, and NVIDIA's `MiniMaxM3Sparse...`
/// wrapper): GQA with per-head q/k norms and partial RoPE, MiniMax Sparse
/// Attention on the layers `sparse_attention_config` marks; a dense MLP of
/// `dense_intermediate_size` where `moe_layer_freq` is 0, elsewhere
/// routed experts (sigmoid router with a correction bias) beside
/// `n_shared_experts` of `shared_intermediate_size`.
fn minimax_m3(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    let n = m.layers.len();
    let qk_norm = c.bool("use_qk_norm", false);
    let gate = c.bool("attention_output_gate", false);
    set_gqa(&mut m, |_, _, q, _, g| {
        *q = qk_norm;
        if gate {
            *g = OutputGate::PerChannel;
        }
    });
    let moe_layers = per_layer_list(c, "moe_layer_freq", n, pr).unwrap_or_else(|| vec![1; n]);
    for (l, moe) in m.layers.iter_mut().zip(moe_layers) {
        if moe != 0 {
            l.ffn = Ffn::Moe;
        }
    }
    m.dense_intermediate_size = c.opt_u64("dense_intermediate_size", pr).unwrap_or(0);
    let shared = c.size_or_none("shared_intermediate_size", pr);
    m.moe = Some(Moe {
        n_routed_experts: c.u64("num_local_experts", pr),
        experts_per_token: c.u64("num_experts_per_tok", pr),
        expert_intermediate_size: c.u64_any(&["moe_intermediate_size", "intermediate_size"], pr),
        n_shared_experts: if shared > 0 {
            c.opt_u64("n_shared_experts", pr).unwrap_or(1)
        } else {
            0
        },
        shared_intermediate_size: shared,
        shared_expert_gate: false,
        router_bias: c.bool("use_routing_bias", false),
        expert_bias: false,
        latent_size: None,
    });
    minimax_sparse_attention(&mut m, c, pr);
    mtp_not_counted(&mut m, c);
    m
}

/// MiniMax Sparse Attention (`sparse_attention_config`), read as a
/// DSA-style indexer: `sparse_num_index_heads` index queries of
/// `sparse_index_dim` score every cached token against one shared index
/// key, and each query then reads its top `sparse_topk_blocks` blocks of
/// `sparse_block_size` tokens. Layers whose `sparse_attention_freq` is 0
/// attend their whole context and cache no index key.
fn minimax_sparse_attention(m: &mut Model, c: &Cfg, pr: &mut Problems) {
    let Some(obj) = c
        .obj
        .get("sparse_attention_config")
        .and_then(Value::as_object)
    else {
        return;
    };
    let path = c.path("sparse_attention_config");
    let sc = Cfg { obj, prefix: &path };
    if !sc.bool("use_sparse_attention", false) {
        m.assumptions.push("sparse attention is off (use_sparse_attention false): every layer attends its whole context".into());
        return;
    }
    let n = m.layers.len();
    let (block, blocks) = (
        sc.u64("sparse_block_size", pr),
        sc.u64("sparse_topk_blocks", pr),
    );
    let ix = SparseIndexer {
        n_heads: sc.u64("sparse_num_index_heads", pr),
        head_dim: sc.u64("sparse_index_dim", pr),
        topk: block.saturating_mul(blocks),
    };
    let sparse = per_layer_list(&sc, "sparse_attention_freq", n, pr).unwrap_or_else(|| vec![1; n]);
    let values = per_layer_list(&sc, "sparse_disable_index_value", n, pr);
    if values.is_some_and(|v| v.iter().zip(&sparse).any(|(v, s)| *s != 0 && *v == 0)) {
        m.assumptions.push("sparse layers with index value/output projections (sparse_disable_index_value 0) are counted without them".into());
    }
    for (l, s) in m.layers.iter_mut().zip(&sparse) {
        if *s == 0 {
            l.mixer = Mixer::FullDense;
        }
    }
    let dense = sparse.iter().filter(|s| **s == 0).count();
    m.assumptions.push(format!(
        "MiniMax Sparse Attention is costed like DSA: on its {} sparse layers {} index heads of {} score every cached token against one shared index key (cached beside K and V, split by no TP), and each query reads its top {blocks} blocks of {block} = {} tokens, the forced local block among them; the other {dense} layers attend their whole context",
        n - dense,
        ix.n_heads,
        ix.head_dim,
        ix.topk
    ));
    m.indexer = Some(ix);
}

/// The vision tower of NVIDIA's MiniMax-M3 release (`vision_config`, a
/// CLIP-style ViT), read as ViT blocks with biases, a patch embedding
/// (3 · patch² · width) and a patch merger of `spatial_merge_size`² patches
/// into the language model.
fn with_minimax_vision(mut m: Model, root: &Map<String, Value>, pr: &mut Problems) -> Model {
    let Some(vc) = vision_cfg(root) else {
        return m;
    };
    let h = vc.u64("hidden_size", pr);
    let patch = vc.u64("patch_size", pr);
    let merge = vc
        .obj
        .get("img_token_compression_config")
        .and_then(|x| x.get("spatial_merge_size"))
        .and_then(Value::as_u64)
        .unwrap_or(2);
    m.vision = Some(VisionEncoder {
        n_layers: vc.u64("num_hidden_layers", pr),
        hidden_size: h,
        intermediate_size: vc.u64("intermediate_size", pr),
        out_hidden_size: m.hidden_size,
        embedding_params: 3u64
            .saturating_mul(patch.saturating_mul(patch))
            .saturating_mul(h),
        blocks: VisionBlocks::PlainWithBiases,
        projector: VisionProjector::PatchMerger {
            merge: merge.saturating_mul(merge),
            mergers: 1,
        },
    });
    m.assumptions.push("the vision tower is read as ViT blocks with biases, a patch embedding and one patch merger into the language model (its projector read approximately); it counts towards the weights, not per token".into());
    m
}

/// Step-3.5/3.7's two attention shapes: the full layers' from the top-level
/// keys, the sliding layers' from `attention_other_setting` (Step-3.7-Flash:
/// 96 query heads beside the full layers' 64, the same 8 KV heads of 128).
/// Both have q/k RMSNorms and, with `use_head_wise_attn_gate`, a sigmoid
/// gate per head from a `g_proj` of their own.
fn step_attention(c: &Cfg, pr: &mut Problems) -> (Attention, Attention) {
    let n_heads = c.u64("num_attention_heads", pr);
    let kv = c.u64_any(&["num_attention_groups", "num_key_value_heads"], pr);
    let head_dim = c.u64("head_dim", pr);
    let output_gate = if c.bool("use_head_wise_attn_gate", false) {
        OutputGate::PerHead
    } else {
        OutputGate::Ungated
    };
    let shape = |n_heads: u64, n_kv_heads: u64, head_dim: u64| Attention::Gqa {
        n_heads,
        n_kv_heads,
        head_dim,
        values: Values::Projected { head_dim },
        qkv_bias: c.bool("attention_bias", false),
        o_bias: false,
        qk_norm: true,
        sinks: false,
        output_gate,
    };
    let full = shape(n_heads, kv, head_dim);
    let sliding = match c
        .obj
        .get("attention_other_setting")
        .and_then(Value::as_object)
    {
        Some(other) => {
            let path = c.path("attention_other_setting");
            let oc = Cfg {
                obj: other,
                prefix: &path,
            };
            shape(
                oc.opt_u64("num_attention_heads", pr).unwrap_or(n_heads),
                oc.opt_u64("num_attention_groups", pr).unwrap_or(kv),
                oc.opt_u64("head_dim", pr).unwrap_or(head_dim),
            )
        }
        None => shape(
            c.opt_u64("num_sliding_attention_heads", pr)
                .unwrap_or(n_heads),
            kv,
            head_dim,
        ),
    };
    (full, sliding)
}

/// Which of the `n` decoder layers are sliding-window layers by
/// `layer_types`; the published config lists the MTP layers' types after
/// the decoder's (45 + 3 entries), which are not decoder layers.
fn step_sliding_layers(c: &Cfg, n: usize, pr: &mut Problems) -> Vec<bool> {
    let Some(types) = c.array("layer_types") else {
        return vec![false; n];
    };
    let mtp = c
        .obj
        .get("num_nextn_predict_layers")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    if types.len() != n && types.len() != n + mtp {
        pr.push(
            Problem::at(
                c.path("layer_types"),
                format!("{} entries for {n} layers", types.len()),
            )
            .hint("layer_types lists one entry per hidden layer (and per MTP layer after them)"),
        );
    }
    (0..n)
        .map(|i| types.get(i).and_then(Value::as_str) == Some("sliding_attention"))
        .collect()
}

/// Which of the `n` layers are MoE layers: those `moe_layers_enum` lists
/// (a comma-separated string, or a list), else every layer from
/// `first_k_dense_replace` on (3 when neither is stated, as the Hugging
/// Face config class defaults).
fn step_moe_layers(c: &Cfg, n: usize, pr: &mut Problems) -> Vec<bool> {
    let listed: Option<Vec<Option<u64>>> = match c.obj.get("moe_layers_enum") {
        Some(Value::String(s)) => Some(s.split(',').map(|x| x.trim().parse().ok()).collect()),
        Some(Value::Array(a)) => Some(a.iter().map(Value::as_u64).collect()),
        _ => None,
    };
    match listed {
        Some(idx) => {
            if idx.iter().any(|i| i.is_none_or(|i| i as usize >= n)) {
                pr.push(
                    Problem::at(
                        c.path("moe_layers_enum"),
                        format!("expected layer indices below {n}"),
                    )
                    .hint("moe_layers_enum lists the MoE layers' indices, e.g. \"3,4,5\""),
                );
            }
            (0..n as u64).map(|i| idx.contains(&Some(i))).collect()
        }
        None => {
            let first = c.opt_u64("first_k_dense_replace", pr).unwrap_or(3) as usize;
            (0..n).map(|i| i >= first).collect()
        }
    }
}

/// Step-3.5-Flash and Step-3.7-Flash (`Step3p5ForCausalLM`, the language
/// model of `Step3p7ForConditionalGeneration`, and the flattened
/// `Step3p7FlashForCausalLM`): full and sliding-window layers by
/// `layer_types`, each with its own attention shape (`step_attention`);
/// dense SwiGLU MLPs in the first layers, then routed experts beside one
/// shared expert of `share_expert_dim`, under a sigmoid router with a
/// selection bias (`use_moe_router_bias`).
fn step3p5(c: &Cfg, root: &Map<String, Value>, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    let n = m.layers.len();
    let (full, sliding) = step_attention(c, pr);
    m.attention = full;
    m.sliding_attention = Some(sliding);
    m.dense_intermediate_size = c.u64("intermediate_size", pr);
    let window = c.u64("sliding_window", pr);
    let sliding = step_sliding_layers(c, n, pr);
    let moe_layers = step_moe_layers(c, n, pr);
    for ((l, swa), moe) in m.layers.iter_mut().zip(sliding).zip(moe_layers) {
        if swa {
            l.mixer = Mixer::Sliding { window };
        }
        if moe {
            l.ffn = Ffn::Moe;
        }
    }
    let shared = c.size_or_none("share_expert_dim", pr);
    m.moe = Some(Moe {
        n_routed_experts: c.u64_any(&["moe_num_experts", "num_experts", "n_routed_experts"], pr),
        experts_per_token: c.u64_any(&["moe_top_k", "num_experts_per_tok"], pr),
        expert_intermediate_size: c.u64("moe_intermediate_size", pr),
        n_shared_experts: if shared > 0 {
            c.opt_u64("n_shared_experts", pr).unwrap_or(1)
        } else {
            0
        },
        shared_intermediate_size: shared,
        shared_expert_gate: false,
        router_bias: c.bool("use_moe_router_bias", false),
        expert_bias: false,
        latent_size: None,
    });
    step_assumptions(c, root, &mut m);
    m
}

/// What a Step-3.5/3.7 model is read as beyond its config's keys.
fn step_assumptions(c: &Cfg, root: &Map<String, Value>, m: &mut Model) {
    mtp_not_counted(m, c);
    if !c.has("attention_other_setting") && !c.has("num_sliding_attention_heads") {
        m.assumptions.push("the config does not state the sliding layers' attention (attention_other_setting): they are read with the full layers' heads; the published Step-3.7-Flash runs 96 query heads there".into());
    }
    if root.contains_key("vision_config") {
        m.assumptions.push("the vision tower and its projector (1.8B by StepFun's card) are not counted: only the language model is read".into());
    }
}

/// DeciLM's intermediate width for an `ffn_mult`: ⌊2 · ffn_mult · hidden /
/// 3⌋ rounded up to a multiple of 256 (`_ffn_mult_to_intermediate_size`).
fn deci_ffn_width(ffn_mult: f64, hidden: u64) -> u64 {
    let width = (2.0 * ffn_mult * hidden as f64 / 3.0) as u64;
    width.div_ceil(256) * 256
}

/// The mixer of one DeciLM block from its `attention` spec: none
/// (`no_op`), a hidden × hidden linear (`replace_with_linear`), or full
/// attention with num_attention_heads / `n_heads_in_group` KV heads.
fn deci_mixer(spec: &Cfg, n_heads: u64, pr: &mut Problems) -> Mixer {
    if spec.bool("no_op", false) {
        return Mixer::Absent;
    }
    if spec.bool("replace_with_linear", false) {
        return Mixer::Projection;
    }
    let group = spec.u64("n_heads_in_group", pr);
    if !n_heads.is_multiple_of(group) {
        pr.push(
            Problem::at(
                spec.path("n_heads_in_group"),
                format!("{n_heads} attention heads do not fall into groups of {group}"),
            )
            .hint("n_heads_in_group divides num_attention_heads: each group shares one KV head"),
        );
    }
    Mixer::FullKv {
        kv_heads: (n_heads / group).max(1),
    }
}

/// The FFN of one DeciLM block from its `ffn` spec: none (`no_op`), a
/// hidden × hidden linear (`replace_with_linear`), or a SwiGLU MLP whose
/// width comes from `ffn_mult` (or `intermediate_size`).
fn deci_ffn(spec: &Cfg, hidden: u64, pr: &mut Problems) -> Ffn {
    if spec.bool("no_op", false) {
        return Ffn::Absent;
    }
    if spec.bool("replace_with_linear", false) {
        return Ffn::Projection;
    }
    let intermediate_size = match spec.obj.get("ffn_mult").and_then(Value::as_f64) {
        Some(mult) if mult > 0.0 && mult <= 64.0 => deci_ffn_width(mult, hidden),
        Some(mult) => {
            pr.push(
                Problem::at(
                    spec.path("ffn_mult"),
                    format!("ffn_mult {mult} is not a width"),
                )
                .hint("ffn_mult is the MLP width over the hidden size, e.g. 2.625"),
            );
            hidden
        }
        None => spec.u64("intermediate_size", pr),
    };
    Ffn::DenseOf { intermediate_size }
}

/// The most frequent value of `values` (the first of equals), if any.
fn most_common(values: impl Iterator<Item = u64>) -> Option<u64> {
    let values: Vec<u64> = values.collect();
    let count = |v: u64| values.iter().filter(|x| **x == v).count();
    values
        .iter()
        .copied()
        .fold(None, |best: Option<u64>, v| match best {
            Some(b) if count(b) >= count(v) => Some(b),
            _ => Some(v),
        })
}

/// The layers of a DeciLM config: one per `block_configs` entry.
fn deci_layers(c: &Cfg, hidden: u64, n_heads: u64, pr: &mut Problems) -> Vec<Layer> {
    let Some(blocks) = c.array("block_configs") else {
        pr.push(
            Problem::at(c.prefix, "missing key `block_configs`")
                .hint("DeciLM lists each layer's attention and ffn in block_configs"),
        );
        return vec![Layer {
            mixer: Mixer::Full,
            ffn: Ffn::Dense,
        }];
    };
    let declared = c.u64("num_hidden_layers", pr);
    if declared != blocks.len() as u64 {
        pr.push(
            Problem::at(
                c.path("block_configs"),
                format!("{} blocks for {declared} layers", blocks.len()),
            )
            .hint("block_configs has one entry per hidden layer"),
        );
    }
    let empty = Map::new();
    let mut layers = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let part = |key: &str| block.get(key).and_then(Value::as_object).unwrap_or(&empty);
        let (attn_path, ffn_path) = (
            c.path(&format!("block_configs.{i}.attention")),
            c.path(&format!("block_configs.{i}.ffn")),
        );
        let attn = Cfg {
            obj: part("attention"),
            prefix: &attn_path,
        };
        let ffn = Cfg {
            obj: part("ffn"),
            prefix: &ffn_path,
        };
        layers.push(Layer {
            mixer: deci_mixer(&attn, n_heads, pr),
            ffn: deci_ffn(&ffn, hidden, pr),
        });
    }
    if layers.is_empty() {
        layers.push(Layer {
            mixer: Mixer::Full,
            ffn: Ffn::Dense,
        });
    }
    layers
}

/// Llama-Nemotron (`DeciLMForCausalLM`, NAS-pruned Llama): per layer, full
/// GQA attention with KV heads of its own, no attention, or one linear in
/// its place; a SwiGLU MLP of its own width, none, or one linear. The most
/// frequent KV head count and MLP width become the model's
/// (`Mixer::Full`, `Ffn::Dense`); layers that differ carry theirs.
fn decilm(c: &Cfg, arch: &str, pr: &mut Problems) -> Model {
    let mut m = base(c, arch, pr);
    let n_heads = m.attention.n_heads();
    let layers = deci_layers(c, m.hidden_size, n_heads, pr);
    let kv = most_common(layers.iter().filter_map(|l| l.mixer.kv_heads())).unwrap_or(n_heads);
    let width = most_common(layers.iter().filter_map(|l| m.dense_width(l.ffn)));
    m.attention = m.attention.with_kv_heads(kv);
    let bias = c.bool("attention_bias", false);
    set_gqa(&mut m, |qkv, o, _, _, _| {
        *qkv = bias;
        *o = bias;
    });
    m.dense_intermediate_size = width.unwrap_or(0);
    m.layers = layers
        .into_iter()
        .map(|mut l| {
            if l.mixer.kv_heads() == Some(kv) {
                l.mixer = Mixer::Full;
            }
            if l.ffn
                == (Ffn::DenseOf {
                    intermediate_size: m.dense_intermediate_size,
                })
            {
                l.ffn = Ffn::Dense;
            }
            l
        })
        .collect();
    m
}

/// Semantic checks every family shares.
fn check_shapes(m: &Model, c: &Cfg, pr: &mut Problems) {
    for attn in m.attentions() {
        if let Attention::Gqa {
            n_heads,
            n_kv_heads,
            ..
        } = attn
        {
            if n_kv_heads > 0 && n_heads % n_kv_heads != 0 {
                pr.push(
                    Problem::at(
                        c.path("num_key_value_heads"),
                        format!(
                            "{n_heads} attention heads are not divisible by {n_kv_heads} KV heads"
                        ),
                    )
                    .hint("each KV head serves a whole group of query heads"),
                );
            }
        }
    }
    if let Some(moe) = &m.moe {
        // Compare only values that were themselves valid (an invalid count
        // was already reported and replaced by 1).
        let reported = |key: &str| pr.0.iter().any(|p| p.path.ends_with(key));
        let counts_valid = ![
            "num_local_experts",
            "n_routed_experts",
            "num_experts",
            "num_experts_per_tok",
            "experts_per_token",
        ]
        .iter()
        .any(|k| reported(k));
        if counts_valid && moe.experts_per_token > moe.n_routed_experts {
            pr.push(
                Problem::at(
                    c.path("num_experts_per_tok"),
                    format!(
                        "top-{} routing over {} experts is impossible",
                        moe.experts_per_token, moe.n_routed_experts
                    ),
                )
                .hint("num_experts_per_tok cannot exceed the number of routed experts"),
            );
        }
    }
    if m.layers.iter().any(|l| l.ffn == Ffn::Dense) && m.dense_intermediate_size == 0 {
        pr.push(
            Problem::at(
                c.path("intermediate_size"),
                "dense layers need `intermediate_size`",
            )
            .hint("add the dense MLP width as intermediate_size"),
        );
    }
}

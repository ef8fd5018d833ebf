//! The native model spec: a hand-written model in TOML, YAML or JSON.
//!
//! ```toml
//! name = "seed-moe"
//! declared_params = "10B"
//! hidden_size = 512
//! n_layers = 16
//! vocab_size = 32000
//! [attention]
//! kind = "mha"          # mha | gqa | mla
//! n_heads = 16
//! head_dim = 32
//! [moe]
//! n_routed_experts = 16
//! experts_per_token = 2
//! expert_intermediate_size = 1024
//! [dtypes]
//! weights = "fp16"
//! ```

use super::{Problem, Problems, SpecError};
use crate::bounds::{self, Range};
use crate::dtype::DType;
use crate::model::{
    Attention, Dtypes, Ffn, Gating, Layer, Mixer, Model, Moe, NormPlacement, OutputGate, Values,
};
use crate::quantity::parse_params;
use crate::spec::source::Source;
use schemars::JsonSchema;
use serde::Deserialize;

/// A model as written in a native spec file.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Short name; defaults to the file stem.
    pub name: Option<String>,
    /// The parameter total the source claims, e.g. "10B"; checked against the derived count.
    pub declared_params: Option<String>,
    /// Residual width.
    #[schemars(range(min = 1))]
    pub hidden_size: u64,
    /// Decoder layers.
    #[schemars(range(min = 1))]
    pub n_layers: u64,
    /// Vocabulary size.
    #[schemars(range(min = 1))]
    pub vocab_size: u64,
    /// Embedding and LM head share weights (default false).
    pub tie_word_embeddings: Option<bool>,
    /// Attention shape.
    pub attention: RawAttention,
    /// MoE shape; absent for a dense model.
    pub moe: Option<RawMoe>,
    /// Intermediate width of dense MLP layers (required when any layer is dense).
    #[schemars(range(min = 1))]
    pub dense_intermediate_size: Option<u64>,
    /// 0-based indices of layers with a dense MLP instead of the MoE block.
    pub dense_layers: Option<Vec<u64>>,
    /// Sliding-window size, for the layers in `sliding_window_layers`.
    #[schemars(range(min = 1))]
    pub sliding_window: Option<u64>,
    /// 0-based indices of sliding-window layers (default: all, when `sliding_window` is set).
    pub sliding_window_layers: Option<Vec<u64>>,
    /// Stored precisions.
    pub dtypes: Option<RawDtypes>,
    /// Assumptions the author made where the source was silent; shown in reports.
    pub assumptions: Option<Vec<String>>,
}

/// Attention kinds a native spec can state.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// Multi-head attention (kv heads = heads).
    Mha,
    /// Grouped-query attention.
    Gqa,
    /// Multi-head latent attention.
    Mla,
}

/// Attention shape.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAttention {
    /// mha, gqa or mla.
    pub kind: AttentionKind,
    /// Query heads.
    #[schemars(range(min = 1))]
    pub n_heads: u64,
    /// Key/value heads (gqa; mha uses n_heads).
    #[schemars(range(min = 1))]
    pub n_kv_heads: Option<u64>,
    /// Head dimension (mha/gqa; default hidden_size / n_heads).
    #[schemars(range(min = 1))]
    pub head_dim: Option<u64>,
    /// Biases on q, k, v projections.
    pub qkv_bias: Option<bool>,
    /// Per-head RMSNorm on q and k.
    pub qk_norm: Option<bool>,
    /// MLA: query low-rank dimension (omit for a direct q projection).
    #[schemars(range(min = 1))]
    pub q_lora_rank: Option<u64>,
    /// MLA: KV latent rank.
    #[schemars(range(min = 1))]
    pub kv_lora_rank: Option<u64>,
    /// MLA: non-rotary q/k head dim.
    #[schemars(range(min = 1))]
    pub qk_nope_head_dim: Option<u64>,
    /// MLA: rotary q/k head dim.
    #[schemars(range(min = 1))]
    pub qk_rope_head_dim: Option<u64>,
    /// MLA: value head dim.
    #[schemars(range(min = 1))]
    pub v_head_dim: Option<u64>,
}

/// MoE shape.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMoe {
    /// Routed experts per MoE layer.
    #[schemars(range(min = 1))]
    pub n_routed_experts: u64,
    /// Top-k.
    #[schemars(range(min = 1))]
    pub experts_per_token: u64,
    /// Intermediate width of one expert (SwiGLU: gate, up, down).
    #[schemars(range(min = 1))]
    pub expert_intermediate_size: u64,
    /// Shared experts (default 0).
    pub n_shared_experts: Option<u64>,
    /// Intermediate width of one shared expert (default: the expert width).
    #[schemars(range(min = 1))]
    pub shared_intermediate_size: Option<u64>,
}

/// Stored precisions: `weights` sets every weight group; the others override it.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDtypes {
    /// Every weight group (default bf16).
    pub weights: Option<DType>,
    /// Attention projections.
    pub attention: Option<DType>,
    /// Routed experts.
    pub experts: Option<DType>,
    /// Shared experts and dense MLPs.
    pub dense: Option<DType>,
    /// Embedding.
    pub embedding: Option<DType>,
    /// LM head.
    pub(crate) lm_head: Option<DType>,
    /// KV cache (default: the weights' type when 16-bit, else bf16).
    pub kv_cache: Option<DType>,
}

/// Reads a native model spec.
pub fn load(source: &Source) -> Result<Model, SpecError> {
    let stem = source.stem("model");
    super::load_spec(source, |raw: &RawModel, pr| convert(raw, &stem, pr))
}

/// Converts a raw model into the domain type, collecting problems.
pub fn convert(raw: &RawModel, default_name: &str, pr: &mut Problems) -> Model {
    let hidden = pr.within("hidden_size", raw.hidden_size, bounds::HIDDEN_SIZE);
    let n_layers = layer_count(raw.n_layers, pr);
    let vocab = pr.within("vocab_size", raw.vocab_size, bounds::VOCAB_SIZE);
    let attention = attention(&raw.attention, hidden, pr);
    let moe = raw.moe.as_ref().map(|m| moe(m, pr));
    let ffn = if moe.is_some() { Ffn::Moe } else { Ffn::Dense };
    let mut layers = vec![
        Layer {
            mixer: Mixer::Full,
            ffn,
        };
        n_layers as usize
    ];
    mark_dense_layers(raw, n_layers, &mut layers, pr);
    let dense_intermediate_size = dense_width(raw.dense_intermediate_size, &layers, pr);
    mark_sliding_layers(raw, n_layers, &mut layers, pr);
    let dtypes = dtypes(raw.dtypes.as_ref().unwrap_or(&RawDtypes::default()));
    let declared_params = declared_params(raw.declared_params.as_deref(), pr);
    Model {
        name: raw.name.clone().unwrap_or_else(|| default_name.to_string()),
        architecture: "native".into(),
        hidden_size: hidden,
        vocab_size: vocab,
        tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
        attention,
        sliding_attention: None,
        norms: NormPlacement::Pre,
        indexer: None,
        linear_attention: None,
        mamba: None,
        gating: Gating::Gated,
        moe,
        dense_intermediate_size,
        layers,
        vision: None,
        dtypes,
        declared_params,
        assumptions: raw.assumptions.clone().unwrap_or_default(),
        max_context: None,
        hyper_connections: None,
        mtp_layers: 0,
        checkpoint_weights: None,
    }
}

/// The decoder layer count, within `bounds::LAYERS` (else 1).
fn layer_count(n: u64, pr: &mut Problems) -> u64 {
    pr.within("n_layers", n, bounds::LAYERS)
}

/// The attention block: its head count, then the MHA/GQA or the MLA shape.
fn attention(a: &RawAttention, hidden: u64, pr: &mut Problems) -> Attention {
    let n_heads = pr.within("attention.n_heads", a.n_heads, bounds::HEADS);
    match a.kind {
        AttentionKind::Mha | AttentionKind::Gqa => gqa(a, n_heads, hidden, pr),
        AttentionKind::Mla => mla(a, n_heads, pr),
    }
}

/// MHA or GQA: KV heads, their grouping, the head dimension, and no MLA keys.
fn gqa(a: &RawAttention, n_heads: u64, hidden: u64, pr: &mut Problems) -> Attention {
    let n_kv = kv_heads(a, n_heads, pr);
    if a.n_heads > 0 && a.n_kv_heads != Some(0) && n_heads % n_kv != 0 {
        pr.push(
            Problem::at(
                "attention.n_kv_heads",
                format!("{n_heads} heads are not divisible by {n_kv} kv heads"),
            )
            .hint("each kv head serves a whole group of query heads: pick a divisor of n_heads"),
        );
    }
    let head_dim = head_dim(a.head_dim, hidden, n_heads, pr);
    for (k, v) in mla_keys(a) {
        if v.is_some() {
            pr.push(
                Problem::at(
                    format!("attention.{k}"),
                    format!("`{k}` only applies to kind = \"mla\""),
                )
                .hint("remove it, or set kind = \"mla\""),
            );
        }
    }
    Attention::Gqa {
        n_heads,
        n_kv_heads: n_kv,
        head_dim,
        values: Values::Projected { head_dim },
        qkv_bias: a.qkv_bias.unwrap_or(false),
        o_bias: false,
        qk_norm: a.qk_norm.unwrap_or(false),
        sinks: false,
        output_gate: OutputGate::Ungated,
    }
}

/// KV heads of MHA (as many as heads) or GQA (stated, and required).
fn kv_heads(a: &RawAttention, n_heads: u64, pr: &mut Problems) -> u64 {
    match (a.kind, a.n_kv_heads) {
        (AttentionKind::Mha, Some(kv)) if kv != a.n_heads => {
            pr.push(
                Problem::at(
                    "attention.n_kv_heads",
                    format!(
                        "mha has as many kv heads as heads ({}), not {kv}",
                        a.n_heads
                    ),
                )
                .hint("use kind = \"gqa\" for grouped-query attention"),
            );
            n_heads
        }
        (AttentionKind::Gqa, None) => {
            pr.push(Problem::at("attention", "gqa needs `n_kv_heads`").hint("add n_kv_heads"));
            n_heads
        }
        (_, Some(kv)) => pr.within("attention.n_kv_heads", kv, bounds::HEADS),
        (_, None) => n_heads,
    }
}

/// The head dimension: stated, or hidden_size / n_heads (which must divide).
fn head_dim(stated: Option<u64>, hidden: u64, n_heads: u64, pr: &mut Problems) -> u64 {
    if let Some(d) = stated {
        return pr.within("attention.head_dim", d, bounds::HEAD_DIM);
    }
    if hidden % n_heads != 0 {
        pr.push(
            Problem::at(
                "attention.n_heads",
                format!("hidden_size {hidden} is not divisible by {n_heads} heads"),
            )
            .hint("state head_dim explicitly"),
        );
    }
    (hidden / n_heads).max(1)
}

/// The keys only MLA reads, with their values, in the order they are checked.
fn mla_keys(a: &RawAttention) -> [(&'static str, Option<u64>); 5] {
    [
        ("q_lora_rank", a.q_lora_rank),
        ("kv_lora_rank", a.kv_lora_rank),
        ("qk_nope_head_dim", a.qk_nope_head_dim),
        ("qk_rope_head_dim", a.qk_rope_head_dim),
        ("v_head_dim", a.v_head_dim),
    ]
}

/// MLA: the four required dimensions, then the optional query rank.
fn mla(a: &RawAttention, n_heads: u64, pr: &mut Problems) -> Attention {
    let kv_lora_rank = mla_needs(pr, "kv_lora_rank", a.kv_lora_rank, bounds::HIDDEN_SIZE);
    let qk_nope_head_dim = mla_needs(pr, "qk_nope_head_dim", a.qk_nope_head_dim, bounds::HEAD_DIM);
    let qk_rope_head_dim = mla_needs(pr, "qk_rope_head_dim", a.qk_rope_head_dim, bounds::HEAD_DIM);
    let v_head_dim = mla_needs(pr, "v_head_dim", a.v_head_dim, bounds::HEAD_DIM);
    Attention::Mla {
        n_heads,
        q_lora_rank: a
            .q_lora_rank
            .map(|r| pr.within("attention.q_lora_rank", r, bounds::HIDDEN_SIZE)),
        kv_lora_rank,
        qk_nope_head_dim,
        qk_rope_head_dim,
        v_head_dim,
        output_gate: false,
    }
}

/// A dimension MLA requires: within `range` when given, else a problem and 1.
fn mla_needs(pr: &mut Problems, k: &str, v: Option<u64>, range: Range) -> u64 {
    match v {
        Some(x) => pr.within(&format!("attention.{k}"), x, range),
        None => {
            pr.push(Problem::at("attention", format!("mla needs `{k}`")).hint(format!("add {k}")));
            1
        }
    }
}

/// The MoE block: experts, top-k (at most the experts) and widths.
fn moe(m: &RawMoe, pr: &mut Problems) -> Moe {
    let e = pr.within("moe.n_routed_experts", m.n_routed_experts, bounds::EXPERTS);
    let k = pr.within(
        "moe.experts_per_token",
        m.experts_per_token,
        bounds::EXPERTS,
    );
    if m.n_routed_experts > 0 && m.experts_per_token > 0 && k > e {
        pr.push(
            Problem::at(
                "moe.experts_per_token",
                format!("top-{k} routing needs at least {k} experts, the model has {e}"),
            )
            .hint("experts_per_token cannot exceed n_routed_experts"),
        );
    }
    let inter = pr.within(
        "moe.expert_intermediate_size",
        m.expert_intermediate_size,
        bounds::INTERMEDIATE_SIZE,
    );
    Moe {
        n_routed_experts: e,
        experts_per_token: k.min(e),
        expert_intermediate_size: inter,
        n_shared_experts: shared_count(m.n_shared_experts, pr),
        shared_intermediate_size: m.shared_intermediate_size.map_or(inter, |s| {
            pr.within("moe.shared_intermediate_size", s, bounds::INTERMEDIATE_SIZE)
        }),
        shared_expert_gate: false,
        router_bias: false,
        expert_bias: false,
        latent_size: None,
    }
}

/// Shared experts: none by default, and 0 means none.
fn shared_count(stated: Option<u64>, pr: &mut Problems) -> u64 {
    match stated {
        None | Some(0) => 0,
        Some(n) => pr.within("moe.n_shared_experts", n, bounds::EXPERTS),
    }
}

/// The layers a list under `key` names, each checked to exist (0-based).
fn layer_indices(key: &str, list: &[u64], n_layers: u64, pr: &mut Problems) -> Vec<usize> {
    list.iter()
        .enumerate()
        .filter_map(|(i, &l)| {
            if l >= n_layers {
                pr.push(
                    Problem::at(
                        format!("{key}[{i}]"),
                        format!("layer {l} does not exist; layers are 0..{}", n_layers - 1),
                    )
                    .hint("layer indices are 0-based"),
                );
                None
            } else {
                Some(l as usize)
            }
        })
        .collect()
}

/// Gives the layers in `dense_layers` a dense MLP.
fn mark_dense_layers(raw: &RawModel, n_layers: u64, layers: &mut [Layer], pr: &mut Problems) {
    if let Some(dense) = &raw.dense_layers {
        for l in layer_indices("dense_layers", dense, n_layers, pr) {
            layers[l].ffn = Ffn::Dense;
        }
    }
}

/// The dense MLP width: required when any layer is dense, else 0.
fn dense_width(stated: Option<u64>, layers: &[Layer], pr: &mut Problems) -> u64 {
    let any_dense = layers.iter().any(|l| l.ffn == Ffn::Dense);
    match stated {
        Some(d) => pr.within("dense_intermediate_size", d, bounds::INTERMEDIATE_SIZE),
        None if any_dense => {
            pr.push(
                Problem::at(
                    "dense_intermediate_size",
                    "some layers have a dense MLP but its width is not given",
                )
                .hint("add dense_intermediate_size"),
            );
            1
        }
        None => 0,
    }
}

/// Gives the sliding-window layers (all, unless listed) their window.
fn mark_sliding_layers(raw: &RawModel, n_layers: u64, layers: &mut [Layer], pr: &mut Problems) {
    if let Some(w) = raw.sliding_window {
        let w = pr.positive("sliding_window", w);
        let which: Vec<usize> = match &raw.sliding_window_layers {
            Some(list) => layer_indices("sliding_window_layers", list, n_layers, pr),
            None => (0..n_layers as usize).collect(),
        };
        for l in which {
            layers[l].mixer = Mixer::Sliding { window: w };
        }
    } else if raw.sliding_window_layers.is_some() {
        pr.push(
            Problem::at(
                "sliding_window_layers",
                "sliding_window_layers needs sliding_window",
            )
            .hint("add sliding_window"),
        );
    }
}

/// Stored precisions: `weights` (default bf16) under each unstated group.
fn dtypes(d: &RawDtypes) -> Dtypes {
    let w = d.weights.unwrap_or(DType::Bf16);
    let kv_default = if w.bits() >= 16.0 && w != DType::Fp32 {
        w
    } else {
        DType::Bf16
    };
    Dtypes {
        attention: d.attention.unwrap_or(w),
        experts: d.experts.unwrap_or(w),
        dense: d.dense.unwrap_or(w),
        embedding: d.embedding.unwrap_or(at_least_16_bits(w)),
        lm_head: d.lm_head.unwrap_or(at_least_16_bits(w)),
        kv_cache: d.kv_cache.unwrap_or(kv_default),
        state: DType::Fp32,
    }
}

/// `w` when it has 16 bits or more, else bf16 (embedding and LM head).
fn at_least_16_bits(w: DType) -> DType {
    if w.bits() >= 16.0 {
        w
    } else {
        DType::Bf16
    }
}

/// The declared parameter count, when given and readable.
fn declared_params(s: Option<&str>, pr: &mut Problems) -> Option<f64> {
    s.and_then(|s| match parse_params(s) {
        Ok(p) => Some(p.0),
        Err(e) => {
            pr.push(
                Problem::at("declared_params", e)
                    .hint("a count with its suffix, in quotes: \"10B\", \"46.7B\", \"300M\""),
            );
            None
        }
    })
}

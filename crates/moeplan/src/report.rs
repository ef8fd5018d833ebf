//! Derived figures with their derivations.
//!
//! Every figure a user sees is a `Figure`: its value, its unit, and the
//! formula with the inputs it came from, so `--explain` and the JSON output
//! show the same derivation. `ModelReport` is the accounting of one model
//! (`moeplan model`).

use crate::dtype::DType;
use crate::model::{Attention, Ffn, Gating, Layer, Mixer, Model, ParamReport, Selection, Values};
use crate::units::{Flop, Params};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A count of parameters, computed in f64, written as the integer it is.
fn as_count<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v.round().max(0.0) as u64)
}

/// The figures a model report derives (the keys of its `explain`; JSON
/// names in snake_case), declared in the order they print.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ModelFigure {
    /// Attention FLOP per token at a context.
    AttentionFlopPerToken,
    /// KV-cache bytes per token of context.
    KvCacheBytesPerToken,
    /// FLOP per token of the linear layers.
    LinearFlopPerToken,
    /// Parameters active per token.
    ParamsActive,
    /// Attention parameters.
    ParamsAttention,
    /// Embedding and LM-head parameters.
    ParamsEmbedding,
    /// Routed-expert parameters.
    ParamsRoutedExperts,
}

impl std::fmt::Display for ModelFigure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ModelFigure::AttentionFlopPerToken => "attention_flop_per_token",
            ModelFigure::KvCacheBytesPerToken => "kv_cache_bytes_per_token",
            ModelFigure::LinearFlopPerToken => "linear_flop_per_token",
            ModelFigure::ParamsActive => "params_active",
            ModelFigure::ParamsAttention => "params_attention",
            ModelFigure::ParamsEmbedding => "params_embedding",
            ModelFigure::ParamsRoutedExperts => "params_routed_experts",
        };
        f.write_str(name)
    }
}

/// How a figure was derived.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Derivation {
    // Formulas and input names are mostly constant text: borrowed, not
    // copied into every estimate.
    /// The formula, in words and symbols.
    pub formula: Cow<'static, str>,
    /// The inputs by name, with their values as shown.
    pub inputs: Vec<(Cow<'static, str>, String)>,
}

impl Derivation {
    /// A formula with its inputs.
    pub fn new(formula: impl Into<Cow<'static, str>>, inputs: &[(&'static str, String)]) -> Self {
        Derivation {
            formula: formula.into(),
            inputs: inputs
                .iter()
                .map(|(k, v)| (Cow::Borrowed(*k), v.clone()))
                .collect(),
        }
    }
}

/// Parameters of one component as reported.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ComponentReport {
    /// Parameters stored.
    #[serde(serialize_with = "as_count")]
    #[schemars(with = "u64")]
    pub total: f64,
    /// Parameters a token uses.
    #[serde(serialize_with = "as_count")]
    #[schemars(with = "u64")]
    pub active: f64,
    /// Stored precision.
    pub dtype: DType,
    /// Bytes stored.
    #[serde(serialize_with = "crate::units::json::count")]
    pub bytes: f64,
}

/// A run of consecutive layers of one kind.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LayerRun {
    /// First layer (0-based).
    pub first: usize,
    /// Last layer (inclusive).
    pub last: usize,
    /// `full`, `sliding(W)` or `linear`.
    pub mixer: String,
    /// `moe` or `dense`.
    pub ffn: String,
}

/// Attention FLOP for a token at one context length.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ContextFlop {
    /// Tokens already in context.
    pub context: u64,
    /// Attention-core FLOP of one new token, all layers.
    #[serde(serialize_with = "crate::units::json::count")]
    pub flop: f64,
    /// KV cache of one sequence at this context, all layers.
    #[serde(serialize_with = "crate::units::json::count")]
    pub kv_cache_bytes: f64,
}

/// The accounting of one model (`moeplan model --json`; keys are stable).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ModelReport {
    /// Model name.
    pub name: String,
    /// Architecture read.
    pub architecture: String,
    /// Total parameters.
    #[serde(serialize_with = "as_count")]
    #[schemars(with = "u64")]
    pub params_total: f64,
    /// Parameters used per token (embedding row and LM head included).
    #[serde(serialize_with = "as_count")]
    #[schemars(with = "u64")]
    pub params_active: f64,
    /// Per component.
    pub params_by_component: BTreeMap<String, ComponentReport>,
    /// Weight bytes at stored precision.
    #[serde(serialize_with = "crate::units::json::count")]
    pub weight_bytes: f64,
    /// KV cache bytes per token of context, all layers (before any window fills).
    #[serde(serialize_with = "crate::units::json::count")]
    pub kv_cache_bytes_per_token: f64,
    /// The same at each KV precision an engine offers.
    #[serde(serialize_with = "crate::units::json::count_map")]
    pub kv_cache_bytes_per_token_by_dtype: BTreeMap<String, f64>,
    /// KV cache precision of the model's config.
    pub kv_cache_dtype: DType,
    /// Fixed recurrent state of one sequence (linear-attention layers).
    #[serde(serialize_with = "crate::units::json::count")]
    pub linear_state_bytes_per_sequence: f64,
    /// Decoder layers.
    pub n_layers: usize,
    /// MoE layers.
    pub n_moe_layers: usize,
    /// Routed experts per MoE layer (0 for dense).
    pub n_routed_experts: u64,
    /// Top-k (0 for dense).
    pub experts_per_token: u64,
    /// Shared experts.
    pub n_shared_experts: u64,
    /// Residual width.
    pub hidden_size: u64,
    /// Vocabulary size.
    pub vocab_size: u64,
    /// Layer structure as runs.
    pub layers: Vec<LayerRun>,
    /// FLOP per token of the linear layers.
    #[serde(serialize_with = "crate::units::json::count")]
    pub linear_flop_per_token: f64,
    /// Attention FLOP per token of context at full attention (slope, before windows fill).
    #[serde(serialize_with = "crate::units::json::count")]
    pub(crate) attention_flop_per_token_per_context_token: f64,
    /// Attention FLOP and KV bytes at sample context lengths.
    pub attention_by_context: Vec<ContextFlop>,
    /// The parameter total the source declares, if any.
    #[serde(serialize_with = "crate::units::json::count_opt")]
    pub declared_params: Option<f64>,
    /// Problems a reviewer should see (declared vs derived, ...).
    pub warnings: Vec<String>,
    /// Assumptions made where the source was silent.
    pub assumptions: Vec<String>,
    /// How each figure was derived.
    pub explain: BTreeMap<ModelFigure, Derivation>,
}

/// Context lengths the report samples.
pub(crate) const SAMPLE_CONTEXTS: [u64; 5] = [128, 1024, 8192, 32768, 131072];

/// Builds the accounting report of a model.
pub fn model_report(m: &Model) -> ModelReport {
    let p = m.params();
    let warnings = declared_mismatch(m, &p).into_iter().collect();
    let mut explain = explain_params(m, &p);
    explain.insert(ModelFigure::KvCacheBytesPerToken, kv_cache_derivation(m));
    let linear_flop = m.linear_flop_per_token();
    let slope = full_attention_slope(m);
    explain_flop(&mut explain, m, &p, slope);
    let moe = m.moe.as_ref();
    ModelReport {
        name: m.name.clone(),
        architecture: m.architecture.clone(),
        params_total: p.total.0,
        params_active: p.active.0,
        params_by_component: components(&p),
        weight_bytes: p.weight_bytes.0,
        kv_cache_bytes_per_token: m.kv_bytes_per_token().0,
        kv_cache_bytes_per_token_by_dtype: kv_bytes_by_dtype(m),
        kv_cache_dtype: m.dtypes.kv_cache,
        linear_state_bytes_per_sequence: m.linear_state_bytes_per_sequence().0,
        n_layers: m.n_layers(),
        n_moe_layers: m.n_moe_layers(),
        n_routed_experts: moe.map_or(0, |x| x.n_routed_experts),
        experts_per_token: moe.map_or(0, |x| x.experts_per_token),
        n_shared_experts: moe.map_or(0, |x| x.n_shared_experts),
        hidden_size: m.hidden_size,
        vocab_size: m.vocab_size,
        layers: layer_runs(m),
        linear_flop_per_token: linear_flop.0,
        attention_flop_per_token_per_context_token: slope,
        attention_by_context: SAMPLE_CONTEXTS
            .iter()
            .map(|&c| ContextFlop {
                context: c,
                flop: m.attention_flop_per_token(c).0,
                kv_cache_bytes: m.kv_bytes_for_context(c).0,
            })
            .collect(),
        declared_params: m.declared_params,
        warnings,
        assumptions: m.assumptions.clone(),
        explain,
    }
}

/// A warning when the declared parameter count is off the derived one by more than 5%.
fn declared_mismatch(m: &Model, p: &ParamReport) -> Option<String> {
    let d = m.declared_params?;
    let ratio = d / p.total.0;
    if (0.95..=1.05).contains(&ratio) {
        return None;
    }
    Some(format!(
        "declared parameters ({}) disagree with the {} derived from the architecture: the declaration is {:.2}x the derived count",
        Params(d),
        p.total,
        ratio
    ))
}

/// The derivations of the parameter counts: routed experts, attention, embedding, active.
fn explain_params(m: &Model, p: &ParamReport) -> BTreeMap<ModelFigure, Derivation> {
    let mut explain = BTreeMap::new();
    let h = m.hidden_size;
    if let Some(d) = routed_experts_derivation(m) {
        explain.insert(ModelFigure::ParamsRoutedExperts, d);
    }
    explain.insert(ModelFigure::ParamsAttention, attention_params_derivation(m));
    explain.insert(
        ModelFigure::ParamsEmbedding,
        Derivation::new(
            "vocab × hidden (the LM head as much again unless tied)",
            &[
                ("vocab", m.vocab_size.to_string()),
                ("hidden", h.to_string()),
                ("tied", m.tie_word_embeddings.to_string()),
            ],
        ),
    );
    explain.insert(
        ModelFigure::ParamsActive,
        Derivation::new(
            "all non-expert parameters + MoE layers × top-k × per-expert parameters",
            &[
                (
                    "top_k",
                    m.moe
                        .as_ref()
                        .map_or(0, |x| x.experts_per_token)
                        .to_string(),
                ),
                ("params_total", p.total.to_string()),
            ],
        ),
    );
    explain
}

/// How the routed experts' parameters add up (None without MoE layers).
fn routed_experts_derivation(m: &Model) -> Option<Derivation> {
    let i = m.layers.iter().position(|l| l.ffn == Ffn::Moe)?;
    let lp = m.layer_params(&m.layers[i]);
    let moe = m.moe.as_ref().expect("MoE layer implies MoE");
    let formula = match (m.gating, moe.latent_size) {
        (Gating::Gated, None) => "MoE layers × experts × (3 × hidden × expert_intermediate [gate, up, down] + biases)",
        (Gating::Plain, None) => "MoE layers × experts × (2 × hidden × expert_intermediate [up, down] + biases)",
        (Gating::Gated, Some(_)) => "MoE layers × (experts × 3 × latent × expert_intermediate [gate, up, down] + 2 × hidden × latent [latent projections])",
        (Gating::Plain, Some(_)) => "MoE layers × (experts × 2 × latent × expert_intermediate [up, down] + 2 × hidden × latent [latent projections])",
    };
    let mut inputs = vec![
        ("moe_layers", m.n_moe_layers().to_string()),
        ("experts", moe.n_routed_experts.to_string()),
        ("hidden", m.hidden_size.to_string()),
        (
            "expert_intermediate",
            moe.expert_intermediate_size.to_string(),
        ),
        ("per_expert", format!("{:.0}", lp.per_expert)),
    ];
    if let Some(latent) = moe.latent_size {
        inputs.push(("latent", latent.to_string()));
    }
    Some(Derivation::new(formula, &inputs))
}

/// How the attention parameters of a layer add up, for GQA or MLA (and
/// the sliding layers' own shape when they have one).
fn attention_params_derivation(m: &Model) -> Derivation {
    let h = m.hidden_size;
    let (formula, mut inputs) = attention_shape_inputs(&m.attention, h);
    if let Some(sliding) = &m.sliding_attention {
        let (_, more) = attention_shape_inputs(sliding, h);
        inputs.extend(more.into_iter().map(|(k, v)| (sliding_key(k), v)));
    }
    Derivation::new(formula, &inputs)
}

/// The sliding layers' name for an input of their attention shape.
fn sliding_key(key: &'static str) -> &'static str {
    match key {
        "heads" => "sliding_heads",
        "kv_heads" => "sliding_kv_heads",
        "head_dim" => "sliding_head_dim",
        "v_head_dim" => "sliding_v_head_dim",
        "values" => "sliding_values",
        _ => "sliding_other",
    }
}

/// The formula and inputs of one attention shape's parameters.
fn attention_shape_inputs(a: &Attention, h: u64) -> (&'static str, Vec<(&'static str, String)>) {
    match a {
        Attention::Gqa { n_heads, n_kv_heads, head_dim, values, .. } => {
            let mut inputs = vec![("heads", n_heads.to_string()), ("kv_heads", n_kv_heads.to_string()), ("head_dim", head_dim.to_string())];
            let formula = match values {
                Values::Projected { head_dim: v } if v == head_dim => "per layer: hidden × heads × head_dim (q) + 2 × hidden × kv_heads × head_dim (k, v) + heads × head_dim × hidden (o) (+ biases, norms, sinks, gates)",
                Values::Projected { head_dim: v } => {
                    inputs.push(("v_head_dim", v.to_string()));
                    "per layer: hidden × heads × head_dim (q) + hidden × kv_heads × (head_dim + v_head_dim) (k, v) + heads × v_head_dim × hidden (o) (+ biases, norms, sinks, gates)"
                }
                Values::Keys => {
                    inputs.push(("values", "the keys (no v_proj)".into()));
                    "per layer: hidden × heads × head_dim (q) + hidden × kv_heads × head_dim (k, also the values) + heads × head_dim × hidden (o) (+ biases, norms, sinks, gates)"
                }
            };
            inputs.push(("hidden", h.to_string()));
            (formula, inputs)
        }
        Attention::Mla { n_heads, q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim, .. } => (
            "per layer: hidden × q_lora + q_lora × heads × (nope + rope) + hidden × (kv_lora + rope) + kv_lora × heads × (nope + v) + heads × v × hidden (+ indexer, norms)",
            vec![
                ("heads", n_heads.to_string()),
                ("q_lora", q_lora_rank.map_or("none".into(), |r| r.to_string())),
                ("kv_lora", kv_lora_rank.to_string()),
                ("nope", qk_nope_head_dim.to_string()),
                ("rope", qk_rope_head_dim.to_string()),
                ("v", v_head_dim.to_string()),
                ("hidden", h.to_string()),
            ],
        ),
        Attention::SharedKv { n_heads, q_lora_rank, head_dim, o_lora_rank, o_groups, .. } => (
            "per layer: hidden × (q_lora + head_dim) + q_lora × heads × head_dim + heads × head_dim × o_lora + o_groups × o_lora × hidden + heads (sinks) (+ compressors, indexer, norms)",
            vec![
                ("heads", n_heads.to_string()),
                ("q_lora", q_lora_rank.to_string()),
                ("head_dim", head_dim.to_string()),
                ("o_lora", o_lora_rank.to_string()),
                ("o_groups", o_groups.to_string()),
                ("hidden", h.to_string()),
            ],
        ),
    }
}

/// How the KV cache per token adds up: the cached elements of a softmax layer, its layers, its bytes.
fn kv_cache_derivation(m: &Model) -> Derivation {
    let (formula, mut inputs) = match &m.attention {
        Attention::Gqa { n_kv_heads, head_dim, .. } => (
            "softmax layers × 2 (k, v) × kv_heads × head_dim × bytes",
            vec![("kv_heads", n_kv_heads.to_string()), ("head_dim", head_dim.to_string())],
        ),
        Attention::Mla { kv_lora_rank, qk_rope_head_dim, .. } => (
            "softmax layers × (kv_lora + rope [+ indexer key]) × bytes (the latent is shared by all heads)",
            vec![("kv_lora", kv_lora_rank.to_string()), ("rope", qk_rope_head_dim.to_string())],
        ),
        Attention::SharedKv { .. } => (
            "Σ layers per token before the windows fill: entry × (1 + 1/ratio) (+ index key / ratio in CSA layers); at a context c a layer keeps min(c, window) entries and c / ratio compressed ones",
            vec![
                ("entry_bytes", m.shared_kv_entry_bytes().to_string()),
                ("index_key_bytes", m.index_entry_bytes().to_string()),
            ],
        ),
    };
    let softmax_layers = m
        .layers
        .iter()
        .filter(|l| {
            matches!(
                l.mixer,
                Mixer::Full
                    | Mixer::FullDense
                    | Mixer::FullKv { .. }
                    | Mixer::Sliding { .. }
                    | Mixer::Compressed { .. }
            )
        })
        .count();
    inputs.push(("softmax_layers", softmax_layers.to_string()));
    if m.sliding_attention.is_some() {
        // Each kind of layer caches its own shape: the per-layer figures.
        inputs.push((
            "full_layer_bytes",
            m.kv_bytes_per_token_layer(&Layer {
                mixer: Mixer::Full,
                ffn: Ffn::Dense,
            })
            .to_string(),
        ));
        let sliding = m
            .layers
            .iter()
            .find(|l| matches!(l.mixer, Mixer::Sliding { .. }));
        if let Some(l) = sliding {
            inputs.push((
                "sliding_layer_bytes",
                m.kv_bytes_per_token_layer(l).to_string(),
            ));
        }
    }
    inputs.push((
        "bytes",
        format!("{} ({})", m.dtypes.kv_cache.bytes(), m.dtypes.kv_cache),
    ));
    Derivation::new(formula, &inputs)
}

/// The derivations of the FLOP per token: linear layers, and attention per context token.
fn explain_flop(
    explain: &mut BTreeMap<ModelFigure, Derivation>,
    m: &Model,
    p: &ParamReport,
    slope: f64,
) {
    let linear = match m.hyper_connections {
        None => Derivation::new(
            "2 FLOP × (active parameters − embedding − norms) (a multiply and an add per weight)",
            &[("params_active", p.active.to_string())],
        ),
        Some(hc) => Derivation::new(
            "2 FLOP × (active parameters − embedding − norms) + hyper-connections (Σ blocks 2·m·h·((2+m)·m + m + 3) + 2·m·h·(m + 2))",
            &[
                ("params_active", p.active.to_string()),
                ("hc_mult", hc.streams.to_string()),
                (
                    "hyper_connection_flop",
                    Flop(m.hyper_connection_flop_per_token()).to_string(),
                ),
            ],
        ),
    };
    explain.insert(ModelFigure::LinearFlopPerToken, linear);
    explain.insert(
        ModelFigure::AttentionFlopPerToken,
        Derivation::new(
            "Σ layers 4 × heads × head_dim × min(context, window) (QKᵀ and PV, 2 FLOP per MAC); MLA: 2 × heads × (2 kv_lora + rope) × tokens read; linear layers: 6 × v_heads × dk × dv",
            &[("per_context_token_full_attention", Flop(slope).to_string())],
        ),
    );
}

/// Each component's parameters, precision and bytes, by name.
fn components(p: &ParamReport) -> BTreeMap<String, ComponentReport> {
    p.by_component
        .iter()
        .map(|(c, v)| {
            (
                c.name().to_string(),
                ComponentReport {
                    total: v.total.0,
                    active: v.active.0,
                    dtype: v.dtype,
                    bytes: v.bytes.0,
                },
            )
        })
        .collect()
}

/// KV cache bytes per token at each KV precision an engine offers.
fn kv_bytes_by_dtype(m: &Model) -> BTreeMap<String, f64> {
    let mut by_dtype = BTreeMap::new();
    for d in [DType::Bf16, DType::Fp8] {
        let mut mm = m.clone();
        mm.dtypes.kv_cache = d;
        by_dtype.insert(d.name().to_string(), mm.kv_bytes_per_token().0);
    }
    by_dtype
}

/// Attention FLOP per extra context token when no window has filled.
fn full_attention_slope(m: &Model) -> f64 {
    let at = |c: u64| m.attention_flop_per_token(c).0;
    at(2) - at(1)
}

fn layer_runs(m: &Model) -> Vec<LayerRun> {
    let describe = |i: usize| {
        let l = &m.layers[i];
        let mixer = match l.mixer {
            Mixer::Full => "full".to_string(),
            Mixer::FullDense => "full (no indexer)".to_string(),
            Mixer::FullKv { kv_heads } => format!("full({kv_heads} kv heads)"),
            Mixer::Sliding { window } => format!("sliding({window})"),
            Mixer::Compressed {
                window,
                ratio,
                selection: Selection::Indexed,
            } => format!("csa({ratio}, top-k, window {window})"),
            Mixer::Compressed {
                window,
                ratio,
                selection: Selection::All,
            } => format!("hca({ratio}, window {window})"),
            Mixer::Linear => "linear".to_string(),
            Mixer::Mamba => "mamba2".to_string(),
            Mixer::Absent => "none".to_string(),
            Mixer::Projection => "projection".to_string(),
        };
        let ffn = match l.ffn {
            Ffn::Moe => "moe".to_string(),
            Ffn::Dense => "dense".to_string(),
            Ffn::DenseOf { intermediate_size } => format!("dense({intermediate_size})"),
            Ffn::Absent => "none".to_string(),
            Ffn::Projection => "projection".to_string(),
        };
        (mixer, ffn)
    };
    let mut runs: Vec<LayerRun> = Vec::new();
    for i in 0..m.layers.len() {
        let (mixer, ffn) = describe(i);
        match runs.last_mut() {
            Some(r) if r.mixer == mixer && r.ffn == ffn && r.last + 1 == i => r.last = i,
            _ => runs.push(LayerRun {
                first: i,
                last: i,
                mixer,
                ffn,
            }),
        }
    }
    // Alternating patterns (gpt-oss, Llama 4) produce one run per layer;
    // fold a repeating period into a single description.
    runs
}

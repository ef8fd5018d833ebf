//! The validated model: architecture facts every later stage relies on.
//!
//! A `Model` is built either from a native spec (`spec::model`) or from a
//! Hugging Face `config.json` (`hf`). Its invariants (non-zero sizes, heads
//! divisible by KV heads, top-k not above the expert count, one entry per
//! layer) are checked where it is built, so the accounting below can divide
//! without checking again.
//!
//! Parameter counts are exact for the modules each family's modelling code
//! defines (projections, biases, norms, routers). Published totals count the
//! same modules; see the tests for the hand derivations.

use crate::dtype::DType;
use crate::units::{Bytes, Flop, Params};
use serde::Serialize;
use std::collections::BTreeMap;

/// How a layer mixes tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Mixer {
    /// Full causal softmax attention (through the model's sparse indexer,
    /// `Model::indexer`, when it has one).
    Full,
    /// Full causal softmax attention over every cached token although the
    /// model has a sparse indexer: the layers before its sparse ones
    /// (MiniMax-M3's first three), which cache no indexer keys.
    FullDense,
    /// Full causal attention in `Model::attention`'s shape with a KV head
    /// count of its own (DeciLM's per-layer `n_heads_in_group`).
    FullKv {
        /// Key/value heads of this layer.
        kv_heads: u64,
    },
    /// Sliding-window (or chunked local) attention over the last `window` tokens.
    Sliding {
        /// Tokens a query attends to, and the KV tokens the layer keeps.
        window: u64,
    },
    /// DeepSeek-V4's compressed attention: the last `window` tokens kept
    /// whole (as `Sliding`), and every `ratio` earlier tokens compressed
    /// into one cached entry; `selection` says which compressed entries a
    /// query reads.
    Compressed {
        /// Tokens kept whole (the sliding window).
        window: u64,
        /// Tokens per compressed entry.
        ratio: u64,
        /// Which compressed entries a query reads.
        selection: Selection,
    },
    /// Linear attention with a fixed-size recurrent state (no KV cache).
    Linear,
    /// A Mamba-2 selective state-space mixer (`Model::mamba`): a fixed-size
    /// convolution and SSM state per sequence, no KV cache.
    Mamba,
    /// No token mixing: the layer is its feed-forward block alone
    /// (Nemotron-H's MLP and MoE blocks, DeciLM's `no_op` attention).
    Absent,
    /// No token mixing: one hidden × hidden linear (with its pre-norm) in
    /// place of attention (DeciLM's `replace_with_linear`).
    Projection,
}

impl Mixer {
    /// The tokens a sliding or compressed layer keeps whole; None for a
    /// mixer that keeps every token or none.
    pub(crate) fn window(self) -> Option<u64> {
        match self {
            Mixer::Sliding { window } | Mixer::Compressed { window, .. } => Some(window),
            Mixer::Full
            | Mixer::FullDense
            | Mixer::FullKv { .. }
            | Mixer::Linear
            | Mixer::Mamba
            | Mixer::Absent
            | Mixer::Projection => None,
        }
    }

    /// The KV heads a layer states as its own (DeciLM's per-layer counts);
    /// None where the layer takes the model's attention shape or has none.
    pub(crate) fn kv_heads(self) -> Option<u64> {
        match self {
            Mixer::FullKv { kv_heads } => Some(kv_heads),
            Mixer::Full
            | Mixer::FullDense
            | Mixer::Sliding { .. }
            | Mixer::Compressed { .. }
            | Mixer::Linear
            | Mixer::Mamba
            | Mixer::Absent
            | Mixer::Projection => None,
        }
    }

    /// A compressed layer's tokens per entry (at least 1) and which entries
    /// a query reads; None for every other mixer.
    pub(crate) fn compression(self) -> Option<(u64, Selection)> {
        match self {
            Mixer::Compressed {
                ratio, selection, ..
            } => Some((ratio.max(1), selection)),
            Mixer::Full
            | Mixer::FullDense
            | Mixer::FullKv { .. }
            | Mixer::Sliding { .. }
            | Mixer::Linear
            | Mixer::Mamba
            | Mixer::Absent
            | Mixer::Projection => None,
        }
    }
}

/// Which compressed entries a `Mixer::Compressed` layer's query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every compressed entry (DeepSeek-V4's heavily compressed attention, HCA).
    All,
    /// The top-k entries `Model::indexer` scores highest over its own
    /// compressed keys (compressed sparse attention, CSA).
    Indexed,
}

/// What follows the mixer in a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ffn {
    /// A dense (SwiGLU) MLP of `Model::dense_intermediate_size`.
    Dense,
    /// A dense MLP of a width of its own (DeciLM's per-layer `ffn_mult`).
    DenseOf {
        /// Intermediate width of this layer's MLP.
        intermediate_size: u64,
    },
    /// The MoE block of `Model::moe`.
    Moe,
    /// No feed-forward block: the layer is its mixer alone (Nemotron-H's
    /// Mamba-2 and attention blocks, DeciLM's `no_op` FFN).
    Absent,
    /// One hidden × hidden linear (with its pre-norm) in place of the MLP
    /// (DeciLM's `replace_with_linear`).
    Projection,
}

/// How the model's MLPs (dense, routed and shared experts) are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Gating {
    /// `down(act(gate(x)) · up(x))`: three matrices (SwiGLU).
    Gated,
    /// `down(act(up(x)))`: two matrices (Nemotron-H's squared ReLU).
    Plain,
}

impl Gating {
    /// Weight matrices of one MLP: gate (when gated), up and down.
    pub(crate) fn matrices(self) -> f64 {
        match self {
            Gating::Gated => 3.0,
            Gating::Plain => 2.0,
        }
    }

    /// Matrices on the input side (gate and up, or up alone).
    pub(crate) fn input_matrices(self) -> f64 {
        self.matrices() - 1.0
    }
}

/// One decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Layer {
    /// Token mixing.
    pub mixer: Mixer,
    /// Feed-forward block.
    pub ffn: Ffn,
}

/// The softmax attention of the model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Attention {
    /// Multi-head / grouped-query attention (MHA when kv heads = heads).
    Gqa {
        /// Query heads.
        n_heads: u64,
        /// Key/value heads.
        n_kv_heads: u64,
        /// Dimension of one query and key head.
        head_dim: u64,
        /// Where each KV head's value comes from, and its width.
        values: Values,
        /// Biases on the q, k, v projections.
        qkv_bias: bool,
        /// Bias on the output projection.
        o_bias: bool,
        /// RMSNorm on q and k per head.
        qk_norm: bool,
        /// One learned sink logit per head (gpt-oss).
        sinks: bool,
        /// A sigmoid gate on the attention output, before o_proj.
        output_gate: OutputGate,
    },
    /// DeepSeek multi-head latent attention.
    Mla {
        /// Query heads.
        n_heads: u64,
        /// Rank of the query down-projection (None: q projected directly).
        q_lora_rank: Option<u64>,
        /// Rank of the compressed KV latent (what the cache stores).
        kv_lora_rank: u64,
        /// Per-head query/key dimension without rotary part.
        qk_nope_head_dim: u64,
        /// Rotary part shared through the cache.
        qk_rope_head_dim: u64,
        /// Per-head value dimension.
        v_head_dim: u64,
        /// A sigmoid gate on the attention output, projected from the
        /// hidden state (`g_proj`, hidden → heads × v_head_dim: Kimi-K3).
        output_gate: bool,
    },
    /// DeepSeek-V4's attention: queries from a low-rank latent
    /// (`q_lora_rank`), one key-value head of `head_dim` shared by every
    /// query head (the key is also the value; its last `qk_rope_head_dim`
    /// take RoPE), a learned sink per head, and a grouped low-rank output:
    /// `o_groups` groups of heads each projected to `o_lora_rank`, then
    /// `o_groups · o_lora_rank` to the hidden width.
    SharedKv {
        /// Query heads.
        n_heads: u64,
        /// Rank of the query down-projection.
        q_lora_rank: u64,
        /// Width of a query head and of the shared key-value head.
        head_dim: u64,
        /// Rotary part of the head.
        qk_rope_head_dim: u64,
        /// Rank of each output group's projection.
        o_lora_rank: u64,
        /// Groups of heads the output projection is split into.
        o_groups: u64,
    },
}

/// The sigmoid gate a GQA layer applies to its attention output before o_proj.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputGate {
    /// No gate.
    Ungated,
    /// One gate per output channel, produced by the q projection at twice
    /// its width (Qwen3.5's `attn_output_gate`).
    PerChannel,
    /// One gate per head, from a projection hidden → heads of its own
    /// (Step-3.5/3.7's `g_proj`, `use_head_wise_attn_gate`).
    PerHead,
}

impl OutputGate {
    /// Columns the gate adds to the q side of a layer with `n_heads` heads
    /// of `head_dim` (split across heads by TP like q).
    pub fn columns(self, n_heads: u64, head_dim: u64) -> u64 {
        match self {
            OutputGate::Ungated => 0,
            OutputGate::PerChannel => n_heads * head_dim,
            OutputGate::PerHead => n_heads,
        }
    }
}

/// Where a GQA layer's values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Values {
    /// A v projection of its own, `head_dim` per KV head (the query/key head
    /// dimension in most models; MiMo-V2-Flash's 128 beside 192).
    Projected {
        /// Dimension of one value head.
        head_dim: u64,
    },
    /// No v projection: each KV head's value is its key projection, normed
    /// without RoPE (Gemma-4's global layers, `attention_k_eq_v`). K and V
    /// differ after their norms and RoPE, so the cache still holds both.
    Keys,
}

impl Values {
    /// Dimension of one value head, where keys are `key_head_dim` wide.
    pub fn head_dim(self, key_head_dim: u64) -> u64 {
        match self {
            Values::Projected { head_dim } => head_dim,
            Values::Keys => key_head_dim,
        }
    }

    /// Columns of the v projection per KV head (0 when the keys serve).
    pub(crate) fn projected_dim(self) -> u64 {
        match self {
            Values::Projected { head_dim } => head_dim,
            Values::Keys => 0,
        }
    }
}

/// Which norm weights a layer carries besides q/k norms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NormPlacement {
    /// One RMSNorm before each block (mixer, FFN).
    Pre,
    /// Gemma-4's sandwich: a norm before and after each block and a
    /// per-layer scalar; a MoE layer's dense and routed branches are each
    /// normed apart (after the dense MLP, before and after the experts) and
    /// its router normalises its input with a learned scale.
    Sandwich,
    /// Kimi-K3's attention residuals: each block (mixer, FFN) takes its
    /// input as a softmax over depth of the earlier blocks' outputs,
    /// summed per run of `block_size` layers, each with an RMSNorm and a
    /// learned pseudo-query (one weight vector each) beside its pre-norm;
    /// the final output likewise.
    AttentionResiduals {
        /// Layers summed into one stored residual.
        block_size: u64,
    },
}

impl NormPlacement {
    /// Norm-like weight vectors of the hidden width per block of a layer.
    fn vectors_per_block(self) -> f64 {
        match self {
            NormPlacement::Pre => 1.0,
            NormPlacement::Sandwich => 2.0,
            NormPlacement::AttentionResiduals { .. } => 3.0,
        }
    }
}

impl Attention {
    /// Query heads.
    pub fn n_heads(&self) -> u64 {
        match self {
            Attention::Gqa { n_heads, .. }
            | Attention::Mla { n_heads, .. }
            | Attention::SharedKv { n_heads, .. } => *n_heads,
        }
    }
    /// Key/value heads that TP can split (MLA's latent is one shared "head").
    pub fn n_kv_heads(&self) -> u64 {
        match self {
            Attention::Gqa { n_kv_heads, .. } => *n_kv_heads,
            Attention::Mla { .. } | Attention::SharedKv { .. } => 1,
        }
    }

    /// The same shape with `kv_heads` key/value heads (MLA, whose latent
    /// has no heads, unchanged).
    pub(crate) fn with_kv_heads(mut self, kv_heads: u64) -> Attention {
        if let Attention::Gqa { n_kv_heads, .. } = &mut self {
            *n_kv_heads = kv_heads;
        }
        self
    }
}

/// The sparse top-k token selector of DeepSeek-V3.2-style attention (DSA).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SparseIndexer {
    /// Indexer heads.
    pub n_heads: u64,
    /// Indexer head dimension (also its cached key size).
    pub head_dim: u64,
    /// Tokens the main attention reads per query.
    pub topk: u64,
}

/// Delta-rule linear attention: Gated DeltaNet (Qwen3-Next / Qwen3.5) or
/// Kimi Delta Attention (Kimi-K3), which keep the same per-head dk × dv
/// state and differ in their gates (`LinearGates`).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LinearAttention {
    /// Key heads.
    pub(crate) n_key_heads: u64,
    /// Value heads.
    pub(crate) n_value_heads: u64,
    /// Key head dimension.
    pub(crate) key_head_dim: u64,
    /// Value head dimension.
    pub(crate) value_head_dim: u64,
    /// Causal convolution width.
    pub(crate) conv_kernel: u64,
    /// How the decay and output gates are projected.
    pub gates: LinearGates,
}

/// The gates of a delta-rule linear-attention layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LinearGates {
    /// Gated DeltaNet: one decay (`a`, with `A_log` and `dt_bias`) and one
    /// β per value head; the output gate `z` is a full-width projection
    /// fused into `in_proj`.
    GatedDeltaNet,
    /// Kimi Delta Attention: a decay per key channel through a low-rank
    /// pair (hidden → `decay_rank` → key channels, `f_a`/`f_b`) with a
    /// `dt_bias` per channel and an `A_log` per head; β per head
    /// (`b_proj`); the output gate full rank (`g_proj`, None) or a
    /// low-rank pair of `output_gate_rank` (`g_a`/`g_b`, Kimi-Linear-48B).
    KimiDelta {
        /// Rank of the decay projection (the head dim in Kimi's code).
        decay_rank: u64,
        /// Rank of the output gate's projection; None: full rank.
        output_gate_rank: Option<u64>,
    },
}

impl LinearAttention {
    /// Columns of the projections from the hidden state on one GPU of a
    /// `tp`-way split (heads split, Kimi's low-rank first halves whole),
    /// with the low-rank second halves (rank → this GPU's channels)
    /// folded in as the columns of equal weight and FLOP.
    pub(crate) fn in_proj_columns(&self, tp: f64, hidden: f64) -> f64 {
        let (nk, nv) = (self.n_key_heads as f64 / tp, self.n_value_heads as f64 / tp);
        let (dk, dv) = (self.key_head_dim as f64, self.value_head_dim as f64);
        match self.gates {
            // q, k, v, z and the per-head β and decay.
            LinearGates::GatedDeltaNet => 2.0 * nk * dk + 2.0 * nv * dv + 2.0 * nv,
            LinearGates::KimiDelta {
                decay_rank,
                output_gate_rank,
            } => {
                let low_rank = |r: u64, out: f64| r as f64 * (1.0 + out / hidden);
                let gate = output_gate_rank.map_or(nv * dv, |r| low_rank(r, nv * dv));
                2.0 * nk * dk + nv * dv + gate + nv + low_rank(decay_rank, nk * dk)
            }
        }
    }
}

/// A Mamba-2 mixer (Nemotron-H): `d_inner = n_heads × head_dim`.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub(crate) struct Mamba2 {
    /// SSM heads.
    pub n_heads: u64,
    /// Channels of one head.
    pub head_dim: u64,
    /// Groups sharing one B and one C (like KV heads).
    pub(crate) n_groups: u64,
    /// SSM state size per channel (N).
    pub(crate) state_size: u64,
    /// Causal convolution width.
    pub(crate) conv_kernel: u64,
    /// The convolution has a bias.
    pub(crate) conv_bias: bool,
    /// The in and out projections have biases.
    pub(crate) proj_bias: bool,
    /// Tokens per chunk of the chunked (SSD) scan of a prompt.
    pub(crate) chunk_size: u64,
}

impl Mamba2 {
    /// Inner width: heads × head dim.
    pub(crate) fn d_inner(&self) -> u64 {
        self.n_heads * self.head_dim
    }

    /// Channels the convolution runs over: x, B and C.
    pub(crate) fn conv_dim(&self) -> u64 {
        self.d_inner() + 2 * self.n_groups * self.state_size
    }

    /// Columns of in_proj: z, x, B, C and one dt per head.
    pub(crate) fn in_proj_dim(&self) -> u64 {
        self.d_inner() + self.conv_dim() + self.n_heads
    }
}

/// The MoE block.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Moe {
    /// Routed experts per MoE layer.
    pub n_routed_experts: u64,
    /// Routed experts each token is sent to (top-k).
    pub experts_per_token: u64,
    /// Intermediate width of one routed expert.
    pub expert_intermediate_size: u64,
    /// Shared (always-active) experts.
    pub n_shared_experts: u64,
    /// Intermediate width of one shared expert.
    pub shared_intermediate_size: u64,
    /// A sigmoid gate scales the shared expert output (Qwen2-MoE).
    pub(crate) shared_expert_gate: bool,
    /// The router has a bias (gpt-oss) or a selection bias (DeepSeek-V3 noaux).
    pub(crate) router_bias: bool,
    /// The experts' projections carry biases (gpt-oss).
    pub(crate) expert_bias: bool,
    /// Routed experts work in a latent of this width, between a down
    /// projection hidden → latent and an up projection latent → hidden
    /// (Nemotron-3 Super/Ultra's LatentMoE); None: in the hidden width.
    pub(crate) latent_size: Option<u64>,
}

impl Moe {
    /// The width routed experts work in: the latent when there is one, else `hidden`.
    pub(crate) fn expert_width(&self, hidden: u64) -> u64 {
        self.latent_size.unwrap_or(hidden)
    }
}

/// A vision encoder shipped in the same checkpoint (multimodal models). It
/// counts towards the total and the first stage's weights, not per text token.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct VisionEncoder {
    /// Transformer blocks.
    pub n_layers: u64,
    /// Width.
    pub hidden_size: u64,
    /// MLP width.
    pub intermediate_size: u64,
    /// Width of the language model it projects into.
    pub(crate) out_hidden_size: u64,
    /// What the encoder holds outside its blocks and projector: the patch
    /// embedding (a convolution over pixels), a learned position table, and
    /// where the family has them a final norm (Kimi-K3) or the output's
    /// standardisation vectors (Gemma-4).
    pub(crate) embedding_params: u64,
    /// How each block is built.
    pub blocks: VisionBlocks,
    /// How patch features reach the language model.
    pub projector: VisionProjector,
}

/// How a vision encoder's blocks are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VisionBlocks {
    /// q, k, v, o and a two-matrix MLP, all with biases; two LayerNorms
    /// with biases (Llama 4, Qwen-VL).
    PlainWithBiases,
    /// q, k, v, o (encoder width to encoder width) and a gated MLP (gate,
    /// up, down) without biases; four RMSNorms and per-head q/k RMSNorms of
    /// `head_dim` (the v norm has no weight): Gemma-4's
    /// `Gemma4VisionEncoderLayer`.
    GatedNoBias {
        /// Width of one attention head (of its q and k norms).
        head_dim: u64,
    },
    /// A fused q/k/v projection to `attention_width` each and an output
    /// back, a two-matrix MLP, two RMSNorms, no biases (Kimi-K3's MoonViT3d
    /// blocks, `qkv_hidden_size` wider than the encoder).
    PlainNoBias {
        /// Width of q, k and v (all heads).
        attention_width: u64,
    },
}

/// The bridge from a vision encoder into the language model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum VisionProjector {
    /// One matrix, encoder width to language width (Llama 4).
    Linear,
    /// Qwen-VL patch mergers: `merge` neighbouring patches concatenated,
    /// LayerNorm, a two-layer MLP (merged → merged → language width, with
    /// biases); `mergers` of them (the final one plus one per DeepStack
    /// level, whose norm is over the merged width).
    PatchMerger {
        /// Patches merged into one token (spatial_merge_size²).
        merge: u64,
        /// Mergers in the checkpoint (1 + DeepStack levels).
        mergers: u64,
    },
    /// Kimi-K3's PatchMergerMLPV2: `merged_width` features (the merge
    /// kernel's patches concatenated) through merged → merged → language
    /// width without biases, then an RMSNorm of the language width.
    MergedMlp {
        /// Features of one merged token (merge kernel area × patch width).
        merged_width: u64,
    },
}

/// Stored precision of each weight group and of the caches.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Dtypes {
    /// Attention (and linear-attention) projections.
    pub attention: DType,
    /// Routed experts.
    pub experts: DType,
    /// Shared experts and dense MLPs.
    pub dense: DType,
    /// Token embedding.
    pub embedding: DType,
    /// Output projection.
    pub(crate) lm_head: DType,
    /// KV cache.
    pub kv_cache: DType,
    /// Recurrent state of linear-attention layers.
    pub state: DType,
}

impl Dtypes {
    /// Every group in one precision (KV cache too; state in fp32).
    pub fn uniform(d: DType) -> Self {
        Dtypes {
            attention: d,
            experts: d,
            dense: d,
            embedding: d,
            lm_head: d,
            kv_cache: d,
            state: DType::Fp32,
        }
    }
}

/// A group of weights stored in one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightGroup {
    /// The routed experts.
    Experts,
    /// The shared experts and dense MLPs.
    Dense,
}

impl WeightGroup {
    /// Its name in prose.
    pub fn name(self) -> &'static str {
        match self {
            WeightGroup::Experts => "expert",
            WeightGroup::Dense => "dense MLP",
        }
    }
}

/// A weight group a plan stores otherwise than the checkpoint
/// (`Model::requantised`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requantised {
    /// The group.
    pub group: WeightGroup,
    /// Its type in the checkpoint.
    pub checkpoint: DType,
    /// Its type in the plan.
    pub planned: DType,
}

/// A validated model.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Model {
    /// Short name (catalog id or file stem).
    pub name: String,
    /// The architecture it was read as (HF class name, or `native`).
    pub architecture: String,
    /// Residual width.
    pub hidden_size: u64,
    /// Vocabulary size.
    pub vocab_size: u64,
    /// Embedding and LM head share one matrix.
    pub tie_word_embeddings: bool,
    /// Softmax attention shape (of every softmax layer, or of the full
    /// layers when `sliding_attention` is set).
    pub attention: Attention,
    /// The attention of sliding-window layers when it differs from
    /// `attention` (Gemma-4, MiMo-V2-Flash: other heads, head dims, sinks).
    pub sliding_attention: Option<Attention>,
    /// Which norm weights each layer carries.
    pub norms: NormPlacement,
    /// DSA sparse indexer, if any.
    pub indexer: Option<SparseIndexer>,
    /// Linear attention shape, if any layer uses it.
    pub linear_attention: Option<LinearAttention>,
    /// Mamba-2 shape, if any layer uses it.
    pub(crate) mamba: Option<Mamba2>,
    /// How the MLPs (dense and experts) are built.
    pub(crate) gating: Gating,
    /// The MoE block, if any layer uses it.
    pub moe: Option<Moe>,
    /// Intermediate width of dense MLP layers.
    pub dense_intermediate_size: u64,
    /// Every decoder layer in order.
    pub layers: Vec<Layer>,
    /// A vision encoder in the checkpoint, if any.
    pub vision: Option<VisionEncoder>,
    /// Stored precisions.
    pub dtypes: Dtypes,
    /// The total the user's source declares, if it does.
    pub declared_params: Option<f64>,
    /// Assumptions made where the source was silent (shown to the user).
    pub assumptions: Vec<String>,
    /// The longest context (prompt + output) the model was trained for, when
    /// its config states it (`max_position_embeddings`).
    pub max_context: Option<u64>,
    /// Hyper-connections in place of the plain residual (DeepSeek-V4), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hyper_connections: Option<HyperConnections>,
    /// Multi-token-prediction layers the checkpoint ships for speculative
    /// decoding (`num_nextn_predict_layers` and the like; 0: none). Not
    /// counted in the parameters, and not costed: an estimate says so.
    #[serde(skip_serializing_if = "crate::model::is_zero")]
    pub mtp_layers: u32,
    /// The attention, expert and dense weight types of the checkpoint the
    /// model was read from, where `store_weights` stored them otherwise
    /// (None: as the checkpoint stores them).
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) checkpoint_weights: Option<[DType; 3]>,
}

/// Whether a count is zero (a field left out of JSON when it is).
pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Manifold-constrained hyper-connections (DeepSeek-V4's `hc_mult`): the
/// residual stream is `streams` copies of the hidden state; before each
/// block (mixer, FFN) a projection of all copies (`(2 + streams) · streams`
/// outputs from `streams · hidden` inputs, plus a bias and three scales)
/// gives the weights that collapse the copies into the block's input,
/// spread its output back, and mix the copies (Sinkhorn-normalised); a
/// last projection (`streams` outputs, a bias of `streams`, one scale)
/// collapses them before the final norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct HyperConnections {
    /// Residual streams (`hc_mult`).
    pub streams: u64,
}

impl HyperConnections {
    /// Mixing parameters before one block.
    pub(crate) fn block_params(self, hidden: u64) -> f64 {
        let (m, h) = (self.streams as f64, hidden as f64);
        let mix = (2.0 + m) * m;
        mix * m * h + mix + 3.0
    }

    /// The collapsing projection before the final norm.
    pub(crate) fn head_params(self, hidden: u64) -> f64 {
        let (m, h) = (self.streams as f64, hidden as f64);
        m * m * h + m + 1.0
    }

    /// FLOP per token around one block (`hc_pre` and `hc_post` of
    /// DeepSeek-V4's `model.py`): the mixing projection of the `streams ·
    /// hidden` copies to `(2 + streams) · streams` weights, the RMS scale of
    /// the copies, their collapse into the block's input, and after the
    /// block its output spread over the copies (`post`) beside the copies'
    /// `streams × streams` mix (`comb`): `2·m·h·((2+m)·m + m + 3)`. The
    /// Sinkhorn iterations on the `m × m` mix are left out (`m²` per
    /// iteration, not `h`).
    pub(crate) fn block_flop(self, hidden: u64) -> f64 {
        let (m, h) = (self.streams as f64, hidden as f64);
        2.0 * m * h * ((2.0 + m) * m + m + 3.0)
    }

    /// FLOP per token of the last collapse before the final norm: its
    /// projection to `streams` weights, the RMS scale and the collapse,
    /// `2·m·h·(m + 2)`.
    pub(crate) fn head_flop(self, hidden: u64) -> f64 {
        let (m, h) = (self.streams as f64, hidden as f64);
        2.0 * m * h * (m + 2.0)
    }

    /// HBM bytes per token around one block, the copies in bf16: `hc_pre`
    /// reads them, `hc_post` reads them and the block's output and writes
    /// them, `2 · (3·m·h + h)`.
    pub(crate) fn block_bytes(self, hidden: u64) -> f64 {
        let (m, h) = (self.streams as f64, hidden as f64);
        2.0 * (3.0 * m * h + h)
    }
}

/// The components parameters are reported by.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Token embedding.
    Embedding,
    /// Softmax attention projections, biases, sinks, indexer.
    Attention,
    /// Linear-attention (Gated DeltaNet) and Mamba-2 mixers: projections,
    /// convolution, gates.
    LinearAttention,
    /// Router (gate) weights.
    Router,
    /// Routed experts.
    RoutedExperts,
    /// Shared experts (and their gate).
    SharedExperts,
    /// Dense MLP layers.
    DenseMlp,
    /// Normalisation weights.
    Norms,
    /// Output projection.
    LmHead,
    /// Vision encoder and projector.
    VisionEncoder,
}

impl Component {
    /// Every component in report order.
    pub const ALL: [Component; 10] = [
        Component::Embedding,
        Component::Attention,
        Component::LinearAttention,
        Component::Router,
        Component::RoutedExperts,
        Component::SharedExperts,
        Component::DenseMlp,
        Component::Norms,
        Component::LmHead,
        Component::VisionEncoder,
    ];

    /// The snake_case name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Component::Embedding => "embedding",
            Component::Attention => "attention",
            Component::LinearAttention => "linear_attention",
            Component::Router => "router",
            Component::RoutedExperts => "routed_experts",
            Component::SharedExperts => "shared_experts",
            Component::DenseMlp => "dense_mlp",
            Component::Norms => "norms",
            Component::LmHead => "lm_head",
            Component::VisionEncoder => "vision_encoder",
        }
    }
}

/// Parameters of one layer, split by how parallelism shards them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub(crate) struct LayerParams {
    /// Attention weights split by TP across heads (q, o, MLA up-projections, sinks).
    pub(crate) attn_sharded: f64,
    /// GQA k and v projections: split by TP up to the KV head count, replicated beyond.
    pub(crate) attn_kv: f64,
    /// Attention weights every TP rank holds whole (MLA down-projections, indexer).
    pub(crate) attn_replicated: f64,
    /// Linear-attention or Mamba-2 weights (split by TP across heads).
    pub(crate) linear_attn: f64,
    /// Router weights (replicated).
    pub router: f64,
    /// All routed experts of the layer.
    pub(crate) routed_experts: f64,
    /// One routed expert.
    pub(crate) per_expert: f64,
    /// The latent projections around the routed experts (replicated, every
    /// token uses them; included in `routed_experts`).
    pub latent: f64,
    /// Shared experts (split by TP).
    pub shared: f64,
    /// Dense MLP (split by TP).
    pub dense: f64,
    /// Norm weights (replicated).
    pub norms: f64,
}

/// Totals for one component.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ComponentParams {
    /// Parameters stored.
    pub total: Params,
    /// Parameters a token uses.
    pub active: Params,
    /// Stored precision.
    pub dtype: DType,
    /// Bytes stored.
    pub bytes: Bytes,
}

/// Parameter accounting of the whole model.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ParamReport {
    /// Per component, in report order (components with no parameters omitted).
    pub by_component: BTreeMap<Component, ComponentParams>,
    /// Sum of all components.
    pub total: Params,
    /// Parameters a token uses (embedding row and LM head included, as published figures do).
    pub active: Params,
    /// Bytes of all weights at their stored precision.
    pub weight_bytes: Bytes,
}

impl Model {
    /// Stores the weights as a re-quantisation to `w` stores them: what
    /// `--weight-dtype`, a scenario's `model.weight_dtype`, a runs file's
    /// weight type and a catalog id of a quantised re-release mean, one rule
    /// for all. The checkpoint's own type (its routed experts', or a dense
    /// model's MLPs') is the checkpoint as it is. Otherwise, at 8 bits or
    /// more, attention, routed experts and dense MLPs (shared experts
    /// included) take `w`; under a 4-bit type the routed experts (and a
    /// dense model's MLPs) take `w`, and attention and an MoE model's dense
    /// MLPs stay in 8 bits: FP8, or the checkpoint's type where that has at
    /// most 8 bits. So NVIDIA's NVFP4 re-quantisations keep them: their
    /// `hf_quant_config.json` excludes the attention projections of
    /// DeepSeek-V3.1, GLM-5, Kimi-K2.6, MiniMax-M2.5 and Qwen3.5, and the
    /// shared experts of Kimi-K2.6, GLM-5.1 and Qwen3.5 (DeepSeek-V3.1's are
    /// NVFP4). Embedding and output projection keep their type.
    pub fn store_weights(&mut self, w: DType) {
        let d = &self.dtypes;
        let checkpoint = self
            .checkpoint_weights
            .unwrap_or([d.attention, d.experts, d.dense]);
        let own = if self.moe.is_some() {
            checkpoint[1]
        } else {
            checkpoint[2]
        };
        let at_most_eight_bit = |kept: DType| if kept.bits() <= 8.0 { kept } else { DType::Fp8 };
        let four_bit = w.bits() < 8.0;
        let stored = if w == own {
            checkpoint
        } else if four_bit && self.moe.is_some() {
            [
                at_most_eight_bit(checkpoint[0]),
                w,
                at_most_eight_bit(checkpoint[2]),
            ]
        } else if four_bit {
            [at_most_eight_bit(checkpoint[0]), w, w]
        } else {
            [w; 3]
        };
        self.checkpoint_weights = (checkpoint != stored).then_some(checkpoint);
        [
            self.dtypes.attention,
            self.dtypes.experts,
            self.dtypes.dense,
        ] = stored;
    }

    /// This model as a quantised re-release of its checkpoint stores it
    /// (`store_weights`): a checkpoint of its own, so nothing is
    /// re-quantised at launch.
    pub(crate) fn released_as(mut self, w: DType) -> Model {
        self.store_weights(w);
        self.checkpoint_weights = None;
        self
    }

    /// The first weight group `store_weights` stores otherwise than the
    /// checkpoint the model was read from: the routed experts (of an MoE
    /// model), then the dense MLPs. An engine loads a checkpoint's weights
    /// as they are stored, so a launch of such a model needs weights stored
    /// as planned. Attention is not compared: a quantised re-release's
    /// attention type is not known (NVIDIA's NVFP4 checkpoints keep it in
    /// FP8, others quantise it with the rest).
    pub fn requantised(&self) -> Option<Requantised> {
        let [_, experts, dense] = self.checkpoint_weights?;
        self.stored_otherwise_than(experts, dense)
    }

    /// The type `store_weights` stored the weights in, where it changed
    /// the checkpoint's: the routed experts' of an MoE model, else the
    /// dense layers' (under a 4-bit type attention, and an MoE model's
    /// dense layers, hold 8 bits).
    pub fn weights_stored_as(&self) -> Option<DType> {
        self.checkpoint_weights?;
        Some(match self.moe {
            Some(_) => self.dtypes.experts,
            None => self.dtypes.dense,
        })
    }

    /// `requantised` against another checkpoint of this model (`weights`,
    /// as the catalog knows it): where this model stores its weights
    /// otherwise than that checkpoint does.
    pub fn requantised_against(&self, weights: &Model) -> Option<Requantised> {
        self.stored_otherwise_than(weights.dtypes.experts, weights.dtypes.dense)
    }

    fn stored_otherwise_than(&self, experts: DType, dense: DType) -> Option<Requantised> {
        let moe = self.moe.is_some();
        [
            (WeightGroup::Experts, experts, self.dtypes.experts, moe),
            (WeightGroup::Dense, dense, self.dtypes.dense, true),
        ]
        .into_iter()
        .find(|&(_, checkpoint, planned, held)| held && checkpoint != planned)
        .map(|(group, checkpoint, planned, _)| Requantised {
            group,
            checkpoint,
            planned,
        })
    }

    /// Stores the KV cache as `k`, where `gpu` can hold it
    /// (`Gpu::kv_cache_dtype`); else the reason it cannot.
    pub fn store_kv_cache(&mut self, k: DType, gpu: &crate::hardware::Gpu) -> Result<(), String> {
        self.dtypes.kv_cache = gpu.kv_cache_dtype(k)?;
        Ok(())
    }

    /// Stores the KV cache as `k` where the GPU and the serving engine can
    /// both hold it: the one check of a scenario's `model.kv_cache_dtype`
    /// and a measured run's `kv_dtype`; else why not.
    pub fn store_kv_cache_on(
        &mut self,
        k: DType,
        gpu: &crate::hardware::Gpu,
        engine: crate::engine::Engine,
    ) -> Result<(), String> {
        self.store_kv_cache(k, gpu)?;
        engine.stores_kv_cache(self.dtypes.kv_cache)
    }

    /// The warning for a request of `isl` prompt and `osl` output tokens
    /// longer than the context the model was trained for
    /// (`max_position_embeddings`); None when it fits or the config is silent.
    /// The one wording `estimate`, `plan`, `launch` and `simulate` give.
    pub fn context_warning(&self, isl: u64, osl: u64) -> Option<String> {
        let context = isl.saturating_add(osl);
        let max = self.max_context.filter(|m| context > *m)?;
        Some(format!(
            "a request of {isl} prompt + {osl} output tokens ({context}) exceeds the {max} tokens of context {} was trained for (max_position_embeddings): engines refuse it unless RoPE scaling is configured",
            self.name
        ))
    }

    /// Layers of the model.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Layers whose FFN is the MoE block.
    pub fn n_moe_layers(&self) -> usize {
        self.layers.iter().filter(|l| l.ffn == Ffn::Moe).count()
    }

    /// Parameters of one layer, by sharding class: one pre-norm per block
    /// (mixer, FFN) the layer has.
    pub(crate) fn layer_params(&self, layer: &Layer) -> LayerParams {
        let mut p = LayerParams {
            norms: self.layer_norm_params(layer),
            ..LayerParams::default()
        };
        match layer.mixer {
            Mixer::Full
            | Mixer::FullDense
            | Mixer::FullKv { .. }
            | Mixer::Sliding { .. }
            | Mixer::Compressed { .. } => {
                let attn = self.attention_of(layer.mixer).expect("softmax mixer");
                self.softmax_attention_params(&attn, &mut p);
                self.indexer_params(&attn, layer.mixer, &mut p);
                self.compressor_params(layer.mixer, &mut p);
            }
            Mixer::Linear => p.linear_attn = self.delta_rule_params(),
            Mixer::Mamba => p.linear_attn = self.mamba_params(),
            Mixer::Projection => p.attn_sharded = (self.hidden_size * self.hidden_size) as f64,
            Mixer::Absent => {}
        }
        match layer.ffn {
            Ffn::Dense | Ffn::DenseOf { .. } => {
                let width = self.dense_width(layer.ffn).unwrap_or(0);
                p.dense = self.gating.matrices() * self.hidden_size as f64 * width as f64
            }
            Ffn::Projection => p.dense = (self.hidden_size * self.hidden_size) as f64,
            Ffn::Moe => self.moe_params(&mut p),
            Ffn::Absent => {}
        }
        p
    }

    /// Norm weights of one layer outside its attention's q/k norms: one
    /// per block before it, or Gemma-4's sandwich (before and after each
    /// block, a layer scalar; in a MoE layer three branch norms and the
    /// router's input scale).
    fn layer_norm_params(&self, layer: &Layer) -> f64 {
        let h = self.hidden_size as f64;
        let blocks = layer.blocks() as f64;
        let vectors = self.norms.vectors_per_block() * blocks * h;
        let hyper = self
            .hyper_connections
            .map_or(0.0, |hc| blocks * hc.block_params(self.hidden_size));
        match self.norms {
            NormPlacement::Pre | NormPlacement::AttentionResiduals { .. } => vectors + hyper,
            NormPlacement::Sandwich => {
                let branches = match layer.ffn {
                    Ffn::Moe => 4.0 * h,
                    Ffn::Dense | Ffn::DenseOf { .. } | Ffn::Projection | Ffn::Absent => 0.0,
                };
                vectors + branches + 1.0
            }
        }
    }

    /// The softmax attention a layer with `mixer` runs: sliding-window
    /// layers take `sliding_attention` when the model has one; None for
    /// mixers without softmax attention.
    pub fn attention_of(&self, mixer: Mixer) -> Option<Attention> {
        match mixer {
            Mixer::Full | Mixer::FullDense | Mixer::Compressed { .. } => Some(self.attention),
            Mixer::FullKv { kv_heads } => Some(self.attention.with_kv_heads(kv_heads)),
            Mixer::Sliding { .. } => Some(self.sliding_attention.unwrap_or(self.attention)),
            Mixer::Linear | Mixer::Mamba | Mixer::Absent | Mixer::Projection => None,
        }
    }

    /// The sparse indexer a layer with `mixer` attends through: the
    /// model's, on its full-attention layers only (a compressed layer's
    /// indexer works over its compressed entries: `compressor_params`).
    pub(crate) fn indexer_of(&self, mixer: Mixer) -> Option<&SparseIndexer> {
        match mixer {
            Mixer::Full | Mixer::FullKv { .. } => self.indexer.as_ref(),
            Mixer::FullDense
            | Mixer::Sliding { .. }
            | Mixer::Compressed { .. }
            | Mixer::Linear
            | Mixer::Mamba
            | Mixer::Absent
            | Mixer::Projection => None,
        }
    }

    /// Every softmax attention shape of the model: `attention`, the sliding
    /// layers' when they have their own, and each layer's own KV head count
    /// (repeats included).
    pub(crate) fn attentions(&self) -> impl Iterator<Item = Attention> + '_ {
        let per_layer = self
            .layers
            .iter()
            .filter(|l| l.mixer.kv_heads().is_some())
            .filter_map(|l| self.attention_of(l.mixer));
        std::iter::once(self.attention)
            .chain(self.sliding_attention)
            .chain(per_layer)
    }

    /// The intermediate width of a dense MLP block `ffn` (None for the
    /// other blocks).
    pub(crate) fn dense_width(&self, ffn: Ffn) -> Option<u64> {
        match ffn {
            Ffn::Dense => Some(self.dense_intermediate_size),
            Ffn::DenseOf { intermediate_size } => Some(intermediate_size),
            Ffn::Moe | Ffn::Projection | Ffn::Absent => None,
        }
    }

    /// The widest dense MLP of any layer (0 without one).
    pub(crate) fn widest_dense(&self) -> u64 {
        self.layers
            .iter()
            .filter_map(|l| self.dense_width(l.ffn))
            .max()
            .unwrap_or(0)
    }

    /// One delta-rule linear-attention layer (`LinearGates`). Gated
    /// DeltaNet: in_proj for q, k, v and the output gate z; b and a gates
    /// per value head; depthwise causal conv over q, k, v; dt bias and A
    /// per value head; gated RMSNorm over the value head dim; output
    /// projection. Kimi Delta Attention: q, k, v projections and their
    /// convolutions; the decay's low-rank pair, a dt bias per key channel
    /// and an A per head; β per head; the output gate (full rank or a
    /// low-rank pair); the gated RMSNorm and the output projection.
    fn delta_rule_params(&self) -> f64 {
        let h = self.hidden_size as f64;
        let la = self
            .linear_attention
            .as_ref()
            .expect("validated: linear layers imply a linear-attention shape");
        let (nk, nv) = (la.n_key_heads as f64, la.n_value_heads as f64);
        let (dk, dv) = (la.key_head_dim as f64, la.value_head_dim as f64);
        let qkv = 2.0 * nk * dk + nv * dv;
        match la.gates {
            LinearGates::GatedDeltaNet => {
                h * (qkv + nv * dv)
                    + h * 2.0 * nv
                    + qkv * la.conv_kernel as f64
                    + 2.0 * nv
                    + dv
                    + nv * dv * h
            }
            LinearGates::KimiDelta {
                decay_rank,
                output_gate_rank,
            } => {
                let low_rank = |r: u64, out: f64| r as f64 * (h + out);
                let keys = nk * dk;
                let gate = output_gate_rank.map_or(h * nv * dv, |r| low_rank(r, nv * dv));
                h * qkv
                    + qkv * la.conv_kernel as f64
                    + low_rank(decay_rank, keys)
                    + keys
                    + nv
                    + h * nv
                    + gate
                    + dv
                    + nv * dv * h
            }
        }
    }

    /// One Mamba-2 mixer: in_proj hidden → (z, x, B, C, dt), the depthwise
    /// causal conv over x, B, C (+ bias), dt_bias, A_log and D per head, the
    /// gated RMSNorm over d_inner, out_proj d_inner → hidden.
    fn mamba_params(&self) -> f64 {
        let h = self.hidden_size as f64;
        let mb = self
            .mamba
            .as_ref()
            .expect("validated: Mamba layers imply a Mamba-2 shape");
        let (d_inner, conv) = (mb.d_inner() as f64, mb.conv_dim() as f64);
        let in_proj = mb.in_proj_dim() as f64;
        let proj_bias = if mb.proj_bias { in_proj + h } else { 0.0 };
        let conv_bias = if mb.conv_bias { conv } else { 0.0 };
        h * in_proj
            + conv * mb.conv_kernel as f64
            + conv_bias
            + 3.0 * mb.n_heads as f64
            + d_inner
            + d_inner * h
            + proj_bias
    }

    /// One MoE block: routed experts (in the latent when there is one, with
    /// its two projections counted with the routed experts), router, shared
    /// experts (in the hidden width).
    fn moe_params(&self, p: &mut LayerParams) {
        let h = self.hidden_size as f64;
        let moe = self
            .moe
            .as_ref()
            .expect("validated: MoE layers imply a MoE shape");
        let e = moe.n_routed_experts as f64;
        let inter = moe.expert_intermediate_size as f64;
        let width = moe.expert_width(self.hidden_size) as f64;
        let bias = if moe.expert_bias {
            self.gating.input_matrices() * inter + width
        } else {
            0.0
        };
        p.per_expert = self.gating.matrices() * width * inter + bias;
        p.latent = moe.latent_size.map_or(0.0, |l| {
            let l = l as f64;
            let bias = if moe.expert_bias { l + h } else { 0.0 };
            2.0 * h * l + bias
        });
        p.routed_experts = e * p.per_expert + p.latent;
        p.router = h * e + if moe.router_bias { e } else { 0.0 };
        let shared_inter = moe.shared_intermediate_size as f64;
        p.shared = moe.n_shared_experts as f64 * self.gating.matrices() * h * shared_inter
            + if moe.shared_expert_gate { h } else { 0.0 };
    }

    /// The weights of one softmax attention layer of shape `attn`: q, k,
    /// v (when projected), o, their biases, q/k norms, sinks; MLA's
    /// projections and DSA's indexer.
    fn softmax_attention_params(&self, attn: &Attention, p: &mut LayerParams) {
        let h = self.hidden_size as f64;
        match attn {
            Attention::Gqa {
                n_heads,
                n_kv_heads,
                head_dim,
                values,
                qkv_bias,
                o_bias,
                qk_norm,
                sinks,
                output_gate,
            } => {
                let q = (*n_heads * *head_dim) as f64;
                let o = (*n_heads * values.head_dim(*head_dim)) as f64;
                let kv = (*n_kv_heads * (*head_dim + values.projected_dim())) as f64;
                let q_out = q + output_gate.columns(*n_heads, *head_dim) as f64;
                p.attn_sharded = h * q_out
                    + o * h
                    + if *qkv_bias { q } else { 0.0 }
                    + if *sinks { *n_heads as f64 } else { 0.0 };
                p.attn_kv = h * kv + if *qkv_bias { kv } else { 0.0 };
                p.attn_replicated = if *o_bias { h } else { 0.0 };
                if *qk_norm {
                    p.norms += 2.0 * *head_dim as f64;
                }
            }
            Attention::Mla {
                n_heads,
                q_lora_rank,
                kv_lora_rank,
                qk_nope_head_dim,
                qk_rope_head_dim,
                v_head_dim,
                output_gate,
            } => {
                let nh = *n_heads as f64;
                let qk_head = (*qk_nope_head_dim + *qk_rope_head_dim) as f64;
                let (kvr, rope) = (*kv_lora_rank as f64, *qk_rope_head_dim as f64);
                match q_lora_rank {
                    Some(r) => {
                        let r = *r as f64;
                        p.attn_replicated += h * r; // q_a_proj
                        p.norms += r; // q_a_layernorm
                        p.attn_sharded += r * nh * qk_head; // q_b_proj
                    }
                    None => p.attn_sharded += h * nh * qk_head,
                }
                p.attn_replicated += h * (kvr + rope); // kv_a_proj_with_mqa
                p.norms += kvr; // kv_a_layernorm
                p.attn_sharded += kvr * nh * (*qk_nope_head_dim + *v_head_dim) as f64; // kv_b_proj
                p.attn_sharded += nh * *v_head_dim as f64 * h; // o_proj
                if *output_gate {
                    p.attn_sharded += h * nh * *v_head_dim as f64; // g_proj
                }
            }
            Attention::SharedKv {
                n_heads,
                q_lora_rank,
                head_dim,
                o_lora_rank,
                o_groups,
                ..
            } => {
                let (nh, r, hd) = (*n_heads as f64, *q_lora_rank as f64, *head_dim as f64);
                let o_lora = *o_lora_rank as f64;
                p.attn_replicated += h * r + h * hd; // wq_a, wkv (the shared head)
                p.norms += r + hd; // q_norm, kv_norm
                p.attn_sharded += r * nh * hd; // wq_b
                p.attn_sharded += nh * hd * o_lora; // wo_a: each group's heads → o_lora
                p.attn_sharded += *o_groups as f64 * o_lora * h; // wo_b
                p.attn_sharded += nh; // attn_sink
            }
        }
    }

    /// The compressor of a `Mixer::Compressed` layer (DeepSeek-V4), every
    /// TP rank holding it whole: projections of the hidden state to the
    /// entries' values and pooling scores (`2 · windows · head_dim`
    /// columns), a learned position bias per slot of the window (`ratio ·
    /// windows · head_dim`) and the entries' RMSNorm. CSA's pools
    /// overlapping windows (two per entry), HCA's one. A CSA layer also
    /// holds its indexer: q from the query latent (`q_lora · heads ·
    /// head_dim`), per-head weights from the hidden state, and a compressor
    /// of its own keys (overlapping, `index_head_dim` wide).
    fn compressor_params(&self, mixer: Mixer, p: &mut LayerParams) {
        let Mixer::Compressed {
            ratio, selection, ..
        } = mixer
        else {
            return;
        };
        let h = self.hidden_size as f64;
        let compressor = |width: f64, windows: f64| {
            h * 2.0 * windows * width + ratio as f64 * windows * width + width
        };
        let head_dim = match self.attention {
            Attention::SharedKv { head_dim, .. } => head_dim as f64,
            Attention::Gqa { head_dim, .. } => head_dim as f64,
            Attention::Mla { kv_lora_rank, .. } => kv_lora_rank as f64,
        };
        match (selection, &self.indexer) {
            (Selection::Indexed, Some(ix)) => {
                let (ih, id) = (ix.n_heads as f64, ix.head_dim as f64);
                let q_in = match self.attention {
                    Attention::SharedKv { q_lora_rank, .. } => q_lora_rank as f64,
                    Attention::Gqa { .. } | Attention::Mla { .. } => h,
                };
                p.attn_replicated +=
                    compressor(head_dim, 2.0) + q_in * ih * id + h * ih + compressor(id, 2.0);
            }
            (Selection::Indexed, None) | (Selection::All, _) => {
                p.attn_replicated += compressor(head_dim, 1.0)
            }
        }
    }

    /// The sparse indexer's weights in a layer with `mixer` of shape
    /// `attn` (none without one). DSA beside MLA: wq_b from the q latent,
    /// wk from the hidden state, a k LayerNorm (weight and bias), a per-head
    /// weights projection, all replicated. MiniMax-M3's beside GQA: an
    /// index q projection split with the heads, one replicated index key
    /// head, q and k norms over the index head dim.
    fn indexer_params(&self, attn: &Attention, mixer: Mixer, p: &mut LayerParams) {
        let Some(ix) = self.indexer_of(mixer) else {
            return;
        };
        let h = self.hidden_size as f64;
        let (ih, id) = (ix.n_heads as f64, ix.head_dim as f64);
        match attn {
            Attention::Mla { q_lora_rank, .. } => {
                let q_in = q_lora_rank.map(|r| r as f64).unwrap_or(h);
                p.attn_replicated += q_in * ih * id + h * id + 2.0 * id + h * ih;
            }
            Attention::Gqa { .. } => {
                p.attn_sharded += h * ih * id;
                p.attn_replicated += h * id;
                p.norms += 2.0 * id;
            }
            // DeepSeek-V4's indexer sits in its compressed layers' compressor
            // (`compressor_params`).
            Attention::SharedKv { .. } => {}
        }
    }

    /// Stored and active parameters per component (indexed by
    /// `Component as usize`), summed layer by layer in model order.
    fn component_sums(&self) -> ([f64; 10], [f64; 10]) {
        let h = self.hidden_size as f64;
        let v = self.vocab_size as f64;
        let mut total = [0.0f64; 10];
        let mut active = [0.0f64; 10];
        let mut add = |c: Component, t: f64, a: f64| {
            total[c as usize] += t;
            active[c as usize] += a;
        };
        add(Component::Embedding, v * h, v * h);
        if !self.tie_word_embeddings {
            add(Component::LmHead, v * h, v * h);
        }
        add(Component::Norms, h, h); // final norm
        match self.norms {
            // The output's own norm and pseudo-query over the stored residuals.
            NormPlacement::AttentionResiduals { .. } => add(Component::Norms, 2.0 * h, 2.0 * h),
            NormPlacement::Pre | NormPlacement::Sandwich => {}
        }
        if let Some(hc) = self.hyper_connections {
            let head = hc.head_params(self.hidden_size);
            add(Component::Norms, head, head);
        }
        let k = self.moe.as_ref().map_or(0, |m| m.experts_per_token) as f64;
        let mut memo = LayerParamsMemo::new(self);
        for layer in &self.layers {
            let p = memo.get(layer);
            let attn = p.attn_sharded + p.attn_kv + p.attn_replicated;
            add(Component::Attention, attn, attn);
            add(Component::LinearAttention, p.linear_attn, p.linear_attn);
            add(Component::Router, p.router, p.router);
            add(
                Component::RoutedExperts,
                p.routed_experts,
                k * p.per_expert + p.latent,
            );
            add(Component::SharedExperts, p.shared, p.shared);
            add(Component::DenseMlp, p.dense, p.dense);
            add(Component::Norms, p.norms, p.norms);
        }
        if let Some(vis) = &self.vision {
            add(Component::VisionEncoder, vision_params(vis), 0.0);
        }
        (total, active)
    }

    /// Parameters of the vision encoder and projector (0 without one).
    pub(crate) fn vision_params(&self) -> f64 {
        self.vision.as_ref().map_or(0.0, vision_params)
    }

    /// Parameter accounting by component.
    pub fn params(&self) -> ParamReport {
        let (total, active) = self.component_sums();
        let mut by_component = BTreeMap::new();
        for c in Component::ALL {
            let t = total[c as usize];
            if t == 0.0 {
                continue;
            }
            let dtype = self.component_dtype(c);
            by_component.insert(
                c,
                ComponentParams {
                    total: Params(t),
                    active: Params(active[c as usize]),
                    dtype,
                    bytes: Bytes(t * dtype.bytes()),
                },
            );
        }
        ParamReport {
            total: by_component.values().map(|c| c.total).sum(),
            active: by_component.values().map(|c| c.active).sum(),
            weight_bytes: by_component.values().map(|c| c.bytes).sum(),
            by_component,
        }
    }

    /// The stored precision of a component.
    pub(crate) fn component_dtype(&self, c: Component) -> DType {
        let d = &self.dtypes;
        match c {
            Component::Embedding => d.embedding,
            Component::LmHead => d.lm_head,
            Component::Attention | Component::LinearAttention => d.attention,
            Component::RoutedExperts => d.experts,
            Component::SharedExperts | Component::DenseMlp => d.dense,
            // Routers, norms and vision towers stay in 16 bits in every
            // quantised checkpoint we import (they are in the exclusion lists).
            Component::Router | Component::Norms | Component::VisionEncoder => {
                if d.embedding.bits() >= 16.0 {
                    d.embedding
                } else {
                    DType::Bf16
                }
            }
        }
    }

    /// Bytes of KV cache one token adds in one layer (0 for linear
    /// attention, Mamba and layers without a mixer).
    pub(crate) fn kv_bytes_per_token_layer(&self, layer: &Layer) -> Bytes {
        let Some(attn) = self.attention_of(layer.mixer) else {
            return Bytes::ZERO;
        };
        let attn = &attn;
        let b = self.dtypes.kv_cache.bytes();
        let elems = match attn {
            Attention::Gqa {
                n_kv_heads,
                head_dim,
                values,
                ..
            } => {
                n_kv_heads * (head_dim + values.head_dim(*head_dim))
                    + self.indexer_key_dim(layer.mixer)
            }
            Attention::Mla {
                kv_lora_rank,
                qk_rope_head_dim,
                ..
            } => kv_lora_rank + qk_rope_head_dim + self.indexer_key_dim(layer.mixer),
            Attention::SharedKv { .. } => return self.shared_kv_bytes_per_token(layer.mixer),
        };
        Bytes(elems as f64 * b)
    }

    /// Elements of the indexer's key one token adds in a layer with
    /// `mixer` (one head of the index dim; 0 without an indexer).
    pub(crate) fn indexer_key_dim(&self, mixer: Mixer) -> u64 {
        self.indexer_of(mixer).map_or(0, |i| i.head_dim)
    }

    /// One cached entry of DeepSeek-V4's shared key-value head, as its
    /// engines store it: the non-rotary part in the cache type (fp8 with
    /// one ue8m0 scale byte per 64 and a pad byte; FlashMLA's 584-byte
    /// layout), the rotary part in bf16.
    pub(crate) fn shared_kv_entry_bytes(&self) -> Bytes {
        let Attention::SharedKv {
            head_dim,
            qk_rope_head_dim,
            ..
        } = self.attention
        else {
            return Bytes::ZERO;
        };
        let b = self.dtypes.kv_cache.bytes();
        let nope = head_dim.saturating_sub(qk_rope_head_dim) as f64;
        let scales = if b < 2.0 { nope / 64.0 + 1.0 } else { 0.0 };
        Bytes(nope * b + qk_rope_head_dim as f64 * b.max(2.0) + scales)
    }

    /// One cached key of the indexer's compressed keys (fp8 with an fp32
    /// scale per 128, DeepSeek-V3.2's 132-byte layout; 0 without an indexer).
    pub(crate) fn index_entry_bytes(&self) -> Bytes {
        let b = self.dtypes.kv_cache.bytes();
        self.indexer.as_ref().map_or(Bytes::ZERO, |ix| {
            let id = ix.head_dim as f64;
            let scales = if b < 2.0 { id / 128.0 * 4.0 } else { 0.0 };
            Bytes(id * b + scales)
        })
    }

    /// Bytes one compressed entry of a layer with `mixer` takes: the
    /// shared head's, and the indexer's key in a CSA layer.
    pub(crate) fn compressed_entry_bytes(&self, mixer: Mixer) -> Bytes {
        match mixer.compression() {
            Some((_, Selection::Indexed)) => {
                self.shared_kv_entry_bytes() + self.index_entry_bytes()
            }
            Some((_, Selection::All)) => self.shared_kv_entry_bytes(),
            None => Bytes::ZERO,
        }
    }

    /// A DeepSeek-V4 layer's cache per token before its window fills: the
    /// token's own entry, and its share of a compressed entry.
    fn shared_kv_bytes_per_token(&self, mixer: Mixer) -> Bytes {
        let ratio = mixer
            .compression()
            .map_or(f64::INFINITY, |(ratio, _)| ratio as f64);
        self.shared_kv_entry_bytes() + self.compressed_entry_bytes(mixer) / ratio
    }

    /// KV cache of one sequence of `context` tokens in one layer, the
    /// tokens split over `cp` ranks: the kept tokens' entries (all, or the
    /// window's) and a compressed layer's compressed entries.
    pub(crate) fn kv_bytes_layer_context(&self, layer: &Layer, context: u64, cp: u32) -> Bytes {
        let per_rank = |n: u64| (n as f64 / cp as f64).ceil();
        match layer.mixer {
            Mixer::Compressed { .. } => {
                self.shared_kv_entry_bytes() * per_rank(layer.kept_tokens(context))
                    + self.compressed_entry_bytes(layer.mixer)
                        * per_rank(layer.compressed_entries(context))
            }
            Mixer::Full
            | Mixer::FullDense
            | Mixer::FullKv { .. }
            | Mixer::Sliding { .. }
            | Mixer::Linear
            | Mixer::Mamba
            | Mixer::Absent
            | Mixer::Projection => {
                self.kv_bytes_per_token_layer(layer) * per_rank(layer.kept_tokens(context))
            }
        }
    }

    /// KV cache bytes per token of context summed over all layers, for a
    /// context short enough that no sliding window has filled.
    pub fn kv_bytes_per_token(&self) -> Bytes {
        self.layers
            .iter()
            .map(|l| self.kv_bytes_per_token_layer(l))
            .sum()
    }

    /// KV cache of one sequence of `context` tokens over all layers
    /// (sliding-window layers keep at most their window).
    pub(crate) fn kv_bytes_for_context(&self, context: u64) -> Bytes {
        self.layers
            .iter()
            .map(|l| self.kv_bytes_layer_context(l, context, 1))
            .sum()
    }

    /// Fixed recurrent state of one sequence in one layer with `mixer`
    /// (0 for softmax attention and layers without a mixer).
    pub(crate) fn state_bytes_per_layer(&self, mixer: Mixer) -> Bytes {
        match mixer {
            Mixer::Linear => self.linear_state_bytes_per_layer(),
            Mixer::Mamba => self.mamba_state_bytes_per_layer(),
            Mixer::Full
            | Mixer::FullDense
            | Mixer::FullKv { .. }
            | Mixer::Sliding { .. }
            | Mixer::Compressed { .. }
            | Mixer::Absent
            | Mixer::Projection => Bytes::ZERO,
        }
    }

    /// Fixed recurrent state of one sequence in one linear-attention layer:
    /// the per-value-head dk×dv state matrix plus the convolution window.
    fn linear_state_bytes_per_layer(&self) -> Bytes {
        match &self.linear_attention {
            None => Bytes::ZERO,
            Some(la) => {
                let state = (la.n_value_heads * la.key_head_dim * la.value_head_dim) as f64
                    * self.dtypes.state.bytes();
                let conv = ((2 * la.n_key_heads * la.key_head_dim
                    + la.n_value_heads * la.value_head_dim)
                    * (la.conv_kernel.saturating_sub(1))) as f64
                    * self.dtypes.attention.bytes().max(2.0);
                Bytes(state + conv)
            }
        }
    }

    /// Fixed state of one sequence in one Mamba-2 layer: the SSM state
    /// (heads × head_dim × state_size, in `dtypes.state`,
    /// `mamba_ssm_cache_dtype`) and the last conv_kernel − 1 inputs of the
    /// convolution over x, B, C (in the model's 16-bit type).
    fn mamba_state_bytes_per_layer(&self) -> Bytes {
        match &self.mamba {
            None => Bytes::ZERO,
            Some(mb) => {
                let ssm = (mb.d_inner() * mb.state_size) as f64 * self.dtypes.state.bytes();
                let conv = (mb.conv_dim() * mb.conv_kernel.saturating_sub(1)) as f64
                    * self.dtypes.attention.bytes().max(2.0);
                Bytes(ssm + conv)
            }
        }
    }

    /// Fixed state of one sequence over all linear-attention and Mamba layers.
    pub fn linear_state_bytes_per_sequence(&self) -> Bytes {
        self.layers
            .iter()
            .map(|l| self.state_bytes_per_layer(l.mixer))
            .sum()
    }

    /// FLOP per token of the linear layers: 2 per active parameter a token
    /// multiplies (the embedding is a lookup, not a matmul; the LM head counts).
    pub fn linear_flop_per_token(&self) -> Flop {
        // The same sums as `params()` (components with parameters, in
        // report order), without building the report.
        let (total, active) = self.component_sums();
        let present = |c: Component| total[c as usize] != 0.0;
        let active_sum: f64 = Component::ALL
            .iter()
            .filter(|c| present(**c))
            .map(|c| active[*c as usize])
            .sum();
        let of = |c: Component| {
            if present(c) {
                active[c as usize]
            } else {
                0.0
            }
        };
        let mut flop = 2.0 * (active_sum - of(Component::Embedding) - of(Component::Norms));
        if self.tie_word_embeddings {
            flop += 2.0 * (self.vocab_size * self.hidden_size) as f64;
        }
        Flop(flop + self.hyper_connection_flop_per_token())
    }

    /// FLOP per token of the hyper-connections (DeepSeek-V4): around every
    /// block and the last collapse; 0 without them.
    pub(crate) fn hyper_connection_flop_per_token(&self) -> f64 {
        self.hyper_connections.map_or(0.0, |hc| {
            let blocks: f64 = self.layers.iter().map(|l| f64::from(l.blocks())).sum();
            blocks * hc.block_flop(self.hidden_size) + hc.head_flop(self.hidden_size)
        })
    }

    /// Attention-core FLOP (scores and weighted sum) for one new token that
    /// attends to `context` earlier tokens, summed over layers. Sliding
    /// layers see at most their window; DSA reads at most its top-k tokens
    /// after a cheap index pass over all of them; linear layers cost a
    /// constant state update.
    pub(crate) fn attention_flop_per_token(&self, context: u64) -> Flop {
        self.layers
            .iter()
            .map(|l| self.attention_flop_layer(l, context))
            .sum()
    }

    /// Attention-core FLOP of one layer for one token at `context`.
    pub(crate) fn attention_flop_layer(&self, layer: &Layer, context: u64) -> Flop {
        match layer.mixer {
            Mixer::Linear => {
                let la = self.linear_attention.as_ref().expect("validated");
                // State decay, rank-1 update k^T v and read q·S per value head: ~6·dk·dv.
                Flop(6.0 * (la.n_value_heads * la.key_head_dim * la.value_head_dim) as f64)
            }
            Mixer::Mamba => {
                let mb = self.mamba.as_ref().expect("validated");
                // The same recurrence per head: decay the head_dim × state
                // matrix, add dt·x·Bᵀ, read C·h: ~6 FLOP per element.
                Flop(6.0 * (mb.d_inner() * mb.state_size) as f64)
            }
            Mixer::Absent | Mixer::Projection => Flop::ZERO,
            Mixer::Compressed { selection, .. } => {
                self.compressed_attention_flop(layer, selection, context)
            }
            Mixer::Full | Mixer::FullDense | Mixer::FullKv { .. } | Mixer::Sliding { .. } => {
                let seen = layer.kept_tokens(context) as f64;
                let indexer = self.indexer_of(layer.mixer);
                match &self.attention_of(layer.mixer).expect("softmax mixer") {
                    Attention::Gqa {
                        n_heads,
                        head_dim,
                        values,
                        ..
                    } => {
                        // q·k over head_dim, p·v over the value head dim,
                        // for the top-k tokens an indexer lets through
                        // after its pass over all of them.
                        let width = *head_dim + values.head_dim(*head_dim);
                        match indexer {
                            None => Flop(2.0 * (*n_heads * width) as f64 * seen),
                            Some(ix) => Flop(
                                2.0 * (*n_heads * width) as f64 * seen.min(ix.topk as f64)
                                    + 2.0 * (ix.n_heads * ix.head_dim) as f64 * seen,
                            ),
                        }
                    }
                    Attention::Mla {
                        n_heads,
                        kv_lora_rank,
                        qk_rope_head_dim,
                        ..
                    } => {
                        // Absorbed form (what decode kernels run): scores over the
                        // latent plus rope part, weighted sum over the latent.
                        let read = match indexer {
                            Some(ix) => seen.min(ix.topk as f64),
                            None => seen,
                        };
                        let index = indexer
                            .map_or(0.0, |ix| 2.0 * (ix.n_heads * ix.head_dim) as f64 * seen);
                        Flop(
                            2.0 * *n_heads as f64
                                * (2 * kv_lora_rank + qk_rope_head_dim) as f64
                                * read
                                + index,
                        )
                    }
                    Attention::SharedKv {
                        n_heads, head_dim, ..
                    } => Flop(shared_kv_flop_per_entry(*n_heads, *head_dim) * seen),
                }
            }
        }
    }
}

/// Attention FLOP of one query against one cached entry of DeepSeek-V4's
/// shared key-value head: q·k and p·v, each over the whole head (the key
/// is also the value), for every query head.
fn shared_kv_flop_per_entry(n_heads: u64, head_dim: u64) -> f64 {
    2.0 * (n_heads * 2 * head_dim) as f64
}

impl Model {
    /// Attention-core FLOP of one token at `context` in a compressed
    /// (DeepSeek-V4) layer: the window's entries and the compressed ones
    /// it reads (all of them, or the indexer's top-k), plus the indexer
    /// scoring every compressed key (2 · heads · head_dim each).
    fn compressed_attention_flop(&self, layer: &Layer, selection: Selection, context: u64) -> Flop {
        let Attention::SharedKv {
            n_heads, head_dim, ..
        } = self.attention
        else {
            return Flop::ZERO;
        };
        let compressed = layer.compressed_entries(context) as f64;
        let (read, index) = match (selection, &self.indexer) {
            (Selection::Indexed, Some(ix)) => (
                compressed.min(ix.topk as f64),
                2.0 * (ix.n_heads * ix.head_dim) as f64 * compressed,
            ),
            (Selection::Indexed, None) | (Selection::All, _) => (compressed, 0.0),
        };
        let entries = layer.kept_tokens(context) as f64 + read;
        Flop(shared_kv_flop_per_entry(n_heads, head_dim) * entries + index)
    }
}

/// `Model::layer_params` by layer class: models repeat a few layer kinds
/// (dense/MoE, full/sliding/linear), so each is computed once.
pub(crate) struct LayerParamsMemo<'a> {
    model: &'a Model,
    seen: Vec<(Layer, LayerParams)>,
}

impl<'a> LayerParamsMemo<'a> {
    /// An empty memo for `model`.
    pub(crate) fn new(model: &'a Model) -> Self {
        LayerParamsMemo {
            model,
            seen: Vec::with_capacity(4),
        }
    }

    /// The parameters of `layer` (identical to `Model::layer_params`).
    pub(crate) fn get(&mut self, layer: &Layer) -> LayerParams {
        if let Some((_, p)) = self.seen.iter().find(|(l, _)| l == layer) {
            return *p;
        }
        let p = self.model.layer_params(layer);
        self.seen.push((*layer, p));
        p
    }
}

impl Layer {
    /// Blocks of the layer (each with its pre-norm and residual): 2 for a
    /// mixer and an FFN, 1 for Nemotron-H's single-block layers.
    pub(crate) fn blocks(&self) -> u32 {
        let mixer = match self.mixer {
            Mixer::Absent => 0,
            Mixer::Full
            | Mixer::FullDense
            | Mixer::FullKv { .. }
            | Mixer::Sliding { .. }
            | Mixer::Compressed { .. }
            | Mixer::Linear
            | Mixer::Mamba
            | Mixer::Projection => 1,
        };
        let ffn = match self.ffn {
            Ffn::Absent => 0,
            Ffn::Dense | Ffn::DenseOf { .. } | Ffn::Moe | Ffn::Projection => 1,
        };
        mixer + ffn
    }

    /// Tokens of a `context`-token sequence this layer keeps in its cache
    /// whole (a compressed layer's window; its compressed entries apart).
    pub(crate) fn kept_tokens(&self, context: u64) -> u64 {
        match self.mixer {
            Mixer::Full | Mixer::FullDense | Mixer::FullKv { .. } => context,
            Mixer::Sliding { window } | Mixer::Compressed { window, .. } => context.min(window),
            Mixer::Linear | Mixer::Mamba | Mixer::Absent | Mixer::Projection => 0,
        }
    }

    /// Compressed entries a `context`-token sequence has in this layer:
    /// one per `ratio` whole tokens (a partial window is still being
    /// pooled in the compressor's state), 0 for other mixers.
    pub(crate) fn compressed_entries(&self, context: u64) -> u64 {
        self.mixer
            .compression()
            .map_or(0, |(ratio, _)| context / ratio)
    }
}

/// Parameters of a ViT-style encoder: its blocks (`VisionBlocks`: q, k, v,
/// o, the MLP and the norms), what it holds outside them (patch embedding,
/// position table), plus the projector into the language model
/// (`VisionProjector`).
fn vision_params(v: &VisionEncoder) -> f64 {
    let h = v.hidden_size as f64;
    let i = v.intermediate_size as f64;
    let out = v.out_hidden_size as f64;
    let per_block = match v.blocks {
        // q, k, v, o with biases (4h² + 4h), fc1/fc2 with biases (2hi + h +
        // i), two LayerNorms with biases (4h).
        VisionBlocks::PlainWithBiases => 4.0 * h * h + 4.0 * h + 2.0 * h * i + h + i + 4.0 * h,
        // q, k, v, o (4h²), gate/up/down (3hi), four RMSNorms (4h), q/k norms.
        VisionBlocks::GatedNoBias { head_dim } => {
            4.0 * h * h + 3.0 * h * i + 4.0 * h + 2.0 * head_dim as f64
        }
        // wqkv h → 3a, wo a → h, fc0/fc1 (2hi), two RMSNorms (2h).
        VisionBlocks::PlainNoBias { attention_width } => {
            4.0 * h * attention_width as f64 + 2.0 * h * i + 2.0 * h
        }
    };
    let blocks = v.n_layers as f64 * per_block;
    let projector = match v.projector {
        VisionProjector::Linear => h * out,
        VisionProjector::PatchMerger { merge, mergers } => {
            // fc1 merged → merged and fc2 merged → out, with biases; the
            // final merger's LayerNorm is over h, DeepStack ones' over merged.
            let m = h * merge as f64;
            let mlp = m * m + m + m * out + out;
            let deepstack = mergers.saturating_sub(1) as f64;
            mlp * mergers as f64 + 2.0 * h + deepstack * 2.0 * m
        }
        VisionProjector::MergedMlp { merged_width } => {
            let m = merged_width as f64;
            m * m + m * out + out
        }
    };
    blocks + v.embedding_params as f64 + projector
}

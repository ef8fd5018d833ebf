//! Memory of one GPU under a layout (inference: no gradients, no optimizer).
//!
//! Weights: attention and dense/shared MLP ÷ TP (GQA k/v ÷ min(TP, KV
//! heads), MLA down-projections whole), routed experts ÷ (EP × ETP) with
//! redundant slots, only this stage's layers, embedding on the first stage
//! and LM head on the last (vocab-parallel over TP). KV cache: per token per
//! layer 2 × kv_heads/TP × head_dim × bytes (GQA) or the MLA latent (not
//! split by TP), × tokens resident (each attention-DP rank holds its own
//! requests, CP splits a sequence's tokens). Then activations for the
//! largest step, communication buffers, and a runtime reserve.

use crate::engine::MemoryShare;
use crate::hardware::Gpu;
use crate::layout::Layout;
use crate::model::{Attention, Component, Ffn, Layer, Mixer, Model};
use crate::units::{Bytes, Fraction};
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;

pub(crate) use crate::engine::BudgetScope;
pub use crate::engine::{Engine, EngineConfig};

/// Memory of the fullest GPU of a layout (`memory_per_gpu` in JSON).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct MemoryBreakdown {
    /// Weights held.
    pub weights_bytes: Bytes,
    /// Weights by component.
    pub(crate) weights_by_component: BTreeMap<String, Bytes>,
    /// KV cache (and linear-attention state) of the resident requests.
    pub kv_cache_bytes: Bytes,
    /// Activations and workspace of the largest step.
    pub activation_bytes: Bytes,
    /// Communication buffers and runtime reserve.
    pub other_bytes: Bytes,
    /// Sum of the above.
    pub total_bytes: Bytes,
    /// The GPU's capacity.
    pub capacity_bytes: Bytes,
    /// What the engine may use (`MemoryShare::usable`): capacity × its
    /// fraction, or what the model holds and its fraction of the rest.
    pub usable_bytes: Bytes,
    /// Pipeline stage of this GPU (the fullest).
    pub stage: usize,
    /// KV bytes one more request (at the full context) adds on this GPU, per attention-DP rank.
    pub kv_bytes_per_request: Bytes,
}

impl MemoryBreakdown {
    /// Whether the total fits in the usable memory.
    pub fn fits(&self) -> bool {
        self.total_bytes.0 <= self.usable_bytes.0
    }

    /// What is left of what the engine may use (negative: does not fit).
    pub fn room(&self) -> Bytes {
        self.usable_bytes - self.total_bytes
    }
}

/// KV cache bytes one token adds on one GPU in one layer, after the TP split.
pub(crate) fn kv_bytes_per_token_layer_gpu(m: &Model, layout: &Layout, mixer: Mixer) -> Bytes {
    let Some(attn) = m.attention_of(mixer) else {
        return Bytes::ZERO;
    };
    let full = m.kv_bytes_per_token_layer(&crate::model::Layer {
        mixer,
        ffn: Ffn::Dense,
    });
    match &attn {
        Attention::Gqa { n_kv_heads, .. } => {
            let tp = layout.tp as u64;
            let local = if tp <= *n_kv_heads {
                n_kv_heads / tp
            } else {
                1
            };
            // The indexer's one key head is whole on every GPU.
            let index = Bytes(m.indexer_key_dim(mixer) as f64 * m.dtypes.kv_cache.bytes());
            (full - index) * (local as f64 / *n_kv_heads as f64) + index
        }
        Attention::Mla { .. } | Attention::SharedKv { .. } => full,
    }
}

/// The ways TP splits a layer's GQA k/v projections (at most its KV
/// heads; beyond, they are replicated); MLA's and mixers without softmax
/// attention: 1.
fn kv_split(m: &Model, mixer: Mixer, tp: f64) -> f64 {
    match m.attention_of(mixer) {
        Some(Attention::Gqa { n_kv_heads, .. }) => tp.min(n_kv_heads as f64),
        Some(Attention::Mla { .. } | Attention::SharedKv { .. }) | None => 1.0,
    }
}

/// Weight bytes on one GPU of `stage`, by component.
pub fn weights_on_gpu(
    m: &Model,
    layout: &Layout,
    stage: usize,
    redundant_experts: u32,
) -> BTreeMap<Component, Bytes> {
    let stages = layout.stages(m);
    let w = stage_weights(m, layout, &stages, stage, redundant_experts);
    Component::ALL
        .iter()
        .filter(|c| w[**c as usize] > 0.0)
        .map(|c| (*c, Bytes(w[*c as usize])))
        .collect()
}

/// Weight bytes per component (indexed by `Component as usize`) on one GPU
/// of `stage` of `stages`.
fn stage_weights(
    m: &Model,
    layout: &Layout,
    stages: &[Range<usize>],
    stage: usize,
    redundant_experts: u32,
) -> [f64; 10] {
    let range = stages[stage.min(stages.len() - 1)].clone();
    let tp = layout.tp as f64;
    let mut w = [0.0f64; 10];
    // Models repeat a few layer kinds: each kind's contributions are
    // computed once and added layer by layer (the same sums, in order).
    let mut kinds = LayerKinds::new();
    for layer in &m.layers[range] {
        let adds = kinds.get(layer, || {
            layer_weights(m, layout, layer, redundant_experts, tp)
        });
        for &(c, bytes) in adds {
            w[c as usize] += bytes;
        }
    }
    let mut add =
        |c: Component, params: f64| w[c as usize] += params * m.component_dtype(c).bytes();
    let vh = (m.vocab_size * m.hidden_size) as f64;
    let last = stages.len() - 1;
    if stage == 0 {
        add(Component::Embedding, vh / tp);
        if m.vision.is_some() {
            add(Component::VisionEncoder, m.vision_params());
        }
    }
    if stage == last {
        if m.tie_word_embeddings {
            if stage != 0 {
                add(Component::Embedding, vh / tp);
            }
        } else {
            add(Component::LmHead, vh / tp);
        }
        add(Component::Norms, m.hidden_size as f64);
    }
    w
}

/// The weight bytes one layer adds on one GPU, by component, in the order
/// `stage_weights` adds them.
fn layer_weights(
    m: &Model,
    layout: &Layout,
    layer: &Layer,
    redundant_experts: u32,
    tp: f64,
) -> Vec<(Component, f64)> {
    let p = m.layer_params(layer);
    let bytes = |c: Component, params: f64| (c, params * m.component_dtype(c).bytes());
    let kv_split = kv_split(m, layer.mixer, tp);
    let mut adds = vec![
        bytes(
            Component::Attention,
            p.attn_sharded / tp + p.attn_kv / kv_split + p.attn_replicated,
        ),
        bytes(Component::LinearAttention, p.linear_attn / tp),
        bytes(Component::Router, p.router),
    ];
    if let Some(moe) = &m.moe {
        let slots = moe.n_routed_experts as f64 + layout.redundant_slots(redundant_experts) as f64;
        let per_gpu_experts = slots / layout.ep as f64;
        // The latent projections around the experts are replicated.
        adds.push(bytes(
            Component::RoutedExperts,
            p.per_expert * per_gpu_experts * (p.routed_experts > 0.0) as u8 as f64
                / layout.etp as f64
                + p.latent,
        ));
    }
    adds.push(bytes(Component::SharedExperts, p.shared / tp));
    adds.push(bytes(Component::DenseMlp, p.dense / tp));
    adds.push(bytes(Component::Norms, p.norms));
    adds
}

/// A value per kind of layer, computed at the kind's first layer: models
/// repeat a few kinds (dense/MoE, full/sliding/linear), and consecutive
/// layers are mostly of one kind.
struct LayerKinds<T> {
    /// Each kind met so far with its value, in the order met.
    seen: Vec<(Layer, T)>,
}

impl<T> LayerKinds<T> {
    /// No kind met yet.
    fn new() -> Self {
        LayerKinds {
            seen: Vec::with_capacity(4),
        }
    }

    /// The value of `layer`'s kind, computed by `compute` the first time
    /// the kind is met.
    fn get(&mut self, layer: &Layer, compute: impl FnOnce() -> T) -> &T {
        let i = match self.seen.iter().rposition(|(l, _)| l == layer) {
            Some(i) => i,
            None => {
                self.seen.push((*layer, compute()));
                self.seen.len() - 1
            }
        };
        &self.seen[i].1
    }
}

/// Sum of the components with weights, in report order (what
/// `weights_on_gpu(..).values().sum()` gives).
fn weights_total(w: &[f64; 10]) -> Bytes {
    Component::ALL
        .iter()
        .map(|c| w[*c as usize])
        .filter(|v| *v > 0.0)
        .map(Bytes)
        .sum()
}

/// KV cache (and linear state) of one request of `context` tokens on one GPU of `stage`.
pub(crate) fn kv_bytes_per_request(
    m: &Model,
    layout: &Layout,
    stage: usize,
    context: u64,
) -> Bytes {
    let stages = layout.stages(m);
    let range = stages[stage.min(stages.len() - 1)].clone();
    kv_bytes_per_request_in(m, layout, range, context)
}

fn kv_bytes_per_request_in(m: &Model, layout: &Layout, range: Range<usize>, context: u64) -> Bytes {
    let mut b = Bytes::ZERO;
    let mut kinds = LayerKinds::new();
    for layer in &m.layers[range] {
        b += *kinds.get(layer, || layer_kv_bytes(m, layout, layer, context));
    }
    b
}

/// KV cache (and linear state) one request of `context` tokens holds in
/// one layer on one GPU.
fn layer_kv_bytes(m: &Model, layout: &Layout, layer: &Layer, context: u64) -> Bytes {
    match layer.mixer {
        Mixer::Linear | Mixer::Mamba => m.state_bytes_per_layer(layer.mixer) / layout.tp as f64,
        Mixer::Absent | Mixer::Projection => Bytes::ZERO,
        mixer @ (Mixer::Full | Mixer::FullDense | Mixer::FullKv { .. } | Mixer::Sliding { .. }) => {
            kv_bytes_per_token_layer_gpu(m, layout, mixer)
                * (layer.kept_tokens(context) as f64 / layout.cp as f64).ceil()
        }
        // One shared key-value head: every TP rank holds it whole.
        Mixer::Compressed { .. } => m.kv_bytes_layer_context(layer, context, layout.cp),
    }
}

/// Columns of a layer's q, k and v on one GPU (MLA: its decompressed q,
/// k, v and the latent).
fn qkv_width(attn: &Attention, tp: f64) -> f64 {
    match attn {
        Attention::Gqa {
            n_heads,
            n_kv_heads,
            head_dim,
            values,
            ..
        } => {
            (n_heads * head_dim + n_kv_heads * (head_dim + values.head_dim(*head_dim))) as f64 / tp
        }
        Attention::Mla {
            n_heads,
            qk_nope_head_dim,
            qk_rope_head_dim,
            v_head_dim,
            kv_lora_rank,
            ..
        } => {
            (*n_heads * (qk_nope_head_dim + qk_rope_head_dim + v_head_dim)) as f64 / tp
                + (kv_lora_rank + qk_rope_head_dim) as f64
        }
        // Queries and outputs of the local heads, the query latent and the shared head.
        Attention::SharedKv {
            n_heads,
            q_lora_rank,
            head_dim,
            ..
        } => (2 * n_heads * head_dim) as f64 / tp + (q_lora_rank + head_dim) as f64,
    }
}

/// Activations and workspace of the largest step on one GPU: residual
/// stream buffers (4 × hidden; with hyper-connections the `m` copies into
/// and out of `hc_post` beside the block's input and output, (2·m + 2) ×
/// hidden), local q/k/v (or a Mamba-2 in_proj's
/// output), and the routed rows' expert intermediate (gate and up, or up). The fp32 logits are per sampled request and
/// counted with the requests (`logits_bytes_per_request`).
pub fn activation_bytes(m: &Model, layout: &Layout, cfg: &EngineConfig) -> Bytes {
    let t = cfg.max_step_tokens as f64 / layout.cp as f64;
    let h = m.hidden_size as f64;
    let tp = layout.tp as f64;
    let qkv = m
        .attentions()
        .map(|a| qkv_width(&a, tp))
        .fold(0.0, f64::max);
    // A Mamba-2 in_proj's output (z, x, B, C, dt) when wider than q/k/v.
    let qkv = m
        .mamba
        .as_ref()
        .map_or(qkv, |mb| qkv.max(mb.in_proj_dim() as f64 / tp));
    let inputs = m.gating.input_matrices();
    let ffn_rows = match &m.moe {
        Some(moe) => {
            t * moe.experts_per_token as f64 * inputs * moe.expert_intermediate_size as f64
                / layout.etp as f64
        }
        None => t * inputs * m.widest_dense().max(m.dense_intermediate_size) as f64 / tp,
    };
    let residual = m
        .hyper_connections
        .map_or(4.0, |hc| 2.0 * hc.streams as f64 + 2.0);
    Bytes(t * (residual * h + qkv) * 2.0 + ffn_rows * 2.0)
}

/// The fp32 logits row one running request needs on the last stage each
/// step (vocab-parallel over TP): an engine samples one token per request.
pub(crate) fn logits_bytes_per_request(m: &Model, layout: &Layout) -> Bytes {
    Bytes(m.vocab_size as f64 / layout.tp as f64 * 4.0)
}

/// Communication buffers: expert-parallel dispatch/combine buffers sized for
/// the largest step, plus the engine's all-reduce workspace under TP
/// (`allreduce_workspace_mib` of its file in `engines/`).
pub(crate) fn comm_buffer_bytes(m: &Model, layout: &Layout, cfg: &EngineConfig) -> Bytes {
    let mut b = 0.0;
    if layout.ep > 1 {
        if let Some(moe) = &m.moe {
            let t = cfg.max_step_tokens as f64 / layout.cp as f64;
            let width = moe.expert_width(m.hidden_size) as f64;
            b += 2.0 * t * moe.experts_per_token as f64 * width * 2.0;
        }
    }
    if layout.tp > 1 {
        b += cfg.allreduce_workspace.value();
    }
    Bytes(b)
}

/// Memory of the fullest GPU with `concurrency` requests of `context`
/// tokens in flight on the replica.
pub fn memory(
    m: &Model,
    gpu: &Gpu,
    layout: &Layout,
    cfg: &EngineConfig,
    redundant_experts: u32,
    concurrency: u64,
    context: u64,
) -> MemoryBreakdown {
    Footprint::of(m, gpu, layout, cfg, redundant_experts, context).at(concurrency)
}

/// The most requests of `context` tokens the replica can hold in flight.
pub fn max_concurrency(
    m: &Model,
    gpu: &Gpu,
    layout: &Layout,
    cfg: &EngineConfig,
    redundant_experts: u32,
    context: u64,
) -> u64 {
    Footprint::of(m, gpu, layout, cfg, redundant_experts, context).max_concurrency()
}

/// What each pipeline stage's GPU holds whatever the number of requests in
/// flight (weights, activations, buffers) and what each request adds (its
/// KV cache of `context` tokens; on the last stage its logits row too).
/// `memory` and `max_concurrency` read it; an estimate, aggregated or
/// disaggregated, computes it once for both the concurrency that fits and
/// the memory at the concurrency it runs.
///
/// The buffers and the runtime reserve are kept apart: the fixed bytes
/// that bound the concurrency add them one by one, the breakdown as their
/// sum, each in the order it always has (bit-identical results).
#[derive(Clone, Debug)]
pub(crate) struct Footprint {
    /// Each pipeline stage's GPU, in stage order.
    stages: Vec<StageFootprint>,
    /// Activations and workspace of the largest step.
    act_step: Bytes,
    /// Communication buffers.
    comm: Bytes,
    /// The GPU's capacity.
    capacity: Bytes,
    /// The engine's memory fraction.
    fraction: Fraction,
    /// What the fraction is of.
    share: MemoryShare,
    /// The engine's runtime reserve.
    runtime_reserve: Bytes,
    /// Attention-DP ranks of the replica (each holds its own requests).
    dp: u32,
}

/// One pipeline stage's GPU in a `Footprint`.
#[derive(Clone, Debug)]
struct StageFootprint {
    /// Weight bytes by component (indexed by `Component as usize`).
    weights: [f64; 10],
    /// Their sum over the components with weights, in report order.
    weights_bytes: Bytes,
    /// KV cache (and linear state) of one request.
    per_request: Bytes,
    /// The logits row of one running request (last stage only).
    logits: Bytes,
}

impl Footprint {
    /// The footprint of `layout` with requests of `context` tokens.
    pub(crate) fn of(
        m: &Model,
        gpu: &Gpu,
        layout: &Layout,
        cfg: &EngineConfig,
        redundant_experts: u32,
        context: u64,
    ) -> Footprint {
        let stages = layout.stages(m);
        let logits_row = logits_bytes_per_request(m, layout);
        let comm = comm_buffer_bytes(m, layout, cfg);
        let last = stages.len() - 1;
        let per_stage = stages
            .iter()
            .enumerate()
            .map(|(stage, range)| {
                let weights = stage_weights(m, layout, &stages, stage, redundant_experts);
                StageFootprint {
                    weights,
                    weights_bytes: weights_total(&weights),
                    per_request: kv_bytes_per_request_in(m, layout, range.clone(), context),
                    logits: if stage == last {
                        logits_row
                    } else {
                        Bytes::ZERO
                    },
                }
            })
            .collect();
        Footprint {
            stages: per_stage,
            act_step: activation_bytes(m, layout, cfg),
            comm,
            capacity: gpu.memory,
            fraction: cfg.max_memory_fraction,
            share: cfg.memory_share,
            runtime_reserve: cfg.runtime_reserve,
            dp: layout.dp,
        }
    }

    /// The most requests (of the footprint's context) the replica can hold
    /// in flight.
    pub(crate) fn max_concurrency(&self) -> u64 {
        let mut best = u64::MAX;
        for s in &self.stages {
            let fixed = self.fixed(s);
            let free = self.usable(fixed).0 - fixed.0;
            if free <= 0.0 {
                best = 0;
                continue;
            }
            let per_rank_cost = s.per_request + s.logits;
            let per_rank = if per_rank_cost.0 > 0.0 {
                (free / per_rank_cost.0).floor()
            } else {
                1e9
            };
            best = best.min((per_rank as u64).saturating_mul(self.dp as u64));
        }
        best
    }

    /// What a stage's GPU holds whatever the requests: weights,
    /// activations of the largest step, buffers and the runtime reserve.
    fn fixed(&self, s: &StageFootprint) -> Bytes {
        s.weights_bytes + self.act_step + self.comm + self.runtime_reserve
    }

    /// Bytes the engine may use on a GPU holding `fixed` bytes.
    fn usable(&self, fixed: Bytes) -> Bytes {
        self.share.usable(self.fraction, self.capacity, fixed)
    }

    /// Memory of the fullest GPU with `concurrency` requests in flight on
    /// the replica: the one with the least room left under what the engine
    /// may use (under a share of the GPU, the one holding the most; under
    /// TensorRT-LLM's share of the free memory each stage may use its own).
    pub(crate) fn at(&self, concurrency: u64) -> MemoryBreakdown {
        let seqs_per_rank = (concurrency as f64 / self.dp as f64).ceil();
        let other = self.comm + self.runtime_reserve;
        // (stage, total, activations, usable) of the fullest GPU: the least
        // room left, the first stage on a tie.
        let (stage, total, act, usable) = self
            .stages
            .iter()
            .enumerate()
            .map(|(stage, s)| {
                let kv = s.per_request * seqs_per_rank;
                let act = self.act_step + s.logits * seqs_per_rank;
                let total = s.weights_bytes + kv + act + other;
                (stage, total, act, self.usable(self.fixed(s)))
            })
            .min_by(|a, b| (a.3 - a.1).0.total_cmp(&(b.3 - b.1).0))
            .expect("a layout has at least one stage");
        let s = &self.stages[stage];
        MemoryBreakdown {
            weights_bytes: s.weights_bytes,
            weights_by_component: Component::ALL
                .iter()
                .filter(|c| s.weights[**c as usize] > 0.0)
                .map(|c| (c.name().to_string(), Bytes(s.weights[*c as usize])))
                .collect(),
            kv_cache_bytes: s.per_request * seqs_per_rank,
            activation_bytes: act,
            other_bytes: other,
            total_bytes: total,
            capacity_bytes: self.capacity,
            usable_bytes: usable,
            stage,
            kv_bytes_per_request: s.per_request,
        }
    }
}

//! The operators of one forward step on one GPU, with their cost.
//!
//! This is the single source of truth for step time: `serving` sums it, the
//! explain view prints it. A step is described per attention-DP rank: some
//! decode sequences at a context, and some prefill tokens of prompts. For
//! each pipeline stage the ops of identical layers are costed once and
//! counted. Each op is a roofline with the calibrated efficiencies:
//! `max(FLOP / (peak × eff), bytes / (bandwidth × eff)) + fixed cost`, and
//! collectives are `latency + algorithm factor × bytes / link bandwidth`.

use crate::calibration::{
    AllToAllCurve, AttentionDecodeCurve, AttentionPrefillCurve, Calibration, CollectiveCurve,
    GemmCurve, MoeCurve,
};
use crate::dtype::{DType, Precision};
use crate::hardware::Gpu;
use crate::layout::Layout;
use crate::memory::kv_bytes_per_token_layer_gpu;
use crate::model::{Attention, Ffn, Layer, Mixer, Model, Moe, NormPlacement, OutputGate, Values};
use crate::units::{Bytes, BytesPerSecond, Flop, FlopPerSecond, Seconds};
use serde::Serialize;

pub mod kind;
pub mod overlap;
mod shared_kv;

pub(crate) use kind::{Collective, ExchangeSide, GroupKind, Placement};
pub use kind::{OpKind, Role};
pub use overlap::Overlap;
pub(crate) use overlap::OverlapCost;

/// Whether a GEMM pays its calibrated fixed cost (launch, small kernels)
/// itself, or a module around it does (MLA charges one `mla_fixed` for all
/// its GEMMs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixedCost {
    /// The op pays its curve's fixed cost.
    Own,
    /// The enclosing module's fixed-cost op pays it.
    InModule,
}

impl FixedCost {
    fn of(self, cost: Seconds) -> Seconds {
        match self {
            FixedCost::Own => cost,
            FixedCost::InModule => Seconds::ZERO,
        }
    }
}

/// What limits an operator.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Tensor-core throughput.
    Compute,
    /// HBM bandwidth.
    Memory,
    /// A link (NVLink or network).
    Communication,
    /// Fixed per-kernel cost (launch, synchronisation, small kernels).
    Overhead,
}

impl Bound {
    /// The snake_case name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Bound::Compute => "compute",
            Bound::Memory => "memory",
            Bound::Communication => "communication",
            Bound::Overhead => "overhead",
        }
    }
}

/// The roofline of one op: the larger of its compute time `tc` and memory
/// time `tm`, and which it is (compute on a tie).
fn roofline(tc: Seconds, tm: Seconds) -> (Seconds, Bound) {
    if tc.0 >= tm.0 {
        (tc, Bound::Compute)
    } else {
        (tm, Bound::Memory)
    }
}

/// An efficiency that saturates in `x`: `max · x / (x + half)`, or `max`
/// when the curve has no half point (`half` ≤ 0). A curve whose efficiency
/// is a product of such terms takes each factor with `max = 1`.
fn saturating(max: f64, x: f64, half: f64) -> f64 {
    if half > 0.0 {
        max * x / (x + half)
    } else {
        max
    }
}

/// A GQA layer's attention, as the model gives it (before TP).
#[derive(Clone, Copy, Debug)]
struct GqaDims {
    n_heads: u64,
    n_kv_heads: u64,
    head_dim: u64,
    /// Where the values come from, and their width.
    values: Values,
    /// The sigmoid gate on the attention output (its columns ride with q).
    output_gate: OutputGate,
}

/// An MLA layer's widths on one GPU: TP splits the heads.
#[derive(Clone, Copy, Debug)]
struct MlaDims {
    /// Query heads on this GPU.
    heads: f64,
    /// Rank of the query down-projection (None: q projected directly).
    q_lora: Option<f64>,
    /// Rank of the compressed KV latent.
    kv_lora: f64,
    /// Per-head query/key dimension without rotary part.
    nope: f64,
    /// Rotary part of the query/key.
    rope: f64,
    /// Per-head value dimension.
    v: f64,
    /// Columns of the output gate's projection on this GPU (0 without one).
    gate: f64,
    /// The indexer the layer attends through, if any.
    indexer: Option<IndexerDims>,
}

/// A sparse indexer's widths, as the ops of one layer read them.
#[derive(Clone, Copy, Debug)]
struct IndexerDims {
    /// Indexer heads.
    n_heads: u64,
    /// Indexer head dimension (also its cached key size).
    head_dim: u64,
}

impl IndexerDims {
    fn of(m: &Model, mixer: Mixer) -> Option<Self> {
        m.indexer_of(mixer).map(|ix| IndexerDims {
            n_heads: ix.n_heads,
            head_dim: ix.head_dim,
        })
    }
}

/// What the decode and prefill parts of one layer's attention core share.
#[derive(Clone, Copy, Debug)]
struct CoreDims {
    /// Layers the core runs in.
    count: u32,
    /// Query heads on this GPU.
    heads: f64,
    /// Dimension of one head (0 for MLA: its forms carry the widths).
    head_dim: f64,
    /// KV-cache bytes per token of the layer on this GPU.
    kv_tok: Bytes,
    /// Keys a query attends at most (infinite without a sliding window).
    window: f64,
    /// Keys DSA's indexer lets a query read (infinite without it).
    topk: f64,
    /// The indexer whose pass over every cached key precedes the read.
    indexer: Option<IndexerDims>,
    /// A compressed (DeepSeek-V4) layer's compressed entries, besides the
    /// window's whole tokens that `kv_tok` and `window` describe.
    compressed: Option<CompressedCore>,
}

/// The compressed part of a DeepSeek-V4 layer's attention core.
#[derive(Clone, Copy, Debug)]
struct CompressedCore {
    /// Tokens per compressed entry.
    ratio: f64,
    /// Compressed entries a query reads at most (CSA: the indexer's
    /// top-k; HCA: infinite, every entry).
    read_max: f64,
    /// Bytes of one compressed entry read by the attention.
    entry: Bytes,
    /// Bytes of one compressed key the indexer scans (0 for HCA).
    index_key: Bytes,
    /// Indexer FLOP per compressed key scored (0 for HCA).
    index_flop: f64,
}

impl CompressedCore {
    /// Compressed entries that `full` new tokens after `s0` read in all,
    /// and the indexer's keys they score: token p sees ⌊p/ratio⌋ entries
    /// and reads at most `read_max` (a continuous sum).
    fn prefill_reads(&self, s0: f64, full: f64) -> (f64, f64) {
        let (r, k) = (self.ratio, self.read_max);
        let seen = |x: f64| x * (x + 1.0) / (2.0 * r);
        let read = |x: f64| {
            if x <= r * k {
                seen(x)
            } else {
                seen(r * k) + (x - r * k) * k
            }
        };
        (read(s0 + full) - read(s0), seen(s0 + full) - seen(s0))
    }
}

/// Query-key pairs that `full` new tokens after `s0` cached ones attend
/// under a causal mask limited to the last `window` keys.
fn causal_pairs(s0: f64, full: f64, window: f64) -> f64 {
    if window.is_finite() {
        let w = window;
        let causal = |x: f64| {
            if x <= w {
                x * (x + 1.0) / 2.0
            } else {
                w * (w + 1.0) / 2.0 + (x - w) * w
            }
        };
        causal(s0 + full) - causal(s0)
    } else {
        full * s0 + full * (full + 1.0) / 2.0
    }
}

/// The EP exchange's traffic beyond its curve's latencies: link time and
/// bytes of each direction, and the latency that crossing nodes adds.
#[derive(Clone, Copy, Debug)]
struct EpTraffic {
    /// Link time and bytes of the dispatch.
    dispatch: (Seconds, Bytes),
    /// Link time and bytes of the combine.
    combine: (Seconds, Bytes),
    /// Latency added to both (the network's, across nodes).
    extra: Seconds,
}

/// One leg of the EP exchange: `latency`, then `link` time moving `bytes`.
fn exchange_leg(kind: OpKind, count: u32, latency: Seconds, (link, bytes): (Seconds, Bytes)) -> Op {
    Op {
        kind,
        count,
        flop: Flop::ZERO,
        bytes,
        time: latency + link,
        bound: Bound::Communication,
        overhead: latency,
    }
}

/// One operator of a step, per occurrence, on one GPU.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Op {
    /// Which operator (`qkv_proj`, `moe_experts`, `tp_all_reduce_attn`, ...).
    #[serde(rename = "name")]
    pub kind: OpKind,
    /// Layers (or occurrences) it runs in on this stage.
    pub count: u32,
    /// FLOP per occurrence.
    pub flop: Flop,
    /// HBM bytes (or link bytes for communication) per occurrence.
    pub bytes: Bytes,
    /// Time per occurrence.
    pub time: Seconds,
    /// The roofline term that won (fixed cost excluded).
    pub bound: Bound,
    /// The fixed part of `time`.
    pub overhead: Seconds,
}

impl Op {
    /// Time of all occurrences.
    pub fn total(&self) -> Seconds {
        self.time * self.count as f64
    }
}

/// The work of one step on one attention-DP rank.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct StepShape {
    /// Sequences generating one token each.
    #[serde(serialize_with = "crate::units::json::count")]
    pub decode_seqs: f64,
    /// Context (KV tokens) of each decode sequence.
    #[serde(serialize_with = "crate::units::json::count")]
    pub decode_context: f64,
    /// Prompts being prefilled in this step.
    #[serde(serialize_with = "crate::units::json::count")]
    pub prefill_seqs: f64,
    /// New prompt tokens of each prefill sequence in this step.
    #[serde(serialize_with = "crate::units::json::count")]
    pub prefill_tokens_per_seq: f64,
    /// Tokens of each prompt already in the cache before this step (chunked prefill).
    #[serde(serialize_with = "crate::units::json::count")]
    pub prefill_offset: f64,
    /// Tokens each *other* attention-DP rank brings to the MoE in this step;
    /// None when every rank runs this same shape (the steady state). One
    /// prompt's prefill chunk lands on one rank while the others run their
    /// usual steps, and the experts see the sum.
    pub peer_tokens: Option<f64>,
}

impl StepShape {
    /// A pure decode step.
    pub fn decode(seqs: f64, context: f64) -> Self {
        StepShape {
            peer_tokens: None,
            decode_seqs: seqs,
            decode_context: context,
            prefill_seqs: 0.0,
            prefill_tokens_per_seq: 0.0,
            prefill_offset: 0.0,
        }
    }
    /// A pure prefill step of whole prompts.
    pub fn prefill(seqs: f64, prompt: f64) -> Self {
        StepShape {
            peer_tokens: None,
            decode_seqs: 0.0,
            decode_context: 0.0,
            prefill_seqs: seqs,
            prefill_tokens_per_seq: prompt,
            prefill_offset: 0.0,
        }
    }
    /// New tokens in the step.
    pub fn tokens(&self) -> f64 {
        self.decode_seqs + self.prefill_seqs * self.prefill_tokens_per_seq
    }
    /// Sequences whose next token is sampled (decode, and prompts finishing).
    pub fn sampled(&self) -> f64 {
        self.decode_seqs + self.prefill_seqs
    }
}

/// The cost of a step: per stage, and the ops of the slowest stage.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct StepCost {
    /// Time of each pipeline stage.
    pub(crate) stage_times: Vec<Seconds>,
    /// The slowest stage.
    pub(crate) slowest_stage: usize,
    /// Ops of the slowest stage.
    pub ops: Vec<Op>,
    /// Point-to-point time between consecutive stages (0 without PP).
    pub stage_transfer: Seconds,
}

impl StepCost {
    /// Time of the slowest stage (what limits a filled pipeline).
    pub fn stage_time(&self) -> Seconds {
        self.stage_times[self.slowest_stage]
    }
    /// Time for one micro-batch to cross every stage.
    pub(crate) fn traversal(&self) -> Seconds {
        self.stage_times.iter().copied().sum::<Seconds>()
            + self.stage_transfer * (self.stage_times.len() - 1) as f64
    }
    /// Time of the slowest stage by bound (fixed costs as `Overhead`).
    pub fn by_bound(&self) -> [(Bound, Seconds); 4] {
        let mut t = [Seconds::ZERO; 4];
        for op in &self.ops {
            let idx = op.bound as usize;
            t[idx] += (op.time - op.overhead) * op.count as f64;
            t[Bound::Overhead as usize] += op.overhead * op.count as f64;
        }
        [
            (Bound::Compute, t[0]),
            (Bound::Memory, t[1]),
            (Bound::Communication, t[2]),
            (Bound::Overhead, t[3]),
        ]
    }
    /// The largest of compute, memory, communication and fixed-cost time
    /// (a small step that launch and synchronisation costs dominate is
    /// overhead-bound, not memory-bound at a sliver of its time).
    pub fn bottleneck(&self) -> Bound {
        let b = self.by_bound();
        b.iter()
            .max_by(|a, c| a.1 .0.total_cmp(&c.1 .0))
            .map(|x| x.0)
            .unwrap_or(Bound::Compute)
    }
}

/// Everything the cost of a step depends on besides its shape.
#[derive(Clone)]
pub struct CostContext<'a> {
    /// The model.
    pub model: &'a Model,
    /// The GPU.
    pub gpu: &'a Gpu,
    /// The layout of the replica.
    pub layout: Layout,
    /// Redundant expert slots (EPLB).
    pub redundant_experts: u32,
    /// Expected max/mean − 1 of the EP ranks' routed load.
    pub load_imbalance: f64,
    /// The curves in use (calibrated, or flat).
    pub cal: &'a Calibration,
    /// How tokens pick their experts (`Routing::Random` unless set).
    pub routing: Routing,
    /// Each pipeline stage's layer classes with their counts (shared: a
    /// context cloned for another load imbalance does not copy them).
    stages: std::sync::Arc<[Vec<(Layer, u32)>]>,
}

/// How a step's tokens are spread over the routed experts, which sets how
/// many distinct experts' weights a small step reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Each of the `T·k` routed rows picks an expert independently and
    /// uniformly: `E·(1 − (1 − 1/E)^(T·k))` distinct experts on average (a
    /// served model's tokens).
    Random,
    /// Rows spread as evenly as possible, no expert picked twice until every
    /// one is (the kernel tables' `balanced` distribution): `min(E, T·k)`
    /// distinct experts.
    Balanced,
}

impl Routing {
    /// Of `local` experts on a GPU (of `experts` in all), those that `rows`
    /// routed rows touch.
    pub fn touched(self, local: f64, experts: f64, rows: f64) -> f64 {
        match self {
            Routing::Random => local * expected_distinct(experts, rows) / experts,
            Routing::Balanced => local * (rows / experts).min(1.0),
        }
    }
}

/// Distinct bins that `draws` independent uniform draws over `bins` hit on
/// average: `bins·(1 − (1 − 1/bins)^draws)` (experts a step's routed rows
/// touch, nodes a token's experts reach).
fn expected_distinct(bins: f64, draws: f64) -> f64 {
    bins * (1.0 - (1.0 - 1.0 / bins).powf(draws))
}

impl<'a> CostContext<'a> {
    /// Prepares the per-stage layer classes once (the planner reuses this).
    pub fn new(
        model: &'a Model,
        gpu: &'a Gpu,
        layout: Layout,
        redundant_experts: u32,
        load_imbalance: f64,
        cal: &'a Calibration,
    ) -> Self {
        let stages = layout
            .stages(model)
            .into_iter()
            .map(|r| {
                let mut classes: Vec<(Layer, u32)> = Vec::new();
                for l in &model.layers[r] {
                    match classes.iter_mut().find(|(c, _)| c == l) {
                        Some((_, n)) => *n += 1,
                        None => classes.push((*l, 1)),
                    }
                }
                classes
            })
            .collect();
        CostContext {
            routing: Routing::Random,
            model,
            gpu,
            layout,
            redundant_experts,
            load_imbalance,
            cal,
            stages,
        }
    }

    /// Costs one step.
    pub fn step(&self, shape: &StepShape) -> StepCost {
        let n = self.stages.len();
        let mut stage_times = Vec::with_capacity(n);
        // The slowest stage so far, its time and ops; the first of equal times stays.
        let mut worst: Option<(usize, Seconds, Vec<Op>)> = None;
        for s in 0..n {
            let ops = self.stage_ops(s, shape);
            let t: Seconds = ops.iter().map(Op::total).sum();
            stage_times.push(t);
            if worst.as_ref().is_none_or(|(_, w, _)| t.0 > w.0) {
                worst = Some((s, t, ops));
            }
        }
        let (slowest_stage, _, ops) = worst.unwrap_or_default();
        StepCost {
            stage_times,
            slowest_stage,
            ops,
            stage_transfer: self.stage_transfer(shape),
        }
    }

    /// The ops of pipeline stage `s` for `shape`, in the order `step` sums them.
    fn stage_ops(&self, s: usize, shape: &StepShape) -> Vec<Op> {
        let n = self.stages.len();
        let mut ops = Vec::with_capacity(24);
        for (layer, count) in &self.stages[s] {
            self.layer_ops(layer, *count, shape, &mut ops);
        }
        if s == 0 {
            self.embedding_ops(shape, &mut ops);
        }
        if s == n - 1 {
            self.lm_head_ops(shape, &mut ops);
        }
        ops
    }

    /// Point-to-point time of `shape`'s activations between consecutive
    /// stages (0 without PP).
    fn stage_transfer(&self, shape: &StepShape) -> Seconds {
        let n = self.stages.len();
        if n > 1 {
            // The residual stream crosses: hyper-connections' copies whole.
            let width = self.model.hidden_size as f64
                * self
                    .model
                    .hyper_connections
                    .map_or(1.0, |hc| hc.streams as f64);
            let bytes = Bytes(shape.tokens() / self.layout.cp as f64 * width * 2.0);
            let cross_node = self.layout.gpus() > self.gpu.gpus_per_node;
            let (lat, bw) = if cross_node {
                (
                    self.gpu.network_latency,
                    self.gpu.network_bandwidth * self.cal.network_eff,
                )
            } else {
                (
                    self.gpu.nvlink_latency,
                    self.gpu.nvlink_bandwidth * self.cal.nvlink_p2p_eff,
                )
            };
            lat + bytes / bw
        } else {
            Seconds::ZERO
        }
    }

    fn bw(&self) -> BytesPerSecond {
        self.gpu.memory_bandwidth
    }

    /// A GEMM of m rows against an n×k weight stored as `w`.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &self,
        kind: OpKind,
        count: u32,
        m: f64,
        n: f64,
        k: f64,
        w: DType,
        fixed: FixedCost,
    ) -> Op {
        let (precision, peak) = self.gpu.peak_for(w.preferred_compute());
        let curve: &GemmCurve = match precision {
            Precision::Fp8 => &self.cal.gemm_fp8,
            Precision::Fp4 => &self.cal.gemm_fp4,
            _ => &self.cal.gemm_bf16,
        };
        // Activations are quantised to the math precision on the fly.
        let act_bytes = match precision {
            Precision::Bf16 => 2.0,
            Precision::Fp4 => DType::Nvfp4.bytes(),
            _ => 1.0,
        };
        let flop = Flop(2.0 * m * n * k);
        let bytes = Bytes(n * k * w.bytes() + m * k * act_bytes + m * n * 2.0);
        let eff = saturating(curve.eff_max, m, curve.m_half);
        let tc = flop / (peak * eff.max(1e-6));
        let tm = bytes / (self.bw() * curve.mem_eff);
        let quant = if curve.quant_eff > 0.0 && precision != Precision::Bf16 {
            Bytes(m * k * 3.0) / (self.bw() * curve.quant_eff)
        } else {
            Seconds::ZERO
        };
        let overhead = fixed.of(curve.overhead);
        let (t, bound) = roofline(tc, tm);
        Op {
            kind,
            count,
            flop,
            bytes,
            time: t + quant + overhead,
            bound,
            overhead,
        }
    }

    /// `heads` independent bf16 GEMMs `[m × k]·[k × n]` in one batched launch
    /// (MLA's absorb BMMs), with the `mla_bmm` curve: every head reads its
    /// own weights.
    #[allow(clippy::too_many_arguments)]
    pub fn bmm(
        &self,
        kind: OpKind,
        count: u32,
        heads: f64,
        m: f64,
        n: f64,
        k: f64,
        fixed: FixedCost,
    ) -> Op {
        let c = &self.cal.mla_bmm;
        let flop = Flop(2.0 * heads * m * n * k);
        let bytes = Bytes(heads * (n * k + m * k + m * n) * 2.0);
        let eff = saturating(c.eff_max, m, c.m_half);
        let tc = flop / (self.gpu.peak_bf16() * eff.max(1e-6));
        let tm = bytes / (self.bw() * c.mem_eff);
        let overhead = fixed.of(c.overhead);
        let (t, bound) = roofline(tc, tm);
        Op {
            kind,
            count,
            flop,
            bytes,
            time: t + overhead,
            bound,
            overhead,
        }
    }

    /// A collective over `n` ranks moving `factor × bytes` per rank.
    #[allow(clippy::too_many_arguments)]
    pub fn collective(&self, kind: OpKind, count: u32, n: u32, bytes: Bytes, factor: f64) -> Op {
        let node = self.gpu.gpus_per_node;
        let curve = if kind.collective() != Some(Collective::AllReduce) {
            &self.cal.allgather
        } else if bytes.0 <= self.cal.custom_allreduce_max.0 && n <= node {
            // vLLM's custom all-reduce (one node, messages up to its buffer).
            &self.cal.allreduce
        } else {
            &self.cal.allreduce_nccl
        };
        self.collective_on(curve, kind, count, n, bytes, factor)
    }

    /// A collective with an explicit curve (the calibration check uses it).
    pub fn collective_on(
        &self,
        curve: &CollectiveCurve,
        kind: OpKind,
        count: u32,
        n: u32,
        bytes: Bytes,
        factor: f64,
    ) -> Op {
        let (lat, eff) = curve.at(n, self.cal.collective_eff_max);
        let node = self.gpu.gpus_per_node;
        let moved = bytes * factor;
        let (lat, t) = if n > node {
            // Hierarchical: the part leaving the node rides the network.
            let cross = moved * ((n - node) as f64 / n as f64);
            let inside = moved - cross;
            (
                lat + self.gpu.network_latency,
                (inside / (self.gpu.nvlink_bandwidth * eff))
                    .max(cross / (self.gpu.network_bandwidth * self.cal.network_eff)),
            )
        } else {
            (lat, moved / (self.gpu.nvlink_bandwidth * eff))
        };
        Op {
            kind,
            count,
            flop: Flop::ZERO,
            bytes: moved,
            time: lat + t,
            bound: Bound::Communication,
            overhead: lat,
        }
    }

    /// The TP all-reduce of `t` tokens' bf16 hidden states (ring: 2(n−1)/n
    /// of the message per rank); nothing without TP.
    fn tp_all_reduce(&self, kind: OpKind, count: u32, t: f64, ops: &mut Vec<Op>) {
        let n = self.layout.tp;
        if n > 1 {
            let bytes = Bytes(t * self.model.hidden_size as f64 * 2.0);
            ops.push(self.collective(kind, count, n, bytes, 2.0 * (n - 1) as f64 / n as f64));
        }
    }

    fn elementwise(&self, kind: OpKind, count: u32, bytes: Bytes, kernels: f64) -> Op {
        let overhead = self.cal.elementwise_overhead * kernels;
        Op {
            kind,
            count,
            flop: Flop::ZERO,
            bytes,
            time: bytes / (self.bw() * self.cal.gemm_bf16.mem_eff) + overhead,
            bound: Bound::Memory,
            overhead,
        }
    }

    /// One layer's ops: norms and residuals, the mixer and its TP
    /// all-reduce, then the dense MLP or the MoE block (a Nemotron-H block
    /// has only one of the two, and one norm and residual).
    fn layer_ops(&self, layer: &Layer, count: u32, s: &StepShape, ops: &mut Vec<Op>) {
        // Tokens on one GPU of this DP rank (TP ranks see the same tokens; CP splits them).
        let t = s.tokens() / self.layout.cp as f64;
        if t <= 0.0 {
            return;
        }
        ops.push(self.norms_residual(layer, count, t));
        match layer.mixer {
            Mixer::Absent => {}
            mixer @ (Mixer::Full
            | Mixer::FullDense
            | Mixer::FullKv { .. }
            | Mixer::Sliding { .. }
            | Mixer::Compressed { .. }
            | Mixer::Linear
            | Mixer::Mamba
            | Mixer::Projection) => {
                self.mixer_ops(mixer, count, s, t, ops);
                self.tp_all_reduce(OpKind::TpAllReduceAttn, count, t, ops);
            }
        }
        match layer.ffn {
            ffn @ (Ffn::Dense | Ffn::DenseOf { .. }) => {
                let width = self.model.dense_width(ffn).unwrap_or(0);
                let i = width as f64 / self.layout.tp as f64;
                self.mlp_ops((OpKind::MlpGateUp, OpKind::MlpDown), count, t, i, ops);
                self.tp_all_reduce(OpKind::TpAllReduceMlp, count, t, ops);
            }
            Ffn::Projection => {
                ops.push(self.projection(OpKind::MlpDown, count, t, self.model.dtypes.dense));
                self.tp_all_reduce(OpKind::TpAllReduceMlp, count, t, ops);
            }
            Ffn::Moe => self.moe_ops_with(count, t, s.peer_tokens, ops),
            Ffn::Absent => {}
        }
    }

    /// One layer's norms and residual adds over `t` tokens on this GPU.
    /// With hyper-connections (DeepSeek-V4) the residual is `streams`
    /// copies of the hidden state: around each block a fused `hc_pre` (one
    /// kernel more) and an `hc_post` in place of the residual add read and
    /// write the copies (`HyperConnections::block_bytes`, beside the plain
    /// residual's traffic) and do their FLOP (`block_flop`, at the bf16
    /// peak), and the block's fp32 mixing projection is read once per step;
    /// memory bound at these widths.
    fn norms_residual(&self, layer: &Layer, count: u32, t: f64) -> Op {
        let h = self.model.hidden_size as f64;
        // Two blocks (mixer and FFN) make a whole layer's norms and residuals.
        let blocks = layer.blocks() as f64;
        let share = blocks / 2.0;
        let mut bytes = Bytes(t * h * 2.0 * 6.0 * share);
        if let NormPlacement::AttentionResiduals { block_size } = self.model.norms {
            // Each block also reads and norms the stored block residuals:
            // on average half of the model's, and the running sum.
            let stored = self.model.n_layers().div_ceil(block_size.max(1) as usize) as f64;
            bytes += Bytes(t * h * 2.0 * (stored / 2.0 + 1.0) * blocks);
        }
        let Some(hc) = self.model.hyper_connections else {
            return self.elementwise(OpKind::NormsResidual, count, bytes, 4.0 * share);
        };
        let hidden = self.model.hidden_size;
        bytes += Bytes(blocks * (t * hc.block_bytes(hidden) + 4.0 * hc.block_params(hidden)));
        let flop = Flop(t * blocks * hc.block_flop(hidden));
        let overhead = self.cal.elementwise_overhead * (4.0 * share + blocks);
        let (_, peak) = self.gpu.peak_for(Precision::Bf16);
        let (time, bound) = roofline(
            flop / peak,
            bytes / (self.bw() * self.cal.gemm_bf16.mem_eff),
        );
        Op {
            kind: OpKind::NormsResidual,
            count,
            flop,
            bytes,
            time: time + overhead,
            bound,
            overhead,
        }
    }

    /// A hidden × hidden linear standing in for a block (DeciLM's
    /// `replace_with_linear`) over `t` tokens, split over TP by its input
    /// columns like o_proj and down_proj (then the block's all-reduce).
    fn projection(&self, kind: OpKind, count: u32, t: f64, w: DType) -> Op {
        let h = self.model.hidden_size as f64;
        let cols = h / self.layout.tp as f64;
        self.gemm(kind, count, t, h, cols, w, FixedCost::Own)
    }

    /// An MLP's gate/up (or up alone, ungated) and down GEMMs over `t`
    /// tokens with `i` intermediate columns on this GPU, in the dense
    /// weights' dtype.
    fn mlp_ops(&self, kinds: (OpKind, OpKind), count: u32, t: f64, i: f64, ops: &mut Vec<Op>) {
        let h = self.model.hidden_size as f64;
        let w = self.model.dtypes.dense;
        let inputs = self.model.gating.input_matrices();
        ops.push(self.gemm(kinds.0, count, t, inputs * i, h, w, FixedCost::Own));
        ops.push(self.gemm(kinds.1, count, t, h, i, w, FixedCost::Own));
    }

    /// The mixer of one layer over `t` tokens: linear attention, Mamba-2,
    /// or the model's GQA or MLA.
    fn mixer_ops(&self, mixer: Mixer, count: u32, s: &StepShape, t: f64, ops: &mut Vec<Op>) {
        let tp = self.layout.tp as f64;
        match mixer {
            Mixer::Linear => self.linear_ops(count, s, t, ops),
            Mixer::Mamba => self.mamba_ops(count, s, t, ops),
            Mixer::Projection => {
                let w = self.model.dtypes.attention;
                ops.push(self.projection(OpKind::OProj, count, t, w));
            }
            Mixer::Absent => {}
            mixer @ (Mixer::Full
            | Mixer::FullDense
            | Mixer::FullKv { .. }
            | Mixer::Sliding { .. }
            | Mixer::Compressed { .. }) => {
                match self.model.attention_of(mixer).expect("softmax mixer") {
                    Attention::Gqa {
                        n_heads,
                        n_kv_heads,
                        head_dim,
                        values,
                        output_gate,
                        ..
                    } => {
                        let g = GqaDims {
                            n_heads,
                            n_kv_heads,
                            head_dim,
                            values,
                            output_gate,
                        };
                        self.gqa_ops(count, s, mixer, t, &g, ops);
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
                        let heads = n_heads as f64 / tp;
                        let d = MlaDims {
                            heads,
                            q_lora: q_lora_rank.map(|r| r as f64),
                            kv_lora: kv_lora_rank as f64,
                            nope: qk_nope_head_dim as f64,
                            rope: qk_rope_head_dim as f64,
                            v: v_head_dim as f64,
                            gate: if output_gate {
                                heads * v_head_dim as f64
                            } else {
                                0.0
                            },
                            indexer: IndexerDims::of(self.model, mixer),
                        };
                        self.mla_ops(count, s, mixer, t, &d, ops);
                    }
                    Attention::SharedKv { .. } => self.shared_kv_ops(count, s, mixer, t, ops),
                }
            }
        }
    }

    /// GQA on one GPU: the fused qkv projection, the core, and o_proj.
    fn gqa_ops(
        &self,
        count: u32,
        s: &StepShape,
        mixer: Mixer,
        t: f64,
        g: &GqaDims,
        ops: &mut Vec<Op>,
    ) {
        let m = self.model;
        let l = &self.layout;
        let tp = l.tp as f64;
        let h = m.hidden_size as f64;
        let q = (g.n_heads * g.head_dim) as f64 / tp;
        let kv_local = if l.tp as u64 <= g.n_kv_heads {
            g.n_kv_heads / l.tp as u64
        } else {
            1
        };
        let kv = (kv_local * (g.head_dim + g.values.projected_dim())) as f64;
        let o = (g.n_heads * g.values.head_dim(g.head_dim)) as f64 / tp;
        let qo = q + g.output_gate.columns(g.n_heads, g.head_dim) as f64 / tp;
        ops.push(self.gemm(
            OpKind::QkvProj,
            count,
            t,
            qo + kv,
            h,
            m.dtypes.attention,
            FixedCost::Own,
        ));
        if let Some(ix) = IndexerDims::of(m, mixer) {
            // MiniMax-M3's index q (split with the heads) and its one
            // replicated index key head, both from the hidden state.
            let id = ix.head_dim as f64;
            ops.push(self.gemm(
                OpKind::DsaIndexerProj,
                count,
                t,
                ix.n_heads as f64 * id / tp + id,
                h,
                m.dtypes.attention,
                FixedCost::Own,
            ));
        }
        self.attention_core(
            count,
            s,
            mixer,
            g.n_heads as f64 / tp,
            kv_local as f64,
            g.head_dim as f64,
            ops,
        );
        ops.push(self.gemm(
            OpKind::OProj,
            count,
            t,
            h,
            o,
            m.dtypes.attention,
            FixedCost::Own,
        ));
    }

    /// MLA on one GPU: its projections, the core and o_proj, run as one
    /// module whose fixed cost (`mla_fixed`) covers all of them.
    fn mla_ops(
        &self,
        count: u32,
        s: &StepShape,
        mixer: Mixer,
        t: f64,
        d: &MlaDims,
        ops: &mut Vec<Op>,
    ) {
        let h = self.model.hidden_size as f64;
        let mut parts: Vec<Op> = Vec::with_capacity(8);
        self.mla_projections(count, s, t, d, &mut parts);
        self.attention_core(count, s, mixer, d.heads, 1.0, 0.0, &mut parts);
        parts.push(self.gemm(
            OpKind::OProj,
            count,
            t,
            h,
            d.heads * d.v,
            self.model.dtypes.attention,
            FixedCost::InModule,
        ));
        self.mla_module_ops(count, s, parts, ops);
    }

    /// MLA's projections before the core: the q/kv down-projections and
    /// q_b_proj for every token, kv_b_proj for prefill tokens, the absorbed
    /// BMMs for decode ones, and DSA's indexer projection.
    fn mla_projections(&self, count: u32, s: &StepShape, t: f64, d: &MlaDims, parts: &mut Vec<Op>) {
        let m = self.model;
        let h = m.hidden_size as f64;
        let w = m.dtypes.attention;
        let (nh, nope, rope, v, kvl) = (d.heads, d.nope, d.rope, d.v, d.kv_lora);
        let q_in = match d.q_lora {
            Some(r) => {
                parts.push(self.gemm(
                    OpKind::MlaQAKvAProj,
                    count,
                    t,
                    r + kvl + rope + d.gate,
                    h,
                    w,
                    FixedCost::InModule,
                ));
                r
            }
            None => {
                parts.push(self.gemm(
                    OpKind::MlaKvAProj,
                    count,
                    t,
                    kvl + rope + d.gate,
                    h,
                    w,
                    FixedCost::InModule,
                ));
                h
            }
        };
        parts.push(self.gemm(
            OpKind::MlaQBProj,
            count,
            t,
            nh * (nope + rope),
            q_in,
            w,
            FixedCost::InModule,
        ));
        let decode = s.decode_seqs;
        let prefill_tokens = s.prefill_seqs * s.prefill_tokens_per_seq;
        if prefill_tokens > 0.0 {
            parts.push(self.gemm(
                OpKind::MlaKvBProj,
                count,
                prefill_tokens,
                nh * (nope + v),
                kvl,
                w,
                FixedCost::InModule,
            ));
        }
        if decode > 0.0 {
            parts.push(self.mla_absorb(count, d, decode));
        }
        if let Some(ix) = d.indexer {
            let (ih, id) = (ix.n_heads as f64, ix.head_dim as f64);
            parts.push(self.gemm(
                OpKind::DsaIndexerProj,
                count,
                t,
                ih * id + id + ih,
                q_in.max(h),
                w,
                FixedCost::InModule,
            ));
        }
    }

    /// MLA's absorbed BMMs for `decode` tokens, as one op.
    fn mla_absorb(&self, count: u32, d: &MlaDims, decode: f64) -> Op {
        // Absorbed W_UK (q_nope into the latent) and W_UV (latent
        // into v): per head, two bf16 batched GEMMs.
        let uk = self.bmm(
            OpKind::MlaAbsorb,
            count,
            d.heads,
            decode,
            d.kv_lora,
            d.nope,
            FixedCost::InModule,
        );
        let uv = self.bmm(
            OpKind::MlaAbsorb,
            count,
            d.heads,
            decode,
            d.v,
            d.kv_lora,
            FixedCost::InModule,
        );
        Op {
            flop: uk.flop + uv.flop,
            bytes: uk.bytes + uv.bytes,
            time: uk.time + uv.time,
            ..uk
        }
    }

    /// MLA's parts as one module: scaled when the block is mostly prefill,
    /// then the module's fixed cost (`mla_fixed`).
    fn mla_module_ops(&self, count: u32, s: &StepShape, parts: Vec<Op>, ops: &mut Vec<Op>) {
        let decode = s.decode_seqs;
        let prefill_tokens = s.prefill_seqs * s.prefill_tokens_per_seq;
        // A block of mostly prefill tokens: its parts run slower than
        // their sum, and no faster than the eager block's floor.
        let prefill_block = prefill_tokens > decode;
        let scale = if prefill_block {
            self.cal.mla_prefill_scale
        } else {
            1.0
        };
        let mut sum = Seconds::ZERO;
        for mut p in parts {
            p.time = p.time * scale;
            sum += p.time;
            ops.push(p);
        }
        let fixed = if prefill_block {
            self.cal.mla_overhead.max(self.cal.mla_prefill_floor - sum)
        } else {
            self.cal.mla_overhead
        };
        ops.push(Op {
            kind: OpKind::MlaFixed,
            count,
            flop: Flop::ZERO,
            bytes: Bytes::ZERO,
            time: fixed,
            bound: Bound::Overhead,
            overhead: fixed,
        });
    }

    /// Attention core over `heads` local query heads and `kv_heads` local KV heads.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_core(
        &self,
        count: u32,
        s: &StepShape,
        mixer: Mixer,
        heads: f64,
        kv_heads: f64,
        head_dim: f64,
        ops: &mut Vec<Op>,
    ) {
        let m = self.model;
        let attn = &m.attention_of(mixer).expect("softmax mixer");
        let mla = matches!(attn, Attention::Mla { .. });
        let shared_kv = matches!(attn, Attention::SharedKv { .. });
        let core = CoreDims {
            count,
            heads,
            head_dim,
            kv_tok: if shared_kv {
                m.shared_kv_entry_bytes()
            } else {
                kv_bytes_per_token_layer_gpu(m, &self.layout, mixer)
            },
            window: mixer.window().map_or(f64::INFINITY, |w| w as f64),
            // DeepSeek-V4's indexer reads compressed entries (`compressed`).
            topk: match (m.indexer_of(mixer), shared_kv) {
                (Some(ix), false) => ix.topk as f64,
                (Some(_), true) | (None, _) => f64::INFINITY,
            },
            indexer: IndexerDims::of(m, mixer).filter(|_| !shared_kv),
            compressed: self.compressed_core(mixer),
        };
        let (decode_form, prefill_form) = attention_forms(attn, heads, head_dim);
        // DeepSeek-V4's sparse kernels are FlashMLA's (the V3.2 DSA ones):
        // they stand on the MLA tables (`mla_decode_core`, `mla_prefill_core`).
        let mla = mla || shared_kv;
        let (decode_curve, prefill_curve) = if mla {
            (&self.cal.mla_decode_core, &self.cal.mla_prefill_core)
        } else {
            (&self.cal.attn_decode, &self.cal.attn_prefill)
        };
        if s.decode_seqs > 0.0 {
            // The decode curve saturates in batch · KV heads; MLA's latent is one.
            let kv_streams = if mla { 1.0 } else { kv_heads };
            ops.push(self.decode_core(&core, s, decode_form, decode_curve, kv_streams));
        }
        if s.prefill_seqs > 0.0 {
            ops.push(self.prefill_core(&core, s, prefill_form, prefill_curve));
        }
    }

    /// The decode part of the attention core: each decode sequence's one new
    /// token reads its cached context (window- and top-k-limited).
    fn decode_core(
        &self,
        core: &CoreDims,
        s: &StepShape,
        form: (f64, f64),
        c: &AttentionDecodeCurve,
        kv_streams: f64,
    ) -> Op {
        let l = &self.layout;
        let b = s.decode_seqs;
        let ctx = (s.decode_context / l.cp as f64).min(core.window);
        let read = ctx.min(core.topk);
        let (flop_per_pair, qk_dim) = form;
        let mut flop = Flop(b * flop_per_pair * read);
        let mut bytes =
            Bytes(core.kv_tok.0 * b * read + b * core.heads * qk_dim.max(core.head_dim) * 4.0);
        match (core.indexer, core.compressed) {
            (_, Some(c)) => {
                // The compressed entries: read (all, or the indexer's
                // top-k), and every indexer key scored.
                let entries = (s.decode_context / l.cp as f64 / c.ratio).floor();
                let read = entries.min(c.read_max);
                flop += Flop(b * (flop_per_pair * read + c.index_flop * entries));
                bytes += Bytes(b * (c.entry.0 * read + c.index_key.0 * entries));
            }
            (Some(ix), None) => {
                flop += Flop(b * 2.0 * (ix.n_heads * ix.head_dim) as f64 * ctx);
                bytes += Bytes(b * ctx * ix.head_dim as f64);
            }
            (None, None) => {}
        }
        let p = b * kv_streams;
        let mem = saturating(c.mem_eff, p, c.p_half);
        let tc = flop / (self.gpu.peak_bf16() * c.eff_compute);
        let tm = bytes / (self.bw() * mem);
        let overhead = c.overhead + c.per_sequence * b;
        let (t, bound) = roofline(tc, tm);
        let mut cp_comm = Seconds::ZERO;
        if l.cp > 1 {
            // Partial softmax results merged across CP ranks.
            cp_comm = self.cal.allgather.at(l.cp, self.cal.collective_eff_max).0;
        }
        Op {
            kind: OpKind::AttentionDecode,
            count: core.count,
            flop,
            bytes,
            time: t + overhead + cp_comm,
            bound,
            overhead: overhead + cp_comm,
        }
    }

    /// The prefill part of the attention core: each prompt's new tokens
    /// attend causally to its cached prefix and to each other.
    fn prefill_core(
        &self,
        core: &CoreDims,
        s: &StepShape,
        form: (f64, f64),
        c: &AttentionPrefillCurve,
    ) -> Op {
        let l = &self.layout;
        let b = s.prefill_seqs;
        let n = s.prefill_tokens_per_seq / l.cp as f64;
        let s0 = s.prefill_offset;
        // Attended pairs of n new tokens after s0 cached ones, window-limited
        // (CP ranks split the query tokens, each attending the whole prefix).
        let full = s.prefill_tokens_per_seq;
        let pairs_total = causal_pairs(s0, full, core.window);
        let pairs = (pairs_total / l.cp as f64).min(n * core.topk.max(1.0));
        let (flop_per_pair, qk_dim) = form;
        let mut flop = Flop(b * flop_per_pair * pairs);
        let mut bytes = Bytes(
            b * n * (2.0 * core.heads * qk_dim.max(core.head_dim) * 2.0) + b * n * core.kv_tok.0,
        );
        if let Some(c) = core.compressed {
            // Compressed entries read and keys scored (CP ranks split the
            // queries), and the entries the new tokens add.
            let (read, scored) = c.prefill_reads(s0, full);
            let cp = l.cp as f64;
            flop += Flop(b * (flop_per_pair * read + c.index_flop * scored) / cp);
            bytes += Bytes(b * n * (c.entry.0 + c.index_key.0) / c.ratio);
        }
        let ctas = b * core.heads * (n / self.cal.prefill_tile_tokens).ceil();
        let isl = s0 + full;
        let eff = c.eff_max * saturating(1.0, isl, c.isl_half) * saturating(1.0, ctas, c.cta_half);
        let tc = flop / (self.gpu.peak_bf16() * eff.max(1e-6));
        let tm = bytes / (self.bw() * c.mem_eff);
        let (t, bound) = roofline(tc, tm);
        let mut comm = Seconds::ZERO;
        if l.cp > 1 {
            // Ring exchange of KV chunks, overlapped with compute.
            let kv_bytes = Bytes(b * n * core.kv_tok.0 * (l.cp - 1) as f64);
            comm = (kv_bytes / (self.gpu.nvlink_bandwidth * self.cal.nvlink_p2p_eff) - t)
                .max(Seconds::ZERO);
        }
        Op {
            kind: OpKind::AttentionPrefill,
            count: core.count,
            flop,
            bytes,
            time: t + c.overhead + comm,
            bound,
            overhead: c.overhead,
        }
    }

    /// Gated-DeltaNet linear attention on one GPU: in_proj, the recurrent
    /// state update, and out_proj.
    fn linear_ops(&self, count: u32, s: &StepShape, t: f64, ops: &mut Vec<Op>) {
        let m = self.model;
        let la = m
            .linear_attention
            .as_ref()
            .expect("linear layers imply a shape");
        let tp = self.layout.tp as f64;
        let h = m.hidden_size as f64;
        let (nk, nv) = (la.n_key_heads as f64 / tp, la.n_value_heads as f64 / tp);
        let (dk, dv) = (la.key_head_dim as f64, la.value_head_dim as f64);
        ops.push(self.gemm(
            OpKind::LinearAttnInProj,
            count,
            t,
            la.in_proj_columns(tp, h),
            h,
            m.dtypes.attention,
            FixedCost::Own,
        ));
        let state = m.state_bytes_per_layer(Mixer::Linear) / tp;
        let per_token = 6.0 * nv * dk * dv;
        let seqs = s.decode_seqs + s.prefill_seqs;
        // Chunked delta rule for prefill costs about 4× the recurrent form per token.
        let flop =
            Flop(per_token * (s.decode_seqs + 4.0 * s.prefill_seqs * s.prefill_tokens_per_seq));
        let bytes = state * (2.0 * seqs) + Bytes(t * (2.0 * nk * dk + 2.0 * nv * dv) * 2.0);
        ops.push(self.recurrent_state_op(count, flop, bytes));
        ops.push(self.gemm(
            OpKind::LinearAttnOutProj,
            count,
            t,
            h,
            nv * dv,
            m.dtypes.attention,
            FixedCost::Own,
        ));
    }

    /// The recurrent part of a linear-attention or Mamba-2 layer: `flop`
    /// and `bytes` (its state read and written, its token inputs and
    /// outputs) under the attention-decode curve's efficiencies and fixed
    /// cost. The calibration has Gated DeltaNet's kernels
    /// (`linear_attention_gdn.csv`, not fitted) and no Mamba or SSM table:
    /// both recurrences use this stand-in.
    fn recurrent_state_op(&self, count: u32, flop: Flop, bytes: Bytes) -> Op {
        let tc = flop / (self.gpu.peak_bf16() * self.cal.attn_decode.eff_compute);
        let tm = bytes / (self.bw() * self.cal.attn_decode.mem_eff);
        let (time, bound) = roofline(tc, tm);
        let overhead = self.cal.attn_decode.overhead;
        Op {
            kind: OpKind::LinearAttnState,
            count,
            flop,
            bytes,
            time: time + overhead,
            bound,
            overhead,
        }
    }

    /// Mamba-2 on one GPU (TP splits the heads, and the B/C groups up to
    /// their count): in_proj to z, x, B, C and dt; the causal conv and the
    /// scan (decode: one recurrent step per sequence, memory-bound on its
    /// state; prefill: the chunked SSD scan); out_proj. The projections are
    /// the linear-attention op kinds, the scan `linear_attn_state`.
    fn mamba_ops(&self, count: u32, s: &StepShape, t: f64, ops: &mut Vec<Op>) {
        let m = self.model;
        let mb = m.mamba.as_ref().expect("Mamba layers imply a shape");
        let tp = self.layout.tp as f64;
        let h = m.hidden_size as f64;
        let heads = mb.n_heads as f64 / tp;
        let (p, n, q) = (
            mb.head_dim as f64,
            mb.state_size as f64,
            mb.chunk_size as f64,
        );
        let d_inner = heads * p;
        let groups = (mb.n_groups as f64 / tp).max(1.0);
        let conv = d_inner + 2.0 * groups * n;
        let w = m.dtypes.attention;
        ops.push(self.gemm(
            OpKind::LinearAttnInProj,
            count,
            t,
            d_inner + conv + heads,
            h,
            w,
            FixedCost::Own,
        ));
        let state = m.state_bytes_per_layer(Mixer::Mamba) / tp;
        // Decode: decay the head_dim × state matrix of each head, add dt·x·Bᵀ,
        // read C·h (~6 FLOP per element). Prefill (SSD, chunks of q tokens):
        // chunk states, their passing and the output from them (~6·p·n per
        // head), the intra-chunk x product (2·q·p per head) and C·Bᵀ (2·q·n
        // per group), per token.
        let recurrent = 6.0 * d_inner * n;
        let chunked = recurrent + 2.0 * q * d_inner + 2.0 * q * n * groups;
        let conv_flop = 2.0 * mb.conv_kernel as f64 * conv;
        let prompt_tokens = s.prefill_seqs * s.prefill_tokens_per_seq;
        let flop =
            Flop((recurrent + conv_flop) * s.decode_seqs + (chunked + conv_flop) * prompt_tokens);
        let seqs = s.decode_seqs + s.prefill_seqs;
        // Inputs x, B, C, z and dt in; y out.
        let bytes = state * (2.0 * seqs) + Bytes(t * (conv + 2.0 * d_inner + heads) * 2.0);
        ops.push(self.recurrent_state_op(count, flop, bytes));
        ops.push(self.gemm(
            OpKind::LinearAttnOutProj,
            count,
            t,
            h,
            d_inner,
            w,
            FixedCost::Own,
        ));
    }

    /// The MoE block of one layer for `t` tokens on this GPU.
    pub fn moe_ops(&self, count: u32, t: f64, ops: &mut Vec<Op>) {
        self.moe_ops_with(count, t, None, ops)
    }

    /// The MoE block when the other attention-DP ranks bring `peer_tokens`
    /// each (None: as many as this GPU's rank).
    pub(crate) fn moe_ops_with(
        &self,
        count: u32,
        t: f64,
        peer_tokens: Option<f64>,
        ops: &mut Vec<Op>,
    ) {
        let m = self.model;
        let moe = m.moe.as_ref().expect("MoE layer implies MoE");
        let l = &self.layout;
        let h = m.hidden_size as f64;
        let e = moe.n_routed_experts as f64;
        ops.push(self.gemm(OpKind::Router, count, t, e, h, DType::Bf16, FixedCost::Own));
        if let Some(latent) = moe.latent_size {
            ops.push(self.latent_projections(count, t, latent as f64));
        }
        // Distinct tokens of the stage, and of one expert replica (EDP group).
        let peers = (l.dp - 1) as f64 * peer_tokens.map_or(t, |p| p / l.cp as f64);
        let stage_tokens = (t + peers) * l.cp as f64;
        let group_tokens = stage_tokens / l.edp() as f64;
        ops.push(self.routed_experts(moe, count, t, group_tokens));
        if moe.n_shared_experts > 0 && moe.shared_intermediate_size > 0 {
            let i = moe.n_shared_experts as f64 * moe.shared_intermediate_size as f64 / l.tp as f64;
            let kinds = (OpKind::SharedExpertGateUp, OpKind::SharedExpertDown);
            self.mlp_ops(kinds, count, t, i, ops);
        }
        // Communication around the experts.
        self.moe_comm_ops(moe, count, t, stage_tokens, ops);
    }

    /// LatentMoE's projections around the routed experts, hidden → latent
    /// before them and latent → hidden after, as one op: every GPU holds
    /// them whole and runs them on its own tokens.
    fn latent_projections(&self, count: u32, t: f64, latent: f64) -> Op {
        let h = self.model.hidden_size as f64;
        let w = self.model.dtypes.experts;
        let down = self.gemm(
            OpKind::MoeLatentProj,
            count,
            t,
            latent,
            h,
            w,
            FixedCost::Own,
        );
        let up = self.gemm(
            OpKind::MoeLatentProj,
            count,
            t,
            h,
            latent,
            w,
            FixedCost::Own,
        );
        Op {
            flop: down.flop + up.flop,
            bytes: down.bytes + up.bytes,
            time: down.time + up.time,
            overhead: down.overhead + up.overhead,
            ..down
        }
    }

    /// Whether every GPU of the TP group holds all the tokens that reach the
    /// experts (one attention-DP rank, no CP): no exchange, a TP all-reduce.
    fn moe_replicated(&self) -> bool {
        self.layout.dp * self.layout.cp == 1
    }

    /// The routed experts on this GPU: the grouped GEMM over the rows routed
    /// to its experts (the busiest EP rank's), and the permutation pass.
    fn routed_experts(&self, moe: &Moe, count: u32, t: f64, group_tokens: f64) -> Op {
        let m = self.model;
        let l = &self.layout;
        // The experts' width: the hidden size, or LatentMoE's latent.
        let h = moe.expert_width(m.hidden_size) as f64;
        let k = moe.experts_per_token as f64;
        let e = moe.n_routed_experts as f64;
        let slots = e + l.redundant_slots(self.redundant_experts) as f64;
        let e_local = slots / l.ep as f64;
        let i_local = moe.expert_intermediate_size as f64 / l.etp as f64;
        let rows_mean = group_tokens * k / l.ep as f64;
        let rows = rows_mean * (1.0 + self.load_imbalance);
        let w = m.dtypes.experts;
        let (precision, peak) = self.moe_precision(w);
        let curve: &MoeCurve = self.moe_curve(w, precision);
        let touched = self.routing.touched(e_local, e, group_tokens * k);
        let tpe = group_tokens * k / e;
        let (matrices, inputs) = (m.gating.matrices(), m.gating.input_matrices());
        let flop = Flop(2.0 * matrices * h * i_local * rows);
        let bytes = Bytes(
            touched * matrices * h * i_local * w.bytes()
                + rows * (2.0 * h + inputs * i_local) * 2.0,
        );
        let eff = curve.eff_max
            * saturating(1.0, tpe, curve.tpe_half)
            * saturating(1.0, i_local, curve.width_half);
        let tc = flop / (peak * eff.max(1e-6));
        let tm = bytes / (self.bw() * curve.mem_eff);
        // Rows the permutation pass covers: every routed row of the tokens
        // this GPU holds when they are replicated over the TP group (the
        // fits charge it on T·k whatever the EP size), else the rows
        // dispatched to it.
        let present = if self.moe_replicated() { t * k } else { rows };
        let rows_pass = Bytes(present * (h + i_local) * 2.0) / (self.bw() * curve.rows_eff);
        let fixed = curve.overhead + curve.per_local_expert * e_local + curve.per_width * i_local;
        let (time, bound) = roofline(tc, tm);
        Op {
            kind: OpKind::MoeExperts,
            count,
            flop,
            bytes,
            time: time + rows_pass + fixed,
            bound,
            overhead: fixed,
        }
    }

    /// The collectives around the experts: the TP all-reduce when every GPU
    /// holds the tokens, else the EP exchange and the TP all-gather after
    /// it, else expert TP's gather and reduce-scatter over the DP ranks.
    fn moe_comm_ops(&self, moe: &Moe, count: u32, t: f64, stage_tokens: f64, ops: &mut Vec<Op>) {
        let l = &self.layout;
        let h = self.model.hidden_size as f64;
        let tp = l.tp as f64;
        if self.moe_replicated() {
            self.tp_all_reduce(OpKind::TpAllReduceMoe, count, t, ops);
        } else if l.ep > 1 {
            self.ep_exchange_ops(moe, count, t, ops);
            if l.tp > 1 {
                ops.push(self.collective(
                    OpKind::TpAllGatherMoe,
                    count,
                    l.tp,
                    Bytes(t * h * 2.0),
                    (tp - 1.0) / tp,
                ));
            }
        } else if l.etp > 1 {
            // Experts split across the attention-DP ranks: gather tokens, reduce-scatter results.
            let g = l.etp;
            let bytes = Bytes(stage_tokens * self.exchange_width() * 2.0 / l.edp() as f64);
            ops.push(self.collective(
                OpKind::DpAllGather,
                count,
                g,
                bytes,
                (g - 1) as f64 / g as f64,
            ));
            ops.push(self.collective(
                OpKind::DpReduceScatter,
                count,
                g,
                bytes,
                (g - 1) as f64 / g as f64,
            ));
        }
    }

    /// The EP exchange (DeepEP): the dispatch of this GPU's routed tokens to
    /// the experts' owners, and the combine that brings them back.
    fn ep_exchange_ops(&self, moe: &Moe, count: u32, t: f64, ops: &mut Vec<Op>) {
        let l = &self.layout;
        let h = self.exchange_width();
        let k = moe.experts_per_token as f64;
        // Each GPU dispatches its share of the rank's tokens to expert owners and gets them back.
        let own = t / l.tp as f64;
        let payload = Bytes(own * k * h * 2.0 * (l.ep - 1) as f64 / l.ep as f64);
        // The engine's low-latency mode up to its buffer, else high-throughput.
        let ll = own <= self.cal.alltoall_ll_max_tokens;
        let c = if ll {
            &self.cal.alltoall_ll
        } else {
            &self.cal.alltoall_ht
        };
        let x = if l.ep * l.etp <= self.gpu.gpus_per_node {
            // Inside one node: the fitted DeepEP curves (bytes = routed copies
            // in bf16, as the calibration was fitted).
            EpTraffic {
                dispatch: (self.nvlink_time(c.dispatch_eff, payload), payload),
                combine: (self.nvlink_time(c.combine_eff, payload), payload),
                extra: Seconds::ZERO,
            }
        } else {
            self.ep_across_nodes(c, own, k, payload)
        };
        let dispatch_latency = c.dispatch_latency + x.extra;
        let combine_latency = c.combine_latency + x.extra;
        ops.push(exchange_leg(
            OpKind::EpDispatch,
            count,
            dispatch_latency,
            x.dispatch,
        ));
        ops.push(exchange_leg(
            OpKind::EpCombine,
            count,
            combine_latency,
            x.combine,
        ));
    }

    /// The EP exchange's traffic across nodes for `own` tokens of this GPU
    /// routed to `k` experts each (`payload`: its bf16 routed copies).
    fn ep_across_nodes(&self, c: &AllToAllCurve, own: f64, k: f64, payload: Bytes) -> EpTraffic {
        let h = self.exchange_width();
        let group = self.layout.ep * self.layout.etp;
        let node = self.gpu.gpus_per_node;
        // Across nodes DeepEP sends each token once per destination
        // node over the network (then forwards it on NVLink), and
        // dispatches in FP8 (1 byte + a 4-byte scale per 128) when the
        // experts compute in FP8; the combine returns bf16. With k
        // experts drawn over N nodes a token reaches N(1 − (1 − 1/N)^k)
        // distinct nodes, of which (N − 1)/N are remote on average.
        let nodes = (group as f64 / node as f64).ceil();
        let reached = expected_distinct(nodes, k);
        let remote = reached * (nodes - 1.0) / nodes;
        let fp8 = matches!(
            self.moe_precision(self.model.dtypes.experts).0,
            Precision::Fp8 | Precision::Fp4
        );
        // FP8 dispatch: e4m3 values with one fp32 scale per block of channels.
        let dispatch_elem = if fp8 {
            1.0 + 4.0 / self.cal.fp8_dispatch_block
        } else {
            2.0
        };
        let net = self.gpu.network_bandwidth * self.cal.network_eff;
        let net_dispatch = Bytes(own * remote * h * dispatch_elem);
        let net_combine = Bytes(own * remote * h * 2.0);
        // The local part still rides NVLink, overlapped with the network.
        let local = payload * ((node - 1) as f64 / (group - 1).max(1) as f64);
        EpTraffic {
            dispatch: (
                (net_dispatch / net).max(self.nvlink_time(c.dispatch_eff, local)),
                net_dispatch + local,
            ),
            combine: (
                (net_combine / net).max(self.nvlink_time(c.combine_eff, local)),
                net_combine + local,
            ),
            extra: self.gpu.network_latency,
        }
    }

    /// The width of a token exchanged with the experts: the hidden size, or
    /// LatentMoE's latent (the projections run on the token's own GPU).
    fn exchange_width(&self) -> f64 {
        let h = self.model.hidden_size;
        self.model.moe.as_ref().map_or(h, |m| m.expert_width(h)) as f64
    }

    /// Time to move `bytes` over NVLink at `eff` of its bandwidth.
    fn nvlink_time(&self, eff: f64, bytes: Bytes) -> Seconds {
        bytes / (self.gpu.nvlink_bandwidth * eff)
    }

    /// The math precision (and peak) of the fused-MoE kernel engines run for
    /// experts stored as `w`: int4 kernels are weight-only (w4a16: Marlin),
    /// 16-bit math on every GPU; mxfp4 too on GPUs without FP4 tensor cores
    /// (Marlin, OAI Triton, FlashInfer MXFP4×BF16), and MXFP4×MXFP8 (W4A8,
    /// FP8 math) on those with; nvfp4 runs on FP4 tensor cores where the GPU
    /// has them (else FP4 Marlin, 16-bit); fp8 in FP8.
    pub(crate) fn moe_precision(&self, w: DType) -> (Precision, FlopPerSecond) {
        let fp4_cores = self.gpu.peak.contains_key(&Precision::Fp4);
        match w {
            DType::Mxfp4 if fp4_cores => self.gpu.peak_for(Precision::Fp8),
            DType::Int4 | DType::Mxfp4 => self.gpu.peak_for(Precision::Bf16),
            _ => self.gpu.peak_for(w.preferred_compute()),
        }
    }

    /// The fused-MoE kernel the profile's engine runs for experts stored as
    /// `w` (computing in `precision`, see `moe_precision`) under this layout;
    /// each profile fits these families to that engine's own kernels
    /// (`docs/calibration.md` names them):
    /// - fp8: `moe_fp8` without expert parallelism, `moe_fp8_ep` with it
    ///   (vLLM on Hopper switches from Triton to the FlashInfer-Cutlass
    ///   grouped GEMM fed by the all-to-all);
    /// - int4: `moe_int4`; mxfp4: `moe_mxfp4` (the engine's gpt-oss kernel);
    /// - nvfp4 on FP4 tensor cores: `moe_fp4`; without them: `moe_fp4_marlin`;
    /// - anything else: `moe_bf16`.
    pub(crate) fn moe_curve(&self, w: DType, precision: Precision) -> &MoeCurve {
        let cal = self.cal;
        match w {
            DType::Fp8 if self.layout.ep > 1 => &cal.moe_fp8_ep,
            DType::Fp8 => &cal.moe_fp8,
            DType::Int4 => &cal.moe_int4,
            DType::Mxfp4 => &cal.moe_mxfp4,
            DType::Nvfp4 if precision == Precision::Fp4 => &cal.moe_fp4,
            DType::Nvfp4 => &cal.moe_fp4_marlin,
            _ => &cal.moe_bf16,
        }
    }

    fn embedding_ops(&self, s: &StepShape, ops: &mut Vec<Op>) {
        let h = self.model.hidden_size as f64;
        let t = s.tokens() / self.layout.cp as f64;
        ops.push(self.elementwise(OpKind::Embedding, 1, Bytes(t * h * 2.0 * 2.0), 1.0));
        self.tp_all_reduce(OpKind::TpAllReduceEmbedding, 1, t, ops);
    }

    fn lm_head_ops(&self, s: &StepShape, ops: &mut Vec<Op>) {
        let m = self.model;
        let tp = self.layout.tp as f64;
        let rows = s.sampled().max(1.0);
        ops.push(self.gemm(
            OpKind::LmHead,
            1,
            rows,
            m.vocab_size as f64 / tp,
            m.hidden_size as f64,
            m.dtypes.lm_head,
            FixedCost::Own,
        ));
        if self.layout.tp > 1 {
            ops.push(self.collective(
                OpKind::LogitsAllGather,
                1,
                self.layout.tp,
                Bytes(rows * m.vocab_size as f64 * 4.0 / tp),
                tp - 1.0,
            ));
        }
        ops.push(self.elementwise(
            OpKind::Sampling,
            1,
            Bytes(rows * m.vocab_size as f64 * 4.0 / tp),
            2.0,
        ));
    }

    /// The ops of pipeline stage `stage` for `shape`, by part, in the order
    /// `step` sums them: one entry per class of identical layers, `(Some(layer),
    /// ops)` with `count` = the layers of the class; then `(None, ops)` for the
    /// embedding on the first stage and `(None, ops)` for the LM head and
    /// sampling on the last. The DAG (`crate::dag`) draws its nodes from this,
    /// and checks that their critical path equals `step(shape).traversal()`.
    pub(crate) fn stage_parts(
        &self,
        stage: usize,
        shape: &StepShape,
    ) -> Vec<(Option<Layer>, Vec<Op>)> {
        let n = self.stages.len();
        let mut parts = Vec::new();
        for (layer, count) in &self.stages[stage] {
            let mut ops = Vec::new();
            self.layer_ops(layer, *count, shape, &mut ops);
            parts.push((Some(*layer), ops));
        }
        if stage == 0 {
            let mut ops = Vec::new();
            self.embedding_ops(shape, &mut ops);
            parts.push((None, ops));
        }
        if stage == n - 1 {
            let mut ops = Vec::new();
            self.lm_head_ops(shape, &mut ops);
            parts.push((None, ops));
        }
        parts
    }
}

/// Per query token, for decode and for prefill: FLOP per attended key, and
/// the query/key width. MLA runs in two forms, and engines split a mixed
/// batch by kind: decode tokens attend absorbed over the latent KV
/// (q·[c_kv, k_rope] then p·c_kv: 2·heads·(2·kv_lora + rope) FLOP per cached
/// token); prefill tokens attend with K and V decompressed by kv_b_proj
/// (2·heads·(nope + rope + v)).
fn attention_forms(attn: &Attention, heads: f64, head_dim: f64) -> ((f64, f64), (f64, f64)) {
    match attn {
        Attention::Gqa {
            head_dim: key_dim,
            values,
            ..
        } => {
            // q·k over the key width, p·v over the value width (the
            // same scale as `head_dim`, which the caller may set).
            let v = head_dim * values.head_dim(*key_dim) as f64 / *key_dim as f64;
            let per_pair = 2.0 * heads * (head_dim + v);
            ((per_pair, head_dim), (per_pair, head_dim))
        }
        Attention::Mla {
            kv_lora_rank,
            qk_rope_head_dim,
            qk_nope_head_dim,
            v_head_dim,
            ..
        } => (
            (
                2.0 * heads * (2 * kv_lora_rank + qk_rope_head_dim) as f64,
                (*kv_lora_rank + *qk_rope_head_dim) as f64,
            ),
            (
                2.0 * heads * (*qk_nope_head_dim + *qk_rope_head_dim + *v_head_dim) as f64,
                (*qk_nope_head_dim + *qk_rope_head_dim) as f64,
            ),
        ),
        // One form: q·k and p·v over the shared head, in both phases.
        Attention::SharedKv { head_dim, .. } => {
            let form = (2.0 * heads * 2.0 * *head_dim as f64, *head_dim as f64);
            (form, form)
        }
    }
}

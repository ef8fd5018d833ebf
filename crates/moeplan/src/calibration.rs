//! Efficiency curves of the kernels an engine runs on a GPU.
//!
//! The cost model is a roofline: an operator takes
//! `max(FLOP / (peak × compute efficiency), bytes / (bandwidth × memory
//! efficiency)) + fixed cost`. The efficiencies depend on shape (a GEMM with
//! few rows cannot fill the tensor cores) and are fitted, a few
//! interpretable parameters per kernel family, to measured kernel timings by
//! `tools/calibration/fit.py` to the kernels each engine runs
//! (`docs/calibration.md`). The fitted values are data: each calibration
//! profile (`crate::profile`, one file per GPU × engine in
//! `crates/moeplan/profiles/`) carries one `Calibration` in its `[kernels]`
//! tables, with the tables and engine version it came from and the fit error
//! of each family.
//!
//! In a profile file, times are plain numbers in microseconds under keys
//! ending in `_us`, bandwidth fractions are relative to the GPU's datasheet
//! figures, and compute fractions to its dense peak in the kernel's precision.

use crate::units::{Bytes, Fraction, Seconds};
use serde::{Deserialize, Serialize};

/// Serde for `Seconds` written as microseconds.
mod micros {
    use crate::units::Seconds;
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(t: &Seconds, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(t.us())
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
        f64::deserialize(d).map(Seconds::from_us)
    }
}

/// Serde for three `Seconds` written as microseconds.
mod micros3 {
    use crate::units::Seconds;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub(crate) fn serialize<S: Serializer>(t: &[Seconds; 3], s: S) -> Result<S::Ok, S::Error> {
        [t[0].us(), t[1].us(), t[2].us()].serialize(s)
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[Seconds; 3], D::Error> {
        <[f64; 3]>::deserialize(d).map(|v| v.map(Seconds::from_us))
    }
}

/// Serde for `Bytes` written as MiB.
mod mib {
    use crate::units::{Bytes, MIB};
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(b.0 / MIB)
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        f64::deserialize(d).map(|v| Bytes(v * MIB))
    }
}

/// A GEMM: `eff(m) = eff_max · m / (m + m_half)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GemmCurve {
    /// Fraction of the precision's peak a large GEMM reaches.
    pub(crate) eff_max: f64,
    /// Rows (tokens) at which efficiency is half of `eff_max`.
    pub(crate) m_half: f64,
    /// Fraction of HBM bandwidth when bandwidth bound.
    pub(crate) mem_eff: f64,
    /// Fixed cost per GEMM.
    #[serde(rename = "overhead_us", with = "micros")]
    pub overhead: Seconds,
    /// HBM fraction of the activation-quantisation pass (3 bytes per input
    /// element) of fp8/fp4 GEMMs; 0 (or absent) when there is none.
    #[serde(default)]
    pub(crate) quant_eff: f64,
}

/// A fused MoE layer: grouped GEMMs whose efficiency saturates in tokens
/// per expert, plus a routing/permutation pass over the routed rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoeCurve {
    /// Fraction of peak at many tokens per expert.
    pub(crate) eff_max: f64,
    /// Tokens per expert at half of `eff_max`.
    pub(crate) tpe_half: f64,
    /// Fraction of HBM bandwidth reading expert weights.
    pub(crate) mem_eff: f64,
    /// Fixed cost per MoE layer.
    #[serde(rename = "overhead_us", with = "micros")]
    pub overhead: Seconds,
    /// Fixed cost per expert held on the GPU (per-expert problem setup of
    /// grouped-GEMM kernels that launch every local expert).
    #[serde(rename = "per_local_expert_us", with = "micros")]
    pub(crate) per_local_expert: Seconds,
    /// HBM fraction of the sort/activation/reduce pass over routed rows.
    pub(crate) rows_eff: f64,
    /// Fixed cost per column of an expert's width on the GPU (I / etp): the
    /// down projection reduces over it serially, a latency that few tokens
    /// per expert do not hide (at ≤ 64 tokens vLLM's gpt-oss kernel takes
    /// 40 µs at I/tp = 360 and 63 µs at 2880). 0 (or absent) when none.
    #[serde(rename = "width_us", with = "micros", default)]
    pub(crate) per_width: Seconds,
    /// Expert width on the GPU (I / etp) at which the grouped GEMMs reach
    /// half of `eff_max`: narrow experts (high expert TP) fill fewer tiles
    /// (without it, TensorRT-LLM's FP8 MoE at ep > 1 on H100 was 30% faster
    /// than predicted at expert TP ≥ 8 and ≥ 1k tokens). 0 (or absent): no
    /// such loss.
    #[serde(default)]
    pub(crate) width_half: f64,
}
/// Causal prefill attention: efficiency saturates in prompt length and in
/// the number of thread blocks `b · heads · ⌈isl/128⌉`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionPrefillCurve {
    /// Fraction of the 16-bit peak.
    pub(crate) eff_max: f64,
    /// Prompt length at half efficiency.
    pub(crate) isl_half: f64,
    /// Thread blocks at half efficiency.
    pub cta_half: f64,
    /// Per-token cost expressed as an HBM fraction (Q, K, V, O traffic).
    pub(crate) mem_eff: f64,
    /// Fixed cost per call.
    #[serde(rename = "overhead_us", with = "micros")]
    pub overhead: Seconds,
}

/// Decode attention: a KV-cache read whose bandwidth saturates in the
/// parallelism `batch · kv_heads`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionDecodeCurve {
    /// Fraction of the 16-bit peak for the score/value math.
    pub(crate) eff_compute: f64,
    /// Fraction of HBM bandwidth at full parallelism.
    pub(crate) mem_eff: f64,
    /// `batch · kv_heads` at half bandwidth.
    pub(crate) p_half: f64,
    /// Fixed cost per call.
    #[serde(rename = "overhead_us", with = "micros")]
    pub overhead: Seconds,
    /// Cost per sequence in the batch.
    #[serde(rename = "per_sequence_us", with = "micros")]
    pub(crate) per_sequence: Seconds,
}

/// A collective on the scale-up link: `latency + factor · bytes / (link · eff)`,
/// with latency and bandwidth fraction measured at 2, 4 and 8 ranks and
/// interpolated in log2(ranks) (extrapolated along the 4→8 slope beyond).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectiveCurve {
    /// Latency at 2, 4 and 8 ranks.
    #[serde(rename = "latency_us", with = "micros3")]
    pub latency: [Seconds; 3],
    /// Bus bandwidth as a fraction of per-direction link bandwidth at 2, 4 and 8 ranks.
    pub eff: [f64; 3],
}

impl CollectiveCurve {
    /// Latency and bandwidth fraction for `n` ranks, the fraction at most
    /// `eff_max` (the profile's `collective_eff_max`).
    pub fn at(&self, n: u32, eff_max: f64) -> (Seconds, f64) {
        let x = (n.max(2) as f64).log2() - 1.0; // 0 at 2 ranks, 1 at 4, 2 at 8
        let (i, f) = if x <= 1.0 { (0, x) } else { (1, x - 1.0) };
        let lerp = |a: f64, b: f64| a + (b - a) * f;
        (
            Seconds(lerp(self.latency[i].0, self.latency[i + 1].0)),
            lerp(self.eff[i], self.eff[i + 1]).min(eff_max),
        )
    }
}

/// Expert-parallel dispatch/combine (DeepEP): `latency + bytes / (link · eff)`,
/// with bytes the bf16 payload of k copies of each token, `T·k·h·2·(ep−1)/ep`.
/// An `eff` above 1 means the engine moves less than that (FP8 dispatch, one
/// copy per destination rank rather than per expert).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllToAllCurve {
    /// Fixed cost of one dispatch.
    #[serde(rename = "dispatch_latency_us", with = "micros")]
    pub(crate) dispatch_latency: Seconds,
    /// Fixed cost of one combine.
    #[serde(rename = "combine_latency_us", with = "micros")]
    pub(crate) combine_latency: Seconds,
    /// Fraction of per-direction link bandwidth a dispatch reaches (on the bf16 k-copy payload).
    pub(crate) dispatch_eff: f64,
    /// Fraction of per-direction link bandwidth a combine reaches (on the bf16 k-copy payload).
    pub(crate) combine_eff: f64,
}

/// Every fitted curve of one engine on one GPU, and its serving layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// BF16 GEMMs.
    pub gemm_bf16: GemmCurve,
    /// FP8 (block-scaled) GEMMs.
    pub gemm_fp8: GemmCurve,
    /// NVFP4 GEMMs on FP4 tensor cores (Blackwell). Unused on GPUs without
    /// them, where 4-bit weights run weight-only through `gemm_bf16`.
    pub gemm_fp4: GemmCurve,
    /// BF16 fused MoE.
    pub moe_bf16: MoeCurve,
    /// FP8 block-scaled fused MoE, the kernel the engine runs without expert
    /// parallelism (tokens replicated over a TP group; vLLM on Hopper: Triton).
    pub moe_fp8: MoeCurve,
    /// FP8 block-scaled fused MoE under expert parallelism, fed by the
    /// all-to-all (vLLM on Hopper: the FlashInfer-Cutlass grouped GEMM).
    pub moe_fp8_ep: MoeCurve,
    /// INT4 weight-only fused MoE (Marlin, or the engine's own).
    pub moe_int4: MoeCurve,
    /// MXFP4 weight-only (w4a16) fused MoE, the engine's gpt-oss kernel (OAI
    /// Triton on Hopper, FlashInfer TRT-LLM MXFP4×BF16 on Blackwell); 16-bit math.
    pub moe_mxfp4: MoeCurve,
    /// NVFP4 fused MoE on FP4 tensor cores (Blackwell).
    pub moe_fp4: MoeCurve,
    /// NVFP4 weights on GPUs without FP4 tensor cores (FP4 Marlin; the mxfp4
    /// Marlin fit stands for it).
    pub moe_fp4_marlin: MoeCurve,
    /// Prefill attention (GQA/MHA).
    pub attn_prefill: AttentionPrefillCurve,
    /// Decode attention (GQA/MHA).
    pub attn_decode: AttentionDecodeCurve,
    /// MLA prefill attention core, non-absorbed (qk = nope + rope, v).
    pub mla_prefill_core: AttentionPrefillCurve,
    /// MLA decode attention core, absorbed over the latent KV (one KV head).
    pub mla_decode_core: AttentionDecodeCurve,
    /// MLA absorb BMMs (per-head W_UK and W_UV, bf16).
    pub mla_bmm: GemmCurve,
    /// Fixed cost of a whole MLA block beyond its parts (norms, RoPE, cache write).
    #[serde(rename = "mla_overhead_us", with = "micros")]
    pub mla_overhead: Seconds,
    /// MLA prefill runs this much slower than the sum of its parts.
    pub mla_prefill_scale: f64,
    /// Smallest time of an MLA block in a prefill step (host-bound launches
    /// of an eager prefill block); the block costs max(scaled parts + fixed cost, floor).
    #[serde(rename = "mla_prefill_floor_us", with = "micros")]
    pub mla_prefill_floor: Seconds,
    /// All-reduce up to `custom_allreduce_max`: the engine's own all-reduce
    /// (vLLM/SGLang custom all-reduce in a CUDA graph, TensorRT-LLM's AUTO strategy).
    pub allreduce: CollectiveCurve,
    /// All-reduce above `custom_allreduce_max`: NCCL.
    pub allreduce_nccl: CollectiveCurve,
    /// Largest message the engine's own all-reduce takes; larger ones go to NCCL.
    #[serde(rename = "custom_allreduce_max_mib", with = "mib")]
    pub custom_allreduce_max: Bytes,
    /// All-gather / reduce-scatter (NCCL).
    pub allgather: CollectiveCurve,
    /// Low-latency all-to-all (decode-sized batches).
    pub alltoall_ll: AllToAllCurve,
    /// High-throughput all-to-all (prefill-sized batches).
    pub alltoall_ht: AllToAllCurve,
    /// Tokens per GPU up to which the engine dispatches in low-latency mode
    /// (its low-latency buffer); above, high-throughput mode.
    pub alltoall_ll_max_tokens: f64,
    /// Fraction of the network bandwidth an inter-node transfer reaches
    /// (no inter-node measurements: an assumption, stated as such).
    pub(crate) network_eff: f64,
    /// Fraction of the NVLink bandwidth a point-to-point transfer reaches
    /// (pipeline activations, the context-parallel KV ring). No profile
    /// measures it: an assumption each profile states as such (NCCL
    /// send/recv inside a node reaches 0.6-0.8 of the link).
    pub(crate) nvlink_p2p_eff: f64,
    /// Fixed cost per small elementwise kernel (norms, activations, residuals).
    #[serde(rename = "elementwise_overhead_us", with = "micros")]
    pub(crate) elementwise_overhead: Seconds,
    /// Query rows one CTA of the prefill attention kernels takes (the
    /// 128-row tile of FlashAttention-2/3 and FlashInfer): the thread blocks
    /// `cta_half` is counted in. A constant of the form, not fitted.
    pub prefill_tile_tokens: f64,
    /// Channels per fp32 scale of the EP dispatch in FP8 (DeepEP: e4m3
    /// values, one scale per 128): an element takes `1 + 4 / block` bytes.
    pub(crate) fp8_dispatch_block: f64,
    /// Most of the link a collective's bus bandwidth reaches (caps the
    /// curves' extrapolation beyond 8 ranks). An assumption, not fitted.
    pub collective_eff_max: f64,
    /// Where these figures come from (set by the profile that holds them).
    #[serde(skip)]
    pub source: String,
    /// The serving layer's fitted parameters (set by the profile, from the
    /// engine's fit to end-to-end runs).
    #[serde(skip)]
    pub serving: ServingParams,
}

/// What an engine and its benchmark client add to the kernels' time, fitted
/// to end-to-end runs (`crates/moeplan/profiles/serving.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServingParams {
    /// Scheduler and launch time per step outside the kernels (µs).
    #[serde(rename = "step_overhead_us", with = "micros")]
    #[schemars(with = "f64")]
    pub step_overhead: Seconds,
    /// Scheduler time per request in a step, outside the kernels (input
    /// preparation, sampling bookkeeping, output processing of each running
    /// request): a step of `n` requests per rank adds `n` of it (µs). What
    /// `moeplan calibrate` fits to a stack's own runs at more than one
    /// batch per rank; the built-in layers hold it at 0: fitted to every
    /// engine's runs across train.csv's models (8-25 µs) it improved the
    /// in-sample TPOT error (14.7% to 14.2%) but not the leave-one-model-out
    /// one (16.5% to 17.1%): a host's and a build's figure, not an engine's.
    #[serde(
        rename = "sequence_overhead_us",
        with = "micros",
        default,
        skip_serializing_if = "is_zero_seconds"
    )]
    #[schemars(with = "f64")]
    pub sequence_overhead: Seconds,
    /// Time per request outside the steps (HTTP, tokenisation, first
    /// detokenisation); adds to TTFT (µs).
    #[serde(rename = "request_overhead_us", with = "micros")]
    #[schemars(with = "f64")]
    pub request_overhead: Seconds,
    /// Rounds of `concurrency` requests a benchmark runs (its first round is
    /// the transient where every prompt arrives at once).
    pub rounds: f64,
    /// Steps a new request spends outside the steps that carry its prompt
    /// (the step in progress, output processing, streaming): steady-state
    /// steps, or prompt-carrying steps where a mixed scheduler's fixed-length
    /// requests arrive in groups (`serving::closed_loop::wait_unit`).
    pub arrival_wait: f64,
    /// Steps of arrival wait added per request running on the rank: a new
    /// request waits `arrival_wait + arrival_wait_per_request × running`
    /// steps (`serving::closed_loop::ArrivalWait`). Runs of one
    /// stack measure a wait that grows with the batch (MiniMax-M2.5 on 4×B200,
    /// vLLM 0.19: TTFT 7.5 steady steps at 4 requests, 23 at 512), where a
    /// fixed number of steps stays flat. Read by mixed schedulers' loops
    /// and by a disaggregated decode pool, whose requests join a decode
    /// batch whatever the scheduler; an aggregated prefill-first loop keeps
    /// the fixed steps (its wait grows with its groups already). What
    /// `moeplan calibrate` fits to a stack's aggregated runs at more than one
    /// load, and the built-in aggregated layers of mixed schedulers to
    /// theirs; other layers hold it at 0.
    #[serde(
        rename = "arrival_wait_per_request",
        default,
        skip_serializing_if = "is_zero_f64"
    )]
    pub wait_per_request: f64,
    /// Ratio of measured to modelled kernel time in steps that carry prompts.
    pub prefill_scale: f64,
    /// Ratio of measured to modelled kernel time in decode steps.
    pub decode_scale: f64,
    /// Ratio of the kernels' fixed costs in a CUDA-graph step to the fixed
    /// costs measured on isolated launches (≤ 1).
    #[serde(default = "one")]
    pub graph_fixed_scale: f64,
    /// Requests per attention-DP rank that wait for a running slot even
    /// when the engine's cap holds every request the benchmark keeps in
    /// flight: a harness that runs its client one request above the
    /// engine's batch size (each waits one completion interval, so TTFT
    /// grows with the output length at a fixed batch). A property of one
    /// benchmark set-up, not of an engine: `moeplan calibrate` fits it to a
    /// stack's own runs; the built-in layers hold it at 0.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub held_slots: f64,
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

fn is_zero_seconds(t: &Seconds) -> bool {
    t.0 == 0.0
}

impl ServingParams {
    /// The first value outside its bound (`bounds`: the serving layer's
    /// table, which the fit's search space also stops at), named with its
    /// key: a hand-edited profile's typo, say.
    pub fn check(&self) -> Result<(), String> {
        use crate::bounds;
        let values = [
            (
                "step_overhead_us",
                self.step_overhead.0,
                bounds::STEP_OVERHEAD,
            ),
            (
                "sequence_overhead_us",
                self.sequence_overhead.0,
                bounds::SEQUENCE_OVERHEAD,
            ),
            (
                "request_overhead_us",
                self.request_overhead.0,
                bounds::REQUEST_OVERHEAD,
            ),
            ("rounds", self.rounds, bounds::BENCHMARK_ROUNDS),
            ("arrival_wait", self.arrival_wait, bounds::ARRIVAL_WAIT),
            (
                "arrival_wait_per_request",
                self.wait_per_request,
                bounds::ARRIVAL_WAIT_PER_REQUEST,
            ),
            (
                "prefill_scale",
                self.prefill_scale,
                bounds::KERNEL_TIME_RATIO,
            ),
            ("decode_scale", self.decode_scale, bounds::KERNEL_TIME_RATIO),
            (
                "graph_fixed_scale",
                self.graph_fixed_scale,
                bounds::GRAPH_FIXED_SHARE,
            ),
            ("held_slots", self.held_slots, bounds::HELD_SLOTS),
        ];
        values.iter().try_for_each(|(key, v, range)| {
            range
                .check(*v)
                .map(|_| ())
                .map_err(|m| format!("{key} = {m}"))
        })
    }
}

fn one() -> f64 {
    1.0
}

impl Default for ServingParams {
    /// No overhead, no correction, a benchmark of 20 rounds of which the
    /// first is the transient: the kernels alone.
    fn default() -> Self {
        ServingParams {
            step_overhead: Seconds::ZERO,
            sequence_overhead: Seconds::ZERO,
            request_overhead: Seconds::ZERO,
            rounds: 20.0,
            arrival_wait: 0.5,
            wait_per_request: 0.0,
            prefill_scale: 1.0,
            decode_scale: 1.0,
            graph_fixed_scale: 1.0,
            held_slots: 0.0,
        }
    }
}

impl Calibration {
    fn moe_curves_mut(&mut self) -> [&mut MoeCurve; 7] {
        [
            &mut self.moe_bf16,
            &mut self.moe_fp8,
            &mut self.moe_fp8_ep,
            &mut self.moe_int4,
            &mut self.moe_mxfp4,
            &mut self.moe_fp4,
            &mut self.moe_fp4_marlin,
        ]
    }

    /// The GEMM-shaped curves (dense GEMMs and the MLA absorb BMMs).
    pub(crate) fn gemm_curves_mut(&mut self) -> [&mut GemmCurve; 4] {
        [
            &mut self.gemm_bf16,
            &mut self.gemm_fp8,
            &mut self.gemm_fp4,
            &mut self.mla_bmm,
        ]
    }

    /// Replaces compute and memory efficiencies with flat fractions, as a
    /// plan's "60% MFU, 80% bandwidth utilisation" states them. Fixed
    /// per-kernel costs stay: they are not efficiencies.
    pub fn flat(&self, mfu: Option<Fraction>, bandwidth: Option<Fraction>) -> Calibration {
        let mut c = self.clone();
        let mut parts = Vec::new();
        if let Some(m) = mfu.map(Fraction::value) {
            for g in c.gemm_curves_mut() {
                g.eff_max = m;
                g.m_half = 0.0;
            }
            for g in c.moe_curves_mut() {
                g.eff_max = m;
                g.tpe_half = 0.0;
                g.width_half = 0.0;
            }
            for a in [&mut c.attn_prefill, &mut c.mla_prefill_core] {
                a.eff_max = m;
                a.isl_half = 0.0;
                a.cta_half = 0.0;
            }
            c.attn_decode.eff_compute = m;
            c.mla_decode_core.eff_compute = m;
            parts.push(format!(
                "compute at a flat {:.0}% of peak (--mfu)",
                m * 100.0
            ));
        }
        if let Some(b) = bandwidth.map(Fraction::value) {
            for g in c.gemm_curves_mut() {
                g.mem_eff = b;
            }
            for g in c.moe_curves_mut() {
                g.mem_eff = b;
            }
            for a in [&mut c.attn_decode, &mut c.mla_decode_core] {
                a.mem_eff = b;
                a.p_half = 0.0;
            }
            parts.push(format!(
                "memory at a flat {:.0}% of bandwidth (--bandwidth-utilization)",
                b * 100.0
            ));
        }
        if !parts.is_empty() {
            c.source = format!("{}; everything else: {}", parts.join(", "), self.source);
        }
        c
    }
}

//! Efficiency curves fitted to measured H100 SXM kernel timings.
//!
//! The cost model is a roofline: an operator takes
//! `max(FLOP / (peak × compute efficiency), bytes / (bandwidth × memory
//! efficiency)) + fixed cost`. The efficiencies depend on shape (a GEMM with
//! few rows cannot fill the tensor cores) and were fitted, a few
//! interpretable parameters per kernel family, to the vLLM 0.24 kernel
//! timings in `../shared/calibration/h100_sxm/` by
//! `tools/calibration/fit.py`; `docs/calibration-h100.md` has every formula
//! and the fit errors. Other GPUs use the same fractions of their own
//! datasheet peaks, which every estimate says.

use crate::units::{Bytes, Seconds};
use serde::Serialize;

/// A GEMM: `eff(m) = eff_max · m / (m + m_half)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GemmCurve {
    /// Fraction of the precision's peak a large GEMM reaches.
    pub eff_max: f64,
    /// Rows (tokens) at which efficiency is half of `eff_max`.
    pub m_half: f64,
    /// Fraction of HBM bandwidth when bandwidth bound.
    pub mem_eff: f64,
    /// Fixed cost per GEMM.
    pub overhead: Seconds,
    /// HBM fraction of the activation-quantisation pass (3 bytes per input
    /// element) of fp8 GEMMs; 0 when there is none.
    pub quant_eff: f64,
}

/// A fused MoE layer: grouped GEMMs whose efficiency saturates in tokens
/// per expert, plus a routing/permutation pass over the routed rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MoeCurve {
    /// Fraction of peak at many tokens per expert.
    pub eff_max: f64,
    /// Tokens per expert at half of `eff_max`.
    pub tpe_half: f64,
    /// Fraction of HBM bandwidth reading expert weights.
    pub mem_eff: f64,
    /// Fixed cost per MoE layer.
    pub overhead: Seconds,
    /// Fixed cost per expert held on the GPU (per-expert problem setup of
    /// grouped-GEMM kernels that launch every local expert).
    pub per_local_expert: Seconds,
    /// HBM fraction of the sort/activation/reduce pass over routed rows.
    pub rows_eff: f64,
}
/// Causal prefill attention: efficiency saturates in prompt length and in
/// the number of thread blocks `b · heads · ⌈isl/128⌉`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AttentionPrefillCurve {
    /// Fraction of the 16-bit peak.
    pub eff_max: f64,
    /// Prompt length at half efficiency.
    pub isl_half: f64,
    /// Thread blocks at half efficiency.
    pub cta_half: f64,
    /// Per-token cost expressed as an HBM fraction (Q, K, V, O traffic).
    pub mem_eff: f64,
    /// Fixed cost per call.
    pub overhead: Seconds,
}

/// Decode attention: a KV-cache read whose bandwidth saturates in the
/// parallelism `batch · kv_heads`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AttentionDecodeCurve {
    /// Fraction of the 16-bit peak for the score/value math.
    pub eff_compute: f64,
    /// Fraction of HBM bandwidth at full parallelism.
    pub mem_eff: f64,
    /// `batch · kv_heads` at half bandwidth.
    pub p_half: f64,
    /// Fixed cost per call.
    pub overhead: Seconds,
    /// Cost per sequence in the batch.
    pub per_sequence: Seconds,
}

/// A collective on the scale-up link: `latency + factor · bytes / (link · eff)`,
/// with latency and bandwidth fraction measured at 2, 4 and 8 ranks and
/// interpolated in log2(ranks) (extrapolated along the 4→8 slope beyond).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CollectiveCurve {
    /// Latency at 2, 4 and 8 ranks.
    pub latency: [Seconds; 3],
    /// Bus bandwidth as a fraction of per-direction link bandwidth at 2, 4 and 8 ranks.
    pub eff: [f64; 3],
}

impl CollectiveCurve {
    /// Latency and bandwidth fraction for `n` ranks.
    pub fn at(&self, n: u32) -> (Seconds, f64) {
        let x = (n.max(2) as f64).log2() - 1.0; // 0 at 2 ranks, 1 at 4, 2 at 8
        let (i, f) = if x <= 1.0 { (0, x) } else { (1, x - 1.0) };
        let lerp = |a: f64, b: f64| a + (b - a) * f;
        (
            Seconds(lerp(self.latency[i].0, self.latency[i + 1].0)),
            lerp(self.eff[i], self.eff[i + 1]).min(0.95),
        )
    }
}

/// Expert-parallel dispatch/combine (DeepEP): `latency + bytes / (link · eff)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AllToAllCurve {
    /// Fixed cost of one dispatch.
    pub dispatch_latency: Seconds,
    /// Fixed cost of one combine.
    pub combine_latency: Seconds,
    /// Fraction of per-direction link bandwidth a dispatch reaches.
    pub dispatch_eff: f64,
    /// Fraction of per-direction link bandwidth a combine reaches.
    pub combine_eff: f64,
}

/// Every fitted curve of one GPU.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Calibration {
    /// BF16 GEMMs.
    pub gemm_bf16: GemmCurve,
    /// FP8 (block-scaled) GEMMs.
    pub gemm_fp8: GemmCurve,
    /// BF16 fused MoE (vLLM Triton).
    pub moe_bf16: MoeCurve,
    /// FP8 block-scaled fused MoE, vLLM Triton kernel (tokens replicated
    /// over a TP group, no expert parallelism).
    pub moe_fp8: MoeCurve,
    /// FP8 block-scaled grouped GEMM of the FlashInfer/TensorRT-LLM Cutlass
    /// MoE, what engines run under expert parallelism.
    pub moe_fp8_cutlass: MoeCurve,
    /// INT4 weight-only fused MoE (Marlin).
    pub moe_int4: MoeCurve,
    /// MXFP4 weight-only fused MoE on GPUs without FP4 tensor cores (OAI
    /// Triton `matmul_ogs`, vLLM's gpt-oss path on Hopper).
    pub moe_mxfp4: MoeCurve,
    /// NVFP4 weights on GPUs without FP4 tensor cores (FP4 Marlin; the
    /// mxfp4 Marlin fit stands for it).
    pub moe_fp4_marlin: MoeCurve,
    /// Prefill attention.
    pub attn_prefill: AttentionPrefillCurve,
    /// Decode attention.
    pub attn_decode: AttentionDecodeCurve,
    /// Fixed cost of a whole MLA block beyond its parts (norms, RoPE, cache write).
    pub mla_overhead: Seconds,
    /// MLA prefill runs this much slower than the sum of its parts.
    pub mla_prefill_scale: f64,
    /// All-reduce up to `custom_allreduce_max`: vLLM's custom all-reduce
    /// captured in a CUDA graph.
    pub allreduce: CollectiveCurve,
    /// All-reduce above `custom_allreduce_max`: NCCL ring/tree.
    pub allreduce_nccl: CollectiveCurve,
    /// Largest message the custom all-reduce takes (vLLM: 8 MiB); larger
    /// ones go to NCCL.
    pub custom_allreduce_max: Bytes,
    /// All-gather / reduce-scatter (NCCL).
    pub allgather: CollectiveCurve,
    /// Low-latency all-to-all (decode-sized batches).
    pub alltoall_ll: AllToAllCurve,
    /// High-throughput all-to-all (prefill-sized batches).
    pub alltoall_ht: AllToAllCurve,
    /// Fraction of the network bandwidth an inter-node transfer reaches
    /// (no inter-node measurements: an assumption, stated as such).
    pub network_eff: f64,
    /// Fixed cost per small elementwise kernel (norms, activations, residuals).
    pub elementwise_overhead: Seconds,
    /// Where these figures come from.
    pub source: String,
}

impl Calibration {
    fn moe_curves_mut(&mut self) -> [&mut MoeCurve; 6] {
        [
            &mut self.moe_bf16,
            &mut self.moe_fp8,
            &mut self.moe_fp8_cutlass,
            &mut self.moe_int4,
            &mut self.moe_mxfp4,
            &mut self.moe_fp4_marlin,
        ]
    }

    /// Replaces compute and memory efficiencies with flat fractions, as a
    /// plan's "60% MFU, 80% bandwidth utilisation" states them. Fixed
    /// per-kernel costs stay: they are not efficiencies.
    pub fn flat(&self, mfu: Option<f64>, bandwidth: Option<f64>) -> Calibration {
        let mut c = self.clone();
        let mut parts = Vec::new();
        if let Some(m) = mfu {
            for g in [&mut c.gemm_bf16, &mut c.gemm_fp8] {
                g.eff_max = m;
                g.m_half = 0.0;
            }
            for g in c.moe_curves_mut() {
                g.eff_max = m;
                g.tpe_half = 0.0;
            }
            c.attn_prefill.eff_max = m;
            c.attn_prefill.isl_half = 0.0;
            c.attn_prefill.cta_half = 0.0;
            c.attn_decode.eff_compute = m;
            parts.push(format!(
                "compute at a flat {:.0}% of peak (--mfu)",
                m * 100.0
            ));
        }
        if let Some(b) = bandwidth {
            for g in [&mut c.gemm_bf16, &mut c.gemm_fp8] {
                g.mem_eff = b;
            }
            for g in c.moe_curves_mut() {
                g.mem_eff = b;
            }
            c.attn_decode.mem_eff = b;
            c.attn_decode.p_half = 0.0;
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

/// The H100 SXM fit (docs/calibration-h100.md). Fit errors, median / p90
/// absolute: GEMM bf16 8.8/27%, fp8-block 6.0/21%; MoE bf16 9.0/39%,
/// fp8-block Triton 6.9/24%, fp8-block Cutlass 8.9/29%, int4 Marlin
/// 16.0/31%, mxfp4 OAI Triton 14.6/44%, mxfp4 Marlin 17.1/34%; prefill
/// attention 14.6/40%; decode attention 15.4/41%; MLA decode module
/// 10.2/30%; custom all-reduce 2-16/19-32%, NCCL all-reduce 10-11/21-30%
/// per n; DeepEP 10-17/22-53% per backend and phase.
pub fn hopper() -> Calibration {
    Calibration {
        gemm_bf16: GemmCurve {
            eff_max: 0.789,
            m_half: 7.8,
            mem_eff: 0.821,
            overhead: Seconds::from_us(3.1),
            quant_eff: 0.0,
        },
        // fp8 block-scaled (DeepGEMM). The 60-88 µs floor seen in isolated
        // launches is host-side and absent inside CUDA-graph steps (the MLA
        // module timings show it), so it is not charged.
        gemm_fp8: GemmCurve {
            eff_max: 0.655,
            m_half: 140.0,
            mem_eff: 0.766,
            overhead: Seconds::from_us(3.1),
            quant_eff: 0.466,
        },
        // Fused MoE fits (docs/calibration-h100.md §2), balanced routing,
        // median / p90 error of the fit: bf16 Triton 9.0/39%.
        moe_bf16: MoeCurve {
            eff_max: 0.575,
            tpe_half: 1.55,
            mem_eff: 0.85,
            overhead: Seconds::from_us(41.9),
            per_local_expert: Seconds::ZERO,
            rows_eff: 0.25,
        },
        // fp8_block, vLLM Triton (ep = 1 rows): 6.9/24%.
        moe_fp8: MoeCurve {
            eff_max: 0.325,
            tpe_half: 1.58,
            mem_eff: 0.813,
            overhead: Seconds::from_us(42.0),
            per_local_expert: Seconds::ZERO,
            rows_eff: 0.209,
        },
        // fp8_block, FlashInfer-Cutlass (ep > 1 rows): 8.9/29%. The fit
        // (tools/calibration/fit.py) charges the rows pass on every routed
        // row of the tokens the GPU holds, T·k, like the Triton fits.
        moe_fp8_cutlass: MoeCurve {
            eff_max: 0.255,
            tpe_half: 1.92,
            mem_eff: 0.746,
            overhead: Seconds::from_us(27.2),
            per_local_expert: Seconds::from_us(0.148),
            rows_eff: 1.47,
        },
        // int4 weight-only, Marlin: 16.0/31%.
        moe_int4: MoeCurve {
            eff_max: 0.280,
            tpe_half: 0.68,
            mem_eff: 0.613,
            overhead: Seconds::from_us(55.4),
            per_local_expert: Seconds::ZERO,
            rows_eff: 0.222,
        },
        // mxfp4 weight-only, OAI Triton: 14.6/44%.
        moe_mxfp4: MoeCurve {
            eff_max: 0.575,
            tpe_half: 6.72,
            mem_eff: 0.645,
            overhead: Seconds::from_us(61.0),
            per_local_expert: Seconds::ZERO,
            rows_eff: 0.944,
        },
        // mxfp4 weight-only, Marlin: 17.1/34%.
        moe_fp4_marlin: MoeCurve {
            eff_max: 0.208,
            tpe_half: 0.42,
            mem_eff: 0.629,
            overhead: Seconds::from_us(82.1),
            per_local_expert: Seconds::ZERO,
            rows_eff: 0.207,
        },
        attn_prefill: AttentionPrefillCurve {
            eff_max: 0.579,
            isl_half: 1016.0,
            cta_half: 57.0,
            mem_eff: 0.26,
            overhead: Seconds::from_us(12.8),
        },
        attn_decode: AttentionDecodeCurve {
            eff_compute: 0.314,
            mem_eff: 0.819,
            p_half: 0.98,
            overhead: Seconds::from_us(12.7),
            per_sequence: Seconds(46e-9),
        },
        mla_overhead: Seconds::from_us(96.0),
        mla_prefill_scale: 1.30,
        // vLLM custom all-reduce, CUDA-graph: 4.3/4.8/5.4 µs and 262/288/351
        // GB/s bus bandwidth at 2/4/8 GPUs (of 450 GB/s per direction).
        allreduce: CollectiveCurve {
            latency: [
                Seconds::from_us(4.3),
                Seconds::from_us(4.8),
                Seconds::from_us(5.4),
            ],
            eff: [262.0 / 450.0, 288.0 / 450.0, 351.0 / 450.0],
        },
        // NCCL all-reduce: 7.3/10.8/17.6 µs, 246/300/325 GB/s at 2/4/8
        // (fit error 10-11 / 21-30% per n).
        allreduce_nccl: CollectiveCurve {
            latency: [
                Seconds::from_us(7.3),
                Seconds::from_us(10.8),
                Seconds::from_us(17.6),
            ],
            eff: [246.0 / 450.0, 300.0 / 450.0, 325.0 / 450.0],
        },
        custom_allreduce_max: Bytes(8.0 * 1024.0 * 1024.0),
        // NCCL all-gather: 6.3/8.4/12.1 µs, 201/259/287 GB/s at 2/4/8.
        allgather: CollectiveCurve {
            latency: [
                Seconds::from_us(6.3),
                Seconds::from_us(8.4),
                Seconds::from_us(12.1),
            ],
            eff: [201.0 / 450.0, 259.0 / 450.0, 287.0 / 450.0],
        },
        // DeepEP low-latency at ep=8: 61.7 µs + bytes at 205 GB/s dispatch,
        // 46.6 µs + 223 GB/s combine (bf16 payloads).
        alltoall_ll: AllToAllCurve {
            dispatch_latency: Seconds::from_us(61.7),
            combine_latency: Seconds::from_us(46.6),
            dispatch_eff: 205.0 / 450.0,
            combine_eff: 223.0 / 450.0,
        },
        // DeepEP normal (high-throughput): 252 µs + 346 GB/s dispatch,
        // 86.5 µs + 251 GB/s combine.
        alltoall_ht: AllToAllCurve {
            dispatch_latency: Seconds::from_us(252.0),
            combine_latency: Seconds::from_us(86.5),
            dispatch_eff: 346.0 / 450.0,
            combine_eff: 251.0 / 450.0,
        },
        network_eff: 0.8,
        elementwise_overhead: Seconds::from_us(2.0),
        source: "fitted to measured H100 SXM kernel timings (vLLM 0.24 kernels; docs/calibration-h100.md)".into(),
    }
}

/// The provenance line for a GPU using the Hopper fit.
pub fn derived_source(gpu_id: &str) -> String {
    if gpu_id == "h100-sxm" {
        hopper().source
    } else {
        format!("the H100 SXM fit (measured on vLLM 0.24 kernels) applied to the {gpu_id} datasheet peaks and bandwidths; not measured on this GPU")
    }
}

//! GPUs and the nodes they sit in.
//!
//! A `Gpu` holds datasheet facts (peak dense FLOP/s per precision, HBM
//! bandwidth and capacity, links) and any efficiency overrides its spec
//! states. The efficiency curves themselves come from a calibration profile
//! (`crate::profile`), chosen by GPU and engine. Catalog GPUs are spec files
//! embedded in the binary; a custom card is the same kind of file.

use crate::calibration::Calibration;
use crate::dtype::Precision;
use crate::units::{Bytes, BytesPerSecond, FlopPerSecond, Fraction, Seconds};
use serde::Serialize;
use std::collections::BTreeMap;

/// A GPU model with the node it comes in.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Gpu {
    /// Catalog id or file stem.
    pub id: String,
    /// Full name.
    pub name: String,
    /// HBM capacity.
    pub memory: Bytes,
    /// HBM bandwidth.
    pub memory_bandwidth: BytesPerSecond,
    /// Dense (no sparsity) tensor-core peak per precision.
    pub peak: BTreeMap<Precision, FlopPerSecond>,
    /// GPUs in one NVLink domain (node).
    pub gpus_per_node: u32,
    /// NVLink (scale-up) bandwidth per GPU, one direction.
    pub nvlink_bandwidth: BytesPerSecond,
    /// Scale-out network bandwidth per GPU, one direction.
    pub network_bandwidth: BytesPerSecond,
    /// One-way latency of a small NVLink transfer.
    pub nvlink_latency: Seconds,
    /// One-way latency of a small network transfer.
    pub(crate) network_latency: Seconds,
    /// Efficiency overrides stated by the spec, applied on top of the profile.
    pub efficiency: EfficiencyOverrides,
    /// Datasheet citation and notes.
    pub notes: String,
}

impl Gpu {
    /// Whether this GPU can hold a KV cache of `d`: bf16, fp16 and fp8 on
    /// any GPU the engines support; NVFP4 only with FP4 hardware
    /// (Blackwell), where TensorRT-LLM offers it; nothing else.
    pub fn kv_cache_dtype(&self, d: crate::dtype::DType) -> Result<crate::dtype::DType, String> {
        use crate::dtype::DType;
        match d {
            DType::Bf16 | DType::Fp16 | DType::Fp8 => Ok(d),
            DType::Nvfp4 if self.peak.contains_key(&Precision::Fp4) => Ok(d),
            DType::Nvfp4 => Err(format!(
                "an NVFP4 KV cache needs FP4 hardware (Blackwell, with TensorRT-LLM); {} has none",
                self.id
            )),
            DType::Fp32 | DType::Int8 | DType::Int4 | DType::Mxfp4 => {
                Err(format!("no engine stores the KV cache as {d}"))
            }
        }
    }

    /// Peak for a precision; falls back to the fastest supported precision
    /// at or above it in width (fp4 → fp8 → bf16), since weights are then
    /// up-converted for the math.
    pub(crate) fn peak_for(&self, wanted: Precision) -> (Precision, FlopPerSecond) {
        // 4-bit weights on a GPU without FP4 tensor cores run weight-only
        // kernels (Marlin, Triton) that compute in 16 bits, not in FP8.
        if wanted == Precision::Fp4 && !self.peak.contains_key(&Precision::Fp4) {
            return (Precision::Bf16, self.peak_bf16_raw());
        }
        let order = [
            Precision::Fp4,
            Precision::Fp8,
            Precision::Int8,
            Precision::Bf16,
        ];
        let start = order.iter().position(|p| *p == wanted).unwrap_or(3);
        for p in &order[start..] {
            if *p == Precision::Int8 && wanted != Precision::Int8 {
                continue;
            }
            if let Some(f) = self.peak.get(p) {
                return (*p, *f);
            }
        }
        (
            Precision::Bf16,
            self.peak
                .get(&Precision::Bf16)
                .copied()
                .unwrap_or(FlopPerSecond(1.0)),
        )
    }

    fn peak_bf16_raw(&self) -> FlopPerSecond {
        self.peak
            .get(&Precision::Bf16)
            .copied()
            .unwrap_or(FlopPerSecond(1.0))
    }

    /// The 16-bit peak (what MFU is quoted against).
    pub fn peak_bf16(&self) -> FlopPerSecond {
        self.peak_for(Precision::Bf16).1
    }
}

/// Efficiencies a GPU spec states (`[efficiency]`), overriding its profile's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct EfficiencyOverrides {
    /// Fraction of the 16-bit peak a large GEMM reaches (FP8 and FP4 GEMMs
    /// keep their profile's ratio to it).
    pub(crate) gemm_max: Option<Fraction>,
    /// A flat fraction of HBM bandwidth for every memory-bound kernel.
    pub memory: Option<Fraction>,
    /// Fraction of the network bandwidth an inter-node transfer reaches.
    pub network: Option<Fraction>,
    /// Where the overrides come from.
    pub source: Option<String>,
}

impl EfficiencyOverrides {
    /// Applies the overrides to a profile's curves.
    pub fn apply(&self, cal: &mut Calibration) {
        if let Some(m) = self.gemm_max.map(Fraction::value) {
            let bf16 = cal.gemm_bf16.eff_max;
            for g in [&mut cal.gemm_fp8, &mut cal.gemm_fp4] {
                g.eff_max = m * g.eff_max / bf16;
            }
            cal.gemm_bf16.eff_max = m;
        }
        if let Some(m) = self.memory {
            *cal = cal.flat(None, Some(m));
        }
        if let Some(n) = self.network {
            cal.network_eff = n.value();
        }
        if let Some(s) = &self.source {
            cal.source = s.clone();
        }
    }
}

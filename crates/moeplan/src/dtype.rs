//! Storage and compute precisions.
//!
//! A weight group is stored in one `DType`; its size per element includes the
//! quantisation scales that travel with it, because those bytes are read from
//! memory like any other. The compute precision of a GEMM follows from the
//! stored weight type and what the GPU's tensor cores support.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A stored number format.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE single precision.
    Fp32,
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    Fp16,
    /// 8-bit float (e4m3). Block scales (one fp32 per 128×128 block) add
    /// 0.02%, which is below every other uncertainty and not counted.
    Fp8,
    /// 8-bit integer.
    Int8,
    /// 4-bit integer weights with a bf16 scale per group of 32
    /// (compressed-tensors "pack-quantized"): 4 + 16/32 = 4.5 bits.
    Int4,
    /// OCP MX FP4: e2m1 values with an 8-bit shared exponent per 32:
    /// 4 + 8/32 = 4.25 bits.
    Mxfp4,
    /// NVIDIA NVFP4: e2m1 values with an fp8 scale per 16: 4 + 8/16 = 4.5
    /// bits (the per-tensor fp32 scale is negligible).
    Nvfp4,
}

impl DType {
    /// Bits per element, scales included.
    pub fn bits(self) -> f64 {
        match self {
            DType::Fp32 => 32.0,
            DType::Bf16 | DType::Fp16 => 16.0,
            DType::Fp8 | DType::Int8 => 8.0,
            DType::Int4 | DType::Nvfp4 => 4.5,
            DType::Mxfp4 => 4.25,
        }
    }

    /// Bytes per element, scales included.
    pub fn bytes(self) -> f64 {
        self.bits() / 8.0
    }

    /// The name used in spec files and flags.
    pub fn name(self) -> &'static str {
        match self {
            DType::Fp32 => "fp32",
            DType::Bf16 => "bf16",
            DType::Fp16 => "fp16",
            DType::Fp8 => "fp8",
            DType::Int8 => "int8",
            DType::Int4 => "int4",
            DType::Mxfp4 => "mxfp4",
            DType::Nvfp4 => "nvfp4",
        }
    }

    /// The KV cache types an engine stores, as a hint.
    pub const KV_HINT: &'static str = "bf16, fp16 or fp8 (nvfp4 on Blackwell with TensorRT-LLM)";

    /// A KV cache type as a runs file or sidecar states it: blank or `auto`
    /// is the checkpoint's (None); a type no engine stores its cache in is
    /// refused here, before any GPU or engine is known.
    pub fn kv_cache(s: &str) -> Result<Option<DType>, String> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("auto") {
            return Ok(None);
        }
        match s.parse::<DType>()? {
            d @ (DType::Bf16 | DType::Fp16 | DType::Fp8 | DType::Nvfp4) => Ok(Some(d)),
            d @ (DType::Fp32 | DType::Int8 | DType::Int4 | DType::Mxfp4) => {
                Err(format!("no engine stores the KV cache as {d}"))
            }
        }
    }

    /// Every accepted name, for diagnostics.
    pub(crate) const NAMES: &'static str =
        "fp32, bf16, fp16, fp8, int8, int4, mxfp4, nvfp4 (fp4 = nvfp4)";

    /// The tensor-core precision a GEMM with weights of this type would use
    /// on a GPU that supports it (activations are quantised on the fly for
    /// fp8/fp4; int4 is weight-only and computes in 16 bits).
    pub(crate) fn preferred_compute(self) -> Precision {
        match self {
            DType::Fp32 | DType::Bf16 | DType::Fp16 | DType::Int4 => Precision::Bf16,
            DType::Fp8 => Precision::Fp8,
            DType::Int8 => Precision::Int8,
            DType::Mxfp4 | DType::Nvfp4 => Precision::Fp4,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(DType::Fp32),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            "fp16" | "float16" | "half" => Ok(DType::Fp16),
            "fp8" | "fp8_e4m3" | "e4m3" | "float8_e4m3fn" => Ok(DType::Fp8),
            "int8" => Ok(DType::Int8),
            "int4" | "w4a16" => Ok(DType::Int4),
            "mxfp4" => Ok(DType::Mxfp4),
            "nvfp4" | "fp4" => Ok(DType::Nvfp4),
            other => Err(format!(
                "unknown dtype `{other}`; expected one of {}",
                DType::NAMES
            )),
        }
    }
}

/// A tensor-core math precision (what a GPU's peak FLOP/s is quoted for).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// FP16/BF16 dense tensor-core math.
    Bf16,
    /// FP8 dense tensor-core math.
    Fp8,
    /// INT8 dense tensor-core math.
    Int8,
    /// FP4 dense tensor-core math.
    Fp4,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Bf16 => "bf16",
            Precision::Fp8 => "fp8",
            Precision::Int8 => "int8",
            Precision::Fp4 => "fp4",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_overheads_are_counted() {
        // MXFP4: 32 e2m1 values (16 bytes) share one 8-bit exponent: 17 bytes per 32.
        assert_eq!(DType::Mxfp4.bytes() * 32.0, 17.0);
        // NVFP4: 16 values (8 bytes) share one fp8 scale: 9 bytes per 16.
        assert_eq!(DType::Nvfp4.bytes() * 16.0, 9.0);
        assert_eq!(DType::Bf16.bytes(), 2.0);
    }

    #[test]
    fn names_round_trip() {
        for d in [
            DType::Fp32,
            DType::Bf16,
            DType::Fp16,
            DType::Fp8,
            DType::Int8,
            DType::Int4,
            DType::Mxfp4,
            DType::Nvfp4,
        ] {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
        assert!("fp7".parse::<DType>().is_err());
    }
}

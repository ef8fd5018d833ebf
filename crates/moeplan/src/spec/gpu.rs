//! The GPU spec: a catalog card or a custom one, in TOML, YAML or JSON.
//!
//! ```toml
//! name = "Seed custom card"
//! memory = "64 GB"
//! memory_bandwidth = "1.8 TB/s"
//! gpus_per_node = 8
//! [peak]
//! bf16 = "400 TFLOP/s"
//! [links]
//! nvlink_bandwidth = "450 GB/s"     # per GPU, one direction
//! network_bandwidth = "50 GB/s"     # per GPU, one direction
//! ```

use super::{Problem, Problems, SpecError};
use crate::bounds::{self, Range};
use crate::dtype::Precision;
use crate::hardware::{EfficiencyOverrides, Gpu};
use crate::quantity::{parse_bandwidth, parse_bytes, parse_flop_rate, parse_time};
use crate::spec::source::Source;
use crate::units::{Bytes, BytesPerSecond, FlopPerSecond, Fraction, Seconds};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A GPU as written in a spec file.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGpu {
    /// Short id, what outputs show; defaults to `name` (catalog entries
    /// take their catalog id).
    pub id: Option<String>,
    /// Full name.
    pub name: String,
    /// HBM capacity, e.g. "80 GiB".
    pub memory: String,
    /// HBM bandwidth, e.g. "3.35 TB/s".
    pub memory_bandwidth: String,
    /// GPUs in one NVLink domain (default 8).
    #[schemars(range(min = 1))]
    pub gpus_per_node: Option<u32>,
    /// Dense tensor-core peak per precision (bf16 required; fp8, int8, fp4 where supported).
    pub peak: RawPeak,
    /// Interconnect.
    pub links: Option<RawLinks>,
    /// Overrides of the efficiency curves (fractions, µs).
    pub efficiency: Option<RawEfficiency>,
    /// Datasheet citation and notes.
    pub notes: Option<String>,
}

/// Dense peaks per precision.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPeak {
    /// FP16/BF16 dense, e.g. "989.4 TFLOP/s".
    pub bf16: String,
    /// FP8 dense.
    pub fp8: Option<String>,
    /// INT8 dense.
    pub(crate) int8: Option<String>,
    /// FP4 dense.
    pub fp4: Option<String>,
}

/// Interconnect figures.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLinks {
    /// Scale-up bandwidth per GPU per direction (default 450 GB/s).
    pub nvlink_bandwidth: Option<String>,
    /// Scale-out bandwidth per GPU per direction (default 50 GB/s).
    pub network_bandwidth: Option<String>,
    /// Small-message NVLink latency (default 3 µs).
    pub nvlink_latency: Option<String>,
    /// Small-message network latency (default 10 µs).
    pub(crate) network_latency: Option<String>,
}

/// Efficiency overrides; each absent field keeps the calibrated default.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEfficiency {
    /// Fraction of peak a large GEMM reaches (all GEMM precisions).
    pub(crate) gemm_max: Option<f64>,
    /// Fraction of HBM bandwidth a streaming kernel reaches.
    pub memory: Option<f64>,
    /// Fraction of the network bandwidth an inter-node transfer reaches.
    pub network: Option<f64>,
    /// Where these figures come from.
    pub source: Option<String>,
}

/// Reads a GPU spec file.
pub fn load(source: &Source) -> Result<Gpu, SpecError> {
    let stem = source.stem("gpu");
    super::load_spec(source, |raw: &RawGpu, pr| convert(raw, &stem, pr))
}

/// A datasheet figure at `path`: positive and within `range`
/// (`bounds`), else a problem there and `default`.
fn within<T>(
    pr: &mut Problems,
    path: &str,
    r: Result<T, String>,
    value: fn(&T) -> f64,
    range: Range,
    default: T,
) -> T {
    match r.map(|v| (value(&v), v)) {
        Ok((x, v)) if range.check(x).is_ok() => v,
        Ok((x, _)) if x <= 0.0 => {
            pr.push(
                Problem::at(path, "must be greater than 0").hint("datasheet figures are positive"),
            );
            default
        }
        Ok((x, _)) => {
            let message = range.check(x).expect_err("outside the range");
            pr.push(Problem::at(path, message).hint(range.hint()));
            default
        }
        Err(e) => {
            pr.push(
                Problem::at(path, e).hint("write the figure with its unit, as the datasheet does"),
            );
            default
        }
    }
}

/// Converts a raw GPU into the domain type, collecting problems.
pub fn convert(raw: &RawGpu, default_id: &str, pr: &mut Problems) -> Gpu {
    let memory = within(
        pr,
        "memory",
        parse_bytes(&raw.memory),
        |b| b.0,
        bounds::GPU_MEMORY,
        Bytes(80e9),
    );
    let memory_bandwidth = within(
        pr,
        "memory_bandwidth",
        parse_bandwidth(&raw.memory_bandwidth),
        |b| b.0,
        bounds::MEMORY_BANDWIDTH,
        BytesPerSecond(1e12),
    );
    let peak = peaks(&raw.peak, pr);
    let links = raw.links.clone().unwrap_or_default();
    let gpus_per_node = raw.gpus_per_node.unwrap_or(8);
    match bounds::GPUS_PER_NODE.check_count(u64::from(gpus_per_node)) {
        Ok(_) => {}
        Err(_) if gpus_per_node == 0 => pr.push(
            Problem::at("gpus_per_node", "must be greater than 0")
                .hint("GPUs in one NVLink domain, e.g. 8"),
        ),
        Err(message) => {
            pr.push(Problem::at("gpus_per_node", message).hint(bounds::GPUS_PER_NODE.hint()))
        }
    }
    let efficiency = efficiency(raw.efficiency.as_ref(), pr);
    Gpu {
        id: raw
            .id
            .clone()
            .or_else(|| Some(raw.name.clone()).filter(|n| !n.trim().is_empty()))
            .unwrap_or_else(|| default_id.to_string()),
        name: raw.name.clone(),
        memory,
        memory_bandwidth,
        peak,
        gpus_per_node: gpus_per_node.max(1),
        nvlink_bandwidth: link_bandwidth(
            pr,
            "links.nvlink_bandwidth",
            &links.nvlink_bandwidth,
            450e9,
        ),
        network_bandwidth: link_bandwidth(
            pr,
            "links.network_bandwidth",
            &links.network_bandwidth,
            50e9,
        ),
        nvlink_latency: link_latency(pr, "links.nvlink_latency", &links.nvlink_latency, 3e-6),
        network_latency: link_latency(pr, "links.network_latency", &links.network_latency, 10e-6),
        efficiency,
        notes: raw.notes.clone().unwrap_or_default(),
    }
}

/// Dense peaks: bf16 (required), then fp8, int8 and fp4 where given.
fn peaks(raw: &RawPeak, pr: &mut Problems) -> BTreeMap<Precision, FlopPerSecond> {
    let mut peak = BTreeMap::new();
    peak.insert(
        Precision::Bf16,
        within(
            pr,
            "peak.bf16",
            parse_flop_rate(&raw.bf16),
            |f| f.0,
            bounds::PEAK_FLOPS,
            FlopPerSecond(1e15),
        ),
    );
    for (p, s, key) in [
        (Precision::Fp8, &raw.fp8, "peak.fp8"),
        (Precision::Int8, &raw.int8, "peak.int8"),
        (Precision::Fp4, &raw.fp4, "peak.fp4"),
    ] {
        if let Some(s) = s {
            peak.insert(
                p,
                within(
                    pr,
                    key,
                    parse_flop_rate(s),
                    |f| f.0,
                    bounds::PEAK_FLOPS,
                    FlopPerSecond(1e15),
                ),
            );
        }
    }
    peak
}

/// A link bandwidth at `key`: within its bound when given, else `default` bytes/s.
fn link_bandwidth(
    pr: &mut Problems,
    key: &str,
    s: &Option<String>,
    default: f64,
) -> BytesPerSecond {
    match s {
        Some(s) => within(
            pr,
            key,
            parse_bandwidth(s),
            |b| b.0,
            bounds::LINK_BANDWIDTH,
            BytesPerSecond(default),
        ),
        None => BytesPerSecond(default),
    }
}

/// A link latency at `key`: within its bound when given, else `default` seconds.
fn link_latency(pr: &mut Problems, key: &str, s: &Option<String>, default: f64) -> Seconds {
    match s {
        Some(s) => within(
            pr,
            key,
            parse_time(s),
            |t| t.0,
            bounds::LINK_LATENCY,
            Seconds(default),
        ),
        None => Seconds(default),
    }
}

/// Efficiency overrides, each a fraction in (0, 1] (others are dropped).
fn efficiency(raw: Option<&RawEfficiency>, pr: &mut Problems) -> EfficiencyOverrides {
    let mut efficiency = EfficiencyOverrides::default();
    if let Some(e) = raw {
        efficiency.gemm_max = fraction(pr, "efficiency.gemm_max", e.gemm_max);
        efficiency.memory = fraction(pr, "efficiency.memory", e.memory);
        efficiency.network = fraction(pr, "efficiency.network", e.network);
        efficiency.source = e.source.clone();
    }
    efficiency
}

/// `v` when it is a fraction in (0, 1]; else a problem at `key` and none.
fn fraction(pr: &mut Problems, key: &str, v: Option<f64>) -> Option<Fraction> {
    let v = v?;
    if v > 0.0 && v <= 1.0 {
        Fraction::new(v)
    } else {
        pr.push(Problem::at(key, format!("{v} is not a fraction in (0, 1]")).hint("0.6 means 60%"));
        None
    }
}

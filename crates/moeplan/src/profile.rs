//! Calibration profiles: what one engine's kernels achieve on one GPU, as data.
//!
//! A profile is a TOML file in `crates/moeplan/profiles/`, embedded in the
//! binary: the efficiency curves of every kernel family (`[kernels]`, see
//! `crate::calibration`), the measurement files and engine version they were
//! fitted to, and each family's fit error (`[fit]`). Adding a GPU, an engine
//! or an engine version is adding a file and a line in `FILES`.
//!
//! A GPU without a profile of its own (a catalog card nobody measured, or a
//! custom card) uses the profile of the nearest measured GPU by datasheet:
//! the same fractions of its own peaks and bandwidths. The resolved
//! profile's `source` says which profile and what was scaled.

use crate::calibration::Calibration;
use crate::dtype::Precision;
use crate::hardware::Gpu;
use crate::memory::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The embedded profile files.
pub const FILES: &[(&str, &str)] = &[(
    "h100-sxm-vllm",
    include_str!("../profiles/h100-sxm-vllm.toml"),
)];

/// Median and p90 |relative error| of one kernel family's fit on its table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitError {
    /// The measurement table it was fitted to.
    pub table: String,
    /// Median |predicted/measured − 1|.
    pub median: f64,
    /// 90th percentile of the same.
    pub p90: f64,
}

/// One GPU × engine calibration profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `<gpu>-<engine>`.
    pub id: String,
    /// The catalog GPU it was measured on.
    pub gpu: String,
    /// The engine whose kernels were measured.
    pub engine: Engine,
    /// The engine version of the measurements.
    pub engine_version: String,
    /// Where the figures come from.
    pub source: String,
    /// The fitted kernel curves.
    pub kernels: Calibration,
    /// Fit error per kernel family.
    #[serde(default)]
    pub fit: BTreeMap<String, FitError>,
}

/// Every embedded profile, parsed once.
pub fn embedded() -> &'static [Profile] {
    static ALL: OnceLock<Vec<Profile>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            .map(|(id, text)| parse(text).unwrap_or_else(|e| panic!("profile {id}: {e}")))
            .collect()
    })
}

/// Parses one profile file.
pub fn parse(text: &str) -> Result<Profile, String> {
    let mut p: Profile = toml::from_str(text).map_err(|e| e.to_string())?;
    p.kernels.source = p.source.clone();
    Ok(p)
}

/// The engine whose profile an estimate uses when the user names none:
/// the engine with a profile measured on this GPU (or the nearest one).
pub fn default_engine(gpu: &Gpu) -> Engine {
    nearest(gpu, None).engine
}

/// The profile of `engine` on `gpu`: its own when measured, else the
/// nearest measured GPU's for that engine (else for any engine), with the
/// GPU spec's efficiency overrides applied. `Engine::Neutral` takes the
/// profile of the default engine.
pub fn resolve(gpu: &Gpu, engine: Engine) -> Profile {
    let wanted = match engine {
        Engine::Neutral => None,
        e => Some(e),
    };
    let base = nearest(gpu, wanted);
    let mut p = base.clone();
    if base.gpu != gpu.id {
        p.source = format!(
            "the {} profile ({}) applied to the {} datasheet peaks and bandwidths; not measured on this GPU",
            base.id, base.source, gpu.id
        );
        p.kernels.source = p.source.clone();
    }
    gpu.efficiency.apply(&mut p.kernels);
    p
}

/// The profile measured on `gpu`'s id, or on the GPU closest to it by
/// datasheet (16-bit peak, HBM bandwidth, FP4 support); among equals the
/// engine asked for wins.
fn nearest(gpu: &Gpu, engine: Option<Engine>) -> &'static Profile {
    let all = embedded();
    let distance = |p: &Profile| -> f64 {
        let measured = crate::catalog::gpu(&p.gpu).and_then(Result::ok);
        let engine_miss = match engine {
            Some(e) if e != p.engine => 100.0,
            _ => 0.0,
        };
        match measured {
            Some(m) if m.id == gpu.id => engine_miss,
            Some(m) => {
                let fp4 = |g: &Gpu| g.peak.contains_key(&Precision::Fp4);
                engine_miss
                    + 1.0
                    + (m.peak_bf16().0 / gpu.peak_bf16().0).ln().abs()
                    + (m.memory_bandwidth.0 / gpu.memory_bandwidth.0).ln().abs()
                    + if fp4(&m) == fp4(gpu) { 0.0 } else { 1.0 }
            }
            None => engine_miss + 1000.0,
        }
    };
    all.iter()
        .min_by(|a, b| distance(a).total_cmp(&distance(b)).then(a.id.cmp(&b.id)))
        .expect("at least one embedded profile")
}

//! The scenario spec: model + hardware + workload + service levels.
//!
//! ```toml
//! [model]
//! catalog = "qwen3-30b-a3b"     # or hf_config = "config.json", spec = "model.toml", or inline native fields
//! [hardware]
//! gpu = "h100-sxm"              # or an inline [hardware.gpu] table
//! gpus = 8                      # GPUs available
//! [workload]
//! isl = 4000                    # or isl_min / isl_max for a range
//! osl = 500
//! concurrency = 64              # requests in flight (or batch_size)
//! [slo]
//! ttft = "2 s"
//! tpot = "30 ms"
//! ```
//!
//! The section types are public so the plan file of `moeplan audit` reuses them.

use super::{Problem, Problems, SpecError};
use crate::catalog;
use crate::hardware::Gpu;
use crate::model::Model;
use crate::quantity::{parse_fraction, parse_time, parse_token_rate};
use crate::serving::Client;
use crate::spec::gpu::RawGpu;
use crate::spec::model::RawModel;
use crate::spec::source::Source;
use crate::units::{Fraction, Seconds, TokensPerSecond};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A scenario as written.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    /// A name for reports (default: the file stem).
    pub name: Option<String>,
    /// The model.
    pub model: RawModelSection,
    /// The hardware.
    pub hardware: RawHardware,
    /// The requests.
    pub workload: RawWorkload,
    /// Service levels (all optional).
    pub slo: Option<RawSlo>,
    /// Assumptions the author made where the source was silent.
    pub assumptions: Option<Vec<String>>,
}

/// The model: a reference, or the native fields inline.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawModelSection {
    /// A catalog id or a file.
    Ref(RawModelRef),
    /// Native model fields written in place.
    Inline(Box<RawModel>),
}

/// A reference to a model: exactly one of `catalog`, `hf_config`, `spec`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawModelRef {
    /// Catalog id (`moeplan catalog`).
    pub catalog: Option<String>,
    /// Path to a Hugging Face config.json (relative to this file).
    pub hf_config: Option<String>,
    /// Path to a native model spec (relative to this file).
    pub spec: Option<String>,
    /// The parameter total the plan or document states, e.g. "10B".
    pub declared_params: Option<String>,
    /// The KV cache type: bf16, fp16, fp8 (nvfp4 on Blackwell GPUs with
    /// TensorRT-LLM), over the model config's; or, in a scenario, "auto":
    /// the planner searches the config's type and fp8 (where the GPU holds
    /// it and the engine stores it) and each candidate says which it uses.
    /// As `--kv-dtype`. (An inline model states its own `[dtypes]`.)
    pub kv_cache_dtype: Option<String>,
    /// Store the weights in this type (bf16, fp16, fp8, fp4, int4, mxfp4,
    /// nvfp4), over the model config's: the checkpoint's own type (its
    /// routed experts') leaves it as it is; otherwise all weights at 8 bits
    /// or more, and a 4-bit type stores the routed experts (a dense model's
    /// MLPs too) while attention and an MoE model's dense MLPs stay in 8 bits
    /// (fp8, or the checkpoint's type where it has at most 8). As
    /// `--weight-dtype`.
    pub weight_dtype: Option<String>,
}

/// The GPU: a catalog id or a path, or an inline GPU spec.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawGpuSection {
    /// A catalog id or a spec file path.
    Id(String),
    /// GPU fields written in place.
    Inline(Box<RawGpu>),
}

/// Hardware.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHardware {
    /// The GPU.
    pub gpu: RawGpuSection,
    /// GPUs per node (NVLink domain), overriding the GPU's.
    #[schemars(range(min = 1))]
    pub gpus_per_node: Option<u32>,
    /// GPUs available to the deployment (the planner's budget).
    #[schemars(range(min = 1))]
    pub gpus: Option<u32>,
    /// A flat compute efficiency the scenario assumes (fraction of peak), replacing the calibrated curves.
    pub mfu: Option<f64>,
    /// A flat memory-bandwidth efficiency the scenario assumes.
    pub bandwidth_utilization: Option<f64>,
    /// The serving engine: vllm, sglang, trtllm, or neutral (the kernels with no engine's scheduler). Default: the engine whose kernels fit the GPU's measurements best.
    pub engine: Option<String>,
    /// The engine version you run (e.g. "0.11.0"); compared with the
    /// version moeplan's kernel profile was measured on, and the difference said.
    pub engine_version: Option<String>,
    /// Redundant expert slots (EPLB) per replica, beyond one per expert, that
    /// the planner gives every layout with expert parallelism (ep > 1;
    /// without it every GPU holds every expert and there is nothing to
    /// balance). As `--redundant-experts`; default 0. A plan file states
    /// them per pool under `[deployment]` instead.
    pub redundant_experts: Option<u32>,
}

/// The requests.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    /// Prompt tokens per request.
    #[schemars(range(min = 1))]
    pub isl: Option<u64>,
    /// Shortest prompt of a range.
    #[schemars(range(min = 1))]
    pub(crate) isl_min: Option<u64>,
    /// Longest prompt of a range.
    #[schemars(range(min = 1))]
    pub(crate) isl_max: Option<u64>,
    /// Output tokens per request.
    #[schemars(range(min = 1))]
    pub osl: Option<u64>,
    /// Shortest output of a range.
    #[schemars(range(min = 1))]
    pub(crate) osl_min: Option<u64>,
    /// Longest output of a range.
    #[schemars(range(min = 1))]
    pub osl_max: Option<u64>,
    /// Requests in flight: per replica for an aggregated plan, on the whole
    /// deployment (its decode pool) for a disaggregated one.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u64>,
    /// The same as concurrency, as plans often say it.
    #[schemars(range(min = 1))]
    pub batch_size: Option<u64>,
    /// Arriving requests per second the deployment must serve.
    pub request_rate: Option<f64>,
    /// Share of prompt tokens whose KV a prefix cache already holds, e.g.
    /// "56%" or 0.56 (default 0): prefill computes only the rest, which still
    /// attend the whole context; decode and KV memory are unchanged.
    pub cache_hit_rate: Option<serde_json::Value>,
    /// The benchmark client that measures the deployment: `fixed` (every
    /// request exactly its lengths, the default) or `inferencemax` (lengths
    /// drawn in [0.8, 1] × the stated ones). As `--client`.
    pub client: Option<crate::serving::Client>,
    /// Power-law exponent of expert popularity: 0 routes tokens uniformly
    /// (the default), 0.5 is a mild skew; the skew sets the expert load
    /// imbalance. As `--routing-skew`.
    pub routing_skew: Option<f64>,
}

/// Service levels.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    /// Longest time to first token, e.g. "2 s".
    pub ttft: Option<String>,
    /// Longest time per output token, e.g. "30 ms".
    pub tpot: Option<String>,
    /// Least output tokens/s per GPU, e.g. "15 tokens/ms".
    pub min_throughput_per_gpu: Option<String>,
    /// Least output tokens/s each request sees.
    pub min_throughput_per_user: Option<String>,
    /// Largest fraction of GPU memory used, e.g. 0.9 (default: the serving
    /// engine's own limit: vLLM 90% of the GPU, SGLang 88%, TensorRT-LLM's KV
    /// cache 90% of what the model leaves).
    pub max_memory_fraction: Option<serde_json::Value>,
    /// Largest expert load imbalance (max/mean − 1), e.g. "10%".
    pub max_load_imbalance: Option<serde_json::Value>,
    /// Longest 99th-percentile TTFT at the workload's request rate, e.g. "2 s" (judged by simulation).
    pub ttft_p99: Option<String>,
    /// Longest 99th-percentile TPOT at the request rate, e.g. "50 ms".
    pub(crate) tpot_p99: Option<String>,
    /// Longest 90th-percentile TTFT at the request rate.
    pub ttft_p90: Option<String>,
    /// Longest 90th-percentile TPOT at the request rate.
    pub tpot_p90: Option<String>,
}

/// A length, or a range of lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Lengths {
    /// Shortest.
    pub min: u64,
    /// Longest.
    pub max: u64,
}

impl Lengths {
    /// The midpoint, used for throughput (the mean of a uniform range).
    pub fn mean(&self) -> u64 {
        (self.min + self.max) / 2
    }
    /// True when min = max.
    pub fn is_fixed(&self) -> bool {
        self.min == self.max
    }
}

/// The validated workload.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WorkloadSpec {
    /// Prompt lengths.
    pub isl: Lengths,
    /// Output lengths.
    pub osl: Lengths,
    /// Requests in flight, if fixed.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u64>,
    /// Arriving requests per second, if stated.
    pub request_rate: Option<f64>,
    /// Share of prompt tokens served from the prefix cache (0 when not stated).
    #[serde(skip_serializing_if = "Fraction::is_zero")]
    pub cache_hit_rate: Fraction,
    /// The benchmark client that measures it.
    #[serde(skip_serializing_if = "Client::is_fixed")]
    pub client: Client,
}

impl WorkloadSpec {
    /// Copies of a deployment that serve the request rate when each
    /// completes `requests_per_s`: at least 1 (at most 10^18, which an
    /// absurd rate reaches); None without a rate. The planner's replicas,
    /// its disaggregated worker counts and the audit's corrected plan all
    /// come from here.
    pub(crate) fn replicas_for_rate(&self, requests_per_s: f64) -> Option<u64> {
        self.request_rate
            .map(|rate| (rate / requests_per_s.max(1e-12)).ceil().clamp(1.0, 1e18) as u64)
    }

    /// Requests/s one replica completes at `output_tokens_per_s` (mean
    /// output length).
    pub fn requests_per_s(&self, output_tokens_per_s: f64) -> f64 {
        output_tokens_per_s / self.osl.mean().max(1) as f64
    }
}

/// A latency figure a percentile level is set on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Latency {
    /// Time to first token.
    Ttft,
    /// Time per output token.
    Tpot,
}

/// Which percentile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Quantile {
    /// The 90th percentile.
    P90,
    /// The 99th percentile.
    P99,
}

/// One percentile service level.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PercentileLevel {
    /// The figure.
    pub figure: Latency,
    /// The percentile.
    pub quantile: Quantile,
    /// Its limit.
    pub limit: Seconds,
}

impl PercentileLevel {
    /// A name such as `P99 TTFT`.
    pub fn name(&self) -> String {
        let q = match self.quantile {
            Quantile::P90 => "P90",
            Quantile::P99 => "P99",
        };
        let f = match self.figure {
            Latency::Ttft => "TTFT",
            Latency::Tpot => "TPOT",
        };
        format!("{q} {f}")
    }
}

/// The validated service levels (by default none).
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Slo {
    /// Longest TTFT.
    pub ttft: Option<Seconds>,
    /// Longest TPOT.
    pub tpot: Option<Seconds>,
    /// Least output tokens/s per GPU.
    pub min_throughput_per_gpu: Option<TokensPerSecond>,
    /// Least output tokens/s per request.
    pub min_throughput_per_user: Option<TokensPerSecond>,
    /// Largest share of the GPU's memory a plan may use (None: the serving
    /// engine's own default limit, as it runs unless told otherwise).
    pub max_memory_fraction: Option<Fraction>,
    /// Largest expert load imbalance.
    pub max_load_imbalance: Option<f64>,
    /// Percentile levels at the workload's request rate, judged by simulation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percentiles: Vec<PercentileLevel>,
}

/// Which KV cache types the planner may choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvCache {
    /// The model's own (its config's, or the one the scenario states).
    Stated,
    /// The model's, and fp8 where the GPU holds it and the engine stores it
    /// (`model.kv_cache_dtype = "auto"`, `--kv-dtype auto`).
    Searched,
}

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Name for reports.
    pub name: String,
    /// The model.
    pub model: Model,
    /// The GPU (with the node size applied).
    pub gpu: Gpu,
    /// GPUs available, if limited.
    pub gpus_available: Option<u32>,
    /// Flat compute efficiency, if assumed.
    pub mfu: Option<Fraction>,
    /// Flat bandwidth efficiency, if assumed.
    pub bandwidth_utilization: Option<Fraction>,
    /// The serving engine the file states (`hardware.engine`); None: the
    /// engine whose kernels fit the GPU best (`serving_engine`).
    pub engine: Option<crate::engine::Engine>,
    /// The engine version the file states (`hardware.engine_version`):
    /// the version `launch` writes flags for unless `--engine-version` says another.
    pub engine_version: Option<String>,
    /// The requests.
    pub workload: WorkloadSpec,
    /// Service levels.
    pub slo: Slo,
    /// Assumptions to show.
    pub assumptions: Vec<String>,
    /// Redundant expert slots (EPLB) of each layout with expert parallelism.
    pub redundant_experts: u32,
    /// Power-law exponent of expert popularity (0 = uniform).
    pub routing_skew: f64,
    /// The KV cache types the planner may choose.
    pub kv_cache: KvCache,
}

impl Scenario {
    /// The redundant expert slots a replica of `layout` gets: the
    /// scenario's where experts are split over EP ranks, none otherwise.
    pub(crate) fn redundant_experts_for(&self, layout: &crate::layout::Layout) -> u32 {
        layout.redundant_slots(self.redundant_experts)
    }

    /// The KV cache types the planner tries, the model's first: with
    /// `KvCache::Searched`, fp8 too where the GPU holds it and the serving
    /// engine stores it.
    pub fn kv_cache_dtypes(&self) -> Vec<crate::dtype::DType> {
        use crate::dtype::DType;
        let own = self.model.dtypes.kv_cache;
        let fp8 = match self.kv_cache {
            KvCache::Stated => None,
            KvCache::Searched => Some(DType::Fp8).filter(|f| {
                *f != own
                    && self.gpu.kv_cache_dtype(*f).is_ok()
                    && self.serving_engine().stores_kv_cache(*f).is_ok()
            }),
        };
        std::iter::once(own).chain(fp8).collect()
    }

    /// The scenario with its KV cache stored as `kv` (one the planner chose).
    pub(crate) fn with_kv_cache(&self, kv: crate::dtype::DType) -> Scenario {
        let mut s = self.clone();
        s.model.dtypes.kv_cache = kv;
        s.kv_cache = KvCache::Stated;
        s
    }

    /// The efficiency curves and serving layer of `engine` on the
    /// scenario's GPU (the layer fitted to its workload's client), with its
    /// flat assumptions (`mfu`, `bandwidth_utilization`) applied, when it
    /// states any.
    pub fn calibration(&self, engine: crate::memory::Engine) -> crate::calibration::Calibration {
        crate::profile::resolve_for(&self.model, &self.gpu, engine, self.workload.client)
            .kernels
            .flat(self.mfu, self.bandwidth_utilization)
    }

    /// The engine the scenario is served by: the one it states, else the
    /// engine whose kernels fit its GPU's measurements best.
    pub fn serving_engine(&self) -> crate::engine::Engine {
        self.engine
            .unwrap_or_else(|| crate::profile::default_engine(&self.gpu))
    }

    /// The serving engine's defaults on the scenario's GPU, with its memory limit.
    pub fn engine_config(&self) -> crate::memory::EngineConfig {
        self.engine(self.serving_engine().config(self.gpu.memory))
    }

    /// Engine settings with the scenario's memory limit, where it states
    /// one (else the engine's own).
    pub fn engine(&self, base: crate::memory::EngineConfig) -> crate::memory::EngineConfig {
        match self.slo.max_memory_fraction {
            Some(f) => base.limited_to(f),
            None => base,
        }
    }

    /// A scenario of fixed lengths with no service level (the engine's own
    /// memory limit), for programs that build scenarios rather than read them.
    pub fn fixed(name: &str, model: Model, gpu: Gpu, gpus: u32, isl: u64, osl: u64) -> Scenario {
        Scenario {
            name: name.to_string(),
            model,
            gpu,
            gpus_available: Some(gpus),
            mfu: None,
            bandwidth_utilization: None,
            engine: None,
            engine_version: None,
            workload: WorkloadSpec {
                isl: Lengths { min: isl, max: isl },
                osl: Lengths { min: osl, max: osl },
                concurrency: None,
                request_rate: None,
                cache_hit_rate: Fraction::ZERO,
                client: Client::Fixed,
            },
            slo: Slo::default(),
            assumptions: Vec::new(),
            redundant_experts: 0,
            routing_skew: 0.0,
            kv_cache: KvCache::Stated,
        }
    }
}

/// Reads a scenario file.
pub fn load(source: &Source, dir: &Path) -> Result<Scenario, SpecError> {
    let stem = source.stem("scenario");
    let mut nested: Vec<SpecError> = Vec::new();
    let out = super::load_spec(source, |raw: &RawScenario, pr| {
        let mut nest = |e: SpecError| nested.push(e);
        convert(raw, &stem, dir, pr, &mut nest)
    })?;
    match (out, nested.pop()) {
        (_, Some(e)) => Err(e),
        (Some(s), None) => Ok(s),
        (None, None) => Err(SpecError::in_source(
            source,
            vec![Problem::at("", "the scenario could not be built")],
        )),
    }
}

/// Resolves the model section. Errors inside a referenced file are reported
/// against that file (`nested`); problems of the section itself go to `pr`.
pub fn resolve_model(
    sec: &RawModelSection,
    dir: &Path,
    pr: &mut Problems,
    nested: &mut dyn FnMut(SpecError),
) -> Option<Model> {
    let mut m = match sec {
        RawModelSection::Inline(raw) => Some(super::model::convert(
            raw,
            "model",
            &mut prefixed(pr, "model"),
        )),
        RawModelSection::Ref(r) => {
            let given = [r.catalog.is_some(), r.hf_config.is_some(), r.spec.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if given != 1 {
                pr.push(
                    Problem::at("model", format!("{given} model sources given"))
                        .hint("give exactly one of catalog = \"id\", hf_config = \"path/config.json\", spec = \"model.toml\", or the model's fields inline"),
                );
                return None;
            }
            let res = if let Some(id) = &r.catalog {
                match catalog::model(id) {
                    Some(m) => m,
                    None => {
                        let ids: Vec<&str> = catalog::MODELS.iter().map(|(k, _)| *k).collect();
                        pr.push(
                            Problem::at("model.catalog", format!("`{id}` is not in the catalog"))
                                .hint(format!("catalog models: {}", ids.join(", "))),
                        );
                        return None;
                    }
                }
            } else {
                let rel = r
                    .hf_config
                    .as_ref()
                    .or(r.spec.as_ref())
                    .expect("one is set");
                let path: PathBuf = dir.join(rel);
                Source::read(&path).and_then(|s| catalog::load_model_source(&s))
            };
            match res {
                Ok(mut m) => {
                    if let Some(d) = &r.declared_params {
                        match crate::quantity::parse_params(d) {
                            Ok(p) => m.declared_params = Some(p.0),
                            Err(e) => pr
                                .push(Problem::at("model.declared_params", e).hint("e.g. \"10B\"")),
                        }
                    }
                    Some(m)
                }
                Err(e) => {
                    nested(e);
                    None
                }
            }
        }
    };
    if let Some(m) = &mut m {
        if m.name.is_empty() {
            m.name = "model".into();
        }
    }
    m
}

/// Resolves the hardware section's GPU.
pub fn resolve_gpu(
    h: &RawHardware,
    dir: &Path,
    pr: &mut Problems,
    nested: &mut dyn FnMut(SpecError),
) -> Option<Gpu> {
    let mut g = match &h.gpu {
        RawGpuSection::Inline(raw) => Some(super::gpu::convert(
            raw,
            "custom-gpu",
            &mut prefixed(pr, "hardware.gpu"),
        )),
        RawGpuSection::Id(id) => match catalog::gpu(id) {
            Some(Ok(g)) => Some(g),
            Some(Err(e)) => {
                nested(e);
                None
            }
            None => {
                let path = dir.join(id);
                if path.exists() {
                    match Source::read(&path).and_then(|s| super::gpu::load(&s)) {
                        Ok(g) => Some(g),
                        Err(e) => {
                            nested(e);
                            None
                        }
                    }
                } else {
                    let ids: Vec<&str> = catalog::GPUS.iter().map(|(k, _)| *k).collect();
                    pr.push(
                        Problem::at(
                            "hardware.gpu",
                            format!("`{id}` is neither a catalog GPU nor a file"),
                        )
                        .hint(format!("catalog GPUs: {}", ids.join(", "))),
                    );
                    None
                }
            }
        },
    };
    if let (Some(g), Some(n)) = (&mut g, h.gpus_per_node) {
        if n == 0 {
            pr.push(
                Problem::at("hardware.gpus_per_node", "must be greater than 0")
                    .hint("GPUs in one NVLink domain, e.g. 8"),
            );
        } else if checked(
            pr,
            "hardware.gpus_per_node",
            u64::from(n),
            crate::bounds::GPUS_PER_NODE,
        )
        .is_some()
        {
            g.gpus_per_node = n;
        }
    }
    g
}

/// Problems recorded under a path prefix (inline sections).
struct Prefixed<'a> {
    inner: &'a mut Problems,
    prefix: &'static str,
    local: Problems,
}

impl std::ops::Deref for Prefixed<'_> {
    type Target = Problems;
    fn deref(&self) -> &Problems {
        &self.local
    }
}
impl std::ops::DerefMut for Prefixed<'_> {
    fn deref_mut(&mut self) -> &mut Problems {
        &mut self.local
    }
}
impl Drop for Prefixed<'_> {
    fn drop(&mut self) {
        for mut p in std::mem::take(&mut self.local.0) {
            p.path = if p.path.is_empty() {
                self.prefix.to_string()
            } else {
                format!("{}.{}", self.prefix, p.path)
            };
            self.inner.push(p);
        }
    }
}

fn prefixed<'a>(inner: &'a mut Problems, prefix: &'static str) -> Prefixed<'a> {
    Prefixed {
        inner,
        prefix,
        local: Problems::default(),
    }
}

fn fraction_value(v: &serde_json::Value, path: &str, pr: &mut Problems) -> Option<f64> {
    let f = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => match parse_fraction(s) {
            Ok(f) => Some(f),
            Err(e) => {
                pr.push(Problem::at(path, e).hint("a fraction, e.g. 0.9 or \"90%\""));
                return None;
            }
        },
        other => {
            pr.push(
                Problem::at(path, format!("expected a fraction, found {other}"))
                    .hint("e.g. 0.9 or \"90%\""),
            );
            return None;
        }
    }?;
    if !(0.0..=1.0).contains(&f) || f == 0.0 {
        pr.push(
            Problem::at(path, format!("{f} is not a fraction in (0, 1]"))
                .hint("e.g. 0.9 or \"90%\""),
        );
        return None;
    }
    Some(f)
}

/// Validates the workload section.
pub fn workload(w: &RawWorkload, pr: &mut Problems) -> WorkloadSpec {
    let isl = lengths(pr, "isl", w.isl, w.isl_min, w.isl_max);
    let osl = lengths(pr, "osl", w.osl, w.osl_min, w.osl_max);
    let concurrency = concurrency(w, pr);
    let rate = crate::bounds::REQUEST_RATE;
    let request_rate = w.request_rate.and_then(|r| match rate.check(r) {
        Ok(r) => Some(r),
        Err(m) => {
            pr.push(
                Problem::at("workload.request_rate", m)
                    .hint(format!("requests per second, e.g. 10; {}", rate.hint())),
            );
            None
        }
    });
    WorkloadSpec {
        isl,
        osl,
        concurrency,
        request_rate,
        cache_hit_rate: w
            .cache_hit_rate
            .as_ref()
            .and_then(|v| cache_hit_rate(v, pr))
            .unwrap_or(Fraction::ZERO),
        client: w.client.unwrap_or_default(),
    }
}

/// `workload.cache_hit_rate`: a fraction as a number or a string ("56%"),
/// within `bounds::CACHE_HIT_RATE`.
fn cache_hit_rate(v: &serde_json::Value, pr: &mut Problems) -> Option<Fraction> {
    let path = "workload.cache_hit_rate";
    let hint = "a fraction of prompt tokens, e.g. \"56%\" or 0.56";
    let f = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => match parse_fraction(s) {
            Ok(f) => Some(f),
            Err(e) => {
                pr.push(Problem::at(path, e).hint(hint));
                return None;
            }
        },
        other => {
            pr.push(Problem::at(path, format!("expected a fraction, found {other}")).hint(hint));
            return None;
        }
    }?;
    match crate::bounds::CACHE_HIT_RATE.check(f) {
        // Within [0, 0.99], so a fraction.
        Ok(f) => Fraction::new(f),
        Err(m) => {
            pr.push(Problem::at(path, m).hint(crate::bounds::CACHE_HIT_RATE.why));
            None
        }
    }
}

/// The lengths of `name` (isl or osl): a fixed `name`, or both
/// `name_min` and `name_max`, from 1 token up and in order.
fn lengths(
    pr: &mut Problems,
    name: &str,
    fixed: Option<u64>,
    min: Option<u64>,
    max: Option<u64>,
) -> Lengths {
    let l = match (fixed, min, max) {
        (Some(v), None, None) => Lengths { min: v, max: v },
        (None, Some(a), Some(b)) => Lengths { min: a, max: b },
        (None, None, None) => {
            pr.push(
                Problem::at("workload", format!("no {name} given"))
                    .hint(format!("add {name} = N, or {name}_min and {name}_max")),
            );
            Lengths { min: 1, max: 1 }
        }
        _ => {
            pr.push(
                Problem::at(
                    format!("workload.{name}"),
                    format!("give either {name}, or both {name}_min and {name}_max"),
                )
                .hint("a fixed length or a range, not a mix"),
            );
            Lengths { min: 1, max: 1 }
        }
    };
    if l.min == 0 {
        pr.push(
            Problem::at(format!("workload.{name}"), "lengths start at 1 token")
                .hint("a request has at least one token"),
        );
    }
    if l.min > l.max {
        pr.push(
            Problem::at(
                format!("workload.{name}_min"),
                format!("{name}_min {} is above {name}_max {}", l.min, l.max),
            )
            .hint("swap them"),
        );
    }
    let tokens = crate::bounds::TOKENS;
    for (key, v) in [
        (name.to_string(), fixed),
        (format!("{name}_min"), min),
        (format!("{name}_max"), max),
    ] {
        if let Some(v) = v.filter(|v| *v > 0) {
            checked(pr, &format!("workload.{key}"), v, tokens);
        }
    }
    // Read within the bound (the problems above make the file bad input).
    let most = tokens.max as u64;
    Lengths {
        min: l.min.clamp(1, most),
        max: l.max.max(l.min).clamp(1, most),
    }
}

/// Requests in flight: `concurrency` or its synonym `batch_size`, not both
/// (then `concurrency`); 0, or more than `bounds::CONCURRENCY`, is a problem.
fn concurrency(w: &RawWorkload, pr: &mut Problems) -> Option<u64> {
    let concurrency = match (w.concurrency, w.batch_size) {
        (Some(_), Some(_)) => {
            pr.push(
                Problem::at(
                    "workload.batch_size",
                    "both concurrency and batch_size given",
                )
                .hint("they mean the same: keep one"),
            );
            w.concurrency
        }
        (c, b) => c.or(b),
    };
    let key = match (w.concurrency, w.batch_size) {
        (None, Some(_)) => "workload.batch_size",
        _ => "workload.concurrency",
    };
    match concurrency {
        Some(0) => {
            pr.push(Problem::at(key, "must be greater than 0").hint("requests in flight, e.g. 64"));
            None
        }
        Some(c) => checked(pr, key, c, crate::bounds::CONCURRENCY),
        None => None,
    }
}

/// Validates the service-level section.
pub fn slo(s: &RawSlo, pr: &mut Problems) -> Slo {
    let time = |pr: &mut Problems, key: &str, v: &Option<String>| {
        let range = crate::bounds::LATENCY_LIMIT;
        v.as_ref().and_then(|s| match parse_time(s) {
            Ok(t) if t.0 > 0.0 && range.check(t.0).is_ok() => Some(t),
            Ok(t) if t.0 > 0.0 => {
                let m = range.check(t.0).expect_err("outside the range");
                pr.push(Problem::at(format!("slo.{key}"), m).hint(range.hint()));
                None
            }
            Ok(_) => {
                pr.push(
                    Problem::at(format!("slo.{key}"), "must be greater than 0")
                        .hint("e.g. \"2 s\" or \"30 ms\""),
                );
                None
            }
            Err(e) => {
                pr.push(
                    Problem::at(format!("slo.{key}"), e)
                        .hint("a time with its unit, e.g. \"2 s\" or \"30 ms\""),
                );
                None
            }
        })
    };
    let rate = |pr: &mut Problems, key: &str, v: &Option<String>| {
        let range = crate::bounds::TOKEN_RATE_LEVEL;
        v.as_ref().and_then(|s| match parse_token_rate(s) {
            Ok(r) => match range.check(r.0) {
                Ok(_) => Some(r),
                Err(m) => {
                    pr.push(Problem::at(format!("slo.{key}"), m).hint(range.hint()));
                    None
                }
            },
            Err(e) => {
                pr.push(
                    Problem::at(format!("slo.{key}"), e)
                        .hint("output tokens per second or per millisecond, e.g. \"15 tokens/ms\""),
                );
                None
            }
        })
    };
    let percentiles = [
        ("ttft_p99", &s.ttft_p99, Latency::Ttft, Quantile::P99),
        ("tpot_p99", &s.tpot_p99, Latency::Tpot, Quantile::P99),
        ("ttft_p90", &s.ttft_p90, Latency::Ttft, Quantile::P90),
        ("tpot_p90", &s.tpot_p90, Latency::Tpot, Quantile::P90),
    ]
    .into_iter()
    .filter_map(|(key, v, figure, quantile)| {
        time(pr, key, v).map(|limit| PercentileLevel {
            figure,
            quantile,
            limit,
        })
    })
    .collect();
    Slo {
        percentiles,
        ttft: time(pr, "ttft", &s.ttft),
        tpot: time(pr, "tpot", &s.tpot),
        min_throughput_per_gpu: rate(pr, "min_throughput_per_gpu", &s.min_throughput_per_gpu),
        min_throughput_per_user: rate(pr, "min_throughput_per_user", &s.min_throughput_per_user),
        max_memory_fraction: s
            .max_memory_fraction
            .as_ref()
            .and_then(|v| fraction_value(v, "slo.max_memory_fraction", pr))
            .and_then(Fraction::new),
        max_load_imbalance: s
            .max_load_imbalance
            .as_ref()
            .and_then(|v| load_imbalance(v, pr)),
    }
}

/// `slo.max_load_imbalance`: a fraction as a number or a string ("10%").
fn load_imbalance(v: &serde_json::Value, pr: &mut Problems) -> Option<f64> {
    match v {
        serde_json::Value::String(st) => match parse_fraction(st) {
            Ok(f) if f >= 0.0 => Some(f),
            Ok(f) => {
                pr.push(
                    Problem::at("slo.max_load_imbalance", format!("{f} is negative"))
                        .hint("e.g. \"10%\""),
                );
                None
            }
            Err(e) => {
                pr.push(Problem::at("slo.max_load_imbalance", e).hint("e.g. \"10%\" or 0.1"));
                None
            }
        },
        serde_json::Value::Number(n) => n.as_f64(),
        other => {
            pr.push(
                Problem::at(
                    "slo.max_load_imbalance",
                    format!("expected a fraction, found {other}"),
                )
                .hint("e.g. \"10%\" or 0.1"),
            );
            None
        }
    }
}

/// The engine `hardware.engine` names (None where it names none, or one
/// that is not known: a problem).
pub fn engine(h: &RawHardware, pr: &mut Problems) -> Option<crate::engine::Engine> {
    let name = h.engine.as_deref()?;
    match name.parse() {
        Ok(e) => Some(e),
        Err(m) => {
            pr.push(Problem::at("hardware.engine", m).hint(
                "vllm, sglang or trtllm (neutral: the kernels with no engine's scheduler); leave it out for the engine that fits the GPU best",
            ));
            None
        }
    }
}

/// `hardware.engine_version`, trimmed, when stated.
pub(crate) fn stated_version(h: &RawHardware) -> Option<String> {
    h.engine_version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
}

/// What a stated `hardware.engine_version` means for the figures: nothing
/// when it is the version the profile measured, else an assumption saying
/// which version's kernels the figures are; a version without an engine is
/// a problem.
pub fn engine_version(
    h: &RawHardware,
    engine: Option<crate::engine::Engine>,
    gpu: Option<&crate::hardware::Gpu>,
    pr: &mut Problems,
) -> Option<String> {
    let stated = h.engine_version.as_deref()?.trim();
    let (Some(engine), Some(gpu)) = (engine, gpu) else {
        if engine.is_none() && h.engine.is_none() {
            pr.push(
                Problem::at("hardware.engine_version", "a version of which engine?")
                    .hint("state hardware.engine too, e.g. engine = \"vllm\""),
            );
        }
        return None;
    };
    let profile = crate::profile::resolve(gpu, engine);
    let measured = profile.engine_version.trim_start_matches('v');
    (stated.trim_start_matches('v') != measured).then(|| {
        format!(
            "{} {stated} stated; the kernels are those measured on {} {measured} ({}): a newer or older release may be faster or slower",
            engine.name(),
            engine.name(),
            profile.id
        )
    })
}

/// `hardware.gpus`, the GPUs available: from 1 to `bounds::GPU_BUDGET`
/// (as `--gpus`); None when absent or outside.
pub fn gpu_budget(h: &RawHardware, pr: &mut Problems) -> Option<u32> {
    let n = h.gpus?;
    if n == 0 {
        pr.push(
            Problem::at("hardware.gpus", "must be greater than 0").hint("GPUs available, e.g. 8"),
        );
        return None;
    }
    checked(pr, "hardware.gpus", u64::from(n), crate::bounds::GPU_BUDGET).map(|_| n)
}

/// `n` when it lies within `range`, else a problem at `path` naming the
/// bound (as the flag of the same meaning says it) and None.
fn checked(pr: &mut Problems, path: &str, n: u64, range: crate::bounds::Range) -> Option<u64> {
    match range.check_count(n) {
        Ok(n) => Some(n),
        Err(m) => {
            pr.push(Problem::at(path, m).hint(range.hint()));
            None
        }
    }
}

/// Validates the flat efficiency assumptions of a hardware section.
pub fn efficiencies(h: &RawHardware, pr: &mut Problems) -> (Option<Fraction>, Option<Fraction>) {
    let frac = |pr: &mut Problems, key: &str, v: Option<f64>| {
        v.and_then(|x| match crate::bounds::EFFICIENCY.check(x) {
            // Within [0.01, 1], so a fraction.
            Ok(x) => Fraction::new(x),
            Err(m) => {
                pr.push(Problem::at(format!("hardware.{key}"), m).hint(format!(
                    "0.6 means 60% of peak; {}",
                    crate::bounds::EFFICIENCY.why
                )));
                None
            }
        })
    };
    (
        frac(pr, "mfu", h.mfu),
        frac(pr, "bandwidth_utilization", h.bandwidth_utilization),
    )
}

fn convert(
    raw: &RawScenario,
    stem: &str,
    dir: &Path,
    pr: &mut Problems,
    nested: &mut dyn FnMut(SpecError),
) -> Option<Scenario> {
    let model = resolve_model(&raw.model, dir, pr, nested);
    let gpu = resolve_gpu(&raw.hardware, dir, pr, nested);
    let (mfu, bandwidth_utilization) = efficiencies(&raw.hardware, pr);
    let gpus_available = gpu_budget(&raw.hardware, pr);
    let workload = workload(&raw.workload, pr);
    let routing_skew = routing_skew(&raw.workload, pr);
    let slo = slo(&raw.slo.clone().unwrap_or_default(), pr);
    let engine = engine(&raw.hardware, pr);
    let mut assumptions = raw.assumptions.clone().unwrap_or_default();
    assumptions.extend(engine_version(&raw.hardware, engine, gpu.as_ref(), pr));
    let (mut model, gpu) = (model?, gpu?);
    let kv_cache = model_dtypes(&raw.model, &mut model, &gpu, engine, pr);
    let redundant_experts = redundant_experts(&raw.hardware, &model, &gpu, pr);
    Some(Scenario {
        name: raw.name.clone().unwrap_or_else(|| stem.to_string()),
        model,
        gpu,
        gpus_available,
        mfu,
        bandwidth_utilization,
        engine,
        engine_version: stated_version(&raw.hardware),
        workload,
        slo,
        assumptions,
        redundant_experts,
        routing_skew,
        kv_cache,
    })
}

/// `model.weight_dtype` and `model.kv_cache_dtype` over a referenced
/// model's types (the same as `--weight-dtype` and `--kv-dtype`): a KV type
/// the GPU cannot hold or the serving engine (`engine`, else the GPU's
/// best-fitting one) cannot store is a problem. Returns whether the planner
/// may search the KV type (`"auto"`).
pub(crate) fn model_dtypes(
    sec: &RawModelSection,
    model: &mut Model,
    gpu: &Gpu,
    engine: Option<crate::engine::Engine>,
    pr: &mut Problems,
) -> KvCache {
    let RawModelSection::Ref(r) = sec else {
        return KvCache::Stated;
    };
    if let Some(w) = &r.weight_dtype {
        match w.parse() {
            Ok(w) => model.store_weights(w),
            Err(m) => {
                pr.push(Problem::at("model.weight_dtype", m).hint(crate::dtype::DType::NAMES))
            }
        }
    }
    let Some(k) = r.kv_cache_dtype.as_deref() else {
        return KvCache::Stated;
    };
    if k.eq_ignore_ascii_case("auto") {
        return KvCache::Searched;
    }
    let engine = engine.unwrap_or_else(|| crate::profile::default_engine(gpu));
    let stored = k
        .parse()
        .and_then(|k| model.store_kv_cache_on(k, gpu, engine));
    if let Err(m) = stored {
        pr.push(Problem::at("model.kv_cache_dtype", m).hint(format!(
            "{}, or \"auto\" to let the planner choose",
            crate::dtype::DType::KV_HINT
        )));
    }
    KvCache::Stated
}

/// `hardware.redundant_experts`: slots a MoE model's layouts can split
/// (`check_redundant_experts`); 0 when not given or a problem.
pub fn redundant_experts(h: &RawHardware, model: &Model, gpu: &Gpu, pr: &mut Problems) -> u32 {
    let r = h.redundant_experts.unwrap_or(0);
    check_redundant_experts(model, gpu, r).unwrap_or_else(|(message, hint)| {
        pr.push(Problem::at("hardware.redundant_experts", message).hint(hint));
        0
    })
}

/// `r` redundant expert slots, where the layout rules allow them for
/// `model` (none on a dense model, a bounded number of extra copies per
/// expert); else the rule's message and hint. The scenario key and
/// `--redundant-experts` over a scenario are checked here.
pub fn check_redundant_experts(model: &Model, gpu: &Gpu, r: u32) -> Result<u32, (String, String)> {
    if r == 0 {
        return Ok(0);
    }
    let (problems, _) = crate::layout::Layout::default().check(model, gpu, r);
    match problems
        .into_iter()
        .find(|p| p.field == "redundant_experts")
    {
        Some(p) => Err((p.message, p.hint)),
        None => Ok(r),
    }
}

/// `workload.routing_skew`, within `bounds::ROUTING_SKEW` (default 0).
pub fn routing_skew(w: &RawWorkload, pr: &mut Problems) -> f64 {
    let Some(x) = w.routing_skew else {
        return 0.0;
    };
    match crate::bounds::ROUTING_SKEW.check(x) {
        Ok(x) => x,
        Err(m) => {
            pr.push(Problem::at("workload.routing_skew", m).hint(crate::bounds::ROUTING_SKEW.why));
            0.0
        }
    }
}

/// Reads a scenario from a path; relative model/GPU paths resolve against its folder.
pub fn read(path: &Path) -> Result<Scenario, SpecError> {
    let source = Source::read(path)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load(&source, &dir)
}

/// The embedded default scenario (the seed documents').
pub const SEED: &str = include_str!("../../../../examples/seed.toml");

/// Reads the embedded default scenario.
pub fn seed() -> Scenario {
    let source = Source::from_text("examples/seed.toml", SEED, super::source::Format::Toml);
    load(&source, Path::new(".")).expect("the embedded seed scenario is valid")
}

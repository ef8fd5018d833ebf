//! Serving engines as data: each engine's scheduler defaults are a TOML
//! file in `crates/moeplan/engines/`, embedded in the binary, with the
//! engine versions and source files they come from. Adding an engine (or a
//! version whose defaults differ) is adding a file and a variant.
//!
//! What a preset sets, and changes what a user measures beyond kernel speed,
//! is the scheduler: how a step is filled (`Policy`), the tokens one step may
//! carry, how many requests may run at once (the rest wait for a slot, and
//! their wait is part of TTFT), the share of memory the engine takes, and
//! which steps run as CUDA graphs. Every figure can be overridden by a flag.
//!
//! An engine version whose defaults differ is a file
//! `engines/versions/<engine>/<version>.toml` holding only what differs
//! (any key of the preset; `source` says where from), embedded by
//! `build.rs`: `Engine::spec_at` is the preset of that version.

use crate::dtype::DType;
use crate::serving::closed_loop::Policy;
use crate::units::{Bytes, Fraction, GIB, MIB};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

include!(concat!(env!("OUT_DIR"), "/engine_versions.rs"));

/// A serving engine whose scheduler defaults an estimate can assume.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// No engine assumed (`engines/neutral.toml`).
    Neutral,
    /// vLLM V1 (`engines/vllm.toml`).
    Vllm,
    /// SGLang (`engines/sglang.toml`).
    Sglang,
    /// TensorRT-LLM, PyTorch backend (`engines/trtllm.toml`).
    Trtllm,
}

impl Engine {
    /// The engines whose kernels and serving are measured.
    pub(crate) const MEASURED: [Engine; 3] = [Engine::Vllm, Engine::Sglang, Engine::Trtllm];
    /// Every engine.
    pub const ALL: [Engine; 4] = [
        Engine::Neutral,
        Engine::Vllm,
        Engine::Sglang,
        Engine::Trtllm,
    ];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Neutral => "neutral",
            Engine::Vllm => "vllm",
            Engine::Sglang => "sglang",
            Engine::Trtllm => "trtllm",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Engine::Neutral => include_str!("../engines/neutral.toml"),
            Engine::Vllm => include_str!("../engines/vllm.toml"),
            Engine::Sglang => include_str!("../engines/sglang.toml"),
            Engine::Trtllm => include_str!("../engines/trtllm.toml"),
        }
    }

    /// The engine's preset, parsed once.
    pub fn spec(self) -> &'static EngineSpec {
        static ALL: OnceLock<Vec<EngineSpec>> = OnceLock::new();
        let all = ALL.get_or_init(|| {
            Engine::ALL
                .iter()
                .map(|e| {
                    toml::from_str(e.file())
                        .unwrap_or_else(|err| panic!("engines/{}.toml: {err}", e.name()))
                })
                .collect()
        });
        &all[Engine::ALL.iter().position(|e| *e == self).expect("listed")]
    }

    /// The preset of `version`: the engine's file with the keys of
    /// `engines/versions/<engine>/<version>.toml` over it, or the engine's
    /// file alone when that version changes nothing.
    pub fn spec_at(self, version: &str) -> &'static EngineSpec {
        static VERSIONS: OnceLock<Vec<(Engine, &'static str, EngineSpec)>> = OnceLock::new();
        let all = VERSIONS.get_or_init(|| {
            PRESET_VERSIONS
                .iter()
                .map(|(engine, version, text)| {
                    let e: Engine = engine.parse().unwrap_or_else(|err: String| {
                        panic!("engines/versions/{engine}/{version}.toml: {err}")
                    });
                    let spec = merged(e.file(), text).unwrap_or_else(|err| {
                        panic!("engines/versions/{engine}/{version}.toml: {err}")
                    });
                    (e, *version, spec)
                })
                .collect()
        });
        all.iter()
            .find(|(e, v, _)| *e == self && *v == version)
            .map_or_else(|| self.spec(), |(_, _, spec)| spec)
    }

    /// `Ok` when the engine stores its KV cache as `d`; else the message
    /// naming the engines that do (`kv_cache_dtypes` in their files).
    pub fn stores_kv_cache(self, d: DType) -> Result<(), String> {
        if self.spec().kv_cache_dtypes.contains(&d) {
            return Ok(());
        }
        let able: Vec<&str> = Engine::ALL
            .iter()
            .filter(|e| e.spec().kv_cache_dtypes.contains(&d))
            .map(|e| e.spec().display.as_str())
            .collect();
        let which = match able.as_slice() {
            [] => "no engine does".to_string(),
            names => format!("only {} does", names.join(" and ")),
        };
        Err(format!(
            "{} cannot store the KV cache as {d}: {which}",
            self.spec().display
        ))
    }

    /// The engine's defaults on a GPU of `memory` bytes.
    pub fn config(self, memory: Bytes) -> EngineConfig {
        self.config_of(self.spec(), memory)
    }

    /// The defaults of `spec` (one of this engine's presets) on a GPU of `memory` bytes.
    pub fn config_of(self, s: &EngineSpec, memory: Bytes) -> EngineConfig {
        let gib = memory.0 / GIB;
        let pick = |rules: &[Rule]| {
            rules
                .iter()
                .find(|r| r.min_memory_gib.is_none_or(|m| gib >= m))
                .map(|r| r.value)
        };
        EngineConfig {
            engine: self,
            policy: s.policy,
            budget_scope: s.budget_scope,
            max_step_tokens: pick(&s.step_tokens).unwrap_or(8192),
            max_running_requests: pick(&s.max_running),
            runtime_reserve: Bytes(s.runtime_reserve_gib * GIB),
            allreduce_workspace: Bytes(s.allreduce_workspace_mib * MIB),
            max_memory_fraction: s.memory_fraction,
            memory_share: s.memory_share,
            cuda_graphs: s.cuda_graphs,
            decode_reserve: s.decode_reserve.unwrap_or(Fraction::ZERO),
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "neutral" => Ok(Engine::Neutral),
            "vllm" => Ok(Engine::Vllm),
            "sglang" => Ok(Engine::Sglang),
            "trtllm" | "tensorrt-llm" => Ok(Engine::Trtllm),
            other => Err(format!(
                "unknown engine `{other}`; expected neutral, vllm, sglang or trtllm"
            )),
        }
    }
}

/// A preset file with an override's top-level keys over it.
fn merged(base: &str, over: &str) -> Result<EngineSpec, String> {
    let mut table: toml::Table = toml::from_str(base).map_err(|e| e.to_string())?;
    let over: toml::Table = toml::from_str(over).map_err(|e| e.to_string())?;
    if let Some(k) = over
        .keys()
        .find(|k| matches!(k.as_str(), "name" | "display"))
    {
        return Err(format!("`{k}` is the engine's, not a version's"));
    }
    table.extend(over);
    table.try_into().map_err(|e: toml::de::Error| e.to_string())
}

/// A default that depends on the GPU's memory: the first rule whose
/// `min_memory_gib` the GPU reaches (or that has none) applies.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Least GPU memory, GiB, for this rule.
    pub(crate) min_memory_gib: Option<f64>,
    /// The value.
    pub value: u64,
}

/// One engine's preset as its file states it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    /// The engine's name.
    pub name: String,
    /// How people write it.
    pub display: String,
    /// The versions the defaults were read from.
    pub versions: String,
    /// Where the defaults come from (files of the engine's source).
    pub source: String,
    /// How the scheduler fills a step.
    pub policy: Policy,
    /// Whom the step budget is for under attention DP.
    pub(crate) budget_scope: BudgetScope,
    /// Fraction of memory the engine takes by default.
    pub memory_fraction: Fraction,
    /// What `memory_fraction` is a fraction of.
    pub memory_share: MemoryShare,
    /// CUDA context, workspaces and graph pool per GPU, GiB.
    pub(crate) runtime_reserve_gib: f64,
    /// All-reduce workspace a TP group keeps per GPU, MiB.
    pub allreduce_workspace_mib: f64,
    /// Tokens per step per rank, by GPU memory.
    pub step_tokens: Vec<Rule>,
    /// Running requests per rank, by GPU memory (empty: memory decides).
    pub max_running: Vec<Rule>,
    /// Which steps run as CUDA graphs.
    pub(crate) cuda_graphs: CudaGraphs,
    /// Share of the running requests' remaining output a prefill-first
    /// scheduler keeps free in the KV cache before it starts a prompt
    /// (required of an engine whose policy is `prefill_first`).
    #[serde(default)]
    pub decode_reserve: Option<Fraction>,
    /// The types the engine can store its KV cache in.
    pub kv_cache_dtypes: Vec<DType>,
}

/// Whom an engine's step budget is for under attention data parallelism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BudgetScope {
    /// Each attention-DP rank schedules its own steps with the whole budget (vLLM, TensorRT-LLM).
    PerRank,
    /// The budget is divided among the attention-DP ranks (SGLang's `chunked_prefill_size`).
    PerReplica,
}

/// What an engine's memory fraction is a fraction of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemoryShare {
    /// The GPU's memory: weights, activations and KV cache all fit in it
    /// (vLLM `gpu_memory_utilization`, a service level's memory limit).
    /// SGLang's `mem_fraction_static` leaves the activations outside; it is
    /// read as this share all the same, a few GB on the safe side (`launch`
    /// writes the exact static share).
    Capacity,
    /// The memory weights, activations and buffers leave: the KV cache takes
    /// that share of it (TensorRT-LLM `kv_cache_config.free_gpu_memory_fraction`).
    Free,
}

impl MemoryShare {
    /// Bytes the engine may use on a GPU of `capacity` where `fixed` bytes
    /// (weights, activations, buffers, runtime) do not depend on the requests,
    /// with `fraction` of the share.
    pub(crate) fn usable(self, fraction: Fraction, capacity: Bytes, fixed: Bytes) -> Bytes {
        match self {
            MemoryShare::Capacity => capacity * fraction,
            // Never more than the GPU holds, however much the model needs.
            MemoryShare::Free => {
                Bytes(fixed.0.min(capacity.0)) + Bytes((capacity.0 - fixed.0).max(0.0)) * fraction
            }
        }
    }

    /// `fraction` of this share in words ("90% of memory").
    fn describe(self, fraction: Fraction) -> String {
        let pct = fraction.value() * 100.0;
        match self {
            MemoryShare::Capacity => format!("{pct:.0}% of memory"),
            MemoryShare::Free => {
                format!("{pct:.0}% of the memory weights and activations leave, for the KV cache")
            }
        }
    }
}

/// Which steps an engine captures as CUDA graphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GraphScope {
    /// None: every step launches its kernels one by one.
    None,
    /// Pure decode steps up to `max_batch` requests per rank.
    DecodeOnly,
    /// Every step up to `max_batch` tokens per rank (vLLM's piecewise graphs).
    AllSteps,
}

/// An engine's CUDA-graph capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CudaGraphs {
    /// Which steps.
    pub(crate) scope: GraphScope,
    /// Up to how many requests (decode) or tokens (all steps) per rank.
    pub(crate) max_batch: u64,
}

impl CudaGraphs {
    /// Whether a step of `decodes` decoding requests and `prefill_tokens`
    /// prompt tokens per rank runs as a graph.
    pub(crate) fn captures(&self, decodes: f64, prefill_tokens: f64) -> bool {
        let max = self.max_batch as f64;
        match self.scope {
            GraphScope::None => false,
            GraphScope::DecodeOnly => prefill_tokens == 0.0 && decodes <= max,
            GraphScope::AllSteps => decodes + prefill_tokens <= max,
        }
    }
}

/// Engine-side settings that size steps and memory.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct EngineConfig {
    /// The engine these settings describe.
    pub engine: Engine,
    /// How the scheduler fills a step.
    pub policy: Policy,
    /// Whom the step budget is for under attention DP.
    pub(crate) budget_scope: BudgetScope,
    /// Tokens one scheduler step may process per attention-DP rank
    /// (vLLM `max_num_batched_tokens`, SGLang `chunked_prefill_size`).
    pub max_step_tokens: u64,
    /// Requests one attention-DP rank runs at once (vLLM `max_num_seqs`,
    /// TensorRT-LLM `max_batch_size`); more wait for a slot. None: memory decides.
    pub max_running_requests: Option<u64>,
    /// CUDA context, library workspaces and CUDA-graph pool per GPU.
    pub runtime_reserve: Bytes,
    /// All-reduce workspace a TP group keeps per GPU (the engine file's
    /// `allreduce_workspace_mib`; not in the JSON, which predates it).
    #[serde(skip)]
    pub allreduce_workspace: Bytes,
    /// Fraction of memory the engine may use (vLLM
    /// `gpu_memory_utilization`; the seeds' "< 90%"), of `memory_share`.
    pub max_memory_fraction: Fraction,
    /// What `max_memory_fraction` is a fraction of: the GPU's memory, or
    /// (TensorRT-LLM's default) what weights and activations leave.
    pub memory_share: MemoryShare,
    /// Which steps run as CUDA graphs.
    pub(crate) cuda_graphs: CudaGraphs,
    /// Share of the running requests' remaining output a prefill-first
    /// scheduler keeps free in the KV cache (the engine file's
    /// `decode_reserve`; not in the JSON, which predates it).
    #[serde(skip)]
    pub decode_reserve: Fraction,
}

impl EngineConfig {
    /// These settings limited to `fraction` of the GPU's memory (a stated
    /// limit: `--max-memory-fraction`, a service level's).
    pub fn limited_to(self, fraction: Fraction) -> EngineConfig {
        EngineConfig {
            max_memory_fraction: fraction,
            memory_share: MemoryShare::Capacity,
            ..self
        }
    }

    /// The memory limit in words: its fraction and what it is a fraction
    /// of ("90% of memory").
    pub fn describe_memory(&self) -> String {
        self.memory_share.describe(self.max_memory_fraction)
    }
}

impl Default for EngineConfig {
    /// No engine assumed (`engines/neutral.toml`) on a large GPU.
    fn default() -> Self {
        Engine::Neutral.config(Bytes(80.0 * GIB))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_file_parses_and_names_itself() {
        for e in Engine::ALL {
            assert_eq!(e.spec().name, e.name());
            // Read as a Fraction (in [0, 1]); an engine that takes none is a typo.
            let f = e.spec().memory_fraction;
            assert!(f > Fraction::ZERO, "{}: {f}", e.name());
            // A prefill-first scheduler that keeps no room for the running
            // requests' output preempts them at every new prompt: its file
            // must say how much it keeps, and no other file states it.
            let reserve = e.spec().decode_reserve;
            match e.spec().policy {
                Policy::PrefillFirst => assert!(reserve.is_some(), "{}", e.name()),
                Policy::MixedChunked | Policy::MixedWhole => {
                    assert!(reserve.is_none(), "{}: not read", e.name())
                }
            }
        }
    }

    /// Every version override parses over its engine's file, names its
    /// version, and keeps the engine's identity.
    #[test]
    fn every_version_override_parses() {
        for (engine, version, _) in PRESET_VERSIONS {
            let e: Engine = engine.parse().expect("an engine");
            let s = e.spec_at(version);
            assert_eq!((s.name.as_str(), s.versions.as_str()), (*engine, *version));
            assert!(
                !std::ptr::eq(s, e.spec()),
                "{engine} {version} changes nothing"
            );
            assert!(s.memory_fraction.value() > 0.0, "{engine} {version}");
        }
        assert!(merged(Engine::Vllm.file(), "name = \"x\"").is_err());
    }

    /// Issue 14: an NVFP4 KV cache is TensorRT-LLM's alone; the others
    /// refuse it naming the engine that stores it.
    #[test]
    fn kv_cache_types_are_each_engines_own() {
        for e in Engine::ALL {
            assert_eq!(e.stores_kv_cache(DType::Fp8), Ok(()), "{}", e.name());
        }
        assert_eq!(Engine::Trtllm.stores_kv_cache(DType::Nvfp4), Ok(()));
        for e in [Engine::Neutral, Engine::Vllm, Engine::Sglang] {
            let m = e
                .stores_kv_cache(DType::Nvfp4)
                .expect_err("no FP4 KV cache");
            assert!(m.ends_with("only TensorRT-LLM does"), "{m}");
        }
        let m = Engine::Vllm
            .stores_kv_cache(DType::Int4)
            .expect_err("no engine");
        assert!(m.ends_with("no engine does"), "{m}");
    }

    #[test]
    fn rules_follow_gpu_memory() {
        // vLLM: 8192 tokens and 1024 requests from 70 GiB, else 2048 / 256.
        let big = Engine::Vllm.config(Bytes(80.0 * GIB));
        let small = Engine::Vllm.config(Bytes(48.0 * GIB));
        assert_eq!(
            (big.max_step_tokens, big.max_running_requests),
            (8192, Some(1024))
        );
        assert_eq!(
            (small.max_step_tokens, small.max_running_requests),
            (2048, Some(256))
        );
        // SGLang: 16384 from 160 GiB, 8192 from 60, 4096 from 35, else 2048; no cap.
        for (gib, tokens) in [(180.0, 16384), (141.0, 8192), (48.0, 4096), (24.0, 2048)] {
            let c = Engine::Sglang.config(Bytes(gib * GIB));
            assert_eq!(
                (c.max_step_tokens, c.max_running_requests),
                (tokens, None),
                "{gib}"
            );
        }
    }

    #[test]
    fn graph_capture_by_scope() {
        let trt = Engine::Trtllm.config(Bytes(80.0 * GIB)).cuda_graphs;
        assert!(trt.captures(128.0, 0.0) && !trt.captures(129.0, 0.0) && !trt.captures(4.0, 100.0));
        let vllm = Engine::Vllm.config(Bytes(80.0 * GIB)).cuda_graphs;
        assert!(vllm.captures(4.0, 500.0) && !vllm.captures(4.0, 600.0));
        assert!(!Engine::Neutral
            .config(Bytes(80.0 * GIB))
            .cuda_graphs
            .captures(1.0, 0.0));
    }
}

//! The stored type of each weight group under a config's
//! `quantization_config` (or the `hf_quant_config.json` beside it): the
//! method's type, except for the modules its exclusion list keeps in the
//! config's dtype, matched layer by layer under the names the family gives
//! its modules, and weighed by the parameters they hold.

use crate::dtype::DType;
use crate::model::{Dtypes, LayerParams, Model};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// The weight groups that take one stored type each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    /// Attention and linear-attention (Mamba-2) projections.
    Attention,
    /// Routed experts.
    Experts,
    /// Shared experts and dense MLPs.
    Dense,
}

impl Group {
    const ALL: [Group; 3] = [Group::Attention, Group::Experts, Group::Dense];

    /// How the model's assumptions name the group.
    fn name(self) -> &'static str {
        match self {
            Group::Attention => "attention (and linear-attention)",
            Group::Experts => "routed-expert",
            Group::Dense => "shared-expert and dense-MLP",
        }
    }

    /// The group's parameters in one layer.
    fn params(self, p: &LayerParams) -> f64 {
        match self {
            Group::Attention => p.attn_sharded + p.attn_kv + p.attn_replicated + p.linear_attn,
            Group::Experts => p.routed_experts,
            Group::Dense => p.shared + p.dense,
        }
    }

    /// Sets the group's stored type.
    fn set(self, d: &mut Dtypes, t: DType) {
        match self {
            Group::Attention => d.attention = t,
            Group::Experts => d.experts = t,
            Group::Dense => d.dense = t,
        }
    }
}

/// How a family names one layer's modules in its checkpoint (after its
/// `layers.{i}.`): the names an exclusion list is matched against, one
/// representative module of each kind the group holds.
struct Naming {
    attention: &'static [&'static str],
    experts: &'static [&'static str],
    dense: &'static [&'static str],
}

impl Naming {
    fn of(&self, g: Group) -> &'static [&'static str] {
        match g {
            Group::Attention => self.attention,
            Group::Experts => self.experts,
            Group::Dense => self.dense,
        }
    }
}

/// Most families: `self_attn` (Qwen3.5's Gated-DeltaNet layers `linear_attn`),
/// experts under `mlp` (Mixtral's and MiniMax's `block_sparse_moe`,
/// DeepSeek-V4's `ffn`), shared experts and dense MLPs beside them.
const USUAL: Naming = Naming {
    attention: &[
        "self_attn.o_proj",
        "self_attn.q_proj",
        "self_attn.kv_b_proj",
        "linear_attn.out_proj",
        "linear_attn.in_proj_qkvz",
        "linear_attn.in_proj_qkv",
    ],
    experts: &[
        "mlp.experts.3.down_proj",
        "mlp.experts",
        "block_sparse_moe.experts.3.w2",
        "ffn.experts",
    ],
    dense: &[
        "mlp.shared_experts.down_proj",
        "mlp.shared_expert.down_proj",
        "mlp.down_proj",
        "ffn.shared_experts.w2",
    ],
};

/// Nemotron-H: every block is one `mixer` (Mamba-2, attention, MLP or MoE).
const NEMOTRON_H: Naming = Naming {
    attention: &[
        "mixer.in_proj",
        "mixer.out_proj",
        "mixer.q_proj",
        "mixer.o_proj",
    ],
    experts: &["mixer.experts.3.down_proj", "mixer.experts"],
    dense: &["mixer.shared_experts.down_proj", "mixer.down_proj"],
};

/// Gemma-4: the experts and their router sit beside the dense `mlp`, which
/// an exclusion of `mlp*` leaves them out of.
const GEMMA_4: Naming = Naming {
    attention: &["self_attn.o_proj", "self_attn.q_proj"],
    experts: &["experts.3.down_proj", "experts"],
    dense: &["mlp.down_proj"],
};

fn naming(arch: &str) -> &'static Naming {
    match arch {
        "NemotronHForCausalLM" => &NEMOTRON_H,
        "Gemma4ForConditionalGeneration" => &GEMMA_4,
        _ => &USUAL,
    }
}

/// Where checkpoints root layer `i`: `model.layers.{i}`, a multimodal
/// wrapper's language model (Qwen3.5 and Gemma-4 `model.language_model`,
/// Kimi-K2.5 `language_model.model`), Nemotron-H's `backbone`.
const ROOTS: &[&str] = &[
    "model.layers.",
    "model.language_model.layers.",
    "language_model.model.layers.",
    "model.language_model.model.layers.",
    "backbone.layers.",
    "layers.",
];

/// A quantisation config's list of the modules it leaves unquantised:
/// exact names (GLM-5-FP8 lists hundreds) and the modules under them,
/// globs (`*` within one name part) and `re:` regular expressions.
pub(super) struct Exclusions {
    names: BTreeSet<String>,
    /// Each pattern with the literal text a match must start with.
    patterns: Vec<(String, regex_lite::Regex)>,
    /// Patterns that do not compile, matched as text anywhere in a name.
    texts: Vec<String>,
}

impl Exclusions {
    pub(super) fn new(list: &[String]) -> Exclusions {
        let mut ex = Exclusions {
            names: BTreeSet::new(),
            patterns: Vec::new(),
            texts: Vec::new(),
        };
        for p in list {
            if !p.starts_with("re:") && !p.contains('*') {
                ex.names.insert(p.clone());
                continue;
            }
            let (lead, src) = match p.strip_prefix("re:") {
                Some(r) => (String::new(), format!("^(?:{r})")),
                None => (
                    p.split('*').next().unwrap_or("").to_string(),
                    format!(
                        "^{}(\\..*)?$",
                        regex_lite::escape(p).replace("\\*", "[^.]*")
                    ),
                ),
            };
            match regex_lite::Regex::new(&src) {
                Ok(re) => ex.patterns.push((lead, re)),
                Err(_) => ex.texts.push(p.clone()),
            }
        }
        ex
    }

    /// Whether `module` is left unquantised.
    pub(super) fn covers(&self, module: &str) -> bool {
        let listed = module
            .match_indices('.')
            .map(|(i, _)| &module[..i])
            .chain(std::iter::once(module))
            .any(|prefix| self.names.contains(prefix));
        listed
            || self
                .patterns
                .iter()
                .any(|(lead, re)| module.starts_with(lead.as_str()) && re.is_match(module))
            || self.texts.iter().any(|t| module.contains(t.as_str()))
    }

    /// The share of `group`'s parameters, over the layers that hold it,
    /// whose layer's module of that kind is left unquantised.
    fn share(&self, m: &Model, names: &[&str], group: Group) -> f64 {
        let (mut all, mut kept) = (0.0, 0.0);
        for (i, layer) in m.layers.iter().enumerate() {
            let w = group.params(&m.layer_params(layer));
            if w <= 0.0 {
                continue;
            }
            all += w;
            let left = ROOTS
                .iter()
                .any(|r| names.iter().any(|n| self.covers(&format!("{r}{i}.{n}"))));
            if left {
                kept += w;
            }
        }
        if all > 0.0 {
            kept / all
        } else {
            0.0
        }
    }
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The stored weight type of a ModelOpt `quant_algo` (`NVFP4`,
/// `W4A16_NVFP4`, `FP8`, `MXFP8`, `W4A8_AWQ`, ...); `None` when unknown.
pub(super) fn modelopt_dtype(algo: &str) -> Option<DType> {
    let a = algo.to_ascii_uppercase();
    if a.contains("NVFP4") || a == "FP4" {
        Some(DType::Nvfp4)
    } else if a.contains("MXFP4") {
        Some(DType::Mxfp4)
    } else if a.contains("FP8") {
        Some(DType::Fp8)
    } else if a.starts_with("W4") || a.contains("INT4") {
        Some(DType::Int4)
    } else if a.starts_with("W8") || a.contains("INT8") {
        Some(DType::Int8)
    } else {
        None
    }
}

/// A ModelOpt `MIXED_PRECISION` checkpoint: each weight group takes the
/// `quant_algo` its modules have in `quantized_layers` (routed experts,
/// attention, shared experts and dense MLPs looked up by module name; the
/// LM head where it is listed, as Qwen3.6's W4A16 NVFP4 one).
pub(super) fn mixed_precision(mut d: Dtypes, q: &Map<String, Value>, ignore: &[String]) -> Dtypes {
    let Some(layers) = q.get("quantized_layers").and_then(Value::as_object) else {
        return d;
    };
    let ex = Exclusions::new(ignore);
    let algo_of = |is: &dyn Fn(&str) -> bool| {
        layers
            .iter()
            .filter(|(k, _)| is(k) && !ex.covers(k))
            .find_map(|(_, v)| v.get("quant_algo").and_then(Value::as_str))
            .and_then(modelopt_dtype)
    };
    let shared = |k: &str| k.contains("shared_expert");
    // `model.layers.3.mlp.experts.7.down_proj`, or one fused module
    // `layers.3.ffn.experts` (DeepSeek-V4, Qwen3.6).
    if let Some(t) = algo_of(&|k| (k.contains("experts.") || k.ends_with(".experts")) && !shared(k))
    {
        d.experts = t;
    }
    if let Some(t) = algo_of(&|k| k.contains("attn") || k.ends_with("mixer.in_proj")) {
        d.attention = t;
    }
    if let Some(t) = algo_of(&|k| {
        shared(k) || ((k.contains("mlp.") || k.contains("ffn.")) && !k.contains("experts"))
    }) {
        d.dense = t;
    }
    if let Some(t) = algo_of(&|k| k == "lm_head" || k.ends_with(".lm_head")) {
        d.lm_head = t;
    }
    d
}

/// Quantization methods `dtypes` reads.
pub(super) const READ_METHODS: &[&str] = &[
    "fp8",
    "mxfp4",
    "modelopt",
    "compressed-tensors",
    "awq",
    "gptq",
    "auto-round",
];

/// The method a `quantization_config` states: its `quant_method`, or
/// ModelOpt's own form, which ModelOpt writes into config.json with a
/// `quant_algo` and no method.
pub(super) fn quant_method(q: &Map<String, Value>) -> &str {
    match q.get("quant_method").and_then(Value::as_str) {
        Some(m) => m,
        None if q.contains_key("quant_algo") => "modelopt",
        None => "",
    }
}

/// A compressed-tensors style scheme object of 8-bit floats
/// (`{"num_bits": 8, "type": "float"}`).
fn is_fp8_scheme(v: &Value) -> bool {
    v.get("num_bits").and_then(Value::as_u64) == Some(8)
        && v.get("type").and_then(Value::as_str) == Some("float")
}

/// The stored type of each weight group from `torch_dtype` and the
/// quantisation config of a model of architecture `arch`, and what the
/// model's assumptions should say of a group its exclusion list splits: a
/// group takes the method's type unless at least half of its parameters
/// sit in modules the list leaves out.
pub(super) fn dtypes(
    base: DType,
    quant: Option<&Map<String, Value>>,
    m: &Model,
    arch: &str,
) -> (Dtypes, Vec<String>) {
    let mut d = Dtypes::uniform(base);
    let Some(q) = quant else {
        return (d, Vec::new());
    };
    let (qtype, ignore) = match quant_method(q) {
        "fp8" => (DType::Fp8, string_list(q.get("modules_to_not_convert"))),
        "awq" | "gptq" | "auto-round" => {
            let t = match q.get("bits").and_then(Value::as_u64) {
                Some(8) => DType::Int8,
                _ => DType::Int4,
            };
            (t, string_list(q.get("modules_to_not_convert")))
        }
        "mxfp4" => (DType::Mxfp4, string_list(q.get("modules_to_not_convert"))),
        "modelopt" => {
            let algo = q.get("quant_algo").and_then(Value::as_str).unwrap_or("");
            let kv_scheme = q.get("kv_cache_scheme");
            if q.get("kv_cache_quant_algo").and_then(Value::as_str) == Some("FP8")
                || kv_scheme.and_then(Value::as_str) == Some("FP8")
                || kv_scheme.is_some_and(is_fp8_scheme)
            {
                d.kv_cache = DType::Fp8;
            }
            // ModelOpt writes `exclude_modules` in its sidecar and `ignore`
            // in a config.json (Gemma-4-31B-IT-NVFP4).
            let mut ignore = string_list(q.get("exclude_modules"));
            ignore.extend(string_list(q.get("ignore")));
            if algo == "MIXED_PRECISION" {
                return (mixed_precision(d, q, &ignore), Vec::new());
            }
            (modelopt_dtype(algo).unwrap_or(base), ignore)
        }
        "compressed-tensors" => {
            let w = q
                .get("config_groups")
                .and_then(Value::as_object)
                .and_then(|g| g.values().next())
                .and_then(|g| g.get("weights"));
            let bits = w
                .and_then(|w| w.get("num_bits"))
                .and_then(Value::as_u64)
                .unwrap_or(16);
            let kind = w
                .and_then(|w| w.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("int");
            // Kimi-K3's `mxfp4-pack-quantized`: 4-bit floats in groups of 32
            // with a power-of-two scale, not NVFP4's 16 with an fp8 one.
            let mx = q
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.contains("mxfp4"));
            let t = match (bits, kind) {
                (4, "float") if mx => DType::Mxfp4,
                (4, "float") => DType::Nvfp4,
                (4, _) => DType::Int4,
                (8, "float") => DType::Fp8,
                (8, _) => DType::Int8,
                _ => base,
            };
            if q.get("kv_cache_scheme").is_some_and(|k| !k.is_null()) {
                d.kv_cache = DType::Fp8;
            }
            (t, string_list(q.get("ignore")))
        }
        _ => return (d, Vec::new()),
    };
    let notes = exclude(&mut d, (base, qtype), &Exclusions::new(&ignore), (m, arch));
    (d, notes)
}

/// Each group of `d` in `qtype` unless `ex` leaves most of its parameters
/// in `base`; what the model's assumptions say of a group it splits.
fn exclude(
    d: &mut Dtypes,
    (base, qtype): (DType, DType),
    ex: &Exclusions,
    (m, arch): (&Model, &str),
) -> Vec<String> {
    let names = naming(arch);
    let mut notes = Vec::new();
    for g in Group::ALL {
        let kept = ex.share(m, names.of(g), g);
        let (stored, other, split) = if kept < 0.5 {
            g.set(d, qtype);
            (qtype, base, kept)
        } else {
            (base, qtype, 1.0 - kept)
        };
        if split > 0.0 && split < 1.0 && stored != other {
            notes.push(format!(
                "the quantization config leaves {:.0}% of the {} weights (by parameters) {other} and the rest {stored}: all are counted as {stored}",
                split * 100.0,
                g.name()
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ModelOpt's `quant_algo` names map to stored weight types; a
    /// `MIXED_PRECISION` checkpoint takes each group's type from the
    /// modules `quantized_layers` lists (shared experts are not routed).
    #[test]
    fn modelopt_algorithms_and_mixed_precision() {
        assert_eq!(modelopt_dtype("W4A16_NVFP4"), Some(DType::Nvfp4));
        assert_eq!(modelopt_dtype("MXFP8"), Some(DType::Fp8));
        assert_eq!(modelopt_dtype("W4A8_AWQ"), Some(DType::Int4));
        assert_eq!(modelopt_dtype("MIXED_PRECISION"), None);
        let q: Value = serde_json::json!({
            "quant_algo": "MIXED_PRECISION",
            "quantized_layers": {
                "model.layers.3.mlp.experts.7.down_proj": {"quant_algo": "NVFP4"},
                "model.layers.3.mlp.shared_experts.down_proj": {"quant_algo": "FP8"},
                "model.layers.3.self_attn.o_proj": {"quant_algo": "FP8"},
                "lm_head": {"quant_algo": "W4A16_NVFP4"}
            }
        });
        let d = mixed_precision(Dtypes::uniform(DType::Bf16), q.as_object().unwrap(), &[]);
        assert_eq!(
            (d.experts, d.dense, d.attention, d.lm_head),
            (DType::Nvfp4, DType::Fp8, DType::Fp8, DType::Nvfp4)
        );
    }

    /// Exact names cover the modules under them; globs match within one
    /// name part and what lies under it; `re:` patterns are regular
    /// expressions from the start.
    #[test]
    fn exclusion_patterns() {
        let list =
            |v: &[&str]| Exclusions::new(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let ex = list(&["lm_head", "re:.*self_attn.*", "model.layers.0.mlp"]);
        assert!(ex.covers("lm_head"));
        assert!(ex.covers("model.layers.7.self_attn.q_proj"));
        assert!(ex.covers("model.layers.0.mlp.down_proj"));
        assert!(!ex.covers("model.layers.0.mlp_x"));
        assert!(!ex.covers("model.layers.1.mlp.down_proj"));
        let glob = list(&["model.layers.*.self_attn", "backbone.layers.4.mixer*"]);
        assert!(glob.covers("model.layers.12.self_attn.o_proj"));
        assert!(!glob.covers("model.layers.12.mlp.experts"));
        assert!(glob.covers("backbone.layers.4.mixer.in_proj"));
        assert!(!glob.covers("backbone.layers.40.mixer.in_proj"));
    }
}

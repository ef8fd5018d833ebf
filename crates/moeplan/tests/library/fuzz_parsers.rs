//! Property tests: no parser panics, whatever it is fed.
//!
//! Random bytes and printable strings go through every input stage (UTF-8
//! check, syntax parse in each format, the model loaders, the Hugging Face
//! importer) and the quantity parsers. Results may be `Ok` or `Err`; an
//! error must also render (Display, positions, labels and the source
//! snippets miette reads), since that is what a user sees.

use miette::{Diagnostic, SourceSpan};
use moeplan::spec::source::{Format, Source};
use moeplan::spec::{Problems, SpecError};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const FORMATS: [Format; 3] = [Format::Toml, Format::Yaml, Format::Json];

/// Whether trees with an empty key segment (`""`, `"a."`, `"[0]"`) reach
/// the loaders. Off because of a known library bug (see
/// `empty_key_segment_does_not_hang`): `find_key` in spec/source.rs loops
/// forever on an empty key, so such an input hangs the process. Turn on
/// once that is fixed.
const FEED_EMPTY_KEY_SEGMENTS: bool = true;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Exercises everything the CLI does with an error.
fn render(e: &SpecError) {
    let _ = e.to_string();
    let _ = e.positions();
    let _ = e.help().map(|h| h.to_string());
    if let (Some(src), Some(labels)) = (e.source_code(), e.labels()) {
        for l in labels {
            let span = SourceSpan::new(l.offset().into(), l.len());
            let _ = src.read_span(&span, 2, 2);
        }
    }
}

/// Every stage a user file goes through, in each format.
fn all_stages(bytes: &[u8]) {
    for format in FORMATS {
        match Source::from_bytes(name_for(format), bytes.to_vec(), format) {
            Ok(source) => {
                match source.parse() {
                    Err(e) => render(&e),
                    Ok(v) if !FEED_EMPTY_KEY_SEGMENTS && has_empty_key_segment(&v) => continue,
                    Ok(_) => {}
                }
                match moeplan::catalog::load_model_source(&source) {
                    Ok(m) => {
                        let _ = moeplan::report::model_report(&m);
                    }
                    Err(e) => render(&e),
                }
                if let Err(e) = moeplan::spec::gpu::load(&source) {
                    render(&e);
                }
            }
            // Not UTF-8: rejected before any parser runs, whatever the format.
            Err(e) => render(&e),
        }
    }
}

/// True when some key, split on `.` and `[` as `locate` does, has an empty
/// segment.
fn has_empty_key_segment(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, child)| {
            k.split('.')
                .any(|seg| seg.split('[').next().unwrap_or("").is_empty())
                || has_empty_key_segment(child)
        }),
        Value::Array(a) => a.iter().any(has_empty_key_segment),
        _ => false,
    }
}

/// Loads a text as a model unless it holds an empty key segment (see
/// `FEED_EMPTY_KEY_SEGMENTS`).
fn load_text(text: &str, format: Format) {
    let source = Source::from_text(name_for(format), text, format);
    if !FEED_EMPTY_KEY_SEGMENTS && source.parse().is_ok_and(|v| has_empty_key_segment(&v)) {
        return;
    }
    match moeplan::catalog::load_model_source(&source) {
        Ok(m) => {
            let _ = moeplan::report::model_report(&m);
        }
        Err(e) => render(&e),
    }
}

fn name_for(format: Format) -> &'static str {
    match format {
        Format::Toml => "fuzz.toml",
        Format::Yaml => "fuzz.yaml",
        Format::Json => "fuzz.json",
    }
}

fn all_quantities(s: &str) {
    use moeplan::quantity::*;
    let _ = parse_bytes(s);
    let _ = parse_bandwidth(s);
    let _ = parse_flop(s);
    let _ = parse_flop_rate(s);
    let _ = parse_params(s);
    let _ = parse_time(s);
    let _ = parse_token_rate(s);
    let _ = parse_fraction(s);
}

/// Keys the importer and the native spec read, so random trees reach the
/// family readers and the semantic checks, not just the first guard.
const KEYS: &[&str] = &[
    "hidden_size",
    "num_hidden_layers",
    "vocab_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "moe_intermediate_size",
    "num_local_experts",
    "num_experts",
    "n_routed_experts",
    "num_experts_per_tok",
    "experts_per_token",
    "n_shared_experts",
    "shared_expert_intermediate_size",
    "first_k_dense_replace",
    "moe_layer_freq",
    "decoder_sparse_step",
    "mlp_only_layers",
    "layer_types",
    "full_attention_interval",
    "sliding_window",
    "use_sliding_window",
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "index_topk",
    "index_n_heads",
    "index_head_dim",
    "linear_num_key_heads",
    "linear_num_value_heads",
    "linear_key_head_dim",
    "linear_value_head_dim",
    "linear_conv_kernel_dim",
    "interleave_moe_layer_step",
    "attention_chunk_size",
    "intermediate_size_mlp",
    "tie_word_embeddings",
    "torch_dtype",
    "quantization_config",
    "vision_config",
    "num_nextn_predict_layers",
    "n_layers",
    "attention",
    "moe",
    "kind",
    "n_heads",
    "n_kv_heads",
    "expert_intermediate_size",
    "dense_intermediate_size",
    "dense_layers",
    "sliding_window_layers",
    "declared_params",
    "dtypes",
    "weights",
];

/// Small leaf values: sizes stay small so a valid-looking tree cannot ask
/// for billions of layers.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..130).prop_map(|n| json!(n)),
        (-10.0f64..10.0).prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "mha",
            "gqa",
            "mla",
            "fp8",
            "bf16",
            "mxfp4",
            "noaux_tc",
            "10B",
            "linear_attention",
            "sliding_attention",
            "full_attention",
            "",
            "compressed-tensors",
        ])
        .prop_map(|s| json!(s)),
        "\\PC{0,8}".prop_map(Value::String),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..10).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// A config-like object: a (usually supported) architecture plus random keys.
fn hf_config() -> impl Strategy<Value = Value> {
    let mut archs: Vec<&str> = moeplan::hf::SUPPORTED.to_vec();
    archs.push("UnknownForCausalLM");
    (
        prop::sample::select(archs),
        prop::collection::vec((prop::sample::select(KEYS), leaf()), 0..40),
        prop::option::of(tree()),
        any::<bool>(),
    )
        .prop_map(|(arch, kv, extra, nest)| {
            let mut obj: Map<String, Value> =
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            if let Some(Value::Object(m)) = extra {
                obj.extend(m);
            }
            let mut root = Map::new();
            root.insert("architectures".into(), json!([arch]));
            if nest {
                root.insert("text_config".into(), Value::Object(obj));
            } else {
                root.extend(obj);
            }
            Value::Object(root)
        })
}

/// A native-spec-like object with small sizes.
fn native_spec() -> impl Strategy<Value = Value> {
    (
        (0u64..5, 0u64..40, 0u64..5, 0u64..5),
        prop::sample::select(vec!["mha", "gqa", "mla", "mqa"]),
        (0u64..20, prop::option::of(0u64..20), prop::option::of(0u64..70)),
        prop::option::of((0u64..10, 0u64..12, 0u64..70)),
        prop::option::of(prop::collection::vec(0u64..10, 0..4)),
        prop::collection::vec((prop::sample::select(KEYS), leaf()), 0..3),
    )
        .prop_map(|((h, layers, v, d), kind, (nh, nkv, hd), moe, dense, extra)| {
            let mut root = json!({
                "hidden_size": h * 64,
                "n_layers": layers,
                "vocab_size": v * 100,
                "attention": {"kind": kind, "n_heads": nh},
            });
            let att = root["attention"].as_object_mut().unwrap();
            if let Some(k) = nkv {
                att.insert("n_kv_heads".into(), json!(k));
            }
            if let Some(d) = hd {
                att.insert("head_dim".into(), json!(d));
            }
            if kind == "mla" {
                for k in ["kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"] {
                    att.insert(k.into(), json!(hd.unwrap_or(16)));
                }
            }
            let obj = root.as_object_mut().unwrap();
            if let Some((e, k, i)) = moe {
                obj.insert(
                    "moe".into(),
                    json!({"n_routed_experts": e, "experts_per_token": k, "expert_intermediate_size": i}),
                );
            }
            if let Some(list) = dense {
                obj.insert("dense_layers".into(), json!(list));
                obj.insert("dense_intermediate_size".into(), json!(d * 32));
            }
            for (k, val) in extra {
                obj.insert(k.to_string(), val);
            }
            root
        })
}

/// Tree → text in a format (TOML cannot hold nulls or a non-table root;
/// those are skipped there).
fn texts(v: &Value) -> Vec<(Format, String)> {
    let mut out = vec![
        (Format::Json, serde_json::to_string_pretty(v).unwrap()),
        (Format::Json, serde_json::to_string(v).unwrap()),
    ];
    // JSON is flow-style YAML; the block style goes through the other parser paths.
    out.push((Format::Yaml, serde_json::to_string_pretty(v).unwrap()));
    if let Ok(y) = serde_saphyr::to_string(v) {
        out.push((Format::Yaml, y));
    }
    if let Ok(t) = toml::to_string(v) {
        out.push((Format::Toml, t));
    }
    out
}

/// Library bug: a YAML error after non-ASCII text is marked at the right
/// character, but the reported column counts bytes (`SpecError::positions`
/// in spec/mod.rs), so `é: [1, 2` is reported at 1:5 while the parser (and
/// a reader) says column 4. Earlier this input panicked in `positions`.
#[test]
fn yaml_error_after_non_ascii_text_renders() {
    for text in ["name: é: x\n", "\"é\u{0}", "é: [1, 2\n"] {
        let source = Source::from_text("model.yaml", text, Format::Yaml);
        let e = source.parse().expect_err("invalid YAML");
        render(&e);
        if text.starts_with("é: [") {
            let (off, _) = e.problems[0].span.expect("located");
            assert_eq!(&text[off..off + 1], "[", "{e}");
            assert!(e.to_string().contains("model.yaml:1:4"), "{e}");
        }
    }
}

/// Library bug: serde_json reports columns in bytes, but `offset_of`
/// (spec/source.rs) now reads every column as characters, so a JSON syntax
/// error after non-ASCII text is marked too far right (`{"é": é}` marks the
/// closing brace instead of the bad `é`).
#[test]
fn json_error_after_non_ascii_text_is_marked_at_the_bad_character() {
    let text = "{\"é\": é}";
    let source = Source::from_text("model.json", text, Format::Json);
    let e = source.parse().expect_err("invalid JSON");
    render(&e);
    let (off, _) = e.problems[0].span.expect("located");
    assert_eq!(&text[off..], "é}", "{e}");
}

/// Library bug: `find_key` (spec/source.rs) loops forever when a path has
/// an empty segment, which an unknown key `""` (or `"attention."`) gives;
/// `moeplan model` on such a file never exits.
#[test]
fn empty_key_segment_does_not_hang() {
    let inputs = [
        ("model.json", Format::Json, "{\"hidden_size\": 512, \"n_layers\": 4, \"vocab_size\": 100, \"attention\": {\"kind\": \"mha\", \"n_heads\": 4, \"\": 1}}"),
        ("model.toml", Format::Toml, "hidden_size = 512\nn_layers = 4\nvocab_size = 100\n\"attention.\" = 1\n[attention]\nkind = \"mha\"\nn_heads = 4\n"),
    ];
    for (name, format, text) in inputs {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let source = Source::from_text(name, text, format);
            let r = moeplan::catalog::load_model_source(&source).map(|_| ());
            let _ = tx.send(r.map_err(|e| e.to_string()));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{name}: still running after 10 s"));
        assert!(r.is_err(), "{name}: an unknown key must be reported");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        all_stages(&bytes);
    }

    #[test]
    fn random_text_never_panics(s in "\\PC{0,300}") {
        all_stages(s.as_bytes());
    }

    #[test]
    fn syntax_like_text_never_panics(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "{", "}", "[", "]", "\"", "'", ":", "=", ",", "\n", "  ", "\t", "-", "#",
                "é", "漢", "\u{FEFF}", "\r\n", "hidden_size", "n_layers", "attention",
                "architectures", "[attention]", "[[x]]", "1", "-1", "0", "1e400", "null",
                "true", "\"MixtralForCausalLM\"", "---", "&a", "*a", "!!str", "|", ">",
                "\u{0}", "\\u00", "\\",
            ]),
            0..60,
        )
    ) {
        all_stages(parts.concat().as_bytes());
    }

    #[test]
    fn invalid_utf8_never_panics(
        prefix in "\\PC{0,40}",
        bad in prop::collection::vec(0x80u8..=0xff, 1..4),
        suffix in "\\PC{0,40}",
    ) {
        let mut bytes = prefix.into_bytes();
        bytes.extend(bad);
        bytes.extend(suffix.into_bytes());
        all_stages(&bytes);
    }

    #[test]
    fn hf_importer_never_panics(v in hf_config()) {
        let mut pr = Problems::default();
        let model = moeplan::hf::from_value(&v, "fuzz", &mut pr);
        if let (Some(m), true) = (model, pr.is_empty()) {
            let _ = moeplan::report::model_report(&m);
        }
        for (format, text) in texts(&v) {
            load_text(&text, format);
        }
    }

    #[test]
    fn hf_importer_never_panics_on_any_tree(v in tree()) {
        let mut pr = Problems::default();
        let _ = moeplan::hf::from_value(&v, "fuzz", &mut pr);
        let source = Source::from_text("config.json", &v.to_string(), Format::Json);
        if let Err(e) = moeplan::hf::load(&source) {
            render(&e);
        }
    }

    #[test]
    fn native_specs_never_panic(v in native_spec()) {
        for (format, text) in texts(&v) {
            load_text(&text, format);
        }
    }

    #[test]
    fn quantity_parsers_never_panic(s in "\\PC{0,40}") {
        all_quantities(&s);
    }

    #[test]
    fn quantity_like_strings_never_panic(
        sign in prop::sample::select(vec!["", "-", "+", " "]),
        num in "[0-9._eE+-]{0,12}",
        space in prop::sample::select(vec!["", " ", "  ", "\t"]),
        unit in prop::sample::select(vec![
            "", "B", "kB", "GB", "GiB", "TB/s", "Gbps", "Gb/s", "GB/s", "TFLOP/s", "TFLOPS",
            "TFLOPs", "PFLOP", "FLOP", "flops", "B", "M", "T", "params", "ms", "µs", "μs", "min",
            "tokens/ms", "k tokens/s", "tok/s", "%", "e", "E", "EB", "é", "/s", "ps",
        ]),
    ) {
        all_quantities(&format!("{sign}{num}{space}{unit}"));
    }
}

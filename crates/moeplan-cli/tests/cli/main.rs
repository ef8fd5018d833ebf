//! Integration tests of the `moeplan` binary: one test binary for the
//! crate (one link), with a module per command (`audit`, `dag`, `plan`) and
//! the README check (`readme`); this file holds the shared harness and the
//! input tests.
//!
//! The invalid-input tests are data-first: every file in
//! `tests/fixtures/invalid/` is run through `moeplan model <file>` (a
//! `gpu-*` file through `moeplan estimate --gpu <file>`, a `scenario-*`
//! file through `moeplan plan <file>`, a `plan-*` file through
//! `moeplan audit <file>`) and must
//! give exit code 2 and a diagnostic naming the file, with a `line:col`
//! location where the problem has one, a hint, and no panic. Each
//! diagnostic is snapshotted (`tests/snapshots/`). To add a case, drop a
//! file in the folder and accept its snapshot. Inputs that cannot be
//! checked in (special files, huge lines) are listed as data in
//! `tests/fixtures/invalid/generated/cases.yaml` (`generated.rs`).

mod audit;
mod dag;
#[cfg(unix)]
mod generated;
mod launch;
mod plan;
mod readme;
mod simulate;
mod width;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Exit code for bad input (see `moeplan --help`).
const EXIT_INPUT: i32 = 2;

/// The folder of invalid inputs, relative to the crate directory.
const INVALID_DIR: &str = "tests/fixtures/invalid";

/// Fixtures whose problems concern the file as a whole or a key that is not
/// written in it (empty file, missing keys, wrong extension), so the
/// diagnostic has no `line:col` to point at.
const NO_LOCATION: &[&str] = &[
    "empty.toml",
    "hf-missing-keys.json",
    "json-top-level-array.json",
    "no-extension.txt",
];

/// Fixtures whose diagnostic has no hint because of a known library gap:
/// `spec::model::convert` reports an unparsable `declared_params` without a
/// hint. Remove the entry once the library adds one.
const KNOWN_MISSING_HINT: &[&str] = &["declared-params-bad-unit.toml"];

/// Text each listed fixture's diagnostic must contain, beyond the generic
/// checks. Every problem of the multi-problem fixtures is listed, so a
/// regression to "first problem only" fails here.
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "toml-nan-value.toml",
        &["`vocab_size`: nan and inf are not values any input takes"],
    ),
    (
        "json-duplicate-key.json",
        &["duplicate key `name`", "remove the repeat"],
    ),
    (
        "yaml-duplicate-key.yaml",
        &["duplicate mapping key: name", "remove the repeat"],
    ),
    (
        "attention-kind-unknown.toml",
        &[
            "`attention.kind`",
            "\"mqa\" is not one of the accepted values",
            "use one of: \"mha\", \"gqa\", \"mla\"",
        ],
    ),
    (
        "declared-params-bad-unit.toml",
        &["`declared_params`", "`10 bananas` is not a valid quantity"],
    ),
    (
        "dense-layer-out-of-range.toml",
        &[
            "`dense_layers[1]`: layer 4 does",
            "`dense_layers[2]`: layer 9 does",
            "layer indices are 0-based",
        ],
    ),
    (
        "dtype-unknown.yaml",
        &[
            "`dtypes.weights`",
            "\"fp12\" is not one of the accepted values",
            "\"bf16\"",
        ],
    ),
    (
        "empty.toml",
        &[
            "missing required key `hidden_size`",
            "missing required key `n_layers`",
            "missing required key `vocab_size`",
            "missing required key `attention`",
        ],
    ),
    (
        "gpu-absurd-figures.toml",
        &[
            "`memory`: 1e39 B is outside [1 GB, 100 TB], the range of the memory of one GPU",
            "`peak.bf16`: 1 kFLOP/s is outside [1 TFLOP/s, 100 PFLOP/s]",
            "`links.nvlink_bandwidth`: 1e42 B/s is outside [1 GB/s, 1 PB/s]",
            "moeplan accepts the memory of one GPU from 1 GB to 100 TB",
        ],
    ),
    (
        "hf-hidden-size-2-31.json",
        &[
            "`hidden_size`: 2147483648 is outside [1, 1048576], the range of a model width",
            "`vocab_size`: 1099511627776 is outside [1, 16777216]",
            "moeplan accepts a model width from 1 to 1048576",
        ],
    ),
    (
        "heads-not-divisible.toml",
        &[
            "1 problem in",
            "16 heads are",
            "not divisible by 3 kv heads",
            "pick a divisor of n_heads",
        ],
    ),
    (
        "hf-missing-keys.json",
        &[
            "missing key `num_hidden_layers`",
            "missing key `intermediate_size`",
            "missing key `num_local_experts`",
            "missing key `num_experts_per_tok`",
        ],
    ),
    (
        "hf-unknown-torch-dtype.json",
        &["`torch_dtype`", "`\"float7\"` is not a weight type", "\"bfloat16\""],
    ),
    (
        "hf-nan-size.json",
        &[
            "`hidden_size`: expected a positive integer, found null (or NaN)",
            "write the size the checkpoint has",
        ],
    ),
    (
        "hf-quant-config-bare.json",
        &["quantization file", "give the config.json beside it"],
    ),
    (
        "hf-quant-config-as-model.json",
        &[
            "quantization file",
            "hf_quant_config.json",
            "give the config.json beside it",
        ],
    ),
    (
        "hf-unknown-architecture.json",
        &[
            "unsupported",
            "`FalconMambaForCausalLM`",
            "supported: MixtralForCausalLM",
            "native model spec",
        ],
    ),
    (
        "hf-zero-and-negative.json",
        &[
            "`num_key_value_heads`: must be",
            "`num_local_experts`: expected a",
            "found -8",
        ],
    ),
    (
        "json-syntax-error.json",
        &[
            "json-syntax-error.json:4:18",
            "invalid JSON: key must be a string",
        ],
    ),
    (
        "json-top-level-array.json",
        &["expected object, found an array"],
    ),
    (
        "json-truncated.json",
        &["json-truncated.json:7:9", "EOF while parsing", "truncated"],
    ),
    (
        "multiple-problems.toml",
        &[
            "5 problems in",
            "`attention.head_dim`: 0 is below the minimum 1",
            "16 heads are not divisible by 5 kv heads",
            "`hidden_size`: -512 is below the",
            "`tie_word_embedding`: unknown key",
            "did you mean `tie_word_embeddings`?",
            "`vocab_size`: expected integer, found",
            "a string",
        ],
    ),
    (
        "multiple-semantic-problems.toml",
        &[
            "4 problems in",
            "`vocab_size`: 0 is below the minimum 1",
            "not divisible by 5 kv heads",
            "top-6 routing needs at least 6 experts",
            "layer 7",
            "does not exist",
        ],
    ),
    (
        "negative-sizes.json",
        &[
            "`hidden_size`: -512 is below the minimum",
            "`attention.n_heads`: -4 is below the",
            "sizes, lengths and counts start at 1",
        ],
    ),
    (
        "no-extension.txt",
        &["no .toml, .yaml, .yml or .json extension"],
    ),
    (
        "non-utf8.toml",
        &[
            "non-utf8.toml:1:12",
            "not valid UTF-8",
            "offset 11",
            "save the file as UTF-8",
        ],
    ),
    (
        "scenario-workload-beyond-bounds.toml",
        &[
            "4 problems in",
            "`workload.isl`: 1000000000 is outside [1, 16777216], the range of a prompt or output length",
            "`workload.osl_max`: 99999999999 is outside [1, 16777216]",
            "`workload.concurrency`: 1000000000000 is outside [1, 1048576], the range of requests in flight",
            "`workload.request_rate`: 1000000000000 is outside [0.000001, 1000000]",
            "moeplan accepts requests in flight from 1 to 1048576",
        ],
    ),
    (
        "scenario-hardware-beyond-bounds.toml",
        &[
            "`hardware.gpus`: 4000000000 is outside [1, 10000000], the range of a GPU budget",
            "`hardware.gpus_per_node`: 100000 is outside [1, 1024], the range of GPUs per node",
        ],
    ),
    (
        "scenario-slo-beyond-bounds.toml",
        &[
            "`slo.ttft`: 1000000000 s is outside [1 µs, 86400 s], the range of a latency limit",
            "`slo.tpot`: 1e-12 s is outside [1 µs, 86400 s]",
            "`slo.ttft_p99`: 1000000 s is outside [1 µs, 86400 s]",
            "`slo.min_throughput_per_gpu`: -1000 is outside",
            "`slo.min_throughput_per_user`: inf is outside",
        ],
    ),
    (
        "scenario-isl-nan.toml",
        &["`workload.isl`: nan and inf are not values any input takes"],
    ),
    (
        "scenario-kv-nvfp4-on-hopper.toml",
        &[
            "`model.kv_cache_dtype`: an NVFP4 KV cache needs FP4 hardware (Blackwell, with TensorRT-LLM); h100-sxm has none",
        ],
    ),
    (
        "scenario-routing-skew-negative.toml",
        &["`workload.routing_skew`: -1 is outside [0, 4], the range of a routing skew"],
    ),
    (
        "toml-duplicate-key.toml",
        &["toml-duplicate-key.toml:5:1", "invalid TOML: duplicate key"],
    ),
    (
        "plan-count-beyond-its-type.toml",
        &[
            "`deployment.tp`: 10000000000 is above the largest value this key holds, 4294967295",
            "`deployment.replicas`: 5000000000 is above",
        ],
    ),
    (
        "plan-workload-beyond-bounds.toml",
        &[
            "`hardware.gpus`: 20000000 is outside [1, 10000000]",
            "`workload.batch_size`: 5000000 is outside [1, 1048576]",
        ],
    ),
    (
        "toml-syntax-error.toml",
        &["toml-syntax-error.toml:3:12", "invalid TOML"],
    ),
    (
        "topk-above-experts.yaml",
        &[
            "`moe.experts_per_token`",
            "top-8",
            "routing needs at least 8 experts, the model has 4",
        ],
    ),
    (
        "unknown-field-typo.toml",
        &["unknown key", "`hiden_size`", "did you mean `hidden_size`?"],
    ),
    (
        "wrong-type-integer-for-string.toml",
        &[
            "`declared_params`",
            "expected string, found an integer",
            "quantities are strings with their unit",
        ],
    ),
    (
        "wrong-type-string-for-integer.yaml",
        &[
            "`hidden_size`: expected",
            "integer, found a string",
            "write a whole number: no quotes, no decimal point",
        ],
    ),
    (
        "yaml-syntax-error.yaml",
        &["yaml-syntax-error.yaml:6:11", "invalid YAML"],
    ),
    (
        "zero-sizes.toml",
        &[
            "`hidden_size`: 0 is below the minimum 1",
            "`vocab_size`: 0 is below the minimum 1",
            "`moe.expert_intermediate_size`: 0 is below",
            "sizes, lengths and counts start at 1",
        ],
    ),
];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The repository root.
fn root() -> PathBuf {
    crate_dir().join("../..")
}

/// The binary with `args`, run in `dir`, colour and backtraces off.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_moeplan"));
    c.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE");
    c
}

/// Runs the binary from the crate directory.
fn moeplan(args: &[&str]) -> Output {
    command(crate_dir(), args)
        .output()
        .expect("the moeplan binary runs")
}

/// Runs the binary from the repository root (where the README's commands run).
fn moeplan_at_root(args: &[&str]) -> Output {
    command(&root(), args)
        .output()
        .expect("the moeplan binary runs")
}

/// `moeplan plan` for Qwen3-30B on 8 × H100 (1000 + 200 tokens) with
/// `flag` set to `value`, replacing that flag's default when it has one
/// (clap refuses a flag given twice).
fn plan_args(flag: &str, value: &str) -> Vec<String> {
    let defaults = [
        ("--model", "qwen3-30b-a3b"),
        ("--gpu", "h100"),
        ("--gpus", "8"),
        ("--isl", "1000"),
        ("--osl", "200"),
    ];
    let mut args = vec!["plan".to_string()];
    for (f, v) in defaults.iter().filter(|(f, _)| *f != flag) {
        args.extend([f.to_string(), v.to_string()]);
    }
    args.push(format!("{flag}={value}"));
    args
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// Diagnostics wrap long lines (` │ ` continuations); join them so expected
/// texts can be matched regardless of where the wrap falls.
fn unwrapped(text: &str) -> String {
    text.lines()
        .map(|l| l.trim_start_matches([' ', '│']).trim_end())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The fixture files, sorted.
fn invalid_fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(crate_dir().join(INVALID_DIR))
        .expect("the fixtures folder exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the invalid fixtures, found {files:?}"
    );
    files
}

/// `moeplan calibrate ARGS`, which must succeed.
fn calibrate_ok(args: &[&str]) -> std::process::Output {
    let o = moeplan(&[&["calibrate"], args].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    o
}

/// `moeplan calibrate RUNS --out PROFILE`, which must succeed.
fn calibrate_out(runs: &Path, profile: &Path) -> std::process::Output {
    calibrate_ok(&[runs.to_str().unwrap(), "--out", profile.to_str().unwrap()])
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

/// `name:LINE:COL` appears in `text`.
fn has_location(text: &str, name: &str) -> bool {
    text.match_indices(&format!("{name}:")).any(|(i, m)| {
        let rest = &text[i + m.len()..];
        let line: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if line.is_empty() || !rest[line.len()..].starts_with(':') {
            return false;
        }
        rest[line.len() + 1..].starts_with(|c: char| c.is_ascii_digit())
    })
}

/// The command that reads an invalid fixture: a GPU spec (`gpu-*`) as
/// `estimate`'s GPU, a scenario (`scenario-*`) as `plan`'s, a plan file
/// (`plan-*`) as `audit`'s, anything else as `model`'s model.
fn reading<'a>(name: &str, rel: &'a str) -> Vec<&'a str> {
    if name.starts_with("scenario-") {
        return vec!["plan", rel];
    }
    if name.starts_with("plan-") {
        return vec!["audit", rel];
    }
    if name.starts_with("gpu-") {
        vec![
            "estimate",
            "--model",
            "qwen3-30b-a3b",
            "--isl",
            "1000",
            "--osl",
            "200",
            "--concurrency",
            "8",
            "--gpu",
            rel,
        ]
    } else {
        vec!["model", rel]
    }
}

fn snapshot_name(file: &str) -> String {
    format!("invalid-{}", file.replace('.', "_"))
}

#[test]
fn every_invalid_fixture_gives_exit_2_and_a_located_diagnostic() {
    let mut failures = Vec::new();
    for path in invalid_fixtures() {
        let name = file_name(&path);
        let rel = format!("{INVALID_DIR}/{name}");
        let out = moeplan(&reading(&name, &rel));
        let err = stderr(&out);
        let flat = unwrapped(&err);
        let mut fail = |why: String| failures.push(format!("{name}: {why}\n{err}"));
        if out.status.code() != Some(EXIT_INPUT) {
            fail(format!(
                "exit code {:?}, expected {EXIT_INPUT}",
                out.status.code()
            ));
        }
        if err.trim().is_empty() {
            fail("empty stderr".into());
        }
        if err.contains("panicked") {
            fail("panicked".into());
        }
        if !err.contains(&rel) {
            fail(format!("stderr does not name `{rel}`"));
        }
        if !NO_LOCATION.contains(&name.as_str()) && !has_location(&err, &rel) {
            fail("no `file:line:col` location".into());
        }
        if !KNOWN_MISSING_HINT.contains(&name.as_str()) && !err.contains("help:") {
            fail("no hint (`help:`)".into());
        }
        if !stdout(&out).is_empty() {
            fail(format!("unexpected stdout: {}", stdout(&out)));
        }
        if let Some((_, texts)) = EXPECTED.iter().find(|(f, _)| *f == name) {
            for t in *texts {
                if !flat.contains(t) {
                    fail(format!("diagnostic lacks `{t}`"));
                }
            }
        }
        insta::assert_snapshot!(snapshot_name(&name), err);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn expectation_tables_name_existing_fixtures() {
    let names: Vec<String> = invalid_fixtures().iter().map(|p| file_name(p)).collect();
    let listed = EXPECTED
        .iter()
        .map(|(f, _)| *f)
        .chain(NO_LOCATION.iter().copied())
        .chain(KNOWN_MISSING_HINT.iter().copied());
    for f in listed {
        assert!(
            names.iter().any(|n| n == f),
            "`{f}` is listed but not in {INVALID_DIR}"
        );
    }
    for n in &names {
        assert!(
            EXPECTED.iter().any(|(f, _)| f == n),
            "fixture `{n}` has no entry in EXPECTED"
        );
    }
}

/// The multi-problem fixture mixes structural problems (reported) with
/// semantic ones (a zero head count, heads not divisible by kv heads).
///
/// Regression: `spec::parse_raw` returned as soon as the schema check finds
/// anything, so the semantic checks in `spec::model::convert` never run and
/// these two problems are not reported until the structural ones are fixed.
#[test]
fn multiple_problems_reports_structural_and_semantic_problems_together() {
    let out = moeplan(&["model", "tests/fixtures/invalid/multiple-problems.toml"]);
    assert_eq!(out.status.code(), Some(EXIT_INPUT));
    let flat = unwrapped(&stderr(&out));
    for t in [
        "`hidden_size`: -512 is below the",
        "`tie_word_embedding`: unknown key",
        "`vocab_size`: expected integer",
        "`attention.head_dim`: 0 is below the minimum 1",
        "not divisible by 5 kv heads",
    ] {
        assert!(flat.contains(t), "diagnostic lacks `{t}`:\n{flat}");
    }
}

/// A unique path in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(stem: &str, ext: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "moeplan-cli-test-{stem}-{}-{nanos}.{ext}",
            std::process::id()
        );
        TempFile(std::env::temp_dir().join(name))
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn a_50_mb_file_is_rejected_with_the_size_limit() {
    let tmp = TempFile::new("huge", "json");
    let f = fs::File::create(&tmp.0).expect("create temp file");
    f.set_len(50 * 1000 * 1000).expect("grow temp file");
    drop(f);
    let out = moeplan(&["model", tmp.path()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_INPUT), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let flat = unwrapped(&err);
    assert!(flat.contains("the file is 50.0 MB"), "{err}");
    assert!(flat.contains("spec files are at most 16 MB"), "{err}");
    assert!(flat.contains("help:"), "{err}");
}

/// Library bug: a layer count that passes the schema but is absurdly large
/// reaches `vec![...; n_layers as usize]` (spec/model.rs, hf.rs) and the
/// process panics with "capacity overflow" (exit 101); a smaller but still
/// huge count (1e12) aborts on a failed allocation (exit 134).
#[test]
fn an_absurd_layer_count_is_a_diagnostic_not_a_panic() {
    let tmp = TempFile::new("layers", "toml");
    fs::write(
        &tmp.0,
        "hidden_size = 512\nn_layers = 9000000000000000000\nvocab_size = 32000\n[attention]\nkind = \"mha\"\nn_heads = 16\n",
    )
    .unwrap();
    let out = moeplan(&["model", tmp.path()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_INPUT), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(has_location(&err, tmp.path()), "{err}");
}

/// Library bug: `512.0` passes the schema's integer check (`type_matches`
/// in spec/mod.rs accepts whole floats) but then fails serde's `u64`
/// deserialisation in `raw_from_value`, which reports it with no path, no
/// location and no hint (and would drop any other problem in the file).
#[test]
fn a_float_where_an_integer_is_expected_is_located() {
    let tmp = TempFile::new("float", "json");
    fs::write(
        &tmp.0,
        "{\n  \"hidden_size\": 512.0,\n  \"n_layers\": 4,\n  \"vocab_size\": 100,\n  \"attention\": {\"kind\": \"mha\", \"n_heads\": 4}\n}\n",
    )
    .unwrap();
    let out = moeplan(&["model", tmp.path()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_INPUT), "{err}");
    assert!(has_location(&err, tmp.path()), "{err}");
    assert!(err.contains("`hidden_size`"), "{err}");
    assert!(err.contains("help:"), "{err}");
}

/// Library bug: an unknown key with an empty name (`""`, or `"attention."`
/// in TOML) makes `find_key` in spec/source.rs loop forever: the command
/// never exits. Here it is killed after 10 s.
#[test]
fn an_empty_key_name_does_not_hang() {
    let tmp = TempFile::new("emptykey", "json");
    fs::write(
        &tmp.0,
        "{\"hidden_size\": 512, \"n_layers\": 4, \"vocab_size\": 100,\n \"attention\": {\"kind\": \"mha\", \"n_heads\": 4, \"\": 1}}\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moeplan"))
        .args(["model", tmp.path()])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the moeplan binary runs");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let status = status.expect("`moeplan model` still running after 10 s");
    assert_eq!(status.code(), Some(EXIT_INPUT));
}

#[test]
fn json_flag_reports_input_errors_as_json_on_stdout() {
    let out = moeplan(&[
        "model",
        "tests/fixtures/invalid/multiple-semantic-problems.toml",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(EXIT_INPUT));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("stdout is JSON");
    let e = v.get("error").expect("an `error` key");
    assert_eq!(e["kind"], "input");
    let msg = e["message"].as_str().expect("a message");
    assert!(msg.contains("multiple-semantic-problems.toml:4:1"), "{msg}");
    assert!(msg.contains("4 problems"), "{msg}");
    insta::assert_snapshot!("invalid-json-output", stdout(&out));
}

#[test]
fn unknown_model_name_is_bad_input() {
    let out = moeplan(&["model", "no-such-model"]);
    assert_eq!(out.status.code(), Some(EXIT_INPUT));
    let err = unwrapped(&stderr(&out));
    assert!(err.contains("is not a catalog model"), "{err}");
    // A name with a dot is a model name unless it names a file (issue 13:
    // `deepseek-v3.1` was read as a file without an extension).
    let out = moeplan(&["model", "deepseek-v3.1"]);
    assert_eq!(out.status.code(), Some(EXIT_INPUT));
    let err = unwrapped(&stderr(&out));
    assert!(
        err.contains("`deepseek-v3.1` is not a catalog model"),
        "{err}"
    );
    assert!(err.contains("closest catalog models: deepseek-v3"), "{err}");
    assert!(!err.contains("extension"), "{err}");
}

#[test]
fn missing_file_is_bad_input() {
    let out = moeplan(&["model", "tests/fixtures/does-not-exist.toml"]);
    assert_eq!(out.status.code(), Some(EXIT_INPUT));
    let err = stderr(&out);
    assert!(err.contains("tests/fixtures/does-not-exist.toml"), "{err}");
    assert!(err.contains("cannot read the file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn seed_moe_warns_about_its_declared_parameters() {
    let out = moeplan(&["model", "seed-moe"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("warning: declared parameters"))
        .unwrap_or_else(|| panic!("no declared-params warning in:\n{text}"));
    // "... the declaration is 22.11x the derived count"
    let ratio: f64 = line
        .split("the declaration is ")
        .nth(1)
        .and_then(|r| r.split('x').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ratio in `{line}`"));
    assert!(ratio > 20.0, "{line}");
    insta::assert_snapshot!("seed-moe-text", text);
}

#[test]
fn seed_moe_json_snapshot() {
    let out = moeplan(&["model", "seed-moe", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    serde_json::from_str::<serde_json::Value>(&text).expect("stdout is JSON");
    insta::assert_snapshot!("seed-moe-json", text);
}

#[test]
fn model_json_has_the_stable_keys() {
    let out = moeplan(&["model", "mixtral-8x7b", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("stdout is JSON");
    for key in [
        "params_total",
        "params_active",
        "params_by_component",
        "weight_bytes",
        "kv_cache_bytes_per_token",
        "n_layers",
        "n_routed_experts",
        "experts_per_token",
        "hidden_size",
        "warnings",
    ] {
        assert!(v.get(key).is_some(), "missing `{key}` in {v}");
    }
    assert_eq!(v["n_routed_experts"], 8);
    assert_eq!(v["experts_per_token"], 2);
    assert!(v["warnings"].is_array());
    assert!(v["params_by_component"].is_object() || v["params_by_component"].is_array());
}

#[test]
fn catalog_lists_every_model() {
    let out = moeplan(&["catalog"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for (id, _) in moeplan::catalog::MODELS {
        let listed = text
            .lines()
            .any(|l| l.split(['│', '┆']).nth(1).map(str::trim) == Some(*id));
        assert!(listed, "`{id}` not listed:\n{text}");
    }
    for (id, _) in moeplan::catalog::GPUS {
        assert!(text.contains(id), "`{id}` not listed:\n{text}");
    }
}

#[test]
fn catalog_json_lists_every_model() {
    let out = moeplan(&["catalog", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("stdout is JSON");
    let ids: Vec<&str> = v["models"]
        .as_array()
        .expect("a models array")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    let expected: Vec<&str> = moeplan::catalog::MODELS.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, expected);
}

#[test]
fn model_output_is_deterministic() {
    let a = moeplan(&["model", "deepseek-v3", "--json"]);
    let b = moeplan(&["model", "deepseek-v3", "--json"]);
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert_eq!(b.status.code(), Some(0));
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout, "two runs differ");
}

#[test]
fn schema_commands_print_json() {
    for kind in ["model", "gpu"] {
        let out = moeplan(&["schema", kind]);
        assert_eq!(out.status.code(), Some(0));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("schema is JSON");
        assert!(v.get("properties").is_some(), "{kind}: {v}");
    }
}

/// `estimate` with pool flags is disaggregated: its GPUs are both pools',
/// TPOT is the decode pool's step, and unstated worker counts are assumed
/// and said.
/// `estimate` of DeepSeek-V3 on H200 at 1024/1024 and 288 in flight, with
/// `pools`' flags.
fn estimate_deepseek_pools(pools: &[&str]) -> Output {
    let mut args = vec![
        "estimate",
        "--model",
        "deepseek-v3",
        "--gpu",
        "h200-sxm",
        "--isl",
        "1024",
        "--osl",
        "1024",
        "--concurrency",
        "288",
    ];
    args.extend_from_slice(pools);
    moeplan(&args)
}

#[test]
fn estimate_disaggregated_from_pool_flags() {
    let o = estimate_deepseek_pools(&[
        "--prefill-tp",
        "8",
        "--prefill-ep",
        "8",
        "--decode-dp",
        "8",
        "--decode-ep",
        "8",
        "--decode-workers",
        "3",
        "--engine",
        "trtllm",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["mode"], "disaggregated");
    let prefill_workers = v["prefill"]["workers"].as_u64().unwrap();
    assert_eq!(v["decode"]["workers"], 3);
    assert_eq!(v["gpus"].as_u64().unwrap(), prefill_workers * 8 + 3 * 8);
    let tpot = v["tpot_ms"].as_f64().unwrap();
    let step = v["decode"]["step"]["time"].as_f64().unwrap() * 1e3;
    assert!((tpot - step).abs() < 1e-9 * tpot, "{tpot} vs {step}");
    let assumed = v["assumed"].as_array().unwrap();
    assert_eq!(assumed.len(), 1, "{assumed:?}");
    assert!(assumed[0]
        .as_str()
        .unwrap()
        .starts_with("prefill workers not stated"));
    // A billion decode workers was estimated (exit 0, 8 billion GPUs).
    let o = estimate_deepseek_pools(&[
        "--decode-dp",
        "8",
        "--decode-ep",
        "8",
        "--decode-workers",
        "1000000000",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(unwrapped(&stderr(&o)).contains("the range of workers of a pool"));
}

/// A plan file estimates as the same deployment given by flags.
#[test]
fn estimate_of_a_plan_file_equals_its_flags() {
    let plan = crate_dir().join("../../examples/audit/mixtral-8x7b-tp2-2xh100.toml");
    let file = moeplan(&["estimate", plan.to_str().unwrap(), "--json"]);
    let flags = moeplan(&[
        "estimate",
        "--model",
        "mixtral-8x7b",
        "--gpu",
        "h100-sxm",
        "--tp",
        "2",
        "--isl",
        "1000",
        "--osl",
        "1000",
        "--concurrency",
        "64",
        // The plan states `engine = "neutral"`.
        "--engine",
        "neutral",
        "--json",
    ]);
    assert_eq!(file.status.code(), Some(0), "{}", stderr(&file));
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&stdout(&file)).unwrap(),
        serde_json::from_str(&stdout(&flags)).unwrap(),
    );
    for key in ["ttft_ms", "tpot_ms", "output_tokens_per_s_per_gpu", "gpus"] {
        assert_eq!(a[key], b[key], "{key}");
    }
}

/// The memory limit is one figure for every command: a plan that states
/// none runs under its engine's own (TensorRT-LLM's KV cache takes 90% of
/// what DeepSeek-R1's 169 GB of FP8 weights leave on a B200: 28 requests of
/// 8704 tokens fit), and `estimate` of the file, `estimate` by flags and
/// `audit` agree on it (a file held 90% of the GPU where the same flags held
/// the engine's own share); a plan that states `slo.max_memory_fraction =
/// 0.9` holds 90% of the GPU, where 16 such requests do not fit, and
/// `estimate` of the file and `audit` agree on that too.
#[test]
fn every_command_applies_the_same_memory_limit() {
    let body = r#"
name = "r1-tp4-b200"
[model]
catalog = "deepseek-r1"
[hardware]
gpu = "b200"
engine = "trtllm"
[workload]
isl = 8192
osl = 1024
concurrency = 16
[deployment]
tp = 4
ep = 4
"#;
    let figures = |body: &str| {
        let plan = TempFile::new("memory-limit", "toml");
        fs::write(&plan.0, body).unwrap();
        let est = moeplan(&["estimate", plan.path(), "--json"]);
        // 1: it does not fit.
        assert!(
            est.status.code().is_some_and(|c| c <= 1),
            "{}",
            stderr(&est)
        );
        let est: serde_json::Value = serde_json::from_str(&stdout(&est)).unwrap();
        let audit = moeplan(&["audit", plan.path(), "--json"]);
        let audit: serde_json::Value = serde_json::from_str(&stdout(&audit)).unwrap();
        let computed = &audit["computed"];
        let ttft = computed["ttft"].as_f64().unwrap() * 1e3;
        assert!(
            (ttft - est["ttft_ms"].as_f64().unwrap()).abs() <= 1e-9 * ttft,
            "{est} vs {computed}"
        );
        (est, computed["pools"][0]["fits"].as_bool().unwrap())
    };
    let (engines_own, fits) = figures(body);
    assert!(fits);
    assert_eq!(engines_own["max_concurrency"], 28);
    let args = [
        "estimate",
        "--model",
        "deepseek-r1",
        "--gpu",
        "b200",
        "--tp",
        "4",
        "--ep",
        "4",
        "--isl",
        "8192",
        "--osl",
        "1024",
        "--concurrency",
        "16",
        "--engine",
        "trtllm",
        "--json",
    ];
    let flags = moeplan(&args);
    let flags: serde_json::Value = serde_json::from_str(&stdout(&flags)).unwrap();
    for key in ["ttft_ms", "tpot_ms", "max_concurrency"] {
        assert_eq!(engines_own[key], flags[key], "{key}");
    }
    let stated_body = format!("{body}[slo]\nmax_memory_fraction = 0.9\n");
    let (stated, fits) = figures(&stated_body);
    assert!(!fits);
    assert_eq!(stated["max_concurrency"], 0);
    // `--max-memory-fraction` replaces the file's limit (it was put back
    // under it), as it sets the limit of an estimate by flags.
    let plan = TempFile::new("memory-limit-flag", "toml");
    fs::write(&plan.0, &stated_body).unwrap();
    let flag = ["--max-memory-fraction", "0.95"];
    let file = moeplan(&[&["estimate", plan.path(), "--json"][..], &flag].concat());
    let file: serde_json::Value = serde_json::from_str(&stdout(&file)).unwrap();
    let by_flags = moeplan(&[&args[..], &flag].concat());
    let by_flags: serde_json::Value = serde_json::from_str(&stdout(&by_flags)).unwrap();
    assert_eq!(file["max_concurrency"], 15);
    for key in ["ttft_ms", "tpot_ms", "max_concurrency"] {
        assert_eq!(file[key], by_flags[key], "{key}");
    }
}

/// Review of issue 11, gap 1: each pool of a disaggregated plan keeps its
/// own redundant experts. DeepSeek-V3's 256 experts over a prefill pool of
/// ep64 without redundant experts are 4 a GPU; 256 + 32 over a decode pool of
/// ep72 are 4 a GPU. The decode pool's 32 were applied to both pools (288
/// slots over ep64: 4.5 a GPU), so every command refused the plan (exit 2).
/// Each command now reads it, and launch gives EPLB to the decode pool only.
#[test]
fn every_command_reads_each_pools_redundant_experts() {
    let plan = TempFile::new("per-pool-redundant", "toml");
    fs::write(
        &plan.0,
        r#"
name = "per-pool-redundant"
[model]
catalog = "deepseek-v3"
[hardware]
gpu = "h100-sxm"
engine = "sglang"
[workload]
isl = 2000
osl = 200
concurrency = 2048
[deployment]
mode = "disaggregated"
[deployment.prefill]
dp = 64
ep = 64
redundant_experts = 0
[deployment.decode]
dp = 72
ep = 72
redundant_experts = 32
"#,
    )
    .unwrap();
    let p = plan.path();
    for args in [
        vec!["estimate", p],
        vec!["dag", p, "--pool", "prefill"],
        vec!["dag", p, "--pool", "decode"],
        vec!["simulate", p, "--requests", "300"],
    ] {
        let o = moeplan(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
    let launch = moeplan(&["launch", p, "--engine", "sglang"]);
    assert_eq!(launch.status.code(), Some(0), "{}", stderr(&launch));
    let text = stdout(&launch);
    let role = |mode: &str| -> Vec<&str> {
        text.lines()
            .filter(|l| l.contains(&format!("--disaggregation-mode {mode}")))
            .collect()
    };
    let (prefill, decode) = (role("prefill"), role("decode"));
    assert!(!prefill.is_empty() && !decode.is_empty(), "{text}");
    assert!(prefill.iter().all(|l| !l.contains("redundant")), "{text}");
    assert!(
        decode
            .iter()
            .all(|l| l.contains("--ep-num-redundant-experts 32")),
        "{text}"
    );
}

/// Flags that do not apply to a plan's mode are errors, never ignored.
#[test]
fn estimate_rejects_flags_of_the_other_mode() {
    let plan = crate_dir().join("../../examples/audit/mixtral-8x7b-tp2-2xh100.toml");
    let o = moeplan(&["estimate", plan.to_str().unwrap(), "--prefill-tp", "2"]);
    assert_eq!(o.status.code(), Some(EXIT_INPUT));
    assert!(
        unwrapped(&stderr(&o)).contains("aggregated plan"),
        "{}",
        stderr(&o)
    );
    let o = moeplan(&[
        "estimate",
        "--model",
        "mixtral-8x7b",
        "--gpu",
        "h100-sxm",
        "--isl",
        "1000",
        "--osl",
        "100",
        "--concurrency",
        "8",
        "--tp",
        "2",
        "--decode-tp",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(EXIT_INPUT));
    assert!(
        unwrapped(&stderr(&o)).contains("--prefill-* and --decode-*"),
        "{}",
        stderr(&o)
    );
}

/// `calibrate` writes a profile; `--profile` (or MOEPLAN_PROFILE) makes
/// every estimate of a stack it covers use it, and says so.
#[test]
fn calibrate_writes_a_profile_that_estimates_then_use() {
    let dir = std::env::temp_dir().join(format!("moeplan-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("mine.toml");
    let runs = crate_dir().join("../moeplan/tests/fixtures/runs/silicon.csv");
    let o = calibrate_out(&runs, &out);
    assert!(stdout(&o).contains("h200-sxm trtllm"), "{}", stdout(&o));
    let args = [
        "estimate",
        "--model",
        "deepseek-r1",
        "--gpu",
        "h200",
        "--engine",
        "trtllm",
        "--dp",
        "8",
        "--ep",
        "8",
        "--isl",
        "1024",
        "--osl",
        "1024",
        "--concurrency",
        "256",
        "--json",
    ];
    let built_in = moeplan(&args);
    let mut with = vec!["--profile", out.to_str().unwrap()];
    with.extend_from_slice(&args);
    let mine = moeplan(&with);
    assert_eq!(mine.status.code(), Some(0), "{}", stderr(&mine));
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&stdout(&built_in)).unwrap(),
        serde_json::from_str(&stdout(&mine)).unwrap(),
    );
    assert_ne!(a["tpot_ms"], b["tpot_ms"]);
    assert!(
        stdout(&mine).contains("mine.toml"),
        "the output names the profile"
    );
    // A file that is not a profile is bad input.
    let bad = moeplan(&["--profile", runs.to_str().unwrap(), "catalog"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(unwrapped(&stderr(&bad)).contains("moeplan calibrate"));
    std::fs::remove_dir_all(&dir).ok();
}

/// A model that the built-in stacks hold is estimated with its own layer,
/// and the output says so; a user profile of that GPU × engine wins over
/// it, and the output names the profile instead. A disaggregated estimate
/// takes the model's disaggregated stack.
#[test]
fn a_built_in_stack_serves_its_model_unless_a_profile_covers_it() {
    use moeplan::profile::{stack_table, ServingMode};
    use moeplan::serving::Client;
    let s = stack_table()
        .stack
        .iter()
        .find(|s| s.mode == ServingMode::Aggregated && s.client == Client::Fixed)
        .expect("a fixed-length aggregated stack");
    let gpu = moeplan::catalog::gpu(&s.gpu).unwrap().unwrap();
    let tp = gpu.gpus_per_node.to_string();
    let owned = stack_estimate(&s.model, &s.gpu, s.engine.name(), &tp);
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let o = moeplan(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        unwrapped(&stdout(&o)).contains("built-in stacks"),
        "{}",
        stdout(&o)
    );
    // Three runs of that stack, 10% slower than the estimate: a profile.
    let dir = std::env::temp_dir().join(format!("moeplan-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = slower_runs(&dir, &s.model, &s.gpu, s.engine.name(), &tp);
    let profile = dir.join("mine.toml");
    calibrate_out(&csv, &profile);
    let mut with = vec!["--profile", profile.to_str().unwrap()];
    with.extend_from_slice(&args);
    let mine = moeplan(&with);
    assert_eq!(mine.status.code(), Some(0), "{}", stderr(&mine));
    let text = unwrapped(&stdout(&mine));
    assert!(
        text.contains("mine.toml") && !text.contains("built-in stacks"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
    // A disaggregated estimate of a model with a disaggregated stack uses it.
    let d = stack_table()
        .stack
        .iter()
        .find(|s| s.mode == ServingMode::Disaggregated)
        .expect("a disaggregated stack");
    let n = moeplan::catalog::gpu(&d.gpu)
        .unwrap()
        .unwrap()
        .gpus_per_node
        .to_string();
    let o = moeplan(&[
        "estimate",
        "--model",
        &d.model,
        "--gpu",
        &d.gpu,
        "--engine",
        d.engine.name(),
        "--prefill-tp",
        &n,
        "--prefill-etp",
        &n,
        "--decode-tp",
        &n,
        "--decode-etp",
        &n,
        "--isl",
        "1024",
        "--osl",
        "256",
        "--concurrency",
        "64",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = unwrapped(&stdout(&o));
    assert!(text.contains(&format!("runs of {}", d.model)), "{text}");
}

/// `audit`, `simulate`, `launch` and `dag` name the profile in use (text
/// and JSON), and whether it applies; `dag` prices its phases' estimate
/// steps with it, in every format.
#[test]
fn every_command_names_the_profile_it_uses_and_dag_uses_it() {
    let dir = std::env::temp_dir().join(format!("moeplan-profile-use-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let profile = dir.join("mine.toml");
    let runs = crate_dir().join("../moeplan/tests/fixtures/runs/silicon.csv");
    calibrate_out(&runs, &profile);
    let p = profile.to_str().unwrap();
    let deployment = "--model deepseek-r1 --gpu h200 --engine trtllm --dp 8 --ep 8 --isl 1024 --osl 1024 --concurrency 256";
    let plan = root().join("examples/audit/deepseek-v3-dp8-ep8-8xh200.yaml");
    let plan = plan.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["audit", plan, "--engine", "trtllm"],
        [
            vec!["simulate", "--requests", "200"],
            deployment.split(' ').collect(),
        ]
        .concat(),
        [vec!["launch"], deployment.split(' ').collect()].concat(),
        [
            vec!["dag", "--phase", "decode"],
            deployment.split(' ').collect(),
        ]
        .concat(),
    ];
    for args in &commands {
        let text = command(crate_dir(), args)
            .env("MOEPLAN_PROFILE", p)
            .output()
            .unwrap();
        let both = format!("{}{}", stdout(&text), stderr(&text));
        assert!(
            both.contains(&format!(
                "profile {p}: its aggregated serving layer of h200-sxm × trtllm"
            )),
            "{}: {both}",
            args[0]
        );
        let mut json = vec!["--profile", p];
        json.extend_from_slice(args);
        json.push(if args[0] == "dag" {
            "--format=json"
        } else {
            "--json"
        });
        let o = moeplan(&json);
        let v: serde_json::Value =
            serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{}: {e}", args[0]));
        assert_eq!(v["profile"]["file"], p, "{}: {v}", args[0]);
        assert_eq!(v["profile"]["applied"], true, "{}", args[0]);
        // Without a profile, no key.
        let o = moeplan(&json[2..]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert!(v.get("profile").is_none(), "{}", args[0]);
    }
    let dag: Vec<&str> = [
        vec!["dag", "--phase", "decode", "--format", "dot"],
        deployment.split(' ').collect(),
    ]
    .concat();
    let built_in = stdout(&moeplan(&dag));
    let mut with = vec!["--profile", p];
    with.extend_from_slice(&dag);
    let mine = stdout(&moeplan(&with));
    assert_ne!(built_in, mine, "dag's DOT ignores the profile");
    assert!(
        mine.contains("the estimate's step") && mine.contains("mine.toml"),
        "{mine}"
    );
    // A stack the profile lacks is named as not used.
    let o = moeplan(&[
        "--profile",
        p,
        "dag",
        "--model",
        "qwen3-30b-a3b",
        "--gpu",
        "h100",
        "--engine",
        "vllm",
        "--tp",
        "2",
        "--isl",
        "1000",
        "--osl",
        "1000",
        "--concurrency",
        "8",
    ]);
    assert!(
        stdout(&o).contains("not used: it has no aggregated fit of h100-sxm × vllm"),
        "{}",
        stdout(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A runs file that states throughputs gets their error too: the JSON's
/// predicted throughput over the stated one is the error the text reports
/// (one run of the fixture states one).
#[test]
fn accuracy_reports_the_throughput_error_of_runs_that_state_one() {
    let runs = crate_dir().join("../moeplan/tests/fixtures/runs/native-options.csv");
    let o = moeplan(&["accuracy", runs.to_str().unwrap(), "--runs", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let first = &v["runs"][0];
    let error = first["predicted_throughput_tok_s"].as_f64().unwrap()
        / first["measured_throughput_tok_s"].as_f64().unwrap()
        - 1.0;
    assert!(v["runs"][1]["measured_throughput_tok_s"].is_null());
    let o = moeplan(&["accuracy", runs.to_str().unwrap()]);
    let text = stdout(&o);
    let line = format!(
        "output throughput of the 1 answered runs that state one (predicted by Little's law from the predicted TTFT and TPOT): median |error| {:.1}%",
        error.abs() * 100.0
    );
    assert!(text.contains(&line), "`{line}` missing from\n{text}");
}

/// `accuracy --cv --runs --json` gives each run its leave-one-model-out
/// prediction, and they are what the cross-validated summary counts: the
/// median |error| of TTFT and TPOT over the rows is the summary's `all`
/// median. Without --cv the fields are null.
#[test]
fn accuracy_lists_each_runs_left_out_prediction() {
    let runs = crate_dir().join("../moeplan/tests/fixtures/runs/silicon.csv");
    let json = |extra: &[&str]| {
        let mut args = vec!["accuracy", runs.to_str().unwrap(), "--runs", "--json"];
        args.extend(extra);
        let o = moeplan(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let v = json(&["--cv"]);
    let rows = v["runs"].as_array().unwrap();
    let errors = |key: &str, measured: &str| -> Vec<f64> {
        rows.iter()
            .filter_map(|r| Some((r[key].as_f64()? / r[measured].as_f64()? - 1.0).abs()))
            .collect()
    };
    let ttft = errors("cross_validated_ttft_ms", "measured_ttft_ms");
    let tpot = errors("cross_validated_tpot_ms", "measured_tpot_ms");
    let answered = rows
        .iter()
        .filter(|r| r["predicted_ttft_ms"].is_f64())
        .count();
    assert_eq!(ttft.len(), answered);
    let all = &v["cross_validated"][0];
    assert_eq!(all["group"], "all");
    assert!((median(ttft) - all["ttft"]["median"].as_f64().unwrap()).abs() < 1e-9);
    assert!((median(tpot) - all["tpot"]["median"].as_f64().unwrap()).abs() < 1e-9);
    let v = json(&[]);
    assert!(v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["cross_validated_ttft_ms"].is_null()));
}

/// `calibrate --built-in FILE` writes the built-in serving layer's format:
/// one section per engine of the runs, each naming the runs file it was
/// fitted to, byte-identical on a second run; it is a mode of its own
/// (with `--out` it is refused, exit 2).
#[test]
fn calibrate_built_in_writes_the_serving_layer_file() {
    let runs = crate_dir().join("../moeplan/tests/fixtures/runs/silicon.csv");
    let dir = std::env::temp_dir().join(format!("moeplan-built-in-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = |name: &str| {
        let path = dir.join(name);
        calibrate_ok(&[runs.to_str().unwrap(), "--built-in", path.to_str().unwrap()]);
        std::fs::read_to_string(path).unwrap()
    };
    let (first, second) = (out("a.toml"), out("b.toml"));
    assert_eq!(first, second);
    assert!(first.contains("Generated by `moeplan calibrate --built-in`"));
    // The fixture's rows are TensorRT-LLM and SGLang, aggregated and
    // disaggregated.
    for section in [
        "[trtllm.params]",
        "[trtllm.disaggregated.params]",
        "[sglang.params]",
        "[sglang.disaggregated.params]",
    ] {
        assert!(first.contains(section), "{section} missing from {first}");
    }
    assert!(first.contains("sglang runs of silicon.csv\""), "{first}");
    // An engine with no runs keeps the kernel tables' defaults.
    assert!(
        first.contains("fitted to the 0 answered aggregated fixed-length vllm runs"),
        "{first}"
    );
    // No InferenceMAX rows in the fixture: no layer of that client.
    assert!(!first.contains(".inferencemax"), "{first}");
    let both = moeplan(&[
        "calibrate",
        runs.to_str().unwrap(),
        "--built-in",
        dir.join("c.toml").to_str().unwrap(),
        "--out",
        dir.join("d.toml").to_str().unwrap(),
    ]);
    assert_eq!(both.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

/// `calibrate --json` alone prints the fitted profile and writes nothing;
/// the table, the JSON and the profile give the p90 |error| beside the
/// median, before and after.
#[test]
fn calibrate_json_alone_prints_the_profile_with_p90() {
    let runs = crate_dir().join("../moeplan/tests/fixtures/runs/silicon.csv");
    let o = moeplan(&["calibrate", runs.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let fit = &v["profile"]["stack"][0]["aggregated"];
    for key in [
        "ttft_median_after",
        "ttft_p90_before",
        "ttft_p90_after",
        "tpot_p90_before",
        "tpot_p90_after",
    ] {
        assert!(fit[key].is_number(), "{key} missing from {v}");
    }
    let o = moeplan(&[
        "calibrate",
        runs.to_str().unwrap(),
        "--validate",
        "--explain",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("TTFT |error| median") && text.matches("p90").count() >= 4,
        "{text}"
    );
    assert!(stderr(&o).contains("not written"), "{}", stderr(&o));
}

/// `calibrate --help` names every runs format it reads, the benchmark
/// clients' results with their sidecar among them, and it reads them.
#[test]
fn calibrate_help_documents_the_benchmark_client_results_it_reads() {
    let help = unwrapped(&stdout(&moeplan(&["calibrate", "--help"])));
    for expected in [
        "silicon CSV",
        "vllm bench serve --save-result",
        "bench_serving",
        "<file>.moeplan.toml",
    ] {
        assert!(help.contains(expected), "`{expected}` missing from\n{help}");
    }
    let bench = crate_dir().join("../moeplan/tests/fixtures/runs/bench");
    for (file, stack) in [
        ("vllm-result.json", "vllm"),
        ("sglang-results.jsonl", "sglang"),
    ] {
        let o = moeplan(&["calibrate", bench.join(file).to_str().unwrap(), "--json"]);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["profile"]["stack"][0]["engine"], stack, "{v}");
    }
}

/// A runs file with rows moeplan cannot use (an unknown GPU, a layout
/// invalid for its model) is not fitted without them: `calibrate` names
/// every such row at once, located, and exits 2; `accuracy` refuses the
/// unknown GPU alike and, once it is fixed, warns of the run it cannot
/// answer instead of only counting it.
#[test]
fn calibrate_refuses_rows_it_cannot_use_and_accuracy_names_them() {
    let dir = std::env::temp_dir().join(format!("moeplan-unusable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let header = "model,gpu,engine,engine_version,weight_dtype,isl,osl,concurrency,tp,pp,dp,ep,etp,ttft_ms,tpot_ms";
    let good = "mixtral-8x7b,h100-sxm,vllm,0.19.0,,1000,1000,64,2,1,1,,,180.5,21.3";
    let gpu = "mixtral-8x7b,h999,vllm,0.19.0,,1000,1000,64,2,1,1,,,180.5,21.3";
    let tp3 = "qwen3-32b,h200-sxm,vllm,0.19.0,,1000,1000,64,3,1,1,,,180.5,21.3";
    let both = dir.join("both.csv");
    std::fs::write(&both, format!("{header}\n{good}\n{gpu}\n{tp3}\n")).unwrap();
    let o = moeplan(&[
        "calibrate",
        both.to_str().unwrap(),
        "--explain",
        "--out",
        dir.join("p.toml").to_str().unwrap(),
    ]);
    let err = unwrapped(&stderr(&o));
    assert_eq!(o.status.code(), Some(EXIT_INPUT), "{err}");
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert!(
        !dir.join("p.toml").exists(),
        "no profile from a refused file"
    );
    for expected in [
        "both.csv:3:",
        "line 3 column `gpu`",
        "unknown GPU `h999`",
        "both.csv:4:",
        "line 4 column `tp`",
        "tp = 3",
        "help:",
    ] {
        assert!(err.contains(expected), "`{expected}` missing from\n{err}");
    }
    let o = moeplan(&["accuracy", both.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(EXIT_INPUT), "{}", stderr(&o));
    assert!(unwrapped(&stderr(&o)).contains("line 3 column `gpu`"));
    let layout = dir.join("layout.csv");
    std::fs::write(&layout, format!("{header}\n{good}\n{tp3}\n")).unwrap();
    let o = moeplan(&["accuracy", layout.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = unwrapped(&stderr(&o));
    assert!(
        err.contains("warning: ") && err.contains("layout.csv:3: not answered: invalid layout"),
        "{err}"
    );
    let o = moeplan(&["accuracy", layout.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["unanswered"].as_array().map(Vec::len), Some(1), "{v}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Checks `value` against the subset of JSON Schema that schemars writes:
/// `$ref` into `$defs`, `type` (one or several), `properties` with
/// `required` (and no key the schema does not list), `items`,
/// `additionalProperties`, `anyOf`/`oneOf`, `const` and `enum`. Returns the
/// first mismatch with its JSON path.
fn conforms(
    value: &serde_json::Value,
    schema: &serde_json::Value,
    root: &serde_json::Value,
    path: &str,
) -> Result<(), String> {
    use serde_json::Value;
    let Value::Object(s) = schema else {
        return match schema {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("{path}: the schema forbids any value")),
        };
    };
    if let Some(Value::String(r)) = s.get("$ref") {
        let name = r.trim_start_matches("#/$defs/");
        return conforms(value, &root["$defs"][name], root, path);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = s.get(key) {
            let fits = options
                .iter()
                .filter(|o| conforms(value, o, root, path).is_ok())
                .count();
            if fits == 0 || (key == "oneOf" && fits > 1) {
                return Err(format!("{path}: {fits} of the {key} options match {value}"));
            }
        }
    }
    if let Some(c) = s.get("const") {
        if c != value {
            return Err(format!("{path}: {value} is not {c}"));
        }
    }
    if let Some(Value::Array(e)) = s.get("enum") {
        if !e.contains(value) {
            return Err(format!("{path}: {value} is not one of {e:?}"));
        }
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(x) => vec![x.as_str()],
            Value::Array(xs) => xs.iter().filter_map(|x| x.as_str()).collect(),
            _ => Vec::new(),
        };
        let is = |ty: &str| match ty {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        };
        if !types.iter().any(|ty| is(ty)) {
            return Err(format!("{path}: {value} is not of type {t}"));
        }
    }
    if let (Value::Object(o), Some(Value::Object(props))) = (value, s.get("properties")) {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap_or_default();
            if !o.contains_key(r) {
                return Err(format!("{path}: required key `{r}` is missing"));
            }
        }
        for (k, v) in o {
            match (props.get(k), s.get("additionalProperties")) {
                (Some(p), _) => conforms(v, p, root, &format!("{path}.{k}"))?,
                (None, Some(extra)) => conforms(v, extra, root, &format!("{path}.{k}"))?,
                (None, None) => return Err(format!("{path}: key `{k}` is not in the schema")),
            }
        }
    } else if let (Value::Object(o), Some(extra)) = (value, s.get("additionalProperties")) {
        for (k, v) in o {
            conforms(v, extra, root, &format!("{path}.{k}"))?;
        }
    }
    if let (Value::Array(a), Some(items)) = (value, s.get("items")) {
        for (i, v) in a.iter().enumerate() {
            conforms(v, items, root, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

/// Every command's `--json` output, on the shipped examples, conforms to
/// its checked-in schema `schemas/output/<command>.schema.json`; a key
/// added or renamed without the schema fails here.
#[test]
fn json_outputs_conform_to_their_schemas() {
    let root = crate_dir().join("../..");
    let path = |p: &str| root.join(p).to_str().unwrap().to_string();
    let runs = path("crates/moeplan/tests/fixtures/runs/native.csv");
    let dir = std::env::temp_dir().join(format!("moeplan-schemas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let profile = dir.join("p.toml").to_str().unwrap().to_string();
    let fixed = dir.join("fixed.toml").to_str().unwrap().to_string();
    let words = |line: &str| -> Vec<String> { line.split_whitespace().map(String::from).collect() };
    let lengths = "--isl 2000 --osl 500 --concurrency 64";
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("estimate", words(&format!("estimate --model qwen3-30b-a3b --gpu h100 --tp 2 {lengths} --json"))),
        ("estimate", words(&format!("estimate --model deepseek-v3 --gpu h200 --prefill-workers 1 --prefill-dp 8 --prefill-ep 8 --decode-workers 1 --decode-dp 8 --decode-ep 8 {lengths} --json"))),
        ("plan", words(&format!("plan {} --json", path("examples/qwen3-30b-8xh100.toml")))),
        ("plan", words("plan --json")),
        ("plan", words("plan --model qwen3-30b-a3b --gpu h100 --gpus 16 --isl 2000 --osl 500 --request-rate 10 --ttft-p99-ms 1000 --tpot-p90-ms 40 --json")),
        ("audit", words(&format!("audit {} --json", path("examples/audit/deepseek-v3-dp8-ep8-8xh200.yaml")))),
        ("audit", words(&format!("audit {} --fix {fixed} --json", path("examples/audit/mixtral-8x7b-tp2-2xh100.toml")))),
        ("dag", words(&format!("dag --model qwen3-30b-a3b --gpu h100 --tp 2 --ep 2 {lengths} --format json"))),
        ("launch", words(&format!("launch --model qwen3-30b-a3b --gpu h100 --tp 2 --ep 2 {lengths} --engine sglang --target lws --json"))),
        ("launch", words(&format!("launch --model deepseek-v3 --gpu h200 --prefill-workers 1 --prefill-dp 8 --prefill-ep 8 --decode-workers 1 --decode-dp 8 --decode-ep 8 {lengths} --engine trtllm --json"))),
        ("simulate", words(&format!("simulate --model qwen3-30b-a3b --gpu h100 --tp 2 --ep 2 {lengths} --engine vllm --rate 4 --requests 500 --ttft-slo 500 --json"))),
        ("simulate", words(&format!("simulate --model deepseek-v3 --gpu h200 --prefill-dp 8 --prefill-ep 8 --prefill-workers 1 --decode-dp 8 --decode-ep 8 --decode-workers 1 {lengths} --engine sglang --rate 2 --requests 300 --json"))),
        ("model", words("model deepseek-v3 --json")),
        ("catalog", words("catalog --json")),
        ("calibrate", words(&format!("calibrate {runs} --out {profile} --explain --json"))),
        ("accuracy", words(&format!("accuracy {runs} --runs --cv --json"))),
        ("error", words("model no-such-model --json")),
    ];
    for (command, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = moeplan(&args);
        assert!(
            o.status.code().unwrap_or(3) <= 2,
            "{args:?}: {}",
            stderr(&o)
        );
        let value: serde_json::Value = serde_json::from_str(&stdout(&o))
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&o)));
        let file = root.join(format!("schemas/output/{command}.schema.json"));
        let schema: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        if let Err(e) = conforms(&value, &schema, &schema, "$") {
            panic!(
                "`moeplan {}` does not conform to {}: {e}",
                args.join(" "),
                file.display()
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `estimate SCENARIO` estimates the planner's recommendation for it, and
/// reproduces the planner's headline figures (one evaluation of each
/// figure: issue 9), aggregated and disaggregated.
#[test]
fn estimate_of_a_scenario_reproduces_the_planners_recommendation() {
    let close = |a: f64, b: f64| (a - b).abs() <= 0.01 * a.abs().max(b.abs());
    for file in [
        "examples/mixtral-2xh100.yaml",
        "examples/qwen3-30b-8xh100.toml",
        "examples/deepseek-v3-h200.toml",
    ] {
        let json = |args: &[&str]| -> serde_json::Value {
            let o = moeplan_at_root(args);
            assert!(
                o.status.code().is_some_and(|c| c <= 1),
                "{args:?}: {}",
                stderr(&o)
            );
            serde_json::from_str(&stdout(&o)).expect("JSON")
        };
        let plan = json(&["plan", file, "--json"]);
        let rec = &plan["recommended"];
        let est = json(&["estimate", file, "--json"]);
        for key in ["ttft_ms", "tpot_ms", "output_tokens_per_s_per_gpu"] {
            let (p, e) = (rec[key].as_f64().unwrap(), est[key].as_f64().unwrap());
            assert!(close(p, e), "{file} {key}: plan {p}, estimate {e}");
        }
        let text = stdout(&moeplan_at_root(&["estimate", file]));
        assert!(
            text.starts_with("from the planner's recommendation for"),
            "{text}"
        );
    }
}

/// Physically absurd flag values are bad input naming their bound, never
/// a confident figure (issue 14): each exits 2 with the bound in its message.
#[test]
fn absurd_flag_values_are_bad_input_with_their_bound() {
    let base = "estimate --model qwen3-30b-a3b --gpu h100 --isl 1000 --osl 100 --concurrency 8";
    let cases: &[(&str, &str)] = &[
        ("--mfu 1e-300", "outside [0.01, 1]"),
        ("--bandwidth-utilization 0.0001", "outside [0.01, 1]"),
        ("--mfu inf", "outside [0.01, 1]"),
        ("--routing-skew NaN", "outside [0, 4]"),
        ("--routing-skew=-1", "outside [0, 4]"),
        ("--routing-skew inf", "outside [0, 4]"),
        ("--max-memory-fraction 0.001", "outside [0.05, 1]"),
        ("--kv-dtype fp4", "needs FP4 hardware"),
        ("--kv-dtype int4", "no engine stores the KV cache as int4"),
        // Degrees multiply: 65536 × 65536 overflowed u32 (a panic in a
        // debug build, a silent etp = 0 in release).
        ("--tp 65536 --dp 65536", "one replica spans at most 1048576"),
    ];
    for (extra, expected) in cases {
        let line = format!("{base} {extra}");
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = moeplan(&args);
        assert_eq!(
            out.status.code(),
            Some(EXIT_INPUT),
            "{line}: {}",
            stdout(&out)
        );
        let err = unwrapped(&stderr(&out));
        assert!(err.contains(expected), "{line}: {err}");
    }
    // --top 0 would show nothing: refused.
    assert_eq!(
        moeplan(&["plan", "--top", "0"]).status.code(),
        Some(EXIT_INPUT)
    );
    // An FP4 KV cache is real on Blackwell.
    let out = moeplan(&[
        "estimate",
        "--model",
        "qwen3-30b-a3b",
        "--gpu",
        "b200",
        "--isl",
        "1000",
        "--osl",
        "100",
        "--concurrency",
        "8",
        "--kv-dtype",
        "nvfp4",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Small findings of issue 14, each checked: a dense model has no expert
/// DP to print; `dag --format json` writes its errors as JSON like every
/// `--json`; `moeplan` alone and `--help` say the same thing.
#[test]
fn small_cli_findings_stay_fixed() {
    let out = moeplan(&[
        "estimate",
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "h100",
        "--isl",
        "1000",
        "--osl",
        "100",
        "--concurrency",
        "8",
        "--dp",
        "8",
    ]);
    assert!(
        stdout(&out).starts_with("llama-3.1-8b on 8 × h100-sxm, layout dp8\n"),
        "{}",
        stdout(&out)
    );
    let out = moeplan(&[
        "dag",
        "--model",
        "no-such-model",
        "--gpu",
        "h100",
        "--isl",
        "1",
        "--osl",
        "1",
        "--concurrency",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(EXIT_INPUT));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("a JSON error");
    assert_eq!(v["error"]["kind"], "input");
    let bare = moeplan(&[]);
    let help = moeplan(&["--help"]);
    let first = |o: &Output| {
        let text = format!("{}{}", stdout(o), stderr(o));
        text.lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(first(&bare), first(&help));
}

/// A UTF-8 byte-order mark is accepted in every format (issue 14: a BOM
/// was accepted in TOML but not JSON). Special files (a symlink to
/// /dev/zero, a FIFO) are cases of `tests/fixtures/invalid/generated/`.
#[test]
fn a_bom_is_accepted() {
    let dir = std::env::temp_dir().join(format!("moeplan-files-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let model = fs::read_to_string(crate_dir().join("../moeplan/catalog/models/mixtral-8x7b.json"))
        .expect("a catalog config");
    let bom = dir.join("config.json");
    fs::write(&bom, format!("\u{feff}{model}")).unwrap();
    let out = moeplan(&["model", bom.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    fs::remove_dir_all(&dir).ok();
}

/// Every file a command reads goes through the same reader as spec
/// files: regular files only, a size cap, a byte-order mark dropped (issue
/// 14: `accuracy`, `calibrate`, `simulate --trace`, `--isl-dist` and
/// `--profile` read a symlink to /dev/zero without limit and blocked on a
/// FIFO; a BOM made the CSV headers unknown).
#[cfg(unix)]
#[test]
fn every_file_a_command_reads_is_a_regular_file() {
    let dir = std::env::temp_dir().join(format!("moeplan-readers-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let simulate = [
        "simulate",
        "--model",
        "qwen3-30b-a3b",
        "--gpu",
        "h100",
        "--isl",
        "1000",
        "--osl",
        "200",
        "--concurrency",
        "4",
        "--requests",
        "50",
        "--json",
    ];
    let commands: Vec<(Vec<&str>, &str)> = vec![
        (vec!["accuracy"], "csv"),
        (vec!["calibrate", "--validate"], "csv"),
        (simulate.iter().copied().chain(["--trace"]).collect(), "csv"),
        (
            simulate.iter().copied().chain(["--isl-dist"]).collect(),
            "csv",
        ),
        (vec!["catalog", "--profile"], "toml"),
    ];
    for (i, (command, ext)) in commands.iter().enumerate() {
        let zero = dir.join(format!("zero{i}.{ext}"));
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let fifo = dir.join(format!("fifo{i}.{ext}"));
        let mut cases = vec![zero];
        if Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success())
        {
            cases.push(fifo);
        }
        for path in &cases {
            let mut args = command.clone();
            args.push(path.to_str().unwrap());
            let out = moeplan(&args);
            // With --json the diagnostic is JSON on stdout.
            let err = unwrapped(&format!("{}{}", stdout(&out), stderr(&out)));
            assert_eq!(out.status.code(), Some(EXIT_INPUT), "{args:?}: {err}");
            assert!(err.contains("not a regular file"), "{args:?}: {err}");
        }
    }
    // A BOM before a CSV header is not part of the first column's name.
    let bom = |from: &str, name: &str| {
        let text = fs::read_to_string(crate_dir().join(from)).expect("a fixture");
        let path = dir.join(name);
        fs::write(&path, format!("\u{feff}{text}")).unwrap();
        path
    };
    let runs = bom("../moeplan/tests/fixtures/runs/native.csv", "runs.csv");
    let out = moeplan(&["accuracy", runs.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let trace = bom("tests/fixtures/traces/native.csv", "trace.csv");
    let mut args = simulate.to_vec();
    args.extend(["--trace", trace.to_str().unwrap()]);
    let out = moeplan(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    fs::remove_dir_all(&dir).ok();
}

/// A prompt and output longer than the model's trained context are said to
/// be so (issue 14: it passed silently); within it, no such warning.
#[test]
fn a_request_beyond_the_trained_context_is_warned() {
    let run = |isl: &str| {
        let out = moeplan(&[
            "estimate",
            "--model",
            "mixtral-8x7b",
            "--gpu",
            "h100",
            "--tp",
            "2",
            "--isl",
            isl,
            "--osl",
            "1000",
            "--concurrency",
            "4",
        ]);
        format!("{}{}", stdout(&out), stderr(&out))
    };
    assert!(run("40000").contains("exceeds the 32768 tokens of context"));
    assert!(!run("4000").contains("tokens of context"));
}

/// `--overlap two-batch` and `--cache-hit-rate` on `estimate`: each says
/// what it did in a line of its own and an `explain` entry; other spellings
/// and rates outside [0, 0.99] are bad input naming what is accepted.
#[test]
fn overlap_and_cache_hit_rate_flags() {
    let base = [
        "estimate",
        "--model",
        "deepseek-v3",
        "--gpu",
        "h100-sxm",
        "--dp",
        "32",
        "--ep",
        "32",
        "--isl",
        "2000",
        "--osl",
        "1000",
        "--concurrency",
        "4096",
    ];
    let run = |extra: &[&str]| moeplan(&[&base[..], extra].concat());
    let plain = stdout(&run(&[]));
    assert!(!plain.contains("two-batch overlap") && !plain.contains("prefix cache"));
    let out = run(&["--overlap", "two-batch", "--cache-hit-rate", "0.56"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("two-batch overlap prefill step hides"),
        "{text}"
    );
    assert!(text.contains("; decode step hides"), "{text}");
    assert!(
        text.contains("prefix cache      56.0% of prompt tokens hit"),
        "{text}"
    );
    let json = run(&[
        "--overlap",
        "two-batch",
        "--cache-hit-rate",
        "0.56",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v["explain"]["overlap"]["formula"]
        .as_str()
        .unwrap()
        .contains("max(W, H)"));
    assert!(v["explain"]["prefix_cache"].is_object());
    assert!(v["decode"]["overlap"]["hidden"].as_f64().unwrap() > 0.0);
    for bad in ["true", "tbo"] {
        let out = run(&["--overlap", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains("two-batch"), "{}", stderr(&out));
    }
    let out = run(&["--cache-hit-rate", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("0.99"), "{}", stderr(&out));
}

/// `--client` picks the benchmark client whose measurements `estimate`
/// predicts: InferenceMAX's spread lengths change a prefill-first engine's
/// loop and its serving layer, the output says which layer it used and how
/// later rounds arrive, and an unknown client is bad input.
#[test]
fn client_flag() {
    let base = [
        "estimate",
        "--model",
        "deepseek-v3",
        "--gpu",
        "h200-sxm",
        "--tp",
        "8",
        "--engine",
        "sglang",
        "--isl",
        "1000",
        "--osl",
        "1000",
        "--concurrency",
        "64",
        "--json",
    ];
    let run = |extra: &[&str]| moeplan(&[&base[..], extra].concat());
    let json = |extra: &[&str]| -> serde_json::Value {
        let out = run(extra);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let fixed = json(&[]);
    let imax = json(&["--client", "inferencemax"]);
    assert_eq!(fixed["benchmark"]["arrivals"], "grouped");
    assert_eq!(imax["benchmark"]["arrivals"], "spread");
    assert!(imax["efficiency_source"]
        .as_str()
        .unwrap()
        .contains("inferencemax"));
    assert_ne!(fixed["ttft_ms"], imax["ttft_ms"]);
    assert!(imax["explain"]["ttft"]["formula"]
        .as_str()
        .unwrap()
        .contains("spread arrivals"));
    let text = stdout(&moeplan(
        &[&base[..base.len() - 1], &["--client", "inferencemax"]].concat(),
    ));
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("serving layer fitted to inferencemax runs"),
        "{text}"
    );
    // With --json the diagnostic is JSON on stdout.
    let out = run(&["--client", "sharegpt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("inferencemax"), "{}", stdout(&out));
}

mod flag_values {
    //! Any value of a numeric flag either is refused as bad input (exit 2)
    //! or gives figures that are finite and physically possible (issue 14's
    //! quality bar: NaN, ±inf, 0 and huge values never reach an exit 0 with
    //! nonsense in the output).
    use super::{moeplan, plan_args, stdout};
    use proptest::prelude::*;

    /// `plan`'s numeric flags (issue 14: `--concurrency 2^64 - 1` gave a
    /// TTFT of 9.3e16 s, `--request-rate 1e300` 2e18 GPUs).
    const PLAN_FLAGS: &[&str] = &[
        "--gpus",
        "--gpus-per-node",
        "--isl",
        "--osl",
        "--concurrency",
        "--request-rate",
        "--ttft-ms",
        "--tpot-ms",
        "--max-memory-fraction",
        "--mfu",
        "--bandwidth-utilization",
    ];

    const FLAGS: &[&str] = &[
        "--mfu",
        "--bandwidth-utilization",
        "--routing-skew",
        "--max-memory-fraction",
        "--isl",
        "--osl",
        "--concurrency",
        "--tp",
        "--dp",
        "--ep",
        "--max-step-tokens",
        "--max-running-requests",
        "--redundant-experts",
        "--cache-hit-rate",
    ];

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("NaN".to_string()),
            Just("inf".to_string()),
            Just("-inf".to_string()),
            Just("0".to_string()),
            Just("-1".to_string()),
            Just("1e-300".to_string()),
            Just("1e300".to_string()),
            Just("4294967295".to_string()),
            Just("18446744073709551615".to_string()),
            (1u32..100_000).prop_map(|v| v.to_string()),
            (0.0f64..2.0).prop_map(|v| format!("{v}")),
        ]
    }

    /// Every number in a JSON output, recursively.
    fn numbers(v: &serde_json::Value, out: &mut Vec<f64>) {
        match v {
            serde_json::Value::Number(n) => out.extend(n.as_f64()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| numbers(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| numbers(x, out)),
            _ => {}
        }
    }

    /// Checks one run: exit 0-2, and at exit 0 a JSON output whose numbers
    /// are finite and not absurd, its latencies (at `keys`) within a day;
    /// returns that output.
    fn sane(args: &[&str], keys: &[&[&str]]) -> Result<Option<serde_json::Value>, TestCaseError> {
        let out = moeplan(args);
        let code = out.status.code();
        prop_assert!(matches!(code, Some(0..=2)), "{args:?}: exit {code:?}");
        if code == Some(0) {
            let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
            let mut all = Vec::new();
            numbers(&json, &mut all);
            prop_assert!(
                all.iter().all(|x| x.is_finite() && x.abs() < 1e25),
                "{args:?}"
            );
            for path in keys {
                let t = path.iter().fold(&json, |v, k| &v[*k]).as_f64();
                // Positive, and below a day: anything else is an artefact.
                prop_assert!(
                    t.is_none_or(|t| t > 0.0 && t < 8.64e7),
                    "{args:?}: {path:?} = {t:?}"
                );
            }
            return Ok(Some(json));
        }
        Ok(None)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn no_plan_flag_value_gives_nonsense(flag in prop::sample::select(PLAN_FLAGS), v in value()) {
            let mut args = plan_args(flag, &v);
            args.push("--json".into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sane(&args, &[&["recommended", "ttft_ms"], &["recommended", "tpot_ms"]])?;
        }

        #[test]
        fn no_flag_value_gives_nonsense(flag in prop::sample::select(FLAGS), v in value()) {
            // The flag under test replaces its default (clap refuses a flag
            // given twice, which would make the case vacuous).
            let defaults = [
                ("--model", "qwen3-30b-a3b"), ("--gpu", "h100"), ("--isl", "1000"),
                ("--osl", "200"), ("--concurrency", "16"),
            ];
            let with = format!("{flag}={v}");
            let mut args = vec!["estimate", "--json", &with];
            for (f, d) in defaults.iter().filter(|(f, _)| f != &flag) {
                args.extend([*f, *d]);
            }
            if let Some(json) = sane(&args, &[&["ttft_ms"], &["tpot_ms"]])? {
                prop_assert!(json["ttft_ms"].is_number() && json["tpot_ms"].is_number(), "{args:?}");
            }
        }
    }
}

/// Issue 14: an NVFP4 KV cache is TensorRT-LLM's alone (on Blackwell);
/// with another engine it was estimated, and `launch` silently dropped it.
/// Now it is bad input naming the engine that stores it, and TensorRT-LLM's
/// launch config carries it.
#[test]
fn an_nvfp4_kv_cache_needs_an_engine_that_stores_it() {
    let with = |command: &str, engine: &str| {
        moeplan(&[
            command,
            "--model",
            "qwen3-30b-a3b",
            "--gpu",
            "b200",
            "--isl",
            "1000",
            "--osl",
            "200",
            "--concurrency",
            "16",
            "--kv-dtype",
            "nvfp4",
            "--engine",
            engine,
            "--json",
        ])
    };
    for engine in ["vllm", "sglang", "neutral"] {
        for command in ["estimate", "launch", "simulate"] {
            let out = with(command, engine);
            let err = unwrapped(&format!("{}{}", stdout(&out), stderr(&out)));
            assert_eq!(
                out.status.code(),
                Some(EXIT_INPUT),
                "{command} {engine}: {err}"
            );
            assert!(
                err.contains("cannot store the KV cache as nvfp4: only TensorRT-LLM does"),
                "{command} {engine}: {err}"
            );
        }
    }
    let out = with("estimate", "trtllm");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = with("launch", "trtllm");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(r#"\"dtype\": \"nvfp4\""#) || stdout(&out).contains("dtype: nvfp4"),
        "{}",
        stdout(&out)
    );
}

/// A GPU spec file is shown by its `name` (issue 13: outputs showed the
/// file stem).
#[test]
fn a_gpu_file_is_shown_by_its_name() {
    let dir = std::env::temp_dir().join(format!("moeplan-gpu-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let card = dir.join("mycard.toml");
    let text = fs::read_to_string(crate_dir().join("../moeplan/catalog/gpus/h20.toml")).unwrap();
    fs::write(
        &card,
        text.replace("name = \"NVIDIA H20\"", "name = \"Our H20 box\""),
    )
    .unwrap();
    let out = moeplan(&[
        "estimate",
        "--model",
        "qwen3-30b-a3b",
        "--gpu",
        card.to_str().unwrap(),
        "--isl",
        "1000",
        "--osl",
        "200",
        "--concurrency",
        "16",
        "--tp",
        "2",
    ]);
    fs::remove_dir_all(&dir).ok();
    assert!(
        stdout(&out).starts_with("qwen3-30b-a3b on 2 × Our H20 box,"),
        "{}",
        stdout(&out)
    );
}

/// File names need not be UTF-8 (issue 14: the argument parser refused
/// them): a plan under a Latin-1 name audits.
#[cfg(unix)]
#[test]
fn a_file_name_that_is_not_utf8_is_read() {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::env::temp_dir().join(format!("moeplan-latin1-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"pl\xe4n.toml");
    let path = dir.join(name);
    fs::copy(
        root().join("examples/audit/mixtral-8x7b-tp2-2xh100.toml"),
        &path,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_moeplan"))
        .arg("audit")
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    fs::remove_dir_all(&dir).ok();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS"));
}

/// `--model` and `--gpu` take any file name the system allows (issue 14):
/// a model config and a GPU spec under Latin-1 names estimate as their
/// catalog twins do, and `model` reads the config alike.
#[cfg(unix)]
#[test]
fn model_and_gpu_flags_take_file_names_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::env::temp_dir().join(format!("moeplan-latin1-flags-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let model = dir.join(std::ffi::OsStr::from_bytes(b"mod\xe8le.json"));
    let gpu = dir.join(std::ffi::OsStr::from_bytes(b"c\xe4rd.toml"));
    let catalog = crate_dir().join("../moeplan/catalog");
    fs::copy(catalog.join("models/mixtral-8x7b.json"), &model).unwrap();
    fs::copy(catalog.join("gpus/h100-sxm.toml"), &gpu).unwrap();
    let run = |model: &std::ffi::OsStr, gpu: &std::ffi::OsStr| {
        Command::new(env!("CARGO_BIN_EXE_moeplan"))
            .args([
                "estimate",
                "--tp",
                "2",
                "--isl",
                "1000",
                "--osl",
                "100",
                "--concurrency",
                "8",
                "--json",
            ])
            .arg("--model")
            .arg(model)
            .arg("--gpu")
            .arg(gpu)
            .env("NO_COLOR", "1")
            .output()
            .expect("runs")
    };
    let from_files = run(model.as_os_str(), gpu.as_os_str());
    let from_catalog = run("mixtral-8x7b".as_ref(), "h100-sxm".as_ref());
    let report = Command::new(env!("CARGO_BIN_EXE_moeplan"))
        .arg("model")
        .arg(&model)
        .output()
        .expect("runs");
    fs::remove_dir_all(&dir).ok();
    for o in [&from_files, &from_catalog, &report] {
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let tpot = |o: &Output| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["tpot_ms"].as_f64().expect("a TPOT")
    };
    assert_eq!(tpot(&from_files), tpot(&from_catalog));
}

/// A scenario can state its engine's version (issue 9): a version other
/// than the one the kernels were measured on is said as an assumption; the
/// measured one says nothing; a version without an engine is bad input.
#[test]
fn a_stated_engine_version_is_compared_with_the_measured_one() {
    let dir = std::env::temp_dir().join(format!("moeplan-version-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, hardware: &str| {
        let p = dir.join(name);
        fs::write(
            &p,
            format!("name = \"v\"\n[model]\ncatalog = \"qwen3-30b-a3b\"\n[hardware]\ngpu = \"h100-sxm\"\ngpus = 8\n{hardware}\n[workload]\nisl = 1000\nosl = 200\n"),
        )
        .unwrap();
        p.to_str().unwrap().to_string()
    };
    let other = write(
        "other.toml",
        "engine = \"vllm\"\nengine_version = \"0.99.0\"",
    );
    let out = moeplan(&["plan", &other]);
    assert!(
        stdout(&out).contains("vllm 0.99.0 stated; the kernels are those measured on vllm"),
        "{}",
        stdout(&out)
    );
    let none = write("none.toml", "engine_version = \"0.99.0\"");
    let out = moeplan(&["plan", &none]);
    assert_eq!(out.status.code(), Some(EXIT_INPUT));
    assert!(
        unwrapped(&stderr(&out)).contains("a version of which engine?"),
        "{}",
        stderr(&out)
    );
    fs::remove_dir_all(&dir).ok();
}

/// `estimate PLAN` estimates one replica at the mean lengths; the review
/// found it printing TTFT 278 ms for a plan that `plan` and `audit` judge at
/// 480 ms with no word why. It now says what it covers: seed 000 is 5
/// replicas over prompts of 128-10240 tokens (mean 5184) and outputs of
/// 1024.
#[test]
fn estimate_of_a_plan_says_what_it_covers() {
    let o = moeplan_at_root(&["estimate", "examples/seeds/000-original.toml"]);
    let out = stdout(&o);
    assert!(out.contains("one of its 5 replicas"), "{out}");
    assert!(
        out.contains("at the mean of its lengths (5184 + 1024 tokens)"),
        "{out}"
    );
    assert!(out.contains("the longest (10240 + 1024)"), "{out}");
}

/// A command line the argument parser refuses is JSON under `--json`, like
/// every other error of a `--json` command (issue 14: `plan --top 0 --json`
/// printed plain text); without `--json` it stays clap's text. Exit 2 both.
#[test]
fn argument_errors_are_json_under_json() {
    let o = moeplan(&["plan", "--top", "0", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    assert_eq!(v["error"]["kind"], "input");
    assert!(v["error"]["message"].as_str().unwrap().contains("--top"));
    let o = moeplan(&["plan", "--top", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("--top"));
}

/// A layout flag over a plan file changes only what it names (issue 14:
/// `--tp 4` over a dp8 ep8 plan gave tp4 dp8 etp32, the file's ep8 dropped
/// silently): ep 8 stays and etp refolds to 32 / 8 = 4; a flag on the expert
/// split (`--etp 1`) refolds it (ep 32).
#[test]
fn a_layout_flag_over_a_plan_keeps_the_files_other_degrees() {
    let plan = "examples/audit/deepseek-v3-dp8-ep8-8xh200.yaml";
    let out = stdout(&moeplan_at_root(&["estimate", plan, "--tp", "4"]));
    assert!(out.contains("layout tp4 dp8 ep8 etp4"), "{out}");
    let out = stdout(&moeplan_at_root(&[
        "estimate", plan, "--tp", "4", "--etp", "1",
    ]));
    assert!(out.contains("layout tp4 dp8 ep32"), "{out}");
}

/// Several bad files are reported at once, each with its own located
/// problems, in text and in JSON: a user fixing runs files does not learn
/// of the second file's problem only after fixing the first's. Before, the
/// first bad file stopped the command.
#[test]
fn calibrate_and_accuracy_report_every_bad_file_at_once() {
    let dir = std::env::temp_dir().join(format!("moeplan-badfiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let header = "model,gpu,engine,engine_version,weight_dtype,isl,osl,concurrency,tp,pp,dp,ep,etp,ttft_ms,tpot_ms";
    let (a, b) = (dir.join("a.csv"), dir.join("b.csv"));
    let isl = "mixtral-8x7b,h100-sxm,vllm,0.19.0,,many,1000,64,2,1,1,,,180.5,21.3";
    let time = "mixtral-8x7b,h100-sxm,vllm,0.19.0,,1000,1000,64,2,1,1,,,-180.5,21.3";
    std::fs::write(&a, format!("{header}\n{isl}\n")).unwrap();
    std::fs::write(&b, format!("{header}\n{time}\n")).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    for command in ["calibrate", "accuracy"] {
        let o = moeplan(&[command, a, b]);
        let err = unwrapped(&stderr(&o));
        assert_eq!(o.status.code(), Some(EXIT_INPUT), "{err}");
        for expected in [
            "2 problems in 2 files",
            "a.csv:2:",
            "`many`",
            "b.csv:2:",
            "-180.5",
        ] {
            assert!(
                err.contains(expected),
                "{command}: `{expected}` missing from\n{err}"
            );
        }
        let o = moeplan(&[command, a, b, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("a.csv:2:") && message.contains("b.csv:2:"),
            "{v}"
        );
        assert_eq!(v["error"]["help"].as_array().map(Vec::len), Some(2), "{v}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A step's bottleneck is the largest of its four times, fixed costs
/// included (issue 14: a step at a sliver of the peak was labelled by the
/// largest of compute, memory and communication alone). One seed request
/// decoding: about 0.9 ms of launch and synchronisation against 0.16 ms of
/// HBM traffic, so overhead-bound; 128 requests read 128 KV caches and are
/// memory-bound.
#[test]
fn a_bottleneck_is_the_largest_of_the_four_times() {
    for (concurrency, expected) in [("1", "overhead"), ("128", "memory")] {
        let out = moeplan(&[
            "estimate",
            "--model",
            "seed-moe",
            "--gpu",
            "seed-gpu",
            "--isl",
            "128",
            "--osl",
            "1024",
            "--concurrency",
            concurrency,
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let d = &v["decode"];
        let times = d["by_bound"].as_object().unwrap();
        let largest = times
            .iter()
            .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
            .map(|(k, _)| k.as_str());
        assert_eq!(d["bottleneck"], expected, "{times:?}");
        assert_eq!(largest, Some(expected), "{times:?}");
    }
}

/// `estimate` of `model` on `gpu` × `engine` at tp `tp`: 1024 + 256 tokens,
/// 16 in flight.
fn stack_estimate(model: &str, gpu: &str, engine: &str, tp: &str) -> Vec<String> {
    [
        "estimate",
        "--model",
        model,
        "--gpu",
        gpu,
        "--engine",
        engine,
        "--tp",
        tp,
        "--isl",
        "1024",
        "--osl",
        "256",
        "--concurrency",
        "16",
    ]
    .map(String::from)
    .to_vec()
}

/// Three runs of `model` on `gpu` × `engine` at tp `tp`, 10% slower than
/// its `stack_estimate`: a runs file `calibrate` fits.
fn slower_runs(dir: &Path, model: &str, gpu: &str, engine: &str, tp: &str) -> PathBuf {
    let mut args = stack_estimate(model, gpu, engine, tp);
    args.push("--json".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let j: serde_json::Value = serde_json::from_str(&stdout(&moeplan(&args))).unwrap();
    let (ttft, tpot) = (
        j["ttft_ms"].as_f64().unwrap(),
        j["tpot_ms"].as_f64().unwrap(),
    );
    let mut text =
        "model,gpu,engine,engine_version,weight_dtype,isl,osl,concurrency,tp,pp,dp,ep,etp,ttft_ms,tpot_ms\n".to_string();
    for c in [8, 16, 32] {
        text += &format!(
            "{model},{gpu},{engine},,,1024,256,{c},{tp},1,1,1,{tp},{},{}\n",
            ttft * 1.1,
            tpot * 1.1
        );
    }
    let csv = dir.join(format!("{}-{gpu}-{engine}.csv", model.replace('/', "_")));
    std::fs::write(&csv, text).unwrap();
    csv
}

/// `calibrate runs --base base --out out`, succeeding; the profile written.
fn recalibrated(runs: &Path, base: &Path, out: &Path) -> String {
    calibrate_ok(&[
        runs.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    std::fs::read_to_string(out).unwrap()
}

/// A profile fitted to one model's runs serves that model; another model
/// with a built-in stack of its own on the same GPU × engine keeps it (a
/// MiniMax-M2.5 calibration on B200 × vLLM took gpt-oss-120b's TPOT error
/// there from 5% to 35%), and says why. `--base` keeps the stacks the new
/// runs do not refit (a one-run recalibration of one stack dropped every
/// other stack of the earlier profile).
#[test]
fn a_profile_serves_the_models_it_was_fitted_to_and_base_keeps_the_rest() {
    use moeplan::profile::{stack_table, ServingMode};
    use moeplan::serving::Client;
    let fixed: Vec<_> = stack_table()
        .stack
        .iter()
        .filter(|s| s.mode == ServingMode::Aggregated && s.client == Client::Fixed)
        .collect();
    let (a, b) = fixed
        .iter()
        .find_map(|a| {
            fixed
                .iter()
                .find(|b| b.gpu == a.gpu && b.engine == a.engine && b.model != a.model)
                .map(|b| (*a, *b))
        })
        .expect("two models with built-in stacks on one GPU × engine");
    let tp = moeplan::catalog::gpu(&a.gpu)
        .unwrap()
        .unwrap()
        .gpus_per_node
        .to_string();
    let dir = std::env::temp_dir().join(format!("moeplan-cover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = slower_runs(&dir, &a.model, &a.gpu, a.engine.name(), &tp);
    let profile = dir.join("a.toml");
    calibrate_out(&csv, &profile);
    let p = profile.to_str().unwrap();
    // The fit starts from the model's own stack, so its "before" is what
    // moeplan predicted: the runs are the c16 estimate × 1.1, and the c16
    // run (line 3) was predicted at measured / 1.1 (it was the engine's
    // layer, not what any command printed).
    let explained: serde_json::Value = serde_json::from_str(&stdout(&moeplan(&[
        "calibrate",
        csv.to_str().unwrap(),
        "--explain",
        "--json",
    ])))
    .unwrap();
    let c16 = &explained["runs"][1];
    assert!(c16["run"].as_str().unwrap().ends_with(":3"), "{c16}");
    for i in 0..2 {
        let (before, measured) = (
            c16["before"][i].as_f64().unwrap(),
            c16["measured"][i].as_f64().unwrap(),
        );
        assert!((before * 1.1 / measured - 1.0).abs() < 1e-6, "{c16}");
    }
    assert!(std::fs::read_to_string(&profile)
        .unwrap()
        .contains("with the built-in stack of"));
    let estimate = |model: &str| {
        let mut args = vec!["--profile".to_string(), p.to_string()];
        args.extend(stack_estimate(model, &a.gpu, a.engine.name(), &tp));
        let o = moeplan(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        unwrapped(&stdout(&o))
    };
    let own = estimate(&a.model);
    assert!(
        own.contains("a.toml") && !own.contains("built-in stacks"),
        "{own}"
    );
    let other = estimate(&b.model);
    assert!(other.contains("built-in stacks"), "{other}");
    assert!(
        other.contains(&format!("fitted to runs of {}, not {}", a.model, b.model)),
        "{other}"
    );
    // Recalibrating another GPU × engine from this profile keeps its stack.
    let c = fixed
        .iter()
        .find(|c| c.gpu != a.gpu || c.engine != a.engine)
        .expect("a stack on another GPU × engine");
    let tp_c = moeplan::catalog::gpu(&c.gpu)
        .unwrap()
        .unwrap()
        .gpus_per_node
        .to_string();
    let more = slower_runs(&dir, &c.model, &c.gpu, c.engine.name(), &tp_c);
    let text = recalibrated(&more, &profile, &dir.join("both.toml"));
    assert_eq!(text.matches("[[stack]]").count(), 2, "{text}");
    assert!(text.contains(&format!("gpu = \"{}\"", a.gpu)), "{text}");
    // Recalibrating the same stack with the other model's runs: the fit,
    // refitted from the first, serves both models.
    let other = slower_runs(&dir, &b.model, &a.gpu, a.engine.name(), &tp);
    let text = recalibrated(&other, &profile, &dir.join("merged.toml"));
    std::fs::remove_dir_all(&dir).ok();
    let mut models = [a.model.as_str(), b.model.as_str()];
    models.sort_unstable();
    assert!(
        text.contains(&format!("models = [\"{}\", \"{}\"]", models[0], models[1])),
        "{text}"
    );
}

/// How a profile in use meets a command that cannot use it: `estimate` of
/// a GPU × engine it has no layer for says so among its warnings (text and
/// JSON), `calibrate` says it fits from the built-in layer or `--base`
/// (the profile was silently ignored), an empty `MOEPLAN_PROFILE` is no
/// profile (it was a file with no name), and a calibration whose every run
/// contradicts the physics writes nothing and exits 1 (it wrote an empty
/// profile and exited 0).
#[test]
fn a_profile_that_cannot_apply_is_said() {
    let dir = std::env::temp_dir().join(format!("moeplan-unused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let profile = crate_dir().join("../moeplan/tests/fixtures/profiles/held.toml");
    let p = profile.to_str().unwrap();
    let owned = stack_estimate("qwen3-30b-a3b", "h200-sxm", "vllm", "1");
    let h200: Vec<&str> = owned.iter().map(String::as_str).collect();
    let o = moeplan(&[&["--profile", p][..], &h200[..]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("not used: it has no aggregated fit of h200-sxm × vllm"),
        "{}",
        stdout(&o)
    );
    let j = moeplan(&[&["--profile", p][..], &h200[..], &["--json"][..]].concat());
    let v: serde_json::Value = serde_json::from_str(&stdout(&j)).unwrap();
    assert!(v["warnings"].to_string().contains("not used"), "{v}");
    let empty = command(crate_dir(), &h200)
        .env("MOEPLAN_PROFILE", "")
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(0), "{}", stderr(&empty));
    // Every run faster than its weights can be read.
    let csv = dir.join("fast.csv");
    std::fs::write(
        &csv,
        "model,gpu,engine,engine_version,weight_dtype,isl,osl,concurrency,tp,pp,dp,ep,etp,ttft_ms,tpot_ms\n\
         qwen3-30b-a3b,h100-sxm,vllm,,,1000,100,8,1,1,1,,,150,0.1\n\
         qwen3-30b-a3b,h100-sxm,vllm,,,1000,100,16,1,1,1,,,180,0.1\n",
    )
    .unwrap();
    let out = dir.join("fast.toml");
    let o = moeplan(&[
        "--profile",
        p,
        "calibrate",
        csv.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let written = out.exists();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!written);
    let said = stderr(&o);
    assert!(
        said.contains("calibrate fits from the built-in serving layer"),
        "{said}"
    );
    assert!(
        said.contains("nothing fitted: every run contradicts the physics"),
        "{said}"
    );
}

//! `moeplan plan` end to end: exit codes, and snapshots of the table, the
//! JSON and the Markdown report for the seed scenario and a real model.
use super::{moeplan_at_root as moeplan, stdout};

#[test]
fn seed_scenario_explains_why_nothing_meets_the_seeds_requirements() {
    let out = moeplan(&["plan"]);
    // The seeds ask for 100 tokens/ms per GPU, above the KV-read ceiling:
    // a recommendation that says what it misses and the binding constraint
    // (exit 0; exit 1 with --require-slo).
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(moeplan(&["plan", "--require-slo"]).status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("the binding constraint is throughput_per_gpu"),
        "{text}"
    );
    insta::assert_snapshot!("plan-seed-table", text);
}

#[test]
fn seed_scenario_json_has_the_stable_keys() {
    let out = moeplan(&["plan", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["recommended", "candidates", "rejected", "scenario"] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    let c = &v["candidates"][0];
    for k in [
        "mode",
        "pools",
        "gpus",
        "ttft_ms",
        "tpot_ms",
        "output_tokens_per_s_per_gpu",
        "estimate",
    ] {
        assert!(c.get(k).is_some(), "candidate lacks {k}");
    }
    for k in ["pp", "tp", "cp", "dp", "ep", "etp", "workers", "gpus"] {
        assert!(c["pools"][0].get(k).is_some(), "pool lacks {k}");
    }
    insta::assert_snapshot!("plan-seed-json", serde_json::to_string_pretty(&v).unwrap());
}

#[test]
fn mixtral_plan_meets_its_levels_and_writes_a_report_and_plot() {
    let dir = std::env::temp_dir().join(format!("moeplan-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("plan.md");
    let svg = dir.join("pareto.svg");
    let out = moeplan(&[
        "plan",
        "examples/mixtral-2xh100.yaml",
        "--report",
        report.to_str().unwrap(),
        "--pareto",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    insta::assert_snapshot!("plan-mixtral-table", stdout(&out));
    let md = std::fs::read_to_string(&report).unwrap();
    for section in [
        "## Model analysis",
        "## Hardware",
        "## Requirements",
        "## Chosen strategy",
        "## GPU allocation by role",
        "## Memory per GPU",
        "## Performance",
        "## Validation checklist",
        "## Risks",
    ] {
        assert!(md.contains(section), "report lacks {section}");
    }
    insta::assert_snapshot!("plan-mixtral-report", md);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("recommended"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_flags_are_input_errors() {
    let out = moeplan(&["plan", "--objective", "fewest-gpus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("request rate"));
    let out = moeplan(&["plan", "examples/does-not-exist.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Issue 14: `plan`'s numeric flags have upper bounds (`moeplan::bounds`);
/// beyond them the answer was a confident nonsense figure (TTFT 9.3e16 s at
/// `--concurrency 2^64 - 1`, 2e18 GPUs at `--request-rate 1e300`), now it
/// is bad input naming the bound.
#[test]
fn plan_flags_beyond_their_bounds_are_input_errors() {
    for (flag, value, bound) in [
        ("--concurrency", "18446744073709551615", "[1, 1048576]"),
        ("--request-rate", "1e300", "[0.000001, 1000000]"),
        ("--ttft-ms", "1e300", "[1 µs, 86400 s]"),
        ("--tpot-ms", "1e300", "[1 µs, 86400 s]"),
        ("--ttft-p99-ms", "0", "[1 µs, 86400 s]"),
        ("--gpus-per-node", "100000000", "[1, 1024]"),
        ("--gpus", "4294967295", "[1, 10000000]"),
        ("--isl", "18446744073709551615", "[1, 16777216]"),
    ] {
        let args = super::plan_args(flag, value);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = moeplan(&args);
        let err = String::from_utf8_lossy(&out.stderr).replace('\n', " ");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(bound), "{args:?}: {err}");
    }
}

/// Flags alone describe a whole scenario: none of the seed documents'
/// requirements or efficiency assumptions carries over to another model.
#[test]
fn flags_alone_make_a_scenario_without_the_seed_requirements() {
    let out = moeplan(&[
        "plan",
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "h100-sxm",
        "--isl",
        "1000",
        "--osl",
        "100",
        "--tpot-ms",
        "30",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sc = &v["scenario"];
    assert_eq!(sc["model"], "llama-3.1-8b");
    assert!(sc["mfu"].is_null() && sc["bandwidth_utilization"].is_null());
    assert!(
        sc["slo"]["min_throughput_per_gpu"].is_null() && sc["slo"]["max_load_imbalance"].is_null()
    );
    assert_eq!(sc["gpus_available"], 8);
    // A missing required flag is bad input.
    let out = moeplan(&["plan", "--model", "llama-3.1-8b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--gpu, --isl, --osl"));
}

/// The planner says what a plan file's `workload.concurrency` is for its
/// recommendation (issue 9: one meaning of a plan's workload): for the seed's
/// disaggregated pick, 7 decode workers × 1024 requests each = 7168 on the
/// whole deployment, in the JSON and in the report.
#[test]
fn a_disaggregated_recommendation_states_its_plan_concurrency() {
    let dir = std::env::temp_dir().join(format!("moeplan-plan-conc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("r.md");
    let report_s = report.to_string_lossy().to_string();
    let out = moeplan(&[
        "plan",
        "examples/seed.toml",
        "--mode",
        "disaggregated",
        "--json",
        "--report",
        &report_s,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rec = &v["candidates"][0];
    let decode = &rec["pools"][1];
    let whole = decode["workers"].as_u64().unwrap() * decode["concurrency"].as_u64().unwrap();
    assert_eq!(rec["plan_concurrency"].as_u64(), Some(whole));
    let md = std::fs::read_to_string(&report).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        md.contains(&format!(
            "`workload.concurrency = {whole}` (requests in flight on the whole deployment"
        )),
        "{md}"
    );
}

/// A scenario of Mixtral-8x7B on two H100s, with `levers` (extra keys,
/// `section.key = value`) written into their sections; the file lies in a
/// fresh folder and is named by `tag`.
fn mixtral_scenario(tag: &str, levers: &[(&str, &str)]) -> std::path::PathBuf {
    let mut sections: Vec<(&str, Vec<String>)> = vec![
        ("model", vec!["catalog = \"mixtral-8x7b\"".into()]),
        (
            "hardware",
            vec!["gpu = \"h100-sxm\"".into(), "gpus = 2".into()],
        ),
        ("workload", vec!["isl = 1000".into(), "osl = 1000".into()]),
        (
            "slo",
            vec!["ttft = \"1 s\"".into(), "tpot = \"40 ms\"".into()],
        ),
    ];
    for (key, value) in levers {
        let (section, key) = key.split_once('.').unwrap();
        let s = sections.iter_mut().find(|s| s.0 == section).unwrap();
        s.1.push(format!("{key} = {value}"));
    }
    let mut text = String::from("name = \"mixtral-levers\"\n");
    for (section, lines) in sections {
        text += &format!("[{section}]\n{}\n", lines.join("\n"));
    }
    let dir = std::env::temp_dir().join(format!("moeplan-levers-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The four levers as scenario keys, and as the flags that say the same.
const LEVER_KEYS: [(&str, &str); 4] = [
    ("model.kv_cache_dtype", "\"fp8\""),
    ("model.weight_dtype", "\"fp8\""),
    ("hardware.redundant_experts", "8"),
    ("workload.routing_skew", "0.5"),
];
const LEVER_FLAGS: [&str; 8] = [
    "--kv-dtype",
    "fp8",
    "--weight-dtype",
    "fp8",
    "--redundant-experts",
    "8",
    "--routing-skew",
    "0.5",
];

/// Issue 14: `plan` takes the levers its advice names (they were unknown
/// flags, exit 2), each moving the answer; `--kv-dtype auto` searches the
/// KV cache type and says which each candidate uses.
#[test]
fn plan_pulls_the_levers_its_advice_names() {
    let base = mixtral_scenario("plan-base", &[]);
    let run = |extra: &[&str]| {
        let mut args = vec!["plan", base.to_str().unwrap(), "--json"];
        args.extend(extra);
        let out = moeplan(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{extra:?}: {}",
            super::stderr(&out)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let plain = run(&[]);
    assert!(plain["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c.get("kv_cache_dtype").is_none()));
    for pair in LEVER_FLAGS
        .chunks(2)
        .chain([["--engine", "vllm"].as_slice()])
    {
        assert_ne!(
            run(pair)["candidates"],
            plain["candidates"],
            "{pair:?} moved nothing"
        );
    }
    let auto = run(&["--kv-dtype", "auto"]);
    let kinds: std::collections::BTreeSet<&str> = auto["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["kv_cache_dtype"]
                .as_str()
                .expect("each candidate names its KV type")
        })
        .collect();
    assert!(
        kinds.iter().all(|k| ["bf16", "fp8"].contains(k)),
        "{kinds:?}"
    );
    let text = stdout(&moeplan(&[
        "plan",
        base.to_str().unwrap(),
        "--kv-dtype",
        "auto",
    ]));
    assert!(text.contains(" · KV "), "{text}");
    // Bad values are input errors, as estimate's are.
    for bad in [
        ["--kv-dtype", "int4"].as_slice(),
        &["--weight-dtype", "fp7"],
        &["--routing-skew", "5"],
        &["--redundant-experts", "1000"],
    ] {
        let mut args = vec!["plan", base.to_str().unwrap()];
        args.extend(bad);
        assert_eq!(moeplan(&args).status.code(), Some(2), "{bad:?}");
    }
}

/// Issue 14: a scenario states the levers (`model.kv_cache_dtype`,
/// `model.weight_dtype`, `hardware.redundant_experts`,
/// `workload.routing_skew`), and every command that reads a scenario
/// honours them: the file's keys give what the same flags over the plain
/// file give, and not what the plain file gives.
#[test]
fn every_command_reading_a_scenario_honours_its_levers() {
    let with = mixtral_scenario("keys", &LEVER_KEYS);
    let base = mixtral_scenario("base", &[]);
    let commands: [&[&str]; 5] = [
        &["plan", "--json"],
        &["estimate", "--json"],
        &["dag", "--format", "json"],
        &["simulate", "--requests", "200", "--json"],
        // FP8 weights are not the checkpoint's: launch serves weights named
        // as stored so (without them it refuses, exit 2).
        &[
            "launch",
            "--json",
            "--model-path",
            "neuralmagic/Mixtral-8x7B-Instruct-v0.1-FP8",
        ],
    ];
    for cmd in commands {
        let run = |file: &std::path::Path, flags: &[&str]| {
            let mut args = vec![cmd[0], file.to_str().unwrap()];
            args.extend(&cmd[1..]);
            args.extend(flags);
            let out = moeplan(&args);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{args:?}: {}",
                super::stderr(&out)
            );
            stdout(&out)
        };
        let keys = run(&with, &[]);
        assert_eq!(
            keys,
            run(&base, &LEVER_FLAGS),
            "{cmd:?}: keys and flags differ"
        );
        assert_ne!(keys, run(&base, &[]), "{cmd:?}: the keys moved nothing");
    }
}

/// Issue 14: a prompt + output beyond the model's trained context
/// (Mixtral: 32,768 tokens) is warned by `plan`, `launch` and `simulate`
/// as `estimate` warns it (they were silent, and launch wrote
/// `--max_seq_len 41000` without a word).
#[test]
fn commands_warn_of_a_request_beyond_the_trained_context() {
    let long = [
        "--model",
        "mixtral-8x7b",
        "--gpu",
        "h100-sxm",
        "--isl",
        "40000",
        "--osl",
        "1000",
    ];
    let layout = ["--tp", "2", "--concurrency", "2"];
    let runs: [Vec<&str>; 4] = [
        [&["plan"][..], &long].concat(),
        [&["launch"][..], &long, &layout].concat(),
        [&["simulate"][..], &long, &layout, &["--requests", "20"]].concat(),
        [&["estimate"][..], &long, &layout].concat(),
    ];
    let warning = "(41000) exceeds the 32768 tokens of context mixtral-8x7b was trained for";
    for args in runs {
        let out = moeplan(&args);
        let both = stdout(&out) + &super::stderr(&out);
        assert!(both.contains(warning), "{args:?}: {both}");
    }
    let short = moeplan(&[
        "plan",
        "--model",
        "mixtral-8x7b",
        "--gpu",
        "h100-sxm",
        "--isl",
        "4000",
        "--osl",
        "1000",
    ]);
    assert!(!super::stderr(&short).contains("trained for"));
}

/// The analysis of why no layout fits is an answer too (issue 14: `plan`
/// exits 0 when it produced a recommendation or an infeasibility analysis);
/// `--require-slo` makes it exit 1 for CI. DeepSeek-V3's 671B parameters do
/// not fit two 24 GB L4s in any layout.
#[test]
fn an_infeasibility_analysis_exits_0_unless_required() {
    let args = [
        "plan",
        "--model",
        "deepseek-v3",
        "--gpu",
        "l4",
        "--gpus",
        "2",
        "--isl",
        "1000",
        "--osl",
        "100",
    ];
    let out = moeplan(&args);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("No layout fits"), "{}", stdout(&out));
    let mut strict = args.to_vec();
    strict.push("--require-slo");
    assert_eq!(moeplan(&strict).status.code(), Some(1));
}

/// Any budget up to 10^7 GPUs is answered, and with the same search as
/// 65,536 (issue 14: the budget was capped at 65,536, and disaggregated
/// pairs scanned every decode worker count up to the budget, 11.9 s at
/// 10^7): the same layouts and estimates, a recommendation within the
/// budget; one GPU more is refused naming the bound.
#[test]
fn a_budget_of_ten_million_gpus_is_searched_as_65536_are() {
    let run = |gpus: &str| {
        let out = moeplan(&["plan", "--gpus", gpus, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{gpus}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["rejected"].clone(), v["recommended"]["gpus"].as_u64())
    };
    let (small, _) = run("65536");
    let (large, gpus) = run("10000000");
    assert_eq!(small, large);
    assert!(
        gpus.is_some_and(|g| g > 65_536 && g <= 10_000_000),
        "{gpus:?}"
    );
    let out = moeplan(&["plan", "--gpus", "10000001"]);
    assert_eq!(out.status.code(), Some(2));
}

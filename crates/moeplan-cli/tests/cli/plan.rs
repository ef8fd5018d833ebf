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
        ("--gpus", "4294967295", "[1, 65536]"),
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

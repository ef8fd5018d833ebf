//! `moeplan simulate` end to end: the three trace formats, invalid traces
//! (data-first, `tests/fixtures/traces/invalid/`), exit codes, the timeline.

use super::{crate_dir, moeplan, stderr, stdout, unwrapped};
use serde_json::Value;

const DEPLOYMENT: [&str; 12] = [
    "simulate",
    "--model",
    "qwen3-30b-a3b",
    "--gpu",
    "h100",
    "--tp",
    "2",
    "--ep",
    "2",
    "--engine",
    "vllm",
    "--json",
];

fn traces() -> std::path::PathBuf {
    crate_dir().join("tests/fixtures/traces")
}

fn run(extra: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<&str> = DEPLOYMENT.iter().chain(extra).copied().collect();
    let o = moeplan(&args);
    (o.status.code(), stdout(&o), stderr(&o))
}

/// The same 200 requests written in the three trace formats simulate alike
/// (the Mooncake file keeps whole milliseconds, the others more). The
/// Mooncake file also names each prompt's 512-token blocks (`hash_ids`), the
/// first block shared by every prompt longer than one block: those prefill
/// that block once per replica, so its prompts cost less (TTFT below the
/// others'), and the hit rate, 512 tokens of each such prompt, is reported;
/// the formats without block ids report none.
#[test]
fn the_three_trace_formats_read_the_same_requests() {
    let mut ttft = Vec::new();
    for f in ["native.csv", "azure.csv", "mooncake.jsonl"] {
        let path = traces().join(f);
        let (code, out, err) = run(&["--trace", path.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{f}: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["requests"].as_u64(), Some(200), "{f}");
        ttft.push(v["ttft_ms"]["mean"].as_f64().unwrap());
        let hit = v["prefix_cache_hit_rate"].as_f64();
        match f {
            "mooncake.jsonl" => assert!(hit.is_some_and(|h| h > 0.0 && h < 1.0), "{hit:?}"),
            _ => assert_eq!(hit, None, "{f}"),
        }
    }
    assert!((ttft[1] / ttft[0] - 1.0).abs() < 0.02, "{ttft:?}");
    assert!(ttft[2] < ttft[0], "{ttft:?}");
}

/// Every invalid trace is bad input (exit 2) with a located diagnostic.
#[test]
fn every_invalid_trace_gives_exit_2_and_a_location() {
    let dir = traces().join("invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    for path in files {
        let o = moeplan(&[
            "simulate",
            "--model",
            "qwen3-30b-a3b",
            "--gpu",
            "h100",
            "--tp",
            "2",
            "--engine",
            "vllm",
            "--trace",
            path.to_str().unwrap(),
        ]);
        let err = unwrapped(&stderr(&o));
        assert_eq!(o.status.code(), Some(2), "{}: {err}", path.display());
        assert!(err.contains("line "), "{}: {err}", path.display());
    }
}

/// Rates of 0 or infinity, a bad length distribution, aggregated degrees
/// mixed with pool flags: bad input (exit 2), each with its reason.
#[test]
fn bad_traffic_flags_are_refused() {
    for (extra, says) in [
        (vec!["--rate", "0"], "the range of a request rate"),
        (vec!["--rate", "inf"], "the range of a request rate"),
        (vec!["--rate", "1e300"], "[0.000001, 1000000]"),
        (
            vec!["--rate", "5", "--ttft-slo=-1"],
            "the range of a latency limit",
        ),
        (
            vec!["--rate", "5", "--isl-dist", "uniform:9-1"],
            "MIN <= MAX",
        ),
        (
            vec!["--rate", "5", "--arrivals", "gamma", "--cv", "0"],
            "coefficient of variation",
        ),
        (vec!["--rate", "5", "--duration=-3"], "not a duration"),
        // A warm-up as long as the run left every figure 0 (exit 0); a
        // trillion requests ran for ever.
        (
            vec!["--rate", "5", "--requests", "100", "--warmup", "100"],
            "leaves none of the 100 requests",
        ),
        (
            vec!["--rate", "5", "--requests", "1000000000000"],
            "the range of requests to simulate",
        ),
    ] {
        let mut args = extra.clone();
        args.extend(["--isl", "2000", "--osl", "500"]);
        let (code, out, _) = run(&args);
        assert_eq!(code, Some(2), "{extra:?}: {out}");
        assert!(out.contains(says), "{extra:?}: {out}");
    }
    let o = moeplan(&[
        "simulate",
        "--model",
        "deepseek-v3",
        "--gpu",
        "h200",
        "--isl",
        "2000",
        "--osl",
        "500",
        "--concurrency",
        "64",
        "--tp",
        "8",
        "--prefill-dp",
        "8",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        unwrapped(&stderr(&o)).contains("--prefill-* and --decode-*"),
        "{}",
        stderr(&o)
    );
}

/// Traffic beyond the deployment stops early: exit 1, with the rate it sustained.
#[test]
fn an_overload_exits_1_with_the_sustainable_rate() {
    let (code, out, err) = run(&[
        "--isl",
        "2000",
        "--osl",
        "500",
        "--rate",
        "500",
        "--requests",
        "100000",
    ]);
    assert_eq!(code, Some(1), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let rate = v["stopped"]["sustainable_requests_per_s"].as_f64().unwrap();
    assert!(rate > 0.0 && rate < 500.0, "{rate}");
}

/// A closed loop (no --rate, no --trace) of --concurrency clients, gamma
/// arrivals, lognormal lengths, and --timeline writes an SVG.
#[test]
fn closed_loop_bursty_traffic_and_a_timeline() {
    let svg = std::env::temp_dir().join(format!("moeplan-timeline-{}.svg", std::process::id()));
    let (code, out, err) = run(&[
        "--isl",
        "2000",
        "--osl",
        "500",
        "--concurrency",
        "32",
        "--requests",
        "256",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["requests"].as_u64(), Some(256));
    let (code, _, err) = run(&[
        "--isl",
        "2000",
        "--osl",
        "500",
        "--rate",
        "4",
        "--arrivals",
        "gamma",
        "--cv",
        "3",
        "--isl-dist",
        "lognormal:0.8",
        "--requests",
        "500",
        "--timeline",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let _ = std::fs::remove_file(svg);
}

/// Percentile levels need a request rate (exit 2); with one, the plan's
/// JSON carries the simulated check.
#[test]
fn plan_judges_percentile_levels_at_a_rate() {
    let base = [
        "plan",
        "--model",
        "qwen3-30b-a3b",
        "--gpu",
        "h100",
        "--gpus",
        "16",
        "--isl",
        "2000",
        "--osl",
        "500",
        "--ttft-p99-ms",
        "1000",
        "--json",
    ];
    let o = moeplan(&base);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains("request rate"), "{}", stdout(&o));
    let mut args = base.to_vec();
    args.extend(["--request-rate", "10"]);
    let o = moeplan(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let p = &v["percentiles"];
    assert_eq!(p["rate"].as_f64(), Some(10.0));
    assert!(!p["checked"].as_array().unwrap().is_empty());
}

/// A scenario's own percentile levels (`slo.ttft_p99`, ...) are judged at its
/// request rate without flags.
#[test]
fn a_scenario_states_its_percentile_levels() {
    let path = super::root().join("examples/qwen3-30b-p99-at-40rps.toml");
    let o = moeplan(&["plan", path.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let levels = v["percentiles"]["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2, "{levels:?}");
    assert_eq!(v["percentiles"]["rate"].as_f64(), Some(40.0));
}

/// A scenario whose percentile level is not a time is bad input, located
/// (fixtures in `tests/fixtures/scenarios/invalid/`, each read by `plan`).
#[test]
fn invalid_percentile_levels_are_located() {
    let dir = crate_dir().join("tests/fixtures/scenarios/invalid");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let o = moeplan(&["plan", path.to_str().unwrap()]);
        let err = unwrapped(&stderr(&o));
        assert_eq!(o.status.code(), Some(2), "{}: {err}", path.display());
        assert!(
            err.contains("slo.ttft_p99") && err.contains(":13:1"),
            "{}: {err}",
            path.display()
        );
    }
}

/// `simulate FILE` takes the file's request rate (Poisson) and length ranges
/// (uniform) unless the flags say otherwise, and its best aggregated layout.
#[test]
fn a_scenario_file_gives_its_rate_and_length_ranges() {
    let path = super::root().join("examples/qwen3-30b-p99-at-40rps.toml");
    let o = moeplan(&[
        "simulate",
        path.to_str().unwrap(),
        "--requests",
        "500",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let traffic = v["traffic"].as_str().unwrap();
    assert!(
        traffic.contains("40 requests/s") && traffic.contains("uniform 500-3500"),
        "{traffic}"
    );
    assert_eq!(v["levels"]["ttft"].as_f64(), Some(1.0));
}

/// `--warmup N` leaves the first N requests out of the latency figures but
/// runs them: a closed loop of 16 clients starts with every prompt queued
/// at once, so leaving out that first round lowers the mean TTFT, while
/// every request still completes.
#[test]
fn warmup_leaves_the_first_round_out_of_the_figures() {
    let base = [
        "--concurrency",
        "16",
        "--isl",
        "2000",
        "--osl",
        "200",
        "--requests",
        "64",
    ];
    let mut ttft = Vec::new();
    for warmup in ["0", "16"] {
        let args: Vec<&str> = base.iter().copied().chain(["--warmup", warmup]).collect();
        let (code, out, err) = run(&args);
        assert_eq!(code, Some(0), "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["requests"].as_u64(), Some(64));
        ttft.push(v["ttft_ms"]["mean"].as_f64().unwrap());
    }
    assert!(ttft[1] < ttft[0], "{ttft:?}");
}

/// `--progress` draws the bar on stderr even into a pipe, and stdout stays
/// the JSON alone; without it, a pipe gets no bar.
#[test]
fn progress_goes_to_stderr_only() {
    let base = [
        "--concurrency",
        "8",
        "--isl",
        "500",
        "--osl",
        "50",
        "--requests",
        "64",
    ];
    for (flag, drawn) in [(Some("--progress"), true), (None, false)] {
        let args: Vec<&str> = base.iter().copied().chain(flag).collect();
        let (code, out, err) = run(&args);
        assert_eq!(code, Some(0), "{err}");
        let v: Value = serde_json::from_str(&out).expect("stdout is the JSON alone");
        assert_eq!(v["requests"].as_u64(), Some(64));
        assert_eq!(err.contains("requests ["), drawn, "{flag:?}: {err}");
    }
}

/// Left fixed, the lengths are the benchmark client's: InferenceMAX's
/// client draws them in [0.8, 1] × --isl/--osl (800-1000 and 160-200
/// here), the fixed client sends exactly 1000 and 200; an explicit
/// distribution still wins.
#[test]
fn the_client_draws_the_lengths_left_fixed() {
    let traffic = |extra: &[&str]| {
        let args = [
            &[
                "simulate",
                "--model",
                "qwen3-30b-a3b",
                "--gpu",
                "h100-sxm",
                "--tp",
                "2",
                "--engine",
                "sglang",
                "--isl",
                "1000",
                "--osl",
                "200",
                "--concurrency",
                "16",
                "--requests",
                "64",
                "--json",
            ][..],
            extra,
        ]
        .concat();
        let o = moeplan(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["traffic"].as_str().unwrap().to_string()
    };
    let drawn = traffic(&["--client", "inferencemax"]);
    assert!(
        drawn.contains("prompts uniform 800-1000") && drawn.contains("outputs uniform 160-200"),
        "{drawn}"
    );
    let fixed = traffic(&[]);
    assert!(fixed.contains("prompts 1000 tokens"), "{fixed}");
    let stated = traffic(&["--client", "inferencemax", "--isl-dist", "uniform:500-1500"]);
    assert!(stated.contains("prompts uniform 500-1500"), "{stated}");
}

//! `moeplan dag` end to end: exit codes, where each format goes, the
//! scenario input, and the message when Graphviz is missing.
use super::{command, moeplan_at_root as moeplan, root};
use std::process::Output;

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

const SEED: &[&str] = &[
    "dag",
    "--model",
    "seed-moe",
    "--gpu",
    "seed-gpu",
    "--isl",
    "1024",
    "--osl",
    "256",
    "--concurrency",
    "64",
    "--pp",
    "2",
    "--tp",
    "2",
    "--ep",
    "2",
];

fn seed_with(extra: &[&str]) -> Output {
    let mut a = SEED.to_vec();
    a.extend_from_slice(extra);
    moeplan(&a)
}

#[test]
fn check_passes_and_prints_the_summary() {
    let out = seed_with(&["--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("check             ok (0 errors"), "{s}");
    assert!(s.contains("critical path"), "{s}");
    assert!(s.contains("busiest GPU"), "{s}");
}

#[test]
fn json_goes_to_stdout_and_the_summary_to_stderr() {
    let out = seed_with(&["--format", "json", "--phase", "decode", "--expand"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "moeplan-dag/1");
    for k in ["nodes", "edges", "devices", "groups", "phases", "check"] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["check"]["ok"], true);
    assert!(text(&out.stderr).contains("critical path"));
}

#[test]
fn dot_and_mermaid() {
    let out = seed_with(&["--format", "dot", "--granularity", "layer"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("digraph moeplan {"));
    let out = seed_with(&["--format", "mermaid", "--all-layers"]);
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    assert!(
        s.contains("flowchart TD") && s.contains("L15 norms_residual"),
        "{s}"
    );
}

#[test]
fn svg_without_graphviz_says_how_to_get_it() {
    let dir = std::env::temp_dir().join("moeplan-dag-no-graphviz");
    let _ = std::fs::create_dir_all(&dir);
    let svg = dir.join("out.svg");
    let mut a = SEED.to_vec();
    let svg_s = svg.to_string_lossy().to_string();
    a.extend_from_slice(&["--svg", &svg_s]);
    let out = command(&root(), &a)
        .env("PATH", dir.to_string_lossy().as_ref())
        .output()
        .expect("the binary runs");
    // The input was fine: not bad input (2) but an output not produced (1).
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("Graphviz") && e.contains("apt-get install graphviz"),
        "{e}"
    );
}

#[test]
fn missing_flags_and_invalid_layouts_are_bad_input() {
    let out = moeplan(&["dag", "--model", "seed-moe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--gpu, --isl, --osl, --concurrency"));
    let out = seed_with(&["--etp", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("expert_width_etp"));
}

#[test]
fn scenario_draws_the_recommendation() {
    let out = moeplan(&[
        "dag",
        "--scenario",
        "examples/seed.toml",
        "--granularity",
        "layer",
        "--check",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.starts_with("from the planner's recommendation for seed"),
        "{s}"
    );
}

#[test]
fn plan_files_draw_their_layout_or_are_rejected() {
    // A correct plan (the audit's format) draws one replica of its layout.
    let out = moeplan(&[
        "dag",
        "--plan",
        "examples/audit/deepseek-v3-dp8-ep8-8xh200.yaml",
        "--check",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("from the plan")
            && s.contains("layout dp8 ep8")
            && s.contains("check             ok"),
        "{s}"
    );
    // Seed 001's layout (tp2 with ep4) cannot fold onto its GPUs: no valid
    // graph exists, which is an input error naming the rule.
    let out = moeplan(&["dag", "--plan", "examples/seeds/001-original.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("[folding]"),
        "{}",
        text(&out.stderr)
    );
    // --plan and --scenario are exclusive.
    let out = moeplan(&[
        "dag",
        "--plan",
        "examples/seeds/001-original.toml",
        "--scenario",
        "examples/seed.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// One way to pass a file: a positional FILE is a plan or a scenario, told
/// apart by its content, and every flag given with it is applied or
/// refused, never ignored (issue 14: `dag --plan FILE --isl 5000 --tp 4
/// --gpu h200` used to draw the file's tp2 on H100).
#[test]
fn a_file_is_recognised_and_flags_override_it() {
    let out = moeplan(&[
        "dag",
        "examples/audit/mixtral-8x7b-tp2-2xh100.toml",
        "--isl",
        "5000",
        "--tp",
        "4",
        "--gpu",
        "h200",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("mixtral-8x7b on 4 × h200-sxm, layout tp4"),
        "{s}"
    );
    assert!(
        s.contains("5000 prompt tokens") || s.contains("prompt tokens per rank"),
        "{s}"
    );
    let out = moeplan(&["dag", "examples/seed.toml", "--granularity", "layer"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("from the planner's recommendation for seed"));
    // A scenario's layout is the planner's: a layout flag is refused.
    let out = moeplan(&["dag", "examples/seed.toml", "--tp", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("planner's choice"),
        "{}",
        text(&out.stderr)
    );
}

/// A disaggregated plan draws one worker of a pool with the step the
/// disaggregated estimate costs for that pool (issue 9 review: the prefill
/// worker was drawn as an aggregated replica holding 2,253 of the requests,
/// a 44.9 ms mixed step, where the estimate's prefill batch took 4.31 ms).
/// DeepSeek's H800 system: each pool's drawn step is the estimate's, to
/// the bit, and a prefill worker holds no share of the requests in flight.
#[test]
fn a_disaggregated_plan_draws_each_pool_with_the_estimates_step() {
    let plan = "examples/audit/published/deepseek-v3-h800-production.toml";
    let est = moeplan(&["estimate", plan, "--json"]);
    assert_eq!(est.status.code(), Some(0), "{}", text(&est.stderr));
    let est: serde_json::Value = serde_json::from_slice(&est.stdout).unwrap();
    for pool in ["prefill", "decode"] {
        let out = moeplan(&[
            "dag",
            plan,
            "--pool",
            pool,
            "--granularity",
            "layer",
            "--format",
            "json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let phase = &d["phases"][0];
        assert_eq!(phase["engine_step_s"], est[pool]["step"]["time"], "{pool}");
        assert_eq!(
            phase["description"], est[pool]["step"]["description"],
            "{pool}"
        );
        // And the pool's own expert imbalance (the prefill pool showed the
        // decode pool's: 0.060 for a step the estimate costs at 0.015).
        assert_eq!(
            d["load_imbalance"], est[pool]["step"]["load_imbalance"],
            "{pool}"
        );
    }
    let out = moeplan(&["dag", plan, "--pool", "prefill", "--granularity", "layer"]);
    let s = text(&out.stdout);
    assert!(
        s.contains("one worker of the prefill pool (4 × 32 GPUs, the disaggregated estimate's prefill batch)"),
        "{s}"
    );
}

/// When Graphviz fails, its complaint is cut to its first lines (issue 14:
/// 3,100 lines were dumped). A stand-in `dot` that writes 50 lines and fails.
#[cfg(unix)]
#[test]
fn a_failing_graphviz_is_quoted_in_a_few_lines() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("moeplan-dag-bad-dot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dot = dir.join("dot");
    std::fs::write(
        &dot,
        "#!/bin/sh\ncat > /dev/null\ni=0\nwhile [ $i -lt 50 ]; do echo \"dot: line $i\" >&2; i=$((i+1)); done\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&dot, std::fs::Permissions::from_mode(0o755)).unwrap();
    let svg = dir.join("out.svg");
    let mut a = SEED.to_vec();
    let svg_s = svg.to_string_lossy().to_string();
    a.extend_from_slice(&["--svg", &svg_s]);
    let path = format!("{}:/bin:/usr/bin", dir.display());
    let out = command(&root(), &a)
        .env("PATH", path)
        .output()
        .expect("the binary runs");
    std::fs::remove_dir_all(&dir).ok();
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains("dot: line 4") && !e.contains("dot: line 5\n"),
        "{e}"
    );
    assert!(e.contains("and 45 more lines"), "{e}");
}

//! `moeplan audit` end to end: exit codes (0 clean, 1 an error finding, 2
//! unreadable input), the JSON shape, the review document, and `--fix`
//! writing a plan in the input's format that reads back.

use super::{moeplan_at_root as moeplan, stderr, stdout};
use std::path::PathBuf;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);
impl Scratch {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("moeplan-audit-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        Scratch(d)
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_correct_plan_exits_0() {
    let o = moeplan(&["audit", "examples/audit/mixtral-8x7b-tp2-2xh100.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("PASS: 0 errors"), "{}", stdout(&o));
}

#[test]
fn a_plan_with_errors_exits_1_and_groups_by_severity() {
    let o = moeplan(&["audit", "examples/seeds/000-proposed.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stdout(&o);
    let e = text.find("\nerrors (").expect("an errors group");
    let w = text.find("\nwarnings (").expect("a warnings group");
    assert!(e < w);
    assert!(text.contains("corrected plan (best_effort)"));
    insta::assert_snapshot!("seed-000-proposed-terminal", text);
}

#[test]
fn unreadable_or_invalid_plans_exit_2() {
    let o = moeplan(&["audit", "examples/audit/missing.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let s = Scratch::new("invalid");
    let path = s.file("bad.toml");
    std::fs::write(
        &path,
        "[model]\ncatalog = \"mixtral-8x7b\"\n[hardware]\ngpu = \"h100-sxm\"\n[workload]\nisl = 10\nosl = 10\n[deployment]\ntp = 2\nreplicaz = 1\n[claims]\nmemory_per_gpu = \"40\"\n",
    )
    .unwrap();
    let o = moeplan(&["audit", &path]);
    assert_eq!(o.status.code(), Some(2));
    // miette wraps long lines: compare with the wrapping removed.
    let err: String = stderr(&o)
        .split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ");
    assert!(err.contains("unknown key `replicaz`"), "{err}");
    assert!(err.contains("accepted units"), "{err}");
    let o = moeplan(&["audit", &path, "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["error"]["kind"], "input");
}

#[test]
fn json_has_findings_summary_and_corrected() {
    let o = moeplan(&["audit", "examples/seeds/001-original.toml", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let f = &v["findings"][0];
    for key in [
        "severity", "code", "field", "claimed", "computed", "message", "evidence", "fix",
    ] {
        assert!(f.get(key).is_some(), "finding without {key}: {f}");
    }
    assert_eq!(v["summary"]["verdict"], "fail");
    assert!(v["corrected"]["layout"].is_object());
    assert!(v["corrected"]["source"].is_string());
}

#[test]
fn report_and_fix_are_written_in_the_input_format() {
    let s = Scratch::new("fix");
    for (input, ext) in [
        (
            "examples/audit/broken/deployment.ep__invalid_layout.toml",
            "toml",
        ),
        ("examples/audit/deepseek-v3-dp8-ep8-8xh200.yaml", "yaml"),
        (
            "examples/audit/broken/claims.total_gpus__gpus_mismatch.json",
            "json",
        ),
        // Disaggregated: corrected as a disaggregated plan (review of issue 11).
        (
            "examples/audit/broken/deployment.decode.ep__invalid_layout.toml",
            "toml",
        ),
    ] {
        let fixed = s.file(&format!("fixed.{ext}"));
        let report = s.file("review.md");
        let o = moeplan(&["audit", input, "--fix", &fixed, "--report", &report]);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
        let written = std::fs::read_to_string(&fixed).unwrap();
        let disaggregated = std::fs::read_to_string(crate::root().join(input))
            .unwrap()
            .contains("disaggregated");
        assert_eq!(
            written.contains("disaggregated"),
            disaggregated,
            "{input}: the corrected plan keeps the mode\n{written}"
        );
        let md = std::fs::read_to_string(&report).unwrap();
        assert!(md.starts_with("# Review of plan"), "{md}");
        assert!(md.contains("## Corrected plan"));
        // The corrected plan needs the catalog ids only, so it audits from anywhere.
        let o = moeplan(&["audit", &fixed]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{input}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
}

#[test]
fn schema_plan_prints_the_plan_schema() {
    let o = moeplan(&["schema", "plan"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["properties"]["claims"].is_object());
    assert!(v["properties"]["deployment"].is_object());
}

/// DeepSeek-V3 dp8 ep8 on 8 × H200 with skewed routing: the corrected plan's
/// claims carry the expert imbalance `estimate` applies (87.8% at skew 0.8),
/// not the uniform-routing floor the audit checks claims against (11.9%).
const SKEWED: &str = r#"
name = "skewed"
[model]
catalog = "deepseek-v3"
[hardware]
gpu = "h200-sxm"
engine = "sglang"
[workload]
isl = 2000
osl = 1000
concurrency = 256
routing_skew = 0.8
[deployment]
mode = "aggregated"
dp = 8
ep = 8
"#;

fn json_of(args: &[&str]) -> serde_json::Value {
    let o = moeplan(args);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{args:?}: {}",
        stderr(&o)
    );
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn the_corrected_plan_claims_the_imbalance_the_estimate_applies() {
    let s = Scratch::new("skew");
    let plan = s.file("skewed.toml");
    std::fs::write(&plan, SKEWED).unwrap();
    let est = json_of(&["estimate", &plan, "--json"]);
    let audit = json_of(&["audit", &plan, "--json"]);
    let used = &est["load_imbalance"]["used"];
    assert!(
        used.as_f64().unwrap() > est["load_imbalance"]["uniform"].as_f64().unwrap(),
        "the skew raises the imbalance above uniform routing's: {est}"
    );
    assert_eq!(&audit["corrected"]["claims"]["load_imbalance"], used);
}

/// The corrected plan keeps the plan's redundant experts and overlap: the
/// file `--fix` writes estimates to the figures the audit claims for it
/// (Mixtral-8x22B tp4 ep4 with 4 redundant experts was corrected at TPOT
/// 68.8 ms for an estimate of 81.6 ms; DeepSeek-V3 dp8 ep8 with two-batch
/// overlap was written without it).
#[test]
fn the_fixed_plan_estimates_to_the_claims_the_audit_made() {
    let s = Scratch::new("keep");
    let plan = s.file("kept.toml");
    let fixed = s.file("fixed.toml");
    let text = SKEWED.replace(
        "ep = 8\n",
        "ep = 8\nredundant_experts = 8\noverlap = \"two-batch\"\n",
    );
    std::fs::write(&plan, text).unwrap();
    let audit = json_of(&["audit", &plan, "--json"]);
    let o = moeplan(&["audit", &plan, "--fix", &fixed]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let written = std::fs::read_to_string(&fixed).unwrap();
    assert!(
        written.contains("redundant_experts = 8") && written.contains("overlap = \"two-batch\""),
        "{written}"
    );
    let original = json_of(&["estimate", &plan, "--json"]);
    let again = json_of(&["estimate", &fixed, "--json"]);
    let claims = &audit["corrected"]["claims"];
    for (figure, ms) in [("ttft", "ttft_ms"), ("tpot", "tpot_ms")] {
        let claimed = claims[figure].as_f64().unwrap() * 1e3;
        for e in [&original, &again] {
            let est = e[ms].as_f64().unwrap();
            assert!(
                (claimed / est - 1.0).abs() < 1e-9,
                "{figure}: the audit claims {claimed} ms, the estimate {est} ms"
            );
        }
    }
}

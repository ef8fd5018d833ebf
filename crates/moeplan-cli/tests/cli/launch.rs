//! `moeplan launch` end to end: manifests validate against the pinned CRD
//! and chart schemas (`tests/fixtures/k8s/`, provenance there), scripts
//! parse, refusals and exit codes.

use super::{crate_dir, moeplan, moeplan_at_root, root, stderr, stdout, unwrapped};
use serde_json::Value;

/// The pinned schema of a manifest document, if it is one of the three.
fn schema_for(target: &str, doc: &Value) -> Option<Value> {
    let file = match (target, doc["kind"].as_str()) {
        ("lws", Some("LeaderWorkerSet")) => "leaderworkerset.schema.json",
        ("dynamo", Some("DynamoGraphDeployment")) => "dynamographdeployment.schema.json",
        ("llm-d", None) => "llm-d-modelservice.values.schema.json",
        _ => return None,
    };
    let path = crate_dir().join("tests/fixtures/k8s").join(file);
    Some(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
}

/// The reference deployments (DeepSeek-V3 on H200 nodes of 8), as flags.
fn deployments() -> Vec<(&'static str, Vec<&'static str>)> {
    let common = [
        "--model",
        "deepseek-v3",
        "--gpu",
        "h200-sxm",
        "--isl",
        "2000",
        "--osl",
        "500",
    ];
    let with = |extra: &[&'static str]| common.iter().chain(extra).copied().collect::<Vec<_>>();
    vec![
        (
            "dep8",
            with(&["--dp", "8", "--ep", "8", "--concurrency", "256"]),
        ),
        (
            "wide-ep32",
            with(&[
                "--dp",
                "32",
                "--ep",
                "32",
                "--redundant-experts",
                "32",
                "--concurrency",
                "1024",
            ]),
        ),
        (
            "pp2-tp8",
            with(&["--pp", "2", "--tp", "8", "--ep", "8", "--concurrency", "32"]),
        ),
        (
            "disagg",
            with(&[
                "--prefill-dp",
                "8",
                "--prefill-ep",
                "8",
                "--prefill-workers",
                "2",
                "--decode-dp",
                "16",
                "--decode-ep",
                "16",
                "--decode-workers",
                "1",
                "--concurrency",
                "512",
            ]),
        ),
    ]
}

/// Every manifest of every reference deployment, engine and Kubernetes
/// target parses as YAML and conforms to its pinned schema.
#[test]
fn manifests_conform_to_the_pinned_schemas() {
    let mut checked = 0;
    // The default versions, and older releases written in their own
    // spelling (an environment variable in a Dynamo worker, Ray over nodes),
    // with an image of their own (Dynamo's runs the release it pins).
    let versions = [
        ("vllm", None),
        ("vllm", Some("0.11.0")),
        ("sglang", None),
        ("sglang", Some("0.4.9.post6")),
        ("trtllm", None),
    ];
    for (name, flags) in deployments() {
        for (engine, version) in versions {
            for target in ["lws", "dynamo", "llm-d"] {
                let mut args = vec!["launch", "--engine", engine, "--target", target, "--json"];
                args.extend(&flags);
                if engine == "trtllm" {
                    args.extend(["--image", "nvcr.io/nvidia/tensorrt-llm/release:1.2.0"]);
                }
                if let Some(v) = version {
                    args.extend(["--engine-version", v, "--image", "example.com/engine:tag"]);
                }
                let o = moeplan(&args);
                // llm-d runs vLLM only, one node per replica (its chart passes no node rank).
                if target == "llm-d" && (engine != "vllm" || name != "dep8") {
                    assert_eq!(o.status.code(), Some(2), "{name} {engine} {target}");
                    continue;
                }
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "{name} {engine} {target}: {}",
                    stderr(&o)
                );
                let launch: Value = serde_json::from_str(&stdout(&o)).unwrap();
                for f in launch["files"].as_array().unwrap() {
                    let path = f["path"].as_str().unwrap();
                    if !path.ends_with(".yaml") {
                        continue;
                    }
                    for doc in f["content"].as_str().unwrap().split("\n---\n") {
                        let v: Value =
                            serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{path}: {e}"));
                        assert!(v.is_object(), "{path}: {doc}");
                        if let Some(schema) = schema_for(target, &v) {
                            let problems = moeplan::spec::check_schema(&v, &schema);
                            assert!(
                                problems.is_empty(),
                                "{name} {engine} {target} {path}: {problems:?}\n{doc}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    // 4 deployments × 5 engine versions × 2 targets, and vLLM's single-node ones on llm-d.
    assert!(checked > 4 * 10, "{checked} manifests checked");
}

/// The pinned schemas do reject what they should: a Dynamo GPU count as a
/// number (the CRD wants a string), a LeaderWorkerSet without its worker
/// template.
#[test]
fn the_pinned_schemas_reject_known_mistakes() {
    let dgd = schema_for(
        "dynamo",
        &serde_json::json!({"kind": "DynamoGraphDeployment"}),
    )
    .unwrap();
    let bad = serde_json::json!({"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment", "metadata": {"name": "x"},
        "spec": {"services": {"W": {"componentType": "worker", "resources": {"limits": {"gpu": 8}}}}}});
    assert!(!moeplan::spec::check_schema(&bad, &dgd).is_empty());
    let lws = schema_for("lws", &serde_json::json!({"kind": "LeaderWorkerSet"})).unwrap();
    let bad = serde_json::json!({"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": "x"},
        "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 2}}});
    assert!(!moeplan::spec::check_schema(&bad, &lws).is_empty());
}

/// `--out` writes every file; the scripts are valid bash.
#[test]
fn out_writes_scripts_that_bash_parses() {
    let dir = std::env::temp_dir().join(format!("moeplan-launch-{}", std::process::id()));
    // Each engine's newest release, and the older ones that spell flags differently.
    let versions = [
        ("vllm", None),
        ("vllm", Some("0.11.0")),
        ("sglang", None),
        ("sglang", Some("0.4.9.post6")),
        ("trtllm", None),
    ];
    for (engine, version) in versions {
        for (name, flags) in deployments() {
            let out = dir.join(format!("{engine}-{}-{name}", version.unwrap_or("default")));
            let mut args = vec!["launch", "--engine", engine, "--out", out.to_str().unwrap()];
            if let Some(v) = version {
                args.extend(["--engine-version", v]);
            }
            args.extend(&flags);
            let o = moeplan(&args);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            assert!(stdout(&o).contains("wrote"), "{}", stdout(&o));
            for entry in std::fs::read_dir(&out).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "sh") {
                    let check = std::process::Command::new("bash")
                        .arg("-n")
                        .arg(&path)
                        .output()
                        .unwrap();
                    assert!(
                        check.status.success(),
                        "{}: {}",
                        path.display(),
                        String::from_utf8_lossy(&check.stderr)
                    );
                }
            }
            assert!(out.join("bench.sh").exists() && out.join("bench_to_csv.py").exists());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An engine version without a flag table is bad input (exit 2) naming
/// the versions there are; one with a table launches with its flags.
#[test]
fn an_unknown_engine_version_exits_2_listing_the_known_ones() {
    let args = |v: &'static str| {
        vec![
            "launch",
            "--engine",
            "vllm",
            "--engine-version",
            v,
            "--model",
            "deepseek-v3",
            "--gpu",
            "h200-sxm",
            "--dp",
            "8",
            "--ep",
            "8",
            "--isl",
            "2000",
            "--osl",
            "500",
            "--concurrency",
            "64",
            "--json",
        ]
    };
    let o = moeplan(&args("0.9.2"));
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("moeplan checks its flags against vllm 0.19.1, 0.14.1, 0.11.0"),
        "{}",
        stdout(&o)
    );
    let o = moeplan(&args("0.11"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["engine_version"], "0.11.0");
}

/// A layout the engine cannot write is bad input (exit 2) naming the rule
/// and the nearest layout it can run.
#[test]
fn an_inexpressible_layout_is_refused_with_the_nearest() {
    let o = moeplan(&[
        "launch",
        "--engine",
        "trtllm",
        "--model",
        "deepseek-v3",
        "--gpu",
        "h200-sxm",
        "--tp",
        "2",
        "--dp",
        "4",
        "--ep",
        "8",
        "--isl",
        "2000",
        "--osl",
        "500",
        "--concurrency",
        "64",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = unwrapped(&stderr(&o));
    assert!(
        err.contains("enable_attention_dp") && err.contains("dp8 ep8"),
        "{err}"
    );
}

/// More requests than memory holds: exit 1, saying how many fit.
#[test]
fn a_plan_beyond_memory_exits_1() {
    let o = moeplan(&[
        "launch",
        "--engine",
        "sglang",
        "--model",
        "deepseek-v3",
        "--gpu",
        "h200-sxm",
        "--dp",
        "8",
        "--ep",
        "8",
        "--concurrency",
        "100000",
        "--isl",
        "2000",
        "--osl",
        "500",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("do not fit"), "{}", stderr(&o));
}

/// A plan file gives the deployment and its replicas.
#[test]
fn a_plan_file_launches_its_replicas() {
    let plan = root().join("examples/audit/mixtral-8x7b-tp2-2xh100.toml");
    let o = moeplan(&[
        "launch",
        plan.to_str().unwrap(),
        "--engine",
        "vllm",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let text = std::fs::read_to_string(&plan).unwrap();
    let replicas = text
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("replicas").map(|r| {
                r.trim_start_matches([' ', '='])
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
        })
        .unwrap_or(1);
    assert_eq!(v["roles"][0]["replicas"].as_u64(), Some(replicas));
    assert_eq!(v["gpus"].as_u64(), Some(2 * replicas));
}

/// A plan's stated `hardware.engine_version` is the version launched,
/// unless `--engine-version` says another or another engine runs.
#[test]
fn a_plan_files_engine_version_is_launched() {
    let text = std::fs::read_to_string(root().join("examples/audit/mixtral-8x7b-tp2-2xh100.toml"))
        .unwrap()
        .replace(
            "engine = \"neutral\"",
            "engine = \"vllm\"\nengine_version = \"0.11.0\"",
        );
    let dir = std::env::temp_dir().join(format!("moeplan-launch-version-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, text).unwrap();
    let version = |extra: &[&str]| {
        let mut args = vec!["launch", plan.to_str().unwrap(), "--json"];
        args.extend(extra);
        let o = moeplan(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["engine_version"].as_str().unwrap().to_string()
    };
    assert_eq!(version(&[]), "0.11.0");
    assert_eq!(version(&["--engine-version", "0.19"]), "0.19.1");
    assert_eq!(version(&["--engine", "sglang"]), "0.5.10.post1");
    let _ = std::fs::remove_dir_all(&dir);
}

/// llm-d runs vLLM only; other engines are refused (exit 2).
#[test]
fn llm_d_is_refused_for_other_engines() {
    let o = moeplan(&[
        "launch",
        "--engine",
        "sglang",
        "--target",
        "llm-d",
        "--model",
        "qwen3-30b-a3b",
        "--gpu",
        "h100",
        "--tp",
        "2",
        "--isl",
        "2000",
        "--osl",
        "500",
        "--concurrency",
        "64",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("vLLM only"), "{}", stderr(&o));
}

/// Issue 14: a scenario that states no engine launches its recommendation.
/// `launch examples/qwen3-30b-8xh100.toml` exited 2 ("trtllm cannot run
/// dp3": the planner recommended a prefill worker with its experts
/// replicated per attention-DP rank, which no engine runs); the planner now
/// searches only what its serving engine (the default one here) expresses.
#[test]
fn every_example_scenario_launches_its_recommendation() {
    for file in [
        "examples/qwen3-30b-8xh100.toml",
        "examples/mixtral-2xh100.yaml",
        "examples/deepseek-v3-h200.toml",
        "examples/qwen3-30b-p99-at-40rps.toml",
    ] {
        let out = moeplan_at_root(&["launch", file]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr(&out));
    }
}

/// Weights planned in another type than the checkpoint stores are bad
/// input (exit 2) without `--model-path`: the engine would serve the
/// checkpoint's FP8 weights, not the NVFP4 ones the plan costed. With
/// weights named (a directory), the launch serves them.
#[test]
fn weights_stored_otherwise_than_the_checkpoint_need_a_model_path() {
    let args = [
        "launch",
        "--engine",
        "vllm",
        "--model",
        "deepseek-v3",
        "--gpu",
        "b200",
        "--tp",
        "8",
        "--weight-dtype",
        "nvfp4",
        "--isl",
        "2000",
        "--osl",
        "500",
        "--concurrency",
        "16",
    ];
    let o = moeplan(&args);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = unwrapped(&stderr(&o));
    assert!(
        err.contains("the expert weights as nvfp4")
            && err.contains("deepseek-ai/DeepSeek-V3 stores them as fp8"),
        "{err}"
    );
    assert!(err.contains("--model-path"), "{err}");
    let named = [&args[..], &["--model-path", "/models/deepseek-v3-nvfp4"]].concat();
    let o = moeplan(&named);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("vllm serve /models/deepseek-v3-nvfp4 "),
        "{}",
        stdout(&o)
    );
}

/// A checkpoint folder typed as `--model` is what the engine loads, even
/// when its name is a catalog key (it was served the catalog's checkpoint:
/// another checkpoint, perhaps stored otherwise).
#[test]
fn a_checkpoint_folder_is_served_as_itself() {
    let dir = std::env::temp_dir()
        .join(format!("moeplan-folder-{}", std::process::id()))
        .join("qwen3-235b-a22b");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        crate_dir().join("../moeplan/tests/fixtures/hf/nvidia--Qwen3-235B-A22B-NVFP4_config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let path = dir.to_str().unwrap();
    let o = moeplan(&[
        "launch",
        "--engine",
        "vllm",
        "--model",
        path,
        "--gpu",
        "b200",
        "--tp",
        "8",
        "--isl",
        "1000",
        "--osl",
        "1000",
        "--concurrency",
        "8",
    ]);
    std::fs::remove_dir_all(dir.parent().unwrap()).ok();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("vllm serve {path} ")),
        "{}",
        stdout(&o)
    );
}

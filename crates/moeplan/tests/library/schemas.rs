//! The JSON Schemas in `schemas/` are generated from the raw spec types.
//! This test fails when they are stale; regenerate with
//! `MOEPLAN_UPDATE_SCHEMAS=1 cargo test -p moeplan --test library schemas::`.

use moeplan::spec::{
    gpu::RawGpu, model::RawModel, plan::RawPlan, scenario::RawScenario, schema_of,
};
use std::path::PathBuf;

fn check(name: &str, schema: serde_json::Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas")
        .join(format!("{name}.schema.json"));
    let fresh = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("MOEPLAN_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: run MOEPLAN_UPDATE_SCHEMAS=1 cargo test -p moeplan --test library schemas::",
        path.display()
    );
}

#[test]
fn model_schema_is_current() {
    check("model", schema_of::<RawModel>());
}

#[test]
fn gpu_schema_is_current() {
    check("gpu", schema_of::<RawGpu>());
}

#[test]
fn plan_schema_is_current() {
    check("plan", schema_of::<RawPlan>());
}

#[test]
fn scenario_schema_is_current() {
    check("scenario", schema_of::<RawScenario>());
}

/// Every shipped example and catalog entry validates against the loaders.
#[test]
fn profile_schema_is_current() {
    check("profile", schema_of::<moeplan::profile::UserProfile>());
}

#[test]
fn examples_load() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for p in entries {
        let s =
            moeplan::spec::scenario::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(!s.name.is_empty());
        n += 1;
    }
    assert!(n >= 4);
    let seed = moeplan::spec::scenario::seed();
    assert_eq!(seed.model.name, "seed-moe");
    assert_eq!(seed.workload.isl.max, 10240);
    assert_eq!(seed.slo.min_throughput_per_gpu.unwrap().value(), 100_000.0);
}

/// Every command's `--json` output has its schema in `schemas/output/`
/// (`moeplan schema output-<command>`); the CLI's tests check real outputs
/// against them.
#[test]
fn output_schemas_are_current() {
    for command in moeplan::output::COMMANDS {
        let schema = moeplan::output::schema(command).expect("listed");
        check(
            &format!("output/{command}"),
            serde_json::to_value(schema).unwrap(),
        );
    }
}

/// Every integer the scenario schema says starts at 1 is refused at 0 by the
/// reader, at its key (issue 14: the schemas said `minimum: 0` where the
/// tool rejects 0). Each hardware and workload key of the seed scenario set
/// to 0 in turn.
#[test]
fn a_zero_the_schema_forbids_is_refused_at_its_key() {
    use moeplan::spec::scenario;
    use moeplan::spec::source::{Format, Source};
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/scenario.schema.json")).unwrap(),
    )
    .unwrap();
    let seed = std::fs::read_to_string(root().join("examples/seed.toml")).unwrap();
    let mut checked = 0;
    for (section, def) in [("hardware", "RawHardware"), ("workload", "RawWorkload")] {
        let props = schema["$defs"][def]["properties"].as_object().unwrap();
        for (key, p) in props {
            if p["minimum"] != 1 || !seed.lines().any(|l| l.starts_with(&format!("{key} ="))) {
                continue;
            }
            let text: String = seed
                .lines()
                .map(|l| match l.starts_with(&format!("{key} =")) {
                    true => format!("{key} = 0"),
                    false => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            let src = Source::from_text("zero.toml", &text, Format::Toml);
            let e = scenario::load(&src, &root()).expect_err(key);
            assert!(
                format!("{e:?}").contains(&format!("{section}.{key}")),
                "{key}: {e:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked}");
}

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Counts (bytes, FLOP, parameters) are JSON integers when whole: a KV
/// cache of 8,994,816 bytes is `8994816`, not `8994816.0`; a fraction of a
/// byte, or a count past 2^53 that an `f64` no longer holds exactly, stays
/// a number; a rate stays a number even when whole.
#[test]
fn whole_counts_are_json_integers() {
    use moeplan::units::{Bytes, Flop, Params, TokensPerSecond};
    let json = |v: serde_json::Value| v.to_string();
    assert_eq!(json(serde_json::json!(Bytes::new(8_994_816.0))), "8994816");
    assert_eq!(
        json(serde_json::json!(Params::new(671_026_419_200.0))),
        "671026419200"
    );
    assert_eq!(json(serde_json::json!(Bytes::new(0.5))), "0.5");
    assert_eq!(
        json(serde_json::json!(Flop::new(2f64.powi(60)))),
        "1.152921504606847e+18"
    );
    assert_eq!(
        json(serde_json::json!(TokensPerSecond::new(100.0))),
        "100.0"
    );
    // Every byte and FLOP count of a model report (DeepSeek-V3's are whole:
    // products of integer widths and whole bytes per element) is an integer.
    let m = moeplan::catalog::resolve_model("deepseek-v3").expect("in the catalog");
    let v = serde_json::to_value(moeplan::report::model_report(&m)).unwrap();
    let mut counts = Vec::new();
    collect_counts(&v, "", &mut counts);
    assert!(counts.len() > 20, "{counts:?}");
    let floats: Vec<&(String, serde_json::Value)> =
        counts.iter().filter(|(_, n)| !n.is_u64()).collect();
    assert!(floats.is_empty(), "counts written as floats: {floats:?}");
}

/// The numbers under keys naming bytes or FLOP, with their paths.
fn collect_counts(v: &serde_json::Value, path: &str, out: &mut Vec<(String, serde_json::Value)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                if x.is_number() && (k.contains("bytes") || k.contains("flop")) {
                    out.push((p.clone(), x.clone()));
                }
                collect_counts(x, &p, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_counts(x, path, out)),
        _ => {}
    }
}

/// The plan and model schemas say `minimum: 1` where the readers refuse 0
/// (issue 14): a plan claiming `total_gpus = 0` and a model whose shared
/// expert is 0 wide are refused at their keys, and their schemas (and the
/// pools' `gpus` claims, read by the same rule) say so.
#[test]
fn the_plan_and_model_schemas_start_counts_where_the_readers_do() {
    let schema = |name: &str| -> serde_json::Value {
        let path = root().join(format!("schemas/{name}.schema.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let plan = schema("plan");
    for (def, key) in [
        ("RawClaims", "total_gpus"),
        ("RawPhaseClaims", "gpus"),
        ("RawMoe", "shared_intermediate_size"),
    ] {
        assert_eq!(
            plan["$defs"][def]["properties"][key]["minimum"], 1,
            "{def}.{key}"
        );
    }
    let moe = &schema("model")["$defs"]["RawMoe"]["properties"];
    assert_eq!(moe["shared_intermediate_size"]["minimum"], 1);
    let text = std::fs::read_to_string(root().join("examples/audit/mixtral-8x7b-tp2-2xh100.toml"))
        .unwrap()
        .replace("total_gpus = 2", "total_gpus = 0");
    let src = moeplan::spec::source::Source::from_text(
        "zero.toml",
        &text,
        moeplan::spec::source::Format::Toml,
    );
    let e = moeplan::spec::plan::load(&src, &root()).expect_err("0 GPUs claimed");
    assert!(format!("{e:?}").contains("claims.total_gpus"), "{e:?}");
}

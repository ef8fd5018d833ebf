//! `moeplan launch`: golden files of the four reference deployments for
//! every engine and target, and the invariants over valid layouts: pods
//! never ask for more GPUs than a node has and add up to the plan's GPUs,
//! the layout read back from the emitted flags is the plan's, and the
//! memory settings hold the planned requests.

use moeplan::engine::Engine;
use moeplan::launch::{self, Launch, LaunchError, Request, Target, Weights};
use moeplan::layout::Layout;
use moeplan::replica::{Deployment, Disaggregated, PoolRole, Replica};
use moeplan::serving::disagg::Pool;
use moeplan::serving::Workload;
use moeplan::spec::scenario::Scenario;
use moeplan::units::Tokens;
use proptest::prelude::*;
use serde_json::Value;

const ENGINES: [Engine; 3] = [Engine::Vllm, Engine::Sglang, Engine::Trtllm];

fn catalog(model: &str, gpu: &str) -> (moeplan::model::Model, moeplan::hardware::Gpu) {
    (
        moeplan::catalog::resolve_model(model).unwrap(),
        moeplan::catalog::resolve_gpu(gpu).unwrap(),
    )
}

/// One aggregated replica of `layout` with `concurrency` requests of
/// 2,000 + 500 tokens on `engine`.
fn aggregated(
    model: &str,
    gpu: &str,
    layout: Layout,
    concurrency: u64,
    engine: Engine,
) -> Deployment {
    let (m, g) = catalog(model, gpu);
    let cfg = engine.config(g.memory);
    let s = Scenario::fixed("launch", m, g, layout.gpus(), 2000, 500);
    Deployment::Aggregated(Replica::from_scenario(s, layout, concurrency, cfg))
}

/// A disaggregated deployment of two pools with `concurrency` requests in flight.
fn disaggregated(
    model: &str,
    gpu: &str,
    prefill: Pool,
    decode: Pool,
    concurrency: u64,
    engine: Engine,
) -> Deployment {
    let (m, g) = catalog(model, gpu);
    Deployment::Disaggregated(Disaggregated {
        calibration: moeplan::profile::resolve_disaggregated(&m, &g, engine)
            .kernels
            .flat(None, None),
        prefill,
        decode,
        workload: Workload {
            isl: Tokens::new(2000),
            osl: Tokens::new(500),
            concurrency,
            cache_hit_rate: moeplan::units::Fraction::ZERO,
            client: moeplan::serving::Client::Fixed,
        },
        engine: engine.config(g.memory),
        routing_skew: 0.0,
        model: m,
        gpu: g,
        assumed: Vec::new(),
    })
}

fn layout(pp: u32, tp: u32, dp: u32, ep: u32, etp: u32) -> Layout {
    Layout {
        pp,
        tp,
        cp: 1,
        dp,
        ep,
        etp,
    }
}

fn request<'a>(d: &'a Deployment, replicas: u32, engine: Engine, target: Target) -> Request<'a> {
    Request {
        deployment: d,
        replicas,
        engine,
        engine_version: None,
        target,
        weights: Weights::Checkpoint("deepseek-ai/DeepSeek-V3".into()),
        max_context: 2500,
        // TensorRT-LLM's table was read from unreleased source: Kubernetes targets need an image.
        image: (engine == Engine::Trtllm)
            .then(|| "nvcr.io/nvidia/tensorrt-llm/release:1.2.0".to_string()),
    }
}

/// The four reference deployments of DeepSeek-V3 on H200 nodes of 8.
fn references(engine: Engine) -> Vec<(&'static str, Deployment, u32)> {
    let m = "deepseek-v3";
    let g = "h200-sxm";
    let mut wide = aggregated(m, g, layout(1, 1, 32, 32, 1), 1024, engine);
    if let Deployment::Aggregated(r) = &mut wide {
        r.redundant_experts = 32;
    }
    vec![
        (
            "tp8",
            aggregated(m, g, layout(1, 8, 1, 1, 8), 32, engine),
            2,
        ),
        (
            "dep8",
            aggregated(m, g, layout(1, 1, 8, 8, 1), 256, engine),
            1,
        ),
        ("wide-ep32-eplb", wide, 1),
        (
            "pp2-tp8",
            aggregated(m, g, layout(2, 8, 1, 8, 1), 32, engine),
            1,
        ),
        (
            "disagg-2xdep8-1xdep16",
            disaggregated(
                m,
                g,
                Pool {
                    layout: layout(1, 1, 8, 8, 1),
                    workers: 2,
                    prompts_per_rank: 1,
                    redundant_experts: 0,
                    overlap: moeplan::ops::Overlap::None,
                },
                Pool {
                    layout: layout(1, 1, 16, 16, 1),
                    workers: 1,
                    prompts_per_rank: 1,
                    redundant_experts: 0,
                    overlap: moeplan::ops::Overlap::None,
                },
                512,
                engine,
            ),
            1,
        ),
    ]
}

/// Every file of a launch, as one text.
fn files_text(l: &Launch) -> String {
    let mut s = String::new();
    for f in &l.files {
        s += &format!("==> {} <==\n{}\n", f.path, f.content);
    }
    for n in &l.notes {
        s += &format!("note: {n}\n");
    }
    s
}

#[test]
fn reference_deployments_for_every_engine_and_target() {
    for engine in ENGINES {
        for (name, d, replicas) in references(engine) {
            for target in Target::ALL {
                let name = format!("{}-{}-{name}", engine.name(), target.name());
                match launch::launch(&request(&d, replicas, engine, target)) {
                    Ok(l) => {
                        check_invariants(&l, &d, replicas);
                        insta::assert_snapshot!(name, files_text(&l));
                    }
                    Err(e @ LaunchError::TargetEngine { .. }) => {
                        assert!(
                            target == Target::LlmD && engine != Engine::Vllm,
                            "{name}: {e}"
                        )
                    }
                    Err(e @ LaunchError::Target { .. }) => {
                        // llm-d's chart cannot start a multi-node replica.
                        assert!(
                            target == Target::LlmD && e.to_string().contains("multi-node"),
                            "{name}: {e}"
                        )
                    }
                    Err(e) => panic!("{name}: {e}"),
                }
            }
        }
    }
}

/// The GPUs each pod of a manifest asks for, as (pods, GPUs each).
fn pods(target: Target, doc: &Value) -> Vec<(u64, u64)> {
    let n = |v: &Value| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    };
    match target {
        Target::Lws if doc["kind"] == "LeaderWorkerSet" => {
            let spec = &doc["spec"];
            let t = &spec["leaderWorkerTemplate"];
            let gpus = |tpl: &Value| {
                n(&tpl["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
            };
            let size = t["size"].as_u64().unwrap();
            let replicas = spec["replicas"].as_u64().unwrap();
            match t.get("leaderTemplate") {
                Some(leader) => vec![
                    (replicas, gpus(leader)),
                    (replicas * (size - 1), gpus(&t["workerTemplate"])),
                ],
                None => vec![(replicas * size, gpus(&t["workerTemplate"]))],
            }
        }
        Target::Dynamo if doc["kind"] == "DynamoGraphDeployment" => doc["spec"]["services"]
            .as_object()
            .unwrap()
            .values()
            .filter(|s| s["componentType"] == "worker")
            .map(|s| {
                let nodes = s["multinode"]["nodeCount"].as_u64().unwrap_or(1);
                (
                    s["replicas"].as_u64().unwrap() * nodes,
                    n(&s["resources"]["limits"]["gpu"]),
                )
            })
            .collect(),
        Target::LlmD => ["prefill", "decode"]
            .iter()
            .filter(|k| doc[**k]["create"] == true)
            .map(|k| {
                let s = &doc[*k];
                let pods =
                    s["replicas"].as_u64().unwrap() * s["parallelism"]["workers"].as_u64().unwrap();
                (
                    pods,
                    n(&s["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]),
                )
            })
            .collect(),
        Target::Shell | Target::Lws | Target::Dynamo => Vec::new(),
    }
}

/// The YAML documents of a launch's manifest.
fn manifest_docs(l: &Launch) -> Vec<Value> {
    let name = match l.target {
        Target::Shell => return Vec::new(),
        Target::Lws => "lws.yaml",
        Target::Dynamo => "dynamo.yaml",
        Target::LlmD => "llm-d-values.yaml",
    };
    let f = l
        .files
        .iter()
        .find(|f| f.path == name)
        .expect("the manifest is written");
    f.content
        .split("\n---\n")
        .map(|d| {
            serde_saphyr::from_str::<Value>(d)
                .unwrap_or_else(|e| panic!("{name} is not YAML: {e}\n{d}"))
        })
        .collect()
}

/// The layout a role's leader command asks the engine for, read back from its flags.
fn read_back(l: &Launch, role: &launch::Role) -> Layout {
    let words = launch::flags::words(&role.nodes[0].command);
    let get = |f: &str| {
        words
            .iter()
            .position(|w| w == f)
            .and_then(|i| words[i + 1].parse::<u32>().ok())
    };
    let has = |f: &str| words.iter().any(|w| w == f);
    match l.engine {
        Engine::Vllm => {
            let (tp, dp) = (
                get("--tensor-parallel-size").unwrap(),
                get("--data-parallel-size").unwrap(),
            );
            let ep = if has("--enable-expert-parallel") {
                tp * dp
            } else {
                1
            };
            layout(
                get("--pipeline-parallel-size").unwrap(),
                tp,
                dp,
                ep,
                tp * dp / ep,
            )
        }
        Engine::Sglang => {
            let stage = get("--tp-size").unwrap();
            let dp = if has("--enable-dp-attention") {
                get("--dp-size").unwrap()
            } else {
                1
            };
            let ep = get("--ep-size").unwrap_or(1);
            layout(get("--pp-size").unwrap(), stage / dp, dp, ep, stage / ep)
        }
        Engine::Trtllm | Engine::Neutral => {
            let file = format!("trtllm-{}.yaml", role.role.name());
            let config = l
                .files
                .iter()
                .find(|f| f.path == file)
                .map(|f| serde_saphyr::from_str::<Value>(&f.content).unwrap());
            let config = config.unwrap_or_else(|| trtllm_config_from_manifest(l, &file));
            let stage = get("--tp_size").unwrap();
            let dp = if config["enable_attention_dp"] == true {
                stage
            } else {
                1
            };
            let ep = config["moe_expert_parallel_size"].as_u64().unwrap() as u32;
            assert_eq!(
                Some(ep),
                get("--ep_size"),
                "the flag and the config agree on EP"
            );
            let etp = config["moe_tensor_parallel_size"].as_u64().unwrap() as u32;
            layout(get("--pp_size").unwrap(), stage / dp, dp, ep, etp)
        }
    }
}

/// A TensorRT-LLM config from the manifest's ConfigMap.
fn trtllm_config_from_manifest(l: &Launch, file: &str) -> Value {
    let docs = manifest_docs(l);
    let map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap holds the configs");
    serde_saphyr::from_str(map["data"][file].as_str().unwrap()).unwrap()
}

/// The invariants every launch keeps.
fn check_invariants(l: &Launch, d: &Deployment, replicas: u32) {
    let (gpu, model) = match d {
        Deployment::Aggregated(r) => (&r.gpu, &r.model),
        Deployment::Disaggregated(x) => (&x.gpu, &x.model),
    };
    let planned: u64 = match d {
        Deployment::Aggregated(r) => r.layout.gpus() as u64 * replicas as u64,
        Deployment::Disaggregated(x) => {
            (x.prefill.layout.gpus() * x.prefill.workers
                + x.decode.layout.gpus() * x.decode.workers) as u64
        }
    };
    assert_eq!(l.gpus, planned, "the launch's GPUs are the plan's");
    let mut from_roles = 0;
    for r in &l.roles {
        for n in &r.nodes {
            assert!(
                n.gpus <= gpu.gpus_per_node,
                "{} node {}: {} GPUs",
                r.role,
                n.node_rank,
                n.gpus
            );
            from_roles += n.gpus as u64 * r.replicas as u64;
        }
        if model.moe.is_some() {
            assert_eq!(
                read_back(l, r),
                r.layout,
                "{}: the flags express the layout",
                r.role
            );
        }
        check_memory(r, d);
    }
    assert_eq!(from_roles, planned, "the nodes add up to the plan's GPUs");
    let docs = manifest_docs(l);
    if !docs.is_empty() {
        let pods: Vec<(u64, u64)> = docs.iter().flat_map(|doc| pods(l.target, doc)).collect();
        assert!(
            pods.iter().all(|(_, g)| *g <= gpu.gpus_per_node as u64),
            "{pods:?}"
        );
        assert_eq!(
            pods.iter().map(|(n, g)| n * g).sum::<u64>(),
            planned,
            "pods add up to the plan's GPUs: {pods:?}"
        );
    }
}

/// The memory settings of a role leave room for moeplan's weights,
/// activations and the KV cache of its planned requests.
fn check_memory(r: &launch::Role, d: &Deployment) {
    let (model, gpu, cfg) = match d {
        Deployment::Aggregated(x) => (&x.model, &x.gpu, &x.engine),
        Deployment::Disaggregated(x) => (&x.model, &x.gpu, &x.engine),
    };
    let s = &r.settings;
    let redundant = s.redundant_experts;
    let m = moeplan::memory::memory(
        model,
        gpu,
        &r.layout,
        cfg,
        redundant,
        s.concurrency,
        s.max_context,
    );
    let cap = m.capacity_bytes.value();
    let (w, kv, act, other) = (
        m.weights_bytes.value(),
        m.kv_cache_bytes.value(),
        m.activation_bytes.value(),
        m.other_bytes.value(),
    );
    // vLLM: the whole instance within gpu_memory_utilization.
    assert!(
        w + kv + act + other <= s.memory_fraction * cap + 1e6,
        "{}: vLLM fraction",
        r.role
    );
    // SGLang: weights, KV pool and what is in use when it profiles within mem_fraction_static.
    assert!(
        w + kv + other <= s.static_fraction * cap + 1e6,
        "{}: SGLang static fraction",
        r.role
    );
    // TensorRT-LLM: the KV pool within its share of what weights and activations leave.
    assert!(
        kv <= s.kv_free_fraction * (cap - w - act - other) + 1e6,
        "{}: TensorRT-LLM KV fraction",
        r.role
    );
    assert!(s.max_running_per_rank * r.layout.dp as u64 >= s.concurrency);
}

/// A layout of a model's stage of `stage` GPUs: attention `tp × dp`, experts `ep × etp`.
fn arb_layout() -> impl Strategy<Value = Layout> {
    (0u32..2, 0u32..5, 0u32..5, any::<bool>()).prop_map(|(pp, t, d, all_ep)| {
        let (tp, dp) = (1 << t.min(3), 1 << d);
        let stage = tp * dp;
        let (ep, etp) = if all_ep { (stage, 1) } else { (1, stage) };
        layout(1 << pp, tp, dp, ep, etp)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Over valid layouts of three MoE models, every engine and target: a
    /// launch keeps the invariants, or refuses with a nearest layout that
    /// launches.
    #[test]
    fn launches_keep_their_invariants(
        l in arb_layout(),
        model in prop::sample::select(vec!["deepseek-v3", "qwen3-235b-a22b", "mixtral-8x7b"]),
        engine in prop::sample::select(ENGINES.to_vec()),
        target in prop::sample::select(Target::ALL.to_vec()),
        replicas in 1u32..4,
        version in 0usize..3,
    ) {
        let (m, g) = catalog(model, "h200-sxm");
        prop_assume!(l.check(&m, &g, 0).0.is_empty());
        let d = aggregated(model, "h200-sxm", l, 5 * l.dp as u64 + 3, engine);
        // Every version of the engine (an image of one's own for any other than Dynamo's).
        let tables = launch::flags::tables(engine);
        let mut req = request(&d, replicas, engine, target);
        req.engine_version = Some(tables[version % tables.len()].version.clone());
        req.image = Some("example.com/engine:tag".into());
        match launch::launch(&req) {
            Ok(out) => check_invariants(&out, &d, replicas),
            Err(LaunchError::Inexpressible { refusal, .. }) => {
                if let Some(n) = refusal.nearest {
                    prop_assert_eq!(n.gpus(), l.gpus());
                    let nd = aggregated(model, "h200-sxm", n, 8 * n.dp as u64, engine);
                    let mut again = request(&nd, replicas, engine, target);
                    again.engine_version = req.engine_version.clone();
                    let again = launch::launch(&again);
                    prop_assert!(!matches!(again, Err(LaunchError::Inexpressible { role: PoolRole::Aggregated, .. })), "{n} refused too");
                }
            }
            Err(LaunchError::TargetEngine { .. } | LaunchError::Target { .. }) => {
                prop_assert!(target == Target::LlmD)
            }
            Err(LaunchError::DoesNotFit { .. }) => {}
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}

/// vLLM cannot write EP 2 × ETP 4 on 8 GPUs: refused, with all-EP as the nearest.
#[test]
fn vllm_refuses_an_expert_folding_it_cannot_write() {
    let d = aggregated(
        "deepseek-v3",
        "h200-sxm",
        layout(1, 8, 1, 2, 4),
        32,
        Engine::Vllm,
    );
    match launch::launch(&request(&d, 1, Engine::Vllm, Target::Shell)) {
        Err(LaunchError::Inexpressible { refusal, .. }) => {
            assert_eq!(refusal.nearest, Some(layout(1, 8, 1, 8, 1)));
            assert!(
                refusal.rule.contains("--enable-expert-parallel"),
                "{}",
                refusal.rule
            );
        }
        other => panic!("{:?}", other.map(|l| l.gpus)),
    }
}

/// TensorRT-LLM's attention DP makes attention TP 1: tp2 × dp4 is refused,
/// tp1 × dp8 offered.
#[test]
fn trtllm_refuses_attention_dp_with_tp() {
    let d = aggregated(
        "deepseek-v3",
        "h200-sxm",
        layout(1, 2, 4, 8, 1),
        64,
        Engine::Trtllm,
    );
    match launch::launch(&request(&d, 1, Engine::Trtllm, Target::Shell)) {
        Err(LaunchError::Inexpressible { refusal, .. }) => {
            assert_eq!(refusal.nearest, Some(layout(1, 1, 8, 8, 1)))
        }
        other => panic!("{:?}", other.map(|l| l.gpus)),
    }
}

/// Requests beyond memory are not launched: DeepSeek-V3 on 8 H200 holds a
/// few hundred 2,500-token requests, not 100,000.
#[test]
fn a_plan_beyond_memory_is_not_launched() {
    let d = aggregated(
        "deepseek-v3",
        "h200-sxm",
        layout(1, 1, 8, 8, 1),
        100_000,
        Engine::Sglang,
    );
    assert!(matches!(
        launch::launch(&request(&d, 1, Engine::Sglang, Target::Shell)),
        Err(LaunchError::DoesNotFit { .. })
    ));
}

/// An engine version without a flag table is refused, not guessed, naming
/// the versions there are; a prefix names the newest of its releases.
#[test]
fn an_unknown_engine_version_is_refused() {
    let d = aggregated(
        "deepseek-v3",
        "h200-sxm",
        layout(1, 8, 1, 8, 1),
        32,
        Engine::Vllm,
    );
    let mut req = request(&d, 1, Engine::Vllm, Target::Shell);
    req.engine_version = Some("0.1.0".into());
    match launch::launch(&req) {
        Err(e @ LaunchError::UnknownVersion { .. }) => {
            assert!(
                e.to_string().ends_with("vllm 0.19.1, 0.14.1, 0.11.0"),
                "{e}"
            )
        }
        other => panic!("{:?}", other.map(|l| l.engine_version)),
    }
    for (asked, picked) in [
        ("0.11", "0.11.0"),
        ("v0.14.1", "0.14.1"),
        ("0.19.1", "0.19.1"),
    ] {
        req.engine_version = Some(asked.into());
        assert_eq!(launch::launch(&req).unwrap().engine_version, picked);
    }
    req.engine_version = None;
    assert_eq!(
        launch::launch(&req).unwrap().engine_version,
        "0.19.1",
        "the newest"
    );
}

/// Each engine's tables, newest first: vLLM's and SGLang's by release
/// number (0.5.10.post1 after 0.5.8), TensorRT-LLM's one from a branch,
/// marked as no release; every table names the engine and version of its file.
#[test]
fn flag_tables_are_one_per_engine_version() {
    let versions = |e: Engine| -> Vec<String> {
        launch::flags::tables(e)
            .iter()
            .map(|t| t.version.clone())
            .collect()
    };
    assert_eq!(versions(Engine::Vllm), ["0.19.1", "0.14.1", "0.11.0"]);
    assert_eq!(
        versions(Engine::Sglang),
        ["0.5.10.post1", "0.5.8", "0.4.9.post6"]
    );
    assert_eq!(versions(Engine::Trtllm), ["main"]);
    assert!(!launch::flags::tables(Engine::Trtllm)[0].release);
    for e in ENGINES {
        for t in launch::flags::tables(e) {
            assert_eq!(t.engine, e.name());
            assert!(
                t.commit.is_some() || t.wheel.is_some(),
                "{} {}",
                t.engine,
                t.version
            );
        }
    }
    // Dynamo 0.9.0 pins the engine releases its images run (ai-dynamo's METADATA).
    let bundles = &launch::flags::dynamo().bundles;
    assert_eq!(bundles.get("vllm").map(String::as_str), Some("0.14.1"));
    assert_eq!(bundles.get("sglang").map(String::as_str), Some("0.5.8"));
}

/// Older releases spell what moeplan writes differently, and each launch
/// writes its version's spelling (the flags are checked against that
/// version's table inside `launch`): vLLM 0.11.0 sets the all-to-all
/// backend as `VLLM_ALL2ALL_BACKEND`, lists its CUDA-graph sizes, and runs a
/// TP/PP group over nodes on Ray; SGLang 0.4.9.post6 has `--enable-deepep-moe`.
#[test]
fn older_versions_are_written_in_their_own_spelling() {
    let cases = [(Engine::Vllm, "0.11.0"), (Engine::Sglang, "0.4.9.post6")];
    for (engine, version) in cases {
        for (name, d, replicas) in references(engine) {
            for target in [Target::Shell, Target::Lws] {
                let mut req = request(&d, replicas, engine, target);
                req.engine_version = Some(version.into());
                let l = launch::launch(&req).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(l.engine_version, version);
                check_invariants(&l, &d, replicas);
                let snap = format!("{}-{version}-{}-{name}", engine.name(), target.name());
                insta::assert_snapshot!(snap, files_text(&l));
            }
        }
    }
    // The spellings, read from the commands.
    let disagg = |e: Engine, v: &str| {
        let (_, d, r) = references(e).pop().unwrap();
        let mut req = request(&d, r, e, Target::Shell);
        req.engine_version = Some(v.into());
        launch::launch(&req).unwrap().roles[1].nodes[0]
            .command
            .clone()
    };
    let old = disagg(Engine::Vllm, "0.11.0");
    assert!(
        old.starts_with("VLLM_ALL2ALL_BACKEND=deepep_low_latency vllm serve"),
        "{old}"
    );
    assert!(!old.contains("--all2all-backend") && old.contains("cudagraph_capture_sizes"));
    let new = disagg(Engine::Vllm, "0.19.1");
    assert!(new.contains("--all2all-backend deepep_low_latency") && !new.contains("VLLM_"));
    assert!(disagg(Engine::Sglang, "0.4.9").contains("--enable-deepep-moe"));
    assert!(disagg(Engine::Sglang, "0.5.10").contains("--moe-a2a-backend deepep"));
}

/// vLLM's CUDA-graph sizes before 0.11.1 follow its own default pattern
/// (1, 2, 4, then every 8) up to the planned requests per rank: 32 on TP8
/// with 32 requests gives 1, 2, 4, 8, 16, 24, 32.
#[test]
fn vllm_0_11_lists_its_graph_sizes_up_to_the_planned_batch() {
    let d = aggregated(
        "deepseek-v3",
        "h200-sxm",
        layout(1, 8, 1, 1, 8),
        32,
        Engine::Vllm,
    );
    let mut req = request(&d, 1, Engine::Vllm, Target::Shell);
    req.engine_version = Some("0.11.0".into());
    let l = launch::launch(&req).unwrap();
    let c = &l.roles[0].nodes[0].command;
    assert!(
        c.contains(r#"'{"cudagraph_capture_sizes":[1,2,4,8,16,24,32]}'"#),
        "{c}"
    );
}

/// SGLang 0.4.9.post6's own step default (8192 tokens from 35 GiB,
/// `engines/versions/sglang/0.4.9.post6.toml`) replaces the 0.5 preset's
/// 4096 on a 48 GiB GPU, where the plan kept the engine's default; a step
/// the plan set stays.
#[test]
fn a_versions_preset_sets_the_defaults_the_plan_kept() {
    let spec = Engine::Sglang.spec_at("0.4.9.post6");
    let gib48 = moeplan::units::Bytes::new(48.0 * 1024.0 * 1024.0 * 1024.0);
    assert_eq!(Engine::Sglang.config(gib48).max_step_tokens, 4096);
    assert_eq!(Engine::Sglang.config_of(spec, gib48).max_step_tokens, 8192);
    assert_eq!(spec.versions, "0.4.9.post6");
    // A version without a file is the engine's preset.
    assert!(std::ptr::eq(
        Engine::Sglang.spec_at("0.5.8"),
        Engine::Sglang.spec()
    ));
    let on_l40s = || {
        aggregated(
            "qwen3-30b-a3b",
            "l40s",
            layout(1, 2, 1, 1, 2),
            8,
            Engine::Sglang,
        )
    };
    let d = on_l40s();
    let step = |v: &str, d: &Deployment| {
        let mut req = request(d, 1, Engine::Sglang, Target::Shell);
        req.engine_version = Some(v.into());
        launch::launch(&req).unwrap().roles[0].settings.step_tokens
    };
    assert_eq!((step("0.5.10", &d), step("0.4.9", &d)), (4096, 8192));
    let mut set = on_l40s();
    if let Deployment::Aggregated(r) = &mut set {
        r.engine.max_step_tokens = 1024;
    }
    assert_eq!(step("0.4.9", &set), 1024);
}

/// Dynamo's images run the engine release Dynamo pins: its flags by
/// default, and another version only with an image of one's own.
#[test]
fn dynamo_checks_the_flags_of_the_engine_its_image_runs() {
    let (_, d, r) = references(Engine::Vllm).pop().unwrap();
    let mut req = request(&d, r, Engine::Vllm, Target::Dynamo);
    assert_eq!(launch::launch(&req).unwrap().engine_version, "0.14.1");
    req.engine_version = Some("0.19.1".into());
    match launch::launch(&req) {
        Err(e @ LaunchError::Target { .. }) => {
            assert!(e.to_string().contains("runs vllm 0.14.1"), "{e}")
        }
        other => panic!("{:?}", other.map(|l| l.engine_version)),
    }
    req.image = Some("example.com/vllm:0.19.1".into());
    assert_eq!(launch::launch(&req).unwrap().engine_version, "0.19.1");
}

/// Every TensorRT-LLM config key emitted is in the engine's table with a
/// value of its kind (the commands are checked inside `launch`).
#[test]
fn trtllm_configs_follow_the_flag_table() {
    let table = launch::flags::table(Engine::Trtllm).unwrap();
    for (name, d, replicas) in references(Engine::Trtllm) {
        let l = launch::launch(&request(&d, replicas, Engine::Trtllm, Target::Shell)).unwrap();
        for f in l.files.iter().filter(|f| f.path.starts_with("trtllm-")) {
            let v: Value = serde_saphyr::from_str(&f.content).unwrap();
            table
                .check_config(&v)
                .unwrap_or_else(|e| panic!("{name} {}: {e}", f.path));
        }
    }
}

/// `plan` with a stated engine searches only the layouts that engine can
/// express: every candidate of Qwen3-30B-A3B on 8 × H100 under TensorRT-LLM
/// and vLLM launches, and some layouts were ruled out for it.
#[test]
fn a_stated_engine_limits_the_search_to_what_it_can_run() {
    for engine in [Engine::Trtllm, Engine::Vllm] {
        let (m, g) = catalog("qwen3-30b-a3b", "h100-sxm");
        let mut s = Scenario::fixed("launch", m, g, 8, 2000, 500);
        s.engine = Some(engine);
        let r = moeplan::search::plan(&s, &moeplan::search::PlanOptions::default(), &|_, _| {});
        assert!(
            r.rejected.engine > 0,
            "{}: nothing ruled out",
            engine.name()
        );
        assert!(!r.candidates.is_empty());
        for c in &r.candidates {
            let plan = c.figures.as_plan(&s);
            for (key, pool) in plan.deployment.pools() {
                assert!(
                    launch::express::expressible(engine, &s.model, &pool.layout),
                    "{} {key}: {}",
                    engine.name(),
                    pool.layout
                );
            }
        }
    }
}

/// Redundant expert slots need EP: refused with the all-EP layout as the nearest.
#[test]
fn redundant_experts_without_ep_are_refused() {
    let mut d = aggregated(
        "deepseek-v3",
        "h200-sxm",
        layout(1, 8, 1, 1, 8),
        32,
        Engine::Sglang,
    );
    if let Deployment::Aggregated(r) = &mut d {
        r.redundant_experts = 32;
    }
    match launch::launch(&request(&d, 1, Engine::Sglang, Target::Shell)) {
        Err(LaunchError::Inexpressible { refusal, .. }) => {
            assert_eq!(refusal.nearest, Some(layout(1, 8, 1, 8, 1)))
        }
        other => panic!("{:?}", other.map(|l| l.gpus)),
    }
}

/// A Kubernetes target needs a real image: TensorRT-LLM's table, read from
/// unreleased source, names none, so --image is required.
#[test]
fn trtllm_on_kubernetes_needs_an_image() {
    let d = aggregated(
        "deepseek-v3",
        "h200-sxm",
        layout(1, 8, 1, 8, 1),
        32,
        Engine::Trtllm,
    );
    let mut req = request(&d, 1, Engine::Trtllm, Target::Lws);
    req.image = None;
    assert!(matches!(
        launch::launch(&req),
        Err(LaunchError::Target { .. })
    ));
    req.target = Target::Shell;
    assert!(launch::launch(&req).is_ok());
}

/// The tables catch a spelling of another release: vLLM 0.11.0 has no
/// `--all2all-backend` and no `max_cudagraph_capture_size` key, takes
/// `VLLM_ALL2ALL_BACKEND` only with one of its choices; 0.19.1 the reverse;
/// SGLang 0.4.9.post6 has no `--moe-a2a-backend`.
#[test]
fn each_versions_table_refuses_another_versions_spelling() {
    let vllm = |v: &str| launch::flags::select(Engine::Vllm, v).unwrap();
    let sglang = |v: &str| launch::flags::select(Engine::Sglang, v).unwrap();
    let flag = "vllm serve m --all2all-backend deepep_low_latency";
    assert!(vllm("0.11.0").check_command(flag).is_err());
    assert!(vllm("0.19.1").check_command(flag).is_ok());
    let env = "VLLM_ALL2ALL_BACKEND=deepep_low_latency vllm serve m";
    assert!(vllm("0.11.0").check_command(env).is_ok());
    assert!(vllm("0.19.1").check_command(env).is_err());
    assert!(vllm("0.11.0")
        .check_command("VLLM_ALL2ALL_BACKEND=deepep vllm serve m")
        .is_err());
    let graphs = r#"vllm serve m --compilation-config '{"max_cudagraph_capture_size":8}'"#;
    assert!(vllm("0.11.0").check_command(graphs).is_err());
    assert!(vllm("0.19.1").check_command(graphs).is_ok());
    let nnodes = "vllm serve m --nnodes 2";
    assert!(vllm("0.11.0").check_command(nnodes).is_err());
    assert!(vllm("0.14.1").check_command(nnodes).is_ok());
    let a2a = "python3 -m sglang.launch_server --moe-a2a-backend deepep";
    assert!(sglang("0.4.9.post6").check_command(a2a).is_err());
    assert!(sglang("0.5.8").check_command(a2a).is_ok());
    let deepep = "python3 -m sglang.launch_server --enable-deepep-moe";
    assert!(sglang("0.4.9.post6").check_command(deepep).is_ok());
    assert!(sglang("0.5.10.post1").check_command(deepep).is_err());
}

/// Dynamo's worker wrappers, read from ai-dynamo 0.9.0: the vLLM worker's
/// role switches, the TensorRT-LLM worker's config flag and its modes; a
/// flag of neither is refused.
#[test]
fn dynamo_wrapper_flags_come_from_its_release() {
    let t = launch::flags::dynamo();
    let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let lookup = |module: &'static str| move |n: &str| t.flag(&format!("{module} {n}"));
    assert!(t
        .check_flags(&w("--is-prefill-worker"), lookup("dynamo.vllm"))
        .is_ok());
    assert!(t
        .check_flags(
            &w("--extra-engine-args /c.yaml --disaggregation-mode decode"),
            lookup("dynamo.trtllm")
        )
        .is_ok());
    assert!(t
        .check_flags(&w("--disaggregation-mode both"), lookup("dynamo.trtllm"))
        .is_err());
    assert!(t
        .check_flags(&w("--is-prefill-worker"), lookup("dynamo.trtllm"))
        .is_err());
}

/// The drawn range `[low, high]` of one length that a benchmark client's
/// flags ask for: SGLang's `bench_serving` draws in
/// `[max(int(len × ratio), 1), len]`; vLLM's `vllm bench serve` in
/// `[floor(len × (1 − ratio)), ceil(len × (1 + ratio))]`; TensorRT-LLM's
/// `benchmark_serving` in `[int(len × (1 − ratio)), int(len × (1 + ratio))]`
/// (each client's dataset sampler).
fn drawn_range(engine: Engine, len: f64, ratio: f64) -> (f64, f64) {
    match engine {
        Engine::Sglang => ((len * ratio).floor().max(1.0), len),
        Engine::Vllm => ((len * (1.0 - ratio)).floor(), (len * (1.0 + ratio)).ceil()),
        Engine::Trtllm | Engine::Neutral => {
            ((len * (1.0 - ratio)).floor(), (len * (1.0 + ratio)).floor())
        }
    }
}

/// The value after `flag` in a command line.
fn flag_value(line: &str, flag: &str) -> f64 {
    let mut words = line.split_whitespace();
    words.find(|w| *w == flag);
    words
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{flag} with a number in {line}"))
}

/// Under InferenceMAX's client the benchmark a launch writes draws each
/// request's lengths as that client does ([0.8, 1] × 2,000 and × 500, to
/// within a token), sends 10 prompts per request in flight, and its
/// converter writes rows that read back as InferenceMAX runs, so that
/// `calibrate` fits them to that client's serving layer.
#[test]
fn the_benchmark_draws_lengths_as_the_predicted_client_does() {
    use moeplan::serving::Client;
    for engine in ENGINES {
        let mut d = aggregated("deepseek-v3", "h200-sxm", layout(1, 8, 1, 8, 1), 16, engine);
        let Deployment::Aggregated(r) = &mut d else {
            unreachable!()
        };
        r.workload.client = Client::InferenceMax;
        let l = launch::launch(&request(&d, 1, engine, Target::Shell)).unwrap();
        let file = |name: &str| {
            l.files
                .iter()
                .find(|f| f.path.ends_with(name))
                .map(|f| f.content.clone())
                .unwrap_or_else(|| panic!("{name} in {engine:?}'s launch"))
        };
        let script = file("bench.sh");
        let ratio = flag_value(&script, "--random-range-ratio");
        // 0.8 × 2,000 and 0.8 × 500: InferenceMAX's `--random-range-ratio 0.8`.
        for (flag, want) in [
            ("--random-input-len", (1600.0, 2000.0)),
            ("--random-output-len", (400.0, 500.0)),
        ] {
            let (low, high) = drawn_range(engine, flag_value(&script, flag), ratio);
            assert!(
                (low - want.0).abs() <= 1.0 && (high - want.1).abs() <= 1.0,
                "{engine:?} {flag}: draws [{low}, {high}], InferenceMAX [{}, {}]",
                want.0,
                want.1
            );
        }
        assert!(script.contains("$((CONC * 10))"), "{script}");
        // The converter's header and row, with a result's figures filled in.
        let converter = file("bench_to_csv.py");
        let quoted = |start: &str, end: &str| {
            let i = converter.find(start).expect("start") + start.len();
            let j = i + converter[i..].find(end).expect("end");
            converter[i..j].to_string()
        };
        let header = quoted("header = '", "'\n");
        let literal = quoted("for c in [", "]))");
        assert!(literal.contains(", 'inferencemax', "), "{literal}");
        let row = literal
            .replace("throughput", "1500.5")
            .replace("concurrency", "16")
            .replace("ttft", "250")
            .replace("tpot", "20")
            .replace(['\'', ' '], "");
        let runs = moeplan::runs::parse(
            "runs.csv",
            &format!("{header}\n{row}\n"),
            std::path::Path::new("."),
        )
        .unwrap_or_else(|e| panic!("{engine:?}: {e:?}\n{header}\n{row}"));
        assert_eq!(runs[0].client, Client::InferenceMax, "{engine:?}");
        // The plan's KV cache type and node size, and the client's throughput.
        assert_eq!(
            runs[0].kv_dtype,
            Some(moeplan::dtype::DType::Bf16),
            "{engine:?}"
        );
        assert_eq!(runs[0].gpus_per_node, Some(8), "{engine:?}");
        assert_eq!(
            runs[0].throughput.map(|t| t.value()),
            Some(1500.5),
            "{engine:?}"
        );
    }
}

/// The commands moeplan writes load a checkpoint as it is stored: a plan
/// that stores DeepSeek-V3's weights (FP8 as published) as NVFP4 is not
/// launched from that checkpoint, which would run FP8; the routed experts
/// are named first. Weights named by a Hugging Face id the catalog knows are
/// checked the same way; other named weights (a directory) are taken as
/// planned. A plan stored back to the checkpoint's own type launches from
/// it. Kimi-K2.5 (INT4 experts, BF16 dense layers as published) planned
/// as INT4, its own experts' type, is its checkpoint and launches; planned
/// as NVFP4 it is refused for its experts.
#[test]
fn a_plan_stored_otherwise_than_its_checkpoint_needs_named_weights() {
    use moeplan::dtype::DType;
    use moeplan::model::{Requantised, WeightGroup};
    let stored_as = |model: &str, types: &[DType]| {
        let mut d = aggregated(model, "b200", layout(1, 8, 1, 1, 8), 32, Engine::Vllm);
        if let Deployment::Aggregated(r) = &mut d {
            for w in types {
                r.model.store_weights(*w);
            }
        }
        d
    };
    let refusal = |d: &Deployment, weights: Weights| match launch::launch(&Request {
        weights,
        ..request(d, 1, Engine::Vllm, Target::Shell)
    }) {
        Err(LaunchError::Weights { requantised, .. }) => Some(requantised),
        Ok(_) => None,
        Err(e) => panic!("{e}"),
    };
    let checkpoint = |id: &str| Weights::Checkpoint(id.into());
    let nvfp4 = stored_as("deepseek-v3", &[DType::Nvfp4]);
    let experts = Some(Requantised {
        group: WeightGroup::Experts,
        checkpoint: DType::Fp8,
        planned: DType::Nvfp4,
    });
    assert_eq!(
        refusal(&nvfp4, checkpoint("deepseek-ai/DeepSeek-V3")),
        experts
    );
    let given = |id: &str| Weights::Given(id.into());
    assert_eq!(refusal(&nvfp4, given("deepseek-ai/DeepSeek-V3")), experts);
    assert_eq!(refusal(&nvfp4, given("/models/deepseek-v3-nvfp4")), None);
    let l = launch::launch(&Request {
        weights: given("/models/deepseek-v3-nvfp4"),
        ..request(&nvfp4, 1, Engine::Vllm, Target::Shell)
    })
    .unwrap();
    let command = &l.roles[0].nodes[0].command;
    assert!(
        command.starts_with("vllm serve /models/deepseek-v3-nvfp4 "),
        "{command}"
    );
    // The benchmark's row names the model as the catalog knows it, stored
    // as planned, so `calibrate` estimates the model the plan costed.
    let converter = &l
        .files
        .iter()
        .find(|f| f.path == "bench_to_csv.py")
        .unwrap()
        .content;
    assert!(
        converter.contains("['deepseek-ai/DeepSeek-V3', 'b200', 'vllm', '0.19.1', 'nvfp4', "),
        "{converter}"
    );
    let back = stored_as("deepseek-v3", &[DType::Nvfp4, DType::Fp8]);
    assert_eq!(refusal(&back, checkpoint("deepseek-ai/DeepSeek-V3")), None);
    let l = launch::launch(&request(&back, 1, Engine::Vllm, Target::Shell)).unwrap();
    let converter = &l
        .files
        .iter()
        .find(|f| f.path == "bench_to_csv.py")
        .unwrap();
    assert!(
        converter
            .content
            .contains("['deepseek-ai/DeepSeek-V3', 'b200', 'vllm', '0.19.1', '', "),
        "{}",
        converter.content
    );
    // Kimi-K2.5 stored as INT4, its own experts' type, is its checkpoint.
    let kimi = stored_as("kimi-k2.5", &[DType::Int4]);
    assert_eq!(refusal(&kimi, checkpoint("moonshotai/Kimi-K2.5")), None);
    // Stored as NVFP4 (dense layers BF16 -> FP8 too), the experts are named.
    let kimi = stored_as("kimi-k2.5", &[DType::Nvfp4]);
    assert_eq!(
        refusal(&kimi, checkpoint("moonshotai/Kimi-K2.5")),
        Some(Requantised {
            group: WeightGroup::Experts,
            checkpoint: DType::Int4,
            planned: DType::Nvfp4,
        })
    );
}

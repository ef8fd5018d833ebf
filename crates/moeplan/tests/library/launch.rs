//! `moeplan launch`: golden files of the four reference deployments for
//! every engine and target, and the invariants over valid layouts: pods
//! never ask for more GPUs than a node has and add up to the plan's GPUs,
//! the layout read back from the emitted flags is the plan's, and the
//! memory settings hold the planned requests.

use moeplan::engine::Engine;
use moeplan::launch::{self, Launch, LaunchError, Request, Target};
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
        calibration: moeplan::profile::resolve_disaggregated(&g, engine)
            .kernels
            .flat(None, None),
        prefill,
        decode,
        workload: Workload {
            isl: Tokens::new(2000),
            osl: Tokens::new(500),
            concurrency,
            cache_hit_rate: moeplan::units::Fraction::ZERO,
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
        model_path: "deepseek-ai/DeepSeek-V3".into(),
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
    ) {
        let (m, g) = catalog(model, "h200-sxm");
        prop_assume!(l.check(&m, &g, 0).0.is_empty());
        let d = aggregated(model, "h200-sxm", l, 5 * l.dp as u64 + 3, engine);
        match launch::launch(&request(&d, replicas, engine, target)) {
            Ok(out) => check_invariants(&out, &d, replicas),
            Err(LaunchError::Inexpressible { refusal, .. }) => {
                if let Some(n) = refusal.nearest {
                    prop_assert_eq!(n.gpus(), l.gpus());
                    let nd = aggregated(model, "h200-sxm", n, 8 * n.dp as u64, engine);
                    let again = launch::launch(&request(&nd, replicas, engine, target));
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

/// An engine version without a flag table is refused, not guessed.
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
    assert!(matches!(
        launch::launch(&req),
        Err(LaunchError::UnknownVersion { .. })
    ));
    let table = launch::flags::table(Engine::Vllm).unwrap();
    req.engine_version = Some(table.version.clone());
    assert!(launch::launch(&req).is_ok());
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

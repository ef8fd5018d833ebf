//! Kubernetes manifests: a LeaderWorkerSet and a Service per role (plain
//! Kubernetes), a DynamoGraphDeployment (NVIDIA Dynamo), or the values of
//! llm-d's modelservice chart. One pod runs one node of a replica and asks
//! for that node's GPUs; `size` / `nodeCount` is the replica's nodes.

use super::command::{port, trtllm_config_name, Rank};
use super::target::{node_line, trtllm_configs, CONFIG_MOUNT};
use super::{Ctx, Role, RolePlan};
use crate::engine::Engine;
use crate::replica::PoolRole;
use serde_json::{json, Value};

/// A DNS-1123 name for the deployment's objects.
pub(crate) fn base_name(ctx: &Ctx, plans: &[RolePlan]) -> String {
    let model = plans.first().map_or("model", |p| p.model.name.as_str());
    let raw = format!(
        "{}-{}",
        model.rsplit('/').next().unwrap_or(model),
        ctx.engine.name()
    );
    let mut name: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(40);
    name.trim_matches('-').to_string()
}

/// The container image: the one asked for, else each engine's release
/// image at `version`.
pub(crate) fn image(ctx: &Ctx) -> String {
    if let Some(i) = ctx.image {
        return i.to_string();
    }
    let version = ctx.version;
    match ctx.engine {
        Engine::Vllm => format!("vllm/vllm-openai:v{version}"),
        Engine::Sglang => format!("lmsysorg/sglang:v{version}"),
        Engine::Trtllm => format!("nvcr.io/nvidia/tensorrt-llm/release:{version}"),
        Engine::Neutral => String::new(),
    }
}

/// A pod spec running `line` with `gpus` GPUs, shared memory and the configs.
fn pod(ctx: &Ctx, name: &str, line: String, gpus: u32) -> Value {
    let mut mounts = vec![json!({"name": "dshm", "mountPath": "/dev/shm"})];
    let mut volumes = vec![json!({"name": "dshm", "emptyDir": {"medium": "Memory"}})];
    if ctx.engine == Engine::Trtllm {
        mounts.push(json!({"name": "config", "mountPath": CONFIG_MOUNT}));
        volumes.push(json!({"name": "config", "configMap": {"name": format!("{name}-config")}}));
    }
    json!({
        "containers": [{
            "name": "engine",
            "image": image(ctx),
            "command": ["/bin/sh", "-c"],
            "args": [line],
            "ports": [{"containerPort": port(ctx.engine)}],
            "resources": {"limits": {"nvidia.com/gpu": gpus}},
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    })
}

/// A LeaderWorkerSet and its Service per role, the TensorRT-LLM configs,
/// and (disaggregated SGLang or TensorRT-LLM) the router.
pub(crate) fn lws(ctx: &Ctx, plans: &[RolePlan], roles: &[Role]) -> Value {
    let name = base_name(ctx, plans);
    let mut docs = Vec::new();
    if ctx.engine == Engine::Trtllm {
        docs.push(config_map(&name, plans));
    }
    for (p, r) in plans.iter().zip(roles) {
        let set = format!("{name}-{}", r.role.name());
        let env = "export NODE_RANK=${LWS_WORKER_INDEX:-0} LEADER_ADDR=$LWS_LEADER_ADDRESS";
        let mpi = mpi_hosts(ctx, p);
        let leader = format!("{env}{mpi}; {}", node_line(ctx, p, Rank::Fixed(0)));
        let gpus = p.split.gpus_per_node;
        let mut template = json!({
            "size": p.split.nodes,
            "restartPolicy": "RecreateGroupOnPodRestart",
            "workerTemplate": {"spec": pod(ctx, &name, leader.clone(), gpus)},
        });
        if p.split.nodes > 1 {
            let worker = format!("{env}; {}", node_line(ctx, p, Rank::Worker));
            template["leaderTemplate"] = json!({"spec": pod(ctx, &name, leader, gpus)});
            template["workerTemplate"] = json!({"spec": pod(ctx, &name, worker, gpus)});
        }
        docs.push(json!({
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "metadata": {"name": set},
            "spec": {"replicas": r.replicas, "startupPolicy": "LeaderCreated", "leaderWorkerTemplate": template},
        }));
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": format!("{set}-leader")},
            "spec": {
                "selector": {"leaderworkerset.sigs.k8s.io/name": set, "leaderworkerset.sigs.k8s.io/worker-index": "0"},
                "ports": [{"port": port(ctx.engine), "targetPort": port(ctx.engine)}],
            },
        }));
    }
    if let Some(router) = lws_router(ctx, &name, roles) {
        docs.push(router);
    }
    Value::Array(docs)
}

/// TensorRT-LLM over several nodes: the hosts mpirun starts ranks on, from
/// the leader's address (LWS names worker `i` of a group `<group>-<i>`).
fn mpi_hosts(ctx: &Ctx, p: &RolePlan) -> String {
    if ctx.engine != Engine::Trtllm || p.split.nodes < 2 {
        return String::new();
    }
    let n = p.split.gpus_per_node;
    format!(
        "; G=${{LWS_LEADER_ADDRESS%%.*}}; D=${{LWS_LEADER_ADDRESS#*.}}; MPI_HOSTS=$LWS_LEADER_ADDRESS:{n}; for i in $(seq 1 $((LWS_GROUP_SIZE - 1))); do MPI_HOSTS=$MPI_HOSTS,$G-$i.$D:{n}; done; export MPI_HOSTS"
    )
}

/// The ConfigMap of TensorRT-LLM's YAML configs.
fn config_map(name: &str, plans: &[RolePlan]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-config")},
        "data": trtllm_configs(plans),
    })
}

/// The router Deployment of a disaggregated plan (SGLang, TensorRT-LLM),
/// pointed at every worker's leader pod (`<set>-<i>.<set>`).
fn lws_router(ctx: &Ctx, name: &str, roles: &[Role]) -> Option<Value> {
    let hosts = |role: PoolRole| {
        let r = roles.iter().find(|r| r.role == role)?;
        let set = format!("{name}-{}", role.name());
        Some(
            (0..r.replicas)
                .map(|i| format!("{set}-{i}.{set}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
    };
    let (prefill, decode) = (hosts(PoolRole::Prefill)?, hosts(PoolRole::Decode)?);
    let script = super::target::router_script(ctx)?;
    Some(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": format!("{name}-router")},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": format!("{name}-router")}},
            "template": {
                "metadata": {"labels": {"app": format!("{name}-router")}},
                "spec": {"containers": [{
                    "name": "router",
                    "image": image(ctx),
                    "command": ["/bin/bash", "-c"],
                    "args": [script],
                    "env": [{"name": "PREFILL_HOSTS", "value": prefill}, {"name": "DECODE_HOSTS", "value": decode}],
                    "ports": [{"containerPort": 8000}],
                }]},
            },
        },
    }))
}

/// Flags a wrapper sets itself: where the server listens and how the
/// ranks of a multi-node replica find each other (Dynamo's operator and
/// llm-d's chart write those).
const WRAPPER_SETS: [&str; 12] = [
    "--host",
    "--port",
    "--model-path",
    "--nnodes",
    "--node-rank",
    "--dist-init-addr",
    "--master-addr",
    "--master-port",
    "--data-parallel-address",
    "--data-parallel-rpc-port",
    "--data-parallel-start-rank",
    "--data-parallel-size-local",
];

/// The engine's flags of a role (leader's command) after the program and
/// the model, without `skip` and those a wrapper sets, and the variables
/// assigned to the program: what Dynamo's and llm-d's wrappers take.
fn engine_args(ctx: &Ctx, p: &RolePlan, skip: &[&str]) -> (Vec<String>, Vec<Value>) {
    let words = super::command::words(ctx, p, Rank::Fixed(0));
    let (program, start) = super::flags::entry_point(&words).unwrap_or((0, words.len()));
    let env = words[..program]
        .iter()
        .rev()
        .take_while(|w| super::command::is_assignment(w))
        .filter_map(|w| w.split_once('='))
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let mut out = Vec::new();
    let mut i = start;
    while i < words.len() {
        let w = &words[i];
        let takes_value = words.get(i + 1).is_some_and(|v| !v.starts_with("--"));
        if !skip.contains(&w.as_str()) && !WRAPPER_SETS.contains(&w.as_str()) {
            out.push(w.clone());
            if takes_value {
                out.push(words[i + 1].clone());
            }
        }
        i += if takes_value { 2 } else { 1 };
    }
    (out, env)
}

/// Dynamo's worker of a role: `python3 -m dynamo.<engine>` with the
/// engine's flags (TensorRT-LLM: its YAML), marked prefill or decode as
/// each wrapper expects, and the variables the engine reads. The operator
/// adds the multi-node flags.
fn dynamo_worker(ctx: &Ctx, p: &RolePlan) -> (String, Vec<String>, Vec<Value>) {
    let model = ctx.model_path.to_string();
    let (mut args, env) = match ctx.engine {
        Engine::Trtllm => (
            vec![
                "--model-path".to_string(),
                model,
                "--extra-engine-args".into(),
                format!("{CONFIG_MOUNT}/{}", trtllm_config_name(p.role)),
            ],
            Vec::new(),
        ),
        Engine::Vllm => {
            let (rest, env) = engine_args(ctx, p, &["--kv-transfer-config"]);
            (
                ["--model".to_string(), model]
                    .into_iter()
                    .chain(rest)
                    .collect(),
                env,
            )
        }
        Engine::Sglang | Engine::Neutral => {
            let (rest, env) = engine_args(ctx, p, &["--disaggregation-mode"]);
            (
                ["--model-path".to_string(), model]
                    .into_iter()
                    .chain(rest)
                    .collect(),
                env,
            )
        }
    };
    match (ctx.engine, p.role) {
        (_, PoolRole::Aggregated) => {}
        (Engine::Vllm, PoolRole::Prefill) => args.push("--is-prefill-worker".into()),
        (Engine::Vllm, PoolRole::Decode) => args.push("--is-decode-worker".into()),
        (
            Engine::Sglang | Engine::Trtllm | Engine::Neutral,
            role @ (PoolRole::Prefill | PoolRole::Decode),
        ) => args.extend(["--disaggregation-mode".to_string(), role.name().to_string()]),
    }
    (format!("dynamo.{}", ctx.engine.name()), args, env)
}

/// Every flag of a role's Dynamo worker is the wrapper's own
/// (`engines/flags/dynamo/`, read from the ai-dynamo release) or, for the
/// vLLM and SGLang wrappers, which pass the rest to their engine, the
/// engine's; every variable is the engine's.
pub(crate) fn check_dynamo_worker(ctx: &Ctx, p: &RolePlan) -> Result<(), String> {
    let (module, args, env) = dynamo_worker(ctx, p);
    let wrapper = super::flags::dynamo();
    let passes_on = matches!(ctx.engine, Engine::Vllm | Engine::Sglang);
    wrapper.check_flags(&args, |name| {
        wrapper
            .flag(&format!("{module} {name}"))
            .or_else(|| passes_on.then(|| ctx.table.flag(name)).flatten())
    })?;
    for v in env {
        let (name, value) = (v["name"].as_str().unwrap_or(""), &v["value"]);
        let var = ctx.table.env(name).ok_or_else(|| {
            format!(
                "{name} is not a variable of {} {}",
                ctx.engine.name(),
                ctx.version
            )
        })?;
        if var.kind == super::flags::Kind::Choice && !var.choices.iter().any(|c| value == c) {
            return Err(format!(
                "{name} = {value} is not one of {}",
                var.choices.join(", ")
            ));
        }
    }
    Ok(())
}

/// One DynamoGraphDeployment: the frontend and a worker service per role.
pub(crate) fn dynamo(ctx: &Ctx, plans: &[RolePlan], roles: &[Role]) -> Value {
    let name = base_name(ctx, plans);
    let runtime = match ctx.engine {
        Engine::Trtllm => "tensorrtllm",
        Engine::Vllm | Engine::Sglang | Engine::Neutral => ctx.engine.name(),
    };
    let img = ctx.image.map(String::from).unwrap_or_else(|| {
        format!(
            "nvcr.io/nvidia/ai-dynamo/{runtime}-runtime:{}",
            super::DYNAMO_VERSION
        )
    });
    let mut services = serde_json::Map::new();
    services.insert("Frontend".into(), json!({
        "componentType": "frontend",
        "replicas": 1,
        "extraPodSpec": {"mainContainer": {"image": img, "command": ["python3", "-m", "dynamo.frontend"], "args": ["--http-port", "8000"]}},
    }));
    for (p, r) in plans.iter().zip(roles) {
        let (module, args, env) = dynamo_worker(ctx, p);
        let mut svc = json!({
            "componentType": "worker",
            "replicas": r.replicas,
            "resources": {"limits": {"gpu": p.split.gpus_per_node.to_string()}},
            "extraPodSpec": {"mainContainer": {"image": img, "command": ["python3", "-m", module], "args": args}},
        });
        if !env.is_empty() {
            svc["extraPodSpec"]["mainContainer"]["env"] = Value::Array(env);
        }
        if p.role != PoolRole::Aggregated {
            svc["subComponentType"] = json!(p.role.name());
        }
        if p.split.nodes > 1 {
            svc["multinode"] = json!({"nodeCount": p.split.nodes});
        }
        if ctx.engine == Engine::Trtllm {
            svc["extraPodSpec"]["volumes"] =
                json!([{"name": "config", "configMap": {"name": format!("{name}-config")}}]);
            svc["extraPodSpec"]["mainContainer"]["volumeMounts"] =
                json!([{"name": "config", "mountPath": CONFIG_MOUNT}]);
        }
        let key = match p.role {
            PoolRole::Aggregated => "Worker",
            PoolRole::Prefill => "PrefillWorker",
            PoolRole::Decode => "DecodeWorker",
        };
        services.insert(key.into(), svc);
    }
    let mut docs = Vec::new();
    if ctx.engine == Engine::Trtllm {
        docs.push(config_map(&name, plans));
    }
    docs.push(json!({
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": name},
        "spec": {"backendFramework": ctx.engine.name(), "services": services},
    }));
    Value::Array(docs)
}

/// Flags llm-d's chart writes from `parallelism` (`modelCommand: vllmServe`).
const LLM_D_SETS: [&str; 2] = ["--tensor-parallel-size", "--data-parallel-size"];

/// llm-d modelservice values: the model, then a decode (and prefill)
/// section with its replicas, parallelism, vLLM arguments and GPUs per pod.
pub(crate) fn llm_d(ctx: &Ctx, plans: &[RolePlan], roles: &[Role]) -> Value {
    let mut values = json!({
        "modelArtifacts": {"uri": format!("hf://{}", ctx.model_path), "name": ctx.model_path},
        "routing": {"servicePort": 8000, "proxy": {"enabled": plans.len() > 1}},
        "prefill": {"create": false},
    });
    for (p, r) in plans.iter().zip(roles) {
        let l = &p.layout;
        let key = match p.role {
            PoolRole::Aggregated | PoolRole::Decode => "decode",
            PoolRole::Prefill => "prefill",
        };
        let dp_local = if p.split.dp_local > 0 {
            p.split.dp_local
        } else {
            l.dp
        };
        let gpus = p.split.gpus_per_node.to_string();
        let (args, env) = engine_args(ctx, p, &LLM_D_SETS);
        let mut section = json!({
            "create": true,
            "replicas": r.replicas,
            "parallelism": {"tensor": l.tp, "data": l.dp, "dataLocal": dp_local, "workers": p.split.nodes},
            "containers": [{
                "name": "vllm",
                "image": image(ctx),
                "modelCommand": "vllmServe",
                "args": args,
                "resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}},
            }],
        });
        if !env.is_empty() {
            section["containers"][0]["env"] = Value::Array(env);
        }
        values[key] = section;
    }
    // The chart's switch for every role: each becomes a LeaderWorkerSet of `workers` pods.
    values["multinode"] = json!(plans.iter().any(|p| p.split.nodes > 1));
    values
}

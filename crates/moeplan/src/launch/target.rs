//! The files of each target: shell scripts, a LeaderWorkerSet per role,
//! a DynamoGraphDeployment, or llm-d modelservice values; the engine
//! configs and the benchmark beside them. Pods ask for the GPUs of one node
//! of a replica at most, and add up to the plan's GPUs.

use super::command::{self, port, render, trtllm_config, trtllm_config_name, Rank};
use super::{bench, Ctx, File, Request, Role, RolePlan, Target};
use crate::engine::Engine;
use crate::replica::PoolRole;
use serde_json::{json, Value};

/// Where Kubernetes pods find the engine configs (a ConfigMap).
pub(crate) const CONFIG_MOUNT: &str = "/etc/moeplan";

/// The KV cache transceiver of a disaggregated TensorRT-LLM deployment.
pub(crate) const TRTLLM_TRANSCEIVER: &str = "DEFAULT";

/// Every file of the launch.
pub(crate) fn files(ctx: &Ctx, plans: &[RolePlan], roles: &[Role], req: &Request) -> Vec<File> {
    let mut files = match ctx.target {
        Target::Shell => shell(ctx, plans, roles),
        Target::Lws => vec![yaml_file("lws.yaml", &super::k8s::lws(ctx, plans, roles))],
        Target::Dynamo => vec![yaml_file(
            "dynamo.yaml",
            &super::k8s::dynamo(ctx, plans, roles),
        )],
        Target::LlmD => vec![yaml_file(
            "llm-d-values.yaml",
            &super::k8s::llm_d(ctx, plans, roles),
        )],
    };
    if ctx.engine == Engine::Trtllm && ctx.target == Target::Shell {
        for p in plans {
            files.push(yaml_file(
                &trtllm_config_name(p.role),
                &trtllm_config(p, TRTLLM_TRANSCEIVER),
            ));
        }
    }
    files.extend(bench::files(ctx, plans, req));
    files
}

/// A file holding `v` as YAML.
pub(crate) fn yaml_file(path: &str, v: &Value) -> File {
    File {
        path: path.into(),
        content: to_yaml(v),
    }
}

/// `v` as YAML (documents of a list separated by `---`).
pub(crate) fn to_yaml(v: &Value) -> String {
    match v {
        Value::Array(docs) if docs.iter().all(|d| d.get("kind").is_some()) => docs
            .iter()
            .map(|d| serde_saphyr::to_string(d).expect("JSON values serialise"))
            .collect::<Vec<_>>()
            .join("---\n"),
        _ => serde_saphyr::to_string(v).expect("JSON values serialise"),
    }
}

/// The TensorRT-LLM configs of every role, by file name (Kubernetes ConfigMap data).
pub(crate) fn trtllm_configs(plans: &[RolePlan]) -> Value {
    let mut data = serde_json::Map::new();
    for p in plans {
        data.insert(
            trtllm_config_name(p.role),
            json!(to_yaml(&trtllm_config(p, TRTLLM_TRANSCEIVER))),
        );
    }
    Value::Object(data)
}

/// One script per role (`NODE_RANK` selects the node's command) and, when
/// disaggregated, the router's.
fn shell(ctx: &Ctx, plans: &[RolePlan], roles: &[Role]) -> Vec<File> {
    let mut files: Vec<File> = plans
        .iter()
        .zip(roles)
        .map(|(p, r)| File {
            path: format!("{}.sh", r.role.name()),
            content: role_script(ctx, p, r),
        })
        .collect();
    if let Some(router) = router_script(ctx) {
        if plans.len() == 2 {
            files.push(File {
                path: "router.sh".into(),
                content: router,
            });
        }
    }
    files
}

/// The script of one role.
fn role_script(ctx: &Ctx, p: &RolePlan, r: &Role) -> String {
    let mut s = String::from("#!/usr/bin/env bash\n");
    s += &format!(
        "# moeplan launch: {} {} on {}, {} {}.\n# {} replica(s) of {} ({} GPUs each, {} node(s) of {} GPUs).\n",
        r.role.name(),
        p.model.name,
        p.gpu.id,
        ctx.engine.name(),
        ctx.version,
        r.replicas,
        r.layout,
        r.gpus_per_replica,
        p.split.nodes,
        p.split.gpus_per_node
    );
    if p.split.nodes > 1 {
        s += "# Run on every node of a replica: NODE_RANK=<0..> LEADER_ADDR=<node 0's address> ./this.sh\n";
    } else if p.split.gpus_per_node < p.gpu.gpus_per_node {
        s += &format!(
            "# A replica uses {} of a node's {} GPUs: start each with its own CUDA_VISIBLE_DEVICES and PORT.\n",
            p.split.gpus_per_node, p.gpu.gpus_per_node
        );
    }
    s += "set -euo pipefail\nNODE_RANK=${NODE_RANK:-0}\n";
    if p.split.nodes > 1 {
        s += ": \"${LEADER_ADDR:?set LEADER_ADDR to the address of node 0 of this replica}\"\n";
        if ctx.engine == Engine::Trtllm {
            s += &format!(": \"${{MPI_HOSTS:?set MPI_HOSTS to host0:{n},host1:{n},... (passwordless ssh to each)}}\"\n", n = p.split.gpus_per_node);
        }
    }
    s += "case \"$NODE_RANK\" in\n";
    let default_port = format!("--port {}", port(ctx.engine));
    for n in &r.nodes {
        let line = render(&command::exec(&command::words(
            ctx,
            p,
            Rank::Fixed(n.node_rank),
        )));
        let cmd = line.replace(
            &default_port,
            &format!("--port ${{PORT:-{}}}", port(ctx.engine)),
        );
        s += &format!("  {}) {} ;;\n", n.node_rank, cmd);
    }
    s += &format!(
        "  *) echo \"NODE_RANK must be 0..{}\" >&2; exit 2 ;;\nesac\n",
        r.nodes.len() - 1
    );
    s
}

/// The prefill/decode router: SGLang's router, or TensorRT-LLM's
/// `trtllm-serve disaggregated`, over the workers in `$PREFILL_HOSTS` and
/// `$DECODE_HOSTS`. vLLM has none of its own.
pub(crate) fn router_script(ctx: &Ctx) -> Option<String> {
    let p = port(ctx.engine);
    let head = "#!/usr/bin/env bash\n# The prefill/decode router: PREFILL_HOSTS and DECODE_HOSTS list the workers' node-0 addresses.\nset -euo pipefail\n: \"${PREFILL_HOSTS:?}\" \"${DECODE_HOSTS:?}\"\n";
    match ctx.engine {
        Engine::Sglang => Some(format!(
            "{head}args=()\nfor h in $PREFILL_HOSTS; do args+=(--prefill \"http://$h:{p}\"); done\nfor h in $DECODE_HOSTS; do args+=(--decode \"http://$h:{p}\"); done\nexec python3 -m sglang_router.launch_router --pd-disaggregation \"${{args[@]}}\" --host 0.0.0.0 --port ${{ROUTER_PORT:-8000}}\n"
        )),
        Engine::Trtllm => Some(format!(
            "{head}urls() {{ for h in $1; do echo \"    - $h:{p}\"; done; }}\ncat > disagg.yaml <<EOF\nhostname: 0.0.0.0\nport: ${{ROUTER_PORT:-8000}}\nbackend: pytorch\ncontext_servers:\n  num_instances: $(wc -w <<< \"$PREFILL_HOSTS\")\n  urls:\n$(urls \"$PREFILL_HOSTS\")\ngeneration_servers:\n  num_instances: $(wc -w <<< \"$DECODE_HOSTS\")\n  urls:\n$(urls \"$DECODE_HOSTS\")\nEOF\nexec trtllm-serve disaggregated -c disagg.yaml\n"
        )),
        Engine::Vllm | Engine::Neutral => None,
    }
}

/// What to know before running the files.
pub(crate) fn notes(ctx: &Ctx, plans: &[RolePlan]) -> Vec<String> {
    let mut notes = vec![format!(
        "flags checked against {} {} (engines/flags/{}/{}.toml, read from {})",
        ctx.engine.name(),
        ctx.version,
        ctx.engine.name(),
        ctx.version,
        if ctx.table.release {
            "its released source"
        } else {
            "unreleased source"
        }
    )];
    if ctx.target == Target::Dynamo {
        notes.push(format!(
            "Dynamo {} runtime images bundle their own engine release; the flags were checked against {} {}",
            super::DYNAMO_VERSION,
            ctx.engine.name(),
            ctx.version
        ));
    }
    let disaggregated = plans.iter().any(|p| p.role != PoolRole::Aggregated);
    if disaggregated
        && ctx.engine == Engine::Vllm
        && matches!(ctx.target, Target::Shell | Target::Lws)
    {
        notes.push("vLLM has no prefill/decode router of its own: put one in front (the dynamo and llm-d targets include theirs)".into());
    }
    if plans.iter().any(|p| command::vllm_on_ray(ctx, p)) {
        notes.push(format!("vLLM {} has no --nnodes: a TP/PP group over nodes runs on a Ray cluster (node 0 starts its head and `vllm serve`, which waits for the other nodes to join as Ray workers)", ctx.version));
    }
    if plans
        .iter()
        .any(|p| p.split.nodes > 1 && ctx.engine == Engine::Trtllm)
    {
        notes.push("TensorRT-LLM over several nodes: node 0 starts every rank with mpirun over ssh; the other nodes run sshd".into());
    }
    for p in plans {
        notes.push(format!(
            "{}: memory settings hold {} requests of up to {} tokens per replica ({} per attention-DP rank)",
            p.role.name(),
            p.settings.concurrency,
            p.settings.max_context,
            p.settings.max_running_per_rank
        ));
    }
    notes
}

/// The command of a role's leader (rank 0) or of its workers (any other
/// rank, read from `$NODE_RANK`), as one shell line that `exec`s the engine.
pub(crate) fn node_line(ctx: &Ctx, p: &RolePlan, rank: Rank) -> String {
    render(&command::exec(&command::words(ctx, p, rank)))
}

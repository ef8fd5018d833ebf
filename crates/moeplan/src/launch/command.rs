//! The engine command of each node of a role, and TensorRT-LLM's YAML
//! config: the layout in the engine's own degrees (`express.rs` has the
//! rules), the memory settings of `Settings`, the disaggregation connector
//! and, over several nodes, the rank and leader address.

use super::{Ctx, Node, Role, RolePlan};
use crate::dtype::DType;
use crate::engine::Engine;
use crate::replica::PoolRole;
use serde_json::{json, Value};

/// The port each engine's server listens on.
pub(crate) fn port(engine: Engine) -> u16 {
    match engine {
        Engine::Sglang => 30000,
        Engine::Vllm | Engine::Trtllm | Engine::Neutral => 8000,
    }
}

/// Which node a command is for: a fixed rank, or the rank a Kubernetes
/// worker pod reads from `$NODE_RANK` (one template for every worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rank {
    /// This node rank.
    Fixed(u32),
    /// Any worker (rank ≥ 1), from `$NODE_RANK`.
    Worker,
}

impl Rank {
    fn leads(self) -> bool {
        self == Rank::Fixed(0)
    }

    /// The rank as a word, or a shell product of it (`$((NODE_RANK * k))`).
    fn times(self, k: u32) -> String {
        match self {
            Rank::Fixed(r) => (r * k).to_string(),
            Rank::Worker if k == 1 => "$NODE_RANK".into(),
            Rank::Worker => format!("$((NODE_RANK * {k}))"),
        }
    }
}

/// A role with the command of every node of one replica.
pub(crate) fn role(ctx: &Ctx, r: &RolePlan) -> Role {
    Role {
        role: r.role,
        replicas: r.replicas,
        layout: r.layout,
        gpus_per_replica: r.layout.gpus(),
        settings: r.settings.clone(),
        nodes: (0..r.split.nodes)
            .map(|n| Node {
                node_rank: n,
                gpus: r.split.gpus_per_node,
                command: render(&words(ctx, r, Rank::Fixed(n))),
            })
            .collect(),
    }
}

/// The command of one node, as words.
pub(crate) fn words(ctx: &Ctx, r: &RolePlan, rank: Rank) -> Vec<String> {
    match ctx.engine {
        Engine::Vllm => vllm(ctx, r, rank),
        Engine::Sglang => sglang(ctx, r, rank),
        Engine::Trtllm => trtllm(ctx, r, rank),
        Engine::Neutral => Vec::new(),
    }
}

/// A command's words with `exec` before its last program (after any `&&`
/// and the variables assigned to it), so a script's shell becomes the engine.
pub(crate) fn exec(words: &[String]) -> Vec<String> {
    let after = words.iter().rposition(|w| w == "&&").map_or(0, |i| i + 1);
    let program = after
        + words[after..]
            .iter()
            .take_while(|w| is_assignment(w))
            .count();
    let mut out = words.to_vec();
    out.insert(program, "exec".into());
    out
}

/// `NAME=value`: a variable for the program that follows.
pub(crate) fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// Words joined by spaces; a word with characters the shell would read is
/// single-quoted (placeholders such as `$LEADER_ADDR` and `&&` stay bare).
pub(crate) fn render(words: &[String]) -> String {
    let plain = |w: &str| {
        w.starts_with('$')
            || w == "&&"
            || !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./:=,@%+-".contains(c))
    };
    words
        .iter()
        .map(|w| {
            if plain(w) {
                w.clone()
            } else {
                format!("'{w}'")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Appends `flag value`.
fn arg(a: &mut Vec<String>, flag: &str, value: impl ToString) {
    a.push(flag.into());
    a.push(value.to_string());
}

fn is_moe(r: &RolePlan) -> bool {
    r.model.moe.is_some()
}

/// Whether vLLM runs a TP/PP group over nodes on a Ray cluster: releases
/// before 0.11.1 have no `--nnodes`.
pub(crate) fn vllm_on_ray(ctx: &Ctx, r: &RolePlan) -> bool {
    ctx.engine == Engine::Vllm
        && r.split.nodes > 1
        && r.split.dp_local == 0
        && ctx.table.flag("--nnodes").is_none()
}

/// `vllm serve`: GPUs = TP × DP × PP, EP implied by `--enable-expert-parallel`.
/// The all-to-all backend is a flag from 0.11.1, `VLLM_ALL2ALL_BACKEND` before.
fn vllm(ctx: &Ctx, r: &RolePlan, rank: Rank) -> Vec<String> {
    let (l, s) = (&r.layout, &r.settings);
    if vllm_on_ray(ctx, r) && !rank.leads() {
        // A Ray worker node: the leader's `vllm serve` places its ranks here.
        return ["ray", "start", "--block", "--address", "$LEADER_ADDR:6379"]
            .map(String::from)
            .to_vec();
    }
    let mut env: Vec<String> = Vec::new();
    let mut a: Vec<String> = vec!["vllm".into(), "serve".into(), ctx.model_path.into()];
    arg(&mut a, "--host", "0.0.0.0");
    arg(&mut a, "--port", port(Engine::Vllm));
    arg(&mut a, "--tensor-parallel-size", l.tp);
    arg(&mut a, "--pipeline-parallel-size", l.pp);
    arg(&mut a, "--data-parallel-size", l.dp);
    if is_moe(r) && l.ep > 1 {
        a.push("--enable-expert-parallel".into());
        if r.disaggregated {
            let backend = match r.role {
                PoolRole::Prefill => "deepep_high_throughput",
                PoolRole::Decode | PoolRole::Aggregated => "deepep_low_latency",
            };
            if ctx.table.flag("--all2all-backend").is_some() {
                arg(&mut a, "--all2all-backend", backend);
            } else {
                env.push(format!("VLLM_ALL2ALL_BACKEND={backend}"));
            }
        }
    }
    if s.redundant_experts > 0 {
        a.push("--enable-eplb".into());
        arg(
            &mut a,
            "--eplb-config",
            json!({"num_redundant_experts": s.redundant_experts}),
        );
    }
    arg(&mut a, "--gpu-memory-utilization", s.memory_fraction);
    arg(&mut a, "--max-num-seqs", s.max_running_per_rank);
    arg(&mut a, "--max-num-batched-tokens", s.step_tokens);
    arg(&mut a, "--max-model-len", s.max_context);
    if s.kv_cache_dtype == DType::Fp8 {
        arg(&mut a, "--kv-cache-dtype", "fp8");
    }
    arg(
        &mut a,
        "--compilation-config",
        vllm_graphs(ctx, s.cuda_graph_max_batch),
    );
    if r.disaggregated {
        arg(
            &mut a,
            "--kv-transfer-config",
            json!({"kv_connector": "NixlConnector", "kv_role": "kv_both"}),
        );
    }
    if vllm_on_ray(ctx, r) {
        arg(&mut a, "--distributed-executor-backend", "ray");
        let head = ["ray", "start", "--head", "--port=6379", "&&"].map(String::from);
        return head.into_iter().chain(env).chain(a).collect();
    }
    if r.split.nodes > 1 {
        vllm_nodes(&mut a, r, rank);
    }
    env.into_iter().chain(a).collect()
}

/// vLLM's CUDA graphs up to `max` tokens: `max_cudagraph_capture_size`
/// from 0.11.1; before, the sizes themselves, vLLM's own pattern (1, 2, 4,
/// then every 8) up to `max`.
fn vllm_graphs(ctx: &Ctx, max: u64) -> Value {
    if ctx
        .table
        .takes_field("--compilation-config", "max_cudagraph_capture_size")
    {
        return json!({"max_cudagraph_capture_size": max});
    }
    let mut sizes: Vec<u64> = [1, 2, 4]
        .into_iter()
        .chain((8..=max).step_by(8))
        .filter(|&n| n <= max)
        .collect();
    if sizes.last() != Some(&max) {
        sizes.push(max);
    }
    json!({ "cudagraph_capture_sizes": sizes })
}

/// vLLM over several nodes: data-parallel ranks placed per node, or one
/// TP/PP group spanning nodes; followers run headless.
fn vllm_nodes(a: &mut Vec<String>, r: &RolePlan, rank: Rank) {
    if r.split.dp_local > 0 {
        arg(a, "--data-parallel-size-local", r.split.dp_local);
        arg(
            a,
            "--data-parallel-start-rank",
            rank.times(r.split.dp_local),
        );
        arg(a, "--data-parallel-address", "$LEADER_ADDR");
        arg(a, "--data-parallel-rpc-port", 13345);
    } else {
        arg(a, "--nnodes", r.split.nodes);
        arg(a, "--node-rank", rank.times(1));
        arg(a, "--master-addr", "$LEADER_ADDR");
        arg(a, "--master-port", 29501);
    }
    if !rank.leads() {
        a.push("--headless".into());
    }
}

/// `sglang.launch_server`: `--tp-size` is the stage's GPUs; DP attention
/// and EP divide it.
fn sglang(ctx: &Ctx, r: &RolePlan, rank: Rank) -> Vec<String> {
    let (l, s) = (&r.layout, &r.settings);
    let mut a: Vec<String> = vec!["python3".into(), "-m".into(), "sglang.launch_server".into()];
    arg(&mut a, "--model-path", ctx.model_path);
    arg(&mut a, "--host", "0.0.0.0");
    arg(&mut a, "--port", port(Engine::Sglang));
    arg(&mut a, "--tp-size", l.tp * l.dp);
    arg(&mut a, "--pp-size", l.pp);
    if l.dp > 1 {
        arg(&mut a, "--dp-size", l.dp);
        a.push("--enable-dp-attention".into());
    }
    if is_moe(r) && l.ep > 1 {
        arg(&mut a, "--ep-size", l.ep);
        if r.disaggregated {
            // `--moe-a2a-backend deepep` from 0.4.10, `--enable-deepep-moe` before.
            if ctx.table.flag("--moe-a2a-backend").is_some() {
                arg(&mut a, "--moe-a2a-backend", "deepep");
            } else {
                a.push("--enable-deepep-moe".into());
            }
            let mode = match r.role {
                PoolRole::Prefill => "normal",
                PoolRole::Decode | PoolRole::Aggregated => "low_latency",
            };
            arg(&mut a, "--deepep-mode", mode);
        }
    }
    if s.redundant_experts > 0 {
        a.push("--enable-eplb".into());
        arg(&mut a, "--ep-num-redundant-experts", s.redundant_experts);
    }
    arg(&mut a, "--mem-fraction-static", s.static_fraction);
    // The server's cap, which SGLang divides among its attention-DP ranks.
    arg(
        &mut a,
        "--max-running-requests",
        s.max_running_per_rank * l.dp as u64,
    );
    arg(&mut a, "--chunked-prefill-size", s.step_tokens);
    arg(&mut a, "--context-length", s.max_context);
    if s.kv_cache_dtype == DType::Fp8 {
        arg(&mut a, "--kv-cache-dtype", "fp8_e4m3");
    }
    arg(&mut a, "--cuda-graph-max-bs", s.cuda_graph_max_batch);
    if r.disaggregated {
        arg(&mut a, "--disaggregation-mode", r.role.name());
        arg(&mut a, "--disaggregation-transfer-backend", "nixl");
    }
    if r.split.nodes > 1 {
        arg(&mut a, "--nnodes", r.split.nodes);
        arg(&mut a, "--node-rank", rank.times(1));
        arg(&mut a, "--dist-init-addr", "$LEADER_ADDR:20000");
    }
    a
}

/// `trtllm-serve`: `--tp_size` is the stage's GPUs; what the CLI lacks is in
/// the YAML of `config`. Over several nodes the leader starts every rank
/// with `mpirun` (`$MPI_HOSTS`: `host0:N,host1:N,...`); followers run sshd.
fn trtllm(ctx: &Ctx, r: &RolePlan, rank: Rank) -> Vec<String> {
    let (l, s) = (&r.layout, &r.settings);
    if !rank.leads() {
        return vec!["/usr/sbin/sshd".into(), "-D".into()];
    }
    let mut a: Vec<String> = Vec::new();
    if r.split.nodes > 1 {
        a.extend(["mpirun", "--allow-run-as-root", "-H", "$MPI_HOSTS"].map(String::from));
        arg(&mut a, "-np", l.gpus());
        a.push("trtllm-llmapi-launch".into());
    }
    a.extend(["trtllm-serve".into(), ctx.model_path.into()]);
    arg(&mut a, "--host", "0.0.0.0");
    arg(&mut a, "--port", port(Engine::Trtllm));
    arg(&mut a, "--backend", "pytorch");
    arg(&mut a, "--tp_size", l.tp * l.dp);
    arg(&mut a, "--pp_size", l.pp);
    if is_moe(r) {
        arg(&mut a, "--ep_size", l.ep);
    }
    arg(&mut a, "--max_batch_size", s.max_running_per_rank);
    arg(&mut a, "--max_num_tokens", s.step_tokens);
    arg(&mut a, "--max_seq_len", s.max_context);
    arg(
        &mut a,
        "--kv_cache_free_gpu_memory_fraction",
        s.kv_free_fraction,
    );
    arg(
        &mut a,
        "--extra_llm_api_options",
        format!("{}/{}", ctx.config_dir, trtllm_config_name(r.role)),
    );
    a
}

/// The file name of a role's TensorRT-LLM config.
pub(crate) fn trtllm_config_name(role: PoolRole) -> String {
    format!("trtllm-{}.yaml", role.name())
}

/// TensorRT-LLM's `kv_cache_config.dtype` for a KV cache type: the
/// 16-bit types are the model's own (`auto`); the others are refused before
/// a launch (`Engine::stores_kv_cache`).
fn trtllm_kv_dtype(d: DType) -> &'static str {
    match d {
        DType::Fp8 => "fp8",
        DType::Nvfp4 => "nvfp4",
        DType::Fp32 | DType::Bf16 | DType::Fp16 | DType::Int8 | DType::Int4 | DType::Mxfp4 => {
            "auto"
        }
    }
}

/// A role's TensorRT-LLM YAML config (as JSON), whole: the layout and
/// limits `trtllm-serve`'s flags also carry (equal values, so either reader
/// agrees; Dynamo's worker reads only this), attention DP, the expert split,
/// the load balancer's slots, the KV cache, CUDA graphs and, disaggregated,
/// the KV cache transceiver.
pub(crate) fn trtllm_config(r: &RolePlan, transceiver: &str) -> Value {
    let (l, s) = (&r.layout, &r.settings);
    let mut c = json!({
        "tensor_parallel_size": l.tp * l.dp,
        "pipeline_parallel_size": l.pp,
        "max_batch_size": s.max_running_per_rank,
        "max_num_tokens": s.step_tokens,
        "max_seq_len": s.max_context,
        "enable_attention_dp": l.dp > 1,
        "kv_cache_config": {
            "dtype": trtllm_kv_dtype(s.kv_cache_dtype),
            "free_gpu_memory_fraction": s.kv_free_fraction,
        },
        "cuda_graph_config": {"max_batch_size": s.cuda_graph_max_batch, "enable_padding": true},
    });
    if let Some(moe) = &r.model.moe {
        c["moe_expert_parallel_size"] = json!(l.ep);
        c["moe_tensor_parallel_size"] = json!(l.etp);
        if s.redundant_experts > 0 {
            c["moe_config"] = json!({
                "load_balancer": {"num_slots": moe.n_routed_experts + s.redundant_experts as u64},
            });
        }
    }
    if r.disaggregated {
        c["cache_transceiver_config"] = json!({"backend": transceiver});
    }
    c
}

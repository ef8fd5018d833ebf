//! The benchmark beside a launch: the engine's own client driving the
//! plan's workload as a closed loop (`concurrency` requests in flight, the
//! figures moeplan predicts, lengths drawn as the workload's benchmark
//! `Client` draws them), and a converter of its result into a row of
//! the runs CSV that `moeplan calibrate` reads. Plan → launch → bench →
//! calibrate → plan closes the loop.

use super::{Ctx, File, Request, RolePlan};
use crate::engine::Engine;
use crate::layout::Layout;
use crate::replica::PoolRole;
use crate::serving::Client;

/// `bench.sh` and `bench_to_csv.py`.
pub(crate) fn files(ctx: &Ctx, plans: &[RolePlan], req: &Request) -> Vec<File> {
    let w = req.deployment.workload();
    let aggregated = plans.iter().all(|p| p.role == PoolRole::Aggregated);
    // The engine's server, or the router in front of a disaggregated pair.
    let port = if aggregated {
        super::command::port(ctx.engine)
    } else {
        8000
    };
    let replicas = if aggregated {
        req.replicas.max(1) as u64
    } else {
        1
    };
    let total = w.concurrency * replicas;
    let (isl, osl) = (w.isl.get(), w.osl.get());
    let result = match ctx.engine {
        Engine::Sglang => "result.jsonl",
        Engine::Vllm | Engine::Trtllm | Engine::Neutral => "result.json",
    };
    let drawn = match w.client {
        Client::Fixed => format!("{isl} tokens in, {osl} out"),
        Client::InferenceMax => format!(
            "prompts drawn in [{}, {isl}] tokens, outputs in [{}, {osl}] (InferenceMAX's client)",
            w.client.shortest(isl),
            w.client.shortest(osl)
        ),
    };
    let script = format!(
        "#!/usr/bin/env bash\n# The plan's workload as a closed loop: {drawn}, {total} requests in flight,\n# against the deployment's endpoint; then its result as a row of runs.csv for `moeplan calibrate`.\nset -euo pipefail\nURL=${{URL:-http://localhost:{port}}}\nCONC=${{CONC:-{total}}}\nPROMPTS=${{PROMPTS:-$((CONC * {}))}}\n{}\npython3 bench_to_csv.py {result} \"$CONC\" >> runs.csv\necho \"appended to runs.csv: moeplan calibrate runs.csv\" >&2\n",
        w.client.prompts_per_concurrency(),
        client(ctx, isl, osl, w.client)
    );
    vec![
        File {
            path: "bench.sh".into(),
            content: script,
        },
        File {
            path: "bench_to_csv.py".into(),
            content: converter(ctx, plans, (isl, osl), replicas, w.client),
        },
    ]
}

/// The engine's benchmark client, writing its result file, drawing lengths
/// as `drawn` does.
fn client(ctx: &Ctx, isl: u64, osl: u64, drawn: Client) -> String {
    let m = ctx.model_path;
    let common = format!("--base-url \"$URL\" --model {m} --dataset-name random {} --max-concurrency \"$CONC\" --num-prompts \"$PROMPTS\"", lengths(ctx.engine, drawn, isl, osl));
    match ctx.engine {
        Engine::Vllm => format!("vllm bench serve --backend vllm {common} --ignore-eos --save-result --result-filename result.json"),
        Engine::Sglang => format!("python3 -m sglang.bench_serving --backend sglang {common} --output-file result.jsonl"),
        Engine::Trtllm | Engine::Neutral => format!("python3 -m tensorrt_llm.serve.scripts.benchmark_serving --backend openai {common} --random-ids --ignore-eos --save-result --result-filename result.json"),
    }
}

/// The length flags that make the engine's client draw each request's
/// lengths uniformly in [`Client::shortest`, stated]. SGLang's
/// `bench_serving` draws in [ratio × len, len]; vLLM's `vllm bench serve`
/// and TensorRT-LLM's `benchmark_serving` (a copy of vLLM's) in
/// [len × (1 − ratio), len × (1 + ratio)], so they get the range's middle
/// and half-width over it (to within a token).
fn lengths(engine: Engine, drawn: Client, isl: u64, osl: u64) -> String {
    let (num, den) = drawn.shortest_fraction();
    match engine {
        Engine::Sglang => {
            let ratio = num as f64 / den as f64;
            format!(
                "--random-input-len {isl} --random-output-len {osl} --random-range-ratio {ratio}"
            )
        }
        Engine::Vllm | Engine::Trtllm | Engine::Neutral => {
            let middle = |len: u64| ((len * (num + den)) as f64 / (2 * den) as f64).round() as u64;
            let ratio = (den - num) as f64 / (den + num) as f64;
            format!(
                "--random-input-len {} --random-output-len {} --random-range-ratio {ratio}",
                middle(isl),
                middle(osl)
            )
        }
    }
}

/// Every flag the benchmark client is given is the client's, with a value
/// of its kind: the table's `bench --flag` entries, read from the engine
/// release's own client (vLLM's `vllm bench serve`, SGLang's
/// `bench_serving`). A table without them (TensorRT-LLM's, read from a
/// branch without its client) checks nothing here.
pub(crate) fn check_client(ctx: &Ctx, drawn: Client) -> Result<(), String> {
    let t = ctx.table;
    if !t.flag.iter().any(|f| f.name.starts_with("bench ")) {
        return Ok(());
    }
    let line = client(ctx, 1, 1, drawn);
    let words: Vec<String> = super::flags::words(&line)
        .into_iter()
        .map(|w| w.trim_matches('"').to_string())
        .skip_while(|w| !w.starts_with("--"))
        .collect();
    t.check_flags(&words, |name| t.flag(&format!("bench {name}")))
}

/// The CSV cells of a layout: tp, pp, dp, ep, etp.
fn cells(l: &Layout) -> String {
    format!("{}, {}, {}, {}, {}", l.tp, l.pp, l.dp, l.ep, l.etp)
}

/// A Python converter from the client's result (JSON, or the last line of
/// JSON lines) to a native runs-CSV row with this deployment's columns.
fn converter(
    ctx: &Ctx,
    plans: &[RolePlan],
    (isl, osl): (u64, u64),
    replicas: u64,
    drawn: Client,
) -> String {
    let gpu = plans.first().map_or("", |p| p.gpu.id.as_str());
    let mut header = String::from("model,gpu,engine,engine_version,weight_dtype,isl,osl,concurrency,tp,pp,dp,ep,etp,ttft_ms,tpot_ms");
    let model = &ctx.measured_as.model;
    let weights = ctx
        .measured_as
        .weight_dtype
        .map_or_else(String::new, |w| w.to_string());
    let mut row = format!(
        "'{model}', '{gpu}', '{}', '{}', '{weights}', {isl}, {osl}, concurrency, ",
        ctx.engine.name(),
        ctx.version
    );
    match plans {
        [p] => row += &format!("{}, ttft, tpot", cells(&p.layout)),
        _ => {
            header += ",mode,prefill_tp,prefill_pp,prefill_dp,prefill_ep,prefill_etp,prefill_workers,decode_tp,decode_pp,decode_dp,decode_ep,decode_etp,decode_workers";
            row += "'', '', '', '', '', ttft, tpot, 'disaggregated'";
            for role in [PoolRole::Prefill, PoolRole::Decode] {
                if let Some(p) = plans.iter().find(|p| p.role == role) {
                    row += &format!(", {}, {}", cells(&p.layout), p.replicas);
                }
            }
        }
    }
    header += ",client,kv_dtype,gpus_per_node,throughput_tok_s";
    let (kv, node) = plans.first().map_or((String::new(), 0), |p| {
        (p.settings.kv_cache_dtype.to_string(), p.gpu.gpus_per_node)
    });
    row += &format!(", '{}', '{kv}', {node}, throughput", drawn.name());
    format!(
        "#!/usr/bin/env python3\n\"\"\"A benchmark result ({}'s client) as a row of the runs CSV that `moeplan calibrate` reads.\n\nusage: bench_to_csv.py RESULT CONCURRENCY >> runs.csv (prints the header first when runs.csv is empty;\nrefuses a runs.csv begun with other columns)\n\"\"\"\nimport json, os, sys\n\npath, total = sys.argv[1], int(sys.argv[2])\nwith open(path) as f:\n    lines = [line for line in f.read().splitlines() if line.strip()]\nr = json.loads(lines[-1]) if path.endswith('.jsonl') else json.loads('\\n'.join(lines))\nttft, tpot = r['mean_ttft_ms'], r['mean_tpot_ms']\n# output tokens per second of one replica (aggregated) or of the whole deployment (disaggregated)\nthroughput = (r.get('output_throughput') or 0) / {replicas} or ''\n# concurrency per replica of an aggregated deployment; the whole deployment's when disaggregated\nconcurrency = max(1, round(total / {replicas}))\nheader = '{header}'\nif not os.path.exists('runs.csv') or os.path.getsize('runs.csv') == 0:\n    print(header)\nelse:\n    with open('runs.csv') as f:\n        if f.readline().strip() != header:\n            sys.exit('runs.csv has other columns than this converter writes: append to a new file')\nprint(','.join(str(c) for c in [{row}]))\n",
        ctx.engine.name()
    )
}

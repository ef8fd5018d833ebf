//! Measured runs: both CSV formats read into the same runs, every bad cell
//! of a file reported at once with its line and column, and the accuracy
//! report's arithmetic.
//!
//! The invalid cases are data-first: every file in
//! `tests/fixtures/runs/invalid/` must be rejected with located problems
//! that each carry a hint; `EXPECTED` lists what each must say.

use moeplan::accuracy::{quantile, ErrorStats};
use moeplan::dtype::DType;
use moeplan::memory::Engine;
use moeplan::runs::{self, RunDeployment};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs")
}

/// What each invalid fixture's problems must say (every problem listed).
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "bad-cells.csv",
        &[
            "line 2 column `isl`",
            "`zero` is not a positive whole number",
            "line 3 column `engine`",
            "unknown engine `neutral`",
            "line 3 column `weight_dtype`",
            "unknown quantisation `fp9`",
            "line 3 column `ttft_ms`",
            "`-3` is not a positive time",
        ],
    ),
    (
        "bad-client.csv",
        &[
            "line 2 column `client`",
            "unknown benchmark client `sharegpt`",
        ],
    ),
    ("empty.csv", &["the file is empty"]),
    (
        "header-only.csv",
        &["header-only.csv:1:1", "no run after the header"],
    ),
    (
        "out-of-range.csv",
        &[
            "line 2 column `concurrency`",
            "1000000000000 is outside [1, 1048576]",
            "line 3 column `isl`",
            "99999999999 is outside",
            "line 3 column `ttft_ms`",
            "the range of a measured mean latency",
        ],
    ),
    (
        "silicon-bad-system.csv",
        &[
            "unknown system `tpu_v5`",
            "unknown quantisation `w3a2`",
            "`nan` is not a positive time",
        ],
    ),
    (
        "unknown-gpu.csv",
        &["line 2 column `gpu`", "unknown GPU `h999`"],
    ),
    (
        "unknown-column.csv",
        &[
            "line 1 column `kv_dtyp`",
            "unknown column `kv_dtyp`",
            "line 1 column `notes`",
        ],
    ),
    (
        "bad-options.csv",
        &[
            "line 2 column `kv_dtype`",
            "unknown dtype `fp9`",
            "line 2 column `gpus_per_node`",
            "2000 is outside [1, 1024]",
            "line 2 column `throughput_tok_s`",
            "`-5` is not a positive rate",
            "line 3 column `gpus_per_node`",
            "`eight` is not a positive whole number",
            "line 3 column `throughput_tok_s`",
            "`fast` is not a positive rate",
            "line 4 column `kv_dtype`",
            "no engine stores the KV cache as int8",
            "line 4 column `gpus_per_node`",
            "`0` is not a positive whole number",
        ],
    ),
    (
        "cells-past-header.csv",
        &["line 2", "19 cells, past the header's 16 columns"],
    ),
    (
        "duplicate-column.csv",
        &["line 1 column `isl`", "column `isl` named twice"],
    ),
    (
        "unknown-header.csv",
        &["missing columns engine, engine_version, weight_dtype"],
    ),
];

#[test]
fn every_invalid_runs_file_is_rejected_with_located_hinted_problems() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(fixtures().join("invalid")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let err = runs::read(&path).expect_err(&name);
        let text = err.to_string();
        for p in &err.problems {
            assert!(
                p.hint.is_some(),
                "{name}: problem without a hint: {}",
                p.message
            );
        }
        if name != "empty.csv" {
            assert!(
                err.positions().iter().all(Option::is_some),
                "{name}: unlocated problem in {text}"
            );
        }
        let expected = EXPECTED
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is not listed in EXPECTED"))
            .1;
        for e in expected {
            assert!(text.contains(e), "{name}: `{e}` missing from\n{text}");
        }
        seen.push(name);
    }
    assert_eq!(
        seen.len(),
        EXPECTED.len(),
        "EXPECTED lists a missing fixture"
    );
}

#[test]
fn native_rows_read_with_their_layouts() {
    let runs = runs::read(&fixtures().join("native.csv")).unwrap();
    assert_eq!(runs.len(), 2);
    let r = &runs[0];
    assert_eq!((r.engine, r.isl, r.osl), (Engine::Vllm, 1000, 1000));
    assert!((r.ttft.ms() - 180.5).abs() < 1e-9 && (r.tpot.ms() - 21.3).abs() < 1e-9);
    let RunDeployment::Aggregated {
        layout,
        concurrency,
        replicas,
    } = r.deployment
    else {
        panic!("aggregated")
    };
    // tp 2 with unstated expert degrees: experts split over both GPUs (etp 2).
    assert_eq!((layout.tp, layout.ep, layout.etp), (2, 1, 2));
    assert_eq!((concurrency, replicas), (64, 1));
    assert_eq!(runs[1].moe_dtype, Some(moeplan::dtype::DType::Fp8));
}

/// The native optional columns are what the run is estimated with: a
/// stated KV cache type and node size replace the checkpoint's and the
/// catalog GPU's; blank or `auto` keep them. Qwen3-30B-A3B caches
/// 48 layers × 4 KV heads × 128 × 2 (K and V) = 49,152 values a token:
/// 96 KiB in BF16, 48 KiB in FP8, so the FP8 row holds more requests in the
/// same memory.
#[test]
fn optional_columns_set_the_kv_cache_node_and_throughput() {
    use moeplan::dtype::DType;
    let runs = runs::read(&fixtures().join("native-options.csv")).unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].kv_dtype, Some(DType::Fp8));
    assert_eq!(runs[0].gpus_per_node, Some(4));
    assert_eq!(
        runs[0].throughput.map(|t| t.value()),
        Some(2480.5),
        "output tokens per second"
    );
    assert_eq!(
        (runs[1].kv_dtype, runs[1].gpus_per_node, runs[1].throughput),
        (None, None, None)
    );
    assert_eq!(runs[2].kv_dtype, None, "`auto` is the checkpoint's");
    let fp8 = runs[0].replica().unwrap().unwrap();
    let bf16 = runs[1].replica().unwrap().unwrap();
    assert_eq!(fp8.model.dtypes.kv_cache, DType::Fp8);
    assert_eq!(bf16.model.dtypes.kv_cache, DType::Bf16);
    assert_eq!(fp8.gpu.gpus_per_node, 4);
    assert_eq!(bf16.gpu.gpus_per_node, 8, "the catalog H200's node");
    assert_eq!(
        bf16.model.kv_bytes_per_token().value(),
        48.0 * 4.0 * 128.0 * 2.0 * 2.0
    );
    assert_eq!(
        fp8.model.kv_bytes_per_token().value() * 2.0,
        bf16.model.kv_bytes_per_token().value()
    );
    let fits = |r: &moeplan::replica::Replica| {
        moeplan::serving::estimate_summary(&r.input())
            .unwrap()
            .max_concurrency
    };
    assert!(
        fits(&fp8) > fits(&bf16),
        "{} vs {}",
        fits(&fp8),
        fits(&bf16)
    );
}

/// A stated throughput is compared with the one the predicted latencies
/// give the run's closed loop by Little's law: 32 requests of 1,000 output
/// tokens each, each holding its slot for TTFT + 999 × TPOT, yield
/// 32 × 1,000 / (TTFT + 999 × TPOT) tokens per second.
#[test]
fn the_predicted_throughput_is_littles_law_at_the_predicted_latencies() {
    let runs = runs::read(&fixtures().join("native-options.csv")).unwrap();
    let outcomes = moeplan::accuracy::evaluate(&runs);
    let p = outcomes[0].predicted.as_ref().unwrap();
    let by_hand = 32.0 * 1000.0 / (p.ttft.value() + 999.0 * p.tpot.value());
    let predicted = outcomes[0].throughput(&runs[0]).unwrap().value();
    assert!(
        (predicted / by_hand - 1.0).abs() < 1e-12,
        "{predicted} vs {by_hand}"
    );
    let error = outcomes[0].throughput_error(&runs[0]).unwrap();
    assert!((error - (by_hand / 2480.5 - 1.0)).abs() < 1e-12);
    assert_eq!(outcomes[1].throughput_error(&runs[1]), None, "states none");
    let (n, _) = moeplan::accuracy::throughput_errors(&runs, &outcomes).unwrap();
    assert_eq!(n, 1);
}

/// Runs of one stated configuration are scored against the geometric
/// median of its distinct measurements; the id, line and stated throughput
/// are not part of what a run states. By hand: TTFT 1.00 s and 1.21 s (and
/// 1.21 s once more, rounded differently in the sixth digit: one
/// measurement reported twice, unanswered) have the median
/// sqrt(1.00 × 1.21) = 1.10 s, so +10% for the first and
/// 1.10 / 1.21 − 1 = −9.09% for the second; TPOT 20 ms everywhere, 0%. At
/// another concurrency, 1, 2 and 8 s have the median 2 s: +100%, 0%, −75%.
/// Two copies of one measurement at another prompt length repeat nothing:
/// unanswered.
#[test]
fn repeats_are_scored_against_their_configurations_median() {
    use moeplan::units::{Seconds, TokensPerSecond};
    let base = runs::read(&fixtures().join("native.csv")).unwrap()[0].clone();
    let with = |line: usize, ttft: f64| {
        let mut r = base.clone();
        r.line = line;
        r.id = format!("run {line}");
        r.throughput = Some(TokensPerSecond::new(100.0 * line as f64));
        r.ttft = Seconds::new(ttft);
        r.tpot = Seconds::from_ms(20.0);
        r
    };
    let busier = |line: usize, ttft: f64| {
        let mut r = with(line, ttft);
        if let RunDeployment::Aggregated { concurrency, .. } = &mut r.deployment {
            *concurrency += 1;
        }
        r
    };
    let longer = |line: usize| {
        let mut r = with(line, 0.5);
        r.isl += 1;
        r
    };
    let runs = vec![
        with(2, 1.0),
        with(3, 1.21),
        with(4, 1.21 * (1.0 + 1e-6)),
        busier(5, 1.0),
        busier(6, 2.0),
        busier(7, 8.0),
        longer(8),
        longer(9),
    ];
    let outcomes = moeplan::accuracy::evaluate(&runs);
    let scored = moeplan::accuracy::repeats(&runs, &outcomes);
    let ttft = |i: usize| scored[i].errors(&runs[i]).map(|(t, _)| t);
    let expected = [
        (0, 0.10),
        (1, 1.1 / 1.21 - 1.0),
        (3, 1.0),
        (4, 0.0),
        (5, -0.75),
    ];
    for (i, e) in expected {
        let got = ttft(i).unwrap_or_else(|| panic!("run {i} unanswered: {:?}", scored[i]));
        assert!((got - e).abs() < 1e-9, "run {i}: {got} vs {e}");
        assert!(scored[i].errors(&runs[i]).unwrap().1.abs() < 1e-12);
    }
    for i in [2, 6, 7] {
        assert!(scored[i].predicted.is_err(), "run {i}: {:?}", scored[i]);
    }
    assert!(
        scored[2]
            .predicted
            .as_ref()
            .unwrap_err()
            .contains("copy of run 3"),
        "{:?}",
        scored[2]
    );
}

/// A column the native format does not read is a problem, not a column
/// silently ignored (`kv_dtyp` would be read as the checkpoint's cache);
/// the hint lists what the format reads.
#[test]
fn an_unknown_native_column_names_the_columns_read() {
    let e = runs::read(&fixtures().join("invalid/unknown-column.csv")).unwrap_err();
    let hint = e.problems[0].hint.as_deref().unwrap_or("");
    for column in [
        "ttft_ms",
        "kv_dtype",
        "gpus_per_node",
        "throughput_tok_s",
        "workers",
    ] {
        assert!(hint.contains(column), "`{column}` missing from {hint}");
    }
}

/// A spreadsheet or pandas writes an integer column that once held a blank
/// as `8.0`: a whole value reads as the count (`8.0` = 8, `0.0` unstated),
/// a fraction is still refused at its cell.
#[test]
fn whole_numbers_written_as_decimals_read_as_counts() {
    let dir = std::env::temp_dir().join(format!("moeplan-whole-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let header = "model,gpu,engine,engine_version,weight_dtype,isl,osl,concurrency,tp,pp,dp,ep,etp,ttft_ms,tpot_ms\n";
    let whole = dir.join("whole.csv");
    std::fs::write(
        &whole,
        format!("{header}qwen3-30b-a3b,h200-sxm,vllm,0.19.0,,1000.0,1000,32.0,2.0,1.0,1.0,0.0,,150.2,12.1\n"),
    )
    .unwrap();
    let part = dir.join("part.csv");
    std::fs::write(
        &part,
        format!("{header}qwen3-30b-a3b,h200-sxm,vllm,0.19.0,,1000,1000,32,2.5,1,1,,,150.2,12.1\n"),
    )
    .unwrap();
    let read = runs::read(&whole);
    let refused = runs::read(&part).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).ok();
    let r = &read.expect("whole decimals read")[0];
    assert_eq!(r.isl, 1000);
    match r.deployment {
        runs::RunDeployment::Aggregated {
            layout,
            concurrency,
            ..
        } => assert_eq!((layout.tp, layout.ep, concurrency), (2, 1, 32)),
        runs::RunDeployment::Disaggregated { .. } => panic!("an aggregated row"),
    }
    assert!(
        refused.contains("`2.5` is not a positive whole number"),
        "{refused}"
    );
}

/// A KV cache type the GPU or the engine cannot store reads (`accuracy`
/// counts the row unanswered) but a fit refuses it at its cell.
#[test]
fn a_kv_cache_type_nothing_stores_is_located_for_a_fit() {
    let dir = std::env::temp_dir().join(format!("moeplan-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("runs.csv");
    std::fs::write(
        &path,
        "model,gpu,engine,engine_version,weight_dtype,isl,osl,concurrency,tp,pp,dp,ep,etp,ttft_ms,tpot_ms,kv_dtype\n\
         qwen3-30b-a3b,h200-sxm,vllm,0.19.0,,1000,1000,32,2,1,1,,,150.2,12.1,nvfp4\n",
    )
    .unwrap();
    assert_eq!(runs::read(&path).unwrap().len(), 1);
    let e = runs::read_usable(&path).unwrap_err();
    let text = e.to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(text.contains("line 2 column `kv_dtype`"), "{text}");
    assert!(text.contains("NVFP4 KV cache needs FP4 hardware"), "{text}");
    assert!(e.positions().iter().all(Option::is_some), "{text}");
}

/// A silicon row states no KV cache type: an aggregated FP8 row is read as
/// storing an FP8 KV cache (InferenceMAX's FP8 recipes do), any other row
/// (disaggregated, FP4, unstated precision) as the checkpoint's. The FP8
/// cache halves what a decode step reads of it, so the same run read with
/// the checkpoint's BF16 cache is predicted slower per token.
#[test]
fn silicon_rows_kv_cache_type() {
    let runs = runs::read(&fixtures().join("silicon.csv")).unwrap();
    let run = |id: &str| runs.iter().find(|r| r.id == id).unwrap();
    assert_eq!(run("agg-dp").kv_dtype, Some(DType::Fp8));
    assert_eq!(run("agg-full").kv_dtype, Some(DType::Fp8));
    for other in [
        "dense-zeros",
        "agg-world-twice",
        "disagg",
        "disagg-unstated",
    ] {
        assert_eq!(run(other).kv_dtype, None, "{other}");
    }
    let mut checkpoint = run("agg-full").clone();
    checkpoint.kv_dtype = None;
    let fp8 = moeplan::accuracy::predict(run("agg-full")).unwrap();
    let bf16 = moeplan::accuracy::predict(&checkpoint).unwrap();
    assert!(fp8.tpot < bf16.tpot, "{:?} vs {:?}", fp8.tpot, bf16.tpot);
}

#[test]
fn silicon_rows_read_as_the_file_documents_them() {
    let runs = runs::read(&fixtures().join("silicon.csv")).unwrap();
    // batch_size is per attention-DP rank: 16 × dp 8 = 128 per replica,
    // and the client's 256 were shared by 2 replicas.
    let RunDeployment::Aggregated {
        layout,
        concurrency,
        replicas,
    } = runs[0].deployment
    else {
        panic!("aggregated")
    };
    assert_eq!((layout.dp, layout.ep, layout.etp), (8, 8, 1));
    assert_eq!((concurrency, replicas), (128, 2));
    assert_eq!(runs[0].gpu, "h200-sxm");
    // A dense model's zero MoE degrees mean "none".
    let RunDeployment::Aggregated { layout, .. } = runs[1].deployment else {
        panic!("aggregated")
    };
    assert_eq!((layout.tp, layout.ep), (2, 1));
    let RunDeployment::Disaggregated {
        prefill,
        decode,
        concurrency,
    } = runs[2].deployment
    else {
        panic!("disaggregated")
    };
    assert_eq!((prefill.workers, decode.workers), (Some(1), Some(9)));
    assert_eq!((decode.batch_per_rank, concurrency), (Some(64), 576));
    let RunDeployment::Disaggregated {
        prefill, decode, ..
    } = runs[3].deployment
    else {
        panic!("disaggregated")
    };
    assert_eq!((prefill.workers, decode.workers), (None, None));
}

/// The benchmark client of a run: a native file's `client` column (blank:
/// fixed lengths); a silicon row's provenance, InferenceMAX's workflow
/// markers (`wip=` in its exports, `workflow_run_id=` in its dumps) against
/// anything else (AIConfigurator's gap-analysis harness). The client picks
/// the serving layer and, for a prefill-first engine, whether later rounds
/// arrive grouped: the same run predicts differently under each.
#[test]
fn each_run_knows_its_benchmark_client() {
    use moeplan::serving::Client;
    let native = runs::read(&fixtures().join("native-client.csv")).unwrap();
    let clients: Vec<Client> = native.iter().map(|r| r.client).collect();
    assert_eq!(clients, [Client::InferenceMax, Client::Fixed]);
    let silicon = runs::read(&fixtures().join("silicon-clients.csv")).unwrap();
    let clients: Vec<Client> = silicon.iter().map(|r| r.client).collect();
    assert_eq!(
        clients,
        [Client::InferenceMax, Client::InferenceMax, Client::Fixed]
    );
    let spread = moeplan::accuracy::predict(&silicon[0]).unwrap();
    let grouped = moeplan::accuracy::predict(&silicon[2]).unwrap();
    assert_ne!(spread.ttft, grouped.ttft);
}

/// Unstated worker counts are filled and said: the decode pool holds the
/// requests, the prefill pool keeps up with it.
#[test]
fn unstated_workers_are_assumed_and_said() {
    let runs = runs::read(&fixtures().join("silicon.csv")).unwrap();
    let d = runs[3].disaggregated().unwrap().unwrap();
    assert!(d.decode.workers >= 1 && d.prefill.workers >= 1);
    assert_eq!(d.assumed.len(), 2, "{:?}", d.assumed);
    let held = moeplan::memory::max_concurrency(
        &d.model,
        &d.gpu,
        &d.decode.layout,
        &d.engine,
        0,
        1024 + 512,
    );
    // The fewest workers that hold 288 requests.
    assert!(held * d.decode.workers as u64 >= 288);
    assert!(held * (d.decode.workers as u64 - 1) < 288);
}

#[test]
fn error_statistics_by_hand() {
    // |errors| 0.1, 0.2, 0.3, 0.4: median 0.25, p90 = 0.3 + 0.7 × 0.1 = 0.37.
    let s = ErrorStats::of(&[-0.1, 0.2, -0.3, 0.4]);
    assert!((s.median - 0.25).abs() < 1e-12);
    assert!((s.p90 - 0.37).abs() < 1e-12);
    // signed: -0.3, -0.1, 0.2, 0.4 → median 0.05.
    assert!((s.signed_median - 0.05).abs() < 1e-12);
    assert_eq!(quantile(&[], 0.5), 0.0);
}

/// Rows whose layout columns cannot describe what ran are read as what did
/// run, and every such reading is one a test pins.
#[test]
fn layouts_that_cannot_have_run_are_read_as_deployed() {
    let runs = runs::read(&fixtures().join("silicon.csv")).unwrap();
    let by_id = |id: &str| runs.iter().find(|r| r.id == id).unwrap();
    // tp 64 = ep 8 × moe_tp 8 at concurrency 4 on 8-GPU B200 nodes: the GPU
    // count written twice; the replica is tp 8, ep 8.
    let RunDeployment::Aggregated { layout, .. } = by_id("agg-world-twice").deployment else {
        panic!("aggregated")
    };
    assert_eq!((layout.tp, layout.dp, layout.ep, layout.etp), (8, 1, 8, 1));
    // tp 72 cannot split 128 heads: 72 GPUs of wide EP, attention DP 72,
    // and 288 expert slots (256 experts + 32 redundant, 4 per GPU).
    let r = by_id("agg-wide-ep").replica().unwrap().unwrap();
    assert_eq!((r.layout.tp, r.layout.dp, r.layout.ep), (1, 72, 72));
    assert_eq!(r.redundant_experts, 288 - 256);
    assert!(r
        .layout
        .check(&r.model, &r.gpu, r.redundant_experts)
        .0
        .is_empty());
}

/// A disaggregated row with no worker counts states only its decode
/// worker's GPU count N; its expert split repeats the prefill's EP degree
/// (`moe_tp = N / ep`). 32 GPUs (tp 32 = moe_tp 8 × ep 4 beside a tp 4 ep 4
/// prefill) is read as wide EP: attention DP 32, ep 32; 8 GPUs (tp 8 =
/// moe_tp 2 × ep 4) is a tensor-parallel layout an engine runs, kept as
/// stated. The prefill pool is kept in both; the reading is said.
#[test]
fn a_decode_pool_stated_only_by_its_gpu_count_is_read_as_wide_ep_from_16_gpus() {
    let runs = runs::read(&fixtures().join("silicon.csv")).unwrap();
    let pools = |id: &str| {
        let d = runs
            .iter()
            .find(|r| r.id == id)
            .unwrap()
            .disaggregated()
            .unwrap()
            .unwrap();
        let l = |p: &moeplan::layout::Layout| (p.tp, p.dp, p.ep, p.etp);
        let said = d.assumed.iter().any(|a| a.contains("wide EP"));
        ((l(&d.prefill.layout), l(&d.decode.layout)), said)
    };
    assert_eq!(
        pools("disagg-decode-world"),
        (((4, 1, 4, 1), (1, 32, 32, 1)), true)
    );
    assert_eq!(
        pools("disagg-decode-node"),
        (((4, 1, 4, 1), (8, 1, 4, 2)), false)
    );
    // A row that states its decode workers keeps its split: `disagg` (8
    // workers of tp 8 ep 8).
    assert_eq!(pools("disagg").0 .1, (8, 1, 8, 1));
}

/// A run that was measured fitted in memory: where the engine's default
/// share holds no request (DeepSeek-R1 FP8 on 4 B200s: 169 GB of weights
/// per GPU), the share it must have run with is taken.
#[test]
fn a_measured_run_that_fits_only_with_a_larger_memory_share_gets_it() {
    let runs = runs::read(&fixtures().join("silicon.csv")).unwrap();
    let r = runs.iter().find(|r| r.id == "agg-full").unwrap();
    let replica = r.replica().unwrap().unwrap();
    let default = Engine::Sglang.config(replica.gpu.memory);
    let held = |cfg| {
        moeplan::memory::max_concurrency(
            &replica.model,
            &replica.gpu,
            &replica.layout,
            cfg,
            0,
            9216,
        )
    };
    assert_eq!(
        held(&default),
        0,
        "the default share holds a request: pick another fixture"
    );
    assert_eq!(
        replica.engine.max_memory_fraction,
        moeplan::runs::MEASURED_MEMORY_FRACTION
    );
    assert!(held(&replica.engine) > 0);
    assert!(moeplan::accuracy::predict(r).is_ok());
}

/// Every degree 1 for a model no GPU holds: the fewest GPUs of wide EP that
/// hold it are assumed, and said.
#[test]
fn placeholder_pool_layouts_are_assumed_and_said() {
    let runs = runs::read(&fixtures().join("silicon.csv")).unwrap();
    let r = runs.iter().find(|r| r.id == "disagg-ones").unwrap();
    let d = r.disaggregated().unwrap().unwrap();
    for pool in [&d.prefill, &d.decode] {
        let l = pool.layout;
        assert!(l.dp > 1 && l.dp == l.ep && l.tp == 1, "{l}");
        // The next smaller power of two would not hold a request.
        let half = moeplan::layout::Layout {
            dp: l.dp / 2,
            ep: l.ep / 2,
            ..l
        };
        let mut e = d.engine;
        e.max_memory_fraction = moeplan::runs::MEASURED_MEMORY_FRACTION;
        assert_eq!(
            moeplan::memory::max_concurrency(&d.model, &d.gpu, &half, &e, 0, 2048),
            0
        );
    }
    assert!(
        d.assumed
            .iter()
            .filter(|a| a.contains("stated as one GPU"))
            .count()
            == 2,
        "{:?}",
        d.assumed
    );
    assert!(moeplan::accuracy::predict(r).is_ok());
}

fn bench_fixture(name: &str) -> PathBuf {
    fixtures().join("bench").join(name)
}

/// `vllm bench serve --save-result` JSON and SGLang's bench_serving JSONL
/// read as runs: lengths are the tokens per completed request, concurrency
/// the client's max_concurrency, the throughput its output_throughput, the
/// deployment (and KV cache type) the sidecar's.
#[test]
fn benchmark_client_results_read_with_their_sidecar() {
    let v = runs::read(&bench_fixture("vllm-result.json")).unwrap();
    assert_eq!(v.len(), 1);
    let r = &v[0];
    assert_eq!((r.engine, r.isl, r.osl), (Engine::Vllm, 1000, 1000));
    assert!((r.ttft.ms() - 180.4).abs() < 1e-9 && (r.tpot.ms() - 21.3).abs() < 1e-9);
    let RunDeployment::Aggregated {
        layout,
        concurrency,
        ..
    } = r.deployment
    else {
        panic!("aggregated")
    };
    assert_eq!((layout.tp, layout.etp, concurrency), (2, 2, 32));
    assert_eq!(r.throughput.map(|t| t.value()), Some(1419.7));
    assert_eq!(r.kv_dtype, None, "the sidecar states none");
    assert!(moeplan::accuracy::predict(r).is_ok());
    let s = runs::read(&bench_fixture("sglang-results.jsonl")).unwrap();
    assert_eq!(s.len(), 2);
    // No engine in the sidecar: a .jsonl is SGLang's.
    assert_eq!(
        (s[1].engine, s[1].isl, s[1].osl, s[1].line),
        (Engine::Sglang, 2000, 500, 2)
    );
    assert_eq!(
        s[1].kv_dtype,
        Some(moeplan::dtype::DType::Fp8),
        "the sidecar's"
    );
    assert_eq!(s[1].throughput.map(|t| t.value()), Some(2660.0));
}

/// A result without its sidecar, or from an open-loop run (no
/// max_concurrency), is bad input that says what to add.
#[test]
fn benchmark_results_without_what_moeplan_needs_are_rejected() {
    let e = runs::read(&bench_fixture("no-sidecar.json")).unwrap_err();
    assert!(e.to_string().contains("sidecar"), "{e}");
    assert!(e.problems[0].hint.as_deref().unwrap().contains("gpu ="));
    let e = runs::read(&bench_fixture("no-concurrency.jsonl")).unwrap_err();
    let text = format!("{:?}", e.problems);
    assert!(
        text.contains("line 1") && text.contains("max_concurrency"),
        "{text}"
    );
    // No prompt tokens over 80 requests was read as 1-token prompts.
    let e = runs::read(&bench_fixture("no-tokens.jsonl")).unwrap_err();
    let text = format!("{:?}", e.problems);
    assert!(
        text.contains("line 1") && text.contains("total_input_tokens is 0"),
        "{text}"
    );
    // An array named an internal type; a NaN was 'invalid type: null'
    // with no key.
    for (file, says) in [
        ("not-an-object.json", "one JSON object, not an array"),
        ("nan-ttft.jsonl", "`mean_ttft_ms` is null or NaN"),
    ] {
        let e = runs::read(&bench_fixture(file)).unwrap_err();
        let text = format!("{:?}", e.problems);
        assert!(text.contains(says), "{file}: {text}");
    }
}

/// The native format's disaggregated rows: `mode = disaggregated`, each
/// pool's degrees and workers, the deployment's concurrency; rows without a
/// mode stay aggregated.
#[test]
fn native_disaggregated_rows_read_with_both_pools() {
    let runs = runs::read(&fixtures().join("native-disaggregated.csv")).unwrap();
    let RunDeployment::Disaggregated {
        prefill,
        decode,
        concurrency,
    } = runs[0].deployment
    else {
        panic!("disaggregated")
    };
    assert_eq!((prefill.layout.tp, prefill.workers), (8, Some(2)));
    assert_eq!(
        (decode.layout.dp, decode.layout.ep, decode.workers),
        (8, 8, Some(2))
    );
    assert_eq!(concurrency, 512);
    assert!(moeplan::accuracy::predict(&runs[0]).is_ok());
    assert!(matches!(
        runs[1].deployment,
        RunDeployment::Aggregated { .. }
    ));
}

/// A well-formed row moeplan cannot estimate (a layout invalid for its
/// model, in either pool; an unknown model) reads, for `accuracy` to count
/// as unanswered, but a fit refuses the file: every such row at once, at
/// its row and column, with a hint. A GPU alias reads as its catalog id.
#[test]
fn rows_that_cannot_be_estimated_are_located_for_a_fit() {
    let path = fixtures().join("unusable.csv");
    let read = runs::read(&path).unwrap();
    assert_eq!(read.len(), 4);
    assert_eq!(read[0].gpu, "h200-sxm", "the alias `h200` is resolved");
    let e = runs::read_usable(&path).unwrap_err();
    let text = e.to_string();
    for expected in [
        "line 3 column `tp`",
        "tp = 3",
        "line 4 column `model`",
        "nosuch-model",
        "line 5 column `prefill_tp`",
    ] {
        assert!(text.contains(expected), "`{expected}` missing from\n{text}");
    }
    assert!(
        !text.contains("line 2 "),
        "the good row is not blamed:\n{text}"
    );
    assert!(e.positions().iter().all(Option::is_some), "{text}");
    assert!(e.problems.iter().all(|p| p.hint.is_some()), "{text}");
}

/// Every bad key of a sidecar is reported at once, each located at its key.
#[test]
fn a_sidecars_bad_keys_are_all_located() {
    let e = runs::read(&bench_fixture("bad-keys.json")).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.problems.len(), 2, "{text}");
    assert!(text.contains("unknown dtype `fp9`"), "{text}");
    assert!(text.contains("0 is outside [1, 1024]"), "{text}");
    assert!(e.positions().iter().all(Option::is_some), "{text}");
    assert!(e.problems.iter().all(|p| p.hint.is_some()), "{text}");
}

/// A benchmark result's deployment is its sidecar's, so what cannot be
/// estimated is located there: an unknown GPU on reading, an invalid
/// layout for a fit.
#[test]
fn benchmark_sidecars_that_cannot_be_estimated_are_located() {
    let e = runs::read(&bench_fixture("unknown-gpu.json")).unwrap_err();
    assert!(e.to_string().contains("unknown GPU `h999`"), "{e}");
    assert!(e.positions().iter().all(Option::is_some), "{e}");
    let path = bench_fixture("invalid-layout.json");
    assert!(runs::read(&path).is_ok());
    let e = runs::read_usable(&path).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("invalid-layout.json.moeplan.toml") && text.contains("tp = 3"),
        "{text}"
    );
    assert!(e.positions().iter().all(Option::is_some), "{text}");
    // A MoE layout the user wrote is refused as written, not read as the
    // wide EP a silicon row so written documents.
    let e = runs::read_usable(&bench_fixture("invalid-moe-layout.json")).unwrap_err();
    assert!(e.to_string().contains("over tp = 3"), "{e}");
    // An open loop's latencies hang on its rate: refused, naming it (it
    // was estimated as a closed loop of max_concurrency).
    let e = runs::read(&bench_fixture("open-loop.json")).unwrap_err();
    assert!(
        e.to_string()
            .contains("request_rate 2 requests/s: an open-loop run"),
        "{e}"
    );
    // 320 requests under a cap of 1280 never held more than 320 in flight.
    let r = &runs::read(&bench_fixture("fewer-than-cap.json")).unwrap()[0];
    let RunDeployment::Aggregated { concurrency, .. } = r.deployment else {
        panic!("aggregated")
    };
    assert_eq!(concurrency, 320);
    // The server a record names when the sidecar names none (a vLLM
    // client's result against SGLang was estimated as vLLM).
    let r = &runs::read(&bench_fixture("backend-sglang.json")).unwrap()[0];
    assert_eq!(r.engine, Engine::Sglang);
    // A degree of 0 was read as 1.
    let e = runs::read(&bench_fixture("zero-degree.json")).unwrap_err();
    assert!(
        e.to_string().contains("ep = 0: a degree is at least 1"),
        "{e}"
    );
    assert!(e.positions().iter().all(Option::is_some), "{e}");
}

/// The report's concurrency slices partition the runs: each run counts in
/// exactly one, the one whose bounds hold its concurrency (per replica
/// when aggregated, on the whole deployment when disaggregated).
#[test]
fn the_concurrency_slices_partition_the_runs() {
    let mut runs = Vec::new();
    for f in ["native.csv", "native-disaggregated.csv", "silicon.csv"] {
        runs.extend(moeplan::runs::read(&fixtures().join(f)).unwrap());
    }
    let outcomes = moeplan::accuracy::evaluate(&runs);
    let report = moeplan::accuracy::report(&runs, &outcomes);
    let slices: Vec<_> = report
        .iter()
        .filter(|s| s.group.starts_with("concurrency "))
        .collect();
    assert_eq!(
        slices.iter().map(|s| s.runs).sum::<usize>(),
        runs.len(),
        "{slices:?}"
    );
    // Each slice holds exactly the runs whose concurrency its label's
    // bounds hold, and no run is in two.
    let bounds = |group: &str| -> (u64, u64) {
        let range = group.trim_start_matches("concurrency ");
        match range.split_once('-') {
            Some((l, h)) => (l.parse().unwrap(), h.parse().unwrap()),
            None => (range.trim_end_matches('+').parse().unwrap(), u64::MAX),
        }
    };
    for s in &slices {
        let (low, high) = bounds(&s.group);
        let held = runs
            .iter()
            .filter(|r| (low..=high).contains(&r.deployment.concurrency()))
            .count();
        assert_eq!(s.runs, held, "{}", s.group);
    }
    let concurrencies: Vec<u64> = runs.iter().map(|r| r.deployment.concurrency()).collect();
    assert!(
        concurrencies.iter().any(|c| [4, 16, 64, 256].contains(c)),
        "the fixtures should hold a run on a bound: {concurrencies:?}"
    );
}

/// A weight type means one storage wherever a user names it: `--weight-dtype`
/// (`Model::store_weights`), a runs file's label and the catalog id of a
/// quantised re-release. By hand: DeepSeek-R1's checkpoint stores attention,
/// experts and dense MLPs in FP8; NVFP4 stores the routed experts in NVFP4
/// and keeps attention and dense MLPs in FP8. Kimi-K2.5's attention and
/// dense MLPs are BF16: under NVFP4 they are stored in 8 bits, FP8; stored
/// as INT4, its own experts' type, it is its own checkpoint (BF16, INT4,
/// BF16). Stored as FP8, every group is FP8. A row with a GEMM label only
/// keeps the checkpoint's experts.
#[test]
fn a_weight_type_stores_a_model_alike_in_a_plan_a_run_and_the_catalog() {
    use moeplan::dtype::DType;
    let header = "id,silicon_data_source,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,moe_quant_mode,batch_size,tp_size,pp_size,attention_dp_size,moe_tp_size,moe_ep_size,prefill_batch_size,prefill_num_workers,prefill_tp_size,prefill_pp_size,prefill_attention_dp_size,prefill_moe_tp_size,prefill_moe_ep_size,decode_batch_size,decode_num_workers,decode_tp_size,decode_pp_size,decode_attention_dp_size,decode_moe_tp_size,decode_moe_ep_size,silicon_ttft_ms,silicon_tpot_ms";
    let row = |id: &str, model: &str, quant: &str| {
        format!("{id},silicon_concurrency=4,trtllm,1.2.0,{model},b200_sxm,fp4,agg,1024,1024,{quant},{quant},4,8,1,1,8,1,,,,,,,,,,,,,,,150.0,8.0")
    };
    let text = [
        header.to_string(),
        row("r1", "deepseek-ai/DeepSeek-R1", "nvfp4"),
        row("kimi", "moonshotai/Kimi-K2.5", "nvfp4"),
        row("kimi-int4", "moonshotai/Kimi-K2.5", "int4_wo"),
        row("r1-fp8", "deepseek-ai/DeepSeek-R1", "fp8"),
    ]
    .join("\n");
    let runs = runs::parse("runs.csv", &text, Path::new(".")).unwrap();
    let stored = |m: &moeplan::model::Model| [m.dtypes.attention, m.dtypes.experts, m.dtypes.dense];
    let planned = |key: &str, w: DType| {
        let mut m = moeplan::catalog::model(key).unwrap().unwrap();
        m.store_weights(w);
        stored(&m)
    };
    let (fp4, fp8, int4, bf16) = (DType::Nvfp4, DType::Fp8, DType::Int4, DType::Bf16);
    let cases = [
        ("deepseek-r1", fp4, [fp8, fp4, fp8]),
        ("kimi-k2.5", fp4, [fp8, fp4, fp8]),
        ("kimi-k2.5", int4, [bf16, int4, bf16]),
        ("deepseek-r1", fp8, [fp8, fp8, fp8]),
    ];
    for (run, (key, w, by_hand)) in runs.iter().zip(cases) {
        assert_eq!(planned(key, w), by_hand, "{key} planned as {w:?}");
        assert_eq!(stored(&run.model().unwrap()), by_hand, "run {}", run.id);
    }
    let release = moeplan::catalog::resolve_model("nvidia/DeepSeek-R1-NVFP4").unwrap();
    assert_eq!(stored(&release), [fp8, fp4, fp8]);
    // The re-release is a checkpoint of its own: nothing to re-quantise.
    assert_eq!(release.requantised(), None);
    let gemm_only = format!(
        "{header}\n{}",
        row("kimi-gemm", "moonshotai/Kimi-K2.5", "fp8").replace("fp8,fp8,", "fp8,,")
    );
    let runs = runs::parse("runs.csv", &gemm_only, Path::new(".")).unwrap();
    assert_eq!(stored(&runs[0].model().unwrap()), [fp8, int4, fp8]);
}

/// A run's MoE type names the checkpoint it served. Kimi-K2.5's own
/// checkpoint is INT4; its runs labelled `nvfp4` served NVIDIA's NVFP4
/// re-quantisation, a checkpoint of its own (FP4 tensor-core kernels, not
/// INT4's). gpt-oss ships only MXFP4, which the silicon files also label
/// `nvfp4`: its runs keep MXFP4.
#[test]
fn a_runs_moe_type_picks_the_checkpoint_it_served() {
    use moeplan::dtype::DType;
    let header = "id,silicon_data_source,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,moe_quant_mode,batch_size,tp_size,pp_size,attention_dp_size,moe_tp_size,moe_ep_size,prefill_batch_size,prefill_num_workers,prefill_tp_size,prefill_pp_size,prefill_attention_dp_size,prefill_moe_tp_size,prefill_moe_ep_size,decode_batch_size,decode_num_workers,decode_tp_size,decode_pp_size,decode_attention_dp_size,decode_moe_tp_size,decode_moe_ep_size,silicon_ttft_ms,silicon_tpot_ms";
    let row = |id: &str, model: &str, precision: &str, quant: &str| {
        format!("{id},silicon_concurrency=4,vllm,0.17.0,{model},b200_sxm,{precision},agg,1024,1024,{quant},{quant},4,8,1,1,8,1,,,,,,,,,,,,,,,150.0,8.0")
    };
    let text = [
        header.to_string(),
        row("kimi-fp4", "moonshotai/Kimi-K2.5", "fp4", "nvfp4"),
        row("kimi-int4", "moonshotai/Kimi-K2.5", "int4", "int4_wo"),
        row("gpt-oss-fp4", "openai/gpt-oss-120b", "fp4", "nvfp4"),
    ]
    .join("\n");
    let runs = runs::parse("runs.csv", &text, Path::new(".")).unwrap();
    let experts: Vec<DType> = runs
        .iter()
        .map(|r| r.model().unwrap().dtypes.experts)
        .collect();
    assert_eq!(experts, [DType::Nvfp4, DType::Int4, DType::Mxfp4]);
}

//! Deployment options of real large-scale deployments (issue 11): two-batch
//! overlap of communication with computation, and prefix-cache hits, each
//! against a hand derivation from the op list and on the published
//! deployments that use them (`examples/audit/published/`).

use moeplan::audit::{audit, AuditOptions, Severity};
use moeplan::catalog;
use moeplan::layout::Layout;
use moeplan::ops::{CostContext, Op, OpKind, Overlap, StepShape};
use moeplan::serving::closed_loop::Shape;
use moeplan::serving::steps::{StepKind, Stepper};
use moeplan::serving::{estimate, EstimateInput, ExplainKey, Workload};
use moeplan::spec::plan;
use moeplan::spec::source::{Format, Source};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load_text(text: &str) -> Result<plan::Plan, moeplan::spec::SpecError> {
    plan::load(
        &Source::from_text("t.toml", text, Format::Toml),
        Path::new("."),
    )
}

/// Every problem of `e`: its path, message and hint.
fn words(e: &moeplan::spec::SpecError) -> String {
    e.problems
        .iter()
        .map(|p| format!("{}: {} ({:?})", p.path, p.message, p.hint))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `text` without its `overlap = ...` lines.
fn without_overlap(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("overlap = "))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn published(name: &str) -> String {
    std::fs::read_to_string(root().join("examples/audit/published").join(name)).unwrap()
}

/// Time of `ops` (every occurrence) whose kind `keep` selects.
fn time_of(ops: &[Op], keep: impl Fn(OpKind) -> bool) -> f64 {
    ops.iter()
        .filter(|o| keep(o.kind))
        .map(|o| o.total().value())
        .sum()
}

fn exchange(k: OpKind) -> bool {
    matches!(k, OpKind::EpDispatch | OpKind::EpCombine)
}

/// DeepSeek-V3 decode on 32 × H100 (4 nodes), attention DP 32 and EP 32 (no
/// TP: its only collectives are DeepEP's dispatch and combine, 2 per MoE
/// layer, partly over the network), 256 sequences per rank at context 2000. Each half (64 sequences) is costed
/// through the op list; with W = compute and memory of both halves, H =
/// their dispatch + combine, 61 layers on the one stage and nothing outside
/// the layers to run in sequence, the overlapped step is
/// max(W, H) + min(W, H) / 61, never below W or H; the hidden time is
/// W + H − that. Run as one batch the step is W₁ + H₁ of the whole batch,
/// where each collective's latency is paid once, not twice. Here W = 69.9
/// ms, H = 26.8 ms: the step is 70.3 ms against 83.3 ms as one batch, 26.3
/// ms hidden.
#[test]
fn two_batch_overlap_of_a_deepseek_decode_step_by_hand() {
    let m = catalog::model("deepseek-v3").unwrap().unwrap();
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let cal = moeplan::profile::resolve(&gpu, moeplan::memory::Engine::Sglang).kernels;
    let layout = Layout::folded(1, 1, 1, 32, Some(32), None);
    let ctx = CostContext::new(&m, &gpu, layout, 0, 0.05, &cal);
    let whole = StepShape::decode(256.0, 2000.0);
    let half = ctx.step(&StepShape::decode(128.0, 2000.0));
    let w = 2.0 * time_of(&half.ops, |k| !exchange(k));
    let h = 2.0 * time_of(&half.ops, exchange);
    assert!(h > 0.0 && w > 0.0);
    let expected = w.max(h) + w.min(h) / 61.0;
    let (cost, o) = ctx.step_two_batch(&whole).expect("128 sequences split");
    let got = cost.stage_time().value();
    assert!(
        (got - expected).abs() <= 1e-12 * expected,
        "{got} vs {expected}"
    );
    assert!(got >= w && got >= h);
    assert!((o.compute.value() - w).abs() <= 1e-12 * w);
    assert!((o.communication.value() - h).abs() <= 1e-12 * h);
    assert_eq!(o.serial.value(), 0.0);
    let hidden = w + h - expected;
    assert!((o.hidden.value() - hidden).abs() <= 1e-12 * w, "{o:?}");
    // The ops are both halves' (counts doubled), so their sums are W and H.
    let one = ctx.step(&whole).stage_time().value();
    assert!(
        cost.ops.iter().all(|o| o.count % 2 == 0),
        "both halves' ops"
    );
    // Communication is a large share of this step, and overlap pays.
    assert!(h / (w + h) > 0.2, "H {h} of W + H {}", w + h);
    assert!(got < one, "overlapped {got} vs one batch {one}");
    // One sequence per rank cannot split: no overlap.
    assert!(ctx
        .step_two_batch(&StepShape::decode(1.0, 2000.0))
        .is_none());
}

fn deepseek_input<'a>(
    m: &'a moeplan::model::Model,
    gpu: &'a moeplan::hardware::Gpu,
    layout: Layout,
    isl: u64,
    cache_hit_rate: f64,
    overlap: Overlap,
) -> EstimateInput<'a> {
    EstimateInput {
        model: m,
        gpu,
        calibration: moeplan::profile::resolve(gpu, moeplan::memory::Engine::Sglang).kernels,
        layout,
        workload: Workload {
            isl: moeplan::units::Tokens::new(isl),
            osl: moeplan::units::Tokens::new(1000),
            concurrency: 1024,
            cache_hit_rate: moeplan::units::Fraction::new(cache_hit_rate).expect("a fraction"),
            client: moeplan::serving::Client::Fixed,
        },
        engine: moeplan::engine::Engine::Sglang.config(gpu.memory),
        redundant_experts: 0,
        routing_skew: 0.0,
        overlap,
    }
}

/// The estimate states the overlap: each step's `overlap`, an `overlap`
/// derivation naming the communication hidden. On one node (dp 8, ep 8 on
/// H200, 128 requests per rank) DeepEP's NVLink exchange is a small share of
/// the step: the halves' extra cost (every local expert's weights read
/// twice, every kernel's fixed cost paid twice) outweighs what is hidden,
/// so TPOT rises and the estimate warns.
#[test]
fn an_estimate_with_two_batch_overlap_says_what_it_hid() {
    let m = catalog::model("deepseek-v3").unwrap().unwrap();
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    let layout = Layout::folded(1, 1, 1, 8, Some(8), None);
    let off = estimate(&deepseek_input(&m, &gpu, layout, 2000, 0.0, Overlap::None)).unwrap();
    let on = estimate(&deepseek_input(
        &m,
        &gpu,
        layout,
        2000,
        0.0,
        Overlap::TwoBatch,
    ))
    .unwrap();
    assert!(off.decode.overlap.is_none() && !off.explain.contains_key(&ExplainKey::Overlap));
    let o = on.decode.overlap.expect("the decode step overlaps");
    assert!(o.hidden.value() > 0.0);
    let d = &on.explain[&ExplainKey::Overlap];
    assert!(d.formula.contains("max(W, H)"), "{}", d.formula);
    assert!(d
        .inputs
        .iter()
        .any(|(k, v)| k == "decode_step" && v.contains("hidden")));
    assert!(o.overlapped > o.single_batch, "{o:?}");
    assert!(on.tpot > off.tpot, "{} vs {}", on.tpot, off.tpot);
    assert!(
        on.warnings
            .iter()
            .any(|w| w.contains("two-batch overlap makes the decode step slower")),
        "{:?}",
        on.warnings
    );
    assert!(!off.warnings.iter().any(|w| w.contains("two-batch")));
    // Memory is not what overlap changes.
    assert_eq!(on.memory, off.memory);
}

/// A prefill of one 4000-token prompt at hit rate h = 0.56 on DeepSeek-V3
/// (tp 8: one attention-DP rank, experts replicated over TP, no routing
/// imbalance) computes n = (1 − h) · 4000 = 1760 tokens after a cached
/// prefix of s₀ = 2240: every linear layer's FLOP is (1 − h) × the
/// uncached prompt's, and attention covers the whole context for the new
/// tokens: n · s₀ + n (n + 1) / 2 query-key pairs against 4000 · 4001 / 2.
#[test]
fn a_prefill_at_a_cache_hit_rate_by_hand() {
    let m = catalog::model("deepseek-v3").unwrap().unwrap();
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    let layout = Layout::folded(1, 8, 1, 1, None, None);
    let step = |h: f64| {
        let inp = deepseek_input(&m, &gpu, layout, 4000, h, Overlap::None);
        let tokens = inp.workload.computed_prompt();
        let s = Stepper::new(&inp, 1.0).step(
            StepKind::PrefillBatch,
            Shape {
                decodes: 0.0,
                prefill_tokens: tokens,
            },
            moeplan::units::Seconds::new(0.0),
        );
        (s.cost.ops.clone(), s.micro)
    };
    let (cold, cold_shape) = step(0.0);
    let (warm, warm_shape) = step(0.56);
    assert_eq!(
        (cold_shape.prefill_tokens_per_seq, cold_shape.prefill_offset),
        (4000.0, 0.0)
    );
    let (n, s0) = (warm_shape.prefill_tokens_per_seq, warm_shape.prefill_offset);
    assert!(
        (n - 1760.0).abs() < 1e-9 && (s0 - 2240.0).abs() < 1e-9,
        "{n} {s0}"
    );
    let flop = |ops: &[Op], k: OpKind| -> f64 {
        ops.iter()
            .filter(|o| o.kind == k)
            .map(|o| o.flop.value() * o.count as f64)
            .sum()
    };
    for k in [
        OpKind::MlaQAKvAProj,
        OpKind::MlaQBProj,
        OpKind::MlaKvBProj,
        OpKind::OProj,
        OpKind::MoeExperts,
        OpKind::SharedExpertGateUp,
        OpKind::MlpGateUp,
    ] {
        let (c, w) = (flop(&cold, k), flop(&warm, k));
        assert!(c > 0.0, "{k:?}");
        assert!((w / c - 0.44).abs() < 1e-9, "{k:?}: {}", w / c);
    }
    let pairs = |n: f64, s0: f64| n * s0 + n * (n + 1.0) / 2.0;
    let ratio = flop(&warm, OpKind::AttentionPrefill) / flop(&cold, OpKind::AttentionPrefill);
    let expected = pairs(1760.0, 2240.0) / pairs(4000.0, 0.0);
    assert!((ratio - expected).abs() < 1e-9, "{ratio} vs {expected}");
    // Attention falls less than the linear layers: the prefix is read.
    assert!(expected > 0.44);
}

/// Prefix-cache hits move TTFT and the prefill, never the decode step or
/// the KV memory: the decode step's time and the memory are identical.
#[test]
fn cache_hits_shorten_ttft_and_leave_decode_alone() {
    let m = catalog::model("deepseek-v3").unwrap().unwrap();
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    let layout = Layout::folded(1, 1, 1, 8, Some(8), None);
    let e = |h| estimate(&deepseek_input(&m, &gpu, layout, 4000, h, Overlap::None)).unwrap();
    let (cold, warm) = (e(0.0), e(0.56));
    assert!(warm.ttft < cold.ttft, "{} vs {}", warm.ttft, cold.ttft);
    assert_eq!(warm.pure.decode.step_time, cold.pure.decode.step_time);
    assert_eq!(warm.memory, cold.memory);
    assert!(warm.pure.prefill.step_time < cold.pure.prefill.step_time);
    // Prompt tokens/s count the cached ones: the prefill phase serves more.
    assert!(
        warm.pure.prefill.tokens_per_s_per_gpu.value()
            > cold.pure.prefill.tokens_per_s_per_gpu.value() * 1.5
    );
    assert!(warm.explain.contains_key(&ExplainKey::PrefixCache));
    assert!(!cold.explain.contains_key(&ExplainKey::PrefixCache));
}

/// The one spelling of each option; others are located input errors with
/// the accepted values, and a hit rate outside [0, 0.99] names its bound.
#[test]
fn option_spellings() {
    let base = without_overlap(&published("sglang-deepseek-v3-104xh100.toml"));
    let with = |from: &str, to: &str| load_text(&base.replacen(from, to, 1));
    let p = with(
        "[deployment.decode]\n",
        "[deployment.decode]\noverlap = \"two-batch\"\n",
    )
    .unwrap();
    let plan::Deployment::Disaggregated { prefill, decode } = p.deployment else {
        panic!("disaggregated")
    };
    assert_eq!(
        (prefill.overlap, decode.overlap),
        (Overlap::None, Overlap::TwoBatch)
    );
    for bad in ["overlap = true", "overlap = \"tbo\""] {
        let e = with(
            "[deployment.decode]\n",
            &format!("[deployment.decode]\n{bad}\n"),
        )
        .expect_err(bad);
        let said = words(&e);
        assert!(said.contains("deployment.decode.overlap"), "{said}");
        assert!(said.contains("two-batch"), "{bad}: {said}");
    }
    let e = with(
        "mode = \"disaggregated\"\n",
        "mode = \"disaggregated\"\noverlap = \"two-batch\"\n",
    )
    .expect_err("top-level overlap of a disaggregated plan");
    assert!(words(&e).contains("each pool"), "{}", words(&e));
    for (v, ok) in [
        ("\"56%\"", Some(0.56)),
        ("0.3", Some(0.3)),
        ("1.0", None),
        ("\"-5%\"", None),
    ] {
        let r = with(
            "osl = 1800\n",
            &format!("osl = 1800\ncache_hit_rate = {v}\n"),
        );
        match ok {
            Some(h) => {
                assert!((r.unwrap().scenario.workload.cache_hit_rate.value() - h).abs() < 1e-12)
            }
            None => assert!(words(&r.expect_err(v)).contains("0.99"), "{v}"),
        }
    }
}

/// SGLang's DeepSeek-V3 on 104 H100 runs two-batch overlap on both pools
/// (its fixture now says so): it still audits with no error. Against the
/// same plan without the overlap (DeepEP's exchange crosses nodes in both
/// pools), the prefill step is shorter (most of its exchange hidden) and so
/// is the decode step at a given batch. The loop runs at its slower pool's
/// pace: without the overlap the prefill pool sets it, at its capacity
/// (32 ranks × 1 prompt per step / the prefill step; with the embedded
/// layer 266.8 ms, 120.0 requests/s), with it the prefill pool could pass
/// more (32 / 177.3 ms = 180.5/s) than the decode pool's 72 × 201 requests
/// with memory full decode (165.1/s): output throughput per GPU rises by
/// the ratio of the paces (2076 → 2857 tokens/s; the claim is 2785) and
/// TTFT, the queue in front of the prefill pool, falls (66.8 → 30.2 s).
#[test]
fn sglang_104_h100_with_two_batch_overlap() {
    use moeplan::figures::Predicted;
    let text = published("sglang-deepseek-v3-104xh100.toml");
    assert_eq!(text.matches("overlap = \"two-batch\"").count(), 2);
    let on = load_text(&text).unwrap();
    let off = load_text(&without_overlap(&text)).unwrap();
    for p in [&on, &off] {
        let a = audit(p, &AuditOptions::default());
        assert!(
            !a.findings.iter().any(|f| f.severity == Severity::Error),
            "{:?}",
            a.findings
        );
    }
    let estimate = |p: &plan::Plan| {
        let f = moeplan::audit::figures(p, &moeplan::audit::evaluate(p)).expect("valid pools");
        match f.estimate {
            Predicted::Disaggregated(e) => e,
            Predicted::Aggregated(_) => panic!("disaggregated"),
        }
    };
    let (e_on, e_off) = (estimate(&on), estimate(&off));
    assert!(e_on.prefill.step.time < e_off.prefill.step.time);
    // The prefill pool's capacity: its ranks' prompts per step / its step.
    let capacity = |e: &moeplan::serving::disagg::DisaggEstimate| {
        let ranks = (e.prefill.workers * e.prefill.layout.dp) as f64;
        ranks * e.prefill.requests_per_rank / e.prefill.step.time.value()
    };
    let close = |a: f64, b: f64| (a / b - 1.0).abs() < 1e-6;
    assert!(
        close(e_off.requests_per_s, capacity(&e_off)),
        "{} vs {}",
        e_off.requests_per_s,
        capacity(&e_off)
    );
    assert!(e_on.requests_per_s < capacity(&e_on));
    let tput = |e: &moeplan::serving::disagg::DisaggEstimate| e.output_tokens_per_s_per_gpu.value();
    assert!(close(
        tput(&e_on) / tput(&e_off),
        e_on.requests_per_s / e_off.requests_per_s
    ));
    assert!(e_on.requests_per_s > e_off.requests_per_s);
    assert!(e_on.ttft < e_off.ttft);
}

/// DeepSeek's H800 production deployment states its 56.3% prefix-cache hit
/// rate (its fixture now says so): it still audits with no error. Its
/// prefill pool computes 43.7% of each prompt (attending the whole
/// context), so the prefill-bound loop completes about twice the requests:
/// output throughput per GPU rises from 494 to 1006 (the decode claim is
/// 1850), TTFT falls from 130 s to 16 s, and TPOT rises from 19.2 to 51.9
/// ms as the decode batch fills.
#[test]
fn deepseek_h800_with_its_cache_hit_rate() {
    let text = published("deepseek-v3-h800-production.toml");
    assert!(text.contains("cache_hit_rate = \"56.3%\""));
    let on = load_text(&text).unwrap();
    let off = load_text(&text.replace("cache_hit_rate = \"56.3%\"", "")).unwrap();
    assert!((on.scenario.workload.cache_hit_rate.value() - 0.563).abs() < 1e-12);
    let (a_on, a_off) = (
        audit(&on, &AuditOptions::default()),
        audit(&off, &AuditOptions::default()),
    );
    for a in [&a_on, &a_off] {
        assert!(
            !a.findings.iter().any(|f| f.severity == Severity::Error),
            "{:?}",
            a.findings
        );
    }
    let tput = |c: &moeplan::audit::Computed| c.throughput_per_gpu.unwrap().value();
    assert!(tput(&a_on.computed) > tput(&a_off.computed));
}

/// `--explain` names where the memory's buffers come from: the engine
/// file's all-reduce workspace (SGLang's 64 MiB = 67.11 MB) and its runtime
/// reserve (1.5 GiB = 1.611 GB).
#[test]
fn memory_explanation_names_the_engine_buffers() {
    let m = catalog::model("deepseek-v3").unwrap().unwrap();
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    let layout = Layout::folded(1, 1, 1, 8, Some(8), None);
    let e = estimate(&deepseek_input(&m, &gpu, layout, 4000, 0.0, Overlap::None)).unwrap();
    let inputs = &e.explain[&ExplainKey::Memory].inputs;
    let input = |k: &str| {
        inputs
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        input("allreduce_workspace"),
        Some("67.11 MB under TP (engines/sglang.toml)")
    );
    assert_eq!(input("runtime_reserve"), Some("1.611 GB"));
}

/// Speculative decoding is not modelled, and an estimate of a model whose
/// checkpoint ships multi-token-prediction layers says so: DeepSeek-V3's
/// config states `num_nextn_predict_layers = 1`; Mixtral's states none.
#[test]
fn an_estimate_of_a_model_with_mtp_layers_says_speculative_decoding_is_not_modelled() {
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    let layout = Layout::folded(1, 1, 1, 8, Some(8), None);
    for (key, layers) in [("deepseek-v3", 1), ("mixtral-8x7b", 0)] {
        let m = catalog::model(key).unwrap().unwrap();
        assert_eq!(m.mtp_layers, layers, "{key}");
        let e = estimate(&deepseek_input(&m, &gpu, layout, 2000, 0.0, Overlap::None)).unwrap();
        let warned = e.warnings.iter().any(|w| w.contains("(MTP)"));
        assert_eq!(warned, layers > 0, "{key}: {:?}", e.warnings);
    }
}

/// Redundant expert slots replicate hot experts on other EP ranks: at
/// ep = 1 there is none, so the estimate holds none (memory and steps as
/// without them, as the planner's candidates have it) and says so, while
/// at ep 8 the 32 slots add 32/8 = 4 experts per GPU to its weights.
#[test]
fn redundant_experts_need_expert_parallelism() {
    let m = catalog::model("deepseek-v3").unwrap().unwrap();
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    let with = |layout: Layout, redundant: u32| {
        let mut inp = deepseek_input(&m, &gpu, layout, 2000, 0.0, Overlap::None);
        inp.redundant_experts = redundant;
        estimate(&inp).unwrap()
    };
    let tp8 = Layout::folded(1, 8, 1, 1, Some(1), None);
    let (plain, asked) = (with(tp8, 0), with(tp8, 32));
    assert_eq!(plain.memory, asked.memory);
    assert_eq!(plain.decode.time, asked.decode.time);
    assert!(!plain.warnings.iter().any(|w| w.contains("redundant")));
    assert!(asked
        .warnings
        .iter()
        .any(|w| w.contains("32 redundant expert slots ignored")));
    let ep8 = Layout::folded(1, 1, 1, 8, Some(8), None);
    let (plain, asked) = (with(ep8, 0), with(ep8, 32));
    // 4 more experts per GPU on each of the 58 MoE layers, each expert
    // 3 × 7168 × 2048 = 44,040,192 FP8 parameters (1 byte, block scales
    // 0.02% more): 4 × 58 × 44.04 MB = 10.22 GB.
    let grown = asked.memory.weights_bytes.value() - plain.memory.weights_bytes.value();
    let hand = 4.0 * 58.0 * 3.0 * 7168.0 * 2048.0;
    assert!((grown / hand - 1.0).abs() < 0.005, "{grown} vs {hand}");
    assert!(!asked.warnings.iter().any(|w| w.contains("redundant")));
}

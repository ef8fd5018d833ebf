//! Hand derivations checked against the library.
//!
//! Each test states the arithmetic it checks. Published model sizes are the
//! anchors for parameter counting; the seed scenario is derived by hand.

use moeplan::catalog;
use moeplan::layout::Layout;
use moeplan::memory::{self, EngineConfig};
use moeplan::model::{Component, Model};
use moeplan::ops::{CostContext, StepShape};
use moeplan::serving::{estimate, EstimateInput, Workload};
use proptest::prelude::*;

fn model(id: &str) -> Model {
    catalog::model(id).expect("in catalog").expect("loads")
}

fn within(actual: f64, expected: f64, tol: f64) -> bool {
    ((actual - expected) / expected).abs() <= tol
}

fn check_total(id: &str, published: f64, tol: f64) {
    let p = model(id).params();
    assert!(
        within(p.total.value(), published, tol),
        "{id}: derived {} vs published {published:e}",
        p.total.value()
    );
}

/// Mixtral-8x7B: 32 layers × (attention 4096·4096·2 + 4096·1024·2 = 41.9M;
/// experts 8 × 3 × 4096 × 14336 = 1409M; router 32.8K) + embedding and LM
/// head 2 × 32000 × 4096 = 262M → 46.70B total. Active: 2 of 8 experts →
/// 32 × (41.9M + 352.3M) + 262M = 12.88B (published 12.9B).
#[test]
fn mixtral_8x7b_is_46_7b() {
    check_total("mixtral-8x7b", 46.7e9, 0.01);
    assert!(within(
        model("mixtral-8x7b").params().active.value(),
        12.9e9,
        0.01
    ));
}

/// Mixtral-8x22B: 56 × (6144²·2 + 6144·1024·2 + 8·3·6144·16384) + 2·32768·6144 = 140.6B (141B published).
#[test]
fn mixtral_8x22b_is_141b() {
    check_total("mixtral-8x22b", 141e9, 0.01);
    assert!(within(
        model("mixtral-8x22b").params().active.value(),
        39e9,
        0.01
    ));
}

/// DeepSeek-V3: MLA per layer q_a 7168·1536 + q_b 1536·128·192 + kv_a
/// 7168·576 + kv_b 512·128·256 + o 128·128·7168 = 187M; 3 dense layers of
/// 3·7168·18432; 58 MoE layers of 256 routed + 1 shared expert of
/// 3·7168·2048 and a 7168×256 router; embedding + LM head 2·129280·7168.
/// Total 671.0B (the MTP module is excluded, as in the published 671B);
/// active 37.5B (published 37B).
#[test]
fn deepseek_v3_is_671b() {
    check_total("deepseek-v3", 671e9, 0.01);
    assert!(within(
        model("deepseek-v3").params().active.value(),
        37e9,
        0.02
    ));
}

/// Qwen3-235B-A22B: 94 × (q 4096·8192 + k,v 4096·512·2 + o 8192·4096 +
/// 128 experts × 3·4096·1536 + router) + 2·151936·4096 = 235.1B; active
/// with 8 of 128 experts: 22.2B.
#[test]
fn qwen3_235b_is_235b() {
    check_total("qwen3-235b-a22b", 235e9, 0.01);
    assert!(within(
        model("qwen3-235b-a22b").params().active.value(),
        22e9,
        0.02
    ));
}

/// Qwen3-30B-A3B: 48 × (2048·4096·2 + 2048·512·2 + 128·3·2048·768) + 2·151936·2048 = 30.5B; active 3.3B.
#[test]
fn qwen3_30b_is_30_5b() {
    check_total("qwen3-30b-a3b", 30.5e9, 0.01);
    assert!(within(
        model("qwen3-30b-a3b").params().active.value(),
        3.3e9,
        0.02
    ));
}

/// Qwen3-Coder-480B-A35B (`tests/fixtures/hf/`, its published config):
/// `shared_expert_intermediate_size: 0` means no shared expert, not a bad
/// size. 62 layers × 160 experts × 3 × 6144 × 2560 = 468.08B experts;
/// attention 62 × (6144·12288·2 + 6144·1024·2) = 10.14B; router 62 ×
/// 6144 × 160 = 0.06B; embedding and LM head 2 × 151936 × 6144 = 1.87B →
/// 480.15B (published 480B). Active: 8 of 160 experts → 62 × 8 × 47.19M =
/// 23.40B + 12.07B = 35.47B (published "A35B").
#[test]
fn qwen3_coder_480b_reads_zero_as_no_shared_expert() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hf/Qwen--Qwen3-Coder-480B-A35B-Instruct_config.json"
    );
    let m = catalog::resolve_model(path).expect("the published config loads");
    assert_eq!(m.name, "Qwen/Qwen3-Coder-480B-A35B-Instruct");
    assert_eq!(m.moe.as_ref().map(|x| x.n_shared_experts), Some(0));
    let p = m.params();
    assert!(within(p.total.value(), 480e9, 0.01), "{}", p.total.value());
    assert!(
        within(p.active.value(), 35.47e9, 0.005),
        "{}",
        p.active.value()
    );
}

/// NVIDIA's ModelOpt checkpoints keep their quantization in
/// `hf_quant_config.json` beside `config.json` (here `<id>_hf_quant_config.json`
/// beside `<id>_config.json`). Qwen3-235B-A22B-NVFP4: NVFP4 (4.5 bits with
/// its fp8 scale per 16) on every linear layer but the router gates it
/// excludes, FP8 KV cache. Bytes: experts 227.1B × 0.5625 = 127.76 GB +
/// attention 6.70B × 0.5625 = 3.77 GB + embedding and LM head 1.245B × 2 =
/// 2.49 GB + routers 49.3M × 2 = 0.10 GB → 134.1 GB (it read as 470 GB of
/// bf16 before). The same config without its sidecar reads as bf16.
#[test]
fn a_modelopt_sidecar_sets_the_precision_and_says_so() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf/");
    let path = format!("{dir}nvidia--Qwen3-235B-A22B-NVFP4_config.json");
    let m = catalog::resolve_model(&path).expect("loads");
    use moeplan::dtype::DType;
    assert_eq!(
        (m.dtypes.experts, m.dtypes.attention, m.dtypes.kv_cache),
        (DType::Nvfp4, DType::Nvfp4, DType::Fp8)
    );
    assert!(
        m.assumptions
            .iter()
            .any(|a| a.contains("hf_quant_config.json") && a.contains("NVFP4")),
        "{:?}",
        m.assumptions
    );
    let bytes = m.params().weight_bytes.value();
    assert!(within(bytes, 134.1e9, 0.01), "{bytes}");
    // Without the sidecar: torch_dtype's bf16, and no such assumption.
    let alone = std::env::temp_dir().join(format!("moeplan-sidecar-{}", std::process::id()));
    std::fs::create_dir_all(&alone).unwrap();
    let copy = alone.join("config.json");
    std::fs::copy(&path, &copy).unwrap();
    let bare = catalog::resolve_model(copy.to_str().unwrap()).expect("loads");
    std::fs::remove_dir_all(&alone).ok();
    assert_eq!(bare.dtypes.experts, DType::Bf16);
    assert!(within(bare.params().weight_bytes.value(), 470e9, 0.01));
}

/// An exclusion list names modules layer by layer, under the family's
/// root: Qwen3.5-122B-A10B-NVFP4 leaves `model.language_model.layers.N.
/// self_attn*` (its 12 full-attention layers), `linear_attn*` (the 36
/// Gated-DeltaNet ones) and `mlp.shared_expert*` in bf16, Kimi-K2.6-NVFP4
/// `language_model.model.layers.N.self_attn*`, layer 0's dense MLP and every
/// shared expert. Each group takes NVFP4 (0.5625 bytes a parameter) only
/// where most of its parameters are not excluded (before, a module had to
/// be excluded at layer 10 under `model.layers`: all these read as NVFP4).
/// Qwen3.5: attention 0.9437B + linear 3.187B + shared 0.4531B in bf16 =
/// 9.17 GB, experts 116.0B × 0.5625 = 65.23 GB, embedding and LM head
/// 2 × 0.7628B × 2 = 3.05 GB, routers and norms 0.98 GB → 78.43 GB (71.84
/// before). Kimi-K2.6: attention 6.168B, dense 0.3964B and shared 2.642B in
/// bf16 = 18.41 GB, experts 1.015T × 0.5625 = 570.8 GB, embedding and LM
/// head 4.70 GB, the rest 0.3 GB → 594.2 GB (581.0 before).
#[test]
fn exclusions_are_read_layer_by_layer_under_any_root() {
    use moeplan::dtype::DType;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf/");
    for (id, bytes) in [
        ("nvidia--Qwen3.5-122B-A10B-NVFP4", 78.43e9),
        ("nvidia--Kimi-K2.6-NVFP4", 594.2e9),
    ] {
        let m = catalog::resolve_model(format!("{dir}{id}_config.json")).expect("loads");
        assert_eq!(
            (m.dtypes.attention, m.dtypes.experts, m.dtypes.dense),
            (DType::Bf16, DType::Nvfp4, DType::Bf16),
            "{id}"
        );
        let got = m.params().weight_bytes.value();
        assert!(within(got, bytes, 0.002), "{id}: {got}");
    }
}

/// Nemotron-H's published config holds Python's `Infinity`
/// (`time_step_limit`): it is read, and the hybrid Mamba-2 model loads.
#[test]
fn nemotron_h_is_judged_by_its_architecture_not_its_json() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hf/nvidia--Nemotron-H-56B-Base-8K_config.json"
    );
    let m = catalog::resolve_model(path).expect("the published config loads");
    assert_eq!(m.architecture, "NemotronHForCausalLM");
    assert_eq!(m.n_layers(), 118);
    assert!(within(m.params().total.value(), 56e9, 0.01));
}

/// Nemotron-H-56B (dense hybrid; NVIDIA names it 56B): 118 one-block
/// layers from `hybrid_override_pattern`, each with one RMSNorm (8192).
/// Mamba-2 (54 layers; d_inner = 256 heads × 64 = 16384, 8 groups × state
/// 256): in_proj 8192 × (2·16384 + 2·8·256 + 256 = 37120) = 304.1M, conv
/// (16384 + 4096 = 20480 channels) × 4 taps + bias, dt_bias, A_log, D 3 ×
/// 256, gated norm 16384, out_proj 16384 × 8192 = 134.2M → 438.42M.
/// Attention (10 layers; 64 heads, 8 KV heads of 128): 8192·8192·2 +
/// 8192·1024·2 = 151.0M. MLP (54 layers; relu², up and down only): 2 ×
/// 8192 × 32768 = 536.9M. Embedding and LM head 2 × 131072 × 8192 = 2.15B.
/// 54 × 438.42M + 10 × 151.0M + 54 × 536.9M + 2.15B + norms = 56.32B
/// (+0.6%); every parameter is active. The state of one sequence: 54 ×
/// (256·64·256 fp32 SSM + 3 × 20480 bf16 conv) = 912.6 MB; the KV cache
/// only in the 10 attention layers: 10 × 2 × 8 × 128 × 2 B = 40.96 kB/token.
#[test]
fn nemotron_h_56b_is_56b() {
    check_total("nemotron-h-56b", 56e9, 0.01);
    let m = model("nemotron-h-56b");
    let p = m.params();
    assert!(
        within(p.total.value(), 56.324e9, 0.0005),
        "{}",
        p.total.value()
    );
    assert_eq!(p.active.value(), p.total.value());
    assert!(within(m.kv_bytes_per_token().value(), 40_960.0, 1e-9));
    let state = m.linear_state_bytes_per_sequence().value();
    assert!(within(
        state,
        54.0 * (256.0 * 64.0 * 256.0 * 4.0 + 3.0 * 20480.0 * 2.0),
        1e-9
    ));
}

/// Nemotron-3-Nano-30B-A3B (published: 31.6B total, 3.2B active without
/// the embedding, 3.6B with it; model card and NVIDIA's release notes via
/// replicate.com and crafiq.ai). 52 layers: 23 Mamba-2, 23 MoE, 6
/// attention, one RMSNorm (2688) each. Mamba-2 (64 heads × 64 = 4096
/// inner, 8 groups × state 128; `expand` × hidden = 5376 is not the
/// width): in_proj 2688 × (2·4096 + 2·8·128 + 64 = 10304), conv 6144
/// channels × 4 + bias, 3 × 64, norm 4096, out_proj 4096 × 2688 → 38.74M.
/// Attention (32 heads, 2 KV heads of 128): 2688·4096·2 + 2688·256·2 =
/// 23.40M. MoE: 128 routed relu² experts of 2 × 2688 × 1856 = 9.978M, a
/// router 128 × 2688 + 128 correction biases, one shared expert of 2 ×
/// 2688 × 3712 = 19.96M → 1297.5M. Embedding and LM head 2 × 131072 × 2688
/// = 704.6M. Total 23 × 38.74M + 6 × 23.40M + 23 × 1297.5M + 704.6M +
/// norms = 31.578B; active with 6 of 128 experts 3.580B, 3.228B without the
/// embedding.
#[test]
fn nemotron_3_nano_is_31_6b_with_3_2b_active() {
    check_total("nemotron-3-nano-30b-a3b", 31.6e9, 0.01);
    let p = model("nemotron-3-nano-30b-a3b").params();
    assert!(
        within(p.total.value(), 31.578e9, 0.0005),
        "{}",
        p.total.value()
    );
    let embedding = p.by_component[&Component::Embedding].active.value();
    assert!(
        within(p.active.value(), 3.6e9, 0.01),
        "{}",
        p.active.value()
    );
    assert!(within(p.active.value() - embedding, 3.2e9, 0.01));
}

/// The other Nemotron-3 configs (`../shared/model-configs/hf`, skipped
/// without it) against the sizes NVIDIA names them by. Super 120B-A12B and
/// Ultra 550B-A55B run their 512 experts in a latent (1024, 2048) between a
/// hidden → latent and a latent → hidden projection, which every token
/// uses: Super 88 layers (40 Mamba-2 of 109.6M, 8 attention of 35.7M, 40
/// MoE of 512 × 2 × 1024 × 2688, 2 × 4096 × 1024, a shared 2 × 4096 ×
/// 5376 and a router = 2873M) + 1.07B embeddings = 120.67B, 12.77B active (12.23B
/// without the embedding); Ultra 108 layers from `layers_block_type` (48
/// Mamba-2 of 421.6M, 12 attention of 138.4M, 48 MoE of 10943M) + 2.15B =
/// 549.3B, 56.06B active (54.99B without the embedding). Nemotron-3.5
/// Lightning has Nano's shape: 31.578B.
#[test]
fn nemotron_3_super_ultra_lightning_by_their_names() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/model-configs/hf/"
    );
    let cases = [
        ("NVIDIA-Nemotron-3-Super-120B-A12B-FP8", 120e9, 12e9, 0.02),
        ("NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16", 550e9, 55e9, 0.02),
        (
            "NVIDIA-Nemotron-3.5-Lightning-30B-A3B-NVFP4",
            31.6e9,
            3.2e9,
            0.01,
        ),
    ];
    for (id, total, active, tol) in cases {
        let path = format!("{dir}nvidia--{id}_config.json");
        if !std::path::Path::new(&path).exists() {
            return;
        }
        let m = catalog::resolve_model(&path).expect("loads");
        let p = m.params();
        let embedding = p.by_component[&Component::Embedding].active.value();
        assert!(
            within(p.total.value(), total, 0.01),
            "{id}: {}",
            p.total.value()
        );
        let act = p.active.value() - embedding;
        assert!(within(act, active, tol), "{id}: {act}");
    }
}

/// gpt-oss-120b: 36 × 128 experts × (2880·5760 + 5760 + 2880·2880 + 2880)
/// = 114.7B experts, attention with biases 0.96B, embedding + unembedding
/// 2 × 201088 × 2880 = 1.16B → 116.83B (published 116.83B). OpenAI's 5.13B
/// active excludes the embedding: 5.71B − 0.58B.
#[test]
fn gpt_oss_120b_is_116_8b() {
    check_total("gpt-oss-120b", 116.83e9, 0.005);
    let p = model("gpt-oss-120b").params();
    let embedding = p.by_component[&Component::Embedding].active.value();
    assert!(within(p.active.value() - embedding, 5.13e9, 0.01));
    // MXFP4 experts: 4.25 bits per weight; the checkpoint is 60.8 GiB.
    assert!(within(
        p.weight_bytes.value() / (1u64 << 30) as f64,
        60.8,
        0.01
    ));
}

/// Llama-4-Scout: 48 × (attention 5120·5120·2 + 5120·1024·2 = 62.9M; 16
/// experts + 1 shared of 3·5120·8192) + 2·202048·5120 = 107.8B for the text
/// model. Meta's 109B also counts the vision encoder, which the published
/// config.json in the catalog does not describe: 1.1% below, so the
/// tolerance here is 1.5%. Active: 17.2B (published 17B).
#[test]
fn llama4_scout_is_109b_with_vision() {
    check_total("llama-4-scout", 109e9, 0.015);
    assert!(within(
        model("llama-4-scout").params().active.value(),
        17e9,
        0.02
    ));
}

/// The seed model, by hand (../shared/seeds, domain.md §6): per layer
/// attention 4·512² = 1,048,576; experts 16 × 3 × 512 × 1024 = 25,165,824;
/// router 512·16 = 8,192; norms 2·512 = 1,024 → 26,223,616 × 16 layers =
/// 419,577,856; embedding and LM head 2 × 32000 × 512 = 32,768,000; final
/// norm 512 → 452,346,368. Active: 16 × (1,048,576 + 2·1,572,864 + 8,192 +
/// 1,024) + 32,768,512 = 100,024,832. FLOP per token: 2 × (active −
/// embedding 16,384,000 − norms 16,896) = 167,247,872. KV per token: 16
/// layers × 2 × 16 heads × 32 × 2 bytes = 32,768. Weights: 2 bytes each =
/// 904,692,736. The declared 10B is 22.1× the derived count.
#[test]
fn seed_model_by_hand() {
    let m = model("seed-moe");
    let p = m.params();
    assert_eq!(p.total.value(), 452_346_368.0);
    assert_eq!(p.active.value(), 100_024_832.0);
    assert_eq!(m.linear_flop_per_token().value(), 167_247_872.0);
    assert_eq!(m.kv_bytes_per_token().value(), 32_768.0);
    assert_eq!(p.weight_bytes.value(), 904_692_736.0);
    let r = moeplan::report::model_report(&m);
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].contains("22.11x"), "{}", r.warnings[0]);
}

/// Decode of the seed scenario on one seed GPU at the seeds' 60% MFU and
/// 80% bandwidth: batch 128 reads 128 × L × 32,768 bytes of KV cache per
/// step. At L = 128, 1024, 10240 that is 0.537, 4.29, 42.9 GB: at 1.44 TB/s
/// effective, 0.373, 2.98, 29.8 ms. Weights add at most 0.905 GB (0.628 ms)
/// and compute is 128 × 167 MFLOP / 240 TFLOP/s = 0.09 ms. So the step is
/// memory-bound and, above the fixed per-kernel costs, takes the KV time
/// plus the weight time: decode can never exceed 128 / 29.8 ms ≈ 4.3k
/// tokens/s per GPU at 10k context (the seeds claim 35k–150k).
#[test]
fn seed_decode_is_kv_bound_at_long_context() {
    let m = model("seed-moe");
    let gpu = catalog::gpu("seed-gpu").unwrap().unwrap();
    let cal = moeplan::profile::resolve(&gpu, moeplan::memory::Engine::Neutral)
        .kernels
        .flat(
            moeplan::units::Fraction::new(0.6),
            moeplan::units::Fraction::new(0.8),
        );
    let ctx = CostContext::new(&m, &gpu, Layout::default(), 0, 0.0, &cal);
    for (l, kv_ms) in [(128.0, 0.373), (1024.0, 2.983), (10240.0, 29.83)] {
        let step = ctx.step(&StepShape::decode(128.0, l));
        let kv_bytes: f64 = step
            .ops
            .iter()
            .filter(|o| o.kind == moeplan::ops::OpKind::AttentionDecode)
            .map(|o| o.bytes.value() * o.count as f64)
            .sum();
        let kv_expected = 128.0 * l * 32_768.0;
        // The q/o traffic (128 × 16 × 32 × 4 bytes per layer) is the only addition.
        assert!(
            within(kv_bytes, kv_expected, 0.01),
            "L={l}: {kv_bytes} vs {kv_expected}"
        );
        let overhead: f64 = step
            .ops
            .iter()
            .map(|o| o.overhead.value() * o.count as f64)
            .sum();
        let roofline_ms = (step.stage_time().value() - overhead) * 1e3;
        assert!(
            roofline_ms >= kv_ms,
            "L={l}: {roofline_ms} ms below the KV bound {kv_ms}"
        );
        assert!(
            roofline_ms <= kv_ms + 0.628 + 0.2,
            "L={l}: {roofline_ms} ms above KV + weights"
        );
    }
    // The ceiling the estimate reports is the KV-dominated one.
    let inp = EstimateInput {
        model: &m,
        gpu: &gpu,
        calibration: cal.clone(),
        layout: Layout::default(),
        workload: Workload {
            isl: moeplan::units::Tokens::new(10240),
            osl: moeplan::units::Tokens::new(1024),
            concurrency: 128,
            cache_hit_rate: moeplan::units::Fraction::ZERO,
            client: moeplan::serving::Client::Fixed,
        },
        engine: EngineConfig::default(),
        redundant_experts: 0,
        routing_skew: 0.0,
        overlap: moeplan::ops::Overlap::None,
    };
    let e = estimate(&inp).unwrap();
    assert!(
        e.ceilings.decode_kv_bytes_per_step_per_gpu.value()
            / e.ceilings.decode_bytes_per_step_per_gpu.value()
            > 0.9
    );
    // 128 sequences × 1.8e12 B/s / (128 × 10752 × 32768 B of KV = 45.10 GB)
    // = 5,109 tokens/s if only the KV cache were read; weights and
    // activations (≤ 1 GB) bring it to about 5,000.
    let ceiling = e.ceilings.decode_tokens_per_s_per_gpu.value();
    assert!((4_900.0..5_109.0).contains(&ceiling), "{ceiling}");
}

/// GPUs are not the product of every degree: EP=8 folded onto TP=8 is 8
/// GPUs (domain.md §2), and the seeds' "EP 4 × TP 2 × PP 2 = 16" without DP
/// is really tp2 pp2 with ep at most 2 on a 2-GPU stage.
#[test]
fn folding_not_multiplication() {
    let m = model("deepseek-v3");
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    let l = Layout {
        tp: 8,
        ep: 8,
        ..Layout::default()
    };
    assert_eq!(l.gpus(), 8);
    assert!(l.check(&m, &gpu, 0).0.is_empty());
    let seed = model("seed-moe");
    let bad = Layout {
        pp: 2,
        tp: 2,
        ep: 4,
        ..Layout::default()
    };
    let (problems, _) = bad.check(&seed, &gpu, 0);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].rule, "folding");
    let good = Layout {
        pp: 2,
        tp: 2,
        ep: 2,
        ..Layout::default()
    };
    assert!(good.check(&seed, &gpu, 0).0.is_empty());
    assert_eq!(good.gpus(), 4);
}

#[test]
fn invalid_layouts_name_their_rule() {
    let m = model("mixtral-8x7b");
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let rules = |l: Layout| {
        l.check(&m, &gpu, 0)
            .0
            .into_iter()
            .map(|p| p.rule)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rules(Layout {
            tp: 3,
            ..Layout::default()
        }),
        vec!["heads_tp", "kv_heads_tp"]
    );
    assert_eq!(
        rules(Layout {
            dp: 3,
            ep: 3,
            ..Layout::default()
        }),
        vec!["experts_ep"]
    );
    assert_eq!(
        rules(Layout {
            pp: 40,
            ..Layout::default()
        }),
        vec!["layers_pp"]
    );
    let dense = model("llama-3.1-8b");
    assert_eq!(
        Layout {
            dp: 2,
            ep: 2,
            ..Layout::default()
        }
        .check(&dense, &gpu, 0)
        .0[0]
            .rule,
        "ep_dense"
    );
}

/// Weights split exactly: Mixtral-8x7B in bf16 on TP2 holds half of every
/// matrix (k/v: 8 KV heads ≥ 2) plus the replicated norms and router:
/// (93.4 GB − 0.54 MB of norms − 2.1 MB of routers) / 2 + the replicated part.
#[test]
fn tp_halves_the_weights() {
    let m = model("mixtral-8x7b");
    let l1: f64 = memory::weights_on_gpu(&m, &Layout::default(), 0, 0)
        .values()
        .map(|b| b.value())
        .sum();
    let l2: f64 = memory::weights_on_gpu(
        &m,
        &Layout {
            tp: 2,
            etp: 2,
            ..Layout::default()
        },
        0,
        0,
    )
    .values()
    .map(|b| b.value())
    .sum();
    let p = m.params();
    let replicated = (p.by_component[&Component::Norms].total.value()
        + p.by_component[&Component::Router].total.value())
        * 2.0;
    assert!(
        within(l2, (l1 - replicated) / 2.0 + replicated, 1e-9),
        "{l2} vs {l1} (replicated {replicated})"
    );
    assert!(within(l1, p.weight_bytes.value(), 1e-9));
}

/// TensorRT-LLM's `free_gpu_memory_fraction` is a share of what the model
/// leaves, vLLM's `gpu_memory_utilization` a share of the whole GPU. By hand,
/// for DeepSeek-R1 in FP8 on 4 × B200 (TP4), one request of 9216 tokens:
/// fixed F = weights + activations + buffers + runtime (about 171 GB of
/// the 193.3 GB); TensorRT-LLM's KV pool is 0.9 × (193.3 GB − F), so
/// floor(0.9 (C − F) / kv) requests fit, where a 90% share of the GPU
/// (0.9 C − F) leaves room for only a few.
#[test]
fn tensorrt_llm_takes_its_share_of_the_free_memory() {
    let m = model("deepseek-r1");
    let gpu = catalog::gpu("b200").unwrap().unwrap();
    let l = Layout {
        tp: 4,
        etp: 4,
        ..Layout::default()
    };
    let ctx = 9216;
    let trt = memory::Engine::Trtllm.config(gpu.memory);
    assert_eq!(trt.memory_share, moeplan::engine::MemoryShare::Free);
    // With no request: weights, activations of the largest step, buffers.
    let none = memory::memory(&m, &gpu, &l, &trt, 0, 0, ctx);
    let one = memory::memory(&m, &gpu, &l, &trt, 0, 1, ctx);
    let capacity = one.capacity_bytes.value();
    let fixed = none.total_bytes.value();
    // A request adds its KV cache and its logits row.
    let per_request = one.total_bytes.value() - fixed;
    assert!(per_request > one.kv_bytes_per_request.value());
    let f = trt.max_memory_fraction.value();
    let by_hand = (f * (capacity - fixed) / per_request).floor() as u64;
    let free_share = memory::max_concurrency(&m, &gpu, &l, &trt, 0, ctx);
    assert_eq!(free_share, by_hand);
    let usable = fixed + f * (capacity - fixed);
    assert!(
        within(none.usable_bytes.value(), usable, 1e-9),
        "{} vs {usable}",
        none.usable_bytes.value()
    );
    // The same fraction of the whole GPU holds fewer requests.
    let whole = trt.limited_to(trt.max_memory_fraction);
    let by_hand = ((f * capacity - fixed) / per_request).floor().max(0.0) as u64;
    assert_eq!(
        memory::max_concurrency(&m, &gpu, &l, &whole, 0, ctx),
        by_hand
    );
    assert!(
        0 < by_hand && by_hand < free_share,
        "{by_hand} vs {free_share}"
    );
    // Where the model leaves nothing, no request fits under either share.
    let tp2 = Layout {
        tp: 2,
        etp: 2,
        ..Layout::default()
    };
    assert_eq!(memory::max_concurrency(&m, &gpu, &tp2, &trt, 0, ctx), 0);
}

/// The concurrency that fits and the memory at a concurrency agree on
/// every pipeline stage, under a share of the GPU and under TensorRT-LLM's
/// share of what the model leaves (where each stage may use its own: the
/// fullest GPU is the one with the least room, not the one holding the
/// most). MiMo-V2-Flash on 2 × B200 in two stages held 272 requests of 9000
/// tokens while the memory at 273 still said it fits.
#[test]
fn the_concurrency_that_fits_is_where_memory_stops_fitting() {
    let cases = [
        ("mimo-v2-flash", "b200", 2u32),
        ("qwen3-30b-a3b", "h100-sxm", 4),
        ("deepseek-r1", "b200", 2),
    ];
    for (id, gpu, pp) in cases {
        let m = model(id);
        let g = catalog::gpu(gpu).unwrap().unwrap();
        let l = Layout {
            pp,
            ..Layout::default()
        };
        for engine in [memory::Engine::Trtllm, memory::Engine::Vllm] {
            let cfg = engine.config(g.memory);
            let ctx = 9000;
            let max = memory::max_concurrency(&m, &g, &l, &cfg, 0, ctx);
            let at = |c: u64| memory::memory(&m, &g, &l, &cfg, 0, c, ctx);
            let what = format!("{id} pp{pp} on {gpu} under {}", engine.name());
            assert!(
                at(max + 1).usable_bytes.value() <= at(max + 1).capacity_bytes.value(),
                "{what}"
            );
            assert!(!at(max + 1).fits(), "{what}: {} fit, {} too", max, max + 1);
            if max > 0 {
                assert!(at(max).fits(), "{what}: {max}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Memory never decreases with more requests or longer contexts, and the
    /// largest concurrency that fits does fit.
    #[test]
    fn memory_is_monotone(c in 1u64..512, extra in 1u64..512, ctx in 128u64..32768, tp_pow in 0u32..4) {
        let m = model("qwen3-30b-a3b");
        let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
        let l = Layout { tp: 1 << tp_pow, ep: 1 << tp_pow, ..Layout::default() };
        let cfg = EngineConfig::default();
        let a = memory::memory(&m, &gpu, &l, &cfg, 0, c, ctx).total_bytes.value();
        let b = memory::memory(&m, &gpu, &l, &cfg, 0, c + extra, ctx).total_bytes.value();
        let d = memory::memory(&m, &gpu, &l, &cfg, 0, c, ctx * 2).total_bytes.value();
        prop_assert!(b >= a && d >= a);
        let max = memory::max_concurrency(&m, &gpu, &l, &cfg, 0, ctx);
        if max > 0 {
            prop_assert!(memory::memory(&m, &gpu, &l, &cfg, 0, max, ctx).fits());
        }
    }

    /// Every valid layout of a model yields finite, positive figures and
    /// declares exactly pp·tp·cp·dp GPUs.
    #[test]
    fn estimates_are_finite(pp in 0u32..2, tp in 0u32..4, dp in 0u32..4, ep in 0u32..4, conc in 1u64..300) {
        let m = model("qwen3-30b-a3b");
        let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
        let l = Layout { pp: 1 << pp, tp: 1 << tp, dp: 1 << dp, ep: 1 << ep, ..Layout::default() };
        let inp = EstimateInput { model: &m, gpu: &gpu, calibration: moeplan::profile::resolve(&gpu, moeplan::memory::Engine::Neutral).kernels, layout: l, workload: Workload { isl: moeplan::units::Tokens::new(2000), osl: moeplan::units::Tokens::new(200), concurrency: conc, cache_hit_rate: moeplan::units::Fraction::ZERO, client: moeplan::serving::Client::Fixed,
 }, engine: EngineConfig::default(), redundant_experts: 0, routing_skew: 0.0, overlap: moeplan::ops::Overlap::None,
 };
        if let Ok(e) = estimate(&inp) {
            prop_assert_eq!(e.gpus, l.pp * l.tp * l.cp * l.dp);
            for v in [e.ttft.value(), e.tpot.value(), e.output_tokens_per_s_per_gpu.value()] {
                prop_assert!(v.is_finite() && v > 0.0);
            }
            prop_assert!(e.ttft.value() >= e.prefill.time.value() * 0.999);
        }
    }
}

/// The planner's entry point drops only the explanation: every figure of
/// `estimate_summary` equals `estimate`'s, bit for bit, across PP, vision,
/// sliding-window and EPLB cases; and the memoised expert placement gives
/// the same imbalance on a second call.
#[test]
fn summary_equals_full_estimate() {
    use moeplan::serving::estimate_summary;
    let cases = [
        (
            "deepseek-v3",
            "h200-sxm",
            Layout {
                dp: 8,
                ep: 8,
                ..Layout::default()
            },
            3u32,
        ),
        (
            "deepseek-v3",
            "h100-sxm",
            Layout {
                tp: 8,
                pp: 2,
                ..Layout::default()
            },
            0,
        ),
        (
            "gpt-oss-120b",
            "h100-sxm",
            Layout {
                tp: 2,
                ep: 2,
                ..Layout::default()
            },
            0,
        ),
        (
            "llama-4-scout",
            "h100-sxm",
            Layout {
                tp: 4,
                pp: 2,
                ..Layout::default()
            },
            0,
        ),
    ];
    for (id, gpu_id, layout, redundant) in cases {
        let m = model(id);
        let gpu = catalog::gpu(gpu_id).unwrap().unwrap();
        let inp = EstimateInput {
            model: &m,
            gpu: &gpu,
            calibration: moeplan::profile::resolve(&gpu, moeplan::memory::Engine::Neutral).kernels,
            layout,
            workload: Workload {
                isl: moeplan::units::Tokens::new(1000),
                osl: moeplan::units::Tokens::new(1000),
                concurrency: 256,
                cache_hit_rate: moeplan::units::Fraction::ZERO,
                client: moeplan::serving::Client::Fixed,
            },
            engine: EngineConfig::default(),
            redundant_experts: redundant * 8,
            routing_skew: 0.0,
            overlap: moeplan::ops::Overlap::None,
        };
        let full = estimate(&inp).unwrap();
        let fast = estimate_summary(&inp).unwrap();
        assert!(fast.explain.is_empty() && fast.decode.ops.is_empty());
        assert_eq!(
            full.ttft.value().to_bits(),
            fast.ttft.value().to_bits(),
            "{id}"
        );
        assert_eq!(
            full.tpot.value().to_bits(),
            fast.tpot.value().to_bits(),
            "{id}"
        );
        assert_eq!(full.memory, fast.memory, "{id}");
        assert_eq!(full.max_concurrency, fast.max_concurrency, "{id}");
        assert_eq!(full.load_imbalance, fast.load_imbalance, "{id}");
        assert_eq!(full.ceilings, fast.ceilings, "{id}");
        assert_eq!(full.bottleneck, fast.bottleneck, "{id}");
        assert_eq!(full.decode.by_bound, fast.decode.by_bound, "{id}");
        assert_eq!(full.warnings, fast.warnings, "{id}");
        // memory() and max_concurrency() agree with the combined pass.
        let ctx = 2000;
        let mem = memory::memory(
            &m,
            &gpu,
            &layout,
            &inp.engine,
            inp.redundant_experts,
            256,
            ctx,
        );
        assert_eq!(mem, full.memory, "{id}");
        assert_eq!(
            memory::max_concurrency(&m, &gpu, &layout, &inp.engine, inp.redundant_experts, ctx),
            full.max_concurrency
        );
    }
    let a = moeplan::serving::load_imbalance(256, 8, 0, 1000.0, 0.5);
    let b = moeplan::serving::load_imbalance(256, 8, 0, 1000.0, 0.5);
    assert_eq!(a.to_bits(), b.to_bits());
}

/// Where not one request fits beside the weights (qwen3-235b-a22b in BF16:
/// 470 GB of weights on one 80 GB H100), the estimate says it does not fit
/// and how many do (0), and not that the requests above a running slot
/// wait for one: no slot ever frees.
#[test]
fn no_room_for_one_request_is_not_a_queue() {
    let m = model("qwen3-235b-a22b");
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let e = estimate(&EstimateInput {
        model: &m,
        gpu: &gpu,
        calibration: moeplan::profile::resolve(&gpu, moeplan::memory::Engine::Vllm).kernels,
        layout: Layout::default(),
        workload: Workload {
            isl: moeplan::units::Tokens::new(1000),
            osl: moeplan::units::Tokens::new(100),
            concurrency: 8,
            cache_hit_rate: moeplan::units::Fraction::ZERO,
            client: moeplan::serving::Client::Fixed,
        },
        engine: moeplan::memory::Engine::Vllm.config(gpu.memory),
        redundant_experts: 0,
        routing_skew: 0.0,
        overlap: moeplan::ops::Overlap::None,
    })
    .unwrap();
    assert!(!e.fits);
    assert_eq!(e.max_concurrency, 0);
    assert!(
        e.warnings.iter().any(|w| w.starts_with("does not fit")),
        "{:?}",
        e.warnings
    );
    assert!(
        !e.warnings.iter().any(|w| w.contains("wait for a slot")),
        "{:?}",
        e.warnings
    );
}

/// An engine runs at most `max_running_requests` per attention-DP rank; the
/// others wait for a slot. With 128 requests in flight and a cap of 64, 64
/// run and 64 wait; the 64 running ones leave once per steady cycle (the
/// later rounds' TTFT + (osl − 1) × TPOT: the first round's burst is a
/// transient the slots freed in steady state do not see), so by Little's
/// law the wait is (128 − 64) / 64 = 1 steady cycle on top of the TTFT of
/// the same 64 running requests alone.
#[test]
fn running_cap_queues_the_rest() {
    use moeplan::memory::Engine;
    let m = model("qwen3-30b-a3b");
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let mut engine = Engine::Vllm.config(gpu.memory);
    assert_eq!(engine.max_running_requests, Some(1024));
    engine.max_running_requests = Some(64);
    let run = |concurrency| {
        estimate(&EstimateInput {
            model: &m,
            gpu: &gpu,
            calibration: moeplan::profile::resolve(&gpu, moeplan::memory::Engine::Neutral).kernels,
            layout: Layout::default(),
            workload: Workload {
                isl: moeplan::units::Tokens::new(1000),
                osl: moeplan::units::Tokens::new(100),
                concurrency,
                cache_hit_rate: moeplan::units::Fraction::ZERO,
                client: moeplan::serving::Client::Fixed,
            },
            engine,
            redundant_experts: 0,
            routing_skew: 0.0,
            overlap: moeplan::ops::Overlap::None,
        })
        .unwrap()
    };
    let alone = run(64);
    let queued = run(128);
    assert!(queued
        .warnings
        .iter()
        .any(|w| w.contains("wait for a slot")));
    assert_eq!(queued.decoding_requests, 64.0);
    assert!(within(queued.tpot.value(), alone.tpot.value(), 1e-12));
    let extra = queued.ttft.value() - alone.ttft.value();
    let cycle = alone.benchmark.steady_ttft.value() + 99.0 * alone.tpot.value();
    assert!(within(extra, cycle, 1e-9), "{extra} vs {cycle}");
    // The waiting requests hold no KV cache.
    assert!(within(
        queued.memory.kv_cache_bytes.value(),
        alone.memory.kv_cache_bytes.value(),
        1e-12
    ));
    // The engine-neutral estimate has no cap: all 128 decode.
    let neutral = estimate(&EstimateInput {
        engine: EngineConfig::default(),
        ..EstimateInput {
            model: &m,
            gpu: &gpu,
            calibration: moeplan::profile::resolve(&gpu, moeplan::memory::Engine::Neutral).kernels,
            layout: Layout::default(),
            workload: Workload {
                isl: moeplan::units::Tokens::new(1000),
                osl: moeplan::units::Tokens::new(100),
                concurrency: 128,
                cache_hit_rate: moeplan::units::Fraction::ZERO,
                client: moeplan::serving::Client::Fixed,
            },
            engine,
            redundant_experts: 0,
            routing_skew: 0.0,
            overlap: moeplan::ops::Overlap::None,
        }
    })
    .unwrap();
    assert_eq!(neutral.decoding_requests, 128.0);
}

/// The pure phases bound the mixed step: a step of the decoding batch alone
/// is no slower than the steady-state step, which carries the same decodes
/// plus prompt tokens; prefill throughput stays under the compute ceiling;
/// and the decode rate is the batch over the step.
#[test]
fn pure_phases_bound_the_mixed_step() {
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    for (id, layout) in [
        (
            "deepseek-v3",
            Layout {
                dp: 8,
                ep: 8,
                ..Layout::default()
            },
        ),
        (
            "qwen3-30b-a3b",
            Layout {
                tp: 2,
                etp: 2,
                ..Layout::default()
            },
        ),
        (
            "mixtral-8x7b",
            Layout {
                pp: 2,
                tp: 2,
                etp: 2,
                ..Layout::default()
            },
        ),
    ] {
        let m = model(id);
        let e = estimate(&EstimateInput {
            model: &m,
            gpu: &gpu,
            calibration: moeplan::profile::resolve(&gpu, moeplan::memory::Engine::Neutral).kernels,
            layout,
            workload: Workload {
                isl: moeplan::units::Tokens::new(2000),
                osl: moeplan::units::Tokens::new(500),
                concurrency: 64,
                cache_hit_rate: moeplan::units::Fraction::ZERO,
                client: moeplan::serving::Client::Fixed,
            },
            engine: EngineConfig::default(),
            redundant_experts: 0,
            routing_skew: 0.0,
            overlap: moeplan::ops::Overlap::None,
        })
        .unwrap();
        assert!(
            e.pure.decode.step_time.value() <= e.tpot.value() * (1.0 + 1e-9),
            "{id}"
        );
        assert!(
            e.pure.prefill.tokens_per_s_per_gpu.value()
                <= e.ceilings.prefill_tokens_per_s_per_gpu.value(),
            "{id}"
        );
        let rate = e.pure.decode.sequences_per_rank * layout.dp as f64
            / e.pure.decode.step_time.value()
            / layout.gpus() as f64;
        assert!(
            within(e.pure.decode.tokens_per_s_per_gpu.value(), rate, 1e-9),
            "{id}"
        );
    }
}

/// MLA attention in a step that mixes a prefill chunk with decodes: engines
/// split the batch by kind, so each part is costed in its own form.
/// DeepSeek-V3 (128 heads, kv_lora 512, rope 64, nope 128, v 128), TP 1:
/// - decode tokens, absorbed over the latent KV: per cached token and head
///   q·[c_kv, k_rope] (2·576) + p·c_kv (2·512) = 2·(2·512 + 64) = 2176 FLOP;
///   × 128 heads = 278,528 per layer, × 61 layers = 17.0 MFLOP per attended
///   context token;
/// - prefill tokens, non-absorbed (K, V decompressed by kv_b_proj): per
///   attended pair and head 2·(128 + 64) + 2·128 = 640 FLOP; × 128 = 81,920
///   per layer, × 61 = 5.0 MFLOP.
///
/// Step: 8 decodes at 4096 tokens of context, one 2048-token prompt.
/// attention_decode = 8 · 4096 · 278,528 = 9.13 GFLOP per layer;
/// attention_prefill = 81,920 · 2048·2049/2 = 171.9 GFLOP per layer (in the
/// absorbed form it would be 278,528 · 2,098,176 = 584.4 GFLOP, 3.4× more).
#[test]
fn mla_mixed_step_costs_prefill_non_absorbed() {
    let mut m = model("deepseek-v3");
    let layers = m.layers.len() as f64;
    assert_eq!(layers, 61.0);
    m.layers.truncate(1);
    let gpu = catalog::gpu("h200-sxm")
        .expect("in catalog")
        .expect("loads");
    let cal = moeplan::profile::resolve(&gpu, moeplan::memory::Engine::Neutral).kernels;
    let ctx = CostContext::new(&m, &gpu, Layout::default(), 0, 0.0, &cal);
    let absorbed = 2.0 * 128.0 * (2.0 * 512.0 + 64.0);
    let non_absorbed = 2.0 * 128.0 * (128.0 + 64.0 + 128.0);
    assert!(within(absorbed * layers, 17.0e6, 0.005));
    assert!(within(non_absorbed * layers, 5.0e6, 0.005));
    let flop = |shape: &StepShape, name: &str| {
        let mut ops = Vec::new();
        ctx.attention_core(
            1,
            shape,
            moeplan::model::Mixer::Full,
            128.0,
            1.0,
            0.0,
            &mut ops,
        );
        ops.iter()
            .find(|o| o.kind.name() == name)
            .map(|o| o.flop.value())
    };
    let mixed = StepShape {
        decode_seqs: 8.0,
        decode_context: 4096.0,
        prefill_seqs: 1.0,
        prefill_tokens_per_seq: 2048.0,
        prefill_offset: 0.0,
        peer_tokens: None,
    };
    let pairs = 2048.0 * 2049.0 / 2.0;
    let decode = flop(&mixed, "attention_decode").expect("decode part");
    let prefill = flop(&mixed, "attention_prefill").expect("prefill part");
    assert!(within(decode, 8.0 * 4096.0 * absorbed, 1e-12), "{decode}");
    assert!(within(prefill, pairs * non_absorbed, 1e-12), "{prefill}");
    assert!(within(prefill, 171.9e9, 0.001), "{prefill}");
    // The same parts alone cost the same FLOP as inside the mixed step.
    let alone = flop(&StepShape::prefill(1.0, 2048.0), "attention_prefill");
    assert_eq!(alone, Some(prefill));
    let alone = flop(&StepShape::decode(8.0, 4096.0), "attention_decode");
    assert_eq!(alone, Some(decode));
}

/// Qwen3-VL's vision tower (Qwen3-VL-235B-A22B-Instruct's `vision_config`:
/// depth 27, width h = 1152, MLP 4304, 3 DeepStack levels, language width
/// 4096): blocks 27 × (4h² + 4h + 2·h·4304 + 4304 + h + 4h) = 27 ×
/// 15,239,504 = 411,466,608; patch embedding 3·2·16²·h + h = 1,770,624
/// and 2304 positions × h = 2,654,208; four mergers of the merged width
/// m = 4h = 4608, each m² + m + 4096·m + 4096 = 40,116,736, their norms
/// 2h plus 3 × 2m = 29,952 → 576,388,336. With the Qwen3-235B-A22B text model
/// (235.09B) that is 235.67B (published 236B); the tower is not per token.
#[test]
fn qwen3_vl_235b_counts_its_vision_tower() {
    let p = model("qwen3-vl-235b-a22b").params();
    let vision = p.by_component[&Component::VisionEncoder];
    assert_eq!(vision.total.value(), 576_388_336.0);
    assert_eq!(vision.active.value(), 0.0);
    assert!(within(p.total.value(), 236e9, 0.01), "{}", p.total.value());
    assert!(within(p.active.value(), 22e9, 0.02), "{}", p.active.value());
    let text = model("qwen3-235b-a22b").params().total.value();
    assert_eq!(p.total.value() - text, 576_388_336.0);
}

/// Qwen3-VL-8B: the Qwen3-8B text model, 36 × (attention 4096·4096·2 +
/// 4096·1024·2 + q/k norms 256 = 41,943,296; MLP 3·4096·12288 =
/// 150,994,944; norms 8192) + embedding and LM head 2 × 151936 × 4096 =
/// 1,244,659,712 + final norm 4096 = 8,190,735,360, plus the same vision
/// tower as the 235B (language width 4096): 576,388,336 → 8,767,123,696
/// (published "8B", 8.77B in its safetensors index).
#[test]
fn qwen3_vl_8b_is_the_dense_text_model_and_its_tower() {
    let p = model("qwen3-vl-8b").params();
    assert_eq!(p.total.value(), 8_767_123_696.0);
    assert_eq!(p.active.value(), 8_190_735_360.0);
}

/// Qwen3.5-27B (dense, Gated DeltaNet in 48 of 64 layers): MLPs 64 ×
/// 3·5120·17408 = 17.11B; gated full attention 16 × (5120·24·256·2 +
/// 5120·4·256·2 + 24·256·5120) = 1.68B; DeltaNet 48 × (5120·10240 +
/// 5120·6144 + 5120·48·2 + conv 10240·4 + 6144·5120) = 5.56B; embedding
/// and LM head 2 × 248320 × 5120 = 2.54B → 26.89B text, + a vision tower
/// of 0.46B = 27.36B; published "27B", a ~54 GB bf16 checkpoint (the name
/// is rounded, hence 1.5%).
#[test]
fn qwen3_5_27b_is_dense_with_gated_deltanet() {
    let m = model("qwen3.5-27b");
    assert!(m.moe.is_none());
    let linear = m
        .layers
        .iter()
        .filter(|l| l.mixer == moeplan::model::Mixer::Linear)
        .count();
    assert_eq!((linear, m.layers.len()), (48, 64));
    let p = m.params();
    assert!(within(p.total.value(), 27e9, 0.015), "{}", p.total.value());
    assert!(within(p.weight_bytes.value(), 54e9, 0.015));
}

/// MiMo-7B-Base (Qwen2-shaped with q/k/v biases): 36 × (attention
/// 4096·4096·2 + 4096·1024·2 + biases 6144 = 41,949,184; MLP 3·4096·11008
/// = 135,266,304; norms 8192) = 6,380,052,480; embedding and LM head 2 ×
/// 151680 × 4096 = 1,242,562,560; final norm 4096 → 7,622,619,136
/// (published "7B"). Its MTP layer is stated, not counted.
#[test]
fn mimo_7b_by_hand() {
    let m = model("mimo-7b");
    assert_eq!(m.params().total.value(), 7_622_619_136.0);
    assert!(m.assumptions.iter().any(|a| a.contains("MTP")));
}

/// MiMo-V2-Flash (published: 309B total, 15B active; Xiaomi's release and
/// the SGLang day-0 post). Attention differs by layer: 9 full layers
/// (`hybrid_layer_pattern` 0) of 64 heads, 4 KV heads, q/k head 192 and v
/// head 128: 4096 × (12288 + 768 + 512 + 8192) = 89,128,960; 39 sliding
/// layers of 8 KV heads and a sink per head: 4096 × (12288 + 1536 + 1024 +
/// 8192) + 64 = 94,371,904 → 4,482,664,896. Layer 0 is dense (3 × 4096 ×
/// 16384 = 201,326,592); 47 MoE layers of 256 experts × 3 × 4096 × 2048
/// = 302,795,194,368 and a router with a correction bias 47 × (256 ×
/// 4096 + 256) = 49,295,104; embedding and LM head 2 × 152576 × 4096 =
/// 1,249,902,592; norms 48 × 2 × 4096 + 4096 = 397,312 → 308,778,780,864.
/// Active with 8 of 256 experts: 15,445,936,320 (the published 15B,
/// rounded). KV cache per token, bf16: 9 × 4 × (192 + 128) × 2 B + 39 ×
/// 8 × 320 × 2 B = 222,720 B; at a 1024-token context the sliding layers
/// hold their 128-token window: 9 × 2560 × 1024 + 39 × 5120 × 128.
#[test]
fn mimo_v2_flash_is_309b_with_15b_active() {
    check_total("mimo-v2-flash", 309e9, 0.01);
    let m = model("mimo-v2-flash");
    let p = m.params();
    assert_eq!(p.total.value(), 308_778_780_864.0);
    assert_eq!(p.active.value(), 15_445_936_320.0);
    assert!(within(p.active.value(), 15e9, 0.035));
    assert_eq!(m.kv_bytes_per_token().value(), 222_720.0);
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let layout = Layout {
        tp: 8,
        ep: 8,
        ..Layout::default()
    };
    let mem = memory::memory(&m, &gpu, &layout, &EngineConfig::default(), 0, 8, 1024);
    // Per GPU at tp 8: sliding layers split their 8 KV heads, full layers
    // replicate their 4 (each GPU holds one): 9 × 640 × 1024 + 39 × 640 × 128.
    let per_request = 9.0 * 640.0 * 1024.0 + 39.0 * 640.0 * 128.0;
    assert!(
        within(mem.kv_bytes_per_request.value(), per_request, 1e-9),
        "{}",
        mem.kv_bytes_per_request.value()
    );
}

/// Gemma-4-26B-A4B (published: 25.2B total, 3.8B active, for the language
/// model; the vision encoder, "~550M", is stated apart; Google's model
/// card as quoted by vast.ai and the Gemma 4 wiki). 25 sliding layers (16
/// heads, 8 KV heads of 256): 2816 × (4096 + 2048 + 2048) + 4096 × 2816 =
/// 34,603,008; 5 global layers (2 KV heads of 512 whose keys are the values,
/// no v_proj): 2816 × (8192 + 1024) + 8192 × 2816 = 49,020,928 → attention
/// 1,110,179,840. Every layer keeps its dense GeGLU MLP, 3 × 2816 × 2112
/// (30 × = 535,265,280), beside 128 experts of 3 × 2816 × 704 (30 × =
/// 22,837,985,280) and a router with a per-expert scale 30 × (2816 × 128 +
/// 128) = 10,817,280. Norms: eight of 2816 and a layer scalar per layer,
/// q/k norms (25 × 512 + 5 × 1024), the final norm = 696,606; the tied
/// embedding 262144 × 2816 = 738,197,504 → 25,233,141,790 for the language
/// model (+0.13%). Active with 8 experts: 3,822,530,590. Checked against
/// Hugging Face's `modeling_gemma4.py` (`Gemma4TextDecoderLayer`: the
/// router's `scale` is the eighth vector, `layer_scalar` a one-element
/// buffer, the router's own norm weightless). The tower
/// (`Gemma4VisionModel`): 27 blocks of 4 × 1152² + 3 × 1152 × 4304 + four
/// norms 4 × 1152 + q/k norms 2 × 72 = 20,187,792; the patch embedding 3 ×
/// 16² × 1152, the position table 2 × 10240 × 1152 and the standardisation
/// bias and scale 2 × 1152 = 24,479,232; the projector 1152 × 2816 →
/// 572,794,416 (the q/k norms and the two vectors add 6,192 to the earlier
/// reading's 572,788,224). KV cache per token, bf16: 25 × 8 × 512 × 2 B +
/// 5 × 2 × 1024 × 2 B = 225,280 B (Hugging Face caches the global layers'
/// K and V apart: the value is the key projection under a weightless norm,
/// the key under its own norm and RoPE), the sliding layers holding at
/// most their 1024-token window.
#[test]
fn gemma_4_26b_a4b_is_25_2b_with_3_8b_active() {
    let m = model("gemma-4-26b-a4b");
    let p = m.params();
    let vision = p.by_component[&Component::VisionEncoder].total.value();
    assert_eq!(vision, 572_794_416.0);
    let text = p.total.value() - vision;
    assert_eq!(text, 25_233_141_790.0);
    assert!(within(text, 25.2e9, 0.01));
    assert_eq!(p.active.value(), 3_822_530_590.0);
    assert!(within(p.active.value(), 3.8e9, 0.01));
    assert!(within(vision, 550e6, 0.05));
    assert_eq!(m.kv_bytes_per_token().value(), 225_280.0);
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let mem = memory::memory(
        &m,
        &gpu,
        &Layout::default(),
        &EngineConfig::default(),
        0,
        1,
        8192,
    );
    let per_request = 25.0 * 8192.0 * 1024.0 + 5.0 * 4096.0 * 8192.0;
    assert!(
        within(mem.kv_bytes_per_request.value(), per_request, 1e-9),
        "{}",
        mem.kv_bytes_per_request.value()
    );
}

/// Transformers 5.15 and later save Gemma-4's global attention shape as
/// `per_layer_config` overrides (`{"5": {"head_dim": 512,
/// "num_key_value_heads": 2}, ...}`) in place of the flat `global_head_dim`
/// and `num_global_key_value_heads`
/// (`tests/fixtures/hf/gemma-4-26b-per-layer_config.json`); read either
/// way, the 26B-A4B is the same model: the same parameters and 225,280 KV
/// bytes per token (read with the sliding layers' 256 and 8 instead, the
/// global layers would cache 5 × 2 × 8 × 256 × 2 B = 40,960 B in place of
/// 5 × 2 × 2 × 512 × 2 B = 20,480 B).
#[test]
fn gemma_4_per_layer_config_reads_the_global_shape() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hf/gemma-4-26b-per-layer_config.json"
    );
    let m = catalog::resolve_model(path).expect("loads");
    let base = model("gemma-4-26b-a4b");
    assert_eq!(m.params().total.value(), base.params().total.value());
    assert_eq!(m.kv_bytes_per_token().value(), 225_280.0);
}

/// Gemma-4-31B (dense; published 30.7B for the language model, NVIDIA's
/// NVFP4 release): 50 sliding layers (32 heads, 16 KV heads of 256):
/// 5376 × 24576 = 132,120,576; 10 global layers (4 KV heads of 512, keys as
/// values): 5376 × 34816 = 187,170,816 → 8,477,736,960; MLPs 60 × 3 × 5376
/// × 21504 = 20,808,990,720; norms 1,331,516; tied embedding 262144 × 5376
/// = 1,409,286,144 → 30,697,345,340. The release keeps attention in bf16
/// (its `ignore` list), the MLPs in NVFP4, and caches fp8: 50 × 16 × 512 +
/// 10 × 4 × 1024 = 450,560 B per token. Its tower is the 26B's, projecting
/// into 5376: 572,794,416 + 1152 × (5376 − 2816) = 575,743,536.
#[test]
fn gemma_4_31b_is_30_7b() {
    let m = model("gemma-4-31b-it-nvfp4");
    let p = m.params();
    let vision = p.by_component[&Component::VisionEncoder].total.value();
    assert_eq!(vision, 575_743_536.0);
    assert_eq!(p.total.value() - vision, 30_697_345_340.0);
    assert!(within(p.total.value() - vision, 30.7e9, 0.01));
    assert_eq!(m.dtypes.attention, moeplan::dtype::DType::Bf16);
    assert_eq!(m.dtypes.dense, moeplan::dtype::DType::Nvfp4);
    assert_eq!(m.kv_bytes_per_token().value(), 450_560.0);
}

/// Kimi-K3 (published: 2.8T total, Moonshot's release; the Hugging Face
/// page counts 2,779.9B with the vision tower; 104B active per secondary
/// reports). 69 Kimi Delta Attention layers (96 heads of 128, P = 12288):
/// q, k, v 7168 × 36864 = 264,241,152; their convolutions 36864 × 4 =
/// 147,456; the decay's low-rank pair 128 × (7168 + 12288) = 2,490,368, a
/// dt bias per channel 12,288 and an A_log per head 96; β 7168 × 96 =
/// 688,128; the full-rank output gate and o_proj 2 × 7168 × 12288 =
/// 176,160,768; the gated norm 128 → 443,740,384. 24 MLA layers: q_a
/// 7168 × 1536 + q_b 1536 × 96 × 192 + kv_a 7168 × 576 + kv_b 512 × 96 ×
/// 256 + o 12288 × 7168 + the output gate 7168 × 12288 = 232,194,048 and
/// 2,048 of norms. Layer 0 dense, 3 × 7168 × 33792 = 726,663,168; 92 MoE
/// layers of 896 experts in the 3584-wide latent (3 × 3584 × 3072 =
/// 33,030,144 each), the latent projections 2 × 7168 × 3584, a router with
/// a correction bias 7168 × 896 + 896 and two shared experts 2 × 3 × 7168
/// × 3072 = 29,784,933,248. Attention residuals: three vectors per block
/// (6 × 7168 per layer) and 3 × 7168 at the output with the final norm;
/// embedding and LM head 2 × 163840 × 7168 → 2,779,484,146,272 for the
/// language model. The vision tower (MoonViT3d, `vision_config`; shapes
/// from the checkpoint-named port in AMD's ATOM): 27 blocks of wqkv 1024 ×
/// 3 × 1536 + wo 1536 × 1024 + fc0/fc1 2 × 1024 × 4096 + two RMSNorms 2 ×
/// 1024 = 14,682,112; the patch convolution 3 × 14² × 1024, the 64 × 64
/// position grid × 1024 and the final norm 1024 = 4,797,440; the
/// patchmergerv2 projector 4096² + 4096 × 7168 + its norm 7168 =
/// 46,144,512 → 447,358,976 → 2,779,931,505,248, the Hugging Face page's
/// 2,779.9B (−0.72% of 2.8T). Active with 16 experts: 105,363,688,032
/// (104.19B without the embedding; the tower is not per text token). Cache: 24 MLA layers × (512 + 64) × 2 B = 27,648 B per
/// token; state: 69 × (96 × 128 × 128 × 4 B + 36864 × 3 × 2 B) =
/// 449,372,160 B per sequence, split by TP.
#[test]
fn kimi_k3_is_2_8t_with_kda_and_gated_mla() {
    check_total("kimi-k3", 2.8e12, 0.01);
    let m = model("kimi-k3");
    let p = m.params();
    let vision = p.by_component[&Component::VisionEncoder].total.value();
    assert_eq!(vision, 447_358_976.0);
    assert_eq!(p.total.value() - vision, 2_779_484_146_272.0);
    assert_eq!(p.total.value(), 2_779_931_505_248.0);
    assert_eq!(p.active.value(), 105_363_688_032.0);
    let embedding = p.by_component[&Component::Embedding].total.value();
    assert!(within(p.active.value() - embedding, 104e9, 0.01));
    assert_eq!(m.dtypes.experts, moeplan::dtype::DType::Mxfp4);
    assert_eq!(m.dtypes.attention, moeplan::dtype::DType::Bf16);
    assert_eq!(m.kv_bytes_per_token().value(), 27_648.0);
    assert_eq!(m.linear_state_bytes_per_sequence().value(), 449_372_160.0);
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    let layout = Layout {
        tp: 8,
        ep: 8,
        ..Layout::default()
    };
    let mem = memory::memory(&m, &gpu, &layout, &EngineConfig::default(), 0, 8, 1024);
    let per_request = 27_648.0 * 1024.0 + 449_372_160.0 / 8.0;
    assert!(
        within(mem.kv_bytes_per_request.value(), per_request, 1e-9),
        "{}",
        mem.kv_bytes_per_request.value()
    );
}

/// MiniMax-M3 (published: ~428B total, ~23B activated; MiniMax's model
/// card). 60 GQA layers of 64 heads and 4 KV heads of 128: 6144 × (8192 +
/// 1024) + 8192 × 6144 = 106,954,752, with per-head q/k norms 256; 57
/// sparse layers add the MSA indexer, its index q 6144 × 4 × 128 and its
/// one key head 6144 × 128 = 3,932,160 and their norms 256. Layers 0-2
/// dense, 3 × 6144 × 12288 = 226,492,416; 57 MoE layers of 128 experts ×
/// 3 × 6144 × 3072, a shared expert of the same size and a router with a
/// correction bias 6144 × 128 + 128 = 7,305,166,976; norms (60 × 2 + 1)
/// × 6144; embedding and LM head 2 × 200064 × 6144 → 426,174,572,928
/// (−0.43% of 428B; the 7 MTP modules are not counted). Active with 4
/// experts: 25,962,473,856, of which 23.50B outside the embedding and LM
/// head (the card's ~23B). KV per token, bf16: 60 × 4 × 2 × 128 × 2 B +
/// 57 index keys × 128 × 2 B = 137,472 B. At tp 8 each GPU holds one of
/// the 4 KV heads and the whole index key: 3 × 512 + 57 × 768 = 45,312 B
/// per token. A 32k-token decode reads 2,048 tokens per sparse layer.
#[test]
fn minimax_m3_is_428b_with_sparse_attention() {
    check_total("minimax-m3", 428e9, 0.01);
    let m = model("minimax-m3");
    let p = m.params();
    assert_eq!(p.total.value(), 426_174_572_928.0);
    assert_eq!(p.active.value(), 25_962_473_856.0);
    let outside = p.by_component[&Component::Embedding].total.value()
        + p.by_component[&Component::LmHead].total.value();
    assert!(within(p.active.value() - outside, 23e9, 0.025));
    assert_eq!(m.kv_bytes_per_token().value(), 137_472.0);
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    let layout = Layout {
        tp: 8,
        ep: 8,
        ..Layout::default()
    };
    let mem = memory::memory(&m, &gpu, &layout, &EngineConfig::default(), 0, 8, 1024);
    assert!(
        within(mem.kv_bytes_per_request.value(), 45_312.0 * 1024.0, 1e-9),
        "{}",
        mem.kv_bytes_per_request.value()
    );
    // Attention FLOP per token at 32k: 3 dense layers read every token,
    // 57 sparse ones 2,048 after the index pass over all 32,768.
    let ctx = 32_768.0;
    let dense = 3.0 * 2.0 * 64.0 * 256.0 * ctx;
    let sparse = 57.0 * (2.0 * 64.0 * 256.0 * 2048.0 + 2.0 * 4.0 * 128.0 * ctx);
    let report = moeplan::report::model_report(&m);
    let at = report
        .attention_by_context
        .iter()
        .find(|c| c.context == 32_768);
    let flop = at.expect("32k is sampled").flop;
    assert!(within(flop, dense + sparse, 1e-12), "{flop}");
    // NVIDIA's release: the same language model (NVFP4 experts, MXFP8
    // attention and shared experts) and a vision tower.
    let nv = model("minimax-m3-nvfp4");
    let q = nv.params();
    let vision = q.by_component[&Component::VisionEncoder].total.value();
    assert_eq!(q.total.value() - vision, 426_174_572_928.0);
    assert_eq!(nv.dtypes.experts, moeplan::dtype::DType::Nvfp4);
    assert_eq!(nv.dtypes.attention, moeplan::dtype::DType::Fp8);
}

/// Step-3.7-Flash (published: 196B for the language model, 198B with its
/// 1.8B vision encoder, 11B active; StepFun's release as quoted by the vLLM
/// recipe for stepfun-ai/Step-3.7-Flash). 45 layers of width 4096: 12 full
/// layers (64 heads, 8 KV heads of 128, a g_proj of one gate per head):
/// 4096 × (8192 + 64 + 2048) + 8192 × 4096 = 75,759,616; 33 sliding layers
/// (96 heads: StepFun's report, the published text_config's
/// attention_other_setting): 4096 × (12288 + 96 + 2048) + 12288 × 4096 =
/// 109,445,120 → attention 4,520,804,352. Three dense SwiGLU layers 3 × 3 ×
/// 4096 × 11264 = 415,236,096; 42 MoE layers of 288 experts of 3 × 4096 ×
/// 1280 = 190,253,629,440, a shared expert each 660,602,880 and a router
/// with a selection bias 42 × (4096 × 288 + 288) = 49,557,312; norms 45 ×
/// 2 × 4096 + 45 × 256 (q/k) + 4096 = 384,256; embedding and LM head 2 ×
/// 128896 × 4096 = 1,055,916,032 → 196,956,130,368 (+0.49%). Active with 8
/// experts: 11,987,323,968 (11.46B without the embedding). KV cache per
/// token, bf16: 45 × 2 × 8 × 128 × 2 B = 184,320 B; at an 8192-token
/// context the sliding layers hold their 512-token window.
#[test]
fn step_3_7_flash_is_196b_with_96_heads_on_sliding_layers() {
    check_total("step-3.7-flash", 196e9, 0.01);
    let m = model("step-3.7-flash");
    let p = m.params();
    assert_eq!(
        p.by_component[&Component::Attention].total.value(),
        4_520_804_352.0
    );
    assert_eq!(p.total.value(), 196_956_130_368.0);
    assert_eq!(p.active.value(), 11_987_323_968.0);
    assert_eq!(m.kv_bytes_per_token().value(), 184_320.0);
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let mem = memory::memory(
        &m,
        &gpu,
        &Layout::default(),
        &EngineConfig::default(),
        0,
        1,
        8192,
    );
    let per_request = 12.0 * 4096.0 * 8192.0 + 33.0 * 4096.0 * 512.0;
    assert!(
        within(mem.kv_bytes_per_request.value(), per_request, 1e-9),
        "{}",
        mem.kv_bytes_per_request.value()
    );
}

/// The shared folder's Step-3.7-Flash configs are AIConfigurator's
/// flattened ones: without `attention_other_setting` the sliding layers
/// take the full layers' 64 heads, and the model says so; the FP8 sibling
/// stores its weights in fp8.
#[test]
fn step_3_7_flash_flat_config_states_what_it_lacks() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/model-configs/hf");
    let path = dir.join("stepfun-ai--Step-3.7-Flash-FP8_config.json");
    if !path.exists() {
        return;
    }
    let m = catalog::resolve_model(path.to_str().unwrap()).expect("loads");
    assert!(m
        .assumptions
        .iter()
        .any(|a| a.contains("attention_other_setting")));
    assert_eq!(m.dtypes.experts, moeplan::dtype::DType::Fp8);
    assert_eq!(m.n_moe_layers(), 42);
}

/// Llama-3.3-Nemotron-Super-49B (published: 49.9B, NVIDIA's card says
/// "49B"): 80 DeciLM blocks of width 8192, vocabulary 128256 (untied).
/// 49 blocks keep attention (64 heads, 64 / n_heads_in_group 8 = 8 KV heads
/// of 128): 8192 × 8192 × 2 + 2 × 8192 × 1024 = 150,994,944 each →
/// 7,398,752,256; 31 have none (no_op, no input norm). Every block keeps a
/// SwiGLU MLP of width ⌈⌊2 · ffn_mult · 8192 / 3⌋⌉₂₅₆ (DeciLM's
/// `_ffn_mult_to_intermediate_size`): 49 × 28672 (5.25), 10 × 7168
/// (1.3125), 8 × 5632 (1.0: 5461 rounds up), 6 × 14336 (2.625), 6 × 2816
/// (0.5), 1 × 17920 (3.28125) = 1,642,496 columns × 3 × 8192 =
/// 40,365,981,696. Norms (49 + 80 + 1) × 8192 = 1,064,960; embedding and
/// LM head 2 × 128256 × 8192 = 2,101,346,304 → 49,867,145,216 (−0.07%).
/// KV cache per token, bf16: only the 49 attention blocks, 49 × 2 × 8 ×
/// 128 × 2 B = 200,704 B.
#[test]
fn llama_3_3_nemotron_super_49b_is_49_9b() {
    check_total("llama-3.3-nemotron-super-49b", 49.9e9, 0.01);
    let m = model("llama-3.3-nemotron-super-49b");
    let p = m.params();
    assert_eq!(p.total.value(), 49_867_145_216.0);
    assert_eq!(
        p.by_component[&Component::DenseMlp].total.value(),
        40_365_981_696.0
    );
    assert_eq!(m.kv_bytes_per_token().value(), 200_704.0);
    let softmax = m
        .layers
        .iter()
        .filter(|l| m.attention_of(l.mixer).is_some())
        .count();
    assert_eq!(softmax, 49);
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let layout = Layout {
        tp: 2,
        ..Layout::default()
    };
    let mem = memory::memory(&m, &gpu, &layout, &EngineConfig::default(), 0, 1, 1000);
    // 49 layers × 4 KV heads per GPU × 256 × 2 B × 1000 tokens.
    assert!(within(
        mem.kv_bytes_per_request.value(),
        49.0 * 2048.0 * 1000.0,
        1e-9
    ));
}

/// DeciLM blocks of their own kind (`tests/fixtures/hf/decilm-49b-edited_config.json`,
/// the 49B config with three blocks edited by hand): block 0 in groups of
/// 16 (4 KV heads: k, v −2 × 8192 × 512 = −8,388,608), block 1's attention a
/// linear (replace_with_linear: 8192² = 67,108,864 for its 150,994,944),
/// block 2's 28672-wide MLP a linear (67,108,864 for 704,643,072); the norms
/// stay → −729,808,896. KV cache: block 0 caches 4 heads, block 1 none:
/// 200,704 − 2 × 4 × 128 × 2 − 2 × 8 × 128 × 2 = 194,560 B.
#[test]
fn decilm_blocks_of_their_own_kind() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hf/decilm-49b-edited_config.json"
    );
    let m = catalog::resolve_model(path).expect("loads");
    let base = model("llama-3.3-nemotron-super-49b");
    let delta = m.params().total.value() - base.params().total.value();
    assert_eq!(delta, -729_808_896.0);
    assert_eq!(m.kv_bytes_per_token().value(), 194_560.0);
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let layout = Layout {
        tp: 4,
        pp: 2,
        ..Layout::default()
    };
    assert!(layout.check(&m, &gpu, 0).0.is_empty());
    let mem = memory::memory(&m, &gpu, &layout, &EngineConfig::default(), 0, 8, 2000);
    assert!(mem.total_bytes.value().is_finite() && mem.fits());
}

/// DeepSeek-V4-Flash (published: 284B total, 13B active; DeepSeek's model
/// card and NVIDIA's NVFP4 card). Read from vLLM's `deepseek_v4.py`,
/// `deepseek_v4_attention.py` and `deepseek_compressor.py`: per layer the
/// attention is wq_a 4096·1024 + wq_b 1024·64·512 + wkv 4096·512 + wo_a
/// 64·512·1024 + wo_b 8·1024·4096 + 64 sinks = 106,954,816; `compress_ratios`
/// makes 2 sliding-only layers, 21 CSA layers (ratio 4) with a compressor
/// over overlapping windows (4096·2·2·512 + 4·2·512 + 512) and the indexer
/// (wq_b 1024·64·128 + weights 4096·64 + its compressor 4096·2·2·128 +
/// 4·2·128 + 128) = 19,142,272, and 20 HCA layers (ratio 128) with a
/// compressor 4096·2·512 + 128·512 + 512 = 4,260,352 → attention
/// 5,086,251,840. 43 MoE layers of 256 experts × 3·4096·2048 =
/// 277,025,390,592, a shared expert 43 × 3·4096·2048 = 1,082,130,432, a
/// router with a bias 43 × (4096·256 + 256) = 45,099,008. Norms with the
/// hyper-connections (hc_mult 4: per block 24·16384 + 24 + 3 = 393,243):
/// 43 × (2·4096 + 1024 + 512 + 2·393,243) + 4096 + 65,541 = 34,306,839.
/// Embedding and LM head 2 × 129280·4096 → 284,332,241,239 (+0.12%).
/// Active with 6 experts: 13,799,633,239; without the embedding 13.27B
/// (the published 13B, rounded). The MTP layer (the 44th
/// `compress_ratios` entry) is not counted, as for DeepSeek-V3.
///
/// KV cache (fp8, FlashMLA's layout): an entry of the shared head is 448
/// fp8 + 64 bf16 + 8 scale bytes = 584 B, an indexer key 128 + 4 = 132 B.
/// At a 1024-token context every layer keeps its 128-token window (43 ×
/// 128 × 584 = 3,214,336), the CSA layers 256 compressed entries with
/// their keys (21 × 256 × 716 = 3,849,216) and the HCA layers 8 (20 × 8 ×
/// 584 = 93,440): 7,156,992 B; at 131072: 3,214,336 + 21 × 32768 × 716 +
/// 20 × 1024 × 584 = 507,874,304 B.
#[test]
fn deepseek_v4_flash_is_284b_with_13b_active() {
    let m = model("deepseek-v4-flash");
    let p = m.params();
    assert_eq!(p.total.value(), 284_332_241_239.0);
    assert!(within(p.total.value(), 284e9, 0.01));
    assert_eq!(p.active.value(), 13_799_633_239.0);
    let embedding = p.by_component[&Component::Embedding].active.value();
    assert!(within(p.active.value() - embedding, 13e9, 0.025));
    assert_eq!(
        p.by_component[&Component::Attention].total.value(),
        5_086_251_840.0
    );
    assert_eq!(
        p.by_component[&Component::Norms].total.value(),
        34_306_839.0
    );
    assert_eq!(m.dtypes.experts, moeplan::dtype::DType::Mxfp4);
    assert_eq!(m.dtypes.attention, moeplan::dtype::DType::Fp8);
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    let per_request = |context: u64| {
        memory::memory(
            &m,
            &gpu,
            &Layout::default(),
            &EngineConfig::default(),
            0,
            1,
            context,
        )
        .kv_bytes_per_request
        .value()
    };
    assert_eq!(per_request(1024), 7_156_992.0);
    assert_eq!(per_request(131_072), 507_874_304.0);
}

/// DeepSeek-V4-Flash's hyper-connections (hc_mult m = 4, hidden h = 4096;
/// `hc_pre` / `hc_post` of DeepSeek's `inference/model.py` as its ports
/// spell them out). Around each of the 86 blocks (43 layers × mixer and
/// MoE), per token: the mixing projection 2 × (m·h) × (2+m)·m = 2 × 16384
/// × 24, the RMS scale of the copies 2·m·h, their collapse 2·m·h, the
/// output's spread and the copies' mix 2·m·h + 2·m²·h → 2 × 16384 × 31 =
/// 1,015,808 FLOP; the last collapse 2 × 16384 × 6 = 196,608 → 87,556,096
/// FLOP per token beside the weights' 26,471,591,040 (+0.33%). A decode
/// step of 64 tokens on one GPU: the norms-and-residual ops do 64 × 86 ×
/// 1,015,808 = 5,591,007,232 FLOP and move, per layer, 64 tokens × 2
/// blocks × 2 B × (3 × 16384 + 4096) = 13,631,488 B of copies and the two
/// blocks' fp32 mixing weights 2 × 393,243 × 4 = 3,145,944 B more than
/// without them: 43 × 16,777,432 = 721,429,576 B. Between two pipeline
/// stages the residual crosses whole: 4 × the bytes of one hidden state.
/// The largest step's residual buffers hold the copies into and out of
/// `hc_post` beside the block's input and output: (2 × 4 + 2) hidden
/// states per token instead of 4, 6 × 4096 × 2 B = 49,152 B per step token
/// more.
#[test]
fn deepseek_v4_hyper_connections_are_costed() {
    let m = model("deepseek-v4-flash");
    let mut plain = m.clone();
    plain.hyper_connections = None;
    let extra = m.linear_flop_per_token().value() - plain.linear_flop_per_token().value();
    assert_eq!(extra, 87_556_096.0);
    assert_eq!(plain.linear_flop_per_token().value(), 26_471_591_040.0);
    let gpu = catalog::gpu("h200-sxm").unwrap().unwrap();
    let cal = moeplan::profile::resolve(&gpu, moeplan::memory::Engine::Neutral).kernels;
    let norms = |model: &Model, layout: Layout| {
        let ctx = CostContext::new(model, &gpu, layout, 0, 0.0, &cal);
        let step = ctx.step(&StepShape::decode(64.0, 1024.0));
        let (flop, bytes) = step
            .ops
            .iter()
            .filter(|o| o.kind == moeplan::ops::OpKind::NormsResidual)
            .fold((0.0, 0.0), |(f, b), o| {
                let n = f64::from(o.count);
                (f + o.flop.value() * n, b + o.bytes.value() * n)
            });
        (flop, bytes, step.stage_transfer.value())
    };
    let (flop, bytes, _) = norms(&m, Layout::default());
    let (flop0, bytes0, _) = norms(&plain, Layout::default());
    assert_eq!(flop0, 0.0);
    assert_eq!(flop, 5_591_007_232.0);
    assert_eq!(bytes - bytes0, 721_429_576.0);
    let pp = Layout {
        pp: 2,
        ..Layout::default()
    };
    let latency = gpu.nvlink_latency.value();
    let (_, _, hc) = norms(&m, pp);
    let (_, _, one) = norms(&plain, pp);
    assert!(
        within(hc - latency, 4.0 * (one - latency), 1e-12),
        "{hc} vs {one}"
    );
    let cfg = EngineConfig::default();
    let layout = Layout::default();
    let wider = memory::activation_bytes(&m, &layout, &cfg).value()
        - memory::activation_bytes(&plain, &layout, &cfg).value();
    assert_eq!(wider, cfg.max_step_tokens as f64 * 49_152.0);
}

/// DeepSeek-V4-Pro (published: 1.6T total, 49B active). The same reading
/// at hidden 7168, 128 heads, q_lora 1536, 16 output groups: attention
/// 299,892,864 per layer, 30 CSA layers (+31,397,504 each) and 31 HCA
/// (+7,406,080) → 19,464,978,304; 61 × 384 experts × 3·7168·3072 =
/// 1,547,396,186,112; shared 4,029,677,568; router 167,925,504; norms
/// 85,076,195; embedding and LM head 1,853,358,080 → 1,572,997,202,915,
/// which rounds to the published 1.6T (−1.7%: the card gives two figures).
/// Its checkpoint's stored elements agree: Hugging Face counts ~862B, the
/// MXFP4 experts packed two to a byte (773.7B) with a scale per 32
/// (48.4B), 25.6B of the rest and ~14B of MTP layer. Active with 6
/// experts 49.78B, 48.85B without the embedding (published 49B). The
/// NVIDIA re-release keeps all but the routed experts (`ignore`: the
/// attention, shared experts, head) in the fp8 blocks and its experts in
/// NVFP4 (`moe_quant_algo`, `quantized_layers`); SGLang's FP8 repack has no
/// `expert_dtype` and fp8 experts.
#[test]
fn deepseek_v4_pro_is_1_6t_with_49b_active() {
    let m = model("deepseek-v4-pro");
    let p = m.params();
    assert_eq!(p.total.value(), 1_572_997_202_915.0);
    assert!(within(p.total.value(), 1.6e12, 0.02));
    let embedding = p.by_component[&Component::Embedding].active.value();
    assert!(within(p.active.value() - embedding, 49e9, 0.01));
    use moeplan::dtype::DType;
    let nvfp4 = model("deepseek-v4-pro-nvfp4");
    assert_eq!(nvfp4.params().total.value(), p.total.value());
    assert_eq!(
        (
            nvfp4.dtypes.experts,
            nvfp4.dtypes.attention,
            nvfp4.dtypes.dense
        ),
        (DType::Nvfp4, DType::Fp8, DType::Fp8)
    );
    assert_eq!(model("deepseek-v4-pro-fp8").dtypes.experts, DType::Fp8);
}

/// Every catalog GPU loads, cites its source, and states dense peaks that
/// grow as the precision narrows: tensor cores at most double their rate
/// when the operand halves (FP8 within 1–2× BF16, 3% for datasheet rounding: L40S 733 against 362.05), and FP4 runs at 1–3× FP8
/// (3× on Blackwell Ultra, B300: 13.5 against 4.5 PFLOP/s dense). A sparse
/// figure copied where a dense one belongs shows up as a ratio out of those
/// bounds. The RTX PRO 6000 Server Edition, by hand from its datasheet: FP4
/// 4 PFLOPS with sparsity → 2 PFLOP/s dense, FP8 half of that, BF16 a
/// quarter; 96 GB of GDDR7 at 1,597 GB/s; no NVLink, so its GPUs talk over
/// PCIe Gen5 x16 (64 GB/s one way).
#[test]
fn catalog_gpus_state_dense_datasheet_peaks() {
    use moeplan::dtype::Precision;
    for (id, _) in catalog::GPUS {
        let gpu = catalog::gpu(id).unwrap().unwrap();
        assert!(!gpu.notes.trim().is_empty(), "{id} cites no source");
        let peak = |p| gpu.peak.get(&p).map(|f| f.value());
        let bf16 = peak(Precision::Bf16).unwrap();
        let ratio =
            |a: Option<f64>, b: f64, max: f64| a.is_none_or(|a| a >= b && a <= max * b * 1.03);
        let fp8 = peak(Precision::Fp8);
        assert!(ratio(fp8, bf16, 2.0), "{id}: fp8 {fp8:?} vs bf16 {bf16}");
        let fp4 = peak(Precision::Fp4);
        assert!(ratio(fp4, fp8.unwrap_or(bf16), 3.0), "{id}: fp4 {fp4:?}");
    }
    let rtx = catalog::gpu("rtx-pro-6000").unwrap().unwrap();
    assert_eq!(rtx.id, "rtx-pro-6000-server");
    assert_eq!(rtx.peak[&Precision::Fp4].value(), 4.0e15 / 2.0);
    assert_eq!(rtx.peak[&Precision::Fp8].value(), 4.0e15 / 4.0);
    assert_eq!(rtx.peak[&Precision::Bf16].value(), 4.0e15 / 8.0);
    assert_eq!(rtx.memory.value(), 96e9);
    assert_eq!(rtx.memory_bandwidth.value(), 1597e9);
    assert_eq!(rtx.nvlink_bandwidth.value(), 64e9);
}

/// The all-reduce workspace is the engine file's `allreduce_workspace_mib`
/// (64 MiB, `engines/vllm.toml`), kept only under TP: on llama-3.1-8b (dense,
/// no EP buffers) with vLLM on an H100, the "buffers and runtime reserve"
/// are 1.5 GiB at tp1 and 1.5 GiB + 64 MiB = 1,677,721,600 bytes at tp2.
#[test]
fn allreduce_workspace_comes_from_the_engine_file() {
    let m = model("llama-3.1-8b");
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let cfg = moeplan::engine::Engine::Vllm.config(gpu.memory);
    assert_eq!(
        moeplan::engine::Engine::Vllm.spec().allreduce_workspace_mib,
        64.0
    );
    let other = |tp: u32| {
        let l = Layout {
            tp,
            ..Layout::default()
        };
        memory::memory(&m, &gpu, &l, &cfg, 0, 1, 1024)
            .other_bytes
            .value()
    };
    assert_eq!(other(1), 1.5 * 1024.0 * 1024.0 * 1024.0);
    assert_eq!(other(2), 1_677_721_600.0);
}

/// The prefill attention tile is the profile's `prefill_tile_tokens`: one
/// 8192-token prompt of llama-3.1-8b (32 query heads) is 32 × ⌈8192/128⌉ =
/// 2048 thread blocks at the profile's 128, 32 × 1 = 32 at a tile of 8192.
/// The kernel is compute bound there (≈ 550 GFLOP against ≈ 170 MB), so its
/// time less the fixed cost scales by the CTA saturation
/// (2048 / (2048 + cta_half)) / (32 / (32 + cta_half)).
#[test]
fn prefill_attention_tile_comes_from_the_profile() {
    let m = model("llama-3.1-8b");
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let cal = moeplan::profile::resolve(&gpu, moeplan::engine::Engine::Vllm).kernels;
    assert_eq!(cal.prefill_tile_tokens, 128.0);
    let mut wide = cal.clone();
    wide.prefill_tile_tokens = 8192.0;
    let attention = |cal: &moeplan::calibration::Calibration| {
        let ctx = CostContext::new(&m, &gpu, Layout::default(), 0, 0.0, cal);
        let op = ctx
            .step(&StepShape::prefill(1.0, 8192.0))
            .ops
            .into_iter()
            .find(|o| o.kind == moeplan::ops::OpKind::AttentionPrefill)
            .expect("a prefill attention op");
        assert_eq!(op.bound, moeplan::ops::Bound::Compute);
        (op.time - op.overhead).value()
    };
    let h = cal.attn_prefill.cta_half;
    let expected = (2048.0 / (2048.0 + h)) / (32.0 / (32.0 + h));
    assert!(within(attention(&wide) / attention(&cal), expected, 1e-9));
}

/// A collective's bandwidth fraction is capped at the profile's
/// `collective_eff_max` (0.95): a curve of 0.5, 0.8 and 0.9 at 2, 4 and 8
/// ranks extrapolates along the 4→8 slope to 1.0 at 16 ranks, read as 0.95;
/// at 8 ranks it is its own 0.9.
#[test]
fn collective_efficiency_is_capped_by_the_profile() {
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let cal = moeplan::profile::resolve(&gpu, moeplan::engine::Engine::Vllm).kernels;
    assert_eq!(cal.collective_eff_max, 0.95);
    let curve = moeplan::calibration::CollectiveCurve {
        latency: [moeplan::units::Seconds::new(0.0); 3],
        eff: [0.5, 0.8, 0.9],
    };
    assert!(within(curve.at(8, cal.collective_eff_max).1, 0.9, 1e-12));
    assert_eq!(curve.at(16, cal.collective_eff_max).1, 0.95);
    assert!(within(curve.at(16, 1.5).1, 1.0, 1e-12));
}

/// The MoE curve's width terms, by hand for Mixtral-8x7B (I = 14336) at
/// expert TP 2, where one GPU's experts are 7168 wide:
/// - `width_us = 0.01` adds 10 ns × 7168 = 71.68 µs of fixed cost per layer,
///   whatever the tokens;
/// - `width_half = 7168` halves the compute efficiency (7168 / (7168 +
///   7168)), so at 16384 tokens, compute bound, the kernel time less its
///   fixed cost doubles (the rows pass, at `rows_eff` 1e9, is below 1e-12 s).
#[test]
fn moe_width_terms_follow_the_hand_derivation() {
    use moeplan::calibration::MoeCurve;
    use moeplan::ops::{Bound, OpKind};
    let m = model("mixtral-8x7b");
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let cal = moeplan::profile::resolve(&gpu, moeplan::engine::Engine::Vllm).kernels;
    let curve = |extra: &str| -> MoeCurve {
        toml::from_str(&format!(
            "eff_max = 0.5\ntpe_half = 0.0\nmem_eff = 0.8\noverhead_us = 20.0\n\
             per_local_expert_us = 0.0\nrows_eff = 1e9\n{extra}"
        ))
        .expect("a MoE curve")
    };
    let layout = Layout {
        tp: 2,
        etp: 2,
        ..Layout::default()
    };
    let experts = |c: MoeCurve, tokens: f64| {
        let mut cal = cal.clone();
        cal.moe_bf16 = c;
        let ctx = CostContext::new(&m, &gpu, layout, 0, 0.0, &cal);
        let mut ops = Vec::new();
        ctx.moe_ops(1, tokens, &mut ops);
        ops.into_iter()
            .find(|o| o.kind == OpKind::MoeExperts)
            .expect("a routed-experts op")
    };
    let (plain, wide) = (
        experts(curve(""), 4.0),
        experts(curve("width_us = 0.01"), 4.0),
    );
    assert!(within((wide.time - plain.time).value(), 71.68e-6, 1e-9));
    assert!(within(
        (wide.overhead - plain.overhead).value(),
        71.68e-6,
        1e-9
    ));
    let plain = experts(curve(""), 16384.0);
    let narrow = experts(curve("width_half = 7168.0"), 16384.0);
    assert_eq!(
        (plain.bound, narrow.bound),
        (Bound::Compute, Bound::Compute)
    );
    let kernel = (plain.time - plain.overhead).value();
    assert!(within((narrow.time - plain.time).value(), kernel, 1e-6));
}

/// Distinct experts a small step reads, by routing. Mixtral-8x7B (E = 8,
/// k = 2, h = 4096, I = 14336, BF16) on one GPU, 2 tokens: 4 routed rows.
/// Balanced (the kernel tables): min(8, 4) = 4 experts; random (served
/// tokens): 8·(1 − (7/8)^4) = 3.3105 experts. Each expert is 3·4096·14336
/// weights of 2 bytes = 352,321,536 bytes, and nothing else in the op's
/// bytes depends on the routing: the balanced op reads (4 − 3.3105) experts
/// more, 242.9 MB.
#[test]
fn routing_sets_the_experts_a_small_step_reads() {
    use moeplan::ops::{OpKind, Routing};
    let m = model("mixtral-8x7b");
    let gpu = catalog::gpu("h100-sxm").unwrap().unwrap();
    let cal = moeplan::profile::resolve(&gpu, moeplan::engine::Engine::Vllm).kernels;
    let bytes = |routing: Routing| {
        let mut ctx = CostContext::new(&m, &gpu, Layout::default(), 0, 0.0, &cal);
        ctx.routing = routing;
        let mut ops = Vec::new();
        ctx.moe_ops(1, 2.0, &mut ops);
        ops.into_iter()
            .find(|o| o.kind == OpKind::MoeExperts)
            .expect("a routed-experts op")
            .bytes
            .value()
    };
    let expert = 3.0 * 4096.0 * 14336.0 * 2.0;
    let random = 8.0 * (1.0 - (7.0f64 / 8.0).powi(4));
    assert!(within(
        bytes(Routing::Balanced) - bytes(Routing::Random),
        (4.0 - random) * expert,
        1e-9
    ));
    assert!(within(Routing::Balanced.touched(8.0, 8.0, 4.0), 4.0, 1e-12));
    assert!(within(Routing::Random.touched(8.0, 8.0, 4.0), 3.3105, 1e-4));
    // Past E rows both read every expert (balanced exactly, random nearly).
    assert!(within(
        Routing::Balanced.touched(8.0, 8.0, 64.0),
        8.0,
        1e-12
    ));
}

//! Speed of `moeplan dag`: building and validating the op-level graph of
//! DeepSeek-V3 on 64 GPUs (attention DP64 + EP64 over 8 nodes of 8 × H200,
//! identical ranks collapsed, both phases). The target is under 200 ms.
use criterion::{criterion_group, criterion_main, Criterion};
use moeplan::dag::{self, DagOptions, Granularity, Phase};
use moeplan::layout::Layout;
use moeplan::memory::EngineConfig;
use moeplan::serving::{EstimateInput, Workload};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let m = moeplan::catalog::model("deepseek-v3").unwrap().unwrap();
    let gpu = moeplan::catalog::gpu("h200-sxm").unwrap().unwrap();
    let inp = EstimateInput {
        model: &m,
        gpu: &gpu,
        calibration: moeplan::profile::resolve(&gpu, moeplan::memory::Engine::Neutral).kernels,
        layout: Layout {
            dp: 64,
            ep: 64,
            ..Layout::default()
        },
        workload: Workload {
            isl: moeplan::units::Tokens::new(1000),
            osl: moeplan::units::Tokens::new(2000),
            concurrency: 8192,
            cache_hit_rate: moeplan::units::Fraction::ZERO,
            client: moeplan::serving::Client::Fixed,
        },
        engine: EngineConfig::default(),
        redundant_experts: 0,
        routing_skew: 0.0,
        overlap: moeplan::ops::Overlap::None,
    };
    let opts = DagOptions {
        phases: vec![Phase::Prefill, Phase::Decode],
        granularity: Granularity::Op,
        expand: false,
    };
    c.bench_function("dag build+check deepseek-v3 dp64 ep64 op collapsed", |b| {
        b.iter(|| {
            let d = dag::build(black_box(&inp), &opts).unwrap();
            let r = dag::check(&d);
            assert!(r.ok());
            (d.nodes.len(), r.phases.len())
        })
    });
    let pp = EstimateInput {
        layout: Layout {
            pp: 4,
            dp: 16,
            ep: 16,
            ..Layout::default()
        },
        ..inp.clone()
    };
    c.bench_function(
        "dag build+check deepseek-v3 pp4 dp16 ep16 op collapsed",
        |b| {
            b.iter(|| {
                let d = dag::build(black_box(&pp), &opts).unwrap();
                assert!(dag::check(&d).ok());
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

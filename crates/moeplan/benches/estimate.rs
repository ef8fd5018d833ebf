//! Speed of the cost model: one full estimate (both phases, serving model,
//! memory) of DeepSeek-V3 on 8 × H200, and `moeplan model` accounting.
use criterion::{criterion_group, criterion_main, Criterion};
use moeplan::layout::Layout;
use moeplan::memory::EngineConfig;
use moeplan::serving::{estimate, EstimateInput, Workload};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let m = moeplan::catalog::model("deepseek-v3").unwrap().unwrap();
    let gpu = moeplan::catalog::gpu("h200-sxm").unwrap().unwrap();
    let inp = EstimateInput {
        model: &m,
        gpu: &gpu,
        calibration: gpu.calibration.clone(),
        layout: Layout {
            dp: 8,
            ep: 8,
            ..Layout::default()
        },
        workload: Workload {
            isl: 1000,
            osl: 2000,
            concurrency: 1024,
        },
        engine: EngineConfig::default(),
        redundant_experts: 0,
        routing_skew: 0.0,
    };
    c.bench_function("estimate deepseek-v3 dp8 ep8 on h200", |b| {
        b.iter(|| estimate(black_box(&inp)).unwrap())
    });
    c.bench_function("model report deepseek-v3", |b| {
        b.iter(|| moeplan::report::model_report(black_box(&m)))
    });
    c.bench_function("catalog load deepseek-v3", |b| {
        b.iter(|| {
            moeplan::catalog::model(black_box("deepseek-v3"))
                .unwrap()
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

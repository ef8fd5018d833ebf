//! Speed of the cost model: one full estimate (both phases, serving model,
//! memory) of DeepSeek-V3 on 8 × H200 with the engine `plan` and `estimate`
//! assume by default (the best-fitting one, its scheduler and serving layer),
//! a disaggregated estimate, and `moeplan model` accounting.
use criterion::{criterion_group, criterion_main, Criterion};
use moeplan::layout::Layout;
use moeplan::serving::{estimate, estimate_summary, EstimateInput, Workload};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let m = moeplan::catalog::model("deepseek-v3").unwrap().unwrap();
    let gpu = moeplan::catalog::gpu("h200-sxm").unwrap().unwrap();
    let engine = moeplan::profile::default_engine(&gpu);
    let inp = EstimateInput {
        model: &m,
        gpu: &gpu,
        calibration: moeplan::profile::resolve(&gpu, engine).kernels,
        layout: Layout {
            dp: 8,
            ep: 8,
            ..Layout::default()
        },
        workload: Workload {
            isl: moeplan::units::Tokens::new(1000),
            osl: moeplan::units::Tokens::new(2000),
            concurrency: 1024,
            cache_hit_rate: moeplan::units::Fraction::ZERO,
            client: moeplan::serving::Client::Fixed,
        },
        engine: engine.config(gpu.memory),
        redundant_experts: 0,
        routing_skew: 0.0,
        overlap: moeplan::ops::Overlap::None,
    };
    c.bench_function("estimate deepseek-v3 dp8 ep8 on h200", |b| {
        b.iter(|| estimate(black_box(&inp)).unwrap())
    });
    c.bench_function("estimate_summary deepseek-v3 dp8 ep8 on h200", |b| {
        b.iter(|| estimate_summary(black_box(&inp)).unwrap())
    });
    // A planner's sweep: a different EP degree (and so expert placement) each call.
    let layouts: Vec<Layout> = [1u32, 2, 4, 8]
        .iter()
        .map(|&ep| Layout {
            dp: 8,
            ep,
            etp: 8 / ep,
            ..Layout::default()
        })
        .collect();
    c.bench_function("estimate deepseek-v3 dp8, ep 1/2/4/8 in turn", |b| {
        let mut i = 0;
        b.iter(|| {
            let mut x = inp.clone();
            x.layout = layouts[i % layouts.len()];
            i += 1;
            estimate(black_box(&x)).unwrap()
        })
    });
    let pool = |dp: u32, workers: u32| moeplan::serving::disagg::Pool {
        layout: Layout {
            dp,
            ep: dp,
            ..Layout::default()
        },
        workers,
        prompts_per_rank: 1,
        redundant_experts: 0,
        overlap: moeplan::ops::Overlap::None,
    };
    let disagg = moeplan::serving::disagg::DisaggInput {
        model: &m,
        gpu: &gpu,
        calibration: moeplan::profile::resolve_disaggregated(&m, &gpu, engine).kernels,
        prefill: pool(8, 2),
        decode: pool(16, 1),
        workload: inp.workload,
        engine: inp.engine,
        routing_skew: 0.0,
    };
    c.bench_function(
        "estimate_disaggregated deepseek-v3 2x dp8 ep8 + dp16 ep16 on h200",
        |b| {
            b.iter(|| moeplan::serving::disagg::estimate_disaggregated(black_box(&disagg)).unwrap())
        },
    );
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

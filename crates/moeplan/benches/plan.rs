//! Speed of the planner: the search the best-known planner takes ~25 s for
//! (Qwen3-30B-A3B on 8 × H100, ISL 4000, OSL 500, TTFT ≤ 2 s, TPOT ≤ 30 ms,
//! aggregated and disaggregated), and DeepSeek-V3 on up to 512 H200 GPUs.
use criterion::{criterion_group, criterion_main, Criterion};
use moeplan::search::{plan, PlanOptions};
use moeplan::spec::scenario::Scenario;
use moeplan::units::Seconds;
use std::hint::black_box;

fn scenario(
    model: &str,
    gpu: &str,
    gpus: u32,
    isl: u64,
    osl: u64,
    ttft_ms: f64,
    tpot_ms: f64,
) -> Scenario {
    let model = moeplan::catalog::model(model).unwrap().unwrap();
    let gpu = moeplan::catalog::gpu(gpu).unwrap().unwrap();
    let mut s = Scenario::fixed("bench", model, gpu, gpus, isl, osl);
    s.slo.ttft = Some(Seconds::from_ms(ttft_ms));
    s.slo.tpot = Some(Seconds::from_ms(tpot_ms));
    s
}

fn bench(c: &mut Criterion) {
    let quiet = |_: usize, _: usize| {};
    let qwen = scenario("qwen3-30b-a3b", "h100-sxm", 8, 4000, 500, 2000.0, 30.0);
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    g.bench_function("qwen3-30b-a3b 8xh100 agg+disagg", |b| {
        b.iter(|| plan(black_box(&qwen), &PlanOptions::default(), &quiet))
    });
    let dsv3 = scenario("deepseek-v3", "h200-sxm", 512, 2000, 1000, 3000.0, 50.0);
    g.bench_function("deepseek-v3 up to 512xh200 agg+disagg", |b| {
        b.iter(|| plan(black_box(&dsv3), &PlanOptions::default(), &quiet))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Speed of `moeplan simulate`: 100,000 Poisson requests of 2,000 + 500
//! tokens (lognormal, CV 0.5) on DeepSeek-V3 dp8 ep8 over 8 H200, SGLang,
//! at 7 requests/s (below the 8 it sustains).
use criterion::{criterion_group, criterion_main, Criterion};
use moeplan::engine::Engine;
use moeplan::layout::Layout;
use moeplan::replica::Replica;
use moeplan::simulate::{simulate, Arrivals, Lengths, Levels, Router, Traffic};
use moeplan::spec::scenario::Scenario;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let m = moeplan::catalog::model("deepseek-v3").unwrap().unwrap();
    let g = moeplan::catalog::gpu("h200-sxm").unwrap().unwrap();
    let cfg = Engine::Sglang.config(g.memory);
    let layout = Layout {
        dp: 8,
        ep: 8,
        ..Layout::default()
    };
    let s = Scenario::fixed("bench", m, g, 8, 2000, 500);
    let r = Replica::from_scenario(s, layout, 1, cfg);
    let inp = r.input();
    let traffic = Traffic {
        arrivals: Arrivals::Poisson { rate: 7.0 },
        isl: Lengths::Lognormal {
            mean: 2000.0,
            cv: 0.5,
        },
        osl: Lengths::Lognormal {
            mean: 500.0,
            cv: 0.5,
        },
        requests: 100_000,
        duration: None,
        seed: 1,
        warmup: 0,
    };
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    group.bench_function("deepseek-v3 dp8 ep8 100k requests", |b| {
        b.iter(|| {
            simulate(
                black_box(&inp),
                1,
                Router::LeastLoaded,
                traffic.clone(),
                Levels::default(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The disaggregated closed loop against hand derivations.

use moeplan::runs;
use moeplan::serving::disagg::estimate_disaggregated;
use std::path::Path;

fn deployment() -> moeplan::replica::Disaggregated {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs/silicon.csv");
    let runs = runs::read(&path).unwrap();
    let r = runs.iter().find(|r| r.id == "disagg").unwrap();
    r.disaggregated().unwrap().unwrap()
}

/// More requests than the decode pool's KV memory holds wait for a slot:
/// with room for R requests, each decoding for (osl − 1) steps of TPOT, at
/// most R / ((osl − 1) · TPOT) requests leave per second, so by Little's law
/// the c in flight spend c / X − (osl − 1) · TPOT ≥ (c − R)(osl − 1) · TPOT / R
/// before their first token. The deployment still fits (it holds R) and says
/// that the rest wait.
#[test]
fn requests_beyond_the_decode_pools_memory_wait_for_a_slot() {
    let mut d = deployment();
    let w = d.workload;
    let context = w.steady_context();
    let per_worker = moeplan::memory::max_concurrency(
        &d.model,
        &d.gpu,
        &d.decode.layout,
        &d.engine,
        d.decode.redundant_experts,
        context,
    );
    let room = (per_worker * d.decode.workers as u64) as f64;
    d.workload.concurrency = (room * 3.0) as u64;
    let e = estimate_disaggregated(&d.input()).unwrap();
    assert!(e.fits);
    let steps = (w.osl.get() - 1) as f64;
    let c = d.workload.concurrency as f64;
    let floor = (c - room) * steps * e.tpot.value() / room;
    assert!(
        e.ttft.value() >= floor * 0.999,
        "TTFT {} s under the slot wait {floor} s",
        e.ttft.value()
    );
    assert!(e.warnings.iter().any(|w| w.contains("wait for a slot")));
    // Throughput is the decode pool's: R requests every (osl − 1) · TPOT.
    assert!(e.requests_per_s <= room / (steps * e.tpot.value()) * 1.001);
}

/// The loop is solved where the requests in flight are those it holds, so
/// Little's law holds for every answer: concurrency = requests/s × (steady
/// TTFT + (osl − 1) · TPOT). And a prefill worker added never lengthens TTFT
/// nor slows the loop. A sweep found Qwen3-30B-A3B on H100 (4k prompts, 512
/// in flight) at TTFT 122 ms with one prefill worker and 1.85 s with two:
/// the prefill-bound branch let Little's law go negative and clamped TTFT
/// to one prefill step.
#[test]
fn more_prefill_workers_never_slow_the_loop() {
    let mut d = deployment();
    let steps = (d.workload.osl.get() - 1) as f64;
    for concurrency in [4, 64, 512, 4096] {
        d.workload.concurrency = concurrency;
        let mut last: Option<(f64, f64)> = None;
        for workers in 1..=6 {
            d.prefill.workers = workers;
            let e = estimate_disaggregated(&d.input()).unwrap();
            let held = e.requests_per_s * (e.steady_ttft.value() + steps * e.tpot.value());
            assert!(
                (held / concurrency as f64 - 1.0).abs() < 0.02,
                "c {concurrency}, {workers} prefill workers: the loop holds {held}"
            );
            let (ttft, rate) = (e.ttft.value(), e.requests_per_s);
            if let Some((t, r)) = last {
                assert!(
                    ttft <= t * 1.0001 && rate >= r * 0.9999,
                    "c {concurrency}: {workers} prefill workers give TTFT {ttft} s at {rate}/s, \
                     one fewer {t} s at {r}/s"
                );
            }
            last = Some((ttft, rate));
        }
    }
}

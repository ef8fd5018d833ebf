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

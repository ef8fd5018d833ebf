//! Disaggregated serving: a pool of prefill workers hands each request's KV
//! cache to a pool of decode workers.
//!
//! The client keeps `concurrency` requests in flight on the whole
//! deployment. A request waits for a prefill rank, is prefilled in a batch
//! of whole prompts (the pool's `prompts_per_rank`), its KV cache crosses to
//! a decode worker, and it decodes there with the other requests in that
//! worker's batch, in pure decode steps. The loop closes through the
//! throughput `X = concurrency / (TTFT + (osl − 1) · TPOT)`:
//! - the prefill pool is `c = workers × attention-DP ranks` servers with a
//!   service time `S` (one prefill step), so its utilisation is
//!   `ρ = X · S / (c · prompts per step)`; in steady state a prompt waits
//!   the M/D/c queue (Sakasegawa's approximation, halved for a
//!   deterministic service); `X` is the throughput at which the loop holds
//!   its `concurrency` requests (what it holds grows with `X`: a root, by
//!   false position); where even the most the pools pass (the prefill
//!   pool's capacity, or the decode pool's pace with its memory full)
//!   holds fewer, the rest queue: TTFT is the loop's residual
//!   `concurrency / X − (osl − 1) · TPOT`;
//! - in the first round every prompt arrives at once and queues behind the
//!   others (request `j` is served in round `⌈(j + 1) / (c · prompts)⌉`);
//!   the benchmark's mean weighs it as one round of `rounds`;
//! - the decode batch is the requests that are decoding, `X · (osl − 1) ·
//!   TPOT` over the decode ranks: TPOT and the batch are solved together.
//!
//! Step times come from the same named steps as an aggregated replica
//! (`super::steps`), with the profile's serving layer.

use super::closed_loop::Shape;
use super::steps::{Step, StepKind, Stepper};
use super::{EstimateInput, HeadlineJson, JsonDetail, PhaseCost, Regime, Workload};
use crate::calibration::{Calibration, ServingParams};
use crate::hardware::Gpu;
use crate::layout::{Layout, LayoutProblem};
use crate::memory::{self, EngineConfig, MemoryBreakdown};
use crate::model::Model;
pub use crate::replica::PoolRole;
use crate::report::Derivation;
use crate::units::{Bytes, Fixed, Seconds, TokensPerSecond};
use serde::Serialize;
use std::collections::BTreeMap;

/// One pool of identical workers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Pool {
    /// Degrees of one worker.
    pub layout: Layout,
    /// Workers in the pool.
    pub workers: u32,
    /// Prompts one attention-DP rank of a prefill worker runs per step (the
    /// decode pool's batch follows from the load).
    pub prompts_per_rank: u64,
    /// Redundant expert slots (EPLB) per worker of this pool: each pool
    /// states its own, since each splits its slots over its own EP degree.
    pub redundant_experts: u32,
    /// Whether its workers' steps overlap communication with computation.
    #[serde(skip_serializing_if = "crate::ops::Overlap::is_none")]
    pub overlap: crate::ops::Overlap,
}

/// Everything one disaggregated estimate needs.
#[derive(Clone, Debug)]
pub struct DisaggInput<'a> {
    /// The model.
    pub model: &'a Model,
    /// The GPU (both pools).
    pub gpu: &'a Gpu,
    /// The efficiency curves and serving layer.
    pub calibration: Calibration,
    /// The prefill pool.
    pub prefill: Pool,
    /// The decode pool.
    pub decode: Pool,
    /// Lengths, and the requests in flight on the whole deployment.
    pub workload: Workload,
    /// Engine settings (both pools).
    pub engine: EngineConfig,
    /// Power-law exponent of expert popularity (0 = uniform routing).
    pub routing_skew: f64,
}

/// What one pool does.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PoolEstimate {
    /// Degrees of one worker.
    pub layout: Layout,
    /// Workers.
    pub workers: u32,
    /// GPUs of the pool.
    pub gpus: u64,
    /// Requests per attention-DP rank of a worker: prompts per prefill
    /// step, or the decode batch.
    #[serde(serialize_with = "crate::units::json::count")]
    pub requests_per_rank: f64,
    /// Busy fraction of its capacity (prefill: ρ; decode: decoding requests
    /// over what fits).
    pub utilization: f64,
    /// Its step.
    pub step: PhaseCost,
    /// Memory of its fullest GPU.
    pub memory: MemoryBreakdown,
    /// Whether it fits.
    pub fits: bool,
    /// Most requests of its context one worker holds.
    pub max_concurrency: u64,
}

/// `moeplan estimate --json` of a disaggregated deployment: the one JSON
/// shape of a [`DisaggEstimate`] (headline times in ms).
#[derive(Serialize, schemars::JsonSchema)]
pub struct DisaggEstimateJson<'a> {
    /// `disaggregated`.
    mode: crate::figures::Mode,
    /// GPUs (of the replica, or of both pools).
    gpus: u64,
    /// The headline figures.
    #[serde(flatten)]
    headline: HeadlineJson,
    /// Requests completed per second.
    requests_per_s: f64,
    /// `decode` or `prefill`: which part of the loop sets the pace.
    regime: Regime,
    /// Whether the fullest GPU fits in memory.
    fits: bool,
    /// The step that carries a new prompt (the prefill pool when disaggregated).
    prefill: &'a PoolEstimate,
    /// The decode step (the decode pool when disaggregated).
    decode: &'a PoolEstimate,
    /// Expert load imbalance.
    load_imbalance: f64,
    /// Moving one request's KV cache from prefill to decode, ms.
    kv_transfer_ms: f64,
    /// Mean wait for a prefill rank, ms.
    queue_wait_ms: f64,
    /// Mean TTFT of the first round, ms.
    first_round_ttft_ms: f64,
    /// Mean TTFT of the later rounds, ms.
    steady_ttft_ms: f64,
    /// Where the efficiencies come from.
    efficiency_source: &'a str,
    /// Warnings.
    warnings: &'a [String],
    /// Derivation of each headline figure (full detail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<&'a super::Explain>,
}

impl Serialize for DisaggEstimate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json(JsonDetail::Full).serialize(s)
    }
}

/// The prediction for a disaggregated deployment (serialized as [`DisaggEstimateJson`]).
#[derive(Clone, Debug, PartialEq)]
pub struct DisaggEstimate {
    /// The requests it serves (`concurrency` on the whole deployment).
    pub workload: Workload,
    /// GPUs of both pools.
    pub gpus: u64,
    /// Mean time to first token.
    pub ttft: Seconds,
    /// Mean time per output token after the first.
    pub tpot: Seconds,
    /// TTFT + (osl − 1) × TPOT.
    pub request_latency: Seconds,
    /// Output tokens/s of the deployment over all its GPUs.
    pub output_tokens_per_s_per_gpu: TokensPerSecond,
    /// Output tokens/s one request sees.
    pub output_tokens_per_s_per_user: TokensPerSecond,
    /// Prompt tokens/s over all GPUs.
    pub input_tokens_per_s_per_gpu: TokensPerSecond,
    /// Requests completed per second.
    pub requests_per_s: f64,
    /// `decode` when the decode pool sets the pace, `prefill` when the
    /// prefill pool does (requests queue for it).
    pub regime: Regime,
    /// The prefill pool.
    pub prefill: PoolEstimate,
    /// The decode pool.
    pub decode: PoolEstimate,
    /// Expert load imbalance of the decode step (max/mean − 1 of its routed rows).
    pub load_imbalance: f64,
    /// Expert load imbalance of the decode pool's (pure) decode step with
    /// uniform routing, at the skew, and applied (`load_imbalance`).
    pub decode_imbalance: super::LoadImbalance,
    /// Per GPU: the decode pool's HBM ceiling at its batch (pure decode
    /// steps), and the dense-peak prefill ceiling.
    pub ceilings: super::Ceilings,
    /// Time to move one request's KV cache from prefill to decode.
    pub kv_transfer: Seconds,
    /// Mean wait for a prefill rank in steady state.
    pub queue_wait: Seconds,
    /// Mean TTFT of the first round (every prompt at once).
    pub first_round_ttft: Seconds,
    /// Mean TTFT of the later rounds.
    pub steady_ttft: Seconds,
    /// Whether both pools fit in memory.
    pub fits: bool,
    /// Where the efficiencies come from.
    pub efficiency_source: String,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Derivations of the headline figures.
    pub explain: super::Explain,
}

/// The per-pool input (the pool's layout, with `concurrency` per worker).
pub(crate) fn pool_input<'a>(
    inp: &DisaggInput<'a>,
    pool: &Pool,
    concurrency: u64,
) -> EstimateInput<'a> {
    EstimateInput {
        model: inp.model,
        gpu: inp.gpu,
        calibration: inp.calibration.clone(),
        layout: pool.layout,
        workload: Workload {
            concurrency: concurrency.max(1),
            ..inp.workload
        },
        engine: inp.engine,
        redundant_experts: pool.redundant_experts,
        routing_skew: inp.routing_skew,
        overlap: pool.overlap,
    }
}

/// Bytes of one request's KV cache at `tokens` (every layer, whole model).
fn kv_bytes(m: &Model, tokens: u64) -> Bytes {
    memory::kv_bytes_per_request(m, &Layout::default(), 0, tokens)
}

/// Time to move a prompt's KV cache: both pools' GPUs in one NVLink domain
/// move it on NVLink, otherwise over the network, each prefill GPU sending
/// its share in parallel.
fn kv_transfer(inp: &DisaggInput) -> Seconds {
    let (latency, link) = kv_link(inp);
    latency + kv_bytes(inp.model, inp.workload.isl.get()) / link
}

/// The KV transfer's fixed latency and its time per prompt token (the
/// simulator moves each request's own prompt).
pub(crate) fn kv_transfer_parts(inp: &DisaggInput) -> (Seconds, Seconds) {
    let (latency, link) = kv_link(inp);
    let tokens = inp.workload.isl.get().max(1);
    (
        latency,
        Seconds((kv_bytes(inp.model, tokens) / link).0 / tokens as f64),
    )
}

/// The link a prompt's KV crosses: its latency and bandwidth (all lanes).
fn kv_link(inp: &DisaggInput) -> (Seconds, crate::units::BytesPerSecond) {
    let g = inp.gpu;
    let lanes = inp
        .prefill
        .layout
        .gpus()
        .min(inp.decode.layout.gpus())
        .max(1) as f64;
    let total = inp.prefill.layout.gpus() as u64 * inp.prefill.workers as u64
        + inp.decode.layout.gpus() as u64 * inp.decode.workers as u64;
    let (latency, bw) = if total <= g.gpus_per_node as u64 {
        (
            g.nvlink_latency,
            g.nvlink_bandwidth * inp.calibration.nvlink_p2p_eff,
        )
    } else {
        (
            g.network_latency,
            g.network_bandwidth * inp.calibration.network_eff,
        )
    };
    (latency, bw * lanes)
}

/// M/D/c mean wait in queue over the service time (Sakasegawa's M/M/c
/// approximation, halved for a deterministic service).
fn mdc_wait(rho: f64, servers: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    let rho = rho.min(0.999);
    rho.powf((2.0 * (servers + 1.0)).sqrt()) / (servers * (1.0 - rho)) / 2.0
}

/// The solved loop of a disaggregated deployment.
struct Solved {
    ttft: Seconds,
    tpot: Seconds,
    throughput: f64,
    decode_batch: f64,
    rho: f64,
    wait: Seconds,
    first: Seconds,
    steady: Seconds,
    prefill_bound: bool,
}

/// Solves the loop for given step times; `decode_time(n)` is the decode
/// step at `n` requests per decode rank.
/// What the disaggregated loop depends on besides step times.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Pools {
    workload: Workload,
    prefill: Pool,
    decode: Pool,
    /// Requests one decode rank's KV memory holds (at least 1).
    decode_room: f64,
}

impl Pools {
    /// The pools, and the decode pool's memory footprint that sized them.
    fn of(inp: &DisaggInput) -> (Pools, memory::Footprint) {
        let w = inp.workload;
        let decode = pool_footprint(inp, &inp.decode, w.steady_context());
        let most = decode.max_concurrency();
        let pools = Pools {
            workload: w,
            prefill: inp.prefill,
            decode: inp.decode,
            decode_room: (most as f64 / inp.decode.layout.dp as f64).max(1.0),
        };
        (pools, decode)
    }
}

/// The closed loop at one throughput: what `solve` searches over.
#[derive(Clone, Copy)]
struct LoopAt {
    /// Requests per decode rank decoding.
    batch: f64,
    tpot: Seconds,
    /// Prefill utilisation.
    rho: f64,
    /// TTFT of a request that meets only the queue that throughput makes.
    ttft: Seconds,
    /// Requests the loop holds at that throughput (Little's law over
    /// TTFT and the decode).
    held: f64,
}

/// The loop's quantities the search does not change.
struct Loop<'a> {
    c: f64,
    dsteps: f64,
    servers: f64,
    service: Seconds,
    capacity: f64,
    decode_ranks: f64,
    room: f64,
    fixed: Seconds,
    arrival_wait: super::closed_loop::ArrivalWait,
    decode_time: &'a dyn Fn(f64) -> Seconds,
}

impl Loop<'_> {
    /// The loop at throughput `x` (requests/s), its decode batch found from
    /// `batch` (the batch that throughput decodes: `x × (osl − 1) × TPOT`,
    /// capped by the requests and the decode pool's memory).
    fn at(&self, x: f64, mut batch: f64) -> LoopAt {
        for _ in 0..6 {
            let decoding = x * (self.decode_time)(batch).0 * self.dsteps;
            batch = (decoding.min(self.c).min(self.room) / self.decode_ranks).max(1.0);
        }
        let tpot = (self.decode_time)(batch);
        let rho = x / self.capacity;
        let wait = self.service * mdc_wait(rho, self.servers);
        let ttft = self.service + wait + tpot * self.arrival_wait.at(batch) + self.fixed;
        LoopAt {
            batch,
            tpot,
            rho,
            ttft,
            held: x * (ttft + tpot * self.dsteps).0,
        }
    }

    /// The most the pools pass: the prefill pool's capacity, or the decode
    /// pool's pace with its memory full.
    fn most(&self) -> f64 {
        let full = (self.room / self.decode_ranks).max(1.0);
        let paced = self.room / ((self.decode_time)(full) * self.dsteps).0.max(1e-12);
        self.capacity.min(paced)
    }
}

/// Solves the closed loop: the throughput at which the requests in flight
/// are those the loop holds (each waits for the prefill pool, M/D/c, then
/// decodes at the batch that throughput makes), found by false position
/// since what the loop holds grows with the throughput. Where even the most
/// the pools pass holds fewer requests than are in flight, the rest queue
/// (for the prefill pool, or for a decode slot): TTFT is what Little's law
/// leaves of the cycle after the decode. TTFT averages the first round (every
/// prompt at once) over the benchmark's rounds in both cases.
fn solve(
    inp: &Pools,
    service: Seconds,
    transfer: Seconds,
    decode_time: &dyn Fn(f64) -> Seconds,
    sv: &ServingParams,
) -> Solved {
    let servers = inp.prefill.workers as f64 * inp.prefill.layout.dp as f64;
    let per_step = servers * inp.prefill.prompts_per_rank.max(1) as f64;
    let decode_ranks = inp.decode.workers as f64 * inp.decode.layout.dp as f64;
    let lp = Loop {
        c: inp.workload.concurrency.max(1) as f64,
        dsteps: (inp.workload.osl.get().max(1) - 1) as f64,
        servers,
        service,
        capacity: per_step / service.0.max(1e-12),
        decode_ranks,
        room: inp.decode_room * decode_ranks,
        fixed: transfer + sv.request_overhead,
        arrival_wait: super::closed_loop::ArrivalWait::of(sv),
        decode_time,
    };
    let first = service * super::closed_loop::mean_completion_step(lp.c, per_step) + lp.fixed;
    let most = lp.most();
    let start = (lp.c.min(lp.room) / decode_ranks).max(1.0);
    let top = lp.at(most, start);
    let (x, at, steady) = if top.held <= lp.c {
        // Saturated: the excess queues in front of the slower pool.
        let steady = Seconds(lp.c / most) - top.tpot * lp.dsteps;
        (most, top, steady.max(top.ttft))
    } else {
        let (x, at) = false_position(&lp, most, top);
        let steady = at.ttft;
        (x, at, steady)
    };
    let rounds = sv.rounds.max(1.0);
    Solved {
        ttft: (first + steady * (rounds - 1.0)) / rounds,
        tpot: at.tpot,
        throughput: x,
        decode_batch: at.batch,
        rho: at.rho,
        wait: steady - service - at.tpot * lp.arrival_wait.at(at.batch) - lp.fixed,
        first,
        steady,
        prefill_bound: at.rho >= 0.95,
    }
}

/// The throughput in (0, `most`) at which the loop holds its requests, by
/// false position (Illinois), from the loop at `most` (`top`, which holds
/// more).
fn false_position(lp: &Loop, most: f64, top: LoopAt) -> (f64, LoopAt) {
    let (mut lo, mut f_lo) = (0.0, -lp.c);
    let (mut hi, mut f_hi) = (most, top.held - lp.c);
    let mut best = (most, top);
    let mut side = 0i8;
    for _ in 0..40 {
        let x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo);
        let at = lp.at(x, best.1.batch);
        let f = at.held - lp.c;
        let done = f.abs() <= 1e-6 * lp.c || (hi - lo) <= 1e-9 * most;
        best = (x, at);
        if done {
            break;
        }
        if f > 0.0 {
            (hi, f_hi) = (x, f);
            if side == 1 {
                f_lo /= 2.0;
            }
            side = 1;
        } else {
            (lo, f_lo) = (x, f);
            if side == -1 {
                f_hi /= 2.0;
            }
            side = -1;
        }
    }
    best
}

/// The memory footprint of one of a pool's workers with requests of
/// `context` tokens.
fn pool_footprint(inp: &DisaggInput, pool: &Pool, context: u64) -> memory::Footprint {
    memory::Footprint::of(
        inp.model,
        inp.gpu,
        &pool.layout,
        &inp.engine,
        pool.redundant_experts,
        context,
    )
}

/// What both pools cost before the serving layer, besides the decode
/// steps: the pools, the decode pool's memory, the prefill step and the KV
/// transfer.
struct Costed {
    pools: Pools,
    /// The decode pool's memory footprint (at the steady context).
    decode_footprint: memory::Footprint,
    prefill_step: Step,
    transfer: Seconds,
    warnings: Vec<String>,
}

impl Costed {
    /// Checks both pools' layouts and costs the prefill step.
    fn new(inp: &DisaggInput) -> Result<Costed, Vec<(PoolRole, LayoutProblem)>> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        for (role, pool) in [
            (PoolRole::Prefill, &inp.prefill),
            (PoolRole::Decode, &inp.decode),
        ] {
            let (p, w) = pool
                .layout
                .check(inp.model, inp.gpu, pool.redundant_experts);
            problems.extend(p.into_iter().map(|x| (role, x)));
            warnings.extend(w.into_iter().map(|x| format!("{} pool: {x}", role.name())));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        // The prompt tokens a prefill computes (prefix-cache hits excluded).
        let isl = inp.workload.computed_prompt();
        let prompts = inp.prefill.prompts_per_rank.max(1) as f64;
        let pin = pool_input(
            inp,
            &inp.prefill,
            (prompts * inp.prefill.layout.dp as f64) as u64,
        );
        let prefill_step = Stepper::new(&pin, inp.prefill.layout.dp as f64).step(
            StepKind::PrefillBatch,
            Shape {
                decodes: 0.0,
                prefill_tokens: prompts * isl,
            },
            Seconds::ZERO,
        );
        let (pools, decode_footprint) = Pools::of(inp);
        Ok(Costed {
            pools,
            decode_footprint,
            prefill_step,
            transfer: kv_transfer(inp),
            warnings,
        })
    }

    /// The requests per decode rank at which the loop reads the decode step:
    /// 1, 2, 4, … up to the most a rank holds (its share of the requests in
    /// flight, within its memory).
    fn decode_batches(&self) -> Vec<f64> {
        let p = &self.pools;
        let ranks = p.decode.workers as f64 * p.decode.layout.dp as f64;
        let c = p.workload.concurrency.max(1) as f64;
        let most = (c / ranks).min(p.decode_room).max(1.0);
        let mut out = Vec::new();
        let mut n: f64 = 1.0;
        loop {
            let at = n.min(most);
            out.push(at);
            if at >= most {
                return out;
            }
            n *= 2.0;
        }
    }
}

/// The pure decode step of one decode rank at `n` requests.
fn decode_step(stepper: &Stepper, n: f64) -> Step {
    let mut st = stepper.step(
        StepKind::Decode,
        Shape {
            decodes: n,
            prefill_tokens: 0.0,
        },
        Seconds::ZERO,
    );
    st.decode_part = st.kernels;
    st
}

/// The decode step time at `n` requests per rank, linear between the step
/// times `time(i)` at the `batches` the loop reads; below the first batch
/// the first's time, above the last the last's.
fn interpolate(batches: &[f64], n: f64, time: impl Fn(usize) -> Seconds) -> Seconds {
    let i = batches
        .iter()
        .position(|b| *b >= n)
        .unwrap_or(batches.len() - 1);
    if i == 0 {
        return time(0);
    }
    let (b0, b1) = (batches[i - 1], batches[i]);
    let f = ((n - b0) / (b1 - b0)).clamp(0.0, 1.0);
    let (t0, t1) = (time(i - 1), time(i));
    t0 + (t1 - t0) * f
}

/// A disaggregated estimate's steps before the serving layer: the prefill
/// step, the KV transfer, and decode steps at batches 1, 2, 4, … (the loop
/// reads the decode step at its batch between them), all costed. What a fit
/// of serving parameters re-solves without re-costing.
pub(crate) struct PreparedDisagg {
    costed: Costed,
    /// The batches of `decode_steps`.
    batches: Vec<f64>,
    /// The decode step at each of `batches`.
    decode_steps: Vec<Step>,
}

impl PreparedDisagg {
    /// Checks both pools' layouts and costs their steps.
    pub(crate) fn new(inp: &DisaggInput) -> Result<PreparedDisagg, Vec<(PoolRole, LayoutProblem)>> {
        let costed = Costed::new(inp)?;
        let din = decode_pool_input(inp);
        let stepper = Stepper::new(&din, inp.decode.layout.dp as f64);
        let batches = costed.decode_batches();
        let decode_steps = batches.iter().map(|&n| decode_step(&stepper, n)).collect();
        Ok(PreparedDisagg {
            costed,
            batches,
            decode_steps,
        })
    }

    /// The decode step time at `n` requests per rank.
    fn decode_time(&self, n: f64, sv: &ServingParams) -> Seconds {
        interpolate(&self.batches, n, |i| self.decode_steps[i].time(sv))
    }

    /// TTFT and TPOT under a serving layer (what a fit compares).
    pub(crate) fn figures(&self, sv: &ServingParams) -> (Seconds, Seconds) {
        let c = &self.costed;
        let s = solve(
            &c.pools,
            c.prefill_step.time(sv),
            c.transfer,
            &|n| self.decode_time(n, sv),
            sv,
        );
        (s.ttft, s.tpot)
    }
}

/// Prefill workers that keep up with the decode pool: the decode pool's
/// throughput with prompts served at once (`concurrency / (prefill step +
/// (osl − 1) × TPOT)`) times the prefill step, over the prompts one worker
/// runs per step, from the kernels' step times alone (so that a count
/// inferred for a measured run does not depend on a serving layer fitted to
/// it). 1 when the layouts are invalid.
pub(crate) fn rate_matched_prefill_workers(inp: &DisaggInput) -> u32 {
    let Ok(costed) = Costed::new(inp) else {
        return 1;
    };
    let din = decode_pool_input(inp);
    let decode = LazyDecode::new(&din, &costed);
    let sv = ServingParams::default();
    let c = inp.workload.concurrency.max(1) as f64;
    let ranks = inp.decode.workers as f64 * inp.decode.layout.dp as f64;
    let service = costed.prefill_step.time(&sv);
    let tpot = decode.time((c / ranks).max(1.0), &sv);
    let dsteps = (inp.workload.osl.get().max(1) - 1) as f64;
    let x = c / (service + tpot * dsteps).0.max(1e-12);
    let per_worker = (inp.prefill.layout.dp as u64 * inp.prefill.prompts_per_rank.max(1)) as f64;
    (x * service.0 / per_worker).ceil().clamp(1.0, 1e6) as u32
}

/// The decode steps the loop reads, each costed when first read: a single
/// estimate's loop reads two or three of them, a fit (`PreparedDisagg`)
/// every one.
struct LazyDecode<'s> {
    stepper: Stepper<'s>,
    batches: Vec<f64>,
    steps: Vec<std::cell::OnceCell<Step>>,
}

impl<'s> LazyDecode<'s> {
    /// The decode pool's steps for `din`, the decode pool's input.
    fn new(din: &'s EstimateInput<'s>, costed: &Costed) -> Self {
        let batches = costed.decode_batches();
        LazyDecode {
            stepper: Stepper::new(din, din.layout.dp as f64),
            steps: batches.iter().map(|_| std::cell::OnceCell::new()).collect(),
            batches,
        }
    }

    /// The decode step time at `n` requests per rank.
    fn time(&self, n: f64, sv: &ServingParams) -> Seconds {
        interpolate(&self.batches, n, |i| {
            self.steps[i]
                .get_or_init(|| decode_step(&self.stepper, self.batches[i]))
                .time(sv)
        })
    }
}

/// Predicts a disaggregated deployment. Fails for an invalid layout of
/// either pool (each problem with its pool).
pub fn estimate_disaggregated(
    inp: &DisaggInput,
) -> Result<DisaggEstimate, Vec<(PoolRole, LayoutProblem)>> {
    let costed = Costed::new(inp)?;
    let sv = inp.calibration.serving;
    let din = decode_pool_input(inp);
    let ladder = LazyDecode::new(&din, &costed);
    let solved = solve(
        &costed.pools,
        costed.prefill_step.time(&sv),
        costed.transfer,
        &|n| ladder.time(n, &sv),
        &sv,
    );
    // The decode step at the solved batch, costed exactly: TPOT is its time.
    let decode = decode_step(&ladder.stepper, solved.decode_batch);
    let solved = Solved {
        tpot: decode.time(&sv),
        ..solved
    };
    Ok(assemble(inp, costed, &decode, &solved))
}

/// The disaggregated estimate from the solved loop, the prepared prefill
/// step, transfer and decode memory, and the decode step at the solved
/// batch: memory, warnings, headline figures and each pool's part.
fn assemble(inp: &DisaggInput, costed: Costed, decode_step: &Step, s: &Solved) -> DisaggEstimate {
    let Costed {
        prefill_step,
        transfer,
        decode_footprint,
        mut warnings,
        ..
    } = costed;
    let prefill_step = &prefill_step;
    let sv = inp.calibration.serving;
    let w = inp.workload;
    let (p, d) = (&inp.prefill, &inp.decode);
    let mem = PoolMemories::of(inp, &decode_footprint);
    let gpus = p.gpus() + d.gpus();
    pool_warnings(inp, s, &mem, &mut warnings);
    warnings.extend(super::speculative_warning(inp.model));
    super::overlap_warnings(
        &[
            ("prefill pool's step", prefill_step),
            ("decode pool's step", decode_step),
        ],
        &mut warnings,
    );
    let osl = w.osl.get().max(1) as f64;
    let per_gpu = TokensPerSecond(s.throughput * osl / gpus as f64);
    // The pools' steps as the aggregated estimate names them, without the
    // per-op breakdown.
    let phase = |step: &Step| PhaseCost {
        description: super::describe(step),
        ..super::phase(step, &sv, super::Detail::Summary)
    };
    let (decode_imbalance, ceilings) = decode_figures(inp, decode_step);
    let explain = explain(inp, s, transfer, (prefill_step, decode_step), &ceilings);
    let decode_utilization = mem.decode_utilization();
    DisaggEstimate {
        workload: inp.workload,
        gpus,
        ttft: s.ttft,
        tpot: s.tpot,
        request_latency: s.ttft + s.tpot * (osl - 1.0),
        output_tokens_per_s_per_gpu: per_gpu,
        output_tokens_per_s_per_user: TokensPerSecond(1.0 / s.tpot.0.max(1e-12)),
        input_tokens_per_s_per_gpu: TokensPerSecond(per_gpu.0 * w.isl.as_f64() / osl),
        requests_per_s: s.throughput,
        regime: if s.prefill_bound {
            Regime::Prefill
        } else {
            Regime::Decode
        },
        fits: mem.prefill.fits() && mem.decode.fits(),
        prefill: p.part(
            p.prompts_per_rank as f64,
            s.rho,
            phase(prefill_step),
            mem.prefill,
            mem.prefill_max,
        ),
        decode: d.part(
            s.decode_batch,
            decode_utilization,
            phase(decode_step),
            mem.decode,
            mem.decode_max,
        ),
        load_imbalance: decode_step.imbalance,
        decode_imbalance,
        ceilings,
        kv_transfer: transfer,
        queue_wait: s.wait,
        first_round_ttft: s.first,
        steady_ttft: s.steady,
        efficiency_source: inp.calibration.source.clone(),
        warnings,
        explain,
    }
}

/// One decode worker's input: the decode pool's layout with its share of
/// the requests in flight.
fn decode_pool_input<'a>(inp: &DisaggInput<'a>) -> EstimateInput<'a> {
    let c = inp.workload.concurrency.max(1);
    pool_input(
        inp,
        &inp.decode,
        c.div_ceil(inp.decode.workers.max(1) as u64),
    )
}

/// The decode pool's pure decode step: its expert load imbalance and its
/// ceilings per GPU (every attention-DP rank of a worker decodes).
fn decode_figures(inp: &DisaggInput, step: &Step) -> (super::LoadImbalance, super::Ceilings) {
    let din = decode_pool_input(inp);
    let ranks = inp.decode.layout.dp as f64;
    (
        super::load_imbalance_of(&din, ranks, step),
        super::ceilings(&din, ranks, step),
    )
}

impl Pool {
    /// GPUs of the pool: a worker's GPUs × workers.
    fn gpus(&self) -> u64 {
        self.layout.gpus() as u64 * self.workers as u64
    }

    /// The pool's part of a disaggregated estimate, with the memory of its
    /// fullest GPU and the most requests a worker holds.
    fn part(
        &self,
        requests_per_rank: f64,
        utilization: f64,
        step: PhaseCost,
        memory: MemoryBreakdown,
        max_concurrency: u64,
    ) -> PoolEstimate {
        PoolEstimate {
            layout: self.layout,
            workers: self.workers,
            gpus: self.gpus(),
            requests_per_rank,
            utilization,
            step,
            fits: memory.fits(),
            memory,
            max_concurrency,
        }
    }
}

/// The fullest GPU of each pool, and what a decode worker holds.
struct PoolMemories {
    /// The prefill pool's fullest GPU, at its prompts per step.
    prefill: MemoryBreakdown,
    /// Most prompts a prefill worker holds.
    prefill_max: u64,
    /// The decode pool's fullest GPU, at the requests a worker holds.
    decode: MemoryBreakdown,
    /// Most requests a decode worker holds.
    decode_max: u64,
    /// Requests a decode worker holds: its share, up to `decode_max`.
    per_decode_worker: f64,
}

impl PoolMemories {
    /// The share of a decode worker's request slots its requests fill
    /// (infinite where its memory holds none).
    fn decode_utilization(&self) -> f64 {
        if self.decode_max > 0 {
            self.per_decode_worker / self.decode_max as f64
        } else {
            f64::INFINITY
        }
    }

    /// Both pools' memory at the requests each holds.
    /// `decode` is the decode pool's footprint at the steady context.
    fn of(inp: &DisaggInput, decode: &memory::Footprint) -> PoolMemories {
        let w = inp.workload;
        let (p, d) = (&inp.prefill, &inp.decode);
        // A decode worker holds the KV cache of every request it was handed,
        // decoding or about to: its share of the deployment's requests, up to
        // what its memory holds (the rest wait for a slot, in TTFT).
        let decode_max = decode.max_concurrency();
        let per_decode_worker =
            (w.concurrency as f64 / d.workers.max(1) as f64).min(decode_max.max(1) as f64);
        let prefill_footprint = pool_footprint(inp, p, w.isl.get());
        let prompts = p.prompts_per_rank as f64 * p.layout.dp as f64;
        let prefill = prefill_footprint.at(prompts.ceil() as u64);
        let prefill_max = prefill_footprint.max_concurrency();
        let decode = decode.at(per_decode_worker.ceil() as u64);
        PoolMemories {
            prefill,
            prefill_max,
            decode,
            decode_max,
            per_decode_worker,
        }
    }
}

/// Warnings about the pools: memory that does not fit, requests a decode
/// worker cannot hold, and a prefill pool that sets the pace.
fn pool_warnings(inp: &DisaggInput, s: &Solved, mem: &PoolMemories, warnings: &mut Vec<String>) {
    let w = inp.workload;
    let context = w.steady_context();
    for (role, m) in [
        (PoolRole::Prefill, &mem.prefill),
        (PoolRole::Decode, &mem.decode),
    ] {
        if !m.fits() {
            warnings.push(format!(
                "{} pool does not fit: the fullest GPU needs {} of {} usable",
                role.name(),
                m.total_bytes,
                m.usable_bytes
            ));
        }
    }
    let dmax = mem.decode_max;
    let handed = w.concurrency as f64 / inp.decode.workers.max(1) as f64;
    if handed > dmax as f64 && dmax > 0 {
        warnings.push(format!(
            "a decode worker's memory holds {dmax} requests of {context} tokens, not the {handed:.0} handed to it: the rest wait for a slot, which is in TTFT"
        ));
    }
    if s.prefill_bound {
        warnings.push(format!(
            "the prefill pool sets the pace: {:.1} requests/s at most, so requests queue for it",
            s.throughput
        ));
    }
}

/// The derivations of a disaggregated estimate's figures from the pools'
/// prefill and decode steps.
fn explain(
    inp: &DisaggInput,
    s: &Solved,
    transfer: Seconds,
    (prefill_step, decode_step): (&Step, &Step),
    ceilings: &super::Ceilings,
) -> super::Explain {
    let sv = inp.calibration.serving;
    let (service, decode) = (prefill_step.time(&sv), decode_step.time(&sv));
    let mut e = BTreeMap::new();
    e.insert(
        super::ExplainKey::Ttft,
        Derivation::new(
            "(first round + (rounds − 1) × steady) / rounds; steady = prefill step + M/D/c queue wait at the throughput + (arrival wait + wait per request × decode batch per rank) × decode step + KV transfer + request overhead, at the throughput where concurrency = throughput × (steady + (osl − 1) × TPOT); where the most the pools pass holds fewer: concurrency / throughput − (osl − 1) × TPOT",
            &[
                ("prefill_step", service.to_string()),
                ("queue_wait", s.wait.to_string()),
                ("prefill_utilization", Fixed(s.rho, 2).to_string()),
                ("kv_transfer", transfer.to_string()),
                ("first_round", s.first.to_string()),
                ("steady", s.steady.to_string()),
                ("rounds", format!("{}", sv.rounds)),
                ("request_overhead", sv.request_overhead.to_string()),
                (
                    "arrival_wait",
                    format!(
                        "{} decode steps",
                        super::closed_loop::ArrivalWait::of(&sv).explained(s.decode_batch)
                    ),
                ),
            ],
        ),
    );
    e.insert(
        super::ExplainKey::Tpot,
        Derivation::new(
            "decode step at the decode batch; the batch = throughput × (osl − 1) × TPOT over the decode ranks (solved together)",
            &[
                ("decode_step", decode.to_string()),
                ("decode_batch_per_rank", Fixed(s.decode_batch, 1).to_string()),
                ("decode_ranks", (inp.decode.workers as u64 * inp.decode.layout.dp as u64).to_string()),
                ("sequence_overhead", format!("{} per request in a step", sv.sequence_overhead)),
            ],
        ),
    );
    e.insert(
        super::ExplainKey::OutputTokensPerSPerGpu,
        Derivation::new(
            "requests per second × osl / GPUs of both pools; requests per second = concurrency / (TTFT + (osl − 1) × TPOT)",
            &[
                ("requests_per_s", Fixed(s.throughput, 2).to_string()),
                ("concurrency", inp.workload.concurrency.to_string()),
            ],
        ),
    );
    // The decode pool's ceilings and imbalance, as an aggregated estimate
    // derives its own.
    let din = decode_pool_input(inp);
    super::explain_ceilings(&mut e, &din, ceilings);
    e.insert(
        super::ExplainKey::LoadImbalance,
        super::explain_imbalance(&din),
    );
    if let Some(d) = super::explain_prefix_cache(&inp.workload) {
        e.insert(super::ExplainKey::PrefixCache, d);
    }
    if let Some(d) =
        super::explain_overlap(&[("prefill_step", prefill_step), ("decode_step", decode_step)])
    {
        e.insert(super::ExplainKey::Overlap, d);
    }
    e
}

impl DisaggEstimate {
    /// The JSON view (see [`DisaggEstimateJson`]).
    pub fn json(&self, detail: JsonDetail) -> DisaggEstimateJson<'_> {
        DisaggEstimateJson {
            mode: crate::figures::Mode::Disaggregated,
            gpus: self.gpus,
            headline: HeadlineJson {
                ttft_ms: self.ttft.ms(),
                tpot_ms: self.tpot.ms(),
                request_latency_ms: self.request_latency.ms(),
                output_tokens_per_s_per_gpu: self.output_tokens_per_s_per_gpu.0,
                output_tokens_per_s_per_user: self.output_tokens_per_s_per_user.0,
                input_tokens_per_s_per_gpu: self.input_tokens_per_s_per_gpu.0,
            },
            requests_per_s: self.requests_per_s,
            regime: self.regime,
            fits: self.fits,
            prefill: &self.prefill,
            decode: &self.decode,
            load_imbalance: self.load_imbalance,
            kv_transfer_ms: self.kv_transfer.ms(),
            queue_wait_ms: self.queue_wait.ms(),
            first_round_ttft_ms: self.first_round_ttft.ms(),
            steady_ttft_ms: self.steady_ttft.ms(),
            efficiency_source: &self.efficiency_source,
            warnings: &self.warnings,
            explain: (detail == JsonDetail::Full).then_some(&self.explain),
        }
    }
}

/// The prefill step of one worker of `pool` (whole prompts of the
/// workload's length, `prompts_per_rank` per rank) under `inp`'s serving layer.
pub(crate) fn prefill_step_time(inp: &DisaggInput, pool: &Pool) -> Seconds {
    let prompts = pool.prompts_per_rank.max(1) as f64;
    let pin = pool_input(inp, pool, (prompts * pool.layout.dp as f64) as u64);
    Stepper::new(&pin, pool.layout.dp as f64)
        .step(
            StepKind::PrefillBatch,
            Shape {
                decodes: 0.0,
                prefill_tokens: prompts * inp.workload.computed_prompt(),
            },
            Seconds::ZERO,
        )
        .time(&inp.calibration.serving)
}

/// The decode step of one worker of `pool` at `n` requests per rank under
/// `inp`'s serving layer.
pub(crate) fn decode_step_time(inp: &DisaggInput, pool: &Pool, n: f64) -> Seconds {
    let din = pool_input(inp, pool, (n * pool.layout.dp as f64).ceil() as u64);
    decode_step(&Stepper::new(&din, pool.layout.dp as f64), n).time(&inp.calibration.serving)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::Client;
    use crate::units::{Fraction, Tokens};

    /// The estimate costs only the decode steps its loop reads; a fit's
    /// `PreparedDisagg` costs them all. Both loops read the same steps, so
    /// their TTFT is the same number, from one request per decode rank to
    /// more than the decode pool's memory holds.
    #[test]
    fn the_estimate_reads_the_decode_steps_a_fit_costs() {
        let m = crate::catalog::model("deepseek-v3").unwrap().unwrap();
        let gpu = crate::catalog::gpu("h200-sxm").unwrap().unwrap();
        let engine = crate::profile::default_engine(&gpu);
        let pool = |dp: u32, workers: u32| Pool {
            layout: Layout {
                dp,
                ep: dp,
                ..Layout::default()
            },
            workers,
            prompts_per_rank: 1,
            redundant_experts: 0,
            overlap: crate::ops::Overlap::None,
        };
        for concurrency in [1, 7, 64, 1000, 100_000] {
            let inp = DisaggInput {
                model: &m,
                gpu: &gpu,
                calibration: crate::profile::resolve_disaggregated(&m, &gpu, engine).kernels,
                prefill: pool(8, 2),
                decode: pool(16, 1),
                workload: Workload {
                    isl: Tokens::new(4000),
                    osl: Tokens::new(500),
                    concurrency,
                    cache_hit_rate: Fraction::ZERO,
                    client: Client::Fixed,
                },
                engine: engine.config(gpu.memory),
                routing_skew: 0.0,
            };
            let sv = inp.calibration.serving;
            let (fit, _) = PreparedDisagg::new(&inp).unwrap().figures(&sv);
            let e = estimate_disaggregated(&inp).unwrap();
            assert_eq!(fit, e.ttft, "concurrency {concurrency}");
        }
    }
}

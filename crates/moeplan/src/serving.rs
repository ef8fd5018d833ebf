//! From step costs to what a user measures: TTFT, TPOT, throughput.
//!
//! A replica serves a closed loop of `concurrency` requests (a new one
//! starts when one finishes), each with `isl` prompt and `osl` output
//! tokens. Engines mix prefill chunks into decode steps (chunked prefill):
//! each attention-DP rank runs steps of at most `max_step_tokens` tokens.
//! In steady state a step carries one token for every decoding request plus
//! the prompt tokens that keep the loop going (`decode × isl / osl`). When
//! that does not fit in the step budget, prefill is the bottleneck: fewer
//! requests decode and the rest wait (Little's law gives their TTFT).
//! With PP, micro-batches keep stages busy; with fewer sequences than
//! stages, the pipeline has bubbles.

use crate::calibration::Calibration;
use crate::hardware::Gpu;
use crate::layout::{Layout, LayoutProblem};
use crate::memory::{self, EngineConfig, MemoryBreakdown};
use crate::model::Model;
use crate::ops::{Bound, CostContext, Op, StepCost, StepShape};
use crate::report::Derivation;
use crate::units::{Bytes, Flop, Seconds, TokensPerSecond};
use serde::Serialize;
use std::collections::BTreeMap;

/// The requests a replica serves.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Workload {
    /// Prompt tokens per request.
    pub isl: u64,
    /// Output tokens per request.
    pub osl: u64,
    /// Requests in flight on the replica.
    pub concurrency: u64,
}

/// Everything one estimate needs.
#[derive(Clone, Debug)]
pub struct EstimateInput<'a> {
    /// The model.
    pub model: &'a Model,
    /// The GPU.
    pub gpu: &'a Gpu,
    /// The efficiency curves (calibrated, or flat from `--mfu`).
    pub calibration: Calibration,
    /// The replica's layout.
    pub layout: Layout,
    /// The requests.
    pub workload: Workload,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Redundant expert slots (EPLB).
    pub redundant_experts: u32,
    /// Power-law exponent of expert popularity (0 = uniform routing).
    pub routing_skew: f64,
}

/// Expert load imbalance: max/mean − 1 of the EP ranks' routed rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LoadImbalance {
    /// With uniform routing (finite-sample fluctuation only), at the decode batch.
    pub uniform: f64,
    /// With power-law popularity of the given exponent, at the decode batch.
    pub skewed: f64,
    /// The exponent used for `skewed` (`REFERENCE_SKEW` when routing is uniform).
    pub skew: f64,
    /// The value applied to the MoE time.
    pub used: f64,
}

/// Cost of one phase, for explanations.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseCost {
    /// What the step is.
    pub description: String,
    /// Step time (slowest stage).
    pub time: Seconds,
    /// Time by bound.
    pub by_bound: BTreeMap<String, Seconds>,
    /// The ops of the slowest stage.
    pub ops: Vec<Op>,
    /// What limits it.
    pub bottleneck: Bound,
}

/// Bottleneck of each phase.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bottlenecks {
    /// Prefill.
    pub prefill: Bound,
    /// Decode.
    pub decode: Bound,
}

/// A phase on its own: one kind of work per step, no mixing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PurePhase {
    /// Sequences per attention-DP rank in the step.
    pub sequences_per_rank: f64,
    /// Prompt length (prefill) or context (decode) of each.
    pub tokens_per_sequence: f64,
    /// Time for the step's batch to cross every pipeline stage (for decode:
    /// the cycle after which every sequence has its next token).
    pub step_time: Seconds,
    /// Tokens the replica processes per second in such steps with its
    /// pipeline kept full (prompt tokens for prefill, output tokens for
    /// decode), divided by its GPUs.
    pub tokens_per_s_per_gpu: TokensPerSecond,
}

/// The pure phases of a deployment (`pure_prefill`, `pure_decode` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PurePhases {
    /// A step of whole prompts filling the step budget (at least one prompt per rank).
    pub prefill: PurePhase,
    /// A step of the steady-state decoding batch at the mean context.
    pub decode: PurePhase,
}

/// Physical ceilings per GPU, to check any claim against.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Ceilings {
    /// Output tokens/s per GPU if decode moved its bytes at the full HBM bandwidth and nothing else cost time.
    pub decode_tokens_per_s_per_gpu: TokensPerSecond,
    /// Prompt tokens/s per GPU at the full dense peak.
    pub prefill_tokens_per_s_per_gpu: TokensPerSecond,
    /// HBM bytes one decode step reads per GPU (weights touched + KV cache).
    pub decode_bytes_per_step_per_gpu: Bytes,
    /// Of those, KV cache bytes.
    pub decode_kv_bytes_per_step_per_gpu: Bytes,
    /// FLOP per prompt token (linear layers + attention at this prompt length).
    pub prefill_flop_per_token: Flop,
}

/// The prediction for one deployment (`moeplan estimate --json`; keys are stable).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// Layout of the replica.
    pub layout: Layout,
    /// GPUs of the replica.
    pub gpus: u32,
    /// Time to first token.
    pub ttft: Seconds,
    /// Time per output token after the first.
    pub tpot: Seconds,
    /// TTFT + (osl − 1) × TPOT.
    pub request_latency: Seconds,
    /// Output tokens/s of the replica divided by its GPUs.
    pub output_tokens_per_s_per_gpu: TokensPerSecond,
    /// Output tokens/s one request sees.
    pub output_tokens_per_s_per_user: TokensPerSecond,
    /// Prompt tokens/s of the replica divided by its GPUs.
    pub input_tokens_per_s_per_gpu: TokensPerSecond,
    /// Requests decoding per step on the replica (the rest wait for prefill).
    pub decoding_requests: f64,
    /// `decode` when every request decodes each step; `prefill` when the step budget cannot keep up with arriving prompts.
    pub regime: &'static str,
    /// The engine settings assumed.
    pub engine: crate::memory::EngineConfig,
    /// Whether the memory of the fullest GPU fits.
    pub fits: bool,
    /// Most requests the replica holds at `memory_context` tokens each.
    pub max_concurrency: u64,
    /// Tokens of KV cache per request that memory is sized for: isl + osl
    /// (engine-neutral, every request at its end), or isl + osl/2 (an
    /// engine's steady state).
    pub memory_context: u64,
    /// Memory of the fullest GPU.
    pub memory: MemoryBreakdown,
    /// Expert load imbalance.
    pub load_imbalance: LoadImbalance,
    /// What limits each phase.
    pub bottleneck: Bottlenecks,
    /// Physical ceilings.
    pub ceilings: Ceilings,
    /// The prefill and decode phases on their own.
    pub pure: PurePhases,
    /// Prefill of one prompt (chunked by the step budget) with the running decodes.
    pub prefill: PhaseCost,
    /// A steady-state step (decode plus the prefill share).
    pub decode: PhaseCost,
    /// Where the efficiencies come from.
    pub efficiency_source: String,
    /// Warnings (layout costs, memory, bubbles).
    pub warnings: Vec<String>,
    /// Derivation of each headline figure.
    pub explain: BTreeMap<String, Derivation>,
}

/// Expected max/mean − 1 of routed rows over `ep` ranks for `rows` routed
/// rows, with expert popularity ∝ (rank + 1)^−skew. Experts sit on ranks in
/// a fixed pseudo-random order (popularity is unrelated to expert ids);
/// redundant slots replicate the hottest experts and a greedy placement
/// (EPLB) balances them. The finite-sample part uses a normal
/// approximation of the busiest of `ep` ranks: σ·√(2 ln ep).
pub fn load_imbalance(n_experts: u64, ep: u32, redundant: u32, rows: f64, skew: f64) -> f64 {
    if ep <= 1 || n_experts == 0 {
        return 0.0;
    }
    let systematic = systematic_imbalance(n_experts, ep, redundant, skew);
    let mu = rows / ep as f64;
    let statistical = if mu > 0.0 {
        (mu * (1.0 - 1.0 / ep as f64)).sqrt() * (2.0 * (ep as f64).ln()).sqrt() / mu
    } else {
        0.0
    };
    (1.0 + systematic) * (1.0 + statistical) - 1.0
}

/// Key of a memoised placement: experts, ep, redundant slots, skew bits.
type PlacementKey = (u64, u32, u32, u64);

thread_local! {
    /// The last placements computed on this thread: a planner evaluates
    /// many layouts of one model, so a handful of (ep, redundant, skew)
    /// combinations recur. Pure function of its key, so results are
    /// identical with or without the memo.
    static PLACEMENTS: std::cell::RefCell<Vec<(PlacementKey, f64)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// max/mean − 1 of the popularity placed on the busiest rank (no sampling noise).
fn systematic_imbalance(n_experts: u64, ep: u32, redundant: u32, skew: f64) -> f64 {
    let key = (n_experts, ep, redundant, skew.to_bits());
    if let Some(v) = PLACEMENTS.with(|c| c.borrow().iter().find(|(k, _)| *k == key).map(|x| x.1)) {
        return v;
    }
    let v = placement_imbalance(n_experts, ep, redundant, skew);
    PLACEMENTS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 32 {
            c.remove(0);
        }
        c.push((key, v));
    });
    v
}

fn placement_imbalance(n_experts: u64, ep: u32, redundant: u32, skew: f64) -> f64 {
    let e = n_experts as usize;
    let ep_us = ep as usize;
    // x^0 = 1 exactly: uniform routing needs no powers.
    let mut pop: Vec<f64> = if skew == 0.0 {
        vec![1.0; e]
    } else {
        (0..e).map(|i| ((i + 1) as f64).powf(-skew)).collect()
    };
    let sum: f64 = pop.iter().sum();
    pop.iter_mut().for_each(|p| *p /= sum);
    let slots = e + redundant as usize;
    let per_rank = slots.div_ceil(ep_us);
    let mut load = vec![0.0f64; ep_us];
    if redundant == 0 {
        // Contiguous blocks of expert ids, popularity order scrambled:
        // expert `id` has popularity rank `id · stride mod e`.
        let start = ((e as f64) * 0.618).round() as usize;
        let stride = (start.max(1)..e.max(2))
            .find(|s| gcd(*s, e) == 1)
            .unwrap_or(1)
            % e.max(1);
        let mut rank_by_pop = 0usize;
        for id in 0..e {
            load[(id / per_rank).min(ep_us - 1)] += pop[rank_by_pop];
            rank_by_pop += stride;
            if rank_by_pop >= e {
                rank_by_pop -= e;
            }
        }
    } else {
        let mut items: Vec<f64> = Vec::with_capacity(slots);
        let hot = (redundant as usize).min(e);
        for (i, p) in pop.iter().enumerate() {
            if i < hot {
                items.push(p / 2.0);
                items.push(p / 2.0);
            } else {
                items.push(*p);
            }
        }
        items.sort_by(|a, b| b.total_cmp(a));
        let mut used = vec![0usize; ep_us];
        for it in items {
            let r = (0..ep_us)
                .filter(|r| used[*r] < per_rank)
                .min_by(|a, b| load[*a].total_cmp(&load[*b]).then(a.cmp(b)))
                .unwrap_or(0);
            load[r] += it;
            used[r] += 1;
        }
    }
    let mean = 1.0 / ep as f64;
    let max = load.iter().copied().fold(0.0, f64::max);
    max / mean - 1.0
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn phase(description: String, c: &StepCost, time: Seconds) -> PhaseCost {
    PhaseCost {
        description,
        time,
        by_bound: c
            .by_bound()
            .iter()
            .map(|(b, t)| (b.name().to_string(), *t))
            .collect(),
        ops: c.ops.clone(),
        bottleneck: c.bottleneck(),
    }
}

fn phase_summary(c: &StepCost, time: Seconds) -> PhaseCost {
    PhaseCost {
        description: String::new(),
        time,
        by_bound: c
            .by_bound()
            .iter()
            .map(|(b, t)| (b.name().to_string(), *t))
            .collect(),
        ops: Vec::new(),
        bottleneck: c.bottleneck(),
    }
}

/// Predicts one deployment. Fails only for an invalid layout.
pub fn estimate(inp: &EstimateInput) -> Result<Estimate, Vec<LayoutProblem>> {
    estimate_with(inp, true)
}

/// The same prediction without the explanation: `explain` is empty, and
/// `prefill`/`decode` carry their time, bounds and bottleneck but no op
/// list or description. Every figure is identical to `estimate`'s; this is
/// the entry point for a planner that calls it thousands of times.
pub fn estimate_summary(inp: &EstimateInput) -> Result<Estimate, Vec<LayoutProblem>> {
    estimate_with(inp, false)
}

fn estimate_with(inp: &EstimateInput, detail: bool) -> Result<Estimate, Vec<LayoutProblem>> {
    let m = inp.model;
    let l = inp.layout;
    let (problems, mut warnings) = l.check(m, inp.gpu, inp.redundant_experts);
    if !problems.is_empty() {
        return Err(problems);
    }
    let w = inp.workload;
    let (isl, osl) = (w.isl.max(1) as f64, w.osl.max(1) as f64);
    let dp = l.dp as f64;
    let c_rank = (w.concurrency.max(1) as f64 / dp).max(1.0);
    let avg_ctx = isl + osl / 2.0;
    // Memory: the engine-neutral estimate holds every request at its full
    // length (isl + osl), the conservative answer; a real engine fills its
    // memory with requests at their current lengths, on average isl + osl/2.
    let neutral = inp.engine.engine == crate::memory::Engine::Neutral;
    let context = if neutral {
        w.isl + w.osl
    } else {
        w.isl + w.osl / 2
    };
    // Requests above the engine's running cap wait for a slot: they hold no
    // KV cache and their wait is part of TTFT.
    let mut cap = inp
        .engine
        .max_running_requests
        .map_or(f64::INFINITY, |c| c.max(1) as f64);
    // A real engine also admits only the requests whose KV cache fits; the
    // engine-neutral estimate reports a deployment that does not fit instead.
    if !neutral {
        let fit =
            memory::max_concurrency(m, inp.gpu, &l, &inp.engine, inp.redundant_experts, context);
        cap = cap.min(((fit as f64) / dp).floor().max(1.0));
    }
    let running = c_rank.min(cap);
    let budget = inp.engine.max_step_tokens as f64;

    // Steady state per DP rank.
    let needed = running * isl / osl;
    let (regime, b, p) = if running + needed <= budget {
        ("decode", running, needed)
    } else {
        let b = (budget * osl / (isl + osl)).clamp(1.0, running);
        ("prefill", b, (budget - b).max(0.0))
    };
    // Imbalance at the MoE's routed rows of a decode-dominated step.
    let (uniform, skewed, used) = match &m.moe {
        Some(moe) => {
            let rows = (b + p) * dp * l.cp as f64 / l.edp() as f64 * moe.experts_per_token as f64;
            // The reported skew: the user's, or REFERENCE_SKEW (which the
            // output names), not a different exponent.
            let skew_ref = if inp.routing_skew > 0.0 {
                inp.routing_skew
            } else {
                REFERENCE_SKEW
            };
            let u = load_imbalance(moe.n_routed_experts, l.ep, inp.redundant_experts, rows, 0.0);
            let s = load_imbalance(
                moe.n_routed_experts,
                l.ep,
                inp.redundant_experts,
                rows,
                skew_ref,
            );
            (u, s, if inp.routing_skew > 0.0 { s } else { u })
        }
        None => (0.0, 0.0, 0.0),
    };
    let ctx = CostContext::new(m, inp.gpu, l, inp.redundant_experts, used, &inp.calibration);

    // Pipeline: micro-batches keep stages busy.
    let mb = (l.pp as f64).min(b.ceil()).max(1.0);
    let mix = StepShape {
        peer_tokens: None,
        decode_seqs: b / mb,
        decode_context: avg_ctx,
        prefill_seqs: p / isl / mb,
        prefill_tokens_per_seq: isl,
        prefill_offset: 0.0,
    };
    let step = ctx.step(&mix);
    let cycle = step.traversal().max(step.stage_time() * mb);
    if l.pp > 1 && b < l.pp as f64 {
        warnings.push(format!("{:.0} sequences per rank cannot fill {} pipeline stages: the pipeline runs with bubbles", b, l.pp));
    }
    let tpot = cycle;

    // TTFT: the prompt's chunks ride along with the running decodes.
    let chunk = (budget - b).max(1.0).min(isl);
    let n_chunks = (isl / chunk).ceil();
    // The prompt's chunk lands on one attention-DP rank; the others run
    // their steady-state steps (b decode + p prompt tokens per micro-batch).
    let chunk_shape = StepShape {
        peer_tokens: Some((b + p) / mb),
        decode_seqs: b / mb,
        decode_context: avg_ctx,
        prefill_seqs: 1.0,
        prefill_tokens_per_seq: chunk,
        prefill_offset: (n_chunks - 1.0) * chunk / 2.0,
    };
    // Its routed rows (this chunk plus the peers' steady-state tokens) set
    // the expert load imbalance of that step, not the steady state's.
    let chunk_ctx;
    let chunk_ctx_ref = match &m.moe {
        Some(moe) if l.ep > 1 => {
            let tokens = b / mb + chunk + (dp - 1.0) * (b + p) / mb;
            let rows = tokens * l.cp as f64 / l.edp() as f64 * moe.experts_per_token as f64;
            let skew = if inp.routing_skew > 0.0 {
                inp.routing_skew
            } else {
                0.0
            };
            let imbalance = load_imbalance(
                moe.n_routed_experts,
                l.ep,
                inp.redundant_experts,
                rows,
                skew,
            );
            chunk_ctx = CostContext::new(
                m,
                inp.gpu,
                l,
                inp.redundant_experts,
                imbalance,
                &inp.calibration,
            );
            &chunk_ctx
        }
        _ => &ctx,
    };
    let chunk_step = chunk_ctx_ref.step(&chunk_shape);
    let prefill_time = chunk_step.traversal() * n_chunks;
    // Little's law: requests not decoding (waiting for prefill, or for a
    // running slot) leave at the completion rate of b / osl per step.
    let queue = tpot * ((c_rank - b).max(0.0) * osl / b);
    if c_rank > cap {
        warnings.push(format!(
            "{c_rank:.0} requests per attention-DP rank exceed the {cap:.0} that {} runs at once (its request limit, or what fits in memory): the rest wait for a slot, which adds {queue} to TTFT",
            inp.engine.engine.name()
        ));
    }
    let ttft = tpot / 2.0 + prefill_time + queue;
    let request_latency = ttft + tpot * (osl - 1.0);

    let gpus = l.gpus();
    let out_rate = TokensPerSecond::from_tokens(b * dp, tpot);
    let per_gpu = out_rate / gpus as f64;
    let in_per_gpu = TokensPerSecond(per_gpu.0 * isl / osl);

    let (mem, max_concurrency) = memory::memory_and_max_concurrency(
        m,
        inp.gpu,
        &l,
        &inp.engine,
        inp.redundant_experts,
        (running * dp).round() as u64,
        context,
    );
    if !mem.fits() {
        warnings.push(format!(
            "does not fit: the fullest GPU needs {} of {} usable ({:.0}% of {}); at most {} requests of {} tokens fit",
            mem.total_bytes,
            mem.usable_bytes,
            inp.engine.max_memory_fraction * 100.0,
            mem.capacity_bytes,
            max_concurrency,
            context
        ));
    }

    // Pure phases for bottlenecks and ceilings.
    let pure_decode = ctx.step(&StepShape::decode(b / mb, avg_ctx));
    let pure_prefill = ctx.step(&StepShape::prefill(1.0, chunk));
    // The pure phases a user benchmarks: a batch of whole prompts filling
    // the step budget, and the decoding batch alone.
    let prompts = (budget / isl).floor().max(1.0);
    let prefill_batch = ctx.step(&StepShape::prefill(prompts, isl));
    let prefill_time = prefill_batch.traversal();
    let decode_time = pure_decode.traversal().max(pure_decode.stage_time() * mb);
    let gpus_f = l.gpus() as f64;
    let pure = PurePhases {
        prefill: PurePhase {
            sequences_per_rank: prompts,
            tokens_per_sequence: isl,
            step_time: prefill_time,
            tokens_per_s_per_gpu: TokensPerSecond(
                prompts * isl * dp / prefill_batch.stage_time().0 / gpus_f,
            ),
        },
        decode: PurePhase {
            sequences_per_rank: b,
            tokens_per_sequence: avg_ctx,
            step_time: decode_time,
            tokens_per_s_per_gpu: TokensPerSecond(b * dp / decode_time.0 / gpus_f),
        },
    };
    let decode_bytes: Bytes = pure_decode
        .ops
        .iter()
        .filter(|o| o.bound != Bound::Communication)
        .map(|o| o.bytes * o.count as f64)
        .sum();
    let kv_bytes: Bytes = pure_decode
        .ops
        .iter()
        .filter(|o| o.name.starts_with("attention_decode"))
        .map(|o| o.bytes * o.count as f64)
        .sum();
    let decode_ceiling =
        TokensPerSecond::from_tokens(b / mb, decode_bytes / inp.gpu.memory_bandwidth);
    let flop_per_token =
        m.linear_flop_per_token() + Flop(m.attention_flop_per_token(w.isl).0 / 2.0);
    let prefill_ceiling = TokensPerSecond(
        inp.gpu.peak_for(m.dtypes.experts.preferred_compute()).1 .0 / flop_per_token.0,
    );

    let mut explain = BTreeMap::new();
    if detail {
        explain.insert(
        "tpot".into(),
        Derivation::new(
            "time of one steady-state step (each decoding request gets one token per step); with PP: max(traversal of all stages, micro-batches × slowest stage)",
            &[
                ("decoding_per_rank", format!("{b:.1}")),
                ("prefill_tokens_per_step_per_rank", format!("{p:.0} (= decoding × isl / osl)")),
                ("avg_context", format!("{avg_ctx:.0}")),
                ("micro_batches", format!("{mb:.0}")),
                ("slowest_stage_step", step.stage_time().to_string()),
            ],
        ),
    );
        explain.insert(
        "ttft".into(),
        Derivation::new(
            "half a step of waiting + chunks × (step with one chunk of the prompt and the running decodes) + queueing when prefill-bound",
            &[
                ("chunk_tokens", format!("{chunk:.0} (step budget {budget:.0} − decoding)")),
                ("chunks", format!("{n_chunks:.0}")),
                ("chunk_step", chunk_step.traversal().to_string()),
                ("queueing", queue.to_string()),
            ],
        ),
    );
        explain.insert(
            "output_tokens_per_s_per_gpu".into(),
            Derivation::new(
                "decoding requests × attention-DP ranks / TPOT / GPUs of the replica",
                &[
                    ("decoding", format!("{:.1}", b * dp)),
                    ("tpot", tpot.to_string()),
                    ("gpus", gpus.to_string()),
                ],
            ),
        );
        explain.insert(
        "decode_ceiling".into(),
        Derivation::new(
            "decoding sequences per GPU / (HBM bytes read per decode step / HBM bandwidth): the most a GPU could decode if nothing but memory traffic cost time",
            &[("bytes_per_step", decode_bytes.to_string()), ("of_which_kv_cache", kv_bytes.to_string()), ("bandwidth", inp.gpu.memory_bandwidth.to_string())],
        ),
    );
        explain.insert(
        "prefill_ceiling".into(),
        Derivation::new(
            "dense peak / FLOP per prompt token (linear layers + mean attention over the prompt)",
            &[("flop_per_token", flop_per_token.to_string())],
        ),
    );
        explain.insert(
        "load_imbalance".into(),
        Derivation::new(
            "max/mean − 1 of EP ranks' routed rows: popularity ∝ rank^−skew placed on ranks (EPLB greedy with redundant slots), times the busiest-of-ep fluctuation σ·√(2 ln ep)",
            &[("ep", l.ep.to_string()), ("redundant_slots", inp.redundant_experts.to_string()), ("skew", format!("{}", inp.routing_skew))],
        ),
    );
        explain.insert(
        "memory".into(),
        Derivation::new(
            "weights (this stage; attention and dense ÷ TP, experts ÷ EP·ETP) + KV (requests per DP rank × per-request cache at isl+osl) + activations of the largest step + buffers and runtime reserve",
            &[("stage", mem.stage.to_string()), ("kv_per_request", mem.kv_bytes_per_request.to_string()), ("requests_per_rank", format!("{c_rank:.0}"))],
        ),
    );
    }
    let (prefill, decode) = if detail {
        (
            phase(format!("one prompt chunk of {chunk:.0} tokens with {b:.1} decoding requests per rank"), &chunk_step, chunk_step.traversal()),
            phase(format!("{b:.1} decoding requests per rank at context {avg_ctx:.0} plus {p:.0} prompt tokens"), &step, tpot),
        )
    } else {
        (
            phase_summary(&chunk_step, chunk_step.traversal()),
            phase_summary(&step, tpot),
        )
    };
    Ok(Estimate {
        layout: l,
        gpus,
        ttft,
        tpot,
        request_latency,
        output_tokens_per_s_per_gpu: per_gpu,
        output_tokens_per_s_per_user: TokensPerSecond(1.0 / tpot.0),
        input_tokens_per_s_per_gpu: in_per_gpu,
        decoding_requests: b * dp,
        regime,
        engine: inp.engine,
        fits: mem.fits(),
        max_concurrency,
        memory_context: context,
        memory: mem,
        load_imbalance: LoadImbalance {
            uniform,
            skewed,
            skew: if inp.routing_skew > 0.0 {
                inp.routing_skew
            } else {
                REFERENCE_SKEW
            },
            used,
        },
        bottleneck: Bottlenecks {
            prefill: pure_prefill.bottleneck(),
            decode: pure_decode.bottleneck(),
        },
        pure,
        ceilings: Ceilings {
            decode_tokens_per_s_per_gpu: decode_ceiling,
            prefill_tokens_per_s_per_gpu: prefill_ceiling,
            decode_bytes_per_step_per_gpu: decode_bytes,
            decode_kv_bytes_per_step_per_gpu: kv_bytes,
            prefill_flop_per_token: flop_per_token,
        },
        prefill,
        decode,
        efficiency_source: inp.calibration.source.clone(),
        warnings,
        explain,
    })
}

impl Estimate {
    /// The stable JSON form (`moeplan estimate --json`): base units, with
    /// the headline figures also in the units people quote (ms).
    pub fn to_json(&self) -> serde_json::Value {
        let mem = &self.memory;
        serde_json::json!({
            "layout": self.layout,
            "gpus": self.gpus,
            "ttft_ms": self.ttft.ms(),
            "tpot_ms": self.tpot.ms(),
            "request_latency_ms": self.request_latency.ms(),
            "output_tokens_per_s_per_gpu": self.output_tokens_per_s_per_gpu.0,
            "output_tokens_per_s_per_user": self.output_tokens_per_s_per_user.0,
            "input_tokens_per_s_per_gpu": self.input_tokens_per_s_per_gpu.0,
            "decoding_requests": self.decoding_requests,
            "regime": self.regime,
            "engine": self.engine,
            "fits": self.fits,
            "max_concurrency": self.max_concurrency,
            "memory_context": self.memory_context,
            "memory_per_gpu": {
                "weights_bytes": mem.weights_bytes.0,
                "kv_cache_bytes": mem.kv_cache_bytes.0,
                "activation_bytes": mem.activation_bytes.0,
                "other_bytes": mem.other_bytes.0,
                "total_bytes": mem.total_bytes.0,
                "capacity_bytes": mem.capacity_bytes.0,
                "usable_bytes": mem.usable_bytes.0,
                "stage": mem.stage,
                "weights_by_component": mem.weights_by_component,
            },
            "load_imbalance": self.load_imbalance,
            "bottleneck": self.bottleneck,
            "ceilings": self.ceilings,
            "pure_prefill": self.pure.prefill,
            "pure_decode": self.pure.decode,
            "prefill": self.prefill,
            "decode": self.decode,
            "efficiency_source": self.efficiency_source,
            "warnings": self.warnings,
            "explain": self.explain,
        })
    }
}

/// The power-law exponent reported as "skewed" when the user assumes
/// uniform routing. 0.5 reproduces the measured slowdown of the fused MoE
/// kernels under the calibration's power-law routing (×1.3–1.6 at EP 8–32
/// for prefill-sized batches of vLLM's H100 kernels; other engines and GPUs
/// in docs/calibration.md, "Skewed routing").
pub const REFERENCE_SKEW: f64 = 0.5;

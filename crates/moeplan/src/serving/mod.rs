//! From step costs to what a user measures: TTFT, TPOT, throughput.
//!
//! A replica serves the closed loop a benchmark client drives: `concurrency`
//! requests in flight (a new one starts when one finishes), each with `isl`
//! prompt and `osl` output tokens, spread over the attention-DP ranks.
//! `closed_loop` says which steps the engine's scheduler runs and turns
//! their times into the client's mean TTFT and TPOT; `steps` costs each
//! named step through the op-level cost model (`crate::ops`) and the
//! profile's serving layer; `imbalance` gives the expert load imbalance of a
//! step's routed rows. Requests above what the engine runs at once (its cap,
//! or what fits in KV memory) wait for a slot.

pub mod closed_loop;
pub mod disagg;
pub mod imbalance;
pub mod steps;

pub(crate) use closed_loop::Regime;
pub use imbalance::load_imbalance;
pub(crate) use imbalance::REFERENCE_SKEW;

use crate::calibration::{Calibration, ServingParams};
use crate::hardware::Gpu;
use crate::layout::{Layout, LayoutProblem};
use crate::memory::{self, EngineConfig, MemoryBreakdown};
use crate::model::Model;
use crate::ops::{Bound, Op};
use crate::report::Derivation;
use crate::units::{Bytes, Fixed, Flop, Fraction, Seconds, Tokens, TokensPerSecond};
use closed_loop::{Arrivals, Loop, LoopParams, LoopResult, Policy, StepTimes};
use serde::Serialize;
use std::collections::BTreeMap;
use steps::{Step, StepKind, Stepper};

/// The requests a replica serves.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Workload {
    /// Prompt tokens per request.
    pub isl: Tokens,
    /// Output tokens per request.
    pub osl: Tokens,
    /// Requests in flight on the replica.
    pub concurrency: u64,
    /// Share of each prompt's tokens whose KV a prefix cache already holds
    /// (within `bounds::CACHE_HIT_RATE`; 0: none).
    #[serde(skip_serializing_if = "Fraction::is_zero")]
    pub cache_hit_rate: Fraction,
    /// The benchmark client that drives the loop.
    #[serde(skip_serializing_if = "Client::is_fixed")]
    pub client: Client,
}

/// The benchmark client that drives the closed loop: how it draws request
/// lengths, and so whether requests that start together stay together.
/// Each client has its own fitted serving layer (`profiles/serving.toml`):
/// besides the lengths, a benchmark suite brings its engine recipes and
/// timing conventions, which the kernel tables cannot show.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    /// Every request has exactly `isl` prompt and `osl` output tokens:
    /// `vllm bench serve` and SGLang's `bench_serving` with fixed lengths,
    /// AIConfigurator's benchmark harness. Requests prefilled
    /// in the same step finish in the same step, so a prefill-first
    /// engine's rounds stay grouped.
    #[default]
    Fixed,
    /// InferenceMAX (InferenceX): `benchmark_serving.py --random-range-ratio
    /// 0.8`, lengths drawn uniformly in [0.8, 1] × `isl` and × `osl`,
    /// 10 × concurrency prompts. Requests finish at different steps, so
    /// after the first round new prompts arrive spread out.
    #[serde(rename = "inferencemax")]
    InferenceMax,
}

impl Client {
    /// Every client, in the order of the serving table.
    pub const ALL: [Client; 2] = [Client::Fixed, Client::InferenceMax];

    /// Its name in flags, files and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Client::Fixed => "fixed",
            Client::InferenceMax => "inferencemax",
        }
    }

    /// The shortest length the client draws, as a fraction `(num, den)` of
    /// the stated one: it draws uniformly from there up to the stated
    /// length. All of it (fixed), or 4/5 (InferenceMAX's
    /// `--random-range-ratio 0.8`).
    pub fn shortest_fraction(self) -> (u64, u64) {
        match self {
            Client::Fixed => (1, 1),
            Client::InferenceMax => (4, 5),
        }
    }

    /// The shortest length the client draws for a stated `tokens`
    /// (`shortest_fraction` of it, rounded up).
    pub fn shortest(self, tokens: u64) -> u64 {
        let (num, den) = self.shortest_fraction();
        (tokens * num).div_ceil(den)
    }

    /// The mean length the client draws for a stated `tokens`: uniform
    /// from `shortest` to `tokens`, so their midpoint (`tokens` when fixed).
    pub fn mean(self, tokens: u64) -> f64 {
        (self.shortest(tokens) + tokens) as f64 / 2.0
    }

    /// Prompts one benchmark run sends per request kept in flight: what
    /// `moeplan launch`'s benchmark sends (8), or InferenceMAX's 10.
    pub fn prompts_per_concurrency(self) -> u64 {
        match self {
            Client::Fixed => 8,
            Client::InferenceMax => 10,
        }
    }

    /// Whether this is the default client (for `skip_serializing_if`).
    pub fn is_fixed(&self) -> bool {
        *self == Client::Fixed
    }

    /// Whether requests that start together finish together, so that
    /// later rounds arrive grouped (fixed lengths) rather than spread.
    pub(crate) fn arrivals(self) -> closed_loop::Arrivals {
        match self {
            Client::Fixed => closed_loop::Arrivals::Grouped,
            Client::InferenceMax => closed_loop::Arrivals::Spread,
        }
    }
}

impl Workload {
    /// Prompt tokens a prefill computes per request: isl × (1 − cache hit
    /// rate) (exactly isl without hits). The cached prefix's KV is read by
    /// attention, not recomputed.
    pub fn computed_prompt(&self) -> f64 {
        self.isl.get().max(1) as f64 * self.cache_hit_rate.complement().value()
    }

    /// Prompt tokens per request served from the prefix cache: isl × hit rate.
    pub(crate) fn cached_prompt(&self) -> f64 {
        self.isl.get().max(1) as f64 * self.cache_hit_rate.value()
    }

    /// KV tokens a request holds at its end: prompt + output.
    pub fn full_context(&self) -> u64 {
        self.isl.get() + self.osl.get()
    }

    /// KV tokens a request holds on average in an engine's steady state,
    /// half-way through its output: prompt + output / 2.
    pub fn steady_context(&self) -> u64 {
        self.isl.get() + self.osl.get() / 2
    }
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
    /// Whether a step's communication overlaps its computation (two-batch overlap).
    pub overlap: crate::ops::Overlap,
}

impl EstimateInput<'_> {
    /// The replica's memory footprint with requests of `context` tokens.
    pub(crate) fn footprint(&self, context: u64) -> memory::Footprint {
        memory::Footprint::of(
            self.model,
            self.gpu,
            &self.layout,
            &self.engine,
            self.redundant_experts,
            context,
        )
    }
}

/// Expert load imbalance: max/mean − 1 of the EP ranks' routed rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
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

/// One named step of an estimate: what the engine runs (`StepKind`), its
/// shape on one attention-DP rank, and its cost. `moeplan dag` draws these.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PhaseCost {
    /// Which step.
    pub kind: StepKind,
    /// Its work on one attention-DP rank (one micro-batch).
    pub shape: crate::ops::StepShape,
    /// Micro-batches it runs as (pipeline stages).
    #[serde(serialize_with = "crate::units::json::count")]
    pub(crate) micro_batches: f64,
    /// Expert load imbalance of its routed rows.
    pub load_imbalance: f64,
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
    /// What two-batch overlap did to it (absent without overlap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap: Option<crate::ops::OverlapCost>,
}

/// Bottleneck of each phase.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Bottlenecks {
    /// Prefill.
    pub prefill: Bound,
    /// Decode.
    pub decode: Bound,
}

/// A phase on its own: one kind of work per step, no mixing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PurePhase {
    /// Sequences per attention-DP rank in the step.
    #[serde(serialize_with = "crate::units::json::count")]
    pub sequences_per_rank: f64,
    /// Prompt length (prefill) or context (decode) of each.
    #[serde(serialize_with = "crate::units::json::count")]
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PurePhases {
    /// A step of whole prompts filling the step budget (at least one prompt per rank).
    pub prefill: PurePhase,
    /// A step of the steady-state decoding batch at the mean context.
    pub decode: PurePhase,
}

/// Physical ceilings per GPU, to check any claim against.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
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

/// The figures an estimate derives with `--explain` (the keys of its
/// `explain`; JSON names in snake_case). Declared in alphabetical order,
/// the order they are listed in.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ExplainKey {
    /// Output tokens/s per GPU if decode moved only its bytes at full HBM bandwidth.
    DecodeCeiling,
    /// GPUs of a planner's candidate (its pools).
    Gpus,
    /// Expert load imbalance applied.
    LoadImbalance,
    /// Memory of the fullest GPU.
    Memory,
    /// Output tokens/s per GPU.
    OutputTokensPerSPerGpu,
    /// What two-batch overlap hid (only with an overlap).
    Overlap,
    /// Prompt tokens/s per GPU at the dense peak.
    PrefillCeiling,
    /// What prefix-cache hits take off the prefill (only with a hit rate).
    PrefixCache,
    /// Time per output token.
    Tpot,
    /// Time to first token.
    Ttft,
    /// A disaggregated candidate's worker counts (rate matching).
    Workers,
}

impl ExplainKey {
    /// The snake_case name (JSON and `--explain`).
    pub fn name(self) -> &'static str {
        match self {
            ExplainKey::DecodeCeiling => "decode_ceiling",
            ExplainKey::Gpus => "gpus",
            ExplainKey::LoadImbalance => "load_imbalance",
            ExplainKey::Memory => "memory",
            ExplainKey::OutputTokensPerSPerGpu => "output_tokens_per_s_per_gpu",
            ExplainKey::Overlap => "overlap",
            ExplainKey::PrefillCeiling => "prefill_ceiling",
            ExplainKey::PrefixCache => "prefix_cache",
            ExplainKey::Tpot => "tpot",
            ExplainKey::Ttft => "ttft",
            ExplainKey::Workers => "workers",
        }
    }
}

impl std::fmt::Display for ExplainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The derivation of each figure an estimate explains.
pub(crate) type Explain = BTreeMap<ExplainKey, Derivation>;

/// The prediction for one deployment (serialized as [`EstimateJson`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// Layout of the replica.
    pub layout: Layout,
    /// The requests it serves (`concurrency` per replica).
    pub workload: Workload,
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
    pub regime: Regime,
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
    /// The step that carries a new request's prompt in steady state.
    pub prefill: PhaseCost,
    /// The decode step of the running batch.
    pub decode: PhaseCost,
    /// The benchmark's closed loop: first-round and later TTFT, slot wait,
    /// steps carrying prompts per round.
    pub benchmark: LoopResult,
    /// Where the efficiencies come from.
    pub efficiency_source: String,
    /// Warnings (layout costs, memory, bubbles).
    pub warnings: Vec<String>,
    /// Derivation of each headline figure.
    pub explain: Explain,
}

pub(crate) fn phase(step: &Step, serving: &ServingParams, detail: Detail) -> PhaseCost {
    PhaseCost {
        kind: step.kind,
        shape: step.micro,
        micro_batches: step.micro_batches,
        load_imbalance: step.imbalance,
        description: match detail {
            Detail::Full => describe(step),
            Detail::Summary => String::new(),
        },
        time: step.time(serving),
        by_bound: step
            .cost
            .by_bound()
            .iter()
            .map(|(b, t)| (b.name().to_string(), *t))
            .collect(),
        ops: match detail {
            Detail::Full => step.cost.ops.clone(),
            Detail::Summary => Vec::new(),
        },
        bottleneck: step.cost.bottleneck(),
        overlap: step.overlap,
    }
}

pub(crate) fn describe(step: &Step) -> String {
    let s = step.shape;
    match (s.decodes > 0.0, s.prefill_tokens > 0.0) {
        (true, true) => format!(
            "{}: {} decoding requests and {} prompt tokens per rank",
            step.kind.describe(),
            Fixed(s.decodes, 1),
            Fixed(s.prefill_tokens, 0)
        ),
        (false, true) => format!(
            "{}: {} prompt tokens per rank",
            step.kind.describe(),
            Fixed(s.prefill_tokens, 0)
        ),
        _ => format!(
            "{}: {} decoding requests per rank at context {}{}",
            step.kind.describe(),
            Fixed(s.decodes, 1),
            Fixed(step.micro.decode_context, 0),
            if step.micro_batches > 1.0 {
                format!(", in {} micro-batches", Fixed(step.micro_batches, 0))
            } else {
                String::new()
            }
        ),
    }
}

/// How much an estimate explains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Figures only (the planner's hot path).
    Summary,
    /// Figures, op lists and derivations.
    Full,
}

/// Predicts one deployment. Fails only for an invalid layout.
pub fn estimate(inp: &EstimateInput) -> Result<Estimate, Vec<LayoutProblem>> {
    estimate_with(inp, Detail::Full)
}

/// The same prediction without the explanation: `explain` is empty, and
/// `prefill`/`decode` carry their time, bounds and bottleneck but no op
/// list or description. Every figure is identical to `estimate`'s; this is
/// the entry point for a planner that calls it thousands of times.
pub fn estimate_summary(inp: &EstimateInput) -> Result<Estimate, Vec<LayoutProblem>> {
    estimate_with(inp, Detail::Summary)
}

/// `estimate` or `estimate_summary` as `detail` says.
pub(crate) fn estimate_at(
    inp: &EstimateInput,
    detail: Detail,
) -> Result<Estimate, Vec<LayoutProblem>> {
    estimate_with(inp, detail)
}

/// How the requests sit on the replica's attention-DP ranks.
#[derive(Clone, Copy, Debug)]
struct Load {
    /// Ranks that hold requests (fewer than the DP degree at low concurrency).
    active_ranks: f64,
    /// Requests in flight per active rank.
    in_flight: f64,
    /// Of those, how many the engine runs at once.
    running: f64,
    /// KV tokens per request that memory is sized for.
    context: u64,
}

impl Load {
    /// The load, and the memory footprint at its context (which caps the
    /// running requests, except under the engine-neutral estimate).
    fn of(inp: &EstimateInput) -> (Load, memory::Footprint) {
        let w = inp.workload;
        let dp = inp.layout.dp as f64;
        let c = w.concurrency.max(1) as f64;
        let active_ranks = c.min(dp);
        let in_flight = c / active_ranks;
        // The engine-neutral estimate sizes memory for every request at its
        // full length; an engine holds requests at their current lengths,
        // on average isl + osl/2, and admits only what fits.
        let neutral = inp.engine.engine == memory::Engine::Neutral;
        let context = if neutral {
            w.full_context()
        } else {
            w.steady_context()
        };
        let mut cap = inp
            .engine
            .max_running_requests
            .map_or(f64::INFINITY, |c| c.max(1) as f64);
        let footprint = inp.footprint(context);
        if !neutral {
            let fit = footprint.max_concurrency();
            cap = cap.min((fit as f64 / dp).floor().max(1.0));
        }
        let load = Load {
            active_ranks,
            in_flight,
            running: in_flight.min(cap),
            context,
        };
        (load, footprint)
    }
}

/// The loop of one rank under `inp`'s engine.
/// Tokens one step of one attention-DP rank may carry: the engine's budget,
/// divided among the ranks where the engine sizes it per replica (SGLang).
pub(crate) fn rank_budget(inp: &EstimateInput) -> f64 {
    match inp.engine.budget_scope {
        memory::BudgetScope::PerRank => inp.engine.max_step_tokens as f64,
        memory::BudgetScope::PerReplica => {
            (inp.engine.max_step_tokens as f64 / inp.layout.dp as f64).max(1.0)
        }
    }
}

fn closed_loop_of(inp: &EstimateInput, load: &Load) -> Loop {
    let budget = rank_budget(inp);
    Loop {
        in_flight: load.in_flight,
        running: load.running,
        // The prompt tokens a step's budget takes: the computed ones.
        isl: inp.workload.computed_prompt(),
        osl: inp.workload.osl.get().max(1) as f64,
        budget,
        policy: inp.engine.policy,
        arrivals: inp.workload.client.arrivals(),
    }
}

/// The steps of the loop, costed.
struct LoopSteps {
    decode: Step,
    prefill: Step,
    burst: Step,
    /// Whole prompts filling the budget alone (the pure prefill phase).
    batch: Step,
}

fn cost_steps(stepper: &Stepper, lp: &Loop) -> LoopSteps {
    let sh = closed_loop::shapes(lp);
    let prompts = (lp.budget / lp.isl).floor().max(1.0);
    let mut decode = stepper.step(StepKind::Decode, sh.decode, Seconds::ZERO);
    decode.decode_part = decode.kernels;
    let part = decode.kernels;
    LoopSteps {
        decode,
        prefill: stepper.step(StepKind::Prefill, sh.prefill, part),
        burst: stepper.step(StepKind::Burst, sh.burst, part),
        batch: stepper.step(
            StepKind::PrefillBatch,
            closed_loop::Shape {
                decodes: 0.0,
                prefill_tokens: prompts * lp.isl,
            },
            Seconds::ZERO,
        ),
    }
}

/// An estimate's loop and its steps' kernel times, before the serving
/// layer: what a fit of serving parameters re-solves without re-costing.
pub(crate) struct Prepared {
    load: Load,
    footprint: memory::Footprint,
    lp: Loop,
    steps: LoopSteps,
}

impl Prepared {
    /// Checks the layout, places the requests and costs the loop's steps.
    pub(crate) fn new(inp: &EstimateInput) -> Result<(Prepared, Vec<String>), Vec<LayoutProblem>> {
        let (problems, warnings) = inp.layout.check(inp.model, inp.gpu, inp.redundant_experts);
        if !problems.is_empty() {
            return Err(problems);
        }
        let (load, footprint) = Load::of(inp);
        let lp = closed_loop_of(inp, &load);
        let steps = cost_steps(&Stepper::new(inp, load.active_ranks), &lp);
        let prep = Prepared {
            load,
            footprint,
            lp,
            steps,
        };
        Ok((prep, warnings))
    }

    /// Requests each attention-DP rank runs at once (whatever the serving
    /// layer: the client's share, the engine's cap, KV memory).
    pub(crate) fn running(&self) -> f64 {
        self.lp.running
    }

    /// The engine's scheduler.
    pub(crate) fn policy(&self) -> Policy {
        self.lp.policy
    }

    /// The benchmark's figures under a serving layer.
    pub(crate) fn solve(&self, sv: &ServingParams) -> LoopResult {
        closed_loop::solve(
            &self.lp,
            &StepTimes {
                decode: self.steps.decode.time(sv),
                prefill: self.steps.prefill.time(sv),
                burst: self.steps.burst.time(sv),
            },
            &LoopParams {
                rounds: sv.rounds,
                request_overhead: sv.request_overhead,
                arrival_wait: closed_loop::ArrivalWait::of(sv),
                held_slots: sv.held_slots,
            },
        )
    }
}

/// The estimate of one replica: the loop solved under the serving layer,
/// memory, the derived figures and, in full detail, their derivations.
fn estimate_with(inp: &EstimateInput, detail: Detail) -> Result<Estimate, Vec<LayoutProblem>> {
    let l = inp.layout;
    let (prep, mut warnings) = Prepared::new(inp)?;
    let serving = inp.calibration.serving;
    let res = prep.solve(&serving);
    let Prepared {
        load,
        footprint,
        lp,
        steps: st,
    } = prep;
    let max_concurrency = footprint.max_concurrency();
    load_warnings(inp, &load, &res, max_concurrency, &mut warnings);
    overlap_warnings(
        &[("decode step", &st.decode), ("prefill step", &st.prefill)],
        &mut warnings,
    );
    warnings.extend(speculative_warning(inp.model));
    let mem = footprint.at((load.running * load.active_ranks).round() as u64);
    if !mem.fits() {
        warnings.push(format!(
            "does not fit: the fullest GPU needs {} of {} usable (of {}: {}); at most {} requests of {} tokens fit",
            mem.total_bytes,
            mem.usable_bytes,
            mem.capacity_bytes,
            inp.engine.describe_memory(),
            max_concurrency,
            load.context
        ));
    }
    let gpus = l.gpus();
    let figures = Figures::of(inp, &load, &lp, &st, &res);
    let explain = match detail {
        Detail::Full => explain(inp, &load, &lp, &st, &res, &figures, &mem),
        Detail::Summary => BTreeMap::new(),
    };
    Ok(Estimate {
        layout: l,
        workload: inp.workload,
        gpus,
        ttft: res.ttft,
        tpot: res.tpot,
        request_latency: res.ttft + res.tpot * (lp.osl - 1.0),
        output_tokens_per_s_per_gpu: figures.per_gpu,
        output_tokens_per_s_per_user: TokensPerSecond(1.0 / res.tpot.0.max(1e-12)),
        input_tokens_per_s_per_gpu: TokensPerSecond(
            figures.per_gpu.0 * inp.workload.isl.get().max(1) as f64 / lp.osl,
        ),
        decoding_requests: load.running * load.active_ranks,
        regime: res.regime,
        engine: inp.engine,
        fits: mem.fits(),
        max_concurrency,
        memory_context: load.context,
        memory: mem,
        load_imbalance: figures.imbalance,
        bottleneck: Bottlenecks {
            prefill: st.batch.cost.bottleneck(),
            decode: st.decode.cost.bottleneck(),
        },
        ceilings: figures.ceilings,
        pure: figures.pure,
        prefill: phase(&st.prefill, &serving, detail),
        decode: phase(&st.decode, &serving, detail),
        benchmark: res,
        efficiency_source: inp.calibration.source.clone(),
        warnings,
        explain,
    })
}

/// A warning for each step that two-batch overlap makes slower than one
/// batch: halves too small to keep the GPU busy, and collectives' latencies
/// paid twice, cost more than the communication hidden.
/// Says that the model's multi-token-prediction layers are not costed: a
/// deployment that runs them for speculative decoding emits several tokens
/// per decode step.
pub(crate) fn speculative_warning(m: &crate::model::Model) -> Option<String> {
    (m.mtp_layers > 0).then(|| {
        format!(
            "the checkpoint ships {} multi-token-prediction (MTP) layer(s) for speculative decoding, which this estimate does not model: run with it, a decode step emits more than one token per request, so TPOT is lower than this and prompts arrive faster",
            m.mtp_layers
        )
    })
}

pub(crate) fn overlap_warnings(steps: &[(&str, &Step)], warnings: &mut Vec<String>) {
    for (name, s) in steps {
        if let Some(o) = s.overlap.filter(|o| o.overlapped.0 > o.single_batch.0) {
            warnings.push(format!(
                "two-batch overlap makes the {name} slower: {} as two micro-batches against {} as one (it hides {}, but each half runs at half the tokens)",
                o.overlapped, o.single_batch, o.hidden
            ));
        }
    }
}

/// Warnings about where the requests sit: pipeline bubbles, requests
/// waiting for a running slot (unless not one request fits: memory's
/// warning says so, and no slot ever frees), attention-DP ranks left empty.
fn load_warnings(
    inp: &EstimateInput,
    load: &Load,
    res: &LoopResult,
    max_concurrency: u64,
    warnings: &mut Vec<String>,
) {
    let l = inp.layout;
    if l.pp > 1 && load.running < l.pp as f64 {
        warnings.push(format!("{:.0} sequences per rank cannot fill {} pipeline stages: the pipeline runs with bubbles", load.running, l.pp));
    }
    // The slot wait's shares: requests above what runs, and held ones.
    let held = inp.calibration.serving.held_slots;
    let above = (load.in_flight - load.running).max(0.0);
    let share = |n: f64| res.slot_wait * (n / (above + held).max(f64::MIN_POSITIVE));
    if held > 0.0 {
        warnings.push(format!(
            "the serving layer holds {held:.2} requests per attention-DP rank waiting for a running slot (fitted by `moeplan calibrate` to a benchmark that kept them above the engine's batch): they add {} to TTFT",
            share(held)
        ));
    }
    if above > 0.0 && max_concurrency > 0 {
        warnings.push(format!(
            "{:.0} requests per attention-DP rank exceed the {:.0} that {} runs at once (its request limit, or what fits in memory): the rest wait for a slot, which adds {} to TTFT",
            load.in_flight, load.running, inp.engine.engine.name(), share(above)
        ));
    }
    warnings.extend(
        inp.model
            .context_warning(inp.workload.isl.get(), inp.workload.osl.get()),
    );
    if load.active_ranks < l.dp as f64 {
        warnings.push(format!(
            "{} requests cannot occupy {} attention-DP ranks: {} ranks run empty steps",
            inp.workload.concurrency,
            l.dp,
            l.dp as f64 - load.active_ranks
        ));
    }
}

/// The derived figures of an estimate.
struct Figures {
    per_gpu: TokensPerSecond,
    imbalance: LoadImbalance,
    ceilings: Ceilings,
    pure: PurePhases,
}

impl Figures {
    /// Throughput per GPU, load imbalance, ceilings and pure phases of an estimate.
    fn of(
        inp: &EstimateInput,
        load: &Load,
        lp: &Loop,
        st: &LoopSteps,
        res: &LoopResult,
    ) -> Figures {
        let gpus = inp.layout.gpus() as f64;
        Figures {
            per_gpu: TokensPerSecond(res.output_rate * load.active_ranks / gpus),
            imbalance: load_imbalance_of(inp, load.active_ranks, &st.decode),
            ceilings: ceilings(inp, load.active_ranks, &st.decode),
            pure: pure_phases(inp, load, lp, st),
        }
    }
}

/// HBM bytes per GPU of the ops `keep` selects, each times its count.
fn op_bytes(ops: &[Op], keep: impl Fn(&Op) -> bool) -> Bytes {
    ops.iter()
        .filter(|o| keep(o))
        .map(|o| o.bytes * o.count as f64)
        .sum()
}

/// The decode ceiling (HBM traffic alone) and the prefill ceiling (dense
/// peak alone) per GPU, with the bytes and FLOP behind them, for the decode
/// step `d` on `active_ranks` attention-DP ranks.
pub(crate) fn ceilings(inp: &EstimateInput, active_ranks: f64, d: &Step) -> Ceilings {
    let m = inp.model;
    let gpus = inp.layout.gpus() as f64;
    let decode_bytes = op_bytes(&d.cost.ops, |o| o.bound != Bound::Communication);
    let kv_bytes = op_bytes(&d.cost.ops, |o| o.kind.reads_kv_cache());
    // Per GPU: the replica's tokens of one cycle over its GPUs, against
    // the HBM time of every micro-batch's bytes.
    let tokens_per_gpu = d.shape.decodes * active_ranks / gpus;
    let decode_ceiling = TokensPerSecond::from_tokens(
        tokens_per_gpu,
        decode_bytes * d.micro_batches / inp.gpu.memory_bandwidth,
    );
    // Per prompt token, cached ones included: a share 1 − h is computed, each
    // attending on average h · isl + (1 − h) · isl / 2 keys (h = 0: the
    // linear layers + half the attention at the prompt's length).
    let h = inp.workload.cache_hit_rate.value();
    let flop_per_token = Flop(
        (1.0 - h)
            * (m.linear_flop_per_token()
                + Flop(m.attention_flop_per_token(inp.workload.isl.get()).0 * (1.0 + h) / 2.0))
            .0,
    );
    let prefill_ceiling = TokensPerSecond(
        inp.gpu.peak_for(m.dtypes.experts.preferred_compute()).1 .0 / flop_per_token.0,
    );
    Ceilings {
        decode_tokens_per_s_per_gpu: decode_ceiling,
        prefill_tokens_per_s_per_gpu: prefill_ceiling,
        decode_bytes_per_step_per_gpu: decode_bytes,
        decode_kv_bytes_per_step_per_gpu: kv_bytes,
        prefill_flop_per_token: flop_per_token,
    }
}

/// The decode step's expert load imbalance with uniform routing and at the
/// routing skew (or the reference skew), and the value applied, for the
/// step `d` on `active_ranks` attention-DP ranks.
pub(crate) fn load_imbalance_of(inp: &EstimateInput, active_ranks: f64, d: &Step) -> LoadImbalance {
    let l = inp.layout;
    let skew_ref = if inp.routing_skew > 0.0 {
        inp.routing_skew
    } else {
        REFERENCE_SKEW
    };
    let (uniform, skewed) = match &inp.model.moe {
        Some(moe) => {
            let rows = (d.shape.decodes + d.shape.prefill_tokens) * active_ranks * l.cp as f64
                / l.edp() as f64
                * moe.experts_per_token as f64;
            let at = |skew| {
                load_imbalance(
                    moe.n_routed_experts,
                    l.ep,
                    inp.redundant_experts,
                    rows,
                    skew,
                )
            };
            (at(0.0), at(skew_ref))
        }
        None => (0.0, 0.0),
    };
    LoadImbalance {
        uniform,
        skewed,
        skew: skew_ref,
        used: d.imbalance,
    }
}

/// The prefill phase (whole prompts filling the budget) and the decode
/// phase (the steady batch) each on its own.
fn pure_phases(inp: &EstimateInput, load: &Load, lp: &Loop, st: &LoopSteps) -> PurePhases {
    let sv = inp.calibration.serving;
    let gpus = inp.layout.gpus() as f64;
    let dp = inp.layout.dp as f64;
    let (b, d) = (&st.batch, &st.decode);
    // Prompt tokens per computed one: 1 without prefix-cache hits.
    let isl = inp.workload.isl.get().max(1) as f64;
    let prompt_per_computed = isl / lp.isl;
    PurePhases {
        prefill: PurePhase {
            sequences_per_rank: b.shape.prefill_tokens / lp.isl,
            tokens_per_sequence: isl,
            step_time: b.time(&sv),
            tokens_per_s_per_gpu: TokensPerSecond(
                b.shape.prefill_tokens * prompt_per_computed * dp / b.time(&sv).0.max(1e-12) / gpus,
            ),
        },
        decode: PurePhase {
            sequences_per_rank: d.shape.decodes,
            tokens_per_sequence: d.micro.decode_context,
            step_time: d.time(&sv),
            tokens_per_s_per_gpu: TokensPerSecond(
                d.shape.decodes * load.active_ranks / d.time(&sv).0.max(1e-12) / gpus,
            ),
        },
    }
}

/// The derivation of each headline figure of an estimate.
fn explain(
    inp: &EstimateInput,
    load: &Load,
    lp: &Loop,
    st: &LoopSteps,
    res: &LoopResult,
    f: &Figures,
    mem: &MemoryBreakdown,
) -> Explain {
    let l = inp.layout;
    let sv = inp.calibration.serving;
    let mut e = BTreeMap::new();
    e.insert(ExplainKey::Ttft, explain_ttft(lp, st, res, &sv));
    e.insert(ExplainKey::Tpot, explain_tpot(lp, st, &sv));
    e.insert(
        ExplainKey::OutputTokensPerSPerGpu,
        Derivation::new(
            "running requests per rank × osl / (TTFT + (osl − 1) × TPOT, without the slot wait) × active attention-DP ranks / GPUs",
            &[
                ("running_per_rank", Fixed(load.running, 1).to_string()),
                ("active_ranks", Fixed(load.active_ranks, 0).to_string()),
                ("output_rate_per_rank", format!("{} tokens/s", Fixed(res.output_rate, 1))),
                ("gpus", l.gpus().to_string()),
            ],
        ),
    );
    explain_ceilings(&mut e, inp, &f.ceilings);
    e.insert(ExplainKey::LoadImbalance, explain_imbalance(inp));
    if let Some(d) = explain_prefix_cache(&inp.workload) {
        e.insert(ExplainKey::PrefixCache, d);
    }
    if let Some(d) = explain_overlap(&[("decode_step", &st.decode), ("prefill_step", &st.prefill)])
    {
        e.insert(ExplainKey::Overlap, d);
    }
    e.insert(
        ExplainKey::Memory,
        Derivation::new(
            "weights (this stage; attention and dense ÷ TP, experts ÷ EP·ETP) + KV (requests per DP rank × per-request cache at the memory context) + activations of the largest step + buffers and runtime reserve",
            &[
                ("stage", mem.stage.to_string()),
                ("kv_per_request", mem.kv_bytes_per_request.to_string()),
                ("requests_per_rank", Fixed(load.running, 0).to_string()),
                ("buffers_and_reserve", mem.other_bytes.to_string()),
                (
                    "usable",
                    format!(
                        "{} ({})",
                        mem.usable_bytes,
                        inp.engine.describe_memory()
                    ),
                ),
                ("runtime_reserve", inp.engine.runtime_reserve.to_string()),
                (
                    "allreduce_workspace",
                    format!(
                        "{} under TP (engines/{}.toml)",
                        inp.engine.allreduce_workspace,
                        inp.engine.engine.name()
                    ),
                ),
            ],
        ),
    );
    e
}

/// What a prefix-cache hit rate takes off each prompt's prefill; None
/// without hits.
pub(crate) fn explain_prefix_cache(w: &Workload) -> Option<Derivation> {
    (!w.cache_hit_rate.is_zero()).then(|| {
        Derivation::new(
            "a prompt of isl tokens computes (1 − hit rate) × isl of them after its cached prefix of hit rate × isl: the linear layers and the step budget count only the computed tokens, whose attention still covers the whole context (the cached KV is read, not recomputed); decode steps and KV memory are those of the full prompt",
            &[
                ("cache_hit_rate", format!("{}%", Fixed(w.cache_hit_rate.value() * 100.0, 1))),
                ("isl", w.isl.to_string()),
                ("computed_tokens_per_prompt", Fixed(w.computed_prompt(), 0).to_string()),
                ("cached_tokens_per_prompt", Fixed(w.cached_prompt(), 0).to_string()),
            ],
        )
    })
}

/// What two-batch overlap did to each named step (kernel times of the
/// slowest stage); None when no step overlaps.
pub(crate) fn explain_overlap(steps: &[(&str, &Step)]) -> Option<Derivation> {
    let inputs: Vec<(std::borrow::Cow<'static, str>, String)> = steps
        .iter()
        .filter_map(|(name, s)| {
            s.overlap.map(|o| {
                (
                    name.to_string().into(),
                    format!(
                        "{} communication of which {} hidden behind {} of compute and memory; {} in sequence; stage {} with overlap, {} as one batch",
                        o.communication, o.hidden, o.compute, o.serial, o.overlapped, o.single_batch
                    ),
                )
            })
        })
        .collect();
    (!inputs.is_empty()).then(|| Derivation {
        formula: "two-batch overlap: the step runs as two micro-batches of half the tokens, each costed through the op list at its size; per stage = max(W, H) + min(W, H) / L + S, where W = compute and memory of both halves, H = their in-layer collectives (EP dispatch/combine, TP all-reduce/all-gather), S = collectives outside the layers, L = the stage's layers (the fill and drain nothing hides); hidden = W + H − max(W, H) − min(W, H) / L".into(),
        inputs,
    })
}

/// The later rounds' arrival wait as the loop counted it: its steps and
/// the step they are counted in (`closed_loop::wait_unit`).
fn arrival_wait_explained(lp: &Loop, res: &LoopResult, sv: &ServingParams) -> String {
    let steps = closed_loop::ArrivalWait::of(sv)
        .under(lp.policy)
        .explained(lp.running.max(1.0));
    match (lp.policy, lp.arrivals) {
        (Policy::PrefillFirst, Arrivals::Grouped) => {
            "none (fixed lengths: every round repeats the first)".to_string()
        }
        (Policy::PrefillFirst, Arrivals::Spread)
        | (Policy::MixedChunked | Policy::MixedWhole, _) => {
            let unit = match closed_loop::wait_unit(lp.policy, lp.arrivals) {
                closed_loop::WaitUnit::Step => "steady steps (the step in progress, streaming)",
                closed_loop::WaitUnit::PromptStep => "prompt-carrying steps (fixed lengths: requests arrive in groups and wait for the group's other prompts)",
            };
            format!("{} = {steps} {unit}", res.arrival_wait)
        }
    }
}

/// How TTFT comes out of the loop, for the scheduler's policy.
fn explain_ttft(lp: &Loop, st: &LoopSteps, res: &LoopResult, sv: &ServingParams) -> Derivation {
    Derivation::new(
        match (lp.policy, lp.arrivals) {
            (Policy::PrefillFirst, Arrivals::Grouped) => "prefill first, fixed lengths: a round's prompts are prefilled back to back (every round repeats the first); TTFT = mean over the round of the prefill steps up to the one completing each prompt + request overhead + wait for a running slot",
            (Policy::PrefillFirst, Arrivals::Spread) => "prefill first, spread arrivals: first round = mean over the round of the full prefill steps up to each prompt's; later rounds = arrival wait × steady step + the prefill step(s) of the prompts that arrived during the step before; TTFT = (first + (rounds − 1) × later) / rounds + request overhead + wait for a running slot",
            (Policy::MixedChunked | Policy::MixedWhole, _) => "mixed steps: first round (every prompt at once) = mean over the round of the burst steps up to each prompt's; later rounds = the step(s) carrying the prompt's chunks beside the other requests' stream + arrival wait × steady step (× prefill step with fixed lengths: the group's other prompts); TTFT = (first + (rounds − 1) × later) / rounds + request overhead + wait for a running slot",
        },
        &[
            ("first_round", res.first_round_ttft.to_string()),
            ("later_rounds", res.steady_ttft.to_string()),
            ("arrival_wait", arrival_wait_explained(lp, res, sv)),
            ("rounds", format!("{}", sv.rounds)),
            ("prefill_steps_per_round", Fixed(res.prefill_steps, 1).to_string()),
            ("prefill_step", format!("{} ({})", st.prefill.time(sv), describe(&st.prefill))),
            ("burst_step", format!("{} ({})", st.burst.time(sv), describe(&st.burst))),
            ("request_overhead", sv.request_overhead.to_string()),
            ("slot_wait", format!("{} (one cycle × (requests in flight above those running + held slots) / running)", res.slot_wait)),
            ("held_slots", format!("{} per rank (requests a calibrated benchmark kept above the engine's batch)", sv.held_slots)),
        ],
    )
}

/// How TPOT comes out of the loop, for the scheduler's policy.
fn explain_tpot(lp: &Loop, st: &LoopSteps, sv: &ServingParams) -> Derivation {
    Derivation::new(
        match (lp.policy, lp.arrivals) {
            (Policy::PrefillFirst, Arrivals::Grouped) => "decode step + (the round's prefill time − the request's own) / (osl − 1): decodes wait while later prompts prefill",
            (Policy::PrefillFirst, Arrivals::Spread) => "decode step + prefill step × prefill steps per decode step: the (n − 1) / (osl − 1) prompts arriving per decode step are prefilled in groups of what arrived during the step before, and the decodes wait for them",
            (Policy::MixedChunked | Policy::MixedWhole, _) => "the steady-state step: the decode step + (step carrying a prompt chunk − decode step) × the share of steps that carry one (the other requests' prompts: (n − 1) × isl per cycle of osl − 1 decode steps, in chunks of the room the decodes leave, or whole prompts)",
        },
        &[
            ("decode_step", format!("{} ({})", st.decode.time(sv), describe(&st.decode))),
            ("prefill_steps_per_decode_step", Fixed(closed_loop::prefill_steps_per_decode(lp), 4).to_string()),
            ("prefill_step", st.prefill.time(sv).to_string()),
            ("micro_batches", Fixed(st.decode.micro_batches, 0).to_string()),
            ("step_overhead", sv.step_overhead.to_string()),
            ("sequence_overhead", format!("{} per request in a step ({} in the decode step)", sv.sequence_overhead, Fixed(st.decode.requests(), 1))),
            ("kernel_time_ratio", format!("prefill {}, decode {}", Fixed(sv.prefill_scale, 3), Fixed(sv.decode_scale, 3))),
        ],
    )
}

/// How the decode and prefill ceilings are derived.
/// How the expert load imbalance of a step comes out of the routing.
pub(crate) fn explain_imbalance(inp: &EstimateInput) -> Derivation {
    Derivation::new(
        "max/mean − 1 of EP ranks' routed rows: popularity ∝ rank^−skew placed on ranks (EPLB greedy with redundant slots), times the busiest-of-ep fluctuation σ·√(2 ln ep)",
        &[
            ("ep", inp.layout.ep.to_string()),
            (
                "redundant_slots",
                inp.layout.redundant_slots(inp.redundant_experts).to_string(),
            ),
            ("skew", format!("{}", inp.routing_skew)),
        ],
    )
}

pub(crate) fn explain_ceilings(e: &mut Explain, inp: &EstimateInput, c: &Ceilings) {
    e.insert(
        ExplainKey::DecodeCeiling,
        Derivation::new(
            "tokens of one decode cycle per GPU / (micro-batches × HBM bytes one GPU reads per micro-batch / HBM bandwidth): the most a GPU could decode if nothing but memory traffic cost time",
            &[
                ("bytes_per_step", c.decode_bytes_per_step_per_gpu.to_string()),
                ("of_which_kv_cache", c.decode_kv_bytes_per_step_per_gpu.to_string()),
                ("bandwidth", inp.gpu.memory_bandwidth.to_string()),
            ],
        ),
    );
    e.insert(
        ExplainKey::PrefillCeiling,
        Derivation::new(
            "dense peak / FLOP per prompt token (linear layers + mean attention over the prompt)",
            &[("flop_per_token", c.prefill_flop_per_token.to_string())],
        ),
    );
}

/// `moeplan estimate --json` of one replica: the one JSON shape of an
/// [`Estimate`] (base units, with the headline times in ms, the unit people
/// quote). The planner's and the audit's summaries leave out the per-step
/// breakdown and the derivations.
#[derive(Serialize, schemars::JsonSchema)]
pub struct EstimateJson<'a> {
    /// Layout of the replica.
    layout: &'a Layout,
    /// GPUs (of the replica, or of both pools).
    gpus: u32,
    /// The headline figures.
    #[serde(flatten)]
    headline: HeadlineJson,
    /// Requests decoding per step on the replica.
    #[serde(serialize_with = "crate::units::json::count")]
    decoding_requests: f64,
    /// `decode` or `prefill`: which part of the loop sets the pace.
    regime: Regime,
    /// The engine settings assumed.
    engine: &'a EngineConfig,
    /// Whether the fullest GPU fits in memory.
    fits: bool,
    /// Most requests the replica holds at `memory_context` tokens each.
    max_concurrency: u64,
    /// Tokens of KV cache per request that memory is sized for.
    memory_context: u64,
    /// Memory of the fullest GPU.
    memory_per_gpu: MemoryJson<'a>,
    /// Expert load imbalance.
    load_imbalance: &'a LoadImbalance,
    /// What limits each phase.
    bottleneck: &'a Bottlenecks,
    /// Physical ceilings per GPU.
    ceilings: &'a Ceilings,
    /// The prefill phase on its own.
    pure_prefill: &'a PurePhase,
    /// The decode phase on its own.
    pure_decode: &'a PurePhase,
    /// The step that carries a new prompt (the prefill pool when disaggregated).
    #[serde(skip_serializing_if = "Option::is_none")]
    prefill: Option<&'a PhaseCost>,
    /// The decode step (the decode pool when disaggregated).
    #[serde(skip_serializing_if = "Option::is_none")]
    decode: Option<&'a PhaseCost>,
    /// The benchmark's closed loop.
    benchmark: &'a LoopResult,
    /// Where the efficiencies come from.
    efficiency_source: &'a str,
    /// Warnings.
    warnings: &'a [String],
    /// Derivation of each headline figure (full detail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<&'a Explain>,
}

/// The headline figures both estimates' JSON share (times in ms, the
/// unit people quote).
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct HeadlineJson {
    /// Mean time to first token, ms.
    pub ttft_ms: f64,
    /// Mean time per output token after the first, ms.
    pub tpot_ms: f64,
    /// TTFT + (osl − 1) × TPOT, ms.
    pub(crate) request_latency_ms: f64,
    /// Output tokens/s divided by the GPUs.
    pub output_tokens_per_s_per_gpu: f64,
    /// Output tokens/s one request sees.
    pub output_tokens_per_s_per_user: f64,
    /// Prompt tokens/s divided by the GPUs.
    pub input_tokens_per_s_per_gpu: f64,
}

/// Memory of the fullest GPU in `moeplan estimate --json` (`memory_per_gpu`).
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct MemoryJson<'a> {
    /// Weights held.
    #[serde(serialize_with = "crate::units::json::count")]
    weights_bytes: f64,
    /// KV cache of the resident requests.
    #[serde(serialize_with = "crate::units::json::count")]
    kv_cache_bytes: f64,
    /// Activations and workspace.
    #[serde(serialize_with = "crate::units::json::count")]
    activation_bytes: f64,
    /// Buffers and runtime reserve.
    #[serde(serialize_with = "crate::units::json::count")]
    other_bytes: f64,
    /// Sum of the above.
    #[serde(serialize_with = "crate::units::json::count")]
    total_bytes: f64,
    /// The GPU's capacity.
    #[serde(serialize_with = "crate::units::json::count")]
    capacity_bytes: f64,
    /// What the engine may use: capacity × its fraction, or (TensorRT-LLM)
    /// what the model holds and its fraction of the rest.
    #[serde(serialize_with = "crate::units::json::count")]
    usable_bytes: f64,
    /// Pipeline stage of the fullest GPU.
    stage: usize,
    /// Weights by component.
    weights_by_component: &'a BTreeMap<String, Bytes>,
}

/// How much of an estimate its JSON carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonDetail {
    /// Everything (`moeplan estimate --json`).
    Full,
    /// Without the per-step breakdown and the derivations (the planner's
    /// and the audit's summaries).
    Summary,
}

impl Estimate {
    /// The JSON view (see [`EstimateJson`]).
    pub fn json(&self, detail: JsonDetail) -> EstimateJson<'_> {
        let mem = &self.memory;
        let full = detail == JsonDetail::Full;
        EstimateJson {
            layout: &self.layout,
            gpus: self.gpus,
            headline: HeadlineJson {
                ttft_ms: self.ttft.ms(),
                tpot_ms: self.tpot.ms(),
                request_latency_ms: self.request_latency.ms(),
                output_tokens_per_s_per_gpu: self.output_tokens_per_s_per_gpu.0,
                output_tokens_per_s_per_user: self.output_tokens_per_s_per_user.0,
                input_tokens_per_s_per_gpu: self.input_tokens_per_s_per_gpu.0,
            },
            decoding_requests: self.decoding_requests,
            regime: self.regime,
            engine: &self.engine,
            fits: self.fits,
            max_concurrency: self.max_concurrency,
            memory_context: self.memory_context,
            memory_per_gpu: MemoryJson {
                weights_bytes: mem.weights_bytes.0,
                kv_cache_bytes: mem.kv_cache_bytes.0,
                activation_bytes: mem.activation_bytes.0,
                other_bytes: mem.other_bytes.0,
                total_bytes: mem.total_bytes.0,
                capacity_bytes: mem.capacity_bytes.0,
                usable_bytes: mem.usable_bytes.0,
                stage: mem.stage,
                weights_by_component: &mem.weights_by_component,
            },
            load_imbalance: &self.load_imbalance,
            bottleneck: &self.bottleneck,
            ceilings: &self.ceilings,
            pure_prefill: &self.pure.prefill,
            pure_decode: &self.pure.decode,
            prefill: full.then_some(&self.prefill),
            decode: full.then_some(&self.decode),
            benchmark: &self.benchmark,
            efficiency_source: &self.efficiency_source,
            warnings: &self.warnings,
            explain: full.then_some(&self.explain),
        }
    }
}

impl Serialize for Estimate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json(JsonDetail::Full).serialize(s)
    }
}

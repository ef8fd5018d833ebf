//! The closed loop a benchmark client drives, step by step, in closed form.
//!
//! A benchmark at concurrency `n` (per attention-DP rank) starts `n`
//! requests at once and starts a new one whenever one finishes, for
//! `rounds × n` requests. The client decides the lengths (`Arrivals`):
//! when every request has exactly `isl` prompt and `osl` output tokens, the
//! requests stay in groups: those whose prompts were prefilled in the same
//! step finish in the same step, and their successors arrive together.
//! When it draws lengths from a range, requests finish at different steps
//! and later arrivals spread out. The engine's scheduler decides what a
//! step holds:
//!
//! - **prefill first** (SGLang): a step runs either waiting prompts (up to
//!   the step budget, chunking a long one) or the decodes, never both. All
//!   `n` prompts of the first round are prefilled back to back, then the
//!   requests decode together. With fixed lengths they finish together and
//!   every round repeats the first one: request `j`'s TTFT is the time of
//!   the prefill steps up to the one that completes its prompt; its TPOT
//!   also pays the prefill steps of the requests behind it. With spread
//!   arrivals, `(n − 1) / (osl − 1)` prompts arrive per decode step, and a
//!   prefill step between two decodes takes those that arrived during the
//!   step before: TTFT is a wait for the step in progress plus that step,
//!   and every decode waits for the share of prefill steps.
//! - **mixed** (vLLM's chunked prefill, TensorRT-LLM's in-flight batching):
//!   every step carries one token of each running decode, and the rest of
//!   the budget takes waiting prompts (vLLM chunks a prompt across steps;
//!   TensorRT-LLM takes whole prompts). In the first round the `n` prompts
//!   queue behind each other for `K` burst steps. Later, small differences
//!   between requests spread the arrivals out (the end-to-end runs say so:
//!   a grouped steady state fits them worse): the other requests' prompts
//!   come as a stream of `(n − 1) · isl / cycle` tokens per step, carried in
//!   steps that hold one chunk (vLLM) or one whole prompt (TensorRT-LLM)
//!   beside the decodes. A fraction `stream / chunk` of the steps carry one,
//!   so the steady step time, TPOT, is the decode step plus that fraction of
//!   the difference; a new request waits for the step in progress and then
//!   for the step(s) carrying its own prompt. That wait is counted in
//!   steady steps where the client draws lengths, and in prompt-carrying
//!   steps where every request has the same lengths (`WaitUnit`): there
//!   the requests that finish together still arrive together, and the
//!   runs' TTFT grows with the prompt. When prompts arrive
//!   faster than the budget can take them (`n` large against `osl`), every
//!   step is full and the queue never drains: TTFT is the closed loop's
//!   residual, `n / x − (osl − 1)` steps at `x = budget / (isl + osl − 1)`
//!   requests per step.
//!
//! Requests beyond what runs at once (the engine's cap, or what fits in KV
//! memory), and the ones a calibrated benchmark kept above the engine's
//! batch (`ServingParams::held_slots`), wait for a slot; Little's law gives
//! that wait from the cycle: `n` slots free once per cycle.
//!
//! This module is pure arithmetic on step times: `shapes` says which steps
//! the loop needs, the caller costs them (`super::steps`), `solve` returns
//! the figures. Fitting serving parameters re-runs `solve` only.

use crate::calibration::ServingParams;
use crate::units::{Fixed, Seconds};
use serde::Serialize;

/// How an engine's scheduler fills a step.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Prefill steps and decode steps alternate; waiting prompts go first (SGLang).
    PrefillFirst,
    /// Decodes first, then prompt chunks fill the budget (vLLM chunked prefill).
    MixedChunked,
    /// Decodes and whole prompts share a step (TensorRT-LLM without chunked context).
    MixedWhole,
}

/// How requests arrive after the first round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Together: with every request the same length, those that started
    /// together finish together, so a prefill-first engine repeats the
    /// first round.
    Grouped,
    /// Spread out: lengths differ, requests finish at different steps, and
    /// each new prompt arrives with the few that arrived during the step
    /// before it. Mixed schedulers are read this way whatever the client
    /// (the runs say so).
    Spread,
}

/// What a new request's arrival wait (`ServingParams::arrival_wait`) is
/// counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitUnit {
    /// Steady-state steps: a request that arrives alone waits for the step
    /// in progress, then streams its first token.
    Step,
    /// Steps that carry prompts: with fixed lengths on a mixed scheduler,
    /// requests that started together finish together and their successors
    /// arrive as a group, so a new request also waits for the steps that
    /// carry the other prompts of its group, whose time grows with the
    /// prompt, not with the decode step.
    PromptStep,
}

/// The unit of the arrival wait under `policy` and `arrivals` (the closed
/// form and the simulator both read it here). On train.csv's held-back
/// fifth, counting the fixed-length mixed runs' wait in prompt steps
/// instead of steady steps took their median TTFT error from 16.2% to
/// 13.0% (vLLM and TensorRT-LLM under AIConfigurator's harness, whose
/// measured TTFT at 8–16 requests grows with the prompt as the prefill
/// does, where a wait of decode steps stays flat); InferenceMAX's drawn
/// lengths spread the arrivals, and steady steps fit them better.
pub(crate) fn wait_unit(policy: Policy, arrivals: Arrivals) -> WaitUnit {
    match (policy, arrivals) {
        (Policy::MixedChunked | Policy::MixedWhole, Arrivals::Grouped) => WaitUnit::PromptStep,
        (Policy::MixedChunked | Policy::MixedWhole, Arrivals::Spread)
        | (Policy::PrefillFirst, _) => WaitUnit::Step,
    }
}

/// The arrival wait a loop counts, in the steps `wait_unit` names: `steps`
/// whatever the load, and `per_request` more for each request running on
/// the rank (`ServingParams::wait_per_request`). The loop, the
/// disaggregated decode stage and the simulator all count it here.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ArrivalWait {
    /// Steps whatever the load.
    pub steps: f64,
    /// Steps more per request running on the rank.
    pub per_request: f64,
}

impl ArrivalWait {
    /// No wait: every round repeats the first.
    pub const NONE: ArrivalWait = ArrivalWait {
        steps: 0.0,
        per_request: 0.0,
    };

    /// The serving layer's wait, both parts.
    pub(crate) fn of(sv: &ServingParams) -> ArrivalWait {
        ArrivalWait {
            steps: sv.arrival_wait,
            per_request: sv.wait_per_request,
        }
    }

    /// The part of it an aggregated loop under `policy` counts: both parts
    /// under mixed steps, the fixed steps alone under prefill first
    /// (`reads_wait_per_request`). A disaggregated decode batch counts both,
    /// whatever the scheduler.
    pub(crate) fn under(self, policy: Policy) -> ArrivalWait {
        if reads_wait_per_request(policy) {
            self
        } else {
            ArrivalWait {
                per_request: 0.0,
                ..self
            }
        }
    }

    /// Steps where `running` requests run on the rank.
    pub(crate) fn at(&self, running: f64) -> f64 {
        self.steps + self.per_request * running.max(0.0)
    }

    /// `at(running)`, and how it adds up where it grows with the load.
    pub(crate) fn explained(&self, running: f64) -> String {
        let total = Fixed(self.at(running), 2);
        match self.per_request {
            0.0 => total.to_string(),
            per => format!(
                "{total} ({} + {} per running request × {})",
                Fixed(self.steps, 2),
                Fixed(per, 4),
                Fixed(running, 1)
            ),
        }
    }
}

/// Whether `policy`'s aggregated loop reads a wait per running request.
/// An aggregated prefill-first scheduler's later rounds keep the fixed
/// steps: their wait for the group prefilled in one step already grows with
/// the load (`spread_group`), and a wait per request beside it lost on
/// train.csv's SGLang stacks (`calibrate --validate`: 17.4% against 19.3%
/// TTFT, aggregated stacks 11.8% against 11.9%).
pub(crate) fn reads_wait_per_request(policy: Policy) -> bool {
    match policy {
        Policy::MixedChunked | Policy::MixedWhole => true,
        Policy::PrefillFirst => false,
    }
}

/// What the loop is run with.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub(crate) struct Loop {
    /// Requests the client keeps in flight per attention-DP rank.
    pub(crate) in_flight: f64,
    /// Of those, how many the engine runs at once (cap, KV memory).
    pub running: f64,
    /// Prompt tokens per request.
    pub isl: f64,
    /// Output tokens per request.
    pub osl: f64,
    /// Tokens one step may carry per rank.
    pub budget: f64,
    /// The scheduler.
    pub policy: Policy,
    /// How later rounds arrive (the benchmark client's lengths).
    pub(crate) arrivals: Arrivals,
}

/// One step the loop needs costed: `decodes` running decodes and
/// `prefill_tokens` prompt tokens (of prompts of `isl` tokens).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Shape {
    /// Decoding requests in the step.
    pub decodes: f64,
    /// Prompt tokens in the step.
    pub prefill_tokens: f64,
}

/// The named steps of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub(crate) struct Shapes {
    /// All running requests decoding.
    pub decode: Shape,
    /// The step that carries a new prompt in steady state: a full-budget
    /// prefill step (prefill first), or one chunk (or whole prompt) with
    /// the other requests decoding (mixed).
    pub prefill: Shape,
    /// A first-round step: the budget full of prompts while the requests
    /// already prefilled decode (mixed); the last, partial prefill step of
    /// a round (prefill first).
    pub(crate) burst: Shape,
}

/// Step times of the shapes (scheduler overhead included).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub(crate) struct StepTimes {
    /// Of `Shapes::decode`.
    pub decode: Seconds,
    /// Of `Shapes::prefill`.
    pub prefill: Seconds,
    /// Of `Shapes::burst`.
    pub(crate) burst: Seconds,
}

/// Serving parameters of the loop (fitted per engine).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub(crate) struct LoopParams {
    /// Rounds of `n` requests the benchmark runs (the first is the transient).
    pub rounds: f64,
    /// Fixed time per request outside the steps: HTTP, tokenisation, the
    /// first detokenisation (adds to TTFT).
    pub request_overhead: Seconds,
    /// Steps (steady or prompt-carrying: `wait_unit`) a new request spends
    /// outside the steps that carry its prompt: the step in progress when
    /// it arrives, its group's other prompts, output processing and
    /// streaming of its first token.
    pub(crate) arrival_wait: ArrivalWait,
    /// Requests per rank that wait for a running slot although the cap
    /// holds every request in flight (`ServingParams::held_slots`).
    pub(crate) held_slots: f64,
}

/// Which part of the loop limits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// Every request decodes each step; prompts fit in the budget as they arrive.
    Decode,
    /// Prompts arrive faster than the budget takes them: every step is full
    /// and new requests queue.
    Prefill,
}

impl Regime {
    /// The name used in JSON and output.
    pub fn name(self) -> &'static str {
        match self {
            Regime::Decode => "decode",
            Regime::Prefill => "prefill",
        }
    }
}

impl std::fmt::Display for Regime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the client measures, and the loop's structure for explanations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LoopResult {
    /// Mean time to first token.
    pub ttft: Seconds,
    /// Mean time per output token after the first.
    pub tpot: Seconds,
    /// Output tokens per second per rank.
    pub(crate) output_rate: f64,
    /// Mean TTFT of the first round.
    pub first_round_ttft: Seconds,
    /// Mean TTFT of the later rounds.
    pub steady_ttft: Seconds,
    /// Wait for a running slot (requests above the cap or memory, and
    /// those the serving layer holds: `ServingParams::held_slots`).
    pub slot_wait: Seconds,
    /// A later round's wait for its turn: the arrival wait's steps × the
    /// step they are counted in (`wait_unit`); zero where every round
    /// repeats the first.
    pub arrival_wait: Seconds,
    /// Steps that carry prompts in one round.
    #[serde(serialize_with = "crate::units::json::count")]
    pub(crate) prefill_steps: f64,
    /// Prompts one steady-state step carries (mixed: the stream, a
    /// fraction of a prompt; prefill first: the round).
    pub group: f64,
    /// The regime.
    pub regime: Regime,
    /// How later rounds arrived.
    pub arrivals: Arrivals,
}

/// Requests a mixed step takes per step at most, with every step full:
/// `x · isl` prompt tokens and `x · (osl − 1)` decodes fill the budget.
fn saturated_rate(l: &Loop) -> f64 {
    l.budget / (l.isl + l.osl - 1.0).max(1.0)
}

/// Whether mixed steps cannot keep up with the prompts (steady state with
/// every step full and a queue that never drains).
fn mixed_saturated(l: &Loop) -> bool {
    let x = saturated_rate(l);
    // Each request spends osl − 1 decode steps plus at least one step
    // carrying its prompt; n requests need n / x steps of budget per cycle.
    l.running / x > l.osl - 1.0 + (l.isl / l.budget).ceil().max(1.0)
}

/// Prompts a mixed step takes in the first round, with `decodes` running.
fn prompts_per_step(l: &Loop, decodes: f64) -> f64 {
    let room = (l.budget - decodes).max(1.0);
    match l.policy {
        Policy::MixedWhole => (room / l.isl).floor().max(1.0),
        _ => room / l.isl,
    }
}

/// The steps the loop needs costed.
pub(crate) fn shapes(l: &Loop) -> Shapes {
    let n = l.running.max(1.0);
    let decode = Shape {
        decodes: n,
        prefill_tokens: 0.0,
    };
    match l.policy {
        Policy::PrefillFirst if l.arrivals == Arrivals::Spread => Shapes {
            decode,
            prefill: Shape {
                decodes: 0.0,
                prefill_tokens: (spread_group(l) * l.isl).min(l.budget),
            },
            burst: Shape {
                decodes: 0.0,
                prefill_tokens: l.budget.min(n * l.isl),
            },
        },
        Policy::PrefillFirst => {
            let total = n * l.isl;
            let full = l.budget.min(total);
            let rest = total - (total / l.budget).floor() * l.budget;
            Shapes {
                decode,
                prefill: Shape {
                    decodes: 0.0,
                    prefill_tokens: full,
                },
                burst: Shape {
                    decodes: 0.0,
                    prefill_tokens: if rest > 0.0 { rest } else { full },
                },
            }
        }
        Policy::MixedChunked | Policy::MixedWhole => {
            if mixed_saturated(l) {
                let x = saturated_rate(l);
                let full = Shape {
                    decodes: (x * (l.osl - 1.0)).min(n),
                    prefill_tokens: x * l.isl,
                };
                return Shapes {
                    decode,
                    prefill: full,
                    burst: full,
                };
            }
            // First round: on average half the requests already decode.
            let half = n / 2.0;
            let burst = Shape {
                decodes: half,
                prefill_tokens: (prompts_per_step(l, half) * l.isl).min(n * l.isl),
            };
            Shapes {
                decode,
                prefill: Shape {
                    decodes: (n - 1.0).max(0.0),
                    prefill_tokens: own_chunk(l),
                },
                burst,
            }
        }
    }
}

/// Prompts that arrive per decode step in a spread steady state: each of
/// the other `n − 1` requests arrives once per `osl − 1` decode steps.
fn arrivals_per_step(l: &Loop) -> f64 {
    (l.running.max(1.0) - 1.0) / (l.osl - 1.0).max(1.0)
}

/// Prompts one prefill step takes in a spread steady state (prefill
/// first): those that arrived during the step before, at least the one
/// waiting, at most what the budget holds.
fn spread_group(l: &Loop) -> f64 {
    arrivals_per_step(l)
        .max(1.0)
        .min((l.budget / l.isl).max(1.0))
}

/// Prefill steps of a spread group: `⌈g · isl / budget⌉`.
fn spread_steps(l: &Loop) -> f64 {
    (spread_group(l) * l.isl / l.budget).ceil().max(1.0)
}

/// Prefill steps of a whole round (prefill first): `⌈n · isl / budget⌉`.
fn round_steps(l: &Loop) -> f64 {
    (l.running.max(1.0) * l.isl / l.budget).ceil().max(1.0)
}

/// Prompt tokens of the other requests that a steady-state step carries
/// (mixed): each of the other `n − 1` requests brings `isl` tokens once per
/// cycle of `osl − 1` decode steps and the steps carrying its prompt.
fn stream_tokens(l: &Loop) -> f64 {
    let n = l.running.max(1.0);
    let room = (l.budget - n).max(1.0);
    let cycle = l.osl - 1.0 + (l.isl / room).max(1.0);
    ((n - 1.0) * l.isl / cycle).min(room)
}

/// The part of a prompt one steady-state step carries (mixed): the room
/// the decodes leave (chunked), or the whole prompt.
fn own_chunk(l: &Loop) -> f64 {
    let n = l.running.max(1.0);
    let room = (l.budget - (n - 1.0)).max(1.0);
    match l.policy {
        Policy::MixedWhole => l.isl,
        _ => l.isl.min(room),
    }
}

/// Fraction of steady-state steps that carry a prompt chunk (mixed).
pub(crate) fn stream_share(l: &Loop) -> f64 {
    (stream_tokens(l) / own_chunk(l)).min(1.0)
}

/// Steps carrying prompts per decode step in the steady state: the share
/// of mixed steps carrying a chunk; for prefill first, the spread groups'
/// steps between two decodes, or the round's prefill steps over its
/// decode steps when rounds stay grouped.
pub(crate) fn prefill_steps_per_decode(l: &Loop) -> f64 {
    match (l.policy, l.arrivals) {
        (Policy::MixedChunked | Policy::MixedWhole, _) => stream_share(l),
        (Policy::PrefillFirst, Arrivals::Spread) => {
            arrivals_per_step(l) / spread_group(l) * spread_steps(l)
        }
        (Policy::PrefillFirst, Arrivals::Grouped) => round_steps(l) / (l.osl - 1.0).max(1.0),
    }
}

/// The steady-state step time (mixed): the decode step, and the fraction
/// of steps that carry a chunk of the other requests' prompts.
fn steady_time(l: &Loop, t: &StepTimes) -> Seconds {
    t.decode + (t.prefill - t.decode) * stream_share(l)
}

/// Mean over the `n` requests of a round of the step that completes each
/// prompt, when the steps carry `per_step` prompts (fractional: chunked).
/// Request `j` completes in step `⌈(j + 1) / per_step⌉`.
pub(crate) fn mean_completion_step(n: f64, per_step: f64) -> f64 {
    let n_int = n.round().max(1.0) as u64;
    if per_step >= n {
        return 1.0;
    }
    // Closed form of (1/n) Σ_{j=1..n} ⌈j / p⌉ for fractional p: steps are
    // ⌈j/p⌉; sum over full steps s = 1..K−1 of s · (prompts completing in s).
    let mut sum = 0.0;
    let mut done = 0u64;
    let mut s = 1.0;
    while done < n_int {
        let upto = ((s * per_step + 1e-9).floor() as u64).min(n_int);
        sum += s * (upto - done) as f64;
        done = upto;
        s += 1.0;
    }
    sum / n_int as f64
}

/// The benchmark's figures from the step times.
pub(crate) fn solve(l: &Loop, t: &StepTimes, p: &LoopParams) -> LoopResult {
    let n = l.running.max(1.0);
    let decode_steps = (l.osl - 1.0).max(0.0);
    let mut r = match l.policy {
        Policy::PrefillFirst => match l.arrivals {
            Arrivals::Grouped => prefill_first(l, t, p, n, decode_steps),
            Arrivals::Spread => prefill_first_spread(l, t, p, n, decode_steps),
        },
        Policy::MixedChunked | Policy::MixedWhole => mixed(l, t, p, n, decode_steps),
    };
    // Requests above what runs at once, and those the serving layer holds
    // back, wait for a slot: `n` slots free once per steady cycle, the one
    // the sustained rate is taken over (Little's law).
    let waiting = (l.in_flight - n).max(0.0) + p.held_slots;
    if waiting > 0.0 {
        let cycle = r.steady_ttft + r.tpot * decode_steps;
        r.slot_wait = cycle * (waiting / n);
        r.ttft += r.slot_wait;
    }
    r
}

fn prefill_first(l: &Loop, t: &StepTimes, p: &LoopParams, n: f64, dsteps: f64) -> LoopResult {
    let per_step = l.budget / l.isl;
    let steps = round_steps(l);
    let mean_step = mean_completion_step(n, per_step);
    // Full steps take `prefill`, the last (partial) one `burst`; a request
    // completing in step s has waited s full steps, or all full steps and
    // the partial one when it is in the last.
    let full = t.prefill;
    let last_extra = t.burst - t.prefill;
    let last_share = last_step_share(n, per_step, steps);
    let mean_done = full * mean_step + last_extra * last_share;
    let round_prefill = full * (steps - 1.0) + t.burst;
    let ttft = mean_done + p.request_overhead;
    // Decoding starts when the whole round is prefilled.
    let tpot = if dsteps > 0.0 {
        t.decode + (round_prefill - mean_done) / dsteps
    } else {
        Seconds::ZERO
    };
    // A round's clients spend the request overhead outside the steps
    // before their round starts: the cycle each slot takes holds it too
    // (Little's law: n = rate × (TTFT + (osl − 1) · TPOT)).
    let cycle = round_prefill + t.decode * dsteps + p.request_overhead;
    LoopResult {
        ttft,
        tpot,
        output_rate: n * l.osl / cycle.0.max(1e-12),
        first_round_ttft: ttft,
        steady_ttft: ttft,
        slot_wait: Seconds::ZERO,
        arrival_wait: Seconds::ZERO,
        prefill_steps: steps,
        group: n,
        regime: Regime::Decode,
        arrivals: l.arrivals,
    }
}

/// Prefill first with spread arrivals. The first round is prefilled back
/// to back in full-budget steps (`burst`). Later, a prefill step (`prefill`)
/// runs the `g` prompts that arrived during the step before, in
/// `⌈g · isl / budget⌉` steps; `a` prompts arrive per decode step, so
/// `a / g` of those groups fall between two decode steps, and every decode
/// waits for them: TPOT = decode + (a / g) · steps · prefill. A new
/// request waits `arrival_wait` steady steps for its turn, then its
/// group's steps.
fn prefill_first_spread(
    l: &Loop,
    t: &StepTimes,
    p: &LoopParams,
    n: f64,
    dsteps: f64,
) -> LoopResult {
    let tpot = if dsteps > 0.0 {
        t.decode + t.prefill * prefill_steps_per_decode(l)
    } else {
        Seconds::ZERO
    };
    let first = t.burst * mean_completion_step(n, l.budget / l.isl) + p.request_overhead;
    let wait = tpot * p.arrival_wait.under(l.policy).at(n);
    let steady = t.prefill * spread_steps(l) + wait + p.request_overhead;
    let rounds = p.rounds.max(1.0);
    let cycle = steady + tpot * dsteps;
    LoopResult {
        ttft: (first + steady * (rounds - 1.0)) / rounds,
        tpot,
        output_rate: n * l.osl / cycle.0.max(1e-12),
        first_round_ttft: first,
        steady_ttft: steady,
        slot_wait: Seconds::ZERO,
        arrival_wait: wait,
        prefill_steps: round_steps(l),
        group: spread_group(l),
        regime: Regime::Decode,
        arrivals: l.arrivals,
    }
}

/// Share of a round's requests whose prompt completes in the last step.
fn last_step_share(n: f64, per_step: f64, steps: f64) -> f64 {
    let before = ((steps - 1.0) * per_step).floor().min(n);
    ((n - before) / n).clamp(0.0, 1.0)
}

fn mixed(l: &Loop, t: &StepTimes, p: &LoopParams, n: f64, dsteps: f64) -> LoopResult {
    // The steady step: TPOT, and the arrival wait's unit unless lengths are fixed.
    let steady_step = steady_time(l, t);
    let unit = match wait_unit(l.policy, l.arrivals) {
        WaitUnit::Step => steady_step,
        WaitUnit::PromptStep => t.prefill,
    };
    let wait = unit * p.arrival_wait.under(l.policy).at(n);
    if mixed_saturated(l) {
        // Every step full: x requests complete per step.
        let x = saturated_rate(l);
        let cycle_steps = n / x;
        let ttft = t.prefill * (cycle_steps - dsteps).max(1.0) + wait + p.request_overhead;
        return LoopResult {
            ttft,
            tpot: t.prefill,
            output_rate: x * l.osl / t.prefill.0.max(1e-12),
            first_round_ttft: ttft,
            steady_ttft: ttft,
            slot_wait: Seconds::ZERO,
            arrival_wait: wait,
            prefill_steps: cycle_steps,
            group: x,
            regime: Regime::Prefill,
            arrivals: l.arrivals,
        };
    }
    let per_step = prompts_per_step(l, n / 2.0);
    let steps = (n / per_step).ceil().max(1.0);
    // First round: request j completes in burst step ⌈(j+1)/per_step⌉.
    let first = t.burst * mean_completion_step(n, per_step) + p.request_overhead;
    // Later rounds: the step in progress, then the step(s) carrying the
    // prompt's chunks alongside the stream.
    let chunks = (l.isl / own_chunk(l)).max(1.0);
    let tpot = steady_step;
    let steady = t.prefill * chunks + wait + p.request_overhead;
    let rounds = p.rounds.max(1.0);
    let ttft = (first + steady * (rounds - 1.0)) / rounds;
    let cycle = steady + tpot * dsteps;
    LoopResult {
        ttft,
        tpot,
        output_rate: n * l.osl / cycle.0.max(1e-12),
        first_round_ttft: first,
        steady_ttft: steady,
        slot_wait: Seconds::ZERO,
        arrival_wait: wait,
        prefill_steps: steps,
        group: stream_tokens(l) / l.isl,
        regime: Regime::Decode,
        arrivals: l.arrivals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> LoopParams {
        LoopParams {
            rounds: 1.0,
            request_overhead: Seconds::ZERO,
            arrival_wait: ArrivalWait::NONE,
            held_slots: 0.0,
        }
    }

    #[test]
    fn completion_steps() {
        // 10 prompts, 4 per step: steps 1,1,1,1,2,2,2,2,3,3 → mean 1.8.
        assert!((mean_completion_step(10.0, 4.0) - 1.8).abs() < 1e-12);
        // 3 prompts, 2.5 per step (chunked): j=1,2 in step 1, j=3 in step 2 → 4/3.
        assert!((mean_completion_step(3.0, 2.5) - 4.0 / 3.0).abs() < 1e-12);
        assert_eq!(mean_completion_step(4.0, 8.0), 1.0);
    }

    #[test]
    fn prefill_first_round_by_hand() {
        // 16 prompts of 1024 tokens, budget 8192: two full prefill steps of
        // 100 ms; 8 requests complete after the first, 8 after the second:
        // mean TTFT 150 ms. Decode 10 ms, osl 101 → 100 decode steps; a
        // request of the first step also waits the second (100 ms), one of
        // the second waits nothing: TPOT = 10 ms + 50 ms / 100 = 10.5 ms.
        let l = Loop {
            in_flight: 16.0,
            running: 16.0,
            isl: 1024.0,
            osl: 101.0,
            budget: 8192.0,
            policy: Policy::PrefillFirst,
            arrivals: Arrivals::Grouped,
        };
        let s = shapes(&l);
        assert_eq!(s.prefill.prefill_tokens, 8192.0);
        assert_eq!(s.burst.prefill_tokens, 8192.0);
        let t = StepTimes {
            decode: Seconds(0.010),
            prefill: Seconds(0.100),
            burst: Seconds(0.100),
        };
        let r = solve(&l, &t, &params());
        assert!((r.ttft.0 - 0.150).abs() < 1e-12, "{:?}", r.ttft);
        assert!((r.tpot.0 - 0.0105).abs() < 1e-12, "{:?}", r.tpot);
    }

    /// 8 requests of 1000 + 1000 tokens under a chunked mixed scheduler
    /// with a budget of 4004 tokens, lengths drawn (spread arrivals).
    fn eight_of_1000() -> Loop {
        Loop {
            in_flight: 8.0,
            running: 8.0,
            isl: 1000.0,
            osl: 1000.0,
            budget: 4004.0,
            policy: Policy::MixedChunked,
            arrivals: Arrivals::Spread,
        }
    }

    /// Decode 10 ms, a step carrying a prompt 30 ms, a burst step 40 ms.
    fn times_10_30_40() -> StepTimes {
        StepTimes {
            decode: Seconds(0.010),
            prefill: Seconds(0.030),
            burst: Seconds(0.040),
        }
    }

    #[test]
    fn mixed_rounds_by_hand() {
        // 8 prompts of 1000 tokens, budget 4004, 1000 output tokens. The
        // first round's steps carry (4004 − 4)/1000 = 4 prompts →
        // completions in steps 1 and 2, mean 1.5 bursts of 40 ms = 60 ms.
        // Later: the other 7 requests stream 7 × 1000 tokens per cycle of
        // 999 decode steps + 1 step carrying a prompt → 7 prompt tokens per
        // step; a prompt (1000 ≤ 4004 − 7 tokens of room) rides one 30 ms
        // step. Over 3 rounds: (60 + 2 × 30) / 3 = 40 ms. TPOT: 7/1000 of
        // the steps carry a prompt: 10 + 0.007 × (30 − 10) = 10.14 ms.
        let l = eight_of_1000();
        let sh = shapes(&l);
        assert_eq!(sh.prefill.decodes, 7.0);
        assert_eq!(sh.prefill.prefill_tokens, 1000.0);
        assert!((stream_share(&l) - 0.007).abs() < 1e-12);
        let t = times_10_30_40();
        let p = LoopParams {
            rounds: 3.0,
            ..params()
        };
        let r = solve(&l, &t, &p);
        assert!((r.first_round_ttft.0 - 0.060).abs() < 1e-12);
        assert!((r.steady_ttft.0 - 0.030).abs() < 1e-12);
        assert!((r.ttft.0 - 0.040).abs() < 1e-12);
        assert!((r.tpot.0 - 0.01014).abs() < 1e-12, "{:?}", r.tpot);
    }

    /// `eight_of_1000` with drawn (spread) and fixed (grouped) lengths,
    /// solved under `p` with the steps of `times_10_30_40`.
    fn spread_and_grouped(p: &LoopParams) -> (LoopResult, LoopResult) {
        let spread = eight_of_1000();
        let grouped = Loop {
            arrivals: Arrivals::Grouped,
            ..spread
        };
        let t = times_10_30_40();
        (solve(&spread, &t, p), solve(&grouped, &t, p))
    }

    fn assert_seconds(got: Seconds, expected: f64) {
        assert!(
            (got.0 - expected).abs() < 1e-12,
            "{got:?} against {expected}"
        );
    }

    #[test]
    fn fixed_lengths_wait_in_prompt_steps() {
        // The loop of `mixed_rounds_by_hand` with an arrival wait of 2 steps.
        // Drawn lengths (spread): later rounds = the 30 ms step carrying the
        // prompt + 2 steady steps of 10.14 ms = 50.28 ms. Fixed lengths
        // (grouped): the wait is 2 prompt steps, 30 + 2 × 30 = 90 ms. TPOT
        // is the steady step either way (10.14 ms), and the first round
        // (60 ms) has no wait.
        let (a, b) = spread_and_grouped(&LoopParams {
            arrival_wait: ArrivalWait {
                steps: 2.0,
                per_request: 0.0,
            },
            ..params()
        });
        assert_seconds(a.steady_ttft, 0.05028);
        assert_seconds(b.steady_ttft, 0.090);
        assert_seconds(a.tpot, 0.01014);
        assert_eq!(a.tpot, b.tpot);
        assert_seconds(a.first_round_ttft, 0.060);
        assert_eq!(a.first_round_ttft, b.first_round_ttft);
        // The wait the loop reports is the part of the later rounds it added.
        assert_seconds(a.arrival_wait, 0.02028);
        assert_seconds(b.arrival_wait, 0.060);
        // SGLang's prefill-first loop counts steady steps whatever the client.
        assert_eq!(
            wait_unit(Policy::PrefillFirst, Arrivals::Grouped),
            WaitUnit::Step
        );
        assert_eq!(
            wait_unit(Policy::MixedWhole, Arrivals::Grouped),
            WaitUnit::PromptStep
        );
    }

    #[test]
    fn arrival_wait_grows_with_the_running_requests() {
        // The loop of `mixed_rounds_by_hand` (8 requests running on the
        // rank) with an arrival wait of 2 steps and 0.25 more per running
        // request: 2 + 0.25 × 8 = 4 steady steps of 10.14 ms, so later
        // rounds = the 30 ms prompt step + 40.56 ms = 70.56 ms; with fixed
        // lengths, 4 prompt steps: 30 + 4 × 30 = 150 ms. TPOT (10.14 ms)
        // and the first round (60 ms) do not move.
        let grows = ArrivalWait {
            steps: 2.0,
            per_request: 0.25,
        };
        let p = LoopParams {
            arrival_wait: grows,
            ..params()
        };
        let (a, b) = spread_and_grouped(&p);
        assert_seconds(a.steady_ttft, 0.07056);
        assert_seconds(b.steady_ttft, 0.150);
        assert_seconds(a.arrival_wait, 0.04056);
        assert_seconds(a.tpot, 0.01014);
        assert_seconds(a.first_round_ttft, 0.060);
        // Without running requests only the fixed steps remain.
        assert_eq!(grows.at(0.0), 2.0);
        // A prefill-first loop keeps the fixed steps: its later rounds are
        // those without the wait per request.
        let spread = eight_of_1000();
        let t = times_10_30_40();
        let first = Loop {
            policy: Policy::PrefillFirst,
            ..spread
        };
        let fixed = LoopParams {
            arrival_wait: ArrivalWait {
                per_request: 0.0,
                ..grows
            },
            ..p
        };
        assert_eq!(solve(&first, &t, &p), solve(&first, &t, &fixed));
        assert_ne!(solve(&spread, &t, &p), solve(&spread, &t, &fixed));
    }

    #[test]
    fn prefill_first_spread_by_hand() {
        // 9 requests of 1000 prompt and 101 output tokens, budget 8192,
        // lengths spread. First round: 8192 / 1000 = 8.192 prompts per full
        // step, so 8 complete in step 1 and one in step 2: mean 10/9 steps
        // of 100 ms = 111.11 ms. Later: the other 8 arrive once per 100
        // decode steps, 0.08 per decode step, each prefilled alone in one
        // 20 ms step (1000 tokens): TPOT = 10 + 0.08 × 20 = 11.6 ms, and a
        // new request waits 0.5 steady steps (5.8 ms) then its 20 ms step:
        // 25.8 ms. Over 3 rounds: (111.11 + 2 × 25.8) / 3 = 54.237 ms.
        let l = Loop {
            in_flight: 9.0,
            running: 9.0,
            isl: 1000.0,
            osl: 101.0,
            budget: 8192.0,
            policy: Policy::PrefillFirst,
            arrivals: Arrivals::Spread,
        };
        let sh = shapes(&l);
        assert_eq!(sh.prefill.prefill_tokens, 1000.0);
        assert_eq!(sh.burst.prefill_tokens, 8192.0);
        let t = StepTimes {
            decode: Seconds(0.010),
            prefill: Seconds(0.020),
            burst: Seconds(0.100),
        };
        let p = LoopParams {
            rounds: 3.0,
            arrival_wait: ArrivalWait {
                steps: 0.5,
                per_request: 0.0,
            },
            ..params()
        };
        let r = solve(&l, &t, &p);
        assert!((r.tpot.0 - 0.0116).abs() < 1e-12, "{:?}", r.tpot);
        assert!((r.first_round_ttft.0 - 0.1 * 10.0 / 9.0).abs() < 1e-12);
        assert!((r.steady_ttft.0 - 0.0258).abs() < 1e-12);
        assert!((r.ttft.0 - (0.1 * 10.0 / 9.0 + 2.0 * 0.0258) / 3.0).abs() < 1e-12);
        // 301 requests: 300 / 100 = 3 arrive per decode step and share one
        // 3000-token prefill step between every two decodes: TPOT = 10 + 20.
        let busy = Loop {
            in_flight: 301.0,
            running: 301.0,
            ..l
        };
        assert_eq!(shapes(&busy).prefill.prefill_tokens, 3000.0);
        assert!((solve(&busy, &t, &p).tpot.0 - 0.030).abs() < 1e-12);
        // The same requests with fixed lengths stay grouped: a round of 9
        // prompts repeats, whatever the rounds.
        let grouped = Loop {
            arrivals: Arrivals::Grouped,
            ..l
        };
        let g = solve(&grouped, &t, &p);
        assert_eq!(g.first_round_ttft, g.steady_ttft);
    }

    #[test]
    fn one_request_pays_no_stream() {
        // Alone, a request decodes with nobody else's prompt in its steps:
        // TPOT is the decode step, and its own 128k prompt is paid once, in
        // TTFT (chunks of 8192 tokens: 16 steps).
        let l = Loop {
            in_flight: 1.0,
            running: 1.0,
            isl: 131072.0,
            osl: 1000.0,
            budget: 8192.0,
            policy: Policy::MixedChunked,
            arrivals: Arrivals::Spread,
        };
        assert_eq!(stream_share(&l), 0.0);
        let sh = shapes(&l);
        assert_eq!(sh.prefill.decodes, 0.0);
        assert_eq!(sh.prefill.prefill_tokens, 8192.0);
        let t = StepTimes {
            decode: Seconds(0.009),
            prefill: Seconds(0.5),
            burst: Seconds(0.5),
        };
        let r = solve(&l, &t, &params());
        assert_eq!(r.tpot, Seconds(0.009));
        assert!((r.steady_ttft.0 - 16.0 * 0.5).abs() < 1e-9);
    }

    /// `in_flight` requests of 100 prompt and 11 output tokens with 4
    /// running, prefill first: one 20 ms prefill step, then 10 decode
    /// steps of 10 ms, a cycle of 120 ms.
    fn four_running(in_flight: f64) -> (Loop, StepTimes) {
        let l = Loop {
            in_flight,
            running: 4.0,
            isl: 100.0,
            osl: 11.0,
            budget: 8192.0,
            policy: Policy::PrefillFirst,
            arrivals: Arrivals::Grouped,
        };
        let t = StepTimes {
            decode: Seconds(0.010),
            prefill: Seconds(0.020),
            burst: Seconds(0.020),
        };
        (l, t)
    }

    /// `l` solved with no held slot, and with one.
    fn free_and_one_held(l: &Loop, t: &StepTimes) -> (LoopResult, LoopResult) {
        let held = LoopParams {
            held_slots: 1.0,
            ..params()
        };
        (solve(l, t, &params()), solve(l, t, &held))
    }

    #[test]
    fn slot_wait_is_littles_law() {
        // 4 run, 8 in flight: the 4 waiting leave at 4 per 120 ms cycle →
        // they wait one cycle.
        let (l, t) = four_running(8.0);
        let r = solve(&l, &t, &params());
        assert!((r.slot_wait.0 - 0.120).abs() < 1e-12, "{:?}", r.slot_wait);
    }

    #[test]
    fn a_held_slot_waits_one_completion_interval() {
        // 4 in flight, 4 run, one held: the held request waits for one of
        // the 4 slots that free once per 120 ms cycle, 30 ms; TTFT is the
        // loop's own 20 ms prefill step plus it, and TPOT does not move.
        let (l, t) = four_running(4.0);
        let (free, held) = free_and_one_held(&l, &t);
        assert_eq!(free.slot_wait, Seconds::ZERO);
        assert!(
            (held.slot_wait.0 - 0.030).abs() < 1e-12,
            "{:?}",
            held.slot_wait
        );
        assert!((held.ttft.0 - free.ttft.0 - 0.030).abs() < 1e-12);
        assert_eq!(held.tpot, free.tpot);
    }

    #[test]
    fn held_slots_add_to_the_requests_above_the_cap_in_a_mixed_loop() {
        // 6 in flight on 4 running under a chunked mixed scheduler: 2 wait,
        // half a cycle. One held slot makes 3 wait on the same 4 slots and
        // cycle: three quarters of it, 3/2 of the wait without it.
        let (l, t) = four_running(6.0);
        let l = Loop {
            policy: Policy::MixedChunked,
            arrivals: Arrivals::Spread,
            ..l
        };
        let (free, held) = free_and_one_held(&l, &t);
        let cycle = free.ttft - free.slot_wait + free.tpot * 10.0;
        assert!((free.slot_wait.0 - cycle.0 * 0.5).abs() < 1e-12);
        assert!((held.slot_wait.0 - cycle.0 * 0.75).abs() < 1e-12);
        assert_eq!(held.tpot, free.tpot);
    }
}

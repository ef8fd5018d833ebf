//! One replica's engine, step by step: attention-DP ranks in lockstep, each
//! with its scheduler (`Policy`: vLLM's chunked prefill beside the decodes,
//! TensorRT-LLM's whole prompts beside them, SGLang's prefill-first steps),
//! its running-request cap, its step budget and its KV cache (admission by
//! free tokens, preemption by recompute when decodes outgrow it). A step
//! lasts what the cost model says for its fullest rank (`StepTime`).
//!
//! KV accounting is exact: a request holds the tokens it was prefilled with
//! plus one per decode step since it joined, and gives back exactly that.

use crate::serving::closed_loop::{ArrivalWait, Policy, WaitUnit};
use crate::units::{Fraction, Seconds};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// The duration of a replica step whose fullest rank carries `decodes`
/// decodes and `prefill_tokens` prompt tokens while each other
/// attention-DP rank brings `peer_tokens` tokens on average to the MoE layers.
pub trait StepTime {
    /// Seconds.
    fn time(&mut self, decodes: u64, prefill_tokens: u64, peer_tokens: u64) -> f64;
}

/// The limits of one attention-DP rank.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankLimits {
    /// The scheduler.
    pub policy: Policy,
    /// Tokens one step may carry.
    pub budget: u64,
    /// Requests running at once.
    pub max_running: u64,
    /// KV cache tokens the rank holds.
    pub kv_tokens: u64,
    /// Steps (of the replica's mean length) a request that arrives while a
    /// step runs spends outside the steps that carry its prompt: the step in
    /// progress, output processing and streaming of its first token (the
    /// serving layer's arrival wait). The simulation runs the step in
    /// progress itself; its client sees the first token the rest later. A
    /// request that finds the replica between steps (the first round of a
    /// closed loop) pays none of it, as in the estimate's first round. Its
    /// part per running request counts the requests the rank runs in the
    /// step, the arriving one included (`started`).
    pub arrival_wait: ArrivalWait,
    /// What those steps are: every step, or those that carry prompts
    /// (`serving::closed_loop::wait_unit`).
    pub arrival_wait_unit: WaitUnit,
    /// Time a request spends outside the engine's steps before its client
    /// sees the first token (HTTP, tokenisation, the first detokenisation):
    /// the serving layer's per-request overhead, added to TTFT as the
    /// estimate adds it.
    pub request_overhead: Seconds,
    /// Share of the running requests' remaining output a prefill-first
    /// scheduler keeps free in the KV cache before it starts a new prompt
    /// (the engine file's `decode_reserve`, SGLang's new-token ratio):
    /// without it, a prompt admitted into the last free tokens is preempted
    /// by the next decode step, readmitted, and the rank never decodes.
    pub decode_reserve: Fraction,
}

/// A request in the engine.
/// When a request's first token came.
#[derive(Clone, Copy, Debug)]
pub(crate) struct First {
    /// When the engine produced it.
    pub(crate) produced: f64,
    /// When its client saw it (the engine's time plus output processing).
    pub(crate) seen: f64,
}

/// Whether a request counts in the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Sent during the warm-up: it runs, uncounted.
    WarmUp,
    /// Counted.
    Measured,
}

/// What a request found when it reached its replica.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Arrived {
    /// No step running (an idle replica, or the boundary between two steps).
    BetweenSteps,
    /// A step running, with this many seconds left: it pays the serving
    /// layer's arrival wait, of which those seconds.
    MidStep(f64),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Req {
    /// Whether it counts in the statistics.
    pub(crate) phase: Phase,
    /// Whether a step was running when it arrived.
    pub(crate) arrived: Arrived,
    pub(crate) arrival: f64,
    pub(crate) isl: u64,
    pub(crate) osl: u64,
    /// Its first token, once produced.
    pub(crate) first: Option<First>,
    /// Closed-loop client that sent it, if any.
    pub(crate) client: Option<u32>,
    /// Output tokens a decode pool generates after this prefill-only copy
    /// (disaggregated; 0 otherwise).
    pub(crate) rest: u64,
    /// Unique among every request the replica has held, renewed at each
    /// preemption: heap entries of another serial are stale.
    serial: u64,
    /// Output tokens generated when it (re)joined the running set.
    generated: u64,
    /// The rank's decode count when it (re)joined the running set.
    joined: u64,
    /// KV tokens it held when it (re)joined (what it was prefilled with).
    held: u64,
}

impl Req {
    pub(crate) fn new(arrival: f64, (isl, osl): (u64, u64), client: Option<u32>) -> Req {
        Req {
            phase: Phase::Measured,
            arrived: Arrived::BetweenSteps,
            arrival,
            isl: isl.max(1),
            osl: osl.max(1),
            first: None,
            client,
            rest: 0,
            serial: 0,
            generated: 0,
            joined: 0,
            held: 0,
        }
    }

    /// The request in `phase`, having found its replica as `arrived` says.
    pub(crate) fn reaching(self, phase: Phase, arrived: Arrived) -> Req {
        Req {
            phase,
            arrived,
            ..self
        }
    }
}

/// What a step did to a request, for the statistics.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    /// Its first token, at the step's end.
    FirstToken(Req),
    /// Its last token, at the step's end.
    Finished(Req),
}

/// One attention-DP rank.
#[derive(Debug, Default)]
struct Rank {
    /// Admitted, not started: (slot, tokens to prefill, KV tokens it will
    /// hold then). A request whose KV arrives from a prefill worker
    /// (disaggregated) prefills nothing.
    waiting: VecDeque<(usize, u64, u64)>,
    /// Started, prompt (or recompute) not done: (slot, tokens left, tokens in all).
    prefilling: VecDeque<(usize, u64, u64)>,
    /// Running requests by the decode count at which they finish: (count, slot, serial).
    finishing: BinaryHeap<Reverse<(u64, usize, u64)>>,
    /// Running requests by arrival (preemption takes the latest arrival,
    /// as vLLM's first-come-first-served priority does): (arrival bits, slot, serial).
    order: BinaryHeap<(u64, usize, u64)>,
    running: u64,
    /// Σ over running requests of the output they had left when they joined.
    left_at_join: u64,
    /// Σ over running requests of the decode count when they joined.
    joined_sum: u64,
    /// Decode steps this rank has run.
    counter: u64,
    kv_used: u64,
    /// End of its last decode step.
    last_decode: f64,
    /// Requests that joined since the last decode step, and the sum of their
    /// first-token times (their previous token, for the inter-token gap).
    fresh: (u64, f64),
}

/// One replica: its ranks and the requests they hold.
pub struct Replica {
    ranks: Vec<Rank>,
    limits: RankLimits,
    slots: Vec<Req>,
    free: Vec<usize>,
    serials: u64,
    /// Requests in the replica (waiting, prefilling, running).
    pub(crate) outstanding: u64,
    /// Preemptions so far.
    pub(crate) preemptions: u64,
    /// Mean durations of its steps since the first request that arrived
    /// while a step ran (a closed loop's first round left out).
    mean_step: Option<StepMeans>,
}

/// Mean step durations of a replica, the units of its arrival wait.
#[derive(Clone, Copy, Debug, Default)]
struct StepMeans {
    /// Of every step.
    every: RecentMean,
    /// Of the steps that carried prompt tokens.
    prompts: RecentMean,
}

impl StepMeans {
    /// The mean step `unit` counts (None before any step; the mean of every
    /// step until one carries prompts).
    fn of(&self, unit: WaitUnit) -> Option<f64> {
        match unit {
            WaitUnit::Step => self.every.get(),
            WaitUnit::PromptStep => self.prompts.get().or(self.every.get()),
        }
    }

    /// Counts a step of `duration` seconds that carried `prompt_tokens`.
    fn push(&mut self, duration: f64, prompt_tokens: u64) {
        self.every.push(duration);
        if prompt_tokens > 0 {
            self.prompts.push(duration);
        }
    }
}

/// A running mean over the last 1,024 values at most.
#[derive(Clone, Copy, Debug, Default)]
struct RecentMean {
    mean: f64,
    count: u64,
}

impl RecentMean {
    fn push(&mut self, x: f64) {
        self.count += 1;
        self.mean += (x - self.mean) / self.count.min(1024) as f64;
    }

    /// The mean, None before the first value.
    fn get(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }
}

/// What one step carried and produced.
#[derive(Debug, Default)]
pub(crate) struct StepOut {
    pub(crate) duration: f64,
    /// Decode tokens produced, and the mean gap since each one's previous token.
    pub(crate) decode_tokens: u64,
    pub(crate) gap: f64,
    pub(crate) events: Vec<Event>,
    /// Requests refused: their prompt alone exceeds a rank's KV cache.
    pub(crate) rejected: u64,
}

impl Replica {
    /// A replica of `dp` ranks with `limits` each.
    pub fn new(dp: u32, limits: RankLimits) -> Replica {
        Replica {
            ranks: (0..dp.max(1)).map(|_| Rank::default()).collect(),
            limits,
            slots: Vec::new(),
            free: Vec::new(),
            serials: 0,
            outstanding: 0,
            preemptions: 0,
            mean_step: None,
        }
    }

    /// Requests waiting to start, over every rank.
    pub(crate) fn waiting(&self) -> u64 {
        self.ranks.iter().map(|r| r.waiting.len() as u64).sum()
    }

    /// KV tokens in use over the capacity, over every rank.
    pub(crate) fn kv_fraction(&self) -> f64 {
        let used: u64 = self.ranks.iter().map(|r| r.kv_used).sum();
        used as f64 / (self.limits.kv_tokens.max(1) * self.ranks.len() as u64) as f64
    }

    /// Admits a request to its least-loaded rank, to be prefilled but for
    /// its first `cached` prompt tokens (a prefix cache's hit).
    pub(crate) fn admit(&mut self, r: Req, cached: u64) {
        let isl = r.isl;
        self.admit_holding(r, isl - cached.min(isl - 1), isl);
    }

    /// Admits a request whose prompt's KV cache a prefill worker computed
    /// and sent (disaggregated): it joins the decodes when it fits.
    pub(crate) fn admit_resident(&mut self, r: Req) {
        let isl = r.isl;
        self.admit_holding(r, 0, isl);
    }

    fn admit_holding(&mut self, mut r: Req, compute: u64, held: u64) {
        if let (Arrived::MidStep(_), None) = (r.arrived, self.mean_step) {
            self.mean_step = Some(Default::default());
        }
        self.serials += 1;
        r.serial = self.serials;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = r;
                s
            }
            None => {
                self.slots.push(r);
                self.slots.len() - 1
            }
        };
        let rank = (0..self.ranks.len())
            .min_by_key(|i| {
                let k = &self.ranks[*i];
                k.waiting.len() as u64 + k.prefilling.len() as u64 + k.running
            })
            .expect("a replica has a rank");
        self.ranks[rank].waiting.push_back((slot, compute, held));
        self.outstanding += 1;
    }

    /// Refuses every waiting request (a replica that can make no progress).
    pub(crate) fn refuse_waiting(&mut self) -> u64 {
        let mut n = 0;
        for rank in &mut self.ranks {
            for (slot, _, _) in rank.waiting.drain(..) {
                self.slots[slot].serial = 0;
                self.free.push(slot);
                n += 1;
            }
        }
        self.outstanding -= n;
        n
    }

    /// Whether any rank has work.
    pub(crate) fn busy(&self) -> bool {
        self.outstanding > 0
    }

    /// Runs one step starting at `now` (of zero length when nothing can run).
    pub(crate) fn step(&mut self, now: f64, cost: &mut dyn StepTime) -> StepOut {
        let mut out = StepOut::default();
        let plans = self.plans(&mut out);
        let decodes = plans.iter().map(|p| p.decodes).max().unwrap_or(0);
        let tokens = plans.iter().map(|p| p.prefill_tokens).max().unwrap_or(0);
        if decodes == 0 && tokens == 0 {
            // Only requests whose KV arrived joining: no step to run.
            for (i, p) in plans.into_iter().enumerate() {
                let overhead = self.limits.request_overhead.value();
                self.finish_step(i, p, (now, (overhead, 0.0)), &mut out);
            }
            return out;
        }
        let total: u64 = plans.iter().map(|p| p.decodes + p.prefill_tokens).sum();
        let peers = match self.ranks.len() as u64 {
            1 => 0,
            n => total.saturating_sub(decodes + tokens) / (n - 1),
        };
        out.duration = cost.time(decodes, tokens, peers).max(1e-9);
        // The wait's unit, over the steps before this one (this one's
        // length before any).
        let mean = self
            .mean_step
            .and_then(|m| m.of(self.limits.arrival_wait_unit))
            .unwrap_or(out.duration);
        if let Some(m) = &mut self.mean_step {
            m.push(out.duration, tokens);
        }
        let end = now + out.duration;
        let overhead = self.limits.request_overhead.value();
        let mut gap_sum = 0.0;
        for (i, p) in plans.into_iter().enumerate() {
            let steps = self
                .limits
                .arrival_wait
                .at(started(&self.ranks[i], &p) as f64);
            gap_sum += self.finish_step(i, p, (end, (overhead, steps * mean)), &mut out);
        }
        if out.decode_tokens > 0 {
            out.gap = gap_sum / out.decode_tokens as f64;
        }
        out
    }

    /// Every rank's next step; requests that can never fit are refused.
    fn plans(&mut self, out: &mut StepOut) -> Vec<Plan> {
        let limits = self.limits;
        let mut plans = Vec::with_capacity(self.ranks.len());
        for i in 0..self.ranks.len() {
            self.preempt_if_full(i);
            let p = plan(&mut self.ranks[i], &self.slots, &limits);
            for slot in &p.refused {
                self.slots[*slot].serial = 0;
                self.free.push(*slot);
                self.outstanding -= 1;
                out.rejected += 1;
            }
            plans.push(p);
        }
        plans
    }

    /// Applies a rank's plan at the step's end: prompt tokens and decodes
    /// into the KV cache, first tokens, finished requests. Returns the sum
    /// of the decode tokens' gaps since each one's previous token.
    fn finish_step(
        &mut self,
        i: usize,
        p: Plan,
        (end, (overhead, wait)): (f64, (f64, f64)),
        out: &mut StepOut,
    ) -> f64 {
        let rank = &mut self.ranks[i];
        rank.kv_used += p.prefill_tokens + p.decodes + p.resident_tokens;
        // A joining request's previous token is its first, at the step's start.
        let start = end - out.duration;
        rank.fresh.0 += p.joining.len() as u64;
        rank.fresh.1 += start * p.joining.len() as f64;
        let mut gaps = 0.0;
        if p.decodes > 0 {
            let (n, first_sum) = std::mem::take(&mut rank.fresh);
            gaps = (end - rank.last_decode) * p.decodes.saturating_sub(n) as f64
                + (end * n as f64 - first_sum);
            rank.counter += 1;
            rank.last_decode = end;
            out.decode_tokens += p.decodes;
            while let Some(Reverse((at, slot, serial))) = rank.finishing.peek().copied() {
                if at > rank.counter {
                    break;
                }
                rank.finishing.pop();
                let r = &mut self.slots[slot];
                if r.serial != serial {
                    continue;
                }
                r.serial = 0;
                rank.leave(r);
                out.events.push(Event::Finished(*r));
                self.free.push(slot);
                self.outstanding -= 1;
            }
        }
        for (slot, tokens) in p.joining {
            self.join_resident(i, slot, tokens, (start, overhead, wait), out);
        }
        for (slot, tokens) in p.prefilled {
            let r = &mut self.slots[slot];
            if r.first.is_none() {
                let wait = match r.arrived {
                    Arrived::BetweenSteps => 0.0,
                    Arrived::MidStep(waited) => (wait - waited).max(0.0),
                };
                r.first = Some(First {
                    produced: end,
                    seen: end + overhead + wait,
                });
                r.generated = 1;
                out.events.push(Event::FirstToken(*r));
            }
            r.held = tokens;
            if self.seat(i, slot, out) {
                let rank = &mut self.ranks[i];
                rank.fresh.0 += 1;
                rank.fresh.1 += end;
            }
        }
        self.ranks[i].prune_order(&self.slots);
        gaps
    }

    /// A request holding `held` tokens of KV on rank `i` after its prefill
    /// (here or on a prefill worker) joins the decode batch, or, when that
    /// step already gave it its last token, finishes and frees its slot and
    /// KV. Whether it joined.
    fn seat(&mut self, i: usize, slot: usize, out: &mut StepOut) -> bool {
        let rank = &mut self.ranks[i];
        let r = &mut self.slots[slot];
        r.joined = rank.counter;
        if r.generated >= r.osl {
            rank.kv_used -= r.held;
            r.serial = 0;
            out.events.push(Event::Finished(*r));
            self.free.push(slot);
            self.outstanding -= 1;
            return false;
        }
        rank.join(r);
        rank.finishing.push(Reverse((
            rank.counter + r.osl - r.generated,
            slot,
            r.serial,
        )));
        rank.order
            .push((r.arrival.max(0.0).to_bits(), slot, r.serial));
        true
    }

    /// A request whose KV cache and first token came from a prefill worker
    /// joins rank `i` at the start of a step (`start`) and decodes its second
    /// token in it. Its client sees the first token when it joins, or the
    /// serving layer's arrival wait after its KV arrived (`wait`, of which the
    /// step in progress then is already spent), and the request overhead.
    fn join_resident(
        &mut self,
        i: usize,
        slot: usize,
        tokens: u64,
        (start, overhead, wait): (f64, f64, f64),
        out: &mut StepOut,
    ) {
        let r = &mut self.slots[slot];
        let waited = match r.arrived {
            Arrived::BetweenSteps => wait,
            Arrived::MidStep(waited) => waited,
        };
        r.first = Some(First {
            produced: start,
            seen: start + overhead + (wait - waited).max(0.0),
        });
        out.events.push(Event::FirstToken(*r));
        r.generated = 2.min(r.osl);
        r.held = tokens + 1;
        self.seat(i, slot, out);
    }

    /// When the decodes of the next step would overflow a rank's KV cache,
    /// its latest-arrived running requests go back to the queue, to be
    /// recomputed (prompt and output so far) when there is room again.
    fn preempt_if_full(&mut self, i: usize) {
        let kv = self.limits.kv_tokens;
        while self.ranks[i].kv_used + self.ranks[i].running > kv && self.ranks[i].running > 1 {
            let rank = &mut self.ranks[i];
            let Some((_, slot, serial)) = rank.order.pop() else {
                break;
            };
            let r = &mut self.slots[slot];
            if r.serial != serial {
                continue;
            }
            rank.leave(r);
            r.generated += rank.counter - r.joined;
            self.serials += 1;
            r.serial = self.serials;
            rank.waiting
                .push_front((slot, r.isl + r.generated, r.isl + r.generated));
            self.preemptions += 1;
        }
    }
}

impl Rank {
    fn join(&mut self, r: &Req) {
        self.running += 1;
        self.left_at_join += r.osl - r.generated;
        self.joined_sum += r.joined;
    }

    /// Takes a running request out, giving back the KV it holds.
    fn leave(&mut self, r: &Req) {
        self.running -= 1;
        self.left_at_join -= r.osl - r.generated;
        self.joined_sum -= r.joined;
        let holds = r.held + (self.counter - r.joined);
        debug_assert!(
            holds <= self.kv_used,
            "a request holds more KV than its rank"
        );
        self.kv_used -= holds.min(self.kv_used);
    }

    /// Output tokens the running requests still have to generate.
    fn output_left(&self) -> u64 {
        let done = self.running * self.counter - self.joined_sum;
        self.left_at_join.saturating_sub(done)
    }

    /// Drops entries of requests no longer running from the preemption
    /// heap once they outnumber the running ones (memory stays flat).
    fn prune_order(&mut self, slots: &[Req]) {
        if self.order.len() as u64 > 2 * self.running + 64 {
            self.order
                .retain(|(_, s, serial)| slots[*s].serial == *serial);
        }
    }
}

/// What one rank's next step carries.
#[derive(Debug, Default)]
struct Plan {
    decodes: u64,
    prefill_tokens: u64,
    /// Requests whose prompt (or recompute) completes in the step, with the tokens it took.
    prefilled: Vec<(usize, u64)>,
    /// Requests refused: their prompt alone exceeds the rank's KV cache.
    refused: Vec<usize>,
    /// KV tokens of requests joining with their cache already computed, and
    /// of prompts starting with a cached prefix.
    resident_tokens: u64,
    /// Requests joining with their cache (and first token) from a prefill
    /// worker, decoding in this step (counted in `decodes`), with their
    /// prompt's tokens.
    joining: Vec<(usize, u64)>,
}

/// Fills a rank's next step by its scheduler's policy.
fn plan(rank: &mut Rank, slots: &[Req], l: &RankLimits) -> Plan {
    let mut p = Plan::default();
    while let Some(&(slot, _, tokens)) = rank.waiting.front() {
        let r = &slots[slot];
        let own = match l.policy {
            Policy::MixedWhole => r.osl.saturating_sub(r.generated.max(1)),
            Policy::PrefillFirst | Policy::MixedChunked => 0,
        };
        if tokens + own <= l.kv_tokens {
            break;
        }
        rank.waiting.pop_front();
        p.refused.push(slot);
    }
    let prompt_next = rank.waiting.front().is_some_and(|w| w.1 > 0);
    let has_prompts =
        !rank.prefilling.is_empty() || (prompt_next && admissible(rank, slots, &p, l));
    p.decodes = match l.policy {
        Policy::PrefillFirst if has_prompts => 0,
        Policy::PrefillFirst | Policy::MixedChunked | Policy::MixedWhole => rank.running,
    };
    let mut left = l.budget.saturating_sub(p.decodes);
    let whole = l.policy == Policy::MixedWhole;
    loop {
        if rank.prefilling.is_empty() {
            if !admissible(rank, slots, &p, l) {
                break;
            }
            let (slot, compute, held) = rank.waiting.pop_front().expect("admissible");
            if compute == 0 {
                // Its KV came from a prefill worker with its first token: it
                // joins the decodes at once, its second token in this step.
                p.resident_tokens += held;
                p.decodes += 1;
                left = left.saturating_sub(1);
                p.joining.push((slot, held));
                continue;
            }
            // A prefix-cache hit holds its cached tokens from the start.
            p.resident_tokens += held - compute;
            rank.prefilling.push_back((slot, compute, held));
        }
        if left == 0 {
            break;
        }
        let (slot, tokens, all) = rank.prefilling[0];
        let take = if whole && tokens > left {
            // A whole prompt beyond what the budget has left: the first of a
            // step goes beside the decodes (the engine cannot split it), later ones wait.
            if p.prefill_tokens > 0 {
                break;
            }
            tokens
        } else {
            tokens.min(left)
        };
        p.prefill_tokens += take;
        left = left.saturating_sub(take);
        if take == tokens {
            rank.prefilling.pop_front();
            p.prefilled.push((slot, all));
        } else {
            rank.prefilling[0].1 -= take;
        }
    }
    p
}

/// Requests a rank runs once `p` is planned: those decoding, those
/// prefilling, and those whose prompt completes or that join in `p` (the
/// estimate's running requests per rank).
fn started(rank: &Rank, p: &Plan) -> u64 {
    rank.running + rank.prefilling.len() as u64 + p.prefilled.len() as u64 + p.joining.len() as u64
}

/// Whether the next waiting request may start: a running slot under the cap, and KV room for its
/// prompt and this step's decodes beside what the scheduler keeps for the
/// running requests' output (SGLang a share, TensorRT-LLM's default
/// GUARANTEED_NO_EVICT all of it and the new request's own, vLLM none: it
/// preempts instead).
fn admissible(rank: &Rank, slots: &[Req], p: &Plan, l: &RankLimits) -> bool {
    let Some((slot, _, tokens)) = rank.waiting.front() else {
        return false;
    };
    let r = &slots[*slot];
    let started = started(rank, p);
    // A prefill-first step runs no decodes, so the room it leaves must hold
    // the next step's: one token for every running request and this one
    // (without it a recomputed request is preempted again before it
    // decodes, and the rank never advances).
    let (reserve, next_decodes) = match l.policy {
        Policy::PrefillFirst => (
            (rank.output_left() as f64 * l.decode_reserve.value()).ceil() as u64,
            started + 1,
        ),
        Policy::MixedWhole => (
            rank.output_left() + r.osl.saturating_sub(r.generated.max(1)),
            0,
        ),
        Policy::MixedChunked => (0, 0),
    };
    started < l.max_running
        && rank.kv_used
            + p.decodes
            + next_decodes
            + p.prefill_tokens
            + p.resident_tokens
            + tokens
            + reserve
            <= l.kv_tokens
}

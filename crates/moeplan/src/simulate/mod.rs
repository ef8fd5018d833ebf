//! `moeplan simulate`: latency percentiles and goodput under real traffic.
//!
//! A discrete-event simulation at the granularity of engine steps: requests
//! arrive (`traffic.rs`: Poisson, gamma, a closed loop of clients, or a
//! trace), a router sends each to a replica, and each replica's engine
//! (`engine.rs`) runs its scheduler step by step. A step lasts what the
//! op-level cost model says (`serving::steps`, the same as `estimate`),
//! cached by step shape so a run of 100,000 requests costs a few thousand
//! step evaluations. Statistics stream into log-spaced histograms
//! (`stats.rs`): memory stays flat in the number of requests.

pub mod engine;
pub mod prefix;
pub mod random;
pub mod stats;
pub mod traffic;

use crate::calibration::ServingParams;
use crate::serving::closed_loop::{ArrivalWait, Policy, Shape};
use crate::serving::disagg::{self, DisaggInput};
use crate::serving::steps::{StepKind, Stepper};
use crate::serving::EstimateInput;
use crate::units::{Fraction, Seconds};
use engine::{Event, RankLimits, Replica, Req, StepTime};
use serde::Serialize;
use stats::{Histogram, Summary};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
pub use traffic::{Arrivals, Lengths, TraceRequest};

/// How a request is sent to a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Router {
    /// In turn.
    RoundRobin,
    /// To the replica with the fewest requests in it.
    LeastLoaded,
    /// To the replica with the emptiest KV cache.
    LeastKv,
}

impl Router {
    /// Every router.
    pub const ALL: [Router; 3] = [Router::RoundRobin, Router::LeastLoaded, Router::LeastKv];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Router::RoundRobin => "round-robin",
            Router::LeastLoaded => "least-loaded",
            Router::LeastKv => "least-kv",
        }
    }
}

/// Service levels a request must meet to count in the goodput.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Levels {
    /// Time to first token.
    pub ttft: Option<Seconds>,
    /// Time per output token.
    pub tpot: Option<Seconds>,
    /// End-to-end latency.
    pub e2e: Option<Seconds>,
}

/// The traffic of a simulation and when it stops.
#[derive(Clone, Debug, PartialEq)]
pub struct Traffic {
    /// How requests arrive.
    pub arrivals: Arrivals,
    /// Prompt lengths.
    pub isl: Lengths,
    /// Output lengths.
    pub osl: Lengths,
    /// Requests to send (a trace: at most its own).
    pub requests: u64,
    /// Stop sending after this many seconds, if given.
    pub duration: Option<f64>,
    /// Seed of every random draw.
    pub seed: u64,
    /// The first requests sent that the latency statistics and the goodput
    /// leave out (a benchmark's warm-up); they still run.
    pub warmup: u64,
}

/// What the simulator runs, independent of how steps are costed.
#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    /// Replicas behind the router.
    pub replicas: u32,
    /// Attention-DP ranks of a replica.
    pub dp: u32,
    /// Each rank's scheduler and limits.
    pub limits: RankLimits,
    /// The router.
    pub router: Router,
    /// The traffic.
    pub traffic: Traffic,
    /// Service levels of the goodput.
    pub levels: Levels,
    /// Disaggregated: the decode pool (the replicas above are then the
    /// prefill pool).
    pub decode: Option<DecodeStage>,
}

/// The decode pool of a disaggregated deployment: a request leaves its
/// prefill worker at its first token and joins a decode worker's batch once
/// its KV cache has crossed (at the next step, when a slot is free),
/// decoding its second token in that step; its client sees the first token
/// when it joins or, if later, the serving layer's arrival wait after its KV
/// landed (none in a closed loop's first round).
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeStage {
    /// Decode workers.
    pub replicas: u32,
    /// Attention-DP ranks of a worker.
    pub dp: u32,
    /// Each rank's limits.
    pub limits: RankLimits,
    /// The KV transfer's fixed latency.
    pub(crate) transfer_latency: Seconds,
    /// Its time per prompt token.
    pub(crate) transfer_per_token: Seconds,
}

/// Why a simulation stopped before its traffic ended.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Stopped {
    /// What happened.
    pub reason: String,
    /// Requests per second the deployment completed while it could.
    pub sustainable_requests_per_s: f64,
}

/// One sample of the state over time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Sample {
    /// Seconds from the first arrival.
    pub t: f64,
    /// Requests waiting to start, over every replica.
    pub queue: u64,
    /// Fraction of the KV cache in use, over every replica.
    pub kv_usage: f64,
}

/// What a simulation measured.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SimResult {
    /// Time to first token (ms).
    pub ttft_ms: Summary,
    /// Time per output token after the first, per request (ms).
    pub tpot_ms: Summary,
    /// Gap between consecutive tokens of a request (ms).
    pub itl_ms: Summary,
    /// End-to-end latency (ms).
    pub e2e_ms: Summary,
    /// Output tokens per second over the run.
    pub output_tokens_per_s: f64,
    /// Requests per second that met every service level.
    pub goodput_requests_per_s: f64,
    /// Requests completed.
    pub requests: u64,
    /// Requests sent.
    pub sent: u64,
    /// Requests refused because their prompt alone exceeds a rank's KV cache.
    pub rejected: u64,
    /// Running requests sent back to the queue when the KV cache ran out.
    pub preemptions: u64,
    /// Seconds from the first arrival to the last completion.
    pub duration_s: f64,
    /// The longest queue seen.
    pub max_queue: u64,
    /// Distinct step shapes costed by the cost model.
    pub step_shapes: u64,
    /// Steps run, over every replica.
    pub steps: u64,
    /// Set when the queue grew without bound.
    pub stopped: Option<Stopped>,
    /// Share of the prompt tokens of the trace's requests with `hash_ids`
    /// served from their replica's prefix cache (absent without `hash_ids`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_cache_hit_rate: Option<f64>,
    /// The state over time (at most 1,000 samples).
    pub timeline: Vec<Sample>,
}

/// Steps of one replica priced by the op-level cost model and the
/// profile's serving layer, cached by (rounded) shape.
pub(crate) struct ModelSteps<'a> {
    stepper: Stepper<'a>,
    serving: ServingParams,
    dp: u32,
    /// Share of prompt tokens served from the prefix cache.
    cache_hit_rate: Fraction,
    cache: HashMap<(u64, u64, u64), f64>,
}

impl<'a> ModelSteps<'a> {
    /// Steps of `inp`'s replica (every attention-DP rank busy).
    pub(crate) fn new(inp: &'a EstimateInput<'a>) -> ModelSteps<'a> {
        ModelSteps {
            stepper: Stepper::new(inp, inp.layout.dp as f64),
            serving: inp.calibration.serving,
            dp: inp.layout.dp,
            cache_hit_rate: inp.workload.cache_hit_rate,
            cache: HashMap::new(),
        }
    }

    /// These steps under `traffic`: a trace with block ids (`hash_ids`) has
    /// its prefix cache simulated request by request (`prefix.rs`), which
    /// replaces the workload's average hit rate. (The computed tokens'
    /// attention over a cached prefix is priced as over none.)
    pub(crate) fn with_prefixes(mut self, traffic: &Traffic) -> ModelSteps<'a> {
        if let Arrivals::Trace(t) = &traffic.arrivals {
            if t.iter().any(|r| !r.hash_ids.is_empty()) {
                self.cache_hit_rate = crate::units::Fraction::ZERO;
            }
        }
        self
    }

    /// Shapes priced so far.
    pub(crate) fn shapes(&self) -> u64 {
        self.cache.len() as u64
    }
}

/// Rounds a count up to a grid that keeps the relative step error under ~3%.
fn bucket(n: u64, fine: u64) -> u64 {
    let grid = match n {
        0..=32 => 1,
        33..=256 => fine.max(1),
        _ => (n / 64).next_power_of_two().max(fine),
    };
    n.div_ceil(grid) * grid
}

impl StepTime for ModelSteps<'_> {
    fn time(&mut self, decodes: u64, prefill_tokens: u64, peer_tokens: u64) -> f64 {
        let key = (
            bucket(decodes, 4),
            bucket(prefill_tokens, 32),
            bucket(peer_tokens, 32),
        );
        let (stepper, serving, dp) = (&self.stepper, &self.serving, self.dp);
        let computed = self.cache_hit_rate.complement().value();
        *self.cache.entry(key).or_insert_with(|| {
            // Prompt tokens the step computes: with prefix-cache hits a
            // scheduled prompt token costs (1 − hit rate) of one (its budget
            // still counts the whole prompt, a conservative reading).
            let (d, p) = (key.0 as f64, key.1 as f64 * computed);
            let peers = (dp > 1).then_some(key.2 as f64);
            let shape = |decodes, prefill_tokens| Shape {
                decodes,
                prefill_tokens,
            };
            let mut decode =
                stepper.step_with_peers(StepKind::Decode, shape(d, 0.0), Seconds::ZERO, peers);
            let kind = match (d > 0.0, p > 0.0) {
                (true, false) => {
                    decode.decode_part = decode.kernels;
                    return decode.time(serving).value();
                }
                (false, _) => StepKind::PrefillBatch,
                (true, true) => StepKind::Prefill,
            };
            let part = if d > 0.0 {
                decode.kernels
            } else {
                Seconds::ZERO
            };
            stepper
                .step_with_peers(kind, shape(d, p), part, peers)
                .time(serving)
                .value()
        })
    }
}

/// Simulates `setup` with steps priced by `costs[0]` (the replicas, or the
/// prefill pool) and `costs[1]` (the decode pool, when there is one).
pub fn run(setup: &Setup, costs: &mut [&mut dyn StepTime]) -> SimResult {
    run_observed(setup, costs, &mut |_| {})
}

/// How far a simulation has come (for a progress display: the library
/// never prints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Requests sent so far.
    pub sent: u64,
    /// Requests completed so far.
    pub completed: u64,
    /// Requests the traffic sends at most.
    pub requests: u64,
}

/// Events between two calls of a progress observer.
const OBSERVE_EVERY: u64 = 4096;

/// `run`, telling `observe` how far it has come every few thousand events
/// and once at the end.
pub(crate) fn run_observed(
    setup: &Setup,
    costs: &mut [&mut dyn StepTime],
    observe: &mut dyn FnMut(Progress),
) -> SimResult {
    let mut sim = Sim::new(setup);
    sim.start();
    let mut events = 0u64;
    while sim.advance(costs) {
        events += 1;
        if events % OBSERVE_EVERY == 0 {
            observe(sim.progress());
        }
    }
    observe(sim.progress());
    sim.result()
}

/// The share of its first cycle over which a closed loop of a mixed
/// scheduler spreads its clients' second requests: the first clients back
/// run beside fewer requests, so their second cycle is shorter, and a
/// spread over the whole cycle would let them lap the last ones.
const SPREAD: f64 = 0.75;

/// The share of a step a closed-loop client of a mixed scheduler waits at
/// most after each request but its first: enough to split, over a few
/// rounds, requests that met in a step; small enough not to make neighbours
/// in a dense stream meet (a whole step made the steady TTFT 17% longer at
/// 128 clients of 1,000 + 200 tokens, where most steps carry a prompt).
const JITTER: f64 = 0.25;

/// Non-negative seconds as an ordered key (the bits of a non-negative f64 sort like it).
fn key(t: f64) -> u64 {
    t.max(0.0).to_bits()
}

/// The state of a running simulation.
struct Sim<'s> {
    setup: &'s Setup,
    replicas: Vec<Replica>,
    clocks: Vec<f64>,
    busy: BinaryHeap<Reverse<(u64, usize)>>,
    source: traffic::Source,
    open: Option<(f64, u64, u64, usize)>,
    returning: BinaryHeap<Reverse<(u64, u32)>>,
    /// Requests whose KV cache is crossing to the decode pool: (arrival there, index in `transit`).
    transfers: BinaryHeap<Reverse<(u64, usize)>>,
    transit: Vec<Req>,
    transit_free: Vec<usize>,
    /// Index of the first decode worker in `replicas` (their count when none).
    first_decode: usize,
    /// Requests the replicas run at once, at the first pool's limits (the
    /// bound an unbounded queue passes).
    slots: u64,
    sent: u64,
    next_replica: usize,
    /// The prefix cache of each replica of the first pool.
    prefixes: Vec<prefix::PrefixCache>,
    /// Closed loop: requests each client has completed (its pauses' draws).
    rounds: Vec<u32>,
    /// The duration of the step being recorded.
    last_step: f64,
    /// Closed loop: when the first request came back to its client, and
    /// how long it took (the first cycle).
    first_cycle: Option<(f64, f64)>,
    stats: Stats,
}

/// Streaming statistics.
#[derive(Default)]
struct Stats {
    ttft: Histogram,
    tpot: Histogram,
    itl: Histogram,
    e2e: Histogram,
    done: u64,
    good: u64,
    rejected: u64,
    output_tokens: u64,
    first: Option<f64>,
    /// Time and count of the first completion.
    first_done: Option<(f64, u64)>,
    last: f64,
    max_queue: u64,
    steps: u64,
    stopped: Option<Stopped>,
    timeline: Vec<Sample>,
    sample_every: f64,
    /// Prompt tokens of requests with block ids, and of those the cached ones.
    prefix: Option<(u64, u64)>,
}

impl<'s> Sim<'s> {
    fn new(setup: &'s Setup) -> Sim<'s> {
        let t = &setup.traffic;
        let source = traffic::Source::new(t.arrivals.clone(), t.isl.clone(), t.osl.clone(), t.seed);
        let n = setup.replicas.max(1) as usize;
        let mut replicas: Vec<Replica> = (0..n)
            .map(|_| Replica::new(setup.dp, setup.limits))
            .collect();
        if let Some(d) = &setup.decode {
            replicas.extend((0..d.replicas.max(1)).map(|_| Replica::new(d.dp, d.limits)));
        }
        let all = replicas.len();
        Sim {
            setup,
            replicas,
            clocks: vec![0.0; all],
            transfers: BinaryHeap::new(),
            transit: Vec::new(),
            transit_free: Vec::new(),
            first_decode: n,
            slots: {
                let (l, t) = (&setup.limits, &setup.traffic);
                let per_request = (t.isl.mean() + t.osl.mean()).max(1.0) as u64;
                all as u64 * setup.dp as u64 * l.max_running.min(l.kv_tokens / per_request).max(1)
            },
            busy: BinaryHeap::new(),
            source,
            open: None,
            returning: BinaryHeap::new(),
            sent: 0,
            next_replica: 0,
            prefixes: (0..n)
                .map(|_| {
                    let tokens = setup
                        .limits
                        .kv_tokens
                        .saturating_mul(u64::from(setup.dp.max(1)));
                    prefix::PrefixCache::new((tokens / prefix::BLOCK_TOKENS) as usize)
                })
                .collect(),
            rounds: Vec::new(),
            last_step: 0.0,
            first_cycle: None,
            stats: Stats {
                sample_every: 0.01,
                ..Stats::default()
            },
        }
    }

    /// The first arrivals: the open loop's first, or every client at time 0.
    fn start(&mut self) {
        if self.setup.traffic.requests == 0 {
            return;
        }
        match self.setup.traffic.arrivals {
            Arrivals::Closed { clients } => {
                for c in 0..clients.min(self.setup.traffic.requests) {
                    self.returning.push(Reverse((key(0.0), c as u32)));
                }
            }
            Arrivals::Poisson { .. } | Arrivals::Gamma { .. } | Arrivals::Trace(_) => {
                self.open = self.source.next_arrival();
            }
        }
    }

    /// The next arrival's time, if any is due to be sent.
    fn next_arrival(&self) -> Option<f64> {
        let open = self.open.map(|(t, _, _, _)| t);
        let back = self
            .returning
            .peek()
            .map(|Reverse((t, _))| f64::from_bits(*t));
        match (open, back) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles the earliest event: an arrival, a KV cache reaching the
    /// decode pool, or one replica's step. False when nothing is left.
    fn advance(&mut self, costs: &mut [&mut dyn StepTime]) -> bool {
        if self.stats.stopped.is_some() {
            return false;
        }
        let arrival = self.next_arrival().map(|t| (t, 0));
        let transfer = self
            .transfers
            .peek()
            .map(|Reverse((t, _))| (f64::from_bits(*t), 1));
        let step = self
            .busy
            .peek()
            .map(|Reverse((t, i))| (f64::from_bits(*t), 2 + *i));
        let next = [arrival, transfer, step]
            .into_iter()
            .flatten()
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        match next {
            None => return false,
            Some((_, 0)) => self.arrive(),
            Some((_, 1)) => self.deliver(),
            Some((now, k)) => {
                self.busy.pop();
                let i = k - 2;
                let pool = usize::from(i >= self.first_decode).min(costs.len() - 1);
                self.step(i, now, &mut *costs[pool]);
            }
        }
        true
    }

    /// A KV cache reaches the decode pool: its request joins a decode worker.
    fn deliver(&mut self) {
        let Reverse((t, k)) = self.transfers.pop().expect("a transfer");
        let t = f64::from_bits(t);
        let r = self.transit[k];
        self.transit_free.push(k);
        let i = self.route(self.first_decode..self.replicas.len());
        let idle = !self.replicas[i].busy();
        // It waits for the step in progress, if any, before it joins.
        let r = match r.arrived {
            engine::Arrived::BetweenSteps => r,
            engine::Arrived::MidStep(_) => r.reaching(
                r.phase,
                engine::Arrived::MidStep(if idle {
                    0.0
                } else {
                    (self.clocks[i] - t).max(0.0)
                }),
            ),
        };
        self.replicas[i].admit_resident(r);
        if idle {
            self.clocks[i] = self.clocks[i].max(t);
            self.busy.push(Reverse((key(self.clocks[i]), i)));
        }
    }

    /// Sends the earliest arrival to a replica.
    fn arrive(&mut self) {
        let open = self.open.map(|(t, _, _, _)| t);
        let back = self
            .returning
            .peek()
            .map(|Reverse((t, _))| f64::from_bits(*t));
        let (t, isl, osl, client, index) = match (open, back) {
            (Some(a), b) if b.is_none_or(|b| a <= b) => {
                let (t, isl, osl, index) = self.open.take().expect("an open arrival");
                let traffic = &self.setup.traffic;
                let more = self.sent + 1 < traffic.requests;
                self.open = self
                    .source
                    .next_arrival()
                    .filter(|(t, _, _, _)| more && traffic.duration.is_none_or(|d| *t <= d));
                (t, isl, osl, None, Some(index))
            }
            _ => {
                let Reverse((t, c)) = self.returning.pop().expect("a returning client");
                let (isl, osl) = self.source.lengths();
                (f64::from_bits(t), isl, osl, Some(c), None)
            }
        };
        let phase = if self.sent < self.setup.traffic.warmup {
            engine::Phase::WarmUp
        } else {
            engine::Phase::Measured
        };
        self.sent += 1;
        self.stats.first.get_or_insert(t);
        let i = self.route(0..self.first_decode);
        let idle = !self.replicas[i].busy();
        let arrived = if !idle && self.clocks[i] > t {
            engine::Arrived::MidStep(self.clocks[i] - t)
        } else {
            engine::Arrived::BetweenSteps
        };
        let req = match self.setup.decode {
            // Disaggregated: the prefill worker stops at the first token.
            Some(_) => {
                let mut r = Req::new(t, (isl, 1), client);
                r.rest = osl;
                r
            }
            None => Req::new(t, (isl, osl), client),
        };
        let req = req.reaching(phase, arrived);
        let cached = index.map_or(0, |k| self.cached_prefix(i, k, isl));
        self.replicas[i].admit(req, cached);
        if idle {
            self.clocks[i] = self.clocks[i].max(t);
            self.busy.push(Reverse((key(self.clocks[i]), i)));
        }
        self.watch_queue(t);
    }

    /// Prompt tokens of the trace's `k`-th request, of `isl` tokens, that
    /// replica `i`'s prefix cache holds (at least one token is computed).
    fn cached_prefix(&mut self, i: usize, k: usize, isl: u64) -> u64 {
        let ids = self.source.hash_ids(k);
        if ids.is_empty() {
            return 0;
        }
        let blocks = self.prefixes[i].lookup(ids) as u64;
        let cached = (blocks * prefix::BLOCK_TOKENS).min(isl.saturating_sub(1));
        let (prompt, hit) = self.stats.prefix.get_or_insert((0, 0));
        *prompt += isl;
        *hit += cached;
        cached
    }

    /// The replica among `pool` the router picks.
    fn route(&mut self, pool: std::ops::Range<usize>) -> usize {
        let start = pool.start;
        match self.setup.router {
            Router::RoundRobin => {
                self.next_replica = (self.next_replica + 1) % pool.len().max(1);
                start + self.next_replica
            }
            Router::LeastLoaded => pool
                .min_by_key(|i| self.replicas[*i].outstanding)
                .unwrap_or(start),
            Router::LeastKv => pool
                .min_by(|a, b| {
                    self.replicas[*a]
                        .kv_fraction()
                        .total_cmp(&self.replicas[*b].kv_fraction())
                })
                .unwrap_or(start),
        }
    }

    /// Samples the state and stops a run whose queue grows without bound.
    fn watch_queue(&mut self, now: f64) {
        let queue: u64 = self.replicas.iter().map(Replica::waiting).sum();
        let st = &mut self.stats;
        st.max_queue = st.max_queue.max(queue);
        let t = now - st.first.unwrap_or(0.0);
        if st
            .timeline
            .last()
            .is_none_or(|s| t >= s.t + st.sample_every)
        {
            let kv = self.replicas.iter().map(Replica::kv_fraction).sum::<f64>()
                / self.replicas.len() as f64;
            st.timeline.push(Sample {
                t,
                queue,
                kv_usage: kv,
            });
            if st.timeline.len() >= 1000 {
                st.timeline = st.timeline.iter().step_by(2).copied().collect();
                st.sample_every *= 2.0;
            }
        }
        let slots = self.slots;
        // A queue four times what runs at once, holding a quarter of all
        // sent so far, grows without bound; stop once enough requests
        // completed since the first one to measure the rate served. A
        // closed loop's queue is bounded by its clients: it never overflows.
        let Some((t0, n0)) = st.first_done else {
            return;
        };
        let closed = match self.setup.traffic.arrivals {
            Arrivals::Closed { .. } => true,
            Arrivals::Poisson { .. } | Arrivals::Gamma { .. } | Arrivals::Trace(_) => false,
        };
        if closed {
            return;
        }
        let unbounded = queue > 4 * slots + 100 && queue * 4 > self.sent;
        if unbounded && st.done >= n0 + 100 && st.stopped.is_none() {
            st.stopped = Some(Stopped {
                reason: format!("the queue passed {queue} requests and keeps growing: the traffic exceeds what the deployment serves"),
                sustainable_requests_per_s: (st.done - n0) as f64 / (st.last - t0).max(1e-9),
            });
        }
    }

    /// Runs one step of replica `i` at `now`.
    fn step(&mut self, i: usize, now: f64, cost: &mut dyn StepTime) {
        let out = self.replicas[i].step(now, cost);
        let end = now + out.duration;
        self.last_step = out.duration;
        self.clocks[i] = end;
        self.stats.steps += 1;
        self.stats.itl.add(out.gap, out.decode_tokens as f64);
        let stuck = out.duration == 0.0 && out.events.is_empty() && out.rejected == 0;
        let prefill_pool = self.setup.decode.is_some() && i < self.first_decode;
        for e in out.events {
            match (prefill_pool, e) {
                // The client sees the first token from the decode worker.
                (true, Event::FirstToken(_)) => {}
                (true, Event::Finished(r)) => self.hand_off(r, end),
                (false, e) => self.record(e, end),
            }
        }
        self.stats.rejected += out.rejected;
        if stuck {
            // Nothing can run and nothing will become ready: refuse the rest.
            self.stats.rejected += self.replicas[i].refuse_waiting();
        }
        if self.replicas[i].busy() {
            self.busy.push(Reverse((key(end), i)));
        }
    }

    /// A prompt done on a prefill worker: its KV cache crosses to the decode pool.
    fn hand_off(&mut self, r: Req, at: f64) {
        let Some(d) = &self.setup.decode else {
            return;
        };
        let arrives = at + (d.transfer_latency + d.transfer_per_token * r.isl as f64).value();
        // A request sent at the run's start (the closed loop's first round,
        // every prompt at once) joins between steps, without the arrival
        // wait, as in the estimate's first round; the others find a decode
        // step running (`deliver` says how much of it is left).
        let arrived = if r.arrival <= self.stats.first.unwrap_or(0.0) {
            engine::Arrived::BetweenSteps
        } else {
            engine::Arrived::MidStep(0.0)
        };
        let copy = Req::new(r.arrival, (r.isl, r.rest), r.client).reaching(r.phase, arrived);
        let k = match self.transit_free.pop() {
            Some(k) => {
                self.transit[k] = copy;
                k
            }
            None => {
                self.transit.push(copy);
                self.transit.len() - 1
            }
        };
        self.transfers.push(Reverse((key(arrives), k)));
    }

    /// Counts a request's first or last token.
    fn record(&mut self, e: Event, at: f64) {
        let st = &mut self.stats;
        match e {
            Event::FirstToken(r) => {
                if let (Some(f), engine::Phase::Measured) = (r.first, r.phase) {
                    st.ttft.add(f.seen - r.arrival, 1.0);
                }
            }

            Event::Finished(r) => {
                let first = r.first.expect("a request finishes after its first token");
                let e2e = at + self.setup.limits.request_overhead.value() - r.arrival;
                let tpot = if r.osl > 1 {
                    (at - first.produced) / (r.osl - 1) as f64
                } else {
                    0.0
                };
                let measured = match r.phase {
                    engine::Phase::WarmUp => 0.0,
                    engine::Phase::Measured => 1.0,
                };
                st.e2e.add(e2e, measured);
                if r.osl > 1 {
                    st.tpot.add(tpot, measured);
                }
                st.done += 1;
                st.first_done.get_or_insert((at, st.done));
                st.output_tokens += r.osl;
                st.last = st.last.max(at);
                let lv = &self.setup.levels;
                let ok = |limit: Option<Seconds>, x: f64| limit.is_none_or(|l| x <= l.value());
                let met =
                    ok(lv.ttft, first.seen - r.arrival) && ok(lv.tpot, tpot) && ok(lv.e2e, e2e);
                if met && measured > 0.0 {
                    st.good += 1;
                }
                let t = &self.setup.traffic;
                let within = t.duration.is_none_or(|d| at - st.first.unwrap_or(0.0) <= d);
                if let Some(c) = r.client.filter(|_| within) {
                    if self.sent + (self.returning.len() as u64) < t.requests {
                        let back = r.arrival + e2e;
                        self.first_cycle.get_or_insert((back, e2e));
                        let next = back + self.pause(c, back);
                        self.returning.push(Reverse((key(next), c)));
                    }
                }
            }
        }
    }

    /// The pause before closed-loop client `c` sends its next request,
    /// after one that took `e2e` seconds and ended with a step of `step`.
    ///
    /// Benchmark clients start together, so the first round's prompts queue
    /// behind each other. After it, mixed schedulers (vLLM, TensorRT-LLM)
    /// see the requests arrive as a stream, one prompt (per attention-DP
    /// rank) per step that carries one (`serving::closed_loop`, fitted to the
    /// measured runs), while prefill-first rounds stay grouped. Left alone,
    /// simulated requests of equal lengths keep the first round's groups
    /// (those prefilled in one step finish in one step and come back
    /// together), and requests that meet in a step merge for good. So a
    /// client of a mixed scheduler waits, after its first request, until its
    /// slot of an even spread over `SPREAD` of the first cycle, and after each
    /// later one a uniform share of `JITTER` of a step (the client's jitter,
    /// which keeps them spread). The clients of one position on every
    /// attention-DP rank draw alike, so the ranks carry their prompts in the
    /// same steps, as the estimate's steps do.
    fn pause(&mut self, c: u32, back: f64) -> f64 {
        match self.setup.limits.policy {
            Policy::PrefillFirst => return 0.0,
            Policy::MixedChunked | Policy::MixedWhole => {}
        }
        let i = c as usize;
        if self.rounds.len() <= i {
            self.rounds.resize(i + 1, 0);
        }
        let k = self.rounds[i];
        self.rounds[i] += 1;
        let dp = self.setup.dp.max(1);
        let group = c / dp;
        match k {
            0 => {
                let groups = match self.setup.traffic.arrivals {
                    Arrivals::Closed { clients } => clients.div_ceil(u64::from(dp)).max(1),
                    Arrivals::Poisson { .. } | Arrivals::Gamma { .. } | Arrivals::Trace(_) => 1,
                };
                let (t0, cycle) = self.first_cycle.unwrap_or((back, 0.0));
                let at = t0 + SPREAD * (f64::from(group) + 0.5) / groups as f64 * cycle;
                (at - back).max(0.0)
            }
            _ => {
                let seed = self.setup.traffic.seed ^ (u64::from(group) << 32 | u64::from(k));
                random::Rng::new(seed).uniform() * self.last_step * JITTER
            }
        }
    }

    fn progress(&self) -> Progress {
        let requests = match &self.setup.traffic.arrivals {
            Arrivals::Trace(t) => self.setup.traffic.requests.min(t.len() as u64),
            Arrivals::Poisson { .. } | Arrivals::Gamma { .. } | Arrivals::Closed { .. } => {
                self.setup.traffic.requests
            }
        };
        Progress {
            sent: self.sent,
            completed: self.stats.done + self.stats.rejected,
            requests,
        }
    }

    fn result(self) -> SimResult {
        let st = self.stats;
        let duration = (st.last - st.first.unwrap_or(0.0)).max(1e-9);
        SimResult {
            ttft_ms: st.ttft.summary(1000.0),
            tpot_ms: st.tpot.summary(1000.0),
            itl_ms: st.itl.summary(1000.0),
            e2e_ms: st.e2e.summary(1000.0),
            output_tokens_per_s: st.output_tokens as f64 / duration,
            goodput_requests_per_s: st.good as f64 / duration,
            requests: st.done,
            sent: self.sent,
            rejected: st.rejected,
            preemptions: self.replicas.iter().map(|r| r.preemptions).sum(),
            duration_s: duration,
            max_queue: st.max_queue,
            step_shapes: 0,
            steps: st.steps,
            stopped: st.stopped,
            prefix_cache_hit_rate: st
                .prefix
                .map(|(prompt, hit)| hit as f64 / prompt.max(1) as f64),
            timeline: st.timeline,
        }
    }
}

/// The engine limits of a rank of `inp`'s replica: its scheduler, step
/// budget, running cap and KV tokens (from `crate::memory`).
pub fn rank_limits(inp: &EstimateInput) -> RankLimits {
    // KV tokens are linear in the context: count them at the prompt's length,
    // so a long output does not make the capacity look like zero.
    let context = inp.workload.isl.get().max(1);
    let fit = inp.footprint(context).max_concurrency();
    let sv = &inp.calibration.serving;
    RankLimits {
        policy: inp.engine.policy,
        budget: crate::serving::rank_budget(inp).floor() as u64,
        max_running: inp.engine.max_running_requests.unwrap_or(u64::MAX),
        kv_tokens: fit.saturating_mul(context) / inp.layout.dp.max(1) as u64,
        request_overhead: sv.request_overhead,
        decode_reserve: inp.engine.decode_reserve,
        // The fitted arrival wait as the aggregated loop counts it; the
        // prefill-first loop has none when its rounds stay grouped (its
        // closed form does not use it there).
        arrival_wait: match (inp.engine.policy, inp.workload.client.arrivals()) {
            (Policy::PrefillFirst, crate::serving::closed_loop::Arrivals::Grouped) => {
                ArrivalWait::NONE
            }
            (Policy::PrefillFirst, crate::serving::closed_loop::Arrivals::Spread)
            | (Policy::MixedChunked | Policy::MixedWhole, _) => {
                ArrivalWait::of(sv).under(inp.engine.policy)
            }
        },
        arrival_wait_unit: crate::serving::closed_loop::wait_unit(
            inp.engine.policy,
            inp.workload.client.arrivals(),
        ),
    }
}

/// The limits and traffic of a closed loop whose serving layer holds
/// slots (`ServingParams::held_slots`, fitted by `moeplan calibrate` to a
/// benchmark that kept requests above the engine's batch), as the
/// estimate reads them: each rank runs what it would for the clients
/// given (their share, or its cap where that binds), and the benchmark
/// keeps the held slots (rounded) more clients per rank in flight, who
/// wait for a slot. Open traffic has no clients to hold: both as given.
fn held_back(
    limits: RankLimits,
    inp: &EstimateInput,
    replicas: u32,
    traffic: Traffic,
) -> (RankLimits, Traffic) {
    let held = inp.calibration.serving.held_slots.round() as u64;
    match traffic.arrivals {
        Arrivals::Closed { clients } if held > 0 => {
            let ranks = u64::from(replicas.max(1)) * u64::from(inp.layout.dp.max(1));
            let limits = RankLimits {
                max_running: limits.max_running.min(clients.div_ceil(ranks)),
                ..limits
            };
            let clients = clients + held * ranks;
            let traffic = Traffic {
                arrivals: Arrivals::Closed { clients },
                ..traffic
            };
            (limits, traffic)
        }
        Arrivals::Closed { .. }
        | Arrivals::Poisson { .. }
        | Arrivals::Gamma { .. }
        | Arrivals::Trace(_) => (limits, traffic),
    }
}

/// Simulates replicas of `inp` under `traffic`.
pub fn simulate(
    inp: &EstimateInput,
    replicas: u32,
    router: Router,
    traffic: Traffic,
    levels: Levels,
) -> SimResult {
    simulate_observed(inp, (replicas, router), traffic, levels, &mut |_| {})
}

/// `simulate`, telling `observe` how far it has come.
pub fn simulate_observed(
    inp: &EstimateInput,
    (replicas, router): (u32, Router),
    traffic: Traffic,
    levels: Levels,
    observe: &mut dyn FnMut(Progress),
) -> SimResult {
    let (limits, traffic) = held_back(rank_limits(inp), inp, replicas, traffic);
    let setup = Setup {
        replicas,
        dp: inp.layout.dp,
        limits,
        router,
        traffic,
        levels,
        decode: None,
    };
    let mut cost = ModelSteps::new(inp).with_prefixes(&setup.traffic);
    let mut r = run_observed(&setup, &mut [&mut cost], observe);
    r.step_shapes = cost.shapes();
    r
}

/// Simulates a disaggregated deployment under `traffic`: its prefill
/// workers, the KV transfer of each prompt, its decode workers.
pub fn simulate_disaggregated(
    inp: &DisaggInput,
    router: Router,
    traffic: Traffic,
    levels: Levels,
) -> SimResult {
    simulate_disaggregated_observed(inp, router, traffic, levels, &mut |_| {})
}

/// `simulate_disaggregated`, telling `observe` how far it has come.
pub fn simulate_disaggregated_observed(
    inp: &DisaggInput,
    router: Router,
    traffic: Traffic,
    levels: Levels,
    observe: &mut dyn FnMut(Progress),
) -> SimResult {
    let (p, d) = (inp.prefill, inp.decode);
    let pin = disagg::pool_input(inp, &p, p.prompts_per_rank.max(1) * p.layout.dp as u64);
    let din = disagg::pool_input(
        inp,
        &d,
        inp.workload.concurrency.div_ceil(d.workers.max(1) as u64),
    );
    let (latency, per_token) = disagg::kv_transfer_parts(inp);
    let setup = Setup {
        replicas: p.workers.max(1),
        dp: p.layout.dp,
        // A prefill rank's step carries the pool's prompts per rank, whole
        // (what the estimate's prefill step prices), not the engine's chunk:
        // SGLang's 8,192 tokens per replica are 1,024 per rank at DP8, which
        // split a prompt of 2,000 over two steps dearer than one.
        limits: RankLimits {
            budget: p.prompts_per_rank.max(1) * inp.workload.isl.get().max(1),
            ..rank_limits(&pin)
        },
        router,
        traffic,
        levels,
        decode: Some(DecodeStage {
            replicas: d.workers.max(1),
            dp: d.layout.dp,
            // A request joining with its KV cache spends the serving layer's
            // arrival wait (the decode step in progress, streaming its first
            // token) before its client sees the first token, whatever the
            // scheduler: the disaggregated estimate's steady TTFT has it.
            limits: RankLimits {
                arrival_wait: ArrivalWait::of(&inp.calibration.serving),
                arrival_wait_unit: crate::serving::closed_loop::WaitUnit::Step,
                ..rank_limits(&din)
            },
            transfer_latency: latency,
            transfer_per_token: per_token,
        }),
    };
    let (mut pc, mut dc) = (
        ModelSteps::new(&pin).with_prefixes(&setup.traffic),
        ModelSteps::new(&din),
    );
    let mut r = run_observed(&setup, &mut [&mut pc, &mut dc], observe);
    r.step_shapes = pc.shapes() + dc.shapes();
    r
}

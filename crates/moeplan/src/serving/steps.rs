//! The named steps of a replica, costed through the op-level cost model.
//!
//! The closed loop (`super::closed_loop`) names the steps it needs by what
//! they carry (decodes, prompt tokens); this module turns each into the
//! cost model's per-micro-batch `StepShape`, prices it with the expert load
//! imbalance of its own routed rows, and applies the profile's serving
//! layer (`Step::time`): the kernel-time ratio of its kind, the per-step
//! overhead and the per-request one.
//! With PP, a step of `d` decodes runs as `min(pp, d)` micro-batches and
//! takes `max(traversal, micro-batches × slowest stage)`.

use super::closed_loop::Shape;
use super::imbalance::load_imbalance;
use super::EstimateInput;
use crate::calibration::ServingParams;
use crate::ops::{CostContext, Overlap, OverlapCost, StepCost, StepShape};
use crate::units::Seconds;
use serde::Serialize;

/// What a step is, in the loop a benchmark drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Every running request decodes one token.
    Decode,
    /// The step that carries a new request's prompt in steady state.
    Prefill,
    /// A first-round step (every prompt arrived at once), or a round's last
    /// partial prefill step.
    Burst,
    /// Whole prompts filling the step budget, nothing else (the pure prefill
    /// phase; what a disaggregated prefill worker runs).
    PrefillBatch,
}

impl StepKind {
    /// A phrase for explanations.
    pub fn describe(self) -> &'static str {
        match self {
            StepKind::Decode => "decode step",
            StepKind::Prefill => "step carrying a new prompt",
            StepKind::Burst => "first-round burst step",
            StepKind::PrefillBatch => "prefill batch of whole prompts",
        }
    }
}

/// One costed step.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Step {
    /// What it is.
    pub kind: StepKind,
    /// What it carries per attention-DP rank.
    pub shape: Shape,
    /// The cost model's shape of one micro-batch.
    pub micro: StepShape,
    /// Micro-batches the step runs as (PP).
    #[serde(serialize_with = "crate::units::json::count")]
    pub(crate) micro_batches: f64,
    /// Expert load imbalance of its routed rows.
    pub imbalance: f64,
    /// The kernels' cost of one micro-batch.
    pub cost: StepCost,
    /// Kernel time of the whole step (all micro-batches through the pipeline).
    pub kernels: Seconds,
    /// Of that, the kernels' fixed costs (launch, setup, small kernels).
    pub fixed: Seconds,
    /// Of that, the time a step of its decodes alone takes (0 without decodes).
    pub(crate) decode_part: Seconds,
    /// Whether the engine runs the step as a CUDA graph.
    pub launch: Launch,
    /// What two-batch overlap did to it (None: one batch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap: Option<OverlapCost>,
}

/// How a step's kernels are launched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Launch {
    /// Replayed as a captured CUDA graph: the per-kernel fixed costs measured
    /// on isolated launches largely vanish.
    Graph,
    /// Kernel by kernel.
    Eager,
}

impl Step {
    /// Step time under a serving layer: the kernels' fixed costs (× the
    /// graph ratio when the step is a CUDA graph), the rest split into the
    /// decodes' share (× the decode ratio) and the prompt tokens' (× the
    /// prefill ratio), + the per-step overhead, + the sequence overhead of
    /// each request it carries (`requests`).
    pub fn time(&self, serving: &ServingParams) -> Seconds {
        let fixed = self.fixed.min(self.kernels);
        let variable = self.kernels - fixed;
        let decode_share = if self.kernels.0 > 0.0 {
            (self.decode_part.0 / self.kernels.0).min(1.0)
        } else {
            0.0
        };
        let fixed_ratio = match self.launch {
            Launch::Graph => serving.graph_fixed_scale,
            Launch::Eager => 1.0,
        };
        variable
            * (decode_share * serving.decode_scale + (1.0 - decode_share) * serving.prefill_scale)
            + fixed * fixed_ratio
            + serving.step_overhead
            + serving.sequence_overhead * self.requests()
    }

    /// Requests per attention-DP rank the step carries: its decodes and the
    /// prompts it computes, as the cost model reads them (a chunk is one;
    /// a budget filled with whole prompts carries its tokens / the prompt
    /// length, fractional where prompts straddle steps; `simulate` reads
    /// its steps by their token counts the same way).
    pub(crate) fn requests(&self) -> f64 {
        (self.micro.decode_seqs + self.micro.prefill_seqs) * self.micro_batches
    }
}

/// Prices steps of one replica.
pub struct Stepper<'a> {
    inp: &'a EstimateInput<'a>,
    /// Attention-DP ranks that hold requests (the others run empty steps).
    active_ranks: f64,
    /// Mean context of a decoding request.
    context: f64,
    /// The cost context of its steps, built once (its load imbalance is
    /// each step's own).
    ctx: CostContext<'a>,
}

impl<'a> Stepper<'a> {
    /// A stepper for `inp` with `active_ranks` of its attention-DP ranks busy.
    pub fn new(inp: &'a EstimateInput<'a>, active_ranks: f64) -> Self {
        let w = inp.workload;
        Stepper {
            inp,
            active_ranks,
            context: w.isl.get().max(1) as f64 + w.osl.get().max(1) as f64 / 2.0,
            ctx: CostContext::new(
                inp.model,
                inp.gpu,
                inp.layout,
                inp.redundant_experts,
                0.0,
                &inp.calibration,
            ),
        }
    }

    /// The cost model's shape of one micro-batch of `s`; `peers`: the mean
    /// tokens each other attention-DP rank brings to the MoE layers, when
    /// the caller knows them (a simulation); else from the busy ranks.
    /// Prompt tokens are the computed ones: a prompt brings `(1 − h) · isl`
    /// after its `h · isl` cached tokens (`h` the prefix-cache hit rate), which
    /// its new tokens attend but no linear layer recomputes.
    fn micro(&self, s: &Shape, micro_batches: f64, peers: Option<f64>) -> StepShape {
        let w = self.inp.workload;
        let (isl, cached) = (w.computed_prompt(), w.cached_prompt());
        let (seqs, per_seq, offset) = if s.prefill_tokens >= isl {
            (s.prefill_tokens / isl, isl, cached)
        } else if s.prefill_tokens > 0.0 {
            // A chunk of one prompt, on average half-way through it.
            (
                1.0,
                s.prefill_tokens,
                cached + (isl - s.prefill_tokens) / 2.0,
            )
        } else {
            (0.0, 0.0, 0.0)
        };
        let dp = self.inp.layout.dp as f64;
        let tokens = s.decodes + s.prefill_tokens;
        let peers = match peers {
            Some(p) => Some(p / micro_batches),
            None if self.active_ranks < dp && dp > 1.0 => {
                Some(tokens * (self.active_ranks - 1.0) / (dp - 1.0) / micro_batches)
            }
            None => None,
        };
        StepShape {
            decode_seqs: s.decodes / micro_batches,
            decode_context: self.context,
            prefill_seqs: seqs / micro_batches,
            prefill_tokens_per_seq: per_seq,
            prefill_offset: offset,
            peer_tokens: peers,
        }
    }

    /// Expert load imbalance of a step whose ranks carry `tokens` each.
    fn imbalance(&self, tokens: f64) -> f64 {
        let m = self.inp.model;
        let l = self.inp.layout;
        match &m.moe {
            Some(moe) if l.ep > 1 => {
                let rows = tokens * self.active_ranks * l.cp as f64 / l.edp() as f64
                    * moe.experts_per_token as f64;
                load_imbalance(
                    moe.n_routed_experts,
                    l.ep,
                    self.inp.redundant_experts,
                    rows,
                    self.inp.routing_skew,
                )
            }
            _ => 0.0,
        }
    }

    /// Costs one step of `kind` carrying `s`, whose decodes alone take
    /// `decode_part` (the decode step's kernel time; zero when it has none).
    pub fn step(&self, kind: StepKind, s: Shape, decode_part: Seconds) -> Step {
        self.step_with_peers(kind, s, decode_part, None)
    }

    /// `step`, where the other attention-DP ranks each bring `peers` tokens
    /// on average to the MoE layers instead of as many as this one (a
    /// simulation, whose ranks carry different steps).
    pub(crate) fn step_with_peers(
        &self,
        kind: StepKind,
        s: Shape,
        decode_part: Seconds,
        peers: Option<f64>,
    ) -> Step {
        let pp = self.inp.layout.pp as f64;
        let micro_batches = if s.decodes >= 1.0 && s.prefill_tokens == 0.0 {
            pp.min(s.decodes.floor()).max(1.0)
        } else {
            1.0
        };
        let micro = self.micro(&s, micro_batches, peers);
        let (cost, imbalance, overlap) = self.cost(&micro, s.decodes + s.prefill_tokens);
        let kernels = cost.traversal().max(cost.stage_time() * micro_batches);
        // The fixed costs' share of the ops' time (overlapped: of both
        // halves' summed time, which the overlap shortens as a whole).
        let by_bound = cost.by_bound();
        let stage = match overlap {
            None => cost.stage_time().0,
            Some(_) => by_bound.iter().map(|(_, t)| t.0).sum(),
        };
        let fixed_share = if stage > 0.0 {
            by_bound[3].1 .0 / stage
        } else {
            0.0
        };
        let launch = if self
            .inp
            .engine
            .cuda_graphs
            .captures(s.decodes, s.prefill_tokens)
        {
            Launch::Graph
        } else {
            Launch::Eager
        };
        Step {
            kind,
            shape: s,
            micro,
            micro_batches,
            imbalance,
            kernels,
            fixed: kernels * fixed_share,
            decode_part: if s.decodes > 0.0 {
                decode_part
            } else {
                Seconds::ZERO
            },
            launch,
            cost,
            overlap,
        }
    }

    /// The cost of one micro-batch of `tokens` per rank, its expert load
    /// imbalance, and what two-batch overlap did to it: under
    /// `Overlap::TwoBatch` each half is costed at half the tokens (and the
    /// imbalance of half the rows), unless the step has fewer than two
    /// tokens to split.
    fn cost(&self, micro: &StepShape, tokens: f64) -> (StepCost, f64, Option<OverlapCost>) {
        let ctx = |imbalance| {
            let mut c = self.ctx.clone();
            c.load_imbalance = imbalance;
            c
        };
        let imbalance = self.imbalance(tokens);
        let single = ctx(imbalance).step(micro);
        match self.inp.overlap {
            Overlap::None => (single, imbalance, None),
            Overlap::TwoBatch => {
                let half = self.imbalance(tokens / 2.0);
                match ctx(half).step_two_batch(micro) {
                    Some((cost, o)) => {
                        let o = OverlapCost {
                            single_batch: single.stage_time(),
                            ..o
                        };
                        (cost, half, Some(o))
                    }
                    None => (single, imbalance, None),
                }
            }
        }
    }
}

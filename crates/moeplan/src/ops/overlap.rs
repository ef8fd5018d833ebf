//! Two-batch overlap (SGLang's `--enable-two-batch-overlap`, DeepSeek's
//! dual micro-batch): a step's batch runs as two micro-batches of half the
//! tokens each, so that one micro-batch's collectives (the EP dispatch and
//! combine, the TP all-reduces) run while the other computes.
//!
//! Each half is costed through the same op list at half the tokens, so what
//! splitting costs shows: GEMMs further from saturation, every touched
//! expert's weights read once per half, every collective's latency paid
//! twice, the expert load imbalance of half the rows. Per pipeline stage,
//! with `W` the compute and memory time of both halves, `H` their in-layer
//! collectives (what can hide), `S` their collectives outside the layers
//! (the embedding all-reduce, the logits all-gather) and `L` the stage's
//! layers:
//!
//! ```text
//! stage = max(W, H) + min(W, H) / L + S
//! hidden = W + H − max(W, H) − min(W, H) / L
//! ```
//!
//! The schedule fills and drains over one layer's share of the shorter
//! stream, which nothing hides (`min / L`); the stage is never below `W` or
//! `H`, the sums of both halves' work and communication.

use super::{Bound, CostContext, Op, OpKind, StepCost, StepShape};
use crate::units::Seconds;
use serde::{Deserialize, Serialize};

/// How a step's communication overlaps its computation.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, schemars::JsonSchema,
)]
pub enum Overlap {
    /// One batch per step: communication and computation in sequence.
    #[default]
    #[serde(rename = "none")]
    None,
    /// Two micro-batches: one's collectives run while the other computes.
    #[serde(rename = "two-batch")]
    TwoBatch,
}

impl Overlap {
    /// Every overlap, in the order flags list them.
    pub const ALL: [Overlap; 2] = [Overlap::None, Overlap::TwoBatch];

    /// The spelling in plan files and flags.
    pub fn name(self) -> &'static str {
        match self {
            Overlap::None => "none",
            Overlap::TwoBatch => "two-batch",
        }
    }

    /// Whether there is none (left out of JSON, so inputs without it keep their output).
    pub fn is_none(&self) -> bool {
        *self == Overlap::None
    }
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Overlap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Overlap::None),
            "two-batch" => Ok(Overlap::TwoBatch),
            other => Err(format!(
                "`{other}` is not an overlap: write \"two-batch\" (SGLang's two-batch overlap, DeepSeek's dual micro-batch) or \"none\""
            )),
        }
    }
}

/// What the overlap did to one step (of its slowest stage).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct OverlapCost {
    /// Compute and memory time of both halves (`W`).
    pub compute: Seconds,
    /// In-layer collectives of both halves, the part that can hide (`H`).
    pub communication: Seconds,
    /// Collectives outside the layers, in sequence (`S`).
    pub serial: Seconds,
    /// Time hidden: `W + H − max(W, H) − min(W, H) / L`.
    pub hidden: Seconds,
    /// The stage with the overlap: `max(W, H) + min(W, H) / L + S`.
    pub overlapped: Seconds,
    /// The same stage run as one batch, without overlap.
    pub single_batch: Seconds,
}

/// What an op is to the overlap: work, a collective that can hide behind
/// the other micro-batch's work, or one that runs in sequence.
enum Part {
    Work,
    Hideable,
    Serial,
}

fn part(kind: OpKind) -> Part {
    use OpKind::*;
    match kind {
        NormsResidual | QkvProj | OProj | MlaQAKvAProj | MlaKvAProj | MlaQBProj | MlaKvBProj
        | MlaAbsorb | DsaIndexerProj | LinearAttnInProj | LinearAttnOutProj | AttentionDecode
        | AttentionPrefill | LinearAttnState | MlaFixed | Router | MoeExperts | MoeLatentProj
        | SharedExpertGateUp | SharedExpertDown | MlpGateUp | MlpDown | Embedding | LmHead
        | Sampling => Part::Work,
        TpAllReduceAttn | TpAllReduceMlp | TpAllReduceMoe | TpAllGatherMoe | EpDispatch
        | EpCombine | DpAllGather | DpReduceScatter => Part::Hideable,
        TpAllReduceEmbedding | LogitsAllGather => Part::Serial,
    }
}

/// One half of `s`: half its sequences and its peers' tokens (a single
/// prompt's chunk splits into two halves of its tokens, costed alike).
fn half(s: &StepShape) -> StepShape {
    StepShape {
        decode_seqs: s.decode_seqs / 2.0,
        prefill_seqs: s.prefill_seqs / 2.0,
        peer_tokens: s.peer_tokens.map(|p| p / 2.0),
        ..*s
    }
}

/// The overlap of one stage whose both halves run `ops` (counts doubled)
/// over `layers` layers.
fn stage(ops: &[Op], layers: f64) -> (Seconds, Seconds, Seconds, Seconds) {
    let (mut w, mut h, mut s) = (Seconds::ZERO, Seconds::ZERO, Seconds::ZERO);
    for op in ops {
        match part(op.kind) {
            Part::Work => w += op.total(),
            Part::Hideable => h += op.total(),
            Part::Serial => s += op.total(),
        }
    }
    debug_assert!(ops
        .iter()
        .all(|o| (o.bound == Bound::Communication) != matches!(part(o.kind), Part::Work)));
    let (long, short) = if w.0 >= h.0 { (w, h) } else { (h, w) };
    let time = long + short / layers.max(1.0) + s;
    (w, h, s, time)
}

impl CostContext<'_> {
    /// The step as two overlapped micro-batches of half `shape` each; None
    /// when the step has fewer than two tokens per rank to split. The cost's
    /// ops are one half's with their counts doubled (both halves' work, so
    /// `by_bound` sums `W`, `H` and `S`); its stage times are the overlapped
    /// ones. `single_batch` is left 0 for the caller, who costs the step
    /// whole.
    pub fn step_two_batch(&self, shape: &StepShape) -> Option<(StepCost, OverlapCost)> {
        if shape.tokens() < 2.0 {
            return None;
        }
        let h = half(shape);
        let n = self.stages.len();
        let mut stage_times = Vec::with_capacity(n);
        let mut worst: Option<(usize, Vec<Op>, OverlapCost)> = None;
        for s in 0..n {
            let mut ops = self.stage_ops(s, &h);
            for op in &mut ops {
                op.count *= 2;
            }
            let layers: u32 = self.stages[s].iter().map(|(_, c)| *c).sum();
            let (compute, communication, serial, time) = stage(&ops, layers as f64);
            stage_times.push(time);
            if worst
                .as_ref()
                .is_none_or(|(_, _, o)| time.0 > o.overlapped.0)
            {
                let o = OverlapCost {
                    compute,
                    communication,
                    serial,
                    hidden: compute + communication + serial - time,
                    overlapped: time,
                    single_batch: Seconds::ZERO,
                };
                worst = Some((s, ops, o));
            }
        }
        let (slowest_stage, ops, summary) = worst?;
        let transfer = self.stage_transfer(&h) * 2.0;
        let cost = StepCost {
            stage_times,
            slowest_stage,
            ops,
            stage_transfer: transfer,
        };
        Some((cost, summary))
    }
}

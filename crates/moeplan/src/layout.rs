//! Parallel layouts of one replica, and their validity.
//!
//! Attention and MoE run on the same GPUs of a pipeline stage, each with its
//! own split ("parallel folding"): `tp · cp · dp = etp · ep · edp` GPUs per
//! stage, `pp` stages. GPUs are *not* the product of every degree: EP=8 with
//! TP=8 on one node is 8 GPUs, not 64.

use crate::hardware::Gpu;
use crate::model::{Attention, Ffn, LayerParamsMemo, Mixer, Model};
use serde::Serialize;
use std::fmt;
use std::ops::Range;

/// The most extra copies of each expert that redundant slots (EPLB) may
/// add: published deployments add well under one.
pub(crate) const MAX_REDUNDANT_COPIES: u64 = 4;

/// The most GPUs one replica's degrees may ask for: 2^20, a thousand times
/// the widest published deployment, so every product of degrees stays
/// inside `u32`.
pub(crate) const MAX_REPLICA_GPUS: u64 = 1 << 20;

/// Degrees of one replica.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
pub struct Layout {
    /// Pipeline stages.
    pub pp: u32,
    /// Tensor parallel (attention heads, dense/shared MLP columns).
    pub tp: u32,
    /// Context parallel (the sequence of one request, for attention).
    pub cp: u32,
    /// Attention data parallel inside the replica.
    pub dp: u32,
    /// Expert parallel.
    pub ep: u32,
    /// Expert tensor parallel (each expert's matrices).
    pub etp: u32,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            pp: 1,
            tp: 1,
            cp: 1,
            dp: 1,
            ep: 1,
            etp: 1,
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (name, v) in self.degrees() {
            if v > 1 {
                parts.push(format!("{name}{v}"));
            }
        }
        if parts.is_empty() {
            f.write_str("single GPU")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

/// Why a layout is invalid.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LayoutProblem {
    /// The rule (stable code).
    pub rule: &'static str,
    /// The degree concerned (`tp`, `ep`, ...).
    pub field: &'static str,
    /// What is wrong, with the numbers.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl LayoutProblem {
    /// A violation of `rule` on the degree `field`.
    fn new(
        rule: &'static str,
        field: &'static str,
        message: String,
        hint: impl Into<String>,
    ) -> Self {
        LayoutProblem {
            rule,
            field,
            message,
            hint: hint.into(),
        }
    }
}

impl Layout {
    /// Each degree with its name, in the fixed order pp, tp, cp, dp, ep, etp.
    pub fn degrees(&self) -> [(&'static str, u32); 6] {
        [
            ("pp", self.pp),
            ("tp", self.tp),
            ("cp", self.cp),
            ("dp", self.dp),
            ("ep", self.ep),
            ("etp", self.etp),
        ]
    }

    /// The degrees' GPUs (pp · tp · cp · dp, and ep, etp each) within
    /// `MAX_REPLICA_GPUS`, computed without overflow; the message names the
    /// product otherwise. Check before `folded`, whose products are `u32`.
    pub fn degrees_within_bounds(
        pp: u32,
        tp: u32,
        cp: u32,
        dp: u32,
        ep: u32,
        etp: u32,
    ) -> Result<(), String> {
        let product = [pp, tp, cp, dp]
            .iter()
            .map(|d| u64::from(*d))
            .product::<u64>();
        let widest = product.max(u64::from(ep)).max(u64::from(etp));
        if widest > MAX_REPLICA_GPUS {
            return Err(format!(
                "the degrees ask for {widest} GPUs in one replica (pp·tp·cp·dp = {product}); one replica spans at most {MAX_REPLICA_GPUS}"
            ));
        }
        Ok(())
    }

    /// A layout with unset `ep`/`etp` folded over the GPUs of a stage
    /// (edp = 1), as engines do with `--tp N` or `--dp N`: expert weights are
    /// sharded, not replicated.
    pub fn folded(pp: u32, tp: u32, cp: u32, dp: u32, ep: Option<u32>, etp: Option<u32>) -> Layout {
        let stage = tp.max(1) * cp.max(1) * dp.max(1);
        let rest = |d: u32| {
            if d > 0 && stage % d == 0 {
                stage / d
            } else {
                1
            }
        };
        let (ep, etp) = match (ep, etp) {
            (Some(ep), Some(etp)) => (ep, etp),
            (Some(ep), None) => (ep, rest(ep)),
            (None, Some(etp)) => (rest(etp), etp),
            (None, None) => (1, stage),
        };
        Layout {
            pp,
            tp,
            cp,
            dp,
            ep,
            etp,
        }
    }

    /// GPUs of one pipeline stage.
    pub(crate) fn gpus_per_stage(&self) -> u32 {
        self.tp * self.cp * self.dp
    }
    /// GPUs of the replica.
    pub fn gpus(&self) -> u32 {
        self.pp * self.gpus_per_stage()
    }
    /// Expert data parallel: copies of the expert set inside a stage.
    pub fn edp(&self) -> u32 {
        (self.gpus_per_stage() / (self.ep * self.etp).max(1)).max(1)
    }

    /// The redundant expert slots (EPLB) a replica of this layout holds when
    /// `requested` are asked for: they replicate hot experts on other EP
    /// ranks, so without expert parallelism (ep = 1, every GPU holding every
    /// expert) there is nowhere to put them and none are held. The one rule
    /// the planner, `estimate`, the audit and memory apply.
    pub fn redundant_slots(&self, requested: u32) -> u32 {
        if self.ep > 1 {
            requested
        } else {
            0
        }
    }

    /// Checks every rule of `../shared/domain.md` §2; returns all violations
    /// (empty = valid) and warnings (valid but costly).
    pub fn check(
        &self,
        m: &Model,
        gpu: &Gpu,
        redundant_experts: u32,
    ) -> (Vec<LayoutProblem>, Vec<String>) {
        let mut bad = self.zero_degrees();
        let mut warn = Vec::new();
        if !bad.is_empty() {
            return (bad, warn);
        }
        self.check_folding(&mut bad);
        self.check_heads(m, &mut bad, &mut warn);
        self.check_experts(m, redundant_experts, &mut bad);
        if redundant_experts > 0 && m.moe.is_some() && self.redundant_slots(redundant_experts) == 0
        {
            warn.push(format!(
                "{redundant_experts} redundant expert slots ignored: at ep = 1 every GPU holds (a part of) every expert, so there is no EP rank to replicate one on (use ep > 1 for EPLB)"
            ));
        }
        let n_layers = m.n_layers() as u32;
        if self.pp > n_layers {
            bad.push(LayoutProblem::new(
                "layers_pp",
                "pp",
                format!("pp = {} stages for {n_layers} layers", self.pp),
                "at most one stage per layer",
            ));
        }
        self.topology_warnings(gpu, &mut warn);
        (bad, warn)
    }

    /// Every degree that is 0 (then no other rule is checked).
    fn zero_degrees(&self) -> Vec<LayoutProblem> {
        self.degrees()
            .into_iter()
            .filter(|&(_, v)| v == 0)
            .map(|(name, _)| {
                LayoutProblem::new(
                    "degree_zero",
                    name,
                    format!("{name} = 0"),
                    "every degree is at least 1",
                )
            })
            .collect()
    }

    /// The MoE split (ep·etp) folds onto the GPUs of a stage (tp·cp·dp).
    fn check_folding(&self, bad: &mut Vec<LayoutProblem>) {
        let stage = self.gpus_per_stage();
        if !stage.is_multiple_of(self.ep * self.etp) {
            bad.push(LayoutProblem::new(
                "folding",
                "ep",
                format!("a stage has tp·cp·dp = {}·{}·{} = {stage} GPUs, which ep·etp = {}·{} = {} does not divide", self.tp, self.cp, self.dp, self.ep, self.etp, self.ep * self.etp),
                format!("the MoE split must fold onto the same GPUs as attention: choose ep·etp dividing {stage}"),
            ));
        }
    }

    /// tp against the attention heads, the KV heads (split or replicated,
    /// with a warning when replicated), linear attention's and Mamba-2's heads.
    fn check_heads(&self, m: &Model, bad: &mut Vec<LayoutProblem>, warn: &mut Vec<String>) {
        let mut seen: Vec<(u64, Option<u64>)> = Vec::with_capacity(2);
        for attn in m.attentions() {
            let kv = match attn {
                Attention::Gqa { n_kv_heads, .. } => Some(n_kv_heads),
                Attention::Mla { .. } | Attention::SharedKv { .. } => None,
            };
            let shape = (attn.n_heads(), kv);
            if seen.contains(&shape) {
                continue;
            }
            seen.push(shape);
            self.check_query_heads(shape.0 as u32, bad);
            if let Some(kv) = kv {
                self.check_kv_heads(kv as u32, bad, warn);
            }
        }
        if let Some(la) = &m.linear_attention {
            if la.n_value_heads as u32 % self.tp != 0 || la.n_key_heads as u32 % self.tp != 0 {
                bad.push(LayoutProblem::new(
                    "linear_heads_tp",
                    "tp",
                    format!(
                        "linear attention has {} key / {} value heads, not divisible by tp = {}",
                        la.n_key_heads, la.n_value_heads, self.tp
                    ),
                    "use a tp dividing both",
                ));
            }
        }
        self.check_mamba_heads(m, bad);
    }

    /// tp against one attention shape's query heads.
    fn check_query_heads(&self, heads: u32, bad: &mut Vec<LayoutProblem>) {
        if heads % self.tp != 0 {
            bad.push(LayoutProblem::new(
                "heads_tp",
                "tp",
                format!(
                    "{heads} attention heads cannot be split evenly over tp = {}",
                    self.tp
                ),
                format!("use a tp that divides {heads}"),
            ));
        }
    }

    /// tp against one GQA shape's KV heads: split, or replicated (warned).
    fn check_kv_heads(&self, kv: u32, bad: &mut Vec<LayoutProblem>, warn: &mut Vec<String>) {
        let ok = if self.tp <= kv {
            kv % self.tp == 0
        } else {
            self.tp % kv == 0
        };
        if !ok {
            bad.push(LayoutProblem::new("kv_heads_tp", "tp", format!("{kv} KV heads cannot be split or replicated evenly over tp = {}", self.tp), "tp must divide the KV heads, or be a multiple of them (KV heads are then replicated)"));
        } else if self.tp > kv {
            warn.push(format!("tp = {} exceeds the {kv} KV heads: each KV head is replicated on {} GPUs (its cache too)", self.tp, self.tp / kv));
        }
    }

    /// tp against the Mamba-2 heads (their B/C groups are split up to
    /// their count and replicated beyond, as vLLM does).
    fn check_mamba_heads(&self, m: &Model, bad: &mut Vec<LayoutProblem>) {
        if let Some(mb) = &m.mamba {
            if mb.n_heads % self.tp as u64 != 0 {
                bad.push(LayoutProblem::new(
                    "mamba_heads_tp",
                    "tp",
                    format!(
                        "the Mamba-2 mixer has {} heads, not divisible by tp = {}",
                        mb.n_heads, self.tp
                    ),
                    format!("use a tp dividing {}", mb.n_heads),
                ));
            }
        }
    }

    /// ep against the expert slots and etp against the expert width; on a
    /// dense model, no ep and no redundant slots.
    fn check_experts(&self, m: &Model, redundant_experts: u32, bad: &mut Vec<LayoutProblem>) {
        match &m.moe {
            Some(moe) => {
                if u64::from(redundant_experts) > MAX_REDUNDANT_COPIES * moe.n_routed_experts {
                    bad.push(LayoutProblem::new(
                        "redundant_experts",
                        "redundant_experts",
                        format!(
                            "{redundant_experts} redundant slots for {} experts: more than {MAX_REDUNDANT_COPIES} extra copies of every expert",
                            moe.n_routed_experts
                        ),
                        "EPLB adds a few slots per GPU (DeepSeek 32 for 256 experts, Kimi K2 96 for 384)",
                    ));
                    return;
                }
                let slots = moe.n_routed_experts as u32 + redundant_experts;
                if slots % self.ep != 0 {
                    bad.push(LayoutProblem::new("experts_ep", "ep", format!("{} expert slots ({} experts + {redundant_experts} redundant) cannot be split evenly over ep = {}", slots, moe.n_routed_experts, self.ep), "choose ep dividing the expert slots, or add redundant expert slots (EPLB)"));
                }
                if self.ep > slots {
                    bad.push(LayoutProblem::new("ep_exceeds_experts", "ep", format!("ep = {} exceeds the {slots} expert slots: some GPUs would hold no expert", self.ep), "ep at most the number of expert slots"));
                }
                if moe.expert_intermediate_size % self.etp as u64 != 0 {
                    bad.push(LayoutProblem::new(
                        "expert_width_etp",
                        "etp",
                        format!(
                            "expert width {} is not divisible by etp = {}",
                            moe.expert_intermediate_size, self.etp
                        ),
                        "choose etp dividing the expert intermediate size",
                    ));
                }
            }
            None => {
                if self.ep > 1 {
                    bad.push(LayoutProblem::new(
                        "ep_dense",
                        "ep",
                        format!(
                            "ep = {} on a dense model: it has no experts to split",
                            self.ep
                        ),
                        "use ep = 1 (tp or dp instead)",
                    ));
                }
            }
        }
        if redundant_experts > 0 && m.moe.is_none() {
            bad.push(LayoutProblem::new(
                "redundant_dense",
                "redundant_experts",
                "redundant expert slots on a dense model".into(),
                "remove redundant_experts",
            ));
        }
    }

    /// Valid but costly placements: TP or EP groups wider than a node, and
    /// stages that do not fill whole nodes.
    fn topology_warnings(&self, gpu: &Gpu, warn: &mut Vec<String>) {
        let stage = self.gpus_per_stage();
        let node = gpu.gpus_per_node;
        if self.tp > node {
            warn.push(format!("the TP group ({} GPUs) is wider than a node ({node} GPUs): its all-reduces cross the network", self.tp));
        }
        if self.ep * self.etp > node {
            warn.push(format!("the EP group ({} GPUs) is wider than a node ({node} GPUs): part of each all-to-all crosses the network", self.ep * self.etp));
        }
        if stage > node && stage % node != 0 {
            warn.push(format!(
                "a stage of {stage} GPUs does not fill whole nodes of {node}"
            ));
        }
    }

    /// Layers of each stage, split so stages carry balanced weight (MoE
    /// layers weigh more than dense ones); contiguous, in order.
    pub fn stages(&self, m: &Model) -> Vec<Range<usize>> {
        let n = m.n_layers();
        let pp = (self.pp as usize).clamp(1, n.max(1));
        if pp == 1 {
            // One stage holds every layer; no weights to balance.
            return std::iter::once(0..n).collect();
        }
        let mut memo = LayerParamsMemo::new(m);
        let w: Vec<f64> = m
            .layers
            .iter()
            .map(|l| {
                let p = memo.get(l);
                let k = m.moe.as_ref().map_or(0, |x| x.experts_per_token) as f64;
                // Per-token work of the layer, plus a constant so that
                // attention-only differences still spread layers.
                1.0 + (p.attn_sharded
                    + p.attn_kv
                    + p.attn_replicated
                    + p.linear_attn
                    + p.dense
                    + p.shared
                    + k * p.per_expert
                    + p.latent)
                    / 1e9
                    + match l.mixer {
                        Mixer::Full
                        | Mixer::FullDense
                        | Mixer::FullKv { .. }
                        | Mixer::Sliding { .. }
                        | Mixer::Compressed { .. } => 0.1,
                        Mixer::Linear | Mixer::Mamba | Mixer::Absent | Mixer::Projection => 0.0,
                    }
                    + match l.ffn {
                        Ffn::Moe => 0.1,
                        Ffn::Dense | Ffn::DenseOf { .. } | Ffn::Projection | Ffn::Absent => 0.0,
                    }
            })
            .collect();
        let total: f64 = w.iter().sum();
        let mut out = Vec::with_capacity(pp);
        let mut start = 0;
        let mut acc = 0.0;
        for s in 0..pp {
            let remaining_stages = pp - s;
            if remaining_stages == 1 {
                out.push(start..n);
                break;
            }
            let target = total * (s + 1) as f64 / pp as f64;
            let mut end = start;
            // Leave at least one layer for each later stage.
            while end < n - (remaining_stages - 1) && (end == start || acc + w[end] / 2.0 <= target)
            {
                acc += w[end];
                end += 1;
            }
            out.push(start..end);
            start = end;
        }
        out
    }
}

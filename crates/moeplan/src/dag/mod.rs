//! The operator and communication graph of a deployment (`moeplan dag`).
//!
//! The graph is drawn from the op list of `ops.rs`, the same one the
//! estimate sums (`CostContext::stage_parts`), so every node carries the
//! cost model's own time, FLOP and bytes, and `check` can demand that the
//! graph's critical path equals the cost model's step time.
//!
//! # What a graph holds
//!
//! One replica of a layout, for one or both phases (the estimate's step
//! that carries a prompt and its decode step, `phase_step`: the steps
//! `moeplan estimate` costs, each a separate connected component). For each pipeline
//! stage and layer, every op of `ops.rs` becomes a node placed on GPUs
//! (`Granularity::Op`), or each layer becomes one node (`Granularity::Layer`):
//! norms, attention projections and core, router, EP dispatch, the expert
//! GEMMs of each EP rank (with the expert slots it hosts, redundant ones
//! included), EP combine, shared experts or dense MLP, TP collectives,
//! attention-DP gather/scatter, then the PP send/recv to the next stage;
//! the embedding on the first stage and the LM head and sampling on the
//! last. Edges are data dependencies labelled with the bytes handed over.
//!
//! Ops on one GPU run one after another in stream order: the cost model
//! assumes no overlap inside a GPU, so the graph chains them, and the only
//! parallelism is across GPUs (ranks doing the same op at the same time).
//! Every rank of a step does the same work except the expert GEMMs (each EP
//! rank hosts different experts; its time is the busiest rank's, load
//! imbalance included, as in the cost model). Ranks doing identical work
//! are collapsed into one node with a multiplicity unless `expand` is set.
//!
//! # Rank order
//!
//! Global GPU id = node × gpus_per_node + local GPU. The graph shows
//! replica 0 (GPUs `0..layout.gpus()`; replica r is offset by r × that).
//! Inside a replica ids are pipeline-stage-major, then attention DP, then
//! CP, then TP: `id = ((stage·dp + dp_rank)·cp + cp_rank)·tp + tp_rank`.
//! The MoE block folds onto the same GPUs of a stage with ETP fastest, then
//! EP, then expert DP: `id − stage·gpus_per_stage = (edp_rank·ep +
//! ep_rank)·etp + etp_rank` (Megatron's order; vLLM and SGLang use the same
//! TP-fastest order for their ranks). Expert slot `j` lives on EP rank
//! `j / (slots / ep)` and holds expert `j mod n_experts`: slots past the
//! expert count are the redundant (EPLB) replicas, whose experts the
//! balancer picks at run time.
//!
//! # Groups
//!
//! `tp` groups: the GPUs of a stage with the same (dp, cp) ranks. `ep`
//! groups: the GPUs of a stage with the same expert-DP rank (`ep × etp`
//! GPUs: the all-to-all spans them, and the attention-DP gather/scatter of
//! an expert-TP layout too). `pp` groups: a GPU and the GPU with the same
//! (dp, cp, tp) ranks on the next stage.

pub mod check;
pub mod export;

use crate::layout::{Layout, LayoutProblem};
use crate::model::{Ffn, Model};
use crate::ops::{Bound, CostContext, ExchangeSide, Op, OpKind, Placement, StepCost, StepShape};
use crate::serving::{estimate, EstimateInput};
use crate::units::{Bytes, Flop, Seconds};
use serde::Serialize;

pub(crate) use check::PhaseReport;
pub use check::{check, Diagnostic, Report, Severity};

/// A step drawn as a graph.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// One chunk of prompt tokens per attention-DP rank.
    Prefill,
    /// One decode step of the running batch.
    Decode,
}

impl Phase {
    /// Both phases, prefill first.
    pub const ALL: [Phase; 2] = [Phase::Prefill, Phase::Decode];

    /// The name used in ids and output.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
        }
    }
}

/// Which of the estimate's steps to draw (`moeplan dag --phase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steps {
    /// The step that carries a prompt.
    Prefill,
    /// The decode step.
    Decode,
    /// Both, each its own component.
    Both,
}

impl Steps {
    /// Every choice, in the order `--phase` lists them.
    pub const ALL: [Steps; 3] = [Steps::Prefill, Steps::Decode, Steps::Both];

    /// The `--phase` value.
    pub fn name(self) -> &'static str {
        match self {
            Steps::Prefill => "prefill",
            Steps::Decode => "decode",
            Steps::Both => "both",
        }
    }

    /// The phases drawn.
    pub fn phases(self) -> Vec<Phase> {
        match self {
            Steps::Prefill => vec![Phase::Prefill],
            Steps::Decode => vec![Phase::Decode],
            Steps::Both => Phase::ALL.to_vec(),
        }
    }
}

/// Level of detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One node per layer (communication inside it).
    Layer,
    /// One node per operator of `ops/`.
    Op,
}

impl Granularity {
    /// Both levels, coarse first.
    pub const ALL: [Granularity; 2] = [Granularity::Layer, Granularity::Op];

    /// The `--granularity` value (and the JSON name).
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Layer => "layer",
            Granularity::Op => "op",
        }
    }
}

/// What to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct DagOptions {
    /// Phases, each its own component of the graph.
    pub phases: Vec<Phase>,
    /// Layer or op nodes.
    pub granularity: Granularity,
    /// One node per GPU (compute) or per group (communication).
    pub expand: bool,
}

/// Compute or communication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Work on the GPU's own units and memory.
    Compute,
    /// A collective or point-to-point transfer.
    Communication,
}

pub use crate::ops::Role;
pub(crate) use crate::ops::{Collective, GroupKind};

/// A node's time split by what limits it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub(crate) struct TimeByBound {
    /// Tensor-core bound time.
    pub(crate) compute_s: Seconds,
    /// HBM bound time.
    pub(crate) memory_s: Seconds,
    /// Link bound time.
    pub(crate) communication_s: Seconds,
    /// Fixed costs (launch, latency).
    pub(crate) overhead_s: Seconds,
}

impl TimeByBound {
    /// An op's time, all of it under its bound but the fixed overhead.
    fn of(op: &Op) -> Self {
        let mut t = TimeByBound::default();
        let work = op.time - op.overhead;
        match op.bound {
            Bound::Compute => t.compute_s = work,
            Bound::Memory => t.memory_s = work,
            Bound::Communication => t.communication_s = work,
            Bound::Overhead => t.overhead_s = work,
        }
        t.overhead_s += op.overhead;
        t
    }
    /// Adds another split.
    pub(crate) fn add(&mut self, o: &TimeByBound) {
        self.compute_s += o.compute_s;
        self.memory_s += o.memory_s;
        self.communication_s += o.communication_s;
        self.overhead_s += o.overhead_s;
    }
    /// The sum.
    pub(crate) fn total(&self) -> Seconds {
        self.compute_s + self.memory_s + self.communication_s + self.overhead_s
    }
    /// The largest of compute, memory and communication.
    pub(crate) fn dominant(&self) -> Bound {
        let c = [
            (Bound::Compute, self.compute_s),
            (Bound::Memory, self.memory_s),
            (Bound::Communication, self.communication_s),
        ];
        c.iter()
            .fold((Bound::Overhead, Seconds::ZERO), |best, x| {
                if x.1 .0 > best.1 .0 {
                    *x
                } else {
                    best
                }
            })
            .0
    }
}

/// One GPU of the replica and its ranks.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Device {
    /// Global GPU id (node × gpus_per_node + local).
    pub id: u32,
    /// Node.
    pub node: u32,
    /// GPU within the node.
    pub local: u32,
    /// Pipeline stage.
    pub stage: u32,
    /// Attention-DP rank.
    pub dp: u32,
    /// CP rank.
    pub cp: u32,
    /// TP rank.
    pub tp: u32,
    /// Expert-DP rank.
    pub edp: u32,
    /// EP rank.
    pub ep: u32,
    /// Expert-TP rank.
    pub etp: u32,
    /// Expert slots hosted in each MoE layer (a 1/etp shard of each).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<u32>,
}

/// The ranks of GPU `id` of a replica in the documented order.
pub fn device(layout: &Layout, gpus_per_node: u32, id: u32) -> Device {
    let per_stage = layout.gpus_per_stage().max(1);
    let i = id % per_stage;
    let (ep, etp) = (layout.ep.max(1), layout.etp.max(1));
    Device {
        id,
        node: id / gpus_per_node.max(1),
        local: id % gpus_per_node.max(1),
        stage: id / per_stage,
        dp: i / (layout.tp * layout.cp).max(1),
        cp: (i / layout.tp.max(1)) % layout.cp.max(1),
        tp: i % layout.tp.max(1),
        edp: i / (ep * etp),
        ep: (i / etp) % ep,
        etp: i % etp,
        slots: Vec::new(),
    }
}

/// A communication group.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Group {
    /// Stable id, e.g. `tp.s0.dp1.cp0`, `ep.s1.edp0`, `pp.s0.r3`.
    pub id: String,
    /// Kind.
    pub kind: GroupKind,
    /// Stage (the sending stage for `pp`).
    pub stage: u32,
    /// GPU ids, ascending.
    pub gpus: Vec<u32>,
    /// Whether its GPUs span more than one node.
    pub(crate) crosses_nodes: bool,
}

/// An operator placed on GPUs.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Node {
    /// Stable id: `phase/sS/L<layer>/<op>[/epR][/gG | /<group>]`.
    pub id: String,
    /// Phase.
    pub phase: Phase,
    /// Pipeline stage (the sending one for a PP transfer).
    pub stage: u32,
    /// Layer index in the model, if the node belongs to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<u32>,
    /// The op's name in `ops.rs` (`layer` for a whole layer, `pp_send_recv`).
    pub op: String,
    /// Compute or communication.
    pub kind: NodeKind,
    /// Part of the model.
    pub role: Role,
    /// The GPUs it runs on.
    pub gpus: Vec<u32>,
    /// Identical instances it stands for: GPUs (compute) or groups (communication).
    pub(crate) multiplicity: u32,
    /// The collective (communication nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collective: Option<Collective>,
    /// Ids of the groups taking part (communication nodes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// EP rank (expert nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ep_rank: Option<u32>,
    /// Expert slots of the EP rank (expert nodes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<u32>,
    /// The expert each slot holds (same order as `slots`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub experts: Vec<u32>,
    /// Predicted time of one instance.
    pub time_s: Seconds,
    /// FLOP of one instance.
    pub flop: Flop,
    /// HBM bytes (link bytes for communication) of one instance.
    pub bytes: Bytes,
    /// What limits it.
    pub bound: Bound,
    /// Its time by bound.
    pub(crate) time_by_bound: TimeByBound,
    /// Bytes handed to each successor (per GPU).
    #[serde(skip)]
    pub(crate) out_bytes: Bytes,
    /// Position of the node within its layer (for folding identical layers).
    #[serde(skip)]
    pub(crate) layer_pos: u32,
}

/// A data dependency.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Edge {
    /// Index of the producing node.
    pub from: usize,
    /// Index of the consuming node.
    pub to: usize,
    /// Bytes handed over, per GPU.
    pub bytes: Bytes,
}

/// One phase as the cost model sees it.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PhaseInfo {
    /// Phase.
    pub phase: Phase,
    /// The estimate's step drawn.
    pub kind: crate::serving::steps::StepKind,
    /// The step drawn.
    pub description: String,
    /// Its shape per attention-DP rank.
    pub shape: StepShape,
    /// `CostContext::step(shape).traversal()`: one micro-batch through every stage.
    pub step_time_s: Seconds,
    /// The estimate's time of this step (`PhaseCost::time`): every
    /// micro-batch through the pipeline, under the engine's serving layer
    /// (its fitted scales and per-step overhead); TTFT and TPOT are built
    /// from it.
    pub engine_step_s: Seconds,
    /// Time of each stage.
    pub(crate) stage_times_s: Vec<Seconds>,
    /// PP send/recv between consecutive stages.
    pub(crate) stage_transfer_s: Seconds,
}

/// A pipeline stage.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct StageInfo {
    /// Index.
    pub stage: u32,
    /// First layer.
    pub(crate) first_layer: u32,
    /// One past the last layer.
    pub(crate) end_layer: u32,
    /// Its GPUs.
    pub gpus: Vec<u32>,
}

/// The graph of one replica.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Dag {
    /// Model name.
    pub model: String,
    /// GPU id.
    pub gpu: String,
    /// Layout of the replica.
    pub layout: Layout,
    /// GPUs per node.
    pub gpus_per_node: u32,
    /// Level of detail.
    pub granularity: Granularity,
    /// Whether identical ranks were kept apart.
    pub expanded: bool,
    /// Layers of the model.
    pub n_layers: u32,
    /// MoE layers.
    pub moe_layers: Vec<u32>,
    /// Routed experts per MoE layer (0 for a dense model).
    pub n_experts: u32,
    /// Expert slots per MoE layer (experts + redundant).
    pub n_slots: u32,
    /// Load imbalance applied to the expert GEMMs.
    pub load_imbalance: f64,
    /// Stages.
    pub stages: Vec<StageInfo>,
    /// Phases drawn.
    pub phases: Vec<PhaseInfo>,
    /// GPUs.
    pub devices: Vec<Device>,
    /// Communication groups.
    pub groups: Vec<Group>,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Edges.
    pub edges: Vec<Edge>,
    /// The user profile in use (`--profile`), set by the caller that knows
    /// the deployment's mode: its serving layer, when it applies, is in each
    /// phase's `engine_step_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::ProfileUse>,
}

/// The estimate's step a phase draws: its decode step (the steady running
/// batch of one attention-DP rank), or the step that carries a prompt as the
/// engine schedules it (a chunk beside the running decodes for a mixed
/// scheduler, a batch of whole prompts for a prefill-first one). The DAG
/// draws what the estimate costs; it shapes no step of its own.
pub fn phase_step(phase: Phase, est: &crate::serving::Estimate) -> &crate::serving::PhaseCost {
    match phase {
        Phase::Decode => &est.decode,
        Phase::Prefill => &est.prefill,
    }
}

/// Builds the graph of a deployment. Fails only for an invalid layout.
pub fn build(inp: &EstimateInput, opts: &DagOptions) -> Result<Dag, Vec<LayoutProblem>> {
    let est = estimate(inp)?;
    let mut seen = Vec::new();
    let steps: Vec<(Phase, &crate::serving::PhaseCost)> = opts
        .phases
        .iter()
        .filter(|p| {
            let first = !seen.contains(*p);
            seen.push(**p);
            first
        })
        .map(|&p| (p, phase_step(p, &est)))
        .collect();
    Ok(build_steps(inp, opts, &steps, est.load_imbalance.used))
}

/// Builds the graph of `inp`'s layout drawing the given named steps, one per
/// phase: what `build` does with its own estimate's steps, and what a pool
/// of a disaggregated deployment draws with the disaggregated estimate's
/// step of that pool (its prefill batch, or its pure decode step).
pub fn build_steps(
    inp: &EstimateInput,
    opts: &DagOptions,
    steps: &[(Phase, &crate::serving::PhaseCost)],
    load_imbalance: f64,
) -> Dag {
    let m = inp.model;
    let l = inp.layout;
    let mut b = Builder::new(m, inp.gpu.gpus_per_node, l, inp.redundant_experts, opts);
    b.dag.gpu = inp.gpu.id.clone();
    b.dag.load_imbalance = load_imbalance;
    for &(phase, named) in steps {
        let shape = named.shape;
        let ctx = CostContext::new(
            m,
            inp.gpu,
            l,
            inp.redundant_experts,
            named.load_imbalance,
            &inp.calibration,
        );
        let step = ctx.step(&shape);
        b.phase(&ctx, phase, &shape, &step);
        b.dag.phases.push(PhaseInfo {
            phase,
            kind: named.kind,
            description: named.description.clone(),
            shape,
            step_time_s: step.traversal(),
            engine_step_s: named.time,
            stage_times_s: step.stage_times.clone(),
            stage_transfer_s: step.stage_transfer,
        });
    }
    b.dag
}

/// What an op of `ops.rs` is in the graph.
enum Class {
    Compute(Role),
    Experts,
    Comm(Role, Collective, GroupKind),
}

/// How an op of `kind` is placed: by its role and placement in `ops.rs`.
fn classify(kind: OpKind) -> Class {
    match (kind.role(), kind.placement()) {
        (Role::Experts, _) => Class::Experts,
        (role, Placement::Compute) => Class::Compute(role),
        (role, Placement::Communication(c, group)) => Class::Comm(role, c, group),
    }
}

/// The ops of one layer in data order: the token exchange of the MoE block
/// wraps the expert GEMMs (`ops.rs` lists it after them).
fn data_order(ops: &[Op]) -> Vec<&Op> {
    let side = |o: &&Op, s: ExchangeSide| o.kind.exchange_side() == s;
    if !ops.iter().any(|o| o.kind == OpKind::MoeExperts) {
        return ops.iter().collect();
    }
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        if op.kind.exchange_side() != ExchangeSide::None {
            continue;
        }
        if op.kind == OpKind::MoeExperts {
            out.extend(ops.iter().filter(|o| side(o, ExchangeSide::Before)));
            out.push(op);
            out.extend(ops.iter().filter(|o| side(o, ExchangeSide::After)));
        } else {
            out.push(op);
        }
    }
    out
}

/// Builds the graph of one replica step by step, chaining each step to the
/// previous one on the GPUs they share.
struct Builder<'a> {
    model: &'a Model,
    opts: &'a DagOptions,
    per_stage: u32,
    /// The groups of each stage, by kind.
    stage_groups: StageGroups,
    /// Node indices of the previous step of the chain.
    prev: Vec<usize>,
    /// GPU → node of the step being connected.
    owner: Vec<usize>,
    dag: Dag,
}

impl<'a> Builder<'a> {
    /// A graph of the replica with its stages, GPUs and groups, and no node yet.
    fn new(
        m: &'a Model,
        gpus_per_node: u32,
        l: Layout,
        redundant: u32,
        opts: &'a DagOptions,
    ) -> Self {
        let ranges = l.stages(m);
        let per_stage = l.gpus_per_stage();
        let n_gpus = per_stage * ranges.len() as u32;
        let n_experts = m.moe.as_ref().map_or(0, |x| x.n_routed_experts as u32);
        let n_slots = if n_experts > 0 {
            n_experts + l.redundant_slots(redundant)
        } else {
            0
        };
        let devices = devices_of(&l, gpus_per_node, n_gpus, n_slots);
        let GroupTable {
            groups, by_stage, ..
        } = GroupTable::of(&l, &devices, gpus_per_node, ranges.len() as u32);
        Builder {
            model: m,
            opts,
            per_stage,
            stage_groups: by_stage,
            prev: Vec::new(),
            owner: vec![usize::MAX; n_gpus as usize],
            dag: Dag {
                model: m.name.clone(),
                gpu: String::new(),
                layout: l,
                gpus_per_node,
                granularity: opts.granularity,
                expanded: opts.expand,
                n_layers: m.n_layers() as u32,
                moe_layers: moe_layers(m),
                n_experts,
                n_slots,
                load_imbalance: 0.0,
                stages: stage_infos(&ranges, per_stage),
                phases: Vec::new(),
                devices,
                groups,
                nodes: Vec::new(),
                edges: Vec::new(),
                profile: None,
            },
        }
    }

    /// The GPUs of stage `s`.
    fn stage_gpus(&self, s: u32) -> Vec<u32> {
        (s * self.per_stage..(s + 1) * self.per_stage).collect()
    }

    /// Connects the previous step to `next` wherever they share a GPU.
    fn link(&mut self, next: Vec<usize>) {
        if next.is_empty() {
            return;
        }
        for &n in &next {
            for &g in &self.dag.nodes[n].gpus {
                self.owner[g as usize] = n;
            }
        }
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for &p in &self.prev {
            for &g in &self.dag.nodes[p].gpus {
                let n = self.owner[g as usize];
                if n != usize::MAX {
                    pairs.push((p, n));
                }
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        for (from, to) in pairs {
            let bytes = self.dag.nodes[from].out_bytes;
            self.dag.edges.push(Edge { from, to, bytes });
        }
        for &n in &next {
            for &g in &self.dag.nodes[n].gpus {
                self.owner[g as usize] = usize::MAX;
            }
        }
        self.prev = next;
    }

    /// Adds node `id` doing `work` at `at` on `gpus` (over the groups of
    /// `comm` for a communication node) and returns its index.
    fn push(
        &mut self,
        id: String,
        at: &At,
        work: &Work,
        gpus: Vec<u32>,
        comm: Option<(Collective, Vec<usize>)>,
    ) -> usize {
        let (collective, groups) = match comm {
            Some((c, g)) => (
                Some(c),
                g.iter()
                    .map(|i| self.dag.groups[*i].id.clone())
                    .collect::<Vec<_>>(),
            ),
            None => (None, Vec::new()),
        };
        let multiplicity = if collective.is_some() {
            groups.len() as u32
        } else {
            gpus.len() as u32
        };
        let Cost {
            time_s,
            flop,
            bytes,
            split,
        } = work.cost;
        self.dag.nodes.push(Node {
            id,
            phase: at.phase,
            stage: at.stage,
            layer: at.layer,
            op: work.op.to_string(),
            kind: if collective.is_some() {
                NodeKind::Communication
            } else {
                NodeKind::Compute
            },
            role: work.role,
            gpus,
            multiplicity,
            collective,
            groups,
            ep_rank: None,
            slots: Vec::new(),
            experts: Vec::new(),
            time_s,
            flop,
            bytes,
            bound: split.dominant(),
            time_by_bound: split,
            out_bytes: work.out_bytes,
            layer_pos: at.pos,
        });
        self.dag.nodes.len() - 1
    }

    /// Compute nodes named `base` on `gpus`: one, or one per GPU (`base/gG`) when expanded.
    fn compute_nodes(&mut self, base: &str, at: &At, work: &Work, gpus: Vec<u32>) -> Vec<usize> {
        if self.opts.expand {
            gpus.iter()
                .map(|&g| self.push(format!("{base}/g{g}"), at, work, vec![g], None))
                .collect()
        } else {
            vec![self.push(base.to_string(), at, work, gpus, None)]
        }
    }

    /// One step of the chain run by every GPU of the stage (one node, or one per GPU).
    fn compute_step(&mut self, at: &At, work: &Work) {
        let gpus = self.stage_gpus(at.stage);
        let ids = self.compute_nodes(&format!("{}/{}", at.prefix, work.op), at, work, gpus);
        self.link(ids);
    }

    /// One collective over every `kind` group of the stage (one node, or one per group).
    fn comm_step(&mut self, at: &At, work: &Work, collective: Collective, kind: GroupKind) {
        let groups = self.stage_groups.of(kind, at.stage);
        let sets: Vec<Vec<usize>> = if self.opts.expand {
            groups.iter().map(|g| vec![*g]).collect()
        } else {
            vec![groups]
        };
        let mut ids = Vec::with_capacity(sets.len());
        for set in sets {
            let mut gpus: Vec<u32> = set
                .iter()
                .flat_map(|g| self.dag.groups[*g].gpus.iter().copied())
                .collect();
            gpus.sort_unstable();
            gpus.dedup();
            let id = if self.opts.expand {
                format!("{}/{}/{}", at.prefix, work.op, self.dag.groups[set[0]].id)
            } else {
                format!("{}/{}", at.prefix, work.op)
            };
            ids.push(self.push(id, at, work, gpus, Some((collective, set))));
        }
        self.link(ids);
    }

    /// The expert GEMMs of each EP rank of the stage, with the slots it hosts.
    fn expert_step(&mut self, at: &At, work: &Work) {
        let l = self.dag.layout;
        let per_rank = self.dag.n_slots / l.ep.max(1);
        let n_experts = self.dag.n_experts.max(1);
        let mut ids = Vec::new();
        for r in 0..l.ep {
            let gpus: Vec<u32> = self
                .stage_gpus(at.stage)
                .into_iter()
                .filter(|g| self.dag.devices[*g as usize].ep == r)
                .collect();
            let base = format!("{}/{}/ep{r}", at.prefix, work.op);
            for n in self.compute_nodes(&base, at, work, gpus) {
                let slots: Vec<u32> = (r * per_rank..(r + 1) * per_rank).collect();
                let node = &mut self.dag.nodes[n];
                node.ep_rank = Some(r);
                node.experts = slots.iter().map(|x| x % n_experts).collect();
                node.slots = slots;
                ids.push(n);
            }
        }
        self.link(ids);
    }

    /// Bytes of the hidden state of the tokens on one GPU, and of the rows
    /// one EP rank's experts receive.
    fn activations(&self, shape: &StepShape) -> (Bytes, Bytes) {
        let m = self.model;
        let l = self.dag.layout;
        let h = m.hidden_size as f64;
        let t = shape.tokens() / l.cp as f64;
        let k = m.moe.as_ref().map_or(0, |x| x.experts_per_token) as f64;
        let group_tokens = t * (l.dp * l.cp) as f64 / l.edp() as f64;
        let rows = group_tokens * k / l.ep as f64;
        (Bytes(t * h * 2.0), Bytes(rows * h * 2.0))
    }

    /// The ops of one part of a stage as steps: one node, or one per op.
    fn part(&mut self, at: &At, ops: &[Op], part: Part, shape: &StepShape) {
        match self.opts.granularity {
            Granularity::Layer => self.part_step(at, ops, part, shape),
            Granularity::Op => self.op_steps(at, ops, shape),
        }
    }

    /// A whole part as one compute step, its ops' costs summed in order.
    fn part_step(&mut self, at: &At, ops: &[Op], part: Part, shape: &StepShape) {
        let (hidden, _) = self.activations(shape);
        let work = Work {
            op: part.name(),
            role: part.role(),
            cost: Cost::sum(ops),
            out_bytes: hidden,
        };
        self.compute_step(&At { pos: 0, ..*at }, &work);
    }

    /// Each op of a part as its own step, in data order.
    fn op_steps(&mut self, at: &At, ops: &[Op], shape: &StepShape) {
        let activations = self.activations(shape);
        for (pos, op) in data_order(ops).into_iter().enumerate() {
            let at = At {
                pos: pos as u32,
                ..*at
            };
            let out_bytes = self.handed_on(op.kind, at.phase, shape, activations);
            let work = |role| Work {
                op: op.kind.name(),
                role,
                cost: Cost::of(op),
                out_bytes,
            };
            match classify(op.kind) {
                Class::Compute(role) => self.compute_step(&at, &work(role)),
                Class::Experts => self.expert_step(&at, &work(Role::Experts)),
                Class::Comm(role, c, kind) => self.comm_step(&at, &work(role), c, kind),
            }
        }
    }

    /// Bytes an op of `kind` hands to each successor per GPU: the routed rows
    /// around the experts, the logits after the LM head, else the hidden state.
    fn handed_on(
        &self,
        kind: OpKind,
        phase: Phase,
        shape: &StepShape,
        (hidden, rows): (Bytes, Bytes),
    ) -> Bytes {
        let vocab = self.model.vocab_size as f64;
        let tp = self.dag.layout.tp as f64;
        let rows_sampled = match phase {
            Phase::Decode => shape.decode_seqs,
            Phase::Prefill => shape.sampled(),
        }
        .max(1.0);
        match kind {
            OpKind::EpDispatch | OpKind::DpAllGather | OpKind::MoeExperts => rows,
            OpKind::LmHead => Bytes(rows_sampled * vocab / tp * 4.0),
            OpKind::LogitsAllGather => Bytes(rows_sampled * vocab * 4.0),
            _ => hidden,
        }
    }

    /// The steps of one phase: every stage in order.
    fn phase(&mut self, ctx: &CostContext, phase: Phase, shape: &StepShape, step: &StepCost) {
        self.prev.clear();
        for s in 0..self.dag.stages.len() {
            self.stage(ctx, phase, s, shape, step);
        }
    }

    /// The steps of stage `s`: embedding (first stage), layers, LM head (last
    /// stage), then the PP transfer to the next stage.
    fn stage(
        &mut self,
        ctx: &CostContext,
        phase: Phase,
        s: usize,
        shape: &StepShape,
        step: &StepCost,
    ) {
        let n = self.dag.stages.len();
        let p = phase.name();
        let parts = ctx.stage_parts(s, shape);
        let extra: Vec<&Vec<Op>> = parts
            .iter()
            .filter(|x| x.0.is_none())
            .map(|x| &x.1)
            .collect();
        let (emb, head) = match (s == 0, s + 1 == n) {
            (true, true) => (extra.first(), extra.get(1)),
            (true, false) => (extra.first(), None),
            (false, true) => (None, extra.first()),
            (false, false) => (None, None),
        };
        let st = s as u32;
        let prefix = format!("{p}/s{st}");
        let at = At {
            prefix: &prefix,
            phase,
            stage: st,
            layer: None,
            pos: 0,
        };
        if let Some(ops) = emb {
            self.part(&at, ops, Part::Embedding, shape);
        }
        let range = self.dag.stages[s].first_layer..self.dag.stages[s].end_layer;
        for li in range {
            let layer = self.model.layers[li as usize];
            if let Some((_, ops)) = parts.iter().find(|x| x.0 == Some(layer)) {
                let prefix = format!("{p}/s{st}/L{li}");
                let at = At {
                    prefix: &prefix,
                    layer: Some(li),
                    ..at
                };
                self.part(&at, ops, Part::Layer, shape);
            }
        }
        if let Some(ops) = head {
            self.part(&at, ops, Part::LmHead, shape);
        }
        if s + 1 < n {
            self.pp_transfer(&at, shape, step);
        }
    }

    /// The PP send/recv of the hidden state from the stage to the next.
    fn pp_transfer(&mut self, at: &At, shape: &StepShape, step: &StepCost) {
        let (hidden, _) = self.activations(shape);
        let t = step.stage_transfer;
        let split = TimeByBound {
            communication_s: t,
            ..TimeByBound::default()
        };
        let work = Work {
            op: "pp_send_recv",
            role: Role::PpTransfer,
            cost: Cost {
                time_s: t,
                flop: Flop::ZERO,
                bytes: hidden,
                split,
            },
            out_bytes: hidden,
        };
        self.comm_step(at, &work, Collective::SendRecv, GroupKind::Pp);
    }
}

/// A part of a stage: the embedding, a layer, or the LM head (and sampling).
#[derive(Clone, Copy)]
enum Part {
    Embedding,
    Layer,
    LmHead,
}

impl Part {
    /// The op name of its node at layer granularity.
    fn name(self) -> &'static str {
        match self {
            Part::Embedding => "embedding",
            Part::Layer => "layer",
            Part::LmHead => "lm_head",
        }
    }

    /// The role of its node at layer granularity.
    fn role(self) -> Role {
        match self {
            Part::Embedding => Role::Embedding,
            Part::Layer => Role::Layer,
            Part::LmHead => Role::LmHead,
        }
    }
}

/// Where a step of the chain sits: its node ids' prefix, phase, stage, layer
/// and position in the layer.
#[derive(Clone, Copy)]
struct At<'p> {
    prefix: &'p str,
    phase: Phase,
    stage: u32,
    layer: Option<u32>,
    pos: u32,
}

/// What a step does: its op, role, the cost of one instance and the bytes it hands on.
struct Work<'o> {
    op: &'o str,
    role: Role,
    cost: Cost,
    out_bytes: Bytes,
}

/// The cost of one instance of a node.
#[derive(Clone, Copy)]
struct Cost {
    time_s: Seconds,
    flop: Flop,
    bytes: Bytes,
    split: TimeByBound,
}

impl Cost {
    /// The cost of an op of `ops.rs`.
    fn of(op: &Op) -> Self {
        Cost {
            time_s: op.time,
            flop: op.flop,
            bytes: op.bytes,
            split: TimeByBound::of(op),
        }
    }

    /// The summed cost of `ops`, added in order.
    fn sum(ops: &[Op]) -> Self {
        let mut split = TimeByBound::default();
        let (mut time_s, mut flop, mut bytes) = (Seconds::ZERO, Flop::ZERO, Bytes::ZERO);
        for op in ops {
            time_s += op.time;
            flop += op.flop;
            bytes += op.bytes;
            split.add(&TimeByBound::of(op));
        }
        Cost {
            time_s,
            flop,
            bytes,
            split,
        }
    }
}

/// The GPUs of a replica of `n_gpus`, each with the expert slots it hosts.
fn devices_of(l: &Layout, gpus_per_node: u32, n_gpus: u32, n_slots: u32) -> Vec<Device> {
    let per_rank = n_slots / l.ep.max(1);
    (0..n_gpus)
        .map(|id| {
            let mut d = device(l, gpus_per_node, id);
            if n_slots > 0 {
                d.slots = (d.ep * per_rank..(d.ep + 1) * per_rank).collect();
            }
            d
        })
        .collect()
}

/// The stages of a replica: their layer ranges and GPUs.
fn stage_infos(ranges: &[std::ops::Range<usize>], per_stage: u32) -> Vec<StageInfo> {
    ranges
        .iter()
        .enumerate()
        .map(|(s, r)| StageInfo {
            stage: s as u32,
            first_layer: r.start as u32,
            end_layer: r.end as u32,
            gpus: (s as u32 * per_stage..(s as u32 + 1) * per_stage).collect(),
        })
        .collect()
}

/// The indices of the MoE layers of a model.
fn moe_layers(m: &Model) -> Vec<u32> {
    m.layers
        .iter()
        .enumerate()
        .filter(|(_, x)| x.ffn == Ffn::Moe)
        .map(|(i, _)| i as u32)
        .collect()
}

/// Group indices of each stage: tp[stage][dp·cp + cp], ep[stage][edp], pp[stage][position].
struct StageGroups {
    tp: Vec<Vec<usize>>,
    ep: Vec<Vec<usize>>,
    pp: Vec<Vec<usize>>,
}

impl StageGroups {
    /// The groups of `kind` on stage `s`.
    fn of(&self, kind: GroupKind, s: u32) -> Vec<usize> {
        match kind {
            GroupKind::Tp => self.tp[s as usize].clone(),
            GroupKind::Ep => self.ep[s as usize].clone(),
            GroupKind::Pp => self.pp[s as usize].clone(),
        }
    }
}

/// The communication groups of a replica, in the order they are made, and
/// each stage's by kind.
struct GroupTable<'d> {
    devices: &'d [Device],
    gpus_per_node: u32,
    groups: Vec<Group>,
    by_stage: StageGroups,
}

impl<'d> GroupTable<'d> {
    /// The groups of every stage, stage by stage: TP, then EP, then PP.
    fn of(l: &Layout, devices: &'d [Device], gpus_per_node: u32, n_stages: u32) -> Self {
        let mut t = GroupTable {
            devices,
            gpus_per_node,
            groups: Vec::new(),
            by_stage: StageGroups {
                tp: Vec::new(),
                ep: Vec::new(),
                pp: Vec::new(),
            },
        };
        for s in 0..n_stages {
            let tp = t.tp_groups(l, s);
            t.by_stage.tp.push(tp);
            let ep = t.ep_groups(l, s);
            t.by_stage.ep.push(ep);
            let pp = t.pp_groups(l, s, n_stages);
            t.by_stage.pp.push(pp);
        }
        t
    }

    /// Adds a group and returns its index.
    fn add(&mut self, id: String, kind: GroupKind, stage: u32, gpus: Vec<u32>) -> usize {
        let first = gpus[0] / self.gpus_per_node.max(1);
        let crosses_nodes = gpus.iter().any(|g| g / self.gpus_per_node.max(1) != first);
        self.groups.push(Group {
            id,
            kind,
            stage,
            gpus,
            crosses_nodes,
        });
        self.groups.len() - 1
    }

    /// The ids of the GPUs of stage `s` that `keep` picks.
    fn stage_gpus(&self, s: u32, keep: impl Fn(&Device) -> bool) -> Vec<u32> {
        self.devices
            .iter()
            .filter(|d| d.stage == s && keep(d))
            .map(|d| d.id)
            .collect()
    }

    /// The TP groups of stage `s`: one per (dp, cp) ranks.
    fn tp_groups(&mut self, l: &Layout, s: u32) -> Vec<usize> {
        let mut tp = Vec::new();
        for dp in 0..l.dp {
            for cp in 0..l.cp {
                let gpus = self.stage_gpus(s, |d| d.dp == dp && d.cp == cp);
                tp.push(self.add(format!("tp.s{s}.dp{dp}.cp{cp}"), GroupKind::Tp, s, gpus));
            }
        }
        tp
    }

    /// The EP groups of stage `s`: one per expert-DP rank.
    fn ep_groups(&mut self, l: &Layout, s: u32) -> Vec<usize> {
        let mut ep = Vec::new();
        for edp in 0..l.edp() {
            let gpus = self.stage_gpus(s, |d| d.edp == edp);
            ep.push(self.add(format!("ep.s{s}.edp{edp}"), GroupKind::Ep, s, gpus));
        }
        ep
    }

    /// The PP pairs from stage `s` to the next: one per GPU position (none on the last stage).
    fn pp_groups(&mut self, l: &Layout, s: u32, n_stages: u32) -> Vec<usize> {
        let per_stage = l.gpus_per_stage();
        let mut pp = Vec::new();
        if s + 1 < n_stages {
            for r in 0..per_stage {
                let a = s * per_stage + r;
                pp.push(self.add(
                    format!("pp.s{s}.r{r}"),
                    GroupKind::Pp,
                    s,
                    vec![a, a + per_stage],
                ));
            }
        }
        pp
    }
}

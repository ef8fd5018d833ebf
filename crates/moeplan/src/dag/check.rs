//! Validation of a deployment graph (`moeplan dag --check`), and the
//! figures of its summary (critical path, busiest GPU).
//!
//! Every rule yields diagnostics naming the node (or GPU, or group) at
//! fault; nothing here panics on a malformed graph. Rules:
//!
//! - `cycle`: the graph is acyclic;
//! - `layer_missing`, `layer_stages`, `wrong_stage`: every layer has nodes,
//!   all on one stage, and a node's GPUs belong to its stage;
//! - `expert_slots`, `expert_missing`, `expert_rank`: in every MoE layer,
//!   for every copy of the expert set (expert-DP rank) and every expert-TP
//!   shard, each slot is hosted exactly once, each expert at least once, and
//!   on the EP rank the node says;
//! - `idle_gpu`: every GPU computes in every phase drawn;
//! - `group_shape`, `group_kind`, `group_cover`, `group_straddles`: each
//!   collective spans exactly the group the layout gives it (TP: same stage,
//!   dp and cp ranks, every tp rank once; EP: same stage and expert-DP rank,
//!   every (ep, etp) pair once; PP: the same (dp, cp, tp) ranks on
//!   consecutive stages), its groups cover its GPUs, and a group that fits in
//!   a node sits in one (warning: the cost model priced NVLink);
//! - `critical_path`, `stage_time`: the longest path of each phase (one
//!   micro-batch through every stage, PP transfers included) equals the cost
//!   model's `StepCost::traversal` within 1%, and its part in each stage the
//!   stage's time;
//! - `unknown_op`: an op of `ops.rs` this module does not place yet (warning).

use super::{
    Collective, Dag, Group, GroupKind, Node, NodeKind, Phase, PhaseInfo, Role, TimeByBound,
};
use crate::units::Seconds;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;
use std::collections::BTreeMap;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The graph is wrong: `--check` fails.
    Error,
    /// Valid but suspicious.
    Warning,
}

/// One violated rule.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable rule code.
    pub rule: &'static str,
    /// The node at fault (its id), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What is wrong, with the numbers.
    pub message: String,
}

/// The figures of one phase.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PhaseReport {
    /// Phase.
    pub phase: Phase,
    /// Nodes of the phase.
    pub nodes: usize,
    /// Edges of the phase.
    pub edges: usize,
    /// Time of the longest path.
    pub critical_path_s: Seconds,
    /// The cost model's step time (`traversal`).
    pub model_time_s: Seconds,
    /// Node ids of the longest path, in order.
    pub path: Vec<String>,
    /// The longest path's time by bound.
    pub(crate) path_by_bound: TimeByBound,
    /// The GPU with the most busy time (lowest id on ties).
    pub(crate) busiest_gpu: u32,
    /// Its busy time (sum of the nodes it takes part in).
    pub(crate) busiest_gpu_time_s: Seconds,
}

/// The outcome of `check`.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// Every violation, errors first, in a fixed order.
    pub diagnostics: Vec<Diagnostic>,
    /// Per phase.
    pub phases: Vec<PhaseReport>,
}

impl Report {
    /// No errors (warnings allowed).
    pub fn ok(&self) -> bool {
        self.errors() == 0
    }
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// Relative tolerance between the graph's critical path and the cost model.
pub(crate) const TOLERANCE: f64 = 0.01;

/// The diagnostics found so far, in discovery order.
struct Diags(Vec<Diagnostic>);

impl Diags {
    /// Records a violated rule.
    fn error(&mut self, rule: &'static str, node: Option<&str>, message: String) {
        self.0.push(Diagnostic {
            severity: Severity::Error,
            rule,
            node: node.map(String::from),
            message,
        });
    }
    /// Records a suspicious but valid finding.
    fn warning(&mut self, rule: &'static str, node: Option<&str>, message: String) {
        self.0.push(Diagnostic {
            severity: Severity::Warning,
            rule,
            node: node.map(String::from),
            message,
        });
    }
}

/// Checks every rule and computes the summary figures.
pub fn check(dag: &Dag) -> Report {
    let mut d = Diags(Vec::new());
    let n = dag.nodes.len();
    let n_gpus = dag.devices.len();
    for node in &dag.nodes {
        if let Some(g) = node.gpus.iter().find(|g| **g as usize >= n_gpus) {
            d.error(
                "unknown_gpu",
                Some(&node.id),
                format!("GPU {g} is not one of the {n_gpus} GPUs of the layout"),
            );
        }
    }
    for e in &dag.edges {
        if e.from >= n || e.to >= n {
            d.error(
                "edge",
                None,
                format!("edge {} → {} names a missing node", e.from, e.to),
            );
        }
    }
    if d.0.iter().any(|x| x.severity == Severity::Error) {
        return finish(d, Vec::new());
    }
    check_layers(dag, &mut d);
    check_experts(dag, &mut d);
    check_idle(dag, &mut d);
    check_groups(dag, &mut d);
    let phases = critical_paths(dag, &mut d);
    finish(d, phases)
}

/// The report: diagnostics in a stable order, and the phase figures.
fn finish(mut d: Diags, phases: Vec<PhaseReport>) -> Report {
    // Stable: errors first, then by rule, keeping discovery order within.
    d.0.sort_by(|a, b| a.severity.cmp(&b.severity).then(a.rule.cmp(b.rule)));
    Report {
        diagnostics: d.0,
        phases,
    }
}

/// Checks that every layer has nodes, all on one stage, running on that stage's GPUs.
fn check_layers(dag: &Dag, d: &mut Diags) {
    for p in &dag.phases {
        let mut stage_of: Vec<Option<(u32, usize)>> = vec![None; dag.n_layers as usize];
        for (i, node) in dag.nodes.iter().enumerate() {
            if node.phase != p.phase {
                continue;
            }
            if node.role != Role::PpTransfer {
                if let Some(g) = node
                    .gpus
                    .iter()
                    .find(|g| dag.devices[**g as usize].stage != node.stage)
                {
                    d.error(
                        "wrong_stage",
                        Some(&node.id),
                        format!(
                            "runs on GPU {g}, which belongs to stage {}, not to its stage {}",
                            dag.devices[*g as usize].stage, node.stage
                        ),
                    );
                }
            }
            let Some(l) = node.layer else { continue };
            let Some(slot) = stage_of.get_mut(l as usize) else {
                d.error(
                    "layer_missing",
                    Some(&node.id),
                    format!("layer {l} does not exist (the model has {})", dag.n_layers),
                );
                continue;
            };
            match slot {
                None => *slot = Some((node.stage, i)),
                Some((s, first)) if *s != node.stage => d.error(
                    "layer_stages",
                    Some(&node.id),
                    format!(
                        "layer {l} is on stage {} here and on stage {s} at {}",
                        node.stage, dag.nodes[*first].id
                    ),
                ),
                Some(_) => {}
            }
        }
        for (l, s) in stage_of.iter().enumerate() {
            if s.is_none() {
                d.error(
                    "layer_missing",
                    None,
                    format!("layer {l} has no node in the {} step", p.phase.name()),
                );
            }
        }
    }
}

/// Checks that each MoE layer hosts every slot once and every expert at
/// least once, per copy of the expert set and expert-TP shard.
fn check_experts(dag: &Dag, d: &mut Diags) {
    if dag.n_slots == 0 || dag.moe_layers.is_empty() {
        return;
    }
    if dag.nodes.iter().any(|x| x.role == Role::Experts) {
        check_expert_nodes(dag, d);
    } else {
        check_expert_devices(dag, d);
    }
}

/// Checks the expert nodes (op granularity) of each MoE layer of each phase.
fn check_expert_nodes(dag: &Dag, d: &mut Diags) {
    for p in &dag.phases {
        for &layer in &dag.moe_layers {
            let mut counts = SlotCounts::new(dag);
            let mut at: Option<&str> = None;
            for node in dag
                .nodes
                .iter()
                .filter(|x| x.phase == p.phase && x.layer == Some(layer) && x.role == Role::Experts)
            {
                at.get_or_insert(&node.id);
                check_expert_node(dag, node, d);
                for &g in &node.gpus {
                    counts.add(g, &node.slots);
                }
            }
            if at.is_none() {
                d.error(
                    "expert_missing",
                    None,
                    format!(
                        "MoE layer {layer} has no expert node in the {} step",
                        p.phase.name()
                    ),
                );
                continue;
            }
            counts.verify(d, layer, p.phase.name(), at);
        }
    }
}

/// Errors where an expert node's slots, experts or EP rank disagree with the layout.
fn check_expert_node(dag: &Dag, node: &Node, d: &mut Diags) {
    let n_experts = dag.n_experts.max(1);
    if node.slots.len() != node.experts.len() {
        d.error(
            "expert_slots",
            Some(&node.id),
            format!(
                "lists {} slots but {} experts",
                node.slots.len(),
                node.experts.len()
            ),
        );
    }
    for (s, e) in node.slots.iter().zip(&node.experts) {
        if *e >= n_experts || *e != s % n_experts {
            d.error(
                "expert_slots",
                Some(&node.id),
                format!("slot {s} holds expert {e}, not expert {}", s % n_experts),
            );
        }
    }
    for &g in &node.gpus {
        if node.ep_rank != Some(dag.devices[g as usize].ep) {
            d.error(
                "expert_rank",
                Some(&node.id),
                format!(
                    "GPU {g} is EP rank {} but the node is EP rank {:?}",
                    dag.devices[g as usize].ep, node.ep_rank
                ),
            );
        }
    }
}

/// Checks the slots the GPUs host (layer granularity): layer nodes share one
/// placement (`devices`), so the first phase is enough.
fn check_expert_devices(dag: &Dag, d: &mut Diags) {
    let Some(p) = dag.phases.first() else {
        return;
    };
    for &layer in &dag.moe_layers {
        let Some(stage) = dag
            .stages
            .iter()
            .find(|s| (s.first_layer..s.end_layer).contains(&layer))
        else {
            continue;
        };
        let mut counts = SlotCounts::new(dag);
        for &g in &stage.gpus {
            counts.add(g, &dag.devices[g as usize].slots);
        }
        counts.verify(d, layer, p.phase.name(), None);
    }
}

/// How many times one MoE layer hosts each slot, per shard: one row per
/// (expert-DP rank, expert-TP rank), `edp · etp + etp` in the layout's order.
struct SlotCounts<'a> {
    dag: &'a Dag,
    counts: Vec<Vec<u32>>,
}

impl<'a> SlotCounts<'a> {
    /// No slot hosted yet.
    fn new(dag: &'a Dag) -> Self {
        let l = dag.layout;
        let shards = (l.edp() * l.etp) as usize;
        SlotCounts {
            dag,
            counts: vec![vec![0u32; dag.n_slots as usize]; shards],
        }
    }

    /// Counts `slots` once more on the shard of GPU `g` (unknown slots ignored).
    fn add(&mut self, g: u32, slots: &[u32]) {
        let dev = &self.dag.devices[g as usize];
        let shard = (dev.edp * self.dag.layout.etp + dev.etp) as usize;
        for &s in slots {
            if let Some(c) = self.counts[shard].get_mut(s as usize) {
                *c += 1;
            }
        }
    }

    /// Errors for each slot of a shard not hosted exactly once, and for the
    /// first expert of a shard hosted nowhere.
    fn verify(&self, d: &mut Diags, layer: u32, what: &str, at: Option<&str>) {
        let etp = self.dag.layout.etp;
        let n_experts = self.dag.n_experts.max(1);
        for (k, c) in self.counts.iter().enumerate() {
            let (edp, etp) = (k as u32 / etp, k as u32 % etp);
            for (slot, n) in c.iter().enumerate() {
                if *n != 1 {
                    d.error(
                        "expert_slots",
                        at,
                        format!(
                            "{what}: layer {layer}, expert copy edp{edp} shard etp{etp}: slot {slot} is hosted {n} times, not once"
                        ),
                    );
                }
            }
            let mut hosted = vec![false; n_experts as usize];
            for (slot, n) in c.iter().enumerate() {
                if *n > 0 {
                    hosted[slot % n_experts as usize] = true;
                }
            }
            if let Some(e) = hosted.iter().position(|h| !h) {
                d.error(
                    "expert_missing",
                    at,
                    format!("{what}: layer {layer}, expert copy edp{edp} shard etp{etp}: expert {e} is hosted nowhere"),
                );
            }
        }
    }
}

/// Checks that every GPU computes in every phase.
fn check_idle(dag: &Dag, d: &mut Diags) {
    for p in &dag.phases {
        let mut busy = vec![false; dag.devices.len()];
        for node in dag
            .nodes
            .iter()
            .filter(|x| x.phase == p.phase && x.kind == NodeKind::Compute)
        {
            for &g in &node.gpus {
                busy[g as usize] = true;
            }
        }
        for (g, b) in busy.iter().enumerate() {
            if !b {
                d.error(
                    "idle_gpu",
                    None,
                    format!("GPU {g} computes nothing in the {} step", p.phase.name()),
                );
            }
        }
    }
}

/// Checks that each collective runs over groups of the kind and shape the
/// layout gives it, and that they cover exactly its GPUs.
fn check_groups(dag: &Dag, d: &mut Diags) {
    let mut groups = GroupUse::new(dag);
    for node in dag
        .nodes
        .iter()
        .filter(|x| x.kind == NodeKind::Communication)
    {
        let Some(want) = expected_group(node, d) else {
            continue;
        };
        let mut cover: Vec<u32> = Vec::new();
        for gid in &node.groups {
            groups.check(node, gid, want, &mut cover, d);
        }
        cover.sort_unstable();
        cover.dedup();
        if cover != node.gpus {
            d.error(
                "group_cover",
                Some(&node.id),
                format!(
                    "its groups cover GPUs {cover:?}, the node runs on {:?}",
                    node.gpus
                ),
            );
        }
    }
}

/// The kind of group a communication node runs over (an error, and none,
/// for a role that does not communicate; an error for an all-reduce of experts).
fn expected_group(node: &Node, d: &mut Diags) -> Option<GroupKind> {
    let want = match node.role {
        Role::TpCollective => GroupKind::Tp,
        Role::EpDispatch | Role::EpCombine | Role::DpGather | Role::DpScatter => GroupKind::Ep,
        Role::PpTransfer => GroupKind::Pp,
        _ => {
            d.error(
                "group_kind",
                Some(&node.id),
                format!("a {:?} node should not communicate", node.role),
            );
            return None;
        }
    };
    if want == GroupKind::Ep && node.collective == Some(Collective::AllReduce) {
        d.error(
            "group_kind",
            Some(&node.id),
            "an expert exchange is an all-to-all or gather/scatter, not an all-reduce".into(),
        );
    }
    Some(want)
}

/// The graph's groups by id, and which have had their shape checked (once each).
struct GroupUse<'a> {
    dag: &'a Dag,
    by_id: BTreeMap<&'a str, usize>,
    shape_checked: Vec<bool>,
}

impl<'a> GroupUse<'a> {
    /// Indexes the groups of `dag`.
    fn new(dag: &'a Dag) -> Self {
        let by_id = dag
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.id.as_str(), i))
            .collect();
        GroupUse {
            dag,
            by_id,
            shape_checked: vec![false; dag.groups.len()],
        }
    }

    /// Checks group `gid` of communication node `node`, which wants a `want`
    /// group, and adds the group's GPUs to `cover`.
    fn check(
        &mut self,
        node: &Node,
        gid: &str,
        want: GroupKind,
        cover: &mut Vec<u32>,
        d: &mut Diags,
    ) {
        let dag = self.dag;
        let Some(&gi) = self.by_id.get(gid) else {
            d.error(
                "group_shape",
                Some(&node.id),
                format!("group {gid} does not exist"),
            );
            return;
        };
        let g = &dag.groups[gi];
        cover.extend(&g.gpus);
        if g.kind != want {
            d.error(
                "group_kind",
                Some(&node.id),
                format!(
                    "runs over {} group {gid}, expected a {:?} group",
                    format!("{:?}", g.kind).to_lowercase(),
                    want
                ),
            );
            return;
        }
        if node.role != Role::PpTransfer && g.stage != node.stage {
            d.error(
                "group_shape",
                Some(&node.id),
                format!(
                    "group {gid} is on stage {}, the node on stage {}",
                    g.stage, node.stage
                ),
            );
        }
        if self.shape_checked[gi] {
            return;
        }
        self.shape_checked[gi] = true;
        check_group_shape(dag, node, g, d);
    }
}

/// Errors when group `g` (first met at `node`) is not the group the layout
/// gives its GPUs; warns when it spans nodes though it would fit in one.
fn check_group_shape(dag: &Dag, node: &Node, g: &Group, d: &mut Diags) {
    let gid = &g.id;
    if let Some(msg) = group_shape(dag, g.kind, &g.gpus, g.stage) {
        d.error("group_shape", Some(&node.id), format!("group {gid}: {msg}"));
    }
    let nodes_of: Vec<u32> = g
        .gpus
        .iter()
        .map(|x| dag.devices[*x as usize].node)
        .collect();
    let straddles = nodes_of.iter().any(|x| *x != nodes_of[0]);
    if straddles && (g.gpus.len() as u32) <= dag.gpus_per_node && g.kind != GroupKind::Pp {
        d.warning(
            "group_straddles",
            Some(&node.id),
            format!(
                "group {gid} ({} GPUs) would fit in a node of {} but spans nodes {:?}: the cost model priced it on NVLink",
                g.gpus.len(),
                dag.gpus_per_node,
                { let mut v = nodes_of.clone(); v.dedup(); v }
            ),
        );
    }
}

/// Why a group's GPUs are not the group the layout gives them, if they are not.
fn group_shape(dag: &Dag, kind: GroupKind, gpus: &[u32], stage: u32) -> Option<String> {
    let l = dag.layout;
    let devs: Vec<&super::Device> = gpus.iter().map(|g| &dag.devices[*g as usize]).collect();
    let first = devs.first()?;
    match kind {
        GroupKind::Tp => {
            if devs.len() as u32 != l.tp {
                return Some(format!("{} GPUs, but tp = {}", devs.len(), l.tp));
            }
            if let Some(x) = devs
                .iter()
                .find(|x| x.stage != stage || x.dp != first.dp || x.cp != first.cp)
            {
                return Some(format!(
                    "GPU {} (stage {}, dp {}, cp {}) is not in the TP group of GPU {} (stage {stage}, dp {}, cp {})",
                    x.id, x.stage, x.dp, x.cp, first.id, first.dp, first.cp
                ));
            }
            let mut r: Vec<u32> = devs.iter().map(|x| x.tp).collect();
            r.sort_unstable();
            (r != (0..l.tp).collect::<Vec<_>>()).then(|| format!("tp ranks {r:?}, not 0..{}", l.tp))
        }
        GroupKind::Ep => {
            if devs.len() as u32 != l.ep * l.etp {
                return Some(format!(
                    "{} GPUs, but ep·etp = {}",
                    devs.len(),
                    l.ep * l.etp
                ));
            }
            if let Some(x) = devs.iter().find(|x| x.stage != stage || x.edp != first.edp) {
                return Some(format!(
                    "GPU {} (stage {}, edp {}) is not in the EP group of GPU {} (stage {stage}, edp {})",
                    x.id, x.stage, x.edp, first.id, first.edp
                ));
            }
            let mut r: Vec<u32> = devs.iter().map(|x| x.ep * l.etp + x.etp).collect();
            r.sort_unstable();
            (r != (0..l.ep * l.etp).collect::<Vec<_>>())
                .then(|| "each (ep, etp) rank pair must appear once".to_string())
        }
        GroupKind::Pp => {
            if devs.len() != 2 {
                return Some(format!("{} GPUs, a send/recv pairs 2", devs.len()));
            }
            let (a, b) = (devs[0], devs[1]);
            let same = a.dp == b.dp && a.cp == b.cp && a.tp == b.tp;
            (!(same && a.stage == stage && b.stage == stage + 1)).then(|| {
                format!(
                    "GPU {} (stage {}) and GPU {} (stage {}) are not the same rank on consecutive stages",
                    a.id, a.stage, b.id, b.stage
                )
            })
        }
    }
}

/// The figures of each phase, once the graph is known to be a DAG.
fn critical_paths(dag: &Dag, d: &mut Diags) -> Vec<PhaseReport> {
    let g = dependency_graph(dag, d);
    let order = match petgraph::algo::toposort(&g, None) {
        Ok(o) => o,
        Err(c) => {
            d.error(
                "cycle",
                Some(&dag.nodes[c.node_id().index()].id),
                "lies on a cycle: the graph is not a DAG".into(),
            );
            return Vec::new();
        }
    };
    let longest = Longest::of(dag, &g, order);
    dag.phases
        .iter()
        .filter_map(|p| phase_report(dag, p, &longest, d))
        .collect()
}

/// The edges as a petgraph graph; an edge between two phases is an error.
fn dependency_graph(dag: &Dag, d: &mut Diags) -> DiGraph<(), ()> {
    let n = dag.nodes.len();
    let mut g: DiGraph<(), ()> = DiGraph::with_capacity(n, dag.edges.len());
    for _ in 0..n {
        g.add_node(());
    }
    for e in &dag.edges {
        if dag.nodes[e.from].phase != dag.nodes[e.to].phase {
            d.error(
                "phase_edge",
                Some(&dag.nodes[e.from].id),
                format!(
                    "has an edge into {}, a node of another phase",
                    dag.nodes[e.to].id
                ),
            );
        }
        g.add_edge(NodeIndex::new(e.from), NodeIndex::new(e.to), ());
    }
    g
}

/// The longest node-weighted path ending at each node.
struct Longest {
    /// Its time.
    finish: Vec<Seconds>,
    /// The node before it on the path (`usize::MAX` where the path starts).
    pred: Vec<usize>,
}

impl Longest {
    /// Walks the nodes in topological `order`, keeping the lowest index on ties.
    fn of(dag: &Dag, g: &DiGraph<(), ()>, order: Vec<NodeIndex>) -> Self {
        let n = dag.nodes.len();
        let mut finish = vec![Seconds::ZERO; n];
        let mut pred = vec![usize::MAX; n];
        for v in order {
            let i = v.index();
            let mut best = Seconds::ZERO;
            for u in g.neighbors_directed(v, petgraph::Direction::Incoming) {
                let j = u.index();
                let better = pred[i] == usize::MAX
                    || finish[j].0 > best.0
                    || (finish[j].0 == best.0 && j < pred[i]);
                if better {
                    best = finish[j];
                    pred[i] = j;
                }
            }
            finish[i] = best + dag.nodes[i].time_s;
        }
        Longest { finish, pred }
    }

    /// The path ending at `end`, first node first.
    fn path_to(&self, end: usize) -> Vec<usize> {
        let mut path = vec![end];
        while self.pred[*path.last().expect("non-empty")] != usize::MAX {
            path.push(self.pred[*path.last().expect("non-empty")]);
        }
        path.reverse();
        path
    }
}

/// The figures of one phase (an error and none when it has no nodes).
fn phase_report(dag: &Dag, p: &PhaseInfo, longest: &Longest, d: &mut Diags) -> Option<PhaseReport> {
    let n = dag.nodes.len();
    let members: Vec<usize> = (0..n).filter(|i| dag.nodes[*i].phase == p.phase).collect();
    let edges = dag
        .edges
        .iter()
        .filter(|e| dag.nodes[e.from].phase == p.phase)
        .count();
    let finish = &longest.finish;
    let Some(&end) = members
        .iter()
        .max_by(|a, b| finish[**a].0.total_cmp(&finish[**b].0).then(b.cmp(a)))
    else {
        d.error(
            "critical_path",
            None,
            format!("the {} step has no nodes", p.phase.name()),
        );
        return None;
    };
    let path = longest.path_to(end);
    let cp = finish[end];
    check_path_time(dag, p, &path, cp, d);
    let mut by_bound = TimeByBound::default();
    for i in &path {
        by_bound.add(&dag.nodes[*i].time_by_bound);
    }
    let (busiest, busiest_time) = busiest_gpu(dag, &members);
    Some(PhaseReport {
        phase: p.phase,
        nodes: members.len(),
        edges,
        critical_path_s: cp,
        model_time_s: p.step_time_s,
        path: path.iter().map(|i| dag.nodes[*i].id.clone()).collect(),
        path_by_bound: by_bound,
        busiest_gpu: busiest as u32,
        busiest_gpu_time_s: busiest_time.max(Seconds::ZERO),
    })
}

/// Errors when the critical path `path` (of time `cp`) is not the cost
/// model's step time, and then for each stage whose part differs.
fn check_path_time(dag: &Dag, p: &PhaseInfo, path: &[usize], cp: Seconds, d: &mut Diags) {
    let end = *path.last().expect("a path has an end");
    let model = p.step_time_s;
    let rel = if model.0 > 0.0 {
        (cp.0 - model.0).abs() / model.0
    } else {
        cp.0.abs()
    };
    // NaN (a broken time) fails too.
    if !(rel.is_nan() || rel > TOLERANCE) {
        return;
    }
    d.error(
        "critical_path",
        Some(&dag.nodes[end].id),
        format!(
            "the {} step's critical path is {cp}, the cost model's step {model} ({:+.2}%)",
            p.phase.name(),
            (cp.0 / model.0 - 1.0) * 100.0
        ),
    );
    for (s, want) in p.stage_times_s.iter().enumerate() {
        let on: Vec<usize> = path
            .iter()
            .copied()
            .filter(|i| dag.nodes[*i].stage == s as u32 && dag.nodes[*i].role != Role::PpTransfer)
            .collect();
        let got: Seconds = on.iter().map(|i| dag.nodes[*i].time_s).sum();
        if want.0 > 0.0 && ((got.0 - want.0) / want.0).abs() > TOLERANCE {
            d.error(
                "stage_time",
                on.first().map(|i| dag.nodes[*i].id.as_str()),
                format!("stage {s}: the path spends {got} there, the cost model {want}"),
            );
        }
    }
}

/// The GPU with the most busy time over the nodes `members`, and that time:
/// the first of equal times (GPU 0 when there is none).
fn busiest_gpu(dag: &Dag, members: &[usize]) -> (usize, Seconds) {
    let mut busy = vec![Seconds::ZERO; dag.devices.len()];
    for i in members {
        for &gpu in &dag.nodes[*i].gpus {
            busy[gpu as usize] += dag.nodes[*i].time_s;
        }
    }
    busy.iter()
        .copied()
        .enumerate()
        .reduce(|b, (i, t)| if t.0 > b.1 .0 { (i, t) } else { b })
        .unwrap_or((0, Seconds::ZERO))
}

//! Renderings of a deployment graph: JSON, Graphviz DOT, Mermaid, and the
//! text summary.
//!
//! # JSON (`moeplan dag --format json`, schema `moeplan-dag/1`)
//!
//! Base units throughout (seconds, FLOP, bytes).
//!
//! - `schema`, `model`, `gpu`, `layout` (`pp tp cp dp ep etp`), `gpus_per_node`,
//!   `granularity` (`layer`|`op`), `expanded`, `rank_order` (the formula),
//!   `load_imbalance` (applied to the expert GEMMs), `n_experts`, `n_slots`;
//! - `stages`: `{stage, first_layer, end_layer, gpus}`;
//! - `phases`: `{phase, description, shape, step_time_s, stage_times_s,
//!   stage_transfer_s, critical_path_s, path, path_by_bound, busiest_gpu,
//!   busiest_gpu_time_s, nodes, edges}`: the cost model's figures and the
//!   graph's;
//! - `devices`: `{id, node, local, stage, dp, cp, tp, edp, ep, etp, slots}`;
//! - `groups`: `{id, kind (tp|ep|pp), stage, gpus, crosses_nodes}`;
//! - `nodes`: `{id, phase, stage, layer?, op, kind (compute|communication),
//!   role, gpus, multiplicity, collective?, groups?, ep_rank?, slots?,
//!   experts?, time_s, flop, bytes, bound, time_by_bound}`; time, FLOP and
//!   bytes are those of one instance (one GPU, or one group);
//! - `edges`: `{from, to, bytes}` with node ids; bytes handed over per GPU
//!   (the bf16 hidden state of its tokens; routed rows into and out of the
//!   experts; logits after the LM head);
//! - `check`: `{ok, errors, warnings, diagnostics: [{severity, rule, node?, message}]}`.
//!
//! # DOT and Mermaid
//!
//! Clustered by phase and stage (and GPU when expanded); communication is
//! orange with a dashed border, PP transfers are arrows between stages.
//! Unless `fold_layers` is off, consecutive identical layers of a stage are
//! drawn once and labelled with their range (`L3–L60 ×58`): the graph's
//! JSON always has every layer.

use super::{Dag, Node, NodeKind, Phase, PhaseInfo, PhaseReport, Report, Role};
use crate::ops::Bound;
use crate::units::Bytes;
use std::collections::BTreeSet;
use std::fmt::Write;

/// The rank order, as written in the JSON.
pub(crate) const RANK_ORDER: &str = "global id = node * gpus_per_node + local; in a replica id = ((stage*dp + dp_rank)*cp + cp_rank)*tp + tp_rank; MoE: id - stage*gpus_per_stage = (edp_rank*ep + ep_rank)*etp + etp_rank; slot j on EP rank j / (slots/ep) holds expert j mod n_experts";

/// The formats a graph is written in (`moeplan dag --format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `output::DagOutput` (schema `moeplan-dag/1`).
    Json,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

impl Format {
    /// Every format, in the order `--format` lists them.
    pub const ALL: [Format; 3] = [Format::Json, Format::Dot, Format::Mermaid];

    /// The `--format` value.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Dot => "dot",
            Format::Mermaid => "mermaid",
        }
    }
}

/// Options of the drawn formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewOptions {
    /// Draw runs of identical consecutive layers once.
    pub fold_layers: bool,
}

/// The nodes and edges drawn.
struct View {
    /// Dag node indices drawn, in order.
    nodes: Vec<usize>,
    /// For each dag node: the layer range it stands for.
    layers: Vec<Option<(u32, u32)>>,
    /// Edges between drawn nodes.
    edges: Vec<(usize, usize, Bytes)>,
}

/// The nodes and edges drawn: all of them, or with runs of identical layers folded.
fn view(dag: &Dag, opts: ViewOptions) -> View {
    if !opts.fold_layers {
        return identity_view(dag);
    }
    Folding::of(dag).view()
}

/// Every node and edge, each layer standing for itself.
fn identity_view(dag: &Dag) -> View {
    View {
        nodes: (0..dag.nodes.len()).collect(),
        layers: dag
            .nodes
            .iter()
            .map(|x| x.layer.map(|l| (l, l + 1)))
            .collect(),
        edges: dag.edges.iter().map(|e| (e.from, e.to, e.bytes)).collect(),
    }
}

/// Runs of identical consecutive layers inside a stage, from the nodes
/// themselves: a layer joins the previous one's run when its op sequence
/// is the same. Every table is indexed `[phase index][layer]`.
struct Folding<'a> {
    dag: &'a Dag,
    /// The first node of the layer (`usize::MAX` if it has none).
    first: Vec<Vec<usize>>,
    /// The first layer of its run.
    start: Vec<Vec<usize>>,
    /// One past the last layer of its run.
    end: Vec<Vec<usize>>,
}

impl<'a> Folding<'a> {
    /// The runs of every phase of `dag`.
    fn of(dag: &'a Dag) -> Self {
        let first = first_nodes(dag);
        let start = run_starts(dag, &first);
        let end = run_ends(&start);
        Folding {
            dag,
            first,
            start,
            end,
        }
    }

    /// The node drawn for node `i`: itself, or its counterpart in the first
    /// layer of its run.
    fn rep(&self, i: usize) -> usize {
        let node = &self.dag.nodes[i];
        match node.layer {
            None => i,
            Some(l) => {
                let p = phase_index(self.dag, node.phase);
                let s = self.start[p][l as usize];
                self.first[p][s] + (i - self.first[p][l as usize])
            }
        }
    }

    /// The nodes drawn, and the layer range each dag node stands for.
    fn nodes(&self) -> (Vec<usize>, Vec<Option<(u32, u32)>>) {
        let mut layers = vec![None; self.dag.nodes.len()];
        let mut nodes = Vec::new();
        for (i, node) in self.dag.nodes.iter().enumerate() {
            if self.rep(i) == i {
                nodes.push(i);
                layers[i] = node.layer.map(|l| {
                    let p = phase_index(self.dag, node.phase);
                    (l, self.end[p][l as usize] as u32)
                });
            }
        }
        (nodes, layers)
    }

    /// The edges between drawn nodes, each once, leaving out those a fold
    /// turns into a loop or into an edge back within one drawn layer.
    fn edges(&self) -> Vec<(usize, usize, Bytes)> {
        let dag = self.dag;
        let mut seen = BTreeSet::new();
        let mut edges = Vec::new();
        for e in &dag.edges {
            let (a, b) = (self.rep(e.from), self.rep(e.to));
            let (la, lb) = (dag.nodes[e.from].layer, dag.nodes[e.to].layer);
            let folded_back = match (la, lb) {
                (Some(x), Some(y)) => x != y && dag.nodes[a].layer == dag.nodes[b].layer,
                _ => false,
            };
            if a == b || folded_back {
                continue;
            }
            if seen.insert((a, b)) {
                edges.push((a, b, e.bytes));
            }
        }
        edges
    }

    /// The folded view.
    fn view(&self) -> View {
        let (nodes, layers) = self.nodes();
        View {
            nodes,
            layers,
            edges: self.edges(),
        }
    }
}

/// The index of phase `p` in `dag.phases` (0 when it is not drawn).
fn phase_index(dag: &Dag, p: Phase) -> usize {
    dag.phases.iter().position(|x| x.phase == p).unwrap_or(0)
}

/// The first node of each layer in each phase (`usize::MAX` where none).
fn first_nodes(dag: &Dag) -> Vec<Vec<usize>> {
    let n_layers = dag.n_layers as usize;
    let mut first: Vec<Vec<usize>> = vec![vec![usize::MAX; n_layers + 1]; dag.phases.len()];
    for (i, node) in dag.nodes.iter().enumerate() {
        if let Some(l) = node.layer {
            let slot = &mut first[phase_index(dag, node.phase)][l as usize];
            if *slot == usize::MAX {
                *slot = i;
            }
        }
    }
    first
}

/// The nodes of layer `l` in the phase of index `p`: those following its
/// first node while they stay in the layer.
fn layer_nodes<'a>(dag: &'a Dag, first: &[Vec<usize>], p: usize, l: usize) -> &'a [Node] {
    let start = first[p][l];
    if start == usize::MAX {
        return &[];
    }
    let len = dag.nodes[start..]
        .iter()
        .take_while(|x| x.layer == Some(l as u32) && x.phase == dag.phases[p].phase)
        .count();
    &dag.nodes[start..start + len]
}

/// Whether two layers draw alike: the same ops on the same GPUs and stage, with the same times.
fn same_layer(a: &[Node], b: &[Node]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.op == y.op && x.gpus == y.gpus && x.time_s == y.time_s && x.stage == y.stage
        })
}

/// The first layer of the run of each layer, per phase.
fn run_starts(dag: &Dag, first: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n_layers = dag.n_layers as usize;
    let mut run_start = vec![vec![0usize; n_layers]; dag.phases.len()];
    for (p, starts) in run_start.iter_mut().enumerate() {
        for l in 0..n_layers {
            starts[l] = if l > 0
                && same_layer(
                    layer_nodes(dag, first, p, l - 1),
                    layer_nodes(dag, first, p, l),
                ) {
                starts[l - 1]
            } else {
                l
            };
        }
    }
    run_start
}

/// One past the last layer of the run of each layer, per phase.
fn run_ends(run_start: &[Vec<usize>]) -> Vec<Vec<usize>> {
    run_start
        .iter()
        .map(|starts| {
            let n_layers = starts.len();
            let mut ends = vec![0usize; n_layers];
            for l in (0..n_layers).rev() {
                ends[l] = if l + 1 < n_layers && starts[l + 1] == starts[l] {
                    ends[l + 1]
                } else {
                    l + 1
                };
            }
            ends
        })
        .collect()
}

/// `0–7, 16, 18–19`.
fn ranges(v: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if j == i {
            v[i].to_string()
        } else {
            format!("{}–{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// `L3` for one layer, `L3–L60 ×58` for a folded run.
fn layer_label(r: Option<(u32, u32)>) -> Option<String> {
    r.map(|(a, b)| {
        if b > a + 1 {
            format!("L{a}–L{} ×{}", b - 1, b - a)
        } else {
            format!("L{a}")
        }
    })
}

/// The name of a bound in labels.
fn bound_name(b: Bound) -> &'static str {
    match b {
        Bound::Compute => "compute",
        Bound::Memory => "memory",
        Bound::Communication => "communication",
        Bound::Overhead => "overhead",
    }
}

/// The lines of a node's label.
fn label_lines(dag: &Dag, node: &Node, layers: Option<(u32, u32)>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut head = node.op.clone();
    if let Some(l) = layer_label(layers) {
        head = format!("{l} {head}");
    }
    lines.push(head);
    if node.role == Role::Experts {
        let n_exp = dag.n_experts as usize;
        let (own, extra): (Vec<u32>, Vec<u32>) = node.slots.iter().zip(&node.experts).fold(
            (Vec::new(), Vec::new()),
            |mut acc, (s, e)| {
                if (*s as usize) < n_exp {
                    acc.0.push(*e);
                } else {
                    acc.1.push(*e);
                }
                acc
            },
        );
        let mut s = format!(
            "EP rank {}: experts {}",
            node.ep_rank.unwrap_or(0),
            ranges(&own)
        );
        if !extra.is_empty() {
            let _ = write!(s, " + redundant {}", ranges(&extra));
        }
        lines.push(s);
    }
    match node.kind {
        NodeKind::Communication => {
            let collective = node
                .collective
                .and_then(|c| serde_json::to_value(c).ok())
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let groups: Vec<String> = node
                .groups
                .iter()
                .filter_map(|id| dag.groups.iter().find(|g| &g.id == id))
                .map(|g| format!("[{}]", ranges(&g.gpus)))
                .collect();
            let shown = if groups.len() <= 4 {
                groups.join(" ")
            } else {
                format!(
                    "{} groups of {}",
                    groups.len(),
                    node.gpus.len() / groups.len().max(1)
                )
            };
            lines.push(format!("{collective} GPUs {shown}"));
        }
        NodeKind::Compute => {
            lines.push(if node.gpus.len() == 1 {
                format!("GPU {}", node.gpus[0])
            } else {
                format!("GPUs {} (×{})", ranges(&node.gpus), node.multiplicity)
            });
        }
    }
    lines.push(format!("{} · {}", node.time_s, bound_name(node.bound)));
    lines
}

/// A string quoted for a DOT label.
fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The DOT attributes of a node: shape and colours by kind, role and bound.
fn style(node: &Node) -> &'static str {
    match (node.kind, node.role, node.bound) {
        (_, Role::PpTransfer, _) => {
            "shape=box, peripheries=2, style=\"filled,bold\", fillcolor=\"#f4c7c3\", color=\"#b03a2e\""
        }
        (NodeKind::Communication, _, _) => {
            "shape=box, style=\"rounded,filled,dashed,bold\", fillcolor=\"#fde2c4\", color=\"#d9822b\""
        }
        (_, Role::Experts, _) => "style=\"rounded,filled\", fillcolor=\"#e4d7f5\", color=\"#7a4fb0\"",
        (_, _, Bound::Compute) => "style=\"rounded,filled\", fillcolor=\"#cfe0f5\", color=\"#4a7fb0\"",
        (_, _, Bound::Memory) => "style=\"rounded,filled\", fillcolor=\"#d5ecd4\", color=\"#4a8a4a\"",
        _ => "style=\"rounded,filled\", fillcolor=\"#eeeeee\", color=\"#888888\"",
    }
}

/// The title of stage `s`: its layers and GPUs.
fn stage_title(dag: &Dag, s: usize) -> String {
    let st = &dag.stages[s];
    format!(
        "stage {} · layers {}–{} · GPUs {}",
        st.stage,
        st.first_layer,
        st.end_layer.saturating_sub(1),
        ranges(&st.gpus)
    )
}

/// The title of the graph: model, GPUs, layout and level of detail.
fn title(dag: &Dag) -> String {
    format!(
        "{} on {} × {}, layout {} ({} granularity{})",
        dag.model,
        dag.devices.len(),
        dag.gpu,
        dag.layout,
        dag.granularity.name(),
        if dag.expanded {
            ", every rank"
        } else {
            ", identical ranks collapsed"
        }
    )
}

/// The drawn nodes of a phase on stage `st`, PP transfers left out.
fn stage_nodes(dag: &Dag, v: &View, phase: Phase, st: usize) -> Vec<usize> {
    v.nodes
        .iter()
        .copied()
        .filter(|i| {
            let x = &dag.nodes[*i];
            x.phase == phase && x.stage == st as u32 && x.role != Role::PpTransfer
        })
        .collect()
}

/// The drawn PP transfers of a phase.
fn transfer_nodes(dag: &Dag, v: &View, phase: Phase) -> Vec<usize> {
    v.nodes
        .iter()
        .copied()
        .filter(|i| dag.nodes[*i].phase == phase && dag.nodes[*i].role == Role::PpTransfer)
        .collect()
}

/// Graphviz DOT.
pub fn to_dot(dag: &Dag, opts: ViewOptions) -> String {
    let mut dot = Dot {
        dag,
        v: view(dag, opts),
        s: String::new(),
    };
    dot.header();
    for p in &dag.phases {
        dot.phase(p);
    }
    for (a, b, bytes) in &dot.v.edges {
        let _ = writeln!(dot.s, "  n{a} -> n{b} [label=\"{bytes}\"];");
    }
    let _ = writeln!(dot.s, "}}");
    dot.s
}

/// A DOT text being written for the drawn part of a graph.
struct Dot<'a> {
    dag: &'a Dag,
    v: View,
    s: String,
}

impl Dot<'_> {
    /// The opening line, the title and the graph, node and edge defaults.
    fn header(&mut self) {
        let s = &mut self.s;
        let _ = writeln!(s, "digraph moeplan {{");
        if let Some(p) = &self.dag.profile {
            let _ = writeln!(s, "  // {}", p.to_string().replace('\n', " "));
        }
        let _ = writeln!(
            s,
            "  graph [fontname=\"Helvetica\", fontsize=12, rankdir=TB, newrank=true, nodesep=0.3, ranksep=0.35, labelloc=t, labeljust=l, label=\"{}\"];",
            dot_escape(&title(self.dag))
        );
        let _ = writeln!(
            s,
            "  node [fontname=\"Helvetica\", fontsize=10, shape=box];"
        );
        let _ = writeln!(
            s,
            "  edge [fontname=\"Helvetica\", fontsize=8, color=\"#777777\", fontcolor=\"#555555\"];"
        );
    }

    /// The statement of node `i`, indented by `indent`.
    fn node(&mut self, indent: &str, i: usize) {
        let node = &self.dag.nodes[i];
        let label = label_lines(self.dag, node, self.v.layers[i])
            .iter()
            .map(|l| dot_escape(l))
            .collect::<Vec<_>>()
            .join("\\n");
        let _ = writeln!(self.s, "{indent}n{i} [label=\"{label}\", {}];", style(node));
    }

    /// The cluster of one phase: a cluster per stage, then the PP transfers.
    fn phase(&mut self, p: &PhaseInfo) {
        let _ = writeln!(self.s, "  subgraph cluster_{} {{", p.phase.name());
        let estimate = estimate_step(p).map_or(String::new(), |t| {
            format!("; the estimate's step {t}, under the engine's serving layer")
        });
        let _ = writeln!(
            self.s,
            "    label=\"{} ({} per micro-batch through every stage{estimate})\"; style=rounded; color=\"#999999\";",
            dot_escape(&p.description),
            p.step_time_s
        );
        for st in 0..self.dag.stages.len() {
            self.stage(p.phase, st);
        }
        for i in transfer_nodes(self.dag, &self.v, p.phase) {
            self.node("    ", i);
        }
        let _ = writeln!(self.s, "  }}");
    }

    /// The cluster of stage `st` of a phase; expanded, a cluster per GPU
    /// holds its own nodes and the nodes of several GPUs follow.
    fn stage(&mut self, phase: Phase, st: usize) {
        let dag = self.dag;
        let _ = writeln!(self.s, "    subgraph cluster_{}_s{st} {{", phase.name());
        let _ = writeln!(
            self.s,
            "      label=\"{}\"; style=\"rounded,filled\"; fillcolor=\"#f8f8f8\"; color=\"#bbbbbb\";",
            dot_escape(&stage_title(dag, st))
        );
        let mine = stage_nodes(dag, &self.v, phase, st);
        if dag.expanded {
            for &g in &dag.stages[st].gpus {
                self.gpu(phase, g, &mine);
            }
            for &i in mine.iter().filter(|i| dag.nodes[**i].gpus.len() != 1) {
                self.node("      ", i);
            }
        } else {
            for &i in &mine {
                self.node("      ", i);
            }
        }
        let _ = writeln!(self.s, "    }}");
    }

    /// The cluster of GPU `g` holding the nodes of `mine` that run on it alone (none if empty).
    fn gpu(&mut self, phase: Phase, g: u32, mine: &[usize]) {
        let dag = self.dag;
        let on: Vec<usize> = mine
            .iter()
            .copied()
            .filter(|i| dag.nodes[*i].gpus == [g])
            .collect();
        if on.is_empty() {
            return;
        }
        let d = &dag.devices[g as usize];
        let _ = writeln!(self.s, "      subgraph cluster_{}_g{g} {{", phase.name());
        let _ = writeln!(
            self.s,
            "        label=\"GPU {g} (node {} · local {})\"; style=rounded; color=\"#cccccc\";",
            d.node, d.local
        );
        for i in on {
            self.node("        ", i);
        }
        let _ = writeln!(self.s, "      }}");
    }
}

/// A string quoted for a Mermaid label.
fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// Mermaid flowchart.
pub fn to_mermaid(dag: &Dag, opts: ViewOptions) -> String {
    let v = view(dag, opts);
    let mut s = String::new();
    let _ = writeln!(s, "---\ntitle: \"{}\"\n---", mermaid_escape(&title(dag)));
    let _ = writeln!(s, "flowchart TD");
    if let Some(p) = &dag.profile {
        let _ = writeln!(s, "  %% {}", p.to_string().replace('\n', " "));
    }
    let node_line = |s: &mut String, indent: &str, i: usize| {
        let node = &dag.nodes[i];
        let label = mermaid_escape(&label_lines(dag, node, v.layers[i]).join("<br/>"));
        let (open, close) = match (node.kind, node.role) {
            (_, Role::PpTransfer) => (">", "]"),
            (NodeKind::Communication, _) => ("{{", "}}"),
            _ => ("[", "]"),
        };
        let _ = writeln!(s, "{indent}n{i}{open}\"{label}\"{close}");
    };
    for p in &dag.phases {
        let name = p.phase.name();
        let estimate = estimate_step(p).map_or(String::new(), |t| format!(" (estimate step {t})"));
        let _ = writeln!(
            s,
            "  subgraph {name}[\"{} · {}{estimate}\"]",
            mermaid_escape(&p.description),
            p.step_time_s
        );
        let _ = writeln!(s, "    direction TB");
        for st in 0..dag.stages.len() {
            let _ = writeln!(
                s,
                "    subgraph {name}_s{st}[\"{}\"]",
                mermaid_escape(&stage_title(dag, st))
            );
            let _ = writeln!(s, "      direction TB");
            for i in stage_nodes(dag, &v, p.phase, st) {
                node_line(&mut s, "      ", i);
            }
            let _ = writeln!(s, "    end");
        }
        for i in transfer_nodes(dag, &v, p.phase) {
            node_line(&mut s, "    ", i);
        }
        let _ = writeln!(s, "  end");
    }
    for (a, b, bytes) in &v.edges {
        let _ = writeln!(s, "  n{a} -->|\"{bytes}\"| n{b}");
    }
    let _ = writeln!(
        s,
        "  classDef comm fill:#fde2c4,stroke:#d9822b,stroke-dasharray:4 2"
    );
    let _ = writeln!(s, "  classDef experts fill:#e4d7f5,stroke:#7a4fb0");
    let _ = writeln!(s, "  classDef compute fill:#cfe0f5,stroke:#4a7fb0");
    for (class, pick) in [
        (
            "comm",
            &(|x: &Node| x.kind == NodeKind::Communication) as &dyn Fn(&Node) -> bool,
        ),
        ("experts", &|x: &Node| x.role == Role::Experts),
        ("compute", &|x: &Node| {
            x.kind == NodeKind::Compute && x.role != Role::Experts
        }),
    ] {
        let ids: Vec<String> = v
            .nodes
            .iter()
            .filter(|i| pick(&dag.nodes[**i]))
            .map(|i| format!("n{i}"))
            .collect();
        if !ids.is_empty() {
            let _ = writeln!(s, "  class {} {class}", ids.join(","));
        }
    }
    s
}

/// The estimate's time of a phase's step, where it says more than the
/// drawn micro-batch (under the neutral engine one micro-batch is the
/// whole step): the engine's serving layer, a user profile's when it applies.
fn estimate_step(p: &PhaseInfo) -> Option<crate::units::Seconds> {
    ((p.engine_step_s.0 - p.step_time_s.0).abs() > 1e-9 * p.step_time_s.0)
        .then_some(p.engine_step_s)
}

/// The text summary: counts, check outcome, the user profile in use, and
/// per phase the critical path with its share of compute, memory,
/// communication and fixed costs, and the busiest GPU.
pub fn summary(dag: &Dag, report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", title(dag));
    if let Some(p) = &dag.profile {
        let _ = writeln!(s, "  {p}");
    }
    let _ = writeln!(
        s,
        "  nodes {}, edges {}, devices {}, groups {}",
        dag.nodes.len(),
        dag.edges.len(),
        dag.devices.len(),
        dag.groups.len()
    );
    let _ = writeln!(
        s,
        "  check             {} ({} errors, {} warnings)",
        if report.ok() { "ok" } else { "FAILED" },
        report.errors(),
        report.warnings()
    );
    for r in &report.phases {
        if let Some(p) = dag.phases.iter().find(|p| p.phase == r.phase) {
            phase_summary(&mut s, dag, p, r, report.phases.len());
        }
    }
    for d in &report.diagnostics {
        let sev = match d.severity {
            super::Severity::Error => "error",
            super::Severity::Warning => "warning",
        };
        match &d.node {
            Some(n) => {
                let _ = writeln!(s, "{sev}[{}] {n}: {}", d.rule, d.message);
            }
            None => {
                let _ = writeln!(s, "{sev}[{}] {}", d.rule, d.message);
            }
        }
    }
    s
}

/// One phase's lines of the summary: critical path, the estimate's step,
/// the busiest GPU, and (when `phases` > 1 are drawn) the graph's size.
fn phase_summary(s: &mut String, dag: &Dag, p: &PhaseInfo, r: &PhaseReport, phases: usize) {
    let total = r.path_by_bound.total().0.max(f64::MIN_POSITIVE);
    let pct = |x: crate::units::Seconds| x.0 / total * 100.0;
    let _ = writeln!(s, "  {}: {}", p.phase.name(), p.description);
    let _ = writeln!(
        s,
        "    critical path   {} over {} nodes (cost model {}, {:+.2}%): compute {:.0}%, memory {:.0}%, communication {:.0}%, fixed costs {:.0}%",
        r.critical_path_s,
        r.path.len(),
        r.model_time_s,
        {
            let d = (r.critical_path_s.0 / r.model_time_s.0.max(f64::MIN_POSITIVE) - 1.0) * 100.0;
            // No "-0.00%" for a rounding-level difference.
            if d.abs() < 0.005 {
                0.0
            } else {
                d
            }
        },
        pct(r.path_by_bound.compute_s),
        pct(r.path_by_bound.memory_s),
        pct(r.path_by_bound.communication_s),
        pct(r.path_by_bound.overhead_s),
    );
    if let Some(t) = estimate_step(p) {
        let _ = writeln!(
            s,
            "    estimate step   {t} (the whole step: every micro-batch through the pipeline, under the engine's serving layer)",
        );
    }
    let d = &dag.devices[r.busiest_gpu as usize];
    let _ = writeln!(
        s,
        "    busiest GPU     {} (node {}, local {}, stage {}): busy {} of the {} path",
        d.id, d.node, d.local, d.stage, r.busiest_gpu_time_s, r.critical_path_s
    );
    if phases > 1 {
        let _ = writeln!(
            s,
            "    graph           {} nodes, {} edges",
            r.nodes, r.edges
        );
    }
}

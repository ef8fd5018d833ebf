//! Which layouts each engine can express, and how a replica is split over
//! nodes. The engines name degrees differently (`../shared/engines.md`):
//! - vLLM: GPUs = TP × DP × PP; `--enable-expert-parallel` makes EP = TP × DP,
//!   without it the experts are split tensor-parallel over those GPUs; no
//!   other expert folding can be written.
//! - SGLang: `--tp-size` is the stage's GPUs, attention TP = tp-size / dp-size
//!   under `--enable-dp-attention`; `--ep-size` any divisor, expert TP the rest.
//! - TensorRT-LLM: `--tp_size` is the stage's GPUs; attention DP
//!   (`enable_attention_dp`) makes attention TP 1, so DP > 1 needs TP = 1;
//!   `moe_expert_parallel_size × moe_tensor_parallel_size = tp_size`.
//!
//! No engine launched here serves context parallelism, and none splits the
//! experts of a stage into expert-data-parallel groups (EP × ETP = the stage).

use crate::engine::Engine;
use crate::hardware::Gpu;
use crate::layout::Layout;
use crate::model::Model;
use serde::Serialize;
use std::fmt;

/// A layout an engine cannot run: the rule, and the nearest valid layout
/// (same GPUs) that it can.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Refusal {
    /// The engine.
    pub engine: Engine,
    /// The layout asked for.
    pub layout: Layout,
    /// The rule it breaks.
    pub rule: String,
    /// The nearest layout of the same GPUs the engine can run, if any.
    pub nearest: Option<Layout>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cannot run {}: {}",
            self.engine.name(),
            self.layout,
            self.rule
        )?;
        match self.nearest {
            Some(n) => write!(f, "; the nearest layout it can run is {n}"),
            None => write!(f, "; no layout of these GPUs avoids it"),
        }
    }
}

/// How one replica sits on nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Split {
    /// Nodes one replica spans.
    pub nodes: u32,
    /// GPUs it uses on each of them.
    pub gpus_per_node: u32,
    /// vLLM data-parallel ranks per node (`--data-parallel-size-local`); 0
    /// where the replica is not split over nodes by DP ranks.
    pub(crate) dp_local: u32,
}

/// A rule of the engines a layout can break. The planner asks only which
/// (`expressible`, no allocation per layout); a refusal then words it and
/// lists the layouts that mend it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// CP > 1: no engine launched here serves context parallelism.
    ContextParallel,
    /// EP × ETP ≠ the stage: expert data parallelism cannot be written.
    ExpertDataParallel,
    /// vLLM: EP is TP × DP (`--enable-expert-parallel`) or the experts are
    /// tensor-parallel over all of them.
    VllmExpertFolding,
    /// TensorRT-LLM: attention DP makes attention TP 1.
    AttentionDpNeedsTp1,
    /// Attention DP with pipeline stages (vLLM, SGLang, TensorRT-LLM).
    DpWithPp,
    /// Redundant expert slots (EPLB) without EP: nothing to balance.
    EplbWithoutEp,
}

impl Rule {
    /// The rule in words, for this layout.
    fn describe(self, l: &Layout, redundant: u32) -> String {
        let stage = l.tp * l.cp * l.dp;
        match self {
            Rule::ContextParallel => "context parallelism (cp > 1) is not served by the engines moeplan launches".into(),
            Rule::ExpertDataParallel => format!("experts must fill each stage (ep {} × etp {} = {stage} GPUs); expert data parallelism is not expressible", l.ep, l.etp),
            Rule::VllmExpertFolding => format!("--enable-expert-parallel makes EP = TP × DP = {stage}, and without it the experts are split tensor-parallel over all {stage} GPUs: ep {} × etp {} cannot be written", l.ep, l.etp),
            Rule::AttentionDpNeedsTp1 => "attention DP (enable_attention_dp) makes attention TP 1, so dp > 1 needs tp = 1".into(),
            Rule::DpWithPp => "attention data parallelism with pipeline stages is not launched (each DP rank runs a whole model)".into(),
            Rule::EplbWithoutEp => format!("{redundant} redundant expert slots need expert parallelism (ep > 1)"),
        }
    }

    /// Layouts of the same GPUs that mend it, nearest first.
    fn mends(self, model: &Model, l: &Layout) -> Vec<Layout> {
        let stage = l.tp * l.cp * l.dp;
        match self {
            Rule::ContextParallel => {
                let folded = Layout {
                    tp: l.tp * l.cp,
                    cp: 1,
                    ..*l
                };
                vec![
                    folded,
                    Layout {
                        tp: 1,
                        dp: stage,
                        ..folded
                    },
                ]
            }
            Rule::ExpertDataParallel | Rule::VllmExpertFolding => expert_foldings(model, l),
            Rule::AttentionDpNeedsTp1 => vec![
                Layout {
                    tp: 1,
                    dp: stage,
                    ..*l
                },
                Layout {
                    tp: stage,
                    dp: 1,
                    ..*l
                },
            ],
            Rule::DpWithPp => vec![
                Layout {
                    dp: l.dp * l.pp,
                    pp: 1,
                    ep: l.ep * l.pp,
                    ..*l
                },
                Layout {
                    dp: 1,
                    tp: l.tp * l.dp,
                    ..*l
                },
            ],
            Rule::EplbWithoutEp => vec![Layout {
                ep: stage,
                etp: 1,
                ..*l
            }],
        }
    }
}

/// Whether `engine` can run `layout`; if not, the rule and the nearest
/// layout of the same GPUs that it can run and that is valid for the model.
pub fn check(
    engine: Engine,
    model: &Model,
    gpu: &Gpu,
    layout: &Layout,
    redundant_experts: u32,
) -> Result<(), Refusal> {
    let eplb_without_ep = engine != Engine::Neutral && redundant_experts > 0 && layout.ep == 1;
    let Some(rule) =
        broken(engine, model, layout).or(eplb_without_ep.then_some(Rule::EplbWithoutEp))
    else {
        return Ok(());
    };
    let nearest = rule.mends(model, layout).into_iter().find(|c| {
        broken(engine, model, c).is_none() && c.check(model, gpu, redundant_experts).0.is_empty()
    });
    Err(Refusal {
        engine,
        layout: *layout,
        rule: rule.describe(layout, redundant_experts),
        nearest,
    })
}

/// Whether `engine` can run `layout` (the neutral engine runs any).
pub fn expressible(engine: Engine, model: &Model, layout: &Layout) -> bool {
    broken(engine, model, layout).is_none()
}

/// The first rule of `engine` that `l` breaks.
fn broken(engine: Engine, model: &Model, l: &Layout) -> Option<Rule> {
    let stage = l.tp * l.cp * l.dp;
    let moe = model.moe.is_some();
    let vllm_folding = l.ep == 1 && l.etp == stage || l.ep == stage && l.etp == 1;
    match engine {
        _ if l.cp > 1 => Some(Rule::ContextParallel),
        Engine::Neutral => None,
        _ if moe && l.ep * l.etp != stage => Some(Rule::ExpertDataParallel),
        Engine::Vllm if moe && !vllm_folding => Some(Rule::VllmExpertFolding),
        Engine::Trtllm if l.dp > 1 && l.tp > 1 => Some(Rule::AttentionDpNeedsTp1),
        Engine::Vllm | Engine::Sglang | Engine::Trtllm if l.dp > 1 && l.pp > 1 => {
            Some(Rule::DpWithPp)
        }
        Engine::Vllm | Engine::Sglang | Engine::Trtllm => None,
    }
}

/// Expert foldings of a stage the engine can write: all expert-parallel,
/// then all tensor-parallel.
fn expert_foldings(model: &Model, l: &Layout) -> Vec<Layout> {
    let stage = l.tp * l.cp * l.dp;
    let all_ep = Layout {
        ep: stage,
        etp: 1,
        ..*l
    };
    let all_tp = Layout {
        ep: 1,
        etp: stage,
        ..*l
    };
    let experts = model.moe.as_ref().map_or(0, |m| m.n_routed_experts);
    if experts % stage as u64 == 0 {
        vec![all_ep, all_tp]
    } else {
        vec![all_tp, all_ep]
    }
}

/// How a replica of `l` is split over nodes of `gpus_per_node` GPUs.
pub fn split(engine: Engine, l: &Layout, gpus_per_node: u32) -> Result<Split, Refusal> {
    let gpus = l.gpus();
    let refuse = |rule: String| Refusal {
        engine,
        layout: *l,
        rule,
        nearest: None,
    };
    if gpus <= gpus_per_node {
        return Ok(Split {
            nodes: 1,
            gpus_per_node: gpus,
            dp_local: 0,
        });
    }
    if gpus % gpus_per_node != 0 {
        return Err(refuse(format!(
            "a replica of {gpus} GPUs spans nodes of {gpus_per_node} without filling them; multi-node replicas use whole nodes"
        )));
    }
    let nodes = gpus / gpus_per_node;
    let rank_gpus = l.tp * l.pp;
    let dp_local = match engine {
        Engine::Vllm if l.dp > 1 && gpus_per_node % rank_gpus != 0 => {
            return Err(refuse(format!(
                "vLLM places whole data-parallel ranks on a node: tp {} does not divide {gpus_per_node} GPUs",
                l.tp
            )))
        }
        Engine::Vllm if l.dp > 1 => gpus_per_node / rank_gpus,
        Engine::Vllm | Engine::Sglang | Engine::Trtllm | Engine::Neutral => 0,
    };
    Ok(Split {
        nodes,
        gpus_per_node,
        dp_local,
    })
}

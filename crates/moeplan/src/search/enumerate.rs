//! The layouts a search considers.

use super::Rejections;
use crate::layout::Layout;
use crate::spec::scenario::Scenario;

const PP: [u32; 5] = [1, 2, 4, 8, 16];

/// The widest replica searched. Published deployments stop well short of
/// it (DeepSeek's decode units span 144 GPUs, its widest EP 320; SGLang's
/// 72; Kimi K2's 96): a larger budget is served by more replicas, counted
/// arithmetically, so the layouts searched stop growing with the budget.
pub(crate) const MAX_REPLICA_GPUS: u32 = 1024;
const POW2: [u32; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/// Every layout of at most `budget` GPUs (and `MAX_REPLICA_GPUS`) the enumeration considers, with the
/// count of those rejected before costing. Only the layouts the serving
/// engine can express (`launch::express`): the one the scenario states, else
/// the default engine its figures are computed for, so that a
/// recommendation is one `moeplan launch` can run.
pub fn enumerate(s: &Scenario, budget: u32, rej: &mut Rejections) -> Vec<Layout> {
    let budget = budget.min(MAX_REPLICA_GPUS);
    let m = &s.model;
    let node = s.gpu.gpus_per_node;
    let engine = s.serving_engine();
    let mut out = Vec::new();
    let cps: &[u32] = if s.workload.isl.max >= 16384 {
        &[1, 2, 4, 8]
    } else {
        &[1]
    };
    // Attention-DP: every degree up to 16, then whole nodes.
    let dps: Vec<u32> = (1..=budget).filter(|d| *d <= 16 || d % node == 0).collect();
    for &pp in PP.iter().filter(|p| **p as usize <= m.n_layers()) {
        for &tp in &POW2 {
            for &cp in cps {
                for &dp in &dps {
                    let stage = tp * cp * dp;
                    if pp * stage > budget {
                        continue;
                    }
                    let divisors: Vec<u32> = (1..=stage).filter(|e| stage % e == 0).collect();
                    for &ep in &divisors {
                        if m.moe.is_none() && ep > 1 {
                            continue;
                        }
                        // Experts sharded over the whole stage (edp = 1), or, without
                        // EP, replicated per attention-DP rank (etp = tp·cp).
                        // A dense model has no experts to split: etp stays 1.
                        let mut etps = vec![if m.moe.is_some() { stage / ep } else { 1 }];
                        if ep == 1 && dp > 1 && m.moe.is_some() {
                            etps.push(tp * cp);
                        }
                        for etp in etps {
                            let l = Layout {
                                pp,
                                tp,
                                cp,
                                dp,
                                ep,
                                etp,
                            };
                            rej.layouts += 1;
                            if !l.check(m, &s.gpu, s.redundant_experts_for(&l)).0.is_empty() {
                                rej.divisibility += 1;
                                continue;
                            }
                            if tp > node {
                                rej.node_fit += 1;
                                continue;
                            }
                            if !crate::launch::express::expressible(engine, m, &l) {
                                rej.engine += 1;
                                continue;
                            }
                            out.push(l);
                        }
                    }
                }
            }
        }
    }
    out
}

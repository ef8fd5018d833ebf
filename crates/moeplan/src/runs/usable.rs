//! Whether a run can be estimated as it was deployed: its model resolves,
//! its GPU is in the catalog, and its layout (as `as_deployed` reads it) is
//! valid for the model. `calibrate` refuses a file with a row that is not
//! (`runs::read_usable`), each reason at its row and column; `accuracy`
//! counts such a row as unanswered.

use super::{Run, RunDeployment};
use crate::layout::LayoutProblem;
use crate::replica::PoolRole;

/// The column of a run a problem is about, whatever the file calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// The model reference.
    Model,
    /// The GPU.
    Gpu,
    /// The KV cache's type.
    KvDtype,
    /// One degree (`tp`, `pp`, `dp`, `ep`, `etp`) of one pool's layout.
    Degree {
        /// Which pool (`Aggregated` for an aggregated run).
        pool: PoolRole,
        /// The degree.
        degree: &'static str,
    },
}

/// Why a run cannot be estimated.
#[derive(Clone, Debug, PartialEq)]
pub struct RunProblem {
    /// Where.
    pub column: Column,
    /// What is wrong, with the numbers.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

const MODEL_HINT: &str =
    "a catalog id (`moeplan catalog`), a Hugging Face id of one, or a config.json path relative to the file";

impl Run {
    /// Every reason this run cannot be estimated as it was deployed (empty:
    /// it can).
    pub fn problems(&self) -> Vec<RunProblem> {
        let mut out = Vec::new();
        if let Err(message) = self.model() {
            out.push(RunProblem {
                column: Column::Model,
                message,
                hint: MODEL_HINT.into(),
            });
        }
        match self.gpu() {
            Err(message) => out.push(RunProblem {
                column: Column::Gpu,
                message,
                hint: gpu_hint(),
            }),
            Ok(gpu) if out.is_empty() => {
                if let Err(message) = self.model_on(&gpu) {
                    out.push(RunProblem {
                        column: Column::KvDtype,
                        message,
                        hint: super::kv_hint(),
                    });
                }
            }
            Ok(_) => {}
        }
        if out.is_empty() {
            out = self.layout_problems();
        }
        out
    }

    /// The layout's problems, each on its pool and degree.
    fn layout_problems(&self) -> Vec<RunProblem> {
        let on = |pool: PoolRole, problems: Vec<LayoutProblem>| -> Vec<RunProblem> {
            problems
                .into_iter()
                .map(|p| RunProblem {
                    column: Column::Degree {
                        pool,
                        degree: p.field,
                    },
                    message: format!("{} ({})", p.message, p.rule),
                    hint: p.hint,
                })
                .collect()
        };
        match self.deployment {
            RunDeployment::Aggregated {
                layout,
                concurrency,
                ..
            } => match self.replica_of(layout, concurrency) {
                Ok(r) => on(
                    PoolRole::Aggregated,
                    r.layout.check(&r.model, &r.gpu, r.redundant_experts).0,
                ),
                Err(_) => Vec::new(),
            },
            RunDeployment::Disaggregated { .. } => match self.disaggregated() {
                Some(Ok(d)) => [
                    (PoolRole::Prefill, &d.prefill),
                    (PoolRole::Decode, &d.decode),
                ]
                .into_iter()
                .flat_map(|(role, p)| {
                    on(
                        role,
                        p.layout.check(&d.model, &d.gpu, p.redundant_experts).0,
                    )
                })
                .collect(),
                Some(Err(_)) | None => Vec::new(),
            },
        }
    }
}

/// The catalog's GPU ids, as a hint.
pub(crate) fn gpu_hint() -> String {
    let ids: Vec<&str> = crate::catalog::GPUS.iter().map(|(id, _)| *id).collect();
    format!("a catalog GPU id: {} (`moeplan catalog`)", ids.join(", "))
}

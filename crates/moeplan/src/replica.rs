//! One replica ready to be estimated or drawn: the owned inputs of an
//! estimate (model, GPU, kernel curves, layout, workload, engine settings,
//! expert placement). Every command builds its replicas through this type,
//! from flags, a scenario or a measured run.

use crate::calibration::Calibration;
use crate::hardware::Gpu;
use crate::layout::Layout;
use crate::memory::EngineConfig;
use crate::model::Model;
use crate::serving::{EstimateInput, Workload};
use crate::spec::scenario::Scenario;

/// One replica ready to be estimated or drawn.
pub struct Replica {
    /// The model.
    pub model: Model,
    /// The GPU.
    pub gpu: Gpu,
    /// The kernel curves (a profile, or flat efficiencies).
    pub calibration: Calibration,
    /// The replica's layout.
    pub layout: Layout,
    /// The requests.
    pub workload: Workload,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Redundant expert slots (EPLB).
    pub redundant_experts: u32,
    /// Power-law exponent of expert popularity (0 = uniform).
    pub routing_skew: f64,
}

impl Replica {
    /// One replica of `layout` serving a scenario's workload at its mean
    /// lengths, with the scenario's efficiencies and memory limit on `engine`.
    pub fn from_scenario(
        s: Scenario,
        layout: Layout,
        concurrency: u64,
        engine: EngineConfig,
    ) -> Replica {
        Replica {
            calibration: s.calibration(),
            layout,
            workload: Workload {
                isl: s.workload.isl.mean().max(1),
                osl: s.workload.osl.mean().max(1),
                concurrency: concurrency.max(1),
            },
            engine: s.engine(engine),
            redundant_experts: 0,
            routing_skew: 0.0,
            model: s.model,
            gpu: s.gpu,
        }
    }

    /// The estimate's input.
    pub fn input(&self) -> EstimateInput<'_> {
        EstimateInput {
            model: &self.model,
            gpu: &self.gpu,
            calibration: self.calibration.clone(),
            layout: self.layout,
            workload: self.workload,
            engine: self.engine,
            redundant_experts: self.redundant_experts,
            routing_skew: self.routing_skew,
        }
    }
}

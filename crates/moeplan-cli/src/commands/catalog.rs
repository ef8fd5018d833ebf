//! `moeplan catalog`: the built-in models and GPUs.
use crate::args::CatalogArgs;
use crate::output::{self, Failure, Format};
use moeplan::dtype::Precision;
use moeplan::output::{CatalogGpu, CatalogModel, CatalogOutput};
use moeplan::units::{Bytes, Params};

pub fn run(a: &CatalogArgs) -> Result<(), Failure> {
    let format = Format::from(a.json);
    let mut models = Vec::new();
    for (id, _) in moeplan::catalog::MODELS {
        let m = moeplan::catalog::model(id)
            .expect("listed")
            .map_err(|e| Failure::Input(Box::new(e), format))?;
        let p = m.params();
        models.push((
            id.to_string(),
            m.architecture.clone(),
            p.total.0,
            p.active.0,
            p.weight_bytes.0,
        ));
    }
    let mut gpus = Vec::new();
    for (id, _) in moeplan::catalog::GPUS {
        let g = moeplan::catalog::gpu(id)
            .expect("listed")
            .map_err(|e| Failure::Input(Box::new(e), format))?;
        gpus.push(g);
    }
    if a.json {
        output::json(&CatalogOutput {
            models: models
                .iter()
                .map(|(id, arch, t, act, b)| CatalogModel {
                    id: id.clone(),
                    architecture: arch.clone(),
                    params_total: *t,
                    params_active: *act,
                    weight_bytes: *b,
                })
                .collect(),
            gpus: gpus
                .iter()
                .map(|g| CatalogGpu {
                    id: g.id.clone(),
                    name: g.name.clone(),
                    memory_bytes: g.memory.0,
                    memory_bandwidth: g.memory_bandwidth.0,
                    peak_flops: &g.peak,
                    gpus_per_node: g.gpus_per_node,
                    nvlink_bandwidth: g.nvlink_bandwidth.0,
                    network_bandwidth: g.network_bandwidth.0,
                })
                .collect(),
        });
        return Ok(());
    }
    let mut t = output::table(&["model", "architecture", "parameters", "active", "weights"]);
    for (id, arch, total, active, bytes) in &models {
        t.add_row(vec![
            id.clone(),
            arch.clone(),
            Params(*total).to_string(),
            Params(*active).to_string(),
            Bytes(*bytes).to_string(),
        ]);
    }
    output::print(&t.to_string());
    let mut t = output::table(&[
        "gpu",
        "name",
        "memory",
        "HBM bandwidth",
        "bf16 dense",
        "fp8 dense",
        "fp4 dense",
        "per node",
        "scale-up link",
    ]);
    for g in &gpus {
        let peak = |p| g.peak.get(&p).map_or("-".to_string(), |f| f.to_string());
        t.add_row(vec![
            g.id.clone(),
            g.name.clone(),
            Bytes(g.memory.0).to_string(),
            g.memory_bandwidth.to_string(),
            peak(Precision::Bf16),
            peak(Precision::Fp8),
            peak(Precision::Fp4),
            g.gpus_per_node.to_string(),
            g.nvlink_bandwidth.to_string(),
        ]);
    }
    output::print(&t.to_string());
    Ok(())
}

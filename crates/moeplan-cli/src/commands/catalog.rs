//! `moeplan catalog`: the built-in models and GPUs.
use crate::args::CatalogArgs;
use crate::output::{self, Failure, Format};
use moeplan::dtype::Precision;
use moeplan::hardware::Gpu;
use moeplan::output::{CatalogGpu, CatalogModel, CatalogOutput};
use moeplan::units::{Bytes, Params};

/// Prints the built-in models and GPUs, as two tables or as JSON.
pub fn run(a: &CatalogArgs) -> Result<(), Failure> {
    let format = Format::from(a.json);
    let models = models(format)?;
    let gpus = gpus(format)?;
    if a.json {
        output::json(&CatalogOutput {
            models,
            gpus: gpus.iter().map(catalog_gpu).collect(),
        });
        return Ok(());
    }
    output::print(&models_table(&models));
    output::print(&gpus_table(&gpus));
    Ok(())
}

/// Every catalog model with its parameter and weight totals.
fn models(format: Format) -> Result<Vec<CatalogModel>, Failure> {
    let mut models = Vec::new();
    for (id, _) in moeplan::catalog::MODELS {
        let m = moeplan::catalog::model(id)
            .expect("listed")
            .map_err(Failure::input(format))?;
        let p = m.params();
        models.push(CatalogModel {
            id: id.to_string(),
            hf_id: moeplan::catalog::hf_id(id),
            architecture: m.architecture.clone(),
            params_total: p.total.value().round() as u64,
            params_active: p.active.value().round() as u64,
            weight_bytes: p.weight_bytes.value(),
        });
    }
    Ok(models)
}

/// Every catalog GPU.
fn gpus(format: Format) -> Result<Vec<Gpu>, Failure> {
    let mut gpus = Vec::new();
    for (id, _) in moeplan::catalog::GPUS {
        let g = moeplan::catalog::gpu(id)
            .expect("listed")
            .map_err(Failure::input(format))?;
        gpus.push(g);
    }
    Ok(gpus)
}

/// A GPU as `catalog --json` lists it.
fn catalog_gpu(g: &Gpu) -> CatalogGpu<'_> {
    CatalogGpu {
        id: g.id.clone(),
        name: g.name.clone(),
        memory_bytes: g.memory.value().round() as u64,
        memory_bandwidth: g.memory_bandwidth.value().round() as u64,
        peak_flops: &g.peak,
        gpus_per_node: g.gpus_per_node,
        nvlink_bandwidth: g.nvlink_bandwidth.value().round() as u64,
        network_bandwidth: g.network_bandwidth.value().round() as u64,
    }
}

/// The models' table: architecture, parameters, active and weights.
fn models_table(models: &[CatalogModel]) -> String {
    let mut t = output::table(&[
        "model",
        "Hugging Face id",
        "architecture",
        "parameters",
        "active",
        "weights",
    ]);
    for m in models {
        t.add_row(vec![
            m.id.clone(),
            m.hf_id.unwrap_or("-").to_string(),
            m.architecture.clone(),
            Params::new(m.params_total as f64).to_string(),
            Params::new(m.params_active as f64).to_string(),
            Bytes::new(m.weight_bytes).to_string(),
        ]);
    }
    // The Hugging Face id and the architecture give way first.
    output::fit_dropping(&t, &[1, 2])
}

/// The GPUs' table: memory, bandwidth, dense peaks by precision, node size
/// and scale-up link.
fn gpus_table(gpus: &[Gpu]) -> String {
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
    for g in gpus {
        let peak = |p| g.peak.get(&p).map_or("-".to_string(), |f| f.to_string());
        t.add_row(vec![
            g.id.clone(),
            g.name.clone(),
            g.memory.to_string(),
            g.memory_bandwidth.to_string(),
            peak(Precision::Bf16),
            peak(Precision::Fp8),
            peak(Precision::Fp4),
            g.gpus_per_node.to_string(),
            g.nvlink_bandwidth.to_string(),
        ]);
    }
    // The name, the FP4 peak and the scale-up link give way first.
    output::fit_dropping(&t, &[1, 6, 8])
}

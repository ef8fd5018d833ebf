//! Every published config of `../shared/model-configs/hf/` either loads with
//! its precision read, or is refused with a reason (issue 13). Reads
//! `../shared`; without it the test says SKIP on stderr and passes.

use moeplan::dtype::DType;
use std::io::Write;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/model-configs/hf")
}

/// A config states a quantization when it has `quantization_config` (at the
/// top or in `text_config`) or a ModelOpt sidecar beside it.
fn states_quantization(path: &Path) -> bool {
    let sidecar = path
        .to_str()
        .map(|p| p.replace("_config.json", "_hf_quant_config.json"));
    if sidecar.is_some_and(|s| Path::new(&s).is_file()) {
        return true;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.contains("\"quantization_config\"")
}

#[test]
fn every_published_config_loads_or_says_why_not() {
    let root = corpus();
    if !root.is_dir() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIP hf corpus walk: {} not found (the shared configs are optional)",
            root.display()
        );
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with("_config.json") && !name.ends_with("_hf_quant_config.json")
        })
        .collect();
    files.sort();
    let (mut loaded, mut refused) = (Vec::new(), Vec::new());
    for path in &files {
        match moeplan::catalog::resolve_model(path.to_str().expect("utf-8 path")) {
            Ok(m) => {
                let p = m.params();
                let total = p.total.value();
                assert!(
                    total.is_finite() && total > 1e8,
                    "{}: {total}",
                    path.display()
                );
                let w = p.weight_bytes.value();
                assert!(w.is_finite() && w > 0.0, "{}", path.display());
                if states_quantization(path) {
                    // A stated quantization is read: something is stored in
                    // fewer than 16 bits, or the model says why not.
                    let d = &m.dtypes;
                    let narrow = [d.experts, d.dense, d.attention]
                        .iter()
                        .any(|t| t.bits() < 16.0);
                    assert!(
                        narrow || !m.assumptions.is_empty(),
                        "{}: a quantized checkpoint read as 16-bit without a word",
                        path.display()
                    );
                }
                if m.dtypes.experts == DType::Bf16 && !states_quantization(path) {
                    assert!(w >= 1.9 * total, "{}", path.display());
                }
                loaded.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
            Err(e) => {
                let text = format!("{e:?}");
                assert!(
                    text.contains("unsupported architecture") || text.contains("cannot"),
                    "{}: refused without a reason: {text}",
                    path.display()
                );
                refused.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "hf corpus: {} configs, {} load, {} refused with a reason: {}",
        files.len(),
        loaded.len(),
        refused.len(),
        refused.join(", ")
    );
    assert!(!loaded.is_empty());
}

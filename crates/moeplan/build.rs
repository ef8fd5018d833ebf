//! Embeds every engine flag table (`engines/flags/<engine>/<version>.toml`)
//! and every engine version's preset override
//! (`engines/versions/<engine>/<version>.toml`), so that supporting a new
//! engine version is adding its file: no code lists them.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // The manifest directory as cargo gives it to this run, not as it was
    // when the script was compiled: a build script compiled for another
    // checkout of the crate (same target directory, same hash) would read
    // that checkout's files, or none.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join("engines");
    println!("cargo:rerun-if-changed={}", root.join("flags").display());
    println!("cargo:rerun-if-changed={}", root.join("versions").display());
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for (name, dir, file) in [
        ("FLAG_TABLES", "flags", "engine_flags.rs"),
        ("PRESET_VERSIONS", "versions", "engine_versions.rs"),
    ] {
        let mut out = String::new();
        writeln!(
            out,
            "/// (engine, version, text) of each `engines/{dir}/<engine>/<version>.toml`."
        )
        .unwrap();
        writeln!(out, "pub(crate) const {name}: &[(&str, &str, &str)] = &[").unwrap();
        let found = files(&root.join(dir));
        assert!(
            !found.is_empty(),
            "no engines/{dir}/<engine>/<version>.toml under {}",
            root.display()
        );
        for (engine, version, path) in found {
            writeln!(
                out,
                "    ({engine:?}, {version:?}, include_str!({path:?})),"
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
        std::fs::write(Path::new(&out_dir).join(file), out).expect("OUT_DIR is writable");
    }
}

/// `(engine, version, absolute path)` of every `<engine>/<version>.toml`
/// under `dir`, in name order (the build is deterministic).
fn files(dir: &Path) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let engines = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for engine in engines.flatten().filter(|e| e.path().is_dir()) {
        println!("cargo:rerun-if-changed={}", engine.path().display());
        let name = engine.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(engine.path())
            .expect("readable")
            .flatten()
        {
            let path = file.path();
            if path.extension().is_some_and(|x| x == "toml") {
                let version = path
                    .file_stem()
                    .expect("a file name")
                    .to_string_lossy()
                    .into_owned();
                found.push((name.clone(), version, path.display().to_string()));
            }
        }
    }
    found.sort();
    found
}

//! The invalid inputs that cannot be checked in as files (a line of
//! 300,000 characters, a symlink to /dev/zero, a FIFO), listed as data in
//! `tests/fixtures/invalid/generated/cases.yaml` and made at test time.

use super::{command, crate_dir, reading, stderr, unwrapped, EXIT_INPUT};
use serde::Deserialize;
use std::fs;
use std::path::Path;

/// The manifest, relative to the crate directory.
const CASES: &str = "tests/fixtures/invalid/generated/cases.yaml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    cases: Vec<Case>,
}

/// One input to make, and what its diagnostic must say.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// The file name; its prefix selects the command (`reading`).
    name: String,
    kind: Kind,
    /// `text`: the content, `{pad}` standing for `pad` × `times`.
    #[serde(default)]
    text: String,
    #[serde(default)]
    pad: String,
    #[serde(default)]
    times: usize,
    /// `symlink`: what the link points to.
    #[serde(default)]
    target: String,
    /// The most bytes the diagnostic may take.
    max_stderr: Option<usize>,
    /// Texts the diagnostic must contain (its wrapped lines joined).
    expect: Vec<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Text,
    Symlink,
    Fifo,
}

/// Makes the case's file at `path`; false when this system cannot (no
/// mkfifo), which the test says.
fn make(case: &Case, path: &Path) -> bool {
    match case.kind {
        Kind::Text => {
            let text = case.text.replace("{pad}", &case.pad.repeat(case.times));
            fs::write(path, text).unwrap();
            true
        }
        Kind::Symlink => {
            std::os::unix::fs::symlink(&case.target, path).unwrap();
            true
        }
        Kind::Fifo => std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success()),
    }
}

/// Every case exits 2 with its expected texts, a bounded diagnostic and no
/// panic; the diagnostic is snapshotted.
#[cfg(unix)]
#[test]
fn generated_invalid_inputs_give_exit_2() {
    let text = fs::read_to_string(crate_dir().join(CASES)).expect("the manifest");
    let manifest: Manifest = serde_saphyr::from_str(&text).expect("a valid manifest");
    assert!(manifest.cases.len() >= 5, "the manifest lists its cases");
    let dir = std::env::temp_dir().join(format!("moeplan-generated-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for case in &manifest.cases {
        let path = dir.join(&case.name);
        if !make(case, &path) {
            eprintln!("skipped {}: this system cannot make it", case.name);
            continue;
        }
        // Run in the folder, so the diagnostic names the file alone (its
        // lines wrap the same wherever the folder is).
        let rel = case.name.as_str();
        let out = command(&dir, &reading(&case.name, rel))
            .output()
            .expect("the moeplan binary runs");
        let err = stderr(&out);
        let flat = unwrapped(&err);
        let mut fail = |why: String| failures.push(format!("{}: {why}\n{err}", case.name));
        if out.status.code() != Some(EXIT_INPUT) {
            fail(format!("exit code {:?}", out.status.code()));
        }
        if err.contains("panicked") || !err.contains(rel) {
            fail("a panic, or no file named".into());
        }
        if let Some(most) = case.max_stderr.filter(|m| err.len() > *m) {
            fail(format!("{} bytes of diagnostic, at most {most}", err.len()));
        }
        for t in &case.expect {
            if !flat.contains(t.as_str()) {
                fail(format!("diagnostic lacks `{t}`"));
            }
        }
        let name = format!("invalid-generated-{}", case.name.replace('.', "_"));
        insta::assert_snapshot!(name, err);
    }
    fs::remove_dir_all(&dir).ok();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

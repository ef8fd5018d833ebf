//! The flags each engine version accepts, as data:
//! `engines/flags/<engine>/<version>.toml`, written by `tools/engine_flags.py`
//! from the engine's released source (argument definitions read with
//! Python's `ast`, never by installing the engine), each embedded by
//! `build.rs`. Every command and engine config `launch` emits is checked
//! against the table of the version it is for; a new engine version is a
//! rerun of the script and its file, no code. Where releases spell one
//! setting differently (vLLM's `--all2all-backend` or `VLLM_ALL2ALL_BACKEND`),
//! `command.rs` writes the spelling the selected table holds.
//! `engines/flags/dynamo/` holds the flags NVIDIA Dynamo's worker wrappers add.

use crate::engine::Engine;
use serde::Deserialize;
use std::cmp::Ordering;
use std::sync::OnceLock;

include!(concat!(env!("OUT_DIR"), "/engine_flags.rs"));

/// What a flag's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An integer.
    Int,
    /// A number.
    Float,
    /// Any text.
    String,
    /// A JSON document.
    Json,
    /// No value: present or absent.
    Switch,
    /// One of `choices`.
    Choice,
}

/// One flag (or, for TensorRT-LLM, one key of its YAML config).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    /// `--tensor-parallel-size`, or a dotted YAML key.
    pub name: String,
    /// Its value's kind.
    pub kind: Kind,
    /// The accepted values of a choice.
    #[serde(default)]
    pub choices: Vec<String>,
    /// Where the engine defines it.
    pub source: String,
    /// A JSON flag's keys moeplan may write that this version has (vLLM
    /// config dataclasses); empty: not listed.
    #[serde(default)]
    pub(crate) fields: Vec<String>,
}

/// The flags of one engine version.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagTable {
    /// The engine (`dynamo`: the worker wrappers of NVIDIA Dynamo).
    pub engine: String,
    /// The release the table was read from.
    pub version: String,
    /// Whether it is a release (false: a branch at `commit`).
    pub release: bool,
    /// Its repository.
    pub repository: String,
    /// The commit read (a wheel may name only a short one).
    pub commit: Option<String>,
    /// The PyPI wheel read.
    pub wheel: Option<String>,
    /// The wheel's SHA-256.
    pub sha256: Option<String>,
    /// The files read.
    pub files: Vec<String>,
    /// Command-line flags.
    #[serde(default)]
    pub flag: Vec<Flag>,
    /// Keys of the engine's YAML config (TensorRT-LLM).
    #[serde(default)]
    pub key: Vec<Flag>,
    /// Environment variables moeplan may set.
    #[serde(default)]
    pub env: Vec<Flag>,
    /// Dynamo: the engine release each of its runtime images runs.
    #[serde(default)]
    pub bundles: std::collections::BTreeMap<String, String>,
}

/// Every table, parsed once: each engine's, newest first.
fn all() -> &'static [FlagTable] {
    static TABLES: OnceLock<Vec<FlagTable>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut tables: Vec<FlagTable> = FLAG_TABLES
            .iter()
            .map(|(engine, version, text)| {
                let t: FlagTable = toml::from_str(text)
                    .unwrap_or_else(|e| panic!("engines/flags/{engine}/{version}.toml: {e}"));
                assert!(
                    t.engine == *engine && t.version == *version,
                    "engines/flags/{engine}/{version}.toml names {} {}",
                    t.engine,
                    t.version
                );
                t
            })
            .collect();
        tables.sort_by(|a, b| a.engine.cmp(&b.engine).then(newer(b, a)));
        tables
    })
}

/// Orders two tables of one engine by version: releases by their numbers,
/// after any table read from a branch.
fn newer(a: &FlagTable, b: &FlagTable) -> Ordering {
    a.release
        .cmp(&b.release)
        .then_with(|| version_key(&a.version).cmp(&version_key(&b.version)))
}

/// `0.5.10.post1` → `[(0, ""), (5, ""), (10, ""), (1, "post")]`: numbers
/// compare as numbers, `post` releases after their base.
fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(['.', '-'])
        .map(|part| {
            let digits = part.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            let word = &part[..part.len() - digits.len()];
            (digits.parse().unwrap_or(0), word.to_string())
        })
        .collect()
}

/// The tables of `engine`'s name (`vllm`, `sglang`, `trtllm`, `dynamo`), newest first.
pub(crate) fn tables_named(engine: &str) -> Vec<&'static FlagTable> {
    all().iter().filter(|t| t.engine == engine).collect()
}

/// The tables of `engine`, newest first (none for the neutral engine).
pub fn tables(engine: Engine) -> Vec<&'static FlagTable> {
    match engine {
        Engine::Vllm | Engine::Sglang | Engine::Trtllm => tables_named(engine.name()),
        Engine::Neutral => Vec::new(),
    }
}

/// The worker wrappers' flags of the NVIDIA Dynamo release `launch` writes for.
pub fn dynamo() -> &'static FlagTable {
    tables_named("dynamo")
        .into_iter()
        .find(|t| t.version == super::DYNAMO_VERSION)
        .expect("engines/flags/dynamo/ holds the table of DYNAMO_VERSION")
}

/// The newest table of `engine`: the default version of `launch`.
pub fn table(engine: Engine) -> Option<&'static FlagTable> {
    tables(engine).first().copied()
}

/// The table of the version asked for (`0.19` names the newest `0.19.x`);
/// `Err` lists the versions there are.
pub fn select(engine: Engine, asked: &str) -> Result<&'static FlagTable, Vec<String>> {
    let all = tables(engine);
    all.iter()
        .find(|t| t.matches_version(asked))
        .copied()
        .ok_or_else(|| all.iter().map(|t| t.version.clone()).collect())
}

/// Splits a command rendered by `launch` (words separated by spaces, a word
/// with spaces or quotes in single quotes) into its words.
pub fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in command.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            ' ' | '\n' | '\\' if !quoted => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            _ => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

impl FlagTable {
    /// Whether `asked` names this table's release (`0.19` matches `0.19.0`).
    pub(crate) fn matches_version(&self, asked: &str) -> bool {
        let asked = asked.trim_start_matches('v');
        self.version == asked || self.version.starts_with(&format!("{asked}."))
    }

    /// The flag named `name`.
    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flag.iter().find(|f| f.name == name)
    }

    /// The YAML key named `name` (dotted).
    pub fn key(&self, name: &str) -> Option<&Flag> {
        self.key.iter().find(|f| f.name == name)
    }

    /// The environment variable named `name`.
    pub fn env(&self, name: &str) -> Option<&Flag> {
        self.env.iter().find(|f| f.name == name)
    }

    /// Whether JSON flag `flag` takes key `field` (false when the flag is absent).
    pub(crate) fn takes_field(&self, flag: &str, field: &str) -> bool {
        self.flag(flag)
            .is_some_and(|f| f.fields.iter().any(|x| x == field))
    }

    /// Every engine flag of a command (the words after the engine's entry
    /// point) is in the table with a value of its kind, and so is every
    /// variable assigned just before the engine's program (`NAME=value vllm serve`).
    pub fn check_command(&self, command: &str) -> Result<(), String> {
        let w = words(command);
        let Some((program, start)) = entry_point(&w) else {
            return Ok(());
        };
        let assigned = w[..program]
            .iter()
            .rev()
            .take_while(|x| super::command::is_assignment(x));
        for (name, value) in assigned.filter_map(|x| x.split_once('=')) {
            let var = self.env(name).ok_or_else(|| {
                format!(
                    "{name} is not an environment variable of {} {}",
                    self.engine, self.version
                )
            })?;
            check_value(var, var.kind, &serde_json::Value::String(value.into()))?;
        }
        self.check_flags(&w[start..], |name| self.flag(name))
    }

    /// Flags `w` (each `--name` with its value, if it takes one), each
    /// found by `lookup` with a value of its kind.
    pub fn check_flags<'t>(
        &self,
        w: &[String],
        lookup: impl Fn(&str) -> Option<&'t Flag>,
    ) -> Result<(), String> {
        let mut i = 0;
        while i < w.len() {
            let name = &w[i];
            if !name.starts_with("--") {
                return Err(format!("unexpected word {name:?} in {}", w.join(" ")));
            }
            let flag = lookup(name).ok_or_else(|| {
                format!("{name} is not a flag of {} {}", self.engine, self.version)
            })?;
            let value = w.get(i + 1).filter(|v| !v.starts_with("--"));
            match (flag.kind, value) {
                (Kind::Switch, None) => i += 1,
                (Kind::Switch, Some(v)) => return Err(format!("{name} takes no value, got {v:?}")),
                (_, None) => return Err(format!("{name} needs a value")),
                (kind, Some(v)) => {
                    check_value(flag, kind, &serde_json::Value::String(v.clone()))?;
                    i += 2;
                }
            }
        }
        Ok(())
    }

    /// Every leaf of a YAML config (as JSON) is a key of the table with a
    /// value of its kind.
    pub fn check_config(&self, config: &serde_json::Value) -> Result<(), String> {
        let mut leaves = Vec::new();
        flatten(config, String::new(), &mut leaves);
        for (path, v) in leaves {
            if let Some(key) = self.key(&path) {
                check_value(key, key.kind, v)?;
                continue;
            }
            // Below a key that takes a whole document (e.g. a load balancer's settings).
            let parent = self
                .key
                .iter()
                .any(|k| k.kind == Kind::Json && path.starts_with(&format!("{}.", k.name)));
            if !parent {
                return Err(format!(
                    "{path} is not a config key of {} {}",
                    self.engine, self.version
                ));
            }
        }
        Ok(())
    }
}

/// Where the engine's program starts in a command and where its own flags
/// start: `vllm serve MODEL`, `python3 -m sglang.launch_server`, or
/// `trtllm-serve MODEL` (words before the program may assign variables or
/// start a Ray node).
pub(crate) fn entry_point(w: &[String]) -> Option<(usize, usize)> {
    let at = |s: &str| w.iter().position(|x| x == s);
    if let Some(i) = at("sglang.launch_server") {
        return Some((i.saturating_sub(2), i + 1));
    }
    if let Some(i) = at("trtllm-serve") {
        return Some((i, i + 2));
    }
    at("vllm")
        .filter(|i| w.get(i + 1).is_some_and(|s| s == "serve"))
        .map(|i| (i, i + 3))
}

/// `(dotted path, value)` of every leaf of `v`.
fn flatten<'v>(
    v: &'v serde_json::Value,
    path: String,
    out: &mut Vec<(String, &'v serde_json::Value)>,
) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(x, p, out);
            }
        }
        _ => out.push((path, v)),
    }
}

/// A value of `kind` for `flag`: a number, a JSON document, one of the
/// choices, or (a shell placeholder such as `$LEADER_ADDR`) any text.
fn check_value(flag: &Flag, kind: Kind, v: &serde_json::Value) -> Result<(), String> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let ok = match kind {
        Kind::Int => text.parse::<i64>().is_ok() || text.starts_with('$'),
        Kind::Float => text.parse::<f64>().is_ok_and(f64::is_finite),
        Kind::Json => {
            let doc = serde_json::from_str::<serde_json::Value>(&text);
            if let (Ok(serde_json::Value::Object(m)), false) = (&doc, flag.fields.is_empty()) {
                if let Some(k) = m.keys().find(|k| !flag.fields.contains(k)) {
                    return Err(format!(
                        "{} has no key {k:?} in this version (it takes {})",
                        flag.name,
                        flag.fields.join(", ")
                    ));
                }
            }
            doc.is_ok()
        }
        Kind::Switch => v.is_boolean() || text.is_empty(),
        Kind::Choice => flag.choices.contains(&text),
        Kind::String => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} = {text:?} is not a valid {:?}{}",
            flag.name,
            kind,
            if kind == Kind::Choice {
                format!(" (one of {})", flag.choices.join(", "))
            } else {
                String::new()
            }
        ))
    }
}

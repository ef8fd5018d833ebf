//! The flags each engine accepts, as data: `engines/flags/<engine>.toml`,
//! written by `tools/engine_flags.py` from the engine's released source
//! (argument definitions read with Python's `ast`, never by installing the
//! engine). Every command and engine config `launch` emits is checked
//! against its table; a new engine version is a rerun of the script.

use crate::engine::Engine;
use serde::Deserialize;
use std::sync::OnceLock;

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
}

/// The flags of one engine version.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagTable {
    /// The engine.
    pub engine: String,
    /// The release the table was read from.
    pub version: String,
    /// Its repository.
    pub repository: String,
    /// The commit read.
    pub commit: String,
    /// The files read.
    pub files: Vec<String>,
    /// Command-line flags.
    #[serde(default)]
    pub flag: Vec<Flag>,
    /// Keys of the engine's YAML config (TensorRT-LLM).
    #[serde(default)]
    pub key: Vec<Flag>,
}

/// The table of `engine`, parsed once; `None` for the neutral engine.
pub fn table(engine: Engine) -> Option<&'static FlagTable> {
    static TABLES: OnceLock<[FlagTable; 3]> = OnceLock::new();
    let [vllm, sglang, trtllm] = TABLES.get_or_init(|| {
        let parse = |name: &str, text: &str| {
            toml::from_str(text).unwrap_or_else(|e| panic!("engines/flags/{name}.toml: {e}"))
        };
        [
            parse("vllm", include_str!("../../engines/flags/vllm.toml")),
            parse("sglang", include_str!("../../engines/flags/sglang.toml")),
            parse("trtllm", include_str!("../../engines/flags/trtllm.toml")),
        ]
    });
    match engine {
        Engine::Vllm => Some(vllm),
        Engine::Sglang => Some(sglang),
        Engine::Trtllm => Some(trtllm),
        Engine::Neutral => None,
    }
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
    pub fn matches_version(&self, asked: &str) -> bool {
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

    /// Every engine flag of a command (the words after the engine's entry
    /// point) is in the table with a value of its kind.
    pub fn check_command(&self, command: &str) -> Result<(), String> {
        let w = words(command);
        let Some(start) = entry_point(&w) else {
            return Ok(());
        };
        let mut i = start;
        while i < w.len() {
            let name = &w[i];
            if !name.starts_with("--") {
                return Err(format!("unexpected word {name:?} in {command}"));
            }
            let flag = self.flag(name).ok_or_else(|| {
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

/// Where the engine's own flags start in a command: after `vllm serve
/// MODEL`, `-m sglang.launch_server`, or `trtllm-serve MODEL`.
fn entry_point(w: &[String]) -> Option<usize> {
    let at = |s: &str| w.iter().position(|x| x == s);
    if let Some(i) = at("sglang.launch_server") {
        return Some(i + 1);
    }
    if let Some(i) = at("trtllm-serve") {
        return Some(i + 2);
    }
    at("vllm")
        .filter(|i| w.get(i + 1).is_some_and(|s| s == "serve"))
        .map(|i| i + 3)
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
        Kind::Json => serde_json::from_str::<serde_json::Value>(&text).is_ok(),
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

//! Reading an input file and turning it into a generic JSON tree.
//!
//! All three native formats (TOML, YAML, JSON) and Hugging Face configs go
//! through here: size and encoding checks, then a syntax parse into a
//! `serde_json::Value`. Syntax errors carry their location. Everything after
//! this stage (schema checks, semantic checks) works on the tree and uses
//! `locate` to point back into the text.

use super::{Problem, SpecError};
use serde_json::Value;
use std::path::Path;

/// How large a kind of input file may be, and what to say when it is larger.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    /// The most bytes read.
    pub(crate) max_bytes: u64,
    /// The kind of file, plural, for the message ("spec files").
    pub what: &'static str,
    /// The hint when a file is larger.
    pub hint: &'static str,
}

/// Spec files. The largest real config we know (GLM-5-FP8, with its
/// per-module exclusion list) is 36 kB.
pub const SPEC_FILE: Limit = Limit {
    max_bytes: 16 * 1024 * 1024,
    what: "spec files",
    hint: "a model config or plan is a few kB: pass config.json, not the weights",
};

/// The text format of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// The format a file name's extension says, if any.
    pub(crate) fn from_path(path: &str) -> Option<Format> {
        let ext = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// The text of the file at `path`, the one way every input file is read
/// (specs, run CSVs, traces, length histograms, profiles): a regular file
/// only (a device or FIFO would be read without end, or block), within its
/// `limit` (checked before and while reading), UTF-8, a leading byte-order
/// mark dropped.
pub fn read_text(path: &Path, limit: Limit) -> Result<String, SpecError> {
    let max_bytes = limit.max_bytes;
    let name = path.display().to_string();
    let fail = |msg: String, hint: &str| SpecError::whole_file(&name, msg, hint);
    let unreadable = |e: std::io::Error| {
        fail(
            format!("cannot read the file: {e}"),
            "check the path and permissions",
        )
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(fail(
            "this is a directory, not a file".into(),
            "pass a file inside it (for a Hugging Face model, its config.json)",
        ));
    }
    if !meta.is_file() {
        return Err(fail(
            "this is not a regular file (a device, FIFO or socket)".into(),
            "pass the file itself; input is read from regular files only",
        ));
    }
    let cap = || format!("{} MB", max_bytes / (1024 * 1024));
    if meta.len() > max_bytes {
        return Err(fail(
            format!(
                "the file is {:.1} MB; {} are at most {}",
                meta.len() as f64 / 1e6,
                limit.what,
                cap()
            ),
            limit.hint,
        ));
    }
    // Read at most one byte past the cap: a file that grows while it is
    // read is still refused, never read without limit.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            use std::io::Read;
            f.take(max_bytes + 1).read_to_end(&mut bytes)
        })
        .map_err(unreadable)?;
    if bytes.len() as u64 > max_bytes {
        return Err(fail(
            format!("the file grew past {} while it was read", cap()),
            limit.hint,
        ));
    }
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    Source::decode_utf8(&name, bytes)
}

/// An input's text with the name it is reported under.
#[derive(Clone, Debug)]
pub struct Source {
    /// The path (or catalog name) shown in diagnostics.
    pub name: String,
    /// The whole text.
    pub text: String,
    /// Its format.
    pub format: Format,
}

impl Source {
    /// Reads a file, checking size, encoding and extension.
    pub fn read(path: &Path) -> Result<Source, SpecError> {
        let name = path.display().to_string();
        let fail = |msg: String, hint: &str| SpecError::whole_file(&name, msg, hint);
        let format = Format::from_path(&name).ok_or_else(|| {
            fail(
                "the file has no .toml, .yaml, .yml or .json extension".into(),
                "name the file after its format: model.toml, plan.yaml, config.json",
            )
        })?;
        let text = read_text(path, SPEC_FILE)?;
        Ok(Source { name, text, format })
    }

    /// Builds a source from raw bytes (checks UTF-8; a leading byte-order
    /// mark is dropped, in every format).
    pub fn from_bytes(name: &str, mut bytes: Vec<u8>, format: Format) -> Result<Source, SpecError> {
        if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
            bytes.drain(..3);
        }
        Ok(Source {
            name: name.to_string(),
            text: Self::decode_utf8(name, bytes)?,
            format,
        })
    }

    /// The text of raw bytes, or a diagnostic at the first byte that is not UTF-8.
    pub(crate) fn decode_utf8(name: &str, bytes: Vec<u8>) -> Result<String, SpecError> {
        String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let line = lossy[..at.min(lossy.len())].matches('\n').count() + 1;
            let mut err = SpecError::new(
                name,
                lossy,
                vec![Problem {
                    path: String::new(),
                    message: format!(
                        "the file is not valid UTF-8 (first bad byte at offset {at}, line {line})"
                    ),
                    hint: Some("save the file as UTF-8 text".into()),
                    span: None,
                }],
            );
            err.problems[0].span = Some((at.min(err.text_len()), 1));
            err
        })
    }

    /// Builds a source from text already in memory (catalog entries, tests).
    pub fn from_text(name: &str, text: &str, format: Format) -> Source {
        Source {
            name: name.to_string(),
            text: text.to_string(),
            format,
        }
    }

    /// The file name without directory and extension (`default` when there is none).
    pub fn stem(&self, default: &str) -> String {
        Path::new(&self.name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(default)
            .to_string()
    }

    /// Parses the text into a generic tree, reporting a syntax error with its location.
    pub fn parse(&self) -> Result<Value, SpecError> {
        let syntax = |offset: usize, message: String, hint: &str| {
            SpecError::new(
                &self.name,
                self.text.clone(),
                vec![Problem {
                    path: String::new(),
                    message,
                    hint: Some(hint.into()),
                    span: Some((offset.min(self.text.len()), 1)),
                }],
            )
        };
        match self.format {
            Format::Json => parse_json(&self.text).map_err(|e| {
                let offset = byte_offset_of(&self.text, e.line(), e.column());
                let hint = if e.is_eof() {
                    "the file ends early: is it truncated, or is a closing bracket missing?"
                } else if e.to_string().starts_with("duplicate key") {
                    DUPLICATE_HINT
                } else {
                    "fix the JSON syntax at the marked position"
                };
                syntax(
                    offset,
                    format!("invalid JSON: {}", strip_position(&e.to_string())),
                    hint,
                )
            }),
            Format::Toml => {
                let v = toml::from_str::<toml::Value>(&self.text).map_err(|e| {
                    let offset = e.span().map_or(0, |s| s.start);
                    syntax(
                        offset,
                        format!("invalid TOML: {}", e.message()),
                        "fix the TOML syntax at the marked position",
                    )
                })?;
                // JSON has no NaN or infinity: TOML's `nan`/`inf` would turn
                // into a silent null ("no isl given"), so they are named here.
                if let Some(path) = non_finite(&v, String::new()) {
                    let offset = locate(&self.text, &path).map_or(0, |(at, _)| at);
                    return Err(syntax(
                        offset,
                        format!("`{path}`: nan and inf are not values any input takes"),
                        "write a finite number",
                    ));
                }
                Ok(serde_json::to_value(v).expect("finite TOML values are JSON-representable"))
            }
            Format::Yaml => serde_saphyr::from_str::<Value>(&self.text).map_err(|e| {
                // serde-saphyr suggests one of its own options; the user
                // can only remove the repeated key.
                let msg = e
                    .to_string()
                    .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
                let offset = yaml_offset(&self.text, &msg);
                let hint = if msg.contains("duplicate mapping key") {
                    DUPLICATE_HINT
                } else {
                    "fix the YAML syntax at the marked position"
                };
                syntax(offset, format!("invalid YAML: {}", first_line(&msg)), hint)
            }),
        }
    }
}

/// The dotted path of the first non-finite float in a TOML document.
fn non_finite(v: &toml::Value, path: String) -> Option<String> {
    let join = |k: &str| match path.is_empty() {
        true => k.to_string(),
        false => format!("{path}.{k}"),
    };
    match v {
        toml::Value::Float(x) if !x.is_finite() => Some(path),
        toml::Value::Table(t) => t.iter().find_map(|(k, x)| non_finite(x, join(k))),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| non_finite(x, format!("{path}[{i}]"))),
        _ => None,
    }
}

/// The hint for a key written twice in one table (every format refuses it).
const DUPLICATE_HINT: &str =
    "a key may appear once in a table: remove the repeat, or rename it if it meant another key";

/// JSON as Python's `json` module writes it: the literals `NaN`, `Infinity`
/// and `-Infinity` that `transformers` configs can hold (Nemotron-H's
/// `time_step_limit`) are read as null, ±1e308 (the largest finite
/// magnitudes a config needs); everything else is strict JSON.
fn parse_json(text: &str) -> Result<Value, serde_json::Error> {
    let strict = |t: &str| {
        serde_json::from_str::<NoDuplicates>(t)?;
        serde_json::from_str::<Value>(t)
    };
    strict(text).or_else(|e| match python_literals(text) {
        Some(fixed) => strict(&fixed).map_err(|_| e),
        None => Err(e),
    })
}

/// A JSON document walked only to refuse a key repeated in one object, as
/// the TOML and YAML readers do (serde_json's `Value` keeps the last one
/// silently); the error carries the repeat's position.
struct NoDuplicates;

impl<'de> serde::Deserialize<'de> for NoDuplicates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
}

/// `text` with Python's non-finite literals outside strings replaced by
/// JSON of the same length where possible (`Infinity` → `1e308   `), so
/// error locations stay put; `None` when there are none.
fn python_literals(text: &str) -> Option<String> {
    const SUBS: [(&str, &str); 3] = [
        ("-Infinity", "-1e308   "),
        ("Infinity", "1e308   "),
        ("NaN", "null"),
    ];
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped, mut found) = (false, false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some((lit, sub)) = SUBS.iter().find(|(lit, _)| rest.starts_with(lit)) {
            let after = rest[lit.len()..].chars().next();
            if !after.is_some_and(|a| a.is_alphanumeric() || a == '_') {
                out.push_str(sub);
                rest = &rest[lit.len()..];
                found = true;
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    found.then_some(out)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn strip_position(s: &str) -> String {
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Byte offset of a 1-based line and column (the column counts
/// characters, so the offset always falls on a character boundary).
pub fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let within = l
                .char_indices()
                .nth(column.saturating_sub(1))
                .map_or(l.len(), |(b, _)| b);
            return offset + within;
        }
        offset += l.len();
    }
    text.len()
}

/// Byte offset of a 1-based line and a 1-based byte column (serde_json's
/// convention), moved back to a character boundary.
fn byte_offset_of(text: &str, line: usize, column: usize) -> usize {
    let start = offset_of(text, line, 1);
    let mut at = (start + column.saturating_sub(1)).min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Pulls "line N column M" out of a YAML error message.
fn yaml_offset(text: &str, msg: &str) -> usize {
    let nums: Vec<usize> = msg
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .collect();
    let lower = msg.to_ascii_lowercase();
    if let Some(i) = lower.find("line") {
        let after: Vec<usize> = lower[i..]
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|t| t.parse().ok())
            .collect();
        if after.len() >= 2 {
            return offset_of(text, after[0], after[1]);
        }
        if let Some(l) = after.first() {
            return offset_of(text, *l, 1);
        }
    }
    let _ = nums;
    0
}

/// Finds where the value at a dotted path is written, for diagnostics. The
/// search follows the path key by key through the text, so it works the
/// same for TOML, YAML and JSON; it falls back to the last key it found.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    if path.is_empty() {
        return None;
    }
    let mut from = 0;
    let mut found = None;
    for key in path.split('.') {
        let key = key.split('[').next().unwrap_or(key);
        match find_key(text, key, from) {
            Some(pos) => {
                found = Some((pos, key.len()));
                from = pos + key.len();
            }
            None => break,
        }
    }
    found
}

/// The first occurrence of `key` at or after `from` written as a key: a whole
/// word, optionally quoted, followed by `=`, `:`, `]` or `.` (TOML headers).
fn find_key(text: &str, key: &str, from: usize) -> Option<usize> {
    if key.is_empty() {
        // An empty key (`"": 1`) matches everywhere; there is nothing to point at.
        return None;
    }
    let bytes = text.as_bytes();
    let mut start = from;
    while let Some(rel) = text.get(start..)?.find(key) {
        let pos = start + rel;
        let before = if pos == 0 { b'\n' } else { bytes[pos - 1] };
        let end = pos + key.len();
        let mut after = end;
        if after < bytes.len() && (bytes[after] == b'"' || bytes[after] == b'\'') {
            after += 1;
        }
        while after < bytes.len() && (bytes[after] == b' ' || bytes[after] == b'\t') {
            after += 1;
        }
        let word_before = before.is_ascii_alphanumeric() || before == b'_';
        let key_after = after < bytes.len() && matches!(bytes[after], b'=' | b':' | b']' | b'.');
        if !word_before && key_after {
            return Some(pos);
        }
        start = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_follows_paths_in_each_format() {
        let toml = "name = \"x\"\n[attention]\nn_heads = 0\n";
        let (at, _) = locate(toml, "attention.n_heads").unwrap();
        assert_eq!(&toml[at..at + 7], "n_heads");
        let json = "{\"attention\": {\"head_dim\": 1, \"n_heads\": 0}}";
        let (at, _) = locate(json, "attention.n_heads").unwrap();
        assert_eq!(&json[at..at + 7], "n_heads");
        let yaml = "attention:\n  n_kv_heads: 3\n  n_heads: 0\n";
        let (at, _) = locate(yaml, "attention.n_heads").unwrap();
        assert_eq!(&yaml[at..at + 7], "n_heads");
    }

    #[test]
    fn offsets_from_line_and_column() {
        assert_eq!(offset_of("ab\ncd\n", 2, 2), 4);
    }

    /// Python's `json.dumps` writes `Infinity`, `-Infinity` and `NaN`
    /// (Nemotron-H's `time_step_limit: [0.0, Infinity]`); they are read,
    /// inside strings they are text, and a real syntax error still fails.
    #[test]
    fn python_non_finite_literals_are_read() {
        let text = r#"{"a": [0.0, Infinity, -Infinity], "b": NaN, "c": "NaN Infinity"}"#;
        let v = parse_json(text).expect("Python's literals parse");
        assert_eq!(v["a"][1].as_f64(), Some(1e308));
        assert_eq!(v["a"][2].as_f64(), Some(-1e308));
        assert!(v["b"].is_null());
        assert_eq!(v["c"], "NaN Infinity");
        assert_eq!(python_literals(text).unwrap().len(), text.len() + 1);
        assert!(parse_json(r#"{"a": Infinityx}"#).is_err());
        assert!(parse_json(r#"{"a": [1, Infinity}"#).is_err());
        assert!(python_literals(r#"{"a": "Infinity"}"#).is_none());
    }
}

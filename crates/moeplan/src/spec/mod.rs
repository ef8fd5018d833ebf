//! What the user brings, read in two stages.
//!
//! Stage one (`source`) reads a file into a generic tree; stage two checks
//! the tree against the JSON Schema generated from the raw serde structs
//! (collecting every unknown field, wrong type and missing key at once),
//! deserialises the raw struct, and converts it into a validated domain type
//! while collecting every semantic problem (zero sizes, heads not divisible,
//! top-k above the expert count...). A user sees all problems of a file in
//! one diagnostic, each at its location.

pub mod gpu;
pub mod model;
pub mod plan;
pub mod scenario;
pub mod source;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use source::{locate, Source};
use std::fmt;
use std::ops::ControlFlow;

/// One problem found in an input, with where it is.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// Dotted path of the offending key (`attention.n_heads`); empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// Byte offset and length in the source text, when known.
    #[serde(skip)]
    pub span: Option<(usize, usize)>,
}

impl Problem {
    /// A problem at a path, located later against the source text.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
            hint: None,
            span: None,
        }
    }
    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Every problem found in one input file; renders as one miette diagnostic
/// with a label per located problem.
#[derive(Debug)]
pub struct SpecError {
    /// The file (or catalog entry) name.
    pub file: String,
    /// The problems, in the order they were found.
    pub problems: Vec<Problem>,
    src: NamedSource<String>,
}

impl SpecError {
    /// Builds the error, locating each problem's path in `text`.
    pub fn new(file: &str, text: String, mut problems: Vec<Problem>) -> Self {
        for p in &mut problems {
            if p.span.is_none() {
                p.span = locate(&text, &p.path);
            }
        }
        // File order; unlocated problems (whole file) first, stable otherwise.
        problems.sort_by_key(|p| p.span.map_or(0, |(off, _)| off + 1));
        SpecError {
            file: file.to_string(),
            problems,
            src: NamedSource::new(file, text),
        }
    }

    /// A problem with the file as a whole (unreadable, too large...).
    pub(crate) fn whole_file(file: &str, message: String, hint: &str) -> Self {
        Self::new(
            file,
            String::new(),
            vec![Problem::at("", message).hint(hint)],
        )
    }

    /// Problems against a source, located in its text.
    pub(crate) fn in_source(source: &Source, problems: Vec<Problem>) -> Self {
        Self::new(&source.name, source.text.clone(), problems)
    }

    pub(crate) fn text_len(&self) -> usize {
        self.src.inner().len()
    }

    /// 1-based line and column of each problem (None where unlocated), for JSON output.
    pub fn positions(&self) -> Vec<Option<(usize, usize)>> {
        let text = self.src.inner();
        self.problems
            .iter()
            .map(|p| {
                p.span.map(|(off, _)| {
                    let before = &text[..off.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
                        .chars()
                        .count()
                        + 1;
                    (line, col)
                })
            })
            .collect()
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{} problem{} in {}",
            n,
            if n == 1 { "" } else { "s" },
            self.file
        )?;
        for (i, (p, pos)) in self.problems.iter().zip(self.positions()).enumerate() {
            write!(f, "\n  {}. ", i + 1)?;
            if let Some((line, col)) = pos {
                write!(f, "{}:{}:{}: ", self.file, line, col)?;
            }
            if !p.path.is_empty() {
                write!(f, "`{}`: ", p.path)?;
            }
            write!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

impl Diagnostic for SpecError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("moeplan::input"))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let hints: Vec<String> = self
            .problems
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.hint.as_ref().map(|h| format!("{}. {}", i + 1, h)))
            .collect();
        if hints.is_empty() {
            None
        } else {
            Some(Box::new(hints.join("\n")))
        }
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        if self.src.inner().is_empty() {
            None
        } else {
            Some(self)
        }
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.src.inner().is_empty() {
            return None;
        }
        Some(Box::new(self.problems.iter().enumerate().filter_map(
            |(i, p)| {
                p.span
                    .map(|(off, len)| LabeledSpan::new(Some(format!("{}", i + 1)), off, len))
            },
        )))
    }
}

/// The problems of several files, each file's in its own [`SpecError`]:
/// a command that reads many files reports every bad one at once.
#[derive(Debug)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    /// The count and the files; each file's problems are its related
    /// diagnostic (`related`), shown with their source lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n: usize = self.0.iter().map(|e| e.problems.len()).sum();
        let files: Vec<&str> = self.0.iter().map(|e| e.file.as_str()).collect();
        write!(
            f,
            "{n} problems in {} files: {}",
            files.len(),
            files.join(", ")
        )
    }
}

impl std::error::Error for SpecErrors {}

impl SpecErrors {
    /// The one file's error as it is when only one file failed (its report
    /// reads as from a single-file command), else all of them.
    pub fn into_diagnostic(mut self) -> Box<dyn Diagnostic + Send + Sync> {
        match self.0.len() {
            1 => Box::new(self.0.remove(0)),
            _ => Box::new(self),
        }
    }
}

impl Diagnostic for SpecErrors {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("moeplan::input"))
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.0.iter().map(|e| e as &dyn Diagnostic)))
    }
}

/// The most bytes of source a diagnostic shows around a span: a minified
/// JSON file or a 100,000-bracket line is one line, which would otherwise
/// be printed whole.
const SNIPPET_BYTES: usize = 240;

/// The source as diagnostics show it: the lines around a span, cut to a
/// window of `SNIPPET_BYTES` around it when they are longer.
impl SourceCode for SpecError {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let full = self.src.read_span(span, before, after)?;
        let (start, len) = (full.span().offset(), full.span().len());
        if len <= SNIPPET_BYTES {
            return Ok(full);
        }
        let text = self.src.inner();
        let half = SNIPPET_BYTES / 2;
        let mut from = span.offset().saturating_sub(half).max(start);
        let mut to = (span.offset() + span.len() + half).min(start + len);
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        while !text.is_char_boundary(to) {
            to += 1;
        }
        let line_start = text[..from].rfind('\n').map_or(0, |i| i + 1);
        let line = text[..from].matches('\n').count();
        let column = text[line_start..from].chars().count();
        let lines = text[from..to].matches('\n').count() + 1;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.file.clone(),
            &text.as_bytes()[from..to],
            (from, to - from).into(),
            line,
            column,
            lines,
        )))
    }
}

/// The JSON Schema of a raw spec type, as a JSON tree.
pub fn schema_of<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("schemas serialise")
}

/// Reads a spec: syntax, then `T`'s schema (every unknown key, wrong type
/// and missing key), then the semantic checks of `convert`. Keys with
/// structural problems are set aside so the semantic checks still run on
/// the rest of the file: a user sees every problem at once.
pub(crate) fn load_spec<T, D>(
    source: &Source,
    convert: impl FnOnce(&T, &mut Problems) -> D,
) -> Result<D, SpecError>
where
    T: DeserializeOwned + JsonSchema,
{
    let value = source.parse()?;
    let schema = schema_of::<T>();
    let mut problems = check_schema(&value, &schema);
    let pruned_paths: Vec<String> = problems
        .iter()
        .filter(|p| !p.message.starts_with("missing required key"))
        .map(|p| p.path.split('[').next().unwrap_or(&p.path).to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let mut pruned = value.clone();
    for (path, p) in pruned_paths.iter().zip(problems.iter().filter(|p| {
        !p.message.starts_with("missing required key")
            && !p.path.split('[').next().unwrap_or(&p.path).is_empty()
    })) {
        // A zero where the schema asks for at least 1 still reads as its
        // type: keep it, so the checks that depend on it see the user's
        // value rather than a default derived in its absence (its own
        // complaint at this path is dropped below).
        if p.message.contains(BELOW_MINIMUM)
            && lookup(&value, path).is_some_and(|v| v.as_u64().is_some())
        {
            continue;
        }
        remove_path(&mut pruned, path);
        // A required key cannot be left out: stand in a value of its type so
        // the semantic checks can run on everything else.
        if let Some(placeholder) = required_placeholder(&schema, path) {
            set_path(&mut pruned, path, placeholder);
        }
    }
    match serde_json::from_value::<T>(pruned) {
        Ok(raw) => {
            let mut semantic = Problems::default();
            let out = convert(&raw, &mut semantic);
            problems.extend(semantic.0.into_iter().filter(|p| {
                !pruned_paths
                    .iter()
                    .any(|q| p.path == *q || p.path.starts_with(&format!("{q}.")))
            }));
            if problems.is_empty() {
                return Ok(out);
            }
        }
        Err(e) => {
            if problems.is_empty() {
                problems.push(
                    Problem::at("", e.to_string()).hint("check the value against `moeplan schema`"),
                );
            }
        }
    }
    Err(SpecError::in_source(source, problems))
}

/// How the schema walk words a value under its `minimum`.
const BELOW_MINIMUM: &str = " is below the minimum ";

/// The value at a dotted `path` (object keys only), if there is one.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

/// A stand-in value for `path` when the schema requires it there.
fn required_placeholder(root: &Value, path: &str) -> Option<Value> {
    let mut s = resolve(root, root);
    let mut parts = path.split('.').peekable();
    while let Some(key) = parts.next() {
        let required = s
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|x| x == key));
        let child = resolve(s.get("properties")?.get(key)?, root);
        if parts.peek().is_none() {
            if !required {
                return None;
            }
            let t = match child.get("type") {
                Some(Value::String(t)) => t.clone(),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|t| *t != "null")?
                    .to_string(),
                _ => return None,
            };
            return Some(match t.as_str() {
                "integer" | "number" => Value::from(1),
                "string" => Value::from(""),
                "boolean" => Value::from(false),
                "array" => Value::Array(Vec::new()),
                _ => return None,
            });
        }
        s = child;
    }
    None
}

/// The object holding the last key of a dotted path, and that key.
fn parent_mut<'v>(
    v: &'v mut Value,
    path: &'v str,
) -> Option<(&'v mut serde_json::Map<String, Value>, &'v str)> {
    let (parents, last) = match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    };
    let mut cur = v;
    for p in parents.into_iter().flat_map(|p| p.split('.')) {
        cur = cur.get_mut(p)?;
    }
    Some((cur.as_object_mut()?, last))
}

fn set_path(v: &mut Value, path: &str, new: Value) {
    if let Some((obj, key)) = parent_mut(v, path) {
        obj.insert(key.to_string(), new);
    }
}

fn remove_path(v: &mut Value, path: &str) {
    if let Some((obj, key)) = parent_mut(v, path) {
        obj.remove(key);
    }
}

/// Walks `value` against a JSON Schema and lists every violation.
///
/// Supports the subset schemars generates for our raw types and that
/// Kubernetes CRDs use: `$ref` into `$defs`, `type` (single or list),
/// `properties`, `required`, `additionalProperties` (`false`, or the schema
/// of a map's values), `anyOf`/`oneOf`, `enum`, `const`, `minimum`, `items`.
pub fn check_schema(value: &Value, schema: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    walk(value, schema, schema, "", &mut out);
    out
}

fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or(r);
            root.get("$defs")
                .and_then(|d| d.get(name))
                .or_else(|| root.get("definitions").and_then(|d| d.get(name)))
                .map(|s| resolve(s, root))
                .unwrap_or(schema)
        }
        None => schema,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table/object",
    }
}

fn type_matches(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Checks `v` against `schema` at `path`, collecting every violation.
fn walk(v: &Value, schema: &Value, root: &Value, path: &str, out: &mut Vec<Problem>) {
    let s = resolve(schema, root);
    if s.as_bool() == Some(true) {
        return;
    }
    if check_choices(v, s, root, path, out).is_break() || check_value(v, s, path, out).is_break() {
        return;
    }
    if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if x < min {
            out.push(
                Problem::at(path, format!("{x}{BELOW_MINIMUM}{min}")).hint(if min >= 1.0 {
                    "sizes, lengths and counts start at 1 (a degree of 1 means no split)"
                } else {
                    "sizes and counts cannot be negative"
                }),
            );
        }
    }
    // An integer the field's Rust type cannot hold (schemars writes the
    // type as `format`): serde would refuse it with no key or line.
    let widest = match s.get("format").and_then(Value::as_str) {
        Some("uint8") => Some(u8::MAX as u64),
        Some("uint16") => Some(u16::MAX as u64),
        Some("uint32") => Some(u32::MAX as u64),
        _ => None,
    };
    if let (Some(max), Some(x)) = (widest, v.as_f64()) {
        if x > max as f64 {
            out.push(
                Problem::at(
                    path,
                    format!("{x} is above the largest value this key holds, {max}"),
                )
                .hint(
                    "a count or degree far beyond any deployment: check for a typo or extra digits",
                ),
            );
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            walk(item, items, root, &format!("{path}[{i}]"), out);
        }
    }
    if let Some(obj) = v.as_object() {
        walk_object(obj, s, root, path, out);
    }
}

/// `anyOf`/`oneOf`: the value is checked against its branches and nothing
/// else (`Break`); `Continue` when the schema offers no choice.
fn check_choices(
    v: &Value,
    s: &Value,
    root: &Value,
    path: &str,
    out: &mut Vec<Problem>,
) -> ControlFlow<()> {
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = s.get(key).and_then(Value::as_array) {
            choose(v, options, root, path, out);
            return ControlFlow::Break(());
        }
    }
    ControlFlow::Continue(())
}

/// Nothing when a branch accepts `v`; else the allowed values of a plain
/// value choice (enums), or the problems of the branch that got furthest.
fn choose(v: &Value, options: &[Value], root: &Value, path: &str, out: &mut Vec<Problem>) {
    let tries: Vec<Vec<Problem>> = options
        .iter()
        .map(|o| {
            let mut p = Vec::new();
            walk(v, o, root, path, &mut p);
            p
        })
        .collect();
    if tries.iter().any(Vec::is_empty) {
        return;
    }
    // Report the branch that got furthest (fewest problems), but for
    // plain value choices (enums) list the allowed values instead.
    let consts: Vec<String> = options
        .iter()
        .filter_map(|o| {
            resolve(o, root)
                .get("const")
                .or_else(|| resolve(o, root).get("enum"))
        })
        .map(|c| c.to_string())
        .collect();
    if !consts.is_empty() && consts.len() == options.len() {
        out.push(not_one_of(path, v, &consts));
        return;
    }
    let best = tries.into_iter().min_by_key(Vec::len).unwrap_or_default();
    out.extend(best);
}

/// `type`, `enum` and `const`: the first that `v` fails is its one problem
/// (`Break`: nothing below it is checked).
fn check_value(v: &Value, s: &Value, path: &str, out: &mut Vec<Problem>) -> ControlFlow<()> {
    if let Some(types) = s.get("type") {
        let list: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !list.is_empty() && !list.iter().any(|t| type_matches(v, t)) {
            out.push(wrong_type(path, v, &list));
            return ControlFlow::Break(());
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let names: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            out.push(not_one_of(path, v, &names));
            return ControlFlow::Break(());
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            out.push(Problem::at(path, format!("expected {c}, found {v}")));
            return ControlFlow::Break(());
        }
    }
    ControlFlow::Continue(())
}

/// `v` is none of the types `list` allows, with a hint for the first one.
fn wrong_type(path: &str, v: &Value, list: &[&str]) -> Problem {
    let wanted: Vec<&str> = list.iter().copied().filter(|t| *t != "null").collect();
    Problem::at(
        path,
        format!("expected {}, found {}", wanted.join(" or "), type_name(v)),
    )
    .hint(match wanted.first().copied() {
        Some("string") => "quantities are strings with their unit, e.g. \"80 GB\"",
        Some("integer") => "write a whole number: no quotes, no decimal point",
        Some("object") => "this key holds a table of fields",
        _ => "check the schema (moeplan schema)",
    })
}

/// `v` is not among the accepted values (as JSON text).
fn not_one_of(path: &str, v: &Value, accepted: &[String]) -> Problem {
    Problem::at(path, format!("{v} is not one of the accepted values"))
        .hint(format!("use one of: {}", accepted.join(", ")))
}

/// A table: its missing required keys, then each key walked, or named
/// unknown where the schema allows no others.
fn walk_object(
    obj: &serde_json::Map<String, Value>,
    s: &Value,
    root: &Value,
    path: &str,
    out: &mut Vec<Problem>,
) {
    let props = s.get("properties").and_then(Value::as_object);
    if let Some(required) = s.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(r) {
                out.push(
                    Problem::at(path, format!("missing required key `{}`", join(path, r)))
                        .hint(format!("add `{r}`")),
                );
            }
        }
    }
    let others = s.get("additionalProperties");
    for (k, child) in obj {
        match (props.and_then(|p| p.get(k)), others) {
            (Some(cs), _) => walk(child, cs, root, &join(path, k), out),
            (None, Some(Value::Bool(false))) => out.push(unknown_key(path, k, props)),
            (None, Some(map_values @ Value::Object(_))) => {
                walk(child, map_values, root, &join(path, k), out)
            }
            (None, _) => {}
        }
    }
}

/// An unknown key, with the nearest known one or the list of known keys.
fn unknown_key(path: &str, k: &str, props: Option<&serde_json::Map<String, Value>>) -> Problem {
    let known: Vec<&str> = props
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let problem = Problem::at(join(path, k), format!("unknown key `{k}`"));
    match closest(k, &known) {
        Some(c) => problem.hint(format!("did you mean `{c}`?")),
        None => problem.hint(format!("known keys here: {}", known.join(", "))),
    }
}

/// The known key nearest to `key` by edit distance, if it is close.
pub fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Collects semantic problems while converting a raw spec.
#[derive(Default, Debug)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem.
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }
    /// Requires a positive value.
    pub fn positive(&mut self, path: &str, v: u64) -> u64 {
        if v == 0 {
            self.push(
                Problem::at(path, "must be greater than 0").hint("sizes and counts start at 1"),
            );
        }
        v.max(1)
    }
    /// Requires a positive value within `range` (`crate::bounds`); a
    /// value above it is reported with the bound and read as 1.
    pub fn within(&mut self, path: &str, v: u64, range: crate::bounds::Range) -> u64 {
        match range.check_count(v) {
            Ok(v) => v,
            Err(_) if v == 0 => self.positive(path, v),
            Err(message) => {
                self.push(Problem::at(path, message).hint(range.hint()));
                1
            }
        }
    }
    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_walk_collects_every_problem() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["a", "b"],
            "properties": {"a": {"type": "integer", "minimum": 0}, "c": {"type": "string"}}
        });
        let problems = check_schema(&json!({"a": -1, "c": 3, "d": 1}), &schema);
        let msgs: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(problems.len(), 4, "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("missing required key `b`")));
        assert!(msgs.iter().any(|m| m.contains("below the minimum")));
        assert!(msgs.iter().any(|m| m.contains("expected string")));
        assert!(msgs.iter().any(|m| m.contains("unknown key `d`")));
    }

    #[test]
    fn suggestions_for_typos() {
        assert_eq!(
            closest("hiden_size", &["hidden_size", "vocab_size"]),
            Some("hidden_size")
        );
        assert_eq!(closest("zzz", &["hidden_size"]), None);
    }
}

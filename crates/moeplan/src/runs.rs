//! Measured benchmark runs: what a user measured on real engines, read so
//! that moeplan's predictions can be compared with it (`moeplan accuracy`)
//! and fitted to it.
//!
//! Each run is one benchmark at a fixed concurrency: the client keeps
//! `concurrency` requests in flight (a new one starts when one finishes),
//! every request has `isl` prompt and `osl` output tokens (exactly, or drawn
//! from a range, as the run's benchmark `Client` does), and the figures are
//! means over the run. Two CSV formats are read, recognised by
//! their header:
//! - **native**: `model,gpu,engine,engine_version,weight_dtype,isl,osl,concurrency,tp,pp,dp,ep,etp,ttft_ms,tpot_ms`
//!   (`concurrency`: requests in flight on one replica; `model` a catalog id,
//!   a Hugging Face id or a `config.json` path relative to the CSV), and
//!   the optional columns (`OPTIONAL`): `client` (`fixed`, the default, or
//!   `inferencemax`: lengths drawn in [0.8, 1] × isl/osl), `kv_dtype` (the
//!   KV cache's type; blank or `auto`: the checkpoint's), `gpus_per_node`
//!   (blank: the catalog GPU's node), `throughput_tok_s` (measured output
//!   tokens per second of one replica when aggregated, as `concurrency` is,
//!   of the whole deployment when disaggregated; `calibrate` checks it
//!   against the latencies),
//!   and `mode = disaggregated` with the `prefill_*`/`decode_*` layouts and
//!   `*_workers`; any other column is a problem (a misspelt optional column
//!   would otherwise be read as absent);
//! - **silicon**: the columns of AIConfigurator's `silicon_sample.csv`
//!   (`id,silicon_data_source,backend,backend_version,model_path,system,...`),
//!   aggregated and disaggregated rows (which state no KV cache type: the
//!   reading taken is `silicon_kv_dtype`'s).
//!
//! Every bad cell is reported at once, with its line and column.

mod bench;
mod usable;

pub(crate) use usable::{Column, RunProblem};

use crate::bounds;
use crate::catalog;
use crate::dtype::DType;
use crate::engine::{Engine, EngineConfig};
use crate::hardware::Gpu;
use crate::layout::Layout;
use crate::memory;
use crate::model::Model;
use crate::profile;
use crate::replica::{Disaggregated, PoolRole, Replica};
use crate::serving::disagg::Pool;
use crate::serving::{Client, Workload};
use crate::spec::source::{read_text, Limit};
use crate::spec::{Problem, SpecError, SpecErrors};
use crate::units::{Fraction, Seconds, Tokens, TokensPerSecond};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Measurement files: the shared training set is 1.5 MB.
const RUN_FILE: Limit = Limit {
    max_bytes: 256 * 1024 * 1024,
    what: "measurement files",
    hint: "pass the CSV of benchmark runs",
};

/// How one pool of a run was laid out.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PoolRun {
    /// Degrees of one worker (replica).
    pub layout: Layout,
    /// Workers in the pool (None: the run does not say).
    pub workers: Option<u32>,
    /// Requests per attention-DP rank of one worker, as the run states it
    /// (the decode pool's batch; the prefill pool's batch of prompts).
    pub batch_per_rank: Option<u64>,
}

/// The deployment a run measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum RunDeployment {
    /// One pool of identical replicas.
    Aggregated {
        /// Degrees of one replica.
        layout: Layout,
        /// Requests in flight on one replica.
        concurrency: u64,
        /// Replicas sharing the client's requests.
        replicas: u32,
    },
    /// Separate prefill and decode pools.
    Disaggregated {
        /// The prefill pool.
        prefill: PoolRun,
        /// The decode pool.
        decode: PoolRun,
        /// Requests in flight on the whole deployment.
        concurrency: u64,
    },
}

impl RunDeployment {
    /// Which serving layer it ran under.
    pub(crate) fn mode(&self) -> crate::profile::ServingMode {
        match self {
            RunDeployment::Aggregated { .. } => crate::profile::ServingMode::Aggregated,
            RunDeployment::Disaggregated { .. } => crate::profile::ServingMode::Disaggregated,
        }
    }

    /// Requests in flight: on one replica (aggregated) or on the whole
    /// deployment (disaggregated).
    pub fn concurrency(&self) -> u64 {
        match self {
            RunDeployment::Aggregated { concurrency, .. }
            | RunDeployment::Disaggregated { concurrency, .. } => *concurrency,
        }
    }
}

/// One measured benchmark run.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Run {
    /// The file it was read from.
    pub file: String,
    /// 1-based line in that file.
    pub line: usize,
    /// The run's id (the file's `id` column, else `file:line`).
    pub id: String,
    /// The model as written: catalog id, Hugging Face id or config path
    /// (made absolute against the CSV's folder when it is a relative path).
    pub model: String,
    /// Catalog GPU id.
    pub gpu: String,
    /// The engine.
    pub engine: Engine,
    /// Its version as written (may be empty).
    pub engine_version: String,
    /// Weight type of the dense GEMMs (attention, dense MLPs), when stated.
    pub gemm_dtype: Option<DType>,
    /// Weight type of the routed experts, when stated.
    pub moe_dtype: Option<DType>,
    /// Prompt tokens per request.
    pub isl: u64,
    /// Output tokens per request.
    pub osl: u64,
    /// The layout and load.
    pub deployment: RunDeployment,
    /// Measured mean time to first token.
    pub ttft: Seconds,
    /// Measured mean time per output token.
    pub tpot: Seconds,
    /// The benchmark client that drove it.
    pub client: Client,
    /// The KV cache's stored type, when stated (None: the checkpoint's).
    pub kv_dtype: Option<DType>,
    /// GPUs in one NVLink node, when stated (None: the catalog GPU's).
    pub gpus_per_node: Option<u32>,
    /// Measured output tokens per second of the deployment the run describes
    /// (one replica when aggregated, the whole deployment when
    /// disaggregated), when stated.
    pub throughput: Option<TokensPerSecond>,
    /// How its layout is read.
    pub reading: Reading,
}

/// How a run's stated layout is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// As stated (moeplan's CSV, a benchmark result's sidecar): a layout
    /// invalid for its model is one the user wrote, bad input.
    #[default]
    AsStated,
    /// As AIConfigurator's silicon file documents its rows (`as_deployed`:
    /// a MoE tp N that does not divide the heads ran wide EP).
    Silicon,
}

/// Which rows a reader accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rows {
    /// Every well-formed row, whether moeplan can estimate it or not
    /// (`accuracy` counts those it cannot as unanswered).
    WellFormed,
    /// Only rows moeplan can estimate as deployed (`Run::problems`): a row
    /// it cannot is a problem located at its row and column.
    Usable,
}

/// Reads the runs of every file, all of them before failing: each bad file
/// is reported, not only the first (`SpecErrors`; one bad file is its own
/// `SpecError` inside). `usable`: as `read_usable`, else as `read`.
pub fn read_each(paths: &[PathBuf], usable: Usability) -> Result<Vec<Run>, SpecErrors> {
    let rows = match usable {
        Usability::AnyWellFormed => Rows::WellFormed,
        Usability::Estimable => Rows::Usable,
    };
    let mut runs = Vec::new();
    let mut bad = Vec::new();
    for path in paths {
        match read_rows(path, rows) {
            Ok(r) => runs.extend(r),
            Err(e) => bad.push(e),
        }
    }
    if bad.is_empty() {
        Ok(runs)
    } else {
        Err(SpecErrors(bad))
    }
}

/// Which rows `read_each` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usability {
    /// Every well-formed row (`read`): `accuracy` counts the ones it cannot
    /// estimate as unanswered.
    AnyWellFormed,
    /// Only rows moeplan can estimate as deployed (`read_usable`).
    Estimable,
}

/// Reads the runs of one file (a CSV, or a benchmark client's JSON/JSONL
/// result with its sidecar: `runs::bench`); every problem of the file in one
/// error.
pub fn read(path: &Path) -> Result<Vec<Run>, SpecError> {
    read_rows(path, Rows::WellFormed)
}

/// `read`, and every run must be one moeplan can estimate as it was
/// deployed: an unknown model or an invalid layout is a problem of the file
/// at that row and column, with a hint (what a fit needs: `calibrate`).
pub fn read_usable(path: &Path) -> Result<Vec<Run>, SpecError> {
    read_rows(path, Rows::Usable)
}

fn read_rows(path: &Path, rows: Rows) -> Result<Vec<Run>, SpecError> {
    let name = path.display().to_string();
    let text = read_text(path, RUN_FILE)?;
    if bench::is_bench_result(path) {
        return bench::read(path, &name, &text, rows);
    }
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_rows(&name, &text, &base, rows)
}

/// Parses CSV text (`name` for diagnostics, `base` the folder relative
/// model paths are resolved against).
pub fn parse(name: &str, text: &str, base: &Path) -> Result<Vec<Run>, SpecError> {
    parse_rows(name, text, base, Rows::WellFormed)
}

fn parse_rows(name: &str, text: &str, base: &Path, accept: Rows) -> Result<Vec<Run>, SpecError> {
    let rows = csv_rows(text);
    let Some(header) = rows
        .first()
        .filter(|h| h.cells.iter().any(|c| !c.text.trim().is_empty()))
    else {
        return Err(SpecError::whole_file(
            name,
            "the file is empty".into(),
            "the first line is the header, e.g. model,gpu,engine,engine_version,weight_dtype,isl,osl,concurrency,tp,pp,dp,ep,etp,ttft_ms,tpot_ms",
        ));
    };
    let cols: Vec<&str> = header.cells.iter().map(|c| c.text.trim()).collect();
    let format = if cols.contains(&"silicon_ttft_ms") {
        Format::Silicon
    } else if NATIVE.iter().all(|c| cols.contains(c)) {
        Format::Native
    } else {
        let missing: Vec<&str> = NATIVE
            .iter()
            .copied()
            .filter(|c| !cols.contains(c))
            .collect();
        return Err(SpecError::new(
            name,
            text.to_string(),
            vec![Problem {
                path: String::new(),
                message: format!(
                    "unknown header: missing column{} {}",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", ")
                ),
                hint: Some(format!(
                    "the native header is {}; AIConfigurator's silicon CSV is read as it is",
                    NATIVE.join(",")
                )),
                span: Some((0, header.end)),
            }],
        ));
    };
    let mut problems = match format {
        Format::Native => unknown_columns(header),
        Format::Silicon => Vec::new(),
    };
    let mut runs = Vec::new();
    for row in &rows[1..] {
        if row.cells.iter().all(|c| c.text.trim().is_empty()) {
            continue;
        }
        problems.extend(cells_past_header(header, row));
        let mut cells = Cells {
            cols: &cols,
            row,
            problems: &mut problems,
        };
        let run = match format {
            Format::Native => cells.native(name, base),
            Format::Silicon => cells.silicon(name),
        };
        if let Some(run) = run {
            runs.push((run, row));
        }
    }
    match accept {
        Rows::Usable => unusable(format, &cols, &runs, &mut problems),
        Rows::WellFormed => {}
    }
    if runs.is_empty() && problems.is_empty() {
        // A header alone: nothing to compare or fit (reported 0% errors
        // and wrote an empty profile).
        problems.push(Problem {
            path: String::new(),
            message: "no run after the header".into(),
            hint: Some("one row per benchmark run, under the header".into()),
            span: Some((0, header.end)),
        });
    }
    if problems.is_empty() {
        Ok(runs.into_iter().map(|(r, _)| r).collect())
    } else {
        Err(SpecError::new(name, text.to_string(), problems))
    }
}

/// Each reason a run cannot be estimated, at its row and column.
fn unusable(format: Format, cols: &[&str], runs: &[(Run, &CsvRow)], problems: &mut Vec<Problem>) {
    use rayon::prelude::*;
    let found: Vec<Vec<RunProblem>> = runs.par_iter().map(|(r, _)| r.problems()).collect();
    for ((_, row), found) in runs.iter().zip(found) {
        let mut cells = Cells {
            cols,
            row,
            problems: &mut *problems,
        };
        for p in found {
            cells.problem(&column_name(format, p.column), p.message, &p.hint);
        }
    }
}

/// What a file of `format` calls a run's column.
fn column_name(format: Format, column: Column) -> String {
    let degree = |pool: PoolRole, d: &str| match pool {
        PoolRole::Aggregated => d.to_string(),
        PoolRole::Prefill | PoolRole::Decode => format!("{}_{d}", pool.name()),
    };
    match (format, column) {
        (Format::Native, Column::Model) => "model".into(),
        (Format::Native, Column::Gpu) => "gpu".into(),
        (Format::Native | Format::Silicon, Column::KvDtype) => "kv_dtype".into(),
        (Format::Native, Column::Degree { pool, degree: d }) => degree(pool, d),
        (Format::Silicon, Column::Model) => "model_path".into(),
        (Format::Silicon, Column::Gpu) => "system".into(),
        (Format::Silicon, Column::Degree { pool, degree: d }) => degree(
            pool,
            match d {
                "tp" => "tp_size",
                "pp" => "pp_size",
                "dp" => "attention_dp_size",
                "ep" => "moe_ep_size",
                "etp" => "moe_tp_size",
                other => other,
            },
        ),
    }
}

/// The native format's columns.
pub(crate) const NATIVE: [&str; 15] = [
    "model",
    "gpu",
    "engine",
    "engine_version",
    "weight_dtype",
    "isl",
    "osl",
    "concurrency",
    "tp",
    "pp",
    "dp",
    "ep",
    "etp",
    "ttft_ms",
    "tpot_ms",
];

/// The native format's optional columns (`POOL_OPTIONAL` under each pool's
/// prefix besides).
pub(crate) const OPTIONAL: [&str; 5] = [
    "client",
    "mode",
    "kv_dtype",
    "gpus_per_node",
    "throughput_tok_s",
];

/// A disaggregated native row's columns of each pool, as `prefill_<c>` and
/// `decode_<c>`.
const POOL_OPTIONAL: [&str; 6] = ["tp", "pp", "dp", "ep", "etp", "workers"];

/// Whether `col` is a column the native format reads.
fn native_column(col: &str) -> bool {
    let pooled = ["prefill_", "decode_"]
        .iter()
        .filter_map(|p| col.strip_prefix(p))
        .any(|c| POOL_OPTIONAL.contains(&c));
    NATIVE.contains(&col) || OPTIONAL.contains(&col) || pooled
}

/// A problem for each column of a native header that the format does not
/// read, or that it names twice, at its cell.
fn unknown_columns(header: &CsvRow) -> Vec<Problem> {
    let cells = &header.cells;
    let at = |c: &Cell, message: String, hint: String| Problem {
        path: format!("line {} column `{}`", header.line, c.text.trim()),
        message,
        hint: Some(hint),
        span: Some((c.start, (c.end - c.start).max(1))),
    };
    let twice = cells.iter().enumerate().filter(|(i, c)| {
        let name = c.text.trim();
        !name.is_empty() && cells[..*i].iter().any(|d| d.text.trim() == name)
    });
    let twice = twice.map(|(_, c)| {
        let message = format!("column `{}` named twice", c.text.trim());
        at(c, message, "name each column once".into())
    });
    let unknown = cells
        .iter()
        .filter(|c| !c.text.trim().is_empty() && !native_column(c.text.trim()));
    let hint = format!(
        "the native columns are {}; optional: {}, and prefill_/decode_ {} (disaggregated rows); remove or rename it",
        NATIVE.join(","),
        OPTIONAL.join(", "),
        POOL_OPTIONAL.join(", ")
    );
    let unknown = unknown.map(|c| {
        at(
            c,
            format!("unknown column `{}`", c.text.trim()),
            hint.clone(),
        )
    });
    twice.chain(unknown).collect()
}

/// The hint of a run's KV cache type that cannot be stored.
fn kv_hint() -> String {
    format!("{}, or blank for the checkpoint's", DType::KV_HINT)
}

/// A problem for a row with cells past the header's columns (a row from a
/// converter that writes more columns than the file was begun with): they
/// would be read as absent.
fn cells_past_header(header: &CsvRow, row: &CsvRow) -> Option<Problem> {
    let n = header.cells.len();
    let extra = row.cells.get(n..)?;
    let first = extra.iter().find(|c| !c.text.trim().is_empty())?;
    let last = extra.last().unwrap_or(first);
    Some(Problem {
        path: format!("line {}", row.line),
        message: format!(
            "{} cells, past the header's {n} columns: they have no column and would be read as absent",
            row.cells.len()
        ),
        hint: Some(
            "give the header every column the rows write (a row from a newer bench_to_csv.py belongs in a new file)".into(),
        ),
        span: Some((first.start, (last.end - first.start).max(1))),
    })
}

#[derive(Clone, Copy)]
enum Format {
    Native,
    Silicon,
}

/// The KV cache type of a silicon row, which has no column for it: FP8
/// where an aggregated row's precision is FP8, the checkpoint's otherwise.
/// InferenceMAX's recipes for FP8 models store an FP8 KV cache
/// (TensorRT-LLM's `kv_cache_config.dtype: fp8`, SGLang's `--kv-cache-dtype
/// fp8_e4m3` on B200), and the runs agree: on train.csv's held-back fifth,
/// reading FP8 took the aggregated runs' median error from 12.8% to 11.7%
/// (TTFT) and 7.2% to 6.5% (TPOT), B200/GB200 from 14.8% to 13.0% TTFT.
/// Disaggregated rows keep the checkpoint's (FP8 lost there: 37.3% to 40.9%
/// TTFT), and so do FP4 rows (gpt-oss's recipes keep `auto`; FP8 lost on
/// H100/H200, 10.9% to 12.6%).
fn silicon_kv_dtype(precision: &str, deployment: &RunDeployment) -> Option<DType> {
    match deployment {
        RunDeployment::Aggregated { .. } => (precision == "fp8").then_some(DType::Fp8),
        RunDeployment::Disaggregated { .. } => None,
    }
}

/// The benchmark client of a silicon row, from its provenance: InferenceMAX
/// runs carry their workflow (`wip=` in its result exports, `workflow_run_id=`
/// in its database dumps) and were driven by its client, which draws lengths
/// in [0.8, 1] × isl/osl (`--random-range-ratio 0.8`); any other row (such
/// as AIConfigurator's gap-analysis harness) is read as fixed lengths, as
/// the format documents.
fn silicon_client(provenance: &str) -> Client {
    let inferencemax = provenance
        .split(';')
        .map(str::trim)
        .any(|kv| kv.starts_with("wip=") || kv.starts_with("workflow_run_id="));
    if inferencemax {
        Client::InferenceMax
    } else {
        Client::Fixed
    }
}

/// The catalog GPU of a silicon `system` name.
pub(crate) fn gpu_of_system(system: &str) -> Option<&'static str> {
    Some(match system {
        "h100_sxm" => "h100-sxm",
        "h200_sxm" => "h200-sxm",
        "b200_sxm" => "b200",
        "b300_sxm" => "b300",
        "gb200" | "gb200_nvl72" => "gb200",
        "gb300" | "gb300_nvl72" => "gb300",
        "a100_sxm" => "a100-sxm-80g",
        "h800" | "h800_sxm" => "h800",
        "l40s" => "l40s",
        _ => return None,
    })
}

/// A weight type as the silicon quant columns write it.
fn quant_dtype(s: &str) -> Result<Option<DType>, String> {
    Ok(Some(match s {
        "" | "bfloat16" | "bf16" | "float16" => return Ok(None),
        "fp8" | "fp8_block" | "fp8_static" | "fp8_per_tensor" => DType::Fp8,
        "nvfp4" | "fp4" => DType::Nvfp4,
        "mxfp4" | "w4a16_mxfp4" | "w4a8_mxfp4_fp8" => DType::Mxfp4,
        "int4_wo" | "int4" | "w4a16" | "w4a8" => DType::Int4,
        "int8_wo" | "int8" => DType::Int8,
        other => return Err(format!("unknown quantisation `{other}`")),
    }))
}

struct Cell {
    text: String,
    start: usize,
    end: usize,
}

struct CsvRow {
    line: usize,
    end: usize,
    cells: Vec<Cell>,
}

/// Splits CSV text into rows of cells with their byte spans (RFC 4180
/// quoting; a quoted cell may not span lines).
fn csv_rows(text: &str) -> Vec<CsvRow> {
    let mut rows = Vec::new();
    let mut offset = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let mut cells = Vec::new();
        let mut cur = String::new();
        let mut start = 0;
        let mut quoted = false;
        let mut chars = line.char_indices().peekable();
        while let Some((j, c)) = chars.next() {
            match c {
                '"' if quoted && chars.peek().map(|x| x.1) == Some('"') => {
                    cur.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    cells.push(Cell {
                        text: std::mem::take(&mut cur),
                        start: offset + start,
                        end: offset + j,
                    });
                    start = j + 1;
                }
                c => cur.push(c),
            }
        }
        cells.push(Cell {
            text: cur,
            start: offset + start,
            end: offset + line.len(),
        });
        if !(line.trim().is_empty() && i > 0) {
            rows.push(CsvRow {
                line: i + 1,
                end: offset + line.len(),
                cells,
            });
        }
        offset += raw.len() + 1;
    }
    rows
}

/// A whole number as a cell writes it: `8`, or `8.0` as a spreadsheet or
/// pandas writes an integer column that once held a blank (a whole value
/// up to 2⁵³, where a double still counts exactly); None otherwise.
fn whole(s: &str) -> Option<u64> {
    s.parse::<u64>().ok().or_else(|| {
        let v = s.parse::<f64>().ok()?;
        (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= 9_007_199_254_740_992.0)
            .then_some(v as u64)
    })
}

/// Typed access to the cells of one row, collecting problems.
struct Cells<'a> {
    cols: &'a [&'a str],
    row: &'a CsvRow,
    problems: &'a mut Vec<Problem>,
}

impl Cells<'_> {
    fn cell(&self, col: &str) -> Option<&Cell> {
        let i = self.cols.iter().position(|c| *c == col)?;
        self.row.cells.get(i)
    }

    fn s(&self, col: &str) -> &str {
        self.cell(col).map_or("", |c| c.text.trim())
    }

    fn problem(&mut self, col: &str, message: String, hint: &str) {
        let span = match self.cell(col) {
            Some(c) => (c.start, (c.end - c.start).max(1)),
            None => (self.row.end.saturating_sub(1), 1),
        };
        self.problems.push(Problem {
            path: format!("line {} column `{col}`", self.row.line),
            message,
            hint: Some(hint.to_string()),
            span: Some(span),
        });
    }

    /// A positive integer; `default` when blank or 0 and a default is given.
    fn count(&mut self, col: &str, default: Option<u64>) -> Option<u64> {
        let s = self.s(col).to_string();
        match (whole(&s), default) {
            (Some(v), _) if v > 0 => Some(v),
            (Some(0), Some(d)) => Some(d),
            (None, Some(d)) if s.is_empty() => Some(d),
            _ => {
                self.problem(
                    col,
                    format!("`{s}` is not a positive whole number"),
                    "write a count such as 1, 8 or 64",
                );
                None
            }
        }
    }

    /// A positive integer, or None when blank or 0 (unstated); Some(None)
    /// marks a bad cell (reported).
    fn optional_count(&mut self, col: &str) -> Option<Option<u64>> {
        match self.s(col) {
            "" => Some(None),
            s if whole(s) == Some(0) => Some(None),
            _ => self.count(col, None).map(Some),
        }
    }

    fn millis(&mut self, col: &str) -> Option<Seconds> {
        let s = self.s(col).to_string();
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => match bounds::MEASURED_LATENCY.check(v / 1e3) {
                Ok(t) => Some(Seconds(t)),
                Err(m) => {
                    self.problem(col, m, bounds::MEASURED_LATENCY.why);
                    None
                }
            },
            _ => {
                self.problem(
                    col,
                    format!("`{s}` is not a positive time in milliseconds"),
                    "write the measured mean in ms, e.g. 182.5",
                );
                None
            }
        }
    }

    fn engine(&mut self, col: &str) -> Option<Engine> {
        let s = self.s(col).to_ascii_lowercase();
        match s.parse::<Engine>() {
            Ok(Engine::Neutral) | Err(_) => {
                self.problem(
                    col,
                    format!("unknown engine `{s}`"),
                    "one of vllm, sglang, trtllm",
                );
                None
            }
            Ok(e) => Some(e),
        }
    }

    /// The optional `client` column: `fixed` when blank.
    fn client(&mut self, col: &str) -> Option<Client> {
        let s = self.s(col).to_ascii_lowercase();
        match Client::ALL.into_iter().find(|c| c.name() == s) {
            Some(c) => Some(c),
            None if s.is_empty() => Some(Client::Fixed),
            None => {
                self.problem(
                    col,
                    format!("unknown benchmark client `{s}`"),
                    "fixed (every request exactly isl/osl tokens) or inferencemax (lengths in [0.8, 1] × isl/osl), or leave it blank",
                );
                None
            }
        }
    }

    /// The optional `kv_dtype` column: None when blank or `auto` (the
    /// checkpoint's type).
    fn kv_dtype(&mut self, col: &str) -> Option<Option<DType>> {
        match DType::kv_cache(self.s(col)) {
            Ok(d) => Some(d),
            Err(m) => {
                self.problem(col, m, &kv_hint());
                None
            }
        }
    }

    /// The optional `gpus_per_node` column, within its bound.
    fn node_size(&mut self, col: &str) -> Option<Option<u32>> {
        if self.s(col).is_empty() {
            return Some(None);
        }
        self.within(col, bounds::GPUS_PER_NODE)
            .map(|n| Some(n as u32))
    }

    /// A positive integer within `range` (a length, a concurrency).
    fn within(&mut self, col: &str, range: bounds::Range) -> Option<u64> {
        let n = self.count(col, None)?;
        match range.check_count(n) {
            Ok(n) => Some(n),
            Err(m) => {
                self.problem(col, m, range.why);
                None
            }
        }
    }

    /// The optional `throughput_tok_s` column: None when blank.
    fn throughput(&mut self, col: &str) -> Option<Option<TokensPerSecond>> {
        let s = self.s(col).to_string();
        if s.is_empty() {
            return Some(None);
        }
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Some(Some(TokensPerSecond(v))),
            _ => {
                self.problem(
                    col,
                    format!("`{s}` is not a positive rate in output tokens per second"),
                    "the client's output tokens per second (one replica's when aggregated), e.g. 5120.5, or blank",
                );
                None
            }
        }
    }

    /// A catalog GPU, as its catalog id (aliases such as `h200` resolved).
    fn catalog_gpu(&mut self, col: &str) -> Option<String> {
        let s = self.s(col).to_string();
        match catalog::gpu(&s) {
            Some(Ok(g)) => Some(g.id),
            Some(Err(e)) => {
                self.problem(
                    col,
                    e.to_string(),
                    "report this: a catalog GPU does not load",
                );
                None
            }
            None => {
                self.problem(col, format!("unknown GPU `{s}`"), &usable::gpu_hint());
                None
            }
        }
    }

    fn dtype(&mut self, col: &str) -> Option<Option<DType>> {
        let s = self.s(col).to_ascii_lowercase();
        match quant_dtype(&s) {
            Ok(d) => Some(d),
            Err(m) => {
                self.problem(
                    col,
                    m,
                    "one of bf16, fp8, fp8_block, nvfp4, mxfp4, int4_wo (blank: the checkpoint's)",
                );
                None
            }
        }
    }

    /// A layout from degree columns (`prefix` + tp/pp/...), folding unstated
    /// expert degrees as engines do.
    fn layout(&mut self, names: [&str; 5]) -> Option<Layout> {
        let [tp, pp, dp, ep, etp] = names;
        let t = self.count(tp, Some(1))? as u32;
        let p = self.count(pp, Some(1))? as u32;
        let e = self.count(ep, Some(1))? as u32;
        let x = self.count(etp, Some(0)).unwrap_or(0) as u32;
        let d = match self.s(dp) {
            // Unstated attention DP: the MoE degrees tell the GPUs per stage.
            "" | "0" if x > 0 && (e * x) % t == 0 && e * x > t => e * x / t,
            _ => self.count(dp, Some(1))? as u32,
        };
        let etp_v = if x > 0 { x } else { (t * d / e).max(1) };
        Some(Layout {
            pp: p,
            tp: t,
            cp: 1,
            dp: d,
            ep: e,
            etp: etp_v,
        })
    }

    fn native(&mut self, name: &str, base: &Path) -> Option<Run> {
        let model = model_ref(self.s("model"), base);
        let gpu = self.catalog_gpu("gpu");
        let engine = self.engine("engine");
        let version = self.s("engine_version").to_string();
        let weights = self.dtype("weight_dtype");
        let isl = self.within("isl", bounds::TOKENS);
        let osl = self.within("osl", bounds::TOKENS);
        let concurrency = self.within("concurrency", bounds::CONCURRENCY);
        let deployment = self.native_deployment(concurrency);
        let ttft = self.millis("ttft_ms");
        let tpot = self.millis("tpot_ms");
        let client = self.client("client");
        let kv_dtype = self.kv_dtype("kv_dtype");
        let gpus_per_node = self.node_size("gpus_per_node");
        let throughput = self.throughput("throughput_tok_s");
        if model.is_empty() {
            self.problem(
                "model",
                "no model".into(),
                "a catalog id, a Hugging Face id or a config.json path",
            );
        }
        let weights = weights?;
        Some(Run {
            file: name.to_string(),
            line: self.row.line,
            id: format!("{name}:{}", self.row.line),
            model,
            gpu: gpu?,
            engine: engine?,
            engine_version: version,
            gemm_dtype: weights,
            moe_dtype: weights,
            isl: isl?,
            osl: osl?,
            deployment: deployment?,
            ttft: ttft?,
            tpot: tpot?,
            client: client?,
            kv_dtype: kv_dtype?,
            gpus_per_node: gpus_per_node?,
            throughput: throughput?,
            reading: Reading::AsStated,
        })
    }

    /// A native row's deployment: aggregated (`tp`..`etp`, `concurrency`
    /// per replica), or with `mode = disaggregated` the `prefill_*` and
    /// `decode_*` layouts and `*_workers` (`concurrency` on the whole
    /// deployment).
    fn native_deployment(&mut self, concurrency: Option<u64>) -> Option<RunDeployment> {
        match self.s("mode") {
            "" | "aggregated" | "agg" => {
                let layout = self.layout(["tp", "pp", "dp", "ep", "etp"]);
                Some(RunDeployment::Aggregated {
                    layout: layout?,
                    concurrency: concurrency?,
                    replicas: 1,
                })
            }
            "disaggregated" | "disagg" => {
                let mut pool = |p: &str| {
                    let col = |c: &str| format!("{p}_{c}");
                    let layout =
                        self.layout([&col("tp"), &col("pp"), &col("dp"), &col("ep"), &col("etp")]);
                    let workers = self.optional_count(&col("workers"));
                    Some(PoolRun {
                        layout: layout?,
                        workers: workers?.map(|w| w as u32),
                        batch_per_rank: None,
                    })
                };
                let (prefill, decode) = (pool("prefill"), pool("decode"));
                Some(RunDeployment::Disaggregated {
                    prefill: prefill?,
                    decode: decode?,
                    concurrency: concurrency?,
                })
            }
            other => {
                let other = other.to_string();
                self.problem(
                    "mode",
                    format!("unknown mode `{other}`"),
                    "aggregated (default) or disaggregated",
                );
                None
            }
        }
    }

    fn silicon(&mut self, name: &str) -> Option<Run> {
        let system = self.s("system").to_string();
        let gpu = gpu_of_system(&system).map(str::to_string);
        if gpu.is_none() {
            self.problem(
                "system",
                format!("unknown system `{system}`"),
                "one of h100_sxm, h200_sxm, b200_sxm, b300_sxm, gb200, gb300",
            );
        }
        let engine = self.engine("backend");
        let gemm = self.dtype("gemm_quant_mode");
        let moe = self.dtype("moe_quant_mode");
        let isl = self.within("isl", bounds::TOKENS);
        let osl = self.within("osl", bounds::TOKENS);
        let client = self
            .s("silicon_data_source")
            .split(';')
            .find_map(|kv| kv.trim().strip_prefix("silicon_concurrency="))
            .and_then(|v| v.trim().parse::<u64>().ok());
        let deployment = match self.s("mode") {
            "disagg" => self.silicon_disagg(client),
            _ => self.silicon_agg(client),
        };
        let ttft = self.millis("silicon_ttft_ms");
        let tpot = self.millis("silicon_tpot_ms");
        let id = match self.s("id") {
            "" => format!("{name}:{}", self.row.line),
            s => s.to_string(),
        };
        let deployment = deployment?;
        Some(Run {
            file: name.to_string(),
            line: self.row.line,
            id,
            model: self.s("model_path").to_string(),
            gpu: gpu?,
            engine: engine?,
            engine_version: self.s("backend_version").to_string(),
            gemm_dtype: gemm?,
            moe_dtype: moe?,
            isl: isl?,
            osl: osl?,
            kv_dtype: silicon_kv_dtype(self.s("precision"), &deployment),
            deployment,
            ttft: ttft?,
            tpot: tpot?,
            client: silicon_client(self.s("silicon_data_source")),
            gpus_per_node: None,
            throughput: None,
            reading: Reading::Silicon,
        })
    }

    fn silicon_agg(&mut self, client: Option<u64>) -> Option<RunDeployment> {
        let layout = self.layout([
            "tp_size",
            "pp_size",
            "attention_dp_size",
            "moe_ep_size",
            "moe_tp_size",
        ])?;
        let layout = world_counted_twice(layout);
        let batch = self.count("batch_size", None)?;
        let per_replica = batch * layout.dp as u64;
        let total = client.unwrap_or(per_replica).max(per_replica);
        Some(RunDeployment::Aggregated {
            layout,
            concurrency: per_replica,
            replicas: total.div_ceil(per_replica) as u32,
        })
    }

    fn silicon_pool(&mut self, p: &str) -> Option<PoolRun> {
        let col = |s: &str| format!("{p}_{s}");
        let names = [
            col("tp_size"),
            col("pp_size"),
            col("attention_dp_size"),
            col("moe_ep_size"),
            col("moe_tp_size"),
        ];
        let layout = self.layout([&names[0], &names[1], &names[2], &names[3], &names[4]]);
        let workers = self.optional_count(&col("num_workers"));
        let batch = self.optional_count(&col("batch_size"));
        Some(PoolRun {
            layout: layout?,
            workers: workers?.map(|w| w as u32),
            batch_per_rank: batch?,
        })
    }

    fn silicon_disagg(&mut self, client: Option<u64>) -> Option<RunDeployment> {
        let prefill = self.silicon_pool("prefill");
        let decode = self.silicon_pool("decode");
        let (prefill, decode) = (prefill?, decode?);
        let in_flight = decode.batch_per_rank.unwrap_or(1)
            * decode.layout.dp as u64
            * decode.workers.unwrap_or(1) as u64;
        Some(RunDeployment::Disaggregated {
            prefill,
            decode,
            concurrency: client.unwrap_or(in_flight),
        })
    }
}

/// An aggregated silicon row whose MoE split is `ep = moe_tp = N ≥ 4` over
/// `tp × dp = N²` GPUs: the file's generator wrote the replica's GPU count
/// twice (its ids say `tpN_epN`, and a DeepSeek-R1 replica on one 8-GPU B200
/// node at concurrency 4 is not 64 GPUs). Read as N GPUs, with tp (or
/// attention DP) N, ep N and no expert TP. On the 196 rows of train.csv at
/// N = 4 and 8 this took the median error from 47–65% to 23–66% (TTFT) and
/// from 17–35% to 11–19% (TPOT), the serving layer unchanged. At N = 2 (four
/// GPUs, tp 4 with ep 2 × moe_tp 2) both readings are plausible and the
/// stated one is kept; disaggregated pools write valid expert-TP splits the
/// same way and are left as stated.
fn world_counted_twice(l: Layout) -> Layout {
    if l.ep >= 4 && l.etp == l.ep && l.tp * l.dp == l.ep * l.etp {
        let (tp, dp) = if l.tp > 1 { (l.ep, l.dp) } else { (l.tp, l.ep) };
        Layout {
            tp,
            dp,
            etp: 1,
            ..l
        }
    } else {
        l
    }
}

/// A layout as a run deployed it, and the redundant expert slots it needs.
///
/// A dense model's MLPs split like attention (no expert degrees). A MoE
/// layout stated as tp N (the MoE split over the same N GPUs) whose N does
/// not divide the attention heads (GB200 NVL72 rows at tp 12–72 for
/// DeepSeek-R1's 128 heads) cannot have run as stated: such N-GPU
/// deployments run wide expert parallelism, attention data-parallel over the
/// N GPUs and the experts spread over them, with redundant expert slots
/// where N does not divide the experts (EPLB, `redundant_slots`).
fn as_deployed(model: &Model, layout: Layout, reading: Reading) -> Layout {
    let Some(_) = &model.moe else {
        return Layout {
            ep: 1,
            etp: layout.tp * layout.cp * layout.dp,
            ..layout
        };
    };
    let heads = model.attention.n_heads() as u32;
    let world = layout.tp * layout.dp;
    let silicon = match reading {
        Reading::Silicon => true,
        Reading::AsStated => false,
    };
    if silicon && layout.ep * layout.etp == world && heads % layout.tp != 0 {
        wide_ep(layout, world)
    } else {
        layout
    }
}

/// `layout`'s stage as `n` GPUs of wide expert parallelism: attention
/// data-parallel over them and the experts spread over all of them.
fn wide_ep(layout: Layout, n: u32) -> Layout {
    Layout {
        tp: 1,
        dp: n,
        ep: n,
        etp: 1,
        ..layout
    }
}

/// The fewest GPUs of a decode worker that `decode_world_only` reads as wide
/// EP: more than one NVLink node's tensor-parallel group of 8.
const WIDE_EP_DECODE_GPUS: u32 = 16;

/// The decode pool of a disaggregated row that states no worker counts: such
/// rows (train.csv's `source_file=` rows; their ids name only the prefill
/// pool's tp and ep) give the decode worker's GPU count N as its tp and
/// repeat the prefill's EP degree as its own, writing `moe_tp = N / ep` to
/// fill the split (`32/1/8/4` beside a tp 4 ep 4 prefill; `16/1/16/1`
/// beside an ep 1 one). Only N is known. From `WIDE_EP_DECODE_GPUS` on such
/// a worker is read as wide EP (`wide_ep`), the decode recipe of
/// TensorRT-LLM (`enable_attention_dp`) and SGLang (`--enable-dp-attention`);
/// below, the stated split is a layout an engine runs, and is kept (None).
/// On train.csv's 1,132 such rows, with the serving layer unchanged, the
/// median TPOT bias went from +182% to +18% for `32/1/8/4`, from +323% to
/// +38% for `32/1/16/2` and from −33% to −13% for TensorRT-LLM `16/1/1/16`.
/// A row that states its decode workers, or a split that is not the
/// prefill's, is kept as stated.
fn decode_world_only(model: &Model, prefill: &PoolRun, decode: &PoolRun) -> Option<Layout> {
    let l = decode.layout;
    let copied = l.dp == 1 && l.ep == prefill.layout.ep && l.ep * l.etp == l.tp;
    let read = model.moe.is_some() && decode.workers.is_none() && copied;
    (read && l.tp >= WIDE_EP_DECODE_GPUS).then(|| wide_ep(l, l.tp))
}

/// The fewest redundant expert slots that let every expert degree in `eps`
/// split the experts evenly (0 for a dense model).
fn redundant_slots(model: &Model, eps: &[u32]) -> u32 {
    let Some(moe) = &model.moe else { return 0 };
    let experts = moe.n_routed_experts as u32;
    let lcm = eps.iter().fold(1u32, |a, &b| a / gcd(a, b) * b);
    experts.div_ceil(lcm) * lcm - experts
}

/// The memory share a measured run is taken to have been launched with when
/// the engine's default holds not even one request: the run shows it fitted,
/// so its operator raised the share (`--mem-fraction-static`,
/// `--gpu-memory-utilization`, `free_gpu_memory_fraction`) to about this.
pub const MEASURED_MEMORY_FRACTION: Fraction = Fraction::known(0.95);

/// Raises `engine`'s memory share to `MEASURED_MEMORY_FRACTION` where its
/// default holds no request of `context` tokens on one of `layouts`.
fn measured_share(
    model: &Model,
    gpu: &Gpu,
    layouts: &[Layout],
    engine: &mut EngineConfig,
    redundant: u32,
    context: u64,
) {
    let holds = |e: &EngineConfig| {
        layouts
            .iter()
            .all(|l| memory::max_concurrency(model, gpu, l, e, redundant, context) > 0)
    };
    if !holds(engine) {
        engine.max_memory_fraction = engine.max_memory_fraction.max(MEASURED_MEMORY_FRACTION);
    }
}

/// A pool stated with every degree 1 for a model one GPU cannot hold (rows
/// whose layout columns are placeholders): the fewest GPUs, a power of two,
/// in wide expert parallelism (attention DP and EP over them) that hold a
/// request. None where the stated layout holds one, or no layout does.
fn unstated_pool(
    model: &Model,
    gpu: &Gpu,
    layout: Layout,
    engine: &EngineConfig,
    context: u64,
) -> Option<Layout> {
    let moe = model.moe.as_ref()?;
    let holds = |l: &Layout| {
        let redundant = redundant_slots(model, &[l.ep]);
        let mut e = *engine;
        e.max_memory_fraction = e.max_memory_fraction.max(MEASURED_MEMORY_FRACTION);
        memory::max_concurrency(model, gpu, l, &e, redundant, context) > 0
    };
    if layout.gpus() != 1 || holds(&layout) {
        return None;
    }
    (1..=7)
        .map(|k| 1u32 << k)
        .filter(|n| *n <= moe.n_routed_experts as u32)
        .map(|n| Layout {
            dp: n,
            ep: n,
            ..layout
        })
        .find(|l| holds(l))
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A model reference: paths relative to the CSV's folder become absolute.
fn model_ref(s: &str, base: &Path) -> String {
    let p = PathBuf::from(s);
    let looks_like_file = s.ends_with(".json") || s.ends_with(".toml") || s.ends_with(".yaml");
    if looks_like_file && p.is_relative() {
        base.join(p).display().to_string()
    } else {
        s.to_string()
    }
}

impl Run {
    /// Every column that states what ran but the output length (model, GPU,
    /// engine and version, weight and KV types, node size, client, prompt
    /// length, deployment), as a key: not where the row came from, nor what
    /// it measured. Runs that share it and the output length are repeats
    /// (`accuracy::repeats`); runs that share only it tell a wait that grows
    /// with the output from a fixed cost (`fit`).
    pub(crate) fn setting(&self) -> String {
        format!(
            "{:?}",
            (
                (&self.model, &self.gpu, self.engine, &self.engine_version),
                (self.gemm_dtype, self.moe_dtype, self.kv_dtype),
                (self.gpus_per_node, self.client, self.isl, &self.deployment),
            )
        )
    }

    /// The model the run names, with the run's weight types applied: the
    /// GEMM type as `Model::store_weights` stores a weight type, then the
    /// MoE type to the routed experts. An MXFP4 checkpoint keeps its format
    /// under another 4-bit label (the silicon files label gpt-oss's MXFP4
    /// experts `nvfp4`).
    pub fn model(&self) -> Result<Model, String> {
        let mut m = catalog::resolve_model(&self.model).map_err(|e| {
            let messages: Vec<&str> = e.problems.iter().map(|p| p.message.as_str()).collect();
            messages.join("; ")
        })?;
        // The checkpoint's experts, before the labels re-quantise them.
        let experts = m.dtypes.experts;
        if let Some(g) = self.gemm_dtype {
            m.store_weights(g);
        }
        // An MXFP4 checkpoint (gpt-oss) under any 4-bit label runs its own;
        // an INT4 one labelled NVFP4 (Kimi-K2.5) is NVIDIA's NVFP4
        // re-quantisation, a checkpoint of its own. Without a MoE label the
        // experts are the checkpoint's.
        let four_bit = |d: DType| d.bits() < 8.0;
        m.dtypes.experts = match self.moe_dtype {
            Some(e) if four_bit(e) && experts == DType::Mxfp4 => experts,
            Some(e) => e,
            None => experts,
        };
        if let Some(e) = self.moe_dtype.filter(|e| m.moe.is_none() && four_bit(*e)) {
            m.dtypes.dense = e;
        }
        // A measured run served the weights it names: nothing re-quantised.
        m.checkpoint_weights = None;
        Ok(m)
    }

    /// The output throughput a closed loop of the run's requests in flight
    /// sustains at `ttft` and `tpot` (Little's law): each request holds its
    /// slot for TTFT + (output − 1) × TPOT and yields its output tokens, at
    /// the mean output length the client draws. With the measured latencies
    /// it checks a stated throughput (`calibrate`); with predicted ones it is
    /// the predicted throughput (`accuracy`).
    pub fn closed_loop_throughput(&self, ttft: Seconds, tpot: Seconds) -> TokensPerSecond {
        let osl = self.client.mean(self.osl);
        let latency = ttft + tpot * (osl - 1.0).max(0.0);
        TokensPerSecond::from_tokens(self.deployment.concurrency() as f64 * osl, latency)
    }

    /// One replica of an aggregated run, ready to estimate (None for a
    /// disaggregated run).
    pub fn replica(&self) -> Option<Result<Replica, String>> {
        let RunDeployment::Aggregated {
            layout,
            concurrency,
            ..
        } = self.deployment
        else {
            return None;
        };
        Some(self.replica_of(layout, concurrency))
    }

    /// The run's GPU from the catalog, in nodes of the run's stated size.
    fn gpu(&self) -> Result<Gpu, String> {
        let mut gpu = catalog::gpu(&self.gpu)
            .ok_or_else(|| format!("GPU `{}` is not in the catalog", self.gpu))?
            .map_err(|e| e.to_string())?;
        if let Some(n) = self.gpus_per_node {
            gpu.gpus_per_node = n;
        }
        Ok(gpu)
    }

    /// `model()` on `gpu` with the run's KV cache type, which the GPU and
    /// the engine must both store.
    fn model_on(&self, gpu: &Gpu) -> Result<Model, String> {
        let mut m = self.model()?;
        if let Some(k) = self.kv_dtype {
            m.store_kv_cache_on(k, gpu, self.engine)
                .map_err(|e| format!("KV cache {k}: {e}"))?;
        }
        Ok(m)
    }

    /// The disaggregated deployment of a disaggregated run (None for an
    /// aggregated one).
    pub fn disaggregated(&self) -> Option<Result<Disaggregated, String>> {
        let RunDeployment::Disaggregated {
            prefill,
            decode,
            concurrency,
        } = self.deployment
        else {
            return None;
        };
        Some((|| {
            let gpu = self.gpu()?;
            let model = self.model_on(&gpu)?;
            let context = self.isl + self.osl;
            let mut engine = self.engine.config(gpu.memory);
            let mut assumed = Vec::new();
            let mut decode = decode;
            if let Some(l) = decode_world_only(&model, &prefill, &decode) {
                assumed.push(format!(
                    "decode worker stated only by its {} GPUs (its expert split repeats the prefill's ep {}, no worker counts): dp {} ep {} assumed (wide EP)",
                    l.dp, prefill.layout.ep, l.dp, l.ep
                ));
                decode.layout = l;
            }
            let mut pool = |p: PoolRun, role: &str| {
                let mut layout = as_deployed(&model, p.layout, self.reading);
                if let Some(l) = unstated_pool(&model, &gpu, layout, &engine, context) {
                    assumed.push(format!(
                        "{role} layout stated as one GPU, which cannot hold {}: dp {} ep {} assumed (the fewest GPUs in wide EP that do)",
                        self.model, l.dp, l.ep
                    ));
                    layout = l;
                }
                Pool {
                    layout,
                    workers: p.workers.unwrap_or(0),
                    prompts_per_rank: p.batch_per_rank.unwrap_or(1).max(1),
                    redundant_experts: 0,
                    overlap: crate::ops::Overlap::None,
                }
            };
            let (mut prefill, mut decode) = (pool(prefill, "prefill"), pool(decode, "decode"));
            // A run does not state its slots: both pools are read with the
            // fewest that both EP degrees split evenly.
            let redundant = redundant_slots(&model, &[prefill.layout.ep, decode.layout.ep]);
            prefill.redundant_experts = redundant;
            decode.redundant_experts = redundant;
            measured_share(
                &model,
                &gpu,
                &[prefill.layout, decode.layout],
                &mut engine,
                redundant,
                context,
            );
            let mut d = Disaggregated {
                calibration: profile::resolve_disaggregated(&model, &gpu, self.engine).kernels,
                prefill,
                decode,
                workload: Workload {
                    isl: Tokens::new(self.isl),
                    osl: Tokens::new(self.osl),
                    concurrency,
                    cache_hit_rate: Fraction::ZERO,
                    client: self.client,
                },
                engine,
                routing_skew: 0.0,
                model,
                gpu,
                assumed,
            };
            d.infer_workers();
            Ok(d)
        })())
    }

    /// A replica of `layout` with `concurrency` requests in flight, on the
    /// run's model, GPU and engine.
    pub(crate) fn replica_of(&self, layout: Layout, concurrency: u64) -> Result<Replica, String> {
        let gpu = self.gpu()?;
        let model = self.model_on(&gpu)?;
        let layout = as_deployed(&model, layout, self.reading);
        let redundant = redundant_slots(&model, &[layout.ep]);
        let mut engine = self.engine.config(gpu.memory);
        measured_share(
            &model,
            &gpu,
            &[layout],
            &mut engine,
            redundant,
            self.isl + self.osl,
        );
        Ok(Replica {
            calibration: profile::resolve_for(&model, &gpu, self.engine, self.client).kernels,
            layout,
            workload: Workload {
                isl: Tokens::new(self.isl),
                osl: Tokens::new(self.osl),
                concurrency,
                cache_hit_rate: Fraction::ZERO,
                client: self.client,
            },
            engine,
            redundant_experts: redundant,
            routing_skew: 0.0,
            overlap: crate::ops::Overlap::None,
            model,
            gpu,
        })
    }
}

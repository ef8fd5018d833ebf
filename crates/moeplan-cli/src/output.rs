//! The one place that writes to stdout and stderr.
//!
//! Results go to stdout (a table or JSON); diagnostics go to stderr as
//! miette reports, or to stdout as JSON when `--json` was asked for, so a
//! script always gets parseable output.
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};
use moeplan::report::Derivation;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

/// Exit code when the input is fine but the answer is negative.
pub const EXIT_NEGATIVE: u8 = 1;
/// Exit code for bad input.
pub const EXIT_INPUT: u8 = 2;

/// How a command reports, results and failures alike: text for people,
/// or JSON for scripts (`--json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tables and sentences on stdout, diagnostics on stderr.
    Text,
    /// JSON on stdout, diagnostics included.
    Json,
}

impl From<bool> for Format {
    /// The `--json` flag: given means JSON.
    fn from(json: bool) -> Self {
        if json {
            Format::Json
        } else {
            Format::Text
        }
    }
}

/// How much a text report says: its figures, or also the derivation
/// (formula and inputs) behind each (`--explain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// The figures alone.
    Figures,
    /// The figures and their derivations.
    Derivations,
}

impl From<bool> for Detail {
    /// The `--explain` flag: given means derivations.
    fn from(explain: bool) -> Self {
        if explain {
            Detail::Derivations
        } else {
            Detail::Figures
        }
    }
}

/// Why a command did not succeed.
pub enum Failure {
    /// Unreadable or invalid input (exit 2), reported in the given format.
    Input(Box<dyn Diagnostic + Send + Sync>, Format),
    /// Valid input, negative answer (exit 1), already reported by the command.
    Negative,
}

impl Failure {
    /// An input error reported in `format`, for `map_err`.
    pub fn input<E: Diagnostic + Send + Sync + 'static>(format: Format) -> impl Fn(E) -> Failure {
        move |e| Failure::Input(Box::new(e), format)
    }
}

/// Reports a panic: an internal error (exit 3), with what to send.
pub fn internal_error(what: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "internal error (a bug in moeplan, exit 3): {what}\nplease report it with the command line and input files"
    );
}

/// Writes text to stdout (ignoring a closed pipe).
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
}

/// Writes a value as pretty JSON to stdout.
pub fn json<T: Serialize>(value: &T) {
    let sorted = moeplan::output::to_sorted_value(value);
    print(&serde_json::to_string_pretty(&sorted).expect("reports serialise"));
}

/// Writes a line to stderr.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Renders a diagnostic as miette would, without colour when not on a terminal.
pub fn render(diag: &dyn Diagnostic) -> String {
    let theme = if std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none()
    {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut s = String::new();
    let _ = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .render_report(&mut s, diag);
    s
}

/// Reports a failure and returns its exit code.
pub fn failure(f: Failure) -> ExitCode {
    match f {
        Failure::Input(diag, format) => {
            if format == Format::Json {
                let related: Vec<String> = diag.help().map(|h| h.to_string()).into_iter().collect();
                json(&moeplan::output::ErrorOutput {
                    error: moeplan::output::ErrorBody {
                        kind: "input",
                        message: diag.to_string(),
                        help: related,
                    },
                });
            } else {
                note(&render(diag.as_ref()));
            }
            ExitCode::from(EXIT_INPUT)
        }
        Failure::Negative => ExitCode::from(EXIT_NEGATIVE),
    }
}

/// Derivations as an indented list: `  name = formula`, each input below
/// it as `      input = value`.
pub fn derivation_list<K: std::fmt::Display>(explain: &BTreeMap<K, Derivation>) -> String {
    let mut o = String::new();
    for (name, d) in explain {
        let _ = writeln!(o, "  {name} = {}", d.formula);
        for (k, v) in &d.inputs {
            let _ = writeln!(o, "      {k} = {v}");
        }
    }
    o
}

/// A table in the house style with the given header.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_content_arrangement(match TABLES.get().copied().unwrap_or(Tables::FitTerminal) {
        // comfy-table wraps cells to the terminal's width when stdout is
        // one; to a pipe or a file it writes full rows either way.
        Tables::FitTerminal => comfy_table::ContentArrangement::Dynamic,
        Tables::Wide => comfy_table::ContentArrangement::Disabled,
    });
    t.set_header(header.to_vec());
    t
}

/// How tables are laid out (`--wide`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tables {
    /// Wrapped to the terminal's width when printing to one.
    FitTerminal,
    /// Full rows always.
    Wide,
}

static TABLES: std::sync::OnceLock<Tables> = std::sync::OnceLock::new();

/// Sets the table layout once, from the command line.
pub fn set_tables(t: Tables) {
    let _ = TABLES.set(t);
}

/// A problem with the command line itself (a flag's value, a layout).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
#[diagnostic(code(moeplan::arguments))]
pub struct ArgError {
    /// What is wrong (may list several problems).
    pub message: String,
    /// How to fix it.
    #[help]
    pub help: Option<String>,
}

impl ArgError {
    /// A failure for bad arguments.
    pub fn failure(message: String, help: Option<String>, format: Format) -> Failure {
        Failure::Input(Box::new(ArgError { message, help }), format)
    }
}

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
    /// A command line clap answers itself (`--help`, `--version`: exit 0)
    /// or refuses (exit 2, as JSON on stdout with `--json`).
    Arguments(clap::Error),
    /// A bug in moeplan: a panic, already reported by the panic hook
    /// (`internal_error`; exit 3).
    Internal,
}

impl Failure {
    /// The exit code: 1 a negative answer, 2 bad input, 3 a bug in moeplan
    /// (0 for clap's help and version). The one place each is stated.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Negative => 1,
            Failure::Input(..) => 2,
            Failure::Arguments(e) => match e.use_stderr() {
                true => 2,
                false => 0,
            },
            Failure::Internal => 3,
        }
    }

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

/// Writes text to stdout (ignoring a closed pipe). On a terminal, unless
/// `--wide`, prose lines longer than its width are wrapped at spaces (tables
/// wrap their own cells); to a pipe or a file text is written as it is.
pub fn print(text: &str) {
    let wrapped = match prose_width(&std::io::stdout()) {
        Some(w) => wrap_prose(text, w),
        None => text.to_string(),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(wrapped.as_bytes());
    if !wrapped.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
}

/// The terminal's width when `stream` is one and tables fit it.
fn prose_width(stream: &impl std::io::IsTerminal) -> Option<usize> {
    if TABLES.get().copied().unwrap_or(Tables::FitTerminal) == Tables::Wide || !stream.is_terminal()
    {
        return None;
    }
    comfy_table::Table::new().width().map(usize::from)
}

/// Characters a table's lines start with: those are never re-wrapped.
const TABLE_EDGES: &[char] = &['┌', '│', '╞', '├', '└', '╭', '╰', '┆', '+', '|'];

/// Wraps every prose line of `text` longer than `width` columns at spaces;
/// a continuation is indented two columns past the line's own indent. A
/// word longer than the width stays whole.
fn wrap_prose(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let trimmed = line.trim_start();
        if line.chars().count() <= width || trimmed.starts_with(TABLE_EDGES) {
            out.push_str(line);
            continue;
        }
        let indent = line.len() - trimmed.len();
        let cont = " ".repeat((indent + 2).min(width / 2));
        let mut col = 0;
        out.push_str(&line[..indent]);
        col += indent;
        for (k, word) in trimmed.split(' ').enumerate() {
            let w = word.chars().count();
            if k > 0 && col + 1 + w > width {
                out.push('\n');
                out.push_str(&cont);
                col = cont.len();
            } else if k > 0 {
                out.push(' ');
                col += 1;
            }
            out.push_str(word);
            col += w;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wrap_prose;

    /// A 40-column terminal: a long prose line breaks at spaces with its
    /// continuation indented past the line's indent; short lines, table
    /// lines and words longer than the width stay as they are.
    #[test]
    fn prose_wraps_at_spaces_and_tables_do_not() {
        let text = "  searched 1234 layouts of deepseek-v3 on 8 h200-sxm in 0.02 s, 12 fit\n│ a table row that is far longer than forty columns │\nshort";
        let w = wrap_prose(text, 40);
        let lines: Vec<&str> = w.lines().collect();
        assert_eq!(lines[0], "  searched 1234 layouts of deepseek-v3");
        assert_eq!(lines[1], "    on 8 h200-sxm in 0.02 s, 12 fit");
        assert!(lines[2].starts_with('│') && lines[2].chars().count() > 40);
        assert_eq!(lines[3], "short");
        assert!(lines
            .iter()
            .filter(|l| !l.starts_with('│'))
            .all(|l| l.chars().count() <= 40));
        let long = "x".repeat(50);
        assert_eq!(wrap_prose(&long, 40), long);
    }
}

/// Writes a value as pretty JSON to stdout.
pub fn json<T: Serialize>(value: &T) {
    let sorted = moeplan::output::to_sorted_value(value);
    print(&serde_json::to_string_pretty(&sorted).expect("reports serialise"));
}

/// Writes a line to stderr, its prose wrapped as `print` wraps stdout's.
pub fn note(text: &str) {
    let wrapped = match prose_width(&std::io::stderr()) {
        Some(w) => wrap_prose(text, w),
        None => text.to_string(),
    };
    let _ = writeln!(std::io::stderr().lock(), "{wrapped}");
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
    let code = ExitCode::from(f.code());
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
        }
        Failure::Arguments(e) => argument_error(&e),
        Failure::Negative | Failure::Internal => {}
    }
    code
}

/// A command line clap refuses: as clap writes it (help and version
/// included), except that with `--json` a real error is JSON on stdout,
/// like every other error of a `--json` command.
fn argument_error(e: &clap::Error) {
    use clap::error::ErrorKind;
    let asks_json = std::env::args_os().any(|a| a == "--json");
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !asks_json || informational {
        let _ = e.print();
        return;
    }
    let text = e.render().to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let message = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    let help: Vec<String> = lines.map(|l| l.trim().to_string()).collect();
    json(&moeplan::output::ErrorOutput {
        error: moeplan::output::ErrorBody {
            kind: "input",
            message,
            help,
        },
    });
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

#[cfg(test)]
mod exit_tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Probe {
        #[arg(long)]
        n: u32,
    }

    /// Each failure's exit code as `moeplan --help` documents them: 1 a
    /// negative answer, 2 bad input (clap's refusals too), 3 a bug; clap's
    /// own help is 0.
    #[test]
    fn each_failure_owns_its_exit_code() {
        let input = ArgError::failure("bad".into(), None, Format::Text);
        let refused = Probe::try_parse_from(["probe", "--n", "x"]).expect_err("not a number");
        let help = Probe::try_parse_from(["probe", "--help"]).expect_err("help");
        assert_eq!(Failure::Negative.code(), 1);
        assert_eq!(input.code(), 2);
        assert_eq!(Failure::Arguments(refused).code(), 2);
        assert_eq!(Failure::Arguments(help).code(), 0);
        assert_eq!(Failure::Internal.code(), 3);
    }
}

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

/// When a progress bar is drawn (always on stderr, never in stdout's JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressDraw {
    /// Only when stderr is a terminal.
    OnTerminal,
    /// Always (`--progress`), even into a file or a pipe.
    Forced,
}

/// A progress bar of `total` steps named `what`, on stderr as `draw` says
/// (hidden otherwise).
pub fn progress_bar(total: u64, what: &str, draw: ProgressDraw) -> indicatif::ProgressBar {
    let target = match draw {
        ProgressDraw::OnTerminal => indicatif::ProgressDrawTarget::stderr(),
        ProgressDraw::Forced => indicatif::ProgressDrawTarget::term_like(Box::new(Stderr)),
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Stderr as indicatif's terminal, whether or not it is one (a forced bar).
#[derive(Debug)]
struct Stderr;

impl Stderr {
    fn put(&self, s: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(s.as_bytes())
    }
}

impl indicatif::TermLike for Stderr {
    fn width(&self) -> u16 {
        80
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.put(&format!("\x1b[{n}A"))
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.put(&format!("\x1b[{n}B"))
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.put(&format!("\x1b[{n}C"))
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.put(&format!("\x1b[{n}D"))
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().lock().flush()
    }
}

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

/// The width text and tables fit: `$MOEPLAN_COLUMNS` when set (a script or
/// a test asking for a width, pipe or not), else the terminal's when
/// `stream` is one; none with `--wide` or to a pipe or a file.
fn prose_width(stream: &impl std::io::IsTerminal) -> Option<usize> {
    if TABLES.get().copied().unwrap_or(Tables::FitTerminal) == Tables::Wide {
        return None;
    }
    if let Some(w) = std::env::var("MOEPLAN_COLUMNS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|w| *w >= MIN_COLUMNS)
    {
        return Some(w);
    }
    if !stream.is_terminal() {
        return None;
    }
    comfy_table::Table::new()
        .width()
        .map(|w| usize::from(w).max(MIN_COLUMNS))
}

/// The narrowest width text is fitted to (a narrower terminal gets this).
const MIN_COLUMNS: usize = 20;

/// A table as text. Full rows when no width applies (`--wide`, a pipe, a
/// file); else, in order of preference, full rows if they fit, cells wrapped
/// at spaces with every column as wide as its longest word (no word is
/// ever cut), or, when even that is too wide, one block per row with a
/// line per column (`header: value`, wrapped as prose).
pub fn fit(t: &comfy_table::Table) -> String {
    fit_dropping(t, &[])
}

/// As `fit`, but before falling back to one block per row, tries the table
/// without its `secondary` columns (by index), saying which were left out.
pub fn fit_dropping(t: &comfy_table::Table, secondary: &[usize]) -> String {
    let Some(width) = prose_width(&std::io::stdout()) else {
        return t.to_string();
    };
    if let Some(s) = arranged(t, width) {
        return s;
    }
    if !secondary.is_empty() {
        let (narrow, dropped) = without(t, secondary);
        if let Some(s) = arranged(&narrow, width) {
            let note = format!(
                "({} left out at this width; --wide shows every column)",
                dropped.join(", ")
            );
            return format!("{s}\n{}", wrap_prose(&note, width));
        }
    }
    records(t, width)
}

/// The table in at most `width` columns without cutting a word: full rows,
/// or cells wrapped at spaces with each column at least as wide as its
/// longest word; none when even that is wider.
fn arranged(t: &comfy_table::Table, width: usize) -> Option<String> {
    let full = t.to_string();
    if full.lines().all(|l| l.chars().count() <= width) {
        return Some(full);
    }
    let words = longest_words(t);
    // Borders: one per column and one more; padding: one each side.
    let least: usize = words.iter().map(|w| w + 2).sum::<usize>() + words.len() + 1;
    if least > width {
        return None;
    }
    let mut t = t.clone();
    let widths = share(&words, &t.column_max_content_widths(), width - least);
    t.set_constraints(widths.iter().map(|w| {
        comfy_table::ColumnConstraint::Absolute(comfy_table::Width::Fixed(
            u16::try_from(w + 2).unwrap_or(u16::MAX),
        ))
    }));
    Some(t.to_string())
}

/// Each column's content width: its longest word, then the `spare`
/// columns go first to the columns that then fit whole, fewest needed
/// first, and what is left to the columns still wrapped, in order.
fn share(words: &[usize], whole: &[u16], mut spare: usize) -> Vec<usize> {
    let mut widths = words.to_vec();
    let need = |i: usize| usize::from(whole.get(i).copied().unwrap_or(0)).saturating_sub(words[i]);
    let mut order: Vec<usize> = (0..words.len()).filter(|&i| need(i) > 0).collect();
    order.sort_by_key(|&i| (need(i), i));
    for &i in &order {
        if need(i) <= spare {
            widths[i] += need(i);
            spare -= need(i);
        }
    }
    for &i in &order {
        let short = usize::from(whole[i]).saturating_sub(widths[i]);
        let give = short.min(spare);
        widths[i] += give;
        spare -= give;
    }
    widths
}

/// The table without the columns `drop` (by index), and their headers.
fn without(t: &comfy_table::Table, drop: &[usize]) -> (comfy_table::Table, Vec<String>) {
    let cells = |r: &comfy_table::Row| -> Vec<String> {
        r.cell_iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, c)| c.content())
            .collect()
    };
    let header: Vec<String> = t.header().map(cells).unwrap_or_default();
    let dropped = t
        .header()
        .map(|h| {
            h.cell_iter()
                .enumerate()
                .filter(|(i, _)| drop.contains(i))
                .map(|(_, c)| c.content())
                .collect()
        })
        .unwrap_or_default();
    let mut n = table(&header.iter().map(String::as_str).collect::<Vec<_>>());
    for r in t.row_iter() {
        n.add_row(cells(r));
    }
    (n, dropped)
}

/// The longest word (between spaces or line breaks) of each column, its
/// header included, in characters.
fn longest_words(t: &comfy_table::Table) -> Vec<usize> {
    let n = t.column_iter().count();
    (0..n)
        .map(|i| {
            let header = t.header().and_then(|h| h.cell_iter().nth(i));
            header
                .into_iter()
                .chain(t.row_iter().filter_map(|r| r.cell_iter().nth(i)))
                .flat_map(|c| {
                    c.content()
                        .split_whitespace()
                        .map(|w| w.chars().count())
                        .collect::<Vec<_>>()
                })
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// A table too wide for `width` even at one word per cell line: each row
/// as a block, its first cell a heading and every other cell a
/// `header: value` line below it, wrapped at spaces; rows apart by a blank
/// line.
fn records(t: &comfy_table::Table, width: usize) -> String {
    let header: Vec<String> = t
        .header()
        .map(|h| h.cell_iter().map(|c| c.content()).collect())
        .unwrap_or_default();
    let mut o = String::new();
    for (k, row) in t.row_iter().enumerate() {
        if k > 0 {
            o.push('\n');
        }
        for (i, cell) in row.cell_iter().enumerate() {
            let name = header.get(i).map(String::as_str).unwrap_or("");
            let value = cell.content().replace('\n', "; ");
            let line = match (i, name.is_empty(), value.is_empty()) {
                (_, _, true) => continue,
                (0, true, false) => value,
                (0, false, false) if name == "#" => format!("#{value}"),
                (0, false, false) => format!("{name} {value}"),
                (_, true, false) => format!("  {value}"),
                (_, false, false) => format!("  {name}: {value}"),
            };
            o.push_str(&wrap_prose(&line, width));
            o.push('\n');
        }
    }
    o.pop();
    o
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
    use super::{share, wrap_prose};

    /// Three columns whose longest words are 3, 2 and 5 wide and whose
    /// longest cells 10, 4 and 5, with 3 columns to spare: the second
    /// needs 2 to fit whole and gets them; the first would need 7, so it
    /// gets the 1 left; the third fits already.
    #[test]
    fn spare_columns_go_first_to_the_column_they_make_whole() {
        assert_eq!(share(&[3, 2, 5], &[10, 4, 5], 3), vec![4, 4, 5]);
        assert_eq!(share(&[3, 2, 5], &[10, 4, 5], 0), vec![3, 2, 5]);
    }

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
    // 100 columns to a pipe or a file; a narrower terminal's width.
    let width = prose_width(&std::io::stderr()).map_or(100, |w| w.min(100));
    let mut s = String::new();
    let _ = GraphicalReportHandler::new_themed(theme)
        .with_width(width)
        .render_report(&mut s, diag);
    s
}

/// Reports a failure and returns its exit code.
pub fn failure(f: Failure) -> ExitCode {
    let code = ExitCode::from(f.code());
    match f {
        Failure::Input(diag, format) => {
            if format == Format::Json {
                // A report of several files carries each file's problems as
                // a related diagnostic: JSON gets their messages and hints.
                let top: &dyn Diagnostic = diag.as_ref();
                let all = std::iter::once(top).chain(diag.related().into_iter().flatten());
                let (messages, help): (Vec<String>, Vec<Option<String>>) = all
                    .map(|d| (d.to_string(), d.help().map(|h| h.to_string())))
                    .unzip();
                json(&moeplan::output::ErrorOutput {
                    error: moeplan::output::ErrorBody {
                        kind: "input",
                        message: messages.join("\n"),
                        help: help.into_iter().flatten().collect(),
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

/// A table in the house style with the given header; print it with `fit`.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    // Full rows; `fit` lays the table out for the width that applies.
    t.set_content_arrangement(comfy_table::ContentArrangement::Disabled);
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

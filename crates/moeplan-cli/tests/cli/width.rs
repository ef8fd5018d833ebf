//! Tables and prose fitted to a narrow terminal (`$MOEPLAN_COLUMNS` stands
//! in for the terminal's width): every line within it, no word cut, and
//! `--wide` or a pipe unchanged.

use super::{command, root};
use std::collections::BTreeSet;

/// The width of the narrowest usual terminal.
const COLUMNS: usize = 80;

/// One command of each kind that prints a table.
const COMMANDS: &[&[&str]] = &[
    &["plan"],
    &["plan", "--objective", "pareto", "--top", "3"],
    &[
        "plan",
        "examples/qwen3-30b-8xh100.toml",
        "--top",
        "3",
        "--explain",
    ],
    &["catalog"],
    &["model", "mixtral-8x7b"],
    &[
        "estimate",
        "--model",
        "deepseek-r1",
        "--gpu",
        "h200",
        "--dp",
        "8",
        "--ep",
        "8",
        "--isl",
        "1000",
        "--osl",
        "2000",
        "--concurrency",
        "1024",
        "--explain",
    ],
    &["audit", "examples/seeds/000-proposed.toml"],
    &[
        "calibrate",
        "crates/moeplan/tests/fixtures/runs/silicon.csv",
    ],
    &["accuracy", "crates/moeplan/tests/fixtures/runs/silicon.csv"],
    &[
        "simulate",
        "--model",
        "qwen3-30b-a3b",
        "--gpu",
        "h100",
        "--tp",
        "2",
        "--ep",
        "2",
        "--isl",
        "2000",
        "--osl",
        "500",
        "--engine",
        "vllm",
        "--replicas",
        "2",
        "--rate",
        "5",
        "--requests",
        "300",
        "--ttft-slo",
        "500",
        "--tpot-slo",
        "30",
    ],
];

/// The command's stdout, at `columns` when given (else as to a pipe).
fn run(args: &[&str], columns: Option<usize>) -> String {
    let mut c = command(&root(), args);
    c.env_remove("MOEPLAN_COLUMNS");
    if let Some(w) = columns {
        c.env("MOEPLAN_COLUMNS", w.to_string());
    }
    let o = c.output().expect("the moeplan binary runs");
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("stdout is UTF-8")
}

/// The words of a text: what lies between spaces and table rules, with the
/// punctuation a narrow layout puts around them (`header: value`, joined
/// cell lines, the list of columns left out) taken off.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || "│┆".contains(c))
        .filter(|w| !w.is_empty() && !w.chars().all(|c| "─┌┐└┘├┤┬┴┼╞╡╪═".contains(c)))
        .map(|w| {
            w.trim_start_matches('(')
                .trim_end_matches([':', ';', ',', ')'])
                .to_string()
        })
        .collect()
}

/// Words a narrow layout adds: a row's heading (`#1`) and the note naming
/// the columns left out.
fn added(word: &str) -> bool {
    let heading = word
        .strip_prefix('#')
        .is_some_and(|n| n.parse::<u32>().is_ok());
    let note = "left out at this width --wide shows every column";
    heading || note.split(' ').any(|n| n == word)
}

/// At 80 columns every line of every command fits, and every word of the
/// narrow output is a word of the full-width output (a word cut in two
/// would leave pieces that are not): the table is wrapped at spaces, its
/// minor columns dropped, or written one row per block. With a wide
/// layout a plan's table is 354 columns wide, a catalog's 155.
#[test]
fn every_table_fits_80_columns_without_cutting_a_word() {
    for args in COMMANDS {
        let wide = run(args, None);
        let narrow = run(args, Some(COLUMNS));
        for line in narrow.lines() {
            assert!(
                line.chars().count() <= COLUMNS,
                "{args:?}: a line of {} columns:\n{line}",
                line.chars().count()
            );
        }
        let known = words(&wide);
        let cut: Vec<String> = words(&narrow)
            .into_iter()
            .filter(|w| !known.contains(w) && !added(w))
            .collect();
        assert!(
            cut.is_empty(),
            "{args:?}: words not in the full output: {cut:?}\n{narrow}"
        );
    }
}

/// `--wide` keeps full rows at any width: the output is the piped one,
/// byte for byte.
#[test]
fn wide_keeps_full_rows() {
    for args in [&["catalog"][..], &["plan", "--top", "2"]] {
        let mut wide: Vec<&str> = args.to_vec();
        wide.push("--wide");
        assert_eq!(run(&wide, Some(COLUMNS)), run(args, None), "{args:?}");
    }
}

/// A diagnostic fits a narrow terminal too (it is drawn 100 columns wide
/// to a pipe): every line of a four-problem scenario's report within 80.
/// (The file's path and lines are quoted whole: this one's are short.)
#[test]
fn a_diagnostic_fits_80_columns() {
    let file = "tests/fixtures/invalid/scenario-workload-beyond-bounds.toml";
    let mut c = command(super::crate_dir(), &["plan", file]);
    c.env("MOEPLAN_COLUMNS", COLUMNS.to_string());
    let o = c.output().expect("the moeplan binary runs");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("4 problems"), "{err}");
    let widest = err.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest <= COLUMNS, "{widest} columns:\n{err}");
}

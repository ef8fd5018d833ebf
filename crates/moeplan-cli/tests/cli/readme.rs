//! The README's examples are the real output of their commands.
//!
//! Every fenced block whose first line is `$ moeplan ...` is run from the
//! repository root; its body must equal what the command prints (stdout,
//! then stderr without the search-timing line, which varies). Run with
//! `MOEPLAN_UPDATE_README=1` to rewrite the blocks.
use super::moeplan_at_root;

fn run(args: &str) -> String {
    let words: Vec<&str> = args.split_whitespace().collect();
    let out = moeplan_at_root(&words);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        if !line.starts_with("searched ") {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

#[test]
fn readme_examples_are_current() {
    let root = super::root();
    let path = root.join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let update = std::env::var_os("MOEPLAN_UPDATE_README").is_some();
    let mut out = String::new();
    let mut stale = Vec::new();
    let mut lines = readme.split_inclusive('\n').peekable();
    let mut blocks = 0;
    while let Some(line) = lines.next() {
        out.push_str(line);
        if line.trim_end() != "```" || !lines.peek().is_some_and(|l| l.starts_with("$ moeplan ")) {
            continue;
        }
        let command = lines.next().unwrap();
        let args = command.trim_start_matches("$ moeplan ").trim_end();
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.trim_end() == "```" {
                break;
            }
            body.push_str(l);
        }
        blocks += 1;
        let fresh = run(args);
        if body
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            .trim_end()
            != fresh
        {
            stale.push(args.to_string());
        }
        out.push_str(command);
        out.push_str(&fresh);
        out.push_str("\n```\n");
    }
    assert!(blocks >= 5, "only {blocks} example blocks found");
    if update {
        std::fs::write(&path, out).unwrap();
    } else {
        assert!(stale.is_empty(), "stale README examples (run MOEPLAN_UPDATE_README=1 cargo test -p moeplan-cli --test cli readme::): {stale:#?}");
    }
}

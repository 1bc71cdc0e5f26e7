//! The documentation's commands against the real command line: every `convoy …` line in a
//! fenced shell block of README.md and docs/*.md must parse with the binary's clap
//! definition (`convoy::cli::Cli`), so a renamed flag or subcommand breaks this test
//! instead of a reader's first try. A block preceded by `<!-- needs: hardware -->` is
//! skipped (commands for a Pi, an Arduino or a sound card that are not checked here).

use std::path::{Path, PathBuf};

use clap::Parser;

/// The marker line that exempts the next fenced block.
const HARDWARE: &str = "<!-- needs: hardware -->";

fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Shell words of one command line (quotes grouped, no expansion).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The `convoy` invocations in one fenced block: continuation lines joined, comments,
/// prompts, `sudo`, environment assignments and everything after a pipe or `&&` cut.
fn invocations(block: &str) -> Vec<String> {
    let mut joined = Vec::new();
    let mut acc = String::new();
    for line in block.lines() {
        let line = line.trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            acc.push_str(head);
            acc.push(' ');
            continue;
        }
        acc.push_str(line);
        joined.push(std::mem::take(&mut acc));
    }
    let mut out = Vec::new();
    for line in joined {
        let line = line.trim().trim_start_matches("$ ");
        // A `#` starts a comment unless it is inside a word (`#rrggbb` in quotes is rare in
        // commands; cut at " #").
        let line = match line.find(" #") {
            Some(i) => &line[..i],
            None => line,
        };
        if line.starts_with('#') {
            continue;
        }
        for part in line.split("&&").flat_map(|p| p.split(';')) {
            let part = part.split('|').next().unwrap_or("");
            let part = part.split(" >").next().unwrap_or("");
            let mut w = words(part);
            while let Some(first) = w.first() {
                if first == "sudo" || (first.contains('=') && !first.starts_with('-')) {
                    w.remove(0);
                } else {
                    break;
                }
            }
            if w.first().map(String::as_str) == Some("convoy") {
                out.push(w.join("\u{1f}"));
            }
        }
    }
    out
}

#[test]
fn every_convoy_command_in_the_docs_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).expect("read doc");
        let mut lines = text.lines().enumerate().peekable();
        let mut skip_next = false;
        while let Some((n, line)) = lines.next() {
            let t = line.trim();
            if t == HARDWARE {
                skip_next = true;
                continue;
            }
            let Some(lang) = t.strip_prefix("```") else {
                continue;
            };
            let shell = matches!(lang.trim(), "sh" | "bash" | "shell" | "console");
            let mut block = String::new();
            for (_, l) in lines.by_ref() {
                if l.trim().starts_with("```") {
                    break;
                }
                block.push_str(l);
                block.push('\n');
            }
            if !shell || std::mem::take(&mut skip_next) {
                continue;
            }
            for cmd in invocations(&block) {
                let args: Vec<&str> = cmd.split('\u{1f}').collect();
                checked += 1;
                if let Err(e) = convoy::cli::Cli::try_parse_from(&args) {
                    // `--help` and `--version` "fail" with a display request: fine.
                    use clap::error::ErrorKind::*;
                    if !matches!(e.kind(), DisplayHelp | DisplayVersion) {
                        failures.push(format!(
                            "{}:{}: `{}`: {}",
                            file.display(),
                            n + 1,
                            args.join(" "),
                            e.render().to_string().lines().next().unwrap_or("")
                        ));
                    }
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} commands found in the docs");
    assert!(
        failures.is_empty(),
        "{} of {checked} documented commands do not parse:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_extractor_reads_shell_lines_as_a_shell_would_split_them() {
    let block = "$ convoy show shows/demo.toml --check   # validate\n\
                 CONVOY_LOG=debug sudo convoy --set 'audio.sink=null' \\\n  play demo | tee x\n\
                 cargo build && convoy status\n";
    let got: Vec<String> = invocations(block)
        .into_iter()
        .map(|c| c.replace('\u{1f}', " "))
        .collect();
    assert_eq!(
        got,
        [
            "convoy show shows/demo.toml --check",
            "convoy --set audio.sink=null play demo",
            "convoy status",
        ]
    );
}

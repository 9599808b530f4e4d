//! The dependency rule of the source tree (see src/lib.rs): the layers
//! never import the command line or the commands, the file format never
//! imports the capture, and the engine and reports touch neither files nor
//! BPF. Checked over the `use` lines and paths of every source file.

use std::path::{Path, PathBuf};

use crate::util::repo;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The crate paths a file names (`crate::a::b`, and `super::` resolved).
fn uses(file: &Path) -> Vec<String> {
    let src = repo().join("src");
    let module: Vec<String> = file
        .strip_prefix(&src)
        .unwrap()
        .with_extension("")
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .filter(|c| c != "mod")
        .collect();
    let text = std::fs::read_to_string(file).unwrap();
    let mut found = Vec::new();
    let path_chars = |c: &char| c.is_alphanumeric() || *c == '_' || *c == ':';
    // `a::{b, c::{d, e}}` as the paths a::b, a::c::d, a::c::e (enough for
    // a rule about prefixes: every leaf keeps its full prefix).
    let expand = |start: usize| -> Vec<String> {
        let head: String = text[start..].chars().take_while(path_chars).collect();
        let rest = &text[start + head.len()..];
        if !rest.starts_with('{') {
            return vec![head];
        }
        let mut depth = 0;
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let inner = &rest[1..end];
        let mut out = Vec::new();
        let mut prefix = vec![head.clone()];
        let mut item = String::new();
        for c in inner.chars() {
            match c {
                '{' => {
                    prefix.push(format!("{}{}", prefix.last().unwrap(), item.trim()));
                    item.clear();
                }
                ',' | '}' => {
                    if !item.trim().is_empty() {
                        out.push(format!("{}{}", prefix.last().unwrap(), item.trim()));
                    }
                    item.clear();
                    if c == '}' {
                        prefix.pop();
                    }
                }
                c => item.push(c),
            }
        }
        if !item.trim().is_empty() {
            out.push(format!("{}{}", prefix.last().unwrap(), item.trim()));
        }
        out
    };
    for (i, _) in text.match_indices("crate::") {
        found.extend(expand(i + 7));
    }
    for (i, _) in text.match_indices("super::") {
        // Only the first `super` of a chain.
        if text[..i].ends_with("super::") {
            continue;
        }
        let ups = text[i..]
            .chars()
            .take_while(path_chars)
            .collect::<String>()
            .matches("super::")
            .count();
        // A file `a/b.rs` is module a::b: its `super` is `a`.
        let base = module.len().saturating_sub(ups);
        for tail in expand(i + 7 * ups) {
            let mut p: Vec<String> = module[..base].to_vec();
            p.extend(
                tail.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
            found.push(p.join("::"));
        }
    }
    found
}

#[test]
fn layers_never_import_the_command_line_and_format_never_imports_capture() {
    let src = repo().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "{files:?}");
    let mut broken = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let forbidden: &[&str] = if rel.starts_with("record/format/") {
            &["cli", "cmd", "record::capture"]
        } else if rel.starts_with("record/capture/") {
            &["cli", "cmd", "record::format", "analyze"]
        } else if rel == "analyze/engine.rs"
            || rel == "analyze/report.rs"
            || rel == "analyze/sharded.rs"
            || rel.starts_with("analyze/page/")
        {
            &["cli", "cmd", "record"]
        } else if rel.starts_with("analyze/") {
            &["cli", "cmd", "record::capture"]
        } else if [
            "event.rs",
            "time.rs",
            "host.rs",
            "files.rs",
            "escape.rs",
            "http.rs",
            "error.rs",
            "messages.rs",
        ]
        .contains(&rel.as_str())
        {
            &["cli", "cmd", "record", "analyze"]
        } else {
            &[]
        };
        for u in uses(f) {
            if forbidden
                .iter()
                .any(|f| u == *f || u.starts_with(&format!("{f}::")))
            {
                broken.push(format!("{rel} uses {u}"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_rule_checker_sees_imports() {
    let cmd = repo().join("src/cmd/record.rs");
    let u = uses(&cmd);
    assert!(u.iter().any(|p| p.starts_with("record::capture")), "{u:?}");
    let series = repo().join("src/record/format/series.rs");
    let u = uses(&series);
    assert!(
        u.iter()
            .any(|p| p == "record::format::writer::RecordingWriter"),
        "{u:?}"
    );
    // A group names each of its members.
    let cmd_mod = uses(&repo().join("src/cmd/mod.rs"));
    assert!(
        cmd_mod.iter().any(|p| p == "analyze::report::Style"),
        "{cmd_mod:?}"
    );
}

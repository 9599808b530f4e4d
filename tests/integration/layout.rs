//! The dependency rule of the source tree (see src/lib.rs): the layers
//! never import the command line or the commands, the file format never
//! imports the capture, and the engine and reports touch neither files nor
//! BPF. Checked over the `use` lines and paths of every source file. The
//! rules go by folder, and a file no rule covers is an error: a new room
//! must say what it may use before it can hold code.

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
    uses_in(&repo().join("src"), file)
}

fn uses_in(src: &Path, file: &Path) -> Vec<String> {
    let module: Vec<String> = file
        .strip_prefix(src)
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

/// What the files under a path (a folder ending in `/`, or one file) must
/// not use; the first rule that matches a file is its rule.
const RULES: &[(&str, &[&str])] = &[
    ("main.rs", &[]),
    ("lib.rs", &[]),
    // The commands connect everything, but never parse flags.
    ("cmd/", &["cli"]),
    // The command line resolves flags into the commands' plans: it runs
    // nothing and prints nothing.
    ("cli/", &["cmd::record::run", "cmd::live::run", "messages"]),
    ("record/mod.rs", &["cli", "cmd", "analyze"]),
    (
        "record/format/",
        &["cli", "cmd", "record::capture", "analyze"],
    ),
    (
        "record/capture/",
        &["cli", "cmd", "record::format", "analyze"],
    ),
    // Computation over a dataset's scan, and file facts in words: the
    // parts of analyze that read recordings.
    (
        "analyze/engine/durations.rs",
        &["cli", "cmd", "record::capture"],
    ),
    ("analyze/caveats.rs", &["cli", "cmd", "record::capture"]),
    ("analyze/hardening.rs", &["cli", "cmd", "record::capture"]),
    // Everything else in analyze: no files, no BPF.
    ("analyze/", &["cli", "cmd", "record"]),
    ("event.rs", &["cli", "cmd", "record", "analyze"]),
    ("time.rs", &["cli", "cmd", "record", "analyze"]),
    ("host.rs", &["cli", "cmd", "record", "analyze"]),
    ("files.rs", &["cli", "cmd", "record", "analyze"]),
    ("escape.rs", &["cli", "cmd", "record", "analyze"]),
    ("http.rs", &["cli", "cmd", "record", "analyze"]),
    ("error.rs", &["cli", "cmd", "record", "analyze"]),
    ("messages.rs", &["cli", "cmd", "record", "analyze"]),
];

/// Every broken rule under `src`, and every file no rule covers.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut broken = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(src).unwrap().to_string_lossy().into_owned();
        let rule = RULES.iter().find(|(path, _)| {
            if path.ends_with('/') {
                rel.starts_with(path)
            } else {
                rel == *path
            }
        });
        let Some((_, forbidden)) = rule else {
            broken.push(format!("{rel} is under no rule: add one to RULES"));
            continue;
        };
        for u in uses_in(src, f) {
            if forbidden
                .iter()
                .any(|f| u == *f || u.starts_with(&format!("{f}::")))
            {
                broken.push(format!("{rel} uses {u}"));
            }
        }
    }
    broken
}

#[test]
fn layers_never_import_the_command_line_and_format_never_imports_capture() {
    let src = repo().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "{files:?}");
    let broken = violations(&src);
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn a_new_room_without_a_rule_is_caught() {
    let dir = crate::util::TempDir::new("layout");
    let src = dir.0.join("src");
    std::fs::create_dir_all(src.join("newroom")).unwrap();
    std::fs::create_dir_all(src.join("analyze")).unwrap();
    std::fs::write(src.join("newroom/x.rs"), "use crate::cli::args;\n").unwrap();
    // A new file in a ruled folder gets that folder's rule.
    std::fs::write(
        src.join("analyze/newrender.rs"),
        "use crate::record::format::reader::Dataset;\n",
    )
    .unwrap();
    let broken = violations(&src);
    assert_eq!(
        broken,
        [
            "analyze/newrender.rs uses record::format::reader::Dataset",
            "newroom/x.rs is under no rule: add one to RULES",
        ],
        "{broken:?}"
    );
}

#[test]
fn the_capture_modules_import_each_other_without_a_circle() {
    let dir = repo().join("src/record/capture");
    let mut files = Vec::new();
    sources(&dir, &mut files);
    // Sibling modules only: mod.rs holds them all.
    let name = |p: &Path| p.file_stem().unwrap().to_string_lossy().into_owned();
    let nodes: Vec<String> = files
        .iter()
        .map(|f| name(f))
        .filter(|n| n != "mod")
        .collect();
    let mut edges: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in files.iter().filter(|f| name(f) != "mod") {
        let mut to: Vec<String> = uses(f)
            .iter()
            .filter_map(|u| u.strip_prefix("record::capture::"))
            .filter_map(|rest| rest.split("::").next())
            .filter(|m| nodes.iter().any(|n| n == m) && *m != name(f))
            .map(str::to_string)
            .collect();
        to.sort();
        to.dedup();
        edges.insert(name(f), to);
    }
    // Depth-first, with the path so far: a module met again on it closes
    // a circle.
    fn visit(
        n: &str,
        edges: &std::collections::BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<String> {
        if let Some(i) = path.iter().position(|p| p == n) {
            return Some(format!("{} -> {n}", path[i..].join(" -> ")));
        }
        if !done.insert(n.to_string()) {
            return None;
        }
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    assert!(edges.len() > 5, "{edges:?}");
    let mut done = Default::default();
    for n in &nodes {
        let circle = visit(n, &edges, &mut Vec::new(), &mut done);
        assert!(circle.is_none(), "an import circle: {}", circle.unwrap());
    }
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
        cmd_mod
            .iter()
            .any(|p| p == "analyze::render::printer::Style"),
        "{cmd_mod:?}"
    );
}

/// The string literals of Rust source `text` (comments left out), with the
/// line each starts on.
fn literals(text: &str) -> Vec<(usize, String)> {
    let b = text.as_bytes();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    while i < b.len() {
        match b[i] {
            b'\n' => line += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            // '"' and '\"' are characters, not strings.
            b'\'' if b[i + 1..].starts_with(b"\"'") || b[i + 1..].starts_with(b"\\\"'") => {
                i += if b[i + 1] == b'"' { 3 } else { 4 };
                continue;
            }
            b'"' => {
                // r"..." and r#"..."#: no escapes, the hashes close it.
                let hashes = b[..i].iter().rev().take_while(|&&c| c == b'#').count();
                let raw = i > hashes && b[i - hashes - 1] == b'r';
                let (start, at) = (line, i + 1);
                i += 1;
                while i < b.len() {
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    if !raw && b[i] == b'\\' {
                        line += usize::from(b.get(i + 1) == Some(&b'\n'));
                        i += 2;
                        continue;
                    }
                    if b[i] == b'"' && b[i + 1..].iter().take(hashes).all(|&c| c == b'#') {
                        break;
                    }
                    i += 1;
                }
                out.push((start, text[at..i.min(b.len())].to_string()));
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// One of `flags` named in `s`: `--word`, or `-L` standing alone.
fn names_a_flag(s: &str, flags: &[String]) -> Option<String> {
    let b = s.as_bytes();
    (0..b.len()).find_map(|i| {
        if b[i] != b'-' {
            return None;
        }
        let alone = i == 0 || b" (/'`[,;:".contains(&b[i - 1]);
        let dashes = b[i..].iter().take_while(|&&c| c == b'-').count();
        let word = &b[i + dashes..];
        let letters = word
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-')
            .count();
        let flag = match dashes {
            2 => letters > 0 && word[0].is_ascii_lowercase(),
            1 => letters == 1 && word[0].is_ascii_alphabetic(),
            _ => false,
        };
        let name = &s[i..i + dashes + letters];
        (alone && flag && flags.iter().any(|f| f == name)).then(|| name.to_string())
    })
}

/// Every flag `tcpcong` and its commands take, as their help lists them.
fn tcpcong_flags() -> Vec<String> {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(crate::util::bin())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let top = help(&["--help"]);
    let commands = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help");
    let mut flags: Vec<String> = std::iter::once(top.clone())
        .chain(commands.map(|c| help(&[c, "--help"])))
        .flat_map(|h| {
            h.split(|c: char| c.is_whitespace() || c == ',')
                .map(|w| w.split(['=', '[', '<', '.']).next().unwrap().to_string())
                .filter(|w| {
                    let b = w.as_bytes();
                    match b {
                        [b'-', b'-', first, ..] => first.is_ascii_lowercase(),
                        [b'-', only] => only.is_ascii_alphabetic(),
                        _ => false,
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect();
    flags.sort();
    flags.dedup();
    assert!(flags.len() > 30, "{flags:?}");
    flags
}

/// The layers below the command line serve the Python package too, which
/// has no flags: their errors and notes say what happened, and the command
/// line adds its flags (`cli::words`). Only the command line raises
/// `Error::Usage`.
#[test]
fn no_layer_below_the_command_line_names_a_flag() {
    let src = repo().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let edge = ["cli/", "cmd/", "main.rs"];
    let flags = tcpcong_flags();
    let mut found = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if edge.iter().any(|e| rel.starts_with(e)) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        // Unit tests may run commands; the code they test may not word them.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (line, lit) in literals(code) {
            checked += 1;
            if let Some(flag) = names_a_flag(&lit, &flags) {
                found.push(format!("{rel}:{line}: {flag} in {lit:?}"));
            }
        }
        for (n, l) in code.lines().enumerate() {
            if l.contains("Error::Usage(") && rel != "error.rs" {
                found.push(format!("{rel}:{}: raises Error::Usage", n + 1));
            }
        }
    }
    assert!(
        checked > 500,
        "{checked} literals: the scanner reads nothing"
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_flag_check_sees_flags_in_literals_only() {
    let text = r##"
        // a comment naming --force is fine
        let q = '"'; let e = Error::Kernel(format!("{why}; --attach auto would use {m}"));
        let r = r#"pass -L "or" nothing"#; let ok = "time-sorted, a --, -1, x--y, mount -t";
        /// and --docs too
        let s = "escaped \" quote then (-R here)";
    "##;
    let lits = literals(text);
    let flags: Vec<String> = ["--attach", "-L", "-R"].map(String::from).into();
    let flags: Vec<(usize, String)> = lits
        .iter()
        .filter_map(|(line, l)| names_a_flag(l, &flags).map(|f| (*line, f)))
        .collect();
    assert_eq!(
        flags,
        [
            (3, "--attach".to_string()),
            (4, "-L".to_string()),
            (6, "-R".to_string())
        ],
        "{lits:?}"
    );
}

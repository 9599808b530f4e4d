//! Text from the outside world, made safe for each reader it goes to.
//! Process names (any process sets its own with `prctl`), cgroup paths,
//! host names and file paths are attacker-controlled: unescaped, they could
//! forge a Prometheus series, run a spreadsheet formula, or send a terminal
//! control sequences, or inject markup into the report page. Each output
//! passes them through the function for its reader.

use std::borrow::Cow;

/// A CSV cell (RFC 4180): quoted when it holds a separator or a quote.
/// A cell that a spreadsheet would read as a formula (it begins with `=`,
/// `+`, `-` or `@`) gets a leading `'`, as OWASP advises: the text stays
/// readable, and is never run. Control and hidden characters are shown as
/// [`terminal`] shows them (a CSV file is read with `cat` as often as with
/// a spreadsheet), backslashes left as they are: cgroup paths hold
/// systemd's `\x2d` escapes, which a cell must keep.
pub fn csv(s: &str) -> Cow<'_, str> {
    let s = shown(s, false);
    let formula = s.starts_with(['=', '+', '-', '@']);
    let quoted = s.contains([',', '"']);
    match (formula, quoted) {
        (false, false) => s,
        (true, false) => format!("'{s}").into(),
        (f, true) => format!("\"{}{}\"", if f { "'" } else { "" }, s.replace('"', "\"\"")).into(),
    }
}

/// Text for a terminal (a table cell, a line on stderr): control
/// characters (C0, DEL, C1) and the invisible ones that reorder or break
/// lines ([`hidden`]) are written as `\xNN` or `\u{NNNN}`, so that no
/// character of a name can move the cursor, clear the screen, set the
/// window's title, start a new line or show its text in another order; a
/// backslash is doubled, so that an escape cannot be faked.
pub fn terminal(s: &str) -> Cow<'_, str> {
    shown(s, true)
}

/// Unicode's format characters that reorder or hide text (bidirectional
/// overrides and isolates, zero-width characters) and its line and
/// paragraph separators: a name holding them reads as another name.
fn hidden(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}')
}

fn shown(s: &str, backslash: bool) -> Cow<'_, str> {
    let plain = |c: char| !(c.is_control() || hidden(c) || (backslash && c == '\\'));
    if s.chars().all(plain) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if plain(c) => out.push(c),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        }
    }
    out.into()
}

/// HTML text and attribute values (quoted): the five characters with a
/// meaning in markup become entities, and control characters are shown
/// as [`terminal`] shows them (they have no business in a page, and one
/// saved and printed would reach a terminal).
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in terminal(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A label value of the Prometheus text and OpenMetrics formats: `\`, `"`
/// and a line feed are the three characters that must be escaped there.
pub fn prometheus_label(s: &str) -> Cow<'_, str> {
    if !s.contains(['\\', '"', '\n']) {
        return s.into();
    }
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_quote_and_defuse_formulas() {
        assert_eq!(csv("iperf3"), "iperf3");
        assert_eq!(csv("/system.slice/x"), "/system.slice/x");
        assert_eq!(csv("a,b"), "\"a,b\"");
        assert_eq!(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv("=1+2"), "'=1+2");
        assert_eq!(csv("+cmd"), "'+cmd");
        assert_eq!(csv("-2"), "'-2");
        assert_eq!(csv("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv("\tx"), "\\x09x");
        assert_eq!(
            csv("=HYPERLINK(\"x\",\"y\")"),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
        assert_eq!(csv("\rx"), "\\x0dx");
        assert_eq!(csv("a\nb\x1b[2J\u{9b}"), "a\\x0ab\\x1b[2J\\x9b");
        assert_eq!(csv("=\u{202e}cod.exe"), "'=\\u{202e}cod.exe");
        assert_eq!(
            csv("system-systemd\\x2dfsck.slice"),
            "system-systemd\\x2dfsck.slice"
        );
    }

    #[test]
    fn terminal_text_has_no_control_characters() {
        assert_eq!(terminal("iperf3"), "iperf3");
        assert_eq!(terminal("\x1b]0;owned\x07"), "\\x1b]0;owned\\x07");
        assert_eq!(terminal("a\nb\r"), "a\\x0ab\\x0d");
        assert_eq!(terminal("\u{9b}2J\u{7f}"), "\\x9b2J\\x7f");
        assert_eq!(terminal("\u{2028}x"), "\\u{2028}x");
        assert_eq!(terminal("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
        assert_eq!(terminal("a\u{200b}b\u{feff}"), "a\\u{200b}b\\u{feff}");
        assert_eq!(terminal("日本語 ünïcode"), "日本語 ünïcode");
        assert_eq!(terminal("a\\x1b"), "a\\\\x1b");
        assert_eq!(terminal("née"), "née");
    }

    #[test]
    fn html_text_has_no_markup_and_no_control_characters() {
        assert_eq!(
            html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(html("<b>\x1b[2J</b>"), "&lt;b&gt;\\x1b[2J&lt;/b&gt;");
        assert_eq!(html("iperf3"), "iperf3");
    }

    #[test]
    fn prometheus_labels_escape_their_three_characters() {
        assert_eq!(prometheus_label("iperf3"), "iperf3");
        assert_eq!(prometheus_label("\"}1\nfake 7\n#"), "\\\"}1\\nfake 7\\n#");
        assert_eq!(prometheus_label("a\\b"), "a\\\\b");
    }
}

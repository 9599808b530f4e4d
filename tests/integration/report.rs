//! `report` on the fixtures: the structure of what is drawn (a reviewed
//! snapshot: per timeline its runs, mixed columns and merged periods, and
//! the time per state its bands hold), and what a user gets wrong.

use crate::util::*;

/// The values of attribute `name` on every element of `html` that has it,
/// in document order.
fn attrs<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let key = format!(" {name}=\"");
    html.match_indices(&key)
        .filter_map(|(i, _)| {
            let rest = &html[i + key.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// One line per timeline: flow, runs, mixed columns, merged periods and ms
/// per state (runs' and mixed columns' together).
fn structure(html: &str) -> String {
    let mut out = String::new();
    for figure in html.split("<figure class=\"flow\"").skip(1) {
        let figure = &figure[..figure.find("</figure>").unwrap()];
        let flow = attrs(figure, "data-flow")[0];
        let merged = attrs(figure, "data-merged")[0];
        let bands = &figure[figure.find("<g class=\"bands\">").unwrap()..];
        let states = ["open", "disorder", "cwr", "recovery", "loss"];
        let mut ns = [0u64; 5];
        let runs = attrs(bands, "data-state");
        for (state, v) in runs.iter().zip(attrs(bands, "data-ns")) {
            let i = states.iter().position(|s| s == state).unwrap();
            ns[i] += v.parse::<u64>().unwrap();
        }
        let mixed: Vec<&str> = attrs(bands, "data-ns")
            .into_iter()
            .filter(|v| v.contains(','))
            .collect();
        for m in &mixed {
            for (i, v) in m.split(',').enumerate() {
                ns[i] += v.parse::<u64>().unwrap();
            }
        }
        let ms: Vec<String> = ns
            .iter()
            .map(|n| format!("{:.3}", *n as f64 / 1e6))
            .collect();
        out.push_str(&format!(
            "flow {flow}: {} runs, {} mixed columns, {merged} merged periods, ms {}\n",
            runs.len(),
            mixed.len(),
            ms.join(" ")
        ));
    }
    out
}

#[test]
fn timelines_of_the_fixtures() {
    let dir = TempDir::new("report");
    let page = dir.0.join("fixtures.html");
    let o = tcpcong(&[
        "report",
        fixture("").to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
        "--top",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("5 timelines"), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    // Nothing to fetch: the only URL is the SVG namespace's name.
    assert_eq!(
        html.matches("http").count(),
        html.matches("http://www.w3.org/2000/svg").count()
    );
    insta::assert_snapshot!("report_fixture_timelines", structure(&html));
}

#[test]
fn inputs_are_found_once_for_both_passes() {
    let dir = TempDir::new("report-once");
    let runs = dir.0.join("runs");
    std::fs::create_dir(&runs).unwrap();
    std::fs::copy(fixture("ipv4-loss.parquet"), runs.join("a.parquet")).unwrap();
    std::fs::write(runs.join(".b.parquet.inprogress"), b"").unwrap();
    let page = dir.0.join("p.html");
    let o = tcpcong(&[
        "report",
        runs.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The unfinished file is named once, as analyze names it.
    assert_eq!(
        stderr(&o).matches(".b.parquet.inprogress").count(),
        1,
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_report_requests_are_one_line_errors() {
    let v4 = fixture("ipv4-loss.parquet");
    let v4 = v4.to_str().unwrap();
    for (args, code, needle) in [
        (vec!["report", v4], 2, "--output"),
        (
            vec!["report", v4, "-o", "/tmp/x.html", "--top", "0"],
            2,
            "--top",
        ),
        (
            vec!["report", "/nonexistent.parquet", "-o", "/tmp/x.html"],
            1,
            "no such file",
        ),
        (
            vec!["report", v4, "-o", "/nonexistent-dir/x.html"],
            1,
            "/nonexistent-dir/x.html",
        ),
        (vec!["compare", v4, v4, "--top", "0"], 2, "--top"),
    ] {
        let o = tcpcong(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// A page of a selection that keeps no flow says why, as compare does.
#[test]
fn an_empty_selection_is_told() {
    let dir = TempDir::new("report-none");
    let page = dir.0.join("none.html");
    let v4 = fixture("ipv4-loss.parquet");
    let v4 = v4.to_str().unwrap();
    let o = tcpcong(&["report", v4, "-o", page.to_str().unwrap(), "--flow", "999"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{v4}: the selection (--flow 999) keeps no flow of it"
        )),
        "{}",
        stderr(&o)
    );
}

//! The fuzz corpus (`make fuzz` grows it in fuzz/corpus) replayed as
//! regression tests: every input that ever reached new code in the reader
//! or the engine must still end in a result or an error, never a panic.

use std::path::Path;

use tcpcong::analyze::hardening::{engine_sequence, read_recording};
use tcpcong::error::Error;

use crate::util::repo;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = repo().join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p: &std::path::PathBuf| std::fs::read(Path::new(p)).unwrap())
        .collect()
}

#[test]
fn the_reader_corpus_still_gives_results_or_errors() {
    let corpus = inputs("reader");
    assert!(!corpus.is_empty());
    for name in [
        "ipv4-loss.parquet",
        "ipv6-ecn.parquet",
        "multi-flow.parquet",
    ] {
        let rows = read_recording(&std::fs::read(crate::util::fixture(name)).unwrap());
        assert!(rows.as_ref().is_ok_and(|&n| n > 0), "{name}: {rows:?}");
    }
    for bytes in corpus {
        match read_recording(&bytes) {
            Ok(_) => {}
            // A refusal is an input error in one line, as a user sees it.
            Err(e @ (Error::BadInput { .. } | Error::Io { .. })) => {
                assert!(!e.to_string().contains('\n'), "{e}");
            }
            Err(e) => panic!("not an input error: {e}"),
        }
    }
}

#[test]
fn the_engine_corpus_keeps_the_engine_sound() {
    let corpus = inputs("engine");
    assert!(!corpus.is_empty());
    for bytes in corpus {
        engine_sequence(&bytes);
    }
}

//! The writer's real schema equals `schemas/events-v1.json`, column by
//! column, as pyarrow names the types (the form users see); recordings
//! written before some columns and keys were added to v1 (`added_later`)
//! have all the others.

use std::fs::File;
use std::path::PathBuf;

use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::util::*;

fn pyarrow_name(t: &DataType) -> String {
    match t {
        DataType::Timestamp(TimeUnit::Nanosecond, Some(tz)) => format!("timestamp[ns, tz={tz}]"),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => format!("timestamp[us, tz={tz}]"),
        DataType::Utf8 => "string".into(),
        other => other.to_string().to_lowercase(),
    }
}

#[test]
fn recordings_follow_the_published_schema() {
    let spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/events-v1.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(spec["schema_version"], 1);
    let later = |c: &serde_json::Value| c["added_later"] == true;
    let columns = |all: bool| -> Vec<(String, String)> {
        spec["columns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| all || !later(c))
            .map(|c| {
                // Older files have a column's type before it changed.
                let ty = if all {
                    &c["type"]
                } else {
                    c.get("type_before").unwrap_or(&c["type"])
                };
                (
                    c["name"].as_str().unwrap().to_string(),
                    ty.as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let keys = |all: bool| -> Vec<String> {
        spec["metadata_keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| all || !later(k))
            // A key written only when it has something to say.
            .filter(|k| k["when_any"].is_null())
            .map(|k| k["name"].as_str().unwrap().to_string())
            .collect()
    };

    // A fresh recording (what the writer does now) and the fixtures.
    let dir = TempDir::new("schema");
    let fresh = dir.join("fresh.parquet");
    Recorder::start(&fresh, &["--duration", "1", "-L", "1"]).wait();
    // The fixtures are in the current schema; the compatibility fixture
    // is one of v1's first files, without what was added since.
    let mut files = vec![(fresh, true)];
    files.extend(
        [
            "ipv4-loss.parquet",
            "ipv6-ecn.parquet",
            "multi-flow.parquet",
        ]
        .map(|f| (fixture(f), true)),
    );
    files.push((PathBuf::from(compat()), false));
    for (path, current) in files {
        let name = path.display();
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let got: Vec<(String, String)> = b
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), pyarrow_name(f.data_type())))
            .collect();
        assert_eq!(got, columns(current), "{name}");
        let meta = read_meta(&path);
        for k in &keys(current) {
            assert!(meta.get(k).is_some(), "{name}: metadata lacks {k}");
        }
    }
}

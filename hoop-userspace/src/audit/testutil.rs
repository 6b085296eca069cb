//! Helpers shared by the audit tests: a log in a temp dir, a typical event, file surgery.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::config::AuditConfig;
use super::log::AuditLog;
use super::segment::list_segments;

/// Config for a log under `dir` with its key beside it (not inside the audited directory).
pub fn config(dir: &Path) -> AuditConfig {
    AuditConfig::new(dir.join("audit"), dir.join("keys/audit.key"))
}

/// A log with small segments so that rotation happens within a few dozen records.
pub fn small_segments(dir: &Path) -> AuditConfig {
    AuditConfig {
        segment_max_bytes: 4096,
        checkpoint_every_records: 7,
        ..config(dir)
    }
}

pub fn event(i: u64) -> Value {
    json!({
        "session_id": format!("s-{}", i % 4),
        "identity": {"subject": "ci-runner", "job": i},
        "proto": "postgres",
        "sql": format!("SELECT * FROM users WHERE id = {i}"),
    })
}

/// Opens, appends `n` events of kind `pg.query`, closes.
pub fn write_log(cfg: &AuditConfig, n: u64) {
    let log = AuditLog::open(cfg.clone()).unwrap();
    for i in 0..n {
        log.append("pg.query", &event(i)).unwrap();
    }
    log.close().unwrap();
}

/// Like `write_log`, with a checkpoint forced after every 10th event (the sync thread's own
/// checkpoints depend on timing).
pub fn write_log_checkpointed(cfg: &AuditConfig, n: u64) {
    let log = AuditLog::open(cfg.clone()).unwrap();
    for i in 0..n {
        log.append("pg.query", &event(i)).unwrap();
        if i % 10 == 9 {
            log.checkpoint().unwrap();
        }
    }
    log.close().unwrap();
}

pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect()
}

pub fn read_lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = fs::read(path).unwrap();
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

pub fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    fs::write(path, lines.concat()).unwrap();
}

//! kill -9 and the write-ahead file: what an append that returned promises, what a restart
//! files, and what it refuses to.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use super::*;
use crate::audit::record::Prepared;

/// Not a test on its own: the child process of `kill_9_loses_no_returned_append`.
#[test]
fn kill9_child() {
    let Ok(dir) = std::env::var("HOOP_AUDIT_KILL9_DIR") else {
        return;
    };
    let ahead = std::env::var_os("HOOP_AUDIT_KILL9_AHEAD").is_some();
    let cfg = match ahead {
        true => wal_config(Path::new(&dir)),
        false => config(Path::new(&dir)),
    };
    let log = AuditLog::open(cfg).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let r = match ahead {
            // a request's record: returns once in the write-ahead file
            true => log.append_prepared(&Prepared::new("pg.query", &event(i), false).unwrap()),
            false => log.append("pg.query", &event(i)),
        };
        writeln!(out, "{}", r.unwrap().seq()).unwrap();
        out.flush().unwrap();
    }
}

/// Records go to the write-ahead file and only a full one (64 KiB: every ~200 records, so it
/// wraps around many times) or a checkpoint's commit files them.
fn wal_config(dir: &Path) -> AuditConfig {
    AuditConfig {
        sync_interval_ms: 60_000,
        checkpoint_interval_ms: 3_600_000,
        wal_capacity: 64 << 10,
        ..config(dir)
    }
}

/// Seqs a child appending in a loop printed (each after its append returned) until SIGKILL.
fn appends_until_kill9(dir: &Path, ahead: bool) -> Vec<u64> {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "audit::log::tests::crash::kill9_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("HOOP_AUDIT_KILL9_DIR", dir)
    .stdout(Stdio::piped());
    if ahead {
        cmd.env("HOOP_AUDIT_KILL9_AHEAD", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let mut returned = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Ok(seq) = line.unwrap().trim().parse::<u64>() {
            returned.push(seq);
        }
        if returned.len() == 3000 {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    child.wait().unwrap();
    returned
}

#[test]
fn kill_9_loses_no_record_in_the_write_ahead_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = config(tmp.path()).dir;
    // a kill right after a filing would leave nothing to refile: try again then
    let (returned, unfiled) = (0..5)
        .map(|_| {
            let _ = fs::remove_dir_all(tmp.path());
            let returned = appends_until_kill9(tmp.path(), true);
            // what `hoopctl audit verify` reports as still to file
            let unfiled = verify_dir(&dir, &VerifyOptions::default()).unwrap().unfiled;
            (returned, unfiled)
        })
        .find(|(_, unfiled)| *unfiled > 0)
        .expect("some run leaves records only in the write-ahead file");
    let last = *returned.last().unwrap();
    let segments_before: usize = segment_paths(&dir)
        .iter()
        .map(|p| fs::read(p).unwrap().iter().filter(|b| **b == b'\n').count())
        .sum();
    let log = AuditLog::open(wal_config(tmp.path())).unwrap();
    assert!(log.next_seq() > last);
    log.close().unwrap();
    let present: BTreeSet<u64> = records(&dir).iter().map(|r| r.seq).collect();
    assert!(
        present.len() >= segments_before + unfiled as usize,
        "{} records, {segments_before} lines before, {unfiled} unfiled",
        present.len()
    );
    assert_eq!(assert_verifies(&dir).unfiled, 0);
    let lost: Vec<&u64> = returned.iter().filter(|s| !present.contains(s)).collect();
    assert!(lost.is_empty(), "lost {} records: {lost:?}", lost.len());
    assert_verifies(&dir);
    // a clean close leaves nothing to file: the next open continues the chain as it was
    let log = AuditLog::open(wal_config(tmp.path())).unwrap();
    assert_eq!(log.next_seq(), present.len() as u64);
    log.close().unwrap();
}

#[test]
fn kill_9_loses_no_returned_append() {
    let tmp = tempfile::tempdir().unwrap();
    let returned = appends_until_kill9(tmp.path(), false);
    let log = AuditLog::open(config(tmp.path())).unwrap();
    assert!(log.next_seq() > *returned.last().unwrap());
    log.close().unwrap();
    let present: BTreeSet<u64> = records(&config(tmp.path()).dir)
        .iter()
        .map(|r| r.seq)
        .collect();
    assert!(returned.iter().all(|s| present.contains(s)));
    assert_verifies(&config(tmp.path()).dir);
}

#[test]
fn progress_reports_durable_lag_until_a_sync_covers_the_records() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        sync_interval_ms: 60_000,
        checkpoint_every_records: 1_000_000,
        checkpoint_interval_ms: 3_600_000,
        ..config(tmp.path())
    };
    let log = AuditLog::open(cfg).unwrap();
    // the first background round after open may still be running: let it settle
    log.append_durable("test", &event(0)).unwrap();
    let settled = log.progress();
    assert_eq!(settled.durable, settled.sealed);
    assert_eq!(settled.durable_lag, std::time::Duration::ZERO);
    for i in 1..=5 {
        log.append_written("test", &event(i)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let p = log.progress();
    assert_eq!(p.sealed, settled.sealed + 5);
    assert_eq!(p.written, p.sealed);
    assert_eq!(p.durable, settled.durable, "no sync ran: {p:?}");
    assert!(
        p.durable_lag >= std::time::Duration::from_millis(20),
        "{p:?}"
    );
    assert!(!p.failed);
    let r = log.append_written("test", &event(6)).unwrap();
    r.wait_durable().unwrap();
    let after = log.progress();
    assert_eq!(after.durable, after.sealed, "{after:?}");
    assert_eq!(after.durable_lag, std::time::Duration::ZERO);
    log.close().unwrap();
}

#[test]
fn a_full_write_ahead_file_costs_writes_only_until_a_filing_makes_room() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        wal_capacity: 4096,
        ..wal_config(tmp.path())
    };
    let log = AuditLog::open(cfg.clone()).unwrap();
    let (mut writes, mut written) = (0, log.progress().written);
    for i in 0..200 {
        log.append_prepared(&Prepared::new("pg.query", &event(i), false).unwrap())
            .unwrap();
        let now = log.progress().written;
        writes += usize::from(now != written);
        written = now;
    }
    // ~200-byte records, ~20 to a full file: an append writes only when the file is full, and
    // the copies resume right after (not every append from the first full file on)
    assert!(
        (5..=20).contains(&writes),
        "{writes} writes for 200 appends"
    );
    assert!(
        log.progress().written < log.progress().sealed,
        "the last are only copied"
    );
    log.close().unwrap();
    let recs = records(&cfg.dir);
    assert_eq!(recs.len(), 1 + 200);
    assert_verifies(&cfg.dir);
}

#[test]
fn records_of_the_write_ahead_file_that_do_not_continue_the_chain_are_kept_not_filed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (config(&tmp.path().join("a")), config(&tmp.path().join("b")));
    write_log(&a, 10);
    write_log(&b, 20);
    // b's records 15.. have seqs past a's chain but do not continue it
    let foreign: Vec<u8> = read_lines(&segment_paths(&b.dir)[0])[15..]
        .iter()
        .flat_map(|l| l.iter().copied().chain([b'\n']))
        .collect();
    let mut wal = super::wal::Wal::create(&a.dir, 1 << 16).unwrap();
    assert!(wal.append(&foreign));
    drop(wal);
    let log = AuditLog::open(a.clone()).unwrap();
    assert_eq!(log.next_seq(), 11, "nothing filed");
    log.close().unwrap();
    assert_verifies(&a.dir);
    assert_eq!(fs::read(a.dir.join("wal-stray-11.bin")).unwrap(), foreign);
}

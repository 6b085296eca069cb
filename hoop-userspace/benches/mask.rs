//! Plain timed benchmark (no harness dependency): masking cost per DataRow for a
//! 1,000,000-row result, next to the cost of forwarding the same rows untouched (what the relay
//! does without masking), plus `mask_text` on single values. Run: `cargo bench --bench mask`.
//!
//! Times are this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), best of 3, so other load on
//! the machine inflates them less than wall-clock time would.
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// CPU time consumed by this thread.
struct Instant(Duration);

impl Instant {
    fn now() -> Instant {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write into; the clock id is a constant.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Instant(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }

    fn elapsed(&self) -> Duration {
        Instant::now().0 - self.0
    }
}

use bytes::BytesMut;
use hoop_userspace::mask::Masker;
use hoop_userspace::mask::pg::{ColumnSpec, RowPlan};
use hoop_userspace::wire::postgres::Format;
use hoop_userspace::wire::postgres::backend::encode_data_row;

const ROWS: usize = 1_000_000;
/// The relay flushes its output buffer at about this size.
const CHUNK: usize = 64 * 1024;

const INT4: u32 = 23;
const INT8: u32 = 20;
const TEXT: u32 = 25;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;

fn encode(values: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_data_row(&mut b, values.iter().map(|v| v.as_deref())).unwrap();
    b.to_vec()
}

/// `SELECT * FROM pgbench_accounts`: aid, bid, abalance int4; filler bpchar(84) of spaces.
fn pgbench_rows(format: Format) -> Vec<Vec<u8>> {
    (1..=1000)
        .map(|aid: i32| {
            let int = |v: i32| match format {
                Format::Text => v.to_string().into_bytes(),
                Format::Binary => v.to_be_bytes().to_vec(),
            };
            encode(&[
                Some(int(aid)),
                Some(int(1 + aid / 100)),
                Some(int(0)),
                Some(vec![b' '; 84]),
            ])
        })
        .collect()
}

/// id int8, name varchar, email text, card text, note text: every row has an e-mail and a card.
fn customer_rows(format: Format, secrets: bool) -> Vec<Vec<u8>> {
    (0..1000u64)
        .map(|i| {
            let id = match format {
                Format::Text => i.to_string().into_bytes(),
                Format::Binary => (i as i64).to_be_bytes().to_vec(),
            };
            let (email, card) = if secrets {
                (
                    format!("customer.{i}@example.com"),
                    "4111 1111 1111 1111".to_string(),
                )
            } else {
                (format!("customer {i}"), "Visa ending 1111".to_string())
            };
            encode(&[
                Some(id),
                Some(format!("Customer Number {i}").into_bytes()),
                Some(email.into_bytes()),
                Some(card.into_bytes()),
                Some(b"prefers delivery before noon, ring twice".to_vec()),
            ])
        })
        .collect()
}

fn plan(cols: &[(&str, u32)], format: Format) -> RowPlan {
    let m = Arc::new(Masker::default_profile());
    RowPlan::new(
        m,
        cols.iter().map(|&(name, type_oid)| ColumnSpec {
            name,
            type_oid,
            format,
        }),
    )
}

/// ns per row to forward `ROWS` rows untouched, and with `plan`.
fn run(rows: &[Vec<u8>], plan: &RowPlan) -> (f64, f64) {
    let mut out = BytesMut::with_capacity(2 * CHUNK);
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let t = Instant::now();
        for i in 0..ROWS {
            out.extend_from_slice(black_box(&rows[i % rows.len()]));
            if out.len() >= CHUNK {
                black_box(&out);
                out.clear();
            }
        }
        let direct = t.elapsed().as_nanos() as f64 / ROWS as f64;
        out.clear();
        let t = Instant::now();
        for i in 0..ROWS {
            plan.mask_data_row(black_box(&rows[i % rows.len()]), &mut out)
                .unwrap();
            if out.len() >= CHUNK {
                black_box(&out);
                out.clear();
            }
        }
        let masked = t.elapsed().as_nanos() as f64 / ROWS as f64;
        out.clear();
        best = (best.0.min(direct), best.1.min(masked));
    }
    best
}

fn report(name: &str, rows: &[Vec<u8>], plan: &RowPlan) {
    let (direct, masked) = run(rows, plan);
    let bytes = rows.iter().map(Vec::len).sum::<usize>() / rows.len();
    println!(
        "{name:<44} {bytes:>4} B/row  forward {direct:>6.1} ns/row  masked {masked:>7.1} ns/row  (+{:.1} ns, {:.2} s per 1M rows)",
        masked - direct,
        masked * ROWS as f64 / 1e9,
    );
}

fn text_bench(m: &Masker, name: &str, s: &str) {
    let n = 2_000_000;
    let t = Instant::now();
    for _ in 0..n {
        black_box(m.mask_text(black_box(s)));
    }
    println!(
        "mask_text {name:<34} {:>7.1} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}

fn main() {
    let pgbench = [
        ("aid", INT4),
        ("bid", INT4),
        ("abalance", INT4),
        ("filler", BPCHAR),
    ];
    let customers = [
        ("id", INT8),
        ("name", VARCHAR),
        ("email", TEXT),
        ("card", TEXT),
        ("note", TEXT),
    ];
    println!("DataRow masking, default profile, {ROWS} rows (best of 3):");
    for f in [Format::Text, Format::Binary] {
        let tag = if f == Format::Text { "text" } else { "binary" };
        report(
            &format!("pgbench_accounts ({tag})"),
            &pgbench_rows(f),
            &plan(&pgbench, f),
        );
        report(
            &format!("customers, no secrets ({tag})"),
            &customer_rows(f, false),
            &plan(&customers, f),
        );
        report(
            &format!("customers, e-mail + card each row ({tag})"),
            &customer_rows(f, true),
            &plan(&customers, f),
        );
    }
    let secret_col = [("id", INT4), ("password", TEXT)];
    let rows: Vec<Vec<u8>> = (0..1000)
        .map(|i: i32| encode(&[Some(i.to_string().into_bytes()), Some(b"hunter2".to_vec())]))
        .collect();
    report(
        "column rule `password` (text)",
        &rows,
        &plan(&secret_col, Format::Text),
    );

    let m = Masker::default_profile();
    println!();
    text_bench(&m, "84 spaces", &" ".repeat(84));
    text_bench(&m, "short word", "Customer");
    text_bench(&m, "sentence", "prefers delivery before noon, ring twice");
    text_bench(
        &m,
        "SQL statement",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 64227;",
    );
    text_bench(&m, "e-mail", "customer.42@example.com");
    text_bench(&m, "card", "4111 1111 1111 1111");
    text_bench(&m, "digits, not a card", "order 12345678901234 shipped");
}

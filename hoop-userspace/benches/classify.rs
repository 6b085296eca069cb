//! Plain timed benchmark (no harness dependency): classification cost per
//! statement cold (parse every time) vs through `ClassifyCache` (exact-text
//! hits, and template hits for `-M simple` texts whose literals vary), plus
//! codec framing/decoding throughput. Run: `cargo bench --bench classify`.
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hoop_userspace::classify::{ClassifyCache, classify};
use hoop_userspace::wire::postgres::backend::{self, BackendMessage, encode_data_row};
use hoop_userspace::wire::postgres::{Direction, FrameSplitter, Limits};

/// pgbench's TPC-B-like transaction, as `-M simple` sends it (with literals).
const PGBENCH: &[&str] = &[
    "BEGIN;",
    "UPDATE pgbench_accounts SET abalance = abalance + -4310 WHERE aid = 64227;",
    "SELECT abalance FROM pgbench_accounts WHERE aid = 64227;",
    "UPDATE pgbench_tellers SET tbalance = tbalance + -4310 WHERE tid = 3;",
    "UPDATE pgbench_branches SET bbalance = bbalance + -4310 WHERE bid = 1;",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 64227, -4310, CURRENT_TIMESTAMP);",
    "END;",
];

/// The same transaction as `-M prepared`/`extended` sends it (parameters).
const PGBENCH_PREPARED: &[&str] = &[
    "BEGIN;",
    "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;",
    "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
    "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;",
    "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
    "END;",
];

const COMPLEX: &str = "WITH recent AS (SELECT o.id, o.customer_id, sum(l.qty * l.price) AS total \
    FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE o.created_at > now() - interval '7 days' \
    GROUP BY o.id, o.customer_id) SELECT c.name, r.total, (SELECT count(*) FROM complaints x WHERE x.customer_id = c.id) \
    FROM recent r JOIN customers c ON c.id = r.customer_id WHERE r.total > 100 ORDER BY r.total DESC LIMIT 50";

/// `count` pgbench `-M simple` transactions with varying literals, as the
/// 7 statements each that pgbench sends (a fixed LCG, so runs compare).
fn pgbench_simple_texts(count: usize) -> Vec<String> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut texts = Vec::with_capacity(count * 7);
    for _ in 0..count {
        let (aid, bid, tid) = (1 + next(100_000), 1 + next(1), 1 + next(10));
        let delta = next(10_001) as i64 - 5000;
        texts.extend([
            "BEGIN;".to_owned(),
            format!("UPDATE pgbench_accounts SET abalance = abalance + {delta} WHERE aid = {aid};"),
            format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"),
            format!("UPDATE pgbench_tellers SET tbalance = tbalance + {delta} WHERE tid = {tid};"),
            format!("UPDATE pgbench_branches SET bbalance = bbalance + {delta} WHERE bid = {bid};"),
            format!(
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({tid}, {bid}, {aid}, {delta}, CURRENT_TIMESTAMP);"
            ),
            "END;".to_owned(),
        ]);
    }
    texts
}

fn time<F: FnMut()>(label: &str, iters: u32, mut f: F) -> Duration {
    f(); // warm up
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let per = start.elapsed() / iters;
    println!("{label:<58} {:>9.2} us/op", per.as_secs_f64() * 1e6);
    per
}

fn main() {
    let n = 20_000;
    time(
        "classify cold: all 7 pgbench -M simple statements",
        n / 7,
        || {
            for s in PGBENCH {
                black_box(classify(black_box(s)));
            }
        },
    );
    time("classify cold: 5-table CTE query", n / 10, || {
        black_box(classify(black_box(COMPLEX)));
    });
    time("pg_query::parse only: pgbench UPDATE", n, || {
        black_box(pg_query::parse(black_box(PGBENCH[1]), 0).ok());
    });
    time("pg_query::fingerprint only: pgbench UPDATE", n, || {
        black_box(pg_query::fingerprint(black_box(PGBENCH[1]), 0, 0).ok());
    });
    let cache = ClassifyCache::default();
    time(
        "classify cached (exact hit): 7 pgbench -M prepared texts",
        n * 10 / 7,
        || {
            for s in PGBENCH_PREPARED {
                black_box(cache.classify(black_box(s)));
            }
        },
    );
    time(
        "classify cached (template hit): same 7 -M simple texts",
        n * 10 / 7,
        || {
            for s in PGBENCH {
                black_box(cache.classify(black_box(s)));
            }
        },
    );
    time(
        "classify cached (template hit): 5-table CTE query",
        n * 10,
        || {
            black_box(cache.classify(black_box(COMPLEX)));
        },
    );
    println!("cache stats: {:?}", cache.stats());

    // pgbench -M simple: every transaction has new literals, so only BEGIN/END
    // hit the exact tier; the other 5 statements are template hits.
    let texts = pgbench_simple_texts(20_000);
    let cache = ClassifyCache::default();
    let first = Instant::now();
    for t in &texts[..7 * 1000] {
        black_box(cache.classify(black_box(t)));
    }
    println!(
        "{:<58} {:>9.2} us/op",
        "cached, -M simple, first 1000 txns (incl. template misses)",
        first.elapsed().as_secs_f64() * 1e6 / 7000.0
    );
    let mut rounds = 0u32;
    let per = time(
        "cached (template hit): -M simple, per statement, 140k texts",
        5,
        || {
            for t in &texts {
                black_box(cache.classify(black_box(t)));
            }
            rounds += 1;
        },
    );
    let per_stmt = per.as_secs_f64() / texts.len() as f64;
    println!(
        "  = {:.0} ns/statement, {:.2} us per 7-statement transaction",
        per_stmt * 1e9,
        per_stmt * 7.0 * 1e6
    );
    let updates: Vec<&String> = texts.iter().skip(1).step_by(7).collect();
    let per = time(
        "cached (template hit): pgbench_accounts UPDATE only",
        10,
        || {
            for t in &updates {
                black_box(cache.classify(black_box(t)));
            }
        },
    );
    println!(
        "  = {:.0} ns/statement",
        per.as_secs_f64() / updates.len() as f64 * 1e9
    );
    println!("cache stats after {rounds} rounds: {:?}", cache.stats());

    // Codec: frame-split a server stream of 1000 DataRows (3 columns).
    let mut stream = BytesMut::new();
    for i in 0..1000u32 {
        let id = i.to_string();
        encode_data_row(
            &mut stream,
            [Some(id.as_bytes()), Some(&b"alice@example.com"[..]), None],
        )
        .unwrap();
    }
    let bytes = stream.len();
    let splitter = FrameSplitter::new(Direction::Backend, Limits::DEFAULT);
    let per = time(
        "frame-split 1000 DataRows (zero-copy, no decode)",
        2000,
        || {
            let mut buf = stream.clone();
            while let Some(f) = splitter.next_frame(&mut buf).unwrap() {
                black_box(f);
            }
        },
    );
    println!("  = {:.0} MB/s", bytes as f64 / per.as_secs_f64() / 1e6);
    let per = time("decode 1000 DataRows + iterate columns", 2000, || {
        let mut rest = &stream[..];
        while let Some((msg, n)) = backend::decode(rest).unwrap() {
            if let BackendMessage::DataRow(r) = msg {
                black_box(r.values.iter().count());
            }
            rest = &rest[n..];
        }
    });
    println!("  = {:.0} MB/s", bytes as f64 / per.as_secs_f64() / 1e6);
    let mut out = BytesMut::with_capacity(bytes * 2);
    let per = time(
        "decode + mask column 2 + re-encode 1000 DataRows",
        1000,
        || {
            out.clear();
            let mut rest = &stream[..];
            while let Some((msg, n)) = backend::decode(rest).unwrap() {
                if let BackendMessage::DataRow(r) = msg {
                    let masked = r
                        .values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| if i == 1 { Some(&b"***"[..]) } else { v });
                    encode_data_row(&mut out, masked).unwrap();
                }
                rest = &rest[n..];
            }
            black_box(&out);
        },
    );
    println!("  = {:.0} MB/s", bytes as f64 / per.as_secs_f64() / 1e6);
}

//! The cache's two tiers: a template hit always equals `classify(text)`,
//! whatever the literals, and anything doubtful takes the exact tier.
use proptest::prelude::*;

use crate::classify::template::normalize;
use crate::classify::{Classification, ClassifyCache, Span, classify};

/// Statement shapes with literal holes: `{i}` integer, `{f}` float, `{s}` string.
const SHAPES: &[&str] = &[
    "UPDATE pgbench_accounts SET abalance = abalance + {i} WHERE aid = {i};",
    "UPDATE pgbench_accounts SET abalance = abalance + -{i} WHERE aid = {i};",
    "SELECT abalance FROM pgbench_accounts WHERE aid = {i};",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({i}, {i}, {i}, -{i}, CURRENT_TIMESTAMP);",
    "SELECT * FROM users WHERE email = {s} AND age > {i} LIMIT {i} OFFSET {i}",
    "  select {s}::regclass, {s}::regproc, to_regclass({s}) ;  ",
    "SELECT nextval({s}), pg_terminate_backend({i}), pg_read_file({s})",
    "SELECT * FROM t WHERE d > date {s} AND ts < {s}::timestamptz - interval {s}",
    "SELECT CAST({s} AS int), {f} * -{f}, - -{i}, -{f}",
    "WITH d AS (DELETE FROM s.logs WHERE ts < {s} RETURNING *) INSERT INTO archive SELECT * FROM d",
    "DELETE FROM t WHERE id IN ({i}, {i}, {i})",
    "UPDATE t SET a = {s} WHERE b = {f}",
    "UPDATE t SET a = {s}",
    "VALUES ({i}, {s}), ({f}, {s})",
    "SELECT {i}::float({i})",
    "SELECT x::varchar({i}), y::numeric({i}, {i}) FROM t",
    "SELECT CURRENT_TIME({i}), LOCALTIMESTAMP({i})",
    "SELECT a[{i}], b[{i}:{i}] FROM t",
    "SELECT {i}::int[{i}]",
    "SELECT * FROM generate_series({i}, {i}) AS g(x float({i}))",
    "SELECT {s} LIKE {s} ESCAPE {s}, {s} SIMILAR TO {s}",
    "SELECT JSON_VALUE(j, {s}) FROM t",
    "SELECT * FROM JSON_TABLE({s}::jsonb, {s} COLUMNS (a int PATH {s})) jt",
    "SELECT extract({s} FROM now()), interval {s} second({i}), timestamp({i}) {s}",
    "SELECT x FROM t ORDER BY {i} FETCH FIRST {i} ROWS ONLY",
    "SELECT * FROM t TABLESAMPLE bernoulli ({f}) REPEATABLE ({i})",
    "SELECT * FROM t WHERE a = {i} FOR UPDATE",
    "INSERT INTO t VALUES ({s}) ON CONFLICT (id) DO UPDATE SET v = {s} WHERE t.x > {i}",
    "SELECT {s} COLLATE \"C\", \"odd;name\" FROM \"s\".\"t--x\" WHERE \"a\"\"b\" = {s}",
    "with recursive r(n) as (select {i} union all select n + {i} from r where n < {i}) select * from r",
    "SELECT OVERLAY({s} PLACING {s} FROM {i} FOR {i}), substring({s} from {i} for {i})",
    "SELECT ARRAY[{i}, {f}]::int[], ROW({s}, {i})",
    "SELECT 1 FROM t WHERE (a, b) OVERLAPS ({s}::date, {s}::date)",
    "SELECT {s} || {s} FROM t WHERE x = {i} AND y <> {f} OR z @> {s}",
    "SELECT {i} INTO newtab",
    "SELECT {s}; SELECT {i}",
    "SELECT 1 -- {s}\n, {i}",
    "SELECT /* {i} */ {i}",
    "SELECT {s}\n{s}",
    "SELECT float({i}) {s}",
];

fn fill(shape: &str, ints: &[String], floats: &[String], strs: &[String]) -> String {
    let (mut i, mut f, mut s) = (ints.iter(), floats.iter(), strs.iter());
    let mut out = String::new();
    let mut rest = shape;
    while let Some(at) = rest.find(['{']) {
        out.push_str(&rest[..at]);
        let hole = &rest[at..at + 3];
        let value = match hole {
            "{i}" => i.next(),
            "{f}" => f.next(),
            "{s}" => s.next(),
            _ => unreachable!("bad hole in {shape}"),
        };
        out.push_str(value.expect("enough literals"));
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out
}

fn int_lit() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..10).prop_map(|v| v.to_string()),
        (0u64..100_000).prop_map(|v| v.to_string()),
        (2_147_483_640u64..2_147_483_660).prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        "0{1,12}[1-9]{0,3}",
        "[1-9][0-9]{20,30}",
    ]
}

fn float_lit() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,4}\\.[0-9]{0,4}",
        "\\.[0-9]{1,4}",
        "[0-9]{1,3}[eE][-+]?[0-9]{1,3}",
        "[0-9]{1,3}\\.[0-9]{1,3}e[0-9]{1,2}",
    ]
}

fn str_lit() -> impl Strategy<Value = String> {
    // Quotes, statement separators, comment starters, `$`, unicode; `\` and
    // NUL make the lexer refuse the text, which must be harmless too.
    "[a-z ;'\"$/*\\-\n\\\\é😀\\x00]{0,12}"
        .prop_map(|content| format!("'{}'", content.replace('\'', "''")))
}

fn literals() -> impl Strategy<Value = (Vec<String>, Vec<String>, Vec<String>)> {
    (
        proptest::collection::vec(int_lit(), 10),
        proptest::collection::vec(float_lit(), 10),
        proptest::collection::vec(str_lit(), 10),
    )
}

fn key(sql: &str) -> Option<String> {
    let mut key = String::new();
    normalize(sql, &mut key, None).map(|_| key)
}

fn without_spans(all: &[Classification]) -> Vec<Classification> {
    let zero = Span { start: 0, end: 0 };
    all.iter()
        .map(|c| Classification {
            span: zero,
            ..c.clone()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Two texts of one shape, through one cache: each gets exactly what
    /// `classify` gives it, and texts with equal keys classify alike.
    #[test]
    fn literals_never_change_a_cached_classification(
        shape in 0..SHAPES.len(),
        a in literals(),
        b in literals(),
    ) {
        let x = fill(SHAPES[shape], &a.0, &a.1, &a.2);
        let y = fill(SHAPES[shape], &b.0, &b.1, &b.2);
        let (cx, cy) = (classify(&x), classify(&y));
        let cache = ClassifyCache::default();
        prop_assert_eq!(&cache.classify(&x)[..], &cx[..], "{:?}", x);
        prop_assert_eq!(&cache.classify(&y)[..], &cy[..], "{:?} after {:?}", y, x);
        let t = cache.stats().templates;
        if t.hits == 1 {
            prop_assert_eq!(key(&x), key(&y));
            prop_assert_eq!(without_spans(&cx), without_spans(&cy), "{:?} vs {:?}", x, y);
        }
    }

    /// Random token soup, mostly not SQL: whatever the lexer makes of it, the
    /// cache never answers differently from `classify`.
    #[test]
    fn token_soup_never_gets_a_wrong_cached_classification(
        first in 0..SOUP_FIRST.len(),
        tokens in proptest::collection::vec((0..SOUP.len(), any::<bool>()), 0..14),
        a in literals(),
        b in literals(),
    ) {
        let mut shape = SOUP_FIRST[first].to_owned();
        for (t, glued) in tokens {
            if !glued {
                shape.push(' ');
            }
            shape.push_str(SOUP[t]);
        }
        let x = fill(&shape, &a.0, &a.1, &a.2);
        let y = fill(&shape, &b.0, &b.1, &b.2);
        let cache = ClassifyCache::default();
        for sql in [&x, &y, &x] {
            prop_assert_eq!(&cache.classify(sql)[..], &classify(sql)[..], "{:?}", sql);
        }
    }
}

const SOUP_FIRST: &[&str] = &[
    "SELECT",
    "insert into t",
    "UPDATE t SET",
    "DELETE FROM",
    "WITH",
    "VALUES",
];

const SOUP: &[&str] = &[
    "{i}",
    "{i}",
    "{f}",
    "{s}",
    "{s}",
    "t",
    "s.u",
    "x",
    "FROM",
    "WHERE",
    "AND",
    "AS",
    "=",
    "-",
    "+",
    "*",
    "(",
    ")",
    ",",
    ";",
    "::",
    "regclass",
    "float",
    "int",
    "varchar",
    "[",
    "]",
    "--",
    "/*",
    "*/",
    "'",
    "\"",
    "$",
    "$1",
    "E",
    "U&",
    "\n",
    ".",
    "e5",
    "\\",
    "é",
    "LIMIT",
    "ORDER BY",
    "nextval",
    "CAST",
    "VALUES",
    "SET",
    "RETURNING",
    "CURRENT_TIME",
    "interval",
    "second",
    "SELECT",
    "INTO",
    "FOR UPDATE",
    "UESCAPE",
];

#[test]
fn pgbench_simple_is_classified_once_per_shape() {
    let cache = ClassifyCache::default();
    for i in 0..50i64 {
        let (aid, delta) = (1 + i * 7919 % 100_000, i * 997 % 10_000 - 5000);
        for sql in [
            "BEGIN;".to_owned(),
            format!("UPDATE pgbench_accounts SET abalance = abalance + {delta} WHERE aid = {aid};"),
            format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"),
            format!(
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, {aid}, {delta}, CURRENT_TIMESTAMP);"
            ),
            "END;".to_owned(),
        ] {
            assert_eq!(cache.classify(&sql)[..], classify(&sql)[..], "{sql}");
        }
    }
    let s = cache.stats();
    // BEGIN/END: exact tier. Negative and positive deltas (`-$i`, `$i`) make
    // two UPDATE and two INSERT shapes.
    assert_eq!((s.hits, s.entries), (98, 2));
    assert_eq!((s.templates.misses, s.templates.refused), (5, 0));
    assert_eq!(s.templates.hits, 150 - 5);
    assert_eq!(s.templates.entries, 5);
}

#[test]
fn doubtful_shapes_are_refused_and_served_exactly() {
    for (first, second) in [
        ("SELECT 1::float(10)", "SELECT 1::float(100)"),
        ("SELECT CURRENT_TIME(3)", "SELECT CURRENT_TIME(9)"),
        ("SELECT 1::int[3]", "SELECT 1::int[4]"),
        ("SELECT syntax error 1", "SELECT syntax error 2"),
    ] {
        let cache = ClassifyCache::default();
        assert_eq!(key(first), key(second));
        assert_eq!(cache.classify(first)[..], classify(first)[..]);
        assert_eq!(cache.classify(second)[..], classify(second)[..]);
        let s = cache.stats().templates;
        assert_eq!((s.misses, s.refused, s.hits), (1, 1, 0), "{first}");
        // Refused texts are cached exactly.
        assert_eq!(cache.classify(second)[..], classify(second)[..]);
        assert_eq!(cache.stats().hits, 1);
    }
}

#[test]
fn int4_overflow_and_float_precision_change_the_template() {
    // `varchar(n)` takes an ICONST only: a too-large n is FCONST, a syntax
    // error, so it must not share the int4 template.
    assert_ne!(
        key("SELECT x::varchar(5)"),
        key("SELECT x::varchar(2147483648)")
    );
    for (first, second) in [
        ("SELECT x::varchar(5)", "SELECT x::varchar(2147483648)"),
        ("SELECT 1::float(1)", "SELECT 1::float(54)"),
        (
            "SELECT * FROM f() AS g(x float(1))",
            "SELECT * FROM f() AS g(x float(54))",
        ),
    ] {
        let cache = ClassifyCache::default();
        for sql in [first, second, first, second] {
            assert_eq!(cache.classify(sql)[..], classify(sql)[..], "{sql}");
        }
    }
}

#[test]
fn multi_statement_and_literal_free_texts_use_the_exact_tier() {
    let cache = ClassifyCache::default();
    for sql in [
        "SELECT 1; DELETE FROM t",
        "SELECT 2; DELETE FROM t",
        "SELECT * FROM t",
        "SELECT * FROM t",
    ] {
        assert_eq!(cache.classify(sql)[..], classify(sql)[..], "{sql}");
    }
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 3, 3));
    assert_eq!((s.templates.hits, s.templates.misses), (0, 0));
}

#[test]
fn adversarial_texts_never_borrow_a_benign_classification() {
    // Each pair: a benign text primes the cache, then a hostile one whose
    // literals try to smuggle a statement. Both must get classify()'s answer.
    let pairs = [
        ("SELECT 'a'", "SELECT 'a'';DROP TABLE t;--'"),
        ("SELECT 'a'", "SELECT 'a\\'; DROP TABLE t; --'"),
        ("SELECT 1", "SELECT 1 -- \n; DROP TABLE t"),
        ("SELECT 1", "SELECT 1 /* */; DROP TABLE t"),
        ("SELECT 'x'", "SELECT 'x'\n';DROP TABLE t;'"),
        ("SELECT 'x'", "SELECT E'x\\';DROP TABLE t;--'"),
        ("SELECT 'x'", "SELECT U&'x' UESCAPE '!'"),
        ("SELECT 1", "SELECT 1; DROP TABLE t"),
        ("SELECT 'ok'", "SELECT 'ünï😀;--'"),
        ("SELECT 'a' FROM t", "SELECT '' FROM t"),
        ("DELETE FROM t WHERE a = 1", "DELETE FROM t WHERE a = 1e5"),
        ("SELECT $$a$$", "SELECT $$a$$; DROP TABLE t; $$b$$"),
    ];
    for (benign, hostile) in pairs {
        let cache = ClassifyCache::default();
        assert_eq!(cache.classify(benign)[..], classify(benign)[..], "{benign}");
        assert_eq!(
            cache.classify(hostile)[..],
            classify(hostile)[..],
            "{hostile}"
        );
    }
}

#[test]
fn spans_are_this_texts_own() {
    let cache = ClassifyCache::default();
    for sql in [
        "  SELECT 'a' ;  ",
        "  SELECT 'longer string' ;  ",
        "  SELECT '' ;  ",
    ] {
        let got = cache.classify(sql);
        assert_eq!(got[..], classify(sql)[..]);
        assert_eq!(got[0].span.text(sql).trim_start(), got[0].span.text(sql));
    }
    assert_eq!(cache.stats().templates.hits, 2);
    // Same literal lengths: the stored result is shared, not rebuilt.
    let cache = ClassifyCache::default();
    let a = cache.classify("SELECT 1 FROM t WHERE a = 5");
    let b = cache.classify("SELECT 2 FROM t WHERE a = 7");
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}

#[test]
fn template_tier_is_bounded() {
    let cache = ClassifyCache::with_tiers(1 << 20, 16 << 10, 16 << 10);
    for i in 0..2000 {
        cache.classify(&format!("SELECT c{i} FROM t WHERE a = 1"));
    }
    let s = cache.stats().templates;
    assert!(s.bytes <= 16 << 10, "{s:?}");
    assert!(s.entries < 2000, "{s:?}");
}

#[test]
fn plain_shapes_are_stored_and_doubtful_ones_refused() {
    // A literal that is not a plain constant (`float(p)`, `CURRENT_TIME(p)`,
    // `int[n]`): refused. Comments, adjacent strings, two statements: bypassed.
    let refused = ["float({i})", "CURRENT_TIME({i})", "int[{i}]"];
    let bypassed = ["; SELECT", "1 -- ", "/* ", "{s}\n{s}"];
    let (ints, floats, strs) = (
        (1..=10).map(|v| v.to_string()).collect::<Vec<_>>(),
        (1..=10).map(|v| format!("{v}.5")).collect::<Vec<_>>(),
        (1..=10).map(|v| format!("'s{v}'")).collect::<Vec<_>>(),
    );
    let other_ints: Vec<String> = (4..=13).map(|v| v.to_string()).collect();
    for shape in SHAPES {
        let cache = ClassifyCache::default();
        cache.classify(&fill(shape, &ints, &floats, &strs));
        cache.classify(&fill(shape, &other_ints, &floats, &strs));
        let t = cache.stats().templates;
        let expected = if bypassed.iter().any(|b| shape.contains(b)) {
            (0, 0, 0)
        } else if refused.iter().any(|r| shape.contains(r)) {
            (0, 1, 1)
        } else {
            (1, 1, 0)
        };
        assert_eq!((t.hits, t.misses, t.refused), expected, "{shape}");
    }
}

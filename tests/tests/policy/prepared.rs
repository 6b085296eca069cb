//! Prepared statements are decided as what they run, whichever way they are made and run.
//! PostgreSQL keeps one namespace for the protocol's named statements and SQL's PREPARE, so a
//! statement can be parsed one way and run the other; a name reused while it is taken keeps its
//! old definition on the server. Each case below ran a DELETE past its rule before: with real
//! psql, tokio-postgres (a driver's statement run by name) and a hand-written protocol client
//! for the message orders no driver sends.

use super::*;

/// Unqualified DELETEs are held for review, and a review expires after a second (so a held
/// request ends as a refusal the test can see); DELETE from `public.prep_kept` is denied.
const POLICY: &str = r#"
[defaults]
action = "allow"
mask = "default"

[[rule]]
name = "deny-delete-kept"
action = "deny"
statements = ["delete"]
objects = ["public.prep_kept"]

[[rule]]
name = "review-unqualified-delete"
action = "review"
statements = ["delete"]
has_where = false
"#;

fn rows(pg: &Postgres, table: &str) -> String {
    pg.psql_direct(&format!("SELECT count(*) FROM {table}"))
        .trim()
        .to_string()
}

fn refill(pg: &Postgres, table: &str) {
    pg.psql_direct(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (i int); TRUNCATE {table}; \
         INSERT INTO {table} SELECT generate_series(1, 3)"
    ));
}

/// The line of `step` in `hoop-pg-raw` output (the n-th such, from 0).
fn step<'a>(lines: &'a [Value], step: &str, n: usize) -> &'a Value {
    lines
        .iter()
        .filter(|l| l["step"] == step)
        .nth(n)
        .unwrap_or(&Value::Null)
}

fn error_has(line: &Value, code: &str, text: &str) -> bool {
    line["error"]["code"] == code
        && line["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(text))
}

pub fn prepared_statements_decided(pg: &Postgres) -> Result<(), Failed> {
    for t in [
        "prep_sql",
        "prep_proto",
        "prep_raw",
        "prep_kept",
        "prep_short",
    ] {
        refill(pg, t);
    }

    // 1. the target's deny_statements: a DELETE cannot be prepared to run later
    let n = Node::start_full(
        "pol-prep-short",
        19514,
        pg,
        "",
        None,
        "deny_statements = [\"delete\"]",
    );
    let (ok, _, err) = n.psql("PREPARE d AS DELETE FROM prep_short WHERE i = 1; EXECUTE d");
    check(
        !ok && err.contains("42501")
            && err.contains(
                "delete statement (in prepare) denied by rule target:pg/deny_statements:delete",
            ),
        || format!("PREPARE of a denied kind not refused: {err}"),
    )?;
    check(rows(pg, "prep_short") == "3", || {
        "a prepared DELETE ran under deny_statements".into()
    })?;
    drop(n);

    let n = Node::start_with_policy(
        "pol-prep",
        19515,
        pg,
        "[approval]\ntimeout_s = 1",
        Some(POLICY),
    );

    // 2. a policy rule's denial of what a PREPARE defines refuses the PREPARE itself
    let (ok, _, err) = n.psql("PREPARE k AS DELETE FROM public.prep_kept WHERE i = 1");
    check(
        !ok && err.contains("42501") && err.contains("deny-delete-kept"),
        || format!("PREPARE of a denied DELETE not refused: {err}"),
    )?;

    // 3. SQL PREPARE, SQL EXECUTE: the PREPARE runs nothing and passes; each EXECUTE is held
    // (expires: refused) as the DELETE it runs; a prepared SELECT runs and DEALLOCATE drops it
    let (ok, out, err) = n.psql(
        "PREPARE d AS DELETE FROM prep_sql; PREPARE s AS SELECT count(*) FROM prep_sql; \
         EXECUTE s",
    );
    check(ok && out.trim().lines().last() == Some("3"), || {
        format!("PREPARE/EXECUTE of a SELECT: {out} {err}")
    })?;
    let (ok, _, err) = n.psql("PREPARE d AS DELETE FROM prep_sql; EXECUTE d");
    check(
        !ok && err.contains("42501") && err.contains("expired"),
        || format!("EXECUTE of an unqualified DELETE not held: {err}"),
    )?;
    check(rows(pg, "prep_sql") == "3", || {
        "EXECUTE d deleted rows".into()
    })?;
    let records = n.request_records("EXECUTE d");
    check(
        records.iter().any(|r| {
            let s = &r["event"]["statements"][1];
            r["event"]["decision"] == "review"
                && r["event"]["rule"] == "review-unqualified-delete"
                && s["kind"] == "execute"
                && s["writes"] == serde_json::json!(["prep_sql"])
                && s["has_where"] == false
        }),
        || format!("EXECUTE not recorded as what it runs: {records:?}"),
    )?;

    // 4. a statement the driver prepared (Parse), run with SQL EXECUTE by its name
    let lines = n.pg_client("execute_by_name");
    check(lines.len() == 1 && lines[0]["ok"] == true, || {
        format!("tokio-postgres: {lines:?}")
    })?;

    // 5. a statement made with SQL PREPARE, bound and executed through the protocol
    let lines = n.raw(&[
        "query:PREPARE d AS DELETE FROM prep_raw",
        "bind::d",
        "execute:",
        "sync",
        "wait",
        "query:PREPARE s AS SELECT count(*) FROM prep_raw",
        "bind::s",
        "execute:",
        "sync",
    ]);
    check(
        step(&lines, "PREPARE d AS DELETE FROM prep_raw", 0)["error"].is_null()
            && error_has(step(&lines, "sync", 0), "42501", "expired")
            && step(&lines, "sync", 1)["rows"] == serde_json::json!(["3"])
            && lines.last().is_some_and(|l| l["after"] == "usable"),
        || format!("SQL PREPARE run through the protocol: {lines:?}"),
    )?;
    check(rows(pg, "prep_raw") == "3", || {
        "protocol Execute of d deleted rows".into()
    })?;

    // 6. a name reused while taken: the server refuses the new definition and keeps the old,
    // so the Execute is decided as the old one (the DELETE), not the SELECT the client sent
    let lines = n.raw(&[
        "parse:q:DELETE FROM prep_raw",
        "sync",
        "wait",
        "parse:q:SELECT 1",
        "sync",
        "wait",
        "bind::q",
        "execute:",
        "sync",
    ]);
    check(
        step(&lines, "sync", 0)["tags"] == "1Z"
            && step(&lines, "sync", 1)["error"]["code"] == "42P05"
            && error_has(step(&lines, "sync", 2), "42501", "expired"),
        || format!("redefined name: {lines:?}"),
    )?;
    check(rows(pg, "prep_raw") == "3", || {
        "the old definition ran unreviewed".into()
    })?;
    let records = n.request_records("DELETE FROM prep_raw");
    check(
        records.iter().any(|r| {
            r["event"]["decision"] == "review" && r["event"]["text"] == "DELETE FROM prep_raw"
        }),
        || format!("the Execute not recorded as the DELETE: {records:?}"),
    )?;

    // 7. pipelined: a name closed and parsed again in a batch the server has not answered yet
    // cannot be known from a later batch: refused; once answered, the new definition runs
    let lines = n.raw(&[
        "parse:r:SELECT 1",
        "sync",
        "wait",
        "close:r",
        "parse:r:SELECT 2",
        "sync",
        "bind::r",
        "execute:",
        "sync",
        "wait",
        "bind::r",
        "execute:",
        "sync",
    ]);
    check(
        step(&lines, "sync", 1)["tags"] == "31Z"
            && error_has(step(&lines, "sync", 2), "42501", "being redefined")
            && step(&lines, "sync", 3)["rows"] == serde_json::json!(["2"]),
        || format!("pipelined redefinition: {lines:?}"),
    )?;
    // in one batch, the same sequence is certain
    let lines = n.raw(&[
        "parse:r:SELECT 1",
        "sync",
        "wait",
        "close:r",
        "parse:r:SELECT 3",
        "bind::r",
        "execute:",
        "sync",
    ]);
    check(
        step(&lines, "sync", 1)["rows"] == serde_json::json!(["3"]),
        || format!("redefinition in one batch: {lines:?}"),
    )?;
    check(
        rows(pg, "prep_sql") == "3" && rows(pg, "prep_proto") == "3",
        || "rows deleted".into(),
    )?;
    Ok(())
}

impl Node {
    /// The audit trail's request records whose text contains `text`.
    fn request_records(&self, text: &str) -> Vec<Value> {
        self.request_records_where(|r| {
            r["event"]["text"]
                .as_str()
                .is_some_and(|t| t.contains(text))
        })
    }
}

/// Responses are masked only where a rule says so: rows of `public.mask_t`.
const MASK_BY_TABLE: &str = r#"
[defaults]
action = "allow"
mask = "none"

[[rule]]
name = "mask-people"
action = "allow"
objects = ["public.mask_t"]
mask = "default"
"#;

/// What a FETCH reads is decided as the query its DECLARE made: a policy that masks one
/// table's rows masks them read through a cursor too — SQL FETCH in a later query (pipelined)
/// and the protocol's Execute of the cursor's portal. (In the DECLARE's own query string the
/// string's decision already masked them.)
pub fn cursors_read_as_declared(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start_with_policy("pol-cursor", 19517, pg, "", Some(MASK_BY_TABLE));
    let (ok, out, err) = n.psql("SELECT password FROM public.mask_t WHERE id = 1");
    check(ok && !out.is_empty() && !out.contains(PASSWORD), || {
        format!("the rule does not mask the table: {out} {err}")
    })?;
    let (ok, out, err) = n.psql(
        "BEGIN; DECLARE c CURSOR FOR SELECT password FROM public.mask_t WHERE id = 1; \
         FETCH ALL FROM c; COMMIT",
    );
    check(ok && !out.contains(PASSWORD), || {
        format!("FETCH in the same string: {out} {err}")
    })?;
    let fetch = "FETCH ALL FROM c";
    let lines = n.raw(&[
        "query:BEGIN",
        "query:DECLARE c CURSOR FOR SELECT password FROM public.mask_t WHERE id = 1",
        &format!("query:{fetch}"),
        "query:DECLARE p CURSOR FOR SELECT password FROM public.mask_t WHERE id = 1",
        "execute:p",
        "sync",
        "query:COMMIT",
    ]);
    let masked = |l: &Value| {
        l["rows"][0]
            .as_str()
            .is_some_and(|v| !v.is_empty() && !v.contains(PASSWORD))
    };
    check(
        masked(step(&lines, fetch, 0)) && masked(step(&lines, "sync", 0)),
        || format!("cursor rows: {lines:?}"),
    )?;
    Ok(())
}

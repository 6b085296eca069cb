//! The protocol's fast-path FunctionCall (libpq's `PQfn`, large objects): decided and recorded
//! as a request, denied by the built-in policy, forwarded only under `mask = "none"` (its
//! result has no columns to mask), and the session usable after a refusal. A hand-written
//! protocol client sends arbitrary calls; psql's `\lo_import` is the real libpq user.

use super::*;

/// `int4pl(int4, int4)`: a built-in function's OID is fixed (pg_proc.dat).
const INT4PL: &str = "177";

impl Node {
    /// The audit trail's request records of fast-path calls.
    fn fastpath_records(&self) -> Vec<Value> {
        self.request_records_where(|r| r["event"]["statements"][0]["kind"] == "fastpath")
    }
}

/// One call refused with SQLSTATE 42501 and a message containing `why`, then the session's
/// next query answered.
fn refused_then_usable(lines: &[Value], why: &str) -> bool {
    lines.len() == 2
        && lines[0]["error"]["code"] == "42501"
        && lines[0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(why))
        && lines[1]["after"] == "usable"
}

pub fn fastpath_calls(pg: &Postgres) -> Result<(), Failed> {
    let call = format!("{INT4PL}:1,2");
    // built-in policy: denied by its rule, recorded, the session goes on
    let n = Node::start_with_policy("pol-fastpath", 19509, pg, "", None);
    let lines = n.raw(&[&call]);
    check(refused_then_usable(&lines, "deny-fastpath"), || {
        format!("built-in policy: {lines:?}")
    })?;
    let records = n.fastpath_records();
    check(
        records.len() == 1
            && records[0]["event"]["decision"] == "deny"
            && records[0]["event"]["rule"] == "deny-fastpath"
            && records[0]["event"]["text"]
                .as_str()
                .is_some_and(|t| t.contains(&format!("function oid {INT4PL}, 2 argument(s)"))),
        || format!("fast-path call not recorded as denied: {records:?}"),
    )?;
    // libpq's large-object import goes the same way
    let file = n.env.dir.join("lo.txt");
    std::fs::write(&file, "large object through hoopd\n")?;
    let (ok, out, err) = n.psql(&format!("\\lo_import {}", file.display()));
    check(!ok && err.contains("deny-fastpath"), || {
        format!("\\lo_import not denied: {out} {err}")
    })?;

    // allowed, but under a masking profile: refused, saying why
    let n = Node::start("pol-fastpath-masked", 19510, pg, "");
    let lines = n.raw(&[&call]);
    check(refused_then_usable(&lines, "cannot be masked"), || {
        format!("allowed under masking: {lines:?}")
    })?;

    // allowed with mask = "none": the call runs and its result comes back
    let policy = "[[rule]]\nname = \"fastpath-ok\"\naction = \"allow\"\nstatements = [\"fastpath\"]\n\
                  mask = \"none\"\n[[rule]]\nname = \"rest\"\naction = \"allow\"\n";
    let n = Node::start_with_policy("pol-fastpath-ok", 19511, pg, "", Some(policy));
    let lines = n.raw(&[&call, "177:40,2"]);
    check(
        lines.len() == 3
            && lines[0]["result"] == "3"
            && lines[1]["result"] == "42"
            && lines[2]["after"] == "usable",
        || format!("allowed with mask none: {lines:?}"),
    )?;
    let records = n.fastpath_records();
    check(
        records.len() == 2 && records.iter().all(|r| r["event"]["rule"] == "fastpath-ok"),
        || format!("{records:?}"),
    )?;
    let (ok, out, err) = n.psql(&format!("\\lo_import {}", file.display()));
    let oid = out
        .trim()
        .strip_prefix("lo_import ")
        .unwrap_or_default()
        .to_string();
    check(ok && !oid.is_empty(), || {
        format!("\\lo_import: {out} {err}")
    })?;
    let content = pg.psql_direct(&format!(
        "SELECT convert_from(lo_get({oid}), 'UTF8'); SELECT lo_unlink({oid})"
    ));
    check(content.starts_with("large object through hoopd"), || {
        format!("large object {oid}: {content:?}")
    })
}

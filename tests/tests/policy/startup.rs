//! A role asked for in the startup packet (`PGOPTIONS="-c role=…"`) is decided as the `SET
//! ROLE` it stands for: the built-in policy reviews an anonymous caller's role change, so such
//! a connection is refused (it cannot be held before it starts), while other startup settings
//! and an allowing policy let it through.

use super::*;

impl Node {
    /// psql in the cgroup with `PGOPTIONS`: (success, stdout, stderr).
    fn psql_with_options(&self, options: &str, sql: &str) -> (bool, String, String) {
        self.psql_with_env(sql, &[("PGOPTIONS", options)])
    }
}

pub fn startup_role_decided(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start_with_policy("pol-startup", 19512, pg, "", None);
    let (ok, out, err) = n.psql_with_options("-c role=pg_monitor", "SELECT current_user");
    check(
        // (psql shows no SQLSTATE for an error before the session starts)
        !ok && err.contains("startup setting role is refused")
            && err.contains("review-anonymous-role-change"),
        || format!("role at startup not decided: {out} {err}"),
    )?;
    let (ok, out, err) =
        n.psql_with_options("--session-authorization=pg_monitor", "SELECT current_user");
    check(
        !ok && err.contains("startup setting session_authorization is refused"),
        || format!("session_authorization at startup not decided: {out} {err}"),
    )?;
    let (ok, out, err) = n.psql_with_options("-c search_path=pg_catalog", "SHOW search_path");
    check(ok && out.trim() == "pg_catalog", || {
        format!("another startup setting refused: {out} {err}")
    })?;
    // a policy that allows SET ROLE lets the same connection through, as the server applies it
    let n = Node::start("pol-startup-ok", 19513, pg, "");
    let (ok, out, err) = n.psql_with_options("-c role=pg_monitor", "SELECT current_user");
    check(ok && out.trim() == "pg_monitor", || {
        format!("allowed role at startup: {out} {err}")
    })
}

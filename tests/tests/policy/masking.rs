//! Masking end to end: the table every trial reads, and its values masked in text results
//! (psql), binary results (tokio-postgres) and COPY TO.

use super::*;

pub(super) fn mask_table(pg: &Postgres) {
    pg.psql_direct(&format!(
        "DROP TABLE IF EXISTS mask_t; \
         CREATE TABLE mask_t (id int PRIMARY KEY, email text UNIQUE, card varchar(40), password text, \
                              doc jsonb, note text, api_token text); \
         INSERT INTO mask_t VALUES (1, '{EMAIL}', '{CARD}', '{PASSWORD}', \
             '{{\"owner\": \"{EMAIL}\", \"n\": 7}}', 'call +44 20 7946 0958 today', '{TOKEN}')"
    ));
}

/// Text results (psql): every detector's value and the column rules masked, shapes kept;
/// a server error quoting a value masked; nothing of it in the log or the audit trail.
pub(super) fn text_results_masked(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("mask-text", 19501, pg, "");
    let (ok, out, err) =
        n.psql("SELECT id, email, card, password, doc, note, api_token FROM mask_t");
    check(ok, || err.clone())?;
    let cols: Vec<&str> = out.trim().split('|').collect();
    check(cols.len() == 7, || out.clone())?;
    check(cols[0] == "1", || out.clone())?;
    check(cols[1] == "****@example.com", || format!("email: {out}"))?;
    check(cols[2] == "**** **** **** 1111", || format!("card: {out}"))?;
    check(!cols[3].contains(PASSWORD), || {
        format!("password column: {out}")
    })?;
    check(
        cols[4].contains("****@example.com") && cols[4].contains("\"n\": 7"),
        || format!("jsonb: {out}"),
    )?;
    check(cols[5] == "call +** ** **** **58 today", || {
        format!("phone: {out}")
    })?;
    check(!cols[6].contains(TOKEN), || format!("token: {out}"))?;
    // the direct path is untouched: hoopd masks, the data is intact
    let direct = pg.psql_direct("SELECT email FROM mask_t");
    check(direct.trim() == EMAIL, || direct.clone())?;
    // a server error quoting the value (unique violation's DETAIL)
    let (ok, _, err) = n.psql(&format!(
        "INSERT INTO mask_t (id, email) VALUES (2, '{EMAIL}')"
    ));
    check(
        !ok && err.contains("23505") && err.contains("****@example.com") && !err.contains(EMAIL),
        || format!("error not masked: {err}"),
    )?;
    // a NOTICE raised with a value
    let (ok, _, err) = n.psql(&format!(
        "DO $$BEGIN RAISE NOTICE 'card on file: {CARD}'; END$$"
    ));
    check(
        ok && err.contains("**** **** **** 1111") && !err.contains(CARD),
        || format!("notice not masked: {err}"),
    )?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let everything = n.everything_written();
    check(everything.contains("mask_t"), || {
        "nothing about mask_t was written".into()
    })?;
    for secret in [EMAIL, CARD, PASSWORD, TOKEN] {
        check(!everything.contains(secret), || {
            format!("{secret} reached the log or the audit trail")
        })?;
    }
    let all = n.all_output();
    // but the audit trail does record what was asked and a (masked) excerpt of the answer
    check(
        all.contains("INSERT INTO mask_t (id, email) VALUES (2, '****@example.com')")
            && all.contains("\"excerpt\":\"1 | ****@example.com"),
        || "audit lacks masked text / excerpt".into(),
    )
}

/// Binary results (tokio-postgres): text, varchar and jsonb decoded and masked, lengths right
/// (the client decodes every value), non-text columns untouched.
pub(super) fn binary_results_masked(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("mask-binary", 19502, pg, "");
    let lines = n.pg_client("masked_binary");
    let line = lines.first().cloned().unwrap_or_default();
    check(line["ok"] == true, || format!("{lines:?}"))?;
    let v: Value = serde_json::from_str(line["detail"].as_str().unwrap_or("")).unwrap_or_default();
    check(
        v["email"] == "****@example.com"
            && v["card"] == "**** **** **** 1111"
            && v["id"] == 1
            && v["doc"]["owner"] == "****@example.com"
            && v["doc"]["n"] == 7
            && v["note"] == "call +** ** **** **58 today"
            && v["password"]
                .as_str()
                .is_some_and(|p| !p.contains(PASSWORD)),
        || format!("{v}"),
    )?;
    let all = n.everything_written();
    check(!all.contains(EMAIL) && !all.contains(PASSWORD), || {
        "a secret reached the log or the audit trail".into()
    })
}

/// COPY TO in text format is masked row by row.
pub(super) fn copy_out_masked(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("mask-copy", 19503, pg, "");
    let (ok, out, err) = n.psql("COPY (SELECT email, card FROM mask_t) TO STDOUT");
    check(ok, || err.clone())?;
    check(
        out.trim() == "****@example.com\t**** **** **** 1111",
        || format!("{out:?}"),
    )?;
    let direct = Command::new("psql")
        .arg(pg.conninfo("require"))
        .args(["-XAtc", "COPY (SELECT email FROM mask_t) TO STDOUT"])
        .env("PGPASSWORD", pg::PASSWORD)
        .output()?;
    check(
        String::from_utf8_lossy(&direct.stdout).trim() == EMAIL,
        || "direct COPY changed".into(),
    )
}

/// Rows of an Execute whose portal and statement the client never described (a hand-made
/// client; a driver that knows its columns) come without a RowDescription: hoopd describes the
/// portal itself, so column rules still apply, and the client sees no answer it did not ask for.
pub(super) fn undescribed_rows_masked(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("mask-undescribed", 19516, pg, "");
    let lines = n.raw(&[
        "parse::SELECT password FROM public.mask_t WHERE id = 1",
        "bind::",
        "execute:",
        "sync",
        "parse:named:SELECT api_token FROM public.mask_t WHERE id = 1",
        "bind:portal:named",
        "execute:portal",
        "sync",
    ]);
    // the client sees exactly what it asked for (no RowDescription), the value masked
    let masked = |line: &Value, tags: &str, secret: &str| {
        line["tags"] == tags
            && line["rows"][0]
                .as_str()
                .is_some_and(|v| !v.is_empty() && !v.contains(secret))
    };
    for (i, secret, what) in [
        (0, PASSWORD, "unnamed statement"),
        (1, TOKEN, "named portal"),
    ] {
        check(masked(&lines[i], "12DCZ", secret), || {
            format!("{what}, undescribed: {lines:?}")
        })?;
    }
    // a client that describes gets its own answer, as before
    let lines = n.raw(&[
        "parse::SELECT password FROM public.mask_t WHERE id = 1",
        "bind::",
        "describe:",
        "execute:",
        "sync",
    ]);
    check(masked(&lines[0], "12TDCZ", PASSWORD), || {
        format!("described: {lines:?}")
    })?;
    Ok(())
}

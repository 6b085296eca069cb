//! A real tokio-postgres client (TLS with rustls, verifying the server against a given CA) for
//! the end-to-end tests, run inside the test's cgroup. Each scenario prints one JSON line
//! `{"scenario", "ok", "detail"}`; the exit status is 0 only when all passed.
//!
//!   hoop-pg-client CONNINFO CA_PEM SCENARIO...
//!   scenarios: prepared transaction copy cancel notify deny_extended binary execute_by_name
//!
//! The TLS client offers ALPN `postgresql` as libpq 17+ does; `HOOP_PG_CLIENT_NO_ALPN=1` leaves
//! it out. A CONNINFO with `sslnegotiation=direct` opens with TLS (no SSLRequest).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, TryStreamExt, pin_mut};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use serde_json::json;
use tokio_postgres::{AsyncMessage, Client, Config, error::SqlState};
use tokio_postgres_rustls::MakeRustlsConnect;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn tls(ca: &str) -> MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(c.expect("CA cert")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // offered as libpq 17+ offers it (required with `sslnegotiation=direct`), unless the test
    // wants a direct TLS client without it
    let mut cfg = cfg;
    if std::env::var_os("HOOP_PG_CLIENT_NO_ALPN").is_none() {
        cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    MakeRustlsConnect::new(cfg)
}

async fn connect(conninfo: &str, ca: &str) -> Result<(Client, tokio::task::JoinHandle<()>)> {
    let (client, conn) = conninfo.parse::<Config>()?.connect(tls(ca)).await?;
    let h = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((client, h))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (conninfo, ca) = (&args[1], &args[2]);
    let mut all_ok = true;
    for scenario in &args[3..] {
        let r = run(scenario, conninfo, ca).await;
        let (ok, detail) = match r {
            Ok(d) => (true, d),
            Err(e) => (false, format!("{e:?}")),
        };
        all_ok &= ok;
        println!(
            "{}",
            json!({"scenario": scenario, "ok": ok, "detail": detail})
        );
    }
    std::process::exit(if all_ok { 0 } else { 1 });
}

async fn run(scenario: &str, conninfo: &str, ca: &str) -> Result<String> {
    let (c, _h) = connect(conninfo, ca).await?;
    match scenario {
        "prepared" => {
            let st = c.prepare("SELECT $1::int4 * 2, $2::text || '!'").await?;
            let mut sum = 0;
            for i in 0..50 {
                let row = c.query_one(&st, &[&i, &"x"]).await?;
                sum += row.get::<_, i32>(0);
                assert_eq!(row.get::<_, String>(1), "x!");
            }
            (sum == 2450)
                .then(|| format!("sum {sum}"))
                .ok_or_else(|| format!("sum {sum}").into())
        }
        "binary" => {
            // tokio-postgres asks for binary results: numeric, timestamps, bytea, arrays
            let row = c
                .query_one("SELECT 12345678901::int8, now()::timestamptz, '\\x00ff'::bytea, ARRAY[1,2,3]::int4[]", &[])
                .await?;
            let (n, b, a): (i64, Vec<u8>, Vec<i32>) = (row.get(0), row.get(2), row.get(3));
            let _: std::time::SystemTime = row.get(1);
            (n == 12345678901 && b == [0, 255] && a == [1, 2, 3])
                .then(|| "binary ok".into())
                .ok_or_else(|| "binary mismatch".into())
        }
        "transaction" => {
            c.batch_execute("CREATE TABLE IF NOT EXISTS tx_t (i int); DELETE FROM tx_t")
                .await?;
            let mut c = c;
            let tx = c.transaction().await?;
            tx.execute("INSERT INTO tx_t VALUES (1)", &[]).await?;
            tx.rollback().await?;
            let tx = c.transaction().await?;
            tx.execute("INSERT INTO tx_t VALUES (2)", &[]).await?;
            tx.commit().await?;
            let n: i64 = c.query_one("SELECT sum(i) FROM tx_t", &[]).await?.get(0);
            (n == 2)
                .then(|| "rollback+commit".into())
                .ok_or_else(|| format!("sum {n}").into())
        }
        "copy" => copy(&c).await,
        "cancel" => {
            let token = c.cancel_token();
            let connector = tls(ca);
            let canceller = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                token.cancel_query(connector).await
            });
            let t = std::time::Instant::now();
            let err = c
                .simple_query("SELECT pg_sleep(20)")
                .await
                .err()
                .ok_or("pg_sleep was not cancelled")?;
            canceller.await??;
            let code = err.code().cloned();
            (code == Some(SqlState::QUERY_CANCELED) && t.elapsed() < Duration::from_secs(10))
                .then(|| format!("cancelled after {:?}", t.elapsed()))
                .ok_or_else(|| format!("{err:?}").into())
        }
        "notify" => notify(conninfo, ca, &c).await,
        "deny_extended" => {
            c.batch_execute("CREATE TABLE IF NOT EXISTS deny_t (i int)")
                .await?;
            let err = c
                .prepare("TRUNCATE deny_t")
                .await
                .err()
                .ok_or("TRUNCATE was prepared")?;
            let code = err.code().cloned();
            let msg = err
                .as_db_error()
                .map(|e| e.message().to_string())
                .unwrap_or_default();
            let one: i32 = c.query_one("SELECT 1", &[]).await?.get(0);
            (code == Some(SqlState::INSUFFICIENT_PRIVILEGE)
                && msg.contains("deny_statements")
                && one == 1)
                .then(|| msg.clone())
                .ok_or_else(|| format!("{code:?} {msg}").into())
        }
        // run with review_statements = ["delete"]; the test approves, denies, approves
        "review_extended" => {
            let st = c.prepare("DELETE FROM appr_ext WHERE i = $1").await?;
            let first = c.execute(&st, &[&1i32]).await?;
            let denied = c
                .execute(&st, &[&2i32])
                .await
                .err()
                .ok_or("denied delete ran")?;
            let denied_msg = denied
                .as_db_error()
                .map(|e| e.message().to_string())
                .unwrap_or_default();
            let third = c.execute(&st, &[&3i32]).await?;
            (first == 1
                && third == 1
                && denied.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
                && denied_msg.contains("denied by an approver"))
            .then(|| format!("{first} {third} {denied_msg}"))
            .ok_or_else(|| format!("{first} {third} {denied:?}").into())
        }
        // run where `DELETE FROM prep_proto` (no WHERE) is held for review and reviews expire
        // at once: the driver's statement, run with SQL EXECUTE by its name, is held (and
        // refused when the review expires) as its own Execute would be
        "execute_by_name" => {
            let _st = c.prepare("DELETE FROM prep_proto").await?;
            // the driver's name for it, from the server
            let name: String = c
                .query_one(
                    "SELECT name FROM pg_prepared_statements WHERE statement = 'DELETE FROM prep_proto'",
                    &[],
                )
                .await?
                .get(0);
            let err = c
                .simple_query(&format!("EXECUTE {name}"))
                .await
                .err()
                .ok_or("EXECUTE of the driver's DELETE ran")?;
            let msg = err
                .as_db_error()
                .map(|e| e.message().to_string())
                .unwrap_or_default();
            let left: i64 = c
                .query_one("SELECT count(*) FROM prep_proto", &[])
                .await?
                .get(0);
            (err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
                && msg.contains("expired")
                && left == 3)
                .then(|| format!("{msg}; {left} rows left"))
                .ok_or_else(|| format!("{err:?}; {left} rows left").into())
        }
        // binary results (tokio-postgres asks for binary): the values of mask_t, as received
        "masked_binary" => {
            let row = c
                .query_one(
                    "SELECT email, card, password, doc, id, note FROM mask_t WHERE id = $1",
                    &[&1i32],
                )
                .await?;
            let doc: serde_json::Value = row.get(3);
            Ok(json!({
                "email": row.get::<_, String>(0),
                "card": row.get::<_, String>(1),
                "password": row.get::<_, String>(2),
                "doc": doc,
                "id": row.get::<_, i32>(4),
                "note": row.get::<_, String>(5),
            })
            .to_string())
        }
        other => Err(format!("unknown scenario {other}").into()),
    }
}

async fn copy(c: &Client) -> Result<String> {
    c.batch_execute("CREATE TABLE IF NOT EXISTS copy_t (i int, s text); DELETE FROM copy_t")
        .await?;
    let sink = c.copy_in("COPY copy_t FROM STDIN").await?;
    pin_mut!(sink);
    for chunk in 0..10 {
        let mut buf = String::new();
        for i in 0..1000 {
            buf.push_str(&format!("{}\trow-{}\n", chunk * 1000 + i, chunk * 1000 + i));
        }
        sink.send(Bytes::from(buf)).await?;
    }
    let n = sink.finish().await?;
    let out = c
        .copy_out("COPY (SELECT * FROM copy_t ORDER BY i) TO STDOUT")
        .await?;
    let chunks: Vec<Bytes> = out.try_collect().await?;
    let text: Vec<u8> = chunks.concat();
    let lines = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    (n == 10_000 && lines == 10_000)
        .then(|| format!("in {n}, out {lines}"))
        .ok_or_else(|| format!("in {n}, out {lines}").into())
}

async fn notify(conninfo: &str, ca: &str, sender: &Client) -> Result<String> {
    let (listener, mut conn) = conninfo.parse::<Config>()?.connect(tls(ca)).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = stream.next().await {
            let _ = tx.send(m);
        }
    });
    listener.batch_execute("LISTEN hoop_chan").await?;
    sender
        .batch_execute("NOTIFY hoop_chan, 'hello-through-hoop'")
        .await?;
    let msg = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = rx.recv().await {
            if let AsyncMessage::Notification(n) = m {
                return Some(n.payload().to_string());
            }
        }
        None
    })
    .await?;
    (msg.as_deref() == Some("hello-through-hoop"))
        .then(|| "notified".into())
        .ok_or_else(|| format!("{msg:?}").into())
}

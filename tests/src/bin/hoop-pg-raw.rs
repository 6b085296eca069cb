//! A PostgreSQL client speaking the protocol by hand, for what no driver here sends: the
//! fast-path FunctionCall (libpq's `PQfn`), and extended-protocol messages in an order of the
//! caller's choosing (a statement name reused, a name made with SQL `PREPARE` bound through
//! the protocol, batches pipelined). Plaintext to ADDR (hoopd still uses TLS upstream),
//! cleartext password when asked (hoopd runs SCRAM with the server itself).
//!
//! Steps, in order; messages are buffered and sent at `wait` (and at the end):
//! - `OID:ARG,ARG…` — a FunctionCall (text arguments and result), sent and answered at once;
//!   prints `{"call", "result"}` or `{"call", "error": {"code", "message"}}`;
//! - `query:SQL` — a simple Query;
//! - `parse:NAME:SQL`, `bind:PORTAL:STATEMENT`, `describe:PORTAL`, `execute:PORTAL`,
//!   `close:NAME` (a statement), `sync`;
//! - `wait` — sends what is buffered and reads to each ReadyForQuery owed (one per Query and
//!   Sync), printing per ReadyForQuery `{"step", "tags", "rows", "error"}`: `step` the Query's
//!   text or `sync`, `tags` the answering messages' type bytes, `rows` each row's first column,
//!   `error` the first ErrorResponse.
//!
//! After the steps, `SELECT 'usable'` shows the session still works: `{"after": …}`.
//!
//!   hoop-pg-raw ADDR USER PASSWORD STEP...

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: hoop-pg-raw ADDR USER PASSWORD STEP...";
    let (addr, user, password) = (
        args.get(1).expect(usage),
        args.get(2).expect(usage),
        args.get(3).expect(usage),
    );
    match run(addr, user, password, &args[4..]) {
        Ok(()) => {}
        Err(e) => {
            println!("{}", json!({"fatal": e.to_string()}));
            std::process::exit(1);
        }
    }
}

/// Messages buffered for the next `wait`, and the ReadyForQuery each answer ends with.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    owed: Vec<String>,
}

impl Batch {
    fn push(&mut self, tag: u8, body: &[u8]) {
        self.bytes.push(tag);
        self.bytes
            .extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        self.bytes.extend_from_slice(body);
    }

    /// Sends the buffered messages and prints each answer up to its ReadyForQuery.
    fn wait(&mut self, s: &mut TcpStream) -> Result<()> {
        s.write_all(&std::mem::take(&mut self.bytes))?;
        for step in std::mem::take(&mut self.owed) {
            let (mut tags, mut rows, mut error) = (String::new(), Vec::new(), Value::Null);
            loop {
                let (tag, body) = read(s)?;
                tags.push(tag as char);
                match tag {
                    b'Z' => break,
                    b'D' => rows.push(first_column(&body)),
                    b'E' if error.is_null() => error = error_fields(&body),
                    _ => {}
                }
            }
            println!(
                "{}",
                json!({"step": step, "tags": tags, "rows": rows, "error": error})
            );
        }
        Ok(())
    }
}

fn cstr(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.push(0);
}

fn run(addr: &str, user: &str, password: &str, steps: &[String]) -> Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    startup(&mut s, user, password)?;
    let mut batch = Batch::default();
    for step in steps {
        let (verb, rest) = step.split_once(':').unwrap_or((step, ""));
        let mut b = Vec::new();
        match verb {
            "query" => {
                cstr(&mut b, rest);
                batch.push(b'Q', &b);
                batch.owed.push(rest.to_string());
            }
            "parse" => {
                let (name, sql) = rest.split_once(':').ok_or("parse:NAME:SQL")?;
                cstr(&mut b, name);
                cstr(&mut b, sql);
                b.extend_from_slice(&0i16.to_be_bytes());
                batch.push(b'P', &b);
            }
            "bind" => {
                let (portal, stmt) = rest.split_once(':').ok_or("bind:PORTAL:STATEMENT")?;
                cstr(&mut b, portal);
                cstr(&mut b, stmt);
                // no parameter formats, no parameters, no result formats (text)
                b.extend_from_slice(&[0; 6]);
                batch.push(b'B', &b);
            }
            "execute" => {
                cstr(&mut b, rest);
                b.extend_from_slice(&0i32.to_be_bytes());
                batch.push(b'E', &b);
            }
            "describe" => {
                b.push(b'P');
                cstr(&mut b, rest);
                batch.push(b'D', &b);
            }
            "close" => {
                b.push(b'S');
                cstr(&mut b, rest);
                batch.push(b'C', &b);
            }
            "sync" => {
                batch.push(b'S', &[]);
                batch.owed.push("sync".into());
            }
            "wait" => batch.wait(&mut s)?,
            oid => {
                batch.wait(&mut s)?;
                call(&mut s, step, oid.parse()?, rest)?;
            }
        }
    }
    batch.wait(&mut s)?;
    let mut q = b"SELECT 'usable'".to_vec();
    q.push(0);
    send(&mut s, b'Q', &q)?;
    let mut after = Value::Null;
    until_ready(&mut s, |tag, body| match tag {
        b'D' => after = first_column(body),
        b'E' => after = json!({"error": error_fields(body)}),
        _ => {}
    })?;
    println!("{}", json!({"after": after}));
    send(&mut s, b'X', &[])?;
    Ok(())
}

/// A fast-path call of function `oid` with `args` (comma-separated), answered at once.
fn call(s: &mut TcpStream, step: &str, oid: u32, args: &str) -> Result<()> {
    let args: Vec<&str> = if args.is_empty() {
        Vec::new()
    } else {
        args.split(',').collect()
    };
    send(s, b'F', &function_call(oid, &args))?;
    let mut line = json!({"call": step});
    until_ready(s, |tag, body| match tag {
        b'V' => {
            let len = i32::from_be_bytes(body[..4].try_into().unwrap());
            line["result"] = if len < 0 {
                Value::Null
            } else {
                String::from_utf8_lossy(&body[4..]).into_owned().into()
            };
        }
        b'E' => line["error"] = error_fields(body),
        _ => {}
    })?;
    println!("{line}");
    Ok(())
}

/// A DataRow's first column as text (`null` for NULL).
fn first_column(body: &[u8]) -> Value {
    if body.len() < 6 {
        return Value::Null;
    }
    let len = i32::from_be_bytes(body[2..6].try_into().unwrap());
    match usize::try_from(len) {
        Ok(n) if body.len() >= 6 + n => {
            String::from_utf8_lossy(&body[6..6 + n]).into_owned().into()
        }
        _ => Value::Null,
    }
}

fn startup(s: &mut TcpStream, user: &str, password: &str) -> Result<()> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", "postgres")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    s.write_all(&packet)?;
    loop {
        let (tag, body) = read(s)?;
        match tag {
            b'R' if body[..4] == [0, 0, 0, 3] => {
                let mut p = password.as_bytes().to_vec();
                p.push(0);
                send(s, b'p', &p)?;
            }
            b'R' if body[..4] == [0, 0, 0, 0] => {}
            b'R' => return Err(format!("unexpected authentication request {body:?}").into()),
            b'E' => return Err(format!("startup: {}", error_fields(&body)).into()),
            b'Z' => return Ok(()),
            _ => {}
        }
    }
}

/// FunctionCall: all arguments and the result in text format.
fn function_call(oid: u32, args: &[&str]) -> Vec<u8> {
    let mut b = oid.to_be_bytes().to_vec();
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(args.len() as i16).to_be_bytes());
    for a in args {
        b.extend_from_slice(&(a.len() as i32).to_be_bytes());
        b.extend_from_slice(a.as_bytes());
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    b
}

fn until_ready(s: &mut TcpStream, mut on: impl FnMut(u8, &[u8])) -> Result<()> {
    loop {
        let (tag, body) = read(s)?;
        if tag == b'Z' {
            return Ok(());
        }
        on(tag, &body);
    }
}

fn error_fields(body: &[u8]) -> Value {
    let mut v = json!({});
    for f in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(&f[1..]).into_owned();
        match f[0] {
            b'C' => v["code"] = text.into(),
            b'M' => v["message"] = text.into(),
            _ => {}
        }
    }
    v
}

fn send(s: &mut TcpStream, tag: u8, body: &[u8]) -> Result<()> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    s.write_all(&m)?;
    Ok(())
}

fn read(s: &mut TcpStream) -> Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head)?;
    let len = i32::from_be_bytes(head[1..].try_into().unwrap());
    let mut body = vec![0u8; usize::try_from(len)?.checked_sub(4).ok_or("bad length")?];
    s.read_exact(&mut body)?;
    Ok((head[0], body))
}

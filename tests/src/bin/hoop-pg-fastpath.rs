//! A PostgreSQL client speaking the protocol by hand, for what no driver here sends: the
//! fast-path FunctionCall (libpq's `PQfn`). Plaintext to ADDR (hoopd still uses TLS upstream),
//! cleartext password when asked (hoopd runs SCRAM with the server itself). Each CALL is
//! `OID:ARG,ARG…` (text arguments and result); after the calls, `SELECT 'usable'` shows the
//! session still works. One JSON line per call and one for the query:
//! `{"call", "result"}` or `{"call", "error": {"code", "message"}}`, then `{"after": …}`.
//!
//!   hoop-pg-fastpath ADDR USER PASSWORD CALL...

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: hoop-pg-fastpath ADDR USER PASSWORD CALL...";
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

fn run(addr: &str, user: &str, password: &str, calls: &[String]) -> Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    startup(&mut s, user, password)?;
    for call in calls {
        let (oid, args) = call.split_once(':').ok_or("CALL is OID:ARG,…")?;
        let args: Vec<&str> = if args.is_empty() {
            Vec::new()
        } else {
            args.split(',').collect()
        };
        send(&mut s, b'F', &function_call(oid.parse()?, &args))?;
        let mut line = json!({"call": call});
        until_ready(&mut s, |tag, body| match tag {
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
    }
    let mut q = b"SELECT 'usable'".to_vec();
    q.push(0);
    send(&mut s, b'Q', &q)?;
    let mut after = Value::Null;
    until_ready(&mut s, |tag, body| match tag {
        b'D' => after = String::from_utf8_lossy(&body[6..]).into_owned().into(),
        b'E' => after = json!({"error": error_fields(body)}),
        _ => {}
    })?;
    println!("{}", json!({"after": after}));
    send(&mut s, b'X', &[])?;
    Ok(())
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

//! A real TCP client for the end-to-end tests, run inside the test's cgroup: opens `--count`
//! concurrent connections to ADDR, sends MSG-i, half-closes, reads the reply, and prints one
//! JSON line per connection (local and peer address as the socket reports them, reply or error).
//! `--wait-stdin` holds each connection open after connecting until a line arrives on stdin.
//! `--hex` sends MSG hex-decoded, as is (raw protocol bytes).
//! Exit status 0 only when every connection succeeded.

use std::{
    io::{BufRead, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: hoop-test-client ADDR MSG [--count N] [--timeout-ms MS] [--wait-stdin]";
    // ADDR is ip:port or host:port (resolved with the system resolver, as any client would)
    let target = args.get(1).expect(usage);
    let addr: SocketAddr = match target.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        other => {
            let e = other.err().map(|e| e.to_string()).unwrap_or_default();
            println!("{{\"ok\":false,\"kind\":\"Resolve\",\"error\":{e:?}}}");
            std::process::exit(2);
        }
    };
    let msg = args.get(2).expect(usage).clone();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<u64>().expect(usage))
    };
    let count = flag("--count").unwrap_or(1) as usize;
    let timeout = Duration::from_millis(flag("--timeout-ms").unwrap_or(5000));
    let wait_stdin = args.iter().any(|a| a == "--wait-stdin");
    let hex = args.iter().any(|a| a == "--hex");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let msg = if hex {
                unhex(&msg)
            } else {
                format!("{msg}-{i}").into_bytes()
            };
            let tx = tx.clone();
            std::thread::spawn(move || one(i, addr, &msg, timeout, wait_stdin.then_some(tx)))
        })
        .collect();
    drop(tx);
    if wait_stdin {
        // every connection reports in, then one stdin line releases them all
        for _ in 0..count {
            let _ = rx.recv();
        }
        println!("{{\"connected\":{count}}}");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        GO.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap_or(false))
        .filter(|ok| *ok)
        .count();
    std::process::exit(if ok == count { 0 } else { 1 });
}

static GO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn one(
    i: usize,
    addr: SocketAddr,
    msg: &[u8],
    timeout: Duration,
    ready: Option<std::sync::mpsc::Sender<()>>,
) -> bool {
    let result = (|| -> std::io::Result<(SocketAddr, SocketAddr, String)> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        let (local, peer) = (s.local_addr()?, s.peer_addr()?);
        if let Some(tx) = ready {
            let _ = tx.send(());
            while !GO.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        s.write_all(msg)?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply)?;
        Ok((local, peer, String::from_utf8_lossy(&reply).into_owned()))
    })();
    let line = match &result {
        Ok((local, peer, reply)) => {
            serde_json::json!({"i": i, "ok": true, "local": local.to_string(), "peer": peer.to_string(), "reply": reply})
        }
        Err(e) => {
            serde_json::json!({"i": i, "ok": false, "error": e.to_string(), "kind": format!("{:?}", e.kind())})
        }
    };
    println!("{line}");
    result.is_ok()
}

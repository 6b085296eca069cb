//! Load generator and server for `cargo xtask bench` (numbers, not assertions):
//!   hoop-bench serve ADDR                 server: 'S'+u64 → stream that many bytes; 'E' → echo
//!   hoop-bench sink ADDR                  server: accept and close at once (for connect-loop)
//!   hoop-bench connect-loop ADDR N        N connect/close cycles; prints ns per cycle
//!   hoop-bench stream ADDR BYTES          receive BYTES; prints MiB/s
//!   hoop-bench rtt ADDR N                 N 64-byte ping-pongs on one connection; prints µs mean

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Instant,
};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = a.get(2).and_then(|s| s.parse().ok()).expect("ADDR");
    let n: u64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    match a[1].as_str() {
        "serve" => serve(addr),
        "sink" => {
            let l = listen(addr);
            for s in l.incoming() {
                drop(s);
            }
        }
        "connect-loop" => {
            let t = Instant::now();
            for _ in 0..n {
                let s = TcpStream::connect(addr).expect("connect");
                abort(&s);
            }
            println!("{:.0}", t.elapsed().as_nanos() as f64 / n as f64);
        }
        "stream" => {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"S").unwrap();
            s.write_all(&n.to_be_bytes()).unwrap();
            let t = Instant::now();
            let mut buf = vec![0u8; 256 * 1024];
            let mut got = 0u64;
            while got < n {
                let r = s.read(&mut buf).unwrap();
                assert!(r > 0, "short stream");
                got += r as u64;
            }
            println!(
                "{:.1}",
                n as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64()
            );
        }
        "rtt" => {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).unwrap();
            s.write_all(b"E").unwrap();
            let mut buf = [7u8; 64];
            let t = Instant::now();
            for _ in 0..n {
                s.write_all(&buf).unwrap();
                s.read_exact(&mut buf).unwrap();
            }
            println!("{:.2}", t.elapsed().as_nanos() as f64 / n as f64 / 1000.0);
        }
        m => panic!("unknown mode {m}"),
    }
}

/// Close with RST (SO_LINGER 0): no TIME_WAIT pile-up, so port reuse never stalls a SYN on a
/// half-closed server socket and the loop measures connect(), not retransmission timers.
fn abort(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd and a properly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// A listener with a deep accept queue: std's 128 overflows under a connect loop, and a dropped
/// SYN costs a 1 s retransmission that would swamp what is measured.
fn listen(addr: SocketAddr) -> TcpListener {
    use std::os::fd::AsRawFd;
    let l = TcpListener::bind(addr).expect("bind");
    // SAFETY: listen(2) again on a listening socket only changes its backlog.
    unsafe { libc::listen(l.as_raw_fd(), 4096) };
    l
}

fn serve(addr: SocketAddr) {
    let l = listen(addr);
    println!("ready");
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            let mut cmd = [0u8; 1];
            if s.read_exact(&mut cmd).is_err() {
                return;
            }
            if cmd[0] == b'S' {
                let mut len = [0u8; 8];
                if s.read_exact(&mut len).is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(len);
                let chunk = vec![0x5au8; 256 * 1024];
                while left > 0 {
                    let k = left.min(chunk.len() as u64) as usize;
                    if s.write_all(&chunk[..k]).is_err() {
                        return;
                    }
                    left -= k as u64;
                }
            } else {
                let mut buf = [0u8; 64];
                while s.read_exact(&mut buf).is_ok() && s.write_all(&buf).is_ok() {}
            }
        });
    }
}

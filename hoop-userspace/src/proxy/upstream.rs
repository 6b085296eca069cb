//! Connecting to the real upstream with hoopd's mark, so the eBPF redirect and the nftables
//! guard both let the socket through (and nothing else through).

use std::{io, net::SocketAddr, time::Duration};

use tokio::net::{TcpSocket, TcpStream};

pub async fn connect(addr: SocketAddr, mark: u32, timeout: Duration) -> io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Must precede connect(): the connect4/6 hook reads the mark to skip hoopd's own sockets.
    socket2::SockRef::from(&sock).set_mark(mark)?;
    sock.set_nodelay(true)?;
    match tokio::time::timeout(timeout, sock.connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {addr} timed out"),
        )),
    }
}

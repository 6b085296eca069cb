//! hoopctl's side of the control socket (blocking: a CLI needs nothing more).

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
};

use super::{Request, Response};

pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Self, String> {
        let s = UnixStream::connect(socket).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                format!(
                    "hoopd is not running (no control socket at {}): {e}",
                    socket.display()
                )
            }
            std::io::ErrorKind::PermissionDenied => {
                format!(
                    "not allowed to open {} (root or the operators group): {e}",
                    socket.display()
                )
            }
            _ => format!("{}: {e}", socket.display()),
        })?;
        Ok(Self {
            reader: BufReader::new(s.try_clone().map_err(|e| e.to_string())?),
            writer: s,
        })
    }

    pub fn call(&mut self, req: &Request) -> Result<serde_json::Value, String> {
        let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| e.to_string())?;
        self.read_response()
    }

    /// The next response (for `watch`, the next event).
    pub fn read_response(&mut self) -> Result<serde_json::Value, String> {
        let mut line = String::new();
        if self
            .reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("hoopd closed the control connection".into());
        }
        let r: Response = serde_json::from_str(&line).map_err(|e| format!("bad response: {e}"))?;
        if r.ok {
            Ok(r.data.unwrap_or_default())
        } else {
            Err(r.error.unwrap_or_default())
        }
    }
}

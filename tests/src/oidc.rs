//! The test OIDC issuer: `tests/oidc/issuer.mjs` (npm `oidc-provider`) over HTTPS on loopback
//! with a CA made for the run, its GitHub-Actions-style and Azure-DevOps-style token endpoints,
//! and its plain-HTTP control port (register jobs, mint, rotate keys, request counters).
//! `cargo xtask test` installs its npm dependencies (`npm ci`); stopped on drop.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use serde_json::{Value, json};

/// How long a start of the issuer may take to say it is ready.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Issuer {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
    pub admin_port: u16,
}

/// Where the script and its `node_modules` live.
pub fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

impl Issuer {
    /// Starts the issuer on `https://127.0.0.1:port` (control on `admin_port`).
    pub fn start(port: u16, admin_port: u16) -> Self {
        let js = script_dir();
        assert!(
            js.join("node_modules/oidc-provider").exists(),
            "{}/node_modules missing: run `cargo xtask test` (it runs `npm ci` there)",
            js.display()
        );
        let dir = std::env::temp_dir().join(format!("hoop-oidc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        crate::pg::make_certs(&dir, &dir, "127.0.0.1");
        // node has been seen (CI, once) to hang before listening, its main thread blocked on
        // a lock: a start without the ready line in time is killed and tried once more, and a
        // second one fails the suite instead of hanging it
        for attempt in 1..=2 {
            let mut child = Command::new("node")
                .arg(js.join("issuer.mjs"))
                .args([
                    "--port",
                    &port.to_string(),
                    "--admin-port",
                    &admin_port.to_string(),
                ])
                .arg("--cert")
                .arg(dir.join("server.crt"))
                .arg("--key")
                .arg(dir.join("server.key"))
                .arg("--ca")
                .arg(dir.join("ca.crt"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn node (is nodejs installed?)");
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let read = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(read.map(|_| line));
            });
            match rx.recv_timeout(READY_WITHIN) {
                Ok(line) => {
                    let line = line.unwrap();
                    assert!(line.contains("ready"), "issuer did not start: {line:?}");
                    return Self {
                        child,
                        dir,
                        port,
                        admin_port,
                    };
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    eprintln!(
                        "OIDC issuer: no ready line within {READY_WITHIN:?} (attempt {attempt}); killed"
                    );
                }
            }
        }
        panic!("the OIDC issuer (node issuer.mjs) did not start, twice, within {READY_WITHIN:?}");
    }

    /// The issuer identifier (`iss`).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The CA that signed the issuer's certificate (for `[identity] ca` and `[[issuer]] ca`).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `ACTIONS_ID_TOKEN_REQUEST_URL` as the runner sets it (with a query already present).
    pub fn github_url(&self) -> String {
        format!("{}/gh/token?api-version=2.0", self.url())
    }

    /// `SYSTEM_OIDCREQUESTURI`.
    pub fn ado_url(&self) -> String {
        format!("{}/ado/oidctoken", self.url())
    }

    /// Registers a job: its request token, `sub` and extra claims.
    pub fn job(&self, request_token: &str, sub: &str, claims: Value, extra: Value) {
        let mut j = json!({"request_token": request_token, "sub": sub, "claims": claims});
        j.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        self.admin("POST", "/admin/job", &j);
    }

    /// A token for a registered job, as a federated token file would hold it.
    pub fn mint(&self, request_token: &str, aud: &str) -> String {
        let v = self.admin(
            "POST",
            "/admin/mint",
            &json!({"request_token": request_token, "aud": aud}),
        );
        v["token"].as_str().expect("minted token").to_string()
    }

    /// Publishes a new signing key (used from now on); the old ones stay published unless
    /// `drop_old`. Returns the new kid.
    pub fn rotate(&self, drop_old: bool) -> String {
        let v = self.admin("POST", "/admin/rotate", &json!({"drop_old": drop_old}));
        v["kid"].as_str().unwrap().to_string()
    }

    /// Request counters: `gh`, `ado`, `jwks`, `discovery`, `mint`.
    pub fn stats(&self) -> Value {
        self.admin("GET", "/admin/stats", &json!({}))
    }

    fn admin(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = body.to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, json) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        assert!(
            head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
            "{path}: {resp}"
        );
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}: {e}: {json}"))
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

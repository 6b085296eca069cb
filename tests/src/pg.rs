//! A throwaway PostgreSQL 15 cluster for the tests: TLS on (self-signed certificate for its
//! address), SCRAM-SHA-256 authentication, its own port, fsync off. Stopped on drop.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const PASSWORD: &str = "hoop-test-pw";
/// Users for the other authentication methods (pg_hba `md5` and `password`).
pub const MD5_USER: &str = "md5user";
pub const CLEAR_USER: &str = "clearuser";
/// An Entra ID access token used as password is a long JWT; this one has that shape.
pub fn token_password() -> String {
    let part = |n: usize, c: char| std::iter::repeat_n(c, n).collect::<String>();
    format!(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.{}.{}",
        part(1400, 'Q'),
        part(342, 'x')
    )
}

pub struct Postgres {
    pub dir: PathBuf,
    pub host: String,
    pub port: u16,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_postgres(bin: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", &format!("{PG_BIN}/{bin}")]);
    c
}

impl Postgres {
    pub fn available() -> bool {
        Path::new(PG_BIN).join("initdb").exists()
    }

    /// initdb + TLS + start on `host:port`.
    pub fn start(name: &str, host: &str, port: u16) -> Self {
        Self::start_with(name, host, port, "")
    }

    /// Like `start`, with extra postgresql.conf lines.
    pub fn start_with(name: &str, host: &str, port: u16, extra_conf: &str) -> Self {
        Self::start_inner(name, host, port, extra_conf, &[])
    }

    /// Like `start`, with a certificate also valid for the DNS names `names`.
    pub fn start_named(name: &str, host: &str, port: u16, names: &[&str]) -> Self {
        Self::start_inner(name, host, port, "", names)
    }

    fn start_inner(name: &str, host: &str, port: u16, extra_conf: &str, names: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("hoop-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        crate::scratch_dir(&dir);
        let data = dir.join("data");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir));
        run(as_postgres("initdb")
            .args([
                "-D",
                data.to_str().unwrap(),
                "--auth=scram-sha-256",
                "-U",
                "postgres",
                "--pwfile",
            ])
            .arg(&pwfile)
            .arg("--no-sync"));
        make_certs_named(&dir, &data, host, names);
        run(Command::new("chown")
            .args(["postgres:postgres"])
            .arg(data.join("server.key"))
            .arg(data.join("server.crt")));
        run(Command::new("chmod")
            .arg("600")
            .arg(data.join("server.key")));
        let conf = format!(
            "listen_addresses = '{host}'\nport = {port}\nssl = on\nfsync = off\nsynchronous_commit = off\n\
             unix_socket_directories = '{}'\nmax_connections = 300\n{extra_conf}\n",
            dir.display()
        );
        let mut pg_conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        pg_conf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), pg_conf).unwrap();
        let hba = data.join("pg_hba.conf");
        let default_hba = std::fs::read_to_string(&hba).unwrap();
        let extra = format!(
            "host all {MD5_USER} 0.0.0.0/0 md5\nhost all {CLEAR_USER} 0.0.0.0/0 password\n"
        );
        std::fs::write(&hba, format!("{extra}{default_hba}")).unwrap();
        run(as_postgres("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-w", "-l"])
            .arg(dir.join("log"))
            .arg("start"));
        let pg = Self {
            dir,
            host: host.to_string(),
            port,
        };
        pg.psql_direct(&format!(
            "SET password_encryption = 'md5'; CREATE ROLE {MD5_USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}';
             CREATE ROLE {CLEAR_USER} LOGIN SUPERUSER PASSWORD '{}';",
            token_password()
        ));
        pg
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The CA that signed the server's certificate (for `upstream_ca`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Runs SQL directly (not through hoop) as postgres; panics on failure.
    pub fn psql_direct(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .arg(self.conninfo("require"))
            .args(["-XAtqv", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A libpq connection string for `sslmode`.
    pub fn conninfo(&self, sslmode: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres sslmode={sslmode} connect_timeout=10",
            self.host, self.port
        )
    }
}

/// A test CA and a server certificate it signs for `host` (CA:FALSE, as verifiers require).
/// A CA (`dir/ca.crt`) and a server certificate for `host` signed by it (`data/server.{crt,key}`).
pub fn make_certs(dir: &Path, data: &Path, host: &str) {
    make_certs_named(dir, data, host, &[])
}

/// Like `make_certs`, with the certificate also valid for the DNS names `names`.
pub fn make_certs_named(dir: &Path, data: &Path, host: &str, names: &[&str]) {
    let ca_key = dir.join("ca.key");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=hoop-test-ca",
            "-keyout",
        ])
        .arg(&ca_key)
        .arg("-out")
        .arg(dir.join("ca.crt")));
    let csr = dir.join("server.csr");
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={host}"),
            "-keyout",
        ])
        .arg(data.join("server.key"))
        .arg("-out")
        .arg(&csr));
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=IP:{host}{}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            names
                .iter()
                .map(|n| format!(",DNS:{n}"))
                .collect::<String>()
        ),
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(dir.join("ca.crt"))
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(data.join("server.crt")));
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .args([
                "-D",
                self.dir.join("data").to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}

//! A throwaway PostgreSQL 15 cluster for the tests: TLS on (self-signed certificate for its
//! address), SCRAM-SHA-256 authentication, its own port, fsync off. Stopped on drop.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const PASSWORD: &str = "hoop-test-pw";

pub struct Postgres {
    pub dir: PathBuf,
    pub host: String,
    pub port: u16,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
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
        let dir = std::env::temp_dir().join(format!("hoop-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir));
        run(as_postgres("initdb")
            .args(["-D", data.to_str().unwrap(), "--auth=scram-sha-256", "-U", "postgres", "--pwfile"])
            .arg(&pwfile)
            .arg("--no-sync"));
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=hoop-test-pg"])
            .args(["-addext", &format!("subjectAltName=IP:{host}")])
            .arg("-keyout")
            .arg(data.join("server.key"))
            .arg("-out")
            .arg(data.join("server.crt")));
        run(Command::new("chown").args(["postgres:postgres"]).arg(data.join("server.key")).arg(data.join("server.crt")));
        run(Command::new("chmod").arg("600").arg(data.join("server.key")));
        let conf = format!(
            "listen_addresses = '{host}'\nport = {port}\nssl = on\nfsync = off\nsynchronous_commit = off\n\
             unix_socket_directories = '{}'\nmax_connections = 300\n",
            dir.display()
        );
        let mut pg_conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        pg_conf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), pg_conf).unwrap();
        run(as_postgres("pg_ctl").args(["-D", data.to_str().unwrap(), "-w", "-l"]).arg(dir.join("log")).arg("start"));
        Self { dir, host: host.to_string(), port }
    }

    /// A libpq connection string for `sslmode`.
    pub fn conninfo(&self, sslmode: &str) -> String {
        format!("host={} port={} user=postgres dbname=postgres sslmode={sslmode} connect_timeout=10", self.host, self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl").args(["-D", self.dir.join("data").to_str().unwrap(), "-m", "immediate", "stop"]).output();
    }
}

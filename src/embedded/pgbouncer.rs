//! A throwaway PgBouncer (Debian's `pgbouncer`) in `pool_mode = transaction`
//! in front of an [`EmbeddedPostgres`], for the tests and the drain
//! benchmark: every database of the server, trust auth, a fixed number of
//! server connections per database. Stopped on drop.
//!
//! Transaction pooling is the mode that breaks clients: a server connection
//! passes to another client at every transaction's end, so whatever a
//! client leaves on it (a named prepared statement, a session setting, a
//! session advisory lock, a statement pipelined behind the end) shows up as
//! a wrong or lost answer (docs/operations.md, "PgBouncer").

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::postgres::EmbeddedPostgres;

/// What went wrong while running an embedded PgBouncer.
#[derive(Debug, thiserror::Error)]
pub enum PgBouncerError {
    /// Writing its files or spawning it failed.
    #[error("pgbouncer: {context}: {source} (install Debian's pgbouncer package)")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
    /// It did not let a client through in time; holds the end of its log.
    #[error("pgbouncer did not accept a client within {0:?}; its log:\n{1}")]
    NotReady(Duration, String),
}

/// A running pgbouncer process.
pub struct PgBouncer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl PgBouncer {
    /// Starts pgbouncer in front of `pg` with `server_connections` server
    /// connections per database and user (`default_pool_size`). As root it
    /// runs as the user the server runs as (pgbouncer refuses root too).
    pub fn start(
        pg: &EmbeddedPostgres,
        server_connections: u32,
    ) -> Result<PgBouncer, PgBouncerError> {
        let io = |context| move |source| PgBouncerError::Io { context, source };
        let dir = tempfile::Builder::new()
            .prefix("sluice-pgbouncer-")
            .tempdir()
            .map_err(io("creating its directory"))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io("probing for a free port"))?
            .port();
        let users = dir.path().join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").map_err(io("writing users.txt"))?;
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={pg_port}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {users}\n\
                 pool_mode = transaction\ndefault_pool_size = {server_connections}\n\
                 max_client_conn = 1000\nlogfile = {log}\n",
                pg_port = pg.port(),
                users = users.display(),
                log = dir.path().join("pgbouncer.log").display(),
            ),
        )
        .map_err(io("writing pgbouncer.ini"))?;
        let mut cmd = Command::new(binary());
        cmd.arg(&ini).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = pg.run_as() {
            for path in [dir.path(), users.as_path(), ini.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(io("handing its files to the postgres user"))?;
            }
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().map_err(io("spawning /usr/sbin/pgbouncer"))?;
        Ok(PgBouncer { child, port, dir })
    }

    /// Its process id: the drain benchmark's `--pin` puts it on Postgres'
    /// CPU and counts its CPU time.
    #[doc(hidden)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The TCP port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` through the pooler.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// Waits until a client gets an answer through it from `database`.
    pub async fn ready(&self, database: &str, within: Duration) -> Result<(), PgBouncerError> {
        let deadline = Instant::now() + within;
        let url = self.url(database);
        loop {
            if let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                if client.simple_query("SELECT 1").await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(PgBouncerError::NotReady(within, self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("pgbouncer"))
}

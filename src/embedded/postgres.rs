//! A throwaway PostgreSQL server for tests and the demo: `initdb` into a
//! fresh temp dir, `pg_ctl start` on a free 127.0.0.1 port, trust auth.
//! [`EmbeddedPostgres::start_with`] sets one up otherwise ([`Options`]:
//! TLS, a `pg_hba.conf` of its own).
//!
//! Needs the PostgreSQL server binaries (Debian's `postgresql` package). As
//! root, the server runs as the `postgres` OS user because postgres refuses
//! to run as root.

mod options;
mod system;

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use tempfile::TempDir;

pub use options::Options;
use system::{effective_uid, find_bin_dir, free_port, postgres_user};

/// What went wrong while running an embedded PostgreSQL server.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// A server binary is missing.
    #[error("PostgreSQL binary `{0}` not found on PATH nor under /usr/lib/postgresql/*/bin; install Debian's postgresql package")]
    BinaryNotFound(&'static str),
    /// Running as root, but there is no unprivileged user to run the server as.
    #[error("running as root but there is no `postgres` user in /etc/passwd to run the server as; install Debian's postgresql package (it creates that user)")]
    NoPostgresUser,
    /// A file-system or process-spawning operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// `initdb` exited unsuccessfully; holds its exit status and output.
    #[error("initdb failed: {0}")]
    InitDb(String),
    /// The server did not start; `log_tail` is the end of the server log.
    #[error("PostgreSQL failed to start: {output}\n--- server log tail ---\n{log_tail}")]
    Start {
        /// pg_ctl's output.
        output: String,
        /// Last lines of the server log.
        log_tail: String,
    },
    /// `pg_ctl stop` failed.
    #[error("PostgreSQL failed to stop: {0}")]
    Stop(String),
    /// Connecting to the server failed.
    #[error("connecting to embedded PostgreSQL failed: {0}")]
    Connect(#[source] tokio_postgres::Error),
    /// A SQL statement failed.
    #[error("SQL on embedded PostgreSQL failed: {0}")]
    Sql(#[source] tokio_postgres::Error),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> EmbeddedError {
    let context = context.into();
    move |source| EmbeddedError::Io { context, source }
}

/// A PostgreSQL server in its own temp dir; stopped and deleted on drop.
pub struct EmbeddedPostgres {
    /// Holds initdb/pg_ctl/postgres.
    bin_dir: PathBuf,
    /// `Some((uid, gid))` of the `postgres` user when we are root.
    run_as: Option<(u32, u32)>,
    port: u16,
    /// Root temp dir: holds `data/`, `server.log` and the unix socket.
    root: TempDir,
    /// Background shell that stops the server once this process is gone.
    reaper: Option<Child>,
    /// `pg_hba.conf` is the caller's: connect as `postgres` over the socket.
    own_hba: bool,
}

impl EmbeddedPostgres {
    /// initdb + `pg_ctl start` in a fresh temp dir on a free 127.0.0.1 port.
    ///
    /// Blocking (it runs `std::process` commands; about a second or two), so
    /// from async code prefer `tokio::task::spawn_blocking` outside tests.
    pub fn start() -> Result<EmbeddedPostgres, EmbeddedError> {
        EmbeddedPostgres::start_with(Options::default())
    }

    /// Like [`start`](Self::start), set up by `options`.
    pub fn start_with(options: Options) -> Result<EmbeddedPostgres, EmbeddedError> {
        let bin_dir = find_bin_dir()?;
        let run_as = if effective_uid()? == 0 {
            Some(postgres_user()?)
        } else {
            None
        };
        let root = tempfile::Builder::new()
            .prefix("sluice-pg-")
            .tempdir()
            .map_err(io_err("creating temp dir"))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(root.path(), Some(uid), Some(gid))
                .map_err(io_err("chown of temp dir to postgres"))?;
        }
        let mut pg = EmbeddedPostgres {
            bin_dir,
            run_as,
            port: 0,
            root,
            reaper: None,
            own_hba: options.hba.is_some(),
        };
        pg.init_db()?;
        options.apply(&pg.data_dir(), pg.run_as)?;
        pg.start_on_free_port()?;
        pg.reaper = pg.spawn_reaper();
        tracing::debug!(port = pg.port, dir = %pg.root_dir().display(), "embedded PostgreSQL started");
        Ok(pg)
    }

    /// `Some((uid, gid))` of the `postgres` user the server runs as when
    /// this process is root (tests run companions such as a pooler the same
    /// way, since they refuse root too); `None` otherwise.
    pub fn run_as(&self) -> Option<(u32, u32)> {
        self.run_as
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A connection string for the server's superuser that its
    /// `pg_hba.conf` lets in without a password or TLS: [`url`](Self::url),
    /// or the unix socket (key/value form) when [`Options::hba`] replaced
    /// the default.
    pub fn admin_url(&self, database: &str) -> String {
        if self.own_hba {
            format!(
                "host={} port={} user=postgres dbname={database}",
                self.root_dir().display(),
                self.port
            )
        } else {
            self.url(database)
        }
    }

    /// Creates a database named after `prefix` (lower-cased, non-`[a-z0-9_]`
    /// replaced by `_`) plus a process-wide counter, and returns its URL.
    pub async fn create_database(&self, prefix: &str) -> Result<String, EmbeddedError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{}_{}",
            sanitize(prefix),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let (client, connection) =
            tokio_postgres::connect(&self.admin_url("postgres"), tokio_postgres::NoTls)
                .await
                .map_err(EmbeddedError::Connect)?;
        let conn = tokio::spawn(connection);
        let result = client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await;
        // Dropping the client ends the connection task.
        drop(client);
        let _ = conn.await;
        result.map_err(EmbeddedError::Sql)?;
        Ok(self.url(&name))
    }

    /// `pg_ctl stop -m fast` (for outage tests); the data dir and port are
    /// kept for [`start_server`](Self::start_server). Blocking.
    pub fn stop_server(&self) -> Result<(), EmbeddedError> {
        let out = self.pg_ctl(&["stop", "-w", "-t", "60", "-m", "fast"])?;
        if out.status.success() {
            Ok(())
        } else {
            Err(EmbeddedError::Stop(output_text(&out)))
        }
    }

    /// Starts the server again on the same port and data dir. Blocking.
    pub fn start_server(&self) -> Result<(), EmbeddedError> {
        self.pg_ctl_start(self.port)
    }

    fn root_dir(&self) -> &Path {
        self.root.path()
    }

    /// The data directory (where [`Options::files`] are placed).
    pub fn data_dir(&self) -> PathBuf {
        self.root_dir().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.root_dir().join("server.log")
    }

    /// A command for a server binary, run as `postgres` when we are root.
    fn command(&self, binary: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(binary));
        // The server user may not be able to enter our cwd (e.g. /root).
        cmd.current_dir(self.root_dir()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn init_db(&self) -> Result<(), EmbeddedError> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            // C locale: works whatever locales the machine has generated.
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .output()
            .map_err(io_err("running initdb"))?;
        if !out.status.success() {
            return Err(EmbeddedError::InitDb(output_text(&out)));
        }
        // Durability is pointless for a throwaway server; speed matters.
        let settings = format!(
            "\n# sluice embedded test server\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = 300\nshared_buffers = 128MB\n\
             logging_collector = off\n",
            self.root_dir().display()
        );
        let conf = self.data_dir().join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).map_err(io_err("reading postgresql.conf"))?;
        text.push_str(&settings);
        fs::write(&conf, text).map_err(io_err("writing postgresql.conf"))
    }

    /// Picks a free port and starts; retries with another port when the one
    /// picked was taken between probing it and the server binding it.
    fn start_on_free_port(&mut self) -> Result<(), EmbeddedError> {
        const ATTEMPTS: usize = 5;
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            match self.pg_ctl_start(port) {
                Ok(()) => {
                    self.port = port;
                    return Ok(());
                }
                Err(EmbeddedError::Start { log_tail, .. })
                    if attempt < ATTEMPTS && log_tail.contains("could not bind") =>
                {
                    tracing::debug!(port, attempt, "port taken, retrying");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn pg_ctl_start(&self, port: u16) -> Result<(), EmbeddedError> {
        // pg_ctl -l appends: report only what this attempt logged.
        let log_start = fs::metadata(self.log_file()).map_or(0, |m| m.len());
        let out = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-o", &format!("-p {port}")])
            .output()
            .map_err(io_err("running pg_ctl start"))?;
        if out.status.success() {
            return Ok(());
        }
        // On a -w timeout the server may still come up later: make sure it
        // does not outlive this failure.
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        Err(EmbeddedError::Start {
            output: output_text(&out),
            log_tail: self.log_tail(log_start, 30),
        })
    }

    /// Runs `pg_ctl <args> -D <data>`.
    fn pg_ctl(&self, args: &[&str]) -> Result<Output, EmbeddedError> {
        self.command("pg_ctl")
            .args(args)
            .arg("-D")
            .arg(self.data_dir())
            .output()
            .map_err(io_err("running pg_ctl"))
    }

    /// The last `lines` lines of the server log written after byte `from`.
    fn log_tail(&self, from: u64, lines: usize) -> String {
        let log = fs::read(self.log_file()).unwrap_or_default();
        let start = usize::try_from(from).unwrap_or(0).min(log.len());
        let log = String::from_utf8_lossy(&log[start..]);
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Spawns a detached shell that waits for this process to exit, then
    /// kills the postmaster (SIGQUIT = immediate shutdown) and deletes the
    /// temp dir: statics such as [`shared`] are never dropped, and a killed
    /// test binary runs no destructors at all.
    ///
    /// It waits for postmaster.pid to vanish (as `pg_ctl stop -w` does) rather
    /// than for the pid: an exited postmaster may linger as a zombie.
    fn spawn_reaper(&self) -> Option<Child> {
        let dir = self.root_dir().display().to_string();
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             pid=$(head -n 1 '{dir}/data/postmaster.pid' 2>/dev/null) && \
             kill -QUIT \"$pid\" 2>/dev/null && \
             for _ in $(seq 100); do [ -e '{dir}/data/postmaster.pid' ] || break; sleep 0.1; done; \
             rm -rf '{dir}'",
            me = std::process::id()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group, so a Ctrl-C aimed at the test binary does
            // not kill the reaper too (pg_ctl already detaches the server).
            .process_group(0)
            .spawn()
            .inspect_err(|e| tracing::warn!(error = %e, "no PostgreSQL reaper; the server outlives this process unless dropped"))
            .ok()
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-w", "-m", "immediate"]);
        if self.data_dir().join("postmaster.pid").exists() {
            // Still running: deleting its files underneath it would be worse
            // than leaving both to the reaper when this process exits.
            tracing::warn!(dir = %self.root_dir().display(), "embedded PostgreSQL did not stop; leaving it to the reaper");
            self.root.disable_cleanup(true);
            return;
        }
        if let Some(mut reaper) = self.reaper.take() {
            // Our own child: nothing left for it to do.
            let _ = reaper.kill();
            let _ = reaper.wait();
        }
        // Dropping `root` removes the temp dir.
    }
}

/// One server per process, started on first use (for test binaries).
///
/// Never dropped; the reaper stops it and deletes its files when the process
/// exits. A failed start is not cached: the next call tries again.
pub fn shared() -> Result<&'static EmbeddedPostgres, EmbeddedError> {
    static SHARED: OnceLock<EmbeddedPostgres> = OnceLock::new();
    static STARTING: Mutex<()> = Mutex::new(());
    if let Some(pg) = SHARED.get() {
        return Ok(pg);
    }
    // Serialise starts so concurrent first callers don't each start a server.
    let _guard = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(pg) = SHARED.get() {
        return Ok(pg);
    }
    let pg = EmbeddedPostgres::start()?;
    Ok(SHARED.get_or_init(|| pg))
}

/// Lower-case `[a-z0-9_]` identifier starting with a letter or `_`, short
/// enough to stay under PostgreSQL's 63-byte limit once the counter is added.
fn sanitize(prefix: &str) -> String {
    let mut name: String = prefix
        .chars()
        .take(40)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        name.insert(0, 'd');
    }
    name
}

fn output_text(out: &Output) -> String {
    format!(
        "{} {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

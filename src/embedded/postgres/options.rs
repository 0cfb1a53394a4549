//! A server set up differently from the default one (trust for everyone
//! over TCP, no TLS): extra `postgresql.conf` settings, a `pg_hba.conf` of
//! its own, and files placed in the data directory (a TLS test's
//! certificates and keys).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{io_err, EmbeddedError};

/// How [`EmbeddedPostgres::start_with`](super::EmbeddedPostgres::start_with)
/// sets the server up; the default is what `start` does.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `postgresql.conf` settings added after sluice's own, `(name,
    /// value)`, the value as PostgreSQL reads it (quote strings:
    /// `("ssl_cert_file", "'server.crt'")`).
    pub settings: Vec<(String, String)>,
    /// Replaces initdb's `pg_hba.conf` (trust for everyone). The harness's
    /// own connections (`create_database`, [`admin_url`]) then use the unix
    /// socket, so keep a `local all postgres trust` line.
    ///
    /// [`admin_url`]: super::EmbeddedPostgres::admin_url
    pub hba: Option<String>,
    /// Files copied into the data directory, `(name, source)`, owned by the
    /// server's user with mode 0600 (what PostgreSQL demands of
    /// `ssl_key_file`); `settings` name them relative to the data
    /// directory.
    pub files: Vec<(String, PathBuf)>,
}

impl Options {
    /// Writes the settings, `pg_hba.conf` and files into `data` (after
    /// initdb), owned by `run_as` when given.
    pub(super) fn apply(
        &self,
        data: &Path,
        run_as: Option<(u32, u32)>,
    ) -> Result<(), EmbeddedError> {
        for (name, source) in &self.files {
            let target = data.join(name);
            fs::copy(source, &target).map_err(io_err(format!(
                "copying {} into the data directory",
                source.display()
            )))?;
            own(&target, run_as)?;
        }
        if let Some(hba) = &self.hba {
            let path = data.join("pg_hba.conf");
            fs::write(&path, hba).map_err(io_err("writing pg_hba.conf"))?;
            own(&path, run_as)?;
        }
        if self.settings.is_empty() {
            return Ok(());
        }
        let conf = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).map_err(io_err("reading postgresql.conf"))?;
        text.push_str("# options of this server\n");
        for (name, value) in &self.settings {
            text.push_str(&format!("{name} = {value}\n"));
        }
        fs::write(&conf, text).map_err(io_err("writing postgresql.conf"))
    }
}

/// The server's user owns `path`, and only it may read it.
fn own(path: &Path, run_as: Option<(u32, u32)>) -> Result<(), EmbeddedError> {
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(io_err(format!("chown of {} to postgres", path.display())))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(io_err(format!("chmod 600 {}", path.display())))
}

//! What the embedded server needs from the machine: the PostgreSQL
//! binaries, who we are, the `postgres` user, a free port.

use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use super::{io_err, EmbeddedError};

/// Directory holding initdb, pg_ctl and postgres: initdb's directory (after
/// following symlinks, e.g. /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin)
/// when initdb is on PATH, else the highest /usr/lib/postgresql/<version>/bin.
pub(super) fn find_bin_dir() -> Result<PathBuf, EmbeddedError> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("initdb"))
            .find(|f| f.is_file())
    });
    let initdb = on_path
        .or_else(|| {
            fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .flatten()
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((version, e.path().join("bin/initdb")))
                })
                .filter(|(_, f)| f.is_file())
                .max()
                .map(|(_, f)| f)
        })
        .ok_or(EmbeddedError::BinaryNotFound("initdb"))?;
    let resolved = initdb
        .canonicalize()
        .map_err(io_err(format!("resolving {}", initdb.display())))?;
    // A canonical path to a file always has a parent.
    let dir = resolved.parent().unwrap_or(Path::new("/")).to_path_buf();
    for binary in ["pg_ctl", "postgres"] {
        if !dir.join(binary).is_file() {
            return Err(EmbeddedError::BinaryNotFound(binary));
        }
    }
    Ok(dir)
}

/// Effective uid from /proc/self/status (`Uid: real effective saved fs`),
/// which spares a libc dependency.
pub(super) fn effective_uid() -> Result<u32, EmbeddedError> {
    let status =
        fs::read_to_string("/proc/self/status").map_err(io_err("reading /proc/self/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| EmbeddedError::Io {
            context: "parsing the Uid: line of /proc/self/status".into(),
            source: io::ErrorKind::InvalidData.into(),
        })
}

/// uid and gid of the `postgres` user from /etc/passwd.
pub(super) fn postgres_user() -> Result<(u32, u32), EmbeddedError> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_err("reading /etc/passwd"))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            if fields.next()? != "postgres" {
                return None;
            }
            let uid = fields.nth(1)?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            Some((uid, gid))
        })
        .ok_or(EmbeddedError::NoPostgresUser)
}

/// A port that was free a moment ago (the caller retries if it is taken).
pub(super) fn free_port() -> Result<u16, EmbeddedError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io_err("probing for a free port"))
}

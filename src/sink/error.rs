//! Errors of the Postgres side and how each one is handled.
//!
//! Every error is classified by SQLSTATE into exactly one of three classes;
//! nothing is logged and ignored.

/// What the pipeline does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Not about any record (connection lost, serialization failure, server
    /// shutting down, read-only after failover, out of resources): retry the
    /// same batch with backoff; nothing is skipped.
    Retry,
    /// A data or constraint error caused by one record (SQLSTATE class 22 or
    /// 23): isolate the record by bisecting and dead-letter it.
    DeadLetter,
    /// A problem no retry can fix (missing table, permission denied, ...):
    /// stop and say why.
    Fatal,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retry => "retry",
            ErrorClass::DeadLetter => "dead_letter",
            ErrorClass::Fatal => "fatal",
        }
    }
}

/// Classifies a SQLSTATE code (`None`: the error came from the connection,
/// not the server).
pub fn classify_sqlstate(code: Option<&str>) -> ErrorClass {
    let Some(code) = code else {
        return ErrorClass::Retry;
    };
    match code {
        // serialization failure, deadlock, read-only transaction (an old
        // primary after failover), lock not available (lock_timeout),
        // query canceled (statement_timeout), admin/crash shutdown, cannot
        // connect now.
        "40001" | "40P01" | "25006" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" => {
            ErrorClass::Retry
        }
        _ => match &code[..code.len().min(2)] {
            // connection exceptions, insufficient resources, system errors
            "08" | "53" | "58" => ErrorClass::Retry,
            "22" | "23" => ErrorClass::DeadLetter,
            _ => ErrorClass::Fatal,
        },
    }
}

/// Classifies a server error by its SQLSTATE and, where one code covers
/// both a bad record and an operator's problem, its message.
///
/// A row with no partition of a partitioned target to go to (23514 "no
/// partition of relation ... found for row", a check violation like any
/// CHECK constraint's) is not bad data: the partition for its day or key
/// was not created yet. Dead-lettering would empty a day's records into the
/// dead-letter table (or trip the poison-storm breaker); retrying holds the
/// partition in place, in order, until the partition exists, then goes on
/// by itself (docs/ARCHITECTURE.md, "Partitioned targets"). Postgres says
/// it in the server's `lc_messages`: in another language than English the
/// message does not match and the row is dead-lettered as before.
pub fn classify(code: Option<&str>, message: Option<&str>) -> ErrorClass {
    match (code, message) {
        (Some("23514"), Some(m)) if is_missing_partition(m) => ErrorClass::Retry,
        _ => classify_sqlstate(code),
    }
}

/// Postgres' message for a row that no partition accepts.
fn is_missing_partition(message: &str) -> bool {
    message.starts_with("no partition of relation") && message.ends_with("found for row")
}

/// Whether a SQLSTATE says that the session is on the wrong server or is
/// ending, so that the connection must never be used again: it would fail
/// the same way on every retry. A new connection goes through the whole
/// connection string again: every host of a multi-host URL with
/// `target_session_attrs=read-write`, or a fresh DNS lookup of a name that
/// moved to the new primary.
///
/// - 25006 read_only_sql_transaction: an old primary left up read-only
///   after a failover (`default_transaction_read_only`), or a standby
///   ("cannot execute ... during recovery").
/// - 57P01 admin_shutdown (also `pg_terminate_backend`, which failover
///   managers use), 57P02 crash_shutdown, 57P03 cannot_connect_now (starting
///   up, shutting down, in recovery).
/// - Class 08, connection exceptions.
///
/// A standby's "recovery is in progress" errors (from WAL functions) carry
/// 55000, which unrelated errors share, so they cannot be told apart by
/// code; the pool's check on checkout (`pg::pool`) turns such sessions away
/// instead, since every session of a standby is read-only.
pub fn session_unusable(code: &str) -> bool {
    matches!(code, "25006" | "57P01" | "57P02" | "57P03") || code.starts_with("08")
}

/// An error from writing to Postgres.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("postgres: {}", crate::pg::error_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("connection pool: {}", pool_text(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// No answer in time: a network black hole or a stuck server. The
    /// connection is dropped and the work retried.
    #[error("Postgres did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// deadpool's Display of a failed connection attempt is "Error occurred
/// while creating a new object: db error": the server's or the OS's words
/// are in the error it wraps.
fn pool_text(err: &deadpool_postgres::PoolError) -> String {
    use deadpool_postgres::{HookError, PoolError};
    match err {
        PoolError::Backend(e) | PoolError::PostCreateHook(HookError::Backend(e)) => {
            format!("cannot open a connection: {}", crate::pg::error_text(e))
        }
        other => other.to_string(),
    }
}

impl SinkError {
    /// The server's SQLSTATE, when the server answered with an error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            SinkError::Postgres(e) => e.code().map(|c| c.code()),
            SinkError::Pool(deadpool_postgres::PoolError::Backend(e)) => e.code().map(|c| c.code()),
            SinkError::Pool(_) | SinkError::Timeout(_) => None,
        }
    }

    /// The server's message, when the server answered with an error.
    fn message(&self) -> Option<&str> {
        let db = match self {
            SinkError::Postgres(e) => e.as_db_error(),
            SinkError::Pool(deadpool_postgres::PoolError::Backend(e)) => e.as_db_error(),
            SinkError::Pool(_) | SinkError::Timeout(_) => None,
        };
        db.map(|d| d.message())
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            SinkError::Pool(deadpool_postgres::PoolError::Closed) => ErrorClass::Fatal,
            // A closed connection ends any statement with a client-side error.
            SinkError::Postgres(e) if e.is_closed() => ErrorClass::Retry,
            _ => classify(self.sqlstate(), self.message()),
        }
    }

    /// A row that no partition of its partitioned target accepts
    /// ([`classify`]).
    pub fn missing_partition(&self) -> bool {
        self.sqlstate() == Some("23514") && self.message().is_some_and(is_missing_partition)
    }

    /// Whether the connection that saw this error must be dropped rather
    /// than returned to the pool: a client-side error or a timeout may have
    /// left it mid-protocol, and a server error may say the server is the
    /// wrong one ([`session_unusable`]).
    pub fn discards_connection(&self) -> bool {
        self.sqlstate().is_none_or(session_unusable)
    }

    /// Metrics label: the SQLSTATE class (two characters) or "connection".
    pub fn class_label(&self) -> String {
        match self.sqlstate() {
            Some(code) => code.chars().take(2).collect(),
            None => "connection".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        for code in [
            "08006", "40001", "40P01", "57P01", "57P03", "25006", "53300", "55P03",
        ] {
            assert_eq!(classify_sqlstate(Some(code)), ErrorClass::Retry, "{code}");
        }
        assert_eq!(classify_sqlstate(None), ErrorClass::Retry);
        for code in ["22001", "22P02", "23502", "23505", "23514", "23503"] {
            assert_eq!(
                classify_sqlstate(Some(code)),
                ErrorClass::DeadLetter,
                "{code}"
            );
        }
        for code in ["42P01", "42703", "42501", "XX000", "0A000", "2"] {
            assert_eq!(classify_sqlstate(Some(code)), ErrorClass::Fatal, "{code}");
        }
    }

    #[test]
    fn a_row_without_a_partition_is_retried_not_dead_lettered() {
        let missing = Some("no partition of relation \"events\" found for row");
        assert_eq!(classify(Some("23514"), missing), ErrorClass::Retry);
        // A CHECK constraint, a partition constraint of a partition written
        // directly, and the same text under another code stay as they were.
        for message in [
            "new row for relation \"checked\" violates check constraint \"non_negative\"",
            "new row for relation \"events_2026\" violates partition constraint",
        ] {
            assert_eq!(
                classify(Some("23514"), Some(message)),
                ErrorClass::DeadLetter
            );
        }
        assert_eq!(classify(Some("23514"), None), ErrorClass::DeadLetter);
        assert_eq!(classify(Some("42P01"), missing), ErrorClass::Fatal);
    }

    #[test]
    fn wrong_server_sessions_are_dropped_and_retried() {
        for code in [
            "25006", "57P01", "57P02", "57P03", "08006", "08001", "08P01",
        ] {
            assert!(session_unusable(code), "{code}");
            // Dropping the connection is only half of it: the batch is retried.
            assert_eq!(classify_sqlstate(Some(code)), ErrorClass::Retry, "{code}");
        }
        // The session itself is fine: keep it.
        for code in [
            "40001", "40P01", "55P03", "57014", "53300", "23505", "22P02", "42P01", "55000",
        ] {
            assert!(!session_unusable(code), "{code}");
        }
        assert!(SinkError::Timeout(std::time::Duration::from_secs(1)).discards_connection());
    }
}

//! What Postgres said, as one line for the user. tokio-postgres' Display
//! shows only an error's kind ("db error", "error connecting to server"),
//! deadpool's wraps that ("Error occurred while creating a new object"):
//! the server's message, SQLSTATE, detail and hint, or the OS error of a
//! refused connection, are in the fields and causes, and every error that
//! reaches a user goes through [`error_text`] to show them.

use std::error::Error as StdError;
use std::io;

use tokio_postgres::error::DbError;

/// `error` with what the server said (message, SQLSTATE, detail, hint) or
/// its causes (the OS error of a connection attempt): never bare kinds.
pub fn error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => server_said(db),
        None => chain(error),
    }
}

/// A server error: `message (SQLSTATE code): detail (hint: hint)`.
pub fn server_said(db: &DbError) -> String {
    said(db.message(), db.code().code(), db.detail(), db.hint())
}

fn said(message: &str, code: &str, detail: Option<&str>, hint: Option<&str>) -> String {
    let mut text = format!("{message} (SQLSTATE {code})");
    if let Some(detail) = detail.filter(|d| !d.is_empty()) {
        text.push_str(": ");
        text.push_str(detail);
    }
    if let Some(hint) = hint.filter(|h| !h.is_empty()) {
        text.push_str(" (hint: ");
        text.push_str(hint);
        text.push(')');
    }
    text
}

/// `error` and each of its causes, as one line.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        current = cause.source();
    }
    text
}

/// The OS error of a failed connection attempt (refused, unreachable,
/// timed out, a name that does not resolve), when that is what it was.
pub fn io_cause(error: &tokio_postgres::Error) -> Option<&io::Error> {
    let mut current = error.source();
    while let Some(cause) = current {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_shows_message_sqlstate_detail_and_hint() {
        assert_eq!(
            said(
                "invalid value for parameter \"statement_timeout\": \"2160000000\"",
                "22023",
                None,
                Some("Value exceeds integer range."),
            ),
            "invalid value for parameter \"statement_timeout\": \"2160000000\" (SQLSTATE 22023) \
             (hint: Value exceeds integer range.)"
        );
        assert_eq!(
            said(
                "duplicate key value violates unique constraint \"t_pkey\"",
                "23505",
                Some("Key (k)=(1) already exists."),
                None,
            ),
            "duplicate key value violates unique constraint \"t_pkey\" (SQLSTATE 23505): \
             Key (k)=(1) already exists."
        );
        assert_eq!(
            said("permission denied", "42501", Some(""), Some("")),
            "permission denied (SQLSTATE 42501)"
        );
    }

    #[test]
    fn a_client_side_error_shows_its_causes() {
        let error = "host=db port=x"
            .parse::<tokio_postgres::Config>()
            .expect_err("not a port");
        let text = error_text(&error);
        assert!(text.starts_with("invalid connection string: "), "{text}");
        assert!(text.len() > "invalid connection string: ".len(), "{text}");
        assert!(io_cause(&error).is_none());
    }

    #[tokio::test]
    async fn a_refused_connection_shows_the_os_error() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let Err(error) = format!("host=127.0.0.1 port={port} user=u connect_timeout=5")
            .parse::<tokio_postgres::Config>()
            .expect("valid")
            .connect(tokio_postgres::NoTls)
            .await
        else {
            panic!("nothing listens on {port}, yet it connected");
        };
        assert_eq!(
            io_cause(&error).map(io::Error::kind),
            Some(io::ErrorKind::ConnectionRefused)
        );
        let text = error_text(&error);
        assert!(
            text.starts_with("error connecting to server: Connection refused"),
            "{text}"
        );
    }
}

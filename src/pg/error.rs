//! What can go wrong setting up Postgres connections, each led by the
//! config field to change when its message does not name one itself.

use super::error_text;
use crate::sink::error::{classify_sqlstate, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum PgSetupError {
    #[error("postgres.url {url} is not a valid connection string: {}", error_text(.source))]
    Url {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error("postgres.url {url} is not a valid connection string: {message}")]
    Conninfo { url: String, message: String },
    /// A TLS setting or file that cannot be used; the message names both.
    #[error("{0}")]
    Tls(String),
    /// A connection attempt failed; `detail` says why in the user's terms.
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("cannot build the connection pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
    /// The server refused a setting sluice sends (`SET LOCAL`) at the
    /// start of every batch transaction; `field` is the config field it
    /// comes from, `detail` what the server said.
    #[error("the server refuses `{statement}`: {detail}")]
    Setting {
        field: &'static str,
        statement: String,
        detail: String,
    },
    /// Start-up's migration of sluice's own schema (`auto_migrate`) was
    /// refused by the server in a way no retry changes.
    #[error("migrating sluice's schema {schema} failed: {detail}")]
    Migrate { schema: String, detail: String },
}

/// `error` from start-up's migration as a set-up error, when the server
/// refused it for good (a permission, a conflicting object); `None` for
/// what a retry may fix (a lost connection, a server restarting).
pub fn migration_refused(error: &tokio_postgres::Error, schema: &str) -> Option<PgSetupError> {
    let code = error.code()?.code();
    if classify_sqlstate(Some(code)) == ErrorClass::Retry {
        return None;
    }
    let mut detail = error_text(error);
    if code == "42501" {
        detail.push_str(
            "; grant the role CREATE on the database, or run `sluice migrate` as a role that has it \
             and set postgres.auto_migrate: false",
        );
    }
    Some(PgSetupError::Migrate {
        schema: schema.to_owned(),
        detail,
    })
}

impl PgSetupError {
    /// The config field to change, when the message does not begin with
    /// it (the TLS and connection string ones name their own settings).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            PgSetupError::Connect { .. } => Some("postgres.url"),
            PgSetupError::Setting { field, .. } => Some(field),
            PgSetupError::Migrate { .. } => Some("postgres.auto_migrate"),
            PgSetupError::Url { .. }
            | PgSetupError::Conninfo { .. }
            | PgSetupError::Tls(_)
            | PgSetupError::Pool(_) => None,
        }
    }

    /// The message led by the field it is about: `postgres.url: cannot
    /// connect to ...` (how `run` and `migrate` print it; `check` lists the
    /// field apart).
    pub fn attributed(&self) -> String {
        match self.field() {
            Some(field) => format!("{field}: {self}"),
            None => self.to_string(),
        }
    }
}

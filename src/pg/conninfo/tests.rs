use super::*;

fn ok(conninfo: &str) -> Split {
    split(conninfo).unwrap_or_else(|e| panic!("{conninfo}: {e}"))
}

#[test]
fn the_psql_url_of_the_issue_splits_and_the_rest_parses() {
    let url = "postgres://user@db:5432/app?sslmode=verify-full&sslrootcert=/etc/ssl/ca.crt";
    let split = ok(url);
    assert_eq!(split.rest, "postgres://user@db:5432/app");
    assert_eq!(split.ssl.sslmode, Some(PgSslMode::VerifyFull));
    assert_eq!(split.ssl.sslrootcert.as_deref(), Some("/etc/ssl/ca.crt"));
    let pg: tokio_postgres::Config = split.rest.parse().expect("tokio-postgres parses the rest");
    assert_eq!(pg.get_dbname(), Some("app"));
}

#[test]
fn url_values_are_percent_decoded_and_other_params_kept_verbatim() {
    let split = ok(
        "postgresql://u:p%40ss@h1:5432,h2:5433/app?application_name=a%20b&sslcert=/my%20certs/c.crt\
         &sslkey=%2Fk.key&target_session_attrs=read-write&sslsni=0&ssl_max_protocol_version=TLSv1.2",
    );
    assert_eq!(
        split.rest,
        "postgresql://u:p%40ss@h1:5432,h2:5433/app?application_name=a%20b&target_session_attrs=read-write"
    );
    assert_eq!(split.ssl.sslcert.as_deref(), Some("/my certs/c.crt"));
    assert_eq!(split.ssl.sslkey.as_deref(), Some("/k.key"));
    assert_eq!(split.ssl.sslsni, Some(false));
    assert_eq!(split.ssl.ssl_max_protocol_version, Some(TlsVersion::V1_2));
    // A percent-encoded key is still recognised (libpq decodes keys too).
    assert_eq!(
        ok("postgres://h/db?%73slmode=require").ssl.sslmode,
        Some(PgSslMode::Require)
    );
    // '+' is a plus sign, not a space (libpq is not a form decoder).
    assert_eq!(
        ok("postgres://h/db?sslrootcert=/a+b")
            .ssl
            .sslrootcert
            .as_deref(),
        Some("/a+b")
    );
}

#[test]
fn bad_percent_encoding_in_an_ssl_value_is_an_error() {
    for url in [
        "postgres://h/db?sslrootcert=/a%2",
        "postgres://h/db?sslrootcert=/a%zz",
        "postgres://h/db?sslrootcert=/a%00b",
    ] {
        let e = split(url).expect_err(url);
        assert!(e.0.starts_with("sslrootcert: "), "{url}: {e}");
    }
}

#[test]
fn a_question_mark_in_the_password_does_not_start_the_query() {
    let split = ok("postgres://u:pa?ss@db/app?sslmode=require");
    assert_eq!(split.rest, "postgres://u:pa?ss@db/app");
    assert_eq!(split.ssl.sslmode, Some(PgSslMode::Require));
    // No query at all, and a query of SSL parameters only.
    assert_eq!(ok("postgres://db/app").rest, "postgres://db/app");
    assert_eq!(
        ok("postgres://db/app?sslmode=disable").rest,
        "postgres://db/app"
    );
}

#[test]
fn jdbc_ssl_true_means_require_in_urls_only() {
    assert_eq!(
        ok("postgres://db/app?ssl=true").ssl.sslmode,
        Some(PgSslMode::Require)
    );
    assert!(split("postgres://db/app?ssl=false").is_err());
    // In key/value form `ssl` is no libpq keyword: tokio-postgres refuses it.
    assert_eq!(ok("host=db ssl=true").rest, "host=db ssl=true");
}

#[test]
fn keyword_form_follows_libpq_quoting() {
    let split = ok(
        "host=db  port = 5433 sslmode='verify-full' sslrootcert='/etc/my certs/ca.crt' \
         password='it\\'s \\\\ secret' sslcert=/c\\ d.crt sslkey=''  dbname=app",
    );
    assert_eq!(split.ssl.sslmode, Some(PgSslMode::VerifyFull));
    assert_eq!(
        split.ssl.sslrootcert.as_deref(),
        Some("/etc/my certs/ca.crt")
    );
    assert_eq!(split.ssl.sslcert.as_deref(), Some("/c d.crt"));
    // Empty is the same as unset.
    assert_eq!(split.ssl.sslkey, None);
    assert_eq!(
        split.rest,
        "host=db port = 5433 password='it\\'s \\\\ secret' dbname=app"
    );
    let pg: tokio_postgres::Config = split.rest.parse().expect("tokio-postgres parses the rest");
    assert_eq!(pg.get_password(), Some(&b"it's \\ secret"[..]));
    assert_eq!(pg.get_ports(), [5433]);
}

#[test]
fn keyword_form_errors_name_the_problem_not_the_value() {
    let e = split("host=db sslmode").expect_err("no =");
    assert!(
        e.0.contains("setting 2 of the connection string has no \"=\""),
        "{e}"
    );
    let e = split("host=db password=two words").expect_err("unquoted space");
    assert!(!e.0.contains("words"), "{e}");
    let e = split("host=db password='secret").expect_err("unterminated");
    assert!(
        e.0.contains("unterminated") && !e.0.contains("secret"),
        "{e}"
    );
}

#[test]
fn later_settings_win_as_in_libpq() {
    let split = ok("sslmode=disable host=db sslmode=verify-ca");
    assert_eq!(split.ssl.sslmode, Some(PgSslMode::VerifyCa));
    assert_eq!(split.rest, "host=db");
}

#[test]
fn invalid_and_unsupported_parameters_are_refused_clearly() {
    for (conninfo, needle) in [
        (
            "postgres://db/app?sslmode=verify_full",
            "invalid sslmode \"verify_full\"",
        ),
        ("sslmode=VERIFY-FULL host=db", "invalid sslmode"),
        ("postgres://db/app?sslcrl=/crl.pem", "revocation"),
        ("postgres://db/app?gssencmode=require", "GSSAPI"),
        ("postgres://db/app?sslcertmode=require", "sslcertmode"),
        ("postgres://db/app?sslsni=yes", "sslsni"),
        (
            "postgres://db/app?ssl_min_protocol_version=SSLv3",
            "ssl_min_protocol_version",
        ),
    ] {
        let e = split(conninfo).expect_err(conninfo);
        assert!(e.0.contains(needle), "{conninfo}: {e}");
    }
    // Accepted without effect, as libpq (sluice has no GSSAPI, compression is off).
    let split = ok("postgres://db/app?gssencmode=disable&sslcompression=0&sslcertmode=allow");
    assert_eq!(split.rest, "postgres://db/app");
}

#[test]
fn sslpassword_is_noted_never_kept() {
    let split = ok("postgres://db/app?sslpassword=hunter2");
    assert!(split.ssl.sslpassword);
    assert!(!format!("{split:?}").contains("hunter2"));
}

#[test]
fn a_broken_sslpassword_is_not_quoted() {
    let e = split("postgres://u@db/app?sslpassword=50%off").expect_err("invalid percent-encoding");
    assert!(e.to_string().contains("sslpassword"), "{e}");
    assert!(!e.to_string().contains("50%off"), "{e}");
}

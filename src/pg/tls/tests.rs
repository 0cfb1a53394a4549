//! Which setting wins and what each mode verifies.

use std::collections::HashMap;

use super::*;
use crate::pg::conninfo::split;
use crate::pg::test_pki::Pki;

fn params(url: &str) -> SslParams {
    split(url).expect("valid").ssl
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn typed(mode: Option<PgSslMode>, ca: Option<&str>) -> PostgresSsl {
    PostgresSsl {
        mode,
        ca_file: ca.map(PathBuf::from),
        ..PostgresSsl::default()
    }
}

fn root_of(settings: &Settings) -> Option<(PathBuf, Origin)> {
    match &settings.root {
        Some(Root::File(named)) => Some((named.path.clone(), named.origin)),
        _ => None,
    }
}

#[test]
fn the_string_then_typed_fields_then_environment_then_libpq_defaults() {
    let home = Path::new("/home/s");
    let all = env(&[("PGSSLROOTCERT", "/e.crt"), ("PGSSLMODE", "require")]);
    let t = typed(Some(PgSslMode::VerifyCa), Some("/t.crt"));
    let resolve = |url: &str, typed: Option<&PostgresSsl>, env: &dyn Fn(&str) -> Option<String>| {
        Settings::resolve(&params(url), typed, env, Some(home)).expect("resolves")
    };
    let s = resolve(
        "postgres://db/app?sslrootcert=/u.crt&sslmode=verify-full",
        Some(&t),
        &all,
    );
    assert_eq!(root_of(&s), Some(("/u.crt".into(), Origin::Url)));
    assert_eq!(s.mode, PgSslMode::VerifyFull);
    let s = resolve("postgres://db/app", Some(&t), &all);
    assert_eq!(root_of(&s), Some(("/t.crt".into(), Origin::Config)));
    assert_eq!(s.mode, PgSslMode::VerifyCa);
    let s = resolve("postgres://db/app", None, &all);
    assert_eq!(root_of(&s), Some(("/e.crt".into(), Origin::Env)));
    assert_eq!(s.mode, PgSslMode::Require);
    let s = resolve("postgres://db/app", None, &env(&[]));
    assert_eq!(
        root_of(&s),
        Some(("/home/s/.postgresql/root.crt".into(), Origin::Default))
    );
    assert_eq!(s.mode, PgSslMode::Prefer, "libpq's default");
    let cert = s.cert.expect("default cert");
    assert_eq!(cert.path, Path::new("/home/s/.postgresql/postgresql.crt"));
    assert_eq!(
        s.key.expect("default key").path,
        Path::new("/home/s/.postgresql/postgresql.key")
    );
    // An empty variable is unset, as for libpq.
    let s = resolve("postgres://db/app", None, &env(&[("PGSSLMODE", "")]));
    assert_eq!(s.mode, PgSslMode::Prefer);
    // No home directory: no default files.
    let s = Settings::resolve(&params("postgres://db/app"), None, &env(&[]), None).unwrap();
    assert_eq!((s.root, s.cert, s.key), (None, None, None));
}

#[test]
fn messages_name_where_a_file_came_from() {
    let s = Settings::resolve(
        &params("postgres://db/app"),
        None,
        &env(&[("PGSSLROOTCERT", "/e.crt")]),
        None,
    )
    .unwrap();
    assert_eq!(
        s.root.expect("root").describe(),
        "in /e.crt (postgres.ssl.ca_file / sslrootcert; here from PGSSLROOTCERT)"
    );
}

#[test]
fn sslrootcert_system_implies_and_requires_verify_full() {
    let none = env(&[]);
    let s = Settings::resolve(
        &params("postgres://db/app?sslrootcert=system"),
        None,
        &none,
        None,
    )
    .unwrap();
    assert_eq!(
        (s.mode, s.root),
        (PgSslMode::VerifyFull, Some(Root::System))
    );
    let s = Settings::resolve(
        &params("postgres://db/app"),
        None,
        &env(&[("PGSSLROOTCERT", "system")]),
        None,
    )
    .unwrap();
    assert_eq!(s.mode, PgSslMode::VerifyFull);
    for mode in ["disable", "prefer", "require", "verify-ca"] {
        let url = format!("postgres://db/app?sslrootcert=system&sslmode={mode}");
        let e = Settings::resolve(&params(&url), None, &none, None).expect_err(mode);
        assert!(
            e.contains(&format!(
                "sslmode {mode} cannot be used with sslrootcert=system"
            )),
            "{e}"
        );
    }
    let e = Settings::resolve(
        &params("postgres://db/app"),
        None,
        &env(&[("PGSSLMODE", "full")]),
        None,
    )
    .expect_err("bad PGSSLMODE");
    assert!(e.contains("PGSSLMODE=\"full\""), "{e}");
}

#[test]
fn protocol_versions_rustls_cannot_speak_are_refused() {
    let none = env(&[]);
    let resolve = |url: &str| Settings::resolve(&params(url), None, &none, None);
    assert!(resolve("postgres://db/a?ssl_max_protocol_version=TLSv1.1").is_err());
    assert!(resolve(
        "postgres://db/a?ssl_min_protocol_version=TLSv1.3&ssl_max_protocol_version=TLSv1.2"
    )
    .is_err());
    let s = resolve("postgres://db/a?ssl_min_protocol_version=TLSv1").unwrap();
    assert!(
        load(s).is_ok(),
        "a lower minimum is no constraint: rustls speaks 1.2 and 1.3"
    );
}

fn settings_for(url: &str, home: Option<&Path>) -> Settings {
    Settings::resolve(&params(url), None, &env(&[]), home).expect("resolves")
}

#[test]
fn what_each_mode_verifies() {
    let pki = Pki::new();
    let ca = pki.path("ca.crt");
    let empty_home = tempfile::tempdir().unwrap();
    let home = Some(empty_home.path());
    let mode_of = |url: &str| load(settings_for(url, home)).map(|t| t.verification);
    assert_eq!(
        mode_of("postgres://db/a"),
        Ok(Verification::None),
        "prefer, no CA"
    );
    assert_eq!(
        mode_of("postgres://db/a?sslmode=require"),
        Ok(Verification::None)
    );
    let with_ca = |mode: &str| {
        format!(
            "postgres://db/a?sslmode={mode}&sslrootcert={}",
            ca.display()
        )
    };
    // libpq: require (and prefer) with a root certificate file verify the chain.
    assert_eq!(mode_of(&with_ca("require")), Ok(Verification::Chain));
    assert_eq!(mode_of(&with_ca("prefer")), Ok(Verification::Chain));
    assert_eq!(mode_of(&with_ca("verify-ca")), Ok(Verification::Chain));
    assert_eq!(mode_of(&with_ca("verify-full")), Ok(Verification::Full));
    let e = mode_of("postgres://db/a?sslmode=verify-ca").expect_err("no CA anywhere");
    assert!(
        e.contains("sslmode verify-ca needs the CA certificate"),
        "{e}"
    );
    // A root file that does not exist is no root file under require (libpq)...
    assert_eq!(
        mode_of("postgres://db/a?sslmode=require&sslrootcert=/nonexistent.crt"),
        Ok(Verification::None)
    );
    // ...but an error under verify-*.
    let e =
        mode_of("postgres://db/a?sslmode=verify-full&sslrootcert=/nonexistent.crt").unwrap_err();
    assert!(e.contains("/nonexistent.crt does not exist"), "{e}");
    // libpq's default ~/.postgresql/root.crt counts when it exists.
    let dot = empty_home.path().join(".postgresql");
    std::fs::create_dir(&dot).unwrap();
    std::fs::copy(&ca, dot.join("root.crt")).unwrap();
    assert_eq!(
        mode_of("postgres://db/a?sslmode=require"),
        Ok(Verification::Chain)
    );
    // disable reads nothing, not even a typed file that is missing.
    let s = Settings::resolve(
        &params("postgres://db/a?sslmode=disable"),
        Some(&typed(None, Some("/nonexistent.crt"))),
        &env(&[]),
        None,
    )
    .unwrap();
    assert!(load(s).is_ok());
    assert_eq!(
        tokio_mode(PgSslMode::Allow),
        tokio_postgres::config::SslMode::Prefer
    );
    assert_eq!(
        tokio_mode(PgSslMode::VerifyFull),
        tokio_postgres::config::SslMode::Require
    );
}

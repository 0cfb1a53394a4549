//! libpq's rules for the client certificate and key files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use crate::config::PostgresSsl;
use crate::pg::conninfo::split;
use crate::pg::test_pki::Pki;
use crate::pg::tls::{load, Settings};

fn settings_for(url: &str, home: Option<&Path>) -> Settings {
    let params = split(url).expect("valid").ssl;
    Settings::resolve(&params, None, &|_| None, home).expect("resolves")
}

#[test]
fn client_keys_follow_libpqs_rules() {
    let pki = Pki::new();
    let url = |key: &Path| {
        format!(
            "postgres://db/a?sslcert={}&sslkey={}",
            pki.path("client.crt").display(),
            key.display()
        )
    };
    let key = pki.path("client.key");
    assert!(load(settings_for(&url(&key), None)).is_ok());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load(settings_for(&url(&key), None))
        .err()
        .expect("world-readable key");
    assert!(
        e.contains("has group or world access (mode 644)") && e.contains("0600"),
        "{e}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    pki.openssl(&[
        "pkey",
        "-in",
        "client.key",
        "-aes256",
        "-passout",
        "pass:pw",
        "-out",
        "enc.key",
    ]);
    let enc = pki.path("enc.key");
    std::fs::set_permissions(&enc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = load(settings_for(&format!("{}&sslpassword=pw", url(&enc)), None))
        .err()
        .expect("encrypted");
    assert!(
        e.contains("is encrypted") && e.contains("sslpassword is not supported"),
        "{e}"
    );
    assert!(!e.contains("pw "), "{e}");

    let e = load(settings_for(&url(&pki.path("missing.key")), None))
        .err()
        .expect("no key");
    assert!(e.contains("not its private key"), "{e}");
    let e = load(settings_for(&url(&pki.path("san.key")), None))
        .err()
        .expect("other key");
    assert!(e.contains("does not belong to the certificate"), "{e}");

    // libpq: a certificate file that does not exist means no client
    // certificate; a typed cert_file must exist.
    let missing = "postgres://db/a?sslcert=/nonexistent.crt";
    assert!(load(settings_for(missing, None)).is_ok());
    let typed_missing = PostgresSsl {
        cert_file: Some("/nonexistent.crt".into()),
        ..PostgresSsl::default()
    };
    let params = split("postgres://db/a").unwrap().ssl;
    let s = Settings::resolve(&params, Some(&typed_missing), &|_| None, None).unwrap();
    let e = load(s).err().expect("typed file missing");
    assert!(
        e.starts_with("postgres.ssl.cert_file / sslcert: /nonexistent.crt does not exist"),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn root_owned_keys_may_be_group_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    std::fs::write(&path, "").unwrap();
    let check = |mode: u32| {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        check_key_permissions(&std::fs::metadata(&path).unwrap())
    };
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&path).unwrap()) == 0;
    assert_eq!(check(0o600), Ok(()));
    assert_eq!(check(0o400), Ok(()));
    assert_eq!(check(0o640).is_ok(), root);
    assert_eq!(check(0o660), Err(0o660));
    assert_eq!(check(0o604), Err(0o604));
}

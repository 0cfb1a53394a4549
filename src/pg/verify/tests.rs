//! What `verify-ca` and `verify-full` accept, libpq's name rules included.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;

use super::{CertFailure, Webpki};
use crate::pg::test_pki::Pki;

fn verify(verifier: &Webpki, cert: &CertificateDer<'_>, host: &str) -> Result<(), CertFailure> {
    let name = ServerName::try_from(host.to_owned()).unwrap();
    match verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now()) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            Err(other
                .0
                .downcast_ref::<CertFailure>()
                .expect("a CertFailure")
                .clone())
        }
        Err(other) => panic!("unexpected {other}"),
    }
}

#[test]
fn verify_full_checks_names_with_libpqs_common_name_fallback() {
    let pki = Pki::new();
    let full = pki.verifier("ca", true);
    assert!(verify(&full, &pki.der("san"), "localhost").is_ok());
    let wrong =
        verify(&full, &pki.der("san"), "127.0.0.1").expect_err("no IP SAN, CN is localhost");
    assert_eq!(wrong.host, "127.0.0.1");
    // No subject alternative names: libpq (and sluice) read the CN, which
    // rustls alone never does.
    let mut roots = RootCertStore::empty();
    roots.add(pki.der("ca")).unwrap();
    let plain = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let name = ServerName::try_from("db.example.com").unwrap();
    assert!(plain
        .verify_server_cert(&pki.der("cn_only"), &[], &name, &[], UnixTime::now())
        .is_err());
    assert!(verify(&full, &pki.der("cn_only"), "db.example.com").is_ok());
    assert!(verify(&full, &pki.der("cn_only"), "DB.example.COM").is_ok());
    assert!(verify(&full, &pki.der("cn_only"), "other.example.com").is_err());
    assert!(verify(&full, &pki.der("cn_ip"), "127.0.0.1").is_ok());
    assert!(verify(&full, &pki.der("san"), "LOCALHOST").is_ok());
    // Only an alternative name of the host's kind rules the CN out: with
    // DNS names alone, an address is still matched by the CN (psql 15
    // accepts this certificate for 127.0.0.1 too), a name is not.
    assert!(verify(&full, &pki.der("dns_san_cn_ip"), "127.0.0.1").is_ok());
    assert!(verify(&full, &pki.der("dns_san_cn_ip"), "localhost").is_ok());
    assert!(verify(&full, &pki.der("cn_only"), "127.0.0.1").is_err());
}

#[test]
fn verify_ca_checks_the_chain_but_not_the_name() {
    let pki = Pki::new();
    let chain = pki.verifier("ca", false);
    assert!(verify(&chain, &pki.der("san"), "127.0.0.1").is_ok());
    assert!(verify(&chain, &pki.der("cn_only"), "anything.invalid").is_ok());
    let foreign = pki.verifier("other", false);
    let e = verify(&foreign, &pki.der("san"), "localhost").expect_err("wrong CA");
    assert!(
        matches!(e.error, rustls::CertificateError::UnknownIssuer),
        "{e}"
    );
    assert_eq!(e.host, "localhost");
}

//! The files libpq's TLS settings name, read as libpq reads them: CA
//! certificates (a file, or the system store), the client certificate, and
//! its private key (whose permissions libpq checks, and which must not be
//! encrypted: sluice cannot decrypt keys).

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use tracing::warn;

use super::tls::{Named, Origin, Settings};

/// libpq's `stat() == 0`.
pub(super) fn exists(path: &Path) -> bool {
    std::fs::metadata(path).is_ok()
}

pub(super) fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "sslrootcert=system: the system trust store holds no CA certificate (install ca-certificates, or point SSL_CERT_FILE at a PEM bundle){}",
            if errors.is_empty() { String::new() } else { format!(": {}", errors.join("; ")) }
        ));
    }
    Ok(store)
}

fn certificates(named: &Named) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(&named.path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "{}: cannot read {}: {e}",
                named.settings(),
                named.path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{}: {} holds no PEM certificate",
            named.settings(),
            named.path.display()
        ));
    }
    Ok(certs)
}

pub(super) fn file_roots(named: &Named) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let (_, unusable) = store.add_parsable_certificates(certificates(named)?);
    if store.is_empty() {
        return Err(format!(
            "{}: none of the {unusable} certificate(s) in {} is a usable CA certificate",
            named.settings(),
            named.path.display()
        ));
    }
    Ok(store)
}

pub(super) type Identity = (Named, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The client certificate and key, when libpq would send one: the
/// certificate file exists (one that `postgres.ssl.cert_file` names must).
pub(super) fn client_identity(settings: &Settings) -> Result<Option<Identity>, String> {
    let Some(cert) = &settings.cert else {
        return Ok(None);
    };
    if !exists(&cert.path) {
        return match cert.origin {
            Origin::Config => Err(format!(
                "{}: {} does not exist",
                cert.settings(),
                cert.path.display()
            )),
            Origin::Default => Ok(None),
            Origin::Url | Origin::Env => {
                warn!(file = %cert.path.display(), "sslcert names no file; connecting without a client certificate (libpq does the same)");
                Ok(None)
            }
        };
    }
    let chain = certificates(cert)?;
    let Some(key) = &settings.key else {
        return Err(format!(
            "{}: the client certificate {} has no private key; set postgres.ssl.key_file / sslkey",
            cert.settings(),
            cert.path.display()
        ));
    };
    Ok(Some((
        cert.clone(),
        chain,
        private_key(key, settings.sslpassword)?,
    )))
}

fn private_key(key: &Named, sslpassword: bool) -> Result<PrivateKeyDer<'static>, String> {
    let (settings, path) = (key.settings(), key.path.display());
    let meta = std::fs::metadata(&key.path).map_err(|e| {
        format!(
            "{settings}: the client certificate is present, but not its private key {path}: {e}"
        )
    })?;
    check_key_permissions(&meta).map_err(|mode| {
        format!(
            "{settings}: the private key file {path} has group or world access (mode {mode:o}); \
             make it u=rw (0600) or less, or u=rw,g=r (0640) or less if owned by root (libpq refuses it too)"
        )
    })?;
    let text =
        std::fs::read(&key.path).map_err(|e| format!("{settings}: cannot read {path}: {e}"))?;
    let encrypted = [
        b"ENCRYPTED PRIVATE KEY".as_slice(),
        b"Proc-Type: 4,ENCRYPTED",
    ]
    .iter()
    .any(|marker| text.windows(marker.len()).any(|w| w == *marker));
    if encrypted {
        return Err(format!(
            "{settings}: the private key in {path} is encrypted, and sluice cannot decrypt keys{}; \
             write an unencrypted copy (`openssl pkey -in {path} -out client.key`, mode 0600) and name that",
            if sslpassword { " (sslpassword is not supported)" } else { "" }
        ));
    }
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| format!("{settings}: no usable PEM private key in {path}: {e}"))
}

/// libpq's rule: a key owned by root may be u=rw,g=r; any other key only
/// u=rw. `Err` holds the offending mode.
#[cfg(unix)]
pub(super) fn check_key_permissions(meta: &std::fs::Metadata) -> Result<(), u32> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode() & 0o777;
    let forbidden = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if mode & forbidden == 0 {
        Ok(())
    } else {
        Err(mode)
    }
}

#[cfg(not(unix))]
pub(super) fn check_key_permissions(_: &std::fs::Metadata) -> Result<(), u32> {
    Ok(())
}

#[cfg(test)]
mod tests;

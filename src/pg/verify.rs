//! rustls certificate verifiers for libpq's modes: [`AcceptAny`] for
//! `prefer`/`require` without a CA (libpq checks nothing then, and neither
//! does sluice, but the handshake's signatures are still checked), and
//! [`Webpki`] for a chain check (`verify-ca`, or a CA file with
//! `prefer`/`require`) or a chain and name check (`verify-full`, with
//! libpq's Common Name fallback from [`super::names`]). A failed check
//! carries the host it was made for ([`CertFailure`]), so a multi-host URL
//! still says which server's certificate was wrong.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
};

/// A certificate check that failed, and for which host.
#[derive(Debug, Clone)]
pub struct CertFailure {
    /// The host name or address sluice connected to.
    pub host: String,
    pub error: CertificateError,
}

impl fmt::Display for CertFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the certificate of {} failed verification: {}",
            self.host, self.error
        )
    }
}

impl std::error::Error for CertFailure {}

fn failure(server_name: &ServerName<'_>, error: CertificateError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(CertFailure {
        host: server_name.to_str().into_owned(),
        error,
    }))))
}

/// Accepts any certificate: what libpq's `prefer` and `require` check
/// when no root certificate file exists.
#[derive(Debug)]
pub struct AcceptAny(Arc<CryptoProvider>);

impl AcceptAny {
    pub fn new(provider: Arc<CryptoProvider>) -> AcceptAny {
        AcceptAny(provider)
    }
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The chain must lead to one of the roots; with `check_name`, the
/// certificate must also name the host (by rustls' rules or libpq's).
#[derive(Debug)]
pub struct Webpki {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl Webpki {
    pub fn new(
        roots: RootCertStore,
        provider: Arc<CryptoProvider>,
        check_name: bool,
    ) -> Result<Webpki, String> {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("cannot use the CA certificates: {e}"))?;
        Ok(Webpki { inner, check_name })
    }
}

fn is_name_error(error: &CertificateError) -> bool {
    matches!(
        error,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
    )
}

impl ServerCertVerifier for Webpki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // rustls checks the chain (and validity, usage) before the name, so
        // a name error means everything else passed.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(Error::InvalidCertificate(error)) if is_name_error(&error) => {
                if !self.check_name || super::names::libpq_accepts(end_entity, server_name) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(failure(server_name, error))
                }
            }
            Err(Error::InvalidCertificate(error)) => Err(failure(server_name, error)),
            Err(other) => Err(other),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests;

//! The `kafka.security` section: TLS and SASL to the brokers, as typed
//! settings (src/kafka/security.rs turns them into librdkafka's), and their
//! validation. Secrets (`password`, `key_password`, `client_secret`) are
//! [`Secret`]s: `${VAR}` in the file, *** in every Debug and error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Problem, Secret};

/// How sluice connects to the brokers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecurity {
    /// `plaintext`, `ssl` (TLS), `sasl_plaintext` (SASL without TLS: the
    /// credentials of PLAIN cross the network readable) or `sasl_ssl` (SASL
    /// over TLS, what managed clusters use). librdkafka's
    /// `security.protocol`. Required.
    pub protocol: SecurityProtocol,
    /// SASL authentication; required by the `sasl_*` protocols, refused by
    /// the others. Default: absent.
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// TLS settings for the `ssl` and `sasl_ssl` protocols. Default: absent
    /// (the system's CA certificates, host names verified, no client
    /// certificate).
    #[serde(default)]
    pub ssl: Option<SslConfig>,
}

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// The value librdkafka expects.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// The `kafka.security.sasl` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` or `GSSAPI`
    /// (Kerberos; its `sasl.kerberos.*` settings go under
    /// `kafka.librdkafka`). librdkafka's `sasl.mechanism`. Required.
    pub mechanism: SaslMechanism,
    /// The user name (PLAIN and SCRAM; for Confluent Cloud the API key).
    /// Default: absent.
    #[serde(default)]
    pub username: Option<String>,
    /// The password (PLAIN and SCRAM; for Confluent Cloud the API secret).
    /// Write it as `${VAR}`; it is never logged. Default: absent.
    #[serde(default)]
    pub password: Option<Secret>,
    /// OAUTHBEARER through librdkafka's built-in OIDC client-credentials
    /// flow: sluice fetches and refreshes its token from the identity
    /// provider itself. Required with `OAUTHBEARER`. Default: absent.
    #[serde(default)]
    pub oauthbearer: Option<OauthBearerConfig>,
}

/// The SASL mechanism (spelled as Kafka spells it; lower case accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
    #[serde(rename = "OAUTHBEARER", alias = "oauthbearer")]
    OauthBearer,
    #[serde(rename = "GSSAPI", alias = "gssapi")]
    Gssapi,
}

impl SaslMechanism {
    /// The value librdkafka expects.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OauthBearer => "OAUTHBEARER",
            SaslMechanism::Gssapi => "GSSAPI",
        }
    }

    fn takes_password(self) -> bool {
        matches!(
            self,
            SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512
        )
    }
}

/// The `kafka.security.sasl.oauthbearer` section (OIDC client credentials).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OauthBearerConfig {
    /// The identity provider's token endpoint, an `https://` URL.
    /// librdkafka's `sasl.oauthbearer.token.endpoint.url`. Required.
    pub token_endpoint_url: String,
    /// The client id registered with the identity provider. Required.
    pub client_id: String,
    /// The client's secret; write it as `${VAR}`. Required.
    pub client_secret: Secret,
    /// The scope to request (space-separated). Default: absent.
    #[serde(default)]
    pub scope: Option<String>,
    /// SASL extensions sent with the token, e.g. Confluent Cloud's
    /// `logicalCluster` and `identityPoolId`. Default: empty.
    #[serde(default)]
    pub extensions: BTreeMap<String, String>,
}

/// The `kafka.security.ssl` section. Files are PEM.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SslConfig {
    /// The CA certificate(s) the brokers' certificates must chain to.
    /// librdkafka's `ssl.ca.location`. Default: absent (the system's CA
    /// store, which signs the certificates of managed clusters).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// sluice's client certificate, for brokers that require mutual TLS
    /// (with `key_file`). Default: absent.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file`. Default: absent.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The password of an encrypted `key_file`; write it as `${VAR}`.
    /// Default: absent.
    #[serde(default)]
    pub key_password: Option<Secret>,
    /// Check that each broker's certificate names the host sluice connects
    /// to (librdkafka's `ssl.endpoint.identification.algorithm=https`).
    /// Turn off only for brokers whose certificates do not carry their
    /// names; the chain is still verified. Default: `true`.
    #[serde(default = "verify_hostname_default")]
    pub verify_hostname: bool,
}

fn verify_hostname_default() -> bool {
    true
}

/// No files, host names verified: what an absent `ssl` section means.
impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password: None,
            verify_hostname: verify_hostname_default(),
        }
    }
}

/// Every problem of `kafka.security`, with its path and fix.
pub(crate) fn validate(security: &KafkaSecurity, problems: &mut Vec<Problem>) {
    let mut add = |path: &str, message: String| {
        problems.push(Problem {
            path: format!("kafka.security.{path}"),
            message,
        })
    };
    let protocol = security.protocol;
    match (&security.sasl, protocol.uses_sasl()) {
        (None, true) => add(
            "sasl",
            format!(
                "is required by protocol {}; add sasl: {{ mechanism: SCRAM-SHA-512, username: ..., password: \"${{KAFKA_PASSWORD}}\" }}",
                protocol.as_librdkafka()
            ),
        ),
        (Some(_), false) => add(
            "sasl",
            format!(
                "is set but protocol {} does not authenticate; use protocol: {}",
                protocol.as_librdkafka(),
                if protocol.uses_tls() { "sasl_ssl" } else { "sasl_plaintext" }
            ),
        ),
        _ => {}
    }
    if security.ssl.is_some() && !protocol.uses_tls() {
        add(
            "ssl",
            format!(
                "is set but protocol {} does not use TLS; use protocol: {}",
                protocol.as_librdkafka(),
                if protocol.uses_sasl() {
                    "sasl_ssl"
                } else {
                    "ssl"
                }
            ),
        );
    }
    if let Some(sasl) = &security.sasl {
        let mechanism = sasl.mechanism.as_librdkafka();
        if sasl.mechanism.takes_password() {
            if sasl.username.as_deref().is_none_or(|u| u.trim().is_empty()) {
                add(
                    "sasl.username",
                    format!("is required by mechanism {mechanism}"),
                );
            }
            if sasl.password.as_ref().is_none_or(|p| p.expose().is_empty()) {
                add(
                    "sasl.password",
                    format!(
                        "is required by mechanism {mechanism}; write it as \"${{KAFKA_PASSWORD}}\" and set the variable"
                    ),
                );
            }
        } else {
            for (field, set) in [
                ("username", sasl.username.is_some()),
                ("password", sasl.password.is_some()),
            ] {
                if set {
                    add(
                        &format!("sasl.{field}"),
                        format!("is not used by mechanism {mechanism}; remove it"),
                    );
                }
            }
        }
        match (&sasl.oauthbearer, sasl.mechanism) {
            (None, SaslMechanism::OauthBearer) => add(
                "sasl.oauthbearer",
                "is required by mechanism OAUTHBEARER: token_endpoint_url, client_id and client_secret".into(),
            ),
            (Some(_), m) if m != SaslMechanism::OauthBearer => add(
                "sasl.oauthbearer",
                format!("is only used by mechanism OAUTHBEARER, not {mechanism}; remove it"),
            ),
            (Some(oauth), _) => {
                let url = oauth.token_endpoint_url.trim();
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    add(
                        "sasl.oauthbearer.token_endpoint_url",
                        format!("{url:?} is not an http(s) URL; write the identity provider's token endpoint, like \"https://idp.example.com/oauth2/token\""),
                    );
                }
                if oauth.client_id.trim().is_empty() {
                    add("sasl.oauthbearer.client_id", "is empty".into());
                }
                if oauth.client_secret.expose().is_empty() {
                    add(
                        "sasl.oauthbearer.client_secret",
                        "is empty; write it as \"${OAUTH_CLIENT_SECRET}\" and set the variable"
                            .into(),
                    );
                }
                for key in oauth.extensions.keys() {
                    if key.is_empty() || key.contains([',', '=']) {
                        add(
                            "sasl.oauthbearer.extensions",
                            format!("key {key:?} must be non-empty without ',' or '='"),
                        );
                    }
                }
                for value in oauth.extensions.values() {
                    if value.contains(',') {
                        add(
                            "sasl.oauthbearer.extensions",
                            "values must not contain ','".into(),
                        );
                    }
                }
            }
            (None, _) => {}
        }
    }
    if let Some(ssl) = &security.ssl {
        for (field, file) in [
            ("ca_file", &ssl.ca_file),
            ("cert_file", &ssl.cert_file),
            ("key_file", &ssl.key_file),
        ] {
            if let Some(path) = file {
                if let Err(why) = readable(path) {
                    add(&format!("ssl.{field}"), why);
                }
            }
        }
        match (&ssl.cert_file, &ssl.key_file) {
            (Some(_), None) => add(
                "ssl.key_file",
                "is required with ssl.cert_file (the client certificate's private key)".into(),
            ),
            (None, Some(_)) => add(
                "ssl.cert_file",
                "is required with ssl.key_file (the client certificate)".into(),
            ),
            _ => {}
        }
        if ssl.key_password.is_some() && ssl.key_file.is_none() {
            add(
                "ssl.key_password",
                "is set without ssl.key_file; remove it or add the key".into(),
            );
        }
    }
}

/// A certificate or key file must exist and be readable at start-up, not
/// at the first connection attempt deep in librdkafka.
fn readable(path: &Path) -> Result<(), String> {
    match std::fs::File::open(path) {
        Ok(_) if path.is_dir() => Err(format!(
            "{} is a directory; name the PEM file",
            path.display()
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

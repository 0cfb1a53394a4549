//! `kafka.security` as librdkafka settings. Validation (src/config) has
//! already refused incomplete or contradictory sections and raw settings
//! that would conflict, so this is a plain mapping.

use crate::config::{KafkaSecurity, SaslMechanism};

/// The librdkafka settings of `security`, secrets exposed (they go to
/// librdkafka only; rdkafka's `ClientConfig` Debug hides them).
pub fn settings(security: &KafkaSecurity) -> Vec<(&'static str, String)> {
    let mut out = vec![(
        "security.protocol",
        security.protocol.as_librdkafka().to_owned(),
    )];
    if let Some(sasl) = &security.sasl {
        out.push(("sasl.mechanism", sasl.mechanism.as_librdkafka().to_owned()));
        if let Some(user) = &sasl.username {
            out.push(("sasl.username", user.clone()));
        }
        if let Some(password) = &sasl.password {
            out.push(("sasl.password", password.expose().to_owned()));
        }
        if let (SaslMechanism::OauthBearer, Some(oauth)) = (sasl.mechanism, &sasl.oauthbearer) {
            // librdkafka fetches and refreshes the token itself (OIDC client
            // credentials); sluice registers no refresh callback.
            out.push(("sasl.oauthbearer.method", "oidc".to_owned()));
            out.push((
                "sasl.oauthbearer.token.endpoint.url",
                oauth.token_endpoint_url.clone(),
            ));
            out.push(("sasl.oauthbearer.client.id", oauth.client_id.clone()));
            out.push((
                "sasl.oauthbearer.client.secret",
                oauth.client_secret.expose().to_owned(),
            ));
            if let Some(scope) = &oauth.scope {
                out.push(("sasl.oauthbearer.scope", scope.clone()));
            }
            if !oauth.extensions.is_empty() {
                let extensions: Vec<String> = oauth
                    .extensions
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                out.push(("sasl.oauthbearer.extensions", extensions.join(",")));
            }
        }
    }
    if let Some(ssl) = &security.ssl {
        let path = |p: &std::path::PathBuf| p.to_string_lossy().into_owned();
        if let Some(ca) = &ssl.ca_file {
            out.push(("ssl.ca.location", path(ca)));
        }
        if let Some(cert) = &ssl.cert_file {
            out.push(("ssl.certificate.location", path(cert)));
        }
        if let Some(key) = &ssl.key_file {
            out.push(("ssl.key.location", path(key)));
        }
        if let Some(password) = &ssl.key_password {
            out.push(("ssl.key.password", password.expose().to_owned()));
        }
        let algorithm = if ssl.verify_hostname { "https" } else { "none" };
        out.push((
            "ssl.endpoint.identification.algorithm",
            algorithm.to_owned(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Config;

    fn mapped(security_yaml: &str) -> BTreeMap<&'static str, String> {
        let yaml = format!(
            "kafka: {{ brokers: \"k:9093\", group_id: g, security: {security_yaml} }}\n\
             postgres: {{ url: \"postgres://u@h/d\" }}\n\
             routes: [{{ topic: t, table: t, columns: {{ c: /c }} }}]\n"
        );
        let env = |name: &str| Some(format!("value-of-{name}"));
        let config = Config::from_yaml(&yaml, env).expect("valid config");
        settings(config.kafka.security.as_ref().expect("security set"))
            .into_iter()
            .collect()
    }

    #[test]
    fn scram_over_tls_maps_to_librdkafka_keys() {
        let s = mapped(
            "{ protocol: sasl_ssl, sasl: { mechanism: SCRAM-SHA-512, username: sink, password: \"${KAFKA_PASSWORD}\" } }",
        );
        assert_eq!(s["security.protocol"], "sasl_ssl");
        assert_eq!(s["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(s["sasl.username"], "sink");
        assert_eq!(s["sasl.password"], "value-of-KAFKA_PASSWORD");
        assert!(!s.contains_key("ssl.ca.location"), "system CAs by default");
    }

    #[test]
    fn plain_and_scram_256_spellings() {
        for (written, expected) in [
            ("PLAIN", "PLAIN"),
            ("plain", "PLAIN"),
            ("SCRAM-SHA-256", "SCRAM-SHA-256"),
            ("scram-sha-256", "SCRAM-SHA-256"),
        ] {
            let s = mapped(&format!(
                "{{ protocol: sasl_plaintext, sasl: {{ mechanism: {written}, username: u, password: p }} }}"
            ));
            assert_eq!(s["sasl.mechanism"], expected);
            assert_eq!(s["security.protocol"], "sasl_plaintext");
        }
    }

    #[test]
    fn oauthbearer_uses_the_builtin_oidc_flow() {
        let s = mapped(
            "{ protocol: sasl_ssl, sasl: { mechanism: OAUTHBEARER, oauthbearer: { \
             token_endpoint_url: \"https://idp.example.com/token\", client_id: sluice, \
             client_secret: \"${OIDC_SECRET}\", scope: \"kafka\", \
             extensions: { logicalCluster: lkc-1, identityPoolId: pool-2 } } } }",
        );
        assert_eq!(s["sasl.mechanism"], "OAUTHBEARER");
        assert_eq!(s["sasl.oauthbearer.method"], "oidc");
        assert_eq!(
            s["sasl.oauthbearer.token.endpoint.url"],
            "https://idp.example.com/token"
        );
        assert_eq!(s["sasl.oauthbearer.client.id"], "sluice");
        assert_eq!(s["sasl.oauthbearer.client.secret"], "value-of-OIDC_SECRET");
        assert_eq!(s["sasl.oauthbearer.scope"], "kafka");
        assert_eq!(
            s["sasl.oauthbearer.extensions"],
            "identityPoolId=pool-2,logicalCluster=lkc-1"
        );
        assert!(!s.contains_key("sasl.username"));
    }

    #[test]
    fn tls_files_and_hostname_verification() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["ca.pem", "c.pem", "k.pem"] {
            std::fs::write(dir.path().join(f), "x").expect("write");
        }
        let d = dir.path().display();
        let s = mapped(&format!(
            "{{ protocol: ssl, ssl: {{ ca_file: {d}/ca.pem, cert_file: {d}/c.pem, key_file: {d}/k.pem, key_password: \"${{KEY_PW}}\" }} }}"
        ));
        assert_eq!(s["security.protocol"], "ssl");
        assert_eq!(s["ssl.ca.location"], format!("{d}/ca.pem"));
        assert_eq!(s["ssl.certificate.location"], format!("{d}/c.pem"));
        assert_eq!(s["ssl.key.location"], format!("{d}/k.pem"));
        assert_eq!(s["ssl.key.password"], "value-of-KEY_PW");
        assert_eq!(s["ssl.endpoint.identification.algorithm"], "https");
        let s = mapped(&format!(
            "{{ protocol: ssl, ssl: {{ ca_file: {d}/ca.pem, verify_hostname: false }} }}"
        ));
        assert_eq!(s["ssl.endpoint.identification.algorithm"], "none");
    }
}

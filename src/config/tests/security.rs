//! `kafka.security`: what validation refuses, and that no secret of it is
//! ever printed.

use super::*;

/// MINIMAL with `security` spliced into the kafka section.
fn with_security(security: &str) -> String {
    MINIMAL.replace(
        "  group_id: g\n",
        &format!("  group_id: g\n  security: {security}\n"),
    )
}

fn security_problems(security: &str) -> Vec<Problem> {
    problems(&with_security(security))
}

#[test]
fn protocol_and_sections_must_agree() {
    let p = security_problems("{ protocol: sasl_ssl }");
    assert_one(
        &p,
        "kafka.security.sasl",
        "is required by protocol sasl_ssl",
    );
    let p = security_problems(
        "{ protocol: ssl, sasl: { mechanism: PLAIN, username: u, password: p } }",
    );
    assert_one(&p, "kafka.security.sasl", "use protocol: sasl_ssl");
    let p = security_problems("{ protocol: sasl_plaintext, sasl: { mechanism: PLAIN, username: u, password: p }, ssl: { verify_hostname: true } }");
    assert_one(&p, "kafka.security.ssl", "use protocol: sasl_ssl");
    let p = security_problems("{ protocol: tls }");
    assert!(
        p.iter()
            .any(|p| p.message.contains("plaintext") && p.message.contains("sasl_ssl")),
        "the accepted protocols are listed: {p:#?}"
    );
}

#[test]
fn each_mechanism_requires_its_own_settings() {
    let p = security_problems("{ protocol: sasl_ssl, sasl: { mechanism: SCRAM-SHA-256 } }");
    assert_one(
        &p,
        "kafka.security.sasl.username",
        "required by mechanism SCRAM-SHA-256",
    );
    assert_one(&p, "kafka.security.sasl.password", "${KAFKA_PASSWORD}");
    let p =
        security_problems("{ protocol: sasl_ssl, sasl: { mechanism: OAUTHBEARER, username: u } }");
    assert_one(
        &p,
        "kafka.security.sasl.oauthbearer",
        "token_endpoint_url, client_id",
    );
    assert_one(
        &p,
        "kafka.security.sasl.username",
        "not used by mechanism OAUTHBEARER",
    );
    let p = security_problems(
        "{ protocol: sasl_ssl, sasl: { mechanism: OAUTHBEARER, oauthbearer: { token_endpoint_url: idp/token, client_id: c, client_secret: s } } }",
    );
    assert_one(
        &p,
        "kafka.security.sasl.oauthbearer.token_endpoint_url",
        "not an http(s) URL",
    );
    let p = security_problems(
        "{ protocol: sasl_ssl, sasl: { mechanism: PLAIN, username: u, password: p, oauthbearer: { token_endpoint_url: \"https://i/t\", client_id: c, client_secret: s } } }",
    );
    assert_one(
        &p,
        "kafka.security.sasl.oauthbearer",
        "only used by mechanism OAUTHBEARER",
    );
    let p = security_problems(
        "{ protocol: sasl_ssl, sasl: { mechanism: SCRAM-SHA-1, username: u, password: p } }",
    );
    assert!(
        p.iter().any(|p| p.message.contains("SCRAM-SHA-512")),
        "the accepted mechanisms are listed: {p:#?}"
    );
}

#[test]
fn tls_files_must_exist_and_come_in_pairs() {
    let p = security_problems(
        "{ protocol: ssl, ssl: { ca_file: /nonexistent/ca.pem, cert_file: /nonexistent/c.pem } }",
    );
    assert_one(
        &p,
        "kafka.security.ssl.ca_file",
        "cannot read /nonexistent/ca.pem",
    );
    assert_one(
        &p,
        "kafka.security.ssl.cert_file",
        "cannot read /nonexistent/c.pem",
    );
    assert_one(
        &p,
        "kafka.security.ssl.key_file",
        "required with ssl.cert_file",
    );
    let p = security_problems("{ protocol: ssl, ssl: { key_password: pw } }");
    assert_one(
        &p,
        "kafka.security.ssl.key_password",
        "without ssl.key_file",
    );
}

#[test]
fn raw_settings_with_a_typed_field_are_refused_naming_it() {
    let p = problems_after(|c| {
        for key in [
            "security.protocol",
            "sasl.mechanisms",
            "sasl.username",
            "sasl.password",
            "ssl.ca.location",
            "ssl.key.password",
            "ssl.endpoint.identification.algorithm",
            "sasl.oauthbearer.client.secret",
        ] {
            c.kafka.librdkafka.insert(key.into(), "x".into());
        }
    });
    assert_one(
        &p,
        "kafka.librdkafka.security.protocol",
        "kafka.security.protocol",
    );
    assert_one(
        &p,
        "kafka.librdkafka.sasl.mechanisms",
        "kafka.security.sasl.mechanism",
    );
    assert_one(
        &p,
        "kafka.librdkafka.sasl.username",
        "kafka.security.sasl.username",
    );
    assert_one(
        &p,
        "kafka.librdkafka.sasl.password",
        "kafka.security.sasl.password",
    );
    assert_one(
        &p,
        "kafka.librdkafka.ssl.ca.location",
        "kafka.security.ssl.ca_file",
    );
    assert_one(
        &p,
        "kafka.librdkafka.ssl.key.password",
        "kafka.security.ssl.key_password",
    );
    assert_one(
        &p,
        "kafka.librdkafka.ssl.endpoint.identification.algorithm",
        "kafka.security.ssl.verify_hostname",
    );
    assert_one(
        &p,
        "kafka.librdkafka.sasl.oauthbearer.client.secret",
        "kafka.security.sasl.oauthbearer.client_secret",
    );
    // Inline PEM is allowed alone, refused beside the typed file.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").expect("write");
    let text = with_security(&format!(
        "{{ protocol: ssl, ssl: {{ ca_file: {} }} }}",
        ca.display()
    ))
    .replace(
        "  group_id: g\n",
        "  group_id: g\n  librdkafka: { ssl.ca.pem: \"-----BEGIN\" }\n",
    );
    assert_one(
        &problems(&text),
        "kafka.librdkafka.ssl.ca.pem",
        "conflicts with kafka.security.ssl.ca_file",
    );
}

#[test]
fn secrets_never_print() {
    let text = with_security(
        "{ protocol: sasl_ssl, sasl: { mechanism: SCRAM-SHA-512, username: sink, password: \"${KAFKA_PASSWORD}\" }, ssl: { verify_hostname: true } }",
    )
    .replace(
        "  group_id: g\n",
        "  group_id: g\n  librdkafka: { ssl.keystore.password: \"keystore-secret\", client.id: visible }\n",
    );
    let env = |name: &str| match name {
        "KAFKA_PASSWORD" => Some("hunter2-kafka".to_owned()),
        _ => None,
    };
    let config = Config::from_yaml(&text, env).expect("valid");
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2-kafka"), "{debug}");
    assert!(!debug.contains("keystore-secret"), "{debug}");
    assert!(
        debug.contains("visible"),
        "non-secret raw settings still show"
    );
    let rd = format!("{:?}", crate::kafka::client_config(&config));
    assert!(
        !rd.contains("hunter2-kafka") && !rd.contains("keystore-secret"),
        "{rd}"
    );
    // An invalid file with the secret in it: the error does not quote it.
    let broken = text.replace("client.id: visible", "client.id: [");
    let err = Config::from_yaml(&broken, env).expect_err("invalid");
    assert!(!format!("{err:?} {err}").contains("hunter2-kafka"));
}

use super::*;

fn config(security: &str) -> Config {
    let yaml = format!(
        "kafka: {{ brokers: \"broker.example:9093\", group_id: g{security} }}\n\
         postgres: {{ url: \"postgres://u@h/d\" }}\n\
         routes: [{{ topic: t, table: t, columns: {{ c: /c }} }}]\n"
    );
    Config::from_yaml(&yaml, |_| None).expect("valid config")
}

fn field(e: Option<ProbeError>) -> &'static str {
    match e {
        Some(ProbeError::Certificate { field, .. })
        | Some(ProbeError::Authentication { field, .. }) => field,
        other => panic!("not classified: {other:?}"),
    }
}

#[test]
fn librdkafka_lines_name_the_setting() {
    let tls = config(", security: { protocol: ssl }");
    let verify = "ssl://broker.example:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (after 3ms in state SSL_HANDSHAKE)";
    assert_eq!(field(classify(&tls, verify)), "kafka.security.ssl.ca_file");
    let name = "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: Hostname mismatch (after 2ms)";
    assert_eq!(field(classify(&tls, name)), "kafka.brokers");
    let untrusted = "SSL handshake failed: error:0A000418:SSL routines::tlsv1 alert unknown ca";
    assert_eq!(
        field(classify(&tls, untrusted)),
        "kafka.security.ssl.cert_file"
    );
    for transient in [
        "ssl://broker.example:9093/bootstrap: SSL handshake failed: Disconnected (after 2ms in state SSL_HANDSHAKE)",
        "SSL handshake failed: error:0A000126:SSL routines::unexpected eof while reading",
        "SSL transport error: Connection reset by peer",
    ] {
        assert!(classify(&tls, transient).is_none(), "{transient}");
    }
    let mtls =
        "SSL handshake failed: error:0A00045C:SSL routines::tlsv13 alert certificate required";
    assert_eq!(field(classify(&tls, mtls)), "kafka.security.ssl.cert_file");
    let plain = "SSL handshake failed: error:0A00010B:SSL routines::wrong version number";
    assert_eq!(field(classify(&tls, plain)), "kafka.security.protocol");
    assert!(classify(
        &tls,
        "Connect to ipv4#127.0.0.1:9093 failed: Connection refused"
    )
    .is_none());

    let scram = config(
        ", security: { protocol: sasl_ssl, sasl: { mechanism: SCRAM-SHA-512, username: u, password: p } }",
    );
    let refused = "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512";
    assert_eq!(field(classify(&scram, refused)), "kafka.security.sasl");
    let none = config("");
    assert_eq!(
        field(classify(&none, "Broker: Authentication failed")),
        "kafka.security"
    );
}

#[test]
fn an_unreadable_ca_is_a_certificate_problem_at_creation() {
    let tls = config(", security: { protocol: ssl }");
    let e = classify_creation(
        &tls,
        KafkaError::ClientCreation("ssl.ca.location failed: error:05800088:x509 certificate routines::no certificate or crl found".into()),
    );
    assert!(
        matches!(
            e,
            ProbeError::Certificate {
                field: "kafka.security.ssl.ca_file",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_setting());
}

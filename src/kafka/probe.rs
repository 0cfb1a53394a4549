//! The first contact with the brokers, made by `sluice check` and at
//! start-up: a metadata request that tells a certificate or credential
//! problem (a wrong setting: fail now, naming it) from a cluster that is
//! only unreachable (perhaps for a moment: librdkafka keeps trying).
//!
//! librdkafka reports TLS and SASL failures only in its log and error
//! callbacks, on its own threads, while the request just times out; the
//! probe's context keeps those lines so the verdict can quote them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

use crate::config::{Config, SecurityProtocol};

/// Lines kept from librdkafka's log: the last few are enough to name a
/// cause, and the buffer stays small however long the probe waits.
const KEPT_LINES: usize = 16;

/// How long the second probe (without the host name check) may take.
const RECHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Polls that serve queued log events after each metadata attempt.
const LOG_POLLS: usize = 20;

/// One metadata request waits at most this long before the probe looks at
/// what librdkafka logged meanwhile.
const STEP: Duration = Duration::from_millis(500);

/// Keeps librdkafka's warnings and errors while the probe runs. Lines that
/// may name a cause (TLS, SASL) are kept apart: a retrying client logs
/// "all brokers down" again and again, which must not push them out.
#[derive(Default)]
pub struct ProbeContext {
    lines: Mutex<Lines>,
}

#[derive(Default)]
struct Lines {
    notable: Vec<String>,
    recent: Vec<String>,
}

fn push_bounded(lines: &mut Vec<String>, line: &str) {
    if lines.last().is_some_and(|l| l == line) {
        return;
    }
    if lines.len() == KEPT_LINES {
        lines.remove(0);
    }
    lines.push(line.to_owned());
}

impl ProbeContext {
    fn keep(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let lower = line.to_ascii_lowercase();
        if [
            "ssl",
            "tls",
            "certificate",
            "sasl",
            "authentication",
            "mechanism",
        ]
        .iter()
        .any(|word| lower.contains(word))
        {
            push_bounded(&mut lines.notable, &line);
        }
        push_bounded(&mut lines.recent, &line);
    }

    /// (lines that may name a cause, the most recent lines).
    fn lines(&self) -> (Vec<String>, Vec<String>) {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        (lines.notable.clone(), lines.recent.clone())
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel::*;
        if matches!(level, Emerg | Alert | Critical | Error | Warning) {
            self.keep(message.to_owned());
        }
        tracing::debug!(target: "librdkafka", fac, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.keep(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for ProbeContext {}

/// Why the brokers could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// TLS failed: the broker's certificate, sluice's own, or its key.
    #[error("{field}: TLS certificate problem: {explanation}. librdkafka: {detail}")]
    Certificate {
        field: &'static str,
        explanation: String,
        detail: String,
    },
    /// SASL failed: the mechanism, user name or password is not accepted.
    #[error("{field}: SASL authentication failed: {explanation}. librdkafka: {detail}")]
    Authentication {
        field: &'static str,
        explanation: String,
        detail: String,
    },
    /// No broker answered in time (refused, unresolvable, silent).
    #[error("kafka.brokers: cannot fetch metadata from {brokers}: {detail}")]
    Unreachable { brokers: String, detail: String },
    /// librdkafka refused the settings themselves.
    #[error("kafka.librdkafka: the Kafka client cannot be created: {0}")]
    Client(KafkaError),
}

impl ProbeError {
    /// A wrong setting, not a passing outage: start-up stops on it.
    pub fn is_setting(&self) -> bool {
        !matches!(self, ProbeError::Unreachable { .. })
    }
}

/// Connects with the configuration's settings and fetches `topic`'s
/// metadata, giving up after `timeout`; on success the consumer is kept
/// for further questions (`check` asks for every topic and log bounds).
/// Blocking: call it from `spawn_blocking`.
pub fn first_contact(
    config: &Config,
    topic: &str,
    timeout: Duration,
) -> Result<BaseConsumer<ProbeContext>, ProbeError> {
    let mut client = super::client_config(config);
    // rdkafka passes librdkafka only the levels the tracing subscriber
    // enables (errors alone without one); the probe needs the warnings
    // too, where librdkafka says why a connection closed.
    client.set_log_level(RDKafkaLogLevel::Warning);
    let consumer: BaseConsumer<ProbeContext> = client
        .create_with_context(ProbeContext::default())
        .map_err(|e| classify_creation(config, e))?;
    let deadline = Instant::now() + timeout;
    loop {
        let step = STEP.min(deadline.saturating_duration_since(Instant::now()));
        let last = match consumer.fetch_metadata(Some(topic), step) {
            Ok(_) => return Ok(consumer),
            Err(e) => e.to_string(),
        };
        // rdkafka routes librdkafka's log and error events to the main
        // queue, which only polling serves (calling the context's `log`).
        for _ in 0..LOG_POLLS {
            let _ = consumer.poll(Duration::from_millis(5));
        }
        let (notable, lines) = consumer.context().lines();
        if let Some(problem) = notable.iter().rev().find_map(|l| classify(config, l)) {
            return Err(name_or_chain(config, topic, problem));
        }
        if Instant::now() >= deadline {
            // The last lines librdkafka logged say more than the timeout.
            let start = lines.len().saturating_sub(3);
            let tls = config.kafka.security.as_ref().is_some_and(|s| {
                matches!(
                    s.protocol,
                    SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
                )
            });
            let detail = match lines[start..].join("; ") {
                // A plaintext listener spoken to in TLS may just wait.
                tail if tail.is_empty() && tls => format!(
                    "{last} (no TLS handshake completed in {}s: does kafka.brokers name the brokers' TLS listener?)",
                    timeout.as_secs()
                ),
                tail if tail.is_empty() => last,
                tail => tail,
            };
            return Err(ProbeError::Unreachable {
                brokers: config.kafka.brokers.clone(),
                detail,
            });
        }
    }
}

/// With OpenSSL 3, librdkafka words a certificate for another host name
/// like one from an unknown CA ("certificate verify failed"). Asking again
/// without the name check tells them apart: if the chain alone passes, the
/// name was the problem.
fn name_or_chain(config: &Config, topic: &str, problem: ProbeError) -> ProbeError {
    let ProbeError::Certificate {
        field: "kafka.security.ssl.ca_file",
        detail,
        ..
    } = &problem
    else {
        return problem;
    };
    let security = config.kafka.security.as_ref();
    if security
        .and_then(|s| s.ssl.as_ref())
        .is_some_and(|s| !s.verify_hostname)
    {
        return problem;
    }
    let mut relaxed = config.clone();
    let Some(security) = relaxed.kafka.security.as_mut() else {
        return problem;
    };
    security
        .ssl
        .get_or_insert_with(crate::config::SslConfig::default)
        .verify_hostname = false;
    // The relaxed client must not log in: a server that fails the name
    // check is not known to be the broker, so it gets no password or
    // token. Without SASL a broker that requires it refuses the requests
    // after the handshake, which still answers the question: only a
    // certificate verdict means the chain failed too.
    security.sasl = None;
    security.protocol = SecurityProtocol::Ssl;
    match first_contact(&relaxed, topic, RECHECK_TIMEOUT) {
        Err(ProbeError::Certificate { .. }) => problem,
        Ok(_) | Err(_) => ProbeError::Certificate {
            field: "kafka.brokers",
            explanation: format!(
                "the broker's certificate is signed by a trusted CA but does not name the host sluice \
                 connected to ({}); connect by a name in the certificate, or set \
                 kafka.security.ssl.verify_hostname: false",
                config.kafka.brokers
            ),
            detail: detail.clone(),
        },
    }
}

/// librdkafka loads certificate and key files when the client is created.
fn classify_creation(config: &Config, error: KafkaError) -> ProbeError {
    let detail = error.to_string();
    let ssl = config.kafka.security.as_ref().and_then(|s| s.ssl.as_ref());
    let file = |f: Option<&std::path::PathBuf>| {
        f.map_or_else(|| "?".to_owned(), |p| p.display().to_string())
    };
    let (field, explanation) = if detail.contains("ssl.ca.location") {
        (
            "kafka.security.ssl.ca_file",
            format!(
                "{} is not a readable PEM file of CA certificates",
                file(ssl.and_then(|s| s.ca_file.as_ref()))
            ),
        )
    } else if detail.contains("ssl.certificate.location") {
        (
            "kafka.security.ssl.cert_file",
            format!(
                "{} is not a readable PEM certificate",
                file(ssl.and_then(|s| s.cert_file.as_ref()))
            ),
        )
    } else if detail.contains("ssl.key") || detail.contains("private key") {
        (
            "kafka.security.ssl.key_file",
            format!(
                "{} is not a readable PEM private key matching cert_file (or key_password is wrong)",
                file(ssl.and_then(|s| s.key_file.as_ref()))
            ),
        )
    } else {
        return ProbeError::Client(error);
    };
    ProbeError::Certificate {
        field,
        explanation,
        detail,
    }
}

/// Names the setting behind a librdkafka log line, when it is one.
fn classify(config: &Config, line: &str) -> Option<ProbeError> {
    let lower = line.to_ascii_lowercase();
    let security = config.kafka.security.as_ref();
    let ssl = security.and_then(|s| s.ssl.as_ref());
    let detail = line.to_owned();
    // Broker names carry the protocol ("sasl_ssl://host:9093/bootstrap:"):
    // look at what follows them. A SASL failure may also mention TLS words
    // in passing, so it is recognised first.
    let said = lower
        .rsplit_once("/bootstrap: ")
        .map_or(lower.as_str(), |(_, s)| s);
    let said = said.rsplit_once("://").map_or(said, |(_, s)| s);
    let sasl_failed = said.contains("authentication") || said.contains("mechanism");
    let tls = said.contains("ssl") || said.contains("certificate") || said.contains("tls");
    if tls && !sasl_failed {
        let ca = ssl.and_then(|s| s.ca_file.as_ref()).map_or(
            "the system's CA store (kafka.security.ssl.ca_file is not set)".to_owned(),
            |p| p.display().to_string(),
        );
        let (field, explanation) = if lower.contains("certificate required")
            || lower.contains("handshake failure") && ssl.is_none_or(|s| s.cert_file.is_none())
        {
            (
                "kafka.security.ssl.cert_file",
                "the broker requires a client certificate (mutual TLS); set kafka.security.ssl.cert_file and key_file".to_owned(),
            )
        } else if lower.contains("hostname mismatch")
            || lower.contains("ip address mismatch")
            || lower.contains("host name")
        {
            (
                "kafka.brokers",
                format!(
                    "the broker's certificate does not name the host sluice connected to ({}); \
                     connect by a name in the certificate, or set kafka.security.ssl.verify_hostname: false",
                    config.kafka.brokers
                ),
            )
        } else if lower.contains("certificate verify failed")
            || lower.contains("unable to get")
            || lower.contains("self-signed")
            || lower.contains("self signed")
        {
            (
                "kafka.security.ssl.ca_file",
                format!("the broker's certificate is not signed by a CA in {ca}"),
            )
        } else if lower.contains("alert")
            && [
                "bad certificate",
                "certificate unknown",
                "unknown ca",
                "certificate expired",
                "certificate revoked",
                "unsupported certificate",
                "access denied",
            ]
            .iter()
            .any(|alert| lower.contains(alert))
        {
            (
                "kafka.security.ssl.cert_file",
                "the broker rejected sluice's client certificate (not signed by a CA it trusts, or expired)".to_owned(),
            )
        } else if lower.contains("wrong version number") || lower.contains("packet length") {
            (
                "kafka.security.protocol",
                "the broker does not speak TLS on this port; use protocol plaintext or sasl_plaintext, or the broker's TLS listener".to_owned(),
            )
        } else {
            // A handshake cut short (a broker restarting, a load balancer
            // resetting a connection) names no cause: not a setting
            // problem, librdkafka retries.
            return None;
        };
        return Some(ProbeError::Certificate {
            field,
            explanation,
            detail,
        });
    }
    let sasl = security.is_some_and(|s| {
        matches!(
            s.protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    });
    if sasl_failed {
        let mechanism = security
            .and_then(|s| s.sasl.as_ref())
            .map_or("none", |s| s.mechanism.as_librdkafka());
        let (field, explanation) = if !sasl {
            (
                "kafka.security",
                "the broker requires SASL authentication; set kafka.security.protocol: sasl_ssl (or sasl_plaintext) and kafka.security.sasl".to_owned(),
            )
        } else if lower.contains("mechanism handshake failed")
            || lower.contains("supported mechanisms")
            || lower.contains("unsupported sasl mechanism")
        {
            (
                "kafka.security.sasl.mechanism",
                format!("the broker does not offer mechanism {mechanism}"),
            )
        } else {
            (
                "kafka.security.sasl",
                format!("the broker refused the credentials (mechanism {mechanism}); check username and password"),
            )
        };
        return Some(ProbeError::Authentication {
            field,
            explanation,
            detail,
        });
    }
    None
}

#[cfg(test)]
mod tests;

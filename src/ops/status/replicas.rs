//! `--replicas URL…`: whether each replica's `/readyz` answers 200.
//!
//! One HTTP/1.0 GET over a TCP stream, not an HTTP client crate: sluice's
//! own server (src/http.rs) is hand-written for the same reason — three
//! read-only routes, plain HTTP, one response per connection — and a
//! hyper client would add a dozen crates to the build for one request.
//! HTTP/1.0 with `Connection: close` means the body ends where the
//! connection does (no chunked decoding).

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bodies are short ("ready", or the reasons it is not); more is cut.
const MAX_RESPONSE: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaStatus {
    pub url: String,
    /// `/readyz` answered 200.
    pub ready: bool,
    /// The HTTP status (`None`: no answer).
    pub status: Option<u16>,
    /// The body of an answer other than 200 (why it is not ready).
    pub body: Option<String>,
    /// Why there was no answer (refused, timed out, not a URL).
    pub error: Option<String>,
}

impl ReplicaStatus {
    pub fn describe(&self) -> String {
        match (self.ready, self.status, &self.error) {
            (true, ..) => "ready".into(),
            (false, Some(code), _) => format!(
                "not ready ({code}): {}",
                self.body.as_deref().unwrap_or("").trim()
            ),
            (false, None, Some(e)) => format!("no answer: {e}"),
            (false, None, None) => "no answer".into(),
        }
    }
}

/// `http://host:port[/prefix]` → (host:port, host, path of /readyz).
fn target(url: &str) -> Result<(String, String, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!(
            "--replicas {url:?}: give the replica's http:// address (sluice serves /readyz \
             over plain HTTP, http.listen)"
        )
    })?;
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(format!("--replicas {url:?}: no host"));
    }
    let host = authority.to_string();
    let addr = match authority.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && !authority.ends_with(']') => authority.to_string(),
        _ => format!("{authority}:80"),
    };
    let prefix = prefix.trim_end_matches('/');
    let path = match prefix.is_empty() {
        true => "/readyz".to_string(),
        false => format!("/{prefix}/readyz"),
    };
    Ok((addr, host, path))
}

/// Asks one replica, waiting at most `timeout` in all.
pub async fn ask(url: &str, timeout: Duration) -> ReplicaStatus {
    let mut status = ReplicaStatus {
        url: url.to_string(),
        ready: false,
        status: None,
        body: None,
        error: None,
    };
    match tokio::time::timeout(timeout, get(url)).await {
        Ok(Ok((code, body))) => {
            status.ready = code == 200;
            status.status = Some(code);
            status.body = (code != 200).then_some(body);
        }
        Ok(Err(e)) => status.error = Some(e),
        Err(_) => status.error = Some(format!("no answer within {timeout:?}")),
    }
    status
}

pub async fn ask_all(urls: &[String], timeout: Duration) -> Vec<ReplicaStatus> {
    futures::future::join_all(urls.iter().map(|u| ask(u, timeout))).await
}

async fn get(url: &str) -> Result<(u16, String), String> {
    let (addr, host, path) = target(url)?;
    let mut stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    parse(&String::from_utf8_lossy(&response))
}

/// (status, body) of an HTTP/1.x response.
fn parse(response: &str) -> Result<(u16, String), String> {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let status_line = head.lines().next().unwrap_or("");
    let mut words = status_line.split(' ');
    let code = match (words.next(), words.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse::<u16>().ok(),
        _ => None,
    };
    code.map(|c| (c, body.to_string()))
        .ok_or_else(|| format!("not an HTTP answer: {status_line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            target("http://10.0.0.5:8080").unwrap(),
            (
                "10.0.0.5:8080".into(),
                "10.0.0.5:8080".into(),
                "/readyz".into()
            )
        );
        assert_eq!(
            target("http://sluice-0.sluice/").unwrap(),
            (
                "sluice-0.sluice:80".into(),
                "sluice-0.sluice".into(),
                "/readyz".into()
            )
        );
        assert_eq!(target("http://h:1/base/").unwrap().2, "/base/readyz");
        assert!(target("https://h:1").is_err());
        assert!(target("h:1").is_err());
        assert!(target("http://").is_err());
    }

    #[test]
    fn responses() {
        assert_eq!(
            parse("HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\nhalted: x\n").unwrap(),
            (503, "halted: x\n".into())
        );
        assert_eq!(parse("HTTP/1.0 200 OK\r\n\r\n").unwrap().0, 200);
        assert!(parse("garbage").is_err());
        assert!(parse("").is_err());
    }
}

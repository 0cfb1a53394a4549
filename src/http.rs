//! The HTTP server for probes and scrapes: `GET /metrics` (Prometheus text
//! format), `GET /healthz` (the process and its runtime answer) and
//! `GET /readyz` (joined the group, Postgres reachable, no partition halted).
//!
//! Three read-only routes do not need a web framework: a request line is
//! read, one response is written, the connection is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::pipeline::Shared;

/// Requests larger than this are refused (probes and scrapes are tiny).
const MAX_REQUEST: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the listener (failing at start-up when the address is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // Out of file descriptors and the like: keep serving.
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let (registry, shared) = (registry.clone(), Arc::clone(&shared));
        tokio::spawn(async move {
            if let Err(e) = respond(stream, &registry, &shared).await {
                debug!(error = %e, "http request failed");
            }
        });
    }
}

async fn respond(
    mut stream: TcpStream,
    registry: &Registry,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream, &mut buf)).await;
    let (status, content_type, body) = match head {
        Ok(Ok(())) => route(request_path(&buf), registry, shared),
        _ => ("400 Bad Request", "text/plain", b"bad request\n".to_vec()),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// `Some(path)` for a GET request line.
fn request_path(head: &[u8]) -> Option<&str> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(path)) => Some(path.split('?').next().unwrap_or(path)),
        _ => None,
    }
}

fn route(
    path: Option<&str>,
    registry: &Registry,
    shared: &Shared,
) -> (&'static str, &'static str, Vec<u8>) {
    match path {
        Some("/metrics") => {
            // As /readyz would answer now, for alerts that read metrics.
            shared
                .metrics
                .ready
                .set(i64::from(shared.readiness().is_ok()));
            // Checkouts refresh the pool gauges too, but an idle replica
            // makes none.
            shared.pool.refresh();
            let mut body = Vec::new();
            let encoder = TextEncoder::new();
            match encoder.encode(&registry.gather(), &mut body) {
                Ok(()) => ("200 OK", "text/plain; version=0.0.4", body),
                Err(e) => (
                    "500 Internal Server Error",
                    "text/plain",
                    format!("{e}\n").into_bytes(),
                ),
            }
        }
        Some("/healthz") => ("200 OK", "text/plain", b"ok\n".to_vec()),
        Some("/readyz") => match shared.readiness() {
            Ok(()) => ("200 OK", "text/plain", b"ready\n".to_vec()),
            Err(why) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {why}\n").into_bytes(),
            ),
        },
        Some(_) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        None => (
            "405 Method Not Allowed",
            "text/plain",
            b"only GET\n".to_vec(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            request_path(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some("/metrics")
        );
        assert_eq!(
            request_path(b"GET /readyz?verbose=1 HTTP/1.1\r\n\r\n"),
            Some("/readyz")
        );
        assert_eq!(request_path(b"POST /metrics HTTP/1.1\r\n\r\n"), None);
        assert_eq!(request_path(b"\xff\xfe"), None);
    }
}

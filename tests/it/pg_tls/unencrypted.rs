//! `check`'s warning about a plaintext session with a server that is not
//! on this machine.

use super::{check_passes, config_for};
use crate::harness::*;

/// An address of this machine that is not a loopback one (the source of
/// its default route; a UDP "connect" sends nothing).
fn non_loopback_address() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .connect("192.0.2.1:9")
        .expect("this test needs a network interface besides lo");
    let ip = socket.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

/// Forwards `ip:<returned port>` to `127.0.0.1:target` (the test servers
/// listen on loopback only).
async fn forward(ip: std::net::IpAddr, target: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    port
}

/// `check` warns about a plaintext session with a server that is not on
/// this machine, and only then; the exit code stays 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_when_a_remote_connection_is_not_encrypted() {
    // The shared test server has no TLS: prefer falls back to plaintext.
    let (url, client) = fresh_db("pg_tls_warn").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 1);
    let text = check_passes(&config_for(kafka.bootstrap_servers(), &url, "g"));
    assert!(!text.contains("warning:"), "127.0.0.1 is local:\n{text}");

    let ip = non_loopback_address();
    let port: u16 = url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let remote = url.replace(
        &format!("127.0.0.1:{port}"),
        &format!("{ip}:{}", forward(ip, port).await),
    );
    let text = check_passes(&config_for(kafka.bootstrap_servers(), &remote, "g"));
    let warning = text
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(warning.contains(&format!("{ip}")), "{warning}");
    assert!(
        warning.contains("is not encrypted (sslmode prefer)"),
        "{warning}"
    );
    assert!(warning.contains("sslmode verify-full"), "{warning}");
}

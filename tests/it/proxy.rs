//! A TCP proxy between the sink and Postgres whose connections the test can
//! cut at a chosen moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Proxy {
    pub port: u16,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    down: Arc<AtomicBool>,
    stall: Arc<watch::Sender<bool>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy in front of the Postgres of `url`; returns it and the URL
    /// that goes through it.
    pub async fn in_front_of(url: &str) -> (Proxy, String) {
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("a postgres URL with a port");
        let proxy = Proxy::start(port).await;
        let proxied = url.replace(&format!(":{port}/"), &format!(":{}/", proxy.port));
        (proxy, proxied)
    }

    pub async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let down: Arc<AtomicBool> = Arc::default();
        let stall = Arc::new(watch::Sender::new(false));
        let accept = tokio::spawn({
            let (conns, down, stall) = (Arc::clone(&conns), Arc::clone(&down), Arc::clone(&stall));
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is closed at once
                    }
                    let stall = stall.subscribe();
                    let conn = tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)).await {
                            let (from_client, to_client) = client.into_split();
                            let (from_server, to_server) = server.into_split();
                            tokio::join!(
                                pump(from_client, to_server, stall.clone()),
                                pump(from_server, to_client, stall)
                            );
                        }
                    });
                    conns.lock().unwrap().push(conn);
                }
            }
        });
        Proxy {
            port,
            conns,
            down,
            stall,
            accept,
        }
    }

    /// A network black hole: connections stay open (no RST, no FIN) but no
    /// byte goes through, on open and new connections alike.
    pub fn set_stalled(&self, stalled: bool) {
        self.stall.send_replace(stalled);
    }

    /// While down, Postgres looks unreachable: open connections are cut and
    /// new ones closed at once.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut();
        }
    }

    /// Drops every open connection: the client sees its connection closed,
    /// the server only notices when it next writes.
    pub fn cut(&self) {
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Copies one direction, holding what it reads while stalled.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut stall: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while *stall.borrow_and_update() {
            if stall.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

//! A TCP proxy between the sink and Postgres whose connections the test can
//! cut at a chosen moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Proxy {
    pub port: u16,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    down: Arc<AtomicBool>,
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
        let accept = tokio::spawn({
            let (conns, down) = (Arc::clone(&conns), Arc::clone(&down));
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is closed at once
                    }
                    let conn = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(("127.0.0.1", target_port)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
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
            accept,
        }
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

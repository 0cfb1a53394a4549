//! Test certificates made with the `openssl` CLI, and Debian's HAProxy in
//! TCP mode terminating TLS in front of a plaintext broker (tansu has no
//! TLS listener of its own that librdkafka can verify).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority in `dir`, valid for a day.
pub struct Ca {
    dir: PathBuf,
    /// The CA certificate (PEM), what a client's `ca_file` names.
    pub cert: PathBuf,
    key: PathBuf,
}

/// A certificate issued by a [`Ca`], with its key and both in one PEM
/// (what HAProxy's `crt` wants).
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &key.to_string_lossy(),
                "-out",
                &cert.to_string_lossy(),
            ],
            dir,
        );
        Ca {
            dir: dir.to_owned(),
            cert,
            key,
        }
    }

    /// A leaf certificate for `cn` with subject alternative names `sans`
    /// (`DNS:localhost`, `IP:127.0.0.1`), for servers or clients.
    pub fn issue(&self, file: &str, cn: &str, sans: &[&str]) -> Issued {
        let dir = &self.dir;
        let (cert, key, csr, ext) = (
            dir.join(format!("{file}.crt")),
            dir.join(format!("{file}.key")),
            dir.join(format!("{file}.csr")),
            dir.join(format!("{file}.ext")),
        );
        let mut extensions = String::from(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        if !sans.is_empty() {
            extensions.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        std::fs::write(&ext, extensions).unwrap();
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &key.to_string_lossy(),
                "-out",
                &csr.to_string_lossy(),
            ],
            dir,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-days",
                "1",
                "-in",
                &csr.to_string_lossy(),
                "-CA",
                &self.cert.to_string_lossy(),
                "-CAkey",
                &self.key.to_string_lossy(),
                "-CAcreateserial",
                "-extfile",
                &ext.to_string_lossy(),
                "-out",
                &cert.to_string_lossy(),
            ],
            dir,
        );
        let bundle = dir.join(format!("{file}.pem"));
        let pem = format!(
            "{}{}",
            std::fs::read_to_string(&cert).unwrap(),
            std::fs::read_to_string(&key).unwrap()
        );
        std::fs::write(&bundle, pem).unwrap();
        Issued { cert, key, bundle }
    }
}

/// HAProxy terminating TLS on `127.0.0.1:port` and passing the bytes to
/// `backend`; killed when dropped.
pub struct Haproxy {
    child: Child,
}

impl Haproxy {
    /// `client_ca`: require a client certificate signed by it (mutual TLS).
    pub fn start(
        dir: &Path,
        port: u16,
        backend: &str,
        server: &Issued,
        client_ca: Option<&Path>,
    ) -> Haproxy {
        let verify = client_ca.map_or(String::new(), |ca| {
            format!(" verify required ca-file {}", ca.display())
        });
        let config = format!(
            "global\n  maxconn 512\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10m\n  timeout server 10m\n\
             frontend kafka_tls\n  bind 127.0.0.1:{port} ssl crt {crt}{verify}\n  default_backend broker\n\
             backend broker\n  server broker {backend}\n",
            crt = server.bundle.display(),
        );
        let path = dir.join(format!("haproxy-{port}.cfg"));
        std::fs::write(&path, config).unwrap();
        let binary = ["/usr/sbin/haproxy", "haproxy"]
            .into_iter()
            .find(|b| Path::new(b).exists())
            .unwrap_or("haproxy");
        let child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haproxy (Debian's haproxy package)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy { child }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

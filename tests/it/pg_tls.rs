//! TLS to Postgres against a real server: a second embedded PostgreSQL
//! with `ssl = on`, a server certificate (SAN `DNS:localhost` only) from a
//! CA the test makes with openssl, and a `pg_hba.conf` that accepts TCP
//! connections only over TLS: SCRAM-SHA-256 for `sluice_app`, the `cert`
//! method for `sluice_cert` (the harness's own connections use the unix
//! socket). verify-full with the right CA drains exactly; a wrong CA, a
//! host the certificate does not name and a plaintext connection fail in
//! `check` and at start-up, saying what to change.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use sluice::config::Config;
use sluice::embedded::postgres::{EmbeddedPostgres, Options};
use tokio_postgres::Client;

use crate::harness::*;
use crate::tls::Ca;

mod unencrypted;

const RECORDS: usize = 2_000;
const APP_PASSWORD: &str = "app-secret-pw";

/// The TLS server, and the client-side files (in its data directory, so
/// they go when it does).
struct TlsServer {
    pg: EmbeddedPostgres,
    ca: PathBuf,
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

const HBA: &str = "\
local all postgres trust
hostssl all sluice_cert 127.0.0.1/32 cert
hostssl all sluice_cert ::1/128 cert
hostssl all all 127.0.0.1/32 scram-sha-256
hostssl all all ::1/128 scram-sha-256
";

fn server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "pg-ca");
        let other = Ca::new(dir.path(), "other-ca");
        let server = ca.issue("server", "localhost", &["DNS:localhost"]);
        let client = ca.issue("client", "sluice_cert", &[]);
        let file = |name: &str, path: &PathBuf| (name.to_owned(), path.clone());
        let pg = EmbeddedPostgres::start_with(Options {
            settings: [
                ("ssl", "on"),
                ("ssl_cert_file", "'server.crt'"),
                ("ssl_key_file", "'server.key'"),
                ("ssl_ca_file", "'ca.crt'"),
                ("password_encryption", "'scram-sha-256'"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec(),
            hba: Some(HBA.to_owned()),
            files: vec![
                file("server.crt", &server.cert),
                file("server.key", &server.key),
                file("ca.crt", &ca.cert),
                file("other-ca.crt", &other.cert),
                file("client.crt", &client.cert),
                file("client.key", &client.key),
            ],
        })
        .expect("TLS PostgreSQL starts");
        let data = pg.data_dir();
        TlsServer {
            ca: data.join("ca.crt"),
            other_ca: data.join("other-ca.crt"),
            client_cert: data.join("client.crt"),
            client_key: data.join("client.key"),
            pg,
        }
    })
}

async fn admin(database: &str) -> Client {
    connect(&server().pg.admin_url(database)).await
}

/// A database owned by `owner` (created with its role on first use),
/// holding the orders table; and an admin client to it over the socket.
async fn fresh_tls_db(prefix: &str, owner: &str) -> (String, Client) {
    let setup = admin("postgres").await;
    let exists: bool = setup
        .query_one(
            "SELECT count(*) > 0 FROM pg_roles WHERE rolname = $1",
            &[&owner],
        )
        .await
        .unwrap()
        .get(0);
    if !exists {
        let password = match owner {
            "sluice_app" => format!("PASSWORD '{APP_PASSWORD}'"),
            _ => String::new(),
        };
        // Concurrent tests may race to create it.
        let _ = setup
            .batch_execute(&format!("CREATE ROLE {owner} LOGIN {password}"))
            .await;
    }
    let url = server().pg.create_database(prefix).await.unwrap();
    let name = url.rsplit('/').next().unwrap().to_owned();
    setup
        .batch_execute(&format!("ALTER DATABASE {name} OWNER TO {owner}"))
        .await
        .unwrap();
    let client = admin(&name).await;
    client
        .batch_execute(&format!(
            "{ORDERS_TABLE}; ALTER TABLE orders OWNER TO {owner}"
        ))
        .await
        .unwrap();
    (name, client)
}

/// `postgres://sluice_app:…@<host>:<port>/<db>?<params>`.
fn app_url(host: &str, db: &str, params: &str) -> String {
    format!(
        "postgres://sluice_app:{APP_PASSWORD}@{host}:{}/{db}?{params}",
        server().pg.port()
    )
}

fn ca_param(ca: &std::path::Path) -> String {
    format!("sslmode=verify-full&sslrootcert={}", ca.display())
}

fn config_for(brokers: &str, url: &str, group: &str) -> String {
    orders_config(brokers, url, "orders", group, "")
}

fn check_fails_naming(yaml: &str, needles: &[&str]) {
    let text = crate::check::check_fails_naming(yaml, needles);
    assert!(
        !text.contains(APP_PASSWORD),
        "check printed the password:\n{text}"
    );
}

fn check_passes(yaml: &str) -> String {
    crate::check::check_passes(yaml)
}

/// `sluice run` in-process stops at start-up with an error naming `needles`.
async fn run_fails_naming(yaml: &str, needles: &[&str]) {
    let error = crate::check::run_fails_naming(yaml, needles).await;
    assert!(
        !error.contains(APP_PASSWORD),
        "run printed the password: {error}"
    );
}

/// What the server says about a session opened with `yaml`'s settings.
async fn session(yaml: &str) -> (bool, Option<String>, String) {
    let config = Config::from_yaml(yaml, |_| None).expect("valid config");
    let client = sluice::pg::connect(&config.postgres)
        .await
        .expect("connects");
    let row = client
        .query_one(
            "SELECT s.ssl, s.client_dn, a.usename::text FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_right_ca_checks_and_drains_exactly() {
    let (db, client) = fresh_tls_db("pg_tls_drain", "sluice_app").await;
    let kafka = kafka("orders", 2);
    let end = produce_all(&kafka, "orders", orders(RECORDS, 2, 50)).await;
    let url = app_url("localhost", &db, &ca_param(&server().ca));
    let yaml = config_for(kafka.bootstrap_servers(), &url, "g-tls");
    let text = check_passes(&yaml);
    assert!(!text.contains("warning:"), "{text}");

    let sink = Sink::start(&yaml);
    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    // Every session sluice holds is encrypted.
    let (tls, plain): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'sluice_app'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(
        tls > 0 && plain == 0,
        "{tls} TLS and {plain} plaintext sessions"
    );
    sink.stop().await.expect("clean stop");
    assert_orders_exact(&client, RECORDS as i64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_a_certificate_problem_naming_the_file_and_host() {
    let (db, _client) = fresh_tls_db("pg_tls_wrong_ca", "sluice_app").await;
    let kafka = kafka("orders", 1);
    let other = server().other_ca.display().to_string();
    let url = app_url("localhost", &db, &ca_param(&server().other_ca));
    let yaml = config_for(kafka.bootstrap_servers(), &url, "g");
    let port = server().pg.port();
    let expected = format!(
        "TLS certificate problem: the server certificate of localhost:{port} is not signed by a CA in {other} (postgres.ssl.ca_file / sslrootcert)"
    );
    check_fails_naming(&yaml, &[&expected]);
    run_fails_naming(&yaml, &[&expected]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_needs_the_name_verify_ca_only_the_ca() {
    let (db, _client) = fresh_tls_db("pg_tls_names", "sluice_app").await;
    let kafka = kafka("orders", 1);
    let brokers = kafka.bootstrap_servers();
    let by_address = app_url("127.0.0.1", &db, &ca_param(&server().ca));
    check_fails_naming(
        &config_for(brokers, &by_address, "g"),
        &[
            "TLS certificate problem",
            &format!("127.0.0.1:{}", server().pg.port()),
            "is not valid for host 127.0.0.1 (it names localhost)",
            "verify-ca",
        ],
    );
    let verify_ca = by_address.replace("verify-full", "verify-ca");
    check_passes(&config_for(brokers, &verify_ca, "g"));
    let (tls, _, user) = session(&config_for(brokers, &verify_ca, "g")).await;
    assert!(tls && user == "sluice_app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_by_the_server_and_sluice_says_tls_is_required() {
    let (db, _client) = fresh_tls_db("pg_tls_plain", "sluice_app").await;
    let kafka = kafka("orders", 1);
    let url = app_url("localhost", &db, "sslmode=disable");
    let yaml = config_for(kafka.bootstrap_servers(), &url, "g");
    let needles = [
        "the server requires TLS",
        "sslmode disable",
        "set sslmode verify-full",
        "SQLSTATE 28000",
    ];
    check_fails_naming(&yaml, &needles);
    run_fails_naming(&yaml, &needles).await;
    // libpq's default, prefer, asks for TLS and gets it (unverified).
    let prefer = app_url("127.0.0.1", &db, "application_name=prefer");
    let (tls, _, _) = session(&config_for(kafka.bootstrap_servers(), &prefer, "g")).await;
    assert!(tls, "prefer uses TLS when the server offers it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cert_method_accepts_the_client_certificate() {
    let (db, _client) = fresh_tls_db("pg_tls_cert", "sluice_cert").await;
    let kafka = kafka("orders", 1);
    let s = server();
    let url = format!("postgres://sluice_cert@localhost:{}/{db}", s.pg.port());
    // Typed fields this time; the URL carries none of them.
    let yaml = config_for(kafka.bootstrap_servers(), &url, "g").replace(
        "  pool_size: 4\n",
        &format!(
            "  pool_size: 4\n  ssl:\n    mode: verify-full\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\n",
            s.ca.display(),
            s.client_cert.display(),
            s.client_key.display()
        ),
    );
    check_passes(&yaml);
    let (tls, client_dn, user) = session(&yaml).await;
    assert!(tls);
    assert_eq!(client_dn.as_deref(), Some("/CN=sluice_cert"));
    assert_eq!(user, "sluice_cert");
    // The same through the URL's libpq parameters.
    let by_url = format!(
        "{url}?{}&sslcert={}&sslkey={}",
        ca_param(&s.ca),
        s.client_cert.display(),
        s.client_key.display()
    );
    check_passes(&config_for(kafka.bootstrap_servers(), &by_url, "g"));
    // Without the certificate the server refuses, and sluice says why.
    check_fails_naming(
        &config_for(
            kafka.bootstrap_servers(),
            &format!("{url}?{}", ca_param(&s.ca)),
            "g",
        ),
        &[
            "TLS client certificate problem",
            "no client certificate was sent",
            "postgres.ssl.cert_file",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_use_scram_and_a_wrong_one_is_an_authentication_error() {
    let (db, _client) = fresh_tls_db("pg_tls_scram", "sluice_app").await;
    let stored: String = admin("postgres")
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'sluice_app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");
    let kafka = kafka("orders", 1);
    let right = app_url("localhost", &db, &ca_param(&server().ca));
    let (tls, _, user) = session(&config_for(kafka.bootstrap_servers(), &right, "g")).await;
    assert!(tls && user == "sluice_app");
    let wrong = right.replace(APP_PASSWORD, "not-the-password");
    let yaml = config_for(kafka.bootstrap_servers(), &wrong, "g");
    let needles = [
        "authentication failed for user sluice_app",
        "password authentication failed",
        "SQLSTATE 28P01",
    ];
    check_fails_naming(&yaml, &needles);
    run_fails_naming(&yaml, &needles).await;
}

//! `starwal run` loading over HTTPS: a TLS terminator (tokio-rustls, the harness cluster's test
//! CA and `localhost` certificate) in front of the sim's FE HTTP port, the agent given
//! `https://localhost:<port>` and trusting the test CA through `SSL_CERT_FILE` (OpenSSL's
//! default verify path, which libcurl uses). Every Stream Load starts at the FE, so the rows
//! arriving prove the TLS path; the FE's 307 then names the BE over plain HTTP, as a StarRocks
//! BE (no TLS of its own) would. A second agent that does not trust the CA refuses the
//! certificate and says so in its log.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::agent::{diff, source_rows, start_sim, target_rows, wait_for_rows, AgentSpec};
use crate::harness::{agent::wait_until, Cluster};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts TLS on a free port and relays each connection's plaintext to `upstream`. Returns the
/// port and a count of completed handshakes.
async fn tls_terminator(dir: &Path, upstream: std::net::SocketAddr) -> (u16, Arc<AtomicUsize>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .expect("server certificate")
        .collect::<Result<_, _>>()
        .expect("server certificate PEM");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("TLS server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, handshakes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_loads_over_https() {
    let cluster = Cluster::shared();
    let db = cluster.create_database("engine_https").await;
    let client = db.owner_client().await;
    client
        .batch_execute("CREATE TABLE notes (id bigint PRIMARY KEY, body text, n int)")
        .await
        .unwrap();
    let sim = start_sim();
    let fe = sim.addrs().fe_http;
    let (port, handshakes) = tls_terminator(&cluster.dir().join("tls"), fe).await;
    let https = format!("https://localhost:{port}");
    let ca = cluster.ca_cert_path();
    let spec = AgentSpec::new(&db, &sim, "public.notes")
        .var("STARWAL_STARROCKS_URL", &https)
        .var("SSL_CERT_FILE", ca.to_str().unwrap());
    let agent = spec.start_streaming().await;
    client
        .batch_execute(
            "INSERT INTO notes SELECT g, 'line ' || g || E'\\nsecond', g FROM generate_series(1, 200) g;
             UPDATE notes SET n = n * 2 WHERE id % 3 = 0;
             DELETE FROM notes WHERE id % 10 = 0;",
        )
        .await
        .unwrap();
    let source = source_rows(&client, "SELECT id::text, body, n::text FROM notes").await;
    let target = wait_for_rows(&source, TIMEOUT, || {
        target_rows(&sim, "notes", &["id", "body", "n"])
    })
    .await;
    assert_eq!(
        source,
        target,
        "{}\n{}",
        diff(&source, &target),
        agent.log()
    );
    assert!(
        handshakes.load(Ordering::SeqCst) > 0,
        "no TLS handshake reached the terminator"
    );
    agent.stop_cleanly();

    // Without the CA the certificate is refused, and the log says so.
    let untrusting = AgentSpec::new(&db, &sim, "public.notes")
        .var("STARWAL_STARROCKS_URL", &https)
        .var(
            "SSL_CERT_FILE",
            cluster.other_ca_cert_path().to_str().unwrap(),
        );
    let agent = untrusting.start();
    let refused = wait_until(TIMEOUT, || {
        let log = agent.log();
        log.contains("certificate") || log.contains("SSL")
    })
    .await;
    assert!(refused, "no TLS error in the log:\n{}", agent.log());
}

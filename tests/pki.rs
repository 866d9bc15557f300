//! Checks certificates from `policy::pki` against real TLS and OpenSSL: mutual-TLS handshakes
//! with rustls (aws-lc-rs provider) over loopback TCP, and the `openssl` CLI's `verify` and
//! `x509 -text`. Needs the `openssl` binary on PATH but no Kubernetes cluster.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use medianest_operator::policy::pki::*;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, RootCertStore, ServerConfig,
    ServerConnection, StreamOwned,
};

const SERVER_NAME: &str = "api.media.svc";
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
const PAYLOAD: u8 = 0x5a;

/// Returns the current time. `Timestamp::now` needs jiff's `std` feature, which k8s-openapi
/// does not enable by itself.
fn now() -> Timestamp {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Timestamp::from_second(i64::try_from(elapsed.as_secs()).unwrap()).unwrap()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn new_ca(name: &str, algorithm: KeyAlgorithm) -> CaMaterial {
    let now = now();
    generate_ca(
        name,
        algorithm,
        now - SignedDuration::from_hours(1),
        now + SignedDuration::from_hours(24),
    )
    .unwrap()
}

fn new_leaf(ca: &CaMaterial, common_name: &str, algorithm: KeyAlgorithm) -> LeafMaterial {
    let now = now();
    let request = LeafRequest {
        common_name: common_name.to_owned(),
        dns_names: vec![SERVER_NAME.to_owned()],
        ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        algorithm,
        not_before: now - SignedDuration::from_hours(1),
        not_after: now + SignedDuration::from_hours(1),
    };
    issue_leaf(ca, &request).unwrap()
}

fn roots(cas: &[&CaMaterial]) -> Arc<RootCertStore> {
    let mut store = RootCertStore::empty();
    for ca in cas {
        let der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        store.add(der).unwrap();
    }
    Arc::new(store)
}

fn identity(leaf: &LeafMaterial) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key.expose().as_bytes()).unwrap();
    (chain, key)
}

/// Builds a server that presents `leaf` and requires a client certificate from `trusted`.
fn server_config(leaf: &LeafMaterial, trusted: &[&CaMaterial]) -> Arc<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(trusted), provider())
        .build()
        .unwrap();
    let (chain, key) = identity(leaf);
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// Builds a client that presents `leaf` and trusts servers signed by `trusted`.
fn client_config(leaf: &LeafMaterial, trusted: &[&CaMaterial]) -> Arc<ClientConfig> {
    let (chain, key) = identity(leaf);
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(trusted))
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// Results of one connection: the byte each side read, or the error that ended it.
struct Exchange {
    server: io::Result<u8>,
    client: io::Result<u8>,
}

/// Connects a client to a server on 127.0.0.1: the client sends one byte, the server echoes
/// it back.
fn exchange(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Exchange {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server_thread = thread::spawn(move || -> io::Result<u8> {
        let (socket, _) = listener.accept()?;
        socket.set_read_timeout(Some(SOCKET_TIMEOUT))?;
        socket.set_write_timeout(Some(SOCKET_TIMEOUT))?;
        let connection = ServerConnection::new(server).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(connection, socket);
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte)?;
        stream.write_all(&byte)?;
        stream.flush()?;
        Ok(byte[0])
    });

    let client_result = (|| -> io::Result<u8> {
        let socket = TcpStream::connect(address)?;
        socket.set_read_timeout(Some(SOCKET_TIMEOUT))?;
        socket.set_write_timeout(Some(SOCKET_TIMEOUT))?;
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let connection = ClientConnection::new(client, name).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(connection, socket);
        stream.write_all(&[PAYLOAD])?;
        stream.flush()?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte)?;
        Ok(byte[0])
    })();

    Exchange {
        server: server_thread.join().unwrap(),
        client: client_result,
    }
}

/// Returns the rustls error inside an I/O error from a TLS stream.
fn tls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

fn assert_succeeds(exchange: &Exchange) {
    assert_eq!(
        exchange.server.as_ref().map_err(ToString::to_string),
        Ok(&PAYLOAD),
        "server side"
    );
    assert_eq!(
        exchange.client.as_ref().map_err(ToString::to_string),
        Ok(&PAYLOAD),
        "client side"
    );
}

#[test]
fn mutual_tls_succeeds_for_every_algorithm() {
    for algorithm in KeyAlgorithm::ALL {
        let ca = new_ca("CA A", algorithm);
        let server_leaf = new_leaf(&ca, "server", algorithm);
        let client_leaf = new_leaf(&ca, "client", algorithm);
        let exchange = exchange(
            server_config(&server_leaf, &[&ca]),
            client_config(&client_leaf, &[&ca]),
        );
        assert!(
            exchange.server.is_ok(),
            "{algorithm}: {:?}",
            exchange.server
        );
        assert!(
            exchange.client.is_ok(),
            "{algorithm}: {:?}",
            exchange.client
        );
        assert_succeeds(&exchange);
    }
}

#[test]
fn client_from_other_ca_rejected() {
    let ca_a = new_ca("CA A", KeyAlgorithm::EcdsaP256);
    let ca_b = new_ca("CA B", KeyAlgorithm::EcdsaP256);
    let server_leaf = new_leaf(&ca_a, "server", KeyAlgorithm::EcdsaP256);
    let client_leaf = new_leaf(&ca_b, "client", KeyAlgorithm::EcdsaP256);
    let exchange = exchange(
        server_config(&server_leaf, &[&ca_a]),
        client_config(&client_leaf, &[&ca_a]),
    );
    let server_error = exchange
        .server
        .expect_err("the server must reject the client");
    assert_eq!(
        tls_error(&server_error),
        Some(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        )),
        "{server_error}"
    );
    assert!(exchange.client.is_err(), "{:?}", exchange.client);
}

#[test]
fn server_from_other_ca_rejected() {
    let ca_a = new_ca("CA A", KeyAlgorithm::EcdsaP256);
    let ca_b = new_ca("CA B", KeyAlgorithm::EcdsaP256);
    let server_leaf = new_leaf(&ca_b, "server", KeyAlgorithm::EcdsaP256);
    let client_leaf = new_leaf(&ca_a, "client", KeyAlgorithm::EcdsaP256);
    let exchange = exchange(
        server_config(&server_leaf, &[&ca_a]),
        client_config(&client_leaf, &[&ca_a]),
    );
    let client_error = exchange
        .client
        .expect_err("the client must reject the server");
    assert_eq!(
        tls_error(&client_error),
        Some(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        )),
        "{client_error}"
    );
    assert!(exchange.server.is_err(), "{:?}", exchange.server);
}

#[test]
fn rotation_bundle_accepts_both_cas() {
    let ca_a = new_ca("CA A", KeyAlgorithm::EcdsaP256);
    let ca_b = new_ca("CA B", KeyAlgorithm::Ed25519);
    let bundle = [&ca_a, &ca_b];
    let leaf_a = |name| new_leaf(&ca_a, name, KeyAlgorithm::EcdsaP256);
    let leaf_b = |name| new_leaf(&ca_b, name, KeyAlgorithm::Ed25519);
    let cases = [
        ("server A, client B", leaf_a("server"), leaf_b("client")),
        ("server B, client A", leaf_b("server"), leaf_a("client")),
    ];
    for (case, server_leaf, client_leaf) in cases {
        let exchange = exchange(
            server_config(&server_leaf, &bundle),
            client_config(&client_leaf, &bundle),
        );
        assert!(exchange.server.is_ok(), "{case}: {:?}", exchange.server);
        assert!(exchange.client.is_ok(), "{case}: {:?}", exchange.client);
        assert_succeeds(&exchange);
    }
}

#[test]
fn check_leaf_agrees_with_rotation_bundle() {
    let ca_a = new_ca("CA A", KeyAlgorithm::EcdsaP256);
    let ca_b = new_ca("CA B", KeyAlgorithm::EcdsaP256);
    let leaf = new_leaf(&ca_b, "server", KeyAlgorithm::EcdsaP256);
    let verified = check_leaf(
        &leaf.cert_pem,
        leaf.key.expose(),
        &[SERVER_NAME.to_owned()],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        &[&ca_a.cert_pem, &ca_b.cert_pem],
        now(),
    )
    .unwrap();
    assert_eq!(verified.ca_index, 1);
    assert_eq!(verified.info.issuer_fingerprint, Some(ca_b.fingerprint));
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "medianest-pki-{}-{unique}-{label}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.0.join(name), contents).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the `openssl` CLI in `dir`. Panics if the binary is missing, so the test fails
/// instead of skipping.
fn run_openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "running the openssl CLI failed ({error}); these tests need it on PATH, for \
                 example from `apt-get install openssl`"
            )
        })
}

/// Runs `openssl` and returns its stdout, panicking with stderr on a non-zero exit.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = run_openssl(dir, args);
    assert!(
        output.status.success(),
        "openssl {} failed with {}: {}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn assert_openssl_verifies(dir: &Path, ca_file: &str, leaf_file: &str) {
    for purpose in ["sslserver", "sslclient"] {
        let stdout = openssl(
            dir,
            &[
                "verify",
                "-x509_strict",
                "-purpose",
                purpose,
                "-CAfile",
                ca_file,
                leaf_file,
            ],
        );
        assert_eq!(
            stdout.trim(),
            format!("{leaf_file}: OK"),
            "purpose {purpose}"
        );
    }
}

#[test]
fn openssl_verifies_every_algorithm() {
    for algorithm in KeyAlgorithm::ALL {
        let dir = TempDir::new(algorithm.as_str());
        let ca = new_ca("MediaNest CA", algorithm);
        let leaf = new_leaf(&ca, SERVER_NAME, algorithm);
        dir.write("ca.pem", &ca.cert_pem);
        dir.write("leaf.pem", &leaf.cert_pem);
        dir.write("leaf.key", leaf.key.expose());

        assert_openssl_verifies(&dir.0, "ca.pem", "leaf.pem");

        let leaf_text = openssl(&dir.0, &["x509", "-in", "leaf.pem", "-noout", "-text"]);
        for expected in [
            "DNS:api.media.svc",
            "IP Address:127.0.0.1",
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "CA:FALSE",
            "Digital Signature",
            "Subject: CN = api.media.svc",
            "Issuer: CN = MediaNest CA",
        ] {
            assert!(
                leaf_text.contains(expected),
                "{algorithm}: {expected:?} missing in\n{leaf_text}"
            );
        }
        assert_eq!(
            leaf_text.contains("Key Encipherment"),
            algorithm.is_rsa(),
            "{algorithm}: keyEncipherment only for RSA"
        );

        let ca_text = openssl(&dir.0, &["x509", "-in", "ca.pem", "-noout", "-text"]);
        for expected in ["CA:TRUE, pathlen:0", "Certificate Sign, CRL Sign"] {
            assert!(
                ca_text.contains(expected),
                "{algorithm}: {expected:?} missing in\n{ca_text}"
            );
        }

        let key_public = openssl(&dir.0, &["pkey", "-in", "leaf.key", "-pubout"]);
        let cert_public = openssl(&dir.0, &["x509", "-in", "leaf.pem", "-noout", "-pubkey"]);
        assert_eq!(
            key_public, cert_public,
            "{algorithm}: key does not match certificate"
        );
    }
}

#[test]
fn openssl_fingerprint_matches() {
    let dir = TempDir::new("fingerprint");
    let ca = new_ca("MediaNest CA", KeyAlgorithm::EcdsaP256);
    dir.write("ca.pem", &ca.cert_pem);
    let stdout = openssl(
        &dir.0,
        &["x509", "-in", "ca.pem", "-noout", "-fingerprint", "-sha256"],
    );
    let openssl_hex = stdout
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase();
    assert_eq!(openssl_hex, ca.fingerprint);
}

#[test]
fn openssl_rejects_leaf_from_other_ca() {
    let dir = TempDir::new("other-ca");
    let ca_a = new_ca("CA A", KeyAlgorithm::EcdsaP256);
    let ca_b = new_ca("CA B", KeyAlgorithm::EcdsaP256);
    let leaf = new_leaf(&ca_a, SERVER_NAME, KeyAlgorithm::EcdsaP256);
    dir.write("b.pem", &ca_b.cert_pem);
    dir.write("leaf.pem", &leaf.cert_pem);
    let output = run_openssl(&dir.0, &["verify", "-CAfile", "b.pem", "leaf.pem"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("unable to get local issuer certificate"),
        "{text}"
    );
}

/// Writes an OpenSSL config for a self-signed certificate with the given basicConstraints and
/// keyUsage.
fn write_openssl_config(dir: &TempDir, basic_constraints: &str, key_usage: &str) {
    let config = format!(
        "[req]\n\
         distinguished_name = dn\n\
         x509_extensions = ext\n\
         prompt = no\n\
         [dn]\n\
         CN = OpenSSL CA\n\
         [ext]\n\
         basicConstraints = {basic_constraints}\n\
         keyUsage = {key_usage}\n\
         subjectKeyIdentifier = hash\n"
    );
    dir.write("ca.cnf", &config);
}

/// Creates `ca.key` and `ca.pem` with `openssl req -x509`, with `key_options` selecting the
/// key type.
fn openssl_ca(dir: &TempDir, key_options: &[&str]) {
    let mut args = vec!["req", "-x509", "-new", "-nodes"];
    args.extend_from_slice(key_options);
    args.extend_from_slice(&[
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-config", "ca.cnf",
    ]);
    openssl(&dir.0, &args);
}

/// An OpenSSL-generated CA: `openssl req` key options, an optional `openssl` command that
/// rewrites `ca.key` in another format, and the algorithm `load_ca` should report.
struct OpensslCa {
    name: &'static str,
    key_options: &'static [&'static str],
    convert_key: &'static [&'static str],
    algorithm: KeyAlgorithm,
}

#[test]
fn openssl_generated_ca_loads_and_issues() {
    let ec: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let rsa: &[&str] = &["-newkey", "rsa:3072"];
    let cases = [
        OpensslCa {
            name: "ec-pkcs8",
            key_options: ec,
            convert_key: &[],
            algorithm: KeyAlgorithm::EcdsaP256,
        },
        OpensslCa {
            name: "ec-sec1",
            key_options: ec,
            convert_key: &["ec", "-in", "ca.key", "-out", "ca.key"],
            algorithm: KeyAlgorithm::EcdsaP256,
        },
        OpensslCa {
            name: "rsa-pkcs8",
            key_options: rsa,
            convert_key: &[],
            algorithm: KeyAlgorithm::Rsa3072,
        },
        OpensslCa {
            name: "rsa-pkcs1",
            key_options: rsa,
            convert_key: &["rsa", "-traditional", "-in", "ca.key", "-out", "ca.key"],
            algorithm: KeyAlgorithm::Rsa3072,
        },
        OpensslCa {
            name: "ed25519",
            key_options: &["-newkey", "ed25519"],
            convert_key: &[],
            algorithm: KeyAlgorithm::Ed25519,
        },
    ];
    for OpensslCa {
        name: case,
        key_options,
        convert_key,
        algorithm,
    } in cases
    {
        let dir = TempDir::new(case);
        write_openssl_config(
            &dir,
            "critical, CA:TRUE, pathlen:0",
            "critical, keyCertSign, cRLSign",
        );
        openssl_ca(&dir, key_options);
        if !convert_key.is_empty() {
            openssl(&dir.0, convert_key);
        }
        let key_pem = dir.read("ca.key");
        match case {
            "ec-sec1" => assert!(key_pem.contains("BEGIN EC PRIVATE KEY"), "{case}"),
            "rsa-pkcs1" => assert!(key_pem.contains("BEGIN RSA PRIVATE KEY"), "{case}"),
            _ => assert!(key_pem.contains("BEGIN PRIVATE KEY"), "{case}"),
        }

        // Read the clock after openssl has written the CA, whose notBefore is its own "now".
        let now = now();
        let ca = load_ca(&dir.read("ca.pem"), &key_pem, now)
            .unwrap_or_else(|error| panic!("{case}: {error}"));
        assert_eq!(ca.algorithm, algorithm, "{case}");
        let leaf = new_leaf(&ca, SERVER_NAME, KeyAlgorithm::EcdsaP256);
        dir.write("leaf.pem", &leaf.cert_pem);
        assert_openssl_verifies(&dir.0, "ca.pem", "leaf.pem");

        let verified = check_leaf(
            &leaf.cert_pem,
            leaf.key.expose(),
            &[SERVER_NAME.to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            &[&ca.cert_pem],
            now,
        );
        assert!(verified.is_ok(), "{case}: {verified:?}");
    }
}

#[test]
fn openssl_non_ca_rejected_by_load_ca() {
    let dir = TempDir::new("not-ca");
    write_openssl_config(&dir, "critical, CA:FALSE", "critical, digitalSignature");
    openssl_ca(
        &dir,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let result = load_ca(&dir.read("ca.pem"), &dir.read("ca.key"), now());
    assert!(matches!(result, Err(PkiError::NotCa { .. })), "{result:?}");
}

#[test]
fn openssl_ca_without_cert_sign_rejected() {
    let dir = TempDir::new("no-cert-sign");
    write_openssl_config(&dir, "critical, CA:TRUE", "critical, digitalSignature");
    openssl_ca(
        &dir,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let result = load_ca(&dir.read("ca.pem"), &dir.read("ca.key"), now());
    assert!(matches!(result, Err(PkiError::NotCa { .. })), "{result:?}");
}

#[test]
fn openssl_p521_ca_unsupported() {
    let dir = TempDir::new("p521");
    write_openssl_config(
        &dir,
        "critical, CA:TRUE, pathlen:0",
        "critical, keyCertSign, cRLSign",
    );
    openssl_ca(
        &dir,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
    );
    let result = load_ca(&dir.read("ca.pem"), &dir.read("ca.key"), now());
    assert!(
        matches!(result, Err(PkiError::UnsupportedKey { .. })),
        "{result:?}"
    );
}

//! Certificate authority for mutual TLS: generates and loads CAs, issues leaf certificates and
//! checks stored ones.
//!
//! Certificates are built with rcgen, parsed with x509-parser and chain-verified with
//! rustls-webpki. All signing and verification runs on aws-lc-rs, the crypto provider of the kube
//! client's rustls. Keys and serial numbers come from the aws-lc-rs CSPRNG, which aws-lc seeds
//! from the OS. Functions take the current time as a parameter and never read the clock.
//!
//! Key generation is CPU-bound and synchronous, so async callers should run `generate_ca` and
//! `issue_leaf` under `tokio::task::spawn_blocking`. RSA-4096 issuance averaged 0.6 s in one run
//! and 1.2 s in another of `cargo bench --bench pki` on a 2-core Intel Xeon VM, because the
//! prime search behind each key takes a random time.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::pem::Pem;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroize;

/// Length of generated serial numbers in bytes (RFC 5280 allows up to 20).
const SERIAL_LEN: usize = 16;

/// Maximum length of a common name (`ub-common-name` in RFC 5280).
const MAX_COMMON_NAME_LEN: usize = 64;

/// 1950-01-01T00:00:00Z. RFC 5280 section 4.1.2.5 encodes validity as UTCTime from 1950 and as
/// GeneralizedTime from 2050, so earlier instants have no defined encoding.
const EARLIEST_SECOND: i64 = -631_152_000;

/// 9999-12-31T23:59:59Z, the latest instant an X.509 validity field can encode
/// (GeneralizedTime).
const LATEST_SECOND: i64 = 253_402_300_799;

/// Key type and size of a generated key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256, signing with SHA-256.
    EcdsaP256,
    /// ECDSA on NIST P-384, signing with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA with a 2048-bit modulus, signing with PKCS #1 v1.5 and SHA-256.
    Rsa2048,
    /// RSA with a 3072-bit modulus, signing with PKCS #1 v1.5 and SHA-256.
    Rsa3072,
    /// RSA with a 4096-bit modulus, signing with PKCS #1 v1.5 and SHA-256.
    Rsa4096,
}

impl KeyAlgorithm {
    /// Every supported algorithm, fastest key generation first.
    pub const ALL: [KeyAlgorithm; 6] = [
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];

    /// Returns the canonical name, for example `ECDSA-P256`, which `from_str` accepts back.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
            KeyAlgorithm::EcdsaP384 => "ECDSA-P384",
            KeyAlgorithm::Ed25519 => "Ed25519",
            KeyAlgorithm::Rsa2048 => "RSA-2048",
            KeyAlgorithm::Rsa3072 => "RSA-3072",
            KeyAlgorithm::Rsa4096 => "RSA-4096",
        }
    }

    /// Returns true for the RSA variants.
    pub const fn is_rsa(self) -> bool {
        matches!(
            self,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
        )
    }

    /// Generates a fresh key pair from the aws-lc-rs CSPRNG. RSA-4096 takes up to seconds.
    fn generate_key(self) -> Result<KeyPair, PkiError> {
        let generated = match self {
            KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyAlgorithm::Ed25519 => return generate_ed25519_pkcs8v1(),
            KeyAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
            }
            KeyAlgorithm::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)
            }
            KeyAlgorithm::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)
            }
        };
        generated.map_err(|source| PkiError::KeyGeneration {
            algorithm: self,
            source,
        })
    }
}

/// Generates an Ed25519 key stored as PKCS #8 v1 (RFC 8410). rcgen's own generator writes
/// PKCS #8 v2 with the public key attached, which OpenSSL 3.0.19 rejects as "unsupported".
fn generate_ed25519_pkcs8v1() -> Result<KeyPair, PkiError> {
    let failed = |source| PkiError::KeyGeneration {
        algorithm: KeyAlgorithm::Ed25519,
        source,
    };
    let document = aws_lc_rs::signature::Ed25519KeyPair::generate()
        .and_then(|key| key.to_pkcs8v1())
        .map_err(|_| failed(rcgen::Error::RingUnspecified))?;
    let der = PrivateKeyDer::Pkcs8(document.as_ref().to_vec().into());
    KeyPair::try_from(&der).map_err(failed)
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = PkiError;

    /// Parses a name returned by `as_str`, ignoring ASCII case.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|algorithm| algorithm.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| PkiError::UnknownAlgorithm {
                value: value.to_owned(),
            })
    }
}

/// PEM text of a private key.
///
/// `Debug` and `Display` print `[redacted]`, and the buffer is zeroed on drop.
/// NOTE: copies that rcgen and aws-lc-rs make while generating or parsing the key are not zeroed.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKeyPem(String);

impl PrivateKeyPem {
    /// Wraps PEM text read from a Secret. The text is not checked here.
    pub fn new(pem: String) -> Self {
        PrivateKeyPem(pem)
    }

    /// Returns the PEM text. Call it only to write the key into a Secret or a TLS config.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for PrivateKeyPem {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Errors from generating, loading and issuing certificates. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The text has no PEM block or a malformed one.
    #[error("the {input} is not valid PEM: {reason}")]
    NotPem { input: &'static str, reason: String },
    /// A PEM block is not an X.509 certificate, or there is not exactly one where one is required.
    #[error("the {input} is not a valid X.509 certificate: {reason}")]
    NotCertificate { input: &'static str, reason: String },
    /// The certificate lacks basicConstraints CA:TRUE or the keyCertSign key usage.
    #[error("the CA certificate is not a CA: {reason}")]
    NotCa { reason: String },
    /// The PEM block is not a plaintext private key that aws-lc-rs can load.
    #[error("the {input} is not a valid private key: {reason}")]
    InvalidKey { input: &'static str, reason: String },
    /// The private key's public half differs from the certificate's public key.
    #[error("the {input} does not match the public key in the certificate")]
    KeyMismatch { input: &'static str },
    /// The key is of a type or size outside `KeyAlgorithm`.
    #[error(
        "the {input} has an unsupported key type ({found}); supported: ECDSA-P256, ECDSA-P384, \
         Ed25519, RSA-2048, RSA-3072, RSA-4096"
    )]
    UnsupportedKey { input: &'static str, found: String },
    /// The CA certificate's notAfter is before `now`.
    #[error("the CA certificate expired at {not_after} (now is {now}); rotate the CA")]
    Expired {
        not_after: Timestamp,
        now: Timestamp,
    },
    /// The CA certificate's notBefore is after `now`.
    #[error("the CA certificate is not valid before {not_before} (now is {now})")]
    NotYetValid {
        not_before: Timestamp,
        now: Timestamp,
    },
    /// The requested validity period is empty or outside what X.509 can encode.
    #[error("invalid validity period {not_before} to {not_after}: {reason}")]
    InvalidValidity {
        not_before: Timestamp,
        not_after: Timestamp,
        reason: String,
    },
    /// The common name is empty or too long.
    #[error("invalid common name {name:?}: {reason}")]
    InvalidCommonName { name: String, reason: String },
    /// A requested DNS name is not a valid host name or wildcard.
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidDnsName { name: String, reason: String },
    /// `KeyAlgorithm::from_str` got a name it does not know.
    #[error(
        "unknown key algorithm {value:?}; expected one of ECDSA-P256, ECDSA-P384, Ed25519, \
         RSA-2048, RSA-3072, RSA-4096"
    )]
    UnknownAlgorithm { value: String },
    /// aws-lc-rs failed to generate a key pair.
    #[error("generating a {algorithm} key pair failed: {source}")]
    KeyGeneration {
        algorithm: KeyAlgorithm,
        source: rcgen::Error,
    },
    /// rcgen failed to build or sign a certificate.
    #[error("signing the certificate failed: {0}")]
    Signing(rcgen::Error),
    /// The aws-lc-rs CSPRNG returned an error.
    #[error("reading random bytes from the aws-lc-rs CSPRNG failed")]
    Random,
}

/// A CA certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaMaterial {
    /// PEM of the self-signed CA certificate.
    pub cert_pem: String,
    /// PEM of the CA's private key.
    pub key: PrivateKeyPem,
    /// Key type of the CA, which also fixes the signature algorithm of the leaves it issues.
    pub algorithm: KeyAlgorithm,
    /// Start of validity, in whole seconds.
    pub not_before: Timestamp,
    /// End of validity, in whole seconds.
    pub not_after: Timestamp,
    /// Lowercase hex SHA-256 of the certificate's DER.
    pub fingerprint: String,
}

/// Generates a self-signed CA with a fresh key.
///
/// The certificate has basicConstraints CA:TRUE with pathLenConstraint 0, keyUsage keyCertSign
/// and cRLSign, a subject key identifier and a random positive 16-byte serial. Validity is
/// truncated to whole seconds and must lie between 1950 and 9999 with `not_before < not_after`.
/// Blocks for up to seconds for RSA-4096, so call it from `spawn_blocking`.
pub fn generate_ca(
    common_name: &str,
    algorithm: KeyAlgorithm,
    not_before: Timestamp,
    not_after: Timestamp,
) -> Result<CaMaterial, PkiError> {
    check_common_name(common_name)?;
    let validity = Validity::new(not_before, not_after)?;
    let key = algorithm.generate_key()?;

    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.not_before = validity.not_before_offset()?;
    params.not_after = validity.not_after_offset()?;

    let cert = params.self_signed(&key).map_err(PkiError::Signing)?;
    Ok(CaMaterial {
        cert_pem: cert.pem(),
        key: PrivateKeyPem(key.serialize_pem()),
        algorithm,
        not_before: validity.not_before,
        not_after: validity.not_after,
        fingerprint: sha256_hex(cert.der()),
    })
}

/// Loads a CA from PEM text, for example from an existing Secret.
///
/// `cert_pem` must hold exactly one certificate with basicConstraints CA:TRUE (and keyCertSign
/// if it has a keyUsage extension) whose key is a `KeyAlgorithm`. `key_pem` must be its
/// unencrypted private key as PKCS #8 (`PRIVATE KEY`), PKCS #1 (`RSA PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`). The CA must be valid at `now`. Both PEM texts are returned unchanged.
pub fn load_ca(cert_pem: &str, key_pem: &str, now: Timestamp) -> Result<CaMaterial, PkiError> {
    let ca = LoadedCa::parse(cert_pem, key_pem)?;
    if now > ca.not_after {
        return Err(PkiError::Expired {
            not_after: ca.not_after,
            now,
        });
    }
    if now < ca.not_before {
        return Err(PkiError::NotYetValid {
            not_before: ca.not_before,
            now,
        });
    }
    Ok(CaMaterial {
        cert_pem: cert_pem.to_owned(),
        key: PrivateKeyPem(key_pem.to_owned()),
        algorithm: ca.algorithm,
        not_before: ca.not_before,
        not_after: ca.not_after,
        fingerprint: sha256_hex(&ca.der),
    })
}

/// Names, key type and validity of a leaf certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRequest {
    /// Subject common name, 1 to 64 characters.
    pub common_name: String,
    /// DNS subjectAltNames: host names or wildcards such as `*.svc.cluster.local`.
    pub dns_names: Vec<String>,
    /// IP address subjectAltNames.
    pub ip_addresses: Vec<IpAddr>,
    /// Key type of the leaf's fresh key.
    pub algorithm: KeyAlgorithm,
    /// Requested start of validity.
    pub not_before: Timestamp,
    /// Requested end of validity.
    pub not_after: Timestamp,
}

/// An issued leaf certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafMaterial {
    /// PEM of the leaf certificate alone, without the CA.
    pub cert_pem: String,
    /// PEM (PKCS #8) of the leaf's private key.
    pub key: PrivateKeyPem,
    /// Start of validity as written in the certificate.
    pub not_before: Timestamp,
    /// End of validity as written in the certificate.
    pub not_after: Timestamp,
    /// Lowercase hex of the serial number's 16 bytes.
    pub serial_hex: String,
}

/// Issues a leaf certificate for mutual TLS, signed by `ca`, with a fresh key on every call.
///
/// The leaf has:
/// - subjectAltNames: the request's DNS names, then its IP addresses, without duplicates
///   (either list may be empty);
/// - keyUsage digitalSignature, plus keyEncipherment for RSA keys;
/// - extendedKeyUsage serverAuth and clientAuth, and basicConstraints CA:FALSE;
/// - an authority key identifier and a random positive 16-byte serial;
/// - the requested validity clipped to the CA's, so it never ends after the CA.
///
/// Fails if the clipped validity is empty. Blocks for up to seconds for RSA-4096, so call it
/// from `spawn_blocking`.
pub fn issue_leaf(ca: &CaMaterial, request: &LeafRequest) -> Result<LeafMaterial, PkiError> {
    check_common_name(&request.common_name)?;
    let subject_alt_names = subject_alt_names(request)?;
    let requested = Validity::new(request.not_before, request.not_after)?;

    let loaded = LoadedCa::parse(&ca.cert_pem, ca.key.expose())?;
    let not_before = requested.not_before.max(loaded.not_before);
    let not_after = requested.not_after.min(loaded.not_after);
    let validity = Validity::new(not_before, not_after).map_err(|_| PkiError::InvalidValidity {
        not_before: requested.not_before,
        not_after: requested.not_after,
        reason: format!(
            "it does not overlap the CA's validity {} to {}",
            loaded.not_before, loaded.not_after
        ),
    })?;
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(loaded.der), loaded.key)
        .map_err(PkiError::Signing)?;

    let key = request.algorithm.generate_key()?;
    let serial = random_serial()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&request.common_name);
    params.subject_alt_names = subject_alt_names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if request.algorithm.is_rsa() {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = validity.not_before_offset()?;
    params.not_after = validity.not_after_offset()?;

    let cert = params.signed_by(&key, &issuer).map_err(PkiError::Signing)?;
    Ok(LeafMaterial {
        cert_pem: cert.pem(),
        key: PrivateKeyPem(key.serialize_pem()),
        not_before: validity.not_before,
        not_after: validity.not_after,
        serial_hex: hex(&serial),
    })
}

/// Fields of a parsed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
    /// DNS subjectAltNames, in certificate order.
    pub dns_names: Vec<String>,
    /// IP address subjectAltNames, in certificate order.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether basicConstraints has CA:TRUE.
    pub is_ca: bool,
    /// Key type, or `None` for a key outside `KeyAlgorithm`.
    pub algorithm: Option<KeyAlgorithm>,
    /// Lowercase hex of the serial number's DER content octets.
    pub serial_hex: String,
    /// Lowercase hex SHA-256 of the certificate's DER.
    pub fingerprint: String,
    /// Fingerprint of the trusted CA certificate that signed this one. `check_leaf` fills it,
    /// `inspect` leaves it `None`.
    pub issuer_fingerprint: Option<String>,
}

/// Parses the first certificate in `cert_pem` without verifying it.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, PkiError> {
    let input = "certificate";
    let ders = decode_certificates(cert_pem, input)?;
    let cert = parse_certificate(&ders[0], input)?;
    cert_info(&ders[0], &cert).map_err(|reason| PkiError::NotCertificate { input, reason })
}

/// Part of a stored leaf that a `LeafProblem` refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafPart {
    /// The certificate PEM.
    Certificate,
    /// The private key PEM.
    PrivateKey,
}

impl fmt::Display for LeafPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeafPart::Certificate => "certificate",
            LeafPart::PrivateKey => "private key",
        })
    }
}

/// A reason why a stored leaf must be reissued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafProblem {
    /// The certificate or key text is empty.
    #[error("the leaf {0} is missing")]
    Missing(LeafPart),
    /// The certificate or key does not parse.
    #[error("the leaf {part} is invalid: {reason}")]
    Unparsable { part: LeafPart, reason: String },
    /// The private key belongs to a different certificate.
    #[error("the leaf private key does not match the certificate's public key")]
    KeyMismatch,
    /// `now` is before notBefore.
    #[error("the leaf certificate is not valid before {not_before}")]
    NotYetValid { not_before: Timestamp },
    /// `now` is after notAfter.
    #[error("the leaf certificate expired at {not_after}")]
    Expired { not_after: Timestamp },
    /// Expected DNS names or IP addresses are absent from the subjectAltNames.
    #[error("the leaf certificate lacks the subjectAltNames {missing:?}")]
    WrongNames {
        /// Expected names absent from the certificate, IP addresses in `IpAddr` display form.
        missing: Vec<String>,
    },
    /// The certificate has basicConstraints CA:TRUE.
    #[error("the leaf certificate is a CA certificate")]
    IsCa,
    /// keyUsage or extendedKeyUsage does not allow TLS server and client authentication.
    #[error("the leaf certificate's key usage is wrong: {0}")]
    WrongUsage(String),
    /// No trusted CA has the certificate's issuer as its subject.
    #[error("the leaf certificate's issuer {issuer:?} is not a trusted CA")]
    UntrustedIssuer { issuer: String },
    /// A trusted CA has the issuer's name but its key does not verify the signature, so the
    /// certificate was altered or signed by a different key of the same name.
    #[error(
        "the leaf certificate's signature does not verify with any trusted CA of its issuer's \
         name (altered, or signed by another key of that name)"
    )]
    BadSignature,
    /// A trusted CA verifies the signature but is not valid at `now`, and no valid one does.
    #[error(
        "trusted CA {index} signed the leaf but is valid only from {not_before} to {not_after}"
    )]
    IssuerNotValid {
        index: usize,
        not_before: Timestamp,
        not_after: Timestamp,
    },
    /// An entry of `trusted_cas` does not parse, so it could not be tried.
    #[error("trusted CA {index} is invalid: {reason}")]
    InvalidTrustedCa { index: usize, reason: String },
    /// Chain verification failed for a reason not listed above.
    #[error("verifying the leaf certificate chain failed: {0}")]
    VerificationFailed(String),
}

/// A stored leaf that passed `check_leaf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLeaf {
    /// Index into `trusted_cas` of the CA that signed the leaf.
    pub ca_index: usize,
    /// The leaf's fields, with `issuer_fingerprint` set to that CA's fingerprint.
    pub info: CertInfo,
}

/// Checks a stored leaf certificate and key against what the operator expects at `now`.
///
/// The checks:
/// - the certificate and key parse, and the key matches the certificate;
/// - `now` lies within the certificate's validity;
/// - the subjectAltNames include every name in `expected_dns` (ASCII case-insensitive) and every
///   address in `expected_ips`. Further names are allowed, so empty lists skip this check;
/// - the leaf is not a CA, and its key usages allow TLS server and client authentication;
/// - one of `trusted_cas` (PEM, one CA per entry) signed it and is valid at `now`.
///
/// Certificates after the first in `cert_pem` serve as intermediates. Returns the first trusted
/// CA that verifies, or every problem found.
pub fn check_leaf(
    cert_pem: &str,
    key_pem: &str,
    expected_dns: &[String],
    expected_ips: &[IpAddr],
    trusted_cas: &[&str],
    now: Timestamp,
) -> Result<VerifiedLeaf, Vec<LeafProblem>> {
    let mut problems = Vec::new();
    if cert_pem.trim().is_empty() {
        problems.push(LeafProblem::Missing(LeafPart::Certificate));
    }
    if key_pem.trim().is_empty() {
        problems.push(LeafProblem::Missing(LeafPart::PrivateKey));
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let certificate_error = |error: PkiError| LeafProblem::Unparsable {
        part: LeafPart::Certificate,
        reason: error.to_string(),
    };
    let ders = decode_certificates(cert_pem, "certificate");
    let key = decode_private_key(key_pem, "private key").map_err(|error| LeafProblem::Unparsable {
        part: LeafPart::PrivateKey,
        reason: error.to_string(),
    });
    let ders = match ders {
        Ok(ders) => ders,
        Err(error) => {
            problems.push(certificate_error(error));
            problems.extend(key.err());
            return Err(problems);
        }
    };
    let cert = match parse_certificate(&ders[0], "certificate") {
        Ok(cert) => cert,
        Err(error) => {
            problems.push(certificate_error(error));
            problems.extend(key.err());
            return Err(problems);
        }
    };
    let mut info = match cert_info(&ders[0], &cert) {
        Ok(info) => info,
        Err(reason) => {
            problems.push(LeafProblem::Unparsable {
                part: LeafPart::Certificate,
                reason,
            });
            problems.extend(key.err());
            return Err(problems);
        }
    };

    match key {
        Ok(key) if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() => {
            problems.push(LeafProblem::KeyMismatch);
        }
        Ok(_) => {}
        Err(problem) => problems.push(problem),
    }
    if now < info.not_before {
        problems.push(LeafProblem::NotYetValid {
            not_before: info.not_before,
        });
    }
    if now > info.not_after {
        problems.push(LeafProblem::Expired {
            not_after: info.not_after,
        });
    }
    if let Some(problem) = compare_names(&info, expected_dns, expected_ips) {
        problems.push(problem);
    }
    if info.is_ca {
        problems.push(LeafProblem::IsCa);
    }
    if let Some(problem) = check_key_usage(&cert) {
        problems.push(problem);
    }

    // The leaf's own validity was checked above, so verify the chain at an instant inside it.
    // That keeps an expired leaf from also showing up as a chain failure. An inverted validity
    // has no such instant, and `clamp` would panic on it.
    let chain_time = if info.not_before <= info.not_after {
        now.clamp(info.not_before, info.not_after)
    } else {
        now
    };
    match find_signing_ca(&cert, &ders, trusted_cas, now, chain_time) {
        Ok((index, fingerprint)) => {
            info.issuer_fingerprint = Some(fingerprint);
            if problems.is_empty() {
                return Ok(VerifiedLeaf {
                    ca_index: index,
                    info,
                });
            }
        }
        Err(chain_problems) => {
            for problem in chain_problems {
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
    }
    Err(problems)
}

/// A CA certificate and key parsed and checked against each other.
struct LoadedCa {
    der: Vec<u8>,
    key: KeyPair,
    algorithm: KeyAlgorithm,
    not_before: Timestamp,
    not_after: Timestamp,
}

impl LoadedCa {
    /// Parses a CA certificate and its key and checks that they belong together, in the order
    /// of `load_ca`'s error list. Does not check validity.
    fn parse(cert_pem: &str, key_pem: &str) -> Result<LoadedCa, PkiError> {
        let input = "CA certificate";
        let mut ders = decode_certificates(cert_pem, input)?;
        if ders.len() != 1 {
            return Err(PkiError::NotCertificate {
                input,
                reason: format!(
                    "it contains {} certificates, expected exactly one",
                    ders.len()
                ),
            });
        }
        let der = ders.remove(0);
        let cert = parse_certificate(&der, input)?;

        let constraints = cert
            .basic_constraints()
            .map_err(|error| PkiError::NotCertificate {
                input,
                reason: format!("invalid basicConstraints extension: {error}"),
            })?;
        if !constraints.is_some_and(|extension| extension.value.ca) {
            return Err(PkiError::NotCa {
                reason: "basicConstraints CA:TRUE is missing".to_owned(),
            });
        }
        let key_usage = cert.key_usage().map_err(|error| PkiError::NotCertificate {
            input,
            reason: format!("invalid keyUsage extension: {error}"),
        })?;
        if key_usage.is_some_and(|extension| !extension.value.key_cert_sign()) {
            return Err(PkiError::NotCa {
                reason: "the keyUsage extension lacks keyCertSign".to_owned(),
            });
        }

        let algorithm = spki_algorithm(cert.public_key())
            .map_err(|found| PkiError::UnsupportedKey { input, found })?;
        let key = decode_private_key(key_pem, "CA private key")?;
        if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(PkiError::KeyMismatch {
                input: "CA private key",
            });
        }

        let (not_before, not_after) =
            validity_of(&cert).map_err(|reason| PkiError::NotCertificate { input, reason })?;
        Ok(LoadedCa {
            der,
            key,
            algorithm,
            not_before,
            not_after,
        })
    }
}

/// A validity period in whole seconds within the range X.509 can encode.
struct Validity {
    not_before: Timestamp,
    not_after: Timestamp,
}

impl Validity {
    /// Truncates both ends to whole seconds, as rcgen writes them, and checks the range.
    fn new(not_before: Timestamp, not_after: Timestamp) -> Result<Validity, PkiError> {
        let invalid = |reason: &str| PkiError::InvalidValidity {
            not_before,
            not_after,
            reason: reason.to_owned(),
        };
        let start = floor_second(not_before);
        let end = floor_second(not_after);
        if !(EARLIEST_SECOND..=LATEST_SECOND).contains(&start)
            || !(EARLIEST_SECOND..=LATEST_SECOND).contains(&end)
        {
            return Err(invalid(
                "X.509 validity must lie between 1950-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
            ));
        }
        if start >= end {
            return Err(invalid("notBefore must be earlier than notAfter"));
        }
        let timestamp =
            |second| Timestamp::from_second(second).map_err(|_| invalid("out of range"));
        Ok(Validity {
            not_before: timestamp(start)?,
            not_after: timestamp(end)?,
        })
    }

    fn not_before_offset(&self) -> Result<OffsetDateTime, PkiError> {
        self.offset(self.not_before)
    }

    fn not_after_offset(&self) -> Result<OffsetDateTime, PkiError> {
        self.offset(self.not_after)
    }

    fn offset(&self, timestamp: Timestamp) -> Result<OffsetDateTime, PkiError> {
        OffsetDateTime::from_unix_timestamp(timestamp.as_second()).map_err(|error| {
            PkiError::InvalidValidity {
                not_before: self.not_before,
                not_after: self.not_after,
                reason: error.to_string(),
            }
        })
    }
}

/// Returns the Unix second at or before `timestamp`.
fn floor_second(timestamp: Timestamp) -> i64 {
    let second = timestamp.as_second();
    if timestamp.subsec_nanosecond() < 0 {
        second - 1
    } else {
        second
    }
}

fn check_common_name(name: &str) -> Result<(), PkiError> {
    let invalid = |reason: String| PkiError::InvalidCommonName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    let length = name.chars().count();
    if length > MAX_COMMON_NAME_LEN {
        return Err(invalid(format!(
            "it has {length} characters, the maximum is {MAX_COMMON_NAME_LEN}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("it contains a control character".to_owned()));
    }
    Ok(())
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Builds the SAN list: validated DNS names, then IP addresses, each without duplicates.
fn subject_alt_names(request: &LeafRequest) -> Result<Vec<SanType>, PkiError> {
    let mut names: Vec<SanType> = Vec::new();
    let mut seen_dns: Vec<String> = Vec::new();
    for name in &request.dns_names {
        check_dns_name(name)?;
        let lowercase = name.to_ascii_lowercase();
        if seen_dns.contains(&lowercase) {
            continue;
        }
        seen_dns.push(lowercase);
        let ia5 = Ia5String::try_from(name.as_str()).map_err(|error| PkiError::InvalidDnsName {
            name: name.clone(),
            reason: error.to_string(),
        })?;
        names.push(SanType::DnsName(ia5));
    }
    for address in &request.ip_addresses {
        let san = SanType::IpAddress(*address);
        if !names.contains(&san) {
            names.push(san);
        }
    }
    Ok(names)
}

/// Accepts host names in preferred name syntax (RFC 1034 section 3.5, with labels that may
/// start with a digit as RFC 1123 allows), optionally with `*` as the whole first label.
fn check_dns_name(name: &str) -> Result<(), PkiError> {
    let invalid = |reason: &str| PkiError::InvalidDnsName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 253 {
        return Err(invalid("it is longer than 253 characters"));
    }
    for (position, label) in name.split('.').enumerate() {
        if position == 0 && label == "*" {
            continue;
        }
        if label.is_empty() {
            return Err(invalid(
                "it has an empty label (leading, trailing or double dot)",
            ));
        }
        if label.len() > 63 {
            return Err(invalid("a label is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        {
            return Err(invalid(
                "labels may contain only ASCII letters, digits and hyphens, and `*` only as the \
                 whole first label",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label starts or ends with a hyphen"));
        }
    }
    Ok(())
}

/// Returns 16 CSPRNG bytes for a serial number. The top bit is cleared so the DER INTEGER is
/// positive without a padding byte, and the next bit is set so the first octet is never zero
/// and the encoding is always 16 octets, leaving 126 random bits.
fn random_serial() -> Result<[u8; SERIAL_LEN], PkiError> {
    let mut serial = [0u8; SERIAL_LEN];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| PkiError::Random)?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    Ok(serial)
}

fn sha256_hex(der: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Decodes every PEM block in `text`. Text outside the blocks is ignored.
fn decode_pem_blocks(text: &str, input: &'static str) -> Result<Vec<Pem>, PkiError> {
    let mut blocks = Vec::new();
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|error| PkiError::NotPem {
            input,
            reason: error.to_string(),
        })?;
        blocks.push(block);
    }
    if blocks.is_empty() {
        return Err(PkiError::NotPem {
            input,
            reason: "no `-----BEGIN ...-----` line found".to_owned(),
        });
    }
    Ok(blocks)
}

/// Decodes PEM text that must contain only CERTIFICATE blocks, at least one, and returns their
/// DER in order.
fn decode_certificates(text: &str, input: &'static str) -> Result<Vec<Vec<u8>>, PkiError> {
    decode_pem_blocks(text, input)?
        .into_iter()
        .map(|block| {
            if block.label == "CERTIFICATE" {
                Ok(block.contents)
            } else {
                Err(PkiError::NotCertificate {
                    input,
                    reason: format!(
                        "found a PEM block labelled {:?} where CERTIFICATE was expected",
                        block.label
                    ),
                })
            }
        })
        .collect()
}

fn parse_certificate<'a>(
    der: &'a [u8],
    input: &'static str,
) -> Result<X509Certificate<'a>, PkiError> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|error| PkiError::NotCertificate {
            input,
            reason: error.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(PkiError::NotCertificate {
            input,
            reason: format!("{} bytes follow the certificate's DER", rest.len()),
        });
    }
    Ok(cert)
}

/// Decodes a single unencrypted private key. An `EC PARAMETERS` block, as `openssl ecparam
/// -genkey` writes before the key, is skipped.
fn decode_private_key(text: &str, input: &'static str) -> Result<KeyPair, PkiError> {
    let mut blocks: Vec<Pem> = decode_pem_blocks(text, input)?
        .into_iter()
        .filter(|block| block.label != "EC PARAMETERS")
        .collect();
    if blocks.len() != 1 {
        return Err(PkiError::InvalidKey {
            input,
            reason: format!(
                "it contains {} PEM blocks, expected exactly one",
                blocks.len()
            ),
        });
    }
    let block = blocks.remove(0);
    let der = match block.label.as_str() {
        "PRIVATE KEY" => PrivateKeyDer::Pkcs8(block.contents.into()),
        "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(block.contents.into()),
        "EC PRIVATE KEY" => PrivateKeyDer::Sec1(block.contents.into()),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(PkiError::UnsupportedKey {
                input,
                found: "an encrypted PKCS #8 key; decrypt it first, for example with \
                        `openssl pkey`"
                    .to_owned(),
            });
        }
        other => {
            return Err(PkiError::InvalidKey {
                input,
                reason: format!(
                    "found a PEM block labelled {other:?} where PRIVATE KEY, RSA PRIVATE KEY or \
                     EC PRIVATE KEY was expected"
                ),
            });
        }
    };
    KeyPair::try_from(&der).map_err(|_| PkiError::InvalidKey {
        input,
        reason: "aws-lc-rs cannot load it as an ECDSA (P-256, P-384, P-521), Ed25519 or RSA key"
            .to_owned(),
    })
}

/// Maps a SubjectPublicKeyInfo to a `KeyAlgorithm`, or describes the unsupported key.
fn spki_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyAlgorithm, String> {
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|parameters| parameters.as_oid().ok());
        return match curve {
            Some(curve) if curve == OID_EC_P256 => Ok(KeyAlgorithm::EcdsaP256),
            Some(curve) if curve == OID_NIST_EC_P384 => Ok(KeyAlgorithm::EcdsaP384),
            Some(curve) => Err(format!("ECDSA on the curve with OID {curve}")),
            None => Err("ECDSA without a named curve".to_owned()),
        };
    }
    if *oid == OID_SIG_ED25519 {
        return Ok(KeyAlgorithm::Ed25519);
    }
    if *oid == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(key)) => modulus_bits(key.modulus),
            _ => return Err("an RSA key whose modulus cannot be parsed".to_owned()),
        };
        return match bits {
            2048 => Ok(KeyAlgorithm::Rsa2048),
            3072 => Ok(KeyAlgorithm::Rsa3072),
            4096 => Ok(KeyAlgorithm::Rsa4096),
            _ => Err(format!("RSA-{bits}")),
        };
    }
    Err(format!("public key algorithm with OID {oid}"))
}

/// Returns the bit length of a big-endian unsigned integer.
fn modulus_bits(modulus: &[u8]) -> usize {
    let significant = match modulus.iter().position(|&byte| byte != 0) {
        Some(start) => &modulus[start..],
        None => return 0,
    };
    significant.len() * 8 - significant[0].leading_zeros() as usize
}

fn validity_of(cert: &X509Certificate<'_>) -> Result<(Timestamp, Timestamp), String> {
    let validity = cert.validity();
    let convert = |time: &x509_parser::time::ASN1Time| {
        Timestamp::from_second(time.timestamp())
            .map_err(|error| format!("validity time out of range: {error}"))
    };
    Ok((
        convert(&validity.not_before)?,
        convert(&validity.not_after)?,
    ))
}

/// Collects the fields of `CertInfo`, or a reason why an extension does not parse.
fn cert_info(der: &[u8], cert: &X509Certificate<'_>) -> Result<CertInfo, String> {
    let (not_before, not_after) = validity_of(cert)?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    let alt_names = cert
        .subject_alternative_name()
        .map_err(|error| format!("invalid subjectAltName extension: {error}"))?;
    if let Some(extension) = alt_names {
        for name in &extension.value.general_names {
            match name {
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                GeneralName::IPAddress(octets) => ip_addresses.push(ip_from_octets(octets)?),
                _ => {}
            }
        }
    }
    let is_ca = cert
        .basic_constraints()
        .map_err(|error| format!("invalid basicConstraints extension: {error}"))?
        .is_some_and(|extension| extension.value.ca);
    Ok(CertInfo {
        not_before,
        not_after,
        dns_names,
        ip_addresses,
        is_ca,
        algorithm: spki_algorithm(cert.public_key()).ok(),
        serial_hex: hex(cert.raw_serial()),
        fingerprint: sha256_hex(der),
        issuer_fingerprint: None,
    })
}

fn ip_from_octets(octets: &[u8]) -> Result<IpAddr, String> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        return Ok(IpAddr::from(v4));
    }
    if let Ok(v6) = <[u8; 16]>::try_from(octets) {
        return Ok(IpAddr::from(v6));
    }
    Err(format!(
        "an IP address subjectAltName has {} octets, expected 4 or 16",
        octets.len()
    ))
}

fn compare_names(
    info: &CertInfo,
    expected_dns: &[String],
    expected_ips: &[IpAddr],
) -> Option<LeafProblem> {
    let mut missing = Vec::new();
    for name in expected_dns {
        if !info
            .dns_names
            .iter()
            .any(|dns| dns.eq_ignore_ascii_case(name))
        {
            missing.push(name.clone());
        }
    }
    for address in expected_ips {
        if !info.ip_addresses.contains(address) {
            missing.push(address.to_string());
        }
    }
    if missing.is_empty() {
        None
    } else {
        Some(LeafProblem::WrongNames { missing })
    }
}

/// Checks keyUsage and extendedKeyUsage for TLS server and client authentication. An absent
/// extension allows every usage (RFC 5280 section 4.2.1). anyExtendedKeyUsage alone does not
/// count, because rustls-webpki rejects it in the handshake.
fn check_key_usage(cert: &X509Certificate<'_>) -> Option<LeafProblem> {
    let mut lacking = Vec::new();
    match cert.key_usage() {
        Ok(Some(extension)) if !extension.value.digital_signature() => {
            lacking.push("keyUsage lacks digitalSignature");
        }
        Ok(_) => {}
        Err(_) => lacking.push("the keyUsage extension does not parse"),
    }
    match cert.extended_key_usage() {
        Ok(Some(extension)) => {
            let usage = extension.value;
            if !usage.server_auth {
                lacking.push("extendedKeyUsage lacks serverAuth");
            }
            if !usage.client_auth {
                lacking.push("extendedKeyUsage lacks clientAuth");
            }
        }
        Ok(None) => {}
        Err(_) => lacking.push("the extendedKeyUsage extension does not parse"),
    }
    if lacking.is_empty() {
        None
    } else {
        Some(LeafProblem::WrongUsage(lacking.join(", ")))
    }
}

/// Outcome of verifying the leaf against one trusted CA.
enum CaOutcome {
    Verified,
    UnknownIssuer,
    BadSignature,
    /// rustls-webpki rejects a CA certificate as the end entity before it checks any signature.
    LeafIsCa,
    Other(String),
}

/// Accepts any extendedKeyUsage, because `check_key_usage` reports usage problems itself and
/// the chain check only determines which CA signed the leaf.
struct AnyExtendedKeyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyExtendedKeyUsage {
    fn validate(&self, _usages: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

/// Finds the first trusted CA that signed the leaf and is valid at `now`, and returns its index
/// and fingerprint. The signature is verified at `chain_time`.
fn find_signing_ca(
    cert: &X509Certificate<'_>,
    ders: &[Vec<u8>],
    trusted_cas: &[&str],
    now: Timestamp,
    chain_time: Timestamp,
) -> Result<(usize, String), Vec<LeafProblem>> {
    let leaf_der = CertificateDer::from(ders[0].as_slice());
    let end_entity = match webpki::EndEntityCert::try_from(&leaf_der) {
        Ok(end_entity) => end_entity,
        Err(error) => {
            return Err(vec![LeafProblem::Unparsable {
                part: LeafPart::Certificate,
                reason: format!("rustls-webpki rejects it: {error}"),
            }]);
        }
    };
    let intermediates: Vec<CertificateDer<'_>> = ders[1..]
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let time = UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(chain_time.as_second()).unwrap_or(0),
    ));

    let mut problems = Vec::new();
    let mut bad_signature = false;
    let mut leaf_is_ca = false;
    let mut other_errors = Vec::new();
    for (index, ca_pem) in trusted_cas.iter().enumerate() {
        let ca_ders = match decode_certificates(ca_pem, "trusted CA certificate") {
            Ok(ca_ders) => ca_ders,
            Err(error) => {
                problems.push(LeafProblem::InvalidTrustedCa {
                    index,
                    reason: error.to_string(),
                });
                continue;
            }
        };
        match verify_against(&end_entity, &intermediates, &ca_ders, time) {
            Ok(CaOutcome::Verified) => {}
            Ok(CaOutcome::UnknownIssuer) => continue,
            Ok(CaOutcome::BadSignature) => {
                bad_signature = true;
                continue;
            }
            Ok(CaOutcome::LeafIsCa) => {
                leaf_is_ca = true;
                continue;
            }
            Ok(CaOutcome::Other(reason)) => {
                other_errors.push(format!("trusted CA {index}: {reason}"));
                continue;
            }
            Err(reason) => {
                problems.push(LeafProblem::InvalidTrustedCa { index, reason });
                continue;
            }
        }
        // Trust anchors carry no validity in rustls-webpki, so check the CA's here.
        match ca_validity(&ca_ders) {
            Ok((not_before, not_after)) if now < not_before || now > not_after => {
                problems.push(LeafProblem::IssuerNotValid {
                    index,
                    not_before,
                    not_after,
                });
            }
            Ok(_) => return Ok((index, sha256_hex(&ca_ders[0]))),
            Err(reason) => problems.push(LeafProblem::InvalidTrustedCa { index, reason }),
        }
    }

    let signed_by_unusable_ca = problems
        .iter()
        .any(|problem| matches!(problem, LeafProblem::IssuerNotValid { .. }));
    if signed_by_unusable_ca || leaf_is_ca {
        // The caller reports `IsCa` itself, and `IssuerNotValid` already names the signing CA.
    } else if bad_signature {
        problems.push(LeafProblem::BadSignature);
    } else if !other_errors.is_empty() {
        problems.push(LeafProblem::VerificationFailed(other_errors.join("; ")));
    } else {
        problems.push(LeafProblem::UntrustedIssuer {
            issuer: cert.issuer().to_string(),
        });
    }
    Err(problems)
}

/// Verifies the leaf's signature chain against the anchors in `ca_ders`. Returns `Err` when a
/// CA certificate cannot serve as a trust anchor.
fn verify_against(
    end_entity: &webpki::EndEntityCert<'_>,
    intermediates: &[CertificateDer<'_>],
    ca_ders: &[Vec<u8>],
    time: UnixTime,
) -> Result<CaOutcome, String> {
    let ca_certs: Vec<CertificateDer<'_>> = ca_ders
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let mut anchors = Vec::with_capacity(ca_certs.len());
    for ca_cert in &ca_certs {
        let anchor = webpki::anchor_from_trusted_cert(ca_cert)
            .map_err(|error| format!("it cannot be used as a trust anchor: {error}"))?;
        anchors.push(anchor);
    }
    let verified = end_entity.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        intermediates,
        time,
        AnyExtendedKeyUsage,
        None,
        None,
    );
    Ok(match verified {
        Ok(_) => CaOutcome::Verified,
        Err(webpki::Error::UnknownIssuer) => CaOutcome::UnknownIssuer,
        Err(
            webpki::Error::InvalidSignatureForPublicKey
            | webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_),
        ) => CaOutcome::BadSignature,
        Err(webpki::Error::CaUsedAsEndEntity) => CaOutcome::LeafIsCa,
        Err(error) => CaOutcome::Other(error.to_string()),
    })
}

/// Returns the validity of the first certificate of a trusted CA entry.
fn ca_validity(ca_ders: &[Vec<u8>]) -> Result<(Timestamp, Timestamp), String> {
    let cert = parse_certificate(&ca_ders[0], "trusted CA certificate")
        .map_err(|error| error.to_string())?;
    validity_of(&cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    use k8s_openapi::jiff::SignedDuration;
    use x509_parser::prelude::FromDer;

    /// 2026-01-01T00:00:00Z, the fixed "now" of these tests.
    fn base() -> Timestamp {
        Timestamp::from_second(1_767_225_600).unwrap()
    }

    fn hours(count: i64) -> SignedDuration {
        SignedDuration::from_hours(count)
    }

    fn ca_with(name: &str, algorithm: KeyAlgorithm) -> CaMaterial {
        generate_ca(
            name,
            algorithm,
            base() - hours(48),
            base() + hours(24 * 365),
        )
        .unwrap()
    }

    fn ca() -> CaMaterial {
        ca_with("MediaNest test CA", KeyAlgorithm::EcdsaP256)
    }

    fn request(algorithm: KeyAlgorithm) -> LeafRequest {
        LeafRequest {
            common_name: "api.media.svc".to_owned(),
            dns_names: vec![
                "api.media.svc".to_owned(),
                "api.media.svc.cluster.local".to_owned(),
            ],
            ip_addresses: vec!["10.96.0.12".parse().unwrap(), "fd00::12".parse().unwrap()],
            algorithm,
            not_before: base() - hours(1),
            not_after: base() + hours(24),
        }
    }

    fn leaf(ca: &CaMaterial) -> LeafMaterial {
        issue_leaf(ca, &request(KeyAlgorithm::EcdsaP256)).unwrap()
    }

    fn der_of(pem: &str) -> Vec<u8> {
        decode_certificates(pem, "test certificate")
            .unwrap()
            .remove(0)
    }

    fn check(
        leaf: &LeafMaterial,
        trusted: &[&str],
        now: Timestamp,
    ) -> Result<VerifiedLeaf, Vec<LeafProblem>> {
        let expected = request(KeyAlgorithm::EcdsaP256);
        check_leaf(
            &leaf.cert_pem,
            leaf.key.expose(),
            &expected.dns_names,
            &expected.ip_addresses,
            trusted,
            now,
        )
    }

    fn pem_of(der: &[u8]) -> String {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN CERTIFICATE-----\n{encoded}\n-----END CERTIFICATE-----\n")
    }

    #[test]
    fn leaf_contains_requested_sans() {
        let leaf = leaf(&ca());
        let info = inspect(&leaf.cert_pem).unwrap();
        assert_eq!(
            info.dns_names,
            ["api.media.svc", "api.media.svc.cluster.local"]
        );
        assert_eq!(
            info.ip_addresses,
            [
                "10.96.0.12".parse::<IpAddr>().unwrap(),
                "fd00::12".parse::<IpAddr>().unwrap()
            ]
        );
    }

    #[test]
    fn leaf_sans_drop_duplicates() {
        let mut duplicated = request(KeyAlgorithm::Ed25519);
        duplicated.dns_names.push("API.media.svc".to_owned());
        duplicated.ip_addresses.push("10.96.0.12".parse().unwrap());
        let leaf = issue_leaf(&ca(), &duplicated).unwrap();
        let info = inspect(&leaf.cert_pem).unwrap();
        assert_eq!(info.dns_names.len(), 2);
        assert_eq!(info.ip_addresses.len(), 2);
    }

    #[test]
    fn leaf_has_server_and_client_eku() {
        let der = der_of(&leaf(&ca()).cert_pem);
        let cert = parse_certificate(&der, "leaf").unwrap();
        let usage = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(usage.server_auth);
        assert!(usage.client_auth);
        assert!(!usage.any);
        assert!(!usage.code_signing);
    }

    #[test]
    fn leaf_key_usage_by_algorithm() {
        let ca = ca();
        for algorithm in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::Rsa2048,
        ] {
            let leaf = issue_leaf(&ca, &request(algorithm)).unwrap();
            let der = der_of(&leaf.cert_pem);
            let cert = parse_certificate(&der, "leaf").unwrap();
            let extension = cert.key_usage().unwrap().unwrap();
            let usage = extension.value;
            assert!(
                extension.critical,
                "{algorithm}: keyUsage should be critical"
            );
            assert!(usage.digital_signature(), "{algorithm}");
            assert_eq!(usage.key_encipherment(), algorithm.is_rsa(), "{algorithm}");
            assert!(!usage.key_cert_sign(), "{algorithm}");
            assert!(!usage.crl_sign(), "{algorithm}");
        }
    }

    #[test]
    fn leaf_is_not_ca() {
        let der = der_of(&leaf(&ca()).cert_pem);
        let cert = parse_certificate(&der, "leaf").unwrap();
        let constraints = cert.basic_constraints().unwrap().unwrap();
        assert!(!constraints.value.ca);
        assert!(constraints.value.path_len_constraint.is_none());
        assert!(!inspect(&leaf(&ca()).cert_pem).unwrap().is_ca);
    }

    #[test]
    fn leaf_has_authority_key_identifier() {
        let ca = ca();
        let ca_der = der_of(&ca.cert_pem);
        let ca_cert = parse_certificate(&ca_der, "ca").unwrap();
        let leaf_der = der_of(&leaf(&ca).cert_pem);
        let leaf_cert = parse_certificate(&leaf_der, "leaf").unwrap();
        let mut subject_key_id = None;
        for extension in ca_cert.extensions() {
            if let x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) =
                extension.parsed_extension()
            {
                subject_key_id = Some(id.0.to_vec());
            }
        }
        let mut authority_key_id = None;
        for extension in leaf_cert.extensions() {
            if let x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(id) =
                extension.parsed_extension()
            {
                authority_key_id = id.key_identifier.as_ref().map(|key_id| key_id.0.to_vec());
            }
        }
        assert!(subject_key_id.is_some());
        assert_eq!(subject_key_id, authority_key_id);
    }

    #[test]
    fn ca_has_path_len_zero() {
        let ca = ca();
        let der = der_of(&ca.cert_pem);
        let cert = parse_certificate(&der, "ca").unwrap();
        let constraints = cert.basic_constraints().unwrap().unwrap();
        assert!(constraints.critical);
        assert!(constraints.value.ca);
        assert_eq!(constraints.value.path_len_constraint, Some(0));
        assert!(inspect(&ca.cert_pem).unwrap().is_ca);
    }

    #[test]
    fn ca_key_usage_is_cert_and_crl_sign() {
        let der = der_of(&ca().cert_pem);
        let cert = parse_certificate(&der, "ca").unwrap();
        let usage = cert.key_usage().unwrap().unwrap().value;
        assert!(usage.key_cert_sign());
        assert!(usage.crl_sign());
        assert!(!usage.digital_signature());
        assert!(!usage.key_encipherment());
        assert!(cert.extended_key_usage().unwrap().is_none());
    }

    #[test]
    fn ca_fields_match_certificate() {
        let ca = ca();
        let info = inspect(&ca.cert_pem).unwrap();
        assert_eq!(ca.fingerprint, info.fingerprint);
        assert_eq!(ca.fingerprint.len(), 64);
        assert_eq!(ca.not_before, info.not_before);
        assert_eq!(ca.not_after, info.not_after);
        assert_eq!(ca.not_before, base() - hours(48));
        assert_eq!(info.algorithm, Some(KeyAlgorithm::EcdsaP256));
        let der = der_of(&ca.cert_pem);
        let cert = parse_certificate(&der, "ca").unwrap();
        assert_eq!(cert.subject().to_string(), "CN=MediaNest test CA");
        assert_eq!(cert.issuer(), cert.subject());
    }

    #[test]
    fn validity_truncated_to_seconds() {
        let not_before = base() + SignedDuration::from_millis(1_700);
        let ca = generate_ca("CA", KeyAlgorithm::Ed25519, not_before, base() + hours(2)).unwrap();
        assert_eq!(ca.not_before, base() + SignedDuration::from_secs(1));
        assert_eq!(inspect(&ca.cert_pem).unwrap().not_before, ca.not_before);
    }

    #[test]
    fn pre_epoch_validity_truncates_down() {
        let not_before = Timestamp::from_second(-10).unwrap() - SignedDuration::from_millis(500);
        let ca = generate_ca("CA", KeyAlgorithm::Ed25519, not_before, base()).unwrap();
        assert_eq!(ca.not_before, Timestamp::from_second(-11).unwrap());
        assert_eq!(inspect(&ca.cert_pem).unwrap().not_before, ca.not_before);
    }

    #[test]
    fn validity_after_2050_uses_generalized_time() {
        let not_after = Timestamp::from_second(3_000_000_000).unwrap();
        let ca = generate_ca("CA", KeyAlgorithm::Ed25519, base(), not_after).unwrap();
        assert_eq!(inspect(&ca.cert_pem).unwrap().not_after, not_after);
    }

    #[test]
    fn invalid_validity_rejected() {
        let cases = [
            (base(), base()),
            (base() + hours(1), base()),
            (Timestamp::from_second(EARLIEST_SECOND - 1).unwrap(), base()),
            (Timestamp::MIN, base()),
        ];
        for (not_before, not_after) in cases {
            let result = generate_ca("CA", KeyAlgorithm::Ed25519, not_before, not_after);
            assert!(
                matches!(result, Err(PkiError::InvalidValidity { .. })),
                "{not_before} to {not_after}: {result:?}"
            );
        }
    }

    #[test]
    fn invalid_common_name_rejected() {
        let long = "x".repeat(65);
        for name in ["", long.as_str(), "line\nbreak"] {
            let result = generate_ca(name, KeyAlgorithm::Ed25519, base(), base() + hours(1));
            assert!(
                matches!(result, Err(PkiError::InvalidCommonName { .. })),
                "{name:?}: {result:?}"
            );
        }
        let sixty_four = "x".repeat(64);
        assert!(
            generate_ca(
                &sixty_four,
                KeyAlgorithm::Ed25519,
                base(),
                base() + hours(1)
            )
            .is_ok()
        );
    }

    #[test]
    fn invalid_dns_names_rejected() {
        let ca = ca();
        let long_label = format!("{}.svc", "a".repeat(64));
        for name in [
            "",
            "trailing.dot.",
            "double..dot",
            "-leading.hyphen",
            "under_score.svc",
            "sp ace.svc",
            "a.*.svc",
            "**.svc",
            "ünïcode.svc",
            long_label.as_str(),
        ] {
            let mut bad = request(KeyAlgorithm::Ed25519);
            bad.dns_names = vec![name.to_owned()];
            let result = issue_leaf(&ca, &bad);
            assert!(
                matches!(result, Err(PkiError::InvalidDnsName { .. })),
                "{name:?}: {result:?}"
            );
        }
    }

    #[test]
    fn wildcard_dns_names_accepted() {
        let mut wildcard = request(KeyAlgorithm::Ed25519);
        wildcard.dns_names = vec!["*.media.svc".to_owned(), "0api.media.svc".to_owned()];
        let leaf = issue_leaf(&ca(), &wildcard).unwrap();
        assert_eq!(
            inspect(&leaf.cert_pem).unwrap().dns_names,
            ["*.media.svc", "0api.media.svc"]
        );
    }

    #[test]
    fn leaf_without_sans_issues() {
        let mut bare = request(KeyAlgorithm::Ed25519);
        bare.dns_names.clear();
        bare.ip_addresses.clear();
        let leaf = issue_leaf(&ca(), &bare).unwrap();
        let info = inspect(&leaf.cert_pem).unwrap();
        assert!(info.dns_names.is_empty());
        assert!(info.ip_addresses.is_empty());
    }

    #[test]
    fn leaf_not_after_capped_by_ca() {
        let ca = generate_ca(
            "CA",
            KeyAlgorithm::EcdsaP256,
            base() - hours(1),
            base() + hours(5),
        )
        .unwrap();
        let mut long = request(KeyAlgorithm::EcdsaP256);
        long.not_after = base() + hours(24 * 365 * 10);
        let leaf = issue_leaf(&ca, &long).unwrap();
        assert_eq!(leaf.not_after, ca.not_after);
        assert_eq!(inspect(&leaf.cert_pem).unwrap().not_after, ca.not_after);
    }

    #[test]
    fn leaf_not_before_raised_to_ca() {
        let ca = generate_ca("CA", KeyAlgorithm::EcdsaP256, base(), base() + hours(5)).unwrap();
        let mut early = request(KeyAlgorithm::EcdsaP256);
        early.not_before = base() - hours(48);
        let leaf = issue_leaf(&ca, &early).unwrap();
        assert_eq!(leaf.not_before, ca.not_before);
        assert_eq!(inspect(&leaf.cert_pem).unwrap().not_before, ca.not_before);
    }

    #[test]
    fn leaf_within_ca_keeps_request_validity() {
        let leaf = leaf(&ca());
        assert_eq!(leaf.not_before, base() - hours(1));
        assert_eq!(leaf.not_after, base() + hours(24));
    }

    #[test]
    fn leaf_outside_ca_validity_rejected() {
        let ca = generate_ca("CA", KeyAlgorithm::EcdsaP256, base(), base() + hours(5)).unwrap();
        let mut late = request(KeyAlgorithm::EcdsaP256);
        late.not_before = base() + hours(6);
        late.not_after = base() + hours(30);
        let result = issue_leaf(&ca, &late);
        assert!(
            matches!(result, Err(PkiError::InvalidValidity { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn serials_random_positive_and_distinct() {
        let ca = ca();
        let mut serials = vec![inspect(&ca.cert_pem).unwrap().serial_hex];
        for _ in 0..63 {
            let leaf = issue_leaf(&ca, &request(KeyAlgorithm::Ed25519)).unwrap();
            let info = inspect(&leaf.cert_pem).unwrap();
            assert_eq!(info.serial_hex, leaf.serial_hex);
            serials.push(leaf.serial_hex);
        }

        let mut unique = serials.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), serials.len());

        // Every bit after the first octet must occur both set and clear across the 64 serials.
        // For random bits a given one stays constant with probability 2^-63.
        let mut seen_set = [0u8; SERIAL_LEN];
        let mut seen_clear = [0u8; SERIAL_LEN];
        for serial in &serials {
            assert_eq!(serial.len(), SERIAL_LEN * 2, "{serial}");
            let first = u8::from_str_radix(&serial[..2], 16).unwrap();
            assert_eq!(first & 0x80, 0, "{serial} must be positive");
            assert_ne!(first, 0, "{serial} must be 16 octets");
            for index in 0..SERIAL_LEN {
                let byte = u8::from_str_radix(&serial[index * 2..index * 2 + 2], 16).unwrap();
                seen_set[index] |= byte;
                seen_clear[index] |= !byte;
            }
        }
        for index in 1..SERIAL_LEN {
            assert_eq!(seen_set[index] & seen_clear[index], 0xff, "octet {index}");
        }
        // The first octet has its two top bits fixed and six random ones.
        assert_eq!(seen_set[0] & seen_clear[0], 0x3f);
    }

    #[test]
    fn each_issuance_has_fresh_key() {
        let ca = ca();
        let first = leaf(&ca);
        let second = leaf(&ca);
        assert_ne!(first.key.expose(), second.key.expose());
        let first_der = der_of(&first.cert_pem);
        let second_der = der_of(&second.cert_pem);
        let first_cert = parse_certificate(&first_der, "leaf").unwrap();
        let second_cert = parse_certificate(&second_der, "leaf").unwrap();
        assert_ne!(first_cert.public_key().raw, second_cert.public_key().raw);
        let ca_der = der_of(&ca.cert_pem);
        let ca_cert = parse_certificate(&ca_der, "ca").unwrap();
        assert_ne!(first_cert.public_key().raw, ca_cert.public_key().raw);
    }

    #[test]
    fn every_algorithm_issues_and_verifies() {
        for algorithm in KeyAlgorithm::ALL {
            let ca = ca_with(&format!("{algorithm} CA"), algorithm);
            assert_eq!(ca.algorithm, algorithm);
            assert_eq!(inspect(&ca.cert_pem).unwrap().algorithm, Some(algorithm));
            let leaf = issue_leaf(&ca, &request(algorithm)).unwrap();
            let info = inspect(&leaf.cert_pem).unwrap();
            assert_eq!(info.algorithm, Some(algorithm), "{algorithm}");
            let verified = check(&leaf, &[&ca.cert_pem], base());
            let verified = verified.unwrap_or_else(|problems| panic!("{algorithm}: {problems:?}"));
            assert_eq!(verified.ca_index, 0);
            assert!(leaf.key.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
        }
    }

    #[test]
    fn ed25519_key_is_pkcs8_v1() {
        let leaf = issue_leaf(&ca(), &request(KeyAlgorithm::Ed25519)).unwrap();
        let blocks = decode_pem_blocks(leaf.key.expose(), "key").unwrap();
        let der = &blocks[0].contents;
        // SEQUENCE, then INTEGER 0: version v1, without the optional public key.
        assert_eq!(der[2..5], [0x02, 0x01, 0x00]);
        assert_eq!(der.len(), 48);
    }

    #[test]
    fn mixed_algorithms_verify() {
        let ca = ca_with("Ed25519 CA", KeyAlgorithm::Ed25519);
        let leaf = issue_leaf(&ca, &request(KeyAlgorithm::Rsa2048)).unwrap();
        assert!(check(&leaf, &[&ca.cert_pem], base()).is_ok());
        let ca = ca_with("RSA CA", KeyAlgorithm::Rsa2048);
        let leaf = issue_leaf(&ca, &request(KeyAlgorithm::EcdsaP384)).unwrap();
        assert!(check(&leaf, &[&ca.cert_pem], base()).is_ok());
    }

    #[test]
    fn key_algorithm_names_round_trip() {
        for algorithm in KeyAlgorithm::ALL {
            assert_eq!(
                algorithm.as_str().parse::<KeyAlgorithm>().unwrap(),
                algorithm
            );
            assert_eq!(algorithm.to_string(), algorithm.as_str());
        }
        assert_eq!(
            "ecdsa-p384".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::EcdsaP384
        );
        assert!(matches!(
            "DSA".parse::<KeyAlgorithm>(),
            Err(PkiError::UnknownAlgorithm { .. })
        ));
    }

    #[test]
    fn load_ca_round_trips_generated_ca() {
        let ca = ca_with("RSA CA", KeyAlgorithm::Rsa2048);
        let loaded = load_ca(&ca.cert_pem, ca.key.expose(), base()).unwrap();
        assert_eq!(loaded, ca);
    }

    #[test]
    fn load_ca_rejects_leaf() {
        let leaf = leaf(&ca());
        let result = load_ca(&leaf.cert_pem, leaf.key.expose(), base());
        assert!(matches!(result, Err(PkiError::NotCa { .. })), "{result:?}");
    }

    #[test]
    fn load_ca_rejects_mismatched_key() {
        let ca = ca();
        let other = ca_with("MediaNest test CA", KeyAlgorithm::EcdsaP256);
        let result = load_ca(&ca.cert_pem, other.key.expose(), base());
        assert!(
            matches!(result, Err(PkiError::KeyMismatch { .. })),
            "{result:?}"
        );
        let rsa = ca_with("RSA CA", KeyAlgorithm::Rsa2048);
        let result = load_ca(&ca.cert_pem, rsa.key.expose(), base());
        assert!(
            matches!(result, Err(PkiError::KeyMismatch { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn load_ca_rejects_garbage() {
        let ca = ca();
        let result = load_ca("not a certificate", ca.key.expose(), base());
        assert!(
            matches!(
                result,
                Err(PkiError::NotPem {
                    input: "CA certificate",
                    ..
                })
            ),
            "{result:?}"
        );
        let result = load_ca(&ca.cert_pem, "not a key", base());
        assert!(
            matches!(
                result,
                Err(PkiError::NotPem {
                    input: "CA private key",
                    ..
                })
            ),
            "{result:?}"
        );
        let broken_base64 = "-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n";
        let result = load_ca(broken_base64, ca.key.expose(), base());
        assert!(matches!(result, Err(PkiError::NotPem { .. })), "{result:?}");
    }

    #[test]
    fn load_ca_rejects_non_certificate_pem() {
        let ca = ca();
        let result = load_ca(ca.key.expose(), ca.key.expose(), base());
        assert!(
            matches!(result, Err(PkiError::NotCertificate { .. })),
            "{result:?}"
        );
        let random = pem_of(&[0x30, 0x03, 0x02, 0x01, 0x05]);
        let result = load_ca(&random, ca.key.expose(), base());
        assert!(
            matches!(result, Err(PkiError::NotCertificate { .. })),
            "{result:?}"
        );
        let two = format!("{}{}", ca.cert_pem, ca.cert_pem);
        let result = load_ca(&two, ca.key.expose(), base());
        assert!(
            matches!(result, Err(PkiError::NotCertificate { .. })),
            "{result:?}"
        );
        let result = load_ca(&ca.cert_pem, &ca.cert_pem, base());
        assert!(
            matches!(result, Err(PkiError::InvalidKey { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn load_ca_rejects_unsupported_key() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.not_before = OffsetDateTime::from_unix_timestamp(base().as_second()).unwrap();
        params.not_after = params.not_before + time::Duration::days(1);
        let cert = params.self_signed(&key).unwrap();
        let result = load_ca(&cert.pem(), &key.serialize_pem(), base());
        assert!(
            matches!(result, Err(PkiError::UnsupportedKey { .. })),
            "{result:?}"
        );
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let result = load_ca(&ca().cert_pem, encrypted, base());
        assert!(
            matches!(result, Err(PkiError::UnsupportedKey { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn load_ca_rejects_expired_and_not_yet_valid() {
        let ca = generate_ca("CA", KeyAlgorithm::Ed25519, base(), base() + hours(1)).unwrap();
        let result = load_ca(&ca.cert_pem, ca.key.expose(), base() + hours(2));
        assert!(
            matches!(result, Err(PkiError::Expired { .. })),
            "{result:?}"
        );
        let result = load_ca(&ca.cert_pem, ca.key.expose(), base() - hours(2));
        assert!(
            matches!(result, Err(PkiError::NotYetValid { .. })),
            "{result:?}"
        );
        assert!(load_ca(&ca.cert_pem, ca.key.expose(), base() + hours(1)).is_ok());
    }

    #[test]
    fn errors_never_contain_key_material() {
        let ca = ca();
        let other = ca_with("other", KeyAlgorithm::EcdsaP256);
        let body: String = other.key.expose().lines().nth(1).unwrap().to_owned();
        let results = [
            load_ca(&ca.cert_pem, other.key.expose(), base()),
            load_ca(other.key.expose(), other.key.expose(), base()),
            load_ca(&ca.cert_pem, &other.key.expose().replace('A', "%"), base()),
        ];
        for result in results {
            let error = result.unwrap_err();
            let message = format!("{error} {error:?}");
            assert!(!message.contains(&body), "{message}");
            assert!(!message.contains("PRIVATE KEY-----"), "{message}");
        }
    }

    #[test]
    fn private_key_pem_redacted() {
        let ca = ca();
        let leaf = leaf(&ca);
        assert!(leaf.key.expose().contains("PRIVATE KEY"));
        for text in [
            format!("{:?}", leaf.key),
            format!("{}", leaf.key),
            format!("{:#?}", leaf.key),
            format!("{leaf:?}"),
            format!("{ca:?}"),
        ] {
            assert!(!text.contains("PRIVATE KEY"), "{text}");
        }
        assert_eq!(format!("{}", leaf.key), "[redacted]");
        assert_eq!(format!("{:?}", leaf.key), "[redacted]");
    }

    #[test]
    fn check_leaf_accepts_good_leaf() {
        let ca = ca();
        let leaf = leaf(&ca);
        let verified = check(&leaf, &[&ca.cert_pem], base()).unwrap();
        assert_eq!(verified.ca_index, 0);
        assert_eq!(
            verified.info.issuer_fingerprint.as_deref(),
            Some(ca.fingerprint.as_str())
        );
        assert_eq!(verified.info.not_after, leaf.not_after);
    }

    #[test]
    fn check_leaf_returns_signing_ca_index() {
        let old = ca_with("old CA", KeyAlgorithm::EcdsaP256);
        let new = ca_with("new CA", KeyAlgorithm::EcdsaP384);
        let leaf = leaf(&new);
        let verified = check(&leaf, &[&old.cert_pem, &new.cert_pem], base()).unwrap();
        assert_eq!(verified.ca_index, 1);
        assert_eq!(verified.info.issuer_fingerprint, Some(new.fingerprint));
    }

    #[test]
    fn check_leaf_detects_tampered_cert() {
        let ca = ca();
        let leaf = leaf(&ca);
        let mut der = der_of(&leaf.cert_pem);
        let serial_end = {
            let cert = parse_certificate(&der, "leaf").unwrap();
            let serial = cert.raw_serial();
            let start = der
                .windows(serial.len())
                .position(|window| window == serial)
                .unwrap();
            start + serial.len() - 1
        };
        der[serial_end] ^= 0x01;
        let tampered = pem_of(&der);
        let problems = check_leaf(
            &tampered,
            leaf.key.expose(),
            &request(KeyAlgorithm::EcdsaP256).dns_names,
            &request(KeyAlgorithm::EcdsaP256).ip_addresses,
            &[&ca.cert_pem],
            base(),
        )
        .unwrap_err();
        assert_eq!(problems, [LeafProblem::BadSignature]);
    }

    #[test]
    fn check_leaf_detects_key_from_other_issuance() {
        let ca = ca();
        let first = leaf(&ca);
        let second = leaf(&ca);
        let problems = check_leaf(
            &first.cert_pem,
            second.key.expose(),
            &request(KeyAlgorithm::EcdsaP256).dns_names,
            &request(KeyAlgorithm::EcdsaP256).ip_addresses,
            &[&ca.cert_pem],
            base(),
        )
        .unwrap_err();
        assert_eq!(problems, [LeafProblem::KeyMismatch]);
    }

    #[test]
    fn check_leaf_detects_wrong_names() {
        let ca = ca();
        let leaf = leaf(&ca);
        let expected_dns = vec!["api.media.svc".to_owned(), "web.media.svc".to_owned()];
        let expected_ips: Vec<IpAddr> =
            vec!["10.96.0.12".parse().unwrap(), "10.96.0.13".parse().unwrap()];
        let problems = check_leaf(
            &leaf.cert_pem,
            leaf.key.expose(),
            &expected_dns,
            &expected_ips,
            &[&ca.cert_pem],
            base(),
        )
        .unwrap_err();
        assert_eq!(
            problems,
            [LeafProblem::WrongNames {
                missing: vec!["web.media.svc".to_owned(), "10.96.0.13".to_owned()],
            }]
        );
    }

    #[test]
    fn check_leaf_allows_extra_names() {
        let ca = ca();
        let leaf = leaf(&ca);
        let no_names: [String; 0] = [];
        let result = check_leaf(
            &leaf.cert_pem,
            leaf.key.expose(),
            &no_names,
            &[],
            &[&ca.cert_pem],
            base(),
        );
        assert!(result.is_ok(), "{result:?}");
        let subset = vec!["api.media.svc".to_owned()];
        let result = check_leaf(
            &leaf.cert_pem,
            leaf.key.expose(),
            &subset,
            &["fd00::12".parse().unwrap()],
            &[&ca.cert_pem],
            base(),
        );
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn check_leaf_names_ignore_case() {
        let ca = ca();
        let leaf = leaf(&ca);
        let expected = request(KeyAlgorithm::EcdsaP256);
        let upper: Vec<String> = expected
            .dns_names
            .iter()
            .map(|name| name.to_uppercase())
            .collect();
        let result = check_leaf(
            &leaf.cert_pem,
            leaf.key.expose(),
            &upper,
            &expected.ip_addresses,
            &[&ca.cert_pem],
            base(),
        );
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn check_leaf_detects_expired() {
        let ca = ca();
        let leaf = leaf(&ca);
        let after = leaf.not_after + SignedDuration::from_secs(1);
        let problems = check(&leaf, &[&ca.cert_pem], after).unwrap_err();
        assert_eq!(
            problems,
            [LeafProblem::Expired {
                not_after: leaf.not_after
            }]
        );
        assert!(check(&leaf, &[&ca.cert_pem], leaf.not_after).is_ok());
    }

    #[test]
    fn check_leaf_detects_not_yet_valid() {
        let ca = ca();
        let leaf = leaf(&ca);
        let before = leaf.not_before - SignedDuration::from_secs(1);
        let problems = check(&leaf, &[&ca.cert_pem], before).unwrap_err();
        assert_eq!(
            problems,
            [LeafProblem::NotYetValid {
                not_before: leaf.not_before
            }]
        );
    }

    #[test]
    fn check_leaf_detects_other_ca() {
        let ca = ca();
        let other = ca_with("Another CA", KeyAlgorithm::EcdsaP256);
        let leaf = leaf(&ca);
        let problems = check(&leaf, &[&other.cert_pem], base()).unwrap_err();
        assert_eq!(
            problems,
            [LeafProblem::UntrustedIssuer {
                issuer: "CN=MediaNest test CA".to_owned()
            }]
        );
        let problems = check(&leaf, &[], base()).unwrap_err();
        assert!(matches!(
            problems[..],
            [LeafProblem::UntrustedIssuer { .. }]
        ));
    }

    #[test]
    fn check_leaf_detects_same_name_ca() {
        let ca = ca();
        let same_name = ca_with("MediaNest test CA", KeyAlgorithm::EcdsaP256);
        let leaf = leaf(&ca);
        let problems = check(&leaf, &[&same_name.cert_pem], base()).unwrap_err();
        assert_eq!(problems, [LeafProblem::BadSignature]);
    }

    #[test]
    fn check_leaf_reports_invalid_trusted_ca() {
        let ca = ca();
        let leaf = leaf(&ca);
        let problems = check(&leaf, &["garbage"], base()).unwrap_err();
        assert!(
            matches!(
                problems[..],
                [
                    LeafProblem::InvalidTrustedCa { index: 0, .. },
                    LeafProblem::UntrustedIssuer { .. }
                ]
            ),
            "{problems:?}"
        );
        let verified = check(&leaf, &["garbage", &ca.cert_pem], base()).unwrap();
        assert_eq!(verified.ca_index, 1);
    }

    #[test]
    fn check_leaf_detects_missing_and_garbage() {
        let ca = ca();
        let leaf = leaf(&ca);
        let no_names: [String; 0] = [];
        let problems = check_leaf("", " \n", &no_names, &[], &[&ca.cert_pem], base()).unwrap_err();
        assert_eq!(
            problems,
            [
                LeafProblem::Missing(LeafPart::Certificate),
                LeafProblem::Missing(LeafPart::PrivateKey)
            ]
        );
        let problems =
            check_leaf("junk", "junk", &no_names, &[], &[&ca.cert_pem], base()).unwrap_err();
        assert!(
            matches!(
                problems[..],
                [
                    LeafProblem::Unparsable {
                        part: LeafPart::Certificate,
                        ..
                    },
                    LeafProblem::Unparsable {
                        part: LeafPart::PrivateKey,
                        ..
                    }
                ]
            ),
            "{problems:?}"
        );
        let expected = request(KeyAlgorithm::EcdsaP256);
        let problems = check_leaf(
            &leaf.cert_pem,
            "junk",
            &expected.dns_names,
            &expected.ip_addresses,
            &[&ca.cert_pem],
            base(),
        )
        .unwrap_err();
        assert!(
            matches!(
                problems[..],
                [LeafProblem::Unparsable {
                    part: LeafPart::PrivateKey,
                    ..
                }]
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn check_leaf_flags_ca_as_leaf() {
        let ca = ca();
        let no_names: [String; 0] = [];
        let problems = check_leaf(
            &ca.cert_pem,
            ca.key.expose(),
            &no_names,
            &[],
            &[&ca.cert_pem],
            base(),
        )
        .unwrap_err();
        assert!(problems.contains(&LeafProblem::IsCa), "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|problem| matches!(problem, LeafProblem::WrongUsage(_))),
            "{problems:?}"
        );
    }

    /// Signs a leaf directly with rcgen, bypassing `issue_leaf`'s validity clipping and usage
    /// settings.
    fn raw_leaf(
        ca: &CaMaterial,
        not_after: Timestamp,
        extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> (String, String) {
        let ca_key = KeyPair::from_pem(ca.key.expose()).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec![
            "api.media.svc".to_owned(),
            "api.media.svc.cluster.local".to_owned(),
            "10.96.0.12".to_owned(),
            "fd00::12".to_owned(),
        ])
        .unwrap();
        params.not_before = OffsetDateTime::from_unix_timestamp(base().as_second() - 3600).unwrap();
        params.not_after = OffsetDateTime::from_unix_timestamp(not_after.as_second()).unwrap();
        params.extended_key_usages = extended_key_usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn check_leaf_detects_expired_issuer() {
        let ca = generate_ca(
            "Short CA",
            KeyAlgorithm::EcdsaP256,
            base() - hours(2),
            base() + hours(1),
        )
        .unwrap();
        let (cert_pem, key_pem) = raw_leaf(
            &ca,
            base() + hours(48),
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let expected = request(KeyAlgorithm::EcdsaP256);
        let check_at = |now| {
            check_leaf(
                &cert_pem,
                &key_pem,
                &expected.dns_names,
                &expected.ip_addresses,
                &[&ca.cert_pem],
                now,
            )
        };
        assert!(check_at(base()).is_ok());
        let problems = check_at(base() + hours(2)).unwrap_err();
        assert_eq!(
            problems,
            [LeafProblem::IssuerNotValid {
                index: 0,
                not_before: ca.not_before,
                not_after: ca.not_after
            }]
        );
    }

    #[test]
    fn check_leaf_survives_inverted_validity() {
        let ca = ca();
        // raw_leaf starts validity one hour before base(), so this ends before it starts.
        let (cert_pem, key_pem) = raw_leaf(
            &ca,
            base() - hours(2),
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let expected = request(KeyAlgorithm::EcdsaP256);
        let problems = check_leaf(
            &cert_pem,
            &key_pem,
            &expected.dns_names,
            &expected.ip_addresses,
            &[&ca.cert_pem],
            base(),
        )
        .unwrap_err();
        assert!(
            problems.contains(&LeafProblem::Expired {
                not_after: base() - hours(2)
            }),
            "{problems:?}"
        );
    }

    #[test]
    fn check_leaf_detects_missing_client_auth() {
        let ca = ca();
        let (cert_pem, key_pem) = raw_leaf(
            &ca,
            base() + hours(24),
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        );
        let expected = request(KeyAlgorithm::EcdsaP256);
        let problems = check_leaf(
            &cert_pem,
            &key_pem,
            &expected.dns_names,
            &expected.ip_addresses,
            &[&ca.cert_pem],
            base(),
        )
        .unwrap_err();
        assert_eq!(
            problems,
            [LeafProblem::WrongUsage(
                "extendedKeyUsage lacks clientAuth".to_owned()
            )]
        );
    }

    #[test]
    fn check_leaf_accepts_chain_pem() {
        // A chain in the leaf PEM (leaf, then CA) still verifies against the CA.
        let ca = ca();
        let leaf = leaf(&ca);
        let chain = format!("{}{}", leaf.cert_pem, ca.cert_pem);
        let expected = request(KeyAlgorithm::EcdsaP256);
        let verified = check_leaf(
            &chain,
            leaf.key.expose(),
            &expected.dns_names,
            &expected.ip_addresses,
            &[&ca.cert_pem],
            base(),
        )
        .unwrap();
        assert_eq!(
            verified.info.fingerprint,
            sha256_hex(&der_of(&leaf.cert_pem))
        );
    }

    #[test]
    fn inspect_reads_fields() {
        let leaf = leaf(&ca());
        let info = inspect(&leaf.cert_pem).unwrap();
        assert_eq!(info.not_before, leaf.not_before);
        assert_eq!(info.not_after, leaf.not_after);
        assert_eq!(info.serial_hex, leaf.serial_hex);
        assert_eq!(info.issuer_fingerprint, None);
        let der = der_of(&leaf.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=api.media.svc");
    }

    #[test]
    fn inspect_rejects_garbage() {
        assert!(matches!(inspect("garbage"), Err(PkiError::NotPem { .. })));
    }

    #[test]
    fn modulus_bits_counts_significant_bits() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0xff]), 9);
        assert_eq!(modulus_bits(&[0x00]), 0);
    }
}

//! Generators for the values of rotated Secrets: random bytes, passwords, JWT HMAC keys and
//! signing key pairs.
//!
//! Every random byte comes from the aws-lc-rs CSPRNG (`aws_lc_rs::rand::fill`), which aws-lc
//! seeds from the OS. Generated values are returned as [`SecretValue`], which never prints its
//! bytes and is zeroed on drop, and the heap buffers this module fills on the way are zeroed too.
//! NOTE: copies that aws-lc makes inside its own key objects are outside this module's control.
//!
//! RSA key generation is CPU-bound and takes a random time, so async callers should run
//! [`key_pair`] under `tokio::task::spawn_blocking`.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use zeroize::{Zeroize, Zeroizing};

/// Minimum `length_bytes` of [`random_bytes`].
pub const MIN_RANDOM_BYTES: usize = 1;
/// Maximum `length_bytes` of [`random_bytes`] and [`jwt_hmac_key`].
pub const MAX_RANDOM_BYTES: usize = 4096;
/// Minimum `length_chars` of [`password`].
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Maximum `length_chars` of [`password`].
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Bytes of a secret.
///
/// `Debug` and `Display` print `[redacted]`, the buffer is zeroed on drop, and `==` compares
/// the contents in constant time (the length is not hidden). Copies taken with
/// `expose().to_vec()` are not zeroed.
#[derive(Clone)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Wraps bytes, for example a value read back from a Secret.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(bytes)
    }

    /// Returns the bytes. Call it only to write the value into a Secret or to hash it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }
}

impl Eq for SecretValue {}

/// Text encoding of generated random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Standard base64 alphabet with `=` padding (RFC 4648 section 4).
    Base64,
    /// URL- and filename-safe base64 alphabet without padding (RFC 4648 section 5).
    Base64Url,
    /// Lowercase hexadecimal, two characters per byte.
    Hex,
    /// The bytes themselves.
    Raw,
}

/// Character set of a generated password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alphabet {
    /// `A-Z`, `a-z` and `0-9`: 62 characters.
    Alphanumeric,
    /// `A-Z`, `a-z`, `0-9` and `-._~`, the RFC 3986 unreserved characters: 66 characters.
    UrlSafe,
    /// Printable ASCII without space, `"`, `'`, `` ` `` and `\`: 90 characters. The backtick is
    /// left out with the quotes because shells treat it as one.
    Ascii,
}

const ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const URL_SAFE: &[u8] = b"-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";
const ASCII: &[u8] =
    b"!#$%&()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_abcdefghijklmnopqrstuvwxyz{|}~";

impl Alphabet {
    /// Returns the characters of the alphabet in ASCII order.
    pub const fn characters(self) -> &'static [u8] {
        match self {
            Alphabet::Alphanumeric => ALPHANUMERIC,
            Alphabet::UrlSafe => URL_SAFE,
            Alphabet::Ascii => ASCII,
        }
    }
}

impl fmt::Display for Alphabet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Alphabet::Alphanumeric => "Alphanumeric",
            Alphabet::UrlSafe => "UrlSafe",
            Alphabet::Ascii => "Ascii",
        };
        f.write_str(name)
    }
}

/// Character class that a password can be required to contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// `a-z`.
    Lower,
    /// `A-Z`.
    Upper,
    /// `0-9`.
    Digit,
    /// Any character of the alphabet that is not a letter or digit.
    Symbol,
}

impl Class {
    /// Returns whether `character` belongs to this class.
    pub const fn contains(self, character: u8) -> bool {
        match self {
            Class::Lower => character.is_ascii_lowercase(),
            Class::Upper => character.is_ascii_uppercase(),
            Class::Digit => character.is_ascii_digit(),
            Class::Symbol => character.is_ascii_graphic() && !character.is_ascii_alphanumeric(),
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Class::Lower => "Lower",
            Class::Upper => "Upper",
            Class::Digit => "Digit",
            Class::Symbol => "Symbol",
        };
        f.write_str(name)
    }
}

/// JWS HMAC algorithm a generated key is meant for (RFC 7518 section 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HmacAlgorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
}

impl HmacAlgorithm {
    /// Returns the minimum key length in bytes, the hash output size, which RFC 7518 section 3.2
    /// requires as the minimum.
    pub const fn min_key_bytes(self) -> usize {
        match self {
            HmacAlgorithm::HS256 => 32,
            HmacAlgorithm::HS384 => 48,
            HmacAlgorithm::HS512 => 64,
        }
    }
}

impl fmt::Display for HmacAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            HmacAlgorithm::HS256 => "HS256",
            HmacAlgorithm::HS384 => "HS384",
            HmacAlgorithm::HS512 => "HS512",
        };
        f.write_str(name)
    }
}

/// Signing key pair type, named by the JWS algorithm that uses it (RFC 7518 section 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPairAlgorithm {
    /// RSA with a 2048-bit modulus, for RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// ECDSA on NIST P-256, for signing with SHA-256.
    ES256,
}

impl fmt::Display for KeyPairAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            KeyPairAlgorithm::RS256 => "RS256",
            KeyPairAlgorithm::ES256 => "ES256",
        };
        f.write_str(name)
    }
}

/// A generated key pair in PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairPem {
    /// Private key as a PKCS #8 v1 `PRIVATE KEY` PEM block (RFC 5208, RFC 7468).
    pub private_key_pem: SecretValue,
    /// Public key as a SubjectPublicKeyInfo `PUBLIC KEY` PEM block (RFC 5280, RFC 7468).
    pub public_key_pem: String,
}

/// Errors from the generators. Messages name the parameter and its allowed range, and never
/// contain generated bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeneratorError {
    /// A length is outside its allowed range.
    #[error("invalid {parameter} {value}: must be between {min} and {max}")]
    OutOfRange {
        parameter: &'static str,
        value: usize,
        min: usize,
        max: usize,
    },
    /// A JWT HMAC key length is outside the range for its algorithm.
    #[error(
        "invalid length_bytes {value} for {algorithm}: must be between {min} and {max}, \
         because RFC 7518 requires a key at least as long as the hash output"
    )]
    JwtKeyLength {
        algorithm: HmacAlgorithm,
        value: usize,
        min: usize,
        max: usize,
    },
    /// A required character class has no character in the alphabet.
    #[error(
        "invalid required_classes: the {alphabet} alphabet has no {class} characters; \
         remove {class} or choose an alphabet that contains it"
    )]
    ClassNotInAlphabet { class: Class, alphabet: Alphabet },
    /// The aws-lc-rs CSPRNG failed.
    #[error("the system random number generator failed")]
    Random,
    /// aws-lc failed to generate or serialize a key pair.
    #[error("generating a {algorithm} key pair failed")]
    KeyGeneration { algorithm: KeyPairAlgorithm },
}

/// Generates `length_bytes` random bytes, `MIN_RANDOM_BYTES..=MAX_RANDOM_BYTES`, and encodes
/// them. The length counts bytes before encoding.
pub fn random_bytes(
    length_bytes: usize,
    encoding: Encoding,
) -> Result<SecretValue, GeneratorError> {
    check_range(
        "length_bytes",
        length_bytes,
        MIN_RANDOM_BYTES,
        MAX_RANDOM_BYTES,
    )?;
    let raw = fill_random(length_bytes)?;
    Ok(encode(raw, encoding))
}

/// Generates a password of `length_chars` characters from `alphabet`, with at least one
/// character of each class in `required_classes`.
///
/// Each required class contributes one character drawn uniformly from its characters in the
/// alphabet, and the rest are drawn uniformly from the whole alphabet. A Fisher-Yates shuffle
/// then puts the required characters at random positions. Small required classes therefore
/// appear slightly more often than uniform draws would give. Listing a class twice requires it
/// once. `length_chars` must be in
/// `MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS` and at least the number of required classes, and
/// every required class must occur in the alphabet.
pub fn password(
    length_chars: usize,
    alphabet: Alphabet,
    required_classes: &[Class],
) -> Result<SecretValue, GeneratorError> {
    let mut classes = required_classes.to_vec();
    classes.sort();
    classes.dedup();
    check_range(
        "length_chars",
        length_chars,
        MIN_PASSWORD_CHARS.max(classes.len()),
        MAX_PASSWORD_CHARS,
    )?;

    let characters = alphabet.characters();
    let mut class_members = Vec::with_capacity(classes.len());
    for class in classes {
        let members: Vec<u8> = characters
            .iter()
            .copied()
            .filter(|&character| class.contains(character))
            .collect();
        if members.is_empty() {
            return Err(GeneratorError::ClassNotInAlphabet { class, alphabet });
        }
        class_members.push(members);
    }

    let mut random = Csprng::new();
    let mut output = Zeroizing::new(Vec::with_capacity(length_chars));
    for members in &class_members {
        output.push(members[random.below(members.len())?]);
    }
    while output.len() < length_chars {
        output.push(characters[random.below(characters.len())?]);
    }
    shuffle(&mut output, &mut random)?;
    Ok(SecretValue(std::mem::take(&mut *output)))
}

/// Generates a random key of `length_bytes` bytes for a JWS HMAC algorithm and encodes it.
///
/// The length counts bytes before encoding and must be in
/// `algorithm.min_key_bytes()..=MAX_RANDOM_BYTES`.
pub fn jwt_hmac_key(
    algorithm: HmacAlgorithm,
    length_bytes: usize,
    encoding: Encoding,
) -> Result<SecretValue, GeneratorError> {
    let min = algorithm.min_key_bytes();
    if !(min..=MAX_RANDOM_BYTES).contains(&length_bytes) {
        return Err(GeneratorError::JwtKeyLength {
            algorithm,
            value: length_bytes,
            min,
            max: MAX_RANDOM_BYTES,
        });
    }
    let raw = fill_random(length_bytes)?;
    Ok(encode(raw, encoding))
}

/// Generates a signing key pair and returns it as PEM.
pub fn key_pair(algorithm: KeyPairAlgorithm) -> Result<KeyPairPem, GeneratorError> {
    let failed = |_| GeneratorError::KeyGeneration { algorithm };
    // aws-lc-rs zeroes the private key DER (`Pkcs8V1Der` and `Document`) on drop.
    match algorithm {
        KeyPairAlgorithm::RS256 => {
            let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(failed)?;
            let private_der = key.as_der().map_err(failed)?;
            let public_der = key.public_key().as_der().map_err(failed)?;
            Ok(KeyPairPem {
                private_key_pem: SecretValue(
                    pem_encode("PRIVATE KEY", private_der.as_ref()).into_bytes(),
                ),
                public_key_pem: pem_encode("PUBLIC KEY", public_der.as_ref()),
            })
        }
        KeyPairAlgorithm::ES256 => {
            let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(failed)?;
            let private_der = key.to_pkcs8v1().map_err(failed)?;
            let public_der = key.public_key().as_der().map_err(failed)?;
            Ok(KeyPairPem {
                private_key_pem: SecretValue(
                    pem_encode("PRIVATE KEY", private_der.as_ref()).into_bytes(),
                ),
                public_key_pem: pem_encode("PUBLIC KEY", public_der.as_ref()),
            })
        }
    }
}

fn check_range(
    parameter: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), GeneratorError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(GeneratorError::OutOfRange {
            parameter,
            value,
            min,
            max,
        })
    }
}

fn fill_random(length: usize) -> Result<Zeroizing<Vec<u8>>, GeneratorError> {
    let mut raw = Zeroizing::new(vec![0; length]);
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| GeneratorError::Random)?;
    Ok(raw)
}

/// Encodes `raw` into a new buffer of exactly the encoded size, so no reallocation leaves an
/// unzeroed copy behind.
fn encode(mut raw: Zeroizing<Vec<u8>>, encoding: Encoding) -> SecretValue {
    let encoded = match encoding {
        Encoding::Base64 => STANDARD.encode(&*raw).into_bytes(),
        Encoding::Base64Url => URL_SAFE_NO_PAD.encode(&*raw).into_bytes(),
        Encoding::Hex => {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let mut hex = Vec::with_capacity(raw.len() * 2);
            for byte in raw.iter() {
                hex.push(DIGITS[usize::from(byte >> 4)]);
                hex.push(DIGITS[usize::from(byte & 0x0f)]);
            }
            hex
        }
        Encoding::Raw => std::mem::take(&mut *raw),
    };
    SecretValue(encoded)
}

/// Encodes DER as a PEM block (RFC 7468): base64 with padding in lines of 64 characters between
/// the BEGIN and END lines, ending with a newline. The output is allocated at its final size and
/// the intermediate base64 text is zeroed on drop.
fn pem_encode(label: &str, der: &[u8]) -> String {
    const LINE_LEN: usize = 64;
    let body = Zeroizing::new(STANDARD.encode(der));
    let line_count = body.len().div_ceil(LINE_LEN);
    let capacity =
        "-----BEGIN -----\n-----END -----\n".len() + 2 * label.len() + body.len() + line_count;

    let mut pem = String::with_capacity(capacity);
    pem.push_str("-----BEGIN ");
    pem.push_str(label);
    pem.push_str("-----\n");
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(LINE_LEN));
        pem.push_str(line);
        pem.push('\n');
        rest = tail;
    }
    pem.push_str("-----END ");
    pem.push_str(label);
    pem.push_str("-----\n");
    debug_assert_eq!(pem.len(), capacity);
    pem
}

/// Reads the aws-lc-rs CSPRNG through a buffer that is zeroed on drop.
struct Csprng {
    buffer: Zeroizing<[u8; 256]>,
    position: usize,
}

impl Csprng {
    fn new() -> Self {
        Csprng {
            buffer: Zeroizing::new([0; 256]),
            position: 256,
        }
    }

    fn next_u32(&mut self) -> Result<u32, GeneratorError> {
        if self.position + 4 > self.buffer.len() {
            aws_lc_rs::rand::fill(&mut self.buffer[..]).map_err(|_| GeneratorError::Random)?;
            self.position = 0;
        }
        let mut word = [0; 4];
        word.copy_from_slice(&self.buffer[self.position..self.position + 4]);
        self.position += 4;
        Ok(u32::from_le_bytes(word))
    }

    /// Returns a uniform integer in `0..bound`, for `bound` in `1..=2^32`, by rejection
    /// sampling so the result has no modulo bias.
    fn below(&mut self, bound: usize) -> Result<usize, GeneratorError> {
        let bound = bound as u64;
        loop {
            if let Some(value) = reduce_uniform(self.next_u32()?, bound) {
                // `value < bound`, which came from a usize.
                return Ok(value as usize);
            }
        }
    }
}

/// Maps a uniform 32-bit `word` to a uniform value in `0..bound`, or returns `None` to reject it.
///
/// The 2^32 words split into whole runs of `bound` consecutive values plus a partial run of
/// `2^32 mod bound` values at the top. Taking `word % bound` is uniform only on the whole runs,
/// so words in the partial run are rejected.
fn reduce_uniform(word: u32, bound: u64) -> Option<u64> {
    debug_assert!((1..=1 << 32).contains(&bound));
    let word_count = 1u64 << 32;
    let accepted = word_count - word_count % bound;
    let word = u64::from(word);
    (word < accepted).then_some(word % bound)
}

/// Shuffles `values` with the Fisher-Yates algorithm: walking `i` down from the last index,
/// position `i` swaps with a uniform position in `0..=i`, which makes every permutation equally
/// likely.
fn shuffle(values: &mut [u8], random: &mut Csprng) -> Result<(), GeneratorError> {
    for i in (1..values.len()).rev() {
        let j = random.below(i + 1)?;
        values.swap(i, j);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey,
    };

    use super::*;

    const ALL_ENCODINGS: [Encoding; 4] = [
        Encoding::Base64,
        Encoding::Base64Url,
        Encoding::Hex,
        Encoding::Raw,
    ];
    const ALL_ALPHABETS: [Alphabet; 3] =
        [Alphabet::Alphanumeric, Alphabet::UrlSafe, Alphabet::Ascii];
    const ALL_CLASSES: [Class; 4] = [Class::Lower, Class::Upper, Class::Digit, Class::Symbol];

    /// Decodes an encoded value back to the random bytes.
    fn decode(value: &SecretValue, encoding: Encoding) -> Vec<u8> {
        let text = value.expose();
        match encoding {
            Encoding::Base64 => STANDARD.decode(text).expect("valid padded base64"),
            Encoding::Base64Url => URL_SAFE_NO_PAD
                .decode(text)
                .expect("valid unpadded base64url"),
            Encoding::Hex => {
                assert!(
                    text.iter()
                        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)),
                    "hex output must be lowercase hex digits"
                );
                text.chunks(2)
                    .map(|pair| {
                        let pair = std::str::from_utf8(pair).unwrap();
                        u8::from_str_radix(pair, 16).unwrap()
                    })
                    .collect()
            }
            Encoding::Raw => text.to_vec(),
        }
    }

    /// Extracts the DER inside a single PEM block with the given label.
    fn pem_der(pem: &[u8], label: &str) -> Vec<u8> {
        let text = std::str::from_utf8(pem).expect("PEM is ASCII");
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&begin.as_str()));
        assert_eq!(lines.last(), Some(&end.as_str()));
        assert!(text.ends_with('\n'));
        let body = &lines[1..lines.len() - 1];
        for line in &body[..body.len() - 1] {
            assert_eq!(
                line.len(),
                64,
                "every PEM line but the last has 64 characters"
            );
        }
        assert!(body.last().unwrap().len() <= 64);
        STANDARD.decode(body.concat()).expect("PEM body is base64")
    }

    #[derive(Debug)]
    #[allow(dead_code)] // Only formatted.
    struct Holder {
        name: &'static str,
        value: SecretValue,
    }

    const PLAINTEXT: &str = "hunter2-correct-horse";

    #[test]
    fn secret_value_formatting_redacted() {
        let value = SecretValue::new(PLAINTEXT.as_bytes().to_vec());
        let holder = Holder {
            name: "db",
            value: value.clone(),
        };

        assert_eq!(format!("{value:?}"), "[redacted]");
        assert_eq!(format!("{value}"), "[redacted]");
        assert_eq!(format!("{value:#?}"), "[redacted]");
        let debug = format!("{holder:?}");
        assert!(!debug.contains(PLAINTEXT), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        let pretty = format!("{holder:#?}");
        assert!(!pretty.contains(PLAINTEXT), "{pretty}");
        assert!(pretty.contains("[redacted]"), "{pretty}");
        assert_eq!(value.expose(), PLAINTEXT.as_bytes());
    }

    #[test]
    fn secret_value_panic_message_redacted() {
        let holder = Holder {
            name: "db",
            value: SecretValue::new(PLAINTEXT.as_bytes().to_vec()),
        };
        let payload = std::panic::catch_unwind(|| panic!("reconcile failed: {holder:?}"))
            .expect_err("the closure panics");
        let message = payload
            .downcast_ref::<String>()
            .expect("a formatted panic message is a String");

        assert!(message.contains("[redacted]"), "{message}");
        assert!(!message.contains(PLAINTEXT), "{message}");
    }

    #[test]
    fn secret_value_equality() {
        let a = SecretValue::new(b"abc".to_vec());

        assert_eq!(a, SecretValue::new(b"abc".to_vec()));
        assert_ne!(a, SecretValue::new(b"abd".to_vec()));
        assert_ne!(a, SecretValue::new(b"abcd".to_vec()));
        assert_ne!(a, SecretValue::new(Vec::new()));
    }

    #[test]
    fn random_bytes_decode_to_length() {
        for length in [1, 2, 3, 4, 31, 32, 33, 64, 4095, 4096] {
            for encoding in ALL_ENCODINGS {
                let value = random_bytes(length, encoding).unwrap();
                let decoded = decode(&value, encoding);
                assert_eq!(decoded.len(), length, "{encoding:?} of {length} bytes");
            }
        }
    }

    #[test]
    fn random_bytes_encoded_form() {
        let padded = random_bytes(31, Encoding::Base64).unwrap();
        assert_eq!(padded.expose().len(), 44);
        assert!(padded.expose().ends_with(b"="));

        let url = random_bytes(31, Encoding::Base64Url).unwrap();
        assert_eq!(url.expose().len(), 42);
        assert!(!url.expose().contains(&b'='));
        for _ in 0..20 {
            let url = random_bytes(96, Encoding::Base64Url).unwrap();
            assert!(
                url.expose()
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
                "base64url must use only A-Z a-z 0-9 - _"
            );
        }

        let hex = random_bytes(16, Encoding::Hex).unwrap();
        assert_eq!(hex.expose().len(), 32);

        let raw = random_bytes(16, Encoding::Raw).unwrap();
        assert_eq!(raw.expose().len(), 16);
    }

    #[test]
    fn random_bytes_rejects_out_of_range() {
        for length in [0, 4097, usize::MAX] {
            let error = random_bytes(length, Encoding::Hex).unwrap_err();
            assert_eq!(
                error,
                GeneratorError::OutOfRange {
                    parameter: "length_bytes",
                    value: length,
                    min: 1,
                    max: 4096,
                }
            );
        }
        let message = random_bytes(0, Encoding::Raw).unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid length_bytes 0: must be between 1 and 4096"
        );
    }

    #[test]
    fn random_bytes_distinct() {
        let values: BTreeSet<Vec<u8>> = (0..100)
            .map(|_| random_bytes(16, Encoding::Raw).unwrap().expose().to_vec())
            .collect();
        assert_eq!(values.len(), 100);
    }

    #[test]
    fn alphabets_exact_characters() {
        let printable: Vec<u8> = (0x21..=0x7e).collect();
        let expected_ascii: Vec<u8> = printable
            .iter()
            .copied()
            .filter(|c| !b"\"'`\\".contains(c))
            .collect();
        assert_eq!(Alphabet::Ascii.characters(), expected_ascii.as_slice());

        let expected_url: Vec<u8> = printable
            .iter()
            .copied()
            .filter(|&c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
            .collect();
        assert_eq!(Alphabet::UrlSafe.characters(), expected_url.as_slice());

        let expected_alphanumeric: Vec<u8> = printable
            .iter()
            .copied()
            .filter(u8::is_ascii_alphanumeric)
            .collect();
        assert_eq!(
            Alphabet::Alphanumeric.characters(),
            expected_alphanumeric.as_slice()
        );

        assert_eq!(Alphabet::Alphanumeric.characters().len(), 62);
        assert_eq!(Alphabet::UrlSafe.characters().len(), 66);
        assert_eq!(Alphabet::Ascii.characters().len(), 90);
    }

    #[test]
    fn password_length_and_alphabet() {
        for alphabet in ALL_ALPHABETS {
            for length in [8, 9, 17, 64, 1024] {
                let value = password(length, alphabet, &[]).unwrap();
                assert_eq!(value.expose().len(), length, "{alphabet} length {length}");
                for character in value.expose() {
                    assert!(
                        alphabet.characters().contains(character),
                        "{alphabet} produced a character outside the alphabet"
                    );
                }
            }
        }
    }

    #[test]
    fn password_required_classes_always_present() {
        let cases: [(Alphabet, &[Class]); 4] = [
            (Alphabet::Ascii, &ALL_CLASSES),
            (Alphabet::UrlSafe, &ALL_CLASSES),
            (Alphabet::UrlSafe, &[Class::Symbol]),
            (
                Alphabet::Alphanumeric,
                &[Class::Lower, Class::Upper, Class::Digit],
            ),
        ];
        for (alphabet, classes) in cases {
            for _ in 0..2000 {
                let value = password(8, alphabet, classes).unwrap();
                assert_eq!(value.expose().len(), 8);
                for &class in classes {
                    assert!(
                        value.expose().iter().any(|&c| class.contains(c)),
                        "{alphabet} password lacks required class {class}"
                    );
                }
                for character in value.expose() {
                    assert!(alphabet.characters().contains(character));
                }
            }
        }
    }

    #[test]
    fn password_required_positions_vary() {
        // Each draw has at least one of the 4 symbols of UrlSafe, at a random position, so every
        // position contains a symbol in some draw. The chance that a position never does in 2000
        // draws is below (7/8)^2000.
        let mut symbol_positions = BTreeSet::new();
        for _ in 0..2000 {
            let value = password(8, Alphabet::UrlSafe, &[Class::Symbol]).unwrap();
            for (position, &character) in value.expose().iter().enumerate() {
                if Class::Symbol.contains(character) {
                    symbol_positions.insert(position);
                }
            }
        }
        assert_eq!(symbol_positions, (0..8).collect::<BTreeSet<_>>());
    }

    /// Returns Pearson's chi-square statistic of `counts` against a uniform distribution.
    fn chi_square(counts: &[u64]) -> f64 {
        let total: u64 = counts.iter().sum();
        let expected = total as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|&count| {
                let difference = count as f64 - expected;
                difference * difference / expected
            })
            .sum()
    }

    /// Returns a chi-square bound that a uniform sample exceeds with probability below e^-50,
    /// from the Laurent-Massart tail bound P(X >= k + 2 sqrt(k x) + 2 x) <= e^-x for k degrees of
    /// freedom. With over 1000 expected draws per cell the statistic follows the chi-square
    /// distribution closely.
    fn chi_square_bound(categories: usize) -> f64 {
        let freedom = (categories - 1) as f64;
        let x = 50.0;
        freedom + 2.0 * (freedom * x).sqrt() + 2.0 * x
    }

    const UNIFORMITY_PASSWORDS: usize = 100;

    #[test]
    fn password_characters_roughly_uniform() {
        for alphabet in ALL_ALPHABETS {
            let characters = alphabet.characters();
            let mut counts = vec![0u64; characters.len()];
            for _ in 0..UNIFORMITY_PASSWORDS {
                let value = password(MAX_PASSWORD_CHARS, alphabet, &[]).unwrap();
                for character in value.expose() {
                    let index = characters.iter().position(|c| c == character).unwrap();
                    counts[index] += 1;
                }
            }
            let statistic = chi_square(&counts);
            let bound = chi_square_bound(characters.len());
            assert!(
                statistic < bound,
                "{alphabet}: chi-square {statistic:.1} is not below {bound:.1}"
            );
        }
    }

    #[test]
    fn chi_square_bound_detects_modulo_bias() {
        // Reducing uniform bytes with `% 90` favors the first 256 % 90 = 76 characters (3/256
        // against 2/256), the bias that rejection sampling avoids. The uniformity test must catch
        // it at the same sample size.
        let categories = Alphabet::Ascii.characters().len();
        let mut counts = vec![0u64; categories];
        for draw in 0..UNIFORMITY_PASSWORDS * MAX_PASSWORD_CHARS {
            let byte = draw % 256;
            counts[byte % categories] += 1;
        }
        assert!(chi_square(&counts) > chi_square_bound(categories));
    }

    #[test]
    fn password_rejects_class_outside_alphabet() {
        let error =
            password(16, Alphabet::Alphanumeric, &[Class::Digit, Class::Symbol]).unwrap_err();
        assert_eq!(
            error,
            GeneratorError::ClassNotInAlphabet {
                class: Class::Symbol,
                alphabet: Alphabet::Alphanumeric,
            }
        );
        assert_eq!(
            error.to_string(),
            "invalid required_classes: the Alphanumeric alphabet has no Symbol characters; \
             remove Symbol or choose an alphabet that contains it"
        );
    }

    #[test]
    fn password_rejects_out_of_range() {
        for length in [0, 7, 1025] {
            let error = password(length, Alphabet::Ascii, &ALL_CLASSES).unwrap_err();
            assert_eq!(
                error,
                GeneratorError::OutOfRange {
                    parameter: "length_chars",
                    value: length,
                    min: 8,
                    max: 1024,
                }
            );
        }
    }

    #[test]
    fn password_duplicate_classes_count_once() {
        let value = password(8, Alphabet::Alphanumeric, &[Class::Digit, Class::Digit]).unwrap();
        assert_eq!(value.expose().len(), 8);
        assert!(value.expose().iter().any(u8::is_ascii_digit));
    }

    #[test]
    fn password_distinct() {
        let values: BTreeSet<Vec<u8>> = (0..100)
            .map(|_| {
                password(16, Alphabet::Alphanumeric, &[])
                    .unwrap()
                    .expose()
                    .to_vec()
            })
            .collect();
        assert_eq!(values.len(), 100);
    }

    #[test]
    fn reduce_uniform_rejects_partial_run() {
        // 2^32 mod 3 = 1, so only the top word is rejected.
        assert_eq!(reduce_uniform(u32::MAX, 3), None);
        assert_eq!(
            reduce_uniform(u32::MAX - 1, 3),
            Some(u64::from(u32::MAX - 1) % 3)
        );
        assert_eq!(reduce_uniform(0, 3), Some(0));
        // 2^32 mod 90 = 76, so the top 76 words are rejected.
        assert_eq!(reduce_uniform(u32::MAX - 75, 90), None);
        assert_eq!(
            reduce_uniform(u32::MAX - 76, 90),
            Some(u64::from(u32::MAX - 76) % 90)
        );
        // Powers of two divide 2^32, so nothing is rejected.
        assert_eq!(reduce_uniform(u32::MAX, 64), Some(63));
        assert_eq!(reduce_uniform(u32::MAX, 1), Some(0));
        assert_eq!(reduce_uniform(u32::MAX, 1 << 32), Some(u64::from(u32::MAX)));
    }

    #[test]
    fn shuffle_permutations_uniform() {
        // 6000 shuffles of 3 elements: each of the 6 permutations is expected 1000 times with a
        // standard deviation of about 29, so 800..=1200 fails with probability below 1e-10.
        let mut random = Csprng::new();
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..6000 {
            let mut values = [0u8, 1, 2];
            shuffle(&mut values, &mut random).unwrap();
            *counts.entry(values).or_insert(0u32) += 1;
        }
        assert_eq!(counts.len(), 6);
        for (permutation, count) in counts {
            assert!(
                (800..=1200).contains(&count),
                "permutation {permutation:?} drawn {count} times"
            );
        }
    }

    #[test]
    fn jwt_hmac_key_lengths() {
        let cases = [
            (HmacAlgorithm::HS256, 32),
            (HmacAlgorithm::HS384, 48),
            (HmacAlgorithm::HS512, 64),
        ];
        for (algorithm, min) in cases {
            assert_eq!(algorithm.min_key_bytes(), min);
            for length in [min, min + 1, 4096] {
                for encoding in ALL_ENCODINGS {
                    let value = jwt_hmac_key(algorithm, length, encoding).unwrap();
                    assert_eq!(
                        decode(&value, encoding).len(),
                        length,
                        "{algorithm} {encoding:?} {length}"
                    );
                }
            }
            for length in [0, min - 1, 4097] {
                let error = jwt_hmac_key(algorithm, length, Encoding::Base64Url).unwrap_err();
                assert_eq!(
                    error,
                    GeneratorError::JwtKeyLength {
                        algorithm,
                        value: length,
                        min,
                        max: 4096,
                    }
                );
            }
        }
        let message = jwt_hmac_key(HmacAlgorithm::HS384, 32, Encoding::Raw)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "invalid length_bytes 32 for HS384: must be between 48 and 4096, \
             because RFC 7518 requires a key at least as long as the hash output"
        );
    }

    #[test]
    fn jwt_hmac_key_distinct() {
        let first = jwt_hmac_key(HmacAlgorithm::HS256, 32, Encoding::Raw).unwrap();
        let second = jwt_hmac_key(HmacAlgorithm::HS256, 32, Encoding::Raw).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn key_pair_rs256_signs_and_verifies() {
        let pair = key_pair(KeyPairAlgorithm::RS256).unwrap();
        let private_der = pem_der(pair.private_key_pem.expose(), "PRIVATE KEY");
        let public_der = pem_der(pair.public_key_pem.as_bytes(), "PUBLIC KEY");

        let key = RsaKeyPair::from_pkcs8(&private_der).expect("PKCS #8 RSA key");
        assert_eq!(key.public_modulus_len(), 256, "RSA modulus is 2048 bits");
        let message = b"header.payload";
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            message,
            &mut signature,
        )
        .unwrap();

        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public_der);
        assert!(public.verify(message, &signature).is_ok());
        assert!(public.verify(b"header.tampered", &signature).is_err());
    }

    #[test]
    fn key_pair_es256_signs_and_verifies() {
        let pair = key_pair(KeyPairAlgorithm::ES256).unwrap();
        let private_der = pem_der(pair.private_key_pem.expose(), "PRIVATE KEY");
        let public_der = pem_der(pair.public_key_pem.as_bytes(), "PUBLIC KEY");

        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &private_der)
            .expect("PKCS #8 P-256 key");
        let message = b"header.payload";
        let signature = key.sign(&SystemRandom::new(), message).unwrap();
        assert_eq!(
            signature.as_ref().len(),
            64,
            "JWS ES256 signatures are r || s"
        );

        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public_der);
        assert!(public.verify(message, signature.as_ref()).is_ok());
        assert!(
            public
                .verify(b"header.tampered", signature.as_ref())
                .is_err()
        );
    }

    #[test]
    fn key_pairs_distinct() {
        let first = key_pair(KeyPairAlgorithm::ES256).unwrap();
        let second = key_pair(KeyPairAlgorithm::ES256).unwrap();
        assert_ne!(first.private_key_pem, second.private_key_pem);
        assert_ne!(first.public_key_pem, second.public_key_pem);

        // A signature by the first private key does not verify under the second public key.
        let private_der = pem_der(first.private_key_pem.expose(), "PRIVATE KEY");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &private_der).unwrap();
        let signature = key.sign(&SystemRandom::new(), b"message").unwrap();
        let other_der = pem_der(second.public_key_pem.as_bytes(), "PUBLIC KEY");
        let other = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &other_der);
        assert!(other.verify(b"message", signature.as_ref()).is_err());
    }

    #[test]
    fn key_pair_debug_redacts_private_key() {
        let pair = key_pair(KeyPairAlgorithm::ES256).unwrap();
        let debug = format!("{pair:#?}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        assert!(debug.contains("PUBLIC KEY"), "{debug}");
    }
}

//! The `SecretRotation` custom resource.

// Each printcolumn of kube's derive repeats keys such as type_, which clippy mistakes for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;
use super::mtls::DeletionPolicy;

// CEL rules on the names a spec writes into the Secret: each key's name, KEY.pub for a key
// pair, and with previous.keep each of those plus previous.suffix. Each macro below is a
// condition on one key `k` that is true when that key causes a collision. A rule requires it to
// be false for every key, and its message reads the name of the first key where it is true.
// The messages find that key with indexOf on a list of booleans and then read
// self.keys[i].name, because the API server of Kubernetes 1.37 offers no cel.bind in CRD rules.
// It also cannot bound the size of a string taken from a filtered list, and a message built
// from one exceeds the cost budget by more than 100 times.

/// Another key has the same name as `k`.
macro_rules! duplicate_name {
    () => {
        "!self.keys.exists_one(j, j.name == k.name)"
    };
}

/// `k` is a key pair, and another key is named after its public key.
macro_rules! public_key_taken {
    () => {
        "(has(k.generator.keyPair) && self.keys.exists(j, j.name == k.name + '.pub'))"
    };
}

/// The name that keeps the previous value of `k` is another key's name or public key.
macro_rules! previous_name_taken {
    () => {
        concat!(
            "self.keys.exists(j, k.name + self.previous.suffix == j.name || ",
            "(has(j.generator.keyPair) && k.name + self.previous.suffix == j.name + '.pub'))"
        )
    };
}

/// `k` is a key pair, and the name that keeps the previous value of its public key is another
/// key's name or public key.
macro_rules! previous_public_name_taken {
    () => {
        concat!(
            "(has(k.generator.keyPair) && self.keys.exists(j, ",
            "k.name + '.pub' + self.previous.suffix == j.name || ",
            "(has(j.generator.keyPair) && k.name + '.pub' + self.previous.suffix == j.name + '.pub')))"
        )
    };
}

/// Previous values are kept, so previous.suffix is set (the schema defaults it).
macro_rules! keeps_previous {
    () => {
        "has(self.previous) && self.previous.keep"
    };
}

/// The first key for which the condition on `k` is true, as a CEL expression.
macro_rules! first_key {
    ($condition:expr) => {
        concat!(
            "self.keys[self.keys.map(k, ",
            $condition,
            ").indexOf(true)]"
        )
    };
}

const DUPLICATE_KEY_MESSAGE: &str = concat!(
    "'key name \"' + ",
    first_key!(duplicate_name!()),
    ".name + '\" appears more than once in spec.keys; give each key its own name'"
);

const PUBLIC_KEY_RULE: &str = concat!("self.keys.all(k, !", public_key_taken!(), ")");

const PUBLIC_KEY_MESSAGE: &str = concat!(
    "'key name \"' + ",
    first_key!(public_key_taken!()),
    ".name + '.pub\" is also where key pair \"' + ",
    first_key!(public_key_taken!()),
    ".name + '\" stores its public key; rename one of the two keys'"
);

const PREVIOUS_KEY_RULE: &str = concat!(
    "!(",
    keeps_previous!(),
    ") || self.keys.all(k, !",
    previous_name_taken!(),
    ")"
);

const PREVIOUS_KEY_MESSAGE: &str = concat!(
    "'the previous value of key \"' + ",
    first_key!(previous_name_taken!()),
    ".name + '\" would be kept under \"' + ",
    first_key!(previous_name_taken!()),
    ".name + self.previous.suffix + '\", which another key or public key already uses; ",
    "rename that key or set another previous.suffix'"
);

const PREVIOUS_PUBLIC_KEY_RULE: &str = concat!(
    "!(",
    keeps_previous!(),
    ") || self.keys.all(k, !",
    previous_public_name_taken!(),
    ")"
);

const PREVIOUS_PUBLIC_KEY_MESSAGE: &str = concat!(
    "'the previous value of public key \"' + ",
    first_key!(previous_public_name_taken!()),
    ".name + '.pub\" would be kept under \"' + ",
    first_key!(previous_public_name_taken!()),
    ".name + '.pub' + self.previous.suffix + '\", which another key or public key already ",
    "uses; rename that key or set another previous.suffix'"
);

/// Every previous-value name fits in the 253 characters of a Secret key.
const PREVIOUS_KEY_LENGTH_RULE: &str = concat!(
    "!(",
    keeps_previous!(),
    ") || self.keys.all(k, size(k.name) + (has(k.generator.keyPair) ? 4 : 0) + ",
    "size(self.previous.suffix) <= 253)"
);

/// A Secret whose keys the operator generates and rotates on a schedule, keeping the previous
/// value for a grace period and restarting the workloads that consume it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "security.medianest.io",
    version = "v1alpha1",
    kind = "SecretRotation",
    plural = "secretrotations",
    shortname = "sr",
    category = "medianest",
    namespaced,
    status = "SecretRotationStatus",
    derive = "PartialEq",
    doc = "A Secret whose keys the operator generates and rotates on a schedule.",
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretName"),
    printcolumn(
        name = "Version",
        type_ = "integer",
        json_path = ".status.currentVersion"
    ),
    printcolumn(
        name = "Last rotated",
        type_ = "date",
        json_path = ".status.lastRotation"
    ),
    printcolumn(
        name = "Next rotation",
        type_ = "string",
        json_path = ".status.nextRotation"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.keys.all(k, self.keys.exists_one(j, j.name == k.name))",
        "messageExpression": DUPLICATE_KEY_MESSAGE,
        "fieldPath": ".keys",
    },
    {
        "rule": PUBLIC_KEY_RULE,
        "messageExpression": PUBLIC_KEY_MESSAGE,
        "fieldPath": ".keys",
    },
    {
        "rule": PREVIOUS_KEY_RULE,
        "messageExpression": PREVIOUS_KEY_MESSAGE,
        "fieldPath": ".previous.suffix",
    },
    {
        "rule": PREVIOUS_PUBLIC_KEY_RULE,
        "messageExpression": PREVIOUS_PUBLIC_KEY_MESSAGE,
        "fieldPath": ".previous.suffix",
    },
    {
        "rule": PREVIOUS_KEY_LENGTH_RULE,
        "message": "a key name plus .pub for a key pair plus previous.suffix is longer than 253 characters, the limit of a Secret key; shorten the key name or previous.suffix",
        "fieldPath": ".previous.suffix",
    },
]))]
pub struct SecretRotationSpec {
    /// Name of the Secret to generate, in the namespace of this SecretRotation.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub secret_name: String,

    /// Type of the Secret. Defaults to Opaque.
    #[serde(default = "default_secret_type")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_type: String,

    /// Labels to put on the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub labels: BTreeMap<String, String>,

    /// Annotations to put on the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub annotations: BTreeMap<String, String>,

    /// The keys of the Secret and how each value is generated.
    #[schemars(length(min = 1, max = 32))]
    pub keys: Vec<KeySpec>,

    /// Time between rotations, such as 2160h or 90d. Defaults to 90d. Intervals below one hour
    /// are refused unless the operator runs with a lower --min-rotation-interval.
    #[serde(default = "default_interval")]
    pub interval: Duration,

    /// Whether the previous value of each key is kept after a rotation, under which key name,
    /// and for how long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousValue>,

    /// Workloads restarted after each rotation, so that they load the new value.
    #[serde(default)]
    pub consumers: Consumers,

    /// Handling of a Secret that exists and was not generated by the operator, such as a
    /// value that was hard-coded and may have leaked. Rotate (the default) replaces it at once.
    /// Keep keeps the value until the first scheduled rotation.
    #[serde(default)]
    pub existing_secret: ExistingSecret,

    /// Handling of a generated value that someone edited. Rotate (the default, since the value
    /// may be compromised) replaces it at once; Adopt keeps the edited value. A Warning Event
    /// is published either way.
    #[serde(default)]
    pub on_edit: OnEdit,

    /// Replace a Secret of another type than secretType. Without it such a Secret is
    /// reported and left alone. Defaults to false.
    #[serde(default)]
    pub allow_type_change: bool,

    /// Fate of the Secret when this SecretRotation is deleted. Retain (the default) keeps it,
    /// because consumers depend on it; Delete removes it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// One key of the Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySpec {
    /// Key name in the Secret's data, such as jwt-signing-key: letters, digits, '-', '_' and
    /// '.', not '.' and not starting with '..'. It must differ from every other name the
    /// Secret contains, including KEY.pub of a key pair and the previous-value names.
    #[schemars(
        length(min = 1, max = 200),
        regex(pattern = r"^[-._a-zA-Z0-9]+$"),
        extend("x-kubernetes-validations" = [{
            "rule": "self != '.' && !self.startsWith('..')",
            "message": "a Secret rejects the key names . and .. and names starting with ..; rename the key",
        }])
    )]
    pub name: String,

    /// Generator of the value.
    pub generator: Generator,
}

/// Generator of a value; set exactly one field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.randomBytes), has(self.password), has(self.jwtHmac), has(self.keyPair)].filter(x, x).size() == 1",
    "message": "set exactly one of randomBytes, password, jwtHmac or keyPair",
}]))]
pub struct Generator {
    /// Random bytes from the operating system's secure random source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_bytes: Option<RandomBytes>,

    /// A password of random characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,

    /// A key for HMAC-signed JSON Web Tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_hmac: Option<JwtHmac>,

    /// An asymmetric key pair for signing tokens: the private key in PEM under the key's name,
    /// and the public key under KEY.pub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pair: Option<KeyPair>,
}

/// Random bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RandomBytes {
    /// Number of random bytes, before encoding: 1 to 4096.
    #[schemars(range(min = 1, max = 4096))]
    pub length: i32,

    /// Encoding of the bytes in the Secret. Defaults to base64.
    #[serde(default)]
    pub encoding: Encoding,
}

/// Text form of random bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Standard base64 with padding.
    #[default]
    Base64,
    /// URL-safe base64 without padding.
    Base64url,
    /// Lowercase hexadecimal.
    Hex,
    /// The bytes themselves.
    Raw,
}

/// A password.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.alphabet != 'alphanumeric' || !('symbol' in self.require)",
    "message": "the alphanumeric alphabet has no symbols; remove symbol from require, or choose the urlSafe or ascii alphabet",
    "fieldPath": ".require",
}]))]
pub struct Password {
    /// Number of characters: 8 to 1024.
    #[schemars(range(min = 8, max = 1024))]
    pub length: i32,

    /// Characters to draw from: alphanumeric (the default), urlSafe (letters, digits and
    /// -._~) or ascii (printable ASCII without space, quotes and backslash).
    #[serde(default)]
    pub alphabet: Alphabet,

    /// Character classes that appear at least once: lower, upper, digit, symbol.
    #[serde(default)]
    #[schemars(length(max = 4), extend("x-kubernetes-list-type" = "set"))]
    pub require: Vec<CharacterClass>,
}

/// Alphabet of a password.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Alphabet {
    #[default]
    Alphanumeric,
    UrlSafe,
    Ascii,
}

/// A class of characters.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CharacterClass {
    Lower,
    Upper,
    Digit,
    Symbol,
}

/// An HMAC key for JSON Web Tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.length >= (self.algorithm == 'HS256' ? 32 : self.algorithm == 'HS384' ? 48 : 64)",
    "message": "length is too short for the algorithm: HS256 needs at least 32 bytes, HS384 48 and HS512 64, the size of its hash",
    "fieldPath": ".length",
}]))]
pub struct JwtHmac {
    /// HS256, HS384 or HS512.
    pub algorithm: HmacAlgorithm,

    /// Key length in bytes: at least the hash size (32 for HS256, 48 for HS384, 64 for HS512),
    /// at most 4096. Defaults to 64.
    #[serde(default = "default_jwt_length")]
    #[schemars(range(min = 1, max = 4096))]
    pub length: i32,

    /// Encoding of the key in the Secret. Defaults to base64.
    #[serde(default)]
    pub encoding: Encoding,
}

/// HMAC algorithm of a JSON Web Token key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum HmacAlgorithm {
    HS256,
    HS384,
    HS512,
}

/// An asymmetric key pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyPair {
    /// RS256 (RSA 2048) or ES256 (ECDSA P-256).
    pub algorithm: KeyPairAlgorithm,
}

/// Algorithm of a token-signing key pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum KeyPairAlgorithm {
    RS256,
    ES256,
}

/// The previous value, kept after a rotation for consumers that still hold it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousValue {
    /// Keep the previous value of each key. Defaults to true.
    #[serde(default = "default_true")]
    pub keep: bool,

    /// Suffix of the key that keeps the previous value, as in jwt-signing-key.previous for the
    /// default .previous.
    #[serde(default = "default_suffix")]
    #[schemars(length(min = 1, max = 50), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub suffix: String,

    /// How long the previous value is kept after a rotation, such as 24h. Must not be longer
    /// than interval. Defaults to 24h.
    #[serde(default = "default_grace")]
    pub grace_period: Duration,
}

/// The workloads that consume the Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consumers {
    /// Workloads to restart, by kind and name, in this namespace.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub workloads: Vec<ConsumerRef>,

    /// Also restart every Deployment, StatefulSet and DaemonSet of this namespace whose pod
    /// template refers to the Secret through env, envFrom or a volume. Defaults to false.
    #[serde(default)]
    pub discover: bool,

    /// Restarts of one workload are at least this far apart, so that several rotations close
    /// together (of this Secret or of others the workload uses) cause one rollout. Defaults
    /// to 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_window: Option<Duration>,
}

/// A workload by kind and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerRef {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: ConsumerKind,
    /// Name of the workload.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// Kind of a consumer workload.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum ConsumerKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// Handling of a Secret the operator did not generate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ExistingSecret {
    /// Rotate it at once.
    #[default]
    Rotate,
    /// Keep its values until the first scheduled rotation.
    Keep,
}

/// Handling of a generated value that was edited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OnEdit {
    /// Rotate at once.
    #[default]
    Rotate,
    /// Keep the edited value.
    Adopt,
}

/// Observed state of a SecretRotation, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotationStatus {
    /// The metadata.generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready reports whether the Secret exists and is rotated on schedule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Version of the current values, counting from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,

    /// When the values were last rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<String>,

    /// When the next scheduled rotation is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<String>,

    /// The last value of the security.medianest.io/rotate annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_request: Option<String>,

    /// Workloads restarted for the current version, as Kind/name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarted_consumers: Vec<String>,
}

fn default_interval() -> Duration {
    Duration::new("90d")
}

fn default_secret_type() -> String {
    "Opaque".to_string()
}

fn default_jwt_length() -> i32 {
    64
}

fn default_true() -> bool {
    true
}

fn default_suffix() -> String {
    ".previous".to_string()
}

fn default_grace() -> Duration {
    Duration::new("24h")
}

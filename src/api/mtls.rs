//! The `mtls` section of a MediaNestSecurityPolicy: a CA and service certificates.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;

/// Certificates for mutual TLS between the services of the governed namespaces, issued by a
/// CA that the operator generates or that a Secret holds, and renewed before they expire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MtlsSpec {
    /// The certificate authority that signs the service certificates.
    #[serde(default)]
    pub ca: CaSpec,

    /// Key algorithm of the generated CA and of every service certificate. Defaults to
    /// ECDSAP256.
    #[serde(default)]
    pub key_algorithm: KeyAlgorithm,

    /// Lifetime of a generated CA, such as 8760h or 365d. Defaults to 365d. The CA is rotated
    /// when a third of it remains, or at once on request (see the annotation
    /// security.medianest.io/rotate-ca).
    #[serde(default = "default_ca_lifetime")]
    pub ca_lifetime: Duration,

    /// Lifetime of a service certificate, such as 2160h or 90d. Defaults to 90d. A
    /// certificate never outlives the CA that signs it.
    #[serde(default = "default_lifetime")]
    pub lifetime: Duration,

    /// How long before its expiry a service certificate is renewed. Must be shorter than
    /// lifetime. Defaults to a third of lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<Duration>,

    /// The services that get certificates.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub services: Vec<ServiceCertificate>,

    /// DNS domain of the cluster, used in the fully qualified service names. Defaults to
    /// cluster.local.
    #[serde(default = "default_cluster_domain")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub cluster_domain: String,

    /// Name of the ConfigMap, in every governed namespace, whose key ca.crt holds the CA
    /// certificates to trust. Defaults to medianest-ca-bundle.
    #[serde(default = "default_bundle_name")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub trust_bundle_config_map: String,

    /// During a CA rotation, how long the new CA is trusted before it signs anything, so that
    /// every consumer has loaded the new bundle. Defaults to 10m.
    #[serde(default = "default_propagation_delay")]
    pub propagation_delay: Duration,

    /// What happens to the CA and certificate Secrets when the policy is deleted: Retain
    /// (the default) keeps them, because running services depend on them; Delete removes them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Where the CA comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSpec {
    /// An existing CA in a Secret with the keys tls.crt and tls.key. When unset, the operator
    /// generates a CA and keeps it in the Secret mn-POLICY-ca in its own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

/// A Secret by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Namespace of the Secret. Defaults to the operator's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
}

/// Key algorithm of the certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum KeyAlgorithm {
    /// ECDSA on the NIST P-256 curve.
    #[default]
    #[serde(rename = "ECDSAP256")]
    EcdsaP256,
    /// ECDSA on the NIST P-384 curve.
    #[serde(rename = "ECDSAP384")]
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA with a 2048-bit modulus.
    #[serde(rename = "RSA2048")]
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    #[serde(rename = "RSA3072")]
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    #[serde(rename = "RSA4096")]
    Rsa4096,
}

/// Services that get a certificate: one by name, or every Service a selector matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.name) != has(self.selector)",
        "message": "set exactly one of name or selector",
    },
    {
        "rule": "!has(self.secretName) || has(self.name)",
        "message": "secretName is only allowed with name, because a selector may match several Services",
        "fieldPath": ".secretName",
    },
]))]
pub struct ServiceCertificate {
    /// Name of a Service; it gets a certificate in every governed namespace where it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Option<String>,

    /// Selects Services by their labels in the governed namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// Limits the entry to one governed namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,

    /// Extra DNS names, besides SERVICE, SERVICE.NAMESPACE, SERVICE.NAMESPACE.svc and
    /// SERVICE.NAMESPACE.svc.CLUSTER_DOMAIN.
    #[serde(default)]
    #[schemars(
        length(max = 16),
        inner(
            length(min = 1, max = 253),
            regex(
                pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
            )
        )
    )]
    pub dns_names: Vec<String>,

    /// Extra IP addresses, such as 10.0.0.5.
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(max = 45)))]
    pub ip_addresses: Vec<String>,

    /// Name of the kubernetes.io/tls Secret. Defaults to SERVICE-tls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub secret_name: Option<String>,
}

/// What happens to credential Secrets when their resource is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep them.
    #[default]
    Retain,
    /// Delete them with the resource.
    Delete,
}

fn default_ca_lifetime() -> Duration {
    Duration::new("365d")
}

fn default_lifetime() -> Duration {
    Duration::new("90d")
}

fn default_cluster_domain() -> String {
    "cluster.local".to_string()
}

fn default_bundle_name() -> String {
    "medianest-ca-bundle".to_string()
}

fn default_propagation_delay() -> Duration {
    Duration::new("10m")
}

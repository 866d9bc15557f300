//! The CustomResourceDefinitions as the operator generates them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{MediaNestSecurityPolicy, SecretRotation};

/// Returns every CustomResourceDefinition of the operator, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![MediaNestSecurityPolicy::crd(), SecretRotation::crd()]
}

/// Renders every CustomResourceDefinition as one YAML stream.
pub fn to_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

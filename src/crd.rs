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

#[cfg(test)]
mod tests {
    #[test]
    fn committed_yaml_matches_code() {
        let committed = include_str!("../crds/crds.yaml");
        let generated = super::to_yaml().expect("CRDs encode as YAML");
        assert!(
            committed == generated,
            "crds/crds.yaml differs from the CRDs the code generates; run `make crds` and commit the result"
        );
    }

    #[test]
    fn every_crd_in_category_with_status() {
        for crd in super::all() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            assert_eq!(
                crd.spec.names.categories,
                Some(vec!["medianest".to_string()]),
                "{name}"
            );
            for version in &crd.spec.versions {
                let status = version
                    .subresources
                    .as_ref()
                    .and_then(|sub| sub.status.as_ref());
                assert!(
                    status.is_some(),
                    "{name} {} has no status subresource",
                    version.name
                );
            }
        }
    }
}

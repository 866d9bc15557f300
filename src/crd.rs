//! The CustomResourceDefinitions as the operator generates them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{MediaNestSecurityPolicy, SecretRotation};

/// Returns every CustomResourceDefinition of the operator, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        reflowed(MediaNestSecurityPolicy::crd()),
        reflowed(SecretRotation::crd()),
    ]
}

/// Joins the wrapped lines of every description into paragraphs, so that `kubectl explain`
/// wraps the text to the terminal instead of keeping the source's line breaks, and keeps one
/// description per list field.
fn reflowed(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    reflow_descriptions(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

fn reflow_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            // `kubectl explain` prints a list's description followed by its items'; the
            // list's own text is the one written for the field.
            if map.contains_key("description")
                && let Some(serde_json::Value::Object(items)) = map.get_mut("items")
            {
                items.remove("description");
            }
            for (key, item) in map.iter_mut() {
                match item {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = reflow(text);
                    }
                    _ => reflow_descriptions(item),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(reflow_descriptions),
        _ => {}
    }
}

/// Joins the lines of each paragraph of `text` with spaces. A line that starts a list item
/// (`- ` or `* `) keeps its own line.
fn reflow(text: &str) -> String {
    let mut paragraphs = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut joined = String::new();
        for line in paragraph.lines().map(str::trim) {
            if joined.is_empty() {
                joined.push_str(line);
            } else if line.starts_with("- ") || line.starts_with("* ") {
                joined.push('\n');
                joined.push_str(line);
            } else {
                joined.push(' ');
                joined.push_str(line);
            }
        }
        paragraphs.push(joined);
    }
    paragraphs.join("\n\n")
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
    fn descriptions_reflowed() {
        assert_eq!(
            super::reflow("Limits by name, for containers\nwithout limits.\n\nDefaults to\n1Gi."),
            "Limits by name, for containers without limits.\n\nDefaults to 1Gi."
        );
        assert_eq!(
            super::reflow("One of:\n- Enforce: writes\n  everything\n- Audit: reports"),
            "One of:\n- Enforce: writes everything\n- Audit: reports"
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

//! Kubernetes label selector matching and validation.
//!
//! Matching and the syntax rules follow `k8s.io/apimachinery`: `LabelSelectorAsSelector`
//! for matching and `IsQualifiedName` / `IsValidLabelValue` for keys and values.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Maximum length of a label value and of the name part of a label key.
pub const MAX_LABEL_NAME_LEN: usize = 63;

/// Maximum length of the DNS subdomain prefix of a label key.
pub const MAX_LABEL_PREFIX_LEN: usize = 253;

const NAME_CHARACTERS: &str =
    "must start and end with [A-Za-z0-9] and contain only [A-Za-z0-9], '-', '_' or '.'";

const PREFIX_CHARACTERS: &str = "must be a lowercase DNS subdomain: dot-separated parts of [a-z0-9] and '-', \
     each starting and ending with [a-z0-9]";

/// Validation error for a label selector, key or value. Each variant names the field path of the
/// offending item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label key that is not a qualified name.
    #[error("{field}: invalid label key {key:?}: {reason}")]
    InvalidLabelKey {
        field: String,
        key: String,
        reason: String,
    },
    /// A label value that is too long or contains characters outside the allowed set.
    #[error("{field}: invalid label value {value:?}: {reason}")]
    InvalidLabelValue {
        field: String,
        value: String,
        reason: String,
    },
    /// A `matchExpressions` operator other than In, NotIn, Exists or DoesNotExist.
    #[error(
        "{field}: invalid operator {operator:?}: must be one of In, NotIn, Exists or DoesNotExist"
    )]
    UnknownOperator { field: String, operator: String },
    /// An `In` or `NotIn` expression without values.
    #[error("{field}: missing values: operator {operator} requires at least one value")]
    MissingValues { field: String, operator: String },
    /// An `Exists` or `DoesNotExist` expression with values.
    #[error("{field}: unexpected values {values:?}: operator {operator} must have no values")]
    UnexpectedValues {
        field: String,
        operator: String,
        values: Vec<String>,
    },
}

/// Checks whether `labels` satisfy `selector`.
///
/// All `matchLabels` pairs and all `matchExpressions` must hold. `NotIn` and `DoesNotExist`
/// hold when the key is absent. An empty selector matches every label set. A selector that
/// [`validate`] rejects matches nothing, as upstream `LabelSelectorAsSelector` fails on it.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if validate(selector, "selector").is_err() {
        return false;
    }

    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));

    labels_match
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|requirement| requirement_matches(requirement, labels))
}

fn requirement_matches(
    requirement: &LabelSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let actual = labels.get(&requirement.key);
    let values = requirement.values.as_deref().unwrap_or_default();
    let in_values = actual.is_some_and(|value| values.contains(value));

    match requirement.operator.as_str() {
        "In" => in_values,
        "NotIn" => !in_values,
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        _ => false,
    }
}

/// Validates every key, value and operator of `selector`.
///
/// `field` is the path of the selector itself, such as `spec.podSelector`. Errors name the
/// path of the offending item below it, such as `spec.podSelector.matchLabels["app"]` or
/// `spec.podSelector.matchExpressions[0].values[1]`. Returns the first error found.
pub fn validate(selector: &LabelSelector, field: &str) -> Result<(), SelectorError> {
    for (key, value) in selector.match_labels.iter().flatten() {
        let entry_field = format!("{field}.matchLabels[{key:?}]");
        validate_label_key(key, &entry_field)?;
        validate_label_value(value, &entry_field)?;
    }

    for (index, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let expression_field = format!("{field}.matchExpressions[{index}]");
        validate_requirement(requirement, &expression_field)?;
    }

    Ok(())
}

fn validate_requirement(
    requirement: &LabelSelectorRequirement,
    field: &str,
) -> Result<(), SelectorError> {
    validate_label_key(&requirement.key, &format!("{field}.key"))?;

    let values = requirement.values.as_deref().unwrap_or_default();
    let operator = requirement.operator.as_str();
    match operator {
        "In" | "NotIn" => {
            if values.is_empty() {
                return Err(SelectorError::MissingValues {
                    field: format!("{field}.values"),
                    operator: operator.to_owned(),
                });
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                return Err(SelectorError::UnexpectedValues {
                    field: format!("{field}.values"),
                    operator: operator.to_owned(),
                    values: values.to_vec(),
                });
            }
        }
        _ => {
            return Err(SelectorError::UnknownOperator {
                field: format!("{field}.operator"),
                operator: operator.to_owned(),
            });
        }
    }

    for (index, value) in values.iter().enumerate() {
        validate_label_value(value, &format!("{field}.values[{index}]"))?;
    }

    Ok(())
}

/// Validates a label key: an optional DNS subdomain prefix of at most 253 characters and a
/// `/`, then a name of 1 to 63 characters.
///
/// `field` is the full path reported in the error.
pub fn validate_label_key(key: &str, field: &str) -> Result<(), SelectorError> {
    let invalid = |reason: String| SelectorError::InvalidLabelKey {
        field: field.to_owned(),
        key: key.to_owned(),
        reason,
    };

    if key.is_empty() {
        return Err(invalid("must not be empty".to_owned()));
    }

    let name = match key.split_once('/') {
        None => key,
        Some((prefix, name)) => {
            if name.contains('/') {
                return Err(invalid("must contain at most one '/'".to_owned()));
            }
            check_prefix(prefix)
                .map_err(|reason| invalid(format!("prefix {prefix:?} {reason}")))?;
            name
        }
    };

    check_name(name).map_err(|reason| invalid(format!("name {name:?} {reason}")))
}

/// Validates a label value: empty, or 1 to 63 characters that start and end with
/// `[A-Za-z0-9]` and contain only `[A-Za-z0-9]`, `-`, `_` and `.`.
///
/// `field` is the full path reported in the error.
pub fn validate_label_value(value: &str, field: &str) -> Result<(), SelectorError> {
    if value.is_empty() {
        return Ok(());
    }

    check_name(value).map_err(|reason| SelectorError::InvalidLabelValue {
        field: field.to_owned(),
        value: value.to_owned(),
        reason,
    })
}

/// Checks the name part of a label key, which is also the rule for a non-empty label value.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > MAX_LABEL_NAME_LEN {
        return Err(format!(
            "is {} characters long, the maximum is {MAX_LABEL_NAME_LEN}",
            name.len()
        ));
    }

    let bytes = name.as_bytes();
    let ends_alphanumeric =
        bytes[0].is_ascii_alphanumeric() && bytes[bytes.len() - 1].is_ascii_alphanumeric();
    let allowed = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.');
    if !ends_alphanumeric || !bytes.iter().all(allowed) {
        return Err(NAME_CHARACTERS.to_owned());
    }

    Ok(())
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if prefix.len() > MAX_LABEL_PREFIX_LEN {
        return Err(format!(
            "is {} characters long, the maximum is {MAX_LABEL_PREFIX_LEN}",
            prefix.len()
        ));
    }
    if !prefix.split('.').all(is_dns_label) {
        return Err(PREFIX_CHARACTERS.to_owned());
    }

    Ok(())
}

/// Checks one dot-separated part of a DNS subdomain (RFC 1123 label without a length cap,
/// because upstream limits only the whole subdomain).
fn is_dns_label(part: &str) -> bool {
    let bytes = part.as_bytes();
    let Some((&first, &last)) = bytes.first().zip(bytes.last()) else {
        return false;
    };
    let lower_alphanumeric = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();

    lower_alphanumeric(first)
        && lower_alphanumeric(last)
        && bytes
            .iter()
            .all(|&byte| lower_alphanumeric(byte) || byte == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn selector(value: serde_json::Value) -> LabelSelector {
        serde_json::from_value(value).expect("test selector must deserialize")
    }

    #[test]
    fn matches_table() {
        use serde_json::json;

        let web = labels(&[("app", "web"), ("tier", "frontend")]);
        let cases = [
            ("empty selector", json!({}), &web, true),
            (
                "empty selector on no labels",
                json!({}),
                &BTreeMap::new(),
                true,
            ),
            (
                "empty matchLabels map",
                json!({"matchLabels": {}}),
                &web,
                true,
            ),
            (
                "matchLabels equal",
                json!({"matchLabels": {"app": "web"}}),
                &web,
                true,
            ),
            (
                "matchLabels other value",
                json!({"matchLabels": {"app": "api"}}),
                &web,
                false,
            ),
            (
                "matchLabels missing key",
                json!({"matchLabels": {"team": "a"}}),
                &web,
                false,
            ),
            (
                "matchLabels all pairs required",
                json!({"matchLabels": {"app": "web", "tier": "backend"}}),
                &web,
                false,
            ),
            (
                "matchLabels empty value needs key",
                json!({"matchLabels": {"team": ""}}),
                &web,
                false,
            ),
            (
                "In value listed",
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["api", "web"]}]}),
                &web,
                true,
            ),
            (
                "In value not listed",
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["api"]}]}),
                &web,
                false,
            ),
            (
                "In key absent",
                json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}),
                &web,
                false,
            ),
            (
                "NotIn value listed",
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
                &web,
                false,
            ),
            (
                "NotIn value not listed",
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["api"]}]}),
                &web,
                true,
            ),
            (
                "NotIn key absent",
                json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}),
                &web,
                true,
            ),
            (
                "Exists present",
                json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
                &web,
                true,
            ),
            (
                "Exists absent",
                json!({"matchExpressions": [{"key": "team", "operator": "Exists"}]}),
                &web,
                false,
            ),
            (
                "DoesNotExist absent",
                json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}),
                &web,
                true,
            ),
            (
                "DoesNotExist present",
                json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}),
                &web,
                false,
            ),
            (
                "Exists with empty values list",
                json!({"matchExpressions": [{"key": "app", "operator": "Exists", "values": []}]}),
                &web,
                true,
            ),
            (
                "labels and expressions both hold",
                json!({
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend"]}]
                }),
                &web,
                true,
            ),
            (
                "labels hold but expression fails",
                json!({
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["frontend"]}]
                }),
                &web,
                false,
            ),
            (
                "unknown operator matches nothing",
                json!({"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["web"]}]}),
                &web,
                false,
            ),
            (
                "lowercase operator matches nothing",
                json!({"matchExpressions": [{"key": "app", "operator": "exists"}]}),
                &web,
                false,
            ),
            (
                "In without values matches nothing",
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn"}]}),
                &web,
                false,
            ),
            (
                "invalid key matches nothing",
                json!({"matchExpressions": [{"key": "bad key", "operator": "DoesNotExist"}]}),
                &web,
                false,
            ),
        ];

        for (name, value, labels, expected) in cases {
            let actual = matches(&selector(value.clone()), labels);
            assert_eq!(
                actual, expected,
                "case {name:?}: selector {value} on {labels:?}"
            );
        }
    }

    #[test]
    fn label_key_valid() {
        let long_prefix = format!("{}.io", "a".repeat(MAX_LABEL_PREFIX_LEN - 3));
        let keys = [
            "app".to_owned(),
            "a".to_owned(),
            "App_Name-1.x".to_owned(),
            "kubernetes.io/metadata.name".to_owned(),
            "app.kubernetes.io/name".to_owned(),
            "my-org.example/Tier".to_owned(),
            "x".repeat(MAX_LABEL_NAME_LEN),
            format!("{long_prefix}/name"),
        ];
        for key in keys {
            assert_eq!(validate_label_key(&key, "f"), Ok(()), "key {key:?}");
        }
    }

    #[test]
    fn label_key_invalid() {
        let cases = [
            (String::new(), "must not be empty"),
            ("-app".to_owned(), "name \"-app\" must start and end"),
            ("app_".to_owned(), "must start and end"),
            ("bad key".to_owned(), "must start and end"),
            ("app*".to_owned(), "must start and end"),
            ("x".repeat(64), "is 64 characters long, the maximum is 63"),
            ("/app".to_owned(), "prefix \"\" must not be empty"),
            ("example.com/".to_owned(), "name \"\" must not be empty"),
            ("a/b/c".to_owned(), "at most one '/'"),
            ("Example.com/app".to_owned(), "lowercase DNS subdomain"),
            ("example..com/app".to_owned(), "lowercase DNS subdomain"),
            ("-example.com/app".to_owned(), "lowercase DNS subdomain"),
            ("example_org/app".to_owned(), "lowercase DNS subdomain"),
            (
                format!("{}/app", "a".repeat(254)),
                "is 254 characters long, the maximum is 253",
            ),
        ];
        for (key, expected) in cases {
            let error = validate_label_key(&key, "metadata.labels")
                .expect_err(&format!("key {key:?} must be rejected"));
            let message = error.to_string();
            assert!(
                message.starts_with("metadata.labels: invalid label key"),
                "key {key:?}: {message}"
            );
            assert!(
                message.contains(&format!("{key:?}")),
                "key {key:?}: {message}"
            );
            assert!(message.contains(expected), "key {key:?}: {message}");
        }
    }

    #[test]
    fn label_value_rules() {
        let valid = ["", "web", "v1.2.3", "A_b-C", &"9".repeat(63)];
        for value in valid {
            assert_eq!(validate_label_value(value, "f"), Ok(()), "value {value:?}");
        }

        let cases = [
            ("-web".to_owned(), "must start and end"),
            ("web.".to_owned(), "must start and end"),
            ("a/b".to_owned(), "must start and end"),
            ("café".to_owned(), "must start and end"),
            ("v".repeat(64), "is 64 characters long, the maximum is 63"),
        ];
        for (value, expected) in cases {
            let error = validate_label_value(&value, "f").expect_err(&format!("value {value:?}"));
            let message = error.to_string();
            assert!(
                message.starts_with("f: invalid label value"),
                "value {value:?}: {message}"
            );
            assert!(message.contains(expected), "value {value:?}: {message}");
        }
    }

    #[test]
    fn validate_accepts_valid() {
        let valid = selector(serde_json::json!({
            "matchLabels": {"app.kubernetes.io/name": "web", "tier": ""},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "team", "operator": "NotIn", "values": ["legacy"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists", "values": []}
            ]
        }));
        assert_eq!(validate(&valid, "spec.podSelector"), Ok(()));
        assert_eq!(
            validate(&LabelSelector::default(), "spec.podSelector"),
            Ok(())
        );
    }

    #[test]
    fn validate_error_paths() {
        use serde_json::json;

        let field = "spec.network.zones[1].podSelector";
        let cases = [
            (
                json!({"matchLabels": {"app": "-web"}}),
                SelectorError::InvalidLabelValue {
                    field: format!("{field}.matchLabels[\"app\"]"),
                    value: "-web".to_owned(),
                    reason: NAME_CHARACTERS.to_owned(),
                },
            ),
            (
                json!({"matchLabels": {"bad key": "web"}}),
                SelectorError::InvalidLabelKey {
                    field: format!("{field}.matchLabels[\"bad key\"]"),
                    key: "bad key".to_owned(),
                    reason: format!("name \"bad key\" {NAME_CHARACTERS}"),
                },
            ),
            (
                json!({"matchExpressions": [{"key": "/app", "operator": "Exists"}]}),
                SelectorError::InvalidLabelKey {
                    field: format!("{field}.matchExpressions[0].key"),
                    key: "/app".to_owned(),
                    reason: "prefix \"\" must not be empty".to_owned(),
                },
            ),
            (
                json!({"matchExpressions": [
                    {"key": "app", "operator": "Exists"},
                    {"key": "app", "operator": "Equals", "values": ["web"]}
                ]}),
                SelectorError::UnknownOperator {
                    field: format!("{field}.matchExpressions[1].operator"),
                    operator: "Equals".to_owned(),
                },
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "In"}]}),
                SelectorError::MissingValues {
                    field: format!("{field}.matchExpressions[0].values"),
                    operator: "In".to_owned(),
                },
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": []}]}),
                SelectorError::MissingValues {
                    field: format!("{field}.matchExpressions[0].values"),
                    operator: "NotIn".to_owned(),
                },
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["web"]}]}),
                SelectorError::UnexpectedValues {
                    field: format!("{field}.matchExpressions[0].values"),
                    operator: "Exists".to_owned(),
                    values: vec!["web".to_owned()],
                },
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist", "values": [""]}]}),
                SelectorError::UnexpectedValues {
                    field: format!("{field}.matchExpressions[0].values"),
                    operator: "DoesNotExist".to_owned(),
                    values: vec![String::new()],
                },
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "a b"]}]}),
                SelectorError::InvalidLabelValue {
                    field: format!("{field}.matchExpressions[0].values[1]"),
                    value: "a b".to_owned(),
                    reason: NAME_CHARACTERS.to_owned(),
                },
            ),
        ];

        for (value, expected) in cases {
            let actual = validate(&selector(value.clone()), field);
            assert_eq!(actual, Err(expected), "selector {value}");
        }
    }

    #[test]
    fn error_message_format() {
        let error = validate(
            &selector(serde_json::json!({"matchLabels": {"app": "-web"}})),
            "spec.network.zones[1].podSelector",
        )
        .expect_err("value -web must be rejected");
        assert_eq!(
            error.to_string(),
            "spec.network.zones[1].podSelector.matchLabels[\"app\"]: invalid label value \"-web\": \
             must start and end with [A-Za-z0-9] and contain only [A-Za-z0-9], '-', '_' or '.'"
        );

        let error = validate(
            &selector(serde_json::json!({"matchExpressions": [{"key": "app", "operator": "In"}]})),
            "spec.podSelector",
        )
        .expect_err("In without values must be rejected");
        assert_eq!(
            error.to_string(),
            "spec.podSelector.matchExpressions[0].values: missing values: \
             operator In requires at least one value"
        );
    }
}

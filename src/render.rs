//! `render`: the objects the controller would write, computed offline from YAML input.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::{Resource, ResourceExt};
use serde::Deserialize;
use serde_json::Value;

use crate::api::policy::Mode;
use crate::api::workloads::WorkloadsSpec;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::api::{MediaNestSecurityPolicy, SecretRotation};
use crate::controller::workload::Workload;
use crate::policy::hardening::{self, Owned, WorkloadId};
use crate::policy::namespaces::{self, NamespaceInfo};
use crate::policy::network::{self, PolicyRef};
use crate::policy::rotation as rotation_plan;
use crate::policy::validate::{self, FieldErrors};
use crate::policy::workloads::{self as plan, PolicyView};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use std::sync::Arc;

/// One named YAML stream, such as a file or standard input.
pub struct Source {
    pub name: String,
    pub text: String,
}

/// A problem in the input, naming the document and the field.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{source_name}: document {index}: invalid YAML: {message}")]
    Yaml {
        source_name: String,
        index: usize,
        message: String,
    },
    #[error("{0}")]
    Field(Box<FieldProblem>),
    #[error("failed to encode the output as YAML")]
    Encode(#[source] serde_yaml::Error),
}

/// A problem in one field of one document.
#[derive(Debug)]
pub struct FieldProblem {
    pub source_name: String,
    /// Position of the document in its stream, from 1, with the item of a List.
    pub index: String,
    pub kind: String,
    pub name: String,
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: document {} ({} {}): {}: {}",
            self.source_name, self.index, self.kind, self.name, self.field, self.message
        )
    }
}

/// Parsed input: the policies, the Namespaces, and the kinds that were skipped.
#[derive(Default)]
pub struct Input {
    pub policies: Vec<MediaNestSecurityPolicy>,
    pub namespaces: Vec<NamespaceInfo>,
    /// Deployments, StatefulSets, DaemonSets and CronJobs.
    pub workloads: Vec<Workload>,
    /// SecretRotations, with the documents they came from.
    pub rotations: Vec<RotationDocument>,
    /// Jobs and bare Pods, which can only be reported, as "Kind namespace/name".
    pub unchangeable: Vec<String>,
    /// Kinds that were skipped because render does not act on them, with their counts.
    pub skipped: BTreeMap<String, usize>,
}

/// A SecretRotation of the input and the document it came from.
pub struct RotationDocument {
    /// Name of the stream, as in [`Source::name`].
    pub source_name: String,
    /// Position of the document in its stream, as in [`FieldProblem::index`].
    pub index: String,
    pub rotation: SecretRotation,
}

/// Parses every document of every source. Policies and SecretRotations are also checked as the
/// controller checks them, with `min_rotation_interval` as the shortest rotation interval
/// allowed.
pub fn parse(
    sources: &[Source],
    min_rotation_interval: Duration,
) -> Result<Input, Vec<RenderError>> {
    let mut input = Input::default();
    let mut errors = Vec::new();

    for source in sources {
        for (position, document) in serde_yaml::Deserializer::from_str(&source.text).enumerate() {
            let index = position + 1;
            let value = match Value::deserialize(document) {
                Ok(Value::Null) => continue,
                Ok(value) => value,
                Err(error) => {
                    errors.push(RenderError::Yaml {
                        source_name: source.name.clone(),
                        index,
                        message: error.to_string(),
                    });
                    // The stream cannot be resynchronised after a syntax error.
                    break;
                }
            };
            let document = Document {
                source_name: &source.name,
                index: &index.to_string(),
                min_rotation_interval,
            };
            if let Err(error) = parse_document(&document, value, &mut input) {
                errors.push(error);
            }
        }
    }

    if errors.is_empty() {
        Ok(input)
    } else {
        Err(errors)
    }
}

/// Location of a document, and the operator setting that its checks depend on.
struct Document<'a> {
    source_name: &'a str,
    index: &'a str,
    min_rotation_interval: Duration,
}

fn parse_document(document: &Document, value: Value, input: &mut Input) -> Result<(), RenderError> {
    let Document {
        source_name, index, ..
    } = *document;
    let kind = match value.get("kind") {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => String::from("<invalid>"),
        None => String::new(),
    };
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_string();
    let field_error = |field: String, message: String| {
        RenderError::Field(Box::new(FieldProblem {
            source_name: source_name.to_string(),
            index: index.to_string(),
            kind: kind.clone(),
            name: name.clone(),
            field,
            message,
        }))
    };
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");

    match kind.as_str() {
        "MediaNestSecurityPolicy" => {
            expect_api_version(api_version, "security.medianest.io/v1alpha1")
                .map_err(|message| field_error("apiVersion".into(), message))?;
            check_name(&name, 253)
                .map_err(|message| field_error("metadata.name".into(), message))?;
            let policy: MediaNestSecurityPolicy = serde_path_to_error::deserialize(value.clone())
                .map_err(|error| {
                field_error(error.path().to_string(), error.inner().to_string())
            })?;
            let typed = serde_json::to_value(&policy).unwrap_or(Value::Null);
            if let Some(unknown) = unknown_fields(&value, &typed, "")
                .into_iter()
                .find(|path| !path.starts_with("status"))
            {
                return Err(field_error(
                    unknown,
                    "unknown field; check its spelling against kubectl explain msp".into(),
                ));
            }
            if let Err(errors) = validate::validate_policy(&policy.name_any(), &policy.spec) {
                let (field, message) = first_and_rest(&errors);
                return Err(field_error(field, message));
            }
            input.policies.push(policy);
        }
        "Namespace" => {
            expect_api_version(api_version, "v1")
                .map_err(|message| field_error("apiVersion".into(), message))?;
            check_name(&name, 63)
                .map_err(|message| field_error("metadata.name".into(), message))?;
            let namespace: Namespace =
                serde_path_to_error::deserialize(value).map_err(|error| {
                    field_error(error.path().to_string(), error.inner().to_string())
                })?;
            input.namespaces.push(NamespaceInfo::new(
                namespace.name_any(),
                namespace.labels().clone(),
            ));
        }
        "Deployment" | "StatefulSet" | "DaemonSet" => {
            expect_api_version(api_version, "apps/v1")
                .map_err(|message| field_error("apiVersion".into(), message))?;
            check_name(&name, 253)
                .map_err(|message| field_error("metadata.name".into(), message))?;
            let to_error = |error: serde_path_to_error::Error<serde_json::Error>| {
                field_error(error.path().to_string(), error.inner().to_string())
            };
            let workload = match kind.as_str() {
                "Deployment" => Workload::Deployment(Arc::new(
                    serde_path_to_error::deserialize(value).map_err(to_error)?,
                )),
                "StatefulSet" => Workload::StatefulSet(Arc::new(
                    serde_path_to_error::deserialize(value).map_err(to_error)?,
                )),
                _ => Workload::DaemonSet(Arc::new(
                    serde_path_to_error::deserialize(value).map_err(to_error)?,
                )),
            };
            input.workloads.push(with_namespace(workload));
        }
        "CronJob" => {
            expect_api_version(api_version, "batch/v1")
                .map_err(|message| field_error("apiVersion".into(), message))?;
            check_name(&name, 52)
                .map_err(|message| field_error("metadata.name".into(), message))?;
            let cron_job = serde_path_to_error::deserialize(value).map_err(|error| {
                field_error(error.path().to_string(), error.inner().to_string())
            })?;
            input
                .workloads
                .push(with_namespace(Workload::CronJob(Arc::new(cron_job))));
        }
        "SecretRotation" => {
            expect_api_version(api_version, "security.medianest.io/v1alpha1")
                .map_err(|message| field_error("apiVersion".into(), message))?;
            check_name(&name, 253)
                .map_err(|message| field_error("metadata.name".into(), message))?;
            let rotation: SecretRotation = serde_path_to_error::deserialize(value.clone())
                .map_err(|error| {
                    field_error(error.path().to_string(), error.inner().to_string())
                })?;
            let typed = serde_json::to_value(&rotation).unwrap_or(Value::Null);
            if let Some(unknown) = unknown_fields(&value, &typed, "")
                .into_iter()
                .find(|path| !path.starts_with("status"))
            {
                return Err(field_error(
                    unknown,
                    "unknown field; check its spelling against kubectl explain sr".into(),
                ));
            }
            if let Err(errors) =
                rotation_plan::validate_spec(&rotation.spec, document.min_rotation_interval)
            {
                let (field, message) = first_and_rest(&errors);
                return Err(field_error(field, message));
            }
            input.rotations.push(RotationDocument {
                source_name: source_name.to_string(),
                index: index.to_string(),
                rotation,
            });
        }
        "Job" | "Pod" => {
            let namespace = value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            input
                .unchangeable
                .push(format!("{kind} {namespace}/{name}"));
        }
        "List" => {
            // `kubectl get -o yaml` prints several objects as one List.
            let items = value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (position, item) in items.into_iter().enumerate() {
                let item_document = Document {
                    index: &format!("{index}, items[{position}]"),
                    ..*document
                };
                parse_document(&item_document, item, input)?;
            }
        }
        "" => {
            return Err(field_error(
                "kind".into(),
                "missing; every document needs apiVersion and kind".into(),
            ));
        }
        "<invalid>" => {
            return Err(field_error(
                "kind".into(),
                "must be a string, such as Namespace".into(),
            ));
        }
        other => *input.skipped.entry(other.to_string()).or_insert(0) += 1,
    }
    Ok(())
}

/// Returns the field of the first error, and a message of the first error followed by the
/// others.
fn first_and_rest(errors: &FieldErrors) -> (String, String) {
    let first = &errors.0[0];
    let rest: Vec<String> = errors.0[1..].iter().map(ToString::to_string).collect();
    let mut message = first.message.clone();
    if !rest.is_empty() {
        message = format!("{message}; also {}", rest.join("; "));
    }
    (first.field.clone(), message)
}

/// Gives a workload without a namespace the `default` namespace, as kubectl would.
fn with_namespace(workload: Workload) -> Workload {
    fn set<K: Clone + kube::Resource>(object: Arc<K>) -> Arc<K> {
        if object.meta().namespace.is_some() {
            return object;
        }
        let mut copy = (*object).clone();
        copy.meta_mut().namespace = Some("default".to_string());
        Arc::new(copy)
    }
    match workload {
        Workload::Deployment(object) => Workload::Deployment(set(object)),
        Workload::StatefulSet(object) => Workload::StatefulSet(set(object)),
        Workload::DaemonSet(object) => Workload::DaemonSet(set(object)),
        Workload::CronJob(object) => Workload::CronJob(set(object)),
    }
}

fn expect_api_version(found: &str, expected: &str) -> Result<(), String> {
    if found == expected {
        Ok(())
    } else if found.is_empty() {
        Err(format!("missing; use {expected}"))
    } else {
        Err(format!("{found:?} is not served; use {expected}"))
    }
}

/// Checks an object name as the API server would: lowercase letters, digits, '-' and '.',
/// starting and ending with a letter or digit, at most `max` characters.
fn check_name(name: &str, max: usize) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use at most {max} lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ))
    }
}

/// Lists the paths of fields in `input` that the typed value dropped: fields the schema does
/// not know, which the API server would reject. Empty values are ignored, because the typed
/// value leaves out empty lists and maps.
fn unknown_fields(input: &Value, typed: &Value, path: &str) -> Vec<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (input, typed) {
        (Value::Object(given), Value::Object(known)) => given
            .iter()
            .flat_map(|(key, value)| match known.get(key) {
                Some(typed_value) => unknown_fields(value, typed_value, &join(key)),
                None if is_empty(value) => Vec::new(),
                None => vec![join(key)],
            })
            .collect(),
        (Value::Array(given), Value::Array(known)) => given
            .iter()
            .zip(known)
            .enumerate()
            .flat_map(|(position, (value, typed_value))| {
                unknown_fields(value, typed_value, &format!("{path}[{position}]"))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// A note for standard error about input that produced nothing.
pub struct Note(pub String);

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Renders the objects the controller would write for `input`, as one YAML stream.
pub fn render(input: &Input, operator_namespace: &str) -> Result<(String, Vec<Note>), RenderError> {
    render_with(input, operator_namespace, false)
}

/// Renders like [`render`]; with `show_secrets`, Secrets of SecretRotations carry freshly
/// generated values instead of redacted placeholders.
pub fn render_with(
    input: &Input,
    operator_namespace: &str,
    show_secrets: bool,
) -> Result<(String, Vec<Note>), RenderError> {
    let mut out = String::new();
    let mut notes = Vec::new();

    for policy in &input.policies {
        let name = policy.name_any();
        if policy.spec.mode == Mode::Audit {
            notes.push(Note(format!(
                "MediaNestSecurityPolicy {name} is in Audit mode: the controller writes nothing for it"
            )));
            continue;
        }
        if policy.spec.mtls.is_some() {
            notes.push(Note(format!(
                "MediaNestSecurityPolicy {name} sets spec.mtls: its certificate Secrets and CA bundles are generated at run time and not rendered"
            )));
        }
        let governed = namespaces::governed(&policy.spec, &input.namespaces, operator_namespace);
        if governed.is_empty() {
            notes.push(Note(format!(
                "MediaNestSecurityPolicy {name} governs no namespace of the input; add the Namespaces it should select"
            )));
        }
        let reference = PolicyRef {
            name: &name,
            owner: policy
                .meta()
                .uid
                .as_ref()
                .and_then(|_| policy.controller_owner_ref(&())),
        };
        for object in network::compile(&reference, &policy.spec.network, &governed) {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(&object).map_err(RenderError::Encode)?);
        }
    }
    render_workloads(input, operator_namespace, &mut out, &mut notes)?;
    render_rotations(input, show_secrets, &mut out)?;
    for (kind, count) in &input.skipped {
        notes.push(Note(format!(
            "skipped {count} {kind} documents: render does not act on this kind"
        )));
    }
    Ok((out, notes))
}

/// Appends the Secret each SecretRotation creates first. Values are redacted, with a note of
/// what would be generated, unless `show_secrets` is set.
fn render_rotations(
    input: &Input,
    show_secrets: bool,
    out: &mut String,
) -> Result<(), RenderError> {
    for document in &input.rotations {
        let rotation = &document.rotation;
        let spec = &rotation.spec;
        let mut data = serde_json::Map::new();
        let mut string_data = serde_json::Map::new();
        for (index, key) in spec.keys.iter().enumerate() {
            if show_secrets {
                let values = crate::controller::rotation::generate(&key.name, &key.generator)
                    .map_err(|error| generation_failed(document, index, error))?;
                for (name, value) in values {
                    data.insert(name, Value::String(STANDARD.encode(&value)));
                }
            } else {
                string_data.insert(
                    key.name.clone(),
                    Value::String(format!(
                        "[redacted: {}]",
                        describe_generator(&key.generator)
                    )),
                );
                if key.generator.key_pair.is_some() {
                    string_data.insert(
                        format!("{}.pub", key.name),
                        Value::String("[redacted: public key in PEM]".into()),
                    );
                }
            }
        }
        let mut body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": spec.secret_name,
                "namespace": rotation.namespace().unwrap_or_else(|| "default".into()),
                "labels": spec.labels,
                "annotations": spec.annotations,
            },
            "type": spec.secret_type,
        });
        if show_secrets {
            body["data"] = Value::Object(data);
        } else {
            body["stringData"] = Value::Object(string_data);
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&body).map_err(RenderError::Encode)?);
    }
    Ok(())
}

/// Builds the error for a failed generator of key `index`, naming its document and field.
fn generation_failed(
    document: &RotationDocument,
    index: usize,
    error: crate::controller::error::Error,
) -> RenderError {
    let message = match error {
        crate::controller::error::Error::GenerateKey { message, .. } => message,
        other => other.to_string(),
    };
    let generator = &document.rotation.spec.keys[index].generator;
    RenderError::Field(Box::new(FieldProblem {
        source_name: document.source_name.clone(),
        index: document.index.clone(),
        kind: "SecretRotation".into(),
        name: document.rotation.name_any(),
        field: format!(
            "spec.keys[{index}].generator.{}",
            generator_field(generator)
        ),
        message: format!("failed to generate a value: {message}"),
    }))
}

/// Returns the name of the generator field that is set, such as jwtHmac.
fn generator_field(generator: &crate::api::rotation::Generator) -> &'static str {
    if generator.random_bytes.is_some() {
        "randomBytes"
    } else if generator.password.is_some() {
        "password"
    } else if generator.jwt_hmac.is_some() {
        "jwtHmac"
    } else if generator.key_pair.is_some() {
        "keyPair"
    } else {
        "<none>"
    }
}

fn describe_generator(generator: &crate::api::rotation::Generator) -> String {
    if let Some(random) = &generator.random_bytes {
        return format!("{} random bytes, {:?}", random.length, random.encoding).to_lowercase();
    }
    if let Some(password) = &generator.password {
        return format!(
            "password of {} characters, {:?}",
            password.length, password.alphabet
        )
        .to_lowercase();
    }
    if let Some(jwt) = &generator.jwt_hmac {
        return format!("{:?} key of {} bytes", jwt.algorithm, jwt.length);
    }
    if let Some(pair) = &generator.key_pair {
        return format!("{:?} private key in PEM", pair.algorithm);
    }
    "no generator".to_string()
}

/// Appends the hardening patches of the input's workloads and the Pod Security labels of
/// the governed namespaces: the server-side apply bodies the controller would send.
fn render_workloads(
    input: &Input,
    operator_namespace: &str,
    out: &mut String,
    notes: &mut Vec<Note>,
) -> Result<(), RenderError> {
    // Audit policies write nothing, so only Enforce policies shape what is written.
    let views: Vec<PolicyView> = input
        .policies
        .iter()
        .filter(|policy| policy.spec.mode == Mode::Enforce)
        .filter_map(|policy| {
            let governed =
                namespaces::governed(&policy.spec, &input.namespaces, operator_namespace)
                    .into_iter()
                    .map(|namespace| namespace.name.clone())
                    .collect();
            Some(PolicyView {
                name: policy.metadata.name.as_deref()?,
                spec: &policy.spec,
                governed,
            })
        })
        .collect();
    let now = Timestamp::now();
    let mut exempted: BTreeMap<String, Vec<(WorkloadId, PodTemplateSpec)>> = BTreeMap::new();

    for workload in &input.workloads {
        let id = workload.id();
        let Some(template) = workload.template() else {
            continue;
        };
        let selecting = plan::selecting(&views, &id.namespace, Some(id.kind), &workload.labels());
        if selecting.is_empty() {
            continue;
        }
        let specs: Vec<&WorkloadsSpec> = selecting
            .iter()
            .filter_map(|view| view.spec.workloads.as_ref())
            .collect();
        let effective = hardening::merge(&specs, &id, now);
        let result = hardening::harden(template, &effective, &Owned::default());
        if !result.exemptions.is_empty() {
            let hardened = hardening::apply_to_template(template, &result.template_patch);
            exempted
                .entry(id.namespace.clone())
                .or_default()
                .push((id.clone(), hardened));
        }
        if result.changes.is_empty() {
            notes.push(Note(format!("{id} is already hardened")));
            continue;
        }
        out.push_str("---\n");
        out.push_str(
            &serde_yaml::to_string(&workload.apply_body(&result.template_patch))
                .map_err(RenderError::Encode)?,
        );
    }
    for item in &input.unchangeable {
        notes.push(Note(format!("{item} cannot be changed after creation; the controller reports it if it breaks the hardening")));
    }

    let mut namespaces: Vec<&String> = views
        .iter()
        .filter(|view| view.spec.workloads.is_some())
        .flat_map(|view| view.governed.iter())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    for namespace in namespaces {
        let specs: Vec<&WorkloadsSpec> = views
            .iter()
            .filter(|view| view.governed.contains(namespace))
            .filter_map(|view| view.spec.workloads.as_ref())
            .collect();
        let templates = exempted.get(namespace).cloned().unwrap_or_default();
        let Some(levels) = plan::namespace_levels(&specs, &templates) else {
            continue;
        };
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": namespace, "labels": levels.labels() },
        });
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&body).map_err(RenderError::Encode)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Vec<Source> {
        vec![Source {
            name: "input.yaml".into(),
            text: text.into(),
        }]
    }

    /// Parses `text` as input.yaml with the operator's default minimum rotation interval.
    fn parse_text(text: &str) -> Result<Input, Vec<RenderError>> {
        parse(&source(text), Duration::from_secs(3600))
    }

    #[test]
    fn invalid_field_names_document_and_path() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: security.medianest.io/v1alpha1\nkind: MediaNestSecurityPolicy\nmetadata: {name: p}\nspec:\n  namespaceSelector: {}\n  network:\n    zones:\n      - name: web\n        podSelector: {}\n        ingress:\n          - from: [{zone: web}]\n            ports: [{port: 80, protocol: QUIC}]\n";
        let errors = parse_text(text).err().expect("invalid input");
        let message = errors[0].to_string();
        assert!(
            message.starts_with("input.yaml: document 2 (MediaNestSecurityPolicy p): "),
            "{message}"
        );
        assert!(
            message.contains("spec.network.zones[0].ingress[0].ports[0].protocol"),
            "{message}"
        );
        assert!(message.contains("QUIC"), "{message}");
    }

    #[test]
    fn validation_error_names_field() {
        let text = "apiVersion: security.medianest.io/v1alpha1\nkind: MediaNestSecurityPolicy\nmetadata: {name: p}\nspec:\n  namespaceSelector: {}\n  network:\n    zones:\n      - name: web\n        podSelector: {}\n        ingress:\n          - from: [{zone: missing}]\n";
        let errors = parse_text(text).err().expect("invalid input");
        let message = errors[0].to_string();
        assert!(
            message.contains("spec.network.zones[0].ingress[0].from[0].zone"),
            "{message}"
        );
        assert!(message.contains("\"missing\" is not defined"), "{message}");
    }

    #[test]
    fn yaml_syntax_error_reported() {
        let errors = parse_text("kind: [unclosed\n")
            .err()
            .expect("invalid input");
        assert!(
            errors[0]
                .to_string()
                .starts_with("input.yaml: document 1: invalid YAML")
        );
    }

    #[test]
    fn missing_kind_reported() {
        let errors = parse_text("metadata: {name: x}\n")
            .err()
            .expect("invalid input");
        assert!(
            errors[0].to_string().contains("kind: missing"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn unknown_field_rejected() {
        let text = "apiVersion: security.medianest.io/v1alpha1\nkind: MediaNestSecurityPolicy\nmetadata: {name: p}\nspec:\n  namespaceSelector: {}\n  network:\n    defaultDenyy: false\n";
        let errors = parse_text(text).err().expect("invalid input");
        let message = errors[0].to_string();
        assert!(
            message.contains("spec.network.defaultDenyy: unknown field"),
            "{message}"
        );
    }

    #[test]
    fn wrong_api_version_rejected() {
        for (api_version, fragment) in [
            ("", "apiVersion: missing"),
            ("security.medianest.io/v1beta9", "is not served"),
        ] {
            let text = format!(
                "apiVersion: {api_version:?}\nkind: MediaNestSecurityPolicy\nmetadata: {{name: p}}\nspec: {{namespaceSelector: {{}}}}\n"
            );
            let errors = parse_text(&text).err().expect("invalid input");
            assert!(errors[0].to_string().contains(fragment), "{}", errors[0]);
        }
    }

    #[test]
    fn invalid_name_rejected() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad_Name}\n";
        let errors = parse_text(text).err().expect("invalid input");
        assert!(
            errors[0]
                .to_string()
                .contains("metadata.name: \"Bad_Name\" is not a valid name"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn list_items_parsed() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n- {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n";
        let input = parse_text(text).unwrap();
        assert_eq!(input.namespaces.len(), 2);
    }

    #[test]
    fn non_string_kind_rejected() {
        let errors = parse_text("apiVersion: v1\nkind: 5\n")
            .err()
            .expect("invalid input");
        assert!(
            errors[0].to_string().contains("kind: must be a string"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn rotation_secret_redacted_unless_asked() {
        let text = include_str!("../manifests/examples/secrets.yaml");
        let input = parse_text(text).unwrap();
        assert_eq!(input.rotations.len(), 2);
        let (redacted, _) = render_with(&input, "medianest-system", false).unwrap();
        assert!(
            redacted.contains("jwt-signing-key: '[redacted: HS256 key of 64 bytes]'"),
            "{redacted}"
        );
        assert!(!redacted.contains("\ndata:"), "no values: {redacted}");

        let (shown, _) = render_with(&input, "medianest-system", true).unwrap();
        let documents: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&shown)
            .map(|document| serde_json::Value::deserialize(document).unwrap())
            .collect();
        let jwt = documents
            .iter()
            .find(|document| document["metadata"]["name"] == "api-jwt")
            .expect("the JWT Secret");
        let encoded = jwt["data"]["jwt-signing-key"].as_str().unwrap();
        assert_eq!(
            encoded.len(),
            4 * 88usize.div_ceil(3),
            "base64 of the base64 text of 64 bytes"
        );
    }

    /// Returns a SecretRotation document named jwt with `spec` as its spec, in flow YAML.
    fn rotation_yaml(spec: &str) -> String {
        format!(
            "apiVersion: security.medianest.io/v1alpha1\nkind: SecretRotation\nmetadata: {{name: jwt, namespace: app}}\nspec: {spec}\n"
        )
    }

    #[test]
    fn invalid_rotation_names_document_and_field() {
        let cases = [
            (
                "HS256 key of 16 bytes",
                "{secretName: jwt, keys: [{name: k, generator: {jwtHmac: {algorithm: HS256, length: 16}}}]}",
                "spec.keys[0].generator.jwtHmac.length: 16 bytes is too short for HS256, which needs at least 32 bytes",
            ),
            (
                "grace period longer than interval",
                "{secretName: jwt, interval: 2h, previous: {gracePeriod: 3h}, keys: [{name: k, generator: {randomBytes: {length: 8}}}]}",
                "spec.previous.gracePeriod: grace period 10800s is longer than the rotation interval 7200s",
            ),
            (
                "key named after a public key",
                "{secretName: jwt, keys: [{name: s, generator: {keyPair: {algorithm: ES256}}}, {name: s.pub, generator: {randomBytes: {length: 8}}}]}",
                "spec.keys[1].name: key name \"s.pub\" is also where key pair \"s\" (spec.keys[0]) stores its public key",
            ),
            (
                "interval below the operator's minimum",
                "{secretName: jwt, interval: 10m, keys: [{name: k, generator: {randomBytes: {length: 8}}}]}",
                "spec.interval: 10m is below the minimum of 1h",
            ),
        ];
        for (label, spec, expected) in cases {
            let text = format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: app}}\n---\n{}",
                rotation_yaml(spec)
            );
            let errors = parse_text(&text)
                .err()
                .unwrap_or_else(|| panic!("{label}: parsed"));
            assert_eq!(errors.len(), 1, "{label}");
            let message = errors[0].to_string();
            assert!(
                message.starts_with("input.yaml: document 2 (SecretRotation jwt): "),
                "{label}: {message}"
            );
            assert!(message.contains(expected), "{label}: {message}");
        }
    }

    #[test]
    fn rotation_interval_floor_follows_option() {
        let text = rotation_yaml(
            "{secretName: jwt, interval: 10m, keys: [{name: k, generator: {randomBytes: {length: 8}}}]}",
        );
        let input = parse(&source(&text), Duration::from_secs(60)).unwrap();
        assert_eq!(input.rotations.len(), 1);
    }

    #[test]
    fn generator_failure_names_document_and_field() {
        let text = format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}",
            rotation_yaml(
                "{secretName: jwt, keys: [{name: a, generator: {randomBytes: {length: 8}}}, {name: k, generator: {jwtHmac: {algorithm: HS256, length: 32}}}]}"
            )
            .replace('\n', "\n  ")
        );
        let mut input = parse_text(&text).unwrap();
        // Parsing rejects what the generators reject, so break the spec after it.
        let jwt = input.rotations[0].rotation.spec.keys[1]
            .generator
            .jwt_hmac
            .as_mut()
            .unwrap();
        jwt.length = 16;

        let error = render_with(&input, "medianest-system", true)
            .err()
            .expect("the generator fails");
        let message = error.to_string();
        assert!(
            message.starts_with(
                "input.yaml: document 1, items[0] (SecretRotation jwt): spec.keys[1].generator.jwtHmac: failed to generate a value: "
            ),
            "{message}"
        );
        assert!(
            message.contains("invalid length_bytes 16 for HS256"),
            "{message}"
        );
    }

    #[test]
    fn mtls_policy_noted() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: security.medianest.io/v1alpha1\nkind: MediaNestSecurityPolicy\nmetadata: {name: p}\nspec:\n  namespaceSelector: {}\n  mtls:\n    services: [{name: api, namespace: a}]\n";
        let input = parse_text(text).unwrap();
        let (_, notes) = render(&input, "medianest-system").unwrap();
        let mtls: Vec<&Note> = notes
            .iter()
            .filter(|note| note.0.contains("spec.mtls"))
            .collect();
        assert_eq!(
            mtls.len(),
            1,
            "{:?}",
            notes.iter().map(|note| &note.0).collect::<Vec<_>>()
        );
        assert_eq!(
            mtls[0].0,
            "MediaNestSecurityPolicy p sets spec.mtls: its certificate Secrets and CA bundles are generated at run time and not rendered"
        );
    }

    #[test]
    fn audit_policy_renders_nothing() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: security.medianest.io/v1alpha1\nkind: MediaNestSecurityPolicy\nmetadata: {name: p}\nspec:\n  mode: Audit\n  namespaceSelector: {}\n";
        let input = parse_text(text).unwrap();
        let (out, notes) = render(&input, "medianest-system").unwrap();
        assert!(out.is_empty());
        assert!(notes[0].0.contains("Audit mode"));
    }
}

//! The SecretRotation reconciler: generate, rotate and repair a Secret, then restart the
//! workloads that consume it.
//!
//! The Secret is the only state. Its annotations hold the version, the rotation time, when
//! the previous value expires and a keyed hash of the values, so a restarted operator plans
//! exactly what the stored Secret implies. Every rotation is one write guarded by the
//! resourceVersion it was computed from, so two writers can never both rotate one window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{PodSpec, Secret};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::condition::{self, ConditionStatus, ConditionUpdate, reason};
use crate::api::mtls::DeletionPolicy;
use crate::api::rotation::{
    ConsumerKind, ExistingSecret, Generator, OnEdit, SecretRotation, SecretRotationSpec,
    SecretRotationStatus,
};
use crate::api::workloads::WorkloadKind;
use crate::policy::generators::{self, SecretValue};
use crate::policy::names::{MANAGER, generated_labels, hex_digest};
use crate::policy::rotation::{
    self as plan, ExternalChange, Plan, RotateReason, Settings, StoredState,
};

use super::context::{Context, backoff_key};
use super::error::{Error, chain};
use super::failpoints::{self, Point};
use super::policy::now;
use super::workload::{RESTART_ANNOTATION_PREFIX, Workload};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "secretrotation";
/// Annotation on a SecretRotation that asks for an immediate rotation: an RFC 3339 timestamp
/// newer than status.lastRotationRequest.
pub const ROTATE_ANNOTATION: &str = "security.medianest.io/rotate";
/// Label naming the SecretRotation that generated a Secret.
pub const ROTATION_LABEL: &str = "security.medianest.io/secret-rotation";
const VERSION_ANNOTATION: &str = "security.medianest.io/version";
const ROTATED_AT_ANNOTATION: &str = "security.medianest.io/rotated-at";
const PREVIOUS_EXPIRES_ANNOTATION: &str = "security.medianest.io/previous-expires";
const HASH_ANNOTATION: &str = "security.medianest.io/value-hash";
/// The keys the value hash covers, comma-separated.
const HASHED_KEYS_ANNOTATION: &str = "security.medianest.io/hashed-keys";
/// The rotate request that the values answer, stored with them, so that a request is acted
/// on once even when the SecretRotation's status has not caught up (after a crash, or in a
/// stale cache).
const HANDLED_REQUEST_ANNOTATION: &str = "security.medianest.io/handled-request";
/// Secret in the operator's namespace with the key of the value hashes. A person who can edit
/// a generated Secret cannot read this one, so cannot forge a hash for an edited value.
pub const HASH_KEY_SECRET: &str = "medianest-operator-hash-key";
const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(30);

/// Brings one SecretRotation's Secret and consumers to the planned state.
pub async fn reconcile(rotation: Arc<SecretRotation>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&rotation, &ctx).await;
    ctx.metrics.record_reconcile(CONTROLLER, started.elapsed());
    if result.is_ok() {
        ctx.reset_backoff(&backoff_key(rotation.as_ref()));
    }
    result
}

/// Decides what happens after a failed reconcile: a Warning Event, a failure metric, and a
/// retry with growing backoff, or a wait for the next change when retrying cannot help.
pub fn error_policy(rotation: Arc<SecretRotation>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.record_failure(CONTROLLER, error.category());
    tracing::warn!(rotation = %rotation.name_any(), error = %chain(error, 2048), "Reconcile failed");
    let note = chain(error, 1024);
    let reason = error.category();
    let warn_ctx = ctx.clone();
    let target = rotation.clone();
    tokio::spawn(async move {
        publish(&warn_ctx, target.as_ref(), EventType::Warning, reason, note).await;
    });
    if error.is_permanent() {
        return Action::await_change();
    }
    Action::requeue(ctx.backoff(&backoff_key(rotation.as_ref())))
}

async fn reconcile_inner(rotation: &SecretRotation, ctx: &Context) -> Result<Action, Error> {
    if rotation.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = rotation.namespace().unwrap_or_default();
    let spec = &rotation.spec;
    let now = now();

    if let Some(text) = rotation.annotations().get(ROTATE_ANNOTATION)
        && text.parse::<Timestamp>().is_err()
    {
        let note = format!(
            "Annotation {ROTATE_ANNOTATION}={text:?} is not an RFC 3339 timestamp, so it requests \
             nothing. Run medianest-operator rotate {} -n {namespace}, or set it to the current \
             time such as 2026-12-04T10:00:00Z",
            rotation.name_any()
        );
        tracing::warn!(rotation = %rotation.name_any(), namespace = %namespace, value = %text, "Invalid rotation request annotation");
        publish(
            ctx,
            rotation,
            EventType::Warning,
            "InvalidRotateRequest",
            note,
        )
        .await;
    }

    let hash_key = ctx.hash_key().await?;
    let stored = read_secret(ctx, &namespace, &spec.secret_name).await?;
    let settings = match settings(
        rotation,
        stored.as_ref(),
        ctx.settings.min_rotation_interval,
    ) {
        Ok(settings) => settings,
        Err(message) => {
            report(
                ctx,
                rotation,
                None,
                failed(reason::INVALID_SPEC, message),
                Vec::new(),
                false,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    if let Some(secret) = &stored
        && secret.type_.as_deref().unwrap_or("Opaque") != spec.secret_type
        && !spec.allow_type_change
    {
        let message = format!(
            "Secret {namespace}/{} has type {:?}, not {:?}; it is left alone. Set allowTypeChange to replace it",
            spec.secret_name,
            secret.type_.as_deref().unwrap_or("Opaque"),
            spec.secret_type
        );
        report(
            ctx,
            rotation,
            stored.as_ref(),
            failed(reason::TYPE_MISMATCH, message),
            Vec::new(),
            false,
        )
        .await?;
        return Ok(Action::await_change());
    }

    let state = stored
        .as_ref()
        .map(|secret| stored_state(secret, spec, &hash_key));
    let decision = plan::plan(state.as_ref(), &settings, now);
    let written = match execute(
        ctx,
        rotation,
        stored.as_ref(),
        &decision,
        &settings,
        &hash_key,
        now,
    )
    .await
    {
        Ok(written) => written,
        // Someone else wrote the Secret since it was read (another replica, a person, or the
        // operator itself through a stale cache): plan again from what they stored.
        Err(Error::ApplySecret {
            source: kube::Error::Api(status),
            ..
        }) if status.code == 409 => {
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        Err(error) => {
            // The error policy publishes an Event and then waits or backs off, and the status
            // records the reason too. API errors about a Secret name fields, never values.
            let message = chain(&error, 1024);
            let _ = report(
                ctx,
                rotation,
                stored.as_ref(),
                failed(reason::APPLY_FAILED, message),
                Vec::new(),
                false,
            )
            .await;
            return Err(error);
        }
    };
    // New values answer any pending request; other writes leave it pending.
    let request_handled = matches!(decision, Plan::Create | Plan::Rotate { .. });
    let secret = match written {
        Some(secret) => Some(secret),
        None => stored,
    };

    let restarted = restart_consumers(ctx, rotation, secret.as_ref(), now).await?;
    if restarted.performed {
        failpoints::hit(Point::AfterConsumerRestart).await;
    }

    let summary = ConditionUpdate::new(
        condition::READY,
        ConditionStatus::True,
        reason::RECONCILED,
        "the Secret is current",
    );
    report(
        ctx,
        rotation,
        secret.as_ref(),
        summary,
        restarted.restarted,
        request_handled,
    )
    .await?;

    let mut next = ctx.settings.resync_interval;
    if let Some(state) = secret
        .as_ref()
        .map(|secret| stored_state(secret, spec, &hash_key))
        && let Some(at) = plan::next_event(&state, &settings)
    {
        next = next.min(until(at, now));
    }
    if let Some(wait) = restarted.retry_after {
        next = next.min(wait);
    }
    Ok(Action::requeue(next.max(Duration::from_millis(200))))
}

/// The rotation settings of a spec, which [`plan::validate_spec`] checks with `floor` as the
/// minimum interval. An error lists every problem as FIELD: MESSAGE.
fn settings(
    rotation: &SecretRotation,
    stored: Option<&Secret>,
    floor: Duration,
) -> Result<Settings, String> {
    let spec = &rotation.spec;
    let schedule = plan::validate_spec(spec, floor).map_err(|errors| errors.to_string())?;
    Ok(Settings {
        interval: schedule.interval,
        grace_period: schedule.grace_period,
        keys: stored_keys(spec),
        adopt_existing: spec.existing_secret == ExistingSecret::Keep,
        on_external_change: match spec.on_edit {
            OnEdit::Rotate => ExternalChange::Rotate,
            OnEdit::Adopt => ExternalChange::Adopt,
        },
        rotation_requested: rotation_requested(rotation, stored),
    })
}

/// The Secret keys the spec generates: each key, and KEY.pub for a key pair.
fn stored_keys(spec: &SecretRotationSpec) -> Vec<String> {
    let mut keys = Vec::new();
    for key in &spec.keys {
        keys.push(key.name.clone());
        if key.generator.key_pair.is_some() {
            keys.push(format!("{}.pub", key.name));
        }
    }
    keys
}

/// Returns whether the rotate annotation is newer than the last request answered, as the
/// status or the Secret records it.
fn rotation_requested(rotation: &SecretRotation, stored: Option<&Secret>) -> bool {
    let Some(requested) = rotation
        .annotations()
        .get(ROTATE_ANNOTATION)
        .and_then(|text| text.parse::<Timestamp>().ok())
    else {
        return false;
    };
    let in_status = rotation
        .status
        .as_ref()
        .and_then(|status| status.last_rotation_request.as_ref())
        .and_then(|text| text.parse::<Timestamp>().ok());
    let in_secret = stored
        .and_then(|secret| secret.annotations().get(HANDLED_REQUEST_ANNOTATION))
        .and_then(|text| text.parse::<Timestamp>().ok());
    let last = in_status.max(in_secret);
    last.is_none_or(|last| requested > last)
}

async fn read_secret(ctx: &Context, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
    if let Some(secret) = ctx.cached_secret(namespace, name) {
        return Ok(Some(secret.as_ref().clone()));
    }
    // A Secret without the operator's label is not in the cache: one that existed before
    // this SecretRotation, for example.
    Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::ReadSecret {
            secret: format!("{namespace}/{name}"),
            source,
        })
}

fn stored_state(secret: &Secret, spec: &SecretRotationSpec, hash_key: &[u8]) -> StoredState {
    let annotations = secret.annotations();
    let timestamp = |key: &str| {
        annotations
            .get(key)
            .and_then(|text| text.parse::<Timestamp>().ok())
    };
    let data = secret_data(secret);
    let keys = stored_keys(spec);
    // The hash covers the keys it was computed over, as recorded next to it, so that a key
    // added to or removed from the spec does not look like an edited value.
    let hashed: Vec<String> = match annotations.get(HASHED_KEYS_ANNOTATION) {
        Some(list) => list
            .split(',')
            .filter(|key| !key.is_empty())
            .map(str::to_string)
            .collect(),
        None => keys.clone(),
    };
    let hash = plan::keyed_hash(hash_key, &data, &hashed);
    let suffix = spec
        .previous
        .as_ref()
        .map(|previous| previous.suffix.clone())
        .unwrap_or_default();
    StoredState {
        version: annotations
            .get(VERSION_ANNOTATION)
            .and_then(|text| text.parse().ok())
            .unwrap_or(1),
        rotated_at: timestamp(ROTATED_AT_ANNOTATION),
        previous_expires: timestamp(PREVIOUS_EXPIRES_ANNOTATION),
        has_previous: !suffix.is_empty()
            && keys
                .iter()
                .any(|key| data.contains_key(&format!("{key}{suffix}"))),
        value_hash_ok: annotations
            .get(HASH_ANNOTATION)
            .is_some_and(|stored| *stored == hash),
        generated_by_operator: annotations.contains_key(VERSION_ANNOTATION),
        keys_present: keys
            .into_iter()
            .filter(|key| data.contains_key(key))
            .collect(),
    }
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.0.clone()))
        .collect()
}

/// Carries out `decision` with one write, and returns the Secret written, if any.
async fn execute(
    ctx: &Context,
    rotation: &SecretRotation,
    stored: Option<&Secret>,
    decision: &Plan,
    settings: &Settings,
    hash_key: &[u8],
    now: Timestamp,
) -> Result<Option<Secret>, Error> {
    let spec = &rotation.spec;
    let namespace = rotation.namespace().unwrap_or_default();
    let label = format!("{namespace}/{}", spec.secret_name);
    let current = stored.map(secret_data).unwrap_or_default();
    let state = stored.map(|secret| stored_state(secret, spec, hash_key));
    let version = state.as_ref().map_or(1, |state| state.version);
    let suffix = spec
        .previous
        .as_ref()
        .filter(|previous| previous.keep)
        .map(|previous| previous.suffix.clone());

    let (data, version, rotated_at, previous_expires, event) = match decision {
        Plan::Nothing => return Ok(None),
        Plan::Create => {
            let data = generate_all(spec).await?;
            (
                data,
                first_version(ctx, rotation),
                now,
                None,
                (
                    EventType::Normal,
                    "Created",
                    format!("Generated Secret {label}"),
                ),
            )
        }
        Plan::Rotate { reason } => {
            let mut data = generate_all(spec).await?;
            let mut previous_expires = None;
            if let (Some(suffix), Some(grace)) = (&suffix, settings.grace_period) {
                for key in stored_keys(spec) {
                    if let Some(old) = current.get(&key) {
                        data.insert(format!("{key}{suffix}"), old.clone());
                    }
                }
                previous_expires = Some(add(now, grace));
            }
            let (kind, reason_text, note) = match reason {
                RotateReason::Scheduled => (
                    EventType::Normal,
                    "Rotated",
                    format!("Rotated Secret {label} on schedule"),
                ),
                RotateReason::Requested => (
                    EventType::Normal,
                    "Rotated",
                    format!("Rotated Secret {label} on request"),
                ),
                RotateReason::ExternalEdit => (
                    EventType::Warning,
                    "EditedValueRotated",
                    format!(
                        "A generated value of Secret {label} was edited; rotated it, since the value may be compromised"
                    ),
                ),
                RotateReason::Adoption => (
                    EventType::Warning,
                    "ExistingSecretRotated",
                    format!(
                        "Secret {label} existed with values the operator did not generate; rotated them"
                    ),
                ),
            };
            // A Secret the operator did not generate counts as version 1, so its first
            // rotation is version 2 and restarts the consumers.
            (
                data,
                version + 1,
                now,
                previous_expires,
                (kind, reason_text, note),
            )
        }
        Plan::AddMissingKeys { keys } => {
            let mut data = current.clone();
            for key in &spec.keys {
                if keys.contains(&key.name) {
                    data.extend(generate_key(key.name.clone(), key.generator.clone()).await?);
                }
            }
            let rotated_at = state
                .as_ref()
                .and_then(|state| state.rotated_at)
                .unwrap_or(now);
            let expires = state.as_ref().and_then(|state| state.previous_expires);
            (
                data,
                version,
                rotated_at,
                expires,
                (
                    EventType::Normal,
                    "KeysAdded",
                    format!("Generated the new keys {keys:?} of Secret {label}"),
                ),
            )
        }
        Plan::DropPrevious => {
            let mut data = current.clone();
            if let Some(suffix) = &suffix {
                for key in stored_keys(spec) {
                    data.remove(&format!("{key}{suffix}"));
                }
            }
            let rotated_at = state
                .as_ref()
                .and_then(|state| state.rotated_at)
                .unwrap_or(now);
            (
                data,
                version,
                rotated_at,
                None,
                (
                    EventType::Normal,
                    "PreviousDropped",
                    format!("Removed the previous values of Secret {label} after the grace period"),
                ),
            )
        }
        Plan::AdoptEdit => {
            let rotated_at = state
                .as_ref()
                .and_then(|state| state.rotated_at)
                .unwrap_or(now);
            let expires = state.as_ref().and_then(|state| state.previous_expires);
            let note = if state
                .as_ref()
                .is_some_and(|state| state.generated_by_operator)
            {
                format!(
                    "A generated value of Secret {label} was edited; adopted it as spec.onEdit says"
                )
            } else {
                format!(
                    "Adopted the existing values of Secret {label} until the first scheduled rotation"
                )
            };
            (
                current.clone(),
                version,
                rotated_at,
                expires,
                (EventType::Warning, "ValueAdopted", note),
            )
        }
    };

    let mut annotations = spec.annotations.clone();
    annotations.insert(VERSION_ANNOTATION.into(), version.to_string());
    annotations.insert(ROTATED_AT_ANNOTATION.into(), rotated_at.to_string());
    if let Some(expires) = previous_expires {
        annotations.insert(PREVIOUS_EXPIRES_ANNOTATION.into(), expires.to_string());
    }
    let hashed: Vec<String> = stored_keys(spec)
        .into_iter()
        .filter(|key| data.contains_key(key))
        .collect();
    annotations.insert(
        HASH_ANNOTATION.into(),
        plan::keyed_hash(hash_key, &data, &hashed),
    );
    annotations.insert(HASHED_KEYS_ANNOTATION.into(), hashed.join(","));
    // New values answer the pending request; other writes carry the last answer forward.
    let answered = matches!(decision, Plan::Create | Plan::Rotate { .. });
    let handled = if answered {
        rotation.annotations().get(ROTATE_ANNOTATION)
    } else {
        stored.and_then(|secret| secret.annotations().get(HANDLED_REQUEST_ANNOTATION))
    };
    if let Some(handled) = handled {
        annotations.insert(HANDLED_REQUEST_ANNOTATION.into(), handled.clone());
    }

    failpoints::hit(Point::BeforeSecretWrite).await;
    let written = write_secret(ctx, rotation, stored, data, annotations).await?;
    failpoints::hit(Point::AfterSecretWrite).await;

    tracing::info!(secret = %label, version, plan = decision.name(), "Wrote Secret");
    let (kind, reason_text, note) = event;
    publish(ctx, rotation, kind, reason_text, note).await;
    Ok(Some(written))
}

/// Generates every key of the spec off the reconcile threads (RSA keys take a while).
async fn generate_all(spec: &SecretRotationSpec) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let mut data = BTreeMap::new();
    for key in &spec.keys {
        data.extend(generate_key(key.name.clone(), key.generator.clone()).await?);
    }
    Ok(data)
}

async fn generate_key(
    name: String,
    generator: Generator,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let failure_name = name.clone();
    tokio::task::spawn_blocking(move || generate(&name, &generator))
        .await
        .map_err(|error| Error::GenerateKey {
            what: format!("key {failure_name}"),
            message: error.to_string(),
        })?
}

/// Generates the value of one key (and KEY.pub for a key pair).
pub fn generate(name: &str, generator: &Generator) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    use crate::api::rotation as api;
    let failed = |error: generators::GeneratorError| Error::GenerateKey {
        what: format!("key {name}"),
        message: error.to_string(),
    };
    let encoding = |encoding: api::Encoding| match encoding {
        api::Encoding::Base64 => generators::Encoding::Base64,
        api::Encoding::Base64url => generators::Encoding::Base64Url,
        api::Encoding::Hex => generators::Encoding::Hex,
        api::Encoding::Raw => generators::Encoding::Raw,
    };
    let single = |value: SecretValue| BTreeMap::from([(name.to_string(), value.expose().to_vec())]);
    if let Some(random) = &generator.random_bytes {
        return generators::random_bytes(random.length as usize, encoding(random.encoding))
            .map(single)
            .map_err(failed);
    }
    if let Some(password) = &generator.password {
        let alphabet = match password.alphabet {
            api::Alphabet::Alphanumeric => generators::Alphabet::Alphanumeric,
            api::Alphabet::UrlSafe => generators::Alphabet::UrlSafe,
            api::Alphabet::Ascii => generators::Alphabet::Ascii,
        };
        let classes: Vec<generators::Class> = password
            .require
            .iter()
            .map(|class| match class {
                api::CharacterClass::Lower => generators::Class::Lower,
                api::CharacterClass::Upper => generators::Class::Upper,
                api::CharacterClass::Digit => generators::Class::Digit,
                api::CharacterClass::Symbol => generators::Class::Symbol,
            })
            .collect();
        return generators::password(password.length as usize, alphabet, &classes)
            .map(single)
            .map_err(failed);
    }
    if let Some(jwt) = &generator.jwt_hmac {
        let algorithm = match jwt.algorithm {
            api::HmacAlgorithm::HS256 => generators::HmacAlgorithm::HS256,
            api::HmacAlgorithm::HS384 => generators::HmacAlgorithm::HS384,
            api::HmacAlgorithm::HS512 => generators::HmacAlgorithm::HS512,
        };
        return generators::jwt_hmac_key(algorithm, jwt.length as usize, encoding(jwt.encoding))
            .map(single)
            .map_err(failed);
    }
    if let Some(pair) = &generator.key_pair {
        let algorithm = match pair.algorithm {
            api::KeyPairAlgorithm::RS256 => generators::KeyPairAlgorithm::RS256,
            api::KeyPairAlgorithm::ES256 => generators::KeyPairAlgorithm::ES256,
        };
        let pair = generators::key_pair(algorithm).map_err(failed)?;
        return Ok(BTreeMap::from([
            (name.to_string(), pair.private_key_pem.expose().to_vec()),
            (format!("{name}.pub"), pair.public_key_pem.into_bytes()),
        ]));
    }
    Err(Error::GenerateKey {
        what: format!("key {name}"),
        message: "no generator is set".to_string(),
    })
}

/// Writes the Secret in one request: a create, or an update guarded by the resourceVersion
/// the new values were computed from. A concurrent writer makes it fail with a conflict, and
/// the next reconcile plans again from what that writer stored.
async fn write_secret(
    ctx: &Context,
    rotation: &SecretRotation,
    stored: Option<&Secret>,
    data: BTreeMap<String, Vec<u8>>,
    annotations: BTreeMap<String, String>,
) -> Result<Secret, Error> {
    let spec = &rotation.spec;
    let namespace = rotation.namespace().unwrap_or_default();
    let label = format!("{namespace}/{}", spec.secret_name);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let wrap = |source| Error::ApplySecret {
        secret: label.clone(),
        source,
    };

    let mut labels = spec.labels.clone();
    labels.extend(generated_labels(&rotation.name_any(), "secret"));
    labels.remove(crate::policy::names::POLICY_LABEL);
    labels.insert(ROTATION_LABEL.to_string(), rotation.name_any());
    let owner = match spec.deletion_policy {
        DeletionPolicy::Delete => rotation.controller_owner_ref(&()).map(|owner| vec![owner]),
        DeletionPolicy::Retain => None,
    };

    let mut secret = stored.cloned().unwrap_or_default();
    let type_changes = stored
        .is_some_and(|stored| stored.type_.as_deref().unwrap_or("Opaque") != spec.secret_type);
    secret.metadata.name = Some(spec.secret_name.clone());
    secret.metadata.namespace = Some(namespace.clone());
    secret.metadata.managed_fields = None;
    let mut merged_labels = secret.metadata.labels.take().unwrap_or_default();
    merged_labels.extend(labels);
    secret.metadata.labels = Some(merged_labels);
    let mut merged_annotations = secret.metadata.annotations.take().unwrap_or_default();
    merged_annotations.remove(PREVIOUS_EXPIRES_ANNOTATION);
    merged_annotations.extend(annotations);
    secret.metadata.annotations = Some(merged_annotations);
    if owner.is_some() {
        secret.metadata.owner_references = owner;
    }
    secret.type_ = Some(spec.secret_type.clone());
    secret.data = Some(
        data.into_iter()
            .map(|(key, value)| (key, ByteString(value)))
            .collect(),
    );
    secret.string_data = None;

    let params = PostParams {
        field_manager: Some(MANAGER.to_string()),
        ..PostParams::default()
    };
    match stored {
        Some(_) if type_changes => {
            // The type of a Secret cannot change, so it is replaced, as allowTypeChange permits.
            api.delete(&spec.secret_name, &DeleteParams::default())
                .await
                .map_err(wrap)?;
            secret.metadata.resource_version = None;
            secret.metadata.uid = None;
            api.create(&params, &secret).await.map_err(wrap)
        }
        Some(_) => api
            .replace(&spec.secret_name, &params, &secret)
            .await
            .map_err(wrap),
        None => {
            secret.metadata.resource_version = None;
            api.create(&params, &secret).await.map_err(wrap)
        }
    }
}

/// Outcome of the consumer step.
struct Restarts {
    restarted: Vec<String>,
    retry_after: Option<Duration>,
    /// A restart was written in this reconcile.
    performed: bool,
}

/// Restarts the consumers whose pods have not loaded the current version, once the restart
/// window since the rotation has passed. One write per workload carries every pending
/// version of every Secret it consumes, so close rotations cause one rollout.
async fn restart_consumers(
    ctx: &Context,
    rotation: &SecretRotation,
    secret: Option<&Secret>,
    now: Timestamp,
) -> Result<Restarts, Error> {
    let mut result = Restarts {
        restarted: Vec::new(),
        retry_after: None,
        performed: false,
    };
    let Some(secret) = secret else {
        return Ok(result);
    };
    let namespace = rotation.namespace().unwrap_or_default();
    let key = restart_key(&rotation.spec.secret_name);
    let version = secret_version(secret);

    for workload in consumers(ctx, rotation) {
        let recorded = template_annotation(&workload, &key);
        if recorded.as_deref() == Some(version.to_string().as_str())
            || (recorded.is_none() && version <= 1)
        {
            result
                .restarted
                .push(format!("{}/{}", workload.kind().as_str(), workload.name()));
            continue;
        }

        // Every rotation of a Secret this workload consumes, with its due time.
        let pending = pending_restarts(ctx, &namespace, &workload);
        let due = pending.iter().any(|(_, _, due_at)| *due_at <= now);
        if !due {
            let earliest = pending
                .iter()
                .map(|(_, _, due_at)| *due_at)
                .min()
                .unwrap_or(now);
            result.retry_after = Some(until(earliest, now).max(Duration::from_millis(200)));
            continue;
        }
        let id = workload.id();
        let slot = ctx.rollouts.try_start(
            &format!("restarts/{namespace}"),
            &id,
            ctx.settings.max_concurrent_restarts,
            Duration::from_secs(300),
            |other, generation| ctx.rolled_out(other, generation),
        );
        if let Err(wait) = slot {
            result.retry_after = Some(result.retry_after.map_or(wait, |current| current.min(wait)));
            continue;
        }
        let annotations: BTreeMap<String, String> = pending
            .into_iter()
            .map(|(key, value, _)| (key, value))
            .collect();
        let generation = apply_restart(ctx, &workload, annotations).await?;
        ctx.rollouts.started(&id, generation);
        result.performed = true;
        tracing::info!(workload = %id, secret = %rotation.spec.secret_name, version, "Restarted consumer");
        publish(
            ctx,
            rotation,
            EventType::Normal,
            "ConsumerRestarted",
            format!(
                "Restarted {id} to load version {version} of Secret {namespace}/{}",
                rotation.spec.secret_name
            ),
        )
        .await;
        result
            .restarted
            .push(format!("{}/{}", workload.kind().as_str(), workload.name()));
    }
    result.restarted.sort();
    Ok(result)
}

/// The annotations a workload should carry for every SecretRotation of its namespace that it
/// consumes and whose version it has not loaded, with the time each restart is due.
fn pending_restarts(
    ctx: &Context,
    namespace: &str,
    workload: &Workload,
) -> Vec<(String, String, Timestamp)> {
    let mut pending = Vec::new();
    for other in ctx.rotations.state() {
        if other.namespace().as_deref() != Some(namespace) {
            continue;
        }
        if !consumers(ctx, &other)
            .iter()
            .any(|consumer| consumer.id() == workload.id())
        {
            continue;
        }
        let Some(secret) = ctx.cached_secret(namespace, &other.spec.secret_name) else {
            continue;
        };
        let version = secret_version(&secret);
        let key = restart_key(&other.spec.secret_name);
        let recorded = template_annotation(workload, &key);
        if recorded.as_deref() == Some(version.to_string().as_str())
            || (recorded.is_none() && version <= 1)
        {
            continue;
        }
        let window = other
            .spec
            .consumers
            .restart_window
            .as_ref()
            .and_then(|window| window.parse().ok())
            .unwrap_or(DEFAULT_RESTART_WINDOW);
        let rotated_at = secret
            .annotations()
            .get(ROTATED_AT_ANNOTATION)
            .and_then(|text| text.parse::<Timestamp>().ok())
            .unwrap_or_else(now);
        pending.push((key, version.to_string(), add(rotated_at, window)));
    }
    pending
}

/// The workloads of `rotation`'s namespace that consume its Secret.
fn consumers(ctx: &Context, rotation: &SecretRotation) -> Vec<Workload> {
    let namespace = rotation.namespace().unwrap_or_default();
    let spec = &rotation.spec;
    let named: BTreeSet<(WorkloadKind, String)> = spec
        .consumers
        .workloads
        .iter()
        .map(|consumer| {
            let kind = match consumer.kind {
                ConsumerKind::Deployment => WorkloadKind::Deployment,
                ConsumerKind::StatefulSet => WorkloadKind::StatefulSet,
                ConsumerKind::DaemonSet => WorkloadKind::DaemonSet,
            };
            (kind, consumer.name.clone())
        })
        .collect();
    ctx.workloads_in(std::slice::from_ref(&namespace))
        .into_iter()
        .filter(|workload| workload.kind() != WorkloadKind::CronJob)
        .filter(|workload| {
            named.contains(&(workload.kind(), workload.name()))
                || (spec.consumers.discover
                    && workload
                        .template()
                        .and_then(|template| template.spec.as_ref())
                        .is_some_and(|pod| refers_to(pod, &spec.secret_name)))
        })
        .collect()
}

/// Returns whether a pod spec reads the Secret `name` through env, envFrom or a volume.
pub fn refers_to(pod: &PodSpec, name: &str) -> bool {
    let containers = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten());
    for container in containers {
        let env = container.env.iter().flatten().any(|variable| {
            variable
                .value_from
                .as_ref()
                .and_then(|source| source.secret_key_ref.as_ref())
                .is_some_and(|reference| reference.name == name)
        });
        let env_from = container.env_from.iter().flatten().any(|source| {
            source
                .secret_ref
                .as_ref()
                .is_some_and(|reference| reference.name == name)
        });
        if env || env_from {
            return true;
        }
    }
    pod.volumes.iter().flatten().any(|volume| {
        let direct = volume
            .secret
            .as_ref()
            .is_some_and(|source| source.secret_name.as_deref() == Some(name));
        let projected = volume.projected.as_ref().is_some_and(|projected| {
            projected.sources.iter().flatten().any(|source| {
                source
                    .secret
                    .as_ref()
                    .is_some_and(|secret| secret.name == name)
            })
        });
        direct || projected
    })
}

/// The pod-template annotation key that records the version of Secret `name`.
pub fn restart_key(name: &str) -> String {
    // The part after the slash is limited to 63 characters.
    let suffix = if name.len() <= 63 {
        name.to_string()
    } else {
        format!("{}-{}", &name[..52], &hex_digest(name.as_bytes())[..10])
    };
    format!("{RESTART_ANNOTATION_PREFIX}{suffix}")
}

/// The version of a newly generated Secret: 1, or one more than any version the status or a
/// consumer's pod template recorded. A Secret that was deleted and is generated again thus
/// gets a new version, and the consumers still holding the deleted values restart.
fn first_version(ctx: &Context, rotation: &SecretRotation) -> u64 {
    let key = restart_key(&rotation.spec.secret_name);
    let status = rotation
        .status
        .as_ref()
        .and_then(|status| status.current_version)
        .and_then(|version| u64::try_from(version).ok());
    let consumers = consumers(ctx, rotation)
        .iter()
        .filter_map(|workload| template_annotation(workload, &key)?.parse::<u64>().ok())
        .max();
    status.max(consumers).map_or(1, |seen| seen + 1)
}

fn template_annotation(workload: &Workload, key: &str) -> Option<String> {
    workload
        .template()
        .and_then(|template| template.metadata.as_ref())
        .and_then(|metadata| metadata.annotations.as_ref())
        .and_then(|annotations| annotations.get(key).cloned())
}

fn secret_version(secret: &Secret) -> u64 {
    secret
        .annotations()
        .get(VERSION_ANNOTATION)
        .and_then(|text| text.parse().ok())
        .unwrap_or(1)
}

/// Writes restart annotations on a workload's pod template with server-side apply, keeping
/// every other field the operator owns on it, and returns the new generation.
async fn apply_restart(
    ctx: &Context,
    workload: &Workload,
    annotations: BTreeMap<String, String>,
) -> Result<i64, Error> {
    let id = workload.id();
    let mut body = match workload.owned_fields() {
        Some(fields) => crate::policy::diff::project_owned(&workload.to_value(), &fields),
        None => json!({}),
    };
    let mut patch = json!({});
    {
        let mut node = &mut patch;
        for key in workload.template_path() {
            node = &mut node[*key];
        }
        *node = json!({ "metadata": { "annotations": annotations } });
    }
    crate::policy::diff::merge_json(&mut body, &patch);
    body["apiVersion"] = json!(workload.api_version());
    body["kind"] = json!(id.kind.as_str());
    body["metadata"]["name"] = json!(id.name);
    body["metadata"]["namespace"] = json!(id.namespace);

    let resource = kube::discovery::ApiResource {
        group: "apps".to_string(),
        version: "v1".to_string(),
        api_version: "apps/v1".to_string(),
        kind: id.kind.as_str().to_string(),
        plural: format!("{}s", id.kind.as_str().to_lowercase()),
    };
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &id.namespace, &resource);
    let applied = api
        .patch(
            &id.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|source| Error::ApplyWorkload {
            workload: id.to_string(),
            source,
        })?;
    Ok(applied.metadata.generation.unwrap_or(0))
}

fn failed(reason: &'static str, message: String) -> ConditionUpdate {
    ConditionUpdate::new(condition::READY, ConditionStatus::False, reason, message)
}

/// Writes the status, and a Warning Event when Ready turns False for a new reason.
async fn report(
    ctx: &Context,
    rotation: &SecretRotation,
    secret: Option<&Secret>,
    ready: ConditionUpdate,
    restarted: Vec<String>,
    request_handled: bool,
) -> Result<(), Error> {
    let previous = rotation.status.clone().unwrap_or_default();
    let generation = rotation.meta().generation;
    let annotations = secret
        .map(|secret| secret.annotations().clone())
        .unwrap_or_default();
    let rotated_at = annotations.get(ROTATED_AT_ANNOTATION).cloned();
    let interval = rotation.spec.interval.parse().ok();
    let next_rotation = rotated_at
        .as_ref()
        .and_then(|text| text.parse::<Timestamp>().ok())
        .zip(interval)
        .map(|(at, interval)| add(at, interval).to_string());

    let already = condition::find(&previous.conditions, condition::READY).is_some_and(|old| {
        old.reason == ready.reason && old.message == condition::truncate(&ready.message, 1024)
    });
    if ready.status == ConditionStatus::False && !already {
        tracing::warn!(rotation = %rotation.name_any(), problem = %ready.message, "SecretRotation not ready");
        publish(
            ctx,
            rotation,
            EventType::Warning,
            ready.reason,
            ready.message.clone(),
        )
        .await;
    }

    let status = SecretRotationStatus {
        observed_generation: generation,
        conditions: condition::merge_conditions(&previous.conditions, &[ready], generation, now()),
        current_version: secret.map(|secret| secret_version(secret) as i64),
        last_rotation: rotated_at,
        next_rotation,
        last_rotation_request: if request_handled {
            rotation.annotations().get(ROTATE_ANNOTATION).cloned()
        } else {
            None
        }
        .or(previous.last_rotation_request.clone()),
        restarted_consumers: restarted,
    };
    if rotation.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<SecretRotation> = Api::namespaced(
        ctx.client.clone(),
        &rotation.namespace().unwrap_or_default(),
    );
    let patch = json!({
        "apiVersion": "security.medianest.io/v1alpha1",
        "kind": "SecretRotation",
        "status": status,
    });
    match api
        .patch_status(
            &rotation.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::PatchStatus {
            kind: "SecretRotation",
            name: rotation.name_any(),
            source,
        }),
    }
}

async fn publish(
    ctx: &Context,
    rotation: &SecretRotation,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(condition::truncate(&note, 1000)),
        action: "Rotate".to_string(),
        secondary: None,
    };
    ctx.publish(rotation, event).await;
}

fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn add(time: Timestamp, duration: Duration) -> Timestamp {
    let duration = SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
    time.checked_add(duration).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn refers_to_every_kind_of_reference() {
        let env = pod(
            json!({ "containers": [{ "name": "a", "env": [{ "name": "X", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } }] }] }),
        );
        let env_from = pod(
            json!({ "initContainers": [{ "name": "i", "envFrom": [{ "secretRef": { "name": "s" } }] }], "containers": [{ "name": "a" }] }),
        );
        let volume = pod(
            json!({ "containers": [{ "name": "a" }], "volumes": [{ "name": "v", "secret": { "secretName": "s" } }] }),
        );
        let projected = pod(
            json!({ "containers": [{ "name": "a" }], "volumes": [{ "name": "v", "projected": { "sources": [{ "secret": { "name": "s" } }] } }] }),
        );
        let other = pod(
            json!({ "containers": [{ "name": "a", "envFrom": [{ "secretRef": { "name": "t" } }] }] }),
        );
        for (label, spec, expected) in [
            ("env", env, true),
            ("envFrom", env_from, true),
            ("volume", volume, true),
            ("projected", projected, true),
            ("other", other, false),
        ] {
            assert_eq!(refers_to(&spec, "s"), expected, "{label}");
        }
    }

    #[test]
    fn restart_key_fits_annotation_limits() {
        assert_eq!(
            restart_key("api-jwt"),
            "rotation.security.medianest.io/api-jwt"
        );
        let long = "a".repeat(200);
        let key = restart_key(&long);
        let name = key.split_once('/').unwrap().1;
        assert_eq!(name.len(), 63);
        assert_ne!(
            restart_key(&"b".repeat(200)),
            key,
            "distinct long names stay distinct"
        );
    }
}

//! The certificates step of the policy reconciler: the CA, its rotation, the trust bundles
//! and the service certificates.
//!
//! All state lives in the API server: the CA Secret's annotations hold the rotation phase and
//! each certificate Secret holds its certificate, so a restarted operator continues where the
//! stored state says, and a re-created policy adopts what it finds.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::MediaNestSecurityPolicy;
use crate::api::condition::{CERTIFICATES_READY, ConditionStatus, ConditionUpdate, reason};
use crate::api::mtls::{DeletionPolicy, MtlsSpec};
use crate::api::policy::{CertificateStatus, MtlsStatus};
use crate::policy::certificates::{self, CaSettings, CaState, CaStep, Phase, Target};
use crate::policy::names::{MANAGER, generated_labels};
use crate::policy::pki::{self, CaMaterial, LeafRequest};

use super::context::Context;
use super::error::Error;

/// Annotation on a policy that asks for a CA rotation: any RFC 3339 timestamp newer than
/// status.mtls.lastRotationRequest.
pub const ROTATE_CA_ANNOTATION: &str = "security.medianest.io/rotate-ca";
const PHASE_ANNOTATION: &str = "security.medianest.io/ca-phase";
const SINCE_ANNOTATION: &str = "security.medianest.io/phase-since";
const RETIRE_ANNOTATION: &str = "security.medianest.io/retire-after";
const NOT_AFTER_ANNOTATION: &str = "security.medianest.io/not-after";
const RENEW_AT_ANNOTATION: &str = "security.medianest.io/renew-at";

/// How far back a new certificate's validity starts, for clocks that lag a little.
const BACKDATE: SignedDuration = SignedDuration::from_mins(5);

/// What the certificates step found and did.
#[derive(Debug, Default)]
pub struct MtlsOutcome {
    pub status: Option<MtlsStatus>,
    pub condition: Option<ConditionUpdate>,
    pub requeue_after: Option<Duration>,
    pub events: Vec<(EventType, &'static str, String)>,
    pub failure: Option<Error>,
}

impl MtlsOutcome {
    fn requeue_at(&mut self, at: Timestamp, now: Timestamp) {
        let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
        self.requeue_after = Some(self.requeue_after.map_or(wait, |current| current.min(wait)));
    }

    fn fail(&mut self, reason: &'static str, message: String) {
        self.condition = Some(ConditionUpdate::new(
            CERTIFICATES_READY,
            ConditionStatus::False,
            reason,
            message,
        ));
    }
}

/// The CA as stored.
struct Ca {
    signing: CaMaterial,
    next: Option<CaMaterial>,
    previous_cert: Option<String>,
    phase: Phase,
    since: Timestamp,
    retire_after: Option<Timestamp>,
    /// Namespace and name of the Secret.
    secret: (String, String),
    external: bool,
}

impl Ca {
    /// The CA certificates to trust, in PEM, oldest first.
    fn trusted(&self) -> Vec<String> {
        let mut trusted: Vec<String> = Vec::new();
        trusted.extend(self.previous_cert.clone());
        trusted.push(self.signing.cert_pem.clone());
        trusted.extend(self.next.as_ref().map(|next| next.cert_pem.clone()));
        trusted
    }

    fn bundle(&self) -> String {
        self.trusted().concat()
    }
}

/// Runs the certificates step of `policy` over its `governed` namespaces.
pub async fn reconcile(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    governed: &[String],
    enforce: bool,
    now: Timestamp,
) -> MtlsOutcome {
    let mut outcome = MtlsOutcome::default();
    let Some(spec) = policy.spec.mtls.as_ref() else {
        return outcome;
    };
    let durations = match durations(spec, ctx.settings.min_certificate_lifetime) {
        Ok(durations) => durations,
        Err(message) => {
            outcome.fail(reason::INVALID_SPEC, message);
            return outcome;
        }
    };
    if !enforce {
        let targets = certificates::targets(spec, governed, &ctx.service_infos(governed));
        outcome.condition = Some(ConditionUpdate::new(
            CERTIFICATES_READY,
            ConditionStatus::True,
            reason::AUDITED,
            format!(
                "Audit mode: {} service certificates would be issued or kept",
                targets.len()
            ),
        ));
        return outcome;
    }

    let mut ca = match load_ca(ctx, policy, spec, &durations, now, &mut outcome).await {
        Ok(ca) => ca,
        Err(CaFailure::Invalid(message)) => {
            outcome.fail(reason::INVALID_CA, message);
            // The operator does not watch Secrets it did not create, so it looks at a
            // referenced CA again after a while instead of waiting for the next resync.
            if spec.ca.secret_ref.is_some() {
                outcome.requeue_after = Some(REFERENCED_CA_RECHECK);
            }
            return outcome;
        }
        Err(CaFailure::Api(error)) => {
            outcome.fail(reason::APPLY_FAILED, super::error::chain(&error, 1024));
            outcome.failure = Some(error);
            return outcome;
        }
    };

    let targets = certificates::targets(spec, governed, &ctx.service_infos(governed));
    if !ca.external
        && let Err(error) = advance_ca(
            ctx,
            policy,
            spec,
            &durations,
            &mut ca,
            &targets,
            governed,
            now,
            &mut outcome,
        )
        .await
    {
        outcome.fail(reason::APPLY_FAILED, super::error::chain(&error, 1024));
        outcome.failure = Some(error);
        return outcome;
    }

    let bundle = ca.bundle();
    if let Err(error) = publish_bundles(ctx, policy, spec, governed, &bundle).await {
        outcome.fail(reason::APPLY_FAILED, super::error::chain(&error, 1024));
        outcome.failure = Some(error);
        return outcome;
    }
    let statuses = reconcile_leaves(
        ctx,
        policy,
        spec,
        &durations,
        &ca,
        &targets,
        now,
        &mut outcome,
    )
    .await;

    let rotation_request = policy.annotations().get(ROTATE_CA_ANNOTATION).cloned();
    let previous = policy
        .status
        .as_ref()
        .and_then(|status| status.mtls.clone())
        .unwrap_or_default();
    outcome.status = Some(MtlsStatus {
        ca_secret: Some(format!("{}/{}", ca.secret.0, ca.secret.1)),
        ca_not_after: Some(ca.signing.not_after.to_string()),
        rotation_phase: Some(ca.phase.as_str().to_string()),
        last_rotation_request: if ca.phase != Phase::Stable || rotation_requested(policy) {
            rotation_request.or(previous.last_rotation_request.clone())
        } else {
            previous.last_rotation_request.clone()
        },
        certificates: statuses,
    });
    if outcome.condition.is_none() {
        let count = targets.len();
        outcome.condition = Some(ConditionUpdate::new(
            CERTIFICATES_READY,
            ConditionStatus::True,
            reason::RECONCILED,
            format!(
                "{count} service certificates are valid; CA phase {}",
                ca.phase.as_str()
            ),
        ));
    }
    outcome
}

/// Lifetimes of a spec, checked against the floor.
struct Durations {
    ca_lifetime: Duration,
    lifetime: Duration,
    renew_before: Duration,
    propagation_delay: Duration,
}

fn durations(spec: &MtlsSpec, floor: Duration) -> Result<Durations, String> {
    let parse = |field: &str, value: &crate::api::Duration| {
        value
            .parse()
            .map_err(|error| format!("spec.mtls.{field}: {error}"))
    };
    let ca_lifetime = parse("caLifetime", &spec.ca_lifetime)?;
    let lifetime = parse("lifetime", &spec.lifetime)?;
    let propagation_delay = parse("propagationDelay", &spec.propagation_delay)?;
    let renew_before = match &spec.renew_before {
        Some(value) => parse("renewBefore", value)?,
        None => certificates::default_renew_before(lifetime),
    };
    for (field, value) in [("caLifetime", ca_lifetime), ("lifetime", lifetime)] {
        if value < floor {
            return Err(format!(
                "spec.mtls.{field}: {} is below the minimum of {}; raise it, or lower the operator's --min-certificate-lifetime",
                crate::api::duration::format_duration(value),
                crate::api::duration::format_duration(floor)
            ));
        }
    }
    if renew_before >= lifetime {
        return Err(format!(
            "spec.mtls.renewBefore: {} must be shorter than lifetime {}",
            crate::api::duration::format_duration(renew_before),
            crate::api::duration::format_duration(lifetime)
        ));
    }
    Ok(Durations {
        ca_lifetime,
        lifetime,
        renew_before,
        propagation_delay,
    })
}

/// Delay before a policy whose referenced CA Secret is missing or unusable reads it again.
const REFERENCED_CA_RECHECK: Duration = Duration::from_secs(30);

enum CaFailure {
    /// The referenced CA is missing or unusable; retrying cannot help until it changes.
    Invalid(String),
    Api(Error),
}

/// Reads the CA, generating and storing one when the policy has none.
async fn load_ca(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    spec: &MtlsSpec,
    durations: &Durations,
    now: Timestamp,
    outcome: &mut MtlsOutcome,
) -> Result<Ca, CaFailure> {
    let operator_namespace = ctx.settings.operator_namespace.clone();
    if let Some(reference) = &spec.ca.secret_ref {
        let namespace = reference.namespace.clone().unwrap_or(operator_namespace);
        let name = format!("{namespace}/{}", reference.name);
        let secret = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(&reference.name)
            .await
            .map_err(|source| {
                CaFailure::Api(Error::ReadSecret {
                    secret: name.clone(),
                    source,
                })
            })?
            .ok_or_else(|| {
                CaFailure::Invalid(format!("spec.mtls.ca.secretRef: Secret {name} not found"))
            })?;
        let cert = secret_text(&secret, "tls.crt");
        let key = secret_text(&secret, "tls.key");
        let (Some(cert), Some(key)) = (cert, key) else {
            return Err(CaFailure::Invalid(format!(
                "spec.mtls.ca.secretRef: Secret {name} needs the keys tls.crt and tls.key"
            )));
        };
        let signing = pki::load_ca(&cert, &key, now).map_err(|error| {
            CaFailure::Invalid(format!("spec.mtls.ca.secretRef: Secret {name}: {error}"))
        })?;
        return Ok(Ca {
            since: signing.not_before,
            signing,
            next: None,
            previous_cert: None,
            phase: Phase::Stable,
            retire_after: None,
            secret: (namespace, reference.name.clone()),
            external: true,
        });
    }

    let name = format!("mn-{}-ca", policy.name_any());
    let stored = ctx.cached_secret(&operator_namespace, &name);
    if let Some(secret) = stored
        && let Some(ca) = parse_stored_ca(&secret, &operator_namespace, &name, now)
    {
        return Ok(ca);
    }

    // No usable CA: generate one. Key generation can be slow (RSA), so it runs off the
    // reconcile threads.
    let algorithm = pki_algorithm(spec);
    let common_name = format!("medianest {} CA", policy.name_any());
    let not_after = add(now, durations.ca_lifetime);
    let signing = tokio::task::spawn_blocking(move || {
        pki::generate_ca(&common_name, algorithm, now - BACKDATE, not_after)
    })
    .await
    .map_err(|error| CaFailure::Invalid(format!("CA generation stopped: {error}")))?
    .map_err(|error| CaFailure::Invalid(format!("CA generation failed: {error}")))?;
    let ca = Ca {
        signing,
        next: None,
        previous_cert: None,
        phase: Phase::Stable,
        since: now,
        retire_after: None,
        secret: (operator_namespace, name),
        external: false,
    };
    write_ca(ctx, policy, spec, &ca)
        .await
        .map_err(CaFailure::Api)?;
    outcome.events.push((
        EventType::Normal,
        "CAIssued",
        format!("Generated the CA in Secret {}/{}", ca.secret.0, ca.secret.1),
    ));
    Ok(ca)
}

fn parse_stored_ca(secret: &Secret, namespace: &str, name: &str, now: Timestamp) -> Option<Ca> {
    let annotations = secret.annotations();
    let signing = pki::load_ca(
        &secret_text(secret, "tls.crt")?,
        &secret_text(secret, "tls.key")?,
        now,
    )
    .ok()?;
    let next = match (
        secret_text(secret, "next.crt"),
        secret_text(secret, "next.key"),
    ) {
        (Some(cert), Some(key)) => pki::load_ca(&cert, &key, now).ok(),
        _ => None,
    };
    let phase = annotations
        .get(PHASE_ANNOTATION)
        .and_then(|text| Phase::parse(text))
        .unwrap_or(Phase::Stable);
    // A phase whose CA is missing cannot continue; fall back to the stable state.
    let phase = match (phase, &next) {
        (Phase::Propagating, None) => Phase::Stable,
        (phase, _) => phase,
    };
    let timestamp = |key: &str| {
        annotations
            .get(key)
            .and_then(|text| text.parse::<Timestamp>().ok())
    };
    Some(Ca {
        since: timestamp(SINCE_ANNOTATION).unwrap_or(signing.not_before),
        retire_after: timestamp(RETIRE_ANNOTATION),
        previous_cert: if phase == Phase::Reissuing {
            secret_text(secret, "previous.crt")
        } else {
            None
        },
        next: if phase == Phase::Propagating {
            next
        } else {
            None
        },
        signing,
        phase,
        secret: (namespace.to_string(), name.to_string()),
        external: false,
    })
}

/// Moves a generated CA along its rotation, writing the CA Secret when the phase changes.
#[allow(clippy::too_many_arguments)]
async fn advance_ca(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    spec: &MtlsSpec,
    durations: &Durations,
    ca: &mut Ca,
    targets: &[Target],
    governed: &[String],
    now: Timestamp,
    outcome: &mut MtlsOutcome,
) -> Result<(), Error> {
    let signed_by_old = |previous: &str| {
        targets.iter().any(|target| {
            let Some(secret) = ctx.cached_secret(&target.namespace, &target.secret_name) else {
                return false;
            };
            let (Some(cert), Some(key)) = (
                secret_text(&secret, "tls.crt"),
                secret_text(&secret, "tls.key"),
            ) else {
                return false;
            };
            pki::check_leaf(&cert, &key, &[], &[], &[previous], now).is_ok()
        })
    };
    let settings = CaSettings {
        ca_lifetime: durations.ca_lifetime,
        propagation_delay: durations.propagation_delay,
        rotation_requested: rotation_requested(policy),
        bundles_trust_next: ca.next.as_ref().is_some_and(|next| {
            ctx.bundles_contain(governed, &spec.trust_bundle_config_map, &next.cert_pem)
        }),
        old_ca_unused: ca
            .previous_cert
            .as_deref()
            .is_none_or(|previous| !signed_by_old(previous)),
    };
    let state = CaState {
        phase: ca.phase,
        since: ca.since,
        signing_not_before: ca.signing.not_before,
        signing_not_after: ca.signing.not_after,
        retire_after: ca.retire_after,
    };

    match certificates::ca_step(&state, &settings, now) {
        CaStep::Wait { at } => {
            if let Some(at) = at {
                outcome.requeue_at(at, now);
            } else {
                outcome.requeue_after = Some(
                    outcome
                        .requeue_after
                        .map_or(Duration::from_secs(2), |d| d.min(Duration::from_secs(2))),
                );
            }
            Ok(())
        }
        CaStep::StartRotation => {
            let algorithm = pki_algorithm(spec);
            let common_name = format!("medianest {} CA", policy.name_any());
            let not_after = add(now, durations.ca_lifetime);
            let next = tokio::task::spawn_blocking(move || {
                pki::generate_ca(&common_name, algorithm, now - BACKDATE, not_after)
            })
            .await
            .map_err(|error| Error::GenerateKey {
                what: "CA".into(),
                message: error.to_string(),
            })?
            .map_err(|error| Error::GenerateKey {
                what: "CA".into(),
                message: error.to_string(),
            })?;
            ca.next = Some(next);
            ca.phase = Phase::Propagating;
            ca.since = now;
            write_ca(ctx, policy, spec, ca).await?;
            outcome.requeue_at(add(now, durations.propagation_delay), now);
            outcome.events.push((
                EventType::Normal,
                "CARotationStarted",
                "Generated a new CA; it is trusted now and signs after the propagation delay"
                    .into(),
            ));
            Ok(())
        }
        CaStep::SwitchSigner => {
            let Some(next) = ca.next.take() else {
                return Ok(());
            };
            // The old CA stays trusted until the last certificate it signed has expired.
            let latest = latest_not_after(ctx, targets).unwrap_or(now).max(now);
            let old = std::mem::replace(&mut ca.signing, next);
            ca.previous_cert = Some(old.cert_pem);
            ca.phase = Phase::Reissuing;
            ca.since = now;
            ca.retire_after = Some(latest);
            write_ca(ctx, policy, spec, ca).await?;
            outcome.events.push((
                EventType::Normal,
                "CARotationSigning",
                "The new CA signs; service certificates are re-issued".into(),
            ));
            Ok(())
        }
        CaStep::RetireOld => {
            ca.previous_cert = None;
            ca.phase = Phase::Stable;
            ca.since = now;
            ca.retire_after = None;
            write_ca(ctx, policy, spec, ca).await?;
            outcome.events.push((
                EventType::Normal,
                "CARotationFinished",
                "The old CA left the trust bundles".into(),
            ));
            Ok(())
        }
    }
}

fn latest_not_after(ctx: &Context, targets: &[Target]) -> Option<Timestamp> {
    targets
        .iter()
        .filter_map(|target| ctx.cached_secret(&target.namespace, &target.secret_name))
        .filter_map(|secret| secret_text(&secret, "tls.crt"))
        .filter_map(|cert| pki::inspect(&cert).ok())
        .map(|info| info.not_after)
        .max()
}

/// Returns whether the policy's rotate-ca annotation is newer than the last request acted on.
fn rotation_requested(policy: &MediaNestSecurityPolicy) -> bool {
    let Some(requested) = policy
        .annotations()
        .get(ROTATE_CA_ANNOTATION)
        .and_then(|text| text.parse::<Timestamp>().ok())
    else {
        return false;
    };
    let last = policy
        .status
        .as_ref()
        .and_then(|status| status.mtls.as_ref())
        .and_then(|mtls| mtls.last_rotation_request.as_ref())
        .and_then(|text| text.parse::<Timestamp>().ok());
    last.is_none_or(|last| requested > last)
}

async fn write_ca(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    spec: &MtlsSpec,
    ca: &Ca,
) -> Result<(), Error> {
    let mut data = BTreeMap::from([
        ("tls.crt".to_string(), ca.signing.cert_pem.clone()),
        ("tls.key".to_string(), ca.signing.key.expose().to_string()),
        ("ca.crt".to_string(), ca.bundle()),
    ]);
    if let Some(next) = &ca.next {
        data.insert("next.crt".into(), next.cert_pem.clone());
        data.insert("next.key".into(), next.key.expose().to_string());
    }
    if let Some(previous) = &ca.previous_cert {
        data.insert("previous.crt".into(), previous.clone());
    }
    let mut annotations = BTreeMap::from([
        (PHASE_ANNOTATION.to_string(), ca.phase.as_str().to_string()),
        (SINCE_ANNOTATION.to_string(), ca.since.to_string()),
    ]);
    if let Some(retire_after) = ca.retire_after {
        annotations.insert(RETIRE_ANNOTATION.into(), retire_after.to_string());
    }
    apply_secret(
        ctx,
        policy,
        spec,
        &ca.secret.0,
        &ca.secret.1,
        "ca",
        data,
        annotations,
        "Opaque",
    )
    .await
}

/// Writes the bundle ConfigMap into every governed namespace where it differs.
async fn publish_bundles(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    spec: &MtlsSpec,
    governed: &[String],
    bundle: &str,
) -> Result<(), Error> {
    let name = &spec.trust_bundle_config_map;
    for namespace in governed {
        let current = ctx.cached_config_map(namespace, name);
        let up_to_date = current
            .as_ref()
            .and_then(|map| map.data.as_ref())
            .and_then(|data| data.get("ca.crt"))
            .is_some_and(|text| text == bundle);
        if up_to_date {
            continue;
        }
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": generated_labels(&policy.name_any(), "trust-bundle"),
                "ownerReferences": policy.controller_owner_ref(&()).map(|owner| vec![owner]),
            },
            "data": { "ca.crt": bundle },
        });
        Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace)
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|source| Error::ApplyConfigMap {
                config_map: format!("{namespace}/{name}"),
                source,
            })?;
    }
    Ok(())
}

/// Issues, renews and repairs the service certificates, and returns their status.
#[allow(clippy::too_many_arguments)]
async fn reconcile_leaves(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    spec: &MtlsSpec,
    durations: &Durations,
    ca: &Ca,
    targets: &[Target],
    now: Timestamp,
    outcome: &mut MtlsOutcome,
) -> Vec<CertificateStatus> {
    let trusted = ca.trusted();
    let trusted_refs: Vec<&str> = trusted.iter().map(String::as_str).collect();
    let signing_index = trusted
        .iter()
        .position(|pem| *pem == ca.signing.cert_pem)
        .unwrap_or(0);
    let bundle = ca.bundle();
    let mut statuses = Vec::new();
    let mut problems = Vec::new();

    for target in targets {
        let label = format!("{}/{}", target.namespace, target.secret_name);
        let stored = match ctx.cached_secret(&target.namespace, &target.secret_name) {
            Some(secret) => Some(secret),
            None => match foreign_secret(ctx, target).await {
                Ok(None) => None,
                Ok(Some(message)) => {
                    problems.push(message);
                    continue;
                }
                Err(error) => {
                    outcome.failure.get_or_insert(error);
                    continue;
                }
            },
        };

        let decision = decide(
            stored.as_deref(),
            target,
            &trusted_refs,
            signing_index,
            durations,
            now,
        );
        let (cert, key, reason) = match decision {
            Decision::Keep {
                cert,
                key,
                renew_at,
            } => {
                let ca_current = stored
                    .as_ref()
                    .and_then(|secret| secret_text(secret, "ca.crt"))
                    .is_some_and(|text| text == bundle);
                if !ca_current {
                    // Only the bundle changed: the same certificate and key are written again.
                    if let Err(error) = write_leaf(
                        ctx,
                        policy,
                        spec,
                        target,
                        &cert,
                        key.as_str(),
                        &bundle,
                        durations,
                    )
                    .await
                    {
                        outcome.failure.get_or_insert(error);
                    }
                }
                outcome.requeue_at(renew_at, now);
                statuses.push(certificate_status(target, &cert, durations));
                continue;
            }
            Decision::Issue { reason } => (None::<String>, None::<String>, reason),
        };
        let _ = (cert, key);

        let request = LeafRequest {
            common_name: target
                .dns_names
                .get(2)
                .cloned()
                .unwrap_or_else(|| target.service.clone()),
            dns_names: target.dns_names.clone(),
            ip_addresses: target.ip_addresses.clone(),
            algorithm: pki_algorithm(spec),
            not_before: now - BACKDATE,
            not_after: add(now, durations.lifetime),
        };
        let signer = ca.signing.clone();
        let issued = tokio::task::spawn_blocking(move || pki::issue_leaf(&signer, &request)).await;
        let leaf = match issued {
            Ok(Ok(leaf)) => leaf,
            Ok(Err(error)) => {
                problems.push(format!("{label}: issuing failed: {error}"));
                continue;
            }
            Err(error) => {
                problems.push(format!("{label}: issuing stopped: {error}"));
                continue;
            }
        };
        if let Err(error) = write_leaf(
            ctx,
            policy,
            spec,
            target,
            &leaf.cert_pem,
            leaf.key.expose(),
            &bundle,
            durations,
        )
        .await
        {
            outcome.failure.get_or_insert(error);
            continue;
        }
        let renew = certificates::renew_at(
            leaf.not_before,
            leaf.not_after,
            durations.lifetime,
            durations.renew_before,
        );
        outcome.requeue_at(renew, now);
        statuses.push(certificate_status(target, &leaf.cert_pem, durations));
        let (kind, event_reason) = match &reason {
            IssueReason::New => (EventType::Normal, "CertificateIssued"),
            IssueReason::Renewal | IssueReason::Rotation => {
                (EventType::Normal, "CertificateRenewed")
            }
            IssueReason::Invalid(_) => (EventType::Warning, "CertificateReissued"),
        };
        tracing::info!(secret = %label, reason = %reason, "Issued certificate");
        outcome
            .events
            .push((kind, event_reason, format!("{label}: {reason}")));
    }

    if !problems.is_empty() {
        outcome.fail(reason::ISSUE_FAILED, problems.join("; "));
    }
    statuses.sort();
    statuses
}

/// Returns a message when a Secret the operator did not write has the target's name.
async fn foreign_secret(ctx: &Context, target: &Target) -> Result<Option<String>, Error> {
    let label = format!("{}/{}", target.namespace, target.secret_name);
    let existing = Api::<Secret>::namespaced(ctx.client.clone(), &target.namespace)
        .get_metadata_opt(&target.secret_name)
        .await
        .map_err(|source| Error::ReadSecret {
            secret: label.clone(),
            source,
        })?;
    Ok(existing.map(|_| {
        format!("Secret {label} exists and was not created by the operator, which leaves it alone; delete it or set secretName")
    }))
}

#[derive(Debug)]
enum IssueReason {
    New,
    Renewal,
    Rotation,
    Invalid(String),
}

impl std::fmt::Display for IssueReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssueReason::New => f.write_str("issued a new certificate"),
            IssueReason::Renewal => f.write_str("renewed the certificate before its expiry"),
            IssueReason::Rotation => f.write_str("re-issued the certificate from the new CA"),
            IssueReason::Invalid(problem) => {
                write!(f, "re-issued the certificate because {problem}")
            }
        }
    }
}

enum Decision {
    Keep {
        cert: String,
        key: String,
        renew_at: Timestamp,
    },
    Issue {
        reason: IssueReason,
    },
}

fn decide(
    stored: Option<&Secret>,
    target: &Target,
    trusted: &[&str],
    signing_index: usize,
    durations: &Durations,
    now: Timestamp,
) -> Decision {
    let Some(secret) = stored else {
        return Decision::Issue {
            reason: IssueReason::New,
        };
    };
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return Decision::Issue {
            reason: IssueReason::Invalid(format!(
                "its type was {:?}",
                secret.type_.as_deref().unwrap_or("")
            )),
        };
    }
    let (Some(cert), Some(key)) = (
        secret_text(secret, "tls.crt"),
        secret_text(secret, "tls.key"),
    ) else {
        return Decision::Issue {
            reason: IssueReason::Invalid("tls.crt or tls.key was missing".into()),
        };
    };
    match pki::check_leaf(
        &cert,
        &key,
        &target.dns_names,
        &target.ip_addresses,
        trusted,
        now,
    ) {
        Err(problems) => {
            let described: Vec<String> = problems.iter().map(ToString::to_string).collect();
            Decision::Issue {
                reason: IssueReason::Invalid(described.join(", ")),
            }
        }
        Ok(verified) if verified.ca_index != signing_index => Decision::Issue {
            reason: IssueReason::Rotation,
        },
        Ok(verified) => {
            let info = verified.info;
            let renew_at = certificates::renew_at(
                info.not_before,
                info.not_after,
                durations.lifetime,
                durations.renew_before,
            );
            if now >= renew_at {
                Decision::Issue {
                    reason: IssueReason::Renewal,
                }
            } else {
                Decision::Keep {
                    cert,
                    key,
                    renew_at,
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_leaf(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    spec: &MtlsSpec,
    target: &Target,
    cert: &str,
    key: &str,
    bundle: &str,
    durations: &Durations,
) -> Result<(), Error> {
    let data = BTreeMap::from([
        ("tls.crt".to_string(), cert.to_string()),
        ("tls.key".to_string(), key.to_string()),
        ("ca.crt".to_string(), bundle.to_string()),
    ]);
    let mut annotations = BTreeMap::new();
    if let Ok(info) = pki::inspect(cert) {
        let renew = certificates::renew_at(
            info.not_before,
            info.not_after,
            durations.lifetime,
            durations.renew_before,
        );
        annotations.insert(NOT_AFTER_ANNOTATION.to_string(), info.not_after.to_string());
        annotations.insert(RENEW_AT_ANNOTATION.to_string(), renew.to_string());
    }
    apply_secret(
        ctx,
        policy,
        spec,
        &target.namespace,
        &target.secret_name,
        "certificate",
        data,
        annotations,
        "kubernetes.io/tls",
    )
    .await
}

/// Writes a Secret in one server-side apply, so that a reader never sees a key without its
/// certificate. Owner references are set only with deletionPolicy Delete.
#[allow(clippy::too_many_arguments)]
async fn apply_secret(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    spec: &MtlsSpec,
    namespace: &str,
    name: &str,
    purpose: &str,
    data: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    type_: &str,
) -> Result<(), Error> {
    let owner = match spec.deletion_policy {
        DeletionPolicy::Delete => policy.controller_owner_ref(&()).map(|owner| vec![owner]),
        DeletionPolicy::Retain => None,
    };
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(generated_labels(&policy.name_any(), purpose)),
            annotations: Some(annotations),
            owner_references: owner,
            ..Default::default()
        },
        type_: Some(type_.to_string()),
        data: Some(
            data.into_iter()
                .map(|(key, value)| (key, ByteString(value.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .map_err(|source| Error::ApplySecret {
            secret: format!("{namespace}/{name}"),
            source,
        })?;
    Ok(())
}

fn certificate_status(target: &Target, cert: &str, durations: &Durations) -> CertificateStatus {
    let info = pki::inspect(cert).ok();
    CertificateStatus {
        namespace: target.namespace.clone(),
        service: target.service.clone(),
        secret: target.secret_name.clone(),
        not_after: info.as_ref().map(|info| info.not_after.to_string()),
        renew_at: info.map(|info| {
            certificates::renew_at(
                info.not_before,
                info.not_after,
                durations.lifetime,
                durations.renew_before,
            )
            .to_string()
        }),
    }
}

/// Text of one key of a Secret, if it is present and UTF-8.
fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    let text = String::from_utf8(bytes.0.clone()).ok()?;
    (!text.trim().is_empty()).then_some(text)
}

fn pki_algorithm(spec: &MtlsSpec) -> pki::KeyAlgorithm {
    use crate::api::mtls::KeyAlgorithm as Api;
    match spec.key_algorithm {
        Api::EcdsaP256 => pki::KeyAlgorithm::EcdsaP256,
        Api::EcdsaP384 => pki::KeyAlgorithm::EcdsaP384,
        Api::Ed25519 => pki::KeyAlgorithm::Ed25519,
        Api::Rsa2048 => pki::KeyAlgorithm::Rsa2048,
        Api::Rsa3072 => pki::KeyAlgorithm::Rsa3072,
        Api::Rsa4096 => pki::KeyAlgorithm::Rsa4096,
    }
}

fn add(time: Timestamp, duration: Duration) -> Timestamp {
    let duration = SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
    time.checked_add(duration).unwrap_or(Timestamp::MAX)
}

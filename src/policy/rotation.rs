//! Rotation planning for generated Secrets: from the rotation state stored on a Secret, the
//! spec's settings and the current time, decides what the controller writes next. The spec
//! itself is checked first by [`validate_spec`], which the controller and `render` share.
//!
//! The functions here do no I/O and take the current time as a parameter. A plan depends only on
//! its arguments, and the state lives on the Secret itself, so a controller that crashes before
//! its write plans the same write again, and one that crashes after it plans from the new state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_lc_rs::hmac;
use k8s_openapi::jiff::Timestamp;

use crate::api::rotation::{self as api, Generator, SecretRotationSpec};

use super::generators;
use super::validate::FieldErrors;

/// Rotation state read back from an existing Secret's annotations and data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    /// Version of the current values: 1 after [`Plan::Create`], incremented by every rotation.
    pub version: u64,
    /// Time of the last creation or rotation, or of the adoption of a foreign Secret, `None` if
    /// not recorded.
    pub rotated_at: Option<Timestamp>,
    /// Time from which the previous values are dropped, `None` if not recorded.
    pub previous_expires: Option<Timestamp>,
    /// Whether the Secret still contains the values from before the last rotation.
    pub has_previous: bool,
    /// Whether the keyed hash annotation matches the current values (see [`keyed_hash`]).
    pub value_hash_ok: bool,
    /// Whether the Secret carries the operator's state annotations.
    pub generated_by_operator: bool,
    /// Keys of the Secret's data.
    pub keys_present: Vec<String>,
}

/// Rotation settings from the spec, plus whether a rotation request is pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Time between scheduled rotations. With zero every plan is a scheduled rotation, so the spec
    /// validation should reject it.
    pub interval: Duration,
    /// How long a rotation keeps the previous values, `None` to keep none. [`grace_ok`] checks it
    /// against `interval`.
    pub grace_period: Option<Duration>,
    /// Data keys the spec generates.
    pub keys: Vec<String>,
    /// Whether a Secret without the operator's annotations keeps its values (`true`) or is
    /// rotated (`false`).
    pub adopt_existing: bool,
    /// Reaction to values edited outside the operator.
    pub on_external_change: ExternalChange,
    /// Whether a rotation request newer than the last handled one is pending. The caller makes
    /// that comparison, and marks the request handled once it applies [`Plan::Create`] or any
    /// [`Plan::Rotate`].
    pub rotation_requested: bool,
}

/// Reaction to Secret values that no longer match the operator's keyed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExternalChange {
    /// Replace the edited values with new generated ones.
    Rotate,
    /// Keep the edited values and record their hash.
    Adopt,
}

/// The next write for a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No Secret exists: generate every key in [`Settings::keys`].
    Create,
    /// Generate new values for every key in [`Settings::keys`], keeping the current values as
    /// the previous ones if a grace period is set.
    Rotate { reason: RotateReason },
    /// Generate the listed keys, which the spec names and the Secret lacks, and keep the other
    /// values.
    AddMissingKeys { keys: Vec<String> },
    /// Remove the previous values, whose grace period has ended.
    DropPrevious,
    /// Keep the current values and record their hash and the state annotations.
    AdoptEdit,
    /// The Secret is up to date.
    Nothing,
}

impl Plan {
    /// Returns the plan's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Plan::Create => "Create",
            Plan::Rotate { .. } => "Rotate",
            Plan::AddMissingKeys { .. } => "AddMissingKeys",
            Plan::DropPrevious => "DropPrevious",
            Plan::AdoptEdit => "AdoptEdit",
            Plan::Nothing => "Nothing",
        }
    }
}

/// Cause of a [`Plan::Rotate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RotateReason {
    /// The rotation interval has passed since the last rotation.
    Scheduled,
    /// A rotation request is pending.
    Requested,
    /// The values no longer match the keyed hash, and `on_external_change` is `Rotate`.
    ExternalEdit,
    /// The Secret lacks the operator's annotations, and `adopt_existing` is false.
    Adoption,
}

/// Plans the next write for a Secret, where `stored` is `None` if the Secret does not exist.
///
/// The first matching rule wins:
/// 1. No Secret: `Create`.
/// 2. No operator annotations: `AdoptEdit` if `adopt_existing`, else `Rotate { Adoption }`.
/// 3. Hash mismatch: `AdoptEdit` if `on_external_change` is `Adopt`, else
///    `Rotate { ExternalEdit }`.
/// 4. `rotation_requested`: `Rotate { Requested }`.
/// 5. `now >= rotated_at + interval`, or `rotated_at` not recorded: `Rotate { Scheduled }`.
/// 6. Spec keys absent from the Secret: `AddMissingKeys`, in spec order.
/// 7. `has_previous` and `now >= previous_expires`, or the expiry not recorded: `DropPrevious`.
/// 8. Otherwise `Nothing`.
///
/// Rules 2 and 3 come first because the values must be accepted or replaced before their age
/// means anything. A rotation writes every spec key and replaces the previous values, which is
/// why rules 4 and 5 come before 6 and 7. A pending request survives `AdoptEdit` and rotates on
/// the next plan. An interval so long that the due time overflows `Timestamp` never falls due.
pub fn plan(stored: Option<&StoredState>, settings: &Settings, now: Timestamp) -> Plan {
    let Some(stored) = stored else {
        return Plan::Create;
    };

    if !stored.generated_by_operator {
        return if settings.adopt_existing {
            Plan::AdoptEdit
        } else {
            Plan::Rotate {
                reason: RotateReason::Adoption,
            }
        };
    }

    if !stored.value_hash_ok {
        return match settings.on_external_change {
            ExternalChange::Adopt => Plan::AdoptEdit,
            ExternalChange::Rotate => Plan::Rotate {
                reason: RotateReason::ExternalEdit,
            },
        };
    }

    if settings.rotation_requested {
        return Plan::Rotate {
            reason: RotateReason::Requested,
        };
    }

    let rotation_due = match stored.rotated_at {
        None => true,
        Some(rotated_at) => add(rotated_at, settings.interval).is_some_and(|due| now >= due),
    };
    if rotation_due {
        return Plan::Rotate {
            reason: RotateReason::Scheduled,
        };
    }

    let missing = missing_keys(stored, settings);
    if !missing.is_empty() {
        return Plan::AddMissingKeys { keys: missing };
    }

    if stored.has_previous && stored.previous_expires.is_none_or(|expires| now >= expires) {
        return Plan::DropPrevious;
    }

    Plan::Nothing
}

/// Returns the earliest of the next scheduled rotation and the previous values' expiry, for
/// requeueing, or `None` if neither is known.
///
/// The time may be in the past when a plan is pending, so callers clamp the delay at zero.
pub fn next_event(stored: &StoredState, settings: &Settings) -> Option<Timestamp> {
    let rotation = stored
        .rotated_at
        .and_then(|rotated_at| add(rotated_at, settings.interval));
    let expiry = stored.previous_expires.filter(|_| stored.has_previous);
    match (rotation, expiry) {
        (Some(rotation), Some(expiry)) => Some(rotation.min(expiry)),
        (rotation, expiry) => rotation.or(expiry),
    }
}

/// Returns the state to record on the Secret after applying `plan` at `now`.
///
/// `Create` sets `version` to 1 and every `Rotate` increments it, and both set `rotated_at` to
/// `now`. A rotation keeps the replaced values as the previous ones until `now + grace_period`
/// (saturating at `Timestamp::MAX`) and discards any older previous values. `AdoptEdit` and
/// `AddMissingKeys` keep `version` and `rotated_at`, so added keys rotate with the others and an
/// adopted edit keeps the schedule. `AdoptEdit` sets a missing `rotated_at` to `now`, which
/// gives an adopted foreign Secret a full interval before its first scheduled rotation. Every
/// plan but `Nothing` records the hash of the written values and the operator's annotations.
pub fn state_after(
    stored: Option<&StoredState>,
    plan: &Plan,
    settings: &Settings,
    now: Timestamp,
) -> StoredState {
    let mut state = stored.cloned().unwrap_or_default();
    match plan {
        Plan::Nothing => return state,
        Plan::Create => {
            state = StoredState {
                version: 1,
                rotated_at: Some(now),
                keys_present: settings.keys.clone(),
                ..StoredState::default()
            };
        }
        Plan::Rotate { .. } => {
            state.version += 1;
            state.rotated_at = Some(now);
            let keep_previous = stored.is_some() && settings.grace_period.is_some();
            state.has_previous = keep_previous;
            state.previous_expires = settings
                .grace_period
                .filter(|_| keep_previous)
                .map(|grace| add(now, grace).unwrap_or(Timestamp::MAX));
            add_keys(&mut state.keys_present, &settings.keys);
        }
        Plan::AddMissingKeys { keys } => add_keys(&mut state.keys_present, keys),
        Plan::DropPrevious => {
            state.has_previous = false;
            state.previous_expires = None;
        }
        Plan::AdoptEdit => {
            state.rotated_at = state.rotated_at.or(Some(now));
        }
    }
    state.value_hash_ok = true;
    state.generated_by_operator = true;
    state
}

/// Computes HMAC-SHA256 under `key` over the names and values of `keys` in `data`, as lowercase
/// hex.
///
/// `keys` are sorted and deduplicated, so their order does not matter. Keys not listed, and listed
/// keys absent from `data`, do not count. Adding a key to the spec therefore leaves the hash of
/// the existing values unchanged, so the new key shows up as missing rather than as an external
/// edit, while deleting a covered key from the Secret changes the hash. The message starts with
/// a format tag and the number of keys that count. Each of their names and values follows with
/// its length as a big-endian u64, so two different inputs never produce the same message.
pub fn keyed_hash(key: &[u8], data: &BTreeMap<String, Vec<u8>>, keys: &[String]) -> String {
    const FORMAT_TAG: &[u8] = b"secret-rotation-hash-v1";

    let names: BTreeSet<&String> = keys.iter().collect();
    let entries: Vec<(&String, &Vec<u8>)> = names
        .into_iter()
        .filter_map(|name| data.get(name).map(|value| (name, value)))
        .collect();

    let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    update_with_length(&mut context, FORMAT_TAG);
    context.update(&(entries.len() as u64).to_be_bytes());
    for (name, value) in entries {
        update_with_length(&mut context, name.as_bytes());
        update_with_length(&mut context, value);
    }

    let tag = context.sign();
    let mut hex = String::with_capacity(tag.as_ref().len() * 2);
    for byte in tag.as_ref() {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Checks that a grace period is at most the rotation interval, so the previous values expire no
/// later than the next scheduled rotation.
pub fn grace_ok(interval: Duration, grace: Duration) -> Result<(), String> {
    if grace > interval {
        return Err(format!(
            "grace period {grace:?} is longer than the rotation interval {interval:?}; \
             set it to at most {interval:?}"
        ));
    }
    Ok(())
}

/// Maximum number of keys in a spec, as in the CRD schema.
const MAX_KEYS: usize = 32;
/// Maximum length of a key name, as in the CRD schema.
const MAX_KEY_NAME: usize = 200;
/// Maximum length of previous.suffix, as in the CRD schema.
const MAX_SUFFIX: usize = 50;
/// Maximum length of a key in a Secret's data, which the API server enforces.
const MAX_SECRET_KEY: usize = 253;
/// Maximum length of the Secret's name, a DNS subdomain.
const MAX_SECRET_NAME: usize = 253;

/// Interval and grace period of a spec that [`validate_spec`] accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Time between scheduled rotations, never zero.
    pub interval: Duration,
    /// How long a rotation keeps the previous values, `None` when previous.keep is off.
    pub grace_period: Option<Duration>,
}

/// Checks a SecretRotation spec and returns its schedule.
///
/// The checks repeat those of the CRD schema and its CEL rules, so that `render` reports bad
/// input offline. They add what admission cannot check: that the durations parse, that interval
/// is at least `min_interval`, and that the grace period is at most interval.
///
/// Every name the Secret would contain must be distinct and fit in a Secret key, because a
/// second value under one name overwrites the first. These names are the keys, KEY.pub of each
/// key pair, and, while previous values are kept, each of those plus previous.suffix.
pub fn validate_spec(
    spec: &SecretRotationSpec,
    min_interval: Duration,
) -> Result<Schedule, FieldErrors> {
    let mut errors = FieldErrors::default();

    if !is_dns_subdomain(&spec.secret_name) {
        errors.push(
            "spec.secretName",
            format!(
                "{:?} is not a valid Secret name: use at most {MAX_SECRET_NAME} lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
                spec.secret_name
            ),
        );
    }
    if spec.keys.is_empty() || spec.keys.len() > MAX_KEYS {
        errors.push(
            "spec.keys",
            format!("{} keys are listed; list 1 to {MAX_KEYS}", spec.keys.len()),
        );
    }
    for (index, key) in spec.keys.iter().enumerate() {
        let field = format!("spec.keys[{index}]");
        if let Err(message) = check_key_name("key name", &key.name, MAX_KEY_NAME) {
            errors.push(format!("{field}.name"), message);
        }
        check_generator(&key.generator, &format!("{field}.generator"), &mut errors);
    }
    let suffix = spec
        .previous
        .as_ref()
        .filter(|previous| previous.keep)
        .map(|previous| previous.suffix.as_str());
    if let Some(suffix) = suffix
        && let Err(message) = check_key_name("suffix", suffix, MAX_SUFFIX)
    {
        errors.push("spec.previous.suffix", message);
    }
    check_written_names(spec, suffix, &mut errors);

    let interval = match spec.interval.parse() {
        Ok(interval) if interval.is_zero() => {
            errors.push(
                "spec.interval",
                format!(
                    "{} is zero; set a positive interval such as 90d",
                    spec.interval
                ),
            );
            None
        }
        Ok(interval) if interval < min_interval => {
            errors.push(
                "spec.interval",
                format!(
                    "{} is below the minimum of {}; raise it, or lower the operator's --min-rotation-interval",
                    spec.interval,
                    crate::api::duration::format_duration(min_interval)
                ),
            );
            None
        }
        Ok(interval) => Some(interval),
        Err(error) => {
            errors.push("spec.interval", error.to_string());
            None
        }
    };
    let grace_period = match &spec.previous {
        Some(previous) if previous.keep => match previous.grace_period.parse() {
            Ok(grace) => {
                if let Some(interval) = interval
                    && let Err(message) = grace_ok(interval, grace)
                {
                    errors.push("spec.previous.gracePeriod", message);
                }
                Some(grace)
            }
            Err(error) => {
                errors.push("spec.previous.gracePeriod", error.to_string());
                None
            }
        },
        _ => None,
    };
    if let Some(window) = &spec.consumers.restart_window
        && let Err(error) = window.parse()
    {
        errors.push("spec.consumers.restartWindow", error.to_string());
    }

    match interval {
        Some(interval) if errors.0.is_empty() => Ok(Schedule {
            interval,
            grace_period,
        }),
        _ => Err(errors),
    }
}

/// Checks a key name, or previous.suffix, against the CRD pattern and the rules of Secret keys.
/// The message calls it `label`.
fn check_key_name(label: &str, name: &str, max: usize) -> Result<(), String> {
    let characters_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if name.is_empty() || name.len() > max || !characters_ok {
        return Err(format!(
            "{label} {name:?} is invalid: use 1 to {max} letters, digits, '-', '_' and '.'"
        ));
    }
    if name == "." || name.starts_with("..") {
        return Err(format!(
            "{label} {name:?} is invalid: a Secret rejects the key names . and .. and names starting with ..; change it"
        ));
    }
    Ok(())
}

/// Checks the generator of one key, whose path is `field`, such as spec.keys[0].generator.
fn check_generator(generator: &Generator, field: &str, errors: &mut FieldErrors) {
    let set = [
        generator.random_bytes.is_some(),
        generator.password.is_some(),
        generator.jwt_hmac.is_some(),
        generator.key_pair.is_some(),
    ]
    .into_iter()
    .filter(|set| *set)
    .count();
    if set != 1 {
        errors.push(
            field,
            format!("{set} generators are set; set exactly one of randomBytes, password, jwtHmac or keyPair"),
        );
    }
    if let Some(random) = &generator.random_bytes {
        check_length(
            random.length,
            generators::MIN_RANDOM_BYTES,
            generators::MAX_RANDOM_BYTES,
            &format!("{field}.randomBytes.length"),
            errors,
        );
    }
    if let Some(password) = &generator.password {
        check_length(
            password.length,
            generators::MIN_PASSWORD_CHARS,
            generators::MAX_PASSWORD_CHARS,
            &format!("{field}.password.length"),
            errors,
        );
        let alphabet = password_alphabet(password.alphabet);
        for (index, class) in password.require.iter().enumerate() {
            let members = character_class(*class);
            if !alphabet.characters().iter().any(|c| members.contains(*c)) {
                let alphabet = spec_spelling(&password.alphabet);
                let class = spec_spelling(class);
                errors.push(
                    format!("{field}.password.require[{index}]"),
                    format!(
                        "the {alphabet} alphabet has no {class} characters; remove {class} from require, or choose an alphabet that contains them"
                    ),
                );
            }
        }
    }
    if let Some(jwt) = &generator.jwt_hmac {
        let algorithm = hmac_algorithm(jwt.algorithm);
        let min = algorithm.min_key_bytes();
        if usize::try_from(jwt.length).is_ok_and(|length| length < min) {
            errors.push(
                format!("{field}.jwtHmac.length"),
                format!(
                    "{} bytes is too short for {algorithm}, which needs at least {min} bytes, the size of its hash; set length to at least {min}",
                    jwt.length
                ),
            );
        } else {
            check_length(
                jwt.length,
                min,
                generators::MAX_RANDOM_BYTES,
                &format!("{field}.jwtHmac.length"),
                errors,
            );
        }
    }
}

fn check_length(length: i32, min: usize, max: usize, field: &str, errors: &mut FieldErrors) {
    if !usize::try_from(length).is_ok_and(|length| (min..=max).contains(&length)) {
        errors.push(
            field,
            format!("{length} is out of range; use {min} to {max}"),
        );
    }
}

/// Origin of one name in the Secret's data.
enum NameSource {
    /// The value of spec.keys[i].
    Key(usize),
    /// The public key of the key pair spec.keys[i].
    PublicKey(usize),
    /// The previous value kept under the written name `of` plus previous.suffix.
    Previous { of: String },
}

/// Reports every name the Secret would hold twice, and every previous-value name longer than
/// a Secret key may be. `suffix` is previous.suffix when previous values are kept.
fn check_written_names(spec: &SecretRotationSpec, suffix: Option<&str>, errors: &mut FieldErrors) {
    let mut written: Vec<(String, NameSource)> = Vec::new();
    for (index, key) in spec.keys.iter().enumerate() {
        written.push((key.name.clone(), NameSource::Key(index)));
    }
    for (index, key) in spec.keys.iter().enumerate() {
        if key.generator.key_pair.is_some() {
            written.push((format!("{}.pub", key.name), NameSource::PublicKey(index)));
        }
    }
    if let Some(suffix) = suffix {
        let current: Vec<String> = written.iter().map(|(name, _)| name.clone()).collect();
        for of in current {
            let name = format!("{of}{suffix}");
            if name.len() > MAX_SECRET_KEY {
                errors.push(
                    "spec.previous.suffix",
                    format!(
                        "the previous value of {of:?} would be kept under a name of {} characters, more than the {MAX_SECRET_KEY} of a Secret key; shorten the key name or previous.suffix",
                        name.len()
                    ),
                );
            }
            written.push((name, NameSource::Previous { of }));
        }
    }

    let mut first_source: BTreeMap<&str, &NameSource> = BTreeMap::new();
    for (name, source) in &written {
        let Some(first) = first_source.get(name.as_str()) else {
            first_source.insert(name, source);
            continue;
        };
        let key_name = |index: usize| spec.keys[index].name.as_str();
        match (first, source) {
            (NameSource::Key(first), NameSource::Key(second)) => errors.push(
                format!("spec.keys[{second}].name"),
                format!(
                    "key name {name:?} appears more than once in spec.keys, also at spec.keys[{first}]; give each key its own name"
                ),
            ),
            (NameSource::Key(key), NameSource::PublicKey(pair)) => errors.push(
                format!("spec.keys[{key}].name"),
                format!(
                    "key name {name:?} is also where key pair {:?} (spec.keys[{pair}]) stores its public key; rename one of the two keys",
                    key_name(*pair)
                ),
            ),
            (NameSource::Key(key), NameSource::Previous { of }) => errors.push(
                "spec.previous.suffix",
                format!(
                    "the previous value of {of:?} would be kept under {name:?}, which is also the name of spec.keys[{key}]; rename that key or set another previous.suffix"
                ),
            ),
            (NameSource::PublicKey(pair), NameSource::Previous { of }) => errors.push(
                "spec.previous.suffix",
                format!(
                    "the previous value of {of:?} would be kept under {name:?}, which is also where key pair {:?} (spec.keys[{pair}]) stores its public key; rename that key or set another previous.suffix",
                    key_name(*pair)
                ),
            ),
            // Two key pairs of one name, or two previous-value names of one written name,
            // repeat a collision reported above.
            _ => {}
        }
    }
}

/// Returns whether `name` is a DNS subdomain, as Secret names must be.
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SECRET_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Returns an enum value as the spec spells it, such as urlSafe.
fn spec_spelling(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => String::new(),
    }
}

fn password_alphabet(alphabet: api::Alphabet) -> generators::Alphabet {
    match alphabet {
        api::Alphabet::Alphanumeric => generators::Alphabet::Alphanumeric,
        api::Alphabet::UrlSafe => generators::Alphabet::UrlSafe,
        api::Alphabet::Ascii => generators::Alphabet::Ascii,
    }
}

fn character_class(class: api::CharacterClass) -> generators::Class {
    match class {
        api::CharacterClass::Lower => generators::Class::Lower,
        api::CharacterClass::Upper => generators::Class::Upper,
        api::CharacterClass::Digit => generators::Class::Digit,
        api::CharacterClass::Symbol => generators::Class::Symbol,
    }
}

fn hmac_algorithm(algorithm: api::HmacAlgorithm) -> generators::HmacAlgorithm {
    match algorithm {
        api::HmacAlgorithm::HS256 => generators::HmacAlgorithm::HS256,
        api::HmacAlgorithm::HS384 => generators::HmacAlgorithm::HS384,
        api::HmacAlgorithm::HS512 => generators::HmacAlgorithm::HS512,
    }
}

/// Adds a duration, returning `None` past `Timestamp::MAX`.
fn add(timestamp: Timestamp, duration: Duration) -> Option<Timestamp> {
    timestamp.checked_add(duration).ok()
}

/// Returns the spec keys absent from the Secret, in spec order and without repeats.
fn missing_keys(stored: &StoredState, settings: &Settings) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for key in &settings.keys {
        if !stored.keys_present.contains(key) && !missing.contains(key) {
            missing.push(key.clone());
        }
    }
    missing
}

fn add_keys(present: &mut Vec<String>, keys: &[String]) {
    for key in keys {
        if !present.contains(key) {
            present.push(key.clone());
        }
    }
}

fn update_with_length(context: &mut hmac::Context, bytes: &[u8]) {
    context.update(&(bytes.len() as u64).to_be_bytes());
    context.update(bytes);
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    const T0: i64 = 1_700_000_000;
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    /// Seconds after `T0`.
    fn after(seconds: u64) -> Timestamp {
        at(T0 + seconds as i64)
    }

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    /// Interval of a day, grace period of an hour, keys `password` and `token`.
    fn settings() -> Settings {
        Settings {
            interval: Duration::from_secs(DAY),
            grace_period: Some(Duration::from_secs(HOUR)),
            keys: keys(&["password", "token"]),
            adopt_existing: false,
            on_external_change: ExternalChange::Rotate,
            rotation_requested: false,
        }
    }

    /// Returns the state of an operator-written Secret last rotated at `T0`, with no previous
    /// values.
    fn managed() -> StoredState {
        StoredState {
            version: 3,
            rotated_at: Some(at(T0)),
            previous_expires: None,
            has_previous: false,
            value_hash_ok: true,
            generated_by_operator: true,
            keys_present: keys(&["password", "token"]),
        }
    }

    /// Returns the state of a Secret created by someone else, without the operator's
    /// annotations.
    fn foreign() -> StoredState {
        StoredState {
            version: 1,
            rotated_at: None,
            previous_expires: None,
            has_previous: false,
            value_hash_ok: false,
            generated_by_operator: false,
            keys_present: keys(&["password"]),
        }
    }

    /// Returns `managed()` with previous values that expire at `T0 + HOUR`.
    fn with_previous() -> StoredState {
        StoredState {
            has_previous: true,
            previous_expires: Some(after(HOUR)),
            ..managed()
        }
    }

    fn rotate(reason: RotateReason) -> Plan {
        Plan::Rotate { reason }
    }

    struct Case {
        name: &'static str,
        stored: Option<StoredState>,
        settings: Settings,
        now: Timestamp,
        expected: Plan,
    }

    fn cases() -> Vec<Case> {
        let requested = Settings {
            rotation_requested: true,
            ..settings()
        };
        let adopting = Settings {
            adopt_existing: true,
            ..settings()
        };
        let adopt_edits = Settings {
            on_external_change: ExternalChange::Adopt,
            ..settings()
        };
        let edited = StoredState {
            value_hash_ok: false,
            ..managed()
        };
        let missing_token = StoredState {
            keys_present: keys(&["password"]),
            ..managed()
        };
        let due = after(DAY);
        let not_due = after(DAY - 1);

        vec![
            Case {
                name: "no secret creates",
                stored: None,
                settings: settings(),
                now: at(T0),
                expected: Plan::Create,
            },
            Case {
                name: "no secret creates despite request",
                stored: None,
                settings: requested.clone(),
                now: due,
                expected: Plan::Create,
            },
            Case {
                name: "foreign secret rotates without adoption",
                stored: Some(foreign()),
                settings: settings(),
                now: at(T0),
                expected: rotate(RotateReason::Adoption),
            },
            Case {
                name: "foreign secret adopted when enabled",
                stored: Some(foreign()),
                settings: adopting.clone(),
                now: at(T0),
                expected: Plan::AdoptEdit,
            },
            Case {
                name: "adoption precedes request",
                stored: Some(foreign()),
                settings: Settings {
                    rotation_requested: true,
                    ..adopting.clone()
                },
                now: at(T0),
                expected: Plan::AdoptEdit,
            },
            Case {
                name: "adoption precedes external change setting",
                stored: Some(foreign()),
                settings: Settings {
                    adopt_existing: false,
                    ..adopt_edits.clone()
                },
                now: at(T0),
                expected: rotate(RotateReason::Adoption),
            },
            Case {
                name: "external edit rotates",
                stored: Some(edited.clone()),
                settings: settings(),
                now: after(1),
                expected: rotate(RotateReason::ExternalEdit),
            },
            Case {
                name: "external edit adopted when set",
                stored: Some(edited.clone()),
                settings: adopt_edits.clone(),
                now: after(1),
                expected: Plan::AdoptEdit,
            },
            Case {
                name: "external edit precedes request and schedule",
                stored: Some(edited.clone()),
                settings: requested.clone(),
                now: due,
                expected: rotate(RotateReason::ExternalEdit),
            },
            Case {
                name: "adopted edit precedes request",
                stored: Some(edited.clone()),
                settings: Settings {
                    rotation_requested: true,
                    ..adopt_edits.clone()
                },
                now: due,
                expected: Plan::AdoptEdit,
            },
            Case {
                name: "request rotates before due",
                stored: Some(managed()),
                settings: requested.clone(),
                now: after(1),
                expected: rotate(RotateReason::Requested),
            },
            Case {
                name: "request precedes schedule",
                stored: Some(managed()),
                settings: requested.clone(),
                now: due,
                expected: rotate(RotateReason::Requested),
            },
            Case {
                name: "handled request does nothing",
                stored: Some(managed()),
                settings: settings(),
                now: after(1),
                expected: Plan::Nothing,
            },
            Case {
                name: "due exactly at interval",
                stored: Some(managed()),
                settings: settings(),
                now: due,
                expected: rotate(RotateReason::Scheduled),
            },
            Case {
                name: "due long after interval",
                stored: Some(managed()),
                settings: settings(),
                now: after(30 * DAY),
                expected: rotate(RotateReason::Scheduled),
            },
            Case {
                name: "one second before due",
                stored: Some(managed()),
                settings: settings(),
                now: not_due,
                expected: Plan::Nothing,
            },
            Case {
                name: "unrecorded rotation time is due",
                stored: Some(StoredState {
                    rotated_at: None,
                    ..managed()
                }),
                settings: settings(),
                now: after(1),
                expected: rotate(RotateReason::Scheduled),
            },
            Case {
                name: "clock before rotation time",
                stored: Some(managed()),
                settings: settings(),
                now: at(T0 - 60),
                expected: Plan::Nothing,
            },
            Case {
                name: "overflowing interval never due",
                stored: Some(managed()),
                settings: Settings {
                    interval: Duration::MAX,
                    ..settings()
                },
                now: Timestamp::MAX,
                expected: Plan::Nothing,
            },
            Case {
                name: "schedule precedes missing key",
                stored: Some(missing_token.clone()),
                settings: settings(),
                now: due,
                expected: rotate(RotateReason::Scheduled),
            },
            Case {
                name: "schedule precedes previous expiry",
                stored: Some(with_previous()),
                settings: settings(),
                now: due,
                expected: rotate(RotateReason::Scheduled),
            },
            Case {
                name: "missing key added",
                stored: Some(missing_token.clone()),
                settings: settings(),
                now: after(1),
                expected: Plan::AddMissingKeys {
                    keys: keys(&["token"]),
                },
            },
            Case {
                name: "missing keys in spec order once",
                stored: Some(StoredState {
                    keys_present: keys(&["other"]),
                    ..managed()
                }),
                settings: Settings {
                    keys: keys(&["token", "password", "token"]),
                    ..settings()
                },
                now: after(1),
                expected: Plan::AddMissingKeys {
                    keys: keys(&["token", "password"]),
                },
            },
            Case {
                name: "missing key precedes previous expiry",
                stored: Some(StoredState {
                    keys_present: keys(&["password"]),
                    ..with_previous()
                }),
                settings: settings(),
                now: after(2 * HOUR),
                expected: Plan::AddMissingKeys {
                    keys: keys(&["token"]),
                },
            },
            Case {
                name: "extra secret key ignored",
                stored: Some(StoredState {
                    keys_present: keys(&["password", "token", "password.previous"]),
                    ..managed()
                }),
                settings: settings(),
                now: after(1),
                expected: Plan::Nothing,
            },
            Case {
                name: "previous kept before expiry",
                stored: Some(with_previous()),
                settings: settings(),
                now: after(HOUR - 1),
                expected: Plan::Nothing,
            },
            Case {
                name: "previous dropped at expiry",
                stored: Some(with_previous()),
                settings: settings(),
                now: after(HOUR),
                expected: Plan::DropPrevious,
            },
            Case {
                name: "previous dropped after grace disabled",
                stored: Some(with_previous()),
                settings: Settings {
                    grace_period: None,
                    ..settings()
                },
                now: after(HOUR),
                expected: Plan::DropPrevious,
            },
            Case {
                name: "recorded expiry kept after grace disabled",
                stored: Some(with_previous()),
                settings: Settings {
                    grace_period: None,
                    ..settings()
                },
                now: after(HOUR - 1),
                expected: Plan::Nothing,
            },
            Case {
                name: "previous without expiry dropped",
                stored: Some(StoredState {
                    previous_expires: None,
                    ..with_previous()
                }),
                settings: settings(),
                now: after(1),
                expected: Plan::DropPrevious,
            },
            Case {
                name: "stale expiry without previous ignored",
                stored: Some(StoredState {
                    has_previous: false,
                    ..with_previous()
                }),
                settings: settings(),
                now: after(2 * HOUR),
                expected: Plan::Nothing,
            },
        ]
    }

    #[test]
    fn plan_table() {
        for case in cases() {
            let planned = plan(case.stored.as_ref(), &case.settings, case.now);
            assert_eq!(planned, case.expected, "case: {}", case.name);
        }
    }

    #[test]
    fn plan_repeats_on_same_state() {
        // A restart between planning and writing plans from the same stored state again.
        for case in cases() {
            let first = plan(case.stored.as_ref(), &case.settings, case.now);
            let second = plan(case.stored.as_ref(), &case.settings, case.now);
            assert_eq!(first, second, "case: {}", case.name);
        }
    }

    #[test]
    fn plans_converge_to_nothing() {
        // Applying each plan and planning again at the same time, with the request cleared once
        // handled, reaches `Nothing` within three writes and rotates at most once.
        for case in cases() {
            let mut settings = case.settings.clone();
            let mut stored = case.stored.clone();
            let mut rotations = 0;
            let mut writes = 0;
            loop {
                let planned = plan(stored.as_ref(), &settings, case.now);
                if planned == Plan::Nothing {
                    break;
                }
                if matches!(planned, Plan::Rotate { .. }) {
                    rotations += 1;
                }
                if matches!(planned, Plan::Create | Plan::Rotate { .. }) {
                    settings.rotation_requested = false;
                }
                stored = Some(state_after(stored.as_ref(), &planned, &settings, case.now));
                writes += 1;
                assert!(writes <= 3, "case {}: no convergence", case.name);
            }
            assert!(
                rotations <= 1,
                "case {}: rotated {rotations} times",
                case.name
            );
        }
    }

    #[test]
    fn due_window_rotates_once_across_crash() {
        let settings = settings();
        let stored = managed();
        let first_try = after(DAY + 5);

        // The controller plans, then crashes before writing, so the retry plans from the same state.
        let planned = plan(Some(&stored), &settings, first_try);
        assert_eq!(planned, rotate(RotateReason::Scheduled));
        let retry = after(DAY + 10);
        let replanned = plan(Some(&stored), &settings, retry);
        assert_eq!(replanned, planned);

        // The retry writes, and then crashes after the write: the next plan starts from the new state.
        let rotated = state_after(Some(&stored), &replanned, &settings, retry);
        assert_eq!(rotated.rotated_at, Some(retry));
        assert_eq!(rotated.version, stored.version + 1);
        assert_eq!(plan(Some(&rotated), &settings, retry), Plan::Nothing);
        assert_eq!(
            plan(Some(&rotated), &settings, after(DAY + 20)),
            Plan::Nothing
        );

        // After the grace period only the previous values go, and the next rotation is a full
        // interval after the retry.
        let expiry = after(DAY + 10 + HOUR);
        assert_eq!(plan(Some(&rotated), &settings, expiry), Plan::DropPrevious);
        let dropped = state_after(Some(&rotated), &Plan::DropPrevious, &settings, expiry);
        assert_eq!(dropped.version, rotated.version);
        let next_due = after(2 * DAY + 10);
        assert_eq!(next_event(&dropped, &settings), Some(next_due));
        assert_eq!(
            plan(Some(&dropped), &settings, after(2 * DAY + 9)),
            Plan::Nothing
        );
        assert_eq!(
            plan(Some(&dropped), &settings, next_due),
            rotate(RotateReason::Scheduled)
        );
    }

    #[test]
    fn request_rotates_once() {
        let mut settings = Settings {
            rotation_requested: true,
            grace_period: None,
            ..settings()
        };
        let now = after(HOUR * 2);
        let planned = plan(Some(&managed()), &settings, now);
        assert_eq!(planned, rotate(RotateReason::Requested));
        let rotated = state_after(Some(&managed()), &planned, &settings, now);

        // The caller records the request as handled, so the same request is now older than the
        // last handled one.
        settings.rotation_requested = false;
        assert_eq!(plan(Some(&rotated), &settings, now), Plan::Nothing);
        assert_eq!(
            plan(Some(&rotated), &settings, after(HOUR * 2 + DAY - 1)),
            Plan::Nothing
        );
    }

    #[test]
    fn grace_period_expiry() {
        let settings = settings();
        let now = after(DAY);
        let rotated = state_after(
            Some(&managed()),
            &rotate(RotateReason::Scheduled),
            &settings,
            now,
        );
        assert!(rotated.has_previous);
        assert_eq!(rotated.previous_expires, Some(after(DAY + HOUR)));
        assert_eq!(next_event(&rotated, &settings), Some(after(DAY + HOUR)));

        assert_eq!(
            plan(Some(&rotated), &settings, after(DAY + HOUR - 1)),
            Plan::Nothing
        );
        assert_eq!(
            plan(Some(&rotated), &settings, after(DAY + HOUR)),
            Plan::DropPrevious
        );

        let dropped = state_after(
            Some(&rotated),
            &Plan::DropPrevious,
            &settings,
            after(DAY + HOUR),
        );
        assert!(!dropped.has_previous);
        assert_eq!(dropped.previous_expires, None);
        assert_eq!(
            plan(Some(&dropped), &settings, after(DAY + HOUR)),
            Plan::Nothing
        );
        assert_eq!(next_event(&dropped, &settings), Some(after(2 * DAY)));
    }

    #[test]
    fn rotation_without_grace_keeps_no_previous() {
        let settings = Settings {
            grace_period: None,
            ..settings()
        };
        let rotated = state_after(
            Some(&with_previous()),
            &rotate(RotateReason::Scheduled),
            &settings,
            after(DAY),
        );
        assert!(!rotated.has_previous);
        assert_eq!(rotated.previous_expires, None);
        assert_eq!(plan(Some(&rotated), &settings, after(DAY)), Plan::Nothing);
    }

    #[test]
    fn rotation_replaces_older_previous() {
        let now = after(30 * 60);
        let rotated = state_after(
            Some(&with_previous()),
            &rotate(RotateReason::Requested),
            &settings(),
            now,
        );
        assert!(rotated.has_previous);
        assert_eq!(rotated.previous_expires, Some(after(30 * 60 + HOUR)));
    }

    #[test]
    fn create_records_fresh_state() {
        let settings = settings();
        let created = state_after(None, &Plan::Create, &settings, at(T0));
        assert_eq!(
            created,
            StoredState {
                version: 1,
                rotated_at: Some(at(T0)),
                previous_expires: None,
                has_previous: false,
                value_hash_ok: true,
                generated_by_operator: true,
                keys_present: keys(&["password", "token"]),
            }
        );
        assert_eq!(plan(Some(&created), &settings, at(T0)), Plan::Nothing);
        assert_eq!(next_event(&created, &settings), Some(after(DAY)));
    }

    #[test]
    fn adoption_enabled_keeps_values() {
        let settings = Settings {
            adopt_existing: true,
            ..settings()
        };
        let now = after(5);
        let planned = plan(Some(&foreign()), &settings, now);
        assert_eq!(planned, Plan::AdoptEdit);

        let adopted = state_after(Some(&foreign()), &planned, &settings, now);
        assert!(adopted.generated_by_operator);
        assert!(adopted.value_hash_ok);
        assert_eq!(adopted.rotated_at, Some(now));
        assert_eq!(adopted.version, foreign().version);
        assert!(!adopted.has_previous);

        // The foreign Secret had only `password`, so `token` is added next, without a rotation.
        let planned = plan(Some(&adopted), &settings, now);
        assert_eq!(
            planned,
            Plan::AddMissingKeys {
                keys: keys(&["token"]),
            }
        );
        let completed = state_after(Some(&adopted), &planned, &settings, now);
        assert_eq!(plan(Some(&completed), &settings, now), Plan::Nothing);
        assert_eq!(next_event(&completed, &settings), Some(after(5 + DAY)));
    }

    #[test]
    fn adoption_disabled_rotates() {
        let settings = settings();
        let now = after(5);
        let planned = plan(Some(&foreign()), &settings, now);
        assert_eq!(planned, rotate(RotateReason::Adoption));

        let rotated = state_after(Some(&foreign()), &planned, &settings, now);
        assert!(rotated.generated_by_operator);
        assert_eq!(rotated.version, foreign().version + 1);
        assert!(
            rotated.has_previous,
            "the foreign values are kept for the grace period"
        );
        assert_eq!(rotated.keys_present, keys(&["password", "token"]));
        assert_eq!(plan(Some(&rotated), &settings, now), Plan::Nothing);
    }

    #[test]
    fn external_edit_rotate_or_adopt() {
        let edited = StoredState {
            value_hash_ok: false,
            ..managed()
        };
        let now = after(HOUR);

        let rotating = settings();
        let planned = plan(Some(&edited), &rotating, now);
        assert_eq!(planned, rotate(RotateReason::ExternalEdit));
        let rotated = state_after(Some(&edited), &planned, &rotating, now);
        assert!(rotated.value_hash_ok);
        assert_eq!(rotated.version, edited.version + 1);
        assert!(rotated.has_previous);
        assert_eq!(plan(Some(&rotated), &rotating, now), Plan::Nothing);

        let adopting = Settings {
            on_external_change: ExternalChange::Adopt,
            ..settings()
        };
        let planned = plan(Some(&edited), &adopting, now);
        assert_eq!(planned, Plan::AdoptEdit);
        let adopted = state_after(Some(&edited), &planned, &adopting, now);
        assert!(adopted.value_hash_ok);
        assert!(!adopted.has_previous);
        assert_eq!(adopted.version, edited.version);
        assert_eq!(
            adopted.rotated_at, edited.rotated_at,
            "an adopted edit keeps the schedule"
        );
        assert_eq!(plan(Some(&adopted), &adopting, now), Plan::Nothing);
        assert_eq!(next_event(&adopted, &adopting), Some(after(DAY)));
    }

    #[test]
    fn adopted_edit_keeps_pending_request() {
        let settings = Settings {
            on_external_change: ExternalChange::Adopt,
            rotation_requested: true,
            ..settings()
        };
        let edited = StoredState {
            value_hash_ok: false,
            ..managed()
        };
        let now = after(HOUR);
        let adopted = state_after(Some(&edited), &Plan::AdoptEdit, &settings, now);
        assert_eq!(
            plan(Some(&adopted), &settings, now),
            rotate(RotateReason::Requested)
        );
    }

    #[test]
    fn missing_key_added_without_rotation() {
        let settings = settings();
        let stored = StoredState {
            keys_present: keys(&["password"]),
            ..with_previous()
        };
        let now = after(10);
        let planned = plan(Some(&stored), &settings, now);
        assert_eq!(
            planned,
            Plan::AddMissingKeys {
                keys: keys(&["token"]),
            }
        );

        let added = state_after(Some(&stored), &planned, &settings, now);
        assert_eq!(added.version, stored.version);
        assert_eq!(added.rotated_at, stored.rotated_at);
        assert_eq!(added.has_previous, stored.has_previous);
        assert_eq!(added.previous_expires, stored.previous_expires);
        assert_eq!(added.keys_present, keys(&["password", "token"]));
        assert_eq!(plan(Some(&added), &settings, now), Plan::Nothing);
    }

    #[test]
    fn next_event_cases() {
        let settings = settings();
        assert_eq!(next_event(&managed(), &settings), Some(after(DAY)));
        assert_eq!(next_event(&with_previous(), &settings), Some(after(HOUR)));

        let late_expiry = StoredState {
            previous_expires: Some(after(2 * DAY)),
            ..with_previous()
        };
        assert_eq!(next_event(&late_expiry, &settings), Some(after(DAY)));

        let unrecorded = StoredState {
            rotated_at: None,
            ..managed()
        };
        assert_eq!(next_event(&unrecorded, &settings), None);
        let only_expiry = StoredState {
            rotated_at: None,
            ..with_previous()
        };
        assert_eq!(next_event(&only_expiry, &settings), Some(after(HOUR)));

        let stale_expiry = StoredState {
            has_previous: false,
            ..with_previous()
        };
        assert_eq!(next_event(&stale_expiry, &settings), Some(after(DAY)));

        let endless = Settings {
            interval: Duration::MAX,
            ..settings.clone()
        };
        assert_eq!(next_event(&managed(), &endless), None);
    }

    #[test]
    fn grace_ok_bounds() {
        let interval = Duration::from_secs(DAY);
        assert_eq!(grace_ok(interval, Duration::ZERO), Ok(()));
        assert_eq!(grace_ok(interval, Duration::from_secs(HOUR)), Ok(()));
        assert_eq!(grace_ok(interval, interval), Ok(()));

        let error = grace_ok(interval, Duration::from_secs(DAY + 1)).unwrap_err();
        assert_eq!(
            error,
            "grace period 86401s is longer than the rotation interval 86400s; \
             set it to at most 86400s"
        );
    }

    /// Parses a spec from YAML, with the interval and secretName filled in unless given.
    fn spec(yaml: &str) -> SecretRotationSpec {
        let mut value: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
        let object = value.as_object_mut().unwrap();
        object
            .entry("secretName")
            .or_insert_with(|| serde_json::json!("tokens"));
        object
            .entry("interval")
            .or_insert_with(|| serde_json::json!("90d"));
        serde_json::from_value(value).unwrap()
    }

    /// Returns the errors of `yaml` as (field, message) pairs.
    fn spec_errors(yaml: &str) -> Vec<(String, String)> {
        match validate_spec(&spec(yaml), Duration::from_secs(HOUR)) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .0
                .into_iter()
                .map(|error| (error.field, error.message))
                .collect(),
        }
    }

    #[test]
    fn validate_spec_accepts_examples() {
        let text = include_str!("../../manifests/examples/secrets.yaml");
        for document in serde_yaml::Deserializer::from_str(text) {
            let value = serde_json::Value::deserialize(document).unwrap();
            let rotation: crate::api::SecretRotation = serde_json::from_value(value).unwrap();
            let schedule = validate_spec(&rotation.spec, Duration::from_secs(HOUR))
                .unwrap_or_else(|errors| panic!("{errors}"));
            assert_eq!(schedule.interval, Duration::from_secs(90 * DAY));
            assert!(schedule.grace_period.is_some());
        }
    }

    #[test]
    fn validate_spec_schedule() {
        let schedule = validate_spec(
            &spec("{keys: [{name: a, generator: {randomBytes: {length: 8}}}], interval: 2h, previous: {gracePeriod: 30m}}"),
            Duration::from_secs(HOUR),
        )
        .unwrap();
        assert_eq!(schedule.interval, Duration::from_secs(2 * HOUR));
        assert_eq!(schedule.grace_period, Some(Duration::from_secs(1800)));

        let without_previous = validate_spec(
            &spec("{keys: [{name: a, generator: {randomBytes: {length: 8}}}], previous: {keep: false}}"),
            Duration::from_secs(HOUR),
        )
        .unwrap();
        assert_eq!(without_previous.grace_period, None);
    }

    /// Names that the Secret would hold twice, each with the field and words the error has.
    #[test]
    fn validate_spec_rejects_name_collisions() {
        let random = "{randomBytes: {length: 8}}";
        let pair = "{keyPair: {algorithm: ES256}}";
        let cases = [
            (
                "same name twice",
                format!(
                    "{{keys: [{{name: a, generator: {random}}}, {{name: a, generator: {random}}}]}}"
                ),
                "spec.keys[1].name",
                "key name \"a\" appears more than once in spec.keys, also at spec.keys[0]",
                "give each key its own name",
            ),
            (
                "key named after a public key",
                format!(
                    "{{keys: [{{name: s, generator: {pair}}}, {{name: s.pub, generator: {random}}}]}}"
                ),
                "spec.keys[1].name",
                "key name \"s.pub\" is also where key pair \"s\" (spec.keys[0]) stores its public key",
                "rename one of the two keys",
            ),
            (
                "previous value under the default suffix",
                format!(
                    "{{keys: [{{name: a, generator: {random}}}, {{name: a.previous, generator: {random}}}], previous: {{}}}}"
                ),
                "spec.previous.suffix",
                "the previous value of \"a\" would be kept under \"a.previous\", which is also the name of spec.keys[1]",
                "rename that key or set another previous.suffix",
            ),
            (
                "previous value under an explicit suffix",
                format!(
                    "{{keys: [{{name: a.old, generator: {random}}}, {{name: a, generator: {random}}}], previous: {{suffix: .old}}}}"
                ),
                "spec.previous.suffix",
                "the previous value of \"a\" would be kept under \"a.old\", which is also the name of spec.keys[0]",
                "rename that key or set another previous.suffix",
            ),
            (
                "previous value of a public key",
                format!(
                    "{{keys: [{{name: a, generator: {pair}}}, {{name: a.pub.previous, generator: {random}}}], previous: {{}}}}"
                ),
                "spec.previous.suffix",
                "the previous value of \"a.pub\" would be kept under \"a.pub.previous\"",
                "rename that key or set another previous.suffix",
            ),
            (
                "previous value over a public key",
                format!(
                    "{{keys: [{{name: a, generator: {random}}}, {{name: ab, generator: {pair}}}], previous: {{suffix: b.pub}}}}"
                ),
                "spec.previous.suffix",
                "kept under \"ab.pub\", which is also where key pair \"ab\" (spec.keys[1]) stores its public key",
                "rename that key or set another previous.suffix",
            ),
        ];
        for (label, yaml, field, problem, fix) in cases {
            let errors = spec_errors(&yaml);
            assert_eq!(errors.len(), 1, "{label}: {errors:?}");
            assert_eq!(errors[0].0, field, "{label}");
            assert!(errors[0].1.contains(problem), "{label}: {}", errors[0].1);
            assert!(errors[0].1.contains(fix), "{label}: {}", errors[0].1);
        }
    }

    #[test]
    fn validate_spec_allows_names_without_previous() {
        // Without previous (or with keep: false) no previous values are written, so a key
        // named like one cannot collide.
        for previous in ["", ", previous: {keep: false}"] {
            let yaml = format!(
                "{{keys: [{{name: a, generator: {{randomBytes: {{length: 8}}}}}}, {{name: a.previous, generator: {{randomBytes: {{length: 8}}}}}}]{previous}}}"
            );
            assert_eq!(spec_errors(&yaml), Vec::new(), "{previous}");
        }
    }

    #[test]
    fn validate_spec_rejects_bad_fields() {
        let random = "{randomBytes: {length: 8}}";
        let cases = [
            (
                "HS256 key of 16 bytes",
                "{keys: [{name: k, generator: {jwtHmac: {algorithm: HS256, length: 16}}}]}".to_string(),
                "spec.keys[0].generator.jwtHmac.length",
                "16 bytes is too short for HS256, which needs at least 32 bytes",
            ),
            (
                "HMAC key over the maximum",
                "{keys: [{name: k, generator: {jwtHmac: {algorithm: HS512, length: 5000}}}]}".to_string(),
                "spec.keys[0].generator.jwtHmac.length",
                "5000 is out of range; use 64 to 4096",
            ),
            (
                "no random bytes",
                "{keys: [{name: k, generator: {randomBytes: {length: 0}}}]}".to_string(),
                "spec.keys[0].generator.randomBytes.length",
                "0 is out of range; use 1 to 4096",
            ),
            (
                "short password",
                "{keys: [{name: k, generator: {password: {length: 4}}}]}".to_string(),
                "spec.keys[0].generator.password.length",
                "4 is out of range; use 8 to 1024",
            ),
            (
                "symbols from the alphanumeric alphabet",
                "{keys: [{name: k, generator: {password: {length: 12, require: [digit, symbol]}}}]}".to_string(),
                "spec.keys[0].generator.password.require[1]",
                "the alphanumeric alphabet has no symbol characters; remove symbol from require",
            ),
            (
                "no generator",
                "{keys: [{name: k, generator: {}}]}".to_string(),
                "spec.keys[0].generator",
                "0 generators are set; set exactly one of",
            ),
            (
                "two generators",
                "{keys: [{name: k, generator: {randomBytes: {length: 8}, keyPair: {algorithm: RS256}}}]}"
                    .to_string(),
                "spec.keys[0].generator",
                "2 generators are set; set exactly one of",
            ),
            (
                "key name starting with ..",
                format!("{{keys: [{{name: ..k, generator: {random}}}]}}"),
                "spec.keys[0].name",
                "a Secret rejects the key names . and .. and names starting with ..",
            ),
            (
                "key name with a slash",
                format!("{{keys: [{{name: a/b, generator: {random}}}]}}"),
                "spec.keys[0].name",
                "key name \"a/b\" is invalid: use 1 to 200 letters",
            ),
            (
                "no keys",
                "{keys: []}".to_string(),
                "spec.keys",
                "0 keys are listed; list 1 to 32",
            ),
            (
                "invalid Secret name",
                format!("{{secretName: Tokens, keys: [{{name: k, generator: {random}}}]}}"),
                "spec.secretName",
                "\"Tokens\" is not a valid Secret name",
            ),
            (
                "grace period longer than interval",
                format!("{{keys: [{{name: k, generator: {random}}}], interval: 1h, previous: {{gracePeriod: 2h}}}}"),
                "spec.previous.gracePeriod",
                "is longer than the rotation interval",
            ),
            (
                "interval below the minimum",
                format!("{{keys: [{{name: k, generator: {random}}}], interval: 30m}}"),
                "spec.interval",
                "30m is below the minimum of 1h",
            ),
            (
                "unparseable interval",
                format!("{{keys: [{{name: k, generator: {random}}}], interval: soon}}"),
                "spec.interval",
                "invalid duration \"soon\"",
            ),
            (
                "unparseable restart window",
                format!("{{keys: [{{name: k, generator: {random}}}], consumers: {{restartWindow: later}}}}"),
                "spec.consumers.restartWindow",
                "invalid duration \"later\"",
            ),
            (
                "invalid suffix",
                format!("{{keys: [{{name: k, generator: {random}}}], previous: {{suffix: ..}}}}"),
                "spec.previous.suffix",
                "suffix \"..\" is invalid",
            ),
            (
                "previous-value name longer than a Secret key",
                format!(
                    "{{keys: [{{name: {}, generator: {{keyPair: {{algorithm: ES256}}}}}}], previous: {{suffix: {}}}}}",
                    "k".repeat(200),
                    "s".repeat(50)
                ),
                "spec.previous.suffix",
                "would be kept under a name of 254 characters, more than the 253 of a Secret key",
            ),
        ];
        for (label, yaml, field, fragment) in cases {
            let errors = spec_errors(&yaml);
            let Some((_, message)) = errors.iter().find(|(found, _)| found == field) else {
                panic!("{label}: no error on {field}: {errors:?}");
            };
            assert!(message.contains(fragment), "{label}: {message}");
        }
    }

    #[test]
    fn validate_spec_rejects_zero_interval() {
        let yaml = "{keys: [{name: k, generator: {randomBytes: {length: 8}}}], interval: 0s}";
        let errors = validate_spec(&spec(yaml), Duration::ZERO).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].field, "spec.interval");
        assert!(errors.0[0].message.contains("0s is zero"), "{errors}");
    }

    fn data(entries: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        entries
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_vec()))
            .collect()
    }

    const HASH_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn keyed_hash_known_answer() {
        // Pins the encoding: changing it makes every stored hash mismatch, which the operator
        // reads as an external edit of every Secret.
        let hash = keyed_hash(
            HASH_KEY,
            &data(&[("password", b"s3cret"), ("token", b"")]),
            &keys(&["token", "password", "missing"]),
        );
        assert_eq!(hash, KNOWN_HASH);
    }

    /// Computed with Python's `hmac` module from the encoding that `keyed_hash` documents.
    const KNOWN_HASH: &str = "cc1949b8ba71b1c56393d7160f3a0cfdaebc7b1d7fcb39e8dd006ea6aefe033b";

    #[test]
    fn keyed_hash_format() {
        let hash = keyed_hash(HASH_KEY, &data(&[("a", b"1")]), &keys(&["a"]));
        assert_eq!(hash.len(), 64);
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
    }

    #[test]
    fn keyed_hash_key_list_canonical() {
        let values = data(&[("a", b"1"), ("b", b"2")]);
        let sorted = keyed_hash(HASH_KEY, &values, &keys(&["a", "b"]));
        assert_eq!(keyed_hash(HASH_KEY, &values, &keys(&["b", "a"])), sorted);
        assert_eq!(
            keyed_hash(HASH_KEY, &values, &keys(&["b", "a", "b"])),
            sorted
        );
    }

    #[test]
    fn keyed_hash_ignores_unlisted_keys() {
        let listed = keys(&["a"]);
        assert_eq!(
            keyed_hash(HASH_KEY, &data(&[("a", b"1")]), &listed),
            keyed_hash(HASH_KEY, &data(&[("a", b"1"), ("b", b"2")]), &listed)
        );
    }

    #[test]
    fn keyed_hash_detects_changes() {
        let listed = keys(&["a", "b"]);
        let base = keyed_hash(HASH_KEY, &data(&[("a", b"1"), ("b", b"2")]), &listed);

        let changed_value = keyed_hash(HASH_KEY, &data(&[("a", b"1"), ("b", b"3")]), &listed);
        assert_ne!(changed_value, base);
        let removed = keyed_hash(HASH_KEY, &data(&[("a", b"1")]), &listed);
        assert_ne!(removed, base);
        let other_key = keyed_hash(
            b"another hash key of some length",
            &data(&[("a", b"1"), ("b", b"2")]),
            &listed,
        );
        assert_ne!(other_key, base);
    }

    #[test]
    fn keyed_hash_skips_absent_keys() {
        // The spec gains the key `b`, which the Secret does not have yet: the hash over the new
        // key list equals the one recorded over the old list.
        let values = data(&[("a", b"1")]);
        assert_eq!(
            keyed_hash(HASH_KEY, &values, &keys(&["a", "b"])),
            keyed_hash(HASH_KEY, &values, &keys(&["a"]))
        );
        assert_eq!(
            keyed_hash(HASH_KEY, &data(&[]), &keys(&["a"])),
            keyed_hash(HASH_KEY, &data(&[]), &keys(&[]))
        );
    }

    #[test]
    fn keyed_hash_unambiguous() {
        assert_ne!(
            keyed_hash(HASH_KEY, &data(&[("a", b"")]), &keys(&["a"])),
            keyed_hash(HASH_KEY, &data(&[]), &keys(&["a"])),
            "an empty value differs from an absent key"
        );

        // Moving bytes between a name and its value, or between two values, changes the hash.
        assert_ne!(
            keyed_hash(HASH_KEY, &data(&[("ab", b"c")]), &keys(&["ab"])),
            keyed_hash(HASH_KEY, &data(&[("a", b"bc")]), &keys(&["a"]))
        );
        assert_ne!(
            keyed_hash(
                HASH_KEY,
                &data(&[("a", b"12"), ("b", b"3")]),
                &keys(&["a", "b"])
            ),
            keyed_hash(
                HASH_KEY,
                &data(&[("a", b"1"), ("b", b"23")]),
                &keys(&["a", "b"])
            )
        );
    }
}

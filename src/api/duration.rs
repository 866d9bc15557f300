//! The duration format shared by every field of both custom resources.
//!
//! It is Go's `time.ParseDuration` syntax (`90m`, `1h30m`, `2160h`) plus a `d` unit of 24 hours
//! (`90d`). Fields keep the text the user wrote, so that a value the schema pattern admits but
//! Rust cannot represent becomes a status condition instead of a failed deserialization.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration as StdDuration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Schema pattern of the duration format: one or more decimal numbers, each followed by a unit.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h|d))+$";

/// A duration such as `90m`, `2160h`, `1h30m` or `90d`, stored as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(String);

/// Errors from [`Duration::parse`] and [`parse_duration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "invalid duration {0:?}: expected numbers with units ns, us, ms, s, m, h or d, as in 90m, 2160h or 90d"
    )]
    Syntax(String),
    #[error("invalid duration {0:?}: the value is too large")]
    Overflow(String),
}

impl Duration {
    /// Wraps `text` without checking it; [`Duration::parse`] checks it.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text as written in the resource.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the text into a standard duration.
    pub fn parse(&self) -> Result<StdDuration, DurationError> {
        parse_duration(&self.0)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Duration {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // A CEL rule instead of a plain pattern, so that a rejection names the value and the
        // format rather than printing the regular expression.
        json_schema!({
            "type": "string",
            "maxLength": 64,
            "x-kubernetes-validations": [{
                "rule": format!("self.matches(r'{DURATION_PATTERN}')"),
                "messageExpression": "\"'\" + self + \"' is not a duration: use numbers with the units ns, us, ms, s, m, h or d, such as 90m, 12h or 90d\"",
            }],
        })
    }
}

/// Parses Go duration syntax extended with days (`d` = 24h).
///
/// A bare `0` is accepted as Go accepts it; signs are not, since no field takes a negative
/// duration. Fractions are allowed on every unit (`1.5h`) and are truncated to nanoseconds.
pub fn parse_duration(text: &str) -> Result<StdDuration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_string());
    let overflow = || DurationError::Overflow(text.to_string());

    if text == "0" {
        return Ok(StdDuration::ZERO);
    }
    if text.is_empty() {
        return Err(syntax());
    }

    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(syntax)?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);

        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(syntax()),
        };
        total = total
            .checked_add(scale_decimal(number, unit_nanos).ok_or_else(syntax)?)
            .ok_or_else(overflow)?;
        rest = next;
    }

    let seconds = u64::try_from(total / 1_000_000_000).map_err(|_| overflow())?;
    // Go durations are int64 nanoseconds; staying within that keeps both sides in agreement.
    if total > i64::MAX as u128 {
        return Err(overflow());
    }
    Ok(StdDuration::new(seconds, (total % 1_000_000_000) as u32))
}

/// Multiplies a decimal string such as `1.5` by `unit` nanoseconds, truncating the fraction.
fn scale_decimal(number: &str, unit: u128) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }

    let whole: u128 = whole.parse().ok()?;
    let mut value = whole.checked_mul(unit)?;
    let mut scale = unit;
    for digit in fraction.bytes().take(20) {
        scale /= 10;
        value = value.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(value)
}

/// Formats a duration in the shortest Go-style text, for messages and status.
pub fn format_duration(duration: StdDuration) -> String {
    let mut seconds = duration.as_secs();
    if seconds == 0 {
        return format!("{}ms", duration.as_millis());
    }

    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            text.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_go_and_day_forms() {
        let cases = [
            ("0", StdDuration::ZERO),
            ("90m", StdDuration::from_secs(90 * 60)),
            ("2160h", StdDuration::from_secs(2160 * 3600)),
            ("90d", StdDuration::from_secs(90 * 86_400)),
            ("1h30m", StdDuration::from_secs(5400)),
            ("1.5h", StdDuration::from_secs(5400)),
            ("1d12h", StdDuration::from_secs(36 * 3600)),
            ("300ms", StdDuration::from_millis(300)),
            ("2us", StdDuration::from_micros(2)),
            ("7ns", StdDuration::from_nanos(7)),
            ("10s", StdDuration::from_secs(10)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn parse_rejects_malformed_text() {
        for text in [
            "", "h", "10", "-5m", "5 m", "1.h", ".5h", "5y", "1h-", "1hh", "1.2.3s",
        ] {
            assert!(
                matches!(parse_duration(text), Err(DurationError::Syntax(_))),
                "{text:?} should be a syntax error"
            );
        }
    }

    #[test]
    fn parse_rejects_overflow() {
        let result = parse_duration("9999999999999999999999d");
        assert!(matches!(
            result,
            Err(DurationError::Overflow(_)) | Err(DurationError::Syntax(_))
        ));
        assert_eq!(
            parse_duration("110000d"),
            Err(DurationError::Overflow("110000d".into()))
        );
    }

    #[test]
    fn pattern_agrees_with_parser() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for text in [
            "90m", "2160h", "90d", "1h30m", "1.5h", "300ms", "10s", "1d12h",
        ] {
            assert!(pattern.is_match(text), "pattern rejects {text}");
            assert!(parse_duration(text).is_ok(), "parser rejects {text}");
        }
        for text in ["", "h", "10", "-5m", "5 m", ".5h", "5y", "1.h", "1hh"] {
            assert!(!pattern.is_match(text), "pattern accepts {text:?}");
            assert!(parse_duration(text).is_err(), "parser accepts {text:?}");
        }
    }

    #[test]
    fn format_uses_largest_units() {
        assert_eq!(format_duration(StdDuration::from_secs(90 * 86_400)), "90d");
        assert_eq!(format_duration(StdDuration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(StdDuration::from_millis(250)), "250ms");
    }
}

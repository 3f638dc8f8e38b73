//! Identifiers: their kinds, how values are normalised, and which values never identify anyone.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of identifier a value is. Kinds are compared by value, so a configured external
/// id type such as `crm_id` is a kind of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum IdKind {
    UserId,
    AnonymousId,
    Email,
    Phone,
    DeviceId,
    /// A configured external id type (`crm_id`, `loyalty_id`, ...), read from
    /// `context.externalIds[].type` or from a trait of that name.
    External(String),
}

impl IdKind {
    pub fn as_str(&self) -> &str {
        match self {
            IdKind::UserId => "user_id",
            IdKind::AnonymousId => "anonymous_id",
            IdKind::Email => "email",
            IdKind::Phone => "phone",
            IdKind::DeviceId => "device_id",
            IdKind::External(t) => t,
        }
    }

    /// The inverse of [`IdKind::as_str`]; any other name is an external id type.
    pub fn parse(name: &str) -> IdKind {
        match name {
            "user_id" | "userId" => IdKind::UserId,
            "anonymous_id" | "anonymousId" => IdKind::AnonymousId,
            "email" => IdKind::Email,
            "phone" => IdKind::Phone,
            "device_id" => IdKind::DeviceId,
            other => IdKind::External(other.to_string()),
        }
    }
}

impl From<IdKind> for String {
    fn from(k: IdKind) -> String {
        k.as_str().to_string()
    }
}

impl From<String> for IdKind {
    fn from(s: String) -> IdKind {
        IdKind::parse(&s)
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One normalised identifier, e.g. `email:ann@example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    pub kind: IdKind,
    pub value: String,
}

impl Identifier {
    pub fn new(kind: IdKind, value: impl Into<String>) -> Identifier {
        Identifier {
            kind,
            value: value.into(),
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// Values that clients send when they have no real id. Merging on them would fuse everyone
/// who sent them into one giant profile (PostHog's and Segment's lists, see SEGMENT.md).
const BLOCKED: &[&str] = &[
    "anonymous",
    "guest",
    "distinct_id",
    "distinctid",
    "id",
    "not_authenticated",
    "email",
    "undefined",
    "true",
    "false",
    "null",
    "nan",
    "none",
    "[object object]",
    "-1",
];

/// Whether a value must never identify anyone: empty, made only of `0` and `-` (Segment's
/// `^[0-]*$`), or one of the placeholder words, also when quoted.
pub fn is_blocked(value: &str) -> bool {
    let v = value.trim();
    let v = v
        .strip_prefix(['"', '\''])
        .and_then(|s| s.strip_suffix(['"', '\'']))
        .unwrap_or(v)
        .trim();
    if v.bytes().all(|b| b == b'0' || b == b'-') {
        return true;
    }
    BLOCKED.iter().any(|b| v.eq_ignore_ascii_case(b))
}

/// An e-mail address in the form used for matching: trimmed, lower case. `None` when it is not
/// an address at all (no `@` with text on both sides, or spaces inside).
pub fn normalize_email(raw: &str) -> Option<String> {
    let v = raw.trim();
    let (local, domain) = v.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || v.contains(char::is_whitespace) {
        return None;
    }
    Some(v.to_lowercase())
}

/// A phone number in E.164 form (`+` and 8 to 15 digits), or `None`.
///
/// The rule is deliberately simple, not a numbering-plan database: separators (spaces, `-`,
/// `.`, `/`, parentheses) are dropped; `+` or `00` starts an international number; any other
/// number is national and gets `country_code` in front, after dropping one leading trunk `0`
/// (`030 1234567` in Germany → `+49301234567`). Letters make it no phone number.
pub fn normalize_phone(raw: &str, country_code: &str) -> Option<String> {
    let v = raw.trim();
    let mut digits = String::with_capacity(v.len());
    let mut plus = false;
    for (i, c) in v.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => plus = true,
            ' ' | '-' | '.' | '/' | '(' | ')' => {}
            _ => return None,
        }
    }
    let international = if plus {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else {
        if country_code.is_empty() {
            return None;
        }
        let national = digits.strip_prefix('0').unwrap_or(&digits);
        format!("{country_code}{national}")
    };
    let ok = (8..=15).contains(&international.len()) && !international.starts_with('0');
    ok.then(|| format!("+{international}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_values() {
        for v in [
            "",
            " ",
            "0",
            "000",
            "-",
            "0-0",
            "-1",
            "null",
            "NULL",
            "\"null\"",
            "'undefined'",
            "Anonymous",
            "[object Object]",
            "NaN",
        ] {
            assert!(is_blocked(v), "{v:?} should be blocked");
        }
        for v in ["u-1", "10", "anon-1f", "ann@example.com"] {
            assert!(!is_blocked(v), "{v:?} should be allowed");
        }
    }

    #[test]
    fn emails_are_lower_case_and_checked() {
        assert_eq!(
            normalize_email("  Ann.Lee@Example.COM ").as_deref(),
            Some("ann.lee@example.com")
        );
        for bad in ["ann", "@example.com", "ann@", "a nn@example.com"] {
            assert_eq!(normalize_email(bad), None, "{bad}");
        }
    }

    #[test]
    fn phones_become_e164() {
        let check = |raw: &str, cc: &str, want: Option<&str>| {
            assert_eq!(normalize_phone(raw, cc).as_deref(), want, "{raw} ({cc})");
        };
        check("+1 (415) 555-0100", "1", Some("+14155550100"));
        check("415.555.0100", "1", Some("+14155550100"));
        check("0049 30 1234567", "1", Some("+49301234567"));
        check("030 1234567", "49", Some("+49301234567"));
        check("030 1234567", "", None);
        check("12", "1", None);
        check("call me", "1", None);
        check("+0 123 456 789", "1", None);
    }
}

//! Finding the customer, event, time, ... columns of a table (CSV header or Parquet schema).

use std::path::Path;

use crate::{CsvMapping, ImportError};

pub const CUSTOMER: &[&str] = &[
    "customer_id",
    "customer",
    "user_id",
    "userId",
    "case:concept:name",
    "case_id",
    "case",
    "caseid",
];
pub const EVENT: &[&str] = &[
    "event",
    "activity",
    "concept:name",
    "event_name",
    "name",
    "action",
];
pub const TIME: &[&str] = &[
    "timestamp",
    "time",
    "time:timestamp",
    "ts",
    "date",
    "datetime",
];
/// `case:channel` is how pm4py flattens a trace attribute `channel`; XES uses that as a
/// fallback too.
pub const CHANNEL: &[&str] = &["channel", "case:channel"];
pub const VALUE: &[&str] = &["value", "revenue", "amount"];
pub const MESSAGE_ID: &[&str] = &["message_id", "messageId", "event_id"];

/// Column indexes of the roles an importer knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    pub customer: usize,
    pub event: usize,
    pub time: usize,
    pub channel: Option<usize>,
    pub value: Option<usize>,
    pub message_id: Option<usize>,
}

impl Roles {
    /// True when column `i` holds one of the roles (and so is not copied into properties).
    /// The `case:channel` fallback is not counted: it stays a trait, as in XES.
    pub fn is_mapped(&self, i: usize, names: &[String]) -> bool {
        i == self.customer
            || i == self.event
            || i == self.time
            || self.value == Some(i)
            || self.message_id == Some(i)
            || (self.channel == Some(i) && !names[i].to_ascii_lowercase().starts_with("case:"))
    }
}

/// Finds a column: the mapped name exactly (then case-insensitively), else the first of
/// `defaults` present, compared case-insensitively.
pub fn find(names: &[String], mapped: Option<&str>, defaults: &[&str]) -> Lookup {
    if let Some(m) = mapped {
        let found = names
            .iter()
            .position(|n| n == m)
            .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(m)));
        return match found {
            Some(i) => Lookup::Found(i),
            None => Lookup::MappedMissing,
        };
    }
    for d in defaults {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(d)) {
            return Lookup::Found(i);
        }
    }
    Lookup::Absent
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Found(usize),
    /// The mapping names a column the table does not have.
    MappedMissing,
    /// No mapping, and none of the default names is present.
    Absent,
}

/// Resolves all roles, failing when the customer, event or time column is missing or a
/// mapped column does not exist. `customer_optional` lets Parquet files go without one when
/// they have an `anonymous_id` column instead.
pub fn resolve(
    file: &Path,
    names: &[String],
    mapping: &CsvMapping,
    customer_fallback: Option<usize>,
) -> Result<(Roles, Option<usize>), ImportError> {
    let found_list = || {
        if names.is_empty() {
            "none".to_string()
        } else {
            names
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let required = |role: &str,
                    mapped: &Option<String>,
                    defaults: &[&str]|
     -> Result<usize, ImportError> {
        match find(names, mapped.as_deref(), defaults) {
            Lookup::Found(i) => Ok(i),
            Lookup::MappedMissing => Err(ImportError::malformed(
                file,
                None,
                format!(
                    "the {role} column {:?} given in the mapping is missing; columns found: {}",
                    mapped.as_deref().unwrap_or_default(),
                    found_list()
                ),
            )),
            Lookup::Absent => Err(ImportError::malformed(
                file,
                None,
                format!(
                    "no {role} column: expected one named {} (or set one in the mapping); columns found: {}",
                    defaults.join(", "),
                    found_list()
                ),
            )),
        }
    };
    let optional = |role: &str,
                    mapped: &Option<String>,
                    defaults: &[&str]|
     -> Result<Option<usize>, ImportError> {
        match find(names, mapped.as_deref(), defaults) {
            Lookup::Found(i) => Ok(Some(i)),
            Lookup::Absent => Ok(None),
            Lookup::MappedMissing => Err(ImportError::malformed(
                file,
                None,
                format!(
                    "the {role} column {:?} given in the mapping is missing; columns found: {}",
                    mapped.as_deref().unwrap_or_default(),
                    found_list()
                ),
            )),
        }
    };
    let (customer, anonymous) = match (customer_fallback, &mapping.customer) {
        (Some(anon), None) => match find(names, None, CUSTOMER) {
            Lookup::Found(i) => (i, Some(anon)),
            _ => (anon, None),
        },
        _ => (
            required("customer", &mapping.customer, CUSTOMER)?,
            customer_fallback,
        ),
    };
    let roles = Roles {
        customer,
        event: required("event", &mapping.event, EVENT)?,
        time: required("time", &mapping.time, TIME)?,
        channel: optional("channel", &mapping.channel, CHANNEL)?,
        value: optional("value", &mapping.value, VALUE)?,
        message_id: optional("message id", &mapping.message_id, MESSAGE_ID)?,
    };
    Ok((roles, anonymous))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    #[test]
    fn finds_pm4py_and_plain_columns() {
        let n = names("case:concept:name,concept:name,time:timestamp,org:resource,case:channel");
        let (r, _) = resolve(Path::new("f.csv"), &n, &CsvMapping::default(), None).unwrap();
        assert_eq!((r.customer, r.event, r.time, r.channel), (0, 1, 2, Some(4)));
        assert!(!r.is_mapped(4, &n), "case:channel stays a trait");

        let n = names("Timestamp,UserId,Event,Channel,Revenue,case");
        let (r, _) = resolve(Path::new("f.csv"), &n, &CsvMapping::default(), None).unwrap();
        assert_eq!(
            r,
            Roles {
                customer: 1,
                event: 2,
                time: 0,
                channel: Some(3),
                value: Some(4),
                message_id: None
            }
        );
    }

    #[test]
    fn mapping_wins_and_missing_columns_are_named() {
        let n = names("who,what,when");
        let mapping = CsvMapping {
            customer: Some("who".into()),
            event: Some("what".into()),
            time: Some("WHEN".into()),
            ..Default::default()
        };
        let (r, _) = resolve(Path::new("f.csv"), &n, &mapping, None).unwrap();
        assert_eq!((r.customer, r.event, r.time), (0, 1, 2));

        let err = resolve(Path::new("f.csv"), &n, &CsvMapping::default(), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("f.csv: no customer column"), "{msg}");
        assert!(msg.contains("\"who\", \"what\", \"when\""), "{msg}");

        let mapping = CsvMapping {
            value: Some("price".into()),
            ..mapping
        };
        let msg = resolve(Path::new("f.csv"), &n, &mapping, None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("value column \"price\""), "{msg}");
    }
}

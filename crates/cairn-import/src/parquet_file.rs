//! Parquet: one event per row, read with parquet's arrow reader.
//!
//! Columns are found like CSV's (see [`crate::CsvMapping`]), plus the Segment-shaped columns
//! Cairn's own segments and the demo generator write: `type`, `anonymous_id`, `sent_at`,
//! `received_at`, `group_id`, `previous_id`, and `properties`/`traits`/`context` holding JSON
//! object text, which are taken as they are (other columns are merged into the properties).

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowDictionaryKeyType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use cairn_model::{Event, EventKind, Micros, format_micros, parse_timestamp};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::columns::{self, Roles};
use crate::ids::{IdMaker, Occurrences};
use crate::input::Progress;
use crate::json::ObjectWriter;
use crate::{ImportError, ImportOptions, Location, RecordError, RecordSource};

/// One cell of a row, as far as the importer cares.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell<'a> {
    Null,
    Str(&'a str),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    /// Timestamps and dates, in microseconds since the epoch.
    Time(Micros),
    /// A type the importer does not read (binary, nested, decimal, ...).
    Other,
}

fn cell(array: &dyn Array, row: usize) -> Cell<'_> {
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Cell::Str(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Cell::Str(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Cell::Str(array.as_string_view().value(row)),
        DataType::Dictionary(key, _) => match key.as_ref() {
            DataType::Int8 => dict_cell::<Int8Type>(array, row),
            DataType::Int16 => dict_cell::<Int16Type>(array, row),
            DataType::Int32 => dict_cell::<Int32Type>(array, row),
            DataType::Int64 => dict_cell::<Int64Type>(array, row),
            DataType::UInt8 => dict_cell::<UInt8Type>(array, row),
            DataType::UInt16 => dict_cell::<UInt16Type>(array, row),
            DataType::UInt32 => dict_cell::<UInt32Type>(array, row),
            DataType::UInt64 => dict_cell::<UInt64Type>(array, row),
            _ => Cell::Other,
        },
        DataType::Int8 => Cell::Int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => Cell::Int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => Cell::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Cell::UInt(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => Cell::UInt(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => Cell::UInt(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => Cell::UInt(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => Cell::Float(array.as_primitive::<Float32Type>().value(row).into()),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::Timestamp(unit, _) => {
            use arrow_array::types::{
                TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
                TimestampSecondType,
            };
            Cell::Time(match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => array
                    .as_primitive::<TimestampNanosecondType>()
                    .value(row)
                    .div_euclid(1_000),
            })
        }
        DataType::Date32 => {
            let days = array
                .as_primitive::<arrow_array::types::Date32Type>()
                .value(row);
            Cell::Time(i64::from(days) * 86_400_000_000)
        }
        DataType::Date64 => {
            let ms = array
                .as_primitive::<arrow_array::types::Date64Type>()
                .value(row);
            Cell::Time(ms.saturating_mul(1_000))
        }
        _ => Cell::Other,
    }
}

fn dict_cell<K: ArrowDictionaryKeyType>(array: &dyn Array, row: usize) -> Cell<'_> {
    let dict = array.as_dictionary::<K>();
    match dict.key(row) {
        Some(k) => cell(dict.values().as_ref(), k),
        None => Cell::Null,
    }
}

/// Whether the importer can read a column of this type at all.
fn readable(dt: &DataType) -> bool {
    match dt {
        DataType::Dictionary(_, values) => readable(values),
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Boolean
        | DataType::Timestamp(_, _)
        | DataType::Date32
        | DataType::Date64 => true,
        _ => false,
    }
}

/// The epoch heuristic of [`parse_timestamp`], shared with it.
fn epoch_micros(v: f64) -> Option<Micros> {
    cairn_model::epoch_to_micros(v)
}

fn epoch_micros_int(v: i128) -> Micros {
    let a = v.abs();
    let micros = if a < 100_000_000_000 {
        v * 1_000_000
    } else if a < 100_000_000_000_000 {
        v * 1_000
    } else if a < 100_000_000_000_000_000 {
        v
    } else {
        v.div_euclid(1_000)
    };
    micros.clamp(i64::MIN.into(), i64::MAX.into()) as Micros
}

/// A time cell: timestamps and dates as they are, numbers as epochs, strings parsed.
fn time_of(c: Cell<'_>) -> Result<Option<Micros>, String> {
    match c {
        Cell::Null => Ok(None),
        Cell::Time(t) => Ok(Some(t)),
        Cell::Int(i) => Ok(Some(epoch_micros_int(i.into()))),
        Cell::UInt(u) => Ok(Some(epoch_micros_int(u.into()))),
        Cell::Float(f) => epoch_micros(f)
            .map(Some)
            .ok_or_else(|| format!("expected a time, got {f}")),
        Cell::Str(s) if s.trim().is_empty() => Ok(None),
        Cell::Str(s) => parse_timestamp(s).map(Some).map_err(|e| e.to_string()),
        Cell::Bool(_) | Cell::Other => {
            Err("expected a timestamp, a date, an epoch number or a string".into())
        }
    }
}

/// An id cell: strings (trimmed, empty = none) and integers.
fn id_of(c: Cell<'_>) -> Option<String> {
    match c {
        Cell::Str(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Cell::Int(i) => Some(i.to_string()),
        Cell::UInt(u) => Some(u.to_string()),
        _ => None,
    }
}

/// Column indexes of everything beyond the CSV roles.
#[derive(Debug, Default)]
struct Extra {
    anonymous: Option<usize>,
    kind: Option<usize>,
    sent_at: Option<usize>,
    received_at: Option<usize>,
    group_id: Option<usize>,
    previous_id: Option<usize>,
    properties: Option<usize>,
    traits: Option<usize>,
    context: Option<usize>,
}

pub struct ParquetSource {
    file: PathBuf,
    builder: Option<ParquetRecordBatchReaderBuilder<File>>,
    reader: Option<ParquetRecordBatchReader>,
    batch: Option<RecordBatch>,
    row: usize,
    total_rows: u64,
    rows_read: u64,
    progress: Progress,
    names: Vec<String>,
    /// `roles.customer` is `None`-like when only an anonymous id column exists.
    roles: Roles,
    has_customer: bool,
    extra: Extra,
    /// Other readable columns, copied into properties, with keys as JSON text.
    others: Vec<(usize, String)>,
    default_channel: String,
    occurrences: Occurrences,
    ids: IdMaker,
    props_buf: ObjectWriter,
    done: bool,
}

impl ParquetSource {
    pub fn open(path: &Path, options: &ImportOptions) -> Result<Self, ImportError> {
        let file = File::open(path).map_err(|e| ImportError::io(path, e))?;
        let total = file.metadata().map_err(|e| ImportError::io(path, e))?.len();
        if total == 0 {
            return Err(ImportError::EmptyFile {
                file: path.to_path_buf(),
            });
        }
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
            ImportError::malformed(path, None, format!("not a readable Parquet file: {e}"))
        })?;
        let total_rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let schema = builder.schema().clone();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let find = |candidates: &[&str]| match columns::find(&names, None, candidates) {
            columns::Lookup::Found(i) => Some(i),
            _ => None,
        };
        let anonymous_col = find(&["anonymous_id", "anonymousId"]);
        let (roles, anonymous) = columns::resolve(path, &names, &options.mapping, anonymous_col)?;
        // Without a customer column, `resolve` files the anonymous id column as the customer.
        let (has_customer, anonymous) = match anonymous {
            None if anonymous_col.is_some() && anonymous_col == Some(roles.customer) => {
                (false, anonymous_col)
            }
            other => (true, other),
        };
        let json_col = |name: &str| {
            find(&[name]).filter(|&i| {
                matches!(
                    schema.field(i).data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
            })
        };
        let extra = Extra {
            anonymous,
            kind: find(&["type"]),
            sent_at: find(&["sent_at", "sentAt"]),
            received_at: find(&["received_at", "receivedAt"]),
            group_id: find(&["group_id", "groupId"]),
            previous_id: find(&["previous_id", "previousId"]),
            properties: json_col("properties"),
            traits: json_col("traits"),
            context: json_col("context"),
        };
        for (role, i) in [
            ("customer", Some(roles.customer)),
            ("event", Some(roles.event)),
            ("time", Some(roles.time)),
            ("channel", roles.channel),
            ("value", roles.value),
            ("message id", roles.message_id),
        ] {
            if let Some(i) = i
                && !readable(schema.field(i).data_type())
            {
                return Err(ImportError::malformed(
                    path,
                    None,
                    format!(
                        "the {role} column {:?} has type {}, which the importer cannot read",
                        names[i],
                        schema.field(i).data_type()
                    ),
                ));
            }
        }
        let taken = [
            extra.anonymous,
            extra.kind,
            extra.sent_at,
            extra.received_at,
            extra.group_id,
            extra.previous_id,
            extra.properties,
            extra.traits,
            extra.context,
            Some(roles.customer),
            roles.channel,
        ];
        let others = (0..names.len())
            .filter(|&i| {
                !roles.is_mapped(i, &names)
                    && !taken.contains(&Some(i))
                    && readable(schema.field(i).data_type())
            })
            .map(|i| (i, ObjectWriter::key_fragment_of(&names[i])))
            .collect();
        Ok(ParquetSource {
            file: path.to_path_buf(),
            builder: Some(builder),
            reader: None,
            batch: None,
            row: 0,
            total_rows,
            rows_read: 0,
            progress: Progress::new(total),
            names,
            roles,
            has_customer,
            extra,
            others,
            default_channel: crate::default_channel(options),
            occurrences: Occurrences::default(),
            ids: IdMaker::default(),
            props_buf: ObjectWriter::default(),
            done: false,
        })
    }

    fn parquet_error(&self, e: impl std::fmt::Display) -> ImportError {
        ImportError::malformed(
            &self.file,
            None,
            format!("cannot read row {} on: {e}", self.rows_read + 1),
        )
    }

    /// Makes sure a batch with unread rows is loaded; false at the end of the file.
    fn load(&mut self, max: usize) -> Result<bool, ImportError> {
        if let Some(batch) = &self.batch
            && self.row < batch.num_rows()
        {
            return Ok(true);
        }
        if self.reader.is_none() {
            let Some(builder) = self.builder.take() else {
                return Ok(false);
            };
            let reader = builder
                .with_batch_size(max)
                .build()
                .map_err(|e| self.parquet_error(e))?;
            self.reader = Some(reader);
        }
        loop {
            let next = self.reader.as_mut().and_then(Iterator::next);
            match next {
                None => return Ok(false),
                Some(Err(e)) => return Err(self.parquet_error(e)),
                Some(Ok(batch)) if batch.num_rows() == 0 => {}
                Some(Ok(batch)) => {
                    self.batch = Some(batch);
                    self.row = 0;
                    return Ok(true);
                }
            }
        }
    }

    fn convert(&mut self, batch: &RecordBatch, row: usize) -> Result<Event, RecordError> {
        let record = self.rows_read;
        let col = |i: usize| cell(batch.column(i).as_ref(), row);
        let fail = |field: &str, reason: String| RecordError {
            file: self.file.clone(),
            location: Location { line: None, record },
            field: field.to_string(),
            reason,
            raw: Some(row_json(batch, row, &self.names)),
        };
        let roles = &self.roles;
        let extra = &self.extra;
        let user_id = if self.has_customer {
            id_of(col(roles.customer))
        } else {
            None
        };
        let anonymous_id = extra.anonymous.and_then(|i| id_of(col(i)));
        if user_id.is_none() && anonymous_id.is_none() {
            return Err(fail(
                &self.names[roles.customer],
                "empty; every row needs a customer id".into(),
            ));
        }
        let kind = match extra.kind.map(col) {
            None | Some(Cell::Null) => EventKind::Track,
            Some(Cell::Str(s)) if s.trim().is_empty() => EventKind::Track,
            Some(Cell::Str(s)) => match EventKind::parse(s.trim()) {
                Some(k) => k,
                None => {
                    return Err(fail(
                        &self.names[extra.kind.unwrap_or_default()],
                        format!(
                            "unknown type {s:?}; expected one of track, identify, page, screen, group, alias"
                        ),
                    ));
                }
            },
            Some(_) => {
                return Err(fail(
                    &self.names[extra.kind.unwrap_or_default()],
                    "expected a string".into(),
                ));
            }
        };
        let event = match col(roles.event) {
            Cell::Str(s) if !s.trim().is_empty() => s.trim().to_string(),
            Cell::Null | Cell::Str(_) if kind != EventKind::Track => kind.as_str().to_string(),
            Cell::Null | Cell::Str(_) => {
                return Err(fail(
                    &self.names[roles.event],
                    "empty; every row needs an event name".into(),
                ));
            }
            other => match id_of(other) {
                Some(s) => s,
                None => {
                    return Err(fail(&self.names[roles.event], "expected a string".into()));
                }
            },
        };
        let timestamp = match time_of(col(roles.time)) {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Err(fail(
                    &self.names[roles.time],
                    "empty; every row needs a time".into(),
                ));
            }
            Err(reason) => return Err(fail(&self.names[roles.time], reason)),
        };
        let optional_time = |i: Option<usize>| -> Result<Option<Micros>, RecordError> {
            match i {
                None => Ok(None),
                Some(i) => time_of(col(i)).map_err(|reason| fail(&self.names[i], reason)),
            }
        };
        let sent_at = optional_time(extra.sent_at)?;
        let received_at = optional_time(extra.received_at)?;
        let value = match roles.value.map(|i| (i, col(i))) {
            None | Some((_, Cell::Null)) => None,
            Some((_, Cell::Float(f))) if f.is_finite() => Some(f),
            Some((_, Cell::Int(i))) => Some(i as f64),
            Some((_, Cell::UInt(u))) => Some(u as f64),
            Some((_, Cell::Str(s))) if s.trim().is_empty() => None,
            Some((i, Cell::Str(s))) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Some(f),
                _ => {
                    return Err(fail(
                        &self.names[i],
                        format!("expected a number, got {s:?}"),
                    ));
                }
            },
            Some((i, _)) => return Err(fail(&self.names[i], "expected a number".into())),
        };
        let channel = match roles.channel.map(col) {
            Some(Cell::Str(s)) if !s.trim().is_empty() => crate::channel_of(s),
            _ => self.default_channel.clone(),
        };
        let json = |i: Option<usize>| -> Result<Option<&str>, RecordError> {
            let Some(i) = i else { return Ok(None) };
            match col(i) {
                Cell::Str(s) if s.trim().is_empty() => Ok(None),
                Cell::Str(s) => {
                    let t = s.trim();
                    if !t.starts_with('{')
                        || serde_json::from_str::<serde::de::IgnoredAny>(t).is_err()
                    {
                        return Err(fail(&self.names[i], "expected JSON object text".into()));
                    }
                    Ok((t != "{}").then_some(t))
                }
                _ => Ok(None),
            }
        };
        let properties = json(extra.properties)?;
        let traits = json(extra.traits)?.map(str::to_string);
        let context = json(extra.context)?.map(str::to_string);
        let group_id = extra.group_id.and_then(|i| id_of(col(i)));
        let previous_id = extra.previous_id.and_then(|i| id_of(col(i)));

        self.props_buf.clear();
        for (i, key) in &self.others {
            let c = cell(batch.column(*i).as_ref(), row);
            if matches!(c, Cell::Null | Cell::Other) || c == Cell::Str("") {
                continue;
            }
            self.props_buf.key_fragment(key);
            match c {
                Cell::Str(s) => self.props_buf.str_value(s),
                Cell::Int(v) => self.props_buf.i64_value(v),
                Cell::UInt(v) => self.props_buf.u64_value(v),
                Cell::Float(v) => self.props_buf.f64_value(v),
                Cell::Bool(v) => self.props_buf.bool_value(v),
                Cell::Time(t) => self.props_buf.str_value(&format_micros(t)),
                Cell::Null | Cell::Other => {}
            }
        }
        let properties = merge_objects(properties, self.props_buf.finish());

        // An empty id is filled in per chunk by `Occurrences::assign_ids`.
        let message_id = roles
            .message_id
            .and_then(|i| id_of(col(i)))
            .unwrap_or_default();
        Ok(Event {
            message_id,
            kind,
            event,
            user_id,
            anonymous_id,
            timestamp,
            sent_at,
            received_at,
            channel,
            value,
            group_id,
            previous_id,
            properties,
            traits,
            context,
        })
    }
}

/// `{"a":1}` and `{"b":2}` as `{"a":1,"b":2}`; both are object text, the first trimmed.
fn merge_objects(first: Option<&str>, second: Option<String>) -> Option<String> {
    match (first, second) {
        (None, second) => second,
        (Some(first), None) => Some(first.to_string()),
        (Some(first), Some(second)) => {
            let head = first.strip_suffix('}').unwrap_or(first).trim_end();
            let mut out = String::with_capacity(first.len() + second.len());
            out.push_str(head);
            out.push(',');
            out.push_str(&second[1..]);
            Some(out)
        }
    }
}

/// A row as a JSON object, for the quarantine file.
fn row_json(batch: &RecordBatch, row: usize, names: &[String]) -> String {
    let mut w = ObjectWriter::default();
    for (i, name) in names.iter().enumerate() {
        let c = cell(batch.column(i).as_ref(), row);
        w.key(name);
        match c {
            Cell::Str(s) => w.str_value(s),
            Cell::Int(v) => w.i64_value(v),
            Cell::UInt(v) => w.u64_value(v),
            Cell::Float(v) => w.f64_value(v),
            Cell::Bool(v) => w.bool_value(v),
            Cell::Time(t) => w.str_value(&format_micros(t)),
            Cell::Null | Cell::Other => w.raw_value("null"),
        }
    }
    w.finish().unwrap_or_else(|| "{}".to_string())
}

impl RecordSource for ParquetSource {
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> Result<Option<Vec<Result<Event, RecordError>>>, ImportError> {
        if self.done {
            return Ok(None);
        }
        let max = max.max(1);
        let mut out = Vec::with_capacity(max.min(64 * 1024));
        while out.len() < max {
            if !self.load(max)? {
                self.done = true;
                break;
            }
            // Invariant: `load` returned true, so a batch is loaded.
            let Some(batch) = self.batch.take() else {
                break;
            };
            let end = batch.num_rows().min(self.row + (max - out.len()));
            for row in self.row..end {
                self.rows_read += 1;
                out.push(self.convert(&batch, row));
            }
            self.row = end;
            self.batch = Some(batch);
        }
        if self.total_rows > 0 {
            let (_, total) = self.progress.get();
            let share = self.rows_read as f64 / self.total_rows as f64;
            self.progress.set((share * total as f64) as u64);
        }
        if out.is_empty() {
            return Ok(None);
        }
        self.occurrences
            .assign_ids("parquet", &mut out, &mut self.ids);
        Ok(Some(out))
    }

    fn progress(&self) -> (u64, u64) {
        self.progress.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_follow_parse_timestamp() {
        for v in [
            1_700_000_000i64,
            1_700_000_000_000,
            1_700_000_000_000_000,
            1_700_000_000_000_000_000,
        ] {
            let want = parse_timestamp(&v.to_string()).unwrap();
            assert_eq!(epoch_micros_int(v.into()), want, "{v}");
            assert_eq!(epoch_micros(v as f64), Some(want), "{v}");
        }
    }

    #[test]
    fn merges_object_text() {
        assert_eq!(merge_objects(None, None), None);
        assert_eq!(
            merge_objects(Some(r#"{"a":1}"#), None).as_deref(),
            Some(r#"{"a":1}"#)
        );
        assert_eq!(
            merge_objects(Some(r#"{"a":1}"#), Some(r#"{"b":2}"#.into())).as_deref(),
            Some(r#"{"a":1,"b":2}"#)
        );
    }
}

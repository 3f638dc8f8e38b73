//! Parquet segments: the durable, columnar form of the event log.
//!
//! One row per event, sorted by (customer key, timestamp, seq). Every field of the event is
//! kept, so DuckDB, Spark, ClickHouse or pandas can read a segment directly and nothing
//! received is lost. String columns use Parquet dictionary encoding (event names and channels
//! compress to a few bits per row); JSON fields are stored as text.

use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use cairn_model::{Event, EventKind};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::{IoContext, Result, StoreError};

/// An event as stored: with its customer key and its position in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub key: u32,
    pub seq: u64,
    pub event: Event,
}

const ROW_GROUP: usize = 1 << 20;
const WRITE_BATCH: usize = 64 * 1024;

pub fn schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("customer", DataType::Utf8, false),
        Field::new("customer_key", DataType::UInt32, false),
        Field::new("timestamp", ts(), false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("message_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("anonymous_id", DataType::Utf8, true),
        Field::new("sent_at", ts(), true),
        Field::new("received_at", ts(), true),
        Field::new("group_id", DataType::Utf8, true),
        Field::new("previous_id", DataType::Utf8, true),
        Field::new("properties", DataType::Utf8, true),
        Field::new("traits", DataType::Utf8, true),
        Field::new("context", DataType::Utf8, true),
    ]))
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP))
        // Unique per row: a dictionary would only be built to be thrown away.
        .set_column_dictionary_enabled(ColumnPath::from("message_id"), false)
        .set_column_dictionary_enabled(ColumnPath::from("seq"), false)
        .set_column_dictionary_enabled(ColumnPath::from("timestamp"), false)
        .build()
}

/// Writes sorted events to a new Parquet file and fsyncs it; returns its size.
pub fn write(path: &Path, rows: &[StoredEvent]) -> Result<u64> {
    let file = File::create(path).at(path)?;
    let pq = |source| StoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let mut writer = ArrowWriter::try_new(file, schema(), Some(writer_properties())).map_err(pq)?;
    for chunk in rows.chunks(WRITE_BATCH) {
        writer.write(&to_batch(chunk)?).map_err(pq)?;
    }
    let file = writer.into_inner().map_err(pq)?;
    file.sync_all().at(path)?;
    Ok(file.metadata().at(path)?.len())
}

fn to_batch(rows: &[StoredEvent]) -> Result<RecordBatch> {
    let n = rows.len();
    let strings = |f: &dyn Fn(&Event) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 8);
        for r in rows {
            b.append_option(f(&r.event));
        }
        Arc::new(b.finish())
    };
    let times = |f: &dyn Fn(&Event) -> Option<i64>| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::with_capacity(n);
        for r in rows {
            b.append_option(f(&r.event));
        }
        Arc::new(b.finish().with_timezone("UTC"))
    };
    let mut value = Float64Builder::with_capacity(n);
    for r in rows {
        value.append_option(r.event.value);
    }
    let columns: Vec<ArrayRef> = vec![
        strings(&|e| Some(e.customer_id())),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.key))),
        times(&|e| Some(e.timestamp)),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.seq))),
        strings(&|e| Some(e.kind.as_str())),
        strings(&|e| Some(&e.event)),
        strings(&|e| Some(&e.channel)),
        Arc::new(value.finish()),
        strings(&|e| Some(&e.message_id)),
        strings(&|e| e.user_id.as_deref()),
        strings(&|e| e.anonymous_id.as_deref()),
        times(&|e| e.sent_at),
        times(&|e| e.received_at),
        strings(&|e| e.group_id.as_deref()),
        strings(&|e| e.previous_id.as_deref()),
        strings(&|e| e.properties.as_deref()),
        strings(&|e| e.traits.as_deref()),
        strings(&|e| e.context.as_deref()),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// Reads events back, all of them or only the given row ranges (sorted, disjoint).
pub fn read(path: &Path, ranges: Option<&[Range<usize>]>) -> Result<Vec<StoredEvent>> {
    let pq = |source| StoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).at(path)?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(pq)?
        .with_batch_size(WRITE_BATCH);
    if let Some(ranges) = ranges {
        let total = builder.metadata().file_metadata().num_rows() as usize;
        let mut selectors = Vec::with_capacity(ranges.len() * 2 + 1);
        let mut at = 0;
        for r in ranges {
            if r.start > at {
                selectors.push(RowSelector::skip(r.start - at));
            }
            selectors.push(RowSelector::select(r.end - r.start));
            at = r.end;
        }
        if total > at {
            selectors.push(RowSelector::skip(total - at));
        }
        builder = builder.with_row_selection(RowSelection::from(selectors));
    }
    let reader = builder.build().map_err(pq)?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        from_batch(&batch, &mut out).map_err(|reason| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })?;
    }
    Ok(out)
}

fn from_batch(batch: &RecordBatch, out: &mut Vec<StoredEvent>) -> Result<(), String> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("column {name:?} missing"))
    };
    let string = |name: &str| -> Result<&arrow_array::StringArray, String> {
        col(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("column {name:?} is not text"))
    };
    let time =
        |name: &str| -> Result<&arrow_array::PrimitiveArray<TimestampMicrosecondType>, String> {
            col(name)?
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| format!("column {name:?} is not a µs timestamp"))
        };
    let opt =
        |a: &arrow_array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    let opt_time = |a: &arrow_array::PrimitiveArray<TimestampMicrosecondType>, i: usize| {
        a.is_valid(i).then(|| a.value(i))
    };
    let keys = col("customer_key")?
        .as_primitive_opt::<UInt32Type>()
        .ok_or("customer_key is not u32")?;
    let seqs = col("seq")?
        .as_primitive_opt::<UInt64Type>()
        .ok_or("seq is not u64")?;
    let values = col("value")?
        .as_primitive_opt::<Float64Type>()
        .ok_or("value is not f64")?;
    let (timestamp, sent_at, received_at) =
        (time("timestamp")?, time("sent_at")?, time("received_at")?);
    let (kind, event, channel, message_id) = (
        string("type")?,
        string("event")?,
        string("channel")?,
        string("message_id")?,
    );
    let (user_id, anonymous_id, group_id, previous_id) = (
        string("user_id")?,
        string("anonymous_id")?,
        string("group_id")?,
        string("previous_id")?,
    );
    let (properties, traits, context) =
        (string("properties")?, string("traits")?, string("context")?);
    out.reserve(batch.num_rows());
    for i in 0..batch.num_rows() {
        let kind = EventKind::parse(kind.value(i))
            .ok_or_else(|| format!("row {i}: unknown type {:?}", kind.value(i)))?;
        out.push(StoredEvent {
            key: keys.value(i),
            seq: seqs.value(i),
            event: Event {
                message_id: message_id.value(i).to_string(),
                kind,
                event: event.value(i).to_string(),
                user_id: opt(user_id, i),
                anonymous_id: opt(anonymous_id, i),
                timestamp: timestamp.value(i),
                sent_at: opt_time(sent_at, i),
                received_at: opt_time(received_at, i),
                channel: channel.value(i).to_string(),
                value: values.is_valid(i).then(|| values.value(i)),
                group_id: opt(group_id, i),
                previous_id: opt(previous_id, i),
                properties: opt(properties, i),
                traits: opt(traits, i),
                context: opt(context, i),
            },
        });
    }
    Ok(())
}

/// Reads only the `message_id` column: what deduplication needs from existing segments.
pub fn read_message_ids(path: &Path, mut each: impl FnMut(&str)) -> Result<()> {
    let pq = |source| StoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).at(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
    let idx = builder
        .schema()
        .index_of("message_id")
        .map_err(|_| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: "no message_id column".into(),
        })?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [idx]);
    for batch in builder
        .with_projection(mask)
        .with_batch_size(WRITE_BATCH)
        .build()
        .map_err(pq)?
    {
        let batch = batch?;
        let ids = batch
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: "message_id is not text".into(),
            })?;
        for id in ids.iter().flatten() {
            each(id);
        }
    }
    Ok(())
}

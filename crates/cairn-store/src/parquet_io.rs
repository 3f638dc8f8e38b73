//! Parquet segments: the durable, columnar form of the event log.
//!
//! One row per event, sorted by (customer key, timestamp, seq). The customer is
//! `coalesce(user_id, anonymous_id)`; `customer_key` is its dense key in `customers.dict`. Every field of the event is
//! kept, so DuckDB, Spark, ClickHouse or pandas can read a segment directly and nothing
//! received is lost. String columns use Parquet dictionary encoding (event names and channels
//! compress to a few bits per row); JSON fields are stored as text.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Float64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType, UInt32Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use cairn_model::{Event, EventKind};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
    compute_leaves,
};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use crate::error::{IoContext, Result, StoreError};
use crate::hash::message_digest;

/// An event as stored: with its customer key and its position in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub key: u32,
    pub seq: u64,
    pub event: Event,
}

const ROW_GROUP: usize = 1 << 20;
/// Bytes of a data page, before compression: a profile lookup decodes, in every column, the
/// pages that hold the customer's rows, so they are kept small (the writer's default of 1 MB
/// made a lookup decompress megabytes for a customer's few dozen events). Full reads hardly
/// notice: a page header per 64 KB.
const PAGE_BYTES: usize = 64 << 10;
/// Columns stored without general compression: their encodings (dictionary, delta) already
/// take them to a few bits per row, or they are random (message UUIDs). Each compressed column
/// that a reader opens makes a zstd context, and making one asks the CPU for its features (an
/// exit to the hypervisor on a VM: microseconds each, a fifth of a profile lookup's time).
const UNCOMPRESSED: [&str; 7] = [
    "customer_key",
    "seq",
    "type",
    "event",
    "channel",
    "value",
    "message_uuid",
];
/// Rows gathered into Arrow arrays (and read back) per batch. Small: the gathered copy is
/// memory touched on top of the columns it comes from, and on this VM a fresh page costs more
/// than the per-batch overhead (8 K instead of 64 K rows: a small XES import's page faults
/// 12.5 k → 10.2 k, see BENCHMARKS.md).
const WRITE_BATCH: usize = 8 * 1024;

/// The columns (by index in [`schema`]) that a segment writer's second thread encodes: the
/// costly ones (times, ids and the JSON texts), as the first thread also gathers the rows.
const ENCODED_ALONGSIDE: [usize; 6] = [1, 7, 8, 10, 15, 17];

/// Row groups smaller than this are encoded on one thread.
const ENCODE_ALONE_BELOW: usize = 100_000;

pub fn schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("customer_key", DataType::UInt32, false),
        Field::new("timestamp", ts(), false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        // A canonical lowercase UUID (what Segment's SDKs send) is kept as 16 bytes in
        // `message_uuid`; any other id as text in `message_id`. Exactly one of them is set.
        Field::new("message_id", DataType::Utf8, true),
        Field::new("message_uuid", DataType::FixedSizeBinary(16), true)
            .with_extension_type(arrow_schema::extension::Uuid),
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
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_data_page_size_limit(PAGE_BYTES)
        // Unique per row: a dictionary would only be built to be thrown away.
        .set_column_dictionary_enabled(ColumnPath::from("message_id"), false)
        .set_column_dictionary_enabled(ColumnPath::from("message_uuid"), false)
        // A segment holds ~10^5 distinct customer ids: the dictionary would outgrow its page
        // and fall back to plain anyway, after hashing every value. Sorted runs of the same id
        // compress to almost nothing with plain encoding and zstd.
        .set_column_dictionary_enabled(ColumnPath::from("user_id"), false)
        .set_column_dictionary_enabled(ColumnPath::from("anonymous_id"), false)
        // Keys and sequence numbers rise in runs: deltas pack into a few bits (keys: 1 byte an
        // event down to 0.1 with zstd). Times jump between customers, which spoils delta
        // packing; splitting their bytes into streams lets zstd find the slow-moving high
        // bytes instead (5.6 → 4.9 bytes an event, measured on generated journeys).
        .set_column_dictionary_enabled(ColumnPath::from("customer_key"), false)
        .set_column_encoding(
            ColumnPath::from("customer_key"),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_column_dictionary_enabled(ColumnPath::from("seq"), false)
        .set_column_encoding(ColumnPath::from("seq"), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from("timestamp"), false)
        .set_column_encoding(ColumnPath::from("timestamp"), Encoding::BYTE_STREAM_SPLIT);
    for column in UNCOMPRESSED {
        builder =
            builder.set_column_compression(ColumnPath::from(column), Compression::UNCOMPRESSED);
    }
    builder.build()
}

/// One text column of [`EventColumns`]: every value's bytes back to back. 64-bit offsets,
/// so a chunk or a compaction of any size fits (Arrow's own string builders stop at 2 GiB).
///
/// Rows before the first value are only counted: columns such as `traits`, `context` or
/// `group_id` are missing from whole imports, and an offset per row for nothing was a fifth
/// of a segment's memory while it fills.
#[derive(Debug, Default)]
struct TextColumn {
    /// Rows before `ends[0]`, all missing.
    missing_prefix: usize,
    bytes: Vec<u8>,
    /// Where each value after the missing prefix ends in `bytes`, with [`NULL`] set for a
    /// missing value.
    ends: Vec<u64>,
}

const NULL: u64 = 1 << 63;

impl TextColumn {
    fn clear(&mut self) {
        self.missing_prefix = 0;
        self.bytes.clear();
        self.ends.clear();
    }

    fn push(&mut self, text: Option<&str>) {
        match text {
            Some(t) => {
                self.bytes.extend_from_slice(t.as_bytes());
                self.ends.push(self.bytes.len() as u64);
            }
            None => self.push_missing(1),
        }
    }

    fn push_missing(&mut self, rows: usize) {
        if self.ends.is_empty() {
            self.missing_prefix += rows;
        } else {
            let end = self.bytes.len() as u64 | NULL;
            self.ends.extend(std::iter::repeat_n(end, rows));
        }
    }

    fn get(&self, row: usize) -> Option<&str> {
        let r = row.checked_sub(self.missing_prefix)?;
        let end = *self.ends.get(r)?;
        if end & NULL != 0 {
            return None;
        }
        let start = match r {
            0 => 0,
            _ => self.ends[r - 1] & !NULL,
        };
        let bytes = &self.bytes[start as usize..end as usize];
        // SAFETY: `bytes` is exactly one value pushed as a `&str`, so it is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    }

    /// Appends the values of `rows` of `other`: one copy of their bytes, ends shifted.
    fn append_rows(&mut self, other: &TextColumn, rows: Range<usize>) {
        // The part of `rows` in `other`'s missing prefix, then the rest, as indexes of
        // `other.ends`.
        let split = rows.end.min(other.missing_prefix).max(rows.start);
        self.push_missing(split - rows.start);
        if split == rows.end {
            return;
        }
        let rows = split - other.missing_prefix..rows.end - other.missing_prefix;
        let start = match rows.start {
            0 => 0,
            r => other.ends[r - 1] & !NULL,
        };
        let end = other.ends[rows.end - 1] & !NULL;
        // Rebased on where the bytes land here (ends only grow, so none is below `start`).
        let base = self.bytes.len() as u64;
        self.bytes
            .extend_from_slice(&other.bytes[start as usize..end as usize]);
        self.ends.extend(
            other.ends[rows]
                .iter()
                .map(|&e| (base + (e & !NULL) - start) | (e & NULL)),
        );
    }

    /// The values of `rows`, in that order, as an Arrow array.
    fn gather(&self, rows: &[u32]) -> ArrayRef {
        let bytes = rows
            .iter()
            .map(|&r| self.get(r as usize).map_or(0, str::len))
            .sum();
        let mut b = StringBuilder::with_capacity(rows.len(), bytes);
        for &r in rows {
            b.append_option(self.get(r as usize));
        }
        Arc::new(b.finish())
    }
}

/// A column of optional values that, like [`TextColumn`], only counts the missing rows
/// before its first value (`sent_at` and `received_at` are missing from whole imports).
#[derive(Debug)]
struct Optional<T> {
    missing_prefix: usize,
    values: Vec<Option<T>>,
}

impl<T> Default for Optional<T> {
    fn default() -> Self {
        Optional {
            missing_prefix: 0,
            values: Vec::new(),
        }
    }
}

impl<T: Copy> Optional<T> {
    fn clear(&mut self) {
        self.missing_prefix = 0;
        self.values.clear();
    }

    fn push(&mut self, value: Option<T>) {
        match value {
            None => self.push_missing(1),
            _ => self.values.push(value),
        }
    }

    fn push_missing(&mut self, rows: usize) {
        if self.values.is_empty() {
            self.missing_prefix += rows;
        } else {
            self.values.extend(std::iter::repeat_n(None, rows));
        }
    }

    fn get(&self, row: usize) -> Option<T> {
        let r = row.checked_sub(self.missing_prefix)?;
        self.values.get(r).copied().flatten()
    }

    fn append_rows(&mut self, other: &Optional<T>, rows: Range<usize>) {
        let split = rows.end.min(other.missing_prefix).max(rows.start);
        self.push_missing(split - rows.start);
        if split < rows.end {
            let skip = other.missing_prefix;
            self.values
                .extend_from_slice(&other.values[split - skip..rows.end - skip]);
        }
    }
}

/// Events on their way into a segment, as columns in arrival order: what every segment
/// writer (import, log flush, compaction) fills, and [`EventColumns::write`] sorts and writes.
/// Columns rather than `Event`s because an event is a dozen separately allocated strings:
/// copying their bytes into a few growing buffers is several times cheaper to build, hold
/// and drop, and a cleared `EventColumns` keeps its buffers for the next chunk.
#[derive(Debug, Default)]
pub struct EventColumns {
    pub keys: Vec<u32>,
    pub times: Vec<i64>,
    pub seqs: Vec<u64>,
    /// Indexes into the store's event-name and channel dictionaries.
    pub names: Vec<u16>,
    pub channels: Vec<u16>,
    values: Optional<f64>,
    kinds: Vec<EventKind>,
    /// Set where the message id is a canonical UUID (`message_id` then holds null).
    message_uuids: Optional<[u8; 16]>,
    sent_at: Optional<i64>,
    received_at: Optional<i64>,
    message_id: TextColumn,
    user_id: TextColumn,
    anonymous_id: TextColumn,
    group_id: TextColumn,
    previous_id: TextColumn,
    properties: TextColumn,
    traits: TextColumn,
    context: TextColumn,
}

impl EventColumns {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Empties every column, keeping the memory for the next chunk.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.times.clear();
        self.seqs.clear();
        self.names.clear();
        self.channels.clear();
        self.values.clear();
        self.kinds.clear();
        self.message_uuids.clear();
        self.sent_at.clear();
        self.received_at.clear();
        for text in [
            &mut self.message_id,
            &mut self.user_id,
            &mut self.anonymous_id,
            &mut self.group_id,
            &mut self.previous_id,
            &mut self.properties,
            &mut self.traits,
            &mut self.context,
        ] {
            text.clear();
        }
    }

    /// Appends one event with its customer key, log position and dictionary indexes.
    pub fn push(&mut self, key: u32, seq: u64, name: u16, channel: u16, e: &Event) {
        self.keys.push(key);
        self.times.push(e.timestamp);
        self.seqs.push(seq);
        self.names.push(name);
        self.channels.push(channel);
        self.values.push(e.value);
        self.kinds.push(e.kind);
        let uuid = uuid_bytes(&e.message_id);
        self.message_uuids.push(uuid);
        self.message_id
            .push(uuid.is_none().then_some(e.message_id.as_str()));
        self.user_id.push(e.user_id.as_deref());
        self.anonymous_id.push(e.anonymous_id.as_deref());
        self.sent_at.push(e.sent_at);
        self.received_at.push(e.received_at);
        self.group_id.push(e.group_id.as_deref());
        self.previous_id.push(e.previous_id.as_deref());
        self.properties.push(e.properties.as_deref());
        self.traits.push(e.traits.as_deref());
        self.context.push(e.context.as_deref());
    }

    /// The numeric value (revenue) of `row`, if it has one.
    pub fn value(&self, row: usize) -> Option<f64> {
        self.values.get(row)
    }

    /// The `userId` and `anonymousId` of `row`.
    pub fn ids(&self, row: usize) -> (Option<&str>, Option<&str>) {
        (self.user_id.get(row), self.anonymous_id.get(row))
    }

    /// The raw customer id of `row`: its `userId`, else its `anonymousId`
    /// (as [`Event::customer_id`]).
    pub fn customer_id(&self, row: usize) -> &str {
        self.user_id
            .get(row)
            .or_else(|| self.anonymous_id.get(row))
            .unwrap_or_default()
    }

    /// Appends `rows` of `other` with their customer keys, sequence numbers from `first_seq`
    /// on, and their name and channel indexes mapped through `names` / `channels` (indexed
    /// by `other`'s own indexes).
    pub fn append_rows(
        &mut self,
        other: &EventColumns,
        rows: Range<usize>,
        keys: &[u32],
        first_seq: u64,
        names: &[u16],
        channels: &[u16],
    ) {
        let r = rows.clone();
        self.keys.extend_from_slice(keys);
        self.times.extend_from_slice(&other.times[r.clone()]);
        self.seqs.extend(first_seq..first_seq + r.len() as u64);
        self.names
            .extend(other.names[r.clone()].iter().map(|&n| names[n as usize]));
        self.channels.extend(
            other.channels[r.clone()]
                .iter()
                .map(|&c| channels[c as usize]),
        );
        self.values.append_rows(&other.values, r.clone());
        self.kinds.extend_from_slice(&other.kinds[r.clone()]);
        self.message_uuids
            .append_rows(&other.message_uuids, r.clone());
        self.sent_at.append_rows(&other.sent_at, r.clone());
        self.received_at.append_rows(&other.received_at, r.clone());
        for (to, from) in [
            (&mut self.message_id, &other.message_id),
            (&mut self.user_id, &other.user_id),
            (&mut self.anonymous_id, &other.anonymous_id),
            (&mut self.group_id, &other.group_id),
            (&mut self.previous_id, &other.previous_id),
            (&mut self.properties, &other.properties),
            (&mut self.traits, &other.traits),
            (&mut self.context, &other.context),
        ] {
            to.append_rows(from, rows.clone());
        }
    }

    /// Indexes of the rows `keep` marks (all when it is empty) in segment order: (customer
    /// key, timestamp, seq).
    pub fn order(&self, keep: &[bool]) -> Vec<u32> {
        let mut keyed: Vec<(u32, i64, u64, u32)> = (0..self.len())
            .filter(|&i| keep.get(i) != Some(&false))
            .map(|i| (self.keys[i], self.times[i], self.seqs[i], i as u32))
            .collect();
        if !keyed.is_sorted() {
            keyed.sort_unstable();
        }
        keyed.into_iter().map(|k| k.3).collect()
    }

    /// Encodes one row group's columns on two threads: this one gathers the rows and encodes
    /// the columns [`ENCODED_ALONGSIDE`] leaves out, a second one encodes those. On two
    /// cores a segment is written in little more than half the time; an import of a small
    /// file (nothing else to overlap with) is mostly this.
    #[allow(clippy::too_many_arguments)]
    fn encode_row_group<'scope>(
        &'scope self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        schema: &Schema,
        writers: Vec<ArrowColumnWriter>,
        path: &Path,
        rows: &[u32],
        names: &[String],
        channels: &[String],
    ) -> Result<Vec<ArrowColumnChunk>> {
        let pq = |source| StoreError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        // A small row group is encoded here alone: a second thread would save little and
        // touch memory of its own (a small import is mostly fresh memory on this VM).
        let alone = rows.len() < ENCODE_ALONE_BELOW;
        let alongside_this = |i: &usize| !alone && ENCODED_ALONGSIDE.contains(i);
        let (mut here, mut there): (Vec<_>, Vec<_>) = writers
            .into_iter()
            .enumerate()
            .partition(|(i, _)| !alongside_this(i));
        // The second thread, only when it has columns to encode.
        let mut alongside = (!there.is_empty()).then(|| {
            let (send, receive) = std::sync::mpsc::sync_channel::<Vec<ArrowLeafColumn>>(2);
            let thread = scope.spawn(move || -> parquet::errors::Result<_> {
                for leaves in receive {
                    for ((_, writer), leaf) in there.iter_mut().zip(&leaves) {
                        writer.write(leaf)?;
                    }
                }
                there
                    .into_iter()
                    .map(|(i, w)| w.close().map(|chunk| (i, chunk)))
                    .collect::<parquet::errors::Result<Vec<_>>>()
            });
            (send, thread)
        });
        let mut encode_here = || -> Result<()> {
            for batch_rows in rows.chunks(WRITE_BATCH) {
                let batch = self.batch(path, batch_rows, names, channels)?;
                let mut leaves_here = Vec::with_capacity(here.len());
                let mut leaves_there = Vec::with_capacity(ENCODED_ALONGSIDE.len());
                for (i, (field, column)) in schema.fields().iter().zip(batch.columns()).enumerate()
                {
                    let leaves = compute_leaves(field, column).map_err(pq)?;
                    if alongside_this(&i) {
                        leaves_there.extend(leaves);
                    } else {
                        leaves_here.extend(leaves);
                    }
                }
                if let Some((send, _)) = &alongside
                    && send.send(leaves_there).is_err()
                {
                    // The other thread stopped on an error: its result below says which.
                    break;
                }
                for ((_, writer), leaf) in here.iter_mut().zip(&leaves_here) {
                    writer.write(leaf).map_err(pq)?;
                }
            }
            Ok(())
        };
        let encoded = encode_here();
        let there = match alongside.take() {
            Some((send, thread)) => {
                drop(send);
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    .map_err(pq)?
            }
            None => Vec::new(),
        };
        encoded?;
        let mut chunks: Vec<(usize, ArrowColumnChunk)> = here
            .drain(..)
            .map(|(i, w)| w.close().map(|chunk| (i, chunk)))
            .collect::<parquet::errors::Result<_>>()
            .map_err(pq)?;
        chunks.extend(there);
        chunks.sort_by_key(|(i, _)| *i);
        Ok(chunks.into_iter().map(|(_, chunk)| chunk).collect())
    }

    fn batch(
        &self,
        path: &Path,
        rows: &[u32],
        names: &[String],
        channels: &[String],
    ) -> Result<RecordBatch> {
        let n = rows.len();
        let each = || rows.iter().map(|&r| r as usize);
        let dictionary_text = |dict: &[String], ids: &[u16]| -> Result<ArrayRef> {
            let mut b = StringBuilder::with_capacity(n, n * 12);
            for r in each() {
                let id = ids[r] as usize;
                let text = dict.get(id).ok_or_else(|| StoreError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("dictionary index {id} out of range"),
                })?;
                b.append_value(text);
            }
            Ok(Arc::new(b.finish()))
        };
        let times = |values: &Optional<i64>| -> ArrayRef {
            let mut b = TimestampMicrosecondBuilder::with_capacity(n);
            for r in each() {
                b.append_option(values.get(r));
            }
            Arc::new(b.finish().with_timezone("UTC"))
        };
        let mut kinds = StringBuilder::with_capacity(n, n * 5);
        let mut value = Float64Builder::with_capacity(n);
        let mut uuid = FixedSizeBinaryBuilder::with_capacity(n, 16);
        for r in each() {
            kinds.append_value(self.kinds[r].as_str());
            value.append_option(self.values.get(r));
            match self.message_uuids.get(r) {
                Some(bytes) => uuid.append_value(bytes)?,
                None => uuid.append_null(),
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(each().map(|r| self.keys[r]))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(each().map(|r| self.times[r]))
                    .with_timezone("UTC"),
            ),
            Arc::new(UInt64Array::from_iter_values(each().map(|r| self.seqs[r]))),
            Arc::new(kinds.finish()),
            dictionary_text(names, &self.names)?,
            dictionary_text(channels, &self.channels)?,
            Arc::new(value.finish()),
            self.message_id.gather(rows),
            Arc::new(uuid.finish()),
            self.user_id.gather(rows),
            self.anonymous_id.gather(rows),
            times(&self.sent_at),
            times(&self.received_at),
            self.group_id.gather(rows),
            self.previous_id.gather(rows),
            self.properties.gather(rows),
            self.traits.gather(rows),
            self.context.gather(rows),
        ];
        Ok(RecordBatch::try_new(schema(), columns)?)
    }
}

/// A segment's Parquet file being written, a part at a time: a merge writes the events of one
/// key range after another into it, so it never holds all of them.
pub struct ParquetSink {
    path: PathBuf,
    schema: SchemaRef,
    file: SerializedFileWriter<crate::fsutil::SteadyFile>,
    factory: ArrowRowGroupWriterFactory,
    row_groups: usize,
}

impl ParquetSink {
    pub fn create(path: &Path) -> Result<ParquetSink> {
        let file = crate::fsutil::SteadyFile::create(path).at(path)?;
        let schema = schema();
        let (file, factory) =
            ArrowWriter::try_new(file, Arc::clone(&schema), Some(writer_properties()))
                .and_then(ArrowWriter::into_serialized_writer)
                .map_err(|source| StoreError::Parquet {
                    path: path.to_path_buf(),
                    source,
                })?;
        Ok(ParquetSink {
            path: path.to_path_buf(),
            schema,
            file,
            factory,
            row_groups: 0,
        })
    }

    /// Appends the rows of `c` named by `order`, in that order, as row groups of at most
    /// [`ROW_GROUP`] rows. `names` and `channels` are the store's dictionaries.
    pub fn write(
        &mut self,
        c: &EventColumns,
        order: &[u32],
        names: &[String],
        channels: &[String],
    ) -> Result<()> {
        let path = &self.path;
        let pq = |source| StoreError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        for rows in order.chunks(ROW_GROUP) {
            let writers = self
                .factory
                .create_column_writers(self.row_groups)
                .map_err(pq)?;
            self.row_groups += 1;
            let chunks = std::thread::scope(|scope| {
                c.encode_row_group(scope, &self.schema, writers, path, rows, names, channels)
            })?;
            let mut row_group = self.file.next_row_group().map_err(pq)?;
            for chunk in chunks {
                chunk.append_to_row_group(&mut row_group).map_err(pq)?;
            }
            row_group.close().map_err(pq)?;
        }
        Ok(())
    }

    /// Writes the footer and fsyncs the file; returns its size.
    pub fn finish(self) -> Result<u64> {
        let path = self.path;
        let file = self
            .file
            .into_inner()
            .map_err(|source| StoreError::Parquet {
                path: path.clone(),
                source,
            })?
            .finish()
            .at(&path)?;
        Ok(file.metadata().at(&path)?.len())
    }
}

/// A segment's events in file order, read a batch of at most [`WRITE_BATCH`] rows at a time
/// as they are asked for, so memory stays bounded however large the segment is: a merge reads
/// its segments side by side, one key range at a time, holding a batch of each.
pub struct SegmentCursor {
    path: PathBuf,
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    /// What is left of the current batch.
    ahead: std::vec::IntoIter<StoredEvent>,
}

impl SegmentCursor {
    /// All columns, or only those `skip` does not name (see [`read_each_skipping`]).
    pub fn open(seg: &SegmentFile, skip: Option<&[&str]>) -> Result<SegmentCursor> {
        let path = seg.path();
        let pq = |source| StoreError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(seg.reader()?)
            .map_err(pq)?
            .with_batch_size(WRITE_BATCH);
        if let Some(skip) = skip {
            let keep: Vec<usize> = schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    !skip.contains(&f.name().as_str()) || ALWAYS_READ.contains(&f.name().as_str())
                })
                .map(|(i, _)| i)
                .collect();
            let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), keep);
            builder = builder.with_projection(mask);
        }
        Ok(SegmentCursor {
            path: path.to_path_buf(),
            reader: builder.build().map_err(pq)?,
            ahead: Vec::new().into_iter(),
        })
    }

    /// Hands out, in file order, the next events whose customer key is below `end`.
    pub fn take_below(&mut self, end: u64, each: &mut dyn FnMut(StoredEvent)) -> Result<()> {
        loop {
            while let Some(next) = self.ahead.as_slice().first() {
                if u64::from(next.key) >= end {
                    return Ok(());
                }
                if let Some(next) = self.ahead.next() {
                    each(next);
                }
            }
            let Some(batch) = self.reader.next() else {
                return Ok(());
            };
            let mut rows = Vec::with_capacity(WRITE_BATCH);
            from_batch(&batch?, &mut rows).map_err(|reason| StoreError::Corrupt {
                path: self.path.clone(),
                reason,
            })?;
            self.ahead = rows.into_iter();
        }
    }
}

/// A segment's Parquet file, opened once and held: a snapshot opens its segments when it is
/// taken, so that a compaction removing them afterwards (the background flusher compacts while
/// readers read) cannot pull a file from under it — an open file outlives its name.
///
/// It also keeps the file's footer once read for picking rows ([`read`] with ranges): a
/// server answering profile lookups from one snapshot parsed it, and its page index, for
/// every lookup.
#[derive(Debug)]
pub struct SegmentFile {
    path: PathBuf,
    held: File,
    /// The footer with its offset index (where each page starts and which rows it holds), so
    /// that reading a few rows decodes only the pages holding them: without it, every page of
    /// a row group up to those rows was decompressed (tens of milliseconds for one customer
    /// of a million-row group).
    picking: std::sync::OnceLock<ArrowReaderMetadata>,
}

impl SegmentFile {
    pub fn open(path: &Path) -> Result<SegmentFile> {
        Ok(SegmentFile {
            path: path.to_path_buf(),
            held: File::open(path).at(path)?,
            picking: std::sync::OnceLock::new(),
        })
    }

    /// The footer and offset index for [`read`] with ranges, read at the first call.
    fn picking_metadata(&self, file: &File) -> Result<ArrowReaderMetadata> {
        if let Some(m) = self.picking.get() {
            return Ok(m.clone());
        }
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        let m = ArrowReaderMetadata::load(file, options).map_err(|source| StoreError::Parquet {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.picking.get_or_init(|| m).clone())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A reader of the held file with its own position, so that threads reading one segment
    /// at once do not move each other's: a fresh open of the held descriptor, which works
    /// after the name is gone. (`try_clone` would share one position.)
    fn reader(&self) -> Result<File> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = format!("/proc/self/fd/{}", self.held.as_raw_fd());
            if let Ok(f) = File::open(fd) {
                return Ok(f);
            }
        }
        File::open(&self.path).at(&self.path)
    }
}

/// Reads events back, all of them or only the given row ranges (sorted, disjoint).
pub fn read(seg: &SegmentFile, ranges: Option<&[Range<usize>]>) -> Result<Vec<StoredEvent>> {
    let path = seg.path();
    let pq = |source| StoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = seg.reader()?;
    let mut builder = match ranges {
        Some(_) => {
            let metadata = seg.picking_metadata(&file)?;
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
        }
        None => ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?,
    }
    .with_batch_size(WRITE_BATCH);
    if let Some(ranges) = ranges {
        let group_rows: Vec<usize> = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| usize::try_from(g.num_rows()).unwrap_or(0))
            .collect();
        // Rows come from the segment's scan file; rows past this file's end mean the two
        // disagree, which a read must not pass over as "no events".
        let rows: usize = group_rows.iter().sum();
        if let Some(past) = ranges.iter().find(|r| r.end > rows) {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "rows {}..{} asked for, but the file holds {rows} rows",
                    past.start, past.end
                ),
            });
        }
        let (groups, selectors) = pick_rows(&group_rows, ranges);
        builder = builder
            .with_row_groups(groups)
            .with_row_selection(RowSelection::from(selectors));
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

/// The row groups (by index; `group_rows` holds each one's row count) that hold any of the
/// file's rows `ranges` (ascending, disjoint), and the selection of those rows within them.
/// Only those row groups are opened: a reader opens every column of each row group it is
/// given, making a decompressor for each (see [`UNCOMPRESSED`]), even to skip all its rows.
fn pick_rows(group_rows: &[usize], ranges: &[Range<usize>]) -> (Vec<usize>, Vec<RowSelector>) {
    let (mut groups, mut selectors) = (Vec::new(), Vec::new());
    let mut start = 0;
    for (g, &n) in group_rows.iter().enumerate() {
        let end = start + n;
        let mut at = start;
        for r in ranges {
            let (from, to) = (r.start.max(start), r.end.min(end));
            if from >= to {
                continue;
            }
            if from > at {
                selectors.push(RowSelector::skip(from - at));
            }
            selectors.push(RowSelector::select(to - from));
            at = to;
        }
        if at > start {
            groups.push(g);
            if end > at {
                selectors.push(RowSelector::skip(end - at));
            }
        }
        start = end;
    }
    (groups, selectors)
}

/// Reads every event of a segment in file order (through a [`SegmentCursor`]).
pub fn read_each(seg: &SegmentFile, each: &mut dyn FnMut(StoredEvent)) -> Result<()> {
    read_each_of(seg, None, each)
}

/// [`read_each`] reading only the columns `skip` does not name: an event's skipped fields
/// come out empty (`None`, an empty name or channel). The key, sequence number, type,
/// timestamp and message id are always read.
pub fn read_each_skipping(
    seg: &SegmentFile,
    skip: &[&str],
    each: &mut dyn FnMut(StoredEvent),
) -> Result<()> {
    read_each_of(seg, Some(skip), each)
}

fn read_each_of(
    seg: &SegmentFile,
    skip: Option<&[&str]>,
    each: &mut dyn FnMut(StoredEvent),
) -> Result<()> {
    SegmentCursor::open(seg, skip)?.take_below(u64::MAX, each)
}

/// What a stored event cannot do without, whatever a reader skips.
const ALWAYS_READ: [&str; 6] = [
    "customer_key",
    "seq",
    "type",
    "timestamp",
    "message_id",
    "message_uuid",
];

fn from_batch(batch: &RecordBatch, out: &mut Vec<StoredEvent>) -> Result<(), String> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("column {name:?} missing"))
    };
    // A column a reader skipped is absent from the batch; any other missing column is damage.
    let skipped = |name: &str| !ALWAYS_READ.contains(&name) && batch.column_by_name(name).is_none();
    let string = |name: &str| -> Result<Option<&arrow_array::StringArray>, String> {
        if skipped(name) {
            return Ok(None);
        }
        col(name)?
            .as_string_opt::<i32>()
            .map(Some)
            .ok_or_else(|| format!("column {name:?} is not text"))
    };
    let time = |name: &str| -> Result<
        Option<&arrow_array::PrimitiveArray<TimestampMicrosecondType>>,
        String,
    > {
        if skipped(name) {
            return Ok(None);
        }
        col(name)?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .map(Some)
            .ok_or_else(|| format!("column {name:?} is not a µs timestamp"))
    };
    let opt = |a: Option<&arrow_array::StringArray>, i: usize| {
        a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string())
    };
    let text = |a: Option<&arrow_array::StringArray>, i: usize| {
        a.map(|a| a.value(i).to_string()).unwrap_or_default()
    };
    let opt_time = |a: Option<&arrow_array::PrimitiveArray<TimestampMicrosecondType>>, i: usize| {
        a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
    };
    let keys = col("customer_key")?
        .as_primitive_opt::<UInt32Type>()
        .ok_or("customer_key is not u32")?;
    let seqs = col("seq")?
        .as_primitive_opt::<UInt64Type>()
        .ok_or("seq is not u64")?;
    let values = match skipped("value") {
        true => None,
        false => Some(
            col("value")?
                .as_primitive_opt::<Float64Type>()
                .ok_or("value is not f64")?,
        ),
    };
    let (timestamp, sent_at, received_at) =
        (time("timestamp")?, time("sent_at")?, time("received_at")?);
    let timestamp = timestamp.ok_or("column \"timestamp\" missing")?;
    let (kind, event, channel, message_id) = (
        string("type")?.ok_or("column \"type\" missing")?,
        string("event")?,
        string("channel")?,
        string("message_id")?.ok_or("column \"message_id\" missing")?,
    );
    let message_uuid = col("message_uuid")?
        .as_fixed_size_binary_opt()
        .ok_or("message_uuid is not binary")?;
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
                message_id: if message_uuid.is_valid(i) {
                    uuid_text(message_uuid.value(i))
                } else {
                    message_id.value(i).to_string()
                },
                kind,
                event: text(event, i),
                user_id: opt(user_id, i),
                anonymous_id: opt(anonymous_id, i),
                timestamp: timestamp.value(i),
                sent_at: opt_time(sent_at, i),
                received_at: opt_time(received_at, i),
                channel: text(channel, i),
                value: values.filter(|v| v.is_valid(i)).map(|v| v.value(i)),
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

/// One text column of a segment (e.g. `properties`), every row in file order, as Arrow arrays
/// of at most [`WRITE_BATCH`] rows each. Reads only that column.
pub fn read_text_column(seg: &SegmentFile, name: &str) -> Result<Vec<StringArray>> {
    let path = seg.path();
    let pq = |source| StoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file = seg.reader()?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
    let index = builder
        .schema()
        .index_of(name)
        .map_err(|_| corrupt(format!("no {name} column")))?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [index]);
    let mut arrays = Vec::new();
    for batch in builder
        .with_projection(mask)
        .with_batch_size(WRITE_BATCH)
        .build()
        .map_err(pq)?
    {
        let batch = batch?;
        let texts = batch
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| corrupt(format!("{name} is not text")))?;
        arrays.push(texts.clone());
    }
    Ok(arrays)
}

/// The digests of every message id in a segment: what deduplication needs from it. Reads only
/// the two message-id columns.
pub fn read_message_digests(path: &Path, mut each: impl FnMut(u128)) -> Result<()> {
    let pq = |source| StoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |reason: &str| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    let file = File::open(path).at(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
    let schema = builder.schema().clone();
    let text = schema
        .index_of("message_id")
        .map_err(|_| corrupt("no message_id column"))?;
    let uuid = schema
        .index_of("message_uuid")
        .map_err(|_| corrupt("no message_uuid column"))?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [text, uuid]);
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
            .ok_or_else(|| corrupt("message_id is not text"))?;
        let uuids = batch
            .column(1)
            .as_fixed_size_binary_opt()
            .ok_or_else(|| corrupt("message_uuid is not binary"))?;
        for i in 0..batch.num_rows() {
            if uuids.is_valid(i) {
                each(message_digest(&uuid_text(uuids.value(i))));
            } else {
                each(message_digest(ids.value(i)));
            }
        }
    }
    Ok(())
}

/// The 16 bytes of a canonical lowercase UUID (`8-4-4-4-12` hex digits), else `None`. Only
/// the canonical form is packed, so that [`uuid_text`] gives back exactly the id received.
fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    let b = id.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    // Branch-free: random hex digits make a per-character `match` mispredict about every
    // other byte, which cost an eighth of a whole CSV import.
    const HEX_PAIRS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut out = [0u8; 16];
    let mut invalid = 0u8;
    for (o, &at) in out.iter_mut().zip(&HEX_PAIRS) {
        let (high, low) = (HEX_VALUE[b[at] as usize], HEX_VALUE[b[at + 1] as usize]);
        invalid |= (high | low) & 0x10;
        *o = (high << 4) | (low & 0x0f);
    }
    (invalid == 0).then_some(out)
}

/// The value of a lowercase hex digit, or 0x10 (an invalid marker bit) for any other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0x10u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

fn uuid_text(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every set of disjoint ranges over files cut into row groups in several ways: the rows
    /// `pick_rows` selects, read back through the groups it keeps, are exactly the ranges'.
    #[test]
    fn picked_row_groups_and_selection_cover_exactly_the_ranges() {
        let layouts: [&[usize]; 4] = [
            &[10],
            &[4, 4, 2],
            &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            &[3, 0, 7],
        ];
        // Every subset of these disjoint ranges, in order.
        let pool = [0..1, 2..5, 5..6, 7..10];
        for layout in layouts {
            let starts: Vec<usize> = layout
                .iter()
                .scan(0, |at, &n| {
                    *at += n;
                    Some(*at - n)
                })
                .collect();
            for mask in 0..(1u32 << pool.len()) {
                let ranges: Vec<Range<usize>> = (0..pool.len())
                    .filter(|i| mask >> i & 1 == 1)
                    .map(|i| pool[i].clone())
                    .collect();
                let (groups, selectors) = pick_rows(layout, &ranges);
                // The kept groups' rows, in order, against the selection.
                let rows: Vec<usize> = groups
                    .iter()
                    .flat_map(|&g| starts[g]..starts[g] + layout[g])
                    .collect();
                assert_eq!(
                    selectors.iter().map(|s| s.row_count).sum::<usize>(),
                    rows.len(),
                    "{layout:?} {ranges:?}"
                );
                let mut picked = Vec::new();
                let mut at = 0;
                for s in &selectors {
                    if !s.skip {
                        picked.extend_from_slice(&rows[at..at + s.row_count]);
                    }
                    at += s.row_count;
                }
                let want: Vec<usize> = ranges.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(picked, want, "{layout:?} {ranges:?}");
                // No group is opened for nothing.
                for &g in &groups {
                    let group = starts[g]..starts[g] + layout[g];
                    assert!(
                        want.iter().any(|r| group.contains(r)),
                        "{layout:?} {ranges:?}"
                    );
                }
            }
        }
    }

    /// Rows picked from a written segment come back whole and in order;
    /// rows past its end are refused with the file named, not read as nothing.
    #[test]
    fn picked_rows_read_back_and_rows_past_the_end_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.parquet");
        let mut columns = EventColumns::default();
        for n in 0..10u32 {
            let e = Event {
                message_id: format!("m{n}"),
                event: "Viewed".into(),
                user_id: Some(format!("u{}", n / 2)),
                timestamp: i64::from(n) * 1_000_000,
                channel: "web".into(),
                ..Event::default()
            };
            columns.push(n / 2, u64::from(n), 0, 0, &e);
        }
        let mut sink = ParquetSink::create(&path).unwrap();
        let order: Vec<u32> = (0..10).collect();
        sink.write(&columns, &order, &["Viewed".into()], &["web".into()])
            .unwrap();
        sink.finish().unwrap();
        let seg = SegmentFile::open(&path).unwrap();
        let got = read(&seg, Some(&[1..3, 8..10])).unwrap();
        let ids: Vec<&str> = got.iter().map(|e| e.event.message_id.as_str()).collect();
        assert_eq!(ids, ["m1", "m2", "m8", "m9"]);
        match read(&seg, Some(&[0..1, 8..12])) {
            Err(StoreError::Corrupt { path: p, reason }) => {
                assert_eq!(p, path);
                assert!(
                    reason.contains("8..12") && reason.contains("10 rows"),
                    "{reason}"
                );
            }
            other => panic!("expected a corrupt-file error, got {other:?}"),
        }
    }

    #[test]
    fn only_canonical_uuids_are_packed_and_they_round_trip() {
        let id = "c4dae589-afdb-4dd5-890e-f4ba468a6ceb";
        assert_eq!(uuid_text(&uuid_bytes(id).unwrap()), id);
        for other in [
            "C4DAE589-AFDB-4DD5-890E-F4BA468A6CEB",
            "c4dae589afdb4dd5890ef4ba468a6ceb",
            "node-next-1-x",
            "c4dae589-afdb-4dd5-890e-f4ba468a6cez",
            "",
        ] {
            assert_eq!(uuid_bytes(other), None, "{other}");
        }
    }

    /// Copies every slice of every source into a fresh column and checks each row, for
    /// sources that start with missing rows, have none, or hold nothing else.
    #[test]
    fn columns_that_only_count_leading_missing_rows_copy_every_slice_exactly() {
        let sources: Vec<Vec<Option<&str>>> = vec![
            vec![None, None, Some("a"), None, Some(""), Some("bc")],
            vec![Some("x"), None, Some("yz")],
            vec![None, None, None],
            vec![],
        ];
        for first in &sources {
            for second in &sources {
                for split in 0..=second.len() {
                    for end in split..=second.len() {
                        let (mut a, mut b) = (TextColumn::default(), TextColumn::default());
                        let (mut oa, mut ob) = (Optional::default(), Optional::default());
                        for v in first {
                            a.push(*v);
                            oa.push(v.map(str::len));
                        }
                        for v in second {
                            b.push(*v);
                            ob.push(v.map(str::len));
                        }
                        a.append_rows(&b, split..end);
                        oa.append_rows(&ob, split..end);
                        let want: Vec<Option<&str>> =
                            first.iter().chain(&second[split..end]).copied().collect();
                        for (row, w) in want.iter().enumerate() {
                            assert_eq!(a.get(row), *w, "text row {row}");
                            assert_eq!(oa.get(row), w.map(str::len), "optional row {row}");
                        }
                        assert_eq!(a.get(want.len()), None);
                    }
                }
            }
        }
    }
}

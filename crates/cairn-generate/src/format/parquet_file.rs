//! Parquet: one row per event, ZSTD-compressed, row groups of about a million rows.
//!
//! Encoding and compressing is most of the cost, so it happens on the worker threads: each
//! renders one whole row group ([`ParquetRender::CHUNK_CUSTOMERS`] customers), building Arrow
//! arrays [`BATCH_CUSTOMERS`] customers at a time and feeding them to that row group's column
//! writers. The calling thread only appends the finished column chunks to the file. Page and
//! row-group boundaries depend on the customer counts alone, so the bytes do not depend on the
//! number of threads.

use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use super::{ChunkWriter, Failure, Render};
use crate::journey::simulate;
use crate::record::{Journey, write_uuid};

/// Customers per Arrow batch handed to the column writers (about 49k rows).
pub const BATCH_CUSTOMERS: u64 = 4096;

/// The columns, in order.
pub fn schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("message_id", false),
        text("type", false),
        text("event", false),
        text("user_id", true),
        text("anonymous_id", true),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        text("channel", false),
        Field::new("value", DataType::Float64, true),
        text("properties", true),
        text("traits", true),
    ]))
}

/// The text rendered into a cell: only ASCII and static strings are ever rendered.
fn as_str(cell: &[u8]) -> &str {
    std::str::from_utf8(cell).unwrap_or_default()
}

/// One encoded row group, or why encoding failed.
pub type RowGroup = Result<Vec<ArrowColumnChunk>, ParquetError>;

pub struct ParquetRender {
    factory: Arc<ArrowRowGroupWriterFactory>,
    schema: SchemaRef,
    journey: Journey,
    /// Scratch space for rendering one cell.
    cell: Vec<u8>,
}

impl ParquetRender {
    pub fn new(factory: Arc<ArrowRowGroupWriterFactory>) -> ParquetRender {
        ParquetRender {
            factory,
            schema: schema(),
            journey: Journey::default(),
            cell: Vec::with_capacity(128),
        }
    }

    /// Encodes the customers of one row group.
    fn encode(
        &mut self,
        seed: u64,
        row_group: u64,
        customers: Range<u64>,
        events: &mut u64,
    ) -> RowGroup {
        let mut writers = self.factory.create_column_writers(row_group as usize)?;
        let mut start = customers.start;
        while start < customers.end {
            let end = (start + BATCH_CUSTOMERS).min(customers.end);
            let columns = self.build(seed, start..end, events);
            // Every column is flat: one leaf, one writer, in schema order.
            let mut writer = writers.iter_mut();
            for (array, field) in columns.iter().zip(self.schema.fields()) {
                for leaf in compute_leaves(field, array)? {
                    let Some(w) = writer.next() else {
                        return Err(ParquetError::General("more leaves than columns".into()));
                    };
                    w.write(&leaf)?;
                }
            }
            start = end;
        }
        writers.into_iter().map(|w| w.close()).collect()
    }

    /// Builds the columns of a batch of customers, in schema order.
    fn build(&mut self, seed: u64, customers: Range<u64>, events: &mut u64) -> Vec<ArrayRef> {
        let rows = (customers.end - customers.start) as usize * 13;
        let text = |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        let mut message_id = text(36);
        let mut kind = text(5);
        let mut event = text(14);
        let mut user_id = text(12);
        let mut anonymous_id = text(8);
        let mut timestamp = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
        let mut channel = text(5);
        let mut value = Float64Builder::with_capacity(rows);
        let mut properties = text(80);
        let mut traits = text(4);

        let cell = &mut self.cell;
        for index in customers {
            let journey = &mut self.journey;
            simulate(seed, index, journey);
            for record in &journey.records {
                cell.clear();
                write_uuid(record.message_id, cell);
                message_id.append_value(as_str(cell));
                kind.append_value(record.kind.as_str());
                event.append_value(record.event_name());
                user_id.append_option(record.user_id(journey));
                anonymous_id.append_option(record.anonymous_id(journey));
                timestamp.append_value(record.at * 1000);
                channel.append_value(record.channel);
                value.append_option(record.revenue().and_then(|v| v.as_f64()));
                for (props, column) in [
                    (&record.properties, &mut properties),
                    (&record.traits, &mut traits),
                ] {
                    if props.is_empty() {
                        column.append_null();
                    } else {
                        cell.clear();
                        props.write_json(cell);
                        column.append_value(as_str(cell));
                    }
                }
            }
            *events += journey.records.len() as u64;
        }
        vec![
            Arc::new(message_id.finish()),
            Arc::new(kind.finish()),
            Arc::new(event.finish()),
            Arc::new(user_id.finish()),
            Arc::new(anonymous_id.finish()),
            Arc::new(timestamp.finish()),
            Arc::new(channel.finish()),
            Arc::new(value.finish()),
            Arc::new(properties.finish()),
            Arc::new(traits.finish()),
        ]
    }
}

impl Render for ParquetRender {
    type Chunk = RowGroup;
    /// 20 batches, about 980k rows.
    const CHUNK_CUSTOMERS: u64 = 20 * BATCH_CUSTOMERS;

    fn render(&mut self, seed: u64, chunk: u64, customers: Range<u64>) -> (RowGroup, u64) {
        let mut events = 0;
        let row_group = self.encode(seed, chunk, customers, &mut events);
        (row_group, events)
    }
}

pub struct ParquetWriter<W: Write + Send> {
    writer: SerializedFileWriter<W>,
}

impl<W: Write + Send> ParquetWriter<W> {
    /// The writer, and the factory of column writers for the renderers.
    pub fn new(out: W) -> Result<(ParquetWriter<W>, Arc<ArrowRowGroupWriterFactory>), Failure> {
        let no_stats = |b: parquet::file::properties::WriterPropertiesBuilder, col: &str| {
            b.set_column_statistics_enabled(ColumnPath::from(col), EnabledStatistics::None)
        };
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            // Random ids never repeat: a dictionary would only be built to be thrown away.
            .set_column_dictionary_enabled(ColumnPath::from("message_id"), false)
            // No library version in the file, so that upgrading the writer alone does not change
            // the bytes of a generated file.
            .set_created_by("cairn-generate".to_string());
        // Min/max of random ids and JSON text help no reader; they only cost time.
        for col in ["message_id", "properties", "traits"] {
            props = no_stats(props, col);
        }
        // The Arrow writer stores the Arrow schema in the file's metadata; its lower half does
        // the rest, so that row groups can be encoded on several threads.
        let (writer, factory) =
            ArrowWriter::try_new(out, schema(), Some(props.build()))?.into_serialized_writer()?;
        Ok((ParquetWriter { writer }, Arc::new(factory)))
    }
}

impl<W: Write + Send> ChunkWriter<RowGroup> for ParquetWriter<W> {
    fn write_chunk(&mut self, chunk: RowGroup) -> Result<(), Failure> {
        let mut row_group = self.writer.next_row_group()?;
        for column in chunk? {
            column.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }

    fn finish(self) -> Result<(), Failure> {
        let mut out = self.writer.into_inner()?;
        out.flush()?;
        Ok(())
    }
}

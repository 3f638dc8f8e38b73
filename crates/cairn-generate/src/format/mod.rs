//! The output formats, and the pipeline that feeds them.
//!
//! Each format is two halves. A [`Render`] turns a range of customers into a chunk of output
//! (bytes, or an Arrow batch) straight from the generator's records, without building model
//! events; renderers run on worker threads, one per core, because rendering is most of the cost
//! of a large file. A [`ChunkWriter`] writes the chunks in customer order on the calling thread.
//! A chunk depends only on the seed and its customer range, so the file is the same whatever the
//! number of threads and however they are scheduled.

mod csv;
mod jsonl;
mod parquet_file;

use std::ops::Range;
use std::sync::mpsc;

pub use csv::{CsvRender, CsvWriter};
pub use jsonl::{JsonlRender, JsonlWriter};
pub use parquet_file::{ParquetRender, ParquetWriter};

use crate::GenerateOptions;

/// Why writing failed; `write_file` adds the path.
#[derive(Debug)]
pub enum Failure {
    Io(std::io::Error),
    Parquet(parquet::errors::ParquetError),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl From<parquet::errors::ParquetError> for Failure {
    fn from(e: parquet::errors::ParquetError) -> Failure {
        Failure::Parquet(e)
    }
}

/// Renders customers into output; one per worker thread.
pub trait Render: Send {
    type Chunk: Send;
    /// How many customers go into one chunk, unless told otherwise.
    const CHUNK_CUSTOMERS: u64;
    /// Renders chunk number `chunk`, the customers in `customers`; returns the chunk and its
    /// number of events.
    fn render(&mut self, seed: u64, chunk: u64, customers: Range<u64>) -> (Self::Chunk, u64);
}

/// Writes rendered chunks, in order.
pub trait ChunkWriter<Chunk> {
    fn write_chunk(&mut self, chunk: Chunk) -> Result<(), Failure>;
    /// Writes what is buffered and the format's footer, and flushes.
    fn finish(self) -> Result<(), Failure>;
}

/// How to split the work.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub workers: usize,
    /// Customers per chunk; the format's [`Render::CHUNK_CUSTOMERS`] but in tests.
    pub chunk_customers: u64,
}

impl Plan {
    /// One worker per core (up to 8), and the format's chunk size.
    pub fn default_for<R: Render>() -> Plan {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Plan {
            workers: workers.clamp(1, 8),
            chunk_customers: R::CHUNK_CUSTOMERS,
        }
    }
}

/// Generates every customer of `options` through `make_render` renderers on `plan.workers`
/// threads into `writer`; calls `progress` with the customers written after each chunk. Returns
/// the number of events written.
pub fn run<R: Render, W: ChunkWriter<R::Chunk>>(
    options: &GenerateOptions,
    plan: Plan,
    make_render: impl Fn() -> R,
    mut writer: W,
    mut progress: impl FnMut(u64),
) -> Result<u64, Failure> {
    let size = plan.chunk_customers.max(1);
    let chunks = options.customers.div_ceil(size);
    let workers = plan.workers.clamp(1, chunks.max(1) as usize);
    let range = |chunk: u64| {
        let start = chunk * size;
        start..(start + size).min(options.customers)
    };
    let seed = options.seed;
    let mut events = 0u64;
    std::thread::scope(|scope| {
        // Worker `w` renders chunks w, w + workers, w + 2 * workers, ... into its own bounded
        // channel, so the writer takes them in order from each worker in turn, and memory stays
        // bounded by two chunks per worker.
        let mut receivers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = mpsc::sync_channel::<(R::Chunk, u64)>(1);
            receivers.push(rx);
            let mut render = make_render();
            scope.spawn(move || {
                for chunk in (w as u64..chunks).step_by(workers) {
                    // A closed channel means the writer failed and has stopped listening.
                    if tx.send(render.render(seed, chunk, range(chunk))).is_err() {
                        return;
                    }
                }
            });
        }
        for chunk in 0..chunks {
            let rx = &receivers[(chunk % workers as u64) as usize];
            // A worker only stops early when the channel closes, or by panicking, which
            // the scope propagates.
            let Ok((rendered, n)) = rx.recv() else {
                break;
            };
            // Returning drops the receivers, which stops the workers.
            writer.write_chunk(rendered)?;
            events += n;
            progress(range(chunk).end);
        }
        drop(receivers);
        writer.finish()?;
        if chunks == 0 {
            progress(0);
        }
        Ok(events)
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `Write` whose bytes the test can still read after the writer is consumed.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn render_all(format: &str, customers: u64, workers: usize) -> (Vec<u8>, u64) {
        let options = GenerateOptions { customers, seed: 3 };
        // Small chunks, so that a few hundred customers make several.
        let plan = Plan {
            workers,
            chunk_customers: 70,
        };
        let out = Shared::default();
        let events = match format {
            "jsonl" => run(
                &options,
                plan,
                JsonlRender::default,
                JsonlWriter::new(out.clone()),
                |_| {},
            ),
            "csv" => run(
                &options,
                plan,
                CsvRender::default,
                CsvWriter::new(out.clone()).unwrap(),
                |_| {},
            ),
            _ => {
                let (writer, factory) = ParquetWriter::new(out.clone()).unwrap();
                let render = || ParquetRender::new(factory.clone());
                run(&options, plan, render, writer, |_| {})
            }
        };
        let bytes = out.0.lock().unwrap().clone();
        (bytes, events.unwrap())
    }

    #[test]
    fn output_does_not_depend_on_the_number_of_workers() {
        for format in ["jsonl", "csv", "parquet"] {
            let one = render_all(format, 300, 1);
            assert!(one.1 > 0);
            for workers in [2, 3] {
                assert!(
                    one == render_all(format, 300, workers),
                    "{format} {workers}"
                );
            }
        }
    }
}

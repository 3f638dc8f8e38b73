//! `cairn import` and `cairn ingest`: files into the store, with progress, an error budget and
//! a quarantine file.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cairn_import::{CsvMapping, ImportOptions, RecordError};
use cairn_model::{Event, MessageDefaults, parse_message};
use indicatif::ProgressBar;

use crate::cli::{Format, ImportArgs, IngestArgs, open_store, progress_bar};

/// Records read per call into a source.
const READ_CHUNK: usize = 64 * 1024;
/// Parsed chunks the reader thread may run ahead by.
const READ_AHEAD: usize = 4;

#[derive(Debug, Default, serde::Serialize)]
struct FileReport {
    file: PathBuf,
    format: &'static str,
    records: u64,
    imported: u64,
    duplicates: u64,
    rejected: u64,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    quarantine: Option<PathBuf>,
}

pub fn run(dir: &Path, args: &ImportArgs) -> Result<()> {
    let reports = import_all(dir, args)?;
    if args.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "files": reports }))?
        );
    }
    Ok(())
}

/// Imports without printing a summary (for `cairn demo --format json`).
pub fn run_quiet(dir: &Path, args: &ImportArgs) -> Result<()> {
    import_all(dir, args).map(|_| ())
}

fn import_all(dir: &Path, args: &ImportArgs) -> Result<Vec<FileReport>> {
    tune_memory_for_import();
    let options = ImportOptions {
        mapping: CsvMapping {
            customer: args.customer.clone(),
            event: args.event.clone(),
            time: args.time.clone(),
            channel: args.channel.clone(),
            value: args.value.clone(),
            message_id: args.message_id.clone(),
        },
        default_channel: args.default_channel.clone(),
    };
    // Check every file can at least be opened before importing any, so a typo in the third
    // name does not leave the first two imported and the user wondering.
    for file in &args.files {
        cairn_import::Format::detect(file)?;
        std::fs::metadata(file).with_context(|| format!("{}: cannot read", file.display()))?;
    }
    let store = open_store(dir)?;
    let mut reports = Vec::new();
    for file in &args.files {
        let report = import_file(&store, dir, file, &options, args).with_context(|| {
            format!(
                "{}: not imported (nothing from this file was stored)",
                file.display()
            )
        })?;
        if args.format == Format::Table {
            println!(
                "{}: {} events imported, {} duplicates skipped, {} rejected in {:.2}s ({:.0} events/s){}",
                report.file.display(),
                report.imported,
                report.duplicates,
                report.rejected,
                report.seconds,
                report.records as f64 / report.seconds.max(1e-9),
                report
                    .quarantine
                    .as_ref()
                    .map(|q| format!("; rejected records in {}", q.display()))
                    .unwrap_or_default()
            );
        }
        reports.push(report);
    }
    Ok(reports)
}

fn file_bar(total: u64, file: &Path) -> ProgressBar {
    let bar = progress_bar(
        Some(total),
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}  {prefix}",
    );
    bar.set_message(
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar
}

fn import_file(
    store: &cairn_store::Store,
    dir: &Path,
    file: &Path,
    options: &ImportOptions,
    args: &ImportArgs,
) -> Result<FileReport> {
    let started = Instant::now();
    let source = cairn_import::open(file, options)?;
    let format = cairn_import::Format::detect(file)?.as_str();
    let bar = file_bar(source.progress().1, file);

    let mut chunks = Chunks::start(source);

    let mut report = FileReport {
        file: file.to_path_buf(),
        format,
        ..Default::default()
    };
    let mut quarantine: Option<(PathBuf, BufWriter<File>)> = None;
    let mut first_error: Option<RecordError> = None;
    let mut txn = store.import()?;
    txn.set_segment_events(args.chunk_events);
    while let Some(message) = chunks.next() {
        let mut parsed = message?;
        report.records += parsed.records;
        for err in parsed.errors.drain(..) {
            report.rejected += 1;
            if report.rejected > args.max_errors {
                drop(txn);
                bar.finish_and_clear();
                let more = if args.max_errors == 0 {
                    " (use --max-errors N to skip bad records)"
                } else {
                    ""
                };
                bail!(
                    "{err}\ntoo many bad records: more than --max-errors {}{more}",
                    args.max_errors
                );
            }
            write_quarantine(&mut quarantine, dir, file, args, &err)?;
            first_error.get_or_insert(err);
        }
        txn.add_chunk(&parsed.chunk)?;
        bar.set_position(parsed.progress.0);
        bar.set_prefix(format!("{} events", report.records));
        chunks.give_back(parsed);
    }
    chunks.finish()?;
    let outcome = txn.commit()?;
    report.imported = outcome.accepted;
    report.duplicates = outcome.duplicates;
    bar.finish_and_clear();
    if let Some((path, mut w)) = quarantine {
        w.flush()?;
        report.quarantine = Some(path);
    }
    if let Some(err) = first_error {
        eprintln!(
            "warning: {} bad record(s) skipped; the first: {err}",
            report.rejected
        );
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Files smaller than this on disk are read on the importing thread. A reader thread of its
/// own overlaps reading with writing, which pays for large files; for a small one there is
/// little to overlap, and the memory it frees (events, once in columns) is memory the other
/// thread cannot take for the segment, so every stage touched fresh pages. On this kind of VM
/// a fresh page after an idle moment costs ~20 µs of kernel time, more than the parsing.
const READ_INLINE_BELOW: u64 = 1 << 20;

/// Where a file's parsed chunks come from: a reader thread a few chunks ahead, or, for a
/// small file, this thread as they are asked for.
// One per imported file: the size of its larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Chunks {
    Inline {
        source: Box<dyn cairn_import::RecordSource>,
        spare: Option<Parsed>,
        done: bool,
    },
    Ahead {
        chunks: mpsc::Receiver<Result<Parsed>>,
        /// Chunks go back to the reader once added, so their buffers serve again.
        recycle: mpsc::Sender<Parsed>,
        reader: std::thread::JoinHandle<()>,
    },
}

impl Chunks {
    fn start(mut source: Box<dyn cairn_import::RecordSource>) -> Chunks {
        if source.progress().1 < READ_INLINE_BELOW {
            return Chunks::Inline {
                source,
                spare: None,
                done: false,
            };
        }
        let (tx, chunks) = mpsc::sync_channel::<Result<Parsed>>(READ_AHEAD);
        let (recycle, recycled) = mpsc::channel::<Parsed>();
        let reader = std::thread::spawn(move || {
            loop {
                let mut parsed = recycled.try_recv().unwrap_or_default();
                let message = match read_chunk(source.as_mut(), &mut parsed) {
                    Ok(false) => return,
                    Ok(true) => Ok(parsed),
                    Err(e) => Err(e),
                };
                let failed = message.is_err();
                if tx.send(message).is_err() || failed {
                    return;
                }
            }
        });
        Chunks::Ahead {
            chunks,
            recycle,
            reader,
        }
    }

    fn next(&mut self) -> Option<Result<Parsed>> {
        match self {
            Chunks::Inline {
                source,
                spare,
                done,
            } => {
                if *done {
                    return None;
                }
                let mut parsed = spare.take().unwrap_or_default();
                match read_chunk(source.as_mut(), &mut parsed) {
                    Ok(true) => Some(Ok(parsed)),
                    Ok(false) => {
                        *done = true;
                        None
                    }
                    Err(e) => {
                        *done = true;
                        Some(Err(e))
                    }
                }
            }
            Chunks::Ahead { chunks, .. } => chunks.recv().ok(),
        }
    }

    fn give_back(&mut self, parsed: Parsed) {
        match self {
            Chunks::Inline { spare, .. } => *spare = Some(parsed),
            Chunks::Ahead { recycle, .. } => {
                let _ = recycle.send(parsed);
            }
        }
    }

    fn finish(self) -> Result<()> {
        if let Chunks::Ahead { reader, .. } = self {
            // The reader thread only panics on a bug; surface it rather than import half a file.
            if reader.join().is_err() {
                bail!("the reader thread failed");
            }
        }
        Ok(())
    }
}

/// Reads the next chunk of `source` into `parsed` (its buffers reused): parsing and putting
/// events into columns. `Ok(false)` at the end of the file.
fn read_chunk(source: &mut dyn cairn_import::RecordSource, parsed: &mut Parsed) -> Result<bool> {
    let Some(items) = source.next_chunk(READ_CHUNK)? else {
        return Ok(false);
    };
    parsed.records = items.len() as u64;
    parsed.errors.clear();
    parsed.chunk.clear();
    for item in items {
        match item {
            Ok(event) => parsed.chunk.push(&event)?,
            Err(err) => parsed.errors.push(err),
        }
    }
    parsed.progress = source.progress();
    Ok(true)
}

/// One chunk of a file as the reader hands it over.
#[derive(Default)]
struct Parsed {
    /// Records read, good and bad.
    records: u64,
    chunk: cairn_store::EventChunk,
    errors: Vec<RecordError>,
    /// The source's progress after this chunk: (bytes done, bytes total).
    progress: (u64, u64),
}

fn write_quarantine(
    quarantine: &mut Option<(PathBuf, BufWriter<File>)>,
    dir: &Path,
    file: &Path,
    args: &ImportArgs,
    err: &RecordError,
) -> Result<()> {
    if quarantine.is_none() {
        let path = match &args.quarantine {
            Some(p) => p.clone(),
            None => {
                let q = dir.join("quarantine");
                std::fs::create_dir_all(&q)
                    .with_context(|| format!("cannot create {}", q.display()))?;
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "input".into());
                q.join(format!("{name}.rejected.jsonl"))
            }
        };
        let f = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot write the quarantine file {}", path.display()))?;
        *quarantine = Some((path, BufWriter::new(f)));
    }
    if let Some((_, w)) = quarantine {
        let line = serde_json::json!({
            "file": err.file,
            "line": err.location.line,
            "record": err.location.record,
            "field": err.field,
            "reason": err.reason,
            "raw": err.raw,
        });
        writeln!(w, "{line}")?;
    }
    Ok(())
}

pub fn ingest(dir: &Path, args: &IngestArgs) -> Result<()> {
    let input: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        let f = File::open(&args.file)
            .with_context(|| format!("{}: cannot open", args.file.display()))?;
        Box::new(BufReader::new(f))
    };
    let name = args.file.display().to_string();
    let store = open_store(dir)?;
    let mut batch = Vec::with_capacity(args.batch);
    let mut accepted = 0u64;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut send = |batch: &mut Vec<Event>, out: &mut std::io::StdoutLock| -> Result<()> {
        let outcome = store.append(std::mem::take(batch))?;
        accepted += outcome.accepted + outcome.duplicates;
        writeln!(out, "ack {accepted}")?;
        out.flush()?;
        Ok(())
    };
    for (i, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("{name}:{}: cannot read", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{name}:{}: not JSON", i + 1))?;
        let event = parse_message(&value, &MessageDefaults::default())
            .with_context(|| format!("{name}:{}", i + 1))?;
        batch.push(event);
        if batch.len() >= args.batch {
            send(&mut batch, &mut out)?;
        }
    }
    if !batch.is_empty() {
        send(&mut batch, &mut out)?;
    }
    store.flush()?;
    Ok(())
}

/// Import frees and allocates gigabytes in large buffers, chunk after chunk: like every
/// command but the server, it keeps the memory it frees until it ends and uses 4 KB pages (set
/// in `main`; a third of its CPU time went to page faults and zeroing before, and the 10 M-event
/// CSV import is no slower without huge pages, BENCHMARKS.md), and it commits arenas at once
/// (see `crate::memory`).
fn tune_memory_for_import() {
    crate::memory::commit_arenas_eagerly();
}

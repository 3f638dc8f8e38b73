//! XES (IEEE 1849): traces are customers, events are their interactions.
//!
//! A streaming pass with quick-xml: no DOM, no per-attribute allocation for values without
//! escapes. Events are held until their `</trace>` closes, because a trace's `concept:name`
//! (the customer id) and its other attributes (the traits) may come after some of its events;
//! a trace is small, so this costs little memory.
//!
//! # Windows
//!
//! quick-xml's buffered reader copies every tag into a buffer and pulls bytes through `BufRead`
//! in small steps, which made it twice as slow as its slice reader. So the file is read in
//! blocks of about [`BLOCK`] bytes and each block is parsed with the slice reader, zero-copy,
//! up to its last `<` (a cut there never splits a tag, as `<` cannot occur inside one); the
//! rest is carried into the next block. A comment or CDATA section holding a `<` may still
//! straddle a cut: the parser then reports an unclosed construct, and that part is parsed again
//! with a bigger block. Since each window gets a fresh parser, end tags are checked against
//! start tags here rather than by quick-xml.
//!
//! Lines are counted lazily over the block (only when an event starts or an error needs one),
//! and an event's raw text for the quarantine file is a slice of the block.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cairn_model::{Event, EventKind, Micros, parse_timestamp};
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event as XmlEvent};

use crate::ids::{IdMaker, Occurrences};
use crate::input::{self, Input, Progress, count_newlines};
use crate::json::{ObjectWriter, is_json_number};
use crate::{ImportError, ImportOptions, Location, RecordError, RecordSource};

const SNIFF: usize = 8 * 1024;
/// How much is read at a time.
const BLOCK: usize = 1 << 20;

/// The XES attribute types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttrKind {
    String,
    Date,
    Int,
    Float,
    Boolean,
    Id,
    List,
    Container,
}

impl AttrKind {
    fn of(tag: &str) -> Option<AttrKind> {
        Some(match tag {
            "string" => AttrKind::String,
            "date" => AttrKind::Date,
            "int" => AttrKind::Int,
            "float" => AttrKind::Float,
            "boolean" => AttrKind::Boolean,
            "id" => AttrKind::Id,
            "list" => AttrKind::List,
            "container" => AttrKind::Container,
            _ => return None,
        })
    }
}

/// An open element the reader is inside of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Log,
    Trace,
    Event,
    /// An attribute with children (meta attributes): they are flattened as `parent.child`.
    Attr {
        in_event: bool,
        prefix_len: usize,
    },
}

/// The event being read.
#[derive(Debug, Default)]
struct Current {
    name: Option<String>,
    time: Option<Result<Micros, String>>,
    channel: Option<String>,
    /// The numeric value, with the rank of the attribute it came from (value < revenue < amount).
    value: Option<(u8, f64)>,
    line: u64,
    record: u64,
    orphan: bool,
    props: ObjectWriter,
}

/// An event read, waiting for its trace to close.
#[derive(Debug)]
struct Pending {
    name: Option<String>,
    time: Option<Result<Micros, String>>,
    channel: Option<String>,
    value: Option<f64>,
    properties: Option<String>,
    location: Location,
    raw: Option<String>,
}

#[derive(Debug, Default)]
struct Trace {
    name: Option<String>,
    channel: Option<String>,
    traits: ObjectWriter,
}

/// Where parsing stands in the block buffer, and the stream the blocks come from.
struct Window {
    inner: Box<dyn Read + Send>,
    /// Parsed up to here.
    pos: usize,
    /// The parser may look at the block up to here (its last `<`, or its end at end of file).
    cut: usize,
    /// Newlines before `counted` in the file.
    newlines: u64,
    counted: usize,
    eof: bool,
    capture: Vec<u8>,
    /// Where the capture's part still in the block starts, while capturing.
    capture_from: Option<usize>,
}

impl Window {
    /// 1-based line of the byte at `at` in the block.
    fn line_at(&mut self, data: &[u8], at: usize) -> u64 {
        if at >= self.counted {
            self.newlines += count_newlines(&data[self.counted..at]);
            self.counted = at;
            self.newlines + 1
        } else {
            self.newlines + 1 - count_newlines(&data[at..self.counted])
        }
    }

    fn start_capture(&mut self, at: usize) {
        self.capture.clear();
        self.capture_from = Some(at);
    }

    fn stop_capture(&mut self, data: &[u8], end: usize) {
        if let Some(from) = self.capture_from.take() {
            self.capture.extend_from_slice(&data[from..end]);
        }
    }

    /// Drops the parsed part of the block and reads on, until the block holds a `<` past
    /// `min_cut` (relative to the new block start) or the stream ends.
    fn refill(&mut self, data: &mut Vec<u8>, min_cut: usize) -> io::Result<()> {
        let done = self.pos;
        // Settle the newline count at `done`, where the next block starts.
        if self.counted <= done {
            self.newlines += count_newlines(&data[self.counted..done]);
        } else {
            self.newlines -= count_newlines(&data[done..self.counted]);
        }
        if let Some(from) = self.capture_from {
            self.capture.extend_from_slice(&data[from..done]);
            self.capture_from = Some(0);
        }
        data.drain(..done);
        self.pos = 0;
        self.counted = 0;
        let mut target = BLOCK.max(min_cut + 1);
        loop {
            let mut filled = data.len();
            data.resize(target.max(filled), 0);
            while filled < target && !self.eof {
                match self.inner.read(&mut data[filled..]) {
                    Ok(0) => self.eof = true,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        data.truncate(filled);
                        return Err(e);
                    }
                }
            }
            data.truncate(filled);
            if self.eof {
                self.cut = data.len();
                return Ok(());
            }
            if let Some(cut) = data.iter().rposition(|&b| b == b'<')
                && cut > min_cut
            {
                self.cut = cut;
                return Ok(());
            }
            // One construct longer than the block: read on.
            target = data.len() * 2;
        }
    }
}

pub struct XesSource {
    /// The current block of the (decompressed) file.
    data: Vec<u8>,
    window: Window,
    gzip: bool,
    progress: Progress,
    state: State,
}

/// Everything the parse knows, apart from the bytes.
struct State {
    file: PathBuf,
    default_channel: String,
    /// Names of the open elements, for checking end tags: `names[name_ends[i-1]..name_ends[i]]`.
    names: String,
    name_ends: Vec<usize>,
    stack: Vec<Frame>,
    /// Depth inside an ignored subtree (`<global>`, log attributes, lists, unknown elements).
    skip: u32,
    /// Key prefix of nested attributes, `parent.` while inside `parent`'s children.
    prefix: String,
    /// Scratch space for a nested attribute's full key.
    key_buf: String,
    trace: Trace,
    current: Current,
    pending: Vec<Pending>,
    ready: VecDeque<Result<Event, RecordError>>,
    records: u64,
    occurrences: Occurrences,
    ids: IdMaker,
    seen_log: bool,
    done: bool,
}

impl XesSource {
    pub fn open(path: &Path, gz_name: bool, options: &ImportOptions) -> Result<Self, ImportError> {
        let (
            Input {
                reader,
                progress,
                gzip,
            },
            mut head,
        ) = input::open_text(path, gz_name, SNIFF, BLOCK)?;
        let filled = head.len();
        if head.starts_with(b"\xef\xbb\xbf") {
            head.drain(..3);
        }
        Ok(XesSource {
            data: head,
            window: Window {
                inner: reader,
                pos: 0,
                cut: 0,
                newlines: 0,
                counted: 0,
                eof: filled < SNIFF,
                capture: Vec::new(),
                capture_from: None,
            },
            gzip,
            progress,
            state: State {
                file: path.to_path_buf(),
                default_channel: crate::default_channel(options),
                names: String::new(),
                name_ends: Vec::new(),
                stack: Vec::with_capacity(8),
                skip: 0,
                prefix: String::new(),
                key_buf: String::new(),
                trace: Trace::default(),
                current: Current::default(),
                pending: Vec::new(),
                ready: VecDeque::new(),
                records: 0,
                occurrences: Occurrences::default(),
                ids: IdMaker::default(),
                seen_log: false,
                done: false,
            },
        })
    }

    /// Parses on until `max` records are ready, the window is used up, or the file ends.
    fn parse_window(&mut self, max: usize) -> Result<(), ImportError> {
        let win = &mut self.window;
        let state = &mut self.state;
        if win.pos >= win.cut {
            if win.eof && win.pos >= self.data.len() {
                return state.end_of_file(win, &self.data);
            }
            return win
                .refill(&mut self.data, 0)
                .map_err(|e| Input::read_error(self.gzip, &state.file, e));
        }
        let base = win.pos;
        let data = &self.data[..];
        let mut reader = quick_xml::Reader::from_reader(&data[base..win.cut]);
        // A fresh parser per window knows nothing of the tags opened before: `end_tag` checks.
        let config = reader.config_mut();
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        loop {
            let at = base + reader.buffer_position() as usize;
            if state.ready.len() >= max {
                win.pos = at;
                return Ok(());
            }
            let event = reader.read_event();
            let end = base + reader.buffer_position() as usize;
            match event {
                Ok(XmlEvent::Start(e)) => state.open_element(win, data, &e, at, end, false)?,
                Ok(XmlEvent::Empty(e)) => state.open_element(win, data, &e, at, end, true)?,
                Ok(XmlEvent::End(e)) => state.end_tag(win, data, e.name().as_ref(), at, end)?,
                Ok(XmlEvent::Eof) => {
                    win.pos = win.cut;
                    return Ok(());
                }
                Ok(_) => {}
                Err(quick_xml::Error::Syntax(_)) if !win.eof => {
                    // A construct running past the cut (a comment or CDATA holding a `<`):
                    // parse it again from its start, with more of the file.
                    let failed = base + reader.error_position() as usize;
                    let min_cut = win.cut - failed;
                    win.pos = failed;
                    return win
                        .refill(&mut self.data, min_cut)
                        .map_err(|e| Input::read_error(self.gzip, &state.file, e));
                }
                Err(e) => {
                    let at = base + reader.error_position() as usize;
                    let line = win.line_at(data, at);
                    return Err(state.malformed(Some(line), format!("not well-formed XML: {e}")));
                }
            }
        }
    }
}

impl State {
    fn malformed(&self, line: Option<u64>, reason: impl Into<String>) -> ImportError {
        ImportError::malformed(&self.file, line, reason)
    }

    fn end_of_file(&mut self, win: &mut Window, data: &[u8]) -> Result<(), ImportError> {
        self.done = true;
        let line = Some(win.line_at(data, data.len()));
        if let Some(&last) = self.name_ends.last() {
            let start = match self.name_ends.len() {
                1 => 0,
                n => self.name_ends[n - 2],
            };
            let open = &self.names[start..last];
            return Err(self.malformed(
                line,
                format!(
                    "unexpected end of file: <{open}> is not closed (the file may be truncated)"
                ),
            ));
        }
        if !self.seen_log {
            return Err(self.malformed(line, "not an XES file: no <log> element"));
        }
        Ok(())
    }

    /// An end tag: checked against the open element, then acted on.
    fn end_tag(
        &mut self,
        win: &mut Window,
        data: &[u8],
        name: &str,
        at: usize,
        end: usize,
    ) -> Result<(), ImportError> {
        let Some(last) = self.name_ends.pop() else {
            let line = Some(win.line_at(data, at));
            return Err(self.malformed(
                line,
                format!("not well-formed XML: </{name}> closes no open element"),
            ));
        };
        let start = self.name_ends.last().copied().unwrap_or(0);
        if &self.names[start..last] != name {
            let line = Some(win.line_at(data, at));
            let open = &self.names[start..last];
            return Err(self.malformed(
                line,
                format!("not well-formed XML: <{open}> is closed by </{name}>"),
            ));
        }
        self.names.truncate(start);
        self.close_element(win, data, end);
        Ok(())
    }

    fn open_element(
        &mut self,
        win: &mut Window,
        data: &[u8],
        e: &BytesStart<'_>,
        at: usize,
        end: usize,
        empty: bool,
    ) -> Result<(), ImportError> {
        if !empty {
            self.names.push_str(e.name().as_ref());
            self.name_ends.push(self.names.len());
        }
        if self.skip > 0 {
            if !empty {
                self.skip += 1;
            }
            return Ok(());
        }
        let local = e.local_name();
        let tag: &str = local.as_ref();
        let attribute = match self.stack.last().copied() {
            None => {
                if tag != "log" {
                    let line = Some(win.line_at(data, at));
                    return Err(self.malformed(
                        line,
                        format!("not an XES file: the root element is <{tag}>, expected <log>"),
                    ));
                }
                self.seen_log = true;
                if !empty {
                    self.stack.push(Frame::Log);
                }
                Ok(())
            }
            Some(Frame::Log) => match tag {
                "trace" => {
                    self.trace.name = None;
                    self.trace.channel = None;
                    self.trace.traits.clear();
                    self.occurrences.clear();
                    if empty {
                        self.finish_trace();
                    } else {
                        self.stack.push(Frame::Trace);
                    }
                    Ok(())
                }
                "event" => {
                    self.start_event(win, data, at, end, empty, true);
                    Ok(())
                }
                _ => {
                    self.skip_unless(empty);
                    Ok(())
                }
            },
            Some(Frame::Trace) => match (tag, AttrKind::of(tag)) {
                ("event", _) => {
                    self.start_event(win, data, at, end, empty, false);
                    Ok(())
                }
                (_, Some(kind)) => self.attribute(e, kind, empty, false),
                _ => {
                    self.skip_unless(empty);
                    Ok(())
                }
            },
            Some(Frame::Event) => match AttrKind::of(tag) {
                Some(kind) => self.attribute(e, kind, empty, true),
                None => {
                    self.skip_unless(empty);
                    Ok(())
                }
            },
            Some(Frame::Attr { in_event, .. }) => match AttrKind::of(tag) {
                Some(kind) => self.attribute(e, kind, empty, in_event),
                None => {
                    self.skip_unless(empty);
                    Ok(())
                }
            },
        };
        attribute.map_err(|reason| {
            let line = Some(win.line_at(data, at));
            self.malformed(line, format!("not well-formed XML: {reason}"))
        })
    }

    fn skip_unless(&mut self, empty: bool) {
        if !empty {
            self.skip = 1;
        }
    }

    fn close_element(&mut self, win: &mut Window, data: &[u8], end: usize) {
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        // End tags were checked against start tags, so the frame is this one.
        match self.stack.pop() {
            Some(Frame::Trace) => self.finish_trace(),
            Some(Frame::Event) => self.finish_event(win, data, end),
            Some(Frame::Attr { prefix_len, .. }) => self.prefix.truncate(prefix_len),
            Some(Frame::Log) | None => {}
        }
    }

    fn start_event(
        &mut self,
        win: &mut Window,
        data: &[u8],
        at: usize,
        end: usize,
        empty: bool,
        orphan: bool,
    ) {
        self.records += 1;
        let line = win.line_at(data, at);
        let c = &mut self.current;
        c.name = None;
        c.time = None;
        c.channel = None;
        c.value = None;
        c.orphan = orphan;
        c.record = self.records;
        c.line = line;
        c.props.clear();
        win.start_capture(at);
        if empty {
            self.finish_event(win, data, end);
        } else {
            self.stack.push(Frame::Event);
        }
    }

    fn finish_event(&mut self, win: &mut Window, data: &[u8], end: usize) {
        win.stop_capture(data, end);
        let c = &mut self.current;
        let orphan = c.orphan;
        let location = Location {
            line: Some(c.line),
            record: c.record,
        };
        let pending = Pending {
            name: c.name.take(),
            time: c.time.take(),
            channel: c.channel.take(),
            value: c.value.take().map(|(_, v)| v),
            properties: c.props.finish(),
            location,
            raw: None,
        };
        let needs_raw = orphan
            || self.trace.name.is_none()
            || pending.name.is_none()
            || !matches!(pending.time, Some(Ok(_)));
        let raw = needs_raw.then(|| String::from_utf8_lossy(&win.capture).into_owned());
        let pending = Pending { raw, ..pending };
        if orphan {
            let err = self.record_error(
                pending,
                "trace concept:name",
                "an <event> outside of any <trace> has no customer".into(),
            );
            self.ready.push_back(Err(err));
            return;
        }
        self.pending.push(pending);
    }

    fn record_error(&self, p: Pending, field: &str, reason: String) -> RecordError {
        RecordError {
            file: self.file.clone(),
            location: p.location,
            field: field.to_string(),
            reason,
            raw: p.raw,
        }
    }

    fn finish_trace(&mut self) {
        let traits = self.trace.traits.finish();
        let mut pending = std::mem::take(&mut self.pending);
        for p in pending.drain(..) {
            let result = self.build_event(p, traits.as_ref());
            self.ready.push_back(result);
        }
        self.pending = pending;
    }

    fn build_event(&mut self, p: Pending, traits: Option<&String>) -> Result<Event, RecordError> {
        let Some(customer) = self.trace.name.clone() else {
            return Err(self.record_error(
                p,
                "trace concept:name",
                "the trace has no concept:name attribute, so its events have no customer id".into(),
            ));
        };
        if p.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(self.record_error(
                p,
                "concept:name",
                "missing: every event needs a concept:name attribute (its activity)".into(),
            ));
        }
        let timestamp = match &p.time {
            Some(Ok(t)) => *t,
            Some(Err(reason)) => {
                let reason = reason.clone();
                return Err(self.record_error(p, "time:timestamp", reason));
            }
            None => {
                return Err(self.record_error(
                    p,
                    "time:timestamp",
                    "missing: every event needs a time:timestamp attribute".into(),
                ));
            }
        };
        let Pending {
            name,
            channel,
            value,
            properties,
            ..
        } = p;
        // Checked above to be there.
        let name = name.unwrap_or_default();
        let occurrence = self.occurrences.next(&customer, &name, timestamp);
        let message_id = self
            .ids
            .make("xes", &customer, &name, timestamp, occurrence);
        let channel = channel
            .or_else(|| self.trace.channel.clone())
            .unwrap_or_else(|| self.default_channel.clone());
        Ok(Event {
            message_id,
            kind: EventKind::Track,
            event: name,
            user_id: Some(customer),
            anonymous_id: None,
            timestamp,
            sent_at: None,
            received_at: None,
            channel,
            value,
            group_id: None,
            previous_id: None,
            properties,
            traits: traits.cloned(),
            context: None,
        })
    }

    /// An attribute element (`<string key=".." value=".."/>` and kin) of an event or trace.
    /// Fails with the reason when the element's XML attributes are malformed.
    fn attribute(
        &mut self,
        e: &BytesStart<'_>,
        kind: AttrKind,
        empty: bool,
        in_event: bool,
    ) -> Result<(), String> {
        if kind == AttrKind::List {
            // A list's items are positional and carry no usable keys: skip it.
            self.skip_unless(empty);
            return Ok(());
        }
        let (key, value) = key_value(e)?;
        let Some(key) = key else {
            // An attribute without a key cannot be named in JSON; its children neither.
            self.skip_unless(empty);
            return Ok(());
        };
        let top = self.prefix.is_empty();
        if let Some(value) = value.as_deref() {
            if in_event {
                self.event_attribute(kind, &key, value, top);
            } else {
                self.trace_attribute(kind, &key, value, top);
            }
        }
        if !empty {
            let prefix_len = self.prefix.len();
            self.prefix.push_str(&key);
            self.prefix.push('.');
            self.stack.push(Frame::Attr {
                in_event,
                prefix_len,
            });
        }
        Ok(())
    }

    fn event_attribute(&mut self, kind: AttrKind, key: &str, value: &str, top: bool) {
        let c = &mut self.current;
        if top {
            match key {
                "concept:name" => {
                    c.name = Some(value.to_string());
                    return;
                }
                "time:timestamp" => {
                    c.time = Some(parse_timestamp(value).map_err(|e| e.to_string()));
                    return;
                }
                "channel" => c.channel = Some(crate::channel_of(value)).filter(|c| !c.is_empty()),
                "value" | "revenue" | "amount" => {
                    let rank = match key {
                        "value" => 0,
                        "revenue" => 1,
                        _ => 2,
                    };
                    if let Ok(v) = value.trim().parse::<f64>()
                        && v.is_finite()
                        && c.value.is_none_or(|(r, _)| rank < r)
                    {
                        c.value = Some((rank, v));
                    }
                }
                _ => {}
            }
            c.props.key(key);
        } else {
            self.key_buf.clear();
            self.key_buf.push_str(&self.prefix);
            self.key_buf.push_str(key);
            c.props.key(&self.key_buf);
        }
        write_typed(&mut c.props, kind, value);
    }

    fn trace_attribute(&mut self, kind: AttrKind, key: &str, value: &str, top: bool) {
        let t = &mut self.trace;
        if top {
            if key == "concept:name" {
                t.name = Some(value.to_string()).filter(|n| !n.trim().is_empty());
                return;
            }
            if key == "channel" {
                t.channel = Some(crate::channel_of(value)).filter(|c| !c.is_empty());
            }
            t.traits.key(key);
        } else {
            self.key_buf.clear();
            self.key_buf.push_str(&self.prefix);
            self.key_buf.push_str(key);
            t.traits.key(&self.key_buf);
        }
        write_typed(&mut t.traits, kind, value);
    }
}

/// The `key` and `value` XML attributes of an attribute element.
type KeyValue<'a> = (Option<Cow<'a, str>>, Option<Cow<'a, str>>);

/// The `key` and `value` of an attribute element, unescaped (borrowed when nothing needed
/// unescaping).
fn key_value<'a>(e: &'a BytesStart<'_>) -> Result<KeyValue<'a>, String> {
    if let Some((key, value)) = key_value_plain(e.attributes_raw()) {
        return Ok((key.map(Cow::Borrowed), value.map(Cow::Borrowed)));
    }
    let mut key = None;
    let mut value = None;
    for attr in e.attributes().with_checks(false) {
        let attr = attr.map_err(|e| e.to_string())?;
        let slot = match attr.key.as_ref() {
            "key" => &mut key,
            "value" => &mut value,
            _ => continue,
        };
        *slot = Some(
            attr.normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?,
        );
    }
    Ok((key, value))
}

/// The fast path of [`key_value`], for the common case: well-formed `name="value"` pairs whose
/// values need no unescaping or whitespace normalisation. `None` sends anything else to
/// quick-xml's attribute parser, which also reports errors properly.
fn key_value_plain(raw: &str) -> Option<(Option<&str>, Option<&str>)> {
    // The shape nearly every XES writer uses.
    if let Some(rest) = raw.trim_start().strip_prefix("key=\"")
        && let Some((key, rest)) = until_quote(rest)
        && let Some(rest) = rest.trim_start().strip_prefix("value=\"")
        && let Some((value, rest)) = until_quote(rest)
        && rest.trim_end().trim_end_matches('/').is_empty()
        && plain(key)
        && plain(value)
    {
        return Some((Some(key), Some(value)));
    }
    let b = raw.as_bytes();
    let (mut key, mut value) = (None, None);
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() || (b[i] == b'/' && i + 1 == b.len()) {
            return Some((key, value));
        }
        let name_start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = &raw[name_start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let quote = *b.get(i).filter(|&&q| q == b'"' || q == b'\'')?;
        let start = i + 1;
        let len = b[start..].iter().position(|&c| c == quote)?;
        let text = &raw[start..start + len];
        if !plain(text) {
            return None;
        }
        match name {
            "key" => key = Some(text),
            "value" => value = Some(text),
            _ => {}
        }
        i = start + len + 1;
    }
}

/// `s` split at its first `"`, which is dropped. Values are short: a plain byte search beats
/// memchr's setup here.
fn until_quote(s: &str) -> Option<(&str, &str)> {
    let i = s.bytes().position(|c| c == b'"')?;
    Some((&s[..i], &s[i + 1..]))
}

/// True when an attribute value needs no unescaping or normalisation.
fn plain(text: &str) -> bool {
    !text
        .bytes()
        .any(|c| matches!(c, b'&' | b'<' | b'\t' | b'\n' | b'\r'))
}

/// Writes an attribute value as JSON: ints and floats as numbers, booleans as booleans,
/// everything else (and numbers that do not parse) as strings.
fn write_typed(w: &mut ObjectWriter, kind: AttrKind, value: &str) {
    match kind {
        AttrKind::Int | AttrKind::Float => {
            let v = value.trim();
            if is_json_number(v) {
                w.raw_value(v);
            } else if let Ok(i) = v.parse::<i64>() {
                w.i64_value(i);
            } else if let Ok(f) = v.parse::<f64>()
                && f.is_finite()
            {
                w.f64_value(f);
            } else {
                w.str_value(value);
            }
        }
        AttrKind::Boolean => {
            let v = value.trim();
            if v.eq_ignore_ascii_case("true") {
                w.bool_value(true);
            } else if v.eq_ignore_ascii_case("false") {
                w.bool_value(false);
            } else {
                w.str_value(value);
            }
        }
        _ => w.str_value(value),
    }
}

/// The most events one chunk holds. Every XES event carries all its attributes as properties
/// text, so a chunk of the caller's usual size (64 K records) was a whole small log held three
/// times over (events, their columns, the segment's columns); smaller chunks let the same
/// memory serve again (helpdesk.xes.gz touched 71 MB before, see BENCHMARKS.md).
const XES_CHUNK: usize = 8 * 1024;

impl RecordSource for XesSource {
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> Result<Option<Vec<Result<Event, RecordError>>>, ImportError> {
        let max = max.clamp(1, XES_CHUNK);
        while self.state.ready.len() < max && !self.state.done {
            self.parse_window(max)?;
        }
        let ready = &mut self.state.ready;
        if ready.is_empty() {
            return Ok(None);
        }
        if ready.len() <= max {
            // The usual case: hand the queue over whole (no copy of the events).
            return Ok(Some(Vec::from(std::mem::take(ready))));
        }
        Ok(Some(ready.drain(..max).collect()))
    }

    fn progress(&self) -> (u64, u64) {
        self.progress.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: AttrKind, v: &str) -> String {
        let mut w = ObjectWriter::default();
        w.key("k");
        write_typed(&mut w, kind, v);
        w.finish().unwrap()
    }

    #[test]
    fn plain_attributes_parse_fast_and_others_fall_back() {
        assert_eq!(
            key_value_plain(r#" key="concept:name" value='a b'"#),
            Some((Some("concept:name"), Some("a b")))
        );
        assert_eq!(
            key_value_plain(r#"  value = "v"  key="k" other="x" /"#),
            Some((Some("k"), Some("v")))
        );
        assert_eq!(key_value_plain(""), Some((None, None)));
        assert_eq!(key_value_plain(r#" key="a &amp; b""#), None);
        assert_eq!(key_value_plain(r#" key="unclosed"#), None);
        assert_eq!(key_value_plain(r#" key=bare"#), None);
        assert_eq!(key_value_plain(" key=\"line\nbreak\""), None);
    }

    #[test]
    fn typed_values_become_json() {
        assert_eq!(typed(AttrKind::Int, "42"), r#"{"k":42}"#);
        assert_eq!(typed(AttrKind::Int, "007"), r#"{"k":7}"#);
        assert_eq!(typed(AttrKind::Int, "many"), r#"{"k":"many"}"#);
        assert_eq!(typed(AttrKind::Float, "35.0"), r#"{"k":35.0}"#);
        assert_eq!(typed(AttrKind::Float, ".5"), r#"{"k":0.5}"#);
        assert_eq!(typed(AttrKind::Float, "NaN"), r#"{"k":"NaN"}"#);
        assert_eq!(typed(AttrKind::Boolean, "TRUE"), r#"{"k":true}"#);
        assert_eq!(typed(AttrKind::Date, "2020-01-01"), r#"{"k":"2020-01-01"}"#);
        assert_eq!(typed(AttrKind::String, "a\"b"), r#"{"k":"a\"b"}"#);
    }
}

//! The identifier texts of a graph, stored once per occurrence in one arena.
//!
//! A graph of ten million identifiers held as ten million [`Identifier`]s was ten million
//! small allocations and ~72 bytes an identifier, most of the builder's memory; on the VMs we
//! run on, touching fresh memory costs as much as the work itself. Here an occurrence costs
//! its text, a 4-byte kind number and an 8-byte end offset, and pushing one allocates nothing
//! once the buffers have grown. The builder records every identifier it meets as an
//! occurrence (it does not look up whether it has seen it before: that is a hash map miss per
//! identifier); resolution groups equal identifiers into one node and keeps, per node, the
//! number of one of its occurrences (see [`crate::graph`]).

use std::cmp::Ordering;

use crate::ident::IdKind;
#[cfg(test)]
use crate::ident::Identifier;

#[derive(Debug, Default)]
pub(crate) struct Idents {
    /// The distinct kinds seen; an occurrence's kind is an index into this list.
    kinds: Vec<IdKind>,
    /// The values, each tagged with its kind number.
    values: Texts,
}

impl Idents {
    /// The number of `kind` in [`Idents::kinds`], added when new.
    pub fn kind_number(&mut self, kind: &IdKind) -> u32 {
        match self.kinds.iter().position(|k| k == kind) {
            Some(k) => k as u32,
            None => {
                self.kinds.push(kind.clone());
                (self.kinds.len() - 1) as u32
            }
        }
    }

    /// The kinds by number.
    pub fn kinds(&self) -> &[IdKind] {
        &self.kinds
    }

    /// Adds an occurrence of kind number `kind` and returns its number.
    pub fn push(&mut self, kind: u32, value: &str) -> u32 {
        self.values.push(value, Some(kind))
    }

    /// The number of occurrences.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Occurrence `n`'s kind number.
    pub fn kind_number_of(&self, n: u32) -> u32 {
        self.values.tag(n)
    }

    pub fn kind(&self, n: u32) -> &IdKind {
        &self.kinds[self.values.tag(n) as usize]
    }

    pub fn value(&self, n: u32) -> &str {
        self.values.get(n)
    }

    /// Occurrence `n` as an owned identifier.
    #[cfg(test)]
    pub fn get(&self, n: u32) -> Identifier {
        Identifier::new(self.kind(n).clone(), self.value(n))
    }

    /// Occurrences in [`Identifier`]'s order (kind, then value), without building them.
    pub fn cmp(&self, a: u32, b: u32) -> Ordering {
        if a == b {
            return Ordering::Equal;
        }
        self.kind(a)
            .cmp(self.kind(b))
            .then_with(|| self.value(a).cmp(self.value(b)))
    }
}

/// Texts per chunk. A chunk's buffers are allocated at their full size when it starts, and
/// the list grows by adding chunks, never by copying all it holds into a buffer twice as big:
/// for ten million identifiers such growth copied hundreds of megabytes and touched as much
/// fresh memory again, which on our VMs costs as much as the work.
const CHUNK: usize = 1 << 16;

/// Strings back to back, numbered from 0, each with an optional 4-byte tag, in chunks.
#[derive(Debug, Default)]
pub(crate) struct Texts {
    chunks: Vec<Chunk>,
    len: usize,
}

#[derive(Debug)]
struct Chunk {
    text: String,
    /// Where each string ends in `text`.
    ends: Ends,
    /// Each string's tag, when tags are given.
    tags: Vec<u32>,
}

/// Where each string of a chunk ends: 4 bytes a string (ten million identifiers and as many
/// message ids: 110 MB less than 8), unless the chunk's text outgrows `u32` (strings of 64 KB
/// on average), from then on 8.
#[derive(Debug)]
enum Ends {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl Ends {
    fn get(&self, i: usize) -> usize {
        match self {
            Ends::Narrow(v) => v[i] as usize,
            Ends::Wide(v) => v[i] as usize,
        }
    }

    fn push(&mut self, end: usize) {
        match self {
            Ends::Narrow(v) => match u32::try_from(end) {
                Ok(end) => v.push(end),
                Err(_) => {
                    let mut wide: Vec<u64> = Vec::with_capacity(v.capacity().max(v.len() + 1));
                    wide.extend(v.iter().map(|&e| u64::from(e)));
                    wide.push(end as u64);
                    *self = Ends::Wide(wide);
                }
            },
            Ends::Wide(v) => v.push(end as u64),
        }
    }
}

impl Texts {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds a string (and its tag, if any) and returns its number.
    pub fn push(&mut self, value: &str, tag: Option<u32>) -> u32 {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Chunk {
                text: String::with_capacity(CHUNK * 16),
                ends: Ends::Narrow(Vec::with_capacity(CHUNK)),
                tags: Vec::with_capacity(if tag.is_some() { CHUNK } else { 0 }),
            });
        }
        let c = &mut self.chunks[self.len / CHUNK];
        c.text.push_str(value);
        c.ends.push(c.text.len());
        if let Some(tag) = tag {
            c.tags.push(tag);
        }
        self.len += 1;
        (self.len - 1) as u32
    }

    pub fn get(&self, n: u32) -> &str {
        let n = n as usize;
        let (c, i) = (&self.chunks[n / CHUNK], n % CHUNK);
        let start = if i == 0 { 0 } else { c.ends.get(i - 1) };
        &c.text[start..c.ends.get(i)]
    }

    /// The tag of string `n` (pushed with one).
    pub fn tag(&self, n: u32) -> u32 {
        let n = n as usize;
        self.chunks[n / CHUNK].tags[n % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrences_read_back_and_order_like_identifiers() {
        let ids = [
            Identifier::new(IdKind::Email, "b@x.com"),
            Identifier::new(IdKind::UserId, ""),
            Identifier::new(IdKind::External("crm_id".into()), "7"),
            Identifier::new(IdKind::Email, "a@x.com"),
            Identifier::new(IdKind::UserId, "42"),
        ];
        let mut store = Idents::default();
        for (i, id) in ids.iter().enumerate() {
            let k = store.kind_number(&id.kind);
            assert_eq!(store.push(k, &id.value), i as u32);
        }
        assert_eq!(store.kinds().len(), 3);
        assert_eq!(store.len(), ids.len());
        for (a, ia) in ids.iter().enumerate() {
            assert_eq!(&store.get(a as u32), ia);
            for (b, ib) in ids.iter().enumerate() {
                assert_eq!(store.cmp(a as u32, b as u32), ia.cmp(ib), "{ia} vs {ib}");
            }
        }
    }

    #[test]
    fn ends_widen_past_four_gigabytes() {
        let mut ends = Ends::Narrow(Vec::new());
        let big = u32::MAX as usize + 10;
        for end in [3, 7, u32::MAX as usize, big, big + 1] {
            ends.push(end);
        }
        assert!(matches!(ends, Ends::Wide(_)));
        let got: Vec<usize> = (0..5).map(|i| ends.get(i)).collect();
        assert_eq!(got, [3, 7, u32::MAX as usize, big, big + 1]);
    }

    #[test]
    fn texts_span_chunks() {
        let mut texts = Texts::default();
        let n = 3 * CHUNK as u32 + 5;
        for i in 0..n {
            assert_eq!(texts.push(&format!("v{i}"), Some(i % 7)), i);
        }
        assert_eq!(texts.len(), n as usize);
        for i in [
            0,
            1,
            CHUNK as u32 - 1,
            CHUNK as u32,
            2 * CHUNK as u32 + 3,
            n - 1,
        ] {
            assert_eq!(texts.get(i), format!("v{i}"));
            assert_eq!(texts.tag(i), i % 7);
        }
    }
}

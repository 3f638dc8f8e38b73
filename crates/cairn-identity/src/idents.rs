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
    kind_of: Vec<u32>,
    /// The values back to back; occurrence `n`'s ends at `ends[n]`.
    text: String,
    ends: Vec<u64>,
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
        self.kind_of.push(kind);
        self.text.push_str(value);
        self.ends.push(self.text.len() as u64);
        (self.ends.len() - 1) as u32
    }

    /// The number of occurrences.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Occurrence `n`'s kind number.
    pub fn kind_number_of(&self, n: u32) -> u32 {
        self.kind_of[n as usize]
    }

    pub fn kind(&self, n: u32) -> &IdKind {
        &self.kinds[self.kind_of[n as usize] as usize]
    }

    pub fn value(&self, n: u32) -> &str {
        let n = n as usize;
        let start = if n == 0 { 0 } else { self.ends[n - 1] as usize };
        &self.text[start..self.ends[n] as usize]
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
        for (a, ia) in ids.iter().enumerate() {
            assert_eq!(&store.get(a as u32), ia);
            for (b, ib) in ids.iter().enumerate() {
                assert_eq!(store.cmp(a as u32, b as u32), ia.cmp(ib), "{ia} vs {ib}");
            }
        }
    }
}

//! The identifiers of a graph, each stored once, by node number.
//!
//! A graph of ten million identifiers held as ten million [`Identifier`]s was ten million
//! small allocations and ~72 bytes an identifier, most of the builder's memory; on the VMs we
//! run on, touching fresh memory costs as much as the work itself. Here a node costs its
//! text, a 4-byte kind number and an 8-byte end offset, and pushing one allocates nothing
//! once the buffers have grown.

use std::cmp::Ordering;

use crate::ident::{IdKind, Identifier};

#[derive(Debug, Default)]
pub(crate) struct Idents {
    /// The distinct kinds seen; a node's kind is an index into this list.
    kinds: Vec<IdKind>,
    kind_of: Vec<u32>,
    /// The values back to back; node `n`'s ends at `ends[n]`.
    text: String,
    ends: Vec<u64>,
}

impl Idents {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Adds an identifier as the next node and returns its number.
    pub fn push(&mut self, kind: &IdKind, value: &str) -> u32 {
        let k = match self.kinds.iter().position(|k| k == kind) {
            Some(k) => k,
            None => {
                self.kinds.push(kind.clone());
                self.kinds.len() - 1
            }
        };
        self.kind_of.push(k as u32);
        self.text.push_str(value);
        self.ends.push(self.text.len() as u64);
        (self.ends.len() - 1) as u32
    }

    pub fn kind(&self, n: u32) -> &IdKind {
        &self.kinds[self.kind_of[n as usize] as usize]
    }

    pub fn value(&self, n: u32) -> &str {
        let n = n as usize;
        let start = if n == 0 { 0 } else { self.ends[n - 1] as usize };
        &self.text[start..self.ends[n] as usize]
    }

    /// Node `n` as an owned identifier.
    pub fn get(&self, n: u32) -> Identifier {
        Identifier::new(self.kind(n).clone(), self.value(n))
    }

    /// Nodes in [`Identifier`]'s order (kind, then value), without building them.
    pub fn cmp(&self, a: u32, b: u32) -> Ordering {
        self.kind(a)
            .cmp(self.kind(b))
            .then_with(|| self.value(a).cmp(self.value(b)))
    }

    /// `f(kind)` for every node's kind, computed once per distinct kind.
    pub fn per_node<T: Copy>(&self, f: impl Fn(&IdKind) -> T) -> Vec<T> {
        let per_kind: Vec<T> = self.kinds.iter().map(f).collect();
        self.kind_of.iter().map(|&k| per_kind[k as usize]).collect()
    }

    /// Whether node `n` is of `kind`.
    pub fn is(&self, n: u32, kind: &IdKind) -> bool {
        self.kind(n) == kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_read_back_and_order_like_identifiers() {
        let ids = [
            Identifier::new(IdKind::Email, "b@x.com"),
            Identifier::new(IdKind::UserId, ""),
            Identifier::new(IdKind::External("crm_id".into()), "7"),
            Identifier::new(IdKind::Email, "a@x.com"),
            Identifier::new(IdKind::UserId, "42"),
        ];
        let mut store = Idents::default();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(store.push(&id.kind, &id.value), i as u32);
        }
        assert_eq!(store.len(), ids.len());
        for (a, ia) in ids.iter().enumerate() {
            assert_eq!(&store.get(a as u32), ia);
            for (b, ib) in ids.iter().enumerate() {
                assert_eq!(store.cmp(a as u32, b as u32), ia.cmp(ib), "{ia} vs {ib}");
            }
        }
    }
}

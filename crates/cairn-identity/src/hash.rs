//! FxHash (rustc's hasher, from `rustc-hash`) for the graph's sets: building the graph hashes
//! every identifier of every event, and std's SipHash cost more than everything else there.
//! Keys are identifiers and node numbers, not values chosen to collide across a trust
//! boundary. (rustc-hash 2 rotates its result so hashbrown's low bucket bits are good even for
//! ids that differ only near their end, like "anon-17-2" and "anon-17-3".)

pub type FxSet<K> = rustc_hash::FxHashSet<K>;

/// Items grouped by a dense group number with a counting sort: the items of group `g` are
/// `items[starts[g]..starts[g + 1]]`, in the order they were given.
pub struct Groups {
    starts: Vec<u32>,
    items: Vec<u32>,
}

impl Groups {
    pub fn new(groups: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone) -> Groups {
        // No items (no conflicts, no store keys): no array of starts either, which would be
        // fresh memory for every node.
        if pairs.clone().next().is_none() {
            return Groups {
                starts: Vec::new(),
                items: Vec::new(),
            };
        }
        let mut counts = vec![0u32; groups];
        for (g, _) in pairs.clone() {
            counts[g as usize] += 1;
        }
        Groups::with_counts(counts, pairs)
    }

    /// The same given how many items each group has (`counts[g]` for group `g`).
    pub fn with_counts(counts: Vec<u32>, pairs: impl Iterator<Item = (u32, u32)>) -> Groups {
        let groups = counts.len();
        // The counts become the starts, in place.
        let mut starts = counts;
        let mut total = 0;
        for c in starts.iter_mut() {
            (*c, total) = (total, total + *c);
        }
        starts.push(total);
        let mut items = vec![0u32; total as usize];
        // Each group fills from its start, moving it along to its end (the next group's
        // start); then the starts are shifted back into place. No second array of starts.
        for (g, item) in pairs {
            let at = &mut starts[g as usize];
            items[*at as usize] = item;
            *at += 1;
        }
        starts.copy_within(0..groups, 1);
        starts[0] = 0;
        Groups { starts, items }
    }

    pub fn get(&self, group: u32) -> &[u32] {
        let g = group as usize;
        match (self.starts.get(g), self.starts.get(g + 1)) {
            (Some(&a), Some(&b)) => &self.items[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Number of groups with at least one item.
    pub fn non_empty(&self) -> usize {
        self.starts.windows(2).filter(|w| w[1] > w[0]).count()
    }
}

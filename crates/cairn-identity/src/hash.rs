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
        // Groups come in any order: each pair waits in a ring while its group's start is
        // fetched, and pairs are placed in the order they came.
        let place = |starts: &mut [u32], items: &mut [u32], (g, item): (u32, u32)| {
            let at = &mut starts[g as usize];
            items[*at as usize] = item;
            *at += 1;
        };
        let mut ring = [(0u32, 0u32); PREFETCH_AHEAD];
        let mut n = 0;
        for pair in pairs {
            prefetch(&starts[pair.0 as usize]);
            let slot = &mut ring[n % PREFETCH_AHEAD];
            if n >= PREFETCH_AHEAD {
                place(&mut starts, &mut items, *slot);
            }
            *slot = pair;
            n += 1;
        }
        for k in n.saturating_sub(PREFETCH_AHEAD)..n {
            place(&mut starts, &mut items, ring[k % PREFETCH_AHEAD]);
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

/// How many items ahead a loop over random places asks for the next ones' cache lines.
pub(crate) const PREFETCH_AHEAD: usize = 8;

/// Asks the processor to start loading `x`'s cache line (a hint: nothing else happens).
#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it reads nothing the program sees and cannot
    // fault, and `x` is a valid reference anyway. SSE is part of every x86_64 processor.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (x as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

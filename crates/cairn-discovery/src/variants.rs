//! Variants: whole journeys grouped by their exact sequence of events.
//!
//! Two customers share a variant when their journeys list the same event names in the same
//! order. For each variant: how many customers, their share, the median journey duration (first
//! to last event), the share that reached the goal event (when one is given) and the revenue
//! (sum of event values) of those journeys. Counts are checked against pm4py's
//! `get_variants` on the real logs in `testdata/`.
//!
//! With a goal, a journey's variant is what the customer did **before** the first goal event
//! (the whole journey when they never reached it), and its duration runs to the goal event. So
//! customers who did `a → b` and then converted share a variant with those who did `a → b` and
//! stopped, and the goal rate says how often that path led to the goal. (Over whole journeys it
//! could only be 0 or 1.) Revenue is always that of the whole journey.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use serde::Serialize;

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use crate::stats::quantile;
use crate::{Analysis, Micros, Needs, ScanSize, Timeline};

pub struct Variants {
    pub names: Vec<String>,
    /// How many variants the result lists (the most common first).
    pub top: usize,
    pub goal: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    pub events: Vec<String>,
    pub count: u64,
    /// Of all customers in scope.
    pub share: f64,
    pub median_duration_s: f64,
    /// Share of this variant's customers who then reached the goal; `null` without a goal.
    pub goal_rate: Option<f64>,
    /// Sum of the event values of this variant's journeys.
    pub revenue: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantsResult {
    pub customers: u64,
    pub total_variants: u64,
    /// The `top` most common, by descending count, ties by event names.
    pub variants: Vec<Variant>,
    /// Customers whose variant is not among the listed ones.
    pub other_customers: u64,
}

/// A sum of money kept exactly in millionths, so totals do not depend on the order in which
/// customers and partials are added (floating-point addition is not associative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Money(i128);

impl Money {
    pub fn of(t: &Timeline<'_>) -> Money {
        Money(
            t.values
                .iter()
                .filter(|v| v.is_finite())
                .map(|v| (v * 1e6).round() as i128)
                .sum(),
        )
    }
    pub fn add(&mut self, other: Money) {
        self.0 += other.0;
    }
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

pub struct VariantsPartial {
    /// Each variant's id, found by its hash and its events.
    by_seq: IdTable,
    /// The variants: this partial's block, then the blocks of the partials merged in, kept
    /// where they are rather than copied onto the end of this partial's (for 8 M customers,
    /// 120 MB of fresh memory written by the one thread merging). Ids number the blocks'
    /// variants one after another; new variants go to the last block.
    blocks: Vec<Block>,
    /// Journeys whose id-table slot, and then variant, are being fetched into the cache
    /// while the next journeys arrive (see [`AHEAD`]); oldest first.
    pending: VecDeque<Journey>,
    /// Every journey's variant id and duration, in two parallel lists: medians are only
    /// needed for the variants listed, so durations are sorted out at the end instead of each
    /// of hundreds of thousands of variants owning a vector.
    duration_of: Vec<u32>,
    durations: Vec<Micros>,
    /// The same two lists of each partial merged in, their ids renumbered into this one's,
    /// kept where they are like the blocks.
    merged_durations: Vec<(Vec<u32>, Vec<Micros>)>,
    customers: u64,
}

/// How many journeys a partial holds before it looks up the oldest one's variant. Among
/// millions of variants (3 M at 96 M events), finding one is two walks through memory the
/// caches do not hold: its id-table slot, then the variant. A journey's slot is asked of the
/// memory as it arrives, its variant halfway through the queue, and both are there when its
/// turn comes, fetched while other journeys were being read. 96 M-event variants 0.74× wall
/// and 0.72× CPU (7 rounds, after 3 GB was allocated and freed before each run), 12 M 1.03×
/// wall and 1.01× CPU (15 rounds, noise); 8 or 32 journeys ahead were 1.02× and 1.03× slower.
const AHEAD: usize = 16;

/// A journey waiting in [`VariantsPartial::pending`]: what counting it needs, its events
/// inline (journeys longer than [`INLINE`] are counted as they come).
struct Journey {
    hash: u32,
    len: u8,
    reached_goal: bool,
    events: [u16; INLINE],
    revenue: Money,
    duration: Micros,
}

impl Journey {
    fn seq(&self) -> &[u16] {
        &self.events[..usize::from(self.len)]
    }
}

/// Variants stored together, ids `first..first + variants.len()`, one cache line each.
#[derive(Default)]
struct Block {
    first: u32,
    variants: Vec<Stored>,
    /// The events of the variants too long to hold their own, back to back.
    long_events: Vec<u16>,
}

/// How many events a [`Stored`] variant holds itself.
const INLINE: usize = 16;

/// At most this many events of long journeys in one [`Block`] (their offsets are `u32`); a
/// few dozen in tests, so that they make new blocks as they add journeys.
const BLOCK_EVENTS: usize = if cfg!(test) { 40 } else { u32::MAX as usize };

/// One variant: its tallies and its events, in one cache line. Finding a customer's variant
/// among millions (3 M at 96 M events) is a walk through memory the caches do not hold:
/// after the id table, reading where the variant's events are, the events, and its tallies,
/// each elsewhere, cost a miss each; now it is this line (and, for journeys of more than
/// [`INLINE`] events, the events). 96 M-event variants 0.91× wall, 12 M 0.98×.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Stored {
    revenue: Money,
    /// Customers with this variant. A variant that a merge found in an earlier block has
    /// count 0 here (its counts went there).
    count: u32,
    /// Of those, the customers who reached the goal.
    goal: u32,
    len: u32,
    /// Where its events start in the block's `long_events`, when more than [`INLINE`].
    start: u32,
    inline: [u16; INLINE],
}

impl Block {
    /// The events of this block's `i`-th variant.
    fn seq(&self, i: usize) -> &[u16] {
        let v = &self.variants[i];
        let len = v.len as usize;
        match v.inline.get(..len) {
            Some(events) => events,
            None => {
                let start = v.start as usize;
                self.long_events.get(start..start + len).unwrap_or_default()
            }
        }
    }

    /// The id the next variant added here gets.
    fn next_id(&self) -> u32 {
        self.first + self.variants.len() as u32
    }

    /// Adds variant `seq` with no tallies yet.
    fn push(&mut self, seq: &[u16]) {
        let mut v = Stored {
            len: seq.len() as u32,
            ..Stored::default()
        };
        match v.inline.get_mut(..seq.len()) {
            Some(inline) => inline.copy_from_slice(seq),
            None => {
                v.start = self.long_events.len() as u32;
                self.long_events.extend_from_slice(seq);
            }
        }
        self.variants.push(v);
    }
}

/// A variant's hash: the high half of FxHash's (its best-mixed bits).
fn seq_hash(seq: &[u16]) -> u32 {
    use std::hash::BuildHasher;
    (rustc_hash::FxBuildHasher.hash_one(seq) >> 32) as u32
}

/// Asks the memory for the cache line at `p` without waiting for it.
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it reads nothing the program sees and never faults,
    // whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Variant ids by hash: open addressing with linear probing, each slot a variant's 32-bit
/// hash and its id + 1 (0 is an empty slot) in 8 bytes, so that a probe compares hashes
/// without leaving the slot's cache line and only a hash's match reads the variant. A slot's
/// place is its hash's top bits, so growing, and merging one table into another, walk both
/// in order. hashbrown's table, which it replaced, had no way to ask for a slot ahead of use.
struct IdTable {
    slots: Vec<u64>,
    /// 32 − log2 of the slots: a hash's top bits are its home slot.
    shift: u32,
    len: usize,
}

impl IdTable {
    fn new() -> IdTable {
        IdTable {
            slots: vec![0; 16],
            shift: 28,
            len: 0,
        }
    }

    fn home(&self, hash: u32) -> usize {
        (u64::from(hash) >> self.shift) as usize
    }

    fn next(&self, i: usize) -> usize {
        (i + 1) & (self.slots.len() - 1)
    }

    /// The table's `(hash, id)`s, in slot order.
    fn entries(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.slots
            .iter()
            .filter(|&&s| s != 0)
            .map(|&s| ((s >> 32) as u32, (s as u32).wrapping_sub(1)))
    }

    fn prefetch(&self, hash: u32) {
        prefetch(self.slots.as_ptr().wrapping_add(self.home(hash)));
    }

    /// The id of the first variant with hash `hash`, if any: the one worth fetching ahead.
    fn first_with(&self, hash: u32) -> Option<u32> {
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if (s >> 32) as u32 == hash {
                return Some((s as u32).wrapping_sub(1));
            }
            i = self.next(i);
        }
    }

    /// The id of the variant with hash `hash` for which `same` holds, or `None` after adding
    /// id `new` for it.
    fn find_or_insert(&mut self, hash: u32, same: impl Fn(u32) -> bool, new: u32) -> Option<u32> {
        self.reserve(1);
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == 0 {
                self.slots[i] = u64::from(hash) << 32 | u64::from(new + 1);
                self.len += 1;
                return None;
            }
            let id = (s as u32).wrapping_sub(1);
            if (s >> 32) as u32 == hash && same(id) {
                return Some(id);
            }
            i = self.next(i);
        }
    }

    /// Room for `more` ids, at most three quarters of the slots in use (linear probes stay
    /// short).
    fn reserve(&mut self, more: usize) {
        let need = self.len + more;
        if need * 4 <= self.slots.len() * 3 {
            return;
        }
        let mut size = self.slots.len();
        while need * 4 > size * 3 {
            size *= 2;
        }
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        self.shift = 32 - size.trailing_zeros().min(32);
        for s in old.into_iter().filter(|&s| s != 0) {
            let mut i = self.home((s >> 32) as u32);
            while self.slots[i] != 0 {
                i = self.next(i);
            }
            self.slots[i] = s;
        }
    }
}

/// The block holding variant `id`, and the variant's place in it.
fn locate(blocks: &[Block], id: u32) -> (usize, usize) {
    let b = blocks.partition_point(|b| b.first <= id).saturating_sub(1);
    (b, (id - blocks[b].first) as usize)
}

impl VariantsPartial {
    /// The events of variant `id`.
    fn seq(&self, id: u32) -> &[u16] {
        let (b, i) = locate(&self.blocks, id);
        self.blocks[b].seq(i)
    }

    fn stored(&self, id: u32) -> &Stored {
        let (b, i) = locate(&self.blocks, id);
        &self.blocks[b].variants[i]
    }

    fn stored_mut(&mut self, id: u32) -> &mut Stored {
        let (b, i) = locate(&self.blocks, id);
        &mut self.blocks[b].variants[i]
    }

    /// The id the next new variant gets.
    fn next_id(&self) -> u32 {
        self.blocks.last().map_or(0, Block::next_id)
    }

    /// The id of variant `seq` (whose hash is `hash`), adding it when new.
    fn index(&mut self, seq: &[u16], hash: u32) -> u32 {
        let new = self.next_id();
        let blocks = &self.blocks;
        let same = |id: u32| {
            let (b, i) = locate(blocks, id);
            blocks[b].seq(i) == seq
        };
        if let Some(id) = self.by_seq.find_or_insert(hash, same, new) {
            return id;
        }
        // A block's long journeys are found by `u32` offsets: a new block before they would
        // pass them.
        let full = |b: &Block| b.long_events.len() + seq.len() > BLOCK_EVENTS;
        if self.blocks.last().is_none_or(full) {
            self.blocks.push(Block {
                first: new,
                ..Block::default()
            });
        }
        let last = self.blocks.last_mut().expect("a block was just made");
        last.push(seq);
        new
    }

    /// Counts one journey of variant `seq`.
    fn count(&mut self, seq: &[u16], j: &Journey) {
        let i = self.index(seq, j.hash);
        let v = self.stored_mut(i);
        v.count += 1;
        v.goal += u32::from(j.reached_goal);
        v.revenue.add(j.revenue);
        self.duration_of.push(i);
        self.durations.push(j.duration);
    }

    /// Queues journey `j`, asking for its slot, and for the variant of the journey halfway
    /// through the queue, now; counts the oldest once the queue is full.
    fn queue(&mut self, j: Journey) {
        self.by_seq.prefetch(j.hash);
        self.pending.push_back(j);
        if let Some(half) = self.pending.get(self.pending.len().wrapping_sub(AHEAD / 2))
            && let Some(id) = self.by_seq.first_with(half.hash)
        {
            let (b, i) = locate(&self.blocks, id);
            prefetch(self.blocks[b].variants.as_ptr().wrapping_add(i));
        }
        if self.pending.len() > AHEAD
            && let Some(oldest) = self.pending.pop_front()
        {
            self.count(oldest.seq(), &oldest);
        }
    }

    /// Counts every queued journey.
    fn settle(&mut self) {
        while let Some(j) = self.pending.pop_front() {
            self.count(j.seq(), &j);
        }
    }

    /// Every variant's id, those a merge moved to an earlier block left out.
    fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.blocks.iter().flat_map(|b| {
            (b.first..b.next_id()).filter(move |&id| b.variants[(id - b.first) as usize].count > 0)
        })
    }
}

impl Analysis for Variants {
    type Partial = VariantsPartial;
    type Output = VariantsResult;

    fn needs(&self) -> Needs {
        Needs {
            values: true,
            ..Needs::default()
        }
    }

    fn partial(&self) -> VariantsPartial {
        self.partial_for(ScanSize::default())
    }

    /// Every list reserved for the whole scan: a variant per customer at most, and its events.
    /// Grown by doubling instead, they copied themselves into fresh memory at each step,
    /// which was a third of this analysis's time.
    fn partial_for(&self, size: ScanSize) -> VariantsPartial {
        let ScanSize { customers, events } = size;
        VariantsPartial {
            by_seq: IdTable::new(),
            blocks: vec![Block {
                first: 0,
                variants: Vec::with_capacity(customers),
                long_events: Vec::with_capacity(events),
            }],
            pending: VecDeque::with_capacity(AHEAD + 1),
            duration_of: Vec::with_capacity(customers),
            durations: Vec::with_capacity(customers),
            merged_durations: Vec::new(),
            customers: 0,
        }
    }

    fn add(&self, p: &mut VariantsPartial, t: &Timeline<'_>) {
        if t.is_empty() {
            return;
        }
        p.customers += 1;
        let goal_at = self.goal.and_then(|g| t.names.iter().position(|&n| n == g));
        let (seq, end) = match goal_at {
            Some(i) => (&t.names[..i], i),
            None => (t.names, t.len() - 1),
        };
        let mut j = Journey {
            hash: seq_hash(seq),
            len: 0,
            reached_goal: goal_at.is_some(),
            events: [0; INLINE],
            revenue: Money::of(t),
            duration: t.times[end] - t.times[0],
        };
        match j.events.get_mut(..seq.len()) {
            Some(events) => {
                events.copy_from_slice(seq);
                j.len = seq.len() as u8;
                p.queue(j);
            }
            None => p.count(seq, &j),
        }
    }

    fn merge(&self, into: &mut VariantsPartial, mut other: VariantsPartial) {
        into.settle();
        other.settle();
        into.customers += other.customers;
        // Other's blocks follow into's, their ids shifted past into's.
        let shift = into.next_id();
        let mut renumber = vec![u32::MAX; other.next_id() as usize];
        for mut block in other.blocks {
            block.first += shift;
            into.blocks.push(block);
        }
        // Room for all of other's at once: growing the table step by step while merging
        // hundreds of thousands of variants rehashed it several times into fresh memory.
        into.by_seq.reserve(other.by_seq.len);
        // In slot order, so into's table is walked in order too. Only variants in other's
        // table are counted there; the rest were moved by an earlier merge, and no journey
        // refers to them any more.
        for (hash, old) in other.by_seq.entries() {
            let id = old + shift;
            let blocks = &into.blocks;
            let (b, i) = locate(blocks, id);
            let seq = blocks[b].seq(i);
            let same = |found: u32| {
                let (fb, fi) = locate(blocks, found);
                blocks[fb].seq(fi) == seq
            };
            renumber[old as usize] = match into.by_seq.find_or_insert(hash, same, id) {
                None => id,
                Some(found) => {
                    let v = into.blocks[b].variants[i];
                    into.blocks[b].variants[i].count = 0;
                    let to = into.stored_mut(found);
                    to.count += v.count;
                    to.goal += v.goal;
                    to.revenue.add(v.revenue);
                    found
                }
            };
        }
        let lists = std::iter::once((other.duration_of, other.durations));
        for (mut of, durations) in lists.chain(other.merged_durations) {
            of.iter_mut().for_each(|i| *i = renumber[*i as usize]);
            into.merged_durations.push((of, durations));
        }
    }

    fn finish(&self, mut p: VariantsPartial) -> VariantsResult {
        p.settle();
        let names = &self.names;
        let count = |i: u32| u64::from(p.stored(i).count);
        // Only the top K need a full order, and only variants counted at least as often as
        // the K-th most common can be among them: picking those by count first spares the
        // selection comparing the event names of the many variants seen once. The K-th count
        // comes from a heap of the K largest, not from a list of every variant's id and
        // count: at 100 M events those lists were 50 MB of fresh memory for the one thread
        // that finishes, where the kernel's zeroing alone took a fifth of a second.
        let mut total = 0u64;
        // Grown as needed, not reserved for `top`: `--top` may ask for more than exist.
        let mut largest: BinaryHeap<Reverse<u64>> = BinaryHeap::new();
        for c in p.ids().map(count) {
            total += 1;
            if largest.len() < self.top {
                largest.push(Reverse(c));
            } else if let Some(mut smallest) = largest.peek_mut()
                && c > smallest.0
            {
                *smallest = Reverse(c);
            }
        }
        let kth = match largest.peek() {
            _ if self.top == 0 => u64::MAX,
            Some(&Reverse(c)) if largest.len() == self.top => c,
            _ => 0,
        };
        let mut all: Vec<u32> = p.ids().filter(|&i| count(i) >= kth).collect();
        let order = |&a: &u32, &b: &u32| -> Ordering {
            count(b).cmp(&count(a)).then_with(|| {
                p.seq(a)
                    .iter()
                    .map(|&i| names[i as usize].as_str())
                    .cmp(p.seq(b).iter().map(|&i| names[i as usize].as_str()))
            })
        };
        if self.top > 0 && self.top < all.len() {
            all.select_nth_unstable_by(self.top - 1, order);
            all.truncate(self.top);
        }
        all.sort_by(order);
        let shown: u64 = all.iter().map(|&v| count(v)).sum();
        // The durations of the listed variants, gathered in one pass: a bit per id says
        // whether it is listed, and only those look up where.
        let ids = p.blocks.last().map_or(0, Block::next_id) as usize;
        let mut listed = vec![0u64; ids.div_ceil(64)];
        let mut slot: HashMap<u32, usize, FxBuildHasher> = HashMap::default();
        for (k, &i) in all.iter().enumerate() {
            listed[i as usize / 64] |= 1 << (i % 64);
            slot.insert(i, k);
        }
        let mut durations: Vec<Vec<Micros>> = vec![Vec::new(); all.len()];
        let lists = std::iter::once((&p.duration_of, &p.durations));
        for (of, ds) in lists.chain(p.merged_durations.iter().map(|(o, d)| (o, d))) {
            for (&i, &d) in of.iter().zip(ds) {
                let is_listed = listed
                    .get(i as usize / 64)
                    .is_some_and(|w| w >> (i % 64) & 1 == 1);
                if is_listed && let Some(&k) = slot.get(&i) {
                    durations[k].push(d);
                }
            }
        }
        let variants = all
            .into_iter()
            .zip(&mut durations)
            .map(|(i, durations)| {
                let acc = *p.stored(i);
                let count = u64::from(acc.count);
                Variant {
                    events: p
                        .seq(i)
                        .iter()
                        .map(|&n| names[n as usize].clone())
                        .collect(),
                    count,
                    share: count as f64 / p.customers.max(1) as f64,
                    median_duration_s: quantile(durations, 0.5) / 1e6,
                    goal_rate: self.goal.map(|_| f64::from(acc.goal) / count as f64),
                    revenue: acc.revenue.to_f64(),
                }
            })
            .collect();
        VariantsResult {
            customers: p.customers,
            total_variants: total,
            variants,
            other_customers: p.customers - shown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run;
    use crate::testutil::{Owned, names};

    #[test]
    fn variants_sharing_a_hash_stay_apart() {
        let v = Variants {
            names: names(&["x", "y"]),
            top: 10,
            goal: None,
        };
        // One journey of `seq`, forced to one hash, as two different journeys could (in
        // theory) have.
        let journey = |p: &mut VariantsPartial, seq: &[u16]| {
            let i = p.index(seq, 7);
            p.stored_mut(i).count += 1;
            i
        };
        let mut p = v.partial();
        let (a, b, c) = (
            journey(&mut p, &[0, 1]),
            journey(&mut p, &[1, 0]),
            journey(&mut p, &[1]),
        );
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(
            (p.index(&[1, 0], 7), p.index(&[0, 1], 7), p.index(&[1], 7)),
            (1, 0, 2)
        );
        assert_eq!(p.seq(1), &[1, 0]);
        // A merge keeps them apart too.
        let mut q = v.partial();
        journey(&mut q, &[1]);
        journey(&mut q, &[0, 1]);
        v.merge(&mut q, p);
        // p's block follows q's (ids 2, 3, 4); its [0, 1] and [1] were q's already.
        assert_eq!((q.ids().count(), q.index(&[1, 0], 7)), (3, 3));
        let count = |id| q.stored(id).count;
        assert_eq!((count(0), count(1), count(3)), (2, 2, 1));
    }

    /// The partial of `journeys`.
    fn partial_of(v: &Variants, journeys: &[Owned]) -> VariantsPartial {
        let mut p = v.partial();
        for j in journeys {
            v.add(&mut p, &j.view());
        }
        p
    }

    /// Partials merged into one another in a chain (a merged partial, with blocks and moved
    /// variants, merged again), with journeys added after a merge, give what one pass gives.
    #[test]
    fn merges_of_merged_partials_keep_every_journey() {
        let v = Variants {
            names: names(&["x", "y", "z"]),
            top: 10,
            goal: None,
        };
        let journeys: Vec<Owned> = (0..40u32)
            .map(|c| {
                let n = 1 + (c % 4) as i64;
                let events: Vec<(u16, i64)> = (0..n)
                    .map(|j| (((c as i64 + j) % 3) as u16, j * (1 + c as i64 % 5)))
                    .collect();
                Owned::new(c, &events)
            })
            .collect();
        let part = |range: std::ops::Range<usize>| partial_of(&v, &journeys[range]);
        let (mut a, b, mut c, d) = (part(0..10), part(10..20), part(20..30), part(30..35));
        v.merge(&mut a, b);
        v.merge(&mut c, a);
        for j in &journeys[35..] {
            v.add(&mut c, &j.view());
        }
        v.merge(&mut c, d);
        assert!(c.blocks.len() >= 3);
        assert_eq!(v.finish(c), run(&v, journeys.iter().map(Owned::view)));
    }

    /// Journeys longer than a variant holds itself, enough to fill several blocks (a few
    /// dozen events each in tests), added and merged, give what one pass gives.
    #[test]
    fn long_journeys_fill_blocks_one_after_another() {
        let v = Variants {
            names: names(&["x", "y", "z"]),
            top: 100,
            goal: None,
        };
        let journeys: Vec<Owned> = (0..30u32)
            .map(|c| {
                let n = INLINE as i64 + 1 + (c % 7) as i64;
                let events: Vec<(u16, i64)> = (0..n)
                    .map(|j| (((c as i64 * j) % 3) as u16, j * (1 + c as i64 % 4)))
                    .collect();
                Owned::new(c, &events)
            })
            .collect();
        let (mut a, b) = (
            partial_of(&v, &journeys[..20]),
            partial_of(&v, &journeys[10..]),
        );
        assert!(a.blocks.len() > 5, "{} blocks", a.blocks.len());
        v.merge(&mut a, b);
        let twice: Vec<Owned> = journeys[..20]
            .iter()
            .chain(&journeys[10..])
            .cloned()
            .collect();
        let want = run(&v, twice.iter().map(Owned::view));
        assert_eq!(v.finish(a), want);
        assert!(want.variants.iter().any(|x| x.count == 2));
    }

    /// Far more journeys than the queue holds and variants than the id table starts with
    /// (so it grows several times), short and long, counted as a plain map counts them.
    #[test]
    fn queued_journeys_count_as_a_map_counts_them() {
        let v = Variants {
            names: names(&["x", "y", "z"]),
            top: usize::MAX,
            goal: None,
        };
        let journeys: Vec<Owned> = (0..3000u32)
            .map(|c| {
                // 1 to 20 events, the names the digits of `seed` in base 3: a thousand or
                // so sequences, most of them seen more than once.
                let seed = u64::from(c % 1499);
                let n = 1 + (seed % 20) as u32;
                let events: Vec<(u16, i64)> = (0..n)
                    .map(|j| {
                        (
                            (seed / 3u64.pow(j) % 3) as u16,
                            i64::from(j) * 60 + i64::from(c),
                        )
                    })
                    .collect();
                Owned::new(c, &events)
            })
            .collect();
        let mut want: HashMap<Vec<String>, u64> = HashMap::new();
        for j in &journeys {
            let seq = j.names.iter().map(|&n| v.names[n as usize].clone());
            *want.entry(seq.collect()).or_default() += 1;
        }
        let p = partial_of(&v, &journeys);
        assert!(p.by_seq.slots.len() > 256, "the table grew");
        let got = v.finish(p);
        assert_eq!(got.total_variants, want.len() as u64);
        assert_eq!(got.customers, journeys.len() as u64);
        for variant in &got.variants {
            assert_eq!(Some(&variant.count), want.get(&variant.events));
        }
        assert_eq!(got.variants.len(), want.len());
    }

    #[test]
    fn groups_whole_journeys() {
        let mut a = Owned::new(1, &[(0, 0), (1, 10)]);
        a.values = vec![f64::NAN, 20.5];
        let b = Owned::new(2, &[(0, 0), (1, 30)]);
        let c = Owned::new(3, &[(1, 0), (0, 5)]);
        let d = Owned::new(4, &[(0, 0)]);
        let mut v = Variants {
            names: names(&["x", "y"]),
            top: 1,
            goal: None,
        };
        let r = run(&v, [a.view(), b.view(), c.view(), d.view()]);
        assert_eq!(r.total_variants, 3);
        assert_eq!(r.customers, 4);
        assert_eq!(r.variants.len(), 1);
        let top = &r.variants[0];
        assert_eq!(top.events, ["x", "y"]);
        assert_eq!(top.count, 2);
        assert_eq!(top.median_duration_s, 20.0);
        assert_eq!(top.goal_rate, None);
        assert_eq!(top.revenue, 20.5);
        assert_eq!(r.other_customers, 2);
        // Any `--top` beyond the variants lists them all.
        v.top = usize::MAX;
        let all = run(&v, [a.view(), b.view(), c.view(), d.view()]);
        assert_eq!((all.variants.len(), all.other_customers), (3, 0));
        // With goal y: a and b did x before it, d did x and stopped, c reached y first.
        v.goal = Some(1);
        v.top = 10;
        let r = run(&v, [a.view(), b.view(), c.view(), d.view()]);
        assert_eq!(r.total_variants, 2);
        let x = &r.variants[0];
        assert_eq!((x.events.clone(), x.count), (vec!["x".to_string()], 3));
        assert!((x.goal_rate.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(x.median_duration_s, 10.0, "to the goal: 10, 30; d: 0");
        assert!(r.variants[1].events.is_empty());
        assert_eq!(r.variants[1].goal_rate, Some(1.0));
    }
}

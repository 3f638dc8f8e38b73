//! Funnels: how many customers go through a sequence of steps within a time window.
//!
//! A step is an event name with optional property conditions (`Order Completed[plan=pro]`).
//! Each customer gets a *level*: the number of steps they got through in one attempt. The
//! funnel reports, per step, the customers whose level reached at least that step, conversions,
//! drop-off, and the time from the previous step (mean, median, p90, histogram) along the
//! attempt that was counted.
//!
//! # Default mode
//!
//! Events are read in the store's order: by time, and events with the same timestamp in the
//! order the store received them.
//!
//! - **An attempt starts at a first-step event and must reach each later step within the
//!   window** measured from its start (`t(step k) - t(step 1) <= window`).
//! - **Steps happen in order.** An event advances an attempt only if it matches the attempt's
//!   next step; other events in between are ignored (see `strict` to forbid them).
//! - **One event advances an attempt by at most one step.** In a funnel `A, A, B` one `A` event
//!   cannot count as both `A` steps. (It may still start a new attempt while advancing an older
//!   one.)
//! - **A later first-step event restarts the window.** Every first-step event starts an
//!   attempt, and the customer's level is the best any attempt reaches. Of two attempts at the
//!   same step, only the later-started one can go further, so the engine keeps, per step, the
//!   latest attempt that reached it: linear time, exact.
//! - **Ties** (same timestamp) are ordered as received; an event at the same instant as the
//!   previous step but received after it does advance the attempt.
//! - **Counted attempt.** The step times reported are those of the attempt that set the
//!   customer's level (the first complete one when the customer converted).
//!
//! Worked example, steps `A, B, C`, window 1 h:
//!
//! | events | level | why |
//! |---|---|---|
//! | A@13:00, A@13:30, B@13:45, C@14:15 | 3 | the attempt started by A@13:30 reaches B (15 min) and C (45 min after its start); the attempt from 13:00 would have run out at 14:00 |
//! | A@13:00, B@13:45, C@14:15 | 2 | C comes 75 min after the only A |
//! | A@13:00, C@13:10, B@13:20 | 2 | C came before B: steps happen in order |
//! | B@13:00, A@13:10 | 1 | B before any A does not count |
//! | A@13:00, B@13:00 (B received after A) | 2 | a tie keeps the order received |
//!
//! For the first row the reported times are 15 min (A→B) and 30 min (B→C).
//!
//! # Other modes
//!
//! - `strict`: the steps must be consecutive events of the journey: any other event between
//!   two steps ends the attempt (a new first-step event may start another one).
//! - `any-order`: steps may happen in any order; a customer's level is the largest number of
//!   distinct steps done within one window. Step *k* of the result then counts customers who
//!   did at least *k* of the steps.
//! - `clickhouse`: ClickHouse's `windowFunnel(window)` in its default mode, reproduced exactly:
//!   timestamps are truncated to whole seconds (as with a `DateTime` column), events at the same
//!   second are taken in step order rather than arrival order, and one event may satisfy several
//!   consecutive steps at once (in `A, A, B`, a single `A` followed by `B` reaches level 3).
//!   Otherwise the state machine is ClickHouse's: per level, the start of the latest chain that
//!   reached it; a step-k event extends the level k-1 chain if it is within the window of that
//!   chain's start (inclusive).
//!
//! `--exclude EVENT`: an excluded event ends every attempt in progress, in every mode except
//! `clickhouse` (which has no such option). Steps reached before it still count.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::error::DiscoveryError;
use crate::hash::FxHashMap;
use crate::stats::{Bucket, Durations};
use crate::{Analysis, Micros, NameIndex, NameSet, Needs, Timeline, name_id};

/// Funnels have at most this many steps (one bit each in a `u32` mask).
pub const MAX_STEPS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FunnelMode {
    #[default]
    Default,
    Strict,
    AnyOrder,
    ClickHouse,
}

impl FunnelMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FunnelMode::Default => "default",
            FunnelMode::Strict => "strict",
            FunnelMode::AnyOrder => "any-order",
            FunnelMode::ClickHouse => "clickhouse",
        }
    }
}

impl Serialize for FunnelMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A step as written: an event name and property conditions, `NAME` or `NAME[key=value,...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpec {
    pub name: String,
    pub conditions: Vec<(String, String)>,
}

impl StepSpec {
    pub fn parse(s: &str) -> Result<StepSpec, DiscoveryError> {
        let bad = |reason: &str| DiscoveryError::BadStep {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        let Some(open) = s.find('[') else {
            if s.trim().is_empty() {
                return Err(bad("empty event name"));
            }
            return Ok(StepSpec {
                name: s.to_string(),
                conditions: Vec::new(),
            });
        };
        let name = s[..open].trim_end();
        let Some(inner) = s[open + 1..].strip_suffix(']') else {
            return Err(bad("conditions must end with ']', e.g. Checkout[plan=pro]"));
        };
        if name.is_empty() {
            return Err(bad("empty event name"));
        }
        let mut conditions = Vec::new();
        for part in inner.split(',') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(bad("a condition is KEY=VALUE, e.g. plan=pro"));
            };
            if k.trim().is_empty() {
                return Err(bad("empty property name in a condition"));
            }
            conditions.push((k.trim().to_string(), v.trim().to_string()));
        }
        Ok(StepSpec {
            name: name.to_string(),
            conditions,
        })
    }
}

impl fmt::Display for StepSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.conditions.is_empty() {
            let c: Vec<String> = self
                .conditions
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, "[{}]", c.join(","))?;
        }
        Ok(())
    }
}

/// What to split the funnel by, taken from the event that started the counted attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakdownBy {
    Channel,
    /// A property of the first-step event; values compare as text (strings without quotes,
    /// numbers and booleans as written in JSON).
    Property(String),
}

impl BreakdownBy {
    pub fn parse(s: &str) -> Option<BreakdownBy> {
        if s == "channel" {
            return Some(BreakdownBy::Channel);
        }
        let p = s.strip_prefix("property:")?;
        (!p.is_empty()).then(|| BreakdownBy::Property(p.to_string()))
    }
}

/// What a funnel request asks for, by name; [`Funnel::new`] resolves it against the name table.
#[derive(Debug, Clone, Default)]
pub struct FunnelSpec {
    pub steps: Vec<StepSpec>,
    pub window: Micros,
    pub mode: FunnelMode,
    pub exclude: Vec<String>,
    pub breakdown: Option<BreakdownBy>,
}

pub struct Funnel {
    labels: Vec<String>,
    /// Per step, its property conditions.
    conditions: Vec<Vec<(String, String)>>,
    /// Per name id, the steps it can match (bit k = step k); at least 256 ids long, so that a
    /// one-byte name index needs no bounds check (see [`Funnel::level_by_names`]).
    step_mask: Vec<u32>,
    /// Steps with property conditions.
    conditional: u32,
    excluded: Vec<bool>,
    /// Per name id: whether a step has it or it is excluded (the events the modes look at).
    named: Vec<bool>,
    /// Per step, the [`NameSet`] bits of the names it has.
    step_bits: Vec<u64>,
    /// Whether name sets tell exactly which names a customer has (see [`NameSet::is_exact`]).
    exact_sets: bool,
    window: Micros,
    mode: FunnelMode,
    breakdown: Option<BreakdownBy>,
    channels: Vec<String>,
    /// Any-order mode: per step, its requirement (steps with the same spec share one) and
    /// per requirement, how many steps ask for it.
    requirement: Vec<usize>,
    multiplicity: Vec<u32>,
}

/// One customer's result: how far they got, and the events of the counted attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub level: usize,
    /// `chain[k]` is the index (in the timeline) of the event that made step k, for k < level.
    pub chain: [u32; MAX_STEPS],
}

impl Outcome {
    const NONE: Outcome = Outcome {
        level: 0,
        chain: [0; MAX_STEPS],
    };
}

impl Funnel {
    pub fn new(
        names: &[String],
        channels: Vec<String>,
        spec: FunnelSpec,
    ) -> Result<Funnel, DiscoveryError> {
        let n = spec.steps.len();
        if n == 0 || n > MAX_STEPS {
            return Err(DiscoveryError::StepCount {
                got: n,
                max: MAX_STEPS,
            });
        }
        if spec.mode == FunnelMode::ClickHouse && !spec.exclude.is_empty() {
            return Err(DiscoveryError::Unsupported {
                what: "--exclude".into(),
                with: "--mode clickhouse (windowFunnel has no exclusions)".into(),
            });
        }
        let mut step_mask = vec![0u32; names.len().max(256)];
        let mut conditional = 0u32;
        let mut requirement = Vec::with_capacity(n);
        let mut multiplicity: Vec<u32> = Vec::new();
        for (k, s) in spec.steps.iter().enumerate() {
            let id = name_id(names, &s.name)?;
            step_mask[id as usize] |= 1 << k;
            if !s.conditions.is_empty() {
                conditional |= 1 << k;
            }
            match spec.steps[..k].iter().position(|p| p == s) {
                Some(j) => {
                    let r = requirement[j];
                    requirement.push(r);
                    multiplicity[r] += 1;
                }
                None => {
                    requirement.push(multiplicity.len());
                    multiplicity.push(1);
                }
            }
        }
        let mut excluded = vec![false; names.len()];
        for e in &spec.exclude {
            let id = name_id(names, e)? as usize;
            excluded[id] = true;
            // Every mode checks exclusion first: an excluded event is never a step.
            step_mask[id] = 0;
        }
        let named = step_mask
            .iter()
            .zip(&excluded)
            .map(|(&m, &x)| m != 0 || x)
            .collect();
        let step_bits = (0..n)
            .map(|k| {
                let has = step_mask
                    .iter()
                    .enumerate()
                    .filter(|&(_, m)| m >> k & 1 != 0);
                has.fold(0, |bits, (id, _)| bits | NameSet::bit(id))
            })
            .collect();
        Ok(Funnel {
            labels: spec.steps.iter().map(|s| s.to_string()).collect(),
            conditions: spec.steps.into_iter().map(|s| s.conditions).collect(),
            step_mask,
            conditional,
            excluded,
            named,
            step_bits,
            exact_sets: NameSet::is_exact(names.len()),
            window: spec.window,
            mode: spec.mode,
            breakdown: spec.breakdown,
            channels,
            requirement,
            multiplicity,
        })
    }

    fn steps(&self) -> usize {
        self.labels.len()
    }

    /// The steps event `i` matches.
    fn matches(&self, t: &Timeline<'_>, i: usize) -> u32 {
        let mut m = self
            .step_mask
            .get(t.names[i] as usize)
            .copied()
            .unwrap_or(0);
        if m & self.conditional != 0 {
            let props = t
                .properties
                .get(i)
                .and_then(|p| serde_json::from_str::<serde_json::Map<String, Value>>(p).ok());
            let mut c = m & self.conditional;
            while c != 0 {
                let k = c.trailing_zeros() as usize;
                c &= c - 1;
                let ok = props.as_ref().is_some_and(|p| {
                    self.conditions[k]
                        .iter()
                        .all(|(key, want)| p.get(key).is_some_and(|v| value_text(v) == *want))
                });
                if !ok {
                    m &= !(1 << k);
                }
            }
        }
        m
    }

    fn is_excluded(&self, name: u16) -> bool {
        self.excluded.get(name as usize).copied().unwrap_or(false)
    }

    /// How far one customer got, and along which events.
    pub fn evaluate(&self, t: &Timeline<'_>) -> Outcome {
        self.evaluate_with(t, &mut Scratch::default())
    }

    /// [`Funnel::evaluate`] reusing buffers across customers.
    pub fn evaluate_with(&self, t: &Timeline<'_>, scratch: &mut Scratch) -> Outcome {
        match self.mode {
            FunnelMode::Default => self.ordered(t, scratch),
            FunnelMode::Strict => self.strict(t),
            FunnelMode::AnyOrder => self.any_order(t, scratch),
            FunnelMode::ClickHouse => self.clickhouse(t, scratch),
        }
    }

    /// Default mode. `chains[k]` holds the latest-started attempt that reached step k.
    fn ordered(&self, t: &Timeline<'_>, scratch: &mut Scratch) -> Outcome {
        let s = self.steps();
        let mut reached = [false; MAX_STEPS];
        let found = self.find_named(t, &mut scratch.named);
        let chains = chains(&mut scratch.chains);
        let mut best = Outcome::NONE;
        for &(i, _) in &scratch.named[..found] {
            let i = i as usize;
            if self.is_excluded(t.names[i]) {
                keep_best(&mut best, &reached, chains, s);
                reached = [false; MAX_STEPS];
                continue;
            }
            let m = self.matches(t, i);
            if m == 0 {
                continue;
            }
            // Highest step first, so the event extends each attempt by one step only: the
            // update of step k reads step k-1 as it was before this event.
            for k in (0..s).rev() {
                if m & (1 << k) == 0 {
                    continue;
                }
                if k == 0 {
                    reached[0] = true;
                    chains[0][0] = i as u32;
                    continue;
                }
                if !reached[k - 1] {
                    continue;
                }
                let start = t.times[chains[k - 1][0] as usize];
                if t.times[i] - start > self.window {
                    continue;
                }
                let prev = chains[k - 1];
                chains[k][..k].copy_from_slice(&prev[..k]);
                chains[k][k] = i as u32;
                reached[k] = true;
                if k + 1 == s {
                    return Outcome {
                        level: s,
                        chain: chains[k],
                    };
                }
            }
        }
        keep_best(&mut best, &reached, chains, s);
        best
    }

    fn strict(&self, t: &Timeline<'_>) -> Outcome {
        let s = self.steps();
        let mut cur = Outcome::NONE;
        let mut best = Outcome::NONE;
        for i in 0..t.len() {
            if self.is_excluded(t.names[i]) {
                better(&mut best, &cur);
                cur.level = 0;
                continue;
            }
            let m = self.matches(t, i);
            let next = cur.level;
            if next > 0
                && m & (1 << next) != 0
                && t.times[i] - t.times[cur.chain[0] as usize] <= self.window
            {
                cur.chain[next] = i as u32;
                cur.level += 1;
                if cur.level == s {
                    return cur;
                }
            } else {
                better(&mut best, &cur);
                cur.level = 0;
                if m & 1 != 0 {
                    cur.level = 1;
                    cur.chain[0] = i as u32;
                    if s == 1 {
                        return cur;
                    }
                }
            }
        }
        better(&mut best, &cur);
        best
    }

    fn any_order(&self, t: &Timeline<'_>, scratch: &mut Scratch) -> Outcome {
        let s = self.steps();
        let reqs = self.multiplicity.len();
        // Matching events as (index, requirement mask).
        let events = &mut scratch.events;
        events.clear();
        let mut best: Option<(usize, usize, usize)> = None; // (distinct, lo, hi) into `events`
        let mut counts = vec![0u32; reqs];
        let mut distinct = 0usize;
        let mut lo = 0usize;
        let add = |counts: &mut [u32], distinct: &mut usize, mask: u32, sign: bool| {
            let mut m = mask;
            while m != 0 {
                let r = m.trailing_zeros() as usize;
                m &= m - 1;
                if sign {
                    counts[r] += 1;
                    if counts[r] <= self.multiplicity[r] {
                        *distinct += 1;
                    }
                } else {
                    if counts[r] <= self.multiplicity[r] {
                        *distinct -= 1;
                    }
                    counts[r] -= 1;
                }
            }
        };
        for i in 0..t.len() {
            if self.is_excluded(t.names[i]) {
                // Nothing before an excluded event can combine with anything after it.
                for e in &events[lo..] {
                    add(&mut counts, &mut distinct, e.1, false);
                }
                lo = events.len();
                continue;
            }
            let m = self.matches(t, i);
            if m == 0 {
                continue;
            }
            let mut rmask = 0u32;
            let mut mm = m;
            while mm != 0 {
                let k = mm.trailing_zeros() as usize;
                mm &= mm - 1;
                rmask |= 1 << self.requirement[k];
            }
            events.push((i as u32, rmask));
            let hi = events.len() - 1;
            add(&mut counts, &mut distinct, rmask, true);
            while t.times[i] - t.times[events[lo].0 as usize] > self.window {
                add(&mut counts, &mut distinct, events[lo].1, false);
                lo += 1;
            }
            if best.is_none_or(|b| distinct > b.0) {
                best = Some((distinct, lo, hi));
            }
            if distinct == s {
                break;
            }
        }
        let Some((_, lo, hi)) = best else {
            return Outcome::NONE;
        };
        // Replay the best window to find the event that completed each level.
        let mut out = Outcome::NONE;
        let mut counts = vec![0u32; reqs];
        let mut distinct = 0usize;
        for e in &events[lo..=hi] {
            let before = distinct;
            add(&mut counts, &mut distinct, e.1, true);
            for _ in before..distinct {
                out.chain[out.level] = e.0;
                out.level += 1;
            }
        }
        out
    }

    /// ClickHouse `windowFunnel` default mode (see the module docs).
    ///
    /// ClickHouse takes (second, step) pairs in sorted order. Events come in time order, so the
    /// pairs are already sorted unless one second holds steps out of order: the events are
    /// run through the state machine as they come, and only a customer with such a second is
    /// done again from sorted pairs ([`Funnel::clickhouse_sorted`]). That spares most
    /// customers the pairs buffer, which was most of this mode's time.
    fn clickhouse(&self, t: &Timeline<'_>, scratch: &mut Scratch) -> Outcome {
        let s = self.steps();
        let mut levels = WindowLevels::new(self.window.div_euclid(1_000_000));
        let found = self.find_named(t, &mut scratch.named);
        let chains = chains(&mut scratch.chains);
        // The last (second, step) taken: the next must not sort before it.
        let mut last = (i64::MIN, 0u32);
        for &(i, m) in &scratch.named[..found] {
            let i = i as usize;
            let mut m = self.with_conditions(t, i, m);
            if m == 0 {
                continue;
            }
            let Some(&time) = t.times.get(i) else {
                break;
            };
            let sec = time.div_euclid(1_000_000);
            if (sec, m.trailing_zeros()) < last {
                return self.clickhouse_sorted(t, scratch);
            }
            while m != 0 {
                let k = m.trailing_zeros() as usize;
                m &= m - 1;
                last = (sec, k as u32);
                // A chain reaching the last step (beyond the first) ends the search.
                if levels.take(chains, k, sec, i as u32) && k > 0 && k + 1 == s {
                    // Done, unless a later event of this second sorts before this step.
                    if self.sorts_before(t, i + 1, sec, k as u32) {
                        return self.clickhouse_sorted(t, scratch);
                    }
                    return Outcome {
                        level: s,
                        chain: chains[k],
                    };
                }
            }
        }
        levels.furthest(chains, s)
    }

    /// A customer's level when their event names alone settle it (in any order), which they
    /// do below level 2: level 1 needs nothing but a first-step event, in every mode, while
    /// level 2 depends on times (a window, an order). So without any event named as the
    /// second step (in any-order mode: without events of two different steps), the level is
    /// 1 with an event named as the first step, else 0. Such a customer has no time to
    /// convert to record, and about half of all customers are one in a typical funnel: their
    /// times need not be decoded. Not with conditions on steps (they need properties) or a
    /// breakdown (it needs the first-step event's channel or properties).
    ///
    /// The customer's [`NameSet`], where exact, answers without reading the names.
    fn level_by_names<N: NameIndex>(&self, names: &[N], set: Option<NameSet>) -> Option<usize> {
        if self.conditional != 0 || self.breakdown.is_some() {
            return None;
        }
        let present = match set {
            Some(set) if self.exact_sets => self.steps_in(set),
            _ => self.steps_named(names)?,
        };
        let ones = present.count_ones() as usize;
        match self.mode {
            FunnelMode::AnyOrder => (ones <= 1).then_some(ones),
            _ => (present & 0b10 == 0).then_some((present & 1) as usize),
        }
    }

    /// The steps (a bit each) whose names are in `set`, an exact set.
    fn steps_in(&self, set: NameSet) -> u32 {
        let bits = self.step_bits.iter().enumerate();
        bits.fold(0, |steps, (k, &b)| steps | u32::from(set.meets(b)) << k)
    }

    /// The steps (a bit each) whose names are among `names`.
    fn steps_named<N: NameIndex>(&self, names: &[N]) -> Option<u32> {
        let narrow: &[u32; 256] = self.step_mask.first_chunk()?;
        let mut present = 0u32;
        for &n in names {
            let n: usize = n.into();
            // Always in the first 256 for one-byte indexes, a lookup without a branch.
            let m = narrow.get(n).or_else(|| self.step_mask.get(n));
            present |= m.copied().unwrap_or(0);
        }
        Some(present)
    }

    /// Puts the indexes of the events whose name a step has or is excluded at the start of
    /// `named`; returns how many there are. Without a branch per event: about half of a
    /// journey's events have such a name, so "does this one?" was a coin toss for the branch
    /// predictor on every event, and only these events need the state machine.
    ///
    /// Each comes with the steps its name has (before any property condition): looked up
    /// here, where the events are independent of one another, rather than in the state
    /// machine's loop, where it was one more load to wait for after the event's index and
    /// name.
    fn find_named(&self, t: &Timeline<'_>, named: &mut Vec<(u32, u32)>) -> usize {
        if named.len() < t.names.len() {
            named.resize(t.names.len(), (0, 0));
        }
        let mut found = 0;
        for (i, &n) in t.names.iter().enumerate() {
            let n = n as usize;
            named[found] = (i as u32, self.step_mask.get(n).copied().unwrap_or(0));
            found += usize::from(self.named.get(n).copied().unwrap_or(false));
        }
        found
    }

    /// The steps (a bit each) event `i`, named `n`, matches. Most events match no step: one
    /// table lookup decides, before any other work; conditions are checked only for events
    /// whose name some conditional step has.
    fn steps_matched(&self, t: &Timeline<'_>, i: usize, n: u16) -> u32 {
        let m = self.step_mask.get(n as usize).copied().unwrap_or(0);
        self.with_conditions(t, i, m)
    }

    /// The steps of `m` (those of event `i`'s name) whose conditions event `i` meets.
    fn with_conditions(&self, t: &Timeline<'_>, i: usize, m: u32) -> u32 {
        if m & self.conditional != 0 {
            self.matches(t, i)
        } else {
            m
        }
    }

    /// Whether an event from `from` on, in second `sec`, matches a step below `k`.
    fn sorts_before(&self, t: &Timeline<'_>, from: usize, sec: i64, k: u32) -> bool {
        for (i, &time) in t.times.iter().enumerate().skip(from) {
            if time.div_euclid(1_000_000) != sec {
                return false;
            }
            let m = self.matches(t, i);
            if m != 0 && m.trailing_zeros() < k {
                return true;
            }
        }
        false
    }

    /// [`Funnel::clickhouse`] from pairs sorted as ClickHouse sorts them.
    fn clickhouse_sorted(&self, t: &Timeline<'_>, scratch: &mut Scratch) -> Outcome {
        let s = self.steps();
        let window = self.window.div_euclid(1_000_000);
        // (second, step, event index), ordered by second then step as ClickHouse sorts its
        // (timestamp, event level) pairs; the sort is stable so equal pairs keep event order.
        let pairs = &mut scratch.pairs;
        pairs.clear();
        for (i, (&n, &time)) in t.names.iter().zip(t.times).enumerate() {
            let mut m = self.steps_matched(t, i, n);
            let sec = time.div_euclid(1_000_000);
            while m != 0 {
                let k = m.trailing_zeros() as u8;
                m &= m - 1;
                pairs.push((sec, k, i as u32));
            }
        }
        pairs.sort_by_key(|&(sec, k, _)| (sec, k));
        let mut levels = WindowLevels::new(window);
        let chains = chains(&mut scratch.chains);
        for &(sec, k, i) in pairs.iter() {
            let k = k as usize;
            if levels.take(chains, k, sec, i) && k > 0 && k + 1 == s {
                return Outcome {
                    level: s,
                    chain: chains[k],
                };
            }
        }
        levels.furthest(chains, s)
    }

    fn breakdown_key(&self, t: &Timeline<'_>, o: &Outcome) -> String {
        let i = o.chain[0] as usize;
        match &self.breakdown {
            None => String::new(),
            Some(BreakdownBy::Channel) => t
                .channels
                .get(i)
                .and_then(|&c| self.channels.get(c as usize))
                .cloned()
                .unwrap_or_else(|| "(none)".into()),
            Some(BreakdownBy::Property(key)) => t
                .properties
                .get(i)
                .and_then(|p| serde_json::from_str::<serde_json::Map<String, Value>>(p).ok())
                .and_then(|p| p.get(key).map(value_text))
                .unwrap_or_else(|| "(none)".into()),
        }
    }
}

fn keep_best(
    best: &mut Outcome,
    reached: &[bool; MAX_STEPS],
    chains: &[[u32; MAX_STEPS]],
    s: usize,
) {
    if let Some(k) = (0..s).rev().find(|&k| reached[k])
        && k + 1 > best.level
    {
        *best = Outcome {
            level: k + 1,
            chain: chains[k],
        };
    }
}

fn better(best: &mut Outcome, cur: &Outcome) {
    if cur.level > best.level {
        *best = *cur;
    }
}

/// Whether the JSON object text `props` has every `(key, value)` of `conditions`.
pub(crate) fn properties_match(props: &str, conditions: &[(String, String)]) -> bool {
    let Ok(p) = serde_json::from_str::<serde_json::Map<String, Value>>(props) else {
        return false;
    };
    conditions
        .iter()
        .all(|(key, want)| p.get(key).is_some_and(|v| value_text(v) == *want))
}

/// A JSON value as text for comparisons: strings without quotes, anything else as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Per-step tallies of one group of customers.
#[derive(Debug, Clone, Default)]
pub struct StepsAcc {
    /// `by_level[l]`: customers whose level is exactly `l` (0..=steps).
    by_level: Vec<u64>,
    /// `times[k]`: for customers who reached step k (k >= 1), time from step k-1. Kept as
    /// [`Durations`] (4 bytes a sample below 71 minutes, in chunks), not a growing `Vec` of
    /// 8-byte samples: on this VM the fresh memory each doubling touched cost more than the
    /// funnel's own evaluation, and merged profiles record more steps.
    times: Vec<Durations>,
}

impl StepsAcc {
    fn new(steps: usize) -> StepsAcc {
        StepsAcc {
            by_level: vec![0; steps + 1],
            times: vec![Durations::default(); steps],
        }
    }

    fn add(&mut self, t: &Timeline<'_>, o: &Outcome) {
        self.by_level[o.level] += 1;
        for k in 1..o.level {
            let dt = t.times[o.chain[k] as usize] - t.times[o.chain[k - 1] as usize];
            self.times[k].push(dt);
        }
    }

    fn merge(&mut self, other: StepsAcc) {
        for (a, b) in self.by_level.iter_mut().zip(other.by_level) {
            *a += b;
        }
        for (a, b) in self.times.iter_mut().zip(other.times) {
            a.append(b);
        }
    }
}

/// Buffers a funnel reuses from customer to customer (one per scan thread), so evaluating a
/// customer allocates nothing and clears no more than it uses.
#[derive(Default)]
pub struct Scratch {
    /// `chains[k]`: events of the attempt kept for step k; read only where `reached[k]`.
    chains: Vec<[u32; MAX_STEPS]>,
    /// The events whose name a step has or is excluded, as (index, steps of the name); see
    /// `find_named`.
    named: Vec<(u32, u32)>,
    pairs: Vec<(i64, u8, u32)>,
    events: Vec<(u32, u32)>,
}

/// ClickHouse `windowFunnel`'s state: for each step reached, the second of the first step of
/// its chain; `chains[k]` holds the events of that chain.
struct WindowLevels {
    first: [Option<i64>; MAX_STEPS],
    /// The window in seconds.
    window: i64,
}

impl WindowLevels {
    fn new(window: i64) -> WindowLevels {
        WindowLevels {
            first: [None; MAX_STEPS],
            window,
        }
    }

    /// Event `i`, in second `sec`, as step `k`: a first step starts a chain; a later one
    /// extends the chain of the step before it while within the window. Whether it did.
    fn take(&mut self, chains: &mut [[u32; MAX_STEPS]], k: usize, sec: i64, i: u32) -> bool {
        if k == 0 {
            self.first[0] = Some(sec);
            chains[0][0] = i;
            return true;
        }
        match self.first[k - 1] {
            Some(f) if sec <= f + self.window => {
                self.first[k] = Some(f);
                chains[k] = chains[k - 1];
                chains[k][k] = i;
                true
            }
            _ => false,
        }
    }

    /// The furthest step reached, with its chain.
    fn furthest(&self, chains: &[[u32; MAX_STEPS]], steps: usize) -> Outcome {
        match (0..steps).rev().find(|&k| self.first[k].is_some()) {
            Some(k) => Outcome {
                level: k + 1,
                chain: chains[k],
            },
            None => Outcome::NONE,
        }
    }
}

/// The chains buffer, grown to its full size on first use.
fn chains(v: &mut Vec<[u32; MAX_STEPS]>) -> &mut [[u32; MAX_STEPS]] {
    if v.len() < MAX_STEPS {
        v.resize(MAX_STEPS, [0; MAX_STEPS]);
    }
    v
}

pub struct FunnelPartial {
    scratch: Scratch,
    all: StepsAcc,
    groups: FxHashMap<String, StepsAcc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    pub name: String,
    /// Customers who reached at least this step.
    pub customers: u64,
    pub conversion_from_previous: f64,
    pub conversion_from_first: f64,
    /// Customers who reached the previous step but not this one.
    pub drop_off: u64,
    /// Time from the previous step (`null` for the first step).
    pub median_s: Option<f64>,
    pub mean_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub histogram: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakdownGroup {
    pub value: String,
    pub steps: Vec<StepResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelResult {
    pub mode: FunnelMode,
    pub window_s: f64,
    /// Customers in scope (whether they entered the funnel or not).
    pub customers: u64,
    pub steps: Vec<StepResult>,
    /// `customers_by_max_level[l]`: customers whose furthest step is `l` (0 = never entered).
    pub customers_by_max_level: Vec<u64>,
    /// Present with a breakdown: one funnel per value of the first-step event, by descending
    /// first-step customers. Customers who never entered belong to no group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Vec<BreakdownGroup>>,
}

impl Analysis for Funnel {
    type Partial = FunnelPartial;
    type Output = FunnelResult;

    fn needs(&self) -> Needs {
        Needs {
            channels: self.breakdown == Some(BreakdownBy::Channel),
            values: false,
            properties: self.conditional != 0
                || matches!(self.breakdown, Some(BreakdownBy::Property(_))),
        }
    }

    fn partial(&self) -> FunnelPartial {
        FunnelPartial {
            all: StepsAcc::new(self.steps()),
            groups: FxHashMap::default(),
            scratch: Scratch::default(),
        }
    }

    fn add(&self, p: &mut FunnelPartial, t: &Timeline<'_>) {
        if t.is_empty() {
            return;
        }
        let o = self.evaluate_with(t, &mut p.scratch);
        p.all.add(t, &o);
        if self.breakdown.is_some() && o.level > 0 {
            let key = self.breakdown_key(t, &o);
            p.groups
                .entry(key)
                .or_insert_with(|| StepsAcc::new(self.steps()))
                .add(t, &o);
        }
    }

    fn add_by_names<N: NameIndex>(
        &self,
        p: &mut FunnelPartial,
        names: &[N],
        set: Option<NameSet>,
    ) -> bool {
        if names.is_empty() {
            return true;
        }
        match self.level_by_names(names, set) {
            Some(level) => {
                p.all.by_level[level] += 1;
                true
            }
            None => false,
        }
    }

    fn merge(&self, into: &mut FunnelPartial, other: FunnelPartial) {
        into.all.merge(other.all);
        for (k, v) in other.groups {
            match into.groups.get_mut(&k) {
                Some(acc) => acc.merge(v),
                None => {
                    into.groups.insert(k, v);
                }
            }
        }
    }

    fn finish(&self, p: FunnelPartial) -> FunnelResult {
        let customers = p.all.by_level.iter().sum();
        let by_level = p.all.by_level.clone();
        let breakdown = self.breakdown.as_ref().map(|_| {
            let mut groups: Vec<BreakdownGroup> = p
                .groups
                .into_iter()
                .map(|(value, acc)| BreakdownGroup {
                    value,
                    steps: self.step_results(acc),
                })
                .collect();
            groups.sort_by(|a, b| {
                b.steps[0]
                    .customers
                    .cmp(&a.steps[0].customers)
                    .then_with(|| a.value.cmp(&b.value))
            });
            groups
        });
        FunnelResult {
            mode: self.mode,
            window_s: self.window as f64 / 1e6,
            customers,
            steps: self.step_results(p.all),
            customers_by_max_level: by_level,
            breakdown,
        }
    }
}

impl Funnel {
    fn step_results(&self, acc: StepsAcc) -> Vec<StepResult> {
        let s = self.steps();
        // Customers reaching at least step k = those whose level is above k.
        let reached: Vec<u64> = (0..s).map(|k| acc.by_level[k + 1..].iter().sum()).collect();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        // Step 0 has no time to convert: its list is empty.
        let summaries = crate::each_on_cores(
            &acc.times,
            |times| times.len(),
            |times| (times.summarize(), times.histogram()),
        );
        summaries
            .into_iter()
            .enumerate()
            .map(|(k, (sum, histogram))| {
                let prev = if k == 0 { reached[0] } else { reached[k - 1] };
                StepResult {
                    name: self.labels[k].clone(),
                    customers: reached[k],
                    conversion_from_previous: ratio(reached[k], prev),
                    conversion_from_first: ratio(reached[k], reached[0]),
                    drop_off: prev - reached[k],
                    median_s: sum.median_s,
                    mean_s: sum.mean_s,
                    p90_s: sum.p90_s,
                    histogram: if k == 0 { Vec::new() } else { histogram },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Owned, names};

    const H: i64 = 3600;

    fn funnel(mode: FunnelMode, steps: &[&str], window: i64) -> Funnel {
        Funnel::new(
            &names(&["A", "B", "C", "X"]),
            vec!["web".into()],
            FunnelSpec {
                steps: steps.iter().map(|s| StepSpec::parse(s).unwrap()).collect(),
                window: window * 1_000_000,
                mode,
                ..FunnelSpec::default()
            },
        )
        .unwrap()
    }

    /// Events as (name id, seconds since 13:00).
    fn level(f: &Funnel, events: &[(u16, i64)]) -> usize {
        f.evaluate(&Owned::new(1, events).view()).level
    }

    const A: u16 = 0;
    const B: u16 = 1;
    const C: u16 = 2;
    const X: u16 = 3;

    #[test]
    fn name_sets_settle_levels_only_when_exact() {
        let spec = || FunnelSpec {
            steps: vec![
                StepSpec::parse("n1").unwrap(),
                StepSpec::parse("n2").unwrap(),
            ],
            window: H * 1_000_000,
            mode: FunnelMode::ClickHouse,
            ..FunnelSpec::default()
        };
        let few: Vec<String> = (0..64).map(|i| format!("n{i}")).collect();
        let many: Vec<String> = (0..70).map(|i| format!("n{i}")).collect();
        let exact = Funnel::new(&few, vec![], spec()).unwrap();
        let inexact = Funnel::new(&many, vec![], spec()).unwrap();
        // Name 65 shares its bit with name 1, the first step: only the names tell them apart.
        let set = |ids: &[u16]| Some(NameSet::of(ids));
        assert_eq!(inexact.level_by_names(&[65u16], set(&[65])), Some(0));
        assert_eq!(inexact.level_by_names(&[1u16], set(&[1])), Some(1));
        assert_eq!(exact.level_by_names(&[1u16, 5], set(&[1, 5])), Some(1));
        assert_eq!(exact.level_by_names(&[5u16], set(&[5])), Some(0));
        // The set alone answers where it is exact: these names are not read.
        assert_eq!(exact.level_by_names(&[0u16], set(&[1])), Some(1));
        assert_eq!(exact.level_by_names(&[1u16], set(&[1, 2])), None);
        assert_eq!(exact.level_by_names(&[1u16], None), Some(1));
    }

    #[test]
    fn worked_examples_default() {
        let f = funnel(FunnelMode::Default, &["A", "B", "C"], H);
        let ex = [(A, 0), (A, 30 * 60), (B, 45 * 60), (C, 75 * 60)];
        let o = f.evaluate(&Owned::new(1, &ex).view());
        assert_eq!(o.level, 3);
        assert_eq!(
            &o.chain[..3],
            &[1, 2, 3],
            "the attempt from A@13:30 is counted"
        );
        assert_eq!(level(&f, &[(A, 0), (B, 45 * 60), (C, 75 * 60)]), 2);
        assert_eq!(level(&f, &[(A, 0), (C, 600), (B, 1200)]), 2);
        assert_eq!(level(&f, &[(B, 0), (A, 600)]), 1);
        assert_eq!(level(&f, &[(A, 0), (B, 0)]), 2);
        assert_eq!(
            level(&f, &[(B, 0), (A, 0)]),
            1,
            "a tie keeps the order received"
        );
        assert_eq!(level(&f, &[(X, 0)]), 0);
        // The window is inclusive.
        assert_eq!(level(&f, &[(A, 0), (B, 10), (C, H)]), 3);
        assert_eq!(level(&f, &[(A, 0), (B, 10), (C, H + 1)]), 2);
    }

    #[test]
    fn one_event_advances_one_step() {
        let f = funnel(FunnelMode::Default, &["A", "A", "B"], H);
        assert_eq!(level(&f, &[(A, 0), (B, 10)]), 1);
        assert_eq!(level(&f, &[(A, 0), (A, 5), (B, 10)]), 3);
        let ch = funnel(FunnelMode::ClickHouse, &["A", "A", "B"], H);
        assert_eq!(
            level(&ch, &[(A, 0), (B, 10)]),
            3,
            "ClickHouse lets one event fill both"
        );
    }

    #[test]
    fn clickhouse_orders_ties_by_step() {
        let ch = funnel(FunnelMode::ClickHouse, &["A", "B", "C"], H);
        assert_eq!(level(&ch, &[(B, 0), (A, 0)]), 2);
        // Same second after truncation.
        let mut o = Owned::new(1, &[(B, 0), (A, 0)]);
        o.times = vec![5_000_900, 5_000_100];
        o.times.sort();
        o.names = vec![B, A];
        assert_eq!(ch.evaluate(&o.view()).level, 2);
        assert_eq!(
            level(&ch, &[(A, 0), (A, 30 * 60), (B, 45 * 60), (C, 75 * 60)]),
            3
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Taking events as they come gives what sorted pairs give, whatever the ties.
        #[test]
        fn clickhouse_as_events_come_equals_sorted_pairs(
            events in proptest::collection::vec((0u16..4, 0i64..20_000), 0..14),
            repeat in proptest::bool::ANY,
        ) {
            // A repeated step lets one event make two steps.
            let steps: &[&str] = if repeat { &["A", "A", "B", "C"] } else { &["A", "B", "C"] };
            let ch = funnel(FunnelMode::ClickHouse, steps, 5);
            let mut o = Owned::new(1, &[]);
            let mut events = events;
            events.sort_by_key(|e| e.1);
            o.names = events.iter().map(|e| e.0).collect();
            o.times = events.iter().map(|e| e.1 * 1_000).collect();
            let mut scratch = Scratch::default();
            let got = ch.clickhouse(&o.view(), &mut scratch);
            let want = ch.clickhouse_sorted(&o.view(), &mut scratch);
            proptest::prop_assert_eq!(got.level, want.level);
            proptest::prop_assert_eq!(&got.chain[..got.level], &want.chain[..want.level]);
        }
    }

    #[test]
    fn strict_and_any_order() {
        let s = funnel(FunnelMode::Strict, &["A", "B", "C"], H);
        assert_eq!(level(&s, &[(A, 0), (B, 1), (X, 2), (C, 3)]), 2);
        assert_eq!(level(&s, &[(A, 0), (X, 1), (A, 2), (B, 3), (C, 4)]), 3);
        let a = funnel(FunnelMode::AnyOrder, &["A", "B", "C"], H);
        assert_eq!(level(&a, &[(C, 0), (B, 1), (A, 2)]), 3);
        assert_eq!(level(&a, &[(C, 0), (B, 1), (A, H + 1)]), 2);
        let dup = funnel(FunnelMode::AnyOrder, &["A", "A", "B"], H);
        assert_eq!(level(&dup, &[(A, 0), (B, 1)]), 2);
        assert_eq!(level(&dup, &[(A, 0), (B, 1), (A, 2)]), 3);
    }

    #[test]
    fn exclusion_ends_attempts() {
        let f = Funnel::new(
            &names(&["A", "B", "C", "X"]),
            vec!["web".into()],
            FunnelSpec {
                steps: ["A", "B", "C"].map(|s| StepSpec::parse(s).unwrap()).into(),
                window: H * 1_000_000,
                exclude: vec!["X".into()],
                ..FunnelSpec::default()
            },
        )
        .unwrap();
        assert_eq!(level(&f, &[(A, 0), (B, 1), (X, 2), (C, 3)]), 2);
        assert_eq!(level(&f, &[(A, 0), (X, 1), (A, 2), (B, 3), (C, 4)]), 3);
    }

    #[test]
    fn property_conditions() {
        let f = Funnel::new(
            &names(&["A", "B"]),
            vec![],
            FunnelSpec {
                steps: vec![
                    StepSpec::parse("A").unwrap(),
                    StepSpec::parse("B[plan=pro]").unwrap(),
                ],
                window: H * 1_000_000,
                ..FunnelSpec::default()
            },
        )
        .unwrap();
        let mut o = Owned::new(1, &[(0, 0), (1, 1), (1, 2)]);
        o.properties = vec!["", r#"{"plan":"free"}"#, r#"{"plan":"pro"}"#];
        let out = f.evaluate(&o.view());
        assert_eq!(out.level, 2);
        assert_eq!(out.chain[1], 2);
        assert!(f.needs().properties);
    }

    #[test]
    fn step_specs() {
        let s = StepSpec::parse("Order Completed[plan=pro, country = FR]").unwrap();
        assert_eq!(s.name, "Order Completed");
        assert_eq!(
            s.conditions,
            vec![
                ("plan".into(), "pro".into()),
                ("country".into(), "FR".into())
            ]
        );
        assert_eq!(s.to_string(), "Order Completed[plan=pro,country=FR]");
        assert!(StepSpec::parse("A[plan").is_err());
        assert!(StepSpec::parse("A[plan]").is_err());
        assert!(StepSpec::parse("").is_err());
    }
}

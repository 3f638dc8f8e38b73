//! What forgetting a profile means for identity: every identifier the graph merged into it and
//! every raw customer id its events are filed under. The store does the removal
//! (`cairn_store::Store::forget`); this only decides what to hand it, and drops the operator
//! splits that name a forgotten identifier (they would keep the identifier in a file).
//!
//! An identifier an operator split off is not part of the profile any more, yet the profile's
//! events may still carry it (a shared kiosk's anonymous id, a split e-mail). Those events are
//! removed with the profile, and the split naming it goes too, but it is not suppressed: it
//! may belong to others as well, whose later events must not be dropped.

use cairn_store::{Snapshot, StoredEvent};
use serde::Serialize;

use crate::graph::{IdentityGraph, ProfileId};
use crate::ident::Identifier;
use crate::splits::Splits;

/// The identifiers and customer ids of one profile, to be forgotten together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForgetPlan {
    pub identifiers: Vec<Identifier>,
    /// Raw ids (user id, else anonymous id) the store files the profile's events under.
    pub customer_ids: Vec<String>,
    /// Identifiers the profile's events carry that are not the profile's (split off, or
    /// refused by a limit): removed with the events, not suppressed.
    pub also_on_events: Vec<Identifier>,
}

impl ForgetPlan {
    /// The plan for `profile`, whose events (from [`crate::profile_events`]) are `events`.
    pub fn new(
        graph: &IdentityGraph,
        snapshot: &Snapshot,
        profile: ProfileId,
        events: &[StoredEvent],
    ) -> ForgetPlan {
        let mut customer_ids: Vec<String> = graph
            .keys(profile)
            .into_iter()
            .filter_map(|k| snapshot.customer_id(k).map(str::to_string))
            .collect();
        customer_ids.sort();
        customer_ids.dedup();
        let identifiers = graph.identifiers(profile);
        let mut also_on_events = Vec::new();
        let mut scratch = Vec::new();
        for e in events {
            scratch.clear();
            crate::extract::identifiers(&e.event, graph.config(), &mut scratch);
            for id in scratch.drain(..) {
                if !identifiers.contains(&id) && !also_on_events.contains(&id) {
                    also_on_events.push(id);
                }
            }
        }
        also_on_events.sort();
        ForgetPlan {
            identifiers,
            customer_ids,
            also_on_events,
        }
    }

    /// Every value to remove and suppress: identifier values and customer ids, once each.
    pub fn values(&self) -> Vec<String> {
        let mut values: Vec<String> = self
            .identifiers
            .iter()
            .map(|i| i.value.clone())
            .chain(self.customer_ids.iter().cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }

    /// Removes the splits naming a forgotten identifier or one the forgotten events carried;
    /// true when there were any.
    pub fn scrub_splits(&self, splits: &mut Splits) -> bool {
        let before = splits.detached.len();
        splits.detached.retain(|d| {
            !self.identifiers.contains(&d.identifier)
                && !self.also_on_events.contains(&d.identifier)
        });
        splits.detached.len() != before
    }
}

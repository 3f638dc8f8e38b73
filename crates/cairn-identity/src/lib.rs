//! Identity resolution: which identifiers belong to one customer, and analyses over whole
//! customers (profiles) instead of raw ids.
//!
//! The store keeps every event under the raw id it came with and never rewrites it. This crate
//! reads identifiers from the events ([`extract`]), links the ones seen together into an
//! identity graph under configurable merge rules ([`graph`]: priority of identifier kinds,
//! limits per profile, operator [`splits`]), and derives a customer key → profile map that
//! stitched scans ([`stitch`]) use to hand analyses one merged, time-ordered customer per
//! profile. Because the map is derived from the events each time, a merge or a split changes
//! every analysis at once, retroactively, whatever order identifies and events arrived in.
//!
//! Everything here is deterministic: the same events and splits give the same profiles,
//! merges and conflicts. No clock is read.
//!
//! ```text
//!  Snapshot ──for_each_event──► GraphBuilder ──finish(splits)──► IdentityGraph
//!                                                                   │ profile_map()
//!  Snapshot ──scan──► stitch::scan_profiles(snapshot, map, columns, |customer| …)
//! ```

pub mod cache;
pub mod config;
pub mod extract;
pub mod forget;
pub mod graph;
mod hash;
pub mod ident;
mod idents;
pub mod profile;
pub mod splits;
pub mod stitch;

pub use config::{CONFIG_FILE, Config, ConfigError};
pub use forget::ForgetPlan;
pub use graph::{Conflict, GraphBuilder, IdentityGraph, Merge, ProfileId, ProfileMap};
pub use ident::{IdKind, Identifier};
pub use profile::{Computed, Profile, Tracked};
pub use splits::{Detached, SPLITS_FILE, Splits, SplitsError};
pub use stitch::{Groups, scan_profiles, scan_profiles_parallel, scan_profiles_sample_parallel};

use cairn_store::{Snapshot, StoreError};

/// Times are written as RFC 3339 text in JSON, as everywhere else in Cairn's output.
pub(crate) mod time_text {
    use cairn_model::{Micros, format_micros};
    use serde::Serializer;

    pub fn one<S: Serializer>(t: &Micros, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_micros(*t))
    }

    pub fn option<S: Serializer>(t: &Option<Micros>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format_micros(*t)),
            None => s.serialize_none(),
        }
    }
}

/// The stored fields where no identifier is ever read ([`extract`] looks at the ids, the type,
/// `previousId`, `traits` and `context`): building the graph skips them, `properties` above all.
const NOT_IDENTIFYING: &[&str] = &[
    "event",
    "channel",
    "value",
    "sent_at",
    "received_at",
    "group_id",
    "properties",
];

/// Builds the identity graph of everything in a snapshot, in one pass over its events.
pub fn build(
    snapshot: &Snapshot,
    config: &Config,
    splits: &Splits,
) -> Result<IdentityGraph, StoreError> {
    let mut builder = GraphBuilder::new(config.clone());
    snapshot.for_each_event_skipping(NOT_IDENTIFYING, |e| builder.add(Some(e.key), &e.event))?;
    Ok(builder.finish(splits))
}

/// The events of one profile, from the store timelines of all its keys, in (time, seq) order.
pub fn profile_events(
    snapshot: &Snapshot,
    graph: &IdentityGraph,
    profile: ProfileId,
) -> Result<Vec<cairn_store::StoredEvent>, StoreError> {
    snapshot.check_customers()?;
    let keys: Vec<u32> = graph
        .keys(profile)
        .into_iter()
        .filter(|&key| snapshot.customer_id(key).is_some())
        .collect();
    snapshot.events_of_keys(&keys)
}

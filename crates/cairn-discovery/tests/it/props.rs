use cairn_discovery::funnel::{BreakdownBy, FunnelSpec};
use cairn_discovery::insights::{Churn, Rank};
use cairn_discovery::scope::Behaviour;
use cairn_discovery::{
    ActivityCounts, Analysis, Anchor, Funnel, FunnelMode, Insights, NameSet, Paths, Period,
    ProcessMap, Rename, Retention, Scope, Scoped, StepSpec, Timeline, Variants, finish_partials,
    run,
};
use proptest::prelude::*;

const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
const CHANNELS: [&str; 3] = ["web", "email", "app"];

/// An owned journey: parallel columns, times ascending.
#[derive(Debug, Clone)]
struct Journey {
    customer: u32,
    times: Vec<i64>,
    names: Vec<u16>,
    channels: Vec<u16>,
    values: Vec<f64>,
}

impl Journey {
    fn view(&self) -> Timeline<'_> {
        Timeline {
            customer: self.customer,
            times: &self.times,
            names: &self.names,
            channels: &self.channels,
            values: &self.values,
            properties: &[],
        }
    }
}

fn names() -> Vec<String> {
    NAMES.iter().map(|s| s.to_string()).collect()
}

/// Journeys of up to 12 events, gaps of 0 to 2 hours (0 makes ties).
fn journeys() -> impl Strategy<Value = Vec<Journey>> {
    prop::collection::vec(
        prop::collection::vec(
            (0u16..5, 0i64..7_200, 0u16..3, prop::option::of(1u32..500)),
            1..12,
        ),
        0..40,
    )
    .prop_map(|customers| {
        customers
            .into_iter()
            .enumerate()
            .map(|(i, events)| {
                let mut t = 1_700_000_000_000_000i64;
                let mut j = Journey {
                    customer: i as u32,
                    times: Vec::new(),
                    names: Vec::new(),
                    channels: Vec::new(),
                    values: Vec::new(),
                };
                for (n, gap, ch, v) in events {
                    t += gap * 1_000_000;
                    j.times.push(t);
                    j.names.push(n);
                    j.channels.push(ch);
                    j.values.push(v.map_or(f64::NAN, |v| v as f64 / 100.0));
                }
                j
            })
            .collect()
    })
}

fn mode() -> impl Strategy<Value = FunnelMode> {
    prop_oneof![
        Just(FunnelMode::Default),
        Just(FunnelMode::Strict),
        Just(FunnelMode::AnyOrder),
        Just(FunnelMode::ClickHouse),
    ]
}

fn funnel(steps: &[u16], window_s: i64, mode: FunnelMode, breakdown: bool) -> Funnel {
    Funnel::new(
        &names(),
        CHANNELS.iter().map(|s| s.to_string()).collect(),
        FunnelSpec {
            steps: steps
                .iter()
                .map(|&s| StepSpec::parse(NAMES[s as usize]).unwrap())
                .collect(),
            window: window_s * 1_000_000,
            mode,
            exclude: Vec::new(),
            breakdown: breakdown.then_some(BreakdownBy::Channel),
        },
    )
    .unwrap()
}

/// Folds each group into its own partial and merges them.
fn split_run<A: Analysis>(a: &A, groups: &[Vec<&Journey>]) -> A::Output {
    let partials = groups.iter().map(|g| {
        let mut p = a.partial();
        for j in g {
            a.add(&mut p, &j.view());
        }
        p
    });
    finish_partials(a, partials.collect::<Vec<_>>())
}

/// Folds the journeys as a scan does: each offered by its names first (reversed, as names
/// come in no particular order; every other journey's as one-byte indexes, as a store of few
/// names holds them; with their name set for two journeys in three, as a store keeps it since
/// format 5), folded whole where the analysis does not take it by them; returns the output
/// and how many were taken by names.
fn by_names_run<A: Analysis>(a: &A, js: &[Journey]) -> (A::Output, usize) {
    let mut p = a.partial();
    let mut taken = 0;
    for (i, j) in js.iter().enumerate() {
        let reversed: Vec<u16> = j.names.iter().rev().copied().collect();
        let set = (i % 3 != 0).then(|| NameSet::of(&j.names));
        let took = if i % 2 == 0 {
            a.add_by_names(&mut p, &reversed, set)
        } else {
            let narrow: Vec<u8> = reversed.iter().map(|&n| u8::try_from(n).unwrap()).collect();
            a.add_by_names(&mut p, &narrow, set)
        };
        if took {
            taken += 1;
        } else {
            a.add(&mut p, &j.view());
        }
    }
    (a.finish(p), taken)
}

/// Assigns each journey to one of `k` groups by the random `picks`, in reverse order (so the
/// order customers arrive in differs from the one-pass run too).
fn groups<'a>(js: &'a [Journey], picks: &[u8], k: usize) -> Vec<Vec<&'a Journey>> {
    let mut g = vec![Vec::new(); k];
    for (i, j) in js.iter().enumerate().rev() {
        g[picks.get(i).copied().unwrap_or(0) as usize % k].push(j);
    }
    g
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn funnel_counts_never_increase(
        js in journeys(),
        steps in prop::collection::vec(0u16..5, 1..5),
        window in 1i64..20_000,
        mode in mode(),
    ) {
        let f = funnel(&steps, window, mode, false);
        let r = run(&f, js.iter().map(Journey::view));
        prop_assert_eq!(r.customers, js.len() as u64);
        prop_assert_eq!(r.customers_by_max_level.iter().sum::<u64>(), r.customers);
        for w in r.steps.windows(2) {
            prop_assert!(w[1].customers <= w[0].customers, "{:?}", r.steps);
            prop_assert!(w[1].conversion_from_previous <= 1.0);
        }
        // A wider window never loses customers at any step.
        let wide = run(&funnel(&steps, window * 2, mode, false), js.iter().map(Journey::view));
        if mode != FunnelMode::Strict {
            for (a, b) in r.steps.iter().zip(&wide.steps) {
                prop_assert!(b.customers >= a.customers);
            }
        }
    }

    #[test]
    fn split_and_order_do_not_matter(
        js in journeys(),
        picks in prop::collection::vec(0u8..4, 40),
        steps in prop::collection::vec(0u16..5, 1..5),
        window in 1i64..20_000,
        mode in mode(),
    ) {
        let parts = groups(&js, &picks, 3);
        let f = funnel(&steps, window, mode, true);
        prop_assert_eq!(split_run(&f, &parts), run(&f, js.iter().map(Journey::view)));
        let m = ProcessMap::new(names());
        prop_assert_eq!(split_run(&m, &parts), run(&m, js.iter().map(Journey::view)));
        let v = Variants { names: names(), top: 100, goal: Some(2) };
        prop_assert_eq!(split_run(&v, &parts), run(&v, js.iter().map(Journey::view)));
        let p = Paths {
            rename: Rename::identity(&names()),
            anchor: Anchor::From(steps[0]),
            steps: 3,
            top: 3,
            collapse_repeats: mode == FunnelMode::Strict,
        };
        prop_assert_eq!(split_run(&p, &parts), run(&p, js.iter().map(Journey::view)));
        let r = Retention { period: Period::Week, tz: jiff::tz::TimeZone::UTC, periods: 4 };
        prop_assert_eq!(split_run(&r, &parts), run(&r, js.iter().map(Journey::view)));
        let i = Insights {
            names: names(),
            channels: CHANNELS.iter().map(|s| s.to_string()).collect(),
            goal: steps[steps.len() - 1],
            min_customers: 2,
            alpha: 0.5,
            top: 5,
            churn: Some(Churn { as_of: 1_700_000_000_000_000 + window * 1_000_000, inactive: 3_600_000_000 }),
            happy_path: steps.clone(),
            rank: Rank::Revenue,
        };
        prop_assert_eq!(split_run(&i, &parts), run(&i, js.iter().map(Journey::view)));
    }

    /// Customers an analysis takes by their names alone add what their whole timelines add.
    #[test]
    fn taking_customers_by_names_changes_nothing(
        js in journeys(),
        steps in prop::collection::vec(0u16..5, 1..5),
        window in 1i64..20_000,
        mode in mode(),
        exclude in prop::option::of(0u16..5),
    ) {
        let exclude: Vec<String> = match (mode, exclude) {
            (FunnelMode::ClickHouse, _) | (_, None) => Vec::new(),
            (_, Some(x)) => vec![NAMES[x as usize].to_string()],
        };
        let new = || Funnel::new(
            &names(),
            CHANNELS.iter().map(|s| s.to_string()).collect(),
            FunnelSpec {
                steps: steps.iter().map(|&s| StepSpec::parse(NAMES[s as usize]).unwrap()).collect(),
                window: window * 1_000_000,
                mode,
                exclude: exclude.clone(),
                breakdown: None,
            },
        )
        .unwrap();
        let f = new();
        let whole = run(&f, js.iter().map(Journey::view));
        let (got, taken) = by_names_run(&f, &js);
        prop_assert_eq!(&got, &whole);
        // Without a second step's name (nor, in any order, two steps' names), the level
        // is settled by names: a customer with only first-step events is taken when no
        // other step has that name.
        let only_first = js.iter().filter(|j| j.names.iter().all(|&n| n == steps[0])).count();
        if steps[1..].iter().all(|&s| s != steps[0]) {
            prop_assert!(taken >= only_first);
        }
        // A scope that keeps everyone passes names on; a narrower one takes none by names.
        let everyone = Scoped { scope: Scope::default(), inner: new() };
        prop_assert_eq!(by_names_run(&everyone, &js).0, whole.clone());
        let narrowed = Scoped {
            scope: Scope { since: Some(1_700_000_000_000_000 + 3_600_000_000), ..Scope::default() },
            inner: new(),
        };
        let (narrow, none) = by_names_run(&narrowed, &js);
        prop_assert_eq!(none, 0);
        prop_assert_eq!(narrow, run(&narrowed, js.iter().map(Journey::view)));
        // Activity counts need nothing but names: every customer is taken.
        let counts = ActivityCounts { names: NAMES.len() };
        let (c, all) = by_names_run(&counts, &js);
        prop_assert_eq!(all, js.len());
        prop_assert_eq!(c, run(&counts, js.iter().map(Journey::view)));
    }

    #[test]
    fn segments_that_partition_customers_add_up(
        js in journeys(),
        steps in prop::collection::vec(0u16..5, 1..5),
        window in 1i64..20_000,
        mode in mode(),
        did in 0u16..5,
        within in prop::option::of(0i64..10_000),
    ) {
        let f = funnel(&steps, window, mode, true);
        let whole = run(&f, js.iter().map(Journey::view));
        let seg = |scope: Scope| run(
            &Scoped { scope, inner: funnel(&steps, window, mode, true) },
            js.iter().map(Journey::view),
        );
        let yes = seg(Scope { did: vec![did], ..Scope::default() });
        let no = seg(Scope { did_not: vec![did], ..Scope::default() });
        for k in 0..whole.customers_by_max_level.len() {
            prop_assert_eq!(
                yes.customers_by_max_level[k] + no.customers_by_max_level[k],
                whole.customers_by_max_level[k]
            );
        }
        // The breakdown by first-step channel partitions the customers who entered.
        let groups = whole.breakdown.as_ref().unwrap();
        for (k, step) in whole.steps.iter().enumerate() {
            prop_assert_eq!(groups.iter().map(|g| g.steps[k].customers).sum::<u64>(), step.customers);
        }
        // Process map edges over the two segments add up too.
        let map = |scope: Scope| run(&Scoped { scope, inner: ProcessMap::new(names()) }, js.iter().map(Journey::view));
        let (all, a, b) = (
            map(Scope::default()),
            map(Scope { did: vec![did], ..Scope::default() }),
            map(Scope { did_not: vec![did], ..Scope::default() }),
        );
        let count = |r: &cairn_discovery::MapResult| r.edges.iter().map(|e| e.count).sum::<u64>();
        prop_assert_eq!(count(&a) + count(&b), count(&all));
        prop_assert_eq!(a.customers + b.customers, all.customers);
        // "Did X within a window of the first event" and its negation partition customers:
        // funnels, maps and variants over the two add up to the whole.
        let within = |negate| Scope {
            behaviours: vec![Behaviour {
                event: did,
                within: within.map(|s| s * 1_000_000),
                negate,
                ..Behaviour::default()
            }],
            ..Scope::default()
        };
        let (yes, no) = (seg(within(false)), seg(within(true)));
        for k in 0..whole.customers_by_max_level.len() {
            prop_assert_eq!(
                yes.customers_by_max_level[k] + no.customers_by_max_level[k],
                whole.customers_by_max_level[k]
            );
        }
        let (a, b) = (map(within(false)), map(within(true)));
        prop_assert_eq!(count(&a) + count(&b), count(&all));
        let variants = |scope: Scope| run(
            &Scoped { scope, inner: Variants { names: names(), top: 1000, goal: None } },
            js.iter().map(Journey::view),
        );
        let (va, vb, vall) = (variants(within(false)), variants(within(true)), variants(Scope::default()));
        prop_assert_eq!(va.customers + vb.customers, vall.customers);
        for v in &vall.variants {
            let find = |r: &cairn_discovery::VariantsResult| {
                r.variants.iter().find(|x| x.events == v.events).map_or(0, |x| x.count)
            };
            prop_assert_eq!(find(&va) + find(&vb), v.count);
        }
    }
}

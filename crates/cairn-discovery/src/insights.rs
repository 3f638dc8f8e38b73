//! Insights: which behaviours go with reaching a goal, and which with not reaching it.
//!
//! Each customer is one observation: *converted* when their journey has the goal event. Only
//! the part of a journey **before the first goal** is looked at, so what customers do because
//! they converted (a receipt e-mail, a review) is not mistaken for a cause.
//!
//! A *behaviour* is one of: did an event; took a transition `a → b`; repeated an event (rework,
//! loops); switched channel `x → y` between consecutive events; skipped a step of the usual path
//! (given as `happy_path`, e.g. the most common path of converting customers: a customer skipped
//! step k when they did a later step of the path without doing it; reaching the goal itself does
//! not count, or every converter off the path would look like a skipper). For each behaviour seen by at
//! least `min_customers` customers the engine builds the 2×2 table (did / did not × converted /
//! not) and computes:
//!
//! - the conversion rate with and without it, and the odds ratio with a +0.5 prior on every cell
//!   (Haldane–Anscombe), so small cells do not produce infinite ratios;
//! - a two-sided p-value from the log odds ratio's normal approximation (Woolf), Bonferroni-
//!   corrected for the number of behaviours tested, so noise is not reported: only findings with
//!   corrected p < `alpha` are kept;
//! - the estimated impact: how many more (or fewer) conversions there would be if the customers
//!   with the behaviour converted like those without it, `(rate_without − rate_with) × customers`,
//!   and the difference in mean revenue per customer.
//!
//! With `churn`, each finding also gives the share of customers with and without the behaviour
//! who went quiet: no event in the `inactive` period before `as_of` (the caller passes the
//! data's last event time; the engine reads no clock).
//!
//! Each finding carries three estimated impacts, all "if the customers with the behaviour did as
//! those without it": conversions `(rate_with − rate_without) × customers_with`, revenue
//! `(revenue_per_customer_with − revenue_per_customer_without) × customers_with`, and churned
//! customers `(churn_with − churn_without) × customers_with`. Findings are ranked by the
//! absolute value of the impact asked for ([`Rank`]); a *pain point* is a behaviour on the bad
//! side of it (fewer conversions, less revenue, more churn). Correlation is not causation; the text says "goes
//! with", never "causes". Drop-off (where non-converting journeys end) and slow transitions
//! (longest median times between consecutive events) are reported as they are, without tests.

use serde::Serialize;

use crate::hash::FxHashMap;
use crate::stats::quantile;
use crate::variants::Money;
use crate::{Analysis, Micros, Needs, Timeline};

pub struct Insights {
    pub names: Vec<String>,
    pub channels: Vec<String>,
    pub goal: u16,
    /// Behaviours seen by fewer customers are not tested.
    pub min_customers: u64,
    /// Family-wise significance level (Bonferroni).
    pub alpha: f64,
    /// How many findings to report of each sign (fewer / more conversions).
    pub top: usize,
    pub churn: Option<Churn>,
    /// The usual path to the goal, distinct events in order; empty for none.
    pub happy_path: Vec<u16>,
    /// Which impact findings are ranked (and split into pain points) by.
    pub rank: Rank,
}

/// The impact findings are ranked by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rank {
    #[default]
    Conversions,
    Revenue,
    /// Needs `churn`; without it, findings rank by conversions.
    Churn,
}

impl Rank {
    /// The finding's impact by this measure, signed so that negative is bad.
    pub fn score(self, f: &Finding) -> f64 {
        match self {
            Rank::Conversions => f.impact_conversions,
            Rank::Revenue => f.impact_revenue,
            Rank::Churn => f.impact_churned.map_or(f.impact_conversions, |c| -c),
        }
    }
}

/// A customer has churned when their last event is more than `inactive` before `as_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Churn {
    pub as_of: Micros,
    pub inactive: Micros,
}

/// What a behaviour is, packed in a u64 key: kind in the top byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Behaviour {
    Did(u16),
    Edge(u16, u16),
    Repeat(u16),
    Switch(u16, u16),
    /// Index into the happy path.
    Skipped(u16),
}

#[derive(Default, Clone, Copy)]
struct Cell {
    customers: u64,
    converted: u64,
    churned: u64,
    revenue: Money,
}

pub struct InsightsPartial {
    customers: u64,
    converted: u64,
    churned: u64,
    revenue: Money,
    behaviours: FxHashMap<Behaviour, Cell>,
    /// Non-converting journeys by their last event.
    ended_at: FxHashMap<u16, u64>,
    /// Times between consecutive events, per edge (before the goal).
    edge_times: FxHashMap<(u16, u16), Vec<Micros>>,
    scratch: Vec<Behaviour>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// `event`, `transition`, `repeat` or `channel_switch`.
    pub kind: &'static str,
    /// The event, `a → b`, or channels `x → y`.
    pub subject: String,
    pub customers: u64,
    pub conversion_with: f64,
    pub conversion_without: f64,
    pub odds_ratio: f64,
    /// Bonferroni-corrected.
    pub p_value: f64,
    /// Conversions gained (positive) or lost (negative) against customers without it.
    pub impact_conversions: f64,
    /// Revenue gained (positive) or lost (negative) against customers without it.
    pub impact_revenue: f64,
    /// Customers more (positive) or fewer (negative) churned; `null` without `churn`.
    pub impact_churned: Option<f64>,
    /// On the bad side of the ranking impact: fewer conversions, less revenue, more churn.
    pub pain: bool,
    pub revenue_per_customer_with: f64,
    pub revenue_per_customer_without: f64,
    /// Share of customers with (without) the behaviour who churned; `null` without `churn`.
    pub churn_with: Option<f64>,
    pub churn_without: Option<f64>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DropOff {
    pub event: String,
    pub customers: u64,
    /// Of all non-converting customers.
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowTransition {
    pub from: String,
    pub to: String,
    pub count: u64,
    pub median_s: f64,
    pub p90_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InsightsResult {
    pub goal: String,
    pub customers: u64,
    pub converted: u64,
    pub conversion_rate: f64,
    /// Customers with no event in the inactive period; `null` without `churn`.
    pub churned: Option<u64>,
    /// The usual path that skipped steps are measured against.
    pub usual_path: Vec<String>,
    /// Behaviours tested (the Bonferroni factor).
    pub tested: u64,
    /// What findings are ranked by.
    pub rank: Rank,
    pub findings: Vec<Finding>,
    pub drop_off: Vec<DropOff>,
    pub slow_transitions: Vec<SlowTransition>,
}

impl Analysis for Insights {
    type Partial = InsightsPartial;
    type Output = InsightsResult;

    fn needs(&self) -> Needs {
        Needs {
            channels: true,
            values: true,
            properties: false,
        }
    }

    fn partial(&self) -> InsightsPartial {
        InsightsPartial {
            customers: 0,
            converted: 0,
            churned: 0,
            revenue: Money::default(),
            behaviours: FxHashMap::default(),
            ended_at: FxHashMap::default(),
            edge_times: FxHashMap::default(),
            scratch: Vec::new(),
        }
    }

    fn add(&self, p: &mut InsightsPartial, t: &Timeline<'_>) {
        if t.is_empty() {
            return;
        }
        let goal_at = t.names.iter().position(|&n| n == self.goal);
        let converted = goal_at.is_some();
        // Before the goal only; a journey that starts with the goal has nothing to explain.
        let before = goal_at.unwrap_or(t.len());
        let revenue = Money::of(t);
        let churned = self
            .churn
            .is_some_and(|c| c.as_of - t.times[t.len() - 1] > c.inactive);
        p.churned += u64::from(churned);
        p.customers += 1;
        p.converted += u64::from(converted);
        p.revenue.add(revenue);
        let b = &mut p.scratch;
        b.clear();
        for i in 0..before {
            let n = t.names[i];
            b.push(Behaviour::Did(n));
            if i > 0 {
                let prev = t.names[i - 1];
                b.push(Behaviour::Edge(prev, n));
                p.edge_times
                    .entry((prev, n))
                    .or_default()
                    .push(t.times[i] - t.times[i - 1]);
                if let (Some(&c0), Some(&c1)) = (t.channels.get(i - 1), t.channels.get(i))
                    && c0 != c1
                {
                    b.push(Behaviour::Switch(c0, c1));
                }
            }
        }
        // Repeats: an event seen twice or more (`Did` entries are in journey order).
        let mut dids: Vec<u16> = t.names[..before].to_vec();
        dids.sort_unstable();
        for w in dids.windows(2) {
            if w[0] == w[1] {
                b.push(Behaviour::Repeat(w[0]));
            }
        }
        // Skipped steps: did a later step of the path without doing step k.
        let mut past = false;
        for (k, step) in self.happy_path.iter().enumerate().rev() {
            let did = dids.binary_search(step).is_ok();
            if past && !did {
                b.push(Behaviour::Skipped(k as u16));
            }
            past |= did;
        }
        b.sort_unstable();
        b.dedup();
        for &beh in b.iter() {
            let c = p.behaviours.entry(beh).or_default();
            c.customers += 1;
            c.converted += u64::from(converted);
            c.churned += u64::from(churned);
            c.revenue.add(revenue);
        }
        if !converted {
            *p.ended_at.entry(t.names[t.len() - 1]).or_default() += 1;
        }
    }

    fn merge(&self, into: &mut InsightsPartial, other: InsightsPartial) {
        into.customers += other.customers;
        into.converted += other.converted;
        into.churned += other.churned;
        into.revenue.add(other.revenue);
        for (k, v) in other.behaviours {
            let c = into.behaviours.entry(k).or_default();
            c.customers += v.customers;
            c.converted += v.converted;
            c.churned += v.churned;
            c.revenue.add(v.revenue);
        }
        for (k, v) in other.ended_at {
            *into.ended_at.entry(k).or_default() += v;
        }
        for (k, v) in other.edge_times {
            into.edge_times.entry(k).or_default().extend_from_slice(&v);
        }
    }

    fn finish(&self, p: InsightsPartial) -> InsightsResult {
        let name = |i: u16| self.names.get(i as usize).cloned().unwrap_or_default();
        let channel = |i: u16| self.channels.get(i as usize).cloned().unwrap_or_default();
        let goal = name(self.goal);
        let (n, k) = (p.customers, p.converted);
        let candidates: Vec<(Behaviour, Cell)> = p
            .behaviours
            .into_iter()
            .filter(|(b, c)| {
                *b != Behaviour::Did(self.goal)
                    && c.customers >= self.min_customers
                    && n - c.customers >= self.min_customers
            })
            .collect();
        let tested = candidates.len() as u64;
        let mut findings: Vec<Finding> = candidates
            .into_iter()
            .filter_map(|(b, c)| {
                let (n1, k1) = (c.customers, c.converted);
                let (n0, k0) = (n - n1, k - k1);
                let (a, bb, cc, d) = (
                    k1 as f64 + 0.5,
                    (n1 - k1) as f64 + 0.5,
                    k0 as f64 + 0.5,
                    (n0 - k0) as f64 + 0.5,
                );
                let log_or = (a * d / (bb * cc)).ln();
                let se = (1.0 / a + 1.0 / bb + 1.0 / cc + 1.0 / d).sqrt();
                let p_raw = 2.0 * (1.0 - normal_cdf((log_or / se).abs()));
                let p_value = (p_raw * tested as f64).min(1.0);
                if p_value >= self.alpha {
                    return None;
                }
                let (rw, ro) = (k1 as f64 / n1 as f64, k0 as f64 / n0 as f64);
                let rev_with = (c.revenue.to_f64()) / n1 as f64;
                let rev_without = (p.revenue.to_f64() - c.revenue.to_f64()) / n0 as f64;
                let (kind, subject, doing) = match b {
                    Behaviour::Did(e) => ("event", name(e), format!("did {:?}", name(e))),
                    Behaviour::Edge(x, y) => (
                        "transition",
                        format!("{} → {}", name(x), name(y)),
                        format!("went {:?} → {:?}", name(x), name(y)),
                    ),
                    Behaviour::Repeat(e) => (
                        "repeat",
                        name(e),
                        format!("repeated {:?} (rework)", name(e)),
                    ),
                    Behaviour::Switch(x, y) => (
                        "channel_switch",
                        format!("{} → {}", channel(x), channel(y)),
                        format!("switched from {} to {}", channel(x), channel(y)),
                    ),
                    Behaviour::Skipped(k) => {
                        let step = name(self.happy_path[k as usize]);
                        (
                            "skipped_step",
                            step.clone(),
                            format!("skipped {step:?} of the usual path"),
                        )
                    }
                };
                let impact = (rw - ro) * n1 as f64;
                let impact_revenue = (rev_with - rev_without) * n1 as f64;
                let churn = self.churn.map(|_| {
                    (
                        c.churned as f64 / n1 as f64,
                        (p.churned - c.churned) as f64 / n0 as f64,
                    )
                });
                let text = format!(
                    "{n1} customers ({:.1}%) {doing} before {goal:?}: {:.1}% of them reached it vs {:.1}% of the others \
(odds ratio {:.2}, p {}); it goes with about {:.0} {} conversions",
                    100.0 * n1 as f64 / n as f64,
                    100.0 * rw,
                    100.0 * ro,
                    (log_or).exp(),
                    if p_value < 0.001 { "< 0.001".to_string() } else { format!("= {p_value:.3}") },
                    impact.abs(),
                    if impact >= 0.0 { "more" } else { "fewer" },
                ) + &if impact_revenue.abs() >= 0.005 {
                    format!(
                        " and {:.2} {} revenue ({:.2} vs {:.2} per customer)",
                        impact_revenue.abs(),
                        if impact_revenue >= 0.0 { "more" } else { "less" },
                        rev_with,
                        rev_without
                    )
                } else {
                    String::new()
                } + &churn
                    .map(|(a, b)| {
                        format!(
                            "; {:.1}% of them went quiet vs {:.1}%",
                            a * 100.0,
                            b * 100.0
                        )
                    })
                    .unwrap_or_default();
                Some(Finding {
                    kind,
                    subject,
                    customers: n1,
                    conversion_with: rw,
                    conversion_without: ro,
                    odds_ratio: log_or.exp(),
                    p_value,
                    impact_conversions: impact,
                    impact_revenue,
                    impact_churned: churn.map(|(a, b)| (a - b) * n1 as f64),
                    pain: false,
                    revenue_per_customer_with: rev_with,
                    revenue_per_customer_without: rev_without,
                    churn_with: churn.map(|c| c.0),
                    churn_without: churn.map(|c| c.1),
                    text,
                })
            })
            .collect();
        // The top K of each sign, so pain points are not crowded out by the steps every
        // converting journey takes.
        let rank = self.rank;
        for f in &mut findings {
            f.pain = rank.score(f) < 0.0;
        }
        findings.sort_by(|a, b| {
            rank.score(b)
                .abs()
                .total_cmp(&rank.score(a).abs())
                .then_with(|| a.kind.cmp(b.kind))
                .then_with(|| a.subject.cmp(&b.subject))
        });
        let mut shown = (0usize, 0usize);
        findings.retain(|f| {
            let n = if f.pain { &mut shown.0 } else { &mut shown.1 };
            *n += 1;
            *n <= self.top
        });

        let lost = n - k;
        let mut drop_off: Vec<DropOff> = p
            .ended_at
            .into_iter()
            .map(|(e, c)| DropOff {
                event: name(e),
                customers: c,
                share: c as f64 / lost.max(1) as f64,
            })
            .collect();
        drop_off.sort_by(|a, b| {
            b.customers
                .cmp(&a.customers)
                .then_with(|| a.event.cmp(&b.event))
        });
        drop_off.truncate(self.top);

        let mut slow: Vec<SlowTransition> = p
            .edge_times
            .into_iter()
            .filter(|(_, v)| v.len() as u64 >= self.min_customers)
            .map(|((a, b), mut v)| SlowTransition {
                from: name(a),
                to: name(b),
                count: v.len() as u64,
                median_s: quantile(&mut v, 0.5) / 1e6,
                p90_s: quantile(&mut v, 0.9) / 1e6,
            })
            .collect();
        slow.sort_by(|a, b| {
            b.median_s
                .total_cmp(&a.median_s)
                .then_with(|| (&a.from, &a.to).cmp(&(&b.from, &b.to)))
        });
        slow.truncate(self.top.min(10));

        InsightsResult {
            goal,
            customers: n,
            converted: k,
            conversion_rate: k as f64 / n.max(1) as f64,
            churned: self.churn.map(|_| p.churned),
            usual_path: self.happy_path.iter().map(|&i| name(i)).collect(),
            tested,
            rank,
            findings,
            drop_off,
            slow_transitions: slow,
        }
    }
}

/// The standard normal CDF, via erf (Abramowitz & Stegun 7.1.26, error below 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    let erf = if x >= 0.0 { y } else { -y };
    0.5 * (1.0 + erf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run;
    use crate::testutil::{Owned, names};

    #[test]
    fn normal_cdf_is_accurate() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_963_985) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-3.0) - 0.001_349_898).abs() < 1e-6);
    }

    /// 200 customers: those who hit "support" (event 1) mostly fail to buy (event 2); event 3
    /// ("browse") is done by the odd-numbered customers and says nothing much.
    fn data() -> Vec<Owned> {
        (0..200u32)
            .map(|i| {
                let support = i % 4 == 0;
                let buys = if support { i % 40 == 0 } else { i % 4 != 3 };
                let mut ev = vec![(0u16, 0i64)];
                if i % 2 == 1 {
                    ev.push((3, 10));
                }
                if support {
                    ev.push((1, 20));
                }
                if buys {
                    ev.push((2, 30));
                }
                Owned::new(i, &ev)
            })
            .collect()
    }

    #[test]
    fn finds_the_behaviour_that_goes_with_fewer_conversions() {
        let js = data();
        let ins = Insights {
            names: names(&["visit", "support", "buy", "browse"]),
            channels: names(&["web"]),
            goal: 2,
            min_customers: 10,
            alpha: 0.05,
            top: 10,
            churn: Some(Churn {
                as_of: 100_000_000,
                inactive: 75_000_000,
            }),
            happy_path: vec![3, 1],
            rank: Rank::Conversions,
        };
        let r = run(&ins, js.iter().map(|o| o.view()));
        assert_eq!(r.customers, 200);
        let support = r
            .findings
            .iter()
            .find(|f| f.kind == "event" && f.subject == "support")
            .expect("support is significant");
        assert!(support.odds_ratio < 1.0);
        assert!(support.impact_conversions < 0.0);
        assert_eq!(support.customers, 50);
        assert!(support.text.contains("fewer"), "{}", support.text);
        // Journeys that end before second 25 went quiet: those without support or a buy.
        assert!(r.churned.unwrap() > 0);
        assert!(support.churn_with.is_some());
        // With browse → support as the usual path, the support customers (all even-numbered)
        // skipped browse, and that goes with fewer conversions.
        let skipped = r
            .findings
            .iter()
            .find(|f| f.kind == "skipped_step")
            .expect("skipping browse is significant here");
        assert_eq!(skipped.subject, "browse");
        assert_eq!(skipped.customers, 50);
        assert!(skipped.odds_ratio < 1.0);
        assert!(r.findings.iter().all(|f| f.p_value < 0.05));
        assert!(r.drop_off.iter().any(|d| d.event == "support"));
        assert!(support.pain);
        // Ranked by churn, a pain point is what goes with more customers gone quiet.
        let by_churn = run(
            &Insights {
                rank: Rank::Churn,
                ..ins
            },
            js.iter().map(|o| o.view()),
        );
        let support = by_churn
            .findings
            .iter()
            .find(|f| f.kind == "event" && f.subject == "support")
            .unwrap();
        assert_eq!(support.pain, support.impact_churned.unwrap() > 0.0);
        let scores: Vec<f64> = by_churn
            .findings
            .iter()
            .filter(|f| f.pain == support.pain)
            .map(|f| Rank::Churn.score(f).abs())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    }
}

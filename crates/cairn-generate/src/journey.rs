//! The customer simulation: one customer's life with the shop, stage by stage.
//!
//! Every customer runs through the lifecycle awareness → consideration → purchase → use →
//! loyalty and may leave at any stage. Each customer draws from their own random stream, derived
//! from the seed and their index alone, so a customer's journey does not depend on who came
//! before (and the population could be generated in any order or in parallel).
//!
//! The shapes a journey can take, and why they are there (discovery has to find them):
//! - **Drop-offs** at every stage: bounces after landing, browsing without buying, abandoned
//!   checkouts, customers who go silent after their first order.
//! - **Loops**: products viewed again and again, carts filled and emptied.
//! - **Skipped steps**: an e-mail or SMS link that leads straight to an order, a store visit that
//!   ends at the till, checkout recovery links.
//! - **Channel switches**: browse on mobile and buy on the web or in a store, campaign clicks on
//!   e-mail and SMS, support on the phone.
//! - **Identity**: about 30% of customers start anonymous and identify when they sign up (an
//!   `identify` with both ids); another 10% stay anonymous and leave.
//! - **Outcomes**: revenue on every order, refunds as negative revenue, CSAT (1-5) and NPS (0-10)
//!   survey scores, subscriptions and explicit cancellations.
//!
//! Time starts on a day spread over [`WINDOW_DAYS`] from [`WINDOW_START`]: seconds to minutes
//! between events of a session, hours to weeks between sessions, nights skipped. Nothing is
//! recorded after the window closes, as in a real export.
//!
//! Only integer arithmetic and exact comparisons are used (see [`crate::rng`]).

use cairn_model::EventKind;

use crate::catalog::{self, PRODUCTS, Product};
use crate::record::{Ids, Journey, Props, Record, Val};
use crate::rng::{Rng, mix64};
use crate::timefmt::Millis;

/// 2026-01-01T00:00:00Z: customers arrive over the [`WINDOW_DAYS`] days from here.
pub const WINDOW_START: Millis = 1_767_225_600_000;
pub const WINDOW_DAYS: i64 = 180;

const SECOND: Millis = 1_000;
const MINUTE: Millis = 60 * SECOND;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;

/// Fills `journey` with customer `index` of the population of `seed`, replacing its content but
/// keeping its allocations.
pub fn simulate(seed: u64, index: u64, journey: &mut Journey) {
    use std::fmt::Write as _;

    let key = mix64(seed ^ 0x6361_6972_6e2d_6765); // "cairn-ge"
    journey.index = index;
    journey.user_id.clear();
    // Writing to a String cannot fail.
    let _ = write!(journey.user_id, "user-{}", index + 1);
    journey.anonymous_id.clear();
    // `mix64` is a bijection, so anonymous ids are unique within a population.
    let _ = write!(journey.anonymous_id, "anon-{:016x}", mix64(index ^ key));
    journey.records.clear();

    let mut sim = Sim {
        rng: Rng::new(mix64(key.wrapping_add(mix64(index)))),
        t: 0,
        end: WINDOW_START + WINDOW_DAYS * DAY,
        ids: Ids::User,
        number: index + 1,
        device: Channel::Web,
        cart: Vec::new(),
        last_viewed: None,
        orders: 0,
        last_order: None,
        unhappy: false,
        welcome_due: false,
        out: &mut journey.records,
    };
    sim.t = sim.start_time();
    // `None` only means the window closed mid-journey: what was recorded stays.
    let _ = sim.run();
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Web,
    Mobile,
    Email,
    Sms,
    Push,
    Ads,
    CallCenter,
    Store,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Mobile => "mobile",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::Ads => "ads",
            Channel::CallCenter => "call_center",
            Channel::Store => "store",
        }
    }

    fn other_device(self) -> Channel {
        if self == Channel::Web {
            Channel::Mobile
        } else {
            Channel::Web
        }
    }
}

/// Who a customer is when they arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrival {
    /// Anonymous, will sign up and identify.
    Prospect,
    /// Anonymous, leaves before doing anything that identifies them.
    Bouncer,
    /// Already known: a newsletter subscriber, an app user, a store loyalty card holder.
    Known,
}

/// Where a stage leaves the customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Stop,
    Consider,
    Buy,
    Bought,
}

#[derive(Clone, Copy, Debug)]
struct Order {
    number: u32,
    revenue: i64,
}

struct Sim<'a> {
    rng: Rng,
    t: Millis,
    end: Millis,
    ids: Ids,
    /// The customer number in `user-<n>`, order ids and e-mail addresses.
    number: u64,
    /// The device the customer prefers to browse on, web or mobile.
    device: Channel,
    /// Indexes into [`PRODUCTS`].
    cart: Vec<usize>,
    last_viewed: Option<usize>,
    orders: u32,
    last_order: Option<Order>,
    /// A refund or an unresolved support case: more likely to churn, lower scores.
    unhappy: bool,
    /// Signed up, welcome e-mail not seen yet.
    welcome_due: bool,
    out: &'a mut Vec<Record>,
}

impl Sim<'_> {
    fn start_time(&mut self) -> Millis {
        // Traffic by hour of day: quiet at night, peaks at lunch and in the evening.
        const BY_HOUR: [u32; 24] = [
            2, 1, 1, 1, 1, 2, 4, 6, 8, 9, 9, 10, 11, 10, 9, 9, 9, 10, 12, 13, 12, 10, 7, 4,
        ];
        let day = self.rng.between(0, WINDOW_DAYS - 1);
        let hour = self.rng.weighted(&BY_HOUR) as i64;
        WINDOW_START + day * DAY + hour * HOUR + self.rng.between(0, HOUR - 1)
    }

    // ---- time --------------------------------------------------------------------------

    /// A gap inside a session: seconds to minutes.
    fn pause(&mut self) {
        let gap = match self.rng.weighted(&[40, 35, 18, 7]) {
            0 => self.rng.between(3 * SECOND, 20 * SECOND),
            1 => self.rng.between(20 * SECOND, 90 * SECOND),
            2 => self.rng.between(90 * SECOND, 5 * MINUTE),
            _ => self.rng.between(5 * MINUTE, 20 * MINUTE),
        };
        self.t += gap;
    }

    /// A short reaction: a click a few seconds after an open, an app opened from a link.
    fn moment(&mut self) {
        self.t += self.rng.between(2 * SECOND, 40 * SECOND);
    }

    /// A gap between sessions: hours to weeks, ending in waking hours.
    fn later(&mut self) {
        let gap = match self.rng.weighted(&[20, 25, 30, 17, 8]) {
            0 => self.rng.between(HOUR, 6 * HOUR),
            1 => self.rng.between(6 * HOUR, 30 * HOUR),
            2 => self.rng.between(DAY, 4 * DAY),
            3 => self.rng.between(4 * DAY, 10 * DAY),
            _ => self.rng.between(10 * DAY, 30 * DAY),
        };
        self.t += gap;
        self.wake();
    }

    /// A gap between stages of the relationship: days to months.
    fn much_later(&mut self) {
        let gap = match self.rng.weighted(&[30, 40, 30]) {
            0 => self.rng.between(3 * DAY, 10 * DAY),
            1 => self.rng.between(10 * DAY, 30 * DAY),
            _ => self.rng.between(30 * DAY, 75 * DAY),
        };
        self.t += gap;
        self.wake();
    }

    /// Moves a time that fell in the night to the next morning.
    fn wake(&mut self) {
        let hour = self.t.rem_euclid(DAY) / HOUR;
        if hour < 7 {
            self.t += (7 - hour) * HOUR + self.rng.between(0, 3 * HOUR);
        } else if hour >= 23 {
            self.t += (24 + 8 - hour) * HOUR + self.rng.between(0, 3 * HOUR);
        }
    }

    /// Moves the current time into the opening hours of a store or the call center; other
    /// channels are open around the clock.
    fn opening_hours(&mut self, channel: Channel) {
        let (open, close) = match channel {
            Channel::Store => (9, 20),
            Channel::CallCenter => (8, 20),
            _ => return,
        };
        let hour = self.t.rem_euclid(DAY) / HOUR;
        if hour < open {
            self.t += (open - hour) * HOUR + self.rng.between(0, 2 * HOUR);
        } else if hour >= close {
            self.t += (24 + open + 1 - hour) * HOUR + self.rng.between(0, 2 * HOUR);
        }
    }

    // ---- recording ---------------------------------------------------------------------

    /// Records a message at the current time; `None` once the window has closed.
    fn emit(
        &mut self,
        kind: EventKind,
        name: &'static str,
        channel: Channel,
        properties: Props,
        traits: Props,
        ids: Ids,
    ) -> Option<()> {
        if self.t >= self.end {
            return None;
        }
        let message_id = ((self.rng.next_u64() as u128) << 64) | self.rng.next_u64() as u128;
        self.out.push(Record {
            kind,
            name,
            channel: channel.name(),
            at: self.t,
            message_id,
            ids,
            properties,
            traits,
        });
        Some(())
    }

    fn track(&mut self, name: &'static str, channel: Channel, props: Props) -> Option<()> {
        self.emit(
            EventKind::Track,
            name,
            channel,
            props,
            Props::default(),
            self.ids,
        )
    }

    /// A coin flip between the preferred device and the other one.
    fn device_now(&mut self, loyalty: f64) -> Channel {
        if self.rng.chance(loyalty) {
            self.device
        } else {
            self.device.other_device()
        }
    }

    /// The first message of a web or app session.
    fn open_session(&mut self, channel: Channel, campaign: Option<&'static str>) -> Option<()> {
        let mut props = Props::default();
        if let Some(c) = campaign {
            props.push("campaign", Val::Str(c));
        }
        if channel == Channel::Mobile {
            self.track("App Opened", Channel::Mobile, props)?;
            if self.rng.chance(0.3) {
                self.pause();
                let screen = *self.rng.pick(catalog::SCREENS);
                self.emit(
                    EventKind::Screen,
                    "Screen Viewed",
                    Channel::Mobile,
                    Props::of(&[("screen", Val::Str(screen))]),
                    Props::default(),
                    self.ids,
                )?;
            }
            return Some(());
        }
        let path = *self.rng.pick(catalog::LANDING_PAGES);
        props.push("url", Val::Url(path));
        self.emit(
            EventKind::Page,
            "Page Viewed",
            Channel::Web,
            props,
            Props::default(),
            self.ids,
        )
    }

    /// A product, favouring the popular front of the catalogue.
    fn pick_product(&mut self) -> usize {
        let n = PRODUCTS.len() as u64;
        self.rng.below(n).min(self.rng.below(n)) as usize
    }

    fn product_props(p: &Product, quantity: Option<i64>) -> Props {
        let mut props = Props::of(&[
            ("category", Val::Str(p.category)),
            ("price", Val::Money(p.price)),
            ("product", Val::Str(p.name)),
        ]);
        if let Some(q) = quantity {
            props.push("quantity", Val::Int(q));
        }
        props.push("sku", Val::Str(p.sku));
        props
    }

    fn view_products(&mut self, channel: Channel, count: u32) -> Option<()> {
        for _ in 0..count {
            self.pause();
            // Customers come back to the same product again and again before deciding.
            let product = match self.last_viewed {
                Some(p) if self.rng.chance(0.3) => p,
                _ => self.pick_product(),
            };
            self.last_viewed = Some(product);
            let props = Self::product_props(&PRODUCTS[product], None);
            self.track("Product Viewed", channel, props)?;
        }
        Some(())
    }

    fn add_to_cart(&mut self, channel: Channel, product: usize) -> Option<()> {
        self.pause();
        self.cart.push(product);
        let props = Self::product_props(&PRODUCTS[product], Some(1));
        self.track("Product Added", channel, props)
    }

    fn email(&mut self, campaign: &'static str, click: f64) -> Option<bool> {
        let props = Props::of(&[("campaign", Val::Str(campaign))]);
        self.track("Email Opened", Channel::Email, props)?;
        if !self.rng.chance(click) {
            return Some(false);
        }
        self.moment();
        self.track("Email Clicked", Channel::Email, props)?;
        Some(true)
    }

    fn sms_click(&mut self, campaign: &'static str) -> Option<()> {
        let props = Props::of(&[("campaign", Val::Str(campaign))]);
        self.track("SMS Clicked", Channel::Sms, props)
    }

    fn ad_click(&mut self, campaign: &'static str) -> Option<()> {
        let source = *self.rng.pick(catalog::AD_SOURCES);
        let props = Props::of(&[
            ("campaign", Val::Str(campaign)),
            ("source", Val::Str(source)),
        ]);
        self.track("Ad Clicked", Channel::Ads, props)
    }

    /// Sign-up of an anonymous visitor: the `identify` that links both ids, then `Signed Up`.
    fn sign_up(&mut self, channel: Channel) -> Option<()> {
        self.pause();
        let traits = Props::of(&[
            ("email", Val::Email(self.number)),
            ("signup_channel", Val::Str(channel.name())),
        ]);
        self.emit(
            EventKind::Identify,
            "",
            channel,
            Props::default(),
            traits,
            Ids::Both,
        )?;
        self.ids = Ids::User;
        self.welcome_due = true;
        self.t += self.rng.between(50, 900);
        let method = *self.rng.pick(&["email", "email", "google", "apple"]);
        self.track(
            "Signed Up",
            channel,
            Props::of(&[("method", Val::Str(method))]),
        )
    }

    /// Records an order of the cart (or of the last product viewed when the cart is empty,
    /// as when a campaign link goes straight to an order).
    fn order(&mut self, channel: Channel, campaign: Option<&'static str>) -> Option<()> {
        if self.cart.is_empty() {
            let product = match self.last_viewed {
                Some(p) => p,
                None => self.pick_product(),
            };
            self.cart.push(product);
        }
        let subtotal: i64 = self.cart.iter().map(|&p| PRODUCTS[p].price).sum();
        let discount = match campaign {
            Some(_) => subtotal * self.rng.between(1, 2) * 10 / 100,
            None => 0,
        };
        let revenue = subtotal - discount;
        self.orders += 1;
        let number = self.orders;
        let main = &PRODUCTS[self.cart[0]];
        let mut props = Props::default();
        if let Some(c) = campaign {
            props.push("campaign", Val::Str(c));
        }
        props.push("currency", Val::Str("USD"));
        props.push("items", Val::Int(self.cart.len() as i64));
        props.push("order_id", Val::Order(self.number, number));
        props.push("product", Val::Str(main.name));
        props.push("revenue", Val::Money(revenue));
        props.push("sku", Val::Str(main.sku));
        self.track("Order Completed", channel, props)?;
        self.cart.clear();
        self.last_order = Some(Order { number, revenue });
        Some(())
    }

    // ---- stages ------------------------------------------------------------------------

    fn run(&mut self) -> Option<()> {
        let arrival = match self.rng.weighted(&[30, 10, 60]) {
            0 => Arrival::Prospect,
            1 => Arrival::Bouncer,
            _ => Arrival::Known,
        };
        if arrival != Arrival::Known {
            self.ids = Ids::Anonymous;
        }
        self.device = if self.rng.chance(0.55) {
            Channel::Web
        } else {
            Channel::Mobile
        };

        let mut next = self.awareness(arrival)?;
        if next == Next::Consider {
            next = self.consideration(arrival)?;
        }
        if next == Next::Stop && self.ids == Ids::User && self.rng.chance(0.15) {
            next = self.win_back()?;
        }
        if next == Next::Buy {
            next = self.purchase()?;
        }
        if next != Next::Bought {
            return Some(());
        }
        if !self.use_stage()? {
            return Some(());
        }
        self.loyalty()
    }

    /// The first touch and the landing: ads, campaigns, organic visits, the app, a store.
    fn awareness(&mut self, arrival: Arrival) -> Option<Next> {
        let mut campaign = None;
        let channel = if arrival == Arrival::Known {
            match self.rng.weighted(&[35, 12, 20, 18, 15]) {
                0 => {
                    let mut c = *self.rng.pick(catalog::NEWSLETTERS);
                    let mut clicked = self.email(c, 0.55)?;
                    if !clicked {
                        // Not this time: most leave, some open the next newsletter.
                        if !self.rng.chance(0.5) {
                            return Some(Next::Stop);
                        }
                        self.later();
                        c = *self.rng.pick(catalog::NEWSLETTERS);
                        clicked = self.email(c, 0.6)?;
                        if !clicked {
                            return Some(Next::Stop);
                        }
                    }
                    campaign = Some(c);
                    self.moment();
                    if self.rng.chance(0.1) {
                        // One-click offer: straight to the order, no browsing, no cart.
                        self.order(Channel::Web, campaign)?;
                        return Some(Next::Bought);
                    }
                    self.device_now(0.6)
                }
                1 => {
                    let c = *self.rng.pick(catalog::SMS_CAMPAIGNS);
                    self.sms_click(c)?;
                    campaign = Some(c);
                    self.moment();
                    if self.rng.chance(0.1) {
                        self.order(Channel::Web, campaign)?;
                        return Some(Next::Bought);
                    }
                    Channel::Web
                }
                2 => Channel::Web,
                3 => Channel::Mobile,
                _ => return self.store_first(),
            }
        } else {
            match self.rng.weighted(&[45, 35, 20]) {
                0 => {
                    let c = *self.rng.pick(catalog::AD_CAMPAIGNS);
                    self.ad_click(c)?;
                    campaign = Some(c);
                    self.moment();
                    self.device_now(0.7)
                }
                1 => Channel::Web,
                _ => Channel::Mobile,
            }
        };
        self.open_session(channel, campaign)?;
        let bounce = match arrival {
            Arrival::Bouncer => 1.0,
            Arrival::Prospect => 0.0,
            Arrival::Known => 0.1,
        };
        if self.rng.chance(bounce) {
            // A look around, then gone.
            let views = self.rng.weighted(&[50, 35, 15]) as u32;
            self.view_products(channel, views)?;
            return Some(Next::Stop);
        }
        self.device = channel;
        Some(Next::Consider)
    }

    /// A known customer who walks into a store: buys on the spot, or goes home to browse.
    fn store_first(&mut self) -> Option<Next> {
        let store = *self.rng.pick(catalog::STORES);
        self.opening_hours(Channel::Store);
        self.track(
            "Store Visit",
            Channel::Store,
            Props::of(&[("store", Val::Str(store))]),
        )?;
        if self.rng.chance(0.4) {
            self.t += self.rng.between(5 * MINUTE, 40 * MINUTE);
            self.order(Channel::Store, None)?;
            return Some(Next::Bought);
        }
        if self.rng.chance(0.3) {
            return Some(Next::Stop);
        }
        self.later();
        let channel = self.device_now(0.7);
        self.open_session(channel, None)?;
        Some(Next::Consider)
    }

    /// Browsing sessions: product views, cart changes, sign-up; ends in a purchase intent or a
    /// drop-off.
    fn consideration(&mut self, arrival: Arrival) -> Option<Next> {
        let sessions = 1 + self.rng.weighted(&[25, 30, 25, 12, 8]);
        let mut channel = self.device;
        for session in 0..sessions {
            if session > 0 {
                self.later();
                self.newsletter(0.3)?;
                let mut campaign = None;
                if self.ids == Ids::User && !self.cart.is_empty() && self.rng.chance(0.35) {
                    let clicked = if self.rng.chance(0.75) {
                        self.email(catalog::CART_REMINDER, 0.6)?
                    } else {
                        self.sms_click(catalog::CART_REMINDER)?;
                        true
                    };
                    if !clicked {
                        self.later();
                    } else {
                        campaign = Some(catalog::CART_REMINDER);
                        self.moment();
                    }
                } else if self.ids == Ids::Anonymous && self.rng.chance(0.3) {
                    self.ad_click(catalog::AD_RETARGETING)?;
                    campaign = Some(catalog::AD_RETARGETING);
                    self.moment();
                }
                channel = self.device_now(0.75);
                self.open_session(channel, campaign)?;
            }
            let views = 1 + self.rng.weighted(&[20, 28, 26, 14, 8, 4]) as u32;
            self.view_products(channel, views)?;
            if arrival == Arrival::Prospect && self.ids == Ids::Anonymous {
                self.sign_up(channel)?;
            }
            if self.rng.chance(0.4) {
                let product = self.last_viewed.unwrap_or(0);
                self.add_to_cart(channel, product)?;
                if self.rng.chance(0.25) {
                    self.view_products(channel, 1)?;
                    let product = self.last_viewed.unwrap_or(0);
                    self.add_to_cart(channel, product)?;
                }
                if self.rng.chance(0.18) {
                    // Second thoughts: the last item goes back.
                    self.pause();
                    if let Some(p) = self.cart.pop() {
                        let props = Self::product_props(&PRODUCTS[p], Some(1));
                        self.track("Product Removed", channel, props)?;
                    }
                }
            }
            if !self.cart.is_empty() && self.rng.chance(0.55) {
                self.pause();
                let props = Props::of(&[("items", Val::Int(self.cart.len() as i64))]);
                self.track("Cart Viewed", channel, props)?;
                if self.rng.chance(0.6) {
                    self.device = channel;
                    return Some(Next::Buy);
                }
            }
            if self.rng.chance(0.18) {
                return Some(Next::Stop);
            }
        }
        self.device = channel;
        if !self.cart.is_empty() || self.rng.chance(0.35) {
            Some(Next::Buy)
        } else {
            Some(Next::Stop)
        }
    }

    /// A lapsed known customer brought back by a win-back e-mail.
    fn win_back(&mut self) -> Option<Next> {
        self.much_later();
        if !self.email(catalog::WINBACK, 0.35)? {
            return Some(Next::Stop);
        }
        self.moment();
        let channel = self.device_now(0.7);
        self.open_session(channel, Some(catalog::WINBACK))?;
        let views = 1 + self.rng.below(2) as u32;
        self.view_products(channel, views)?;
        self.device = channel;
        Some(if self.rng.chance(0.5) {
            Next::Buy
        } else {
            Next::Stop
        })
    }

    /// Checkout online, on the other device, in a store or by phone; abandoned checkouts and
    /// their recovery.
    fn purchase(&mut self) -> Option<Next> {
        match self.rng.weighted(&[80, 14, 6]) {
            0 => {
                let mut channel = self.device;
                if self.rng.chance(0.25) {
                    // Browsed on one device, buys on the other.
                    self.later();
                    channel = channel.other_device();
                    self.open_session(channel, None)?;
                }
                if self.cart.is_empty() {
                    let product = match self.last_viewed {
                        Some(p) => p,
                        None => self.pick_product(),
                    };
                    self.add_to_cart(channel, product)?;
                }
                let items = Props::of(&[("items", Val::Int(self.cart.len() as i64))]);
                let cart_seen = self.out.last().is_some_and(|r| r.name == "Cart Viewed");
                if !cart_seen && self.rng.chance(0.5) {
                    self.pause();
                    self.track("Cart Viewed", channel, items)?;
                }
                self.pause();
                self.track("Checkout Started", channel, items)?;
                if self.rng.chance(0.72) {
                    self.pause();
                    self.order(channel, None)?;
                    return Some(Next::Bought);
                }
                // Abandoned. Known customers get a recovery e-mail that links to the order.
                if self.ids != Ids::User || !self.rng.chance(0.55) {
                    return Some(Next::Stop);
                }
                self.t += self.rng.between(HOUR, 20 * HOUR);
                self.wake();
                if !self.email(catalog::CHECKOUT_RECOVERY, 0.6)? {
                    return Some(Next::Stop);
                }
                self.moment();
                self.order(Channel::Web, Some(catalog::CHECKOUT_RECOVERY))?;
                Some(Next::Bought)
            }
            1 => {
                // Browsed online, buys in a store.
                self.later();
                let store = *self.rng.pick(catalog::STORES);
                self.opening_hours(Channel::Store);
                self.track(
                    "Store Visit",
                    Channel::Store,
                    Props::of(&[("store", Val::Str(store))]),
                )?;
                if !self.rng.chance(0.85) {
                    return Some(Next::Stop);
                }
                self.t += self.rng.between(5 * MINUTE, 40 * MINUTE);
                self.order(Channel::Store, None)?;
                Some(Next::Bought)
            }
            _ => {
                self.later();
                self.opening_hours(Channel::CallCenter);
                self.order(Channel::CallCenter, None)?;
                Some(Next::Bought)
            }
        }
    }

    /// Living with the product: app use, support calls with follow-ups, CSAT, refunds. Returns
    /// whether the customer stays on.
    fn use_stage(&mut self) -> Option<bool> {
        if self.device == Channel::Mobile || self.rng.chance(0.4) {
            let sessions = self.rng.weighted(&[30, 40, 20, 10]);
            for _ in 0..sessions {
                self.later();
                if self.rng.chance(0.3) {
                    let c = *self.rng.pick(catalog::PUSH_CAMPAIGNS);
                    self.track(
                        "Push Opened",
                        Channel::Push,
                        Props::of(&[("campaign", Val::Str(c))]),
                    )?;
                    self.moment();
                }
                self.open_session(Channel::Mobile, None)?;
                if self.rng.chance(0.4) {
                    self.view_products(Channel::Mobile, 1)?;
                }
            }
        }

        let mut refund_risk = 0.05;
        let mut surveyed = false;
        if self.rng.chance(0.3) {
            self.later();
            let reason = *self.rng.pick(catalog::SUPPORT_REASONS);
            if matches!(reason, "product_issue" | "return") {
                refund_risk = 0.5;
            }
            let order = self.last_order.map_or(1, |o| o.number);
            let customer = self.number;
            let mut resolved = self.rng.chance(0.65);
            let call = move |follow_up: bool, resolved: bool| {
                let mut p = Props::default();
                if follow_up {
                    p.push("follow_up", Val::Bool(true));
                }
                p.push("order_id", Val::Order(customer, order));
                p.push("reason", Val::Str(reason));
                p.push("resolved", Val::Bool(resolved));
                p
            };
            let first = call(false, resolved);
            self.opening_hours(Channel::CallCenter);
            self.track("Support Call", Channel::CallCenter, first)?;
            let mut follow_ups = 0;
            while !resolved && follow_ups < 2 {
                self.t += self.rng.between(DAY, 3 * DAY);
                self.wake();
                follow_ups += 1;
                resolved = self.rng.chance(0.7);
                let again = call(true, resolved);
                self.opening_hours(Channel::CallCenter);
                self.track("Support Call", Channel::CallCenter, again)?;
            }
            if !resolved {
                self.unhappy = true;
            }
            if self.rng.chance(0.55) {
                self.t += self.rng.between(30 * MINUTE, 20 * HOUR);
                self.wake();
                let score = match (resolved, follow_ups) {
                    (true, 0) => 5 - self.rng.weighted(&[45, 35, 12, 5, 3]),
                    (true, _) => 5 - self.rng.weighted(&[15, 30, 35, 15, 5]),
                    (false, _) => 1 + self.rng.weighted(&[40, 35, 20, 5]),
                };
                self.survey("csat", score as i64)?;
                surveyed = true;
            }
        }
        if !surveyed && self.rng.chance(0.2) {
            self.later();
            let score = 5 - self.rng.weighted(&[40, 35, 15, 6, 4]);
            self.survey("csat", score as i64)?;
        }

        if let Some(order) = self.last_order
            && self.rng.chance(refund_risk)
        {
            self.later();
            let channel = match self.rng.weighted(&[50, 30, 20]) {
                0 => Channel::Web,
                1 => Channel::Store,
                _ => Channel::CallCenter,
            };
            let props = Props::of(&[
                ("order_id", Val::Order(self.number, order.number)),
                ("revenue", Val::Money(-order.revenue)),
            ]);
            self.opening_hours(channel);
            self.track("Order Refunded", channel, props)?;
            self.unhappy = true;
        }

        // Churn: most simply go silent.
        let churn = if self.unhappy { 0.6 } else { 0.25 };
        Some(!self.rng.chance(churn))
    }

    /// With probability `p`, a known customer opens a newsletter and leaves it at that: the
    /// background noise of marketing e-mail. Time moves on past it.
    fn newsletter(&mut self, p: f64) -> Option<()> {
        // New sign-ups are sure to get the welcome e-mail, and likely to open it.
        let p = if self.welcome_due { 0.8 } else { p };
        if self.ids != Ids::User || !self.rng.chance(p) {
            return Some(());
        }
        let c = if self.welcome_due {
            catalog::WELCOME
        } else {
            *self.rng.pick(catalog::NEWSLETTERS)
        };
        self.welcome_due = false;
        self.track(
            "Email Opened",
            Channel::Email,
            Props::of(&[("campaign", Val::Str(c))]),
        )?;
        self.later();
        Some(())
    }

    fn survey(&mut self, survey: &'static str, score: i64) -> Option<()> {
        let channel = if self.rng.chance(0.7) {
            Channel::Email
        } else {
            Channel::Sms
        };
        let props = Props::of(&[("score", Val::Int(score)), ("survey", Val::Str(survey))]);
        self.track("Survey Answered", channel, props)
    }

    /// Repeat purchases, subscriptions, NPS, reviews, and finally cancellation or silence.
    fn loyalty(&mut self) -> Option<()> {
        let mut plan = None;
        if self.rng.chance(0.3) {
            self.later();
            let p = *self.rng.pick(catalog::PLANS);
            let channel = self.device_now(0.8);
            let props = Props::of(&[("plan", Val::Str(p.0)), ("price", Val::Money(p.1))]);
            self.track("Subscription Started", channel, props)?;
            plan = Some(p.0);
        }

        let rounds = 1 + self.rng.weighted(&[30, 35, 20, 15]);
        let mut nps = None;
        for round in 0..rounds {
            self.much_later();
            self.newsletter(0.4)?;
            self.repeat_purchase()?;
            if round == 0 && self.rng.chance(0.5) {
                self.later();
                let score = if self.unhappy {
                    self.rng.weighted(&[5, 5, 8, 10, 12, 12, 14, 12, 10, 7, 5])
                } else {
                    self.rng.weighted(&[1, 1, 1, 2, 2, 4, 6, 10, 18, 25, 30])
                };
                self.survey("nps", score as i64)?;
                nps = Some(score);
            }
            if round == 0 && self.rng.chance(0.15) {
                self.later();
                let product = &PRODUCTS[self.last_viewed.unwrap_or(0)];
                let rating = if self.unhappy {
                    1 + self.rng.weighted(&[30, 30, 25, 10, 5])
                } else {
                    5 - self.rng.weighted(&[50, 30, 12, 5, 3])
                };
                let props = Props::of(&[
                    ("product", Val::Str(product.name)),
                    ("rating", Val::Int(rating as i64)),
                    ("sku", Val::Str(product.sku)),
                ]);
                self.track("Product Reviewed", Channel::Web, props)?;
            }
            if self.rng.chance(0.2) {
                break;
            }
        }

        let Some(plan) = plan else {
            return Some(());
        };
        let detractor = nps.is_some_and(|s| s <= 6);
        let cancel = if detractor || self.unhappy { 0.6 } else { 0.25 };
        if self.rng.chance(cancel) {
            self.much_later();
            let reason = if self.unhappy {
                "bad_experience"
            } else {
                *self.rng.pick(catalog::CANCEL_REASONS)
            };
            let channel = if self.rng.chance(0.7) {
                Channel::Web
            } else {
                Channel::CallCenter
            };
            let props = Props::of(&[("plan", Val::Str(plan)), ("reason", Val::Str(reason))]);
            self.opening_hours(channel);
            self.track("Subscription Cancelled", channel, props)?;
        }
        Some(())
    }

    /// One more order: prompted by a campaign or not, sometimes straight from the link.
    fn repeat_purchase(&mut self) -> Option<()> {
        let mut campaign = None;
        let mut channel = self.device_now(0.75);
        match self.rng.weighted(&[30, 12, 13, 30, 15]) {
            0 => {
                let c = if self.rng.chance(0.5) {
                    catalog::REORDER
                } else {
                    catalog::LOYALTY
                };
                if !self.email(c, 0.7)? {
                    return Some(());
                }
                campaign = Some(c);
                self.moment();
            }
            1 => {
                let c = *self.rng.pick(catalog::SMS_CAMPAIGNS);
                self.sms_click(c)?;
                campaign = Some(c);
                self.moment();
            }
            2 => {
                let c = *self.rng.pick(catalog::PUSH_CAMPAIGNS);
                self.track(
                    "Push Opened",
                    Channel::Push,
                    Props::of(&[("campaign", Val::Str(c))]),
                )?;
                campaign = Some(c);
                channel = Channel::Mobile;
                self.moment();
            }
            3 => {}
            _ => {
                let store = *self.rng.pick(catalog::STORES);
                self.opening_hours(Channel::Store);
                self.track(
                    "Store Visit",
                    Channel::Store,
                    Props::of(&[("store", Val::Str(store))]),
                )?;
                if self.rng.chance(0.7) {
                    self.t += self.rng.between(5 * MINUTE, 40 * MINUTE);
                    self.order(Channel::Store, None)?;
                }
                return Some(());
            }
        }
        if campaign.is_some() && self.rng.chance(0.3) {
            // Reorder link: no browsing, no cart.
            self.order(channel, campaign)?;
            return Some(());
        }
        self.open_session(channel, campaign)?;
        let views = 1 + self.rng.weighted(&[50, 30, 20]) as u32;
        self.view_products(channel, views)?;
        if !self.rng.chance(0.7) {
            return Some(());
        }
        let product = self.last_viewed.unwrap_or(0);
        self.add_to_cart(channel, product)?;
        self.pause();
        let items = Props::of(&[("items", Val::Int(self.cart.len() as i64))]);
        self.track("Checkout Started", channel, items)?;
        if self.rng.chance(0.85) {
            self.pause();
            self.order(channel, campaign)?;
        } else {
            self.cart.clear();
        }
        Some(())
    }
}

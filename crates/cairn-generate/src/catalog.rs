//! The fictional outdoor-gear shop the generated customers buy from: products, campaigns,
//! pages, stores. Fixed tables, so the output never depends on anything but the seed.

#[derive(Debug)]
pub struct Product {
    pub sku: &'static str,
    pub name: &'static str,
    pub category: &'static str,
    /// Price in cents.
    pub price: i64,
}

const fn p(sku: &'static str, name: &'static str, category: &'static str, price: i64) -> Product {
    Product {
        sku,
        name,
        category,
        price,
    }
}

/// Popular products first: the simulation favours the front of the list.
pub const PRODUCTS: &[Product] = &[
    p("SH-101", "Trail Runner", "shoes", 8999),
    p("JK-201", "Rain Shell", "jackets", 12900),
    p("BP-301", "Day Pack 22L", "packs", 6450),
    p("AC-401", "Steel Bottle", "accessories", 2400),
    p("SH-102", "Hiking Boot", "shoes", 15900),
    p("CP-501", "Trekking Poles", "camping", 7900),
    p("AC-402", "Merino Socks", "accessories", 1900),
    p("JK-202", "Down Vest", "jackets", 11900),
    p("CP-502", "Headlamp", "camping", 3900),
    p("BP-302", "Trek Pack 45L", "packs", 18900),
    p("CP-503", "Two-Person Tent", "camping", 29900),
    p("CP-504", "Sleeping Bag", "camping", 21900),
    p("SH-103", "Camp Sandal", "shoes", 4900),
    p("AC-403", "Sun Hat", "accessories", 2900),
    p("JK-203", "Fleece Hoodie", "jackets", 7400),
    p("AC-404", "First Aid Kit", "accessories", 3400),
];

/// Paid-media campaigns (the `ads` channel) and the networks that carry them.
pub const AD_CAMPAIGNS: &[&str] = &[
    "search_brand",
    "search_generic",
    "social_prospecting",
    "video_awareness",
];
pub const AD_RETARGETING: &str = "social_retargeting";
pub const AD_SOURCES: &[&str] = &["google", "meta", "tiktok"];

/// E-mail and SMS campaigns, by purpose.
pub const NEWSLETTERS: &[&str] = &["spring_collection", "weekly_deals", "trail_guide"];
pub const WELCOME: &str = "welcome_series";
pub const CART_REMINDER: &str = "cart_reminder";
pub const CHECKOUT_RECOVERY: &str = "checkout_recovery";
pub const REORDER: &str = "reorder_reminder";
pub const LOYALTY: &str = "loyalty_rewards";
pub const WINBACK: &str = "winback";
pub const SMS_CAMPAIGNS: &[&str] = &["flash_sale", "weekend_offer"];
pub const PUSH_CAMPAIGNS: &[&str] = &["back_in_stock", "price_drop"];

/// Landing pages of the web shop.
pub const LANDING_PAGES: &[&str] = &["/", "/", "/", "/sale", "/new", "/c/shoes", "/c/camping"];

/// Screens of the mobile app.
pub const SCREENS: &[&str] = &["Home", "Search", "Deals", "Wishlist"];

pub const STORES: &[&str] = &["Denver Flagship", "Portland", "Seattle", "Boulder"];

pub const SUPPORT_REASONS: &[&str] = &[
    "order_status",
    "order_status",
    "delivery",
    "billing",
    "product_issue",
    "return",
];

pub const CANCEL_REASONS: &[&str] = &["too_expensive", "not_using", "bad_experience", "moved"];

pub const PLANS: &[(&str, i64)] = &[("trail_club", 999), ("trail_club_plus", 1999)];

//! Demo orders that look like traffic (feature `demo`): the producer
//! example publishes them, and a benchmark can load the same ones.
//!
//! Each order has its own id, a customer from one of a few dozen cities
//! (name, phone, address, postal code, currency and locale that belong
//! together), one to [`OrderGenerator::max_items`] items with their own
//! prices and discounts, and totals that add up:
//!
//! - an item's `total_price` is its `price` less its `sale` percentage,
//!   rounded down (as in `examples/example.json`: 453 less 30% is 317);
//! - `payment.goods_total` is the sum of the items' `total_price`;
//! - `payment.amount` is `goods_total + delivery_cost + custom_fee`.
//!
//! `date_created` is the instant the caller gives (the producer gives the
//! current time) and `payment_dt` a few seconds to two minutes before it.
//! Everything else comes from the seed: the same seed and the same
//! instants give the same orders, ids included, in the same build of this
//! crate (the random number generator, `fastrand`, does not promise the same
//! numbers across its versions). Every order passes [`Order::decode`].
//!
//! # Examples
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use order_cache::{demo::OrderGenerator, Order};
//!
//! let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
//! let mut orders = OrderGenerator::new(42);
//! let order = orders.order(now);
//!
//! // What is published is what the service accepts...
//! let json = order.to_json();
//! assert_eq!(Order::decode(&json).unwrap(), order);
//! // ...and its totals add up.
//! let goods: i64 = order.items.iter().map(|i| i.total_price).sum();
//! assert_eq!(order.payment.goods_total, goods);
//! assert_eq!(
//!     order.payment.amount,
//!     goods + order.payment.delivery_cost + order.payment.custom_fee
//! );
//! // The same seed gives the same orders.
//! assert_eq!(OrderGenerator::new(42).order(now), order);
//! ```

use chrono::{DateTime, Duration, Utc};

use crate::model::{Delivery, Extra, Item, Order, OrderUid, Payment, Timestamp, MAX_ITEMS};

/// Makes varied valid orders from a seed; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct OrderGenerator {
    rng: fastrand::Rng,
    seed: u64,
    max_items: usize,
}

impl OrderGenerator {
    /// The most items an order has unless [`OrderGenerator::with_max_items`]
    /// says otherwise. Most orders have one to three: each further item is
    /// less likely than the one before.
    pub const DEFAULT_MAX_ITEMS: usize = 10;

    /// A generator whose orders are determined by `seed`.
    pub fn new(seed: u64) -> OrderGenerator {
        OrderGenerator {
            rng: fastrand::Rng::with_seed(seed),
            seed,
            max_items: Self::DEFAULT_MAX_ITEMS,
        }
    }

    /// Orders of at most `max` items (at least 1, at most
    /// [`MAX_ITEMS`], which the service accepts).
    pub fn with_max_items(mut self, max: usize) -> OrderGenerator {
        self.max_items = max.clamp(1, MAX_ITEMS);
        self
    }

    /// The seed given to [`OrderGenerator::new`]: printed, it lets a run be
    /// repeated.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The most items an order may have.
    pub fn max_items(&self) -> usize {
        self.max_items
    }

    /// The next order, created at `created`.
    pub fn order(&mut self, created: DateTime<Utc>) -> Order {
        let uid = self.token(HEX, 20);
        let place = *self.pick(PLACES);
        let person = *self.pick(PEOPLE);
        let entry = *self.pick(&["WBIL", "WBIL", "WBIL", "WBRU", "WBKZ"]);
        let track_number = format!("{entry}M{}", self.token(UPPER, 10));
        let items = self.items(&track_number);
        let goods_total: i64 = items.iter().map(|i| i.total_price).sum();
        // Free delivery from 3,000; a customs fee on some orders from abroad.
        let delivery_cost = if goods_total >= 3000 {
            0
        } else {
            *self.pick(&[99, 149, 199, 299, 500, 1500])
        };
        let custom_fee = if place.abroad && self.rng.u8(..4) == 0 {
            goods_total / 20
        } else {
            0
        };
        let paid = created - Duration::seconds(self.rng.i64(5..=120));
        Order {
            order_uid: OrderUid::generated(uid.clone()),
            track_number,
            entry: entry.to_owned(),
            delivery: self.delivery(place, person),
            payment: Payment {
                transaction: uid,
                request_id: String::new(),
                currency: place.currency.to_owned(),
                provider: (*self.pick(&["wbpay", "wbpay", "wbpay", "yookassa", "cloudpayments"]))
                    .to_owned(),
                amount: goods_total + delivery_cost + custom_fee,
                payment_dt: paid.timestamp(),
                bank: (*self.pick(&["alpha", "sber", "tinkoff", "vtb", "raiffeisen"])).to_owned(),
                delivery_cost,
                goods_total,
                custom_fee,
                extra: Extra::default(),
            },
            items,
            locale: place.locale.to_owned(),
            internal_signature: String::new(),
            customer_id: self.token(LOWER_DIGITS, 10),
            delivery_service: (*self.pick(&[
                "meest",
                "cdek",
                "boxberry",
                "dpd",
                "russian-post",
                "wb-courier",
            ]))
            .to_owned(),
            shardkey: self.rng.u8(0..10).to_string(),
            sm_id: self.rng.i64(1..=99),
            date_created: Timestamp::from(created),
            oof_shard: self.rng.u8(1..=2).to_string(),
            extra: Extra::default(),
        }
    }

    fn delivery(&mut self, place: Place, person: Person) -> Delivery {
        let (first, last) = if place.cyrillic {
            (person.first_cyrillic, person.last_cyrillic)
        } else {
            (person.first, person.last)
        };
        let street = *self.pick(place.streets);
        let house = self.rng.u16(1..=180);
        let address = if self.rng.bool() {
            format!("{street} {house}")
        } else {
            format!("{street} {house}, apt {}", self.rng.u16(1..=320))
        };
        let domain = *self.pick(&["example.com", "example.org", "example.net"]);
        Delivery {
            name: format!("{first} {last}"),
            phone: format!(
                "{}{}",
                place.phone_code,
                self.token(DIGITS, place.phone_digits)
            ),
            zip: self.token(DIGITS, place.zip_digits),
            city: place.city.to_owned(),
            address,
            region: place.region.to_owned(),
            email: format!(
                "{}.{}{}@{domain}",
                person.login,
                person.last.to_ascii_lowercase(),
                self.rng.u16(1..1000)
            ),
            extra: Extra::default(),
        }
    }

    fn items(&mut self, track_number: &str) -> Vec<Item> {
        // Each further item with probability 45%: about 1.8 on average.
        let mut count = 1;
        while count < self.max_items && self.rng.u8(..100) < 45 {
            count += 1;
        }
        (0..count)
            .map(|_| {
                let product = *self.pick(PRODUCTS);
                let price = self.rng.i64(product.price.0..=product.price.1);
                let sale = *self.pick(&[0, 0, 0, 5, 10, 15, 20, 25, 30, 40, 50, 70]);
                Item {
                    chrt_id: self.rng.i64(1_000_000..=9_999_999),
                    track_number: track_number.to_owned(),
                    price,
                    rid: self.token(HEX, 21),
                    name: product.name.to_owned(),
                    sale,
                    size: (*self.pick(product.sizes)).to_owned(),
                    total_price: price * (100 - sale) / 100,
                    nm_id: product.nm_id,
                    brand: product.brand.to_owned(),
                    status: *self.pick(&[202, 202, 202, 202, 200, 201]),
                    extra: Extra::default(),
                }
            })
            .collect()
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.rng.usize(..from.len())]
    }

    fn token(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len).map(|_| char::from(*self.pick(alphabet))).collect()
    }
}

const HEX: &[u8] = b"0123456789abcdef";
const DIGITS: &[u8] = b"0123456789";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER_DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A city and what goes with it.
#[derive(Clone, Copy)]
struct Place {
    city: &'static str,
    region: &'static str,
    streets: &'static [&'static str],
    zip_digits: usize,
    phone_code: &'static str,
    phone_digits: usize,
    currency: &'static str,
    locale: &'static str,
    /// Names written in Cyrillic, as the city is.
    cyrillic: bool,
    /// Outside the shop's home country: a customs fee now and then.
    abroad: bool,
}

const RU_STREETS: &[&str] = &[
    "ul. Lenina",
    "ul. Pushkina",
    "ul. Sadovaya",
    "pr. Mira",
    "ul. Gagarina",
    "Nevsky pr.",
];
const RU_STREETS_CYRILLIC: &[&str] = &[
    "ул. Ленина",
    "ул. Пушкина",
    "ул. Садовая",
    "пр. Мира",
    "ул. Гагарина",
];

const PLACES: &[Place] = &[
    Place::home("Moscow", "Moscow", RU_STREETS),
    Place::home("Saint Petersburg", "Leningrad Oblast", RU_STREETS),
    Place::home("Kazan", "Tatarstan", RU_STREETS),
    Place::home("Yekaterinburg", "Sverdlovsk Oblast", RU_STREETS),
    Place::home("Novosibirsk", "Novosibirsk Oblast", RU_STREETS),
    Place {
        cyrillic: true,
        ..Place::home(
            "Нижний Новгород",
            "Нижегородская область",
            RU_STREETS_CYRILLIC,
        )
    },
    Place {
        cyrillic: true,
        ..Place::home("Краснодар", "Краснодарский край", RU_STREETS_CYRILLIC)
    },
    Place::abroad("Minsk", "Minsk Region", ("+375", 9), 6, "BYN", "ru"),
    Place::abroad("Almaty", "Almaty Region", ("+7", 10), 6, "KZT", "ru"),
    Place::abroad("Astana", "Akmola Region", ("+7", 10), 6, "KZT", "ru"),
    Place::abroad("Tashkent", "Tashkent Region", ("+998", 9), 6, "UZS", "en"),
    Place::abroad("Yerevan", "Yerevan", ("+374", 8), 4, "AMD", "en"),
    Place::abroad("Tbilisi", "Tbilisi", ("+995", 9), 4, "GEL", "en"),
    Place::abroad("Bishkek", "Chuy Region", ("+996", 9), 6, "KGS", "en"),
    Place::abroad(
        "Kiryat Motzkin",
        "Haifa District",
        ("+972", 9),
        7,
        "ILS",
        "en",
    ),
    Place::abroad("Tel Aviv", "Tel Aviv District", ("+972", 9), 7, "ILS", "en"),
];

impl Place {
    const fn home(
        city: &'static str,
        region: &'static str,
        streets: &'static [&'static str],
    ) -> Place {
        Place {
            city,
            region,
            streets,
            zip_digits: 6,
            phone_code: "+7",
            phone_digits: 10,
            currency: "RUB",
            locale: "ru",
            cyrillic: false,
            abroad: false,
        }
    }

    const fn abroad(
        city: &'static str,
        region: &'static str,
        (phone_code, phone_digits): (&'static str, usize),
        zip_digits: usize,
        currency: &'static str,
        locale: &'static str,
    ) -> Place {
        Place {
            city,
            region,
            streets: &["Main St", "Central Ave", "Park St", "Lake Rd", "Station Sq"],
            zip_digits,
            phone_code,
            phone_digits,
            currency,
            locale,
            cyrillic: false,
            abroad: true,
        }
    }
}

/// A customer's name in both scripts, and the login of their e-mail.
#[derive(Clone, Copy)]
struct Person {
    first: &'static str,
    last: &'static str,
    first_cyrillic: &'static str,
    last_cyrillic: &'static str,
    login: &'static str,
}

const fn person(
    first: &'static str,
    last: &'static str,
    first_cyrillic: &'static str,
    last_cyrillic: &'static str,
    login: &'static str,
) -> Person {
    Person {
        first,
        last,
        first_cyrillic,
        last_cyrillic,
        login,
    }
}

const PEOPLE: &[Person] = &[
    person("Anna", "Petrova", "Анна", "Петрова", "anna"),
    person("Ivan", "Smirnov", "Иван", "Смирнов", "ivan"),
    person("Maria", "Ivanova", "Мария", "Иванова", "maria"),
    person("Dmitry", "Kuznetsov", "Дмитрий", "Кузнецов", "dmitry"),
    person("Elena", "Sokolova", "Елена", "Соколова", "elena"),
    person("Sergey", "Popov", "Сергей", "Попов", "sergey"),
    person("Olga", "Volkova", "Ольга", "Волкова", "olga"),
    person("Alexey", "Morozov", "Алексей", "Морозов", "alexey"),
    person("Natalia", "Novikova", "Наталья", "Новикова", "natalia"),
    person("Pavel", "Fedorov", "Павел", "Фёдоров", "pavel"),
    person("Aigerim", "Nurlanova", "Айгерим", "Нурланова", "aigerim"),
    person("Timur", "Akhmetov", "Тимур", "Ахметов", "timur"),
    person("Noa", "Levi", "Ноа", "Леви", "noa"),
    person("David", "Cohen", "Давид", "Коэн", "david"),
    person("Ani", "Sargsyan", "Ани", "Саргсян", "ani"),
    person("Giorgi", "Beridze", "Георгий", "Беридзе", "giorgi"),
    person("Test", "Testov", "Тест", "Тестов", "test"),
];

/// A product: what an item of it is called, costs and comes in.
#[derive(Clone, Copy)]
struct Product {
    name: &'static str,
    brand: &'static str,
    nm_id: i64,
    /// Lowest and highest price.
    price: (i64, i64),
    sizes: &'static [&'static str],
}

const ONE_SIZE: &[&str] = &["0"];
const CLOTHES: &[&str] = &["XS", "S", "M", "L", "XL", "XXL"];
const SHOES: &[&str] = &["36", "37", "38", "39", "40", "41", "42", "43", "44", "45"];

const fn product(
    name: &'static str,
    brand: &'static str,
    nm_id: i64,
    price: (i64, i64),
    sizes: &'static [&'static str],
) -> Product {
    Product {
        name,
        brand,
        nm_id,
        price,
        sizes,
    }
}

const PRODUCTS: &[Product] = &[
    product("Mascaras", "Vivienne Sabo", 2389212, (250, 900), ONE_SIZE),
    product("Lipstick", "Maybelline", 2401187, (300, 1200), ONE_SIZE),
    product("T-shirt", "Gloria Jeans", 3120554, (400, 1500), CLOTHES),
    product("Jeans", "Levi's", 3318020, (2500, 9000), CLOTHES),
    product("Hoodie", "Zarina", 4011236, (1500, 4000), CLOTHES),
    product("Socks, 5 pairs", "Incity", 4100871, (300, 900), CLOTHES),
    product("Sneakers", "Nike", 5120043, (4000, 15000), SHOES),
    product("Running shoes", "Adidas", 5233310, (3500, 12000), SHOES),
    product("Phone case", "Baseus", 6012448, (200, 900), ONE_SIZE),
    product("USB-C cable, 1 m", "Ugreen", 6020317, (300, 1200), ONE_SIZE),
    product(
        "Wireless earbuds",
        "Xiaomi",
        6230981,
        (1500, 6000),
        ONE_SIZE,
    ),
    product("Backpack", "Xiaomi", 6301145, (1800, 5000), ONE_SIZE),
    product(
        "Coffee beans, 1 kg",
        "Lavazza",
        7001263,
        (1200, 2500),
        ONE_SIZE,
    ),
    product(
        "Green tea, 100 bags",
        "Greenfield",
        7014402,
        (150, 500),
        ONE_SIZE,
    ),
    product("Детское пюре", "ФрутоНяня", 7120558, (60, 150), ONE_SIZE),
    product("Шампунь", "Natura Siberica", 7233019, (300, 700), ONE_SIZE),
    product(
        "Frying pan, 28 cm",
        "Tefal",
        8010772,
        (1500, 6000),
        ONE_SIZE,
    ),
    product("Building set", "LEGO", 8120446, (2000, 15000), ONE_SIZE),
    product("Notebook A5", "Hatber", 9004121, (100, 400), ONE_SIZE),
    product("Vitamin D3", "Solgar", 9110835, (800, 2500), ONE_SIZE),
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 23, 59, 58).unwrap()
    }

    #[test]
    fn every_order_of_many_seeds_passes_the_services_validation_and_adds_up() {
        let mut ids = HashSet::new();
        let mut items = 0;
        let mut orders = 0;
        for seed in 0..2_000 {
            let mut generator = OrderGenerator::new(seed);
            for n in 0..10 {
                let created = now() + Duration::milliseconds(n * 137);
                let order = generator.order(created);
                let json = order.to_json();
                let decoded = Order::decode(&json).unwrap_or_else(|e| {
                    panic!(
                        "seed {seed}, order {n}: {e}: {}",
                        String::from_utf8_lossy(&json)
                    )
                });
                assert_eq!(
                    decoded, order,
                    "seed {seed}, order {n}: served as generated"
                );
                assert!(!order.has_unknown_fields());

                let goods: i64 = order.items.iter().map(|i| i.total_price).sum();
                let p = &order.payment;
                assert_eq!(p.goods_total, goods, "seed {seed}, order {n}");
                assert_eq!(p.amount, goods + p.delivery_cost + p.custom_fee);
                for item in &order.items {
                    assert_eq!(item.total_price, item.price * (100 - item.sale) / 100);
                    assert_eq!(item.track_number, order.track_number);
                }
                assert!((1..=OrderGenerator::DEFAULT_MAX_ITEMS).contains(&order.items.len()));
                assert_eq!(order.date_created.as_datetime(), created);
                let paid = created.timestamp() - p.payment_dt;
                assert!((5..=120).contains(&paid), "paid {paid} s before");
                assert!(
                    ids.insert(order.order_uid.clone()),
                    "{} twice",
                    order.order_uid
                );
                items += order.items.len();
                orders += 1;
            }
        }
        // Varied: not every order is the same size.
        let mean = items as f64 / orders as f64;
        assert!((1.5..2.2).contains(&mean), "{mean} items per order");
    }

    #[test]
    fn the_same_seed_gives_the_same_orders_and_another_seed_others() {
        let run = |seed| {
            let mut generator = OrderGenerator::new(seed);
            (0..50).map(|_| generator.order(now())).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let (a, b) = (run(7), run(8));
        assert!(a.iter().zip(&b).all(|(a, b)| a.order_uid != b.order_uid));
    }

    #[test]
    fn orders_vary_in_the_fields_a_page_shows() {
        let mut generator = OrderGenerator::new(1);
        let orders: Vec<Order> = (0..200).map(|_| generator.order(now())).collect();
        let distinct = |f: fn(&Order) -> String| orders.iter().map(f).collect::<HashSet<_>>().len();
        assert!(distinct(|o| o.delivery.name.clone()) > 10);
        assert!(distinct(|o| o.delivery.city.clone()) > 10);
        assert!(distinct(|o| o.payment.currency.clone()) > 4);
        assert!(distinct(|o| o.items[0].name.clone()) > 10);
        assert!(distinct(|o| o.payment.amount.to_string()) > 150);
        assert!(distinct(|o| o.items.len().to_string()) >= 4);
    }

    #[test]
    fn max_items_bounds_every_order_and_stays_within_what_the_service_accepts() {
        let mut one = OrderGenerator::new(3).with_max_items(1);
        assert!((0..500).all(|_| one.order(now()).items.len() == 1));
        assert_eq!(OrderGenerator::new(3).with_max_items(0).max_items(), 1);
        assert_eq!(
            OrderGenerator::new(3)
                .with_max_items(usize::MAX)
                .max_items(),
            MAX_ITEMS
        );
    }
}

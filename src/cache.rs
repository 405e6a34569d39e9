//! The in-memory order cache: immutable snapshots published through
//! `arc-swap`, so readers never lock.
//!
//! Unlimited by default, it holds every order it is given. With a byte
//! budget ([`Cache::with_max_bytes`]) it gives up the orders least asked
//! for, chosen by S3-FIFO (the `policy` module), so that its memory stays
//! within the budget whatever the number of orders.

mod compact;
mod policy;
mod size;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::model::{Order, OrderUid};
use compact::Codec;
use policy::S3Fifo;
pub use size::{ByteSize, ByteSizeError};

/// How many recent ids a snapshot remembers, for the web page's list.
pub(crate) const RECENT: usize = 20;

/// Memory an entry costs beyond its id and JSON and the allocator's
/// rounding of them ([`entry_cost`]): the shared entry's allocation
/// (reference counts, pointer, lengths, read count), its share of the
/// persistent map's nodes, and with a budget its slot in the eviction and
/// ghost queues.
pub(crate) const ENTRY_OVERHEAD: u64 = 152;

/// What a packed entry costs beyond a plain entry of the same size: small
/// frames of many sizes leave more of the allocator's pages part-used as
/// they come and go. Measured, as [`ENTRY_OVERHEAD`] is, by
/// `tests/cache_memory.rs`.
const PACKED_OVERHEAD: u64 = 48;

/// The memory a cached order kept as JSON costs against a budget: its id
/// and JSON, a sixth more for the allocator's rounding up to its size
/// classes, and 152 bytes for the entry, its map node and its queue slots.
/// A packed order ([`Compression::Zstd`]) costs the same of its frame
/// instead of its JSON, and 48 bytes more.
///
/// Measured, not derived: `tests/cache_memory.rs` fills caches with orders
/// of random sizes under mimalloc (the server's allocator) and fails if the
/// resident memory they take exceeds what this counts. Under mimalloc the
/// memory beyond id and JSON came to 177 B an entry for 100-300 B bodies,
/// 247 B for 200-1,400 B and 1,317 B for 4-12 kB (size classes a quarter
/// apart grow with the body); this counts 215, 315 and 1,518. A 64 MiB
/// budget through which four budgets of orders went held 68-72 MiB
/// resident (1.06-1.13x): freed memory the allocator keeps, and the ghost
/// queue. Other allocators (glibc's) round differently: measure before
/// relying on a tight budget.
///
/// # Examples
///
/// ```
/// use order_cache::entry_cost;
///
/// // The id and JSON, a sixth more for the allocator, and the entry's
/// // fixed share of map and queue nodes.
/// assert_eq!(entry_cost("order-1", 593), 600 + 100 + 152);
/// ```
pub fn entry_cost(uid: &str, json_len: usize) -> u64 {
    cost_of(uid.len() + json_len)
}

fn cost_of(data_len: usize) -> u64 {
    let data = data_len as u64;
    data + data / 6 + ENTRY_OVERHEAD
}

/// What an entry keeping `body_len` bytes for an id of `uid_len` costs,
/// packed or as JSON.
fn kept_cost(uid_len: usize, body_len: usize, packed: bool) -> u64 {
    cost_of(uid_len + body_len) + if packed { PACKED_OVERHEAD } else { 0 }
}

/// Every known order's response bytes, keyed by id. Cheap to clone: clones
/// share the same cache.
///
/// Reads load the current [`Snapshot`] without locking. Writers build the
/// next snapshot from the current one (a persistent map, so this copies
/// O(log n) nodes per insert, not the whole map) and publish it with one
/// atomic swap per batch.
///
/// With a byte budget ([`Cache::with_max_bytes`]), every write that would
/// go over it evicts orders in the same swap, so no published snapshot holds
/// more than the budget (counted by [`entry_cost`]). A read then also bumps
/// the order's 2-bit read count (a relaxed load, and a relaxed store only
/// while the count is below 3): the eviction policy's only input from the
/// read path, with no lock.
///
/// # Examples
///
/// ```
/// use order_cache::{Cache, Order};
///
/// let cache = Cache::new();
/// let order = Order::decode(include_bytes!("../examples/example.json")).unwrap();
/// cache.insert_orders(std::slice::from_ref(&order));
/// let body = cache.get("b563feb7b2b84b6test").unwrap();
/// assert_eq!(serde_json::from_slice::<Order>(&body).unwrap(), order);
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Default for Cache {
    fn default() -> Cache {
        Cache::new()
    }
}

struct Inner {
    current: ArcSwap<Snapshot>,
    compression: Compression,
    /// Orders to gather before a dictionary is trained on them.
    train_after: usize,
    /// Set once a dictionary is being (or was) trained: one per cache.
    training: AtomicBool,
    // Serialises writers so that none of them redoes work after losing a
    // compare-and-swap race; readers never touch it. With a budget, it
    // guards the eviction queues, which only writers use.
    writer: Mutex<Option<S3Fifo>>,
    /// Whether reads count for eviction: only with a budget, so that the
    /// unlimited cache's hit path is what it always was.
    counts_reads: bool,
    /// Restores under way ([`Cache::restoring`]): with a budget, orders
    /// read back meanwhile are served but not admitted, so that the
    /// snapshot being built and the live cache never hold more than the
    /// budget between them.
    restoring: AtomicUsize,
}

/// While alive, a restore into the cache is under way.
pub(crate) struct Restoring<'a>(&'a Cache);

impl Drop for Restoring<'_> {
    fn drop(&mut self) {
        self.0.inner.restoring.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a [`Cache`] holds, from its current snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Orders cached.
    pub entries: usize,
    /// Size of their JSON bodies.
    pub json_bytes: usize,
    /// Memory they cost against the budget ([`entry_cost`] summed).
    pub bytes: u64,
    /// The budget, if any.
    pub max_bytes: Option<u64>,
    /// Orders evicted since the cache was made.
    pub evictions: u64,
    /// Whether the cache has trained its dictionary
    /// ([`Compression::Zstd`]): orders cached since are kept packed when
    /// that makes them cost less.
    pub dictionary: bool,
}

/// How a [`Cache`] keeps its orders' bodies.
///
/// # Examples
///
/// ```
/// use order_cache::Compression;
///
/// assert_eq!("zstd".parse::<Compression>(), Ok(Compression::Zstd));
/// assert_eq!(Compression::None.to_string(), "none");
/// assert!("gzip".parse::<Compression>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// As the JSON it is served as: no work per read.
    #[default]
    None,
    /// As zstd frames against a dictionary trained on the cache's first
    /// orders ([`CacheBuilder::train_after`]): about a fifth of the JSON on
    /// the orders of `bench/generate_varied.sql`, for about 1-2 µs of
    /// decompression per read. Orders cached before the dictionary exists
    /// stay as JSON, as do those a frame would not make cheaper.
    Zstd,
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
        })
    }
}

/// A text that names no [`Compression`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?}: expected \"none\" or \"zstd\"")]
pub struct CompressionError(String);

impl std::str::FromStr for Compression {
    type Err = CompressionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd),
            _ => Err(CompressionError(s.to_owned())),
        }
    }
}

/// Orders a cache gathers before it trains its dictionary, by default.
pub const TRAIN_AFTER: usize = 10_000;

/// Sets up a [`Cache`]: its budget and how it keeps bodies.
///
/// # Examples
///
/// ```
/// use order_cache::{Cache, Compression};
///
/// let cache = Cache::builder()
///     .max_bytes(Some(256 << 20))
///     .compression(Compression::Zstd)
///     .build();
/// assert_eq!(cache.max_bytes(), Some(256 << 20));
/// assert_eq!(cache.compression(), Compression::Zstd);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct CacheBuilder {
    max_bytes: Option<u64>,
    compression: Compression,
    train_after: usize,
}

impl CacheBuilder {
    /// The byte budget (see [`Cache::with_max_bytes`]); `None`, the
    /// default, keeps every order.
    pub fn max_bytes(mut self, max_bytes: Option<u64>) -> CacheBuilder {
        self.max_bytes = max_bytes;
        self
    }

    /// How bodies are kept; [`Compression::None`] by default.
    pub fn compression(mut self, compression: Compression) -> CacheBuilder {
        self.compression = compression;
        self
    }

    /// With [`Compression::Zstd`], how many orders to gather before the
    /// dictionary is trained on them ([`TRAIN_AFTER`] by default), or
    /// fewer if they come to 16 MiB: a restore that reads as many trains
    /// it on them before it packs any; a cache filled by ingest trains it
    /// on a thread of its own once it holds as many, or once its budget is
    /// full. Fewer than 64 are taken as 64.
    pub fn train_after(mut self, orders: usize) -> CacheBuilder {
        self.train_after = orders.max(compact::MIN_SAMPLES);
        self
    }

    /// The empty cache.
    pub fn build(self) -> Cache {
        let empty = Snapshot {
            max_bytes: self.max_bytes,
            ..Snapshot::default()
        };
        Cache {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(empty),
                compression: self.compression,
                train_after: self.train_after,
                training: AtomicBool::new(false),
                writer: Mutex::new(self.max_bytes.map(S3Fifo::new)),
                counts_reads: self.max_bytes.is_some(),
                restoring: AtomicUsize::new(0),
            }),
        }
    }
}

/// One immutable state of the [`Cache`].
///
/// # Examples
///
/// A snapshot never changes, whatever is inserted after it was taken:
///
/// ```
/// use bytes::Bytes;
/// use order_cache::{Cache, OrderUid};
///
/// let cache = Cache::new();
/// let id = |s: &str| OrderUid::parse(s).unwrap();
/// cache.insert([(id("a"), Bytes::from_static(b"{}"))]);
/// let before = cache.snapshot();
/// cache.insert([(id("b"), Bytes::from_static(b"[]"))]);
///
/// assert_eq!(before.len(), 1);
/// assert!(before.get("b").is_none());
/// assert_eq!(cache.snapshot().recent().collect::<Vec<_>>(), ["b", "a"]);
/// assert_eq!(cache.snapshot().json_bytes(), 4);
/// ```
#[derive(Clone, Default)]
pub struct Snapshot {
    /// JSON bytes of the entries.
    bytes: usize,
    /// What the entries cost against a budget ([`entry_cost`] summed).
    cost: u64,
    // A map to unit rather than a set: only the map can hand back the
    // stored key for a borrowed one.
    orders: imbl::HashMap<Slot, ()>,
    /// Ids alone, not entries: an evicted order's body must not stay
    /// alive for the page's list.
    recent: imbl::Vector<Arc<str>>,
    max_bytes: Option<u64>,
    /// Orders evicted since the cache was made.
    evictions: u64,
    /// The dictionary new entries are packed with, once trained. Entries
    /// keep the one that packed them; while there is none, every entry is
    /// plain JSON.
    codec: Option<Arc<Codec>>,
    /// The entries of a snapshot built aside within a budget, in the order
    /// they came (newest first), for the eviction queues at the merge;
    /// empty in published snapshots.
    arrival: Vec<Slot>,
}

/// One cached order: its id and response bytes in a single allocation, so a
/// map node holds one thin pointer per order and copying a node on write
/// stays cheap.
#[derive(Debug)]
struct Entry {
    // The id apart from the JSON, though one allocation would save 16 to
    // 32 bytes an entry: a map compares ids as `str` and hashes them as
    // `str`, and an id inside the JSON's bytes could only be borrowed as
    // `[u8]` (whose hash has a length prefix, so a lookup took ~10% more
    // instructions) or through a UTF-8 check per comparison.
    uid: Box<str>,
    /// The JSON, or the frame `codec` packed it into.
    body: Box<[u8]>,
    codec: Option<Arc<Codec>>,
    /// The JSON's length, when packed.
    json_len: u32,
    /// Reads since the entry was admitted or last passed by the eviction
    /// policy, up to [`MAX_FREQUENCY`]; only counted with a budget.
    frequency: AtomicU8,
}

/// Where an entry's read count stops: two bits, as S3-FIFO has it, so that
/// a hot entry's count stops being written.
const MAX_FREQUENCY: u8 = 3;

impl Entry {
    /// The entry of `json`, packed by `codec` if given and if that makes it
    /// cost less.
    fn new(uid: &OrderUid, json: &[u8], codec: Option<&Arc<Codec>>) -> Entry {
        let packed = codec.and_then(|codec| {
            let json_len = u32::try_from(json.len()).ok()?;
            let frame = codec.pack(json)?;
            // A packed entry counts `PACKED_OVERHEAD` more, and every read
            // decompresses it: a frame that saves less is not worth it.
            let uid_len = uid.as_str().len();
            let saves =
                kept_cost(uid_len, frame.len(), true) < kept_cost(uid_len, json.len(), false);
            saves.then(|| (frame, codec.clone(), json_len))
        });
        let (body, codec, json_len) = match packed {
            Some((frame, codec, json_len)) => (frame, Some(codec), json_len),
            None => (json.into(), None, 0),
        };
        Entry {
            uid: uid.as_str().into(),
            body,
            codec,
            json_len,
            frequency: AtomicU8::new(0),
        }
    }

    fn uid(&self) -> &str {
        &self.uid
    }

    /// The length of the JSON served for the entry.
    fn json_len(&self) -> usize {
        match self.codec {
            Some(_) => self.json_len as usize,
            None => self.body.len(),
        }
    }

    /// What the entry costs against a budget: what it keeps, packed or not.
    fn cost(&self) -> u64 {
        kept_cost(self.uid.len(), self.body.len(), self.codec.is_some())
    }

    /// The response bytes: the cached allocation itself for plain JSON, a
    /// fresh one for a packed entry. `None` only if a frame does not
    /// decompress, which would be a bug here; it is logged, and the order
    /// is then read as a miss.
    fn json(entry: &Arc<Entry>) -> Option<Bytes> {
        match &entry.codec {
            None => Some(Bytes::from_owner(Json(entry.clone()))),
            Some(codec) => {
                let json = codec.unpack(&entry.body, entry.json_len as usize);
                if json.is_none() {
                    tracing::error!(order_uid = %entry.uid, "a cached order's frame does not decompress");
                }
                json.map(Bytes::from)
            }
        }
    }

    /// Counts a read. A relaxed load, and a store only below the cap: a hot
    /// entry's count is no longer written, and a read lost to a race only
    /// makes the count lower by one.
    #[inline]
    fn touch(&self) {
        let frequency = self.frequency.load(Ordering::Relaxed);
        if frequency < MAX_FREQUENCY {
            self.frequency.store(frequency + 1, Ordering::Relaxed);
        }
    }

    fn frequency(&self) -> u8 {
        self.frequency.load(Ordering::Relaxed)
    }

    fn set_frequency(&self, frequency: u8) {
        self.frequency.store(frequency, Ordering::Relaxed);
    }
}

/// A shared [`Entry`], hashed and compared by its id.
#[derive(Clone, Debug)]
struct Slot(Arc<Entry>);

impl std::hash::Hash for Slot {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Must hash exactly as the `str` it borrows as.
        self.0.uid().hash(state);
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.0.uid == other.0.uid
    }
}

impl Eq for Slot {}

impl std::borrow::Borrow<str> for Slot {
    fn borrow(&self) -> &str {
        self.0.uid()
    }
}

/// Orders read ahead to train a dictionary on, then the rest.
pub(crate) type ReadAhead<I> = std::iter::Chain<std::vec::IntoIter<(OrderUid, Bytes)>, I>;

/// An entry's body, to train a dictionary on.
struct Sample(Arc<Entry>);

impl AsRef<[u8]> for Sample {
    fn as_ref(&self) -> &[u8] {
        &self.0.body
    }
}

/// Lets a response body share the cached allocation instead of copying it.
struct Json(Arc<Entry>);

impl AsRef<[u8]> for Json {
    fn as_ref(&self) -> &[u8] {
        // Only plain entries are handed out this way.
        &self.0.body
    }
}

impl Snapshot {
    /// A snapshot of these entries alone, built without the writer lock and
    /// in place (no other snapshot shares its nodes, so nothing is copied);
    /// publish it with [`Cache::merge`]. The first bytes of an id win.
    /// Entries are packed by `codec`, if given.
    pub(crate) fn build(
        codec: Option<Arc<Codec>>,
        entries: impl IntoIterator<Item = (OrderUid, Bytes)>,
    ) -> Snapshot {
        let mut snapshot = Snapshot {
            codec,
            ..Snapshot::default()
        };
        for (uid, bytes) in entries {
            snapshot.add(&uid, &bytes);
        }
        snapshot
    }

    /// Like [`Snapshot::build`], for a cache with a budget of `max_bytes`
    /// that leaves `room` for the restore: takes entries, newest first,
    /// until the next one would not fit in `room`, and then stops pulling
    /// from `entries`. An entry larger than the whole budget is skipped: it
    /// fits no cache of this size, and says nothing of the room left. Returns the snapshot and whether
    /// it is full (an entry was left out), i.e. whether a restore can stop
    /// reading. The merge evicts what no longer fits beside the orders
    /// cached meanwhile, the oldest restored first.
    ///
    /// A restore that wants to stop its scan itself can count with
    /// [`entry_cost`] against [`Cache::max_bytes`], or ask
    /// [`Snapshot::bytes`] as it goes.
    pub(crate) fn build_within(
        max_bytes: u64,
        room: u64,
        codec: Option<Arc<Codec>>,
        entries: impl IntoIterator<Item = (OrderUid, Bytes)>,
    ) -> (Snapshot, bool) {
        let mut snapshot = Snapshot {
            max_bytes: Some(max_bytes),
            codec,
            ..Snapshot::default()
        };
        for (uid, bytes) in entries {
            if snapshot.orders.contains_key(uid.as_str()) {
                continue;
            }
            let entry = Entry::new(&uid, &bytes, snapshot.codec.as_ref());
            let cost = entry.cost();
            if cost > max_bytes {
                // It would fit no cache this size: not a sign of a full one.
                continue;
            }
            if snapshot.cost + cost > room {
                return (snapshot, true);
            }
            let slot = snapshot.add_entry(entry);
            snapshot.arrival.push(slot);
        }
        (snapshot, false)
    }

    /// Adds an entry, packed with the snapshot's dictionary if it has one,
    /// unless the id is present; returns it when added.
    fn add(&mut self, uid: &OrderUid, json: &[u8]) -> Option<Slot> {
        if self.orders.contains_key(uid.as_str()) {
            return None;
        }
        Some(self.add_entry(Entry::new(uid, json, self.codec.as_ref())))
    }

    /// Adds an entry whose id is not present.
    fn add_entry(&mut self, entry: Entry) -> Slot {
        let slot = Slot(Arc::new(entry));
        self.bytes += slot.0.json_len();
        self.cost += slot.0.cost();
        self.orders.insert(slot.clone(), ());
        slot
    }

    /// Removes an entry the eviction policy gave up.
    fn evict(&mut self, entry: &Entry) {
        if self.orders.remove(entry.uid()).is_some() {
            self.bytes -= entry.json_len();
            self.cost -= entry.cost();
            self.evictions += 1;
        }
    }

    fn slot(&self, uid: &str) -> Option<&Slot> {
        self.orders.get_key_value(uid).map(|(slot, ())| slot)
    }

    /// The response bytes of the order with this id. The bytes share the
    /// cache's memory (nothing is copied) unless the order is kept
    /// compressed ([`Compression::Zstd`]). Unlike [`Cache::get`], this is
    /// not counted as a read by the eviction policy.
    pub fn get(&self, uid: &str) -> Option<Bytes> {
        Entry::json(&self.slot(uid)?.0)
    }

    /// How many orders the snapshot holds.
    pub fn len(&self) -> usize {
        self.orders.len()
    }

    /// Total size of the cached JSON, in bytes.
    pub fn json_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the snapshot holds no order.
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Memory the orders cost against a budget: [`entry_cost`] summed. Never
    /// more than [`Snapshot::max_bytes`] in a published snapshot.
    pub fn bytes(&self) -> u64 {
        self.cost
    }

    /// The cache's byte budget, if it has one.
    pub fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// Orders the cache evicted, from its start to this snapshot.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Ids of the most recently inserted orders, newest first. With a
    /// budget, an id may stay listed after its order was evicted.
    pub fn recent(&self) -> impl Iterator<Item = &str> {
        self.recent.iter().map(|id| &**id)
    }

    /// The figures of [`CacheStats`].
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.len(),
            json_bytes: self.bytes,
            bytes: self.cost,
            max_bytes: self.max_bytes,
            evictions: self.evictions,
            dictionary: self.codec.is_some(),
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// An empty cache without a budget: it keeps every order it is given.
    pub fn new() -> Cache {
        Cache::builder().build()
    }

    /// Sets up a cache with a budget, compression, or both.
    pub fn builder() -> CacheBuilder {
        CacheBuilder {
            max_bytes: None,
            compression: Compression::None,
            train_after: TRAIN_AFTER,
        }
    }

    /// An empty cache whose orders never cost more than `max_bytes` (as
    /// [`entry_cost`] counts them): beyond, it evicts the orders least read.
    /// An order costing more than the whole budget is not cached.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use order_cache::{entry_cost, Cache};
    /// use order_cache::OrderUid;
    ///
    /// let body = Bytes::from(vec![b'x'; 1000]);
    /// let cost = entry_cost("o0", body.len());
    /// let cache = Cache::with_max_bytes(10 * cost);
    /// for i in 0..10 {
    ///     cache.insert([(OrderUid::parse(&format!("o{i}")).unwrap(), body.clone())]);
    /// }
    /// // Read often: kept over the orders that follow.
    /// for _ in 0..3 {
    ///     assert!(cache.get("o0").is_some());
    /// }
    /// for i in 10..100 {
    ///     cache.insert([(OrderUid::parse(&format!("o{i}")).unwrap(), body.clone())]);
    /// }
    /// let stats = cache.stats();
    /// assert!(stats.bytes <= 10 * cost);
    /// assert_eq!(stats.evictions, 100 - stats.entries as u64);
    /// assert!(cache.get("o0").is_some());
    /// assert!(cache.get("o1").is_none());
    /// ```
    pub fn with_max_bytes(max_bytes: u64) -> Cache {
        Cache::builder().max_bytes(Some(max_bytes)).build()
    }

    /// How the cache keeps bodies.
    pub fn compression(&self) -> Compression {
        self.inner.compression
    }

    /// The byte budget, if the cache has one.
    pub fn max_bytes(&self) -> Option<u64> {
        self.inner.current.load().max_bytes
    }

    /// Entries, bytes and evictions, from the current snapshot.
    pub fn stats(&self) -> CacheStats {
        self.inner.current.load().stats()
    }

    /// The current snapshot. Holding it keeps that state alive; it never
    /// changes under the holder.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// The response bytes of the order with this id. With a budget, this
    /// counts as a read for eviction.
    #[inline]
    pub fn get(&self, uid: &str) -> Option<Bytes> {
        let snapshot = self.inner.current.load();
        let slot = snapshot.slot(uid)?;
        if self.inner.counts_reads {
            slot.0.touch();
        }
        Entry::json(&slot.0)
    }

    /// Whether the order with this id is cached, without counting a read:
    /// for writers checking what is cached, not for serving.
    pub fn contains(&self, uid: &str) -> bool {
        self.inner.current.load().slot(uid).is_some()
    }

    /// How many orders are cached.
    pub fn len(&self) -> usize {
        self.inner.current.load().len()
    }

    /// Whether no order is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serialises and inserts orders, in one swap.
    pub fn insert_orders(&self, orders: &[Order]) {
        self.insert(
            orders
                .iter()
                .map(|o| (o.order_uid.clone(), o.to_json()))
                .collect::<Vec<_>>(),
        );
    }

    /// Inserts ready response bytes, in one swap; the last entries count as
    /// the most recent. An id already cached keeps its first bytes: stored
    /// orders never change.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use order_cache::{Cache, OrderUid};
    ///
    /// let cache = Cache::new();
    /// let id = OrderUid::parse("order-1").unwrap();
    /// cache.insert([(id.clone(), Bytes::from_static(b"first"))]);
    /// cache.insert([(id, Bytes::from_static(b"second"))]);
    /// assert_eq!(cache.get("order-1").unwrap(), "first");
    /// ```
    pub fn insert(&self, entries: impl IntoIterator<Item = (OrderUid, Bytes)>) {
        self.update(entries, true);
    }

    /// Like [`Cache::insert`], for orders read back from PostgreSQL (a
    /// restore, or a miss another instance stored): they do not count as
    /// recent. With a budget they are admitted (and may evict) as inserted
    /// orders are.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use order_cache::{Cache, OrderUid};
    ///
    /// let cache = Cache::new();
    /// let id = |s: &str| OrderUid::parse(s).unwrap();
    /// cache.fill([(id("old"), Bytes::from_static(b"{}"))]);
    /// assert_eq!(cache.len(), 1);
    /// assert_eq!(cache.snapshot().recent().count(), 0);
    ///
    /// // After a restore, the newest stored ids become the recent list.
    /// cache.set_recent([id("old"), id("not-cached")]);
    /// assert_eq!(cache.snapshot().recent().collect::<Vec<_>>(), ["old"]);
    /// ```
    ///
    /// With a budget, orders read back while a restore is under way are not
    /// admitted: the restore's snapshot gets the room.
    pub fn fill(&self, entries: impl IntoIterator<Item = (OrderUid, Bytes)>) {
        if self.inner.counts_reads && self.inner.restoring.load(Ordering::SeqCst) > 0 {
            return;
        }
        self.update(entries, false);
    }

    /// Marks a restore under way until the guard is dropped.
    pub(crate) fn restoring(&self) -> Restoring<'_> {
        self.inner.restoring.fetch_add(1, Ordering::SeqCst);
        Restoring(self)
    }

    /// Sets the list of recent ids, newest first, e.g. after a restore. Ids
    /// not in the cache are left out.
    pub fn set_recent(&self, ids: impl IntoIterator<Item = OrderUid>) {
        let _writer = self.lock_writer();
        let mut next = Snapshot::clone(&self.inner.current.load());
        next.recent = ids
            .into_iter()
            .filter(|id| next.slot(id.as_str()).is_some())
            .map(|id| Arc::from(id.as_str()))
            .take(RECENT)
            .collect();
        self.inner.current.store(Arc::new(next));
    }

    fn update(&self, entries: impl IntoIterator<Item = (OrderUid, Bytes)>, recent: bool) {
        let mut writer = self.lock_writer();
        let mut next = Snapshot::clone(&self.inner.current.load());
        let mut changed = false;
        // The batch's last ids added, oldest first: only they can make the
        // list, so only they are copied into it.
        let mut newest = std::collections::VecDeque::with_capacity(RECENT);
        for (uid, bytes) in entries {
            let added = match writer.as_mut() {
                None => next.add(&uid, &bytes).is_some(),
                Some(policy) => Cache::admit(policy, &mut next, &uid, &bytes),
            };
            if added {
                if recent {
                    if newest.len() == RECENT {
                        newest.pop_front();
                    }
                    newest.push_back(uid);
                }
                changed = true;
            }
        }
        for uid in newest {
            next.recent.push_front(Arc::from(uid.as_str()));
        }
        next.recent.truncate(RECENT);
        if changed {
            self.publish(next);
        }
    }

    /// Makes `next` the current snapshot, and trains the dictionary if it
    /// now holds enough orders.
    fn publish(&self, next: Snapshot) {
        let next = Arc::new(next);
        self.inner.current.store(next.clone());
        self.train_when_due(&next);
    }

    /// With [`Compression::Zstd`] and no dictionary yet, once the cache
    /// holds enough orders (or its budget is full): trains one on them (at
    /// most `SAMPLE_BYTES` of them), on a thread of its own (a
    /// second or so of CPU, which must not hold up a writer or the
    /// runtime's worker), and packs the orders cached after it. Once per
    /// cache: a failed training is logged and not tried again.
    fn train_when_due(&self, current: &Snapshot) {
        // A budget full before it holds `train_after` orders (a small one,
        // or large orders) trains on what it holds.
        let due = current.len() >= self.inner.train_after
            || (current.evictions > 0 && current.len() >= compact::MIN_SAMPLES);
        if self.inner.compression != Compression::Zstd
            || current.codec.is_some()
            || !due
            || self.inner.training.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let mut slots = current.orders.keys().map(|slot| Sample(slot.0.clone()));
        let (samples, _) = self.samples(&mut slots, |sample| sample.0.body.len());
        let cache = self.clone();
        let spawned = std::thread::Builder::new()
            .name("order-cache-dictionary".into())
            .spawn(move || cache.train(&samples));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start training the cache's dictionary");
            self.inner.training.store(false, Ordering::SeqCst);
        }
    }

    /// Trains a dictionary on `samples` and makes it the one new entries
    /// are packed with; the dictionary in place if one is already.
    fn train<S: AsRef<[u8]>>(&self, samples: &[S]) -> Option<Arc<Codec>> {
        let started = std::time::Instant::now();
        let Some(codec) = Codec::train(samples) else {
            tracing::warn!(
                samples = samples.len(),
                "no dictionary could be trained: the cache keeps orders as JSON"
            );
            return None;
        };
        tracing::info!(samples = samples.len(), took = ?started.elapsed(), "trained the cache's dictionary");
        let _writer = self.lock_writer();
        let current = self.inner.current.load_full();
        if let Some(codec) = &current.codec {
            return Some(codec.clone());
        }
        let codec = Arc::new(codec);
        let mut next = Snapshot::clone(&current);
        next.codec = Some(codec.clone());
        self.inner.current.store(Arc::new(next));
        Some(codec)
    }

    /// The dictionary a restore packs its orders with, and the orders, as
    /// given: the cache's own; or, with [`Compression::Zstd`] and none yet,
    /// one trained on the first orders of the restore (read ahead, up to
    /// `train_after` orders or `SAMPLE_BYTES`, and handed back in front of
    /// the rest); or none, when the restore holds too few orders to train
    /// on (the cache then trains once it holds enough) or compression is
    /// off.
    pub(crate) fn restore_codec<I: Iterator<Item = (OrderUid, Bytes)>>(
        &self,
        mut entries: I,
    ) -> (Option<Arc<Codec>>, ReadAhead<I>) {
        let codec = self.inner.current.load().codec.clone();
        if self.inner.compression != Compression::Zstd || codec.is_some() {
            return (codec, Vec::new().into_iter().chain(entries));
        }
        // Read ahead no more than the dictionary is trained on: the budget
        // is only looked at after.
        let (head, enough) = self.samples(&mut entries, |(_, json)| json.len());
        let codec = if enough && !self.inner.training.swap(true, Ordering::SeqCst) {
            let samples: Vec<&[u8]> = head.iter().map(|(_, json)| &json[..]).collect();
            self.train(&samples)
        } else {
            // One trained meanwhile (by ingest) serves as well.
            self.inner.current.load().codec.clone()
        };
        (codec, head.into_iter().chain(entries))
    }

    /// The first of `items` to train a dictionary on: `train_after` of
    /// them, or fewer once they come to `SAMPLE_BYTES` (the one that crosses
    /// it included), taken from `items` and no further. Also whether that is
    /// enough to train on, i.e. `items` did not end first.
    fn samples<T>(
        &self,
        items: &mut impl Iterator<Item = T>,
        len: impl Fn(&T) -> usize,
    ) -> (Vec<T>, bool) {
        let (mut taken, mut bytes) = (Vec::new(), 0);
        while taken.len() < self.inner.train_after && bytes < compact::SAMPLE_BYTES {
            let Some(item) = items.next() else {
                return (taken, false);
            };
            bytes += len(&item);
            taken.push(item);
        }
        (taken, true)
    }

    /// Adds an entry to `next` and to the policy's queues, then evicts from
    /// both what no longer fits. Whether the entry was added.
    fn admit(policy: &mut S3Fifo, next: &mut Snapshot, uid: &OrderUid, json: &[u8]) -> bool {
        if next.orders.contains_key(uid.as_str()) {
            return false;
        }
        // What the entry keeps decides whether it fits, packed or not, as
        // a restore counts it.
        let entry = Entry::new(uid, json, next.codec.as_ref());
        if !policy.fits(entry.cost()) {
            return false;
        }
        let slot = next.add_entry(entry);
        policy.admit(slot.0);
        policy.evict(|victim| next.evict(victim));
        true
    }

    /// Publishes a snapshot built aside with [`Snapshot::build`] or
    /// [`Snapshot::build_within`] (a restore), keeping whatever was cached
    /// meanwhile: an id cached in both keeps the bytes it is already served
    /// with, and the recent list stays. With a budget, the restored orders
    /// count as older than those cached meanwhile, and what no longer fits
    /// is evicted, the oldest restored first.
    pub(crate) fn merge(&self, mut built: Snapshot) {
        let mut writer = self.lock_writer();
        let current = self.inner.current.load_full();
        for (slot, ()) in current.orders.iter() {
            if let Some((old, ())) = built.orders.remove_with_key(slot.0.uid()) {
                built.bytes -= old.0.json_len();
                built.cost -= old.0.cost();
            }
            built.bytes += slot.0.json_len();
            built.cost += slot.0.cost();
            built.orders.insert(slot.clone(), ());
        }
        built.recent = current.recent.clone();
        built.max_bytes = current.max_bytes;
        built.evictions = current.evictions;
        if current.codec.is_some() {
            built.codec = current.codec.clone();
        }
        let arrival = std::mem::take(&mut built.arrival);
        if let Some(policy) = writer.as_mut() {
            // A snapshot from `build` has no order: take the map's.
            let restored = if arrival.is_empty() {
                built.orders.keys().cloned().collect()
            } else {
                arrival
            };
            for slot in restored {
                // Those cached meanwhile are in the queues already.
                if !current.orders.contains_key(slot.0.uid()) {
                    policy.admit_oldest(slot.0);
                }
            }
            policy.evict(|victim| built.evict(victim));
        }
        self.publish(built);
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Option<S3Fifo>> {
        // Nothing between a change to the queues and the swap that matches
        // it is expected to panic (a failed allocation aborts): recover
        // from poisoning.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests;

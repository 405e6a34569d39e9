//! The in-memory order cache: immutable snapshots published through
//! `arc-swap`, so readers never lock.
//!
//! Unlimited by default, it holds every order it is given. With a byte
//! budget ([`Cache::with_max_bytes`]) it gives up the orders least asked
//! for, chosen by S3-FIFO (the `policy` module), so that its memory stays
//! within the budget whatever the number of orders.

mod policy;
mod size;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::model::{Order, OrderUid};
use policy::S3Fifo;
pub use size::{ByteSize, ByteSizeError};

/// How many recent ids a snapshot remembers, for the web page's list.
pub(crate) const RECENT: usize = 20;

/// Memory an entry costs beyond its id and JSON and the allocator's
/// rounding of them ([`entry_cost`]): the shared entry's allocation
/// (reference counts, pointer, lengths, read count), its share of the
/// persistent map's nodes, and with a budget its slot in the eviction and
/// ghost queues.
pub(crate) const ENTRY_OVERHEAD: u64 = 144;

/// The memory a cached order costs against a budget: its id and JSON, a
/// sixth more for the allocator's rounding up to its size classes, and
/// 144 bytes for the entry, its map node and its queue slots.
///
/// Measured, not derived: `tests/cache_memory.rs` fills caches with orders
/// of random sizes under mimalloc (the server's allocator) and fails if the
/// resident memory they take exceeds what this counts. Under mimalloc the
/// memory beyond id and JSON came to 153 B an entry for 100-300 B bodies,
/// 224 B for 200-1,400 B and 1,307 B for 4-12 kB (size classes a quarter
/// apart grow with the body); this counts 181, 281 and 1,484. A 64 MiB
/// budget through which four budgets of orders went held 71 MiB resident
/// (1.10x): freed memory the allocator keeps, and the ghost queue. Other
/// allocators (glibc's) round differently: measure before relying on a
/// tight budget.
///
/// # Examples
///
/// ```
/// use order_cache::entry_cost;
///
/// // The id and JSON, a sixth more for the allocator, and the entry's
/// // fixed share of map and queue nodes.
/// assert_eq!(entry_cost("order-1", 593), 600 + 100 + 144);
/// ```
pub fn entry_cost(uid: &str, json_len: usize) -> u64 {
    cost_of(uid.len() + json_len)
}

fn cost_of(data_len: usize) -> u64 {
    let data = data_len as u64;
    data + data / 6 + ENTRY_OVERHEAD
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
#[derive(Clone, Default)]
pub struct Cache {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    current: ArcSwap<Snapshot>,
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
    restoring: std::sync::atomic::AtomicUsize,
}

/// While alive, a restore into the cache is under way.
pub(crate) struct Restoring<'a>(&'a Cache);

impl Drop for Restoring<'_> {
    fn drop(&mut self) {
        self.0
            .inner
            .restoring
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
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
    json: Box<[u8]>,
    /// Reads since the entry was admitted or last passed by the eviction
    /// policy, up to [`MAX_FREQUENCY`]; only counted with a budget.
    frequency: AtomicU8,
}

/// Where an entry's read count stops: two bits, as S3-FIFO has it, so that
/// a hot entry's count stops being written.
const MAX_FREQUENCY: u8 = 3;

impl Entry {
    fn new(uid: &OrderUid, json: &[u8]) -> Entry {
        Entry {
            uid: uid.as_str().into(),
            json: json.into(),
            frequency: AtomicU8::new(0),
        }
    }

    fn uid(&self) -> &str {
        &self.uid
    }

    fn json(&self) -> &[u8] {
        &self.json
    }

    /// What the entry costs against a budget.
    fn cost(&self) -> u64 {
        cost_of(self.uid.len() + self.json.len())
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

/// Lets a response body share the cached allocation instead of copying it.
struct Json(Arc<Entry>);

impl AsRef<[u8]> for Json {
    fn as_ref(&self) -> &[u8] {
        self.0.json()
    }
}

impl Snapshot {
    /// A snapshot of these entries alone, built without the writer lock and
    /// in place (no other snapshot shares its nodes, so nothing is copied);
    /// publish it with [`Cache::merge`]. The first bytes of an id win.
    pub(crate) fn build(entries: impl IntoIterator<Item = (OrderUid, Bytes)>) -> Snapshot {
        let mut snapshot = Snapshot::default();
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
        entries: impl IntoIterator<Item = (OrderUid, Bytes)>,
    ) -> (Snapshot, bool) {
        let mut snapshot = Snapshot {
            max_bytes: Some(max_bytes),
            ..Snapshot::default()
        };
        for (uid, bytes) in entries {
            let cost = entry_cost(uid.as_str(), bytes.len());
            if cost > max_bytes {
                // It would fit no cache this size: not a sign of a full one.
                continue;
            }
            if snapshot.cost + cost > room {
                return (snapshot, true);
            }
            if let Some(slot) = snapshot.add(&uid, &bytes) {
                snapshot.arrival.push(slot);
            }
        }
        (snapshot, false)
    }

    /// Adds an entry unless the id is present; returns it when added.
    fn add(&mut self, uid: &OrderUid, json: &[u8]) -> Option<Slot> {
        if self.orders.contains_key(uid.as_str()) {
            return None;
        }
        let slot = Slot(Arc::new(Entry::new(uid, json)));
        self.bytes += json.len();
        self.cost += slot.0.cost();
        self.orders.insert(slot.clone(), ());
        Some(slot)
    }

    /// Removes an entry the eviction policy gave up.
    fn evict(&mut self, entry: &Entry) {
        if self.orders.remove(entry.uid()).is_some() {
            self.bytes -= entry.json().len();
            self.cost -= entry.cost();
            self.evictions += 1;
        }
    }

    fn slot(&self, uid: &str) -> Option<&Slot> {
        self.orders.get_key_value(uid).map(|(slot, ())| slot)
    }

    /// The response bytes of the order with this id. The bytes share the
    /// cache's memory; nothing is copied. Unlike [`Cache::get`], this is
    /// not counted as a read by the eviction policy.
    pub fn get(&self, uid: &str) -> Option<Bytes> {
        self.slot(uid)
            .map(|slot| Bytes::from_owner(Json(slot.0.clone())))
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
        Cache::default()
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
        let empty = Snapshot {
            max_bytes: Some(max_bytes),
            ..Snapshot::default()
        };
        Cache {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(empty),
                writer: Mutex::new(Some(S3Fifo::new(max_bytes))),
                counts_reads: true,
                restoring: Default::default(),
            }),
        }
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
        Some(Bytes::from_owner(Json(slot.0.clone())))
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
        if self.inner.counts_reads
            && self
                .inner
                .restoring
                .load(std::sync::atomic::Ordering::SeqCst)
                > 0
        {
            return;
        }
        self.update(entries, false);
    }

    /// Marks a restore under way until the guard is dropped.
    pub(crate) fn restoring(&self) -> Restoring<'_> {
        self.inner
            .restoring
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
            self.inner.current.store(Arc::new(next));
        }
    }

    /// Adds an entry to `next` and to the policy's queues, then evicts from
    /// both what no longer fits. Whether the entry was added.
    fn admit(policy: &mut S3Fifo, next: &mut Snapshot, uid: &OrderUid, json: &[u8]) -> bool {
        if !policy.fits(entry_cost(uid.as_str(), json.len())) {
            return false;
        }
        let Some(slot) = next.add(uid, json) else {
            return false;
        };
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
                built.bytes -= old.0.json().len();
                built.cost -= old.0.cost();
            }
            built.bytes += slot.0.json().len();
            built.cost += slot.0.cost();
            built.orders.insert(slot.clone(), ());
        }
        built.recent = current.recent.clone();
        built.max_bytes = current.max_bytes;
        built.evictions = current.evictions;
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
        self.inner.current.store(Arc::new(built));
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

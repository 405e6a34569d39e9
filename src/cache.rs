//! The in-memory order cache: immutable snapshots published through
//! `arc-swap`, so readers never lock.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::model::{Order, OrderUid};

/// How many recent ids a snapshot remembers, for the web page's list.
pub(crate) const RECENT: usize = 20;

/// Every known order's response bytes, keyed by id. Cheap to clone: clones
/// share the same cache.
///
/// Reads load the current [`Snapshot`] without locking. Writers build the
/// next snapshot from the current one (a persistent map, so this copies
/// O(log n) nodes per insert, not the whole map) and publish it with one
/// atomic swap per batch.
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
    // compare-and-swap race; readers never touch it.
    writer: Mutex<()>,
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
    bytes: usize,
    // A map to unit rather than a set: only the map can hand back the
    // stored key for a borrowed one.
    orders: imbl::HashMap<Slot, ()>,
    recent: imbl::Vector<Slot>,
}

/// One cached order: its id and response bytes in a single allocation, so a
/// map node holds one thin pointer per order and copying a node on write
/// stays cheap.
struct Entry {
    uid: Box<str>,
    json: Box<[u8]>,
}

/// A shared [`Entry`], hashed and compared by its id.
#[derive(Clone)]
struct Slot(Arc<Entry>);

impl std::hash::Hash for Slot {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Must hash exactly as the `str` it borrows as.
        self.0.uid.hash(state);
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
        &self.0.uid
    }
}

/// Lets a response body share the cached allocation instead of copying it.
struct Json(Arc<Entry>);

impl AsRef<[u8]> for Json {
    fn as_ref(&self) -> &[u8] {
        &self.0.json
    }
}

impl Snapshot {
    /// A snapshot of these entries alone, built without the writer lock and
    /// in place (no other snapshot shares its nodes, so nothing is copied);
    /// publish it with [`Cache::merge`]. The first bytes of an id win.
    pub(crate) fn build(entries: impl IntoIterator<Item = (OrderUid, Bytes)>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for (uid, bytes) in entries {
            snapshot.add(&uid, bytes);
        }
        snapshot
    }

    /// Adds an entry unless the id is present; returns it when added.
    fn add(&mut self, uid: &OrderUid, bytes: Bytes) -> Option<Slot> {
        if self.orders.contains_key(uid.as_str()) {
            return None;
        }
        self.bytes += bytes.len();
        let slot = Slot(Arc::new(Entry {
            uid: uid.as_str().into(),
            json: Vec::from(bytes).into_boxed_slice(),
        }));
        self.orders.insert(slot.clone(), ());
        Some(slot)
    }

    /// The response bytes of the order with this id. The bytes share the
    /// cache's memory; nothing is copied.
    pub fn get(&self, uid: &str) -> Option<Bytes> {
        self.orders
            .get_key_value(uid)
            .map(|(slot, ())| Bytes::from_owner(Json(slot.0.clone())))
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

    /// Ids of the most recently inserted orders, newest first.
    pub fn recent(&self) -> impl Iterator<Item = &str> {
        self.recent.iter().map(|s| &*s.0.uid)
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
    /// An empty cache.
    pub fn new() -> Cache {
        Cache::default()
    }

    /// The current snapshot. Holding it keeps that state alive; it never
    /// changes under the holder.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// The response bytes of the order with this id.
    pub fn get(&self, uid: &str) -> Option<Bytes> {
        self.inner.current.load().get(uid)
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
    /// recent.
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
    pub fn fill(&self, entries: impl IntoIterator<Item = (OrderUid, Bytes)>) {
        self.update(entries, false);
    }

    /// Sets the list of recent ids, newest first, e.g. after a restore. Ids
    /// not in the cache are left out.
    pub fn set_recent(&self, ids: impl IntoIterator<Item = OrderUid>) {
        let _writer = self.lock_writer();
        let mut next = Snapshot::clone(&self.inner.current.load());
        next.recent = ids
            .into_iter()
            .filter_map(|id| {
                next.orders
                    .get_key_value(id.as_str())
                    .map(|(s, ())| s.clone())
            })
            .take(RECENT)
            .collect();
        self.inner.current.store(Arc::new(next));
    }

    fn update(&self, entries: impl IntoIterator<Item = (OrderUid, Bytes)>, recent: bool) {
        let _writer = self.lock_writer();
        let mut next = Snapshot::clone(&self.inner.current.load());
        let mut changed = false;
        for (uid, bytes) in entries {
            if let Some(slot) = next.add(&uid, bytes) {
                if recent {
                    next.recent.push_front(slot);
                }
                changed = true;
            }
        }
        if changed {
            next.recent.truncate(RECENT);
            self.inner.current.store(Arc::new(next));
        }
    }

    /// Publishes a snapshot built aside with [`Snapshot::build`] (a
    /// restore), keeping whatever was cached meanwhile: an id cached in both
    /// keeps the bytes it is already served with, and the recent list stays.
    pub(crate) fn merge(&self, mut built: Snapshot) {
        let _writer = self.lock_writer();
        let current = self.inner.current.load_full();
        for (slot, ()) in current.orders.iter() {
            if let Some((old, ())) = built.orders.remove_with_key(&*slot.0.uid) {
                built.bytes -= old.0.json.len();
            }
            built.bytes += slot.0.json.len();
            built.orders.insert(slot.clone(), ());
        }
        built.recent = current.recent.clone();
        self.inner.current.store(Arc::new(built));
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded value is (), so a panic elsewhere cannot leave it
        // inconsistent: recover from poisoning.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> (OrderUid, Bytes) {
        (
            OrderUid::parse(id).unwrap(),
            Bytes::from(format!("{{\"id\":\"{id}\"}}")),
        )
    }

    #[test]
    fn a_batch_is_published_at_once_and_old_snapshots_stay_intact() {
        let cache = Cache::new();
        cache.insert([entry("a")]);
        let before = cache.snapshot();
        cache.insert([entry("b"), entry("c")]);
        assert_eq!(before.len(), 1);
        assert!(before.get("b").is_none());
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("c").unwrap(), Bytes::from("{\"id\":\"c\"}"));
    }

    #[test]
    fn a_snapshot_built_aside_merges_with_what_was_cached_meanwhile() {
        let cache = Cache::new();
        // Cached while the restore ran: served already, so it must stay.
        cache.insert([(OrderUid::parse("both").unwrap(), Bytes::from("live"))]);
        cache.insert([entry("live-only")]);
        let built = Snapshot::build([entry("both"), entry("restored"), entry("restored")]);
        assert_eq!(
            built.len(),
            2,
            "the first bytes of an id win inside a build"
        );
        cache.merge(built);

        let snap = cache.snapshot();
        assert_eq!(snap.len(), 3);
        assert_eq!(snap.get("both").unwrap(), Bytes::from("live"));
        assert!(snap.get("restored").is_some() && snap.get("live-only").is_some());
        assert_eq!(snap.recent().collect::<Vec<_>>(), ["live-only", "both"]);
        let bytes: usize = ["both", "restored", "live-only"]
            .iter()
            .map(|id| snap.get(id).unwrap().len())
            .sum();
        assert_eq!(snap.json_bytes(), bytes);
    }

    #[test]
    fn the_first_bytes_of_an_id_win() {
        let cache = Cache::new();
        cache.insert([entry("a")]);
        cache.insert([(OrderUid::parse("a").unwrap(), Bytes::from("other"))]);
        assert_eq!(cache.get("a").unwrap(), Bytes::from("{\"id\":\"a\"}"));
    }

    #[test]
    fn recent_lists_newest_first_and_is_bounded() {
        let cache = Cache::new();
        for i in 0..(RECENT + 5) {
            cache.insert([entry(&format!("o{i}"))]);
        }
        cache.fill([entry("restored")]);
        let snap = cache.snapshot();
        let recent: Vec<&str> = snap.recent().collect();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0], format!("o{}", RECENT + 4));
        assert!(!recent.contains(&"restored"));
    }
}

//! Which orders a cache with a byte budget gives up: S3-FIFO (Yang et al.,
//! "FIFO queues are all you need for cache eviction", SOSP 2023).
//!
//! New entries go to a small FIFO queue; those read at least twice by the
//! time they reach its tail move to the main queue, the others are evicted
//! and their ids remembered in a ghost queue, so that one coming back soon
//! goes straight to the main queue. The main queue is a CLOCK: an entry read
//! since its last pass goes round again with its count lowered. A scan of
//! one-off reads thus flows through the small queue without displacing the
//! orders people keep asking for.
//!
//! Reads only bump a 2-bit count on the entry (see `Entry::touch`); the
//! queues belong to the writer, under the cache's writer lock.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use super::Entry;

/// Reads an entry must have had in the small queue to move to the main one.
const PROMOTE: u8 = 2;

/// The queues of a cache with a byte budget. Holds the same entries as the
/// published snapshot, each in exactly one of `small` and `main`.
#[derive(Debug)]
pub(super) struct S3Fifo {
    max_bytes: u64,
    /// Newest at the front, evicted from the back.
    small: VecDeque<Arc<Entry>>,
    small_bytes: u64,
    main: VecDeque<Arc<Entry>>,
    main_bytes: u64,
    ghost: Ghost,
}

impl S3Fifo {
    pub(super) fn new(max_bytes: u64) -> S3Fifo {
        S3Fifo {
            max_bytes,
            small: VecDeque::new(),
            small_bytes: 0,
            main: VecDeque::new(),
            main_bytes: 0,
            ghost: Ghost::default(),
        }
    }

    /// Bytes of the entries held (each entry's [`Entry::cost`]).
    pub(super) fn bytes(&self) -> u64 {
        self.small_bytes + self.main_bytes
    }

    /// Whether an entry this costly may be admitted at all: one larger than
    /// the whole budget would only evict everything and then itself.
    pub(super) fn fits(&self, cost: u64) -> bool {
        cost <= self.max_bytes
    }

    /// Takes in a new entry as the newest. Call [`S3Fifo::evict`] after.
    pub(super) fn admit(&mut self, entry: Arc<Entry>) {
        let cost = entry.cost();
        if self.ghost.contains(entry.uid().as_bytes()) {
            self.main_bytes += cost;
            self.main.push_front(entry);
        } else {
            self.small_bytes += cost;
            self.small.push_front(entry);
        }
    }

    /// Takes in an entry older than every one held (a restore reads the
    /// newest orders first): it is the first the small queue gives up.
    pub(super) fn admit_oldest(&mut self, entry: Arc<Entry>) {
        self.small_bytes += entry.cost();
        self.small.push_back(entry);
    }

    /// Gives up entries until the held ones fit the budget, handing each to
    /// `evicted` (which removes it from the next snapshot).
    pub(super) fn evict(&mut self, mut evicted: impl FnMut(&Entry)) {
        while self.bytes() > self.max_bytes {
            let from_small = self.small_bytes >= self.max_bytes / 10 || self.main.is_empty();
            let victim = match from_small.then(|| self.evict_small()).flatten() {
                Some(victim) => victim,
                None => match self.evict_main() {
                    Some(victim) => victim,
                    // Unreachable: bytes are held, so an entry is.
                    None => break,
                },
            };
            evicted(&victim);
        }
    }

    fn evict_small(&mut self) -> Option<Arc<Entry>> {
        while let Some(entry) = self.small.pop_back() {
            let cost = entry.cost();
            self.small_bytes -= cost;
            if entry.frequency() >= PROMOTE {
                self.main_bytes += cost;
                self.main.push_front(entry);
            } else {
                let held = self.small.len() + self.main.len();
                self.ghost.remember(entry.uid().as_bytes(), held.max(1));
                return Some(entry);
            }
        }
        None
    }

    fn evict_main(&mut self) -> Option<Arc<Entry>> {
        // Each pass lowers a count, and counts stop at 3, so four passes
        // over the queue find an entry at 0, unless readers raise counts as
        // fast as they fall: then the tail goes whatever its count.
        let mut passes_left = self.main.len().saturating_mul(4);
        while let Some(entry) = self.main.pop_back() {
            let frequency = entry.frequency();
            if frequency > 0 && passes_left > 0 {
                passes_left -= 1;
                entry.set_frequency(frequency - 1);
                self.main.push_front(entry);
            } else {
                self.main_bytes -= entry.cost();
                return Some(entry);
            }
        }
        None
    }

    /// Every entry held, small queue first, for checks.
    #[cfg(test)]
    pub(super) fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.small.iter().chain(&self.main)
    }

    /// Whether the byte counts of the two queues match their entries.
    #[cfg(test)]
    pub(super) fn counts_add_up(&self) -> bool {
        self.small_bytes == self.small.iter().map(|e| e.cost()).sum::<u64>()
            && self.main_bytes == self.main.iter().map(|e| e.cost()).sum::<u64>()
    }

    #[cfg(test)]
    pub(super) fn in_main(&self, uid: &str) -> bool {
        self.main.iter().any(|e| e.uid() == uid)
    }
}

/// Hashes of recently evicted ids, oldest first, at most as many as the
/// entries held. Ids are not kept: a hash costs 8 bytes whatever the id, and
/// a collision only sends an entry to the main queue early.
#[derive(Debug, Default)]
struct Ghost {
    hasher: RandomState,
    queue: VecDeque<u64>,
    /// How many times each hash is in `queue`: an id evicted, readmitted and
    /// evicted again is there twice.
    counts: HashMap<u64, u32>,
}

impl Ghost {
    fn contains(&self, uid: &[u8]) -> bool {
        self.counts.contains_key(&self.hasher.hash_one(uid))
    }

    fn remember(&mut self, uid: &[u8], capacity: usize) {
        let hash = self.hasher.hash_one(uid);
        self.queue.push_back(hash);
        *self.counts.entry(hash).or_insert(0) += 1;
        while self.queue.len() > capacity {
            let Some(old) = self.queue.pop_front() else {
                break;
            };
            if let std::collections::hash_map::Entry::Occupied(mut seen) = self.counts.entry(old) {
                *seen.get_mut() -= 1;
                if *seen.get() == 0 {
                    seen.remove();
                }
            }
        }
    }
}

//! Compact entries: bodies kept as zstd frames against a dictionary trained
//! on the cache's own orders, and decompressed per read.
//!
//! Orders repeat their field names and much of their vocabulary, so a
//! 16 KiB dictionary trained on ten thousand of them brings a body to about
//! a fifth of its JSON, where zstd alone gets a little over a half (see
//! `benches/compression.rs`). The dictionary is trained once per cache and
//! kept in memory only: the cache is rebuilt from PostgreSQL at every start,
//! so each start trains its own.
//!
//! Frames carry their content size and neither checksum nor dictionary id:
//! each entry points at the one [`Codec`] that packed it. Compression and
//! decompression contexts are per thread, so neither takes a lock.

use std::cell::RefCell;

use zstd::zstd_safe::{CCtx, CDict, CParameter, DCtx, DDict};

/// zstd's level 1: against the dictionary it packs the varied orders to
/// 0.228x of their JSON in 3.2 µs, where level 3 gets 0.223x in 4.3 µs and
/// level 19 0.198x in 200 µs (`cargo bench --bench compression`). Packing is
/// most of what a restore of a compressed cache adds.
const LEVEL: i32 = 1;

/// The dictionary's size: a bigger one bought nothing on these orders.
const DICTIONARY_BYTES: usize = 16 * 1024;

/// Larger orders stay as JSON. Each read of a packed order decompresses a
/// copy of its own, where readers of a plain one share the cached bytes:
/// this bounds what each response in flight holds beyond the budget, and
/// the per-thread buffers packing needs. Orders this large are rare and
/// compress least against a dictionary trained on typical ones.
pub(crate) const MAX_PACKED: usize = 64 * 1024;

/// Fewer samples than this train no dictionary worth having.
pub(crate) const MIN_SAMPLES: usize = 64;

/// Most bytes of orders a dictionary is trained on, and so a restore reads
/// ahead for it. zstd advises samples of about a hundred times the
/// dictionary's size; ten thousand orders of the benchmark's 1.1 kB are
/// 11 MB and fit. Orders may be up to 1 MiB: ten thousand of those would be
/// 10 GiB held (twice: the trainer copies its samples into one buffer)
/// before the budget is looked at.
pub(crate) const SAMPLE_BYTES: usize = 16 << 20;

/// A trained dictionary, digested for compressing and for decompressing.
pub(crate) struct Codec {
    compress: CDict<'static>,
    decompress: DDict<'static>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(CCtx<'static>, Vec<u8>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

impl Codec {
    /// A dictionary trained on these bodies; `None` when there are too few
    /// to train on, or zstd cannot make one of them (say, all alike).
    pub(crate) fn train<S: AsRef<[u8]>>(samples: &[S]) -> Option<Codec> {
        if samples.len() < MIN_SAMPLES {
            return None;
        }
        let dictionary = zstd::dict::from_samples(samples, DICTIONARY_BYTES).ok()?;
        Some(Codec {
            compress: CDict::try_create(&dictionary, LEVEL)?,
            decompress: DDict::try_create(&dictionary)?,
        })
    }

    /// `json` as a frame, in an allocation of its exact size; `None` when
    /// the frame would not be smaller (then keep the JSON as it is).
    pub(crate) fn pack(&self, json: &[u8]) -> Option<Box<[u8]>> {
        if json.len() > MAX_PACKED {
            return None;
        }
        COMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                let mut context = CCtx::try_create()?;
                context.set_parameter(CParameter::DictIdFlag(false)).ok()?;
                context
                    .set_parameter(CParameter::ChecksumFlag(false))
                    .ok()?;
                *cell = Some((context, Vec::new()));
            }
            let (context, scratch) = cell.as_mut()?;
            scratch.clear();
            scratch.reserve(zstd::zstd_safe::compress_bound(json.len()));
            // The context refers to the dictionary only for this call: it
            // is let go of before the dictionary could be.
            let packed = context
                .ref_cdict(&self.compress)
                .and_then(|_| context.compress2(scratch, json));
            let released = context.disable_dictionary();
            if packed.is_err() || released.is_err() {
                // A context left mid-frame would refuse every later call:
                // the next one on this thread starts afresh.
                *cell = None;
                return None;
            }
            match packed {
                Ok(len) if len < json.len() => Some(Box::from(&scratch[..len])),
                _ => None,
            }
        })
    }

    /// The JSON of a frame [`Codec::pack`] made, `len` bytes long; `None`
    /// if the frame does not decompress to exactly that.
    pub(crate) fn unpack(&self, packed: &[u8], len: usize) -> Option<Vec<u8>> {
        DECOMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = Some(DCtx::try_create()?);
            }
            let context = cell.as_mut()?;
            let mut json = Vec::with_capacity(len);
            match context.decompress_using_ddict(&mut json, packed, &self.decompress) {
                Ok(n) if n == len => Some(json),
                _ => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"order_uid":"uid{i:08x}","track_number":"WBILM{i}","items":[{{"name":"item {}","price":{}}}],"delivery":{{"city":"city {}"}}}}"#,
                    i % 17,
                    i * 31 % 1000,
                    i % 5
                )
                .into_bytes()
            })
            .collect()
    }

    #[test]
    fn bodies_come_back_exactly_and_smaller() {
        let samples = orders(2000);
        let codec = Codec::train(&samples).expect("a dictionary");
        for json in orders(3000).iter().skip(2000) {
            let packed = codec.pack(json).expect("smaller");
            assert!(
                packed.len() * 2 < json.len(),
                "{} of {}",
                packed.len(),
                json.len()
            );
            assert_eq!(
                codec.unpack(&packed, json.len()).as_deref(),
                Some(&json[..])
            );
        }
    }

    #[test]
    fn a_wrong_length_or_a_foreign_frame_is_refused_not_misread() {
        let codec = Codec::train(&orders(500)).expect("a dictionary");
        let json = &orders(501)[500];
        let packed = codec.pack(json).expect("smaller");
        assert_eq!(codec.unpack(&packed, json.len() + 1), None);
        assert_eq!(codec.unpack(&packed, json.len() - 1), None);
        assert_eq!(codec.unpack(b"not a frame", json.len()), None);
    }

    #[test]
    fn orders_over_the_packing_limit_stay_as_they_are() {
        let codec = Codec::train(&orders(500)).expect("a dictionary");
        let mut large = orders(1).remove(0);
        large.resize(MAX_PACKED + 1, b' ');
        assert_eq!(codec.pack(&large), None);
        large.truncate(MAX_PACKED);
        assert!(codec.pack(&large).is_some());
    }

    #[test]
    fn too_few_samples_train_nothing() {
        assert!(Codec::train(&orders(MIN_SAMPLES - 1)).is_none());
    }

    #[test]
    fn what_would_not_shrink_is_left_as_it_is() {
        let codec = Codec::train(&orders(500)).expect("a dictionary");
        assert_eq!(codec.pack(b"{}"), None);
    }

    #[test]
    fn each_thread_packs_with_its_own_context() {
        let codec = std::sync::Arc::new(Codec::train(&orders(500)).expect("a dictionary"));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let codec = codec.clone();
                std::thread::spawn(move || {
                    for json in orders(600).iter().skip(500 + t) {
                        let packed = codec.pack(json).expect("smaller");
                        assert_eq!(
                            codec.unpack(&packed, json.len()).as_deref(),
                            Some(&json[..])
                        );
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
    }
}

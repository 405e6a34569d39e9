//! What a compact cache entry could be made of: bytes per entry and the cost
//! to compress and decompress one, for each candidate encoding, measured on
//! stored orders as the server serialises them (`Order::to_json`).
//!
//! `cargo bench --bench compression`. It reads a sample of orders, one JSON
//! document per line, from `ORDERS_SAMPLE` (default
//! `bench-out/orders-sample.jsonl`), which `bench/big` writes from the
//! orders it generates; `INGEST_N=0 bench/big 200000` writes one in about a
//! minute. Every line must decode as an order. The even-numbered orders
//! train the dictionaries; sizes and times are taken on the odd-numbered
//! ones, so no dictionary has seen the orders it is measured on.
//!
//! The sizes are printed first as a table (and written to
//! `bench-out/compression-sizes.md`), with the CPU time of the thread per
//! compression and decompression (from `/proc/thread-self/schedstat`): on a
//! shared machine that is steadier than the wall time, which counts the
//! time other processes hold the core. Criterion then times `compress/*`
//! and `decompress/*` by the wall clock, one entry per iteration.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use order_cache::Order;

/// The orders of the sample, as the server would cache them.
fn sample() -> Vec<Bytes> {
    let path = std::env::var("ORDERS_SAMPLE").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/bench-out/orders-sample.jsonl").to_string()
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read the sample {path}: {e}; `INGEST_N=0 bench/big 200000` writes one")
    });
    text.lines()
        .enumerate()
        .map(|(i, line)| match Order::decode(line.as_bytes()) {
            Ok(order) => order.to_json(),
            Err(e) => panic!("line {} of {path} is not a valid order: {e}", i + 1),
        })
        .collect()
}

/// One way of keeping an entry: what it stores, and how the JSON comes back.
trait Codec {
    fn name(&self) -> String;
    fn compress(&mut self, json: &[u8]) -> Vec<u8>;
    /// The JSON of `packed`, in a new allocation of its own, as a hit would
    /// need it (the body outlives the call).
    fn decompress(&mut self, packed: &[u8]) -> Vec<u8>;
}

/// The JSON as it is: what the cache keeps today.
struct Plain;

impl Codec for Plain {
    fn name(&self) -> String {
        "json".into()
    }
    fn compress(&mut self, json: &[u8]) -> Vec<u8> {
        json.to_vec()
    }
    fn decompress(&mut self, packed: &[u8]) -> Vec<u8> {
        // Today's hit clones a `Bytes` and copies nothing: this copy is the
        // cost of the allocation the other encodings need on top of their
        // decoding.
        packed.to_vec()
    }
}

/// zstd frames without checksum or dictionary id (the cache knows its one
/// dictionary); the content size stays, so a decompression knows its size.
struct Zstd {
    name: String,
    compressor: zstd::bulk::Compressor<'static>,
    decompressor: zstd::bulk::Decompressor<'static>,
}

impl Zstd {
    fn new(level: i32, dict: Option<(&str, &[u8])>) -> Zstd {
        let bytes = dict.map(|(_, d)| d).unwrap_or(&[]);
        let mut compressor = zstd::bulk::Compressor::with_dictionary(level, bytes).expect("cctx");
        compressor.include_checksum(false).expect("checksum");
        compressor.include_dictid(false).expect("dictid");
        compressor.include_contentsize(true).expect("contentsize");
        let decompressor = zstd::bulk::Decompressor::with_dictionary(bytes).expect("dctx");
        let name = match dict {
            Some((label, _)) => format!("zstd-{level}+dict{label}"),
            None => format!("zstd-{level}"),
        };
        Zstd {
            name,
            compressor,
            decompressor,
        }
    }
}

impl Codec for Zstd {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn compress(&mut self, json: &[u8]) -> Vec<u8> {
        self.compressor.compress(json).expect("compress")
    }
    fn decompress(&mut self, packed: &[u8]) -> Vec<u8> {
        let size = zstd::zstd_safe::get_frame_content_size(packed)
            .ok()
            .flatten()
            .expect("content size") as usize;
        let mut out = Vec::with_capacity(size);
        self.decompressor
            .decompress_to_buffer(packed, &mut out)
            .expect("decompress");
        out
    }
}

/// LZ4 blocks with the length in front, optionally against a raw
/// dictionary (LZ4 can look back 64 KiB).
struct Lz4 {
    name: String,
    dict: Vec<u8>,
}

impl Codec for Lz4 {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn compress(&mut self, json: &[u8]) -> Vec<u8> {
        if self.dict.is_empty() {
            lz4_flex::block::compress_prepend_size(json)
        } else {
            lz4_flex::block::compress_prepend_size_with_dict(json, &self.dict)
        }
    }
    fn decompress(&mut self, packed: &[u8]) -> Vec<u8> {
        if self.dict.is_empty() {
            lz4_flex::block::decompress_size_prepended(packed)
        } else {
            lz4_flex::block::decompress_size_prepended_with_dict(packed, &self.dict)
        }
        .expect("lz4")
    }
}

/// gzip, as a body sent with `Content-Encoding: gzip`. The deflate state is
/// reused between entries, as a server would; the stored size is the whole
/// gzip member (18 bytes of header and trailer around the deflate stream).
struct Gzip {
    level: u32,
    compress: flate2::Compress,
    decompress: flate2::Decompress,
}

const GZIP_FRAME: usize = 18;

impl Gzip {
    fn new(level: u32) -> Gzip {
        Gzip {
            level,
            compress: flate2::Compress::new(flate2::Compression::new(level), false),
            decompress: flate2::Decompress::new(false),
        }
    }
}

impl Codec for Gzip {
    fn name(&self) -> String {
        format!("gzip-{}", self.level)
    }
    fn compress(&mut self, json: &[u8]) -> Vec<u8> {
        self.compress.reset();
        let mut out = Vec::with_capacity(json.len() + 64 + GZIP_FRAME);
        out.extend_from_slice(&[0u8; 10]); // header stand-in
        self.compress
            .compress_vec(json, &mut out, flate2::FlushCompress::Finish)
            .expect("deflate");
        out.extend_from_slice(&[0u8; 8]); // crc32 + size stand-in
        out
    }
    fn decompress(&mut self, packed: &[u8]) -> Vec<u8> {
        self.decompress.reset(false);
        // A real member's trailer says the size; 8× is enough for these.
        let mut out = Vec::with_capacity(packed.len() * 8);
        let mut body = &packed[10..packed.len() - 8];
        loop {
            let before = self.decompress.total_in();
            let status = self
                .decompress
                .decompress_vec(body, &mut out, flate2::FlushDecompress::Finish)
                .expect("inflate");
            if status == flate2::Status::StreamEnd {
                return out;
            }
            let read = usize::try_from(self.decompress.total_in() - before).expect("size");
            body = &body[read..];
            out.reserve(out.capacity());
        }
    }
}

/// brotli, as a body sent with `Content-Encoding: br`.
struct Brotli {
    quality: u32,
}

impl Codec for Brotli {
    fn name(&self) -> String {
        format!("brotli-{}", self.quality)
    }
    fn compress(&mut self, json: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(json.len());
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, self.quality, 22);
            w.write_all(json).expect("brotli");
        }
        out
    }
    fn decompress(&mut self, packed: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(packed.len() * 4);
        brotli::Decompressor::new(packed, 4096)
            .read_to_end(&mut out)
            .expect("brotli");
        out
    }
}

/// A dictionary of `size` bytes trained on `train`, and how long it took.
fn train(train: &[Bytes], size: usize) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let dict = zstd::dict::from_samples(train, size).expect("training");
    (dict, started.elapsed())
}

fn codecs(train_set: &[Bytes]) -> (Vec<Box<dyn Codec>>, Vec<String>) {
    let mut notes = Vec::new();
    let mut list: Vec<Box<dyn Codec>> = vec![
        Box::new(Plain),
        Box::new(Zstd::new(3, None)),
        Box::new(Lz4 {
            name: "lz4".into(),
            dict: Vec::new(),
        }),
    ];
    let mut dict64 = Vec::new();
    for kib in [16usize, 64, 112] {
        let (dict, took) = train(train_set, kib * 1024);
        notes.push(format!(
            "dictionary of {kib} KiB: trained on {} orders in {:.2} s ({} bytes)",
            train_set.len(),
            took.as_secs_f64(),
            dict.len()
        ));
        let label = format!("{kib}k");
        // The cache packs at level 3; the levels below it are what a
        // faster restore would trade for.
        let levels: &[i32] = if kib == 16 {
            &[-1, 1, 3, 9, 19]
        } else {
            &[3, 9, 19]
        };
        for &level in levels {
            list.push(Box::new(Zstd::new(level, Some((&label, &dict)))));
        }
        if kib == 64 {
            dict64 = dict;
        }
    }
    // LZ4 reads a dictionary as plain earlier text; the zstd-trained one's
    // content is the part worth having.
    list.push(Box::new(Lz4 {
        name: "lz4+dict64k".into(),
        dict: dict64,
    }));
    for level in [1, 6, 9] {
        list.push(Box::new(Gzip::new(level)));
    }
    for quality in [5, 9, 11] {
        list.push(Box::new(Brotli { quality }));
    }
    (list, notes)
}

/// Nanoseconds this thread has run on a CPU, or `None` off Linux.
fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// CPU nanoseconds per call of `f` (called with 0, 1, 2, ...), over at
/// least 300 ms of CPU after 50 ms of warming up.
fn cpu_cost(mut f: impl FnMut(usize)) -> Option<f64> {
    let mut i = 0;
    let mut run_for = |ns: u64| -> Option<(u64, usize)> {
        let start = cpu_ns()?;
        let mut calls = 0;
        loop {
            for _ in 0..16 {
                f(i);
                i += 1;
            }
            calls += 16;
            let spent = cpu_ns()? - start;
            if spent >= ns {
                return Some((spent, calls));
            }
        }
    };
    run_for(50_000_000)?;
    let (spent, calls) = run_for(300_000_000)?;
    Some(spent as f64 / calls as f64)
}

fn ns(v: Option<f64>) -> String {
    match v {
        Some(ns) if ns >= 10_000.0 => format!("{:.0} µs", ns / 1000.0),
        Some(ns) => format!("{ns:.0} ns"),
        None => "n/a".into(),
    }
}

fn percentile(sorted: &[usize], p: f64) -> usize {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Prints (and writes) the size table; checks every entry comes back intact.
fn sizes(list: &mut [Box<dyn Codec>], test: &[Bytes], notes: &[String]) {
    let json_total: usize = test.iter().map(|e| e.len()).sum();
    let mut text = String::new();
    text.push_str(&format!(
        "{} orders measured (JSON: mean {} B)\n\n",
        test.len(),
        json_total / test.len()
    ));
    text.push_str(
        "| encoding | mean B/entry | p50 | p99 | × JSON | compress, CPU/entry | decompress, CPU/entry |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for codec in list.iter_mut() {
        let mut sizes: Vec<usize> = test
            .iter()
            .map(|json| {
                let packed = codec.compress(json);
                let back = codec.decompress(&packed);
                assert_eq!(&back[..], &json[..], "{} did not round-trip", codec.name());
                packed.len()
            })
            .collect();
        let total: usize = sizes.iter().sum();
        sizes.sort_unstable();
        let compress = cpu_cost(|i| {
            std::hint::black_box(codec.compress(&test[i % test.len()]));
        });
        let packed: Vec<Vec<u8>> = test.iter().map(|json| codec.compress(json)).collect();
        let decompress = cpu_cost(|i| {
            std::hint::black_box(codec.decompress(&packed[i % packed.len()]));
        });
        text.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {} | {} |\n",
            codec.name(),
            total / test.len(),
            percentile(&sizes, 0.5),
            percentile(&sizes, 0.99),
            total as f64 / json_total as f64,
            ns(compress),
            ns(decompress)
        ));
    }
    text.push('\n');
    // A yardstick for how busy the machine was: BENCHMARKS.md's criterion
    // run timed the same call at 0.86 µs.
    let example = Order::decode(include_bytes!("../examples/example.json")).expect("example");
    text.push_str(&format!(
        "- yardstick: `Order::to_json` of examples/example.json took {} of CPU here \
         (0.86 µs in BENCHMARKS.md's criterion run)\n",
        ns(cpu_cost(|_| {
            std::hint::black_box(example.to_json());
        }))
    ));
    for note in notes {
        text.push_str(&format!("- {note}\n"));
    }
    println!("{text}");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/bench-out");
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = std::fs::write(format!("{dir}/compression-sizes.md"), &text);
    }
}

fn compression(c: &mut Criterion) {
    let all = sample();
    let (train_set, test): (Vec<_>, Vec<_>) =
        all.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let train_set: Vec<Bytes> = train_set.into_iter().map(|(_, e)| e).collect();
    let test: Vec<Bytes> = test.into_iter().map(|(_, e)| e).collect();
    let (mut list, notes) = codecs(&train_set);
    sizes(&mut list, &test, &notes);

    let mut g = c.benchmark_group("compress");
    g.throughput(Throughput::Elements(1));
    for codec in list.iter_mut() {
        let mut i = 0;
        g.bench_function(codec.name(), |b| {
            b.iter(|| {
                i = (i + 1) % test.len();
                codec.compress(std::hint::black_box(&test[i]))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("decompress");
    g.throughput(Throughput::Elements(1));
    for codec in list.iter_mut() {
        let packed: Vec<Vec<u8>> = test.iter().map(|json| codec.compress(json)).collect();
        let mut i = 0;
        g.bench_function(codec.name(), |b| {
            b.iter(|| {
                i = (i + 1) % packed.len();
                codec.decompress(std::hint::black_box(&packed[i]))
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = compression
}
criterion_main!(benches);

//! Dead-letter tooling: list rejected messages with their reasons, and
//! replay chosen ones into the orders subject once the cause is fixed.
//!
//! ```text
//! target/release/order-cache-dlq list            # as scripts/build-release built it
//! target/release/order-cache-dlq replay 3 7 --delete
//! target/release/order-cache-dlq replay --reason database
//! ```
//!
//! Letters are read through one ephemeral pull consumer, in pulls bounded in
//! bytes, and printed or replayed as they arrive, so memory does not grow
//! with the number of letters. Any error reading them ends the run with a
//! non-zero status: a listing is complete or an error, never silently short.
//!
//! Exit status: 0 done (including "no letters with that reason"); 1 an
//! error (nothing more is published after it; what was is on stdout); 2 a
//! usage error (an unknown reason, a malformed sequence); 3 a replay that
//! finished but left some chosen letters unreplayed (a duplicate, an
//! original no longer retained), each named on stdout.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use async_nats::jetstream::consumer::pull::{self, Stream as Messages};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::{Context as JetStream, PublishAckFuture};
use async_nats::jetstream::stream::{RawMessageError, RawMessageErrorKind, Stream};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{Event, HeaderMap};
use bytes::Bytes;
use clap::{ArgGroup, Parser, Subcommand};
use futures::future::LocalBoxFuture;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use order_cache::ingest::{dead_letter_stream, DeadLetter, REASONS};
use order_cache::Report;

/// List and replay order_cache's dead letters.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// NATS server URL(s), comma separated.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    nats_url: String,
    /// Stream of orders; its dead letters are in `<ORDERS_STREAM>_DLQ`, and
    /// it is where an omitted payload is read from when the letter does not
    /// name its source stream.
    #[arg(long, env = "ORDERS_STREAM", default_value = "ORDERS")]
    orders_stream: String,
    /// Subject replayed messages are published to.
    #[arg(long, env = "ORDERS_SUBJECT", default_value = "orders")]
    orders_subject: String,
    /// Seconds to wait for NATS (connecting, each request, the next letter)
    /// before giving up with an error.
    #[arg(long, env = "DLQ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print each dead letter: its sequence, reason, explanation, and the
    /// start of its payload (escaped; payloads are untrusted).
    List {
        /// Only this reason.
        #[arg(long, value_parser = reason())]
        reason: Option<Reason>,
        /// Characters of payload to show.
        #[arg(long, default_value_t = 120)]
        width: usize,
    },
    /// Publish dead letters again to the orders subject.
    #[command(group(ArgGroup::new("letters").required(true).args(["sequences", "reason"])))]
    Replay {
        /// Dead-letter sequences to replay (see `list`); all must exist, or
        /// nothing is replayed.
        #[arg(conflicts_with = "reason", value_parser = clap::value_parser!(u64).range(1..))]
        sequences: Vec<u64>,
        /// Replay every dead letter with this reason.
        #[arg(long, value_parser = reason())]
        reason: Option<Reason>,
        /// Delete each replayed letter from the dead-letter stream (never
        /// one that was not replayed).
        #[arg(long)]
        delete: bool,
    },
}

/// A reason the service writes in a letter (`order_cache::ingest::REASON_HEADER`): one of [`REASONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reason(&'static str);

impl Reason {
    fn as_str(self) -> &'static str {
        self.0
    }
}

/// Parses `--reason`: only the reasons the service writes, listed in
/// `--help`.
fn reason() -> impl clap::builder::TypedValueParser<Value = Reason> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(REASONS).map(|chosen| {
        // The parser accepts only what REASONS holds.
        Reason(
            REASONS
                .iter()
                .find(|r| **r == chosen)
                .copied()
                .unwrap_or("database"),
        )
    })
}

/// Most letters asked for in one pull.
const BATCH_LETTERS: usize = 256;

/// The last error the NATS server reported on the connection. A request it
/// refuses for lack of permission is answered only by such an error, and
/// then times out; printed with the failure, it says why.
#[derive(Clone, Default)]
struct ServerSaid(Arc<Mutex<Option<String>>>);

impl ServerSaid {
    fn recorder(&self) -> impl Fn(Event) -> futures::future::Ready<()> + Send + Sync + 'static {
        let said = self.clone();
        move |event| {
            if let Event::ServerError(e) = event {
                if let Ok(mut last) = said.0.lock() {
                    *last = Some(e.to_string());
                }
            }
            futures::future::ready(())
        }
    }

    fn last(&self) -> Option<String> {
        self.0.lock().ok().and_then(|last| last.clone())
    }
}

/// A connection to the dead-letter stream and what replaying needs.
struct Tool {
    js: JetStream,
    dlq: Stream,
    dlq_name: String,
    orders_stream: String,
    orders_subject: String,
    timeout: Duration,
    /// Most bytes asked for in one pull: two of the largest messages the
    /// server accepts (a pull never splits a message, so one must fit).
    batch_bytes: usize,
}

impl Tool {
    async fn connect(args: &Args, said: &ServerSaid) -> anyhow::Result<Tool> {
        let timeout = Duration::from_secs(args.timeout);
        // Credentials come out of the URL into the options (the client
        // ignores them in a URL), and the URL is only ever shown redacted.
        let nats_url = order_cache::NatsUrl::parse(&args.nats_url);
        let client = nats_url
            .connect(
                async_nats::ConnectOptions::new()
                    .connection_timeout(timeout)
                    .event_callback(said.recorder()),
            )
            .await
            .with_context(|| format!("cannot reach NATS at {nats_url}"))?;
        let batch_bytes = client.server_info().max_payload.max(64 * 1024) * 2;
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client);
        let dlq_name = dead_letter_stream(&args.orders_stream);
        let dlq = js
            .get_stream(&dlq_name)
            .await
            .with_context(|| format!("cannot open dead-letter stream {dlq_name}"))?;
        Ok(Tool {
            js,
            dlq,
            dlq_name,
            orders_stream: args.orders_stream.clone(),
            orders_subject: args.orders_subject.clone(),
            timeout,
            batch_bytes,
        })
    }
}

/// Where a letter's original message is (or was).
struct Source {
    stream: String,
    seq: Option<u64>,
}

/// What a letter carries.
enum Body {
    Carried(Bytes),
    /// Too large to carry: the original's size as the letter states it.
    Omitted(Option<u64>),
}

/// One dead letter, as read from the dead-letter stream.
struct Letter {
    seq: u64,
    reason: String,
    error: String,
    source: Source,
    body: Body,
}

impl Letter {
    /// A letter from its stored headers and payload; `orders_stream` is the
    /// source for letters written before they named it.
    fn read(seq: u64, headers: Option<&HeaderMap>, payload: Bytes, orders_stream: &str) -> Letter {
        let letter = DeadLetter::from_headers(headers, orders_stream);
        Letter {
            seq,
            reason: letter.reason,
            error: letter.error,
            source: Source {
                stream: letter.source_stream,
                seq: letter.source_sequence,
            },
            body: match letter.payload_omitted {
                Some(size) => Body::Omitted(size),
                None => Body::Carried(payload),
            },
        }
    }

    fn has_reason(&self, reason: Option<Reason>) -> bool {
        reason.is_none_or(|r| self.reason == r.as_str())
    }
}

/// Reads the letters of a dead-letter stream in order, up to the last one
/// it held when the walk began: letters dead-lettered meanwhile (a replay
/// refused again, say) are left for the next run, so a replay cannot chase
/// its own tail.
///
/// An ephemeral pull consumer without acks delivers them in pulls bounded
/// in bytes, so the letters in memory at once weigh a few megabytes
/// whatever their number and size. A letter lost on the way (a reconnect
/// mid-pull) shows as a gap in the consumer's sequence and is an error:
/// nothing is skipped silently.
struct Walk<'a> {
    tool: &'a Tool,
    messages: Option<Messages>,
    last: u64,
    seen: u64,
    delivered: u64,
}

impl<'a> Walk<'a> {
    async fn start(tool: &'a Tool) -> anyhow::Result<Walk<'a>> {
        let name = &tool.dlq_name;
        let state = tool
            .dlq
            .get_info()
            .await
            .with_context(|| format!("cannot read dead-letter stream {name}"))?
            .state;
        let mut walk = Walk {
            tool,
            messages: None,
            last: state.last_sequence,
            seen: 0,
            delivered: 0,
        };
        if state.messages == 0 {
            return Ok(walk);
        }
        let consumer = tool
            .dlq
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                memory_storage: true,
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot read dead-letter stream {name}"))?;
        // Emptied since its state was read: nothing will be delivered.
        if consumer.cached_info().num_pending > 0 {
            walk.messages = Some(
                consumer
                    .stream()
                    .max_messages_per_batch(BATCH_LETTERS)
                    .max_bytes_per_batch(tool.batch_bytes)
                    .messages()
                    .await
                    .with_context(|| format!("cannot read dead-letter stream {name}"))?,
            );
        }
        Ok(walk)
    }

    /// The next letter, `None` at the end, an error if the stream stops
    /// answering before the end.
    async fn next(&mut self) -> anyhow::Result<Option<Letter>> {
        let Some(messages) = self.messages.as_mut() else {
            return Ok(None);
        };
        let (name, seen, last) = (&self.tool.dlq_name, self.seen, self.last);
        let message = match tokio::time::timeout(self.tool.timeout, messages.next()).await {
            Err(_) => bail!(
                "dead-letter stream {name} sent nothing for {:?} after letter #{seen} \
                 (it holds letters up to #{last})",
                self.tool.timeout
            ),
            Ok(None) => bail!("dead-letter stream {name} stopped delivering after letter #{seen}"),
            Ok(Some(Err(e))) => {
                return Err(e).with_context(|| {
                    format!("cannot read dead-letter stream {name} after letter #{seen}")
                })
            }
            Ok(Some(Ok(message))) => message,
        };
        let info = message
            .info()
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("letter after #{seen} in {name} has no sequence"))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        if info.consumer_sequence != self.delivered + 1 {
            bail!(
                "letters after #{seen} in {name} were lost in transit (delivery {} came \
                 after {}), so this run is incomplete: run it again",
                info.consumer_sequence,
                self.delivered
            );
        }
        self.delivered = info.consumer_sequence;
        if seq > last {
            self.messages = None;
            return Ok(None);
        }
        // `pending` is what the stream holds after this letter now: zero
        // when the letters up to `last` were deleted meanwhile.
        if seq == last || pending == 0 {
            self.messages = None;
        }
        self.seen = seq;
        Ok(Some(Letter::read(
            seq,
            message.headers.as_ref(),
            message.payload.clone(),
            &self.tool.orders_stream,
        )))
    }
}

/// Reads one letter by its sequence; `None` when there is no such letter.
async fn letter_at(tool: &Tool, seq: u64) -> anyhow::Result<Option<Letter>> {
    match tool.dlq.get_raw_message(seq).await {
        Ok(m) => Ok(Some(Letter::read(
            seq,
            Some(&m.headers),
            m.payload,
            &tool.orders_stream,
        ))),
        Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read letter #{seq} in {}", tool.dlq_name)),
    }
}

/// Escapes control characters (a terminal's escape sequences) and nothing
/// else, for header text.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn print_letter(out: &mut impl Write, l: &Letter, width: usize) -> std::io::Result<()> {
    let source = printable(&l.source.stream);
    let source_seq = l.source.seq.map_or("?".into(), |s| s.to_string());
    let (bytes, payload) = match &l.body {
        Body::Carried(payload) => (
            payload.len().to_string(),
            // Payloads are untrusted: every non-ASCII or control character
            // escaped.
            String::from_utf8_lossy(payload)
                .chars()
                .flat_map(char::escape_default)
                .take(width)
                .collect(),
        ),
        Body::Omitted(size) => (
            format!("{} omitted", size.map_or("?".into(), |s| s.to_string())),
            format!(
                "(omitted from the letter: the original is {source} #{source_seq}, \
                 while that stream retains it)"
            ),
        ),
    };
    writeln!(
        out,
        "#{} reason={} source_stream={source} source_seq={source_seq} bytes={bytes}",
        l.seq,
        printable(&l.reason),
    )?;
    writeln!(
        out,
        "  error: {}\n  payload: {payload}",
        printable(&l.error)
    )
}

/// Prints every letter (with this reason); how many.
async fn list(tool: &Tool, reason: Option<Reason>, width: usize) -> anyhow::Result<u64> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut walk = Walk::start(tool).await?;
    let mut shown = 0;
    while let Some(letter) = walk.next().await? {
        if letter.has_reason(reason) {
            print_letter(&mut out, &letter, width).context("cannot write the listing")?;
            shown += 1;
        }
    }
    out.flush().context("cannot write the listing")?;
    Ok(shown)
}

/// What became of one letter chosen for replay.
enum Outcome {
    /// Stored in the orders stream at this sequence.
    Replayed { orders_seq: u64, deleted: bool },
    /// JetStream dropped it as a re-publish of the same `Nats-Msg-Id`.
    Duplicate(String),
    /// Its payload is not available (omitted and no longer retained).
    Unavailable(String),
}

/// The `Nats-Msg-Id` of a replay names the letter, not the order: it is not
/// the id the producer gave the original (so a replay is not dropped because
/// the order was published a minute ago), and replaying the same letter
/// twice within the duplicate window publishes it once and says so.
fn replay_id(tool: &Tool, letter: &Letter) -> String {
    format!("replay-{}-{}", tool.dlq_name, letter.seq)
}

/// The original bytes of a letter whose payload was omitted, from its
/// source stream, or why they are not available. Errors only when the
/// source cannot be asked.
async fn original(
    tool: &Tool,
    source: &Source,
    size: Option<u64>,
) -> anyhow::Result<Result<Bytes, String>> {
    let stream = &source.stream;
    let Some(seq) = source.seq else {
        return Ok(Err(
            "the letter does not say where its original is (no sequence)".into(),
        ));
    };
    let gone = |why: &str| Ok(Err(format!("the original, {stream} #{seq}, {why}")));
    let read = match tool.js.get_stream_no_info(stream).await {
        Ok(s) => s.get_raw_message(seq).await,
        Err(e) => return Err(e).with_context(|| format!("cannot open source stream {stream}")),
    };
    let message = match read {
        Ok(m) => m,
        Err(e) => match absent(&e) {
            Some(why) => return gone(why),
            None => {
                return Err(e).with_context(|| format!("cannot read the original, {stream} #{seq}"))
            }
        },
    };
    let len = message.payload.len() as u64;
    match size {
        Some(size) if size != len => gone(&format!(
            "holds {len} bytes where the letter says {size}: not the original"
        )),
        _ => Ok(Ok(message.payload)),
    }
}

/// Why a message could not be read, when the answer is that it is not
/// there (rather than that the stream could not be asked).
fn absent(e: &RawMessageError) -> Option<&'static str> {
    match e.kind() {
        RawMessageErrorKind::NoMessageFound => Some("is no longer in that stream"),
        RawMessageErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
            Some("is gone: the stream no longer exists")
        }
        _ => None,
    }
}

/// The payload to replay: the letter's own, or its omitted original (or
/// why that is not available).
async fn payload(tool: &Tool, letter: &Letter) -> anyhow::Result<Result<Bytes, String>> {
    match &letter.body {
        Body::Carried(payload) => Ok(Ok(payload.clone())),
        Body::Omitted(size) => original(tool, &letter.source, *size).await,
    }
}

/// Waits until JetStream has stored (or dropped) a published replay, then
/// deletes the letter when asked and it was stored.
async fn settle(
    tool: &Tool,
    seq: u64,
    id: String,
    ack: PublishAckFuture,
    delete: bool,
) -> anyhow::Result<Outcome> {
    let subject = &tool.orders_subject;
    let ack = ack
        .await
        .with_context(|| format!("no acknowledgement for letter #{seq} on {subject}"))?;
    if ack.duplicate {
        return Ok(Outcome::Duplicate(id));
    }
    // The subject may belong to another stream (a typo, another
    // environment's): the service never sees such a replay, so the letter
    // must stay.
    if ack.stream != tool.orders_stream {
        anyhow::bail!(
            "letter #{seq} was published to {subject} but stored in stream {} #{}, not in {}: \
             kept; check ORDERS_SUBJECT",
            ack.stream,
            ack.sequence,
            tool.orders_stream
        );
    }
    if delete {
        tool.dlq.delete_message(seq).await.with_context(|| {
            format!(
                "letter #{seq} was replayed (as {} #{}) but cannot be deleted from {}",
                ack.stream, ack.sequence, tool.dlq_name
            )
        })?;
    }
    Ok(Outcome::Replayed {
        orders_seq: ack.sequence,
        deleted: delete,
    })
}

/// Counts of what a replay did.
#[derive(Default)]
struct Tally {
    replayed: u64,
    duplicates: u64,
    unavailable: u64,
    /// Failed: its line says how far it got.
    failed: u64,
}

impl Tally {
    fn chosen(&self) -> u64 {
        self.replayed + self.duplicates + self.unavailable + self.failed
    }
}

/// Replays running ahead of their acknowledgements: each waits for its ack
/// (and its deletion) while the next ones are published, so a replay costs
/// a fraction of a round trip, not two.
const IN_FLIGHT: usize = 64;

/// Publishes letters in order, keeps up to [`IN_FLIGHT`] of them waiting
/// for JetStream's answer, and prints what became of each, in order.
struct Replayer<'a> {
    tool: &'a Tool,
    delete: bool,
    in_flight: FuturesOrdered<LocalBoxFuture<'a, (u64, String, anyhow::Result<Outcome>)>>,
    tally: Tally,
    /// The first error; once set nothing more is published.
    failed: Option<anyhow::Error>,
}

impl<'a> Replayer<'a> {
    fn new(tool: &'a Tool, delete: bool) -> Replayer<'a> {
        Replayer {
            tool,
            delete,
            in_flight: FuturesOrdered::new(),
            tally: Tally::default(),
            failed: None,
        }
    }

    /// Publishes one letter; false once replaying has failed.
    async fn push(&mut self, letter: Letter) -> bool {
        if let Err(e) = self.publish(letter).await {
            self.failed = Some(e);
        }
        while self.failed.is_none() && self.in_flight.len() >= IN_FLIGHT {
            self.report_next().await;
        }
        self.failed.is_none()
    }

    async fn publish(&mut self, letter: Letter) -> anyhow::Result<()> {
        let tool = self.tool;
        let (seq, reason) = (letter.seq, printable(&letter.reason));
        let payload = match payload(tool, &letter).await? {
            Ok(payload) => payload,
            Err(why) => {
                let outcome = Ok(Outcome::Unavailable(why));
                self.in_flight
                    .push_back(Box::pin(async move { (seq, reason, outcome) }));
                return Ok(());
            }
        };
        let id = replay_id(tool, &letter);
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        let subject = &tool.orders_subject;
        let ack = tool
            .js
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .with_context(|| format!("cannot publish letter #{seq} to {subject}"))?;
        let delete = self.delete;
        self.in_flight.push_back(Box::pin(async move {
            (seq, reason, settle(tool, seq, id, ack, delete).await)
        }));
        Ok(())
    }

    /// Prints the outcome of the oldest replay in flight.
    async fn report_next(&mut self) {
        let Some((seq, reason, outcome)) = self.in_flight.next().await else {
            return;
        };
        let line = match outcome {
            Ok(Outcome::Replayed {
                orders_seq,
                deleted,
            }) => {
                self.tally.replayed += 1;
                let deleted = if deleted { ", deleted" } else { "" };
                let orders = &self.tool.orders_stream;
                format!("replayed #{seq} ({reason}) as {orders} #{orders_seq}{deleted}")
            }
            Ok(Outcome::Duplicate(id)) => {
                self.tally.duplicates += 1;
                format!(
                    "duplicate #{seq} ({reason}): not replayed, JetStream dropped it as a \
                     re-publish of Nats-Msg-Id {id} within the duplicate window; kept"
                )
            }
            Ok(Outcome::Unavailable(why)) => {
                self.tally.unavailable += 1;
                format!("not replayed #{seq} ({reason}): {why}; kept")
            }
            Err(e) => {
                self.tally.failed += 1;
                let line = format!("failed #{seq} ({reason}): {e:#}");
                self.failed.get_or_insert(e);
                line
            }
        };
        println!("{line}");
    }

    /// Waits for every replay in flight (even after an error, so that each
    /// one published is reported); the tally, or the first error.
    async fn finish(mut self) -> (Tally, Option<anyhow::Error>) {
        while !self.in_flight.is_empty() {
            self.report_next().await;
        }
        (self.tally, self.failed)
    }
}

/// Replays the named letters, after checking that every one exists.
async fn replay_named(
    tool: &Tool,
    sequences: &BTreeSet<u64>,
    delete: bool,
) -> anyhow::Result<(Tally, Option<anyhow::Error>)> {
    let mut missing = Vec::new();
    for &seq in sequences {
        if letter_at(tool, seq).await?.is_none() {
            missing.push(format!("#{seq}"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "no dead letter {} in {} (see `list`); nothing replayed",
            missing.join(", "),
            tool.dlq_name
        );
    }
    let mut replayer = Replayer::new(tool, delete);
    for &seq in sequences {
        match letter_at(tool, seq).await {
            Ok(Some(letter)) => {
                if !replayer.push(letter).await {
                    break;
                }
            }
            Ok(None) => {
                replayer.tally.unavailable += 1;
                println!(
                    "not replayed #{seq}: deleted from {} meanwhile",
                    tool.dlq_name
                );
            }
            Err(e) => {
                replayer.failed = Some(e);
                break;
            }
        }
    }
    Ok(replayer.finish().await)
}

/// Replays every letter with this reason, as they are read.
async fn replay_reason(
    tool: &Tool,
    reason: Reason,
    delete: bool,
) -> anyhow::Result<(Tally, Option<anyhow::Error>)> {
    let mut walk = Walk::start(tool).await?;
    let mut replayer = Replayer::new(tool, delete);
    loop {
        match walk.next().await {
            Ok(Some(letter)) if letter.has_reason(Some(reason)) => {
                if !replayer.push(letter).await {
                    break;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                replayer.failed = Some(e);
                break;
            }
        }
    }
    Ok(replayer.finish().await)
}

async fn run(args: Args, said: &ServerSaid) -> anyhow::Result<ExitCode> {
    let tool = Tool::connect(&args, said).await?;
    match args.command {
        Command::List { reason, width } => {
            let shown = list(&tool, reason, width).await?;
            match (shown, reason) {
                (0, Some(r)) => eprintln!("no dead letters with reason {}", r.as_str()),
                (0, None) => eprintln!("no dead letters in {}", tool.dlq_name),
                (n, Some(r)) => eprintln!("{n} dead letters with reason {}", r.as_str()),
                (n, None) => eprintln!("{n} dead letters"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            sequences,
            reason,
            delete,
        } => {
            let (tally, failed) = match reason {
                Some(r) => replay_reason(&tool, r, delete).await?,
                None => replay_named(&tool, &sequences.into_iter().collect(), delete).await?,
            };
            if let Some(e) = failed {
                eprintln!(
                    "stopped: {} replayed, {} not replayed, {} failed (each named above)",
                    tally.replayed,
                    tally.duplicates + tally.unavailable,
                    tally.failed
                );
                return Err(e);
            }
            report(&tally, reason)
        }
    }
}

/// The replay's summary, and its exit status.
fn report(tally: &Tally, reason: Option<Reason>) -> anyhow::Result<ExitCode> {
    if let (0, Some(r)) = (tally.chosen(), reason) {
        eprintln!("no dead letters with reason {}", r.as_str());
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{} replayed", tally.replayed);
    let missed = tally.duplicates + tally.unavailable;
    if missed == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "NOT replayed: {} of {} chosen ({} duplicates, {} without their original); \
         each is named above and kept",
        missed,
        tally.chosen(),
        tally.duplicates,
        tally.unavailable
    );
    Ok(ExitCode::from(3))
}

/// An error and its causes on one line.
fn explain(e: &anyhow::Error) -> String {
    Report(e.as_ref()).to_string()
}

#[tokio::main]
async fn main() -> ExitCode {
    // NATS_URL as ./scripts/up wrote it to ./.env, under the environment.
    match order_cache::dotenv::load() {
        Ok(dotenv) => {
            if let Some(note) = dotenv.skipped_note() {
                eprintln!("warning: {note}");
            }
        }
        Err(e) => {
            eprintln!("error: cannot read ./.env: {e}");
            return ExitCode::FAILURE;
        }
    }
    let args = Args::parse();
    let said = ServerSaid::default();
    match run(args, &said).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", explain(&e));
            if let Some(said) = said.last() {
                eprintln!("  the NATS server said: {said}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reasons_the_service_gives_are_accepted() {
        for r in REASONS {
            let args = Args::try_parse_from(["dlq", "list", "--reason", r]).unwrap();
            assert!(
                matches!(args.command, Command::List { reason: Some(Reason(x)), .. } if x == r)
            );
        }
        assert!(Args::try_parse_from(["dlq", "list", "--reason", "nonsense"]).is_err());
    }
}

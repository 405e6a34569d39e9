//! Dead-letter tooling: list rejected messages with their reasons, and
//! replay chosen ones into the orders subject once the cause is fixed.
//!
//! ```text
//! cargo run --features cli --bin order-cache-dlq -- list
//! cargo run --features cli --bin order-cache-dlq -- replay 3 7 --delete
//! cargo run --features cli --bin order-cache-dlq -- replay --reason database
//! ```

use anyhow::Context;
use async_nats::jetstream;
use clap::{Parser, Subcommand};
use order_cache::ingest::{ERROR_HEADER, REASON_HEADER, SEQUENCE_HEADER};

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
    /// Stream of orders; its dead letters are in `<ORDERS_STREAM>_DLQ`.
    #[arg(long, env = "ORDERS_STREAM", default_value = "ORDERS")]
    orders_stream: String,
    /// Subject replayed messages are published to.
    #[arg(long, env = "ORDERS_SUBJECT", default_value = "orders")]
    orders_subject: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print each dead letter: its sequence, reason, explanation, and the
    /// start of its payload (escaped; payloads are untrusted).
    List {
        /// Only this reason (empty, too_large, not_utf8, syntax, shape,
        /// invalid, database).
        #[arg(long)]
        reason: Option<String>,
        /// Characters of payload to show.
        #[arg(long, default_value_t = 120)]
        width: usize,
    },
    /// Publish dead letters again to the orders subject.
    Replay {
        /// Dead-letter sequences to replay (see `list`).
        sequences: Vec<u64>,
        /// Replay every dead letter with this reason.
        #[arg(long)]
        reason: Option<String>,
        /// Delete each replayed letter from the dead-letter stream.
        #[arg(long)]
        delete: bool,
    },
}

struct Letter {
    seq: u64,
    reason: String,
    error: String,
    source_seq: String,
    payload: bytes::Bytes,
}

async fn letters(stream: &jetstream::stream::Stream) -> anyhow::Result<Vec<Letter>> {
    let mut stream = stream.clone();
    let state = stream
        .info()
        .await
        .context("dead-letter stream info")?
        .state
        .clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        // Deleted sequences leave gaps.
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        let header = |name: &str| {
            m.headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        out.push(Letter {
            seq,
            reason: header(REASON_HEADER),
            error: header(ERROR_HEADER),
            source_seq: header(SEQUENCE_HEADER),
            payload: m.payload.clone(),
        });
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nats_url = order_cache::redact::NatsUrl::parse(&args.nats_url);
    let client = nats_url
        .connect(async_nats::ConnectOptions::new())
        .await
        .with_context(|| format!("cannot reach NATS at {nats_url}"))?;
    let js = jetstream::new(client);
    let dlq_name = format!("{}_DLQ", args.orders_stream);
    let dlq = js
        .get_stream(&dlq_name)
        .await
        .with_context(|| format!("no dead-letter stream {dlq_name}"))?;

    match args.command {
        Command::List { reason, width } => {
            let mut shown = 0;
            for l in letters(&dlq).await? {
                if reason.as_ref().is_some_and(|r| *r != l.reason) {
                    continue;
                }
                let preview: String = String::from_utf8_lossy(&l.payload)
                    .chars()
                    .flat_map(char::escape_default)
                    .take(width)
                    .collect();
                println!(
                    "#{} reason={} source_seq={} bytes={}\n  error: {}\n  payload: {}",
                    l.seq,
                    l.reason,
                    l.source_seq,
                    l.payload.len(),
                    l.error,
                    preview
                );
                shown += 1;
            }
            eprintln!("{shown} dead letters");
        }
        Command::Replay {
            sequences,
            reason,
            delete,
        } => {
            if sequences.is_empty() && reason.is_none() {
                anyhow::bail!("name sequences to replay, or --reason");
            }
            let mut replayed = 0;
            for l in letters(&dlq).await? {
                let chosen =
                    sequences.contains(&l.seq) || reason.as_ref().is_some_and(|r| *r == l.reason);
                if !chosen {
                    continue;
                }
                let mut headers = async_nats::HeaderMap::new();
                // Replaying the same letter twice within the stream's
                // duplicate window publishes it once.
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    format!("replay-{dlq_name}-{}", l.seq).as_str(),
                );
                js.publish_with_headers(args.orders_subject.clone(), headers, l.payload.clone())
                    .await?
                    .await
                    .with_context(|| format!("replaying #{}", l.seq))?;
                if delete {
                    dlq.delete_message(l.seq)
                        .await
                        .with_context(|| format!("deleting #{}", l.seq))?;
                }
                println!("replayed #{} ({})", l.seq, l.reason);
                replayed += 1;
            }
            eprintln!("{replayed} replayed");
        }
    }
    Ok(())
}

//! `scripts/down --purge` removes what `scripts/up` recorded in
//! `.run/created` — a database, a pair of streams, a data directory, its
//! lines in `./.env` — and nothing it did not record: a neighbouring
//! database and stream, another data directory, the user's own `.env` lines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;

use crate::helpers::{admin_url, count_at, execute_at, nats_url, run_to_exit, unique};
use crate::services::{free_port, temp_dir};

const MARK: &str = "# written by scripts/up; scripts/down --purge removes it";

/// A copy of the repository's scripts in `root`, so that `down` works on a
/// tree of the test's own.
fn copy_scripts(root: &Path) {
    let scripts = root.join("scripts");
    std::fs::create_dir_all(&scripts).expect("mkdir scripts");
    for name in ["down", "services.sh"] {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join(name);
        std::fs::copy(&from, scripts.join(name)).expect("copy a script");
    }
}

async fn database_exists(name: &str) -> bool {
    count_at(
        &admin_url(),
        &format!("SELECT count(*) AS n FROM pg_database WHERE datname = '{name}'"),
    )
    .await
    .expect("count databases")
        == 1
}

async fn stream_exists(js: &jetstream::Context, name: &str) -> bool {
    js.get_stream(name).await.is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_removes_what_up_created_and_nothing_else() {
    let root = temp_dir("order-cache-purge");
    copy_scripts(&root);
    let client = async_nats::connect(nats_url()).await.expect("nats");
    let js = jetstream::new(client);

    let (ours, theirs) = (unique("purge_ours"), unique("purge_theirs"));
    for db in [&ours, &theirs] {
        execute_at(&admin_url(), &format!("CREATE DATABASE \"{db}\"")).await;
    }
    let (ours_stream, theirs_stream) = (unique("PURGE_OURS"), unique("PURGE_THEIRS"));
    for name in [
        ours_stream.clone(),
        format!("{ours_stream}_DLQ"),
        theirs_stream.clone(),
        format!("{theirs_stream}_DLQ"),
    ] {
        js.create_stream(jetstream::stream::Config {
            subjects: vec![format!("{name}.>")],
            name,
            ..Default::default()
        })
        .await
        .expect("create a stream");
    }
    for dir in ["volumes/pg-local", "volumes/theirs"] {
        std::fs::create_dir_all(root.join(dir).join("data")).expect("mkdir");
    }
    let base = admin_url();
    let base = base.rsplit_once('/').expect("a URL with a database").0;
    std::fs::create_dir_all(root.join(".run")).expect("mkdir .run");
    std::fs::write(
        root.join(".run/created"),
        format!(
            "database {base}/{ours} -\nstream {nats} {ours_stream} -\nstream {nats} {ours_stream}_DLQ -\nenv DATABASE_URL\ndir volumes/pg-local\n",
            nats = nats_url()
        ),
    )
    .expect("write .run/created");
    std::fs::write(
        root.join(".env"),
        // The user's own lines, and one they added after up wrote its own.
        format!(
            "RUST_LOG=debug\n{MARK}\nDATABASE_URL={base}/{ours}\nNATS_URL=nats://mine:4222\nDATABASE_URL=postgres://mine/db\n"
        ),
    )
    .expect("write .env");

    let mut down = tokio::process::Command::new("bash");
    down.arg(root.join("scripts/down"))
        .arg("--purge")
        .current_dir(&root)
        .env("NATS_URL", nats_url());
    let (status, output) = run_to_exit(&mut down, Duration::from_secs(60)).await;
    let cleanup = async {
        for db in [&ours, &theirs] {
            execute_at(
                &admin_url(),
                &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
            )
            .await;
        }
        for name in [
            ours_stream.clone(),
            format!("{ours_stream}_DLQ"),
            theirs_stream.clone(),
            format!("{theirs_stream}_DLQ"),
        ] {
            let _ = js.delete_stream(&name).await;
        }
    };
    let ours_gone = !database_exists(&ours).await;
    let theirs_kept = database_exists(&theirs).await;
    let streams = [
        stream_exists(&js, &ours_stream).await,
        stream_exists(&js, &format!("{ours_stream}_DLQ")).await,
        stream_exists(&js, &theirs_stream).await,
        stream_exists(&js, &format!("{theirs_stream}_DLQ")).await,
    ];
    let env = std::fs::read_to_string(root.join(".env")).unwrap_or_default();
    let dirs = (
        root.join("volumes/pg-local").exists(),
        root.join("volumes/theirs/data").exists(),
    );
    let created = std::fs::read_to_string(root.join(".run/created")).unwrap_or_default();
    cleanup.await;

    assert_eq!(status.and_then(|s| s.code()), Some(0), "{output}");
    assert!(
        ours_gone,
        "the database up created is still there:\n{output}"
    );
    assert!(
        theirs_kept,
        "a database up did not create was dropped:\n{output}"
    );
    assert_eq!(
        streams,
        [false, false, true, true],
        "streams (ours, ours_DLQ, theirs, theirs_DLQ) after --purge:\n{output}"
    );
    assert_eq!(
        env, "RUST_LOG=debug\nNATS_URL=nats://mine:4222\nDATABASE_URL=postgres://mine/db\n",
        "./.env keeps the user's lines and loses up's:\n{output}"
    );
    assert_eq!(
        dirs,
        (false, true),
        "(volumes/pg-local, volumes/theirs) after --purge"
    );
    assert_eq!(created, "", "what was purged is forgotten");
    let _ = std::fs::remove_dir_all(&root);
}

/// A copy of scripts/down and scripts/services.sh in a directory of its
/// own, with `.run/created` as scripts/up would have left it.
fn purge_dir(created: &str) -> PathBuf {
    let dir = temp_dir("order-cache-purge");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("scripts")).expect("scripts");
    std::fs::create_dir_all(dir.join(".run")).expect(".run");
    for f in ["down", "services.sh"] {
        std::fs::copy(root.join("scripts").join(f), dir.join("scripts").join(f)).expect("copy");
    }
    std::fs::write(dir.join(".run/created"), created).expect("created");
    dir
}

async fn purge(dir: &Path, nats_url: Option<&str>) -> String {
    let mut command = tokio::process::Command::new(dir.join("scripts/down"));
    command.arg("--purge").env_remove("NATS_URL");
    if let Some(url) = nats_url {
        command.env("NATS_URL", url);
    }
    let (status, output) = run_to_exit(&mut command, Duration::from_secs(60)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{output}");
    output
}

async fn streams_named(name: &str) -> (async_nats::jetstream::Context, [String; 2]) {
    let client = async_nats::connect(nats_url()).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    let names = [name.to_owned(), format!("{name}_DLQ")];
    for n in &names {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: n.clone(),
            subjects: vec![format!("purge.{}", n.to_lowercase())],
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("create stream");
    }
    (js, names)
}

fn stream_name(prefix: &str) -> String {
    format!("{prefix}{:08X}", rand::random::<u32>())
}

/// scripts/up recorded the streams it let the server create in one NATS;
/// `--purge` deletes them there, never in whatever NATS_URL names when it
/// runs, where streams of the same name are not up's.
#[tokio::test(flavor = "multi_thread")]
async fn purge_deletes_streams_only_in_the_nats_up_created_them_in() {
    let name = stream_name("PURGE_ELSEWHERE");
    let (js, names) = streams_named(&name).await;
    // up ran against another NATS (nothing listens there now).
    let elsewhere = format!("nats://127.0.0.1:{}", free_port());
    let dir = purge_dir(&format!(
        "stream {elsewhere} {name} -\nstream {elsewhere} {name}_DLQ -\n"
    ));

    let output = purge(&dir, Some(&nats_url())).await;

    let mut survived = Vec::new();
    for n in &names {
        if js.get_stream(n).await.is_ok() {
            survived.push(n.clone());
            let _ = js.delete_stream(n).await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(survived, names, "deleted where up never ran: {output}");
}

/// A dead-letter stream that existed before up (it outlived its orders
/// stream) is not recorded with the orders stream up saw missing, and
/// `--purge` keeps it, dead letters and all.
#[tokio::test(flavor = "multi_thread")]
async fn purge_keeps_a_dead_letter_stream_that_existed_before_up() {
    let name = stream_name("PURGE_DLQ_KEPT");
    let (js, names) = streams_named(&name).await;
    // Before up: only the dead-letter stream. up finds `name` missing and
    // records it; the server then creates it (here: already created).
    let dir = purge_dir(&format!("stream {} {name} -\n", nats_url()));

    let output = purge(&dir, None).await;

    let dlq_kept = js.get_stream(&names[1]).await.is_ok();
    for n in &names {
        let _ = js.delete_stream(n).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        dlq_kept,
        "{} deleted though up did not create it: {output}",
        names[1]
    );
}

//! No password or token in anything the service or its tools print: log
//! lines (every level, every crate), errors, `Debug`, `--help`, for every
//! form of `DATABASE_URL` and `NATS_URL` the clients accept, against a dead
//! port and against a server that refuses the credentials; and for the
//! access tokens (`API_TOKEN`, `API_TOKEN_FILE`, `METRICS_TOKEN`), those
//! the server takes, those it refuses at start, and those clients send.

use std::path::PathBuf;
use std::time::Duration;

use futures::future::join_all;
use tokio::process::Command;

use order_cache::{AppConfig, BearerTokens, IngestConfig};

use crate::helpers::{admin_url, run_to_exit, TestDb, TestStreams};
use crate::services::{server_bin, temp_dir, OwnNats, OwnPostgres, ServerProcess};

/// In every secret below: found anywhere, a secret leaked.
const MARK: &str = "Zq9Leak";

/// `Zq9Leak pct/@:?&%Zq9Leak`, percent-encoded as a URL needs it.
const PCT_ENCODED: &str = "Zq9Leak%20pct%2F%40%3A%3F%26%25Zq9Leak";

/// Every form of PostgreSQL password tokio-postgres reads, each aimed at a
/// port nothing listens on (or a socket directory that does not exist).
fn dead_database_urls() -> Vec<String> {
    vec![
        format!("postgres://postgres:{MARK}-userinfo@127.0.0.1:1/orders"),
        format!("postgresql://postgres:{PCT_ENCODED}@127.0.0.1:1/orders"),
        format!("postgres://postgres@127.0.0.1:1/orders?password={MARK}-query&sslmode=disable"),
        format!("postgres://127.0.0.1:1/orders?user=postgres&pass%77ord={MARK}-encoded-key"),
        format!("postgres://postgres:{MARK}-hosts@127.0.0.1:1,127.0.0.1:2/orders"),
        format!("postgres:///orders?host=%2Fno-such-dir&user=postgres&password={MARK}-socket"),
        format!("host=127.0.0.1 port=1 user=postgres password={MARK}-kv dbname=orders"),
        format!(
            "host=127.0.0.1 port=1 user=postgres password='{MARK} \\'quoted\\' {MARK}' dbname=orders"
        ),
        format!("host = 127.0.0.1 port = 1 password = {MARK}\\ escaped\\ {MARK} user=postgres"),
    ]
}

/// Every form of NATS credentials async-nats reads, at dead ports.
fn dead_nats_urls() -> Vec<String> {
    vec![
        format!("nats://natsuser:{MARK}-userinfo@127.0.0.1:1"),
        format!("nats://{MARK}-token@127.0.0.1:1"),
        format!("natsuser:{MARK}-bare@127.0.0.1:1"),
        format!("tls://natsuser:{MARK}-tls@127.0.0.1:1"),
        format!("ws://natsuser:{MARK}-ws@127.0.0.1:1"),
        format!("nats://natsuser:{PCT_ENCODED}@127.0.0.1:1"),
        format!("nats://a:{MARK}-list1@127.0.0.1:1, nats://{MARK}-list2@127.0.0.1:2"),
    ]
}

/// Runs a command to its exit (killed after `within`); its status code and
/// stdout and stderr together.
async fn run(command: &mut Command, within: Duration) -> (Option<i32>, String) {
    let (status, text) = run_to_exit(command, within).await;
    assert!(status.is_some(), "still running after {within:?}:\n{text}");
    (status.and_then(|s| s.code()), text)
}

/// Starts the server with every library's every log line on, expecting the
/// start to fail; what it printed.
async fn failed_start(database_url: &str, nats_url: &str) -> String {
    failed_start_at(database_url, nats_url, &[]).await
}

/// [`failed_start`] against dead ports, with more environment.
async fn failed_start_with(env: &[(&str, &str)]) -> String {
    failed_start_at(
        "postgres://postgres@127.0.0.1:1/orders",
        "nats://127.0.0.1:1",
        env,
    )
    .await
}

async fn failed_start_at(database_url: &str, nats_url: &str, env: &[(&str, &str)]) -> String {
    let mut server = Command::new(server_bin());
    server
        .envs(env.iter().copied())
        .env("DATABASE_URL", database_url)
        .env("NATS_URL", nats_url)
        .env("STARTUP_TIMEOUT", "1")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "trace");
    let (code, text) = run(&mut server, Duration::from_secs(60)).await;
    assert_eq!(code, Some(1), "the start must fail:\n{text}");
    text
}

fn assert_no_secret(text: &str, what: &str) {
    assert!(!text.contains(MARK), "a secret of {what} leaked:\n{text}");
}

// Each failed start below takes a second or more of waiting, not of work:
// they all run at once.

#[tokio::test]
async fn no_database_password_leaks_from_a_failed_start() {
    // A server that refuses the password it was sent in clear, and one that
    // has no such database: whatever they answer, it is printed.
    let refusing = OwnPostgres::start_with_password("the-right-one").await;
    let (admin, _) = admin_url()
        .rsplit_once('/')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .expect("admin URL has a database");
    let mut urls = dead_database_urls();
    urls.extend([
        format!(
            "postgres://postgres:{MARK}-refused@127.0.0.1:{}/postgres",
            refusing.port
        ),
        format!(
            "host=127.0.0.1 port={} user=postgres password='{MARK} refused' dbname=postgres",
            refusing.port
        ),
        format!("{admin}/no_such_database_zq?password={MARK}-no-database"),
    ]);
    join_all(urls.iter().map(|url| async move {
        let text = failed_start(url, "nats://127.0.0.1:1").await;
        assert!(text.contains("cannot reach PostgreSQL at"), "{text}");
        assert_no_secret(&text, url);
    }))
    .await;
    // Still says where it tried.
    let text = failed_start(&urls[0], "nats://127.0.0.1:1").await;
    assert!(
        text.contains("postgres://postgres:***@127.0.0.1:1/orders"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_nats_password_or_token_leaks_from_a_failed_start() {
    let db = TestDb::create().await;
    let user_password =
        OwnNats::start_with(&["--user", "natsuser", "--pass", "the-right-one"]).await;
    let token = OwnNats::start_with(&["--auth", "the-right-token"]).await;
    let mut urls = dead_nats_urls();
    urls.extend([
        format!(
            "nats://natsuser:{MARK}-refused@127.0.0.1:{}",
            user_password.port
        ),
        format!("nats://{MARK}-refused-token@127.0.0.1:{}", token.port),
    ]);
    join_all(urls.iter().map(|url| async {
        let text = failed_start(&db.url, url).await;
        assert!(text.contains("cannot reach NATS at"), "{text}");
        assert_no_secret(&text, url);
    }))
    .await;
    let text = failed_start(&db.url, &urls[0]).await;
    assert!(text.contains("nats://natsuser:***@127.0.0.1:1"), "{text}");
}

/// With the credentials out of the addresses, they must still reach the
/// server: the URL's user and password, or token, are what authenticates.
#[tokio::test(flavor = "multi_thread")]
async fn nats_credentials_in_the_url_authenticate_and_are_never_logged() {
    let db = TestDb::create().await;
    let dir = temp_dir("order-cache-secrets");
    // The password is `Zq9Leak pct/@:?&%Zq9Leak`, given percent-encoded.
    let password = percent_decode(PCT_ENCODED);
    let user_password = OwnNats::start_with(&["--user", "natsuser", "--pass", &password]).await;
    let token = OwnNats::start_with(&["--auth", &format!("{MARK}-token")]).await;
    for (i, url) in [
        format!(
            "nats://natsuser:{PCT_ENCODED}@127.0.0.1:{}",
            user_password.port
        ),
        format!("nats://{MARK}-token@127.0.0.1:{}", token.port),
    ]
    .iter()
    .enumerate()
    {
        let log = dir.join(format!("server-{i}.log"));
        let mut server = ServerProcess::spawn_with(
            &db.url,
            url,
            &IngestConfig::default(),
            &[("RUST_LOG", "debug")],
            Some(&log),
        );
        server.wait_ready(Duration::from_secs(30)).await;
        let _ = server.terminate(Duration::from_secs(20)).await;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(text.contains("listening"), "{text}");
        assert_no_secret(&text, url);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn percent_decode(s: &str) -> String {
    let mut bytes = Vec::new();
    let mut rest = s.as_bytes();
    while let [first, tail @ ..] = rest {
        match (first, tail) {
            (b'%', [h, l, after @ ..]) => {
                let hex = std::str::from_utf8(&[*h, *l]).unwrap_or("").to_owned();
                bytes.push(u8::from_str_radix(&hex, 16).expect("hex"));
                rest = after;
            }
            _ => {
                bytes.push(*first);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).expect("UTF-8")
}

/// Access tokens, as API_TOKEN gives them during a rotation.
const API_TOKENS: &str = "Zq9Leak-api-0123456789,Zq9Leak-retired-0123456789";
const METRICS_TOKEN: &str = "Zq9Leak-metrics-0123456789";

fn access_tokens() -> BearerTokens {
    BearerTokens::parse(API_TOKENS).expect("valid tokens")
}

#[tokio::test(flavor = "multi_thread")]
async fn no_access_token_leaks_from_a_serving_server() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let dir = temp_dir("order-cache-secrets-tokens");
    let file = dir.join("api-token");
    std::fs::write(&file, "Zq9Leak-file-0123456789\n").expect("token file");
    let file = file.to_str().expect("UTF-8 path");
    for (i, env) in [
        vec![("API_TOKEN", API_TOKENS), ("METRICS_TOKEN", METRICS_TOKEN)],
        vec![("API_TOKEN_FILE", file)],
    ]
    .into_iter()
    .enumerate()
    {
        let log = dir.join(format!("server-{i}.log"));
        let mut env = env;
        env.push(("RUST_LOG", "trace"));
        let mut server = ServerProcess::spawn_with(
            &db.url,
            &streams.nats_url,
            &streams.config,
            &env,
            Some(&log),
        );
        server.wait_ready(Duration::from_secs(30)).await;
        let client = server.client();
        // Taken, refused and mistyped tokens, on every closed route.
        for path in [
            "/orders/abc",
            "/getOrder?id=abc",
            "/orders",
            "/status",
            "/metrics",
        ] {
            for authorization in [
                "Bearer Zq9Leak-api-0123456789",
                "Bearer Zq9Leak-file-0123456789",
                "Bearer Zq9Leak-metrics-0123456789",
                "Bearer Zq9Leak-wrong-0123456789",
                "Basic Zq9Leak-basic-0123456789",
                "Zq9Leak-no-scheme-0123456789",
            ] {
                let res = client
                    .send_with(http::Method::GET, path, &[("authorization", authorization)])
                    .await
                    .expect("answered");
                assert_no_secret(&String::from_utf8_lossy(&res.body), path);
                assert_no_secret(&format!("{:?}", res.headers), path);
            }
        }
        let _ = server.terminate(Duration::from_secs(20)).await;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(text.contains("listening"), "{text}");
        assert_no_secret(&text, &format!("{env:?}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn no_access_token_leaks_from_a_refused_start() {
    for (var, value) in [
        ("API_TOKEN", "Zq9Leak"),
        ("API_TOKEN", "Zq9Leak-0123456789,Zq9Leak"),
        ("API_TOKEN", "Zq9Leak-é-0123456789"),
        ("METRICS_TOKEN", "Zq9Leak"),
        // The token itself given where its file belongs.
        ("API_TOKEN_FILE", "Zq9Leak-0123456789abcdef"),
    ] {
        let text = failed_start_with(&[(var, value)]).await;
        assert!(text.contains(var), "{text}");
        assert_no_secret(&text, value);
    }
}

#[test]
fn debug_output_of_the_configs_shows_no_secret() {
    let databases = dead_database_urls();
    let nats = dead_nats_urls();
    for database_url in &databases {
        for nats_url in &nats {
            let mut config = AppConfig::new(database_url.as_str(), nats_url.as_str());
            config.api_tokens = access_tokens();
            config.metrics_tokens = Some(access_tokens());
            let debug = format!("{config:?} {:?}", config.store);
            assert_no_secret(&debug, &format!("{database_url} / {nats_url}"));
            assert!(debug.contains("***"), "{debug}");
        }
    }
}

/// The dead-letter tool, when it was built (feature `cli`).
fn dlq_tool() -> Option<PathBuf> {
    option_env!("CARGO_BIN_EXE_order-cache-dlq").map(PathBuf::from)
}

#[tokio::test]
async fn help_shows_no_secret_from_the_environment() {
    let producer = server_bin().with_file_name("producer");
    for tool in [server_bin(), producer].into_iter().chain(dlq_tool()) {
        let mut help = Command::new(&tool);
        help.arg("--help")
            .env("DATABASE_URL", &dead_database_urls()[0])
            .env("NATS_URL", &dead_nats_urls()[0])
            .env("API_TOKEN", API_TOKENS)
            .env("METRICS_TOKEN", METRICS_TOKEN);
        let (code, text) = run(&mut help, Duration::from_secs(20)).await;
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("--nats-url"), "{text}");
        if tool == server_bin() {
            assert!(
                text.contains("--api-token") && text.contains("--metrics-token"),
                "{text}"
            );
        }
        assert_no_secret(&text, &tool.display().to_string());
    }
}

#[tokio::test]
async fn the_tools_show_no_nats_secret_when_they_cannot_connect() {
    let producer = server_bin().with_file_name("producer");
    let dlq = dlq_tool().map(|tool| (tool, &["list"][..]));
    for (tool, args) in [(producer, &["--count", "1"][..])].into_iter().chain(dlq) {
        let tool = &tool;
        join_all(dead_nats_urls().iter().map(|url| async move {
            let mut command = Command::new(tool);
            command.args(args).env("NATS_URL", url);
            let (code, text) = run(&mut command, Duration::from_secs(30)).await;
            assert_ne!(code, Some(0), "{text}");
            assert!(text.contains("cannot reach NATS at"), "{text}");
            assert_no_secret(&text, url);
        }))
        .await;
    }
}

/// Passwords with a raw `@` followed by `?`, `#` or `/`, in a URL's user
/// part, a `password=` parameter (with a port, whose `:` is not the
/// user's), or a NATS address: the client would read part of the password
/// as a host, so the service refuses the URL, and prints nothing of it.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_with_a_raw_at_and_question_mark_hash_or_slash_is_not_printed() {
    let dir = crate::services::temp_dir("order-cache-redact");
    let nats = crate::helpers::nats_url();
    for (database_url, nats_url, secret) in [
        (
            "postgres://postgres:p@ss/w#rd?x@127.0.0.1:1/postgres",
            nats.as_str(),
            "w#rd",
        ),
        (
            "postgres://postgres:p@ss?w=rd@127.0.0.1:1/postgres",
            nats.as_str(),
            "@ss",
        ),
        (
            "postgres://127.0.0.1:1/postgres?user=postgres&password=s3cr@tpass",
            nats.as_str(),
            "tpass",
        ),
        (
            "postgres://postgres@127.0.0.1:1/postgres",
            "nats://app:wr@ng?pa#ss/word@127.0.0.1:1",
            "ss/word",
        ),
    ] {
        let mut command = tokio::process::Command::new(crate::services::server_bin());
        command
            .current_dir(&dir)
            .env("DATABASE_URL", database_url)
            .env("NATS_URL", nats_url)
            .env("STARTUP_TIMEOUT", "1")
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "debug");
        let (status, output) =
            crate::helpers::run_to_exit(&mut command, std::time::Duration::from_secs(30)).await;
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{output}");
        for part in [secret, "wr@ng", "@ng", "s3cr"] {
            assert!(
                !output.contains(part),
                "part of the password of {database_url} / {nats_url} printed ({part}): {output}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

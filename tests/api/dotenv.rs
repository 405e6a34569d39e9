//! A server started by hand where ./scripts/up ran reads the settings up
//! wrote to ./.env; the environment still wins over the file.

use std::time::Duration;

use crate::helpers::run_to_exit;
use crate::services::{free_port, server_bin, temp_dir};

/// Starts the server in `dir` with `env` and returns what it printed; it
/// cannot reach the database it is given, so it exits within seconds.
async fn failed_start(dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let mut command = tokio::process::Command::new(server_bin());
    command
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("NATS_URL")
        .env("STARTUP_TIMEOUT", "1")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    let (status, output) = run_to_exit(&mut command, Duration::from_secs(30)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{output}");
    output
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_takes_the_database_from_dot_env_unless_the_environment_names_one() {
    let dir = temp_dir("order-cache-dotenv");
    let port = free_port();
    std::fs::write(
        dir.join(".env"),
        format!(
            "# as scripts/up writes it\nDATABASE_URL=postgres://postgres:secret@127.0.0.1:{port}/from_dot_env\n"
        ),
    )
    .expect("write .env");

    let output = failed_start(&dir, &[]).await;
    assert!(
        output.contains(&format!(
            "postgres://postgres:***@127.0.0.1:{port}/from_dot_env"
        )),
        "{output}"
    );
    assert!(output.contains("settings read from this file"), "{output}");
    assert!(output.contains("Connection refused"), "{output}");
    assert!(!output.contains("secret"), "{output}");

    let url = format!("postgres://postgres@127.0.0.1:{port}/from_the_environment");
    let output = failed_start(&dir, &[("DATABASE_URL", &url)]).await;
    assert!(output.contains("/from_the_environment"), "{output}");
    assert!(!output.contains("from_dot_env"), "{output}");
    let _ = std::fs::remove_dir_all(&dir);
}

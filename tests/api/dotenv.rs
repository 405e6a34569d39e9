//! A server started by hand where ./scripts/up ran reads the settings up
//! wrote to ./.env; the environment still wins over the file.

use std::path::Path;
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
    assert!(output.contains("settings read from ./.env"), "{output}");
    assert!(output.contains("Connection refused"), "{output}");
    assert!(!output.contains("secret"), "{output}");

    let url = format!("postgres://postgres@127.0.0.1:{port}/from_the_environment");
    let output = failed_start(&dir, &[("DATABASE_URL", &url)]).await;
    assert!(output.contains("/from_the_environment"), "{output}");
    assert!(!output.contains("from_dot_env"), "{output}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `.env` that docker compose reads (an unquoted value with spaces, as
/// .env.example invites for POSTGRES_PASSWORD) has lines the programs
/// cannot read: they are skipped and counted, never quoted (the line is a
/// password), and the server still starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_dot_env_line_the_server_cannot_parse_is_not_printed_password_and_all() {
    let dir = temp_dir("order-cache-dotenv-leak");
    let port = free_port();
    std::fs::write(
        dir.join(".env"),
        format!(
            "POSTGRES_PASSWORD=my s3cret pass\n\
             DATABASE_URL=postgres://postgres:my s3cret pass@127.0.0.1:{port}/orders\n"
        ),
    )
    .expect("write .env");
    let output = failed_start(&dir, &[]).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !output.contains("s3cret"),
        "the password is printed: {output}"
    );
    assert!(
        output.contains("were skipped") && output.contains("skipped=2"),
        "the two lines are skipped and counted, and the server goes on: {output}"
    );
}

/// With two DATABASE_URL lines in ./.env (up's, then one a user appended),
/// the scripts (`dotenv_get`) and the programs read the same one, the
/// first: a server started by hand goes to up's database.
#[tokio::test(flavor = "multi_thread")]
async fn the_scripts_and_the_server_read_the_same_database_url_from_dot_env() {
    let dir = temp_dir("order-cache-dotenv-twice");
    std::fs::write(
        dir.join(".env"),
        "# written by scripts/up; scripts/down --purge removes it\n\
         DATABASE_URL=postgres://postgres@127.0.0.1:1/written_by_up\n\
         DATABASE_URL=postgres://postgres@127.0.0.1:2/appended_by_user\n",
    )
    .expect("write .env");
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
    let scripts = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            ". '{}' && dotenv_get DATABASE_URL",
            services.display()
        ))
        .current_dir(&dir)
        .output()
        .expect("bash");
    let scripts = String::from_utf8_lossy(&scripts.stdout).trim().to_owned();

    let output = failed_start(&dir, &[]).await;
    let _ = std::fs::remove_dir_all(&dir);
    let db = scripts.rsplit('/').next().unwrap_or_default().to_owned();
    assert!(
        output.contains(&format!("/{db} ")),
        "scripts/up uses {scripts}; the server: {output}"
    );
}

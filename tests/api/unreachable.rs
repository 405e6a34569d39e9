//! A service that cannot reach PostgreSQL or NATS says why, down to the
//! operating system's reason, so an operator knows what to fix: nothing
//! listens there, the name does not resolve.

use std::time::Duration;

use order_cache::{AppConfig, AppError, Report, Service};

use crate::helpers::{nats_url, TestDb};
use crate::services::free_port;

/// The start's error for `config`, tried for one second.
async fn start_error(mut config: AppConfig) -> AppError {
    config.startup_timeout = Duration::from_secs(1);
    match Service::builder(config).connect().await {
        Ok(_) => panic!("the service started"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_port_nothing_listens_on_is_reported_as_refused() {
    let url = format!("postgres://postgres@127.0.0.1:{}/orders", free_port());

    let err = start_error(AppConfig::new(url, nats_url())).await;

    assert!(matches!(err, AppError::Postgres { .. }), "{err:?}");
    let report = Report(&err).to_string();
    assert!(
        report.contains("Connection refused (os error 111)"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_host_that_does_not_resolve_is_reported_as_such() {
    let url = "postgres://postgres@no-such-host.invalid/orders";

    let err = start_error(AppConfig::new(url, nats_url())).await;

    let report = Report(&err).to_string();
    assert!(
        report.contains("failed to lookup address information"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_port_nothing_listens_on_is_reported_as_refused() {
    let db = TestDb::create().await;
    let url = format!("nats://127.0.0.1:{}", free_port());

    let err = start_error(AppConfig::new(db.url.clone(), url)).await;

    assert!(matches!(err, AppError::Nats { .. }), "{err:?}");
    let report = Report(&err).to_string();
    assert!(
        report.contains("Connection refused (os error 111)"),
        "{report}"
    );
}

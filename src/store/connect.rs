//! Opening a connection, with the operating system's reason for a failure.

use std::error::Error as _;

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;

/// Connects as diesel-async's own `establish` does, but keeps why a
/// connection could not be made. diesel-async keeps only the outermost
/// message ("error connecting to server"); the operating system's reason
/// under it ("Connection refused (os error 111)", a name that does not
/// resolve, a timeout) is what tells an operator what to fix. diesel's
/// `ConnectionError` carries text, not a source, so the reason is written
/// into it.
pub(super) async fn establish(url: &str) -> Result<AsyncPgConnection, ConnectionError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| ConnectionError::BadConnection(describe(&e)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// The client's message with the operating system's reason or the
/// server's answer, and no other cause: the parse error of a connection
/// string quotes the string, password and all.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{e}: {db}");
    }
    match e.source().and_then(|s| s.downcast_ref::<std::io::Error>()) {
        Some(io) => format!("{e}: {io}"),
        None => e.to_string(),
    }
}

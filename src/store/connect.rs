//! Opening a connection, with the whole cause of a failure.

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;

use crate::report::Report;

/// Connects as diesel-async's own `establish` does, but keeps why a
/// connection could not be made. diesel-async keeps only the outermost
/// message ("error connecting to server"); the operating system's reason
/// under it ("Connection refused (os error 111)", a name that does not
/// resolve, a timeout) is what tells an operator what to fix. diesel's
/// `ConnectionError` carries text, not a source, so the chain is written
/// into it, each cause once.
pub(super) async fn establish(url: &str) -> Result<AsyncPgConnection, ConnectionError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| ConnectionError::BadConnection(Report(&e).to_string()))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

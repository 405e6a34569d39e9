//! What can go wrong with PostgreSQL, sorted by what the caller should do
//! about it: retry later, or give up on these rows.

use std::time::Duration;

use diesel::result::DatabaseErrorKind;

use crate::model::Problem;

/// What went wrong talking to PostgreSQL. Each variant's message is this
/// layer's; the client's own error, where there is one, is its
/// [`source`](std::error::Error::source).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use order_cache::StoreError;
///
/// let err = StoreError::Timeout(Duration::from_secs(5));
/// assert!(err.is_transient(), "worth retrying later");
/// assert!(!err.is_refusal(), "not the rows' fault");
/// assert_eq!(err.to_string(), "PostgreSQL gave no answer within 5s");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// PostgreSQL could not be reached: no connection, or the connection
    /// broke. Retrying later may succeed.
    #[error("PostgreSQL is unavailable")]
    Unavailable(#[source] DatabaseError),
    /// PostgreSQL did not answer within the time allowed (a query, or a
    /// cache miss's wait). Retrying later may succeed.
    #[error("PostgreSQL gave no answer within {0:?}")]
    Timeout(Duration),
    /// The task that was to ask PostgreSQL stopped before it answered (the
    /// runtime is shutting down). Retrying later may succeed.
    #[error("the task reading PostgreSQL stopped before answering")]
    Stopped,
    /// PostgreSQL refused the rows themselves: it said so about their data
    /// (SQLSTATE class 22, data exception, or class 23, integrity constraint
    /// violation). Retrying the same rows will fail again.
    #[error("PostgreSQL refused the rows")]
    Refused(#[source] DatabaseError),
    /// Any other query failure: the database's fault (read-only, disk full,
    /// a timeout, a deadlock, a permission, a missing table, a shutdown...),
    /// not the rows'. Retrying later may succeed.
    #[error("query failed")]
    Query(#[source] DatabaseError),
    /// Applying migrations failed.
    #[error("migration failed")]
    Migration(#[source] DatabaseError),
    /// A stored order could not be turned back into an order.
    #[error("stored order {uid:?} is corrupt: {problem}")]
    Corrupt {
        /// Id of the order row.
        uid: String,
        /// What is wrong with it.
        problem: Corruption,
    },
}

/// How a stored order's rows fail to add up. Every stored order was valid,
/// so each of these means rows were changed by hand or lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The stored id is not a valid id.
    #[error("its id {0}")]
    Id(Problem),
    /// The order has no delivery row.
    #[error("its delivery row is missing")]
    NoDelivery,
    /// The order has no payment row.
    #[error("its payment row is missing")]
    NoPayment,
    /// The order has no item rows.
    #[error("it has no item rows")]
    NoItems,
    /// The item rows skip a position.
    #[error("its item row at position {0} is missing")]
    MissingItem(usize),
    /// The date's text as sent is not a date.
    #[error("its date_created_text {0}")]
    Date(Problem),
    /// An `extra` column is not a JSON object of distinct fields.
    #[error("an extra column is not a JSON object of distinct fields")]
    Extra(#[source] serde_json::Error),
}

/// An error of the PostgreSQL client, or of the pool or runtime under it.
/// Opaque, so that the client's types stay out of this crate's API: its
/// message is the client's, and `source()` goes on down the client's chain.
#[derive(Debug)]
pub struct DatabaseError(Box<dyn std::error::Error + Send + Sync>);

impl DatabaseError {
    pub(crate) fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DatabaseError {
        DatabaseError(e.into())
    }
}

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl StoreError {
    /// Whether the same request may succeed later: every failure but a
    /// refusal of the rows and a corrupt stored row.
    pub fn is_transient(&self) -> bool {
        !matches!(self, StoreError::Refused(_) | StoreError::Corrupt { .. })
    }

    /// Whether PostgreSQL refused the rows for their data ([`StoreError::Refused`]):
    /// the one failure that is the rows' fault rather than the database's.
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::Refused(_))
    }

    /// A failure to reach PostgreSQL (a pool or connection error).
    pub(crate) fn unavailable(
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Unavailable(DatabaseError::new(e))
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::Error as E;
        match e {
            E::DatabaseError(
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::RestrictViolation
                | DatabaseErrorKind::ExclusionViolation,
                _,
            ) => StoreError::Refused(DatabaseError::new(e)),
            E::DatabaseError(
                DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection,
                _,
            )
            | E::BrokenTransactionManager => StoreError::unavailable(e),
            e => StoreError::Query(DatabaseError::new(e)),
        }
    }
}

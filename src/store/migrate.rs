//! The schema's migrations, embedded in the binary and applied at start.

use diesel::sql_types::Int8;
use diesel_async::{AsyncMigrationHarness, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::error::{DatabaseError, StoreError};
use super::{Store, StoreConfig};

pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// How many times [`Store::migrate`] runs the pending migrations before it
/// gives up.
pub(crate) const ATTEMPTS: u32 = 10;

impl Store {
    /// Applies pending migrations. Safe to call from several processes at
    /// once: an advisory lock lets one at a time through.
    ///
    /// A migration that alters a table waits at most 2 s for its lock
    /// (`lock_timeout`), so that an open transaction on the table (another
    /// instance's restore) does not stall every query queued behind it; a
    /// failed run is rolled back and tried again, ten times in all,
    /// a second apart.
    ///
    /// The migration harness blocks its thread, which only a multi-threaded
    /// tokio runtime allows; on any other runtime the migrations run on a
    /// thread and runtime of their own, with a connection of their own.
    ///
    /// # Errors
    ///
    /// [`StoreError::Migration`] when a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        if matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)) {
            return self.migrate_here().await;
        }
        let config = StoreConfig::clone(&self.config);
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let migrated = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| StoreError::Migration(DatabaseError::new(e)))
                .and_then(|rt| rt.block_on(async { Store::new(config)?.migrate_here().await }));
            let _ = done.send(migrated);
        });
        result.await.unwrap_or_else(|_| {
            Err(StoreError::Migration(DatabaseError::new(
                "the migration thread died",
            )))
        })
    }

    async fn migrate_here(&self) -> Result<(), StoreError> {
        let mut attempt = 1;
        loop {
            match self.migrate_once().await {
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(error = %crate::report::Report(&e), attempt, "migration failed; will try again");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                done => return done,
            }
        }
    }

    async fn migrate_once(&self) -> Result<(), StoreError> {
        const LOCK: i64 = 0x6f72_6465_725f_6361; // "order_ca"
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<Int8, _>(LOCK)
            .execute(&mut conn)
            .await?;
        let mut harness = AsyncMigrationHarness::new(conn);
        let result = harness
            .run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(|e| StoreError::Migration(DatabaseError::new(e)));
        let mut conn = harness.into_inner();
        diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<Int8, _>(LOCK)
            .execute(&mut conn)
            .await?;
        result
    }
}

//! The database: one connection type over SQLite (the embedded default) and PostgreSQL
//! (chosen by a `postgres://` URL), one pool, embedded migrations per backend.
//!
//! Invariants:
//! - Every query runs on the blocking pool ([`Db::run`]), or on SQLite's writer thread
//!   ([`Db::write`]), never on an actix worker thread.
//! - Every pooled SQLite connection has WAL, `busy_timeout` and `foreign_keys=ON`.
//! - Check-and-set happens in SQL (`UPDATE … WHERE …`, then look at rows affected), so two
//!   requests or two instances can never both win.

pub mod directory;
mod fixed;
pub mod models;
mod pool;
pub mod schema;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long a request waits for a free connection before it fails.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// How long a SQLite writer waits for the lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

pub use pool::{Pool, PoolError, PooledConnection};

/// Runs `$body` with `$c` bound to the backend's own connection (`SqliteConnection` or
/// `PgConnection`): the query is written once and compiled for each backend.
///
/// Why: through the [`AnyConnection`] enum, diesel turns every statement into SQL text at
/// every execution, twice (once to ask whether it may be cached, once to collect its binds),
/// even when the prepared statement is cached; on PostgreSQL that showed up as a large share
/// of a sign-in's instructions (figures in docs/decisions.md). On the backend's own
/// connection a cached statement is found by its Rust type and only its binds are
/// collected. Used, inside `db` only, for the statements of every sign-in; elsewhere the
/// enum's convenience is worth more than the time.
macro_rules! native {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::AnyConnection::Sqlite($c) => $body,
            $crate::db::AnyConnection::Postgresql($c) => $body,
        }
    };
}
// Only `db`'s own modules run queries on the backend's connection.
pub(in crate::db) use native;

/// Which backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Opens one connection. The URL's scheme decides the backend, and the backend's own error
/// comes back (diesel's `MultiConnection::establish` would try each backend in turn, so an
/// unreachable PostgreSQL would silently become a SQLite file named `postgres:…`).
/// Counts the statements a pool's connections send (each one a round trip on PostgreSQL),
/// for measuring what a request costs (`Db::statements`): one relaxed atomic add per
/// statement, nothing else.
/// Statements sent for background work ([`Db::for_background`]) are not counted: they are
/// no request's cost.
struct StatementCounter(Arc<AtomicU64>);

impl diesel::connection::Instrumentation for StatementCounter {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        if let diesel::connection::InstrumentationEvent::StartQuery { .. } = event
            && !IN_BACKGROUND.get()
        {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

thread_local! {
    /// Set on a thread while it runs a background task's closure.
    static IN_BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, in the background if `background` (see [`StatementCounter`]).
fn marked<R>(background: bool, f: impl FnOnce() -> R) -> R {
    struct Unmark;
    impl Drop for Unmark {
        fn drop(&mut self) {
            IN_BACKGROUND.set(false);
        }
    }
    if !background {
        return f();
    }
    IN_BACKGROUND.set(true);
    let _unmark = Unmark;
    f()
}

fn open(
    url: &str,
    backend: Backend,
    checkpoints: Checkpoints,
    statements: &Arc<AtomicU64>,
) -> anyhow::Result<AnyConnection> {
    let counter = StatementCounter(Arc::clone(statements));
    match backend {
        Backend::Postgres => {
            let mut conn = diesel::PgConnection::establish(url)?;
            conn.set_instrumentation(counter);
            Ok(AnyConnection::Postgresql(conn))
        }
        Backend::Sqlite => {
            let mut conn = diesel::SqliteConnection::establish(url)?;
            conn.set_instrumentation(counter);
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; \
                 PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON;"
            ))?;
            if checkpoints == Checkpoints::Background {
                // Not 0: should the server's checkpoints keep failing (every connection
                // busy), a commit still checkpoints once the log is that long.
                conn.batch_execute(&format!(
                    "PRAGMA wal_autocheckpoint = {SAFETY_NET_LOG_PAGES};"
                ))?;
            }
            Ok(AnyConnection::Sqlite(conn))
        }
    }
}

/// Who copies SQLite's write-ahead log back into the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoints {
    /// SQLite itself, at the commit that finds the log over its default mark: right for
    /// the one-shot commands.
    Automatic,
    /// Nobody at commit: the owner calls [`Db::checkpoint`] every
    /// [`CHECKPOINT_INTERVAL`] (the server). Under concurrent load the log never gets
    /// back to its start (a reader is always on a recent snapshot), so with automatic
    /// checkpoints every commit found it over the mark and checkpointed again, merging
    /// the whole log's index each time: a large share of a sign-in's instructions (figures
    /// in docs/decisions.md).
    Background,
}

/// How often the server checkpoints SQLite's log (see [`Checkpoints::Background`]).
///
/// Often, so that each checkpoint has little to flush: while its `fsync` writes the log
/// out, a writer appending to the log can wait for the disk, and every writer behind it
/// waits too. The wait grows with what the log gathered since the last checkpoint: at
/// 600 sign-ins a second, a 2 s interval gave a second step's p99 of about 200 ms, 250 ms
/// gave 24 ms, 50 ms 9.7 ms, 20 ms 8.4 ms (docs/decisions.md). A round with nothing to
/// copy costs one statement.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// A log longer than this (pages of 4 KiB) is checkpointed with `RESTART`, which waits
/// briefly for readers so that the next write starts the log over instead of growing it.
const RESTART_LOG_PAGES: i64 = 1000;

/// With background checkpoints, SQLite's own at-commit checkpoint still runs past this many
/// pages: a safety net, far above what the background checkpoints let the log reach.
const SAFETY_NET_LOG_PAGES: i64 = 20_000;

/// How long a `RESTART` checkpoint may wait for readers (and hold writers back meanwhile).
const RESTART_WAIT_MS: u32 = 50;

/// A cheap-to-clone handle on the pool.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    backend: Backend,
    /// Statements sent by this pool's connections so far (see [`Db::statements`]).
    statements: Arc<AtomicU64>,
    /// On SQLite, this process's writers one at a time (see [`Db::write`]); `None` on
    /// PostgreSQL, whose writers lock rows, not the database.
    writers: Option<writer::WriterLine>,
    /// How long a writer waits for its turn among `writers`.
    turn_wait: Duration,
    /// A handle for background work, whose statements [`Db::statements`] leaves out.
    background: bool,
}

/// Errors of getting to the database at all (as opposed to a query failing).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("the database task was cancelled")]
    Blocking(#[from] actix_web::error::BlockingError),
    #[error("the database write panicked")]
    WritePanicked,
    #[error("other writers held the database for {0:?}")]
    WritersBusy(Duration),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl DbError {
    /// Whether the database could not be reached or used at all (down, refusing
    /// connections, a dropped connection, every connection busy, SQLite locked for longer
    /// than the busy timeout), as opposed to a query that failed on its own: a request
    /// meeting this may well succeed in a few seconds.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            DbError::Pool(PoolError::Timeout(_) | PoolError::Connect(_))
            | DbError::WritersBusy(_) => true,
            DbError::Pool(PoolError::Closed) | DbError::Blocking(_) | DbError::WritePanicked => {
                false
            }
            DbError::Query(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => true,
            DbError::Query(Error::DatabaseError(_, info)) => {
                let message = info.message();
                message.starts_with("database is locked")
                    || message.contains("server closed the connection")
                    || message.contains("terminating connection")
                    || message.contains("no connection to the server")
            }
            DbError::Query(_) => false,
        }
    }
}

impl Db {
    /// Opens the pool. The URL is never logged: it may carry a password.
    pub fn connect(url: &str, max_size: u32) -> anyhow::Result<Db> {
        Db::connect_with(url, max_size, Checkpoints::Automatic)
    }

    /// As [`Db::connect`], saying who checkpoints SQLite's log.
    pub fn connect_with(url: &str, max_size: u32, checkpoints: Checkpoints) -> anyhow::Result<Db> {
        let backend = Backend::of_url(url);
        if backend == Backend::Sqlite {
            create_sqlite_parent_dir(url)?;
        }
        let owned = url.to_owned();
        let statements = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&statements);
        let pool = Pool::new(max_size as usize, POOL_WAIT, move || {
            open(&owned, backend, checkpoints, &counter)
        })?;
        // Open one connection now, so a wrong URL stops the start with the backend's answer.
        drop(pool.get().with_context(|| match backend {
            Backend::Sqlite => "could not open the SQLite database named by DATABASE_URL",
            Backend::Postgres => {
                "could not connect to the PostgreSQL database named by DATABASE_URL"
            }
        })?);
        Ok(Db {
            pool,
            backend,
            statements,
            writers: match backend {
                Backend::Sqlite => Some(writer::WriterLine::start()?),
                Backend::Postgres => None,
            },
            turn_wait: POOL_WAIT,
            background: false,
        })
    }

    /// The same pool, for background work (checkpoints, sweeps, the outbox): what it
    /// sends is left out of [`Db::statements`], which measures requests.
    pub fn for_background(&self) -> Db {
        Db {
            background: true,
            ..self.clone()
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many statements this pool's connections have sent (BEGIN and COMMIT included;
    /// on PostgreSQL each is a round trip), background work's left out: read it before and
    /// after a request to see what the request cost.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// A connection for synchronous callers (the command line, start-up checks).
    pub fn get(&self) -> Result<PooledConnection, DbError> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` with a pooled connection on the blocking thread pool. For `f` that only
    /// reads (or, rarely, writes): one that writes on every call goes through
    /// [`Db::run_writing`] or [`Db::write`].
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.run_in_turn(None, f).await
    }

    /// As [`Db::run`], for `f` that writes without a transaction of its own (each
    /// statement commits by itself): on SQLite it first waits for this process's other
    /// writers, as [`Db::write`] does.
    pub async fn run_writing<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.run_in_turn(self.writers.as_ref(), f).await
    }

    /// Runs `f` on the blocking pool, or with `writers` (when there are) on their line: in
    /// order of arrival, waiting without a thread or a connection, so that waiting writers
    /// leave both to readers. A writer waits for its turn as long as for a connection, then
    /// fails as unavailable.
    async fn run_in_turn<T, E, F>(&self, writers: Option<&writer::WriterLine>, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let background = self.background;
        let f = move |conn: &mut AnyConnection| marked(background, || f(conn));
        if let Some(line) = writers {
            return line.run(&self.pool, self.turn_wait, f).await;
        }
        let pool = self.pool.clone();
        actix_web::web::block(move || with_connection(&pool, f))
            .await
            .map_err(DbError::from)?
    }

    /// Runs `f` in a write transaction (see [`write_transaction`]): on the blocking pool on
    /// PostgreSQL, on the writer thread on SQLite.
    ///
    /// On SQLite, one writer at a time in this process: SQLite lets one connection write
    /// at once, and one that finds the lock taken polls for it, sleeping 1, 2, 5, 10, 15,
    /// 20, 25… ms between tries (the bundled build's busy handler, which diesel offers no
    /// safe way to replace). With a few hundred sign-ins a second those sleeps were the
    /// second step's tail (docs/decisions.md). Here the writes line up on one thread
    /// instead (`writer`), which starts each the moment the one before it is done. Other
    /// processes on the same file (the commands) still meet SQLite's own wait.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + From<diesel::result::Error> + Send + 'static,
    {
        self.run_in_turn(self.writers.as_ref(), move |conn| {
            write_transaction(conn, f)
        })
        .await
    }

    /// Applies every pending migration of this backend; returns their names.
    pub fn migrate(&self) -> anyhow::Result<Vec<String>> {
        let mut conn = self.get()?;
        let applied = match &mut *conn {
            AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
            AnyConnection::Postgresql(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS),
        }
        .map_err(|e| anyhow::anyhow!("a database migration failed: {e}"))?;
        Ok(applied.iter().map(|v| v.to_string()).collect())
    }

    /// Closes the connections (see [`Pool::close`]) once SQLite's writes already in line
    /// are done; for shut-down.
    pub fn close(&self) {
        if let Some(line) = &self.writers {
            line.stop();
        }
        self.pool.close();
    }

    /// Copies SQLite's write-ahead log back into the database file, as far as readers
    /// allow, and lets the log start over once it has grown past [`RESTART_LOG_PAGES`].
    /// Returns the log's length in pages before; nothing to do on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<i64, DbError> {
        if self.backend != Backend::Sqlite {
            return Ok(0);
        }
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Log {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            log: i64,
        }
        // A passive checkpoint holds no writer back.
        let Log { log } = self
            .run(|conn| {
                diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
                    .get_result(conn)
                    .map_err(DbError::from)
            })
            .await?;
        if log > RESTART_LOG_PAGES {
            // A restart takes the write lock: in turn with the other writers.
            self.run_writing(|conn| {
                conn.batch_execute(&format!("PRAGMA busy_timeout = {RESTART_WAIT_MS}"))?;
                // Busy (a reader stayed) is not an error: the next round tries again.
                let restarted = diesel::sql_query("PRAGMA wal_checkpoint(RESTART)")
                    .execute(conn)
                    .map(|_| ());
                conn.batch_execute(&format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))?;
                restarted.map_err(DbError::from)
            })
            .await?;
        }
        Ok(log)
    }

    /// `SELECT 1`, for /healthz.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| {
            conn.batch_execute("SELECT 1")?;
            Ok::<_, DbError>(())
        })
        .await
    }
}

/// Runs `f` with a connection from `pool`; one whose closure failed is checked before it
/// goes back (see `PooledConnection::check_after_failure`).
fn with_connection<T, E, F>(pool: &Pool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
    E: From<DbError>,
{
    let mut conn = pool.get().map_err(DbError::from)?;
    let result = f(&mut conn);
    if result.is_err() {
        conn.check_after_failure();
    }
    result
}

/// After a bulk load (`tessera import`): PostgreSQL plans from statistics that only
/// autovacuum would otherwise refresh, a minute or so later; until then a fresh import of
/// 100,000 members plans the members export's first page as a scan of them all (146 ms
/// instead of 20). SQLite keeps no such statistics unless asked, so it is left alone.
pub fn refresh_planner_statistics(conn: &mut AnyConnection) -> diesel::QueryResult<()> {
    match conn {
        AnyConnection::Postgresql(pg) => {
            pg.batch_execute("ANALYZE users, totp_credentials, recovery_codes")
        }
        AnyConnection::Sqlite(_) => Ok(()),
    }
}

/// A transaction meant to write. On SQLite it begins with `BEGIN IMMEDIATE`, taking the
/// write lock up front: a plain (deferred) transaction that reads and then writes fails with
/// SQLITE_BUSY, whatever the busy timeout, when another connection wrote in between — which
/// is exactly what two racing logins do. PostgreSQL uses an ordinary transaction.
/// Nested `conn.transaction(…)` calls inside `f` become savepoints as usual.
pub fn write_transaction<T, E, F>(conn: &mut AnyConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    match conn {
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    match f(conn) {
        Ok(value) => {
            <AnyConnection as diesel::Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            if let Err(rollback) =
                <AnyConnection as diesel::Connection>::TransactionManager::rollback_transaction(
                    conn,
                )
            {
                tracing::error!(error = %rollback, "rolling back a failed transaction failed too");
            }
            Err(e)
        }
    }
}

/// `sqlite://path`, `file:path` and bare paths all name a file; its folder is created on
/// first start so `cargo run` works on a fresh clone.
fn create_sqlite_parent_dir(url: &str) -> anyhow::Result<()> {
    let path = sqlite_path(url);
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("could not create the folder {}", parent.display()))?;
    }
    Ok(())
}

pub fn sqlite_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("file:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

/// The current time in Unix seconds (the system clock; stored times are these).
pub use crate::clock::system_now as now;

/// A fresh random id (128 bits from the OS RNG, hex).
pub fn new_id() -> Result<String, getrandom::Error> {
    let bytes: [u8; 16] = crate::random::bytes()?;
    Ok(crate::random::hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_backend() {
        assert_eq!(Backend::of_url("postgres://u@h/db"), Backend::Postgres);
        assert_eq!(Backend::of_url("postgresql://u@h/db"), Backend::Postgres);
        assert_eq!(Backend::of_url("data/tessera.db"), Backend::Sqlite);
        assert_eq!(Backend::of_url("sqlite://data/t.db"), Backend::Sqlite);
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let names = |backend: &str| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend);
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert!(!names("sqlite").is_empty());
        assert_eq!(names("sqlite"), names("postgres"));
    }

    /// The pages in SQLite's log, and how many of them are in the database file.
    fn log_pages(conn: &mut AnyConnection) -> (i64, i64) {
        #[derive(diesel::QueryableByName)]
        struct Log {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            log: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            checkpointed: i64,
        }
        use diesel::RunQueryDsl;
        let row: Log = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
            .get_result(conn)
            .unwrap();
        (row.log, row.checkpointed)
    }

    /// A fresh folder for a SQLite file, and the file's URL.
    fn scratch_database(name: &str) -> (std::path::PathBuf, String) {
        let dir = std::env::temp_dir().join(format!(
            "tessera-{name}-{}",
            crate::random::hex(&crate::random::bytes::<6>().unwrap())
        ));
        let url = dir.join("t.db").to_string_lossy().into_owned();
        (dir, url)
    }

    #[tokio::test]
    async fn a_server_checkpoints_the_log_itself_and_keeps_it_short() {
        let (dir, url) = scratch_database("wal");
        let db = Db::connect_with(&url, 2, Checkpoints::Background).unwrap();
        let write = |rows: usize| write_rows(&mut db.get().unwrap(), rows);
        write(RESTART_LOG_PAGES as usize + 100);
        // No commit checkpointed: the log holds every page written.
        let pages = db.checkpoint().await.unwrap();
        assert!(pages > RESTART_LOG_PAGES, "{pages} pages");
        // The checkpoint copied it all and let the log start over at the next write.
        write(1);
        let (log, _) = log_pages(&mut db.get().unwrap());
        assert!(log < 10, "the log kept {log} pages");

        // Commands keep SQLite's own checkpoints.
        drop(db);
        let cli = Db::connect(&url, 1).unwrap();
        let mut conn = cli.get().unwrap();
        write_rows(&mut conn, RESTART_LOG_PAGES as usize + 100);
        let (log, checkpointed) = log_pages(&mut conn);
        assert!(
            log < RESTART_LOG_PAGES,
            "{log} pages ({checkpointed} checkpointed)"
        );
        drop(conn);
        cli.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Writers in one process never meet each other at SQLite's lock, where they would poll
    /// (see [`Db::write`]): with no busy timeout at all, a writer that found the lock taken
    /// would fail at once, and none does.
    #[tokio::test]
    async fn writers_in_one_process_take_turns_before_sqlites_lock() {
        let (dir, url) = scratch_database("writers");
        let db = Db::connect_with(&url, 8, Checkpoints::Background).unwrap();
        let mut conns: Vec<_> = (0..8).map(|_| db.get().unwrap()).collect();
        for conn in &mut conns {
            conn.batch_execute("PRAGMA busy_timeout = 0").unwrap();
        }
        conns[0]
            .batch_execute("CREATE TABLE t (x INTEGER)")
            .unwrap();
        drop(conns);
        use diesel::RunQueryDsl;
        let insert = |conn: &mut AnyConnection| {
            diesel::sql_query("INSERT INTO t VALUES (1)")
                .execute(conn)
                .map_err(DbError::from)
        };
        let writes: Vec<_> = (0..48)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        // Holds SQLite's lock a while: a writer beside it would find it taken.
                        db.write(move |conn| {
                            insert(conn)?;
                            std::thread::sleep(Duration::from_millis(2));
                            insert(conn)
                        })
                        .await
                    } else {
                        db.run_writing(move |conn| insert(conn)).await
                    }
                })
            })
            .collect();
        for write in writes {
            write.await.unwrap().unwrap();
        }
        let rows: i64 = db
            .run(|conn| {
                diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "(SELECT count(*) FROM t)",
                ))
                .get_result(conn)
                .map_err(DbError::from)
            })
            .await
            .unwrap();
        assert_eq!(rows, 24 * 2 + 24);
        db.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Waiting in line has an end: a writer that waited too long is told the database is
    /// unavailable (a 503), while readers never wait in that line.
    #[tokio::test]
    async fn a_writer_kept_waiting_too_long_hears_the_database_is_unavailable() {
        let (dir, url) = scratch_database("turns");
        let mut db = Db::connect_with(&url, 2, Checkpoints::Background).unwrap();
        db.turn_wait = Duration::from_millis(50);
        let holder = holding_the_line(&db, Duration::from_millis(400));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let read = db.run(|conn| conn.batch_execute("SELECT 1").map_err(DbError::from));
        tokio::time::timeout(Duration::from_millis(200), read)
            .await
            .expect("a reader waited for the writer")
            .unwrap();
        let late = db.run_writing(|_| Ok::<_, DbError>(())).await.unwrap_err();
        assert!(matches!(late, DbError::WritersBusy(_)), "{late:?}");
        assert!(late.is_unavailable());
        holder.await.unwrap().unwrap();
        db.run_writing(|_| Ok::<_, DbError>(())).await.unwrap();
        db.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A write whose caller went away before its turn never runs; one that panics fails
    /// its caller alone, and the writes after it go on.
    #[tokio::test]
    async fn a_write_given_up_never_runs_and_one_that_panics_fails_alone() {
        let (dir, url) = scratch_database("line");
        let db = Db::connect_with(&url, 2, Checkpoints::Background).unwrap();
        let holder = holding_the_line(&db, Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ran = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&ran);
        let given_up = db.run_writing(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, DbError>(())
        });
        // In line behind the holder, then dropped, as a request whose client went away.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), given_up)
                .await
                .is_err()
        );
        holder.await.unwrap().unwrap();
        let failed = db
            .run_writing(|_| -> Result<(), DbError> { panic!("a write that panics") })
            .await
            .unwrap_err();
        assert!(matches!(failed, DbError::WritePanicked), "{failed:?}");
        assert!(!failed.is_unavailable());
        let after = Arc::clone(&ran);
        db.run_writing(move |_| Ok::<_, DbError>(after.load(Ordering::SeqCst)))
            .await
            .map(|seen| assert_eq!(seen, 0, "the write given up ran"))
            .unwrap();
        db.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A write that started within its wait is waited for to its end, however long it
    /// takes: it is never reported as given up while it runs.
    #[tokio::test]
    async fn a_write_that_started_in_time_is_waited_for_to_its_end() {
        let (dir, url) = scratch_database("started");
        let mut db = Db::connect_with(&url, 2, Checkpoints::Background).unwrap();
        db.turn_wait = Duration::from_millis(50);
        let written = db
            .write(|_| {
                std::thread::sleep(Duration::from_millis(200));
                Ok::<_, DbError>("written")
            })
            .await
            .unwrap();
        assert_eq!(written, "written");
        db.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Closing lets the writes already in line finish; a write sent after it hears the
    /// database is closed.
    #[tokio::test]
    async fn closing_lets_the_writes_in_line_finish_and_refuses_later_ones() {
        let (dir, url) = scratch_database("closing");
        let db = Db::connect_with(&url, 2, Checkpoints::Background).unwrap();
        let in_line: Vec<_> = (0..3)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.write(move |_| {
                        std::thread::sleep(Duration::from_millis(50));
                        Ok::<_, DbError>(i)
                    })
                    .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let closer = db.clone();
        tokio::task::spawn_blocking(move || closer.close())
            .await
            .unwrap();
        for (i, write) in in_line.into_iter().enumerate() {
            assert_eq!(write.await.unwrap().unwrap(), i);
        }
        let late = db.run_writing(|_| Ok::<_, DbError>(())).await.unwrap_err();
        assert!(matches!(late, DbError::Pool(PoolError::Closed)), "{late:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Background work's statements are left out of the count; a request's are in it.
    #[tokio::test]
    async fn statements_count_requests_not_background_work() {
        let (dir, url) = scratch_database("counted");
        let db = Db::connect_with(&url, 2, Checkpoints::Background).unwrap();
        let select =
            |conn: &mut AnyConnection| conn.batch_execute("SELECT 1").map_err(DbError::from);
        let before = db.statements();
        db.for_background().run(select).await.unwrap();
        db.for_background().run_writing(select).await.unwrap();
        assert_eq!(db.statements(), before);
        db.run(select).await.unwrap();
        db.run_writing(select).await.unwrap();
        assert_eq!(db.statements(), before + 2);
        db.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A write that holds the line for `held` (as a long transaction would), in a task of
    /// its own.
    fn holding_the_line(db: &Db, held: Duration) -> tokio::task::JoinHandle<Result<(), DbError>> {
        let db = db.clone();
        tokio::spawn(async move {
            db.write(move |_| {
                std::thread::sleep(held);
                Ok::<_, DbError>(())
            })
            .await
        })
    }

    /// `rows` commits of a page or so each.
    fn write_rows(conn: &mut AnyConnection, rows: usize) {
        conn.batch_execute("CREATE TABLE IF NOT EXISTS t (x TEXT)")
            .unwrap();
        for _ in 0..rows {
            conn.batch_execute(&format!("INSERT INTO t VALUES ('{}')", "x".repeat(3000)))
                .unwrap();
        }
    }

    #[test]
    fn sqlite_paths_are_read_from_urls() {
        assert_eq!(sqlite_path("sqlite://data/t.db"), "data/t.db");
        assert_eq!(sqlite_path("file:data/t.db?mode=rwc"), "data/t.db");
        assert_eq!(sqlite_path("data/t.db"), "data/t.db");
    }
}

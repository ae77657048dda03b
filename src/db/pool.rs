//! The connection pool: deadpool's managed pool, driven so that it never works in the
//! background.
//!
//! r2d2, which we used first, opens every connection on threads of its own and, when
//! opening fails, retries there for as long as the pool lives. A libpq connection being
//! opened on such a thread while the process exits crashes it (SIGSEGV in OpenSSL's exit
//! handlers), and a pool whose database has gone away keeps retrying forever.
//!
//! deadpool's pool is a semaphore and a queue: it starts no thread and no task. Here its
//! [`Manager`] opens a connection synchronously inside `create`, and [`Pool::get`] polls
//! deadpool's future on the calling thread — always a blocking-pool thread or a
//! command-line thread that waits for the answer — parking the thread while it waits for a
//! free place. So a connection is opened, checked and closed only on a thread that asked,
//! and when nobody is waiting, no connection work is going on. (deadpool-sync and
//! deadpool-diesel open and close connections in `spawn_blocking` tasks, which go on after
//! the waiter gave up and during exit: exactly what this avoids.) The wait is timed here
//! rather than by deadpool, which would need an async runtime's timer; the future is only
//! ever pending on the semaphore, so giving it up never abandons a half-open connection.
//!
//! Invariants:
//! - At most `max_size` connections exist, counting those being opened.
//! - An idle connection is reused newest first; one idle for longer than [`RECHECK_AFTER`] is
//!   checked with `SELECT 1` before reuse (the server may have restarted or closed it), and
//!   one idle for longer than [`CLOSE_AFTER`] is closed, so a quiet instance gives its
//!   PostgreSQL backends back.
//! - A connection left inside a transaction or with a broken transaction manager is closed,
//!   never handed out again.
//! - After [`Pool::close`] nothing is handed out and every connection given back is closed.
//!   The owner closes the pool before the process exits: a libpq connection closed on a
//!   worker thread while `exit` runs OpenSSL's clean-up would crash the process.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, Object, PoolConfig, QueueMode, RecycleError, Timeouts};
use diesel::Connection;
use diesel::connection::{SimpleConnection, TransactionManager};

use super::AnyConnection;

/// An idle connection older than this is checked before reuse.
const RECHECK_AFTER: Duration = Duration::from_secs(30);
/// An idle connection older than this is closed instead of reused.
const CLOSE_AFTER: Duration = Duration::from_secs(10 * 60);

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("every database connection stayed busy for {0:?}")]
    Timeout(Duration),
    #[error("could not open a database connection: {0}")]
    Connect(#[source] anyhow::Error),
    #[error("the database connections were closed for shut-down")]
    Closed,
}

type Opener = dyn Fn() -> anyhow::Result<AnyConnection> + Send + Sync;

/// A connection as the pool keeps it: with the time it was last given back, which is what
/// the idle rules count from (deadpool's own metrics count from the last checkout). Boxed:
/// deadpool moves its entries several times per checkout, and a connection is large.
pub struct Pooled {
    conn: Box<AnyConnection>,
    given_back: Instant,
}

/// Opens and checks connections for deadpool, on the thread that polls it.
pub struct Manager {
    open: Box<Opener>,
}

impl managed::Manager for Manager {
    type Type = Pooled;
    type Error = anyhow::Error;

    async fn create(&self) -> anyhow::Result<Pooled> {
        Ok(Pooled {
            conn: Box::new((self.open)()?),
            given_back: Instant::now(),
        })
    }

    async fn recycle(
        &self,
        pooled: &mut Pooled,
        _: &Metrics,
    ) -> managed::RecycleResult<anyhow::Error> {
        let idle = pooled.given_back.elapsed();
        if idle > CLOSE_AFTER {
            return Err(RecycleError::message("idle for too long"));
        }
        if idle > RECHECK_AFTER {
            pooled
                .conn
                .batch_execute("SELECT 1")
                .map_err(|e| RecycleError::Backend(e.into()))?;
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct Pool {
    inner: managed::Pool<Manager>,
    wait: Duration,
}

impl Pool {
    /// A pool of at most `max_size` connections made by `open`; a caller waits at most
    /// `wait` for one to be free.
    pub fn new(
        max_size: usize,
        wait: Duration,
        open: impl Fn() -> anyhow::Result<AnyConnection> + Send + Sync + 'static,
    ) -> anyhow::Result<Pool> {
        let config = PoolConfig {
            max_size: max_size.max(1),
            // None: deadpool would need a runtime's timer; `get` times the wait itself.
            timeouts: Timeouts::new(),
            queue_mode: QueueMode::Lifo,
        };
        let inner = managed::Pool::builder(Manager {
            open: Box::new(open),
        })
        .config(config)
        .build()
        // deadpool refuses to build only a pool with timeouts and no runtime.
        .map_err(|e| anyhow::anyhow!("the connection pool could not be made: {e}"))?;
        Ok(Pool { inner, wait })
    }

    /// A connection: an idle one if there is one, else a new one if the limit allows, else
    /// the first one given back within the wait.
    pub fn get(&self) -> Result<PooledConnection, PoolError> {
        match wait_for(self.inner.get(), self.wait) {
            None | Some(Err(managed::PoolError::Timeout(_))) => Err(PoolError::Timeout(self.wait)),
            Some(Ok(conn)) => Ok(PooledConnection {
                conn: Some(conn),
                dead: false,
            }),
            Some(Err(managed::PoolError::Closed)) => Err(PoolError::Closed),
            Some(Err(managed::PoolError::Backend(e))) => Err(PoolError::Connect(e)),
            Some(Err(other)) => Err(PoolError::Connect(anyhow::anyhow!("{other}"))),
        }
    }

    /// Connections that exist now (idle or in use), for tests and diagnostics.
    pub fn size(&self) -> usize {
        self.inner.status().size
    }

    /// Closes every idle connection now, on this thread, and every busy one as it is given
    /// back; wakes and refuses every waiter.
    pub fn close(&self) {
        self.inner.close();
    }
}

/// Polls `future` on this thread until it is ready or `wait` has passed, parking the thread
/// in between (deadpool wakes it when a connection is given back).
fn wait_for<F: Future>(future: F, wait: Duration) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let deadline = Instant::now() + wait;
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        // Woken early (or spuriously), the loop polls again.
        std::thread::park_timeout(left);
    }
}

/// A checked-out connection; given back to the pool when dropped.
pub struct PooledConnection {
    conn: Option<Object<Manager>>,
    /// Closed instead of given back (it failed a check).
    dead: bool,
}

impl PooledConnection {
    /// After a statement failed: checks that the connection still answers, and if it does
    /// not (the server restarted, or ended it), closes it instead of giving it back, so the
    /// pool opens a fresh one when the database is back. Without this, a dead connection
    /// would be handed out again and again, failing every request it met.
    pub fn check_after_failure(&mut self) {
        if let Some(pooled) = self.conn.as_mut()
            && pooled.conn.batch_execute("SELECT 1").is_err()
        {
            self.dead = true;
        }
    }
}

impl Deref for PooledConnection {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        // Only `drop` takes the connection out.
        &self.conn.as_ref().unwrap_or_else(|| unreachable!()).conn
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn.as_mut().unwrap_or_else(|| unreachable!()).conn
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(mut pooled) = self.conn.take() else {
            return;
        };
        let broken = self.dead
            || <AnyConnection as Connection>::TransactionManager::is_broken_transaction_manager(
                &mut pooled.conn,
            );
        if broken {
            // Out of the pool (its place freed), closed here.
            drop(Object::take(pooled));
        } else {
            pooled.given_back = Instant::now();
            // Back to the pool; or closed here, if the pool was closed.
            drop(pooled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::Connection;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting_pool(max: usize, wait: Duration) -> (Pool, Arc<AtomicUsize>) {
        let opened = Arc::new(AtomicUsize::new(0));
        let counter = opened.clone();
        let pool = Pool::new(max, wait, move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(AnyConnection::Sqlite(diesel::SqliteConnection::establish(
                ":memory:",
            )?))
        })
        .unwrap();
        (pool, opened)
    }

    #[test]
    fn a_given_back_connection_is_reused() {
        let (pool, opened) = counting_pool(2, Duration::from_secs(1));
        drop(pool.get().unwrap());
        drop(pool.get().unwrap());
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        assert_eq!(pool.size(), 1);
    }

    #[test]
    fn no_more_than_the_limit_exist_and_a_waiter_gets_the_next_free_one() {
        let (pool, opened) = counting_pool(2, Duration::from_secs(5));
        let a = pool.get().unwrap();
        let _b = pool.get().unwrap();
        let waiter = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.get().map(|_| ()))
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(a);
        waiter.join().unwrap().unwrap();
        assert_eq!(opened.load(Ordering::SeqCst), 2);
        assert_eq!(pool.size(), 2);
    }

    #[test]
    fn waiting_ends_with_a_timeout_error() {
        let (pool, _) = counting_pool(1, Duration::from_millis(20));
        let _held = pool.get().unwrap();
        assert!(matches!(pool.get(), Err(PoolError::Timeout(_))));
    }

    #[test]
    fn a_waiter_is_refused_as_soon_as_the_pool_closes() {
        let (pool, _) = counting_pool(1, Duration::from_secs(10));
        let _held = pool.get().unwrap();
        let waiter = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                (pool.get().map(|_| ()), started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        pool.close();
        let (got, waited) = waiter.join().unwrap();
        assert!(matches!(got, Err(PoolError::Closed)));
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    }

    #[test]
    fn a_failed_open_frees_its_place_and_is_not_retried_in_the_background() {
        let tries = Arc::new(AtomicUsize::new(0));
        let counter = tries.clone();
        let pool = Pool::new(1, Duration::from_millis(20), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Err(anyhow::anyhow!("refused"))
        })
        .unwrap();
        assert!(matches!(pool.get(), Err(PoolError::Connect(_))));
        assert!(matches!(pool.get(), Err(PoolError::Connect(_))));
        assert_eq!(pool.size(), 0);
        // r2d2 kept retrying on its own threads; nothing may happen while nobody asks.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(tries.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn closing_closes_idle_connections_at_once_and_busy_ones_when_given_back() {
        let (pool, _) = counting_pool(2, Duration::from_secs(1));
        let busy = pool.get().unwrap();
        drop(pool.get().unwrap());
        assert_eq!(pool.size(), 2);
        pool.close();
        assert_eq!(pool.size(), 1);
        assert!(matches!(pool.get(), Err(PoolError::Closed)));
        drop(busy);
        assert_eq!(pool.size(), 0);
    }

    #[test]
    fn a_connection_left_in_a_transaction_is_closed_not_reused() {
        let (pool, opened) = counting_pool(1, Duration::from_secs(1));
        {
            let mut conn = pool.get().unwrap();
            use diesel::connection::{AnsiTransactionManager, TransactionManager};
            let AnyConnection::Sqlite(c) = &mut *conn else {
                unreachable!()
            };
            AnsiTransactionManager::begin_transaction(c).unwrap();
        }
        assert_eq!(pool.size(), 0);
        drop(pool.get().unwrap());
        assert_eq!(opened.load(Ordering::SeqCst), 2);
    }
}

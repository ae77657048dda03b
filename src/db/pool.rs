//! A connection pool that never works in the background.
//!
//! r2d2, which this replaces, opens every connection on threads of its own and, when opening
//! fails, retries there for as long as the pool lives. A libpq connection being opened on such
//! a thread while the process exits crashes it (SIGSEGV in OpenSSL's exit handlers), and a
//! pool whose database has gone away keeps retrying forever. Here a connection is opened on
//! the thread that asked for it — always a blocking-pool thread or a command-line thread that
//! waits for the answer — so when nobody is waiting, no connection work is going on.
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

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::r2d2::R2D2Connection;

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

#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    open: Box<Opener>,
    max_size: usize,
    wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    idle: Vec<Idle>,
    /// Connections that exist or are being opened, idle or not.
    count: usize,
    closed: bool,
}

struct Idle {
    conn: AnyConnection,
    since: Instant,
}

impl Pool {
    /// A pool of at most `max_size` connections made by `open`; a caller waits at most
    /// `wait` for one to be free.
    pub fn new(
        max_size: usize,
        wait: Duration,
        open: impl Fn() -> anyhow::Result<AnyConnection> + Send + Sync + 'static,
    ) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                open: Box::new(open),
                max_size: max_size.max(1),
                wait,
                state: Mutex::new(State::default()),
                freed: Condvar::new(),
            }),
        }
    }

    /// A connection: an idle one if there is one, else a new one if the limit allows, else
    /// the first one given back within the wait.
    pub fn get(&self) -> Result<PooledConnection, PoolError> {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.wait;
        let mut state = shared.lock();
        loop {
            if state.closed {
                return Err(PoolError::Closed);
            }
            if let Some(idle) = state.idle.pop() {
                drop(state);
                if let Some(conn) = shared.reusable(idle) {
                    return Ok(self.hand_out(conn));
                }
                state = shared.lock();
                state.count -= 1;
                continue;
            }
            if state.count < shared.max_size {
                state.count += 1;
                drop(state);
                return match (shared.open)() {
                    Ok(conn) => Ok(self.hand_out(conn)),
                    Err(e) => {
                        shared.forget_one();
                        Err(PoolError::Connect(e))
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PoolError::Timeout(shared.wait));
            }
            state = shared
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn hand_out(&self, conn: AnyConnection) -> PooledConnection {
        PooledConnection {
            conn: Some(conn),
            shared: self.shared.clone(),
        }
    }

    /// Connections that exist now (idle or in use), for tests and diagnostics.
    pub fn size(&self) -> usize {
        self.shared.lock().count
    }

    /// Closes every idle connection now, on this thread, and every busy one as it is given
    /// back; wakes and refuses every waiter.
    pub fn close(&self) {
        let idle = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.count -= state.idle.len();
            std::mem::take(&mut state.idle)
        };
        drop(idle);
        self.shared.freed.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two plain fields updated together; a panic elsewhere cannot leave
        // them half-changed, so a poisoned lock is still sound to use.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reusable(&self, idle: Idle) -> Option<AnyConnection> {
        let Idle { mut conn, since } = idle;
        let age = since.elapsed();
        if age > CLOSE_AFTER {
            return None;
        }
        if age > RECHECK_AFTER && conn.batch_execute("SELECT 1").is_err() {
            return None;
        }
        Some(conn)
    }

    /// A connection stopped existing: make room for another and wake one waiter.
    fn forget_one(&self) {
        self.lock().count -= 1;
        self.freed.notify_one();
    }
}

/// A checked-out connection; given back to the pool when dropped.
pub struct PooledConnection {
    conn: Option<AnyConnection>,
    shared: Arc<Shared>,
}

impl Deref for PooledConnection {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        // Only `drop` takes the connection out.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let mut state = self.shared.lock();
        if state.closed || conn.is_broken() {
            state.count -= 1;
            drop(state);
            drop(conn);
        } else {
            state.idle.push(Idle {
                conn,
                since: Instant::now(),
            });
            drop(state);
        }
        self.shared.freed.notify_one();
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
        });
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
    fn a_failed_open_frees_its_place_and_is_not_retried_in_the_background() {
        let tries = Arc::new(AtomicUsize::new(0));
        let counter = tries.clone();
        let pool = Pool::new(1, Duration::from_millis(20), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Err(anyhow::anyhow!("refused"))
        });
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

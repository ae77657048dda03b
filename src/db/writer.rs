//! SQLite's writers of this process, one after another on one thread.
//!
//! Invariants:
//! - Writes run in order of arrival, each whole before the next starts, on the line's own
//!   thread: two writes sent through the line never meet at SQLite's lock. (Writes that
//!   do not go through it, as `Db::run`'s rare ones, still meet SQLite's own wait.)
//! - The thread goes from one write to the next without waking anyone: with a turn handed
//!   from task to task instead, each hand-over waited for the next task's worker and then
//!   for a blocking thread, both while holding the turn (docs/decisions.md, "One writer
//!   thread").
//! - A write not started within its wait is given up and never runs: its caller hears the
//!   database is unavailable. So is one whose caller went away (the request was dropped)
//!   before it started. One that started runs to its end, and its caller waits for it.
//! - A write that panics fails its caller (as the blocking pool's would); the line goes on.
//! - Stopping the line (at shut-down) lets the writes already in it finish first, within a
//!   bound; a write sent after that hears the database is closed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::pool::{Pool, PoolError};
use super::{AnyConnection, DbError};

type Job = Box<dyn FnOnce() + Send>;

enum Message {
    Write(Job),
    Stop,
}

/// How long stopping the line waits for the writes already in it.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// A write's progress, claimed once by either side: the line starts it, or its caller
/// gives up on it.
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const GIVEN_UP: u8 = 2;

/// The line's entrance; its thread ends when the last clone is dropped.
#[derive(Clone)]
pub(super) struct WriterLine {
    jobs: mpsc::Sender<Message>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl WriterLine {
    pub(super) fn start() -> std::io::Result<WriterLine> {
        let (jobs, line) = mpsc::channel::<Message>();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                for message in line {
                    let Message::Write(job) = message else { break };
                    // A job catches its write's panic; this catches anything else (a
                    // value whose drop panics), so that the line outlives it.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })?;
        Ok(WriterLine {
            jobs,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Stops the line once the writes already in it are done, waiting for them at most
    /// [`STOP_WAIT`]; for shut-down, before the pool closes.
    pub(super) fn stop(&self) {
        let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        if self.jobs.send(Message::Stop).is_err() {
            return;
        }
        let since = Instant::now();
        while !thread.is_finished() && since.elapsed() < STOP_WAIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!("database writes were still running at shut-down");
        }
    }

    /// Runs `f` with a connection from `pool` once the writes before it are done, if it
    /// can start within `wait`.
    pub(super) async fn run<T, E, F>(&self, pool: &Pool, wait: Duration, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let claim = Arc::new(AtomicU8::new(QUEUED));
        let (done, mut result) = tokio::sync::oneshot::channel();
        let job: Job = {
            let (claim, pool) = (Arc::clone(&claim), pool.clone());
            Box::new(move || {
                if !take(&claim, STARTED) {
                    return;
                }
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let mut conn = pool.get().map_err(DbError::from)?;
                    let result = f(&mut conn);
                    if result.is_err() {
                        conn.check_after_failure();
                    }
                    result
                }));
                // Err: the caller went away meanwhile, and nobody is left to tell.
                let _ = done.send(outcome.unwrap_or_else(|_| Err(panicked().into())));
            })
        };
        // Err: the line was stopped (shut-down), as the pool is about to be.
        self.jobs
            .send(Message::Write(job))
            .map_err(|_| DbError::Pool(PoolError::Closed))?;
        // Dropped before the write started (the request went away): it never starts.
        let _leaving = GiveUpOnDrop(Arc::clone(&claim));
        match tokio::time::timeout(wait, &mut result).await {
            Ok(outcome) => outcome.map_err(|_| panicked())?,
            Err(_) if take(&claim, GIVEN_UP) => Err(DbError::WritersBusy(wait).into()),
            // It started just now: it runs to its end, and so does the wait for it.
            Err(_) => result.await.map_err(|_| panicked())?,
        }
    }
}

/// Moves a queued write to `to`; false if the other side claimed it first.
fn take(claim: &AtomicU8, to: u8) -> bool {
    claim
        .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

struct GiveUpOnDrop(Arc<AtomicU8>);

impl Drop for GiveUpOnDrop {
    fn drop(&mut self) {
        take(&self.0, GIVEN_UP);
    }
}

/// What a write that panicked answers, as the blocking pool does for a task that panicked.
fn panicked() -> DbError {
    DbError::WritePanicked
}

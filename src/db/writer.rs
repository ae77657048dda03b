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
//!   bound; a write sent after that, or left in it, hears the database is closed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::pool::{Pool, PoolError};
use super::{AnyConnection, DbError, with_connection};

type Job = Box<dyn FnOnce() + Send>;

enum Message {
    Write(Job),
    /// Stop after the writes before this one; the sender hears when the line is done.
    Stop(mpsc::Sender<()>),
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
}

impl WriterLine {
    pub(super) fn start() -> std::io::Result<WriterLine> {
        let (jobs, line) = mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                for message in line {
                    match message {
                        // A job catches its write's panic; this catches anything else (a
                        // value whose drop panics), so that the line outlives it.
                        Message::Write(job) => drop(catch_unwind(AssertUnwindSafe(job))),
                        Message::Stop(done) => {
                            // Err: the one stopping no longer waits.
                            let _ = done.send(());
                            break;
                        }
                    }
                }
            })?;
        Ok(WriterLine { jobs })
    }

    /// Stops the line once the writes already in it are done, waiting for them at most
    /// [`STOP_WAIT`]; for shut-down, before the pool closes.
    pub(super) fn stop(&self) {
        let (done, line_done) = mpsc::channel();
        // Err: stopped already.
        if self.jobs.send(Message::Stop(done)).is_err() {
            return;
        }
        if let Err(mpsc::RecvTimeoutError::Timeout) = line_done.recv_timeout(STOP_WAIT) {
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
                let outcome = catch_unwind(AssertUnwindSafe(|| with_connection(&pool, f)));
                // Err: the caller went away meanwhile, and nobody is left to tell.
                let _ = done.send(outcome.unwrap_or_else(|_| Err(DbError::WritePanicked.into())));
            })
        };
        // Err (here, or no answer below): the line was stopped at shut-down, as the pool
        // is about to be, before this write's turn.
        let closed = || DbError::Pool(PoolError::Closed);
        self.jobs.send(Message::Write(job)).map_err(|_| closed())?;
        // Dropped before the write started (the request went away): it never starts.
        let _leaving = GiveUpOnDrop(Arc::clone(&claim));
        match tokio::time::timeout(wait, &mut result).await {
            Ok(outcome) => outcome.map_err(|_| closed())?,
            Err(_) if take(&claim, GIVEN_UP) => Err(DbError::WritersBusy(wait).into()),
            // It started just now: it runs to its end, and so does the wait for it.
            Err(_) => result.await.map_err(|_| closed())?,
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

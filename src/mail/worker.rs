//! Sending what is due: [`dispatch_due`] makes one pass over the outbox; the [`Worker`]
//! makes a pass every `MAIL_POLL_INTERVAL_MS` until it is told to stop. Tests call
//! `dispatch_due` themselves, with the time they want, instead of waiting for a worker.

use tokio::sync::watch;

use super::outbox::{self, Attempt, Row};
use super::transport::{Failure, Sender};
use crate::db::{Db, DbError, PoolError};

/// Rows taken per query; a pass keeps going until nothing is due.
const BATCH: i64 = 20;

/// Sends every mail that is due at `now` (Unix seconds) through `sender`, each row claimed
/// first (see `outbox`), and records each attempt. Returns how many were delivered.
///
/// `now` is the time the pass starts at; the pass's clock runs on from it, so a claim made
/// late in a long pass still lasts its full time. The worker passes the system time; a test
/// may pass a later one to reach a retry without waiting for it.
pub async fn dispatch_due(db: &Db, sender: &Sender, now: i64) -> Result<usize, DbError> {
    dispatch(db, sender, now, &|| false).await
}

/// [`dispatch_due`], starting no new send once `stopping` says so.
async fn dispatch(
    db: &Db,
    sender: &Sender,
    now: i64,
    stopping: &(dyn Fn() -> bool + Sync),
) -> Result<usize, DbError> {
    let skew = now - crate::db::now();
    let clock = move || crate::db::now() + skew;
    let mut delivered = 0;
    loop {
        let at = clock();
        let due = db.run(move |conn| outbox::due(conn, at, BATCH)).await?;
        let full = due.len() as i64 == BATCH;
        for id in due {
            if stopping() {
                return Ok(delivered);
            }
            let at = clock();
            let Some((row, lease)) = db
                .run_writing(move |conn| outbox::claim(conn, &id, at))
                .await?
            else {
                continue; // another instance has it
            };
            let outcome = sender.send(&row).await;
            if outcome.is_ok() {
                delivered += 1;
            }
            record(db, sender, row, lease, outcome, clock()).await?;
        }
        if !full {
            return Ok(delivered);
        }
    }
}

/// What this attempt leaves the row as.
enum Then {
    Sent,
    GivenUp(String),
    Retry { delay: i64, error: String },
}

async fn record(
    db: &Db,
    sender: &Sender,
    row: Row,
    lease: i64,
    outcome: Result<(), Failure>,
    now: i64,
) -> Result<(), DbError> {
    let settings = &sender.settings;
    let attempts = row.attempts + 1;
    let then = match outcome {
        Ok(()) => Then::Sent,
        Err(f) if f.permanent || attempts >= settings.max_attempts => Then::GivenUp(f.message),
        Err(f) => Then::Retry {
            delay: settings.retry_delay(attempts),
            error: f.message,
        },
    };
    let attempt = match &then {
        Then::Sent => Attempt {
            attempts,
            sent_at: Some(now),
            failed_at: None,
            next_attempt_at: now,
            last_error: None,
        },
        Then::GivenUp(error) => Attempt {
            attempts,
            sent_at: None,
            failed_at: Some(now),
            next_attempt_at: now,
            last_error: Some(error.clone()),
        },
        Then::Retry { delay, error } => Attempt {
            attempts,
            sent_at: None,
            failed_at: None,
            next_attempt_at: now + delay,
            last_error: Some(error.clone()),
        },
    };
    let id = row.id.clone();
    let done = !matches!(then, Then::Retry { .. });
    let forget_body = done && super::carries_link(&row.kind);
    db.run_writing(move |conn| {
        outbox::record(conn, &id, lease, attempt)?;
        if forget_body {
            // The body holds a live link: once it is sent (or given up on), nothing needs
            // it, and the token is kept nowhere but in the reader's mailbox.
            crate::db::models::MailOutbox::forget_body(conn, &id)?;
        }
        Ok::<_, DbError>(())
    })
    .await?;
    let kind = &row.kind;
    match then {
        Then::Sent => tracing::info!(mail = %row.id, %kind, attempts, "security email sent"),
        Then::GivenUp(error) => tracing::error!(
            mail = %row.id,
            %kind,
            attempts,
            %error,
            "gave up on a security email; it stays in mail_outbox marked failed"
        ),
        Then::Retry { delay, error } => tracing::warn!(
            mail = %row.id,
            %kind,
            attempts,
            retry_in_seconds = delay,
            %error,
            "a security email was not delivered; it will be retried"
        ),
    }
    Ok(())
}

/// The polling worker, started by `Application`.
pub struct Worker {
    sender: Sender,
}

impl Worker {
    pub fn new(sender: Sender) -> Worker {
        Worker { sender }
    }

    /// Sends due mail until `stop` turns true (or its sender is gone), then returns
    /// without starting another send.
    pub async fn run(self, db: Db, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let stopping = {
                let stop = stop.clone();
                move || *stop.borrow()
            };
            match dispatch(&db, &self.sender, crate::db::now(), &stopping).await {
                Ok(_) => {}
                // Shut-down closed the pool under us: nothing more to do.
                Err(DbError::Pool(PoolError::Closed)) => return,
                Err(e) => tracing::warn!(error = %e, "the mail outbox could not be read"),
            }
            tokio::select! {
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
                () = tokio::time::sleep(self.sender.settings.poll_interval) => {}
            }
        }
    }
}

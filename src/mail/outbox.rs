//! The outbox as the mail module uses it: how long a claim lasts and how long rows are
//! kept, on top of the `mail_outbox` queries (`db::models::MailOutbox`, where the claim's
//! invariant is stated). Every time is passed in, so the worker and the tests decide what
//! "now" is.

use super::message::Rendered;
use crate::db::models::{MailOutbox, NewOutboxMail};
use crate::db::{AnyConnection, DbError};

pub(super) use crate::db::models::{OutboxAttempt as Attempt, OutboxMail as Row};

/// How long a claimed row belongs to the instance that claimed it.
pub const CLAIM_SECONDS: i64 = 5 * 60;
/// How long sent and given-up rows are kept: they hold personal data (addresses, reasons),
/// and the audit log is the lasting record.
const KEEP_SENT_SECONDS: i64 = 7 * 24 * 3600;
const KEEP_FAILED_SECONDS: i64 = 30 * 24 * 3600;

/// Stores a rendered mail, due at once.
pub(super) fn insert(
    conn: &mut AnyConnection,
    id: &str,
    kind: &str,
    recipient: &str,
    mail: Rendered,
    now: i64,
) -> diesel::QueryResult<()> {
    let new = NewOutboxMail {
        id,
        kind,
        recipient,
        subject: mail.subject,
        body_text: mail.text,
        body_html: mail.html,
    };
    MailOutbox::insert(conn, new, now)
}

/// Up to `limit` ids of pending, due, unclaimed rows, the longest waiting first.
pub(super) fn due(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<String>, DbError> {
    Ok(MailOutbox::due(conn, now, limit)?)
}

/// Claims the row for this worker for [`CLAIM_SECONDS`]; returns it with the claim's
/// expiry, or `None` if another instance has it (or it is no longer due).
pub(super) fn claim(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
) -> Result<Option<(Row, i64)>, DbError> {
    let lease = now + CLAIM_SECONDS;
    Ok(MailOutbox::claim(conn, id, now, lease)?.map(|row| (row, lease)))
}

/// Records `attempt` on row `id` while this worker's claim (`lease`) holds.
pub(super) fn record(
    conn: &mut AnyConnection,
    id: &str,
    lease: i64,
    attempt: Attempt,
) -> Result<(), DbError> {
    Ok(MailOutbox::record(conn, id, lease, attempt)?)
}

/// Deletes up to `limit` sent and given-up rows past their keeping time (the sweeper's
/// part of the outbox).
pub fn prune(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<usize, DbError> {
    Ok(MailOutbox::prune(
        conn,
        now - KEEP_SENT_SECONDS,
        now - KEEP_FAILED_SECONDS,
        limit,
    )?)
}

//! The `mail_outbox` queries: store a rendered mail, find what is due, claim one row, record
//! an attempt, prune old rows. Every time is passed in, so the worker and the tests decide
//! what "now" is.
//!
//! Invariant: a row is claimed by one atomic `UPDATE … WHERE claimed_until IS NULL OR
//! claimed_until < now`, and an attempt is recorded only while that claim holds
//! (`claimed_until = lease`), so of several instances exactly one sends a given mail.

use diesel::prelude::*;

use super::message::Rendered;
use crate::db::schema::mail_outbox;
use crate::db::{AnyConnection, DbError};

/// How long a claimed row belongs to the instance that claimed it.
pub const CLAIM_SECONDS: i64 = 5 * 60;
/// How long sent and given-up rows are kept: they hold personal data (addresses, reasons),
/// and the audit log is the lasting record.
const KEEP_SENT_SECONDS: i64 = 7 * 24 * 3600;
const KEEP_FAILED_SECONDS: i64 = 30 * 24 * 3600;

/// What sending needs of a row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mail_outbox)]
pub(super) struct Row {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub created_at: i64,
    pub attempts: i64,
}

/// Stores a rendered mail, due at once.
pub(super) fn insert(
    conn: &mut AnyConnection,
    id: &str,
    kind: &str,
    recipient: &str,
    mail: Rendered,
    now: i64,
) -> QueryResult<()> {
    diesel::insert_into(mail_outbox::table)
        .values((
            mail_outbox::id.eq(id),
            mail_outbox::kind.eq(kind),
            mail_outbox::recipient.eq(recipient),
            mail_outbox::subject.eq(mail.subject),
            mail_outbox::body_text.eq(mail.text),
            mail_outbox::body_html.eq(mail.html),
            mail_outbox::created_at.eq(now),
            mail_outbox::next_attempt_at.eq(now),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Up to `limit` ids of pending, due, unclaimed rows, the longest waiting first.
pub(super) fn due(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<String>, DbError> {
    Ok(mail_outbox::table
        .filter(mail_outbox::sent_at.is_null())
        .filter(mail_outbox::failed_at.is_null())
        .filter(mail_outbox::next_attempt_at.le(now))
        .filter(
            mail_outbox::claimed_until
                .is_null()
                .or(mail_outbox::claimed_until.lt(now)),
        )
        .order((mail_outbox::next_attempt_at, mail_outbox::id))
        .select(mail_outbox::id)
        .limit(limit)
        .load::<String>(conn)?)
}

/// Claims the row for this worker if it is still pending, due and unclaimed: of several
/// instances, exactly one gets it. Returns it with the claim's expiry.
pub(super) fn claim(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
) -> Result<Option<(Row, i64)>, DbError> {
    let lease = now + CLAIM_SECONDS;
    let claimed = diesel::update(
        mail_outbox::table
            .filter(mail_outbox::id.eq(id))
            .filter(mail_outbox::sent_at.is_null())
            .filter(mail_outbox::failed_at.is_null())
            .filter(mail_outbox::next_attempt_at.le(now))
            .filter(
                mail_outbox::claimed_until
                    .is_null()
                    .or(mail_outbox::claimed_until.lt(now)),
            ),
    )
    .set(mail_outbox::claimed_until.eq(lease))
    .execute(conn)?;
    if claimed != 1 {
        return Ok(None);
    }
    let row = mail_outbox::table
        .find(id)
        .select(Row::as_select())
        .first(conn)?;
    Ok(Some((row, lease)))
}

/// What one attempt leaves a row as. A pending row has neither time set, so setting the
/// one that applies (and NULL for the other) is exact.
pub(super) struct Attempt {
    pub attempts: i64,
    pub sent_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

/// Records `attempt` on row `id`, and releases it, while this worker's claim (`lease`)
/// holds; a lapsed claim changes nothing.
pub(super) fn record(
    conn: &mut AnyConnection,
    id: &str,
    lease: i64,
    attempt: Attempt,
) -> Result<(), DbError> {
    diesel::update(
        mail_outbox::table
            .filter(mail_outbox::id.eq(id))
            .filter(mail_outbox::claimed_until.eq(Some(lease))),
    )
    .set((
        mail_outbox::sent_at.eq(attempt.sent_at),
        mail_outbox::failed_at.eq(attempt.failed_at),
        mail_outbox::next_attempt_at.eq(attempt.next_attempt_at),
        mail_outbox::attempts.eq(attempt.attempts),
        mail_outbox::claimed_until.eq(None::<i64>),
        mail_outbox::last_error.eq(attempt.last_error),
    ))
    .execute(conn)?;
    Ok(())
}

/// Deletes sent and given-up rows past their keeping time.
pub(super) fn prune(conn: &mut AnyConnection, now: i64) -> Result<usize, DbError> {
    let sent =
        diesel::delete(mail_outbox::table.filter(mail_outbox::sent_at.lt(now - KEEP_SENT_SECONDS)))
            .execute(conn)?;
    let failed = diesel::delete(
        mail_outbox::table.filter(mail_outbox::failed_at.lt(now - KEEP_FAILED_SECONDS)),
    )
    .execute(conn)?;
    Ok(sent + failed)
}

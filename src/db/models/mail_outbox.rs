//! `mail_outbox`: rendered security emails waiting to be sent, and the claim that lets
//! exactly one instance send each (the mail module decides what to send and when; every
//! time and lease is passed in).
//!
//! Invariant: a row is claimed by one atomic `UPDATE … WHERE claimed_until IS NULL OR
//! claimed_until < now`, and an attempt is recorded only while that claim holds
//! (`claimed_until = lease`), so of several instances exactly one sends a given mail.

use diesel::prelude::*;

use crate::db::AnyConnection;
use crate::db::schema::mail_outbox;

/// What sending needs of a row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mail_outbox)]
pub struct OutboxMail {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub created_at: i64,
    pub attempts: i64,
}

/// A rendered mail to store.
pub struct NewOutboxMail<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub recipient: &'a str,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
}

/// What one attempt leaves a row as. A pending row has neither time set, so setting the
/// one that applies (and NULL for the other) is exact.
pub struct OutboxAttempt {
    pub attempts: i64,
    pub sent_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

pub struct MailOutbox;

impl MailOutbox {
    /// Stores a rendered mail, due at once.
    pub fn insert(conn: &mut AnyConnection, mail: NewOutboxMail<'_>, now: i64) -> QueryResult<()> {
        diesel::insert_into(mail_outbox::table)
            .values((
                mail_outbox::id.eq(mail.id),
                mail_outbox::kind.eq(mail.kind),
                mail_outbox::recipient.eq(mail.recipient),
                mail_outbox::subject.eq(mail.subject),
                mail_outbox::body_text.eq(mail.body_text),
                mail_outbox::body_html.eq(mail.body_html),
                mail_outbox::created_at.eq(now),
                mail_outbox::next_attempt_at.eq(now),
            ))
            .execute(conn)
            .map(|_| ())
    }

    /// Up to `limit` ids of pending, due, unclaimed rows, the longest waiting first.
    pub fn due(conn: &mut AnyConnection, now: i64, limit: i64) -> QueryResult<Vec<String>> {
        mail_outbox::table
            .filter(ready(now))
            .order((mail_outbox::next_attempt_at, mail_outbox::id))
            .select(mail_outbox::id)
            .limit(limit)
            .load::<String>(conn)
    }

    /// Claims row `id` until `lease` if it is still pending, due and unclaimed at `now`: of
    /// several instances, exactly one gets it.
    pub fn claim(
        conn: &mut AnyConnection,
        id: &str,
        now: i64,
        lease: i64,
    ) -> QueryResult<Option<OutboxMail>> {
        let claimed = diesel::update(
            mail_outbox::table
                .filter(mail_outbox::id.eq(id))
                .filter(ready(now)),
        )
        .set(mail_outbox::claimed_until.eq(lease))
        .execute(conn)?;
        if claimed != 1 {
            return Ok(None);
        }
        mail_outbox::table
            .find(id)
            .select(OutboxMail::as_select())
            .first(conn)
            .map(Some)
    }

    /// Blanks the bodies of row `id` once it is sent or given up on (a mail with a live
    /// link: see `mail::carries_link`); the row and its subject stay for operators.
    pub fn forget_body(conn: &mut AnyConnection, id: &str) -> QueryResult<()> {
        diesel::update(
            mail_outbox::table.filter(mail_outbox::id.eq(id)).filter(
                mail_outbox::sent_at
                    .is_not_null()
                    .or(mail_outbox::failed_at.is_not_null()),
            ),
        )
        .set((mail_outbox::body_text.eq(""), mail_outbox::body_html.eq("")))
        .execute(conn)
        .map(|_| ())
    }

    /// Records `attempt` on row `id`, and releases it, while the claim `lease` holds; a
    /// lapsed claim changes nothing.
    pub fn record(
        conn: &mut AnyConnection,
        id: &str,
        lease: i64,
        attempt: OutboxAttempt,
    ) -> QueryResult<()> {
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
        .execute(conn)
        .map(|_| ())
    }

    /// Deletes up to `limit` rows sent before `sent_before` or given up on before
    /// `failed_before`.
    pub fn prune(
        conn: &mut AnyConnection,
        sent_before: i64,
        failed_before: i64,
        limit: i64,
    ) -> QueryResult<usize> {
        super::delete_at_most!(conn, limit, mail_outbox.id, |dead| dead
            .field(mail_outbox::sent_at)
            .lt(sent_before)
            .or(dead.field(mail_outbox::failed_at).lt(failed_before)))
    }
}

/// A row that may be sent at `now`: pending (neither sent nor given up), due, and not held
/// by another instance's live claim.
#[diesel::dsl::auto_type]
fn ready(now: i64) -> _ {
    mail_outbox::sent_at
        .is_null()
        .and(mail_outbox::failed_at.is_null())
        .and(mail_outbox::next_attempt_at.le(now))
        .and(
            mail_outbox::claimed_until
                .is_null()
                .or(mail_outbox::claimed_until.lt(now)),
        )
}

//! Rows as stored, and every query over them: one file per table (or per table and the
//! tables that only exist with it), so that the SQL of a table is found, and changed, in
//! one place. Storage types stay here: what leaves this module for the auth code is
//! decrypted and parsed elsewhere (`auth::second_factor`).
//!
//! Every function takes a connection and returns `QueryResult`, so a database outage is an
//! error, never "not found".
//!
//! Lookups on every sign-in by a unique key use `get_result`, not `first`: `first` adds
//! `LIMIT ?`, and the bundled SQLite plans a bound LIMIT by its value, so it re-prepares
//! such a cached statement at every execution. A unique key needs no LIMIT.
//!
//! The statements of every sign-in run on the backend's own connection (`db::native!`), and
//! their `UPDATE`s and upserts are the fixed statements of `db::fixed`; both stay inside
//! `db`, called from here.

mod account;
mod app_secrets;
mod audit_events;
mod exemptions;
mod factors;
mod invites;
mod mail_outbox;
mod password_resets;
mod rate_limits;
mod recovery_codes;
mod security_keys;
mod sessions;
mod setup_tokens;
mod totp;
mod user;
mod workspace;

pub use account::{Account, AccountRecord};
pub use app_secrets::AppSecrets;
pub use audit_events::{AuditCursor, AuditEventRow, AuditEvents, AuditPage, NewAuditEvent};
pub use exemptions::{ExemptionRow, Exemptions};
pub use factors::{
    HasAuthenticator, HasSecondFactor, HasSecurityKey, has_authenticator, has_second_factor,
    has_security_key,
};
pub use invites::{Invite, Invites, NewInvite};
pub use mail_outbox::{MailOutbox, NewOutboxMail, OutboxAttempt, OutboxMail};
pub use password_resets::PasswordResets;
pub use rate_limits::{Charge, RateLimits, Refused};
pub use recovery_codes::RecoveryCodes;
pub use security_keys::{
    Ceremonies, CeremonyPurpose, NewSecurityKey, SecurityKeyRow, SecurityKeys, TakenCeremony,
};
pub use sessions::{SessionRow, Sessions};
pub use setup_tokens::SetupTokens;
pub use totp::{
    PendingEnrolment, Sealed, SealedRow, SealedSecrets, SealedTable, SignInCode, TotpCredential,
};
pub use user::{NewUser, User};
pub use workspace::Workspace;

use diesel::QueryResult;

/// Rows per multi-row `INSERT`: at most 11 columns each, so a statement binds at most 5,500
/// values, well under SQLite's limit (32,766) and PostgreSQL's (65,535).
const ROWS_PER_INSERT: usize = 500;

/// Deletes at most `$limit` rows of `$table` whose row, seen as `$dead`, matches `$dead_when`,
/// in one statement (`DELETE … WHERE $key IN (SELECT $key … WHERE … LIMIT ?)`): the
/// sweeper's bounded batches. diesel refuses a subselect of the table being deleted from
/// unless it is aliased, hence `$dead`; both backends accept the SQL.
macro_rules! delete_at_most {
    ($conn:expr, $limit:expr, $table:ident . $key:ident, |$dead:ident| $dead_when:expr) => {{
        let $dead = diesel::alias!($table as dead);
        let keys = $dead
            .filter($dead_when)
            .select($dead.field($table::$key))
            .limit($limit);
        diesel::delete($table::table.filter($table::$key.eq_any(keys))).execute($conn)
    }};
}
use delete_at_most;

/// A random id for a new row; an RNG failure aborts the statement like any other error.
fn new_row_id() -> QueryResult<String> {
    crate::db::new_id().map_err(|e| diesel::result::Error::QueryBuilderError(e.into()))
}

/// Whether `e` is a unique-constraint violation (e.g. an email already taken).
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

//! `totp_credentials` and `pending_enrolments`: a user's authenticator secret, enabled or
//! being set up (both sealed by `auth::secret_box`), and the replay rule on it.

use diesel::prelude::*;

use super::Charge;
use crate::db::fixed::{AcceptSignInCode, AcceptStep};
use crate::db::schema::{pending_enrolments, totp_credentials};
use crate::db::{AnyConnection, native};

/// A sealed secret as stored in a row: which key sealed it, and the ciphertext (base64).
/// `auth::secret_box` seals and opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub ciphertext: String,
}

/// What [`TotpCredential::accept_sign_in_at_once`] is given.
pub struct SignInCode<'a> {
    pub user_id: &'a str,
    /// The ciphertext of the secret the code was matched with: the step is accepted only
    /// while the row still holds it.
    pub sealed_secret: &'a str,
    /// The time step the code matched; `None` when it matched none (refused, after the
    /// same charge and checks).
    pub step: Option<i64>,
    /// Unix seconds.
    pub now: i64,
    /// The network's second-step bucket.
    pub bucket: Charge<'a>,
    pub now_ms: i64,
    /// `Limits::most_failures`.
    pub most_failures: i64,
    /// The audit rows to append, as `audit::rows_json` makes them.
    pub events: &'a str,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = totp_credentials)]
pub struct TotpCredential {
    pub user_id: String,
    pub secret_ciphertext: String,
    pub key_id: String,
    pub last_step: i64,
    pub enabled_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = pending_enrolments)]
pub struct PendingEnrolment {
    pub user_id: String,
    pub secret_ciphertext: String,
    pub key_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// SHA-256 of the enrolling session's nonce: the secret is that session's alone.
    pub session_binding: String,
}

impl TotpCredential {
    pub fn sealed(&self) -> Sealed {
        Sealed {
            key_id: self.key_id.clone(),
            ciphertext: self.secret_ciphertext.clone(),
        }
    }

    pub fn find(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Option<TotpCredential>> {
        // `as_select` is per backend: the query is built in each arm.
        native!(conn, |c| totp_credentials::table
            .find(user_id)
            .select(TotpCredential::as_select())
            .get_result(c)
            .optional())
    }

    /// PostgreSQL: a sign-in's second step with a code already matched to its step, in one
    /// statement that charges the network's bucket, checks the lock, applies the replay
    /// rule (to the secret the code was matched with), ends the failure streak, records the sign-in and appends the audit rows, or
    /// writes nothing (the `accept_sign_in_code` function; see its migration). `None` on
    /// SQLite, `Some(false)` when anything refused it.
    pub fn accept_sign_in_at_once(
        conn: &mut AnyConnection,
        code: SignInCode<'_>,
    ) -> QueryResult<Option<bool>> {
        let AnyConnection::Postgresql(c) = conn else {
            return Ok(None);
        };
        AcceptSignInCode {
            user_id: code.user_id,
            sealed_secret: code.sealed_secret,
            step: code.step,
            now: code.now,
            bucket_key: code.bucket.key,
            bucket_limit: code.bucket.limit,
            bucket_window_ms: code.bucket.window_ms,
            now_ms: code.now_ms,
            most_failures: code.most_failures,
            events: code.events,
        }
        .get_result(c)
        .map(Some)
    }

    /// The replay rule, atomically: records `step` as the last accepted one only if it is
    /// newer than every step accepted before. `false` means the code was used already
    /// (or an older one after a newer), by this request's twin or by another instance.
    pub fn accept_step(conn: &mut AnyConnection, user_id: &str, step: i64) -> QueryResult<bool> {
        let updated = native!(conn, |c| AcceptStep { user_id, step }.execute(c))?;
        Ok(updated == 1)
    }

    /// Enables 2FA from a confirmed enrolment. Fails (unique key) if already enabled.
    pub fn insert(
        conn: &mut AnyConnection,
        user_id: &str,
        sealed: &Sealed,
        step: i64,
        now: i64,
    ) -> QueryResult<()> {
        TotpCredential::insert_many(conn, &[(user_id, sealed)], step, now)
    }

    /// Inserts a credential for each user, all with `step` as their last accepted step.
    pub fn insert_many(
        conn: &mut AnyConnection,
        credentials: &[(&str, &Sealed)],
        step: i64,
        now: i64,
    ) -> QueryResult<()> {
        for chunk in credentials.chunks(super::ROWS_PER_INSERT) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|(user_id, sealed)| {
                    (
                        totp_credentials::user_id.eq(*user_id),
                        totp_credentials::secret_ciphertext.eq(&sealed.ciphertext),
                        totp_credentials::key_id.eq(&sealed.key_id),
                        totp_credentials::last_step.eq(step),
                        totp_credentials::enabled_at.eq(now),
                    )
                })
                .collect();
            native!(conn, |c| diesel::insert_into(totp_credentials::table)
                .values(&rows)
                .execute(c))?;
        }
        Ok(())
    }

    /// Whether the user has an authenticator app.
    pub fn exists(conn: &mut AnyConnection, user_id: &str) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(totp_credentials::table.find(user_id))).get_result(conn)
    }

    /// Removes the authenticator app (and any enrolment in progress) but not the recovery
    /// codes: for a user who keeps a security key.
    pub fn remove_app(conn: &mut AnyConnection, user_id: &str) -> QueryResult<usize> {
        let removed = diesel::delete(totp_credentials::table.find(user_id)).execute(conn)?;
        diesel::delete(pending_enrolments::table.find(user_id)).execute(conn)?;
        Ok(removed)
    }

    /// Removes the user's whole second factor: credential, recovery codes, pending enrolment.
    pub fn remove_all_for(conn: &mut AnyConnection, user_id: &str) -> QueryResult<usize> {
        let removed = TotpCredential::remove_app(conn, user_id)?;
        super::RecoveryCodes::remove_all_for(conn, user_id)?;
        Ok(removed)
    }
}

impl PendingEnrolment {
    pub fn sealed(&self) -> Sealed {
        Sealed {
            key_id: self.key_id.clone(),
            ciphertext: self.secret_ciphertext.clone(),
        }
    }

    /// The user's enrolment in progress, if this session started it and it has not expired.
    /// (One started by another session of the same user is never shown here: whoever else
    /// holds the password must not get to choose the secret this user then confirms.)
    pub fn find_valid(
        conn: &mut AnyConnection,
        user_id: &str,
        session_binding: &str,
        now: i64,
    ) -> QueryResult<Option<PendingEnrolment>> {
        pending_enrolments::table
            .find(user_id)
            .filter(pending_enrolments::session_binding.eq(session_binding))
            .filter(pending_enrolments::expires_at.gt(now))
            .select(PendingEnrolment::as_select())
            .first(conn)
            .optional()
    }

    /// Starts (or restarts) an enrolment, replacing any older one, whichever session made it.
    /// Call in a write transaction, after [`User::lock`].
    pub fn replace(conn: &mut AnyConnection, pending: &PendingEnrolment) -> QueryResult<()> {
        diesel::delete(pending_enrolments::table.find(&pending.user_id)).execute(conn)?;
        diesel::insert_into(pending_enrolments::table)
            .values(pending)
            .execute(conn)?;
        Ok(())
    }

    /// Consumes this enrolment if it is still there (same secret) and unexpired: exactly
    /// one of two racing confirmations gets `true`.
    pub fn take(&self, conn: &mut AnyConnection, now: i64) -> QueryResult<bool> {
        let deleted = diesel::delete(
            pending_enrolments::table
                .filter(pending_enrolments::user_id.eq(&self.user_id))
                .filter(pending_enrolments::secret_ciphertext.eq(&self.secret_ciphertext))
                .filter(pending_enrolments::expires_at.gt(now)),
        )
        .execute(conn)?;
        Ok(deleted == 1)
    }

    /// Deletes up to `limit` enrolments that expired by `now`.
    pub fn delete_expired(conn: &mut AnyConnection, now: i64, limit: i64) -> QueryResult<usize> {
        super::delete_at_most!(conn, limit, pending_enrolments.user_id, |dead| dead
            .field(pending_enrolments::expires_at)
            .le(now))
    }
}

/// The two tables that hold sealed secrets. Key rotation treats them alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedTable {
    TotpCredentials,
    PendingEnrolments,
}

/// `(user_id, secret_ciphertext, key_id)` as stored.
pub type SealedRow = (String, String, String);

/// The queries of key rotation (`auth::key_rotation`), over either table of sealed secrets.
pub struct SealedSecrets;

impl SealedSecrets {
    /// Up to `limit` rows of `table` with a user id after `after`, in user id order; with
    /// `not_under`, only rows sealed by another key.
    pub fn page(
        conn: &mut AnyConnection,
        table: SealedTable,
        after: &str,
        not_under: Option<&str>,
        limit: i64,
    ) -> QueryResult<Vec<SealedRow>> {
        macro_rules! page_of {
            ($t:ident) => {{
                let columns = ($t::user_id, $t::secret_ciphertext, $t::key_id);
                match not_under {
                    Some(key) => $t::table
                        .filter($t::user_id.gt(after))
                        .filter($t::key_id.ne(key))
                        .order($t::user_id)
                        .limit(limit)
                        .select(columns)
                        .load(conn),
                    None => $t::table
                        .filter($t::user_id.gt(after))
                        .order($t::user_id)
                        .limit(limit)
                        .select(columns)
                        .load(conn),
                }
            }};
        }
        match table {
            SealedTable::TotpCredentials => page_of!(totp_credentials),
            SealedTable::PendingEnrolments => page_of!(pending_enrolments),
        }
    }

    /// Replaces `user_id`'s secret `old` by `new` if the row still holds exactly `old`, by
    /// one compare-and-set statement: `false` means it changed (or went) since it was read,
    /// and nothing was written.
    pub fn replace_if_unchanged(
        conn: &mut AnyConnection,
        table: SealedTable,
        user_id: &str,
        old: &Sealed,
        new: &Sealed,
    ) -> QueryResult<bool> {
        macro_rules! replace_in {
            ($t:ident) => {
                diesel::update(
                    $t::table
                        .filter($t::user_id.eq(user_id))
                        .filter($t::key_id.eq(&old.key_id))
                        .filter($t::secret_ciphertext.eq(&old.ciphertext)),
                )
                .set((
                    $t::secret_ciphertext.eq(&new.ciphertext),
                    $t::key_id.eq(&new.key_id),
                ))
                .execute(conn)
            };
        }
        let updated = match table {
            SealedTable::TotpCredentials => replace_in!(totp_credentials)?,
            SealedTable::PendingEnrolments => replace_in!(pending_enrolments)?,
        };
        Ok(updated == 1)
    }

    /// Per key id of `table`, by key id: how many rows it seals and the first user id.
    pub fn count_by_key(
        conn: &mut AnyConnection,
        table: SealedTable,
    ) -> QueryResult<Vec<(String, i64, Option<String>)>> {
        use diesel::dsl::{count_star, min};
        macro_rules! per_key {
            ($t:ident) => {
                $t::table
                    .group_by($t::key_id)
                    .select(($t::key_id, count_star(), min($t::user_id)))
                    .order($t::key_id)
                    .load(conn)
            };
        }
        match table {
            SealedTable::TotpCredentials => per_key!(totp_credentials),
            SealedTable::PendingEnrolments => per_key!(pending_enrolments),
        }
    }

    /// `user_id`'s ciphertext in `table`, if it is still sealed by `key_id`.
    pub fn ciphertext(
        conn: &mut AnyConnection,
        table: SealedTable,
        user_id: &str,
        key_id: &str,
    ) -> QueryResult<Option<String>> {
        macro_rules! ciphertext_in {
            ($t:ident) => {
                $t::table
                    .find(user_id)
                    .filter($t::key_id.eq(key_id))
                    .select($t::secret_ciphertext)
                    .get_result::<String>(conn)
                    .optional()
            };
        }
        match table {
            SealedTable::TotpCredentials => ciphertext_in!(totp_credentials),
            SealedTable::PendingEnrolments => ciphertext_in!(pending_enrolments),
        }
    }

    /// Rows of both tables not sealed by `key_id`.
    pub fn count_not_under(conn: &mut AnyConnection, key_id: &str) -> QueryResult<i64> {
        let credentials: i64 = totp_credentials::table
            .filter(totp_credentials::key_id.ne(key_id))
            .count()
            .get_result(conn)?;
        let pending: i64 = pending_enrolments::table
            .filter(pending_enrolments::key_id.ne(key_id))
            .count()
            .get_result(conn)?;
        Ok(credentials + pending)
    }
}

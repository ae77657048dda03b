//! `totp_credentials` and `pending_enrolments`: a user's authenticator secret, enabled or
//! being set up (both sealed by `auth::secret_box`), and the replay rule on it.

use diesel::prelude::*;

use crate::auth::secret_box::Sealed;
use crate::db::fixed::AcceptStep;
use crate::db::schema::{pending_enrolments, recovery_codes, totp_credentials};
use crate::db::{AnyConnection, native};

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
        diesel::insert_into(totp_credentials::table)
            .values((
                totp_credentials::user_id.eq(user_id),
                totp_credentials::secret_ciphertext.eq(&sealed.ciphertext),
                totp_credentials::key_id.eq(&sealed.key_id),
                totp_credentials::last_step.eq(step),
                totp_credentials::enabled_at.eq(now),
            ))
            .execute(conn)
            .map(|_| ())
    }

    /// Removes the user's whole second factor: credential, recovery codes, pending enrolment.
    pub fn remove_all_for(conn: &mut AnyConnection, user_id: &str) -> QueryResult<usize> {
        let removed = diesel::delete(totp_credentials::table.find(user_id)).execute(conn)?;
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
            .execute(conn)?;
        diesel::delete(pending_enrolments::table.find(user_id)).execute(conn)?;
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

    pub fn delete_expired(conn: &mut AnyConnection, now: i64) -> QueryResult<usize> {
        diesel::delete(pending_enrolments::table.filter(pending_enrolments::expires_at.le(now)))
            .execute(conn)
    }
}

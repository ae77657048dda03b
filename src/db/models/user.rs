//! `users`: accounts, with the per-user counters the sign-in path keeps on the row (the
//! session epoch, consecutive second-factor failures).

use diesel::prelude::*;

use crate::db::fixed::{RecordSignIn, SetSecondFactorFailures};
use crate::db::schema::users;
use crate::db::{AnyConnection, native};
use crate::domain::{DisplayName, Email, Role, UserId, WorkspaceId};

/// A user as the rest of the app handles them. The password hash is not here: it is read
/// only where a password is checked ([`super::Account::load_for_sign_in`],
/// [`User::password_hash`]), so no request-wide type, log line or page can carry it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: UserId,
    pub workspace_id: WorkspaceId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub is_staff: bool,
    pub created_at: i64,
    pub last_sign_in_at: Option<i64>,
    /// Sessions carry the value they were made under; ending the user's sessions bumps it.
    pub session_epoch: i64,
    /// When the user's 2FA was last reset for them (policy time).
    pub two_factor_reset_at: Option<i64>,
    /// Consecutive failed second-factor attempts (see `limits`).
    pub second_factor_failures: i64,
    pub second_factor_locked_until: Option<i64>,
    /// When an admin deactivated the account (policy time): it cannot sign in.
    pub deactivated_at: Option<i64>,
    /// A public demo account: it signs in, but cannot change its password or factors.
    pub is_demo: bool,
}

impl User {
    /// Records that `user_id`'s 2FA was reset at `now` (policy time).
    pub fn note_reset(conn: &mut AnyConnection, user_id: &str, now: i64) -> QueryResult<()> {
        diesel::update(users::table.find(user_id))
            .set(users::two_factor_reset_at.eq(now))
            .execute(conn)
            .map(|_| ())
    }

    /// Serialises changes to one user's second factor and sessions: the first statement of
    /// such a write transaction, after at most a rate-limit bucket (`verify_totp` charges
    /// the per-IP bucket first; the order is always bucket row, then user row, so two
    /// transactions cannot deadlock). PostgreSQL takes the user's row lock (`FOR UPDATE`),
    /// so a concurrent transaction waits and then sees this one's rows; SQLite's write
    /// transactions (`BEGIN IMMEDIATE`) already run one at a time.
    pub fn lock(conn: &mut AnyConnection, user_id: &str) -> QueryResult<()> {
        match conn {
            AnyConnection::Postgresql(pg) => users::table
                .find(user_id)
                .select(users::id)
                .for_update()
                .first::<String>(pg)
                .optional()
                .map(|_| ()),
            AnyConnection::Sqlite(_) => Ok(()),
        }
    }

    pub fn find(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Option<User>> {
        users::table
            .find(user_id)
            .select(User::as_select())
            .first(conn)
            .optional()
    }

    pub fn find_by_email(conn: &mut AnyConnection, email: &Email) -> QueryResult<Option<User>> {
        native!(conn, |c| users::table
            .filter(users::email.eq(email.as_str()))
            .select(User::as_select())
            .get_result(c)
            .optional())
    }

    /// `user_id`'s stored password hash, for asking for the password again.
    pub fn password_hash(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Option<String>> {
        users::table
            .find(user_id)
            .select(users::password_hash)
            .get_result(conn)
            .optional()
    }

    /// The emails of `workspace_id`'s active members without a second factor, by email
    /// (a deactivated member cannot sign in, so enforcement asks nothing of them).
    pub fn emails_without_second_factor(
        conn: &mut AnyConnection,
        workspace_id: &str,
    ) -> QueryResult<Vec<String>> {
        users::table
            .filter(users::workspace_id.eq(workspace_id))
            .filter(users::deactivated_at.is_null())
            .filter(diesel::dsl::not(super::has_second_factor()))
            .order(users::email)
            .select(users::email)
            .load(conn)
    }

    /// The emails of `workspace_id`'s active members without a security key or passkey,
    /// by email (whom "Members must use a security key or passkey" asks something of).
    pub fn emails_without_security_key(
        conn: &mut AnyConnection,
        workspace_id: &str,
    ) -> QueryResult<Vec<String>> {
        users::table
            .filter(users::workspace_id.eq(workspace_id))
            .filter(users::deactivated_at.is_null())
            .filter(diesel::dsl::not(super::has_security_key()))
            .order(users::email)
            .select(users::email)
            .load(conn)
    }

    /// Which of `emails` belong to a user already.
    pub fn existing_emails(
        conn: &mut AnyConnection,
        emails: &[&str],
    ) -> QueryResult<std::collections::HashSet<String>> {
        let mut existing = std::collections::HashSet::new();
        // Chunked: both backends limit the number of bound parameters in one statement.
        for chunk in emails.chunks(500) {
            let found: Vec<String> = users::table
                .filter(users::email.eq_any(chunk))
                .select(users::email)
                .load(conn)?;
            existing.extend(found);
        }
        Ok(existing)
    }

    /// Whether `user_id` has a second factor ([`super::has_second_factor`]); `false` for
    /// no such user.
    pub fn has_second_factor(conn: &mut AnyConnection, user_id: &str) -> QueryResult<bool> {
        users::table
            .find(user_id)
            .select(super::has_second_factor())
            .get_result::<bool>(conn)
            .optional()
            .map(|found| found.unwrap_or(false))
    }

    pub fn any_exist(conn: &mut AnyConnection) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(users::table.select(users::id))).get_result(conn)
    }

    pub fn record_sign_in(conn: &mut AnyConnection, user_id: &str, now: i64) -> QueryResult<()> {
        native!(conn, |c| RecordSignIn { user_id, now }.execute(c)).map(|_| ())
    }

    pub fn set_password_hash(
        conn: &mut AnyConnection,
        user_id: &str,
        hash: &str,
    ) -> QueryResult<()> {
        diesel::update(users::table.find(user_id))
            .set(users::password_hash.eq(hash))
            .execute(conn)
            .map(|_| ())
    }

    /// Replaces the hash with a stronger one of the same password, only if it is still
    /// `verified` (a change or reset meanwhile wins).
    pub fn rehash_password(
        conn: &mut AnyConnection,
        user_id: &str,
        verified: &str,
        hash: &str,
    ) -> QueryResult<()> {
        diesel::update(
            users::table
                .find(user_id)
                .filter(users::password_hash.eq(verified)),
        )
        .set(users::password_hash.eq(hash))
        .execute(conn)
        .map(|_| ())
    }

    pub fn insert(conn: &mut AnyConnection, new: &NewUser<'_>, now: i64) -> QueryResult<UserId> {
        let id = UserId::new(super::new_row_id()?);
        User::insert_many(conn, &[(id.clone(), new)], now)?;
        Ok(id)
    }

    /// Inserts `users`, each under the id it comes with, in as few statements as the
    /// backends' limits on bound values allow (one per 500 users).
    pub fn insert_many(
        conn: &mut AnyConnection,
        users: &[(UserId, &NewUser<'_>)],
        now: i64,
    ) -> QueryResult<()> {
        for chunk in users.chunks(super::ROWS_PER_INSERT) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|(id, new)| {
                    (
                        users::id.eq(id),
                        users::workspace_id.eq(new.workspace_id),
                        users::email.eq(new.email.as_str()),
                        users::name.eq(new.name.as_str()),
                        users::role.eq(new.role.as_str()),
                        users::is_staff.eq(new.is_staff),
                        users::password_hash.eq(new.password_hash),
                        users::is_demo.eq(new.is_demo),
                        users::created_at.eq(now),
                    )
                })
                .collect();
            native!(conn, |c| diesel::insert_into(users::table)
                .values(&rows)
                .execute(c))?;
        }
        Ok(())
    }

    /// The user's consecutive second-factor failures and the lock they imply, read under
    /// the user's row lock on PostgreSQL (see [`User::lock`]), taken by the read itself.
    pub fn second_factor_failures_for_update(
        conn: &mut AnyConnection,
        user_id: &str,
    ) -> QueryResult<(i64, Option<i64>)> {
        let query = users::table.find(user_id).select((
            users::second_factor_failures,
            users::second_factor_locked_until,
        ));
        match conn {
            AnyConnection::Postgresql(pg) => query.for_update().get_result(pg),
            AnyConnection::Sqlite(sqlite) => query.get_result(sqlite),
        }
    }

    pub fn set_second_factor_failures(
        conn: &mut AnyConnection,
        user_id: &str,
        failures: i64,
        locked_until: Option<i64>,
    ) -> QueryResult<()> {
        let set = SetSecondFactorFailures {
            user_id,
            failures,
            locked_until,
        };
        native!(conn, |c| set.execute(c)).map(|_| ())
    }

    /// How many active (not deactivated) admins `workspace_id` has. For the last-admin
    /// rule: read it after `Workspace::find_for_update`, in the transaction that changes a
    /// role or deactivates, so two admins demoting each other cannot both win.
    pub fn active_admins(conn: &mut AnyConnection, workspace_id: &str) -> QueryResult<i64> {
        users::table
            .filter(users::workspace_id.eq(workspace_id))
            .filter(users::role.eq(Role::Admin))
            .filter(users::deactivated_at.is_null())
            .count()
            .get_result(conn)
    }

    /// Sets `user_id`'s role; whether it changed (check-and-set on the old value).
    pub fn set_role(conn: &mut AnyConnection, user_id: &str, role: Role) -> QueryResult<bool> {
        diesel::update(users::table.find(user_id).filter(users::role.ne(role)))
            .set(users::role.eq(role))
            .execute(conn)
            .map(|n| n == 1)
    }

    /// Deactivates `user_id` at `now` (policy time); whether it was active. Ending the
    /// sessions (`auth::session::end_sessions_of_user`) and killing a pending reset link
    /// (`PasswordResets::delete_of_user`) belong in the same transaction.
    pub fn deactivate(conn: &mut AnyConnection, user_id: &str, now: i64) -> QueryResult<bool> {
        let changed = diesel::update(
            users::table
                .find(user_id)
                .filter(users::deactivated_at.is_null()),
        )
        .set(users::deactivated_at.eq(now))
        .execute(conn)?;
        Ok(changed == 1)
    }

    /// Lets `user_id` sign in again; whether it was deactivated.
    pub fn reactivate(conn: &mut AnyConnection, user_id: &str) -> QueryResult<bool> {
        diesel::update(
            users::table
                .find(user_id)
                .filter(users::deactivated_at.is_not_null()),
        )
        .set(users::deactivated_at.eq(None::<i64>))
        .execute(conn)
        .map(|n| n == 1)
    }

    pub fn is_deactivated(&self) -> bool {
        self.deactivated_at.is_some()
    }

    /// Bumps the user's session epoch, so that every session made under the old one is
    /// refused; returns the new epoch.
    /// `user_id`'s session epoch now (`None`: no such user).
    pub fn session_epoch(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Option<i64>> {
        users::table
            .find(user_id)
            .select(users::session_epoch)
            .get_result(conn)
            .optional()
    }

    pub fn bump_session_epoch(conn: &mut AnyConnection, user_id: &str) -> QueryResult<i64> {
        diesel::update(users::table.find(user_id))
            .set(users::session_epoch.eq(users::session_epoch + 1))
            .returning(users::session_epoch)
            .get_result(conn)
    }
}

pub struct NewUser<'a> {
    pub workspace_id: &'a str,
    pub email: &'a Email,
    pub name: &'a DisplayName,
    pub role: Role,
    pub is_staff: bool,
    pub is_demo: bool,
    pub password_hash: &'a str,
}

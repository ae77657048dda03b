//! Rows as stored, and the queries over them. Storage types stay here: what leaves this
//! module for the auth code is decrypted and parsed elsewhere (`auth::second_factor`).
//!
//! Every function takes a connection and returns `QueryResult`, so a database outage is an
//! error, never "not found".
//!
//! Lookups on every sign-in by a unique key use `get_result`, not `first`: `first` adds
//! `LIMIT ?`, and the bundled SQLite plans a bound LIMIT by its value, so it re-prepares
//! such a cached statement at every execution (the profile of a sign-in showed a third of
//! its non-hashing instructions spent re-preparing). A unique key needs no LIMIT.

use diesel::prelude::*;

use super::fixed::{AcceptStep, RecordSignIn};
use super::schema::{
    app_secrets, exemptions, pending_enrolments, recovery_codes, setup_tokens, totp_credentials,
    users, workspaces,
};
use super::{AnyConnection, native};
use crate::auth::secret_box::Sealed;
use crate::domain::policy::{Enforcement, Requirement};
use crate::domain::{DisplayName, Email, Role, Slug, WorkspaceName};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = workspaces)]
pub struct Workspace {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: i64,
    /// When "Require 2FA" was turned on; `None` while it is off.
    pub require_2fa_since: Option<i64>,
    /// The one instant from which members without 2FA are held at enrolment.
    pub require_2fa_deadline: Option<i64>,
    /// The grace period last chosen, in days (0–90).
    pub grace_days: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub workspace_id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub is_staff: bool,
    pub password_hash: String,
    pub created_at: i64,
    pub last_sign_in_at: Option<i64>,
    /// Sessions carry the value they were made under; ending the user's sessions bumps it.
    pub session_epoch: i64,
    /// When the user's 2FA was last reset for them (policy time).
    pub two_factor_reset_at: Option<i64>,
    /// Consecutive failed second-factor attempts (see `limits`).
    pub second_factor_failures: i64,
    pub second_factor_locked_until: Option<i64>,
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

pub struct RecoveryCodes;

impl RecoveryCodes {
    /// `(id, bcrypt hash)` of the user's unused codes.
    pub fn unused(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Vec<(String, String)>> {
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::used_at.is_null())
            .order(recovery_codes::id)
            .select((recovery_codes::id, recovery_codes::code_hash))
            .load(conn)
    }

    pub fn count_unused(conn: &mut AnyConnection, user_id: &str) -> QueryResult<i64> {
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::used_at.is_null())
            .count()
            .get_result(conn)
    }

    /// Single use, atomically: of two requests spending one code, one gets `true`.
    pub fn spend(conn: &mut AnyConnection, code_id: &str, now: i64) -> QueryResult<bool> {
        let updated = diesel::update(
            recovery_codes::table
                .filter(recovery_codes::id.eq(code_id))
                .filter(recovery_codes::used_at.is_null()),
        )
        .set(recovery_codes::used_at.eq(now))
        .execute(conn)?;
        Ok(updated == 1)
    }

    /// Revokes every code the user has and stores `hashes` as the new set. Call in a write
    /// transaction, after [`User::lock`]: on PostgreSQL two overlapping replacements would
    /// otherwise each delete only the rows they can see and leave both new sets.
    pub fn replace_all(
        conn: &mut AnyConnection,
        user_id: &str,
        hashes: &[String],
        now: i64,
    ) -> QueryResult<()> {
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
            .execute(conn)?;
        for hash in hashes {
            let id = new_row_id()?;
            diesel::insert_into(recovery_codes::table)
                .values((
                    recovery_codes::id.eq(id),
                    recovery_codes::user_id.eq(user_id),
                    recovery_codes::code_hash.eq(hash),
                    recovery_codes::created_at.eq(now),
                ))
                .execute(conn)?;
        }
        Ok(())
    }
}

/// A signed-in (or half signed-in) user with what every page needs to know about them.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: User,
    pub workspace: Workspace,
    pub totp_enabled: bool,
    /// What workspace policy asks of this user, at the time the account was loaded.
    pub requirement: Requirement,
}

impl Account {
    /// One query: the user, their workspace, whether they have 2FA and any exemption;
    /// `now` is the policy clock's time.
    pub fn load(conn: &mut AnyConnection, user_id: &str, now: i64) -> QueryResult<Option<Account>> {
        native!(conn, |c| users::table
            .inner_join(workspaces::table)
            .left_join(totp_credentials::table)
            .left_join(exemptions::table)
            .filter(users::id.eq(user_id))
            .select((
                User::as_select(),
                Workspace::as_select(),
                totp_credentials::user_id.nullable(),
                exemptions::until.nullable(),
            ))
            .get_result::<(User, Workspace, Option<String>, Option<i64>)>(c)
            .optional())
        .map(|row| {
            row.map(|(user, workspace, totp, exempt_until)| {
                let requirement = Requirement::of(
                    user.is_staff,
                    Enforcement::of(workspace.require_2fa_since, workspace.require_2fa_deadline),
                    exempt_until,
                    user.two_factor_reset_at,
                    now,
                );
                Account {
                    user,
                    workspace,
                    totp_enabled: totp.is_some(),
                    requirement,
                }
            })
        })
    }

    /// Held at enrolment: 2FA is required now and the user has none.
    pub fn must_enrol(&self) -> bool {
        self.requirement == Requirement::Required && !self.totp_enabled
    }

    /// Whether policy forbids turning 2FA off: staff always, members while their workspace
    /// requires it (an exemption allows being without 2FA, not switching it off).
    pub fn two_factor_enforced(&self) -> bool {
        self.user.is_staff || self.workspace.require_2fa_since.is_some()
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin.as_str()
    }
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

    pub fn insert(conn: &mut AnyConnection, new: &NewUser<'_>, now: i64) -> QueryResult<String> {
        let id = new_row_id()?;
        diesel::insert_into(users::table)
            .values((
                users::id.eq(&id),
                users::workspace_id.eq(new.workspace_id),
                users::email.eq(new.email.as_str()),
                users::name.eq(new.name.as_str()),
                users::role.eq(new.role.as_str()),
                users::is_staff.eq(new.is_staff),
                users::password_hash.eq(new.password_hash),
                users::created_at.eq(now),
            ))
            .execute(conn)?;
        Ok(id)
    }
}

pub struct NewUser<'a> {
    pub workspace_id: &'a str,
    pub email: &'a Email,
    pub name: &'a DisplayName,
    pub role: Role,
    pub is_staff: bool,
    pub password_hash: &'a str,
}

impl Workspace {
    /// The workspace, locked for the rest of the transaction on PostgreSQL (SQLite's write
    /// transactions already run one at a time): for read-decide-write changes to settings.
    pub fn find_for_update(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<Workspace>> {
        match conn {
            AnyConnection::Postgresql(pg) => workspaces::table
                .find(id)
                .select(Workspace::as_select())
                .for_update()
                .first(pg)
                .optional(),
            AnyConnection::Sqlite(sqlite) => workspaces::table
                .find(id)
                .select(Workspace::as_select())
                .first(sqlite)
                .optional(),
        }
    }

    pub fn find_by_slug(conn: &mut AnyConnection, slug: &Slug) -> QueryResult<Option<Workspace>> {
        workspaces::table
            .filter(workspaces::slug.eq(slug.as_str()))
            .select(Workspace::as_select())
            .first(conn)
            .optional()
    }

    pub fn insert(
        conn: &mut AnyConnection,
        name: &WorkspaceName,
        slug: &Slug,
        now: i64,
    ) -> QueryResult<Workspace> {
        let workspace = Workspace {
            id: new_row_id()?,
            slug: slug.as_str().to_owned(),
            name: name.as_str().to_owned(),
            created_at: now,
            require_2fa_since: None,
            require_2fa_deadline: None,
            grace_days: 7,
        };
        diesel::insert_into(workspaces::table)
            .values((
                workspaces::id.eq(&workspace.id),
                workspaces::slug.eq(&workspace.slug),
                workspaces::name.eq(&workspace.name),
                workspaces::created_at.eq(now),
            ))
            .execute(conn)?;
        Ok(workspace)
    }
}

pub struct SetupTokens;

impl SetupTokens {
    pub fn insert(conn: &mut AnyConnection, token_hash: &str, now: i64) -> QueryResult<()> {
        diesel::insert_into(setup_tokens::table)
            .values((
                setup_tokens::token_hash.eq(token_hash),
                setup_tokens::created_at.eq(now),
            ))
            .execute(conn)
            .map(|_| ())
    }

    pub fn exists(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(setup_tokens::table.find(token_hash))).get_result(conn)
    }

    /// Consumes the token and every other one: exactly one of two racing setups wins.
    pub fn consume_all(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<bool> {
        let mine = diesel::delete(setup_tokens::table.find(token_hash)).execute(conn)?;
        diesel::delete(setup_tokens::table).execute(conn)?;
        Ok(mine == 1)
    }
}

/// Installation-wide values every instance must agree on.
pub struct AppSecrets;

impl AppSecrets {
    /// The value stored under `name`, storing `value` first if there is none. Of instances
    /// starting at once, the first to insert wins and the others get its value.
    pub fn get_or_insert(conn: &mut AnyConnection, name: &str, value: &str) -> QueryResult<String> {
        let find = |conn: &mut AnyConnection| {
            app_secrets::table
                .find(name)
                .select(app_secrets::value)
                .first::<String>(conn)
                .optional()
        };
        if let Some(stored) = find(conn)? {
            return Ok(stored);
        }
        let inserted = diesel::insert_into(app_secrets::table)
            .values((
                app_secrets::name.eq(name),
                app_secrets::value.eq(value),
                app_secrets::created_at.eq(super::now()),
            ))
            .execute(conn);
        match inserted {
            Ok(_) => Ok(value.to_owned()),
            Err(e) if is_unique_violation(&e) => find(conn)?.ok_or(e),
            Err(e) => Err(e),
        }
    }

    /// The value stored under `name`, if any; stores nothing.
    pub fn get(conn: &mut AnyConnection, name: &str) -> QueryResult<Option<String>> {
        app_secrets::table
            .find(name)
            .select(app_secrets::value)
            .first::<String>(conn)
            .optional()
    }

    /// Stores `value` under `name`, replacing any value there (key rotation moves the
    /// recorded encryption key id this way).
    pub fn set(conn: &mut AnyConnection, name: &str, value: &str) -> QueryResult<()> {
        let updated = diesel::update(app_secrets::table.find(name))
            .set(app_secrets::value.eq(value))
            .execute(conn)?;
        if updated == 0 && Self::get_or_insert(conn, name, value)? != value {
            // Another process inserted first; this call still has the last word.
            diesel::update(app_secrets::table.find(name))
                .set(app_secrets::value.eq(value))
                .execute(conn)?;
        }
        Ok(())
    }
}

/// A random id for a new row; an RNG failure aborts the statement like any other error.
fn new_row_id() -> QueryResult<String> {
    super::new_id().map_err(|e| diesel::result::Error::QueryBuilderError(e.into()))
}

/// Whether `e` is a unique-constraint violation (e.g. an email already taken).
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

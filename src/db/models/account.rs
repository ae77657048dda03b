//! The account as every page sees it: a user, their workspace, and what policy asks of
//! them, loaded in one query.

use diesel::prelude::*;

use super::{SessionRow, User, Workspace};
use crate::db::schema::{exemptions, sessions, totp_credentials, users, workspaces};
use crate::db::{AnyConnection, native};
use crate::domain::policy::Requirement;
use crate::domain::{Email, Factors, Role};

/// A signed-in (or half signed-in) user with what every page needs to know about them.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: User,
    pub workspace: Workspace,
    /// The second factors the user has set up.
    pub factors: Factors,
    /// What workspace policy asks of this user, at the time the account was loaded.
    pub requirement: Requirement,
    /// What "Members must use a security key or passkey" asks of this user, likewise.
    pub key_requirement: Requirement,
}

/// The user, their workspace, their app's credential (its user id), whether they have a
/// key, and their exemption's end.
type AccountRow = (User, Workspace, Option<String>, bool, Option<i64>);

/// The account's query, filtered by `$filter`, selecting `$extra` columns after its own.
///
/// The app's table is joined on its primary key; keys, of which a user may have several,
/// are an `EXISTS` (a join would repeat the row per key).
macro_rules! account_query {
    ($filter:expr, ($($extra:expr,)*)) => {
        users::table
            .inner_join(workspaces::table)
            .left_join(totp_credentials::table)
            .left_join(exemptions::table)
            .filter($filter)
            .select((
                User::as_select(),
                Workspace::as_select(),
                totp_credentials::user_id.nullable(),
                super::factors::has_security_key(),
                exemptions::until.nullable(),
                $($extra,)*
            ))
    };
}

/// An account as read with its session row (see `session_store`), before policy is
/// applied at a time.
#[derive(Debug, Clone)]
pub struct AccountRecord(AccountRow);

impl AccountRecord {
    pub fn user_id(&self) -> &str {
        self.0.0.id.as_str()
    }

    /// The account, with what policy asks of it at `now` (the policy clock's time).
    pub fn at(self, now: i64) -> Account {
        Account::of(self.0, now)
    }

    /// The session row `id` and, in the same query, the account of the user it belongs
    /// to (`None` for a row without a user, or whose user is gone).
    pub fn load_with_session(
        conn: &mut AnyConnection,
        id: &str,
    ) -> QueryResult<Option<(SessionRow, Option<AccountRecord>)>> {
        type Row = (
            (String, i64, i64),
            Option<User>,
            Option<Workspace>,
            Option<String>,
            bool,
            Option<i64>,
        );
        let row = native!(conn, |c| sessions::table
            .left_join(users::table.on(sessions::user_id.eq(users::id.nullable())))
            .left_join(workspaces::table.on(workspaces::id.eq(users::workspace_id)))
            .left_join(totp_credentials::table.on(totp_credentials::user_id.eq(users::id)))
            .left_join(exemptions::table.on(exemptions::user_id.eq(users::id)))
            .filter(sessions::id.eq(id))
            .select((
                (
                    sessions::state,
                    sessions::created_at,
                    sessions::last_seen_at
                ),
                Option::<User>::as_select(),
                Option::<Workspace>::as_select(),
                totp_credentials::user_id.nullable(),
                super::factors::has_security_key(),
                exemptions::until.nullable(),
            ))
            .get_result::<Row>(c)
            .optional())?;
        Ok(row.map(
            |((state, created_at, last_seen_at), user, workspace, totp, keys, exempt_until)| {
                let session = SessionRow {
                    state,
                    created_at,
                    last_seen_at,
                };
                let account = user.zip(workspace).map(|(user, workspace)| {
                    AccountRecord((user, workspace, totp, keys, exempt_until))
                });
                (session, account)
            },
        ))
    }
}

impl Account {
    /// One query: the user, their workspace, which second factors they have and any
    /// exemption; `now` is the policy clock's time. It loads each kind of factor (for
    /// [`Factors`], whose `any` then decides "has 2FA").
    pub fn load(conn: &mut AnyConnection, user_id: &str, now: i64) -> QueryResult<Option<Account>> {
        let row = native!(conn, |c| account_query!(users::id.eq(user_id), ())
            .get_result::<AccountRow>(c)
            .optional())?;
        Ok(row.map(|row| Account::of(row, now)))
    }

    /// [`Account::load`] by email, with the stored password hash: the password step's one
    /// read. (Reading the factors before the hash is checked is safe: enrolling moves the
    /// session epoch read with them, which ends the session this sign-in would open.)
    pub fn load_for_sign_in(
        conn: &mut AnyConnection,
        email: &Email,
        now: i64,
    ) -> QueryResult<Option<(Account, String)>> {
        let row = native!(conn, |c| account_query!(
            users::email.eq(email.as_str()),
            (users::password_hash,)
        )
        .get_result::<(User, Workspace, Option<String>, bool, Option<i64>, String)>(c)
        .optional())?;
        Ok(
            row.map(|(user, workspace, totp, keys, exempt_until, hash)| {
                (
                    Account::of((user, workspace, totp, keys, exempt_until), now),
                    hash,
                )
            }),
        )
    }

    fn of((user, workspace, totp, keys, exempt_until): AccountRow, now: i64) -> Account {
        let requirement = Requirement::of(
            user.is_staff,
            user.is_demo,
            workspace.enforcement(),
            exempt_until,
            user.two_factor_reset_at,
            now,
        );
        // One exemption covers both requirements, and a reset (which removes keys too)
        // gives no grace under either.
        let key_requirement = Requirement::key_of(
            user.is_demo,
            workspace.key_enforcement(),
            exempt_until,
            user.two_factor_reset_at,
            now,
        );
        Account {
            user,
            workspace,
            factors: Factors {
                authenticator: totp.is_some(),
                security_keys: keys,
            },
            requirement,
            key_requirement,
        }
    }

    /// Held at enrolment: 2FA is required now and the user has none.
    pub fn must_enrol(&self) -> bool {
        self.requirement == Requirement::Required && !self.factors.any()
    }

    /// Held at adding a security key: the workspace requires one now and the user has
    /// none. Checked before [`Account::must_enrol`]: a key is a second factor too.
    pub fn must_add_key(&self) -> bool {
        self.key_requirement == Requirement::Required && !self.factors.security_keys
    }

    /// Whether policy forbids turning 2FA off: staff always, members while their workspace
    /// requires it (an exemption allows being without 2FA, not switching it off).
    pub fn two_factor_enforced(&self) -> bool {
        self.user.is_staff || self.workspace.require_2fa_since.is_some()
    }

    /// Whether policy forbids removing the last security key: the workspace requires keys.
    pub fn keys_enforced(&self) -> bool {
        self.workspace.require_keys_since.is_some()
    }

    /// A demo account signs in like any other, but its password, second factors and
    /// recovery codes stay as they were made (see `web::guard::refuse_demo`).
    pub fn is_demo(&self) -> bool {
        self.user.is_demo
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
}

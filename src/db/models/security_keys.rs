//! `security_keys` and `webauthn_ceremonies`: a user's registered security keys and
//! passkeys, and the WebAuthn challenges waiting for an answer. What the credential JSON
//! means is `auth::webauthn`'s business; here it is text.

use diesel::prelude::*;

use crate::db::fixed::RecordKeyUse;
use crate::db::schema::{security_keys, webauthn_ceremonies};
use crate::db::{AnyConnection, native};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = security_keys)]
pub struct SecurityKeyRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub credential_id: String,
    pub credential: String,
    /// Registered as a passkey (discoverable, user verification required): it can sign in
    /// without the password.
    pub passwordless: bool,
    pub sign_count: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A key to store, as registration made it.
pub struct NewSecurityKey<'a> {
    pub user_id: &'a str,
    pub name: &'a str,
    pub credential_id: &'a str,
    pub credential: &'a str,
    pub passwordless: bool,
    pub sign_count: i64,
    pub now: i64,
}

pub struct SecurityKeys;

impl SecurityKeys {
    /// The user's keys, oldest first.
    pub fn list_for(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Vec<SecurityKeyRow>> {
        native!(conn, |c| security_keys::table
            .filter(security_keys::user_id.eq(user_id))
            .order((security_keys::created_at, security_keys::id))
            .select(SecurityKeyRow::as_select())
            .load(c))
    }

    /// The user's key with this credential id (base64url), if it is theirs.
    pub fn find_for_user(
        conn: &mut AnyConnection,
        user_id: &str,
        credential_id: &str,
    ) -> QueryResult<Option<SecurityKeyRow>> {
        native!(conn, |c| security_keys::table
            .filter(security_keys::credential_id.eq(credential_id))
            .filter(security_keys::user_id.eq(user_id))
            .select(SecurityKeyRow::as_select())
            .get_result(c)
            .optional())
    }

    /// The key with this credential id, whoever it belongs to (passkey sign-in, which
    /// learns the user from the key).
    pub fn find_by_credential_id(
        conn: &mut AnyConnection,
        credential_id: &str,
    ) -> QueryResult<Option<SecurityKeyRow>> {
        native!(conn, |c| security_keys::table
            .filter(security_keys::credential_id.eq(credential_id))
            .select(SecurityKeyRow::as_select())
            .get_result(c)
            .optional())
    }

    /// The user's key with this row id (the id in `/account/security-keys/{id}/…`).
    pub fn find(
        conn: &mut AnyConnection,
        user_id: &str,
        id: &str,
    ) -> QueryResult<Option<SecurityKeyRow>> {
        native!(conn, |c| security_keys::table
            .filter(security_keys::id.eq(id))
            .filter(security_keys::user_id.eq(user_id))
            .select(SecurityKeyRow::as_select())
            .get_result(c)
            .optional())
    }

    /// Stores a new key; a credential id registered already (to anyone) is a unique
    /// violation. Returns the new row's id.
    pub fn insert(conn: &mut AnyConnection, key: &NewSecurityKey<'_>) -> QueryResult<String> {
        let id = super::new_row_id()?;
        diesel::insert_into(security_keys::table)
            .values((
                security_keys::id.eq(&id),
                security_keys::user_id.eq(key.user_id),
                security_keys::name.eq(key.name),
                security_keys::credential_id.eq(key.credential_id),
                security_keys::credential.eq(key.credential),
                security_keys::passwordless.eq(key.passwordless),
                security_keys::sign_count.eq(key.sign_count),
                security_keys::created_at.eq(key.now),
            ))
            .execute(conn)?;
        Ok(id)
    }

    /// Renames the user's key; `false` if they have no key with this id.
    pub fn rename(
        conn: &mut AnyConnection,
        user_id: &str,
        id: &str,
        name: &str,
    ) -> QueryResult<bool> {
        let updated = diesel::update(
            security_keys::table
                .filter(security_keys::id.eq(id))
                .filter(security_keys::user_id.eq(user_id)),
        )
        .set(security_keys::name.eq(name))
        .execute(conn)?;
        Ok(updated == 1)
    }

    /// Removes the user's key; `false` if they have no key with this id.
    pub fn remove(conn: &mut AnyConnection, user_id: &str, id: &str) -> QueryResult<bool> {
        let removed = diesel::delete(
            security_keys::table
                .filter(security_keys::id.eq(id))
                .filter(security_keys::user_id.eq(user_id)),
        )
        .execute(conn)?;
        Ok(removed == 1)
    }

    /// Records a use with the counter's check-and-set ([`RecordKeyUse`]); `false`: the
    /// counter did not go up (a cloned key, or a twin answer that won), or the key is gone.
    pub fn record_use(
        conn: &mut AnyConnection,
        row: &SecurityKeyRow,
        credential: &str,
        counter: u32,
        now: i64,
    ) -> QueryResult<bool> {
        let statement = RecordKeyUse {
            id: &row.id,
            user_id: &row.user_id,
            credential,
            counter: i64::from(counter),
            now: Some(now),
        };
        Ok(native!(conn, |c| statement.execute(c))? == 1)
    }

    pub fn count_for(conn: &mut AnyConnection, user_id: &str) -> QueryResult<i64> {
        security_keys::table
            .filter(security_keys::user_id.eq(user_id))
            .count()
            .get_result(conn)
    }

    /// Removes every key of the user and any ceremony in progress; returns how many keys.
    pub fn remove_all_for(conn: &mut AnyConnection, user_id: &str) -> QueryResult<usize> {
        let removed =
            diesel::delete(security_keys::table.filter(security_keys::user_id.eq(user_id)))
                .execute(conn)?;
        Ceremonies::remove_all_for(conn, user_id)?;
        Ok(removed)
    }
}

/// What a ceremony is for: its state's type and who may answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyPurpose {
    RegisterKey,
    RegisterPasskey,
    SecondFactor,
    Passwordless,
}

impl CeremonyPurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            CeremonyPurpose::RegisterKey => "register_key",
            CeremonyPurpose::RegisterPasskey => "register_passkey",
            CeremonyPurpose::SecondFactor => "second_factor",
            CeremonyPurpose::Passwordless => "passwordless",
        }
    }
}

/// A ceremony taken for its answer.
#[derive(Debug, Clone, Queryable)]
pub struct TakenCeremony {
    pub user_id: Option<String>,
    pub state: String,
    pub expires_at: i64,
}

pub struct Ceremonies;

impl Ceremonies {
    /// Starts (or restarts) this session's ceremony for `purpose`: a reload replaces the
    /// challenge, so the page always carries the live one.
    pub fn put(
        conn: &mut AnyConnection,
        binding: &str,
        purpose: CeremonyPurpose,
        user_id: Option<&str>,
        state: &str,
        now: i64,
        expires_at: i64,
    ) -> QueryResult<()> {
        use diesel::upsert::excluded;
        native!(conn, |c| diesel::insert_into(webauthn_ceremonies::table)
            .values((
                webauthn_ceremonies::session_binding.eq(binding),
                webauthn_ceremonies::purpose.eq(purpose.as_str()),
                webauthn_ceremonies::user_id.eq(user_id),
                webauthn_ceremonies::state.eq(state),
                webauthn_ceremonies::created_at.eq(now),
                webauthn_ceremonies::expires_at.eq(expires_at),
            ))
            .on_conflict((
                webauthn_ceremonies::session_binding,
                webauthn_ceremonies::purpose
            ))
            .do_update()
            .set((
                webauthn_ceremonies::user_id.eq(excluded(webauthn_ceremonies::user_id)),
                webauthn_ceremonies::state.eq(excluded(webauthn_ceremonies::state)),
                webauthn_ceremonies::created_at.eq(excluded(webauthn_ceremonies::created_at)),
                webauthn_ceremonies::expires_at.eq(excluded(webauthn_ceremonies::expires_at)),
            ))
            .execute(c))?;
        Ok(())
    }

    /// Takes this session's ceremony for `purpose`, once: one `DELETE … RETURNING`, so of
    /// two answers racing (two requests, two instances) exactly one gets it. Expired or
    /// not, it is gone afterwards.
    pub fn take(
        conn: &mut AnyConnection,
        binding: &str,
        purpose: CeremonyPurpose,
    ) -> QueryResult<Option<TakenCeremony>> {
        diesel::delete(
            webauthn_ceremonies::table
                .filter(webauthn_ceremonies::session_binding.eq(binding))
                .filter(webauthn_ceremonies::purpose.eq(purpose.as_str())),
        )
        .returning((
            webauthn_ceremonies::user_id,
            webauthn_ceremonies::state,
            webauthn_ceremonies::expires_at,
        ))
        .get_result(conn)
        .optional()
    }

    pub fn remove_all_for(conn: &mut AnyConnection, user_id: &str) -> QueryResult<usize> {
        diesel::delete(webauthn_ceremonies::table.filter(webauthn_ceremonies::user_id.eq(user_id)))
            .execute(conn)
    }

    /// The sweeper's batch: at most `limit` sessions' ceremonies that expired before `now`
    /// (the bounded-delete pattern of `delete_at_most!`, by binding, and only expired rows).
    pub fn delete_expired(conn: &mut AnyConnection, now: i64, limit: i64) -> QueryResult<usize> {
        let dead = diesel::alias!(webauthn_ceremonies as dead);
        let bindings = dead
            .filter(dead.field(webauthn_ceremonies::expires_at).lt(now))
            .select(dead.field(webauthn_ceremonies::session_binding))
            .limit(limit);
        diesel::delete(
            webauthn_ceremonies::table
                .filter(webauthn_ceremonies::session_binding.eq_any(bindings))
                .filter(webauthn_ceremonies::expires_at.lt(now)),
        )
        .execute(conn)
    }
}

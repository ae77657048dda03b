//! The queries behind the admin and support pages: a workspace's members with their 2FA
//! status, and the support search across workspaces: the listings that span tables. (A
//! table's own queries, exemptions and enforcement settings among them, are in `models`.)
//!
//! Every query of a workspace's members takes the workspace id and filters by it in SQL:
//! an admin's page can only ever read their own workspace.

use diesel::prelude::*;

use diesel::dsl::not;

use super::AnyConnection;
use super::models::{has_authenticator, has_second_factor, has_security_key};
use super::schema::{exemptions, recovery_codes, totp_credentials, users, workspaces};
use crate::domain::{Factors, UserId};

diesel::define_sql_function! {
    /// SQL `lower()`: names compare case-insensitively on both backends.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// One member as the members page shows them.
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: String,
    pub is_staff: bool,
    pub last_sign_in_at: Option<i64>,
    /// Whether the member has a second factor ([`has_second_factor`]).
    pub has_second_factor: bool,
    /// Which ones ([`has_authenticator`], [`has_security_key`]), for "app", "key" or both.
    pub factors: Factors,
    /// When the authenticator was turned on, for display ("Enrolled since").
    pub enabled_at: Option<i64>,
    pub exempt_until: Option<i64>,
    pub codes_left: i64,
    /// When the member was deactivated; `None` while active.
    pub deactivated_at: Option<i64>,
}

/// Which members to list.
#[derive(Debug, Clone, Default)]
pub struct MemberFilter {
    /// Part of an email or a name, any case.
    pub q: Option<String>,
    /// Only members without 2FA.
    pub not_enrolled: bool,
}

/// `%text%` for LIKE, with the wildcards in `text` taken literally (escape character `\`).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The members of `workspace_id` matching `filter`, as one boxed query (used for the page
/// and for the count).
macro_rules! members_query {
    ($workspace_id:expr, $filter:expr) => {{
        let mut query = users::table
            .left_join(totp_credentials::table)
            .left_join(exemptions::table)
            .filter(users::workspace_id.eq($workspace_id))
            .into_boxed();
        if let Some(q) = $filter
            .q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
        {
            let pattern = contains_pattern(q);
            query = query.filter(
                users::email
                    .like(pattern.clone())
                    .escape('\\')
                    .or(lower(users::name).like(pattern).escape('\\')),
            );
        }
        if $filter.not_enrolled {
            query = query.filter(not(has_second_factor()));
        }
        query
    }};
}

type MemberTuple = (
    UserId,
    String,
    String,
    String,
    bool,
    Option<i64>,
    bool,
    bool,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// One page of members (by email) and how many match in all; `limit: None` returns all.
pub fn members(
    conn: &mut AnyConnection,
    workspace_id: &str,
    filter: &MemberFilter,
    offset: i64,
    limit: Option<i64>,
) -> QueryResult<(Vec<MemberRow>, i64)> {
    let total: i64 = members_query!(workspace_id, filter)
        .count()
        .get_result(conn)?;
    let mut query = members_query!(workspace_id, filter)
        .select(member_columns())
        .order(users::email.asc());
    // SQLite has no OFFSET without LIMIT: the whole list is simply not offset.
    if let Some(limit) = limit {
        query = query.offset(offset).limit(limit);
    }
    let rows: Vec<MemberTuple> = query.load(conn)?;
    Ok((with_codes_left(conn, rows)?, total))
}

/// The next `limit` members matching `filter` whose email sorts after `after` (from the
/// start with `None`), by email: a keyset page. Emails are unique, so walking the pages with
/// the last email seen visits each member once, in the order of [`members`], and each page
/// costs the same however far into the list it is (an index on `(workspace_id, email)`
/// serves both the filter and the order), where an OFFSET would rescan every row before it.
pub fn members_after(
    conn: &mut AnyConnection,
    workspace_id: &str,
    filter: &MemberFilter,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<MemberRow>> {
    let mut query = members_query!(workspace_id, filter)
        .select(member_columns())
        .order(users::email.asc())
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(users::email.gt(after.to_owned()));
    }
    let rows: Vec<MemberTuple> = query.load(conn)?;
    with_codes_left(conn, rows)
}

/// The columns of a [`MemberTuple`].
#[allow(clippy::type_complexity)]
fn member_columns() -> (
    users::id,
    users::email,
    users::name,
    users::role,
    users::is_staff,
    users::last_sign_in_at,
    super::models::HasAuthenticator,
    super::models::HasSecurityKey,
    diesel::dsl::Nullable<totp_credentials::enabled_at>,
    diesel::dsl::Nullable<exemptions::until>,
    users::deactivated_at,
) {
    (
        users::id,
        users::email,
        users::name,
        users::role,
        users::is_staff,
        users::last_sign_in_at,
        has_authenticator(),
        has_security_key(),
        totp_credentials::enabled_at.nullable(),
        exemptions::until.nullable(),
        users::deactivated_at,
    )
}

/// The rows as [`MemberRow`]s, with their unused recovery codes counted.
fn with_codes_left(
    conn: &mut AnyConnection,
    rows: Vec<MemberTuple>,
) -> QueryResult<Vec<MemberRow>> {
    let mut members: Vec<MemberRow> = rows
        .into_iter()
        .map(
            |(
                id,
                email,
                name,
                role,
                is_staff,
                last_sign_in_at,
                authenticator,
                security_keys,
                enabled_at,
                exempt_until,
                deactivated_at,
            )| {
                // The same definition as `has_second_factor`, from the two parts read.
                let factors = Factors {
                    authenticator,
                    security_keys,
                };
                MemberRow {
                    id,
                    email,
                    name,
                    role,
                    is_staff,
                    last_sign_in_at,
                    has_second_factor: factors.any(),
                    factors,
                    enabled_at,
                    exempt_until,
                    codes_left: 0,
                    deactivated_at,
                }
            },
        )
        .collect();
    // Unused recovery codes, counted for the listed members in chunks (bind limits).
    for chunk in members.chunks_mut(500) {
        let ids: Vec<&str> = chunk.iter().map(|m| m.id.as_str()).collect();
        let counts: Vec<(UserId, i64)> = recovery_codes::table
            .filter(recovery_codes::user_id.eq_any(&ids))
            .filter(recovery_codes::used_at.is_null())
            .group_by(recovery_codes::user_id)
            .select((recovery_codes::user_id, diesel::dsl::count_star()))
            .load(conn)?;
        for (user_id, count) in counts {
            if let Some(member) = chunk.iter_mut().find(|m| m.id == user_id) {
                member.codes_left = count;
            }
        }
    }
    Ok(members)
}

/// A workspace's active members, counted for its requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberCounts {
    pub total: i64,
    /// Without 2FA ([`has_second_factor`]).
    pub without_second_factor: i64,
    /// Without a security key or passkey ([`has_security_key`]).
    pub without_key: i64,
}

/// How many active members `workspace_id` has, and how many of them have no 2FA and no
/// key (deactivated members cannot sign in: enforcement does not concern them).
pub fn member_counts(conn: &mut AnyConnection, workspace_id: &str) -> QueryResult<MemberCounts> {
    let active = || {
        users::table
            .filter(users::workspace_id.eq(workspace_id))
            .filter(users::deactivated_at.is_null())
    };
    Ok(MemberCounts {
        total: active().count().get_result(conn)?,
        without_second_factor: active()
            .filter(not(has_second_factor()))
            .count()
            .get_result(conn)?,
        without_key: active()
            .filter(not(has_security_key()))
            .count()
            .get_result(conn)?,
    })
}

/// A user found by support, with their workspace.
#[derive(Debug, Clone, Queryable)]
pub struct SupportRow {
    pub id: UserId,
    pub email: String,
    pub workspace_name: String,
    pub workspace_slug: String,
    pub role: String,
    pub is_staff: bool,
    /// Whether the user has a second factor ([`has_second_factor`]).
    pub has_second_factor: bool,
    /// Whether that is an authenticator app ([`has_authenticator`]).
    pub has_authenticator: bool,
    /// Whether they have a security key or passkey ([`has_security_key`]).
    pub has_security_key: bool,
    /// When the authenticator was turned on, for display ("Enrolled since").
    pub enabled_at: Option<i64>,
    pub deactivated_at: Option<i64>,
}

impl SupportRow {
    pub fn factors(&self) -> Factors {
        Factors {
            authenticator: self.has_authenticator,
            security_keys: self.has_security_key,
        }
    }
}

/// Users of any workspace whose email contains `q` (at most `limit`, by email).
pub fn search_all(conn: &mut AnyConnection, q: &str, limit: i64) -> QueryResult<Vec<SupportRow>> {
    users::table
        .inner_join(workspaces::table)
        .left_join(totp_credentials::table)
        .filter(users::email.like(contains_pattern(q.trim())).escape('\\'))
        .order(users::email.asc())
        .limit(limit)
        .select((
            users::id,
            users::email,
            workspaces::name,
            workspaces::slug,
            users::role,
            users::is_staff,
            has_second_factor(),
            has_authenticator(),
            has_security_key(),
            totp_credentials::enabled_at.nullable(),
            users::deactivated_at,
        ))
        .load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(contains_pattern("Ann"), "%ann%");
        assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}

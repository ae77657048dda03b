//! The queries behind the admin and support pages: a workspace's members with their 2FA
//! status, and the support search across workspaces: the listings that span tables. (A
//! table's own queries, exemptions and enforcement settings among them, are in `models`.)
//!
//! Every query of a workspace's members takes the workspace id and filters by it in SQL:
//! an admin's page can only ever read their own workspace.
//!
//! These listings read which factors a member has from `users.authenticator_on` and
//! `users.security_key_count`, which triggers keep in step with the credential tables in
//! the same transaction (migration `000008`), so that a page and its counts cost the same
//! at 100,000 members as at 10 (see `docs/admin-pages.md` for the plans). Sign-in and
//! enforcement ask the credential tables themselves ([`has_second_factor`]).

use diesel::prelude::*;

use super::AnyConnection;
use super::schema::{
    exemptions, member_counts, recovery_codes, totp_credentials, users, workspaces,
};
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
    /// Whether the member has a second factor ([`Factors::any`]).
    pub has_second_factor: bool,
    /// Which ones, for "app", "key" or both.
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
    format!("%{}%", literally(&text.to_lowercase()))
}

/// `text` for LIKE, its wildcards taken literally (escape character `\`), without control
/// characters, which match nothing (see `search_candidates`).
fn literally(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len());
    for c in text.chars().filter(|c| !c.is_control()) {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

/// For a search text with one `@` and something before it, the LIKE patterns of "the
/// email's part before its `@`, reversed, begins with the text's part before it, reversed,
/// and its part after begins with the text's part after": the same members as "the email
/// contains the text", since every email has exactly one `@` ([`Email::parse`]).
///
/// Why: PostgreSQL's trigram index answers a whole address slowly when every member shares
/// the domain (it reads each trigram's list of members: 9 ms at 100,000 members, see
/// docs/admin-pages.md), while these two prefixes are a range of the index on the reversed
/// part before the `@` (migration 000012). SQLite's trigram search reads few enough.
///
/// [`Email::parse`]: crate::domain::Email::parse
fn around_the_at(text: &str) -> Option<(String, String)> {
    let text = text.to_lowercase();
    let (local, domain) = text.split_once('@')?;
    if local.is_empty() || domain.contains('@') {
        return None;
    }
    let reversed: String = local.chars().rev().collect();
    Some((
        format!("{}%", literally(&reversed)),
        format!("{}%", literally(domain)),
    ))
}

/// `users.email` contains `text` (any case, wildcards literal): on PostgreSQL, for a text
/// that allows it, as a range of the index of the reversed part before the `@` (see
/// [`around_the_at`]); otherwise as `LIKE '%text%'`, which the trigram indexes serve.
fn email_contains<QS>(text: &str, postgres: bool) -> EmailCondition<QS>
where
    diesel::dsl::Escape<diesel::dsl::Like<users::email, String>>: BoxableExpression<
            QS,
            <AnyConnection as diesel::Connection>::Backend,
            SqlType = diesel::sql_types::Bool,
        >,
{
    let around = if postgres { around_the_at(text) } else { None };
    let Some((local, domain)) = around else {
        return Box::new(users::email.like(contains_pattern(text)).escape('\\'));
    };
    // `split_part(email, '@', 1)` exactly as the index has it, with no bound values;
    // `E'\\'` is a backslash whatever `standard_conforming_strings` says.
    Box::new(
        diesel::dsl::sql::<diesel::sql_types::Bool>(
            r#"(reverse(split_part("users"."email", '@', 1)) LIKE "#,
        )
        .bind::<diesel::sql_types::Text, _>(local)
        .sql(r#" ESCAPE E'\\' AND split_part("users"."email", '@', 2) LIKE "#)
        .bind::<diesel::sql_types::Text, _>(domain)
        .sql(r#" ESCAPE E'\\')"#),
    )
}

type EmailCondition<QS> = Box<
    dyn BoxableExpression<
            QS,
            <AnyConnection as diesel::Connection>::Backend,
            SqlType = diesel::sql_types::Bool,
        >,
>;

/// The most candidates a search takes from SQLite's trigram index; with more, it reads
/// the members in order instead (they are then dense enough that a page comes quickly),
/// and a count stops there ([`count_members`]).
pub const SEARCH_CANDIDATES: i64 = 1000;

/// The most rows of the trigram index a search reads, in every workspace: the index is
/// one for the installation, so a text common in other workspaces must not make a small
/// workspace's search read them all. Beyond this the search reads the workspace's own
/// members in order, as without the index.
const SEARCH_READ: i64 = 5 * SEARCH_CANDIDATES;

/// The users (of `workspace_id`, or of any workspace) whose email, or with `names` whose
/// name, may contain `q`, from SQLite's trigram index `users_search` (migration 000009):
/// `Some` when there are at most [`SEARCH_CANDIDATES`], for the search to look at those
/// alone (none at all for text with control characters). `None` says to read the
/// members in order: on PostgreSQL (whose trigram indexes
/// the planner uses by itself), for text shorter than a trigram, and when more match.
/// Every row is still checked with `LIKE`, so this only ever narrows.
fn search_candidates(
    conn: &mut AnyConnection,
    workspace_id: Option<&str>,
    q: &str,
    names: bool,
) -> QueryResult<Option<Vec<UserId>>> {
    #[derive(QueryableByName)]
    struct Candidate {
        #[diesel(sql_type = diesel::sql_types::Text)]
        user_id: UserId,
        #[diesel(sql_type = diesel::sql_types::Text)]
        workspace_id: String,
    }
    let text = q.trim().to_lowercase();
    // Control characters are in no email or name, and a NUL is no text to PostgreSQL or
    // to FTS5: such a search matches no one, without asking the database.
    if text.chars().any(char::is_control) {
        return Ok(Some(Vec::new()));
    }
    let AnyConnection::Sqlite(conn) = conn else {
        return Ok(None);
    };
    if text.chars().count() < 3 {
        return Ok(None);
    }
    // An FTS5 phrase matches the text as it is, anywhere in a column (a quote doubled).
    let phrase = format!("\"{}\"", text.replace('"', "\"\""));
    let phrase = if names {
        phrase
    } else {
        format!("email : {phrase}")
    };
    let read: Vec<Candidate> = diesel::sql_query(
        "SELECT user_id, workspace_id FROM users_search WHERE users_search MATCH ? LIMIT ?",
    )
    .bind::<diesel::sql_types::Text, _>(phrase)
    .bind::<diesel::sql_types::BigInt, _>(SEARCH_READ + 1)
    .load(conn)?;
    if read.len() as i64 > SEARCH_READ {
        return Ok(None);
    }
    let found: Vec<UserId> = read
        .into_iter()
        .filter(|c| workspace_id.is_none_or(|w| c.workspace_id == w))
        .map(|c| c.user_id)
        .collect();
    Ok((found.len() as i64 <= SEARCH_CANDIDATES).then_some(found))
}

fn is_postgres(conn: &AnyConnection) -> bool {
    matches!(conn, AnyConnection::Postgresql(_))
}

/// The candidates of `filter`'s search ([`search_candidates`]), if it has one.
fn filter_candidates(
    conn: &mut AnyConnection,
    workspace_id: &str,
    filter: &MemberFilter,
) -> QueryResult<Option<Vec<UserId>>> {
    match filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => search_candidates(conn, Some(workspace_id), q, true),
        None => Ok(None),
    }
}

/// `$query` (a boxed query over `users`) narrowed to the members of `$workspace_id`
/// matching `$filter`, among `$candidates` when there are: the same rows for a page and
/// for the count.
macro_rules! matching {
    ($query:expr, $workspace_id:expr, $filter:expr, $candidates:expr, $postgres:expr) => {{
        let mut query = $query.filter(users::workspace_id.eq($workspace_id));
        if let Some(q) = $filter
            .q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
        {
            if let Some(candidates) = $candidates {
                query = query.filter(users::id.eq_any(candidates.clone()));
            }
            query = query.filter(
                email_contains(q, $postgres)
                    .or(lower(users::name).like(contains_pattern(q)).escape('\\')),
            );
        }
        if $filter.not_enrolled {
            query = query.filter(without_second_factor());
        }
        query
    }};
}

/// The members of `workspace_id` matching `filter`, with the columns of a [`MemberRow`]
/// joined (each join is one row or none: it changes no count).
macro_rules! members_query {
    ($workspace_id:expr, $filter:expr, $candidates:expr, $postgres:expr) => {{
        let query = users::table
            .left_join(totp_credentials::table)
            .left_join(exemptions::table)
            .into_boxed();
        matching!(query, $workspace_id, $filter, $candidates, $postgres).select(member_columns())
    }};
}

/// Neither an authenticator app nor a security key, from the columns on the users row.
fn without_second_factor() -> diesel::dsl::And<
    diesel::dsl::Eq<users::authenticator_on, bool>,
    diesel::dsl::Eq<users::security_key_count, i64>,
> {
    users::authenticator_on
        .eq(false)
        .and(users::security_key_count.eq(0))
}

/// Where a page of the members list starts, by email (emails are unique).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// From the start.
    First,
    /// The members after this email.
    After(String),
    /// The members before this email.
    Before(String),
    /// The end of the list.
    Last,
}

/// A page of members, and whether there are members before and after it.
#[derive(Debug, Clone)]
pub struct MembersPage {
    pub rows: Vec<MemberRow>,
    pub more_before: bool,
    pub more_after: bool,
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

/// How many members of `workspace_id` match `filter`: without `q`, exactly, from one row
/// of `member_counts`. A search is counted up to [`SEARCH_CANDIDATES`]; beyond that the
/// answer is `SEARCH_CANDIDATES + 1`, "more than" (counting every member who matches a
/// common word would read the whole workspace on every search).
pub fn count_members(
    conn: &mut AnyConnection,
    workspace_id: &str,
    filter: &MemberFilter,
) -> QueryResult<i64> {
    if filter.q.as_deref().is_none_or(|q| q.trim().is_empty()) {
        let counted: Option<(i64, i64)> = member_counts::table
            .find(workspace_id)
            .select((member_counts::members, member_counts::not_enrolled))
            .get_result(conn)
            .optional()?;
        let (members, not_enrolled) = counted.unwrap_or_default();
        return Ok(if filter.not_enrolled {
            not_enrolled
        } else {
            members
        });
    }
    let candidates = filter_candidates(conn, workspace_id, filter)?;
    let postgres = is_postgres(conn);
    let found: Vec<UserId> = matching!(
        users::table.into_boxed(),
        workspace_id,
        filter,
        &candidates,
        postgres
    )
    .select(users::id)
    .limit(SEARCH_CANDIDATES + 1)
    .load(conn)?;
    Ok(found.len() as i64)
}

/// The page of `limit` members matching `filter` at `cursor`, by email: a keyset page.
/// Each page costs the same however far into the list it is (the index on
/// `(workspace_id, email)` serves both the filter and the order), where an OFFSET would
/// read every row before it. A page before that would come out short reaches the start:
/// the first page is shown instead, so that every page but the last is full; a page after
/// the end shows the last page.
pub fn members(
    conn: &mut AnyConnection,
    workspace_id: &str,
    filter: &MemberFilter,
    cursor: &Cursor,
    limit: i64,
) -> QueryResult<MembersPage> {
    let mut rows = rows_at(conn, workspace_id, filter, cursor, limit + 1)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let (more_before, more_after) = match cursor {
        Cursor::First => (false, more),
        // Past the end (a link kept while members left): the last page instead.
        Cursor::After(_) if rows.is_empty() => {
            return members(conn, workspace_id, filter, &Cursor::Last, limit);
        }
        Cursor::After(_) => (true, more),
        Cursor::Before(_) if !more && (rows.len() as i64) < limit => {
            return members(conn, workspace_id, filter, &Cursor::First, limit);
        }
        Cursor::Before(_) | Cursor::Last => {
            rows.reverse();
            (more, matches!(cursor, Cursor::Before(_)))
        }
    };
    Ok(MembersPage {
        rows: with_codes_left(conn, rows)?,
        more_before,
        more_after,
    })
}

/// The next `limit` members matching `filter` whose email sorts after `after` (from the
/// start with `None`): walking these pages with the last email seen visits each member
/// once, in the order of [`members`], and ends with an empty page.
pub fn members_after(
    conn: &mut AnyConnection,
    workspace_id: &str,
    filter: &MemberFilter,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<MemberRow>> {
    let cursor = after.map_or(Cursor::First, |email| Cursor::After(email.to_owned()));
    let rows = rows_at(conn, workspace_id, filter, &cursor, limit)?;
    with_codes_left(conn, rows)
}

/// Up to `limit` rows at `cursor`, in the order read: by email, or backwards from
/// `Before` and `Last`.
fn rows_at(
    conn: &mut AnyConnection,
    workspace_id: &str,
    filter: &MemberFilter,
    cursor: &Cursor,
    limit: i64,
) -> QueryResult<Vec<MemberTuple>> {
    let candidates = filter_candidates(conn, workspace_id, filter)?;
    let query = members_query!(workspace_id, filter, &candidates, is_postgres(conn)).limit(limit);
    match cursor {
        Cursor::First => query.order(users::email.asc()).load(conn),
        Cursor::After(email) => query
            .filter(users::email.gt(email.clone()))
            .order(users::email.asc())
            .load(conn),
        Cursor::Before(email) => query
            .filter(users::email.lt(email.clone()))
            .order(users::email.desc())
            .load(conn),
        Cursor::Last => query.order(users::email.desc()).load(conn),
    }
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
    users::authenticator_on,
    diesel::dsl::Gt<users::security_key_count, i64>,
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
        users::authenticator_on,
        users::security_key_count.gt(0),
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
    /// Without 2FA: neither an authenticator app nor a key.
    pub without_second_factor: i64,
    /// Without a security key or passkey.
    pub without_key: i64,
}

/// How many active members `workspace_id` has, and how many of them have no 2FA and no
/// key (deactivated members cannot sign in: enforcement does not concern them): exact, one
/// row of `member_counts`, which triggers keep with every change to a member.
pub fn member_counts(conn: &mut AnyConnection, workspace_id: &str) -> QueryResult<MemberCounts> {
    let counted: Option<(i64, i64, i64)> = member_counts::table
        .find(workspace_id)
        .select((
            member_counts::active,
            member_counts::active_not_enrolled,
            member_counts::active_without_key,
        ))
        .get_result(conn)
        .optional()?;
    let (total, without_second_factor, without_key) = counted.unwrap_or_default();
    Ok(MemberCounts {
        total,
        without_second_factor,
        without_key,
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
    /// Whether the user has an authenticator app.
    pub has_authenticator: bool,
    /// Whether they have a security key or passkey.
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
    let mut query = users::table
        .inner_join(workspaces::table)
        .left_join(totp_credentials::table)
        .into_boxed();
    if let Some(candidates) = search_candidates(conn, None, q, false)? {
        query = query.filter(users::id.eq_any(candidates));
    }
    query
        .filter(email_contains(q.trim(), is_postgres(conn)))
        .order(users::email.asc())
        .limit(limit)
        .select((
            users::id,
            users::email,
            workspaces::name,
            workspaces::slug,
            users::role,
            users::is_staff,
            users::authenticator_on,
            users::security_key_count.gt(0),
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

    #[test]
    fn a_text_around_the_at_is_the_reversed_part_before_it_and_the_part_after() {
        assert_eq!(
            around_the_at("Ann@Example.c"),
            Some(("nna%".to_owned(), "example.c%".to_owned()))
        );
        assert_eq!(
            around_the_at("jo_e%@ex"),
            Some(("\\%e\\_oj%".to_owned(), "ex%".to_owned()))
        );
        assert_eq!(
            around_the_at("ian@"),
            Some(("nai%".to_owned(), "%".to_owned()))
        );
        // Nothing before the `@`, none at all, or two: the usual search.
        for text in ["@example.com", "ann", "a@b@c"] {
            assert_eq!(around_the_at(text), None, "{text}");
        }
    }
}

//! `audit_events`: the append-only trail (the database refuses updates and deletes).

use diesel::prelude::*;

use crate::db::schema::audit_events;
use crate::db::{AnyConnection, native};
use crate::domain::{UserId, WorkspaceId};

/// One event's columns, as `audit::Event::record` has worked them out (serialized with
/// the columns' names for PostgreSQL's `accept_sign_in_code`).
#[derive(serde::Serialize)]
pub struct NewAuditEvent {
    pub created_at: i64,
    pub workspace_id: Option<WorkspaceId>,
    pub actor_id: Option<UserId>,
    pub actor_label: String,
    pub actor_kind: &'static str,
    pub subject_id: Option<UserId>,
    pub subject_label: Option<String>,
    pub kind: &'static str,
    pub ip: Option<String>,
    pub detail: String,
}

/// A stored event, as the audit log page shows it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditEventRow {
    pub id: i64,
    pub created_at: i64,
    pub actor_label: String,
    pub actor_kind: String,
    pub subject_label: Option<String>,
    pub kind: String,
    pub ip: Option<String>,
    pub detail: String,
}

pub struct AuditEvents;

/// An event's values for `INSERT` (one definition for one row and for many).
macro_rules! columns {
    ($event:expr) => {{
        let event: NewAuditEvent = $event;
        (
            audit_events::created_at.eq(event.created_at),
            audit_events::workspace_id.eq(event.workspace_id),
            audit_events::actor_id.eq(event.actor_id),
            audit_events::actor_label.eq(event.actor_label),
            audit_events::subject_id.eq(event.subject_id),
            audit_events::subject_label.eq(event.subject_label),
            audit_events::kind.eq(event.kind),
            audit_events::ip.eq(event.ip),
            audit_events::detail.eq(event.detail),
            audit_events::actor_kind.eq(event.actor_kind),
        )
    }};
}

impl AuditEvents {
    pub fn insert(conn: &mut AnyConnection, event: NewAuditEvent) -> QueryResult<()> {
        // Written at every step of every sign-in: on the backend's own connection, as a
        // single row, whose statement diesel caches (a `Vec`'s it prepares every time).
        let values = columns!(event);
        native!(conn, |c| diesel::insert_into(audit_events::table)
            .values(&values)
            .execute(c))
        .map(|_| ())
    }

    /// Appends `events` in order, in one statement per 500.
    pub fn insert_many(conn: &mut AnyConnection, events: Vec<NewAuditEvent>) -> QueryResult<()> {
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            let rows: Vec<_> = events
                .by_ref()
                .take(super::ROWS_PER_INSERT)
                .map(|event| columns!(event))
                .collect();
            native!(conn, |c| diesel::insert_into(audit_events::table)
                .values(&rows)
                .execute(c))?;
        }
        Ok(())
    }

    /// The page of `limit` of `workspace_id`'s events at `cursor`, newest first; only
    /// those of `kind`, and only those `member` (an email) caused or that happened to them,
    /// when given. A keyset page: each costs the same however old its events are (the
    /// indexes on `(workspace_id, id)`, `(workspace_id, kind, id)` and the two label
    /// indexes serve filter and order), where an OFFSET would read every newer event. A
    /// page of newer events that would come out short reaches the newest: that page is
    /// shown instead; older than the oldest shows the oldest.
    pub fn page(
        conn: &mut AnyConnection,
        workspace_id: &str,
        kind: Option<&str>,
        member: Option<&str>,
        cursor: AuditCursor,
        limit: i64,
    ) -> QueryResult<AuditPage> {
        let mut query = audit_events::table
            .filter(audit_events::workspace_id.eq(workspace_id))
            .select(AuditEventRow::as_select())
            .limit(limit + 1)
            .into_boxed();
        if let Some(kind) = kind {
            query = query.filter(audit_events::kind.eq(kind));
        }
        if let Some(member) = member {
            query = query.filter(
                audit_events::subject_label
                    .eq(member)
                    .or(audit_events::actor_label.eq(member)),
            );
        }
        query = match cursor {
            AuditCursor::Newest => query.order(audit_events::id.desc()),
            AuditCursor::OlderThan(id) => query
                .filter(audit_events::id.lt(id))
                .order(audit_events::id.desc()),
            AuditCursor::NewerThan(id) => query
                .filter(audit_events::id.gt(id))
                .order(audit_events::id.asc()),
            AuditCursor::Oldest => query.order(audit_events::id.asc()),
        };
        let mut rows = query.load(conn)?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let (more_newer, more_older) = match cursor {
            AuditCursor::Newest => (false, more),
            AuditCursor::OlderThan(_) if rows.is_empty() => {
                return Self::page(conn, workspace_id, kind, member, AuditCursor::Oldest, limit);
            }
            AuditCursor::OlderThan(_) => (true, more),
            AuditCursor::NewerThan(_) if !more && (rows.len() as i64) < limit => {
                return Self::page(conn, workspace_id, kind, member, AuditCursor::Newest, limit);
            }
            AuditCursor::NewerThan(_) | AuditCursor::Oldest => {
                rows.reverse();
                (more, matches!(cursor, AuditCursor::NewerThan(_)))
            }
        };
        Ok(AuditPage {
            rows,
            more_newer,
            more_older,
        })
    }
}

/// Where a page of the audit log starts, by event id (ids grow with time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditCursor {
    Newest,
    /// The events before this one.
    OlderThan(i64),
    /// The events after this one.
    NewerThan(i64),
    Oldest,
}

/// A page of events, newest first, and whether there are newer and older ones.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub rows: Vec<AuditEventRow>,
    pub more_newer: bool,
    pub more_older: bool,
}

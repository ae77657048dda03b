//! `audit_events`: the append-only trail (the database refuses updates and deletes).

use diesel::prelude::*;

use crate::db::schema::audit_events;
use crate::db::{AnyConnection, native};
use crate::domain::{UserId, WorkspaceId};

/// One event's columns, as `audit::Event::record` has worked them out.
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

    /// One page of `workspace_id`'s events, newest first, and whether there are more;
    /// only those of `kind`, and only those `member` (an email) caused or that happened
    /// to them, when given.
    pub fn page(
        conn: &mut AnyConnection,
        workspace_id: &str,
        kind: Option<&str>,
        member: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> QueryResult<(Vec<AuditEventRow>, bool)> {
        let mut query = audit_events::table
            .filter(audit_events::workspace_id.eq(workspace_id))
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
        let mut rows = query
            .order(audit_events::id.desc())
            .offset(offset)
            .limit(limit + 1)
            .select(AuditEventRow::as_select())
            .load(conn)?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok((rows, more))
    }
}

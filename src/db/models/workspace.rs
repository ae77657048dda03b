//! `workspaces`: an organisation's settings, "Require 2FA" among them.

use diesel::prelude::*;

use crate::db::AnyConnection;
use crate::db::schema::workspaces;
use crate::domain::WorkspaceId;
use crate::domain::policy::Enforcement;
use crate::domain::{Slug, WorkspaceName};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = workspaces)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub slug: String,
    pub name: String,
    pub created_at: i64,
    /// When "Require 2FA" was turned on; `None` while it is off.
    pub require_2fa_since: Option<i64>,
    /// The one instant from which members without 2FA are held at enrolment.
    pub require_2fa_deadline: Option<i64>,
    /// The grace period last chosen, in days (0–90), shared by both requirements.
    pub grace_days: i64,
    /// When "Members must use a security key or passkey" was turned on; `None` while off.
    pub require_keys_since: Option<i64>,
    /// The one instant from which members without a key are held at adding one.
    pub require_keys_deadline: Option<i64>,
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
            id: WorkspaceId::new(super::new_row_id()?),
            slug: slug.as_str().to_owned(),
            name: name.as_str().to_owned(),
            created_at: now,
            require_2fa_since: None,
            require_2fa_deadline: None,
            grace_days: 7,
            require_keys_since: None,
            require_keys_deadline: None,
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

    /// Sets both requirements and the shared grace period at once: each on (`since` and
    /// `deadline` set) or off (both `None`).
    pub fn set_requirements(
        conn: &mut AnyConnection,
        workspace_id: &str,
        two_factor: (Option<i64>, Option<i64>),
        keys: (Option<i64>, Option<i64>),
        grace_days: i64,
    ) -> QueryResult<()> {
        diesel::update(workspaces::table.find(workspace_id))
            .set((
                workspaces::require_2fa_since.eq(two_factor.0),
                workspaces::require_2fa_deadline.eq(two_factor.1),
                workspaces::require_keys_since.eq(keys.0),
                workspaces::require_keys_deadline.eq(keys.1),
                workspaces::grace_days.eq(grace_days),
            ))
            .execute(conn)
            .map(|_| ())
    }

    /// "Require 2FA" while it is on.
    pub fn enforcement(&self) -> Option<Enforcement> {
        Enforcement::of(self.require_2fa_since, self.require_2fa_deadline)
    }

    /// "Members must use a security key or passkey" while it is on.
    pub fn key_enforcement(&self) -> Option<Enforcement> {
        Enforcement::of(self.require_keys_since, self.require_keys_deadline)
    }
}

//! The workspace admin's pages: members, their 2FA, roles and deactivation (`members`),
//! invitations (`invites`), "Require 2FA" with a grace period and exemptions
//! (`workspace`), and the audit log (`audit`).
//!
//! Invariants:
//! - Every handler takes `WorkspaceAdmin`: fully signed in (2FA verified where the admin
//!   has it) and an admin, checked on the server for every request.
//! - Every id in a path or form is looked up within the admin's own workspace; an id of
//!   another workspace answers exactly like one that does not exist (404).
//! - Every change is written with its audit event in one transaction.

pub mod audit;
pub mod invites;
pub mod members;
pub mod workspace;

use crate::auth::reset::ResetError;
use crate::db::models::{Account, User};
use crate::web::error::AppError;

/// A page number from the query string: 1 or more.
fn page_number(page: Option<i64>) -> i64 {
    page.unwrap_or(1).clamp(1, i64::MAX / 1_000)
}

/// A member of the admin's own workspace, or 404 (also for another workspace's ids).
fn member_of(
    conn: &mut crate::db::AnyConnection,
    admin: &Account,
    id: &str,
) -> Result<User, AppError> {
    match User::find(conn, id)? {
        Some(user) if user.workspace_id == admin.workspace.id => Ok(user),
        _ => Err(AppError::NotFound),
    }
}

/// A refused reset as the page says it (the support pages answer the same way).
pub fn reset_error(e: ResetError) -> AppError {
    match e {
        ResetError::NotEnrolled(_) => AppError::Conflict(e.to_string()),
        ResetError::Database(e) => e.into(),
    }
}

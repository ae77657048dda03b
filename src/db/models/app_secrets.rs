//! `app_secrets`: installation-wide values (the cookie key, the recorded encryption key id).

use diesel::prelude::*;

use super::is_unique_violation;
use crate::db::AnyConnection;
use crate::db::schema::app_secrets;

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
                app_secrets::created_at.eq(crate::db::now()),
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

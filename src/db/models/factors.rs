//! "Has a second factor", in SQL: the one definition every query uses to decide whether a
//! user is enrolled (the account of every request, the members page's filter and status,
//! the workspace's count of members without 2FA, the support search, the enforcement
//! mail's recipients).
//!
//! It is the SQL twin of [`crate::domain::Factors::any`], and must say the same: an
//! authenticator app or at least one security key. A kind of second factor added there is
//! added here too, as one more `.or(exists(…))`, and nowhere else. Recovery codes do not
//! count, as there.

use diesel::dsl::{Eq, Filter, Or, exists};
use diesel::prelude::*;
use diesel::query_source::{Alias, AliasedField};

use crate::db::schema::{security_keys, totp_credentials, users};

// The subquery reads the factor tables under their own names, so that it also fits a query
// that joins them itself (the members page joins `totp_credentials` for the date shown).
diesel::alias!(totp_credentials as factor_totp: FactorTotp);
diesel::alias!(security_keys as factor_keys: FactorKeys);

/// "Has an authenticator app": a lookup by primary key.
pub type HasAuthenticator = exists<
    Filter<Alias<FactorTotp>, Eq<AliasedField<FactorTotp, totp_credentials::user_id>, users::id>>,
>;

/// "Has a security key or passkey": a lookup in the keys' index on `user_id`.
pub type HasSecurityKey = exists<
    Filter<Alias<FactorKeys>, Eq<AliasedField<FactorKeys, security_keys::user_id>, users::id>>,
>;

/// The type of [`has_second_factor`]: a boolean expression over the row of `users` in the
/// surrounding query.
pub type HasSecondFactor = Or<HasAuthenticator, HasSecurityKey>;

/// Whether the user of the surrounding query's `users` row has a second factor:
/// `EXISTS (… totp_credentials AS factor_totp …) OR EXISTS (… security_keys AS factor_keys …)`,
/// each correlated on `users.id`.
/// Usable in `.filter()` (also of boxed queries, and negated with `diesel::dsl::not`) and in
/// `.select()`. Two index lookups.
pub fn has_second_factor() -> HasSecondFactor {
    has_authenticator().or(has_security_key())
}

/// Whether the surrounding query's user has an authenticator app (which kind, for the
/// members overview; "has 2FA" is [`has_second_factor`]).
pub fn has_authenticator() -> HasAuthenticator {
    exists(factor_totp.filter(factor_totp.field(totp_credentials::user_id).eq(users::id)))
}

/// Whether the surrounding query's user has at least one security key or passkey.
pub fn has_security_key() -> HasSecurityKey {
    exists(factor_keys.filter(factor_keys.field(security_keys::user_id).eq(users::id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;
    use diesel::pg::Pg;
    use diesel::sqlite::Sqlite;

    #[test]
    fn the_predicate_is_a_correlated_exists_on_the_users_row() {
        let query = users::table
            .filter(diesel::dsl::not(has_second_factor()))
            .select(users::id);
        let sql = debug_query::<Sqlite, _>(&query).to_string();
        assert!(
            sql.contains(
                "NOT ((EXISTS (SELECT `factor_totp`.`user_id`, `factor_totp`.`secret_ciphertext`, \
                 `factor_totp`.`key_id`, `factor_totp`.`last_step`, `factor_totp`.`enabled_at` \
                 FROM `totp_credentials` AS `factor_totp` \
                 WHERE (`factor_totp`.`user_id` = `users`.`id`)) OR EXISTS (SELECT "
            ) && sql.contains(
                "FROM `security_keys` AS `factor_keys` \
                 WHERE (`factor_keys`.`user_id` = `users`.`id`))))"
            ),
            "{sql}"
        );
        let query = users::table.select(has_second_factor());
        let sql = debug_query::<Pg, _>(&query).to_string();
        assert!(
            sql.starts_with("SELECT (EXISTS (SELECT ")
                && sql.ends_with(
                    "FROM \"security_keys\" AS \"factor_keys\" \
                     WHERE (\"factor_keys\".\"user_id\" = \"users\".\"id\"))) \
                     FROM \"users\" -- binds: []"
                ),
            "{sql}"
        );
    }
}

//! "Has a second factor", in SQL: the one definition every query uses to decide whether a
//! user is enrolled (the account of every request, the members page's filter and status,
//! the workspace's count of members without 2FA, the support search, the enforcement
//! mail's recipients).
//!
//! It is the SQL twin of [`crate::domain::Factors::any`], and must say the same: a kind of
//! second factor added there (security keys, issue 12) is added here too, as
//! `.or(exists(security_keys …))`, and nowhere else. Recovery codes do not count, as there.

use diesel::dsl::{Eq, Filter, exists};
use diesel::prelude::*;
use diesel::query_source::{Alias, AliasedField};

use crate::db::schema::{totp_credentials, users};

// The subquery reads the factor tables under their own names, so that it also fits a query
// that joins them itself (the members page joins `totp_credentials` for the date shown).
diesel::alias!(totp_credentials as factor_totp: FactorTotp);

/// The type of [`has_second_factor`]: a boolean expression over the row of `users` in the
/// surrounding query.
pub type HasSecondFactor = exists<
    Filter<Alias<FactorTotp>, Eq<AliasedField<FactorTotp, totp_credentials::user_id>, users::id>>,
>;

/// Whether the user of the surrounding query's `users` row has a second factor:
/// `EXISTS (SELECT … FROM totp_credentials AS factor_totp WHERE factor_totp.user_id =
/// users.id)`.
/// Usable in `.filter()` (also of boxed queries, and negated with `diesel::dsl::not`) and in
/// `.select()`. A lookup by primary key, so as cheap as the join it replaces.
pub fn has_second_factor() -> HasSecondFactor {
    exists(factor_totp.filter(factor_totp.field(totp_credentials::user_id).eq(users::id)))
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
                "NOT (EXISTS (SELECT `factor_totp`.`user_id`, `factor_totp`.`secret_ciphertext`, \
                 `factor_totp`.`key_id`, `factor_totp`.`last_step`, `factor_totp`.`enabled_at` \
                 FROM `totp_credentials` AS `factor_totp` \
                 WHERE (`factor_totp`.`user_id` = `users`.`id`)))"
            ),
            "{sql}"
        );
        let query = users::table.select(has_second_factor());
        let sql = debug_query::<Pg, _>(&query).to_string();
        assert!(
            sql.starts_with("SELECT EXISTS (SELECT ")
                && sql.ends_with(
                    "FROM \"totp_credentials\" AS \"factor_totp\" \
                     WHERE (\"factor_totp\".\"user_id\" = \"users\".\"id\")) \
                     FROM \"users\" -- binds: []"
                ),
            "{sql}"
        );
    }
}

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

use super::Invalid;

/// A user's role in their workspace. (Support staff is a separate, global flag.) Stored as
/// its name (`users.role`); a row with any other value fails to load rather than being
/// read as some role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum Role {
    Member,
    Admin,
}

impl Role {
    pub fn parse(input: &str) -> Result<Role, Invalid> {
        match input.trim() {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            _ => Err(Invalid("The role is either member or admin.")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

impl<DB: Backend> ToSql<Text, DB> for Role
where
    str: ToSql<Text, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        self.as_str().to_sql(out)
    }
}

impl<DB: Backend> FromSql<Text, DB> for Role
where
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Role> {
        let stored = String::from_sql(bytes)?;
        Role::parse(&stored).map_err(|_| format!("unknown role {stored:?} in a stored row").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for role in [Role::Member, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()).unwrap(), role);
        }
        assert!(Role::parse("owner").is_err());
    }
}

use super::Invalid;

/// A user's role in their workspace. (Support staff is a separate, global flag.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

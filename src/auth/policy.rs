//! Who must have two-factor sign-in, and from when: the rules are pure and live in the
//! domain layer ([`crate::domain::policy`]), which the database models use too; they are
//! named here as well for the auth code's callers.

pub mod change;

pub use crate::domain::policy::{DAY, Enforcement, Requirement, RequirementKind, days_left};

//! Who must have two-factor sign-in, and from when.
//!
//! Rules (CONTRACT.md, "Enforcement"):
//! - Support staff are always required to have 2FA: no grace period, no exemption.
//! - A workspace that requires 2FA has one fixed deadline for everyone (stored when an
//!   admin turned enforcement on, moved only by an admin changing the grace period).
//!   Before it, members without 2FA are in their grace period; from it, they are held at
//!   enrolment (`must_enrol`).
//! - A member whose 2FA is reset while their workspace requires it gets no grace period:
//!   they had 2FA, so they are held at enrolment at once.
//! - An admin may exempt a member until a date; the exemption lapses by itself.
//! - A demo account is outside workspace policy (2FA is optional for it): it cannot change
//!   its second factors, so holding it at enrolment would lock every visitor out of it.
//! - "Members must use a security key or passkey" ([`Requirement::key_of`]) has the same
//!   mechanics with its own since/deadline pair (the grace days are shared), and the same
//!   exemption covers it. Staff follow their workspace here: their always-on rule is about
//!   having 2FA, which a key already is.
//!
//! Pure functions of the stored facts and the policy clock, so the guard can apply them to
//! every request of a session that is already open, not only at sign-in. A leaf: the
//! database reads the facts and passes them in (`Workspace::enforcement`).

pub const DAY: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nobody requires 2FA of this user.
    Optional,
    /// The workspace requires 2FA from `deadline`; until then a member may still enrol.
    Grace { deadline: i64, days_left: i64 },
    /// 2FA is required now.
    Required,
    /// The workspace requires 2FA, but an admin exempted this member until `until`.
    Exempt { until: i64 },
}

/// Which of a workspace's two requirements: "Require 2FA" or "Members must use a security
/// key or passkey" (phishing-resistant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequirementKind {
    TwoFactor,
    SecurityKey,
}

/// A workspace's "Require 2FA" while it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforcement {
    /// When it was turned on.
    pub since: i64,
    /// From when members without 2FA are held at enrolment.
    pub deadline: i64,
}

impl Enforcement {
    /// From a workspace's two stored columns: on only when both are set.
    pub fn of(since: Option<i64>, deadline: Option<i64>) -> Option<Enforcement> {
        Some(Enforcement {
            since: since?,
            deadline: deadline?,
        })
    }
}

impl Requirement {
    pub fn of(
        is_staff: bool,
        is_demo: bool,
        enforcement: Option<Enforcement>,
        exempt_until: Option<i64>,
        reset_at: Option<i64>,
        now: i64,
    ) -> Self {
        if is_staff {
            return Requirement::Required;
        }
        if is_demo {
            return Requirement::Optional;
        }
        let Some(Enforcement { since, deadline }) = enforcement else {
            return Requirement::Optional;
        };
        match exempt_until {
            Some(until) if until > now => Requirement::Exempt { until },
            _ if reset_at.is_some_and(|at| at >= since) => Requirement::Required,
            _ if now < deadline => Requirement::Grace {
                deadline,
                days_left: days_left(deadline, now),
            },
            _ => Requirement::Required,
        }
    }
}

impl Requirement {
    /// What "Members must use a security key or passkey" asks of a user: the rules of
    /// [`Requirement::of`] for a member, staff included (see the module's rules), so an
    /// exemption and a reset under enforcement count as they do for 2FA.
    pub fn key_of(
        is_demo: bool,
        enforcement: Option<Enforcement>,
        exempt_until: Option<i64>,
        reset_at: Option<i64>,
        now: i64,
    ) -> Self {
        Requirement::of(false, is_demo, enforcement, exempt_until, reset_at, now)
    }
}

/// Whole days left before `deadline`, rounded up: "1 day" until the last second.
pub fn days_left(deadline: i64, now: i64) -> i64 {
    (deadline - now + DAY - 1).div_euclid(DAY).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_305_600;

    fn on(deadline: i64) -> Option<Enforcement> {
        Some(Enforcement {
            since: NOW - DAY,
            deadline,
        })
    }

    #[test]
    fn without_enforcement_2fa_is_optional() {
        assert_eq!(
            Requirement::of(false, false, None, None, None, NOW),
            Requirement::Optional
        );
        assert_eq!(
            Requirement::of(false, false, None, Some(NOW + DAY), Some(NOW), NOW),
            Requirement::Optional
        );
    }

    #[test]
    fn staff_are_always_required_even_when_exempted() {
        assert_eq!(
            Requirement::of(true, false, None, None, None, NOW),
            Requirement::Required
        );
        assert_eq!(
            Requirement::of(true, false, on(NOW + 7 * DAY), Some(NOW + DAY), None, NOW),
            Requirement::Required
        );
    }

    #[test]
    fn the_grace_period_counts_whole_days_down_to_the_deadline() {
        let deadline = NOW + 7 * DAY;
        assert_eq!(
            Requirement::of(false, false, on(deadline), None, None, NOW),
            Requirement::Grace {
                deadline,
                days_left: 7
            }
        );
        assert_eq!(days_left(deadline, NOW + 1), 7);
        assert_eq!(days_left(deadline, NOW + DAY), 6);
        assert_eq!(days_left(deadline, deadline - 1), 1);
        assert_eq!(days_left(deadline, deadline), 0);
        assert_eq!(
            Requirement::of(false, false, on(deadline), None, None, deadline),
            Requirement::Required
        );
    }

    #[test]
    fn a_member_reset_under_enforcement_gets_no_grace() {
        let deadline = NOW + 7 * DAY;
        assert_eq!(
            Requirement::of(false, false, on(deadline), None, Some(NOW), NOW),
            Requirement::Required
        );
        // A reset before enforcement began earns the grace period like everyone else.
        assert!(matches!(
            Requirement::of(false, false, on(deadline), None, Some(NOW - 2 * DAY), NOW),
            Requirement::Grace { .. }
        ));
    }

    #[test]
    fn a_demo_account_is_never_held_at_enrolment() {
        assert_eq!(
            Requirement::of(false, true, on(NOW - DAY), None, Some(NOW), NOW),
            Requirement::Optional
        );
        assert_eq!(
            Requirement::of(false, true, on(NOW + DAY), None, None, NOW),
            Requirement::Optional
        );
    }

    #[test]
    fn the_key_requirement_holds_staff_only_when_their_workspace_asks() {
        assert_eq!(
            Requirement::key_of(false, None, None, None, NOW),
            Requirement::Optional
        );
        assert_eq!(
            Requirement::key_of(false, on(NOW - DAY), None, None, NOW),
            Requirement::Required
        );
        assert_eq!(
            Requirement::key_of(true, on(NOW - DAY), None, None, NOW),
            Requirement::Optional
        );
        assert_eq!(
            Requirement::key_of(false, on(NOW - DAY), Some(NOW + DAY), None, NOW),
            Requirement::Exempt { until: NOW + DAY }
        );
        assert_eq!(
            Requirement::key_of(false, on(NOW + DAY), None, Some(NOW), NOW),
            Requirement::Required
        );
    }

    #[test]
    fn an_exemption_holds_until_it_lapses() {
        let deadline = NOW - DAY;
        let until = NOW + DAY;
        assert_eq!(
            Requirement::of(false, false, on(deadline), Some(until), Some(NOW), NOW),
            Requirement::Exempt { until }
        );
        assert_eq!(
            Requirement::of(false, false, on(deadline), Some(until), None, until),
            Requirement::Required
        );
    }
}

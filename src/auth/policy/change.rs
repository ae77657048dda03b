//! What an admin's change to "Require 2FA" means: the settings to store, the audit event
//! and its detail, what the admin is told, and whether members are mailed.
//!
//! Rules (CONTRACT.md, "Enforcement"):
//! - Turning it on fixes one deadline for everyone, the grace period from now, and mails
//!   the members.
//! - A new grace period while it is on moves that deadline, counted from when it was
//!   turned on (not from now); members are not mailed again.
//! - Turning it off needs a confirmation and keeps the grace period for the next time;
//!   it needs no grace period in the form (a script may send just `confirm=yes`).
//! - A new grace period while it is off is only saved, for when it is turned on.
//! - A form that asks for what already holds changes nothing (and records nothing).
//!
//! Pure: the stored settings, the form and the policy clock in, a value out. The handler
//! checks that the settings still hold when it writes (see [`EnforcementSettings::version`]).

use super::DAY;
use crate::audit::Kind;
use crate::db::models::Workspace;
use crate::domain::{GraceDays, Invalid};
use crate::words::date_time;

/// A workspace's "Require 2FA" settings as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnforcementSettings {
    /// When it was turned on; `None` while it is off.
    pub since: Option<i64>,
    /// From when members without 2FA are held at enrolment.
    pub deadline: Option<i64>,
    /// The grace period last chosen, kept while it is off.
    pub grace_days: i64,
}

impl EnforcementSettings {
    pub fn of(workspace: &Workspace) -> EnforcementSettings {
        EnforcementSettings {
            since: workspace.require_2fa_since,
            deadline: workspace.require_2fa_deadline,
            grace_days: workspace.grace_days,
        }
    }

    /// All of them in one string, sent with the form: a change made from a form loaded
    /// before another admin's change is refused instead of silently undoing it.
    pub fn version(&self) -> String {
        format!(
            "{}-{}-{}",
            self.since.unwrap_or(0),
            self.deadline.unwrap_or(0),
            self.grace_days
        )
    }
}

/// What the workspace form asks for.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// `require_2fa=on`.
    pub require_2fa: bool,
    /// `grace_days` as typed.
    pub grace_days: &'a str,
    /// `confirm=yes`.
    pub confirmed: bool,
}

/// Why the form changes nothing and must be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    GraceDays(Invalid),
    /// Turning it off was not confirmed; the page says what it would affect
    /// ([`turn_off_warning`]).
    NotConfirmed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The form asks for what already holds.
    Nothing,
    Change(Change),
}

/// A change to make, with everything that is said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub settings: EnforcementSettings,
    pub event: Kind,
    /// The audit event's detail; empty when its kind says it all.
    pub detail: String,
    /// The notice the admin reads after the redirect.
    pub notice: String,
    /// Members without 2FA are mailed that they must set it up by this deadline.
    pub mail_deadline: Option<i64>,
}

/// Decides what `asked` means for a workspace whose settings are `current`.
pub fn decide(
    current: EnforcementSettings,
    asked: Asked<'_>,
    now: i64,
) -> Result<Decision, Refusal> {
    let grace = if !asked.require_2fa && asked.grace_days.trim().is_empty() {
        current.grace_days
    } else {
        GraceDays::parse(asked.grace_days)
            .map_err(Refusal::GraceDays)?
            .days()
    };
    let change = match (current.since, asked.require_2fa) {
        (None, true) => {
            let deadline = now + grace * DAY;
            Change {
                settings: EnforcementSettings {
                    since: Some(now),
                    deadline: Some(deadline),
                    grace_days: grace,
                },
                event: Kind::EnforcementEnabled,
                detail: format!(
                    "grace period {grace} days; members without 2FA are held at enrolment from {}",
                    date_time(deadline)
                ),
                notice: format!(
                    "Two-factor sign-in is now required. Members without it must set it up by {}.",
                    date_time(deadline)
                ),
                mail_deadline: Some(deadline),
            }
        }
        (Some(since), true) if grace != current.grace_days => {
            let deadline = since + grace * DAY;
            Change {
                settings: EnforcementSettings {
                    since: Some(since),
                    deadline: Some(deadline),
                    grace_days: grace,
                },
                event: Kind::EnforcementDeadlineChanged,
                detail: format!(
                    "grace period {} → {grace} days; deadline {} → {}",
                    current.grace_days,
                    current.deadline.map(date_time).unwrap_or_default(),
                    date_time(deadline)
                ),
                notice: format!(
                    "The grace period is now {grace} days: the deadline is {}.",
                    date_time(deadline)
                ),
                mail_deadline: None,
            }
        }
        (Some(_), true) => return Ok(Decision::Nothing),
        (Some(_), false) if !asked.confirmed => return Err(Refusal::NotConfirmed),
        (Some(_), false) => Change {
            settings: EnforcementSettings {
                since: None,
                deadline: None,
                grace_days: current.grace_days,
            },
            event: Kind::EnforcementDisabled,
            detail: String::new(),
            notice: "Two-factor sign-in is no longer required in this workspace.".to_owned(),
            mail_deadline: None,
        },
        (None, false) if grace != current.grace_days => Change {
            settings: EnforcementSettings {
                since: None,
                deadline: None,
                grace_days: grace,
            },
            event: Kind::GracePeriodChanged,
            detail: format!(
                "grace period {} → {grace} days, for when 2FA is required",
                current.grace_days
            ),
            notice: format!(
                "Saved: when you turn it on, members will have {grace} days to set it up."
            ),
            mail_deadline: None,
        },
        (None, false) => return Ok(Decision::Nothing),
    };
    Ok(Decision::Change(change))
}

/// Why turning it off needs a confirmation: how many members it affects.
pub fn turn_off_warning(members: i64, without_2fa: i64) -> String {
    format!(
        "Turning off “Require 2FA” affects all {members} members of this workspace: they will be able to turn two-factor sign-in off, and the {without_2fa} who have not set it up will no longer be asked to. Tick “Yes, turn it off” to confirm. Nothing was changed."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22T00:00:00Z.
    const NOW: i64 = 1_795_305_600;

    const OFF: EnforcementSettings = EnforcementSettings {
        since: None,
        deadline: None,
        grace_days: 14,
    };

    fn on_since(since: i64, grace_days: i64) -> EnforcementSettings {
        EnforcementSettings {
            since: Some(since),
            deadline: Some(since + grace_days * DAY),
            grace_days,
        }
    }

    fn asked(require_2fa: bool, grace_days: &str, confirmed: bool) -> Asked<'_> {
        Asked {
            require_2fa,
            grace_days,
            confirmed,
        }
    }

    fn change(decision: Result<Decision, Refusal>) -> Change {
        match decision {
            Ok(Decision::Change(change)) => change,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn turning_it_on_fixes_one_deadline_from_now_and_mails_the_members() {
        let on = change(decide(OFF, asked(true, "7", false), NOW));
        let deadline = NOW + 7 * DAY;
        assert_eq!(on.settings, on_since(NOW, 7));
        assert_eq!(on.event, Kind::EnforcementEnabled);
        assert_eq!(
            on.detail,
            "grace period 7 days; members without 2FA are held at enrolment from 29 November 2026, 00:00 UTC"
        );
        assert_eq!(
            on.notice,
            "Two-factor sign-in is now required. Members without it must set it up by 29 November 2026, 00:00 UTC."
        );
        assert_eq!(on.mail_deadline, Some(deadline));
    }

    #[test]
    fn a_new_grace_period_moves_the_deadline_from_when_it_was_turned_on() {
        let since = NOW - 3 * DAY;
        let moved = change(decide(on_since(since, 7), asked(true, " 10 ", false), NOW));
        assert_eq!(moved.settings, on_since(since, 10));
        assert_eq!(moved.event, Kind::EnforcementDeadlineChanged);
        assert_eq!(
            moved.detail,
            "grace period 7 → 10 days; deadline 26 November 2026, 00:00 UTC → 29 November 2026, 00:00 UTC"
        );
        assert_eq!(
            moved.notice,
            "The grace period is now 10 days: the deadline is 29 November 2026, 00:00 UTC."
        );
        assert_eq!(
            moved.mail_deadline, None,
            "members were mailed when it was turned on"
        );
    }

    #[test]
    fn turning_it_off_needs_a_confirmation_and_keeps_the_grace_period() {
        let current = on_since(NOW - DAY, 7);
        assert_eq!(
            decide(current, asked(false, "7", false), NOW),
            Err(Refusal::NotConfirmed)
        );
        let off = change(decide(current, asked(false, "7", true), NOW));
        assert_eq!(
            off.settings,
            EnforcementSettings {
                since: None,
                deadline: None,
                grace_days: 7
            }
        );
        assert_eq!(off.event, Kind::EnforcementDisabled);
        assert_eq!(off.detail, "");
        assert_eq!(
            off.notice,
            "Two-factor sign-in is no longer required in this workspace."
        );
        assert_eq!(off.mail_deadline, None);
    }

    #[test]
    fn turning_it_off_needs_no_grace_period_but_refuses_a_bad_one() {
        let current = on_since(NOW - DAY, 7);
        let off = change(decide(current, asked(false, "  ", true), NOW));
        assert_eq!(off.settings.grace_days, 7);
        assert!(matches!(
            decide(current, asked(false, "91", true), NOW),
            Err(Refusal::GraceDays(_))
        ));
        assert!(matches!(
            decide(OFF, asked(true, "", false), NOW),
            Err(Refusal::GraceDays(_))
        ));
    }

    #[test]
    fn a_grace_period_chosen_while_it_is_off_is_saved_for_later() {
        let saved = change(decide(OFF, asked(false, "30", false), NOW));
        assert_eq!(
            saved.settings,
            EnforcementSettings {
                grace_days: 30,
                ..OFF
            }
        );
        assert_eq!(saved.event, Kind::GracePeriodChanged);
        assert_eq!(
            saved.detail,
            "grace period 14 → 30 days, for when 2FA is required"
        );
        assert_eq!(
            saved.notice,
            "Saved: when you turn it on, members will have 30 days to set it up."
        );
        assert_eq!(saved.mail_deadline, None);
    }

    #[test]
    fn asking_for_what_already_holds_changes_nothing() {
        let current = on_since(NOW - DAY, 7);
        assert_eq!(
            decide(current, asked(true, "7", true), NOW),
            Ok(Decision::Nothing)
        );
        assert_eq!(
            decide(OFF, asked(false, "14", true), NOW),
            Ok(Decision::Nothing)
        );
        assert_eq!(
            decide(OFF, asked(false, "", false), NOW),
            Ok(Decision::Nothing)
        );
    }

    #[test]
    fn the_version_changes_with_every_setting() {
        let current = on_since(NOW, 7);
        assert_eq!(OFF.version(), "0-0-14");
        assert_eq!(current.version(), format!("{NOW}-{}-7", NOW + 7 * DAY));
        let versions = [
            current,
            EnforcementSettings {
                since: Some(NOW + 1),
                ..current
            },
            EnforcementSettings {
                deadline: Some(NOW),
                ..current
            },
            EnforcementSettings {
                grace_days: 8,
                ..current
            },
        ]
        .map(|s| s.version());
        for (i, a) in versions.iter().enumerate() {
            for b in &versions[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}

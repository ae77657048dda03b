//! What an admin's change to the workspace's requirements means — "Require 2FA" and
//! "Members must use a security key or passkey" — the settings to store, the audit events
//! and their details, what the admin is told, and whom to mail.
//!
//! Rules (CONTRACT.md, "Enforcement"; the key requirement has the same mechanics with its
//! own since/deadline pair, and the grace period is shared):
//! - Turning one on fixes one deadline for everyone, the grace period from now, and mails
//!   the members who lack what it asks (a key covers both: when both are turned on at once,
//!   only the key's mail is sent).
//! - A new grace period while one is on moves its deadline, counted from when it was
//!   turned on (not from now); members are not mailed again.
//! - Turning one off needs a confirmation and keeps the grace period for the next time;
//!   it needs no grace period in the form (a script may send just `confirm=yes`).
//! - A new grace period while both are off is only saved, for when one is turned on.
//! - A form that asks for what already holds changes nothing (and records nothing).
//!
//! Pure: the stored settings, the form and the policy clock in, a value out. The handler
//! checks that the settings still hold when it writes (see [`EnforcementSettings::version`]).

use super::{DAY, RequirementKind};
use crate::audit::Kind;
use crate::db::models::Workspace;
use crate::domain::{GraceDays, Invalid};
use crate::words::date_time;

/// A workspace's requirement settings as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnforcementSettings {
    /// When "Require 2FA" was turned on; `None` while it is off.
    pub since: Option<i64>,
    /// From when members without 2FA are held at enrolment.
    pub deadline: Option<i64>,
    /// When "Members must use a security key or passkey" was turned on.
    pub keys_since: Option<i64>,
    /// From when members without a key are held at adding one.
    pub keys_deadline: Option<i64>,
    /// The grace period last chosen, kept while both are off; shared by both.
    pub grace_days: i64,
}

impl EnforcementSettings {
    pub fn of(workspace: &Workspace) -> EnforcementSettings {
        EnforcementSettings {
            since: workspace.require_2fa_since,
            deadline: workspace.require_2fa_deadline,
            keys_since: workspace.require_keys_since,
            keys_deadline: workspace.require_keys_deadline,
            grace_days: workspace.grace_days,
        }
    }

    /// All of them in one string, sent with the form: a change made from a form loaded
    /// before another admin's change is refused instead of silently undoing it.
    pub fn version(&self) -> String {
        format!(
            "{}-{}-{}-{}-{}",
            self.since.unwrap_or(0),
            self.deadline.unwrap_or(0),
            self.grace_days,
            self.keys_since.unwrap_or(0),
            self.keys_deadline.unwrap_or(0),
        )
    }

    fn window(&self, kind: RequirementKind) -> (Option<i64>, Option<i64>) {
        match kind {
            RequirementKind::TwoFactor => (self.since, self.deadline),
            RequirementKind::SecurityKey => (self.keys_since, self.keys_deadline),
        }
    }
}

/// What the workspace form asks for.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// `require_2fa=on`.
    pub require_2fa: bool,
    /// `require_phishing_resistant=on`.
    pub require_keys: bool,
    /// `grace_days` as typed.
    pub grace_days: &'a str,
    /// `confirm=yes`.
    pub confirmed: bool,
}

/// Why the form changes nothing and must be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    GraceDays(Invalid),
    /// Turning a requirement off was not confirmed; the page says what it would affect
    /// ([`turn_off_warning`]).
    NotConfirmed {
        two_factor: bool,
        keys: bool,
    },
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
    /// The audit events, each with its detail (empty when its kind says it all).
    pub events: Vec<(Kind, String)>,
    /// The notice the admin reads after the redirect.
    pub notice: String,
    /// Members who lack what a requirement asks are mailed that they must meet it by
    /// this deadline.
    pub mails: Vec<(RequirementKind, i64)>,
}

/// The words of one requirement.
struct Words {
    kind: RequirementKind,
    enabled: Kind,
    disabled: Kind,
    moved: Kind,
    /// "members without 2FA are held at enrolment"
    held: &'static str,
    /// "Two-factor sign-in is now required. Members without it must set it up by"
    now_required: &'static str,
    /// "the deadline" (for the moved notice)
    deadline: &'static str,
    off: &'static str,
}

const TWO_FACTOR: Words = Words {
    kind: RequirementKind::TwoFactor,
    enabled: Kind::EnforcementEnabled,
    disabled: Kind::EnforcementDisabled,
    moved: Kind::EnforcementDeadlineChanged,
    held: "members without 2FA are held at enrolment",
    now_required: "Two-factor sign-in is now required. Members without it must set it up by",
    deadline: "the deadline",
    off: "Two-factor sign-in is no longer required in this workspace.",
};

const KEYS: Words = Words {
    kind: RequirementKind::SecurityKey,
    enabled: Kind::KeysRequiredEnabled,
    disabled: Kind::KeysRequiredDisabled,
    moved: Kind::KeysRequiredDeadlineChanged,
    held: "members without a security key are held at adding one",
    now_required: "A security key or passkey is now required. Members without one must add it by",
    deadline: "the deadline for a security key",
    off: "A security key or passkey is no longer required in this workspace.",
};

/// One requirement's new window and what is said about it, if it changes.
struct Step {
    window: (Option<i64>, Option<i64>),
    said: Option<(Kind, String, String)>,
    mail: Option<i64>,
}

fn step(words: &Words, current: &EnforcementSettings, on: bool, grace: i64, now: i64) -> Step {
    let window = current.window(words.kind);
    match (window.0, on) {
        (None, true) => {
            let deadline = now + grace * DAY;
            Step {
                window: (Some(now), Some(deadline)),
                said: Some((
                    words.enabled,
                    format!(
                        "grace period {grace} days; {} from {}",
                        words.held,
                        date_time(deadline)
                    ),
                    format!("{} {}.", words.now_required, date_time(deadline)),
                )),
                mail: Some(deadline),
            }
        }
        (Some(since), true) if grace != current.grace_days => {
            let deadline = since + grace * DAY;
            Step {
                window: (Some(since), Some(deadline)),
                said: Some((
                    words.moved,
                    format!(
                        "grace period {} → {grace} days; deadline {} → {}",
                        current.grace_days,
                        window.1.map(date_time).unwrap_or_default(),
                        date_time(deadline)
                    ),
                    format!(
                        "The grace period is now {grace} days: {} is {}.",
                        words.deadline,
                        date_time(deadline)
                    ),
                )),
                mail: None,
            }
        }
        (Some(_), false) => Step {
            window: (None, None),
            said: Some((words.disabled, String::new(), words.off.to_owned())),
            mail: None,
        },
        (Some(_), true) | (None, false) => Step {
            window,
            said: None,
            mail: None,
        },
    }
}

/// Decides what `asked` means for a workspace whose settings are `current`.
pub fn decide(
    current: EnforcementSettings,
    asked: Asked<'_>,
    now: i64,
) -> Result<Decision, Refusal> {
    let any_on = asked.require_2fa || asked.require_keys;
    let grace = if !any_on && asked.grace_days.trim().is_empty() {
        current.grace_days
    } else {
        GraceDays::parse(asked.grace_days)
            .map_err(Refusal::GraceDays)?
            .days()
    };
    let two_factor_off = current.since.is_some() && !asked.require_2fa;
    let keys_off = current.keys_since.is_some() && !asked.require_keys;
    if (two_factor_off || keys_off) && !asked.confirmed {
        return Err(Refusal::NotConfirmed {
            two_factor: two_factor_off,
            keys: keys_off,
        });
    }
    let two_factor = step(&TWO_FACTOR, &current, asked.require_2fa, grace, now);
    let keys = step(&KEYS, &current, asked.require_keys, grace, now);

    let mut events = Vec::new();
    let mut notices = Vec::new();
    for (kind, detail, notice) in [two_factor.said, keys.said].into_iter().flatten() {
        events.push((kind, detail));
        notices.push(notice);
    }
    // Turning a requirement off keeps the grace period for the next time, as long as
    // nothing is left on that would use a new one.
    let grace_days = if !any_on && (two_factor_off || keys_off) {
        current.grace_days
    } else {
        grace
    };
    // A new grace period with nothing on to apply it to: saved for later, and said so.
    if grace_days != current.grace_days && events.is_empty() {
        events.push((
            Kind::GracePeriodChanged,
            format!(
                "grace period {} → {grace} days, for when 2FA or a security key is required",
                current.grace_days
            ),
        ));
        notices.push(format!(
            "Saved: when you turn a requirement on, members will have {grace} days to meet it."
        ));
    }
    if events.is_empty() {
        return Ok(Decision::Nothing);
    }
    let mut mails = Vec::new();
    // A key is a second factor too: whoever lacks 2FA lacks a key, so when both are
    // turned on together the key's mail says all there is to say.
    if let Some(deadline) = two_factor.mail.filter(|_| keys.mail.is_none()) {
        mails.push((RequirementKind::TwoFactor, deadline));
    }
    if let Some(deadline) = keys.mail {
        mails.push((RequirementKind::SecurityKey, deadline));
    }
    Ok(Decision::Change(Change {
        settings: EnforcementSettings {
            since: two_factor.window.0,
            deadline: two_factor.window.1,
            keys_since: keys.window.0,
            keys_deadline: keys.window.1,
            grace_days,
        },
        events,
        notice: notices.join(" "),
        mails,
    }))
}

/// Why turning a requirement off needs a confirmation: how many members it affects.
pub fn turn_off_warning(
    two_factor: bool,
    keys: bool,
    members: i64,
    without_2fa: i64,
    without_key: i64,
) -> String {
    let mut parts = Vec::new();
    if two_factor {
        parts.push(format!(
            "Turning off “Require 2FA” affects all {members} members of this workspace: they will be able to turn two-factor sign-in off, and the {without_2fa} who have not set it up will no longer be asked to."
        ));
    }
    if keys {
        parts.push(format!(
            "Turning off “Members must use a security key or passkey” affects all {members} members of this workspace: the {without_key} who have no key will no longer be asked to add one."
        ));
    }
    parts.push("Tick “Yes, turn it off” to confirm. Nothing was changed.".to_owned());
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22T00:00:00Z.
    const NOW: i64 = 1_795_305_600;

    const OFF: EnforcementSettings = EnforcementSettings {
        since: None,
        deadline: None,
        keys_since: None,
        keys_deadline: None,
        grace_days: 14,
    };

    fn on_since(since: i64, grace_days: i64) -> EnforcementSettings {
        EnforcementSettings {
            since: Some(since),
            deadline: Some(since + grace_days * DAY),
            grace_days,
            ..OFF
        }
    }

    fn keys_on_since(since: i64, grace_days: i64) -> EnforcementSettings {
        EnforcementSettings {
            keys_since: Some(since),
            keys_deadline: Some(since + grace_days * DAY),
            grace_days,
            ..OFF
        }
    }

    fn asked(require_2fa: bool, grace_days: &str, confirmed: bool) -> Asked<'_> {
        Asked {
            require_2fa,
            require_keys: false,
            grace_days,
            confirmed,
        }
    }

    fn asked_keys(require_2fa: bool, grace_days: &str, confirmed: bool) -> Asked<'_> {
        Asked {
            require_keys: true,
            ..asked(require_2fa, grace_days, confirmed)
        }
    }

    fn event(change: &Change) -> (Kind, &str) {
        assert_eq!(change.events.len(), 1, "{:?}", change.events);
        (change.events[0].0, change.events[0].1.as_str())
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
        assert_eq!(
            event(&on),
            (
                Kind::EnforcementEnabled,
                "grace period 7 days; members without 2FA are held at enrolment from 29 November 2026, 00:00 UTC"
            )
        );
        assert_eq!(
            on.notice,
            "Two-factor sign-in is now required. Members without it must set it up by 29 November 2026, 00:00 UTC."
        );
        assert_eq!(on.mails, [(RequirementKind::TwoFactor, deadline)]);
    }

    #[test]
    fn a_new_grace_period_moves_the_deadline_from_when_it_was_turned_on() {
        let since = NOW - 3 * DAY;
        let moved = change(decide(on_since(since, 7), asked(true, " 10 ", false), NOW));
        assert_eq!(moved.settings, on_since(since, 10));
        assert_eq!(
            event(&moved),
            (
                Kind::EnforcementDeadlineChanged,
                "grace period 7 → 10 days; deadline 26 November 2026, 00:00 UTC → 29 November 2026, 00:00 UTC"
            )
        );
        assert_eq!(
            moved.notice,
            "The grace period is now 10 days: the deadline is 29 November 2026, 00:00 UTC."
        );
        assert!(
            moved.mails.is_empty(),
            "members were mailed when it was turned on"
        );
    }

    #[test]
    fn turning_it_off_needs_a_confirmation_and_keeps_the_grace_period() {
        let current = on_since(NOW - DAY, 7);
        assert_eq!(
            decide(current, asked(false, "7", false), NOW),
            Err(Refusal::NotConfirmed {
                two_factor: true,
                keys: false
            })
        );
        let off = change(decide(current, asked(false, "7", true), NOW));
        assert_eq!(
            off.settings,
            EnforcementSettings {
                grace_days: 7,
                ..OFF
            }
        );
        assert_eq!(event(&off), (Kind::EnforcementDisabled, ""));
        assert_eq!(
            off.notice,
            "Two-factor sign-in is no longer required in this workspace."
        );
        assert!(off.mails.is_empty());
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
        assert_eq!(
            event(&saved),
            (
                Kind::GracePeriodChanged,
                "grace period 14 → 30 days, for when 2FA or a security key is required"
            )
        );
        assert_eq!(
            saved.notice,
            "Saved: when you turn a requirement on, members will have 30 days to meet it."
        );
        assert!(saved.mails.is_empty());
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
    fn requiring_keys_has_its_own_deadline_events_and_mail() {
        let on = change(decide(OFF, asked_keys(false, "7", false), NOW));
        let deadline = NOW + 7 * DAY;
        assert_eq!(on.settings, keys_on_since(NOW, 7));
        assert_eq!(
            event(&on),
            (
                Kind::KeysRequiredEnabled,
                "grace period 7 days; members without a security key are held at adding one from 29 November 2026, 00:00 UTC"
            )
        );
        assert_eq!(
            on.notice,
            "A security key or passkey is now required. Members without one must add it by 29 November 2026, 00:00 UTC."
        );
        assert_eq!(on.mails, [(RequirementKind::SecurityKey, deadline)]);

        let since = NOW - DAY;
        let moved = change(decide(
            keys_on_since(since, 7),
            asked_keys(false, "3", false),
            NOW,
        ));
        assert_eq!(moved.settings, keys_on_since(since, 3));
        assert_eq!(event(&moved).0, Kind::KeysRequiredDeadlineChanged);
        assert!(moved.mails.is_empty());

        assert_eq!(
            decide(keys_on_since(since, 7), asked(false, "7", false), NOW),
            Err(Refusal::NotConfirmed {
                two_factor: false,
                keys: true
            })
        );
        let off = change(decide(keys_on_since(since, 7), asked(false, "", true), NOW));
        assert_eq!(
            off.settings,
            EnforcementSettings {
                grace_days: 7,
                ..OFF
            }
        );
        assert_eq!(event(&off), (Kind::KeysRequiredDisabled, ""));
        assert_eq!(
            off.notice,
            "A security key or passkey is no longer required in this workspace."
        );
    }

    #[test]
    fn both_turned_on_together_share_the_deadline_and_send_only_the_key_mail() {
        let both = change(decide(OFF, asked_keys(true, "5", false), NOW));
        let deadline = NOW + 5 * DAY;
        assert_eq!(both.settings.deadline, Some(deadline));
        assert_eq!(both.settings.keys_deadline, Some(deadline));
        let kinds: Vec<Kind> = both.events.iter().map(|e| e.0).collect();
        assert_eq!(kinds, [Kind::EnforcementEnabled, Kind::KeysRequiredEnabled]);
        assert_eq!(both.mails, [(RequirementKind::SecurityKey, deadline)]);

        // One on, the other turned on later: each keeps its own deadline, and a new grace
        // period moves the one that was on from when it was turned on.
        let since = NOW - 2 * DAY;
        let later = change(decide(
            on_since(since, 7),
            asked_keys(true, "10", false),
            NOW,
        ));
        assert_eq!(later.settings.deadline, Some(since + 10 * DAY));
        assert_eq!(later.settings.keys_deadline, Some(NOW + 10 * DAY));
        assert_eq!(
            later.mails,
            [(RequirementKind::SecurityKey, NOW + 10 * DAY)]
        );
    }

    #[test]
    fn the_warning_names_each_requirement_being_turned_off() {
        let both = turn_off_warning(true, true, 5, 2, 4);
        assert!(both.contains("the 2 who have not set it up"), "{both}");
        assert!(both.contains("the 4 who have no key"), "{both}");
        assert!(both.ends_with("Nothing was changed."), "{both}");
        let keys = turn_off_warning(false, true, 5, 2, 4);
        assert!(!keys.contains("Require 2FA"), "{keys}");
    }

    #[test]
    fn the_version_changes_with_every_setting() {
        let current = on_since(NOW, 7);
        assert_eq!(OFF.version(), "0-0-14-0-0");
        assert_eq!(current.version(), format!("{NOW}-{}-7-0-0", NOW + 7 * DAY));
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
            EnforcementSettings {
                keys_since: Some(NOW),
                ..current
            },
            EnforcementSettings {
                keys_deadline: Some(NOW),
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

//! What admins and support staff type: a grace period, an exemption's end date, a reason.

use super::Invalid;

/// Days of grace before "Require 2FA" holds members at enrolment: 0 to 90.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraceDays(i64);

impl GraceDays {
    pub const MAX: i64 = 90;

    pub fn parse(input: &str) -> Result<GraceDays, Invalid> {
        match input.trim().parse::<i64>() {
            Ok(days) if (0..=Self::MAX).contains(&days) => Ok(GraceDays(days)),
            _ => Err(Invalid(
                "The grace period is a whole number of days from 0 to 90.",
            )),
        }
    }

    pub fn days(self) -> i64 {
        self.0
    }
}

/// Why staff or an operator reset someone's 2FA: shown to the workspace's admins, so it
/// must say something. Trimmed, 1 to 500 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub fn parse(input: &str) -> Result<Reason, Invalid> {
        let reason = input.trim();
        if reason.is_empty() {
            return Err(Invalid(
                "Give a reason: the workspace's admins will read it in their audit log.",
            ));
        }
        if reason.chars().count() > 500 {
            return Err(Invalid("That reason is too long (500 characters at most)."));
        }
        if reason.chars().any(super::is_hidden_or_control) {
            return Err(Invalid("The reason must be one line of plain text."));
        }
        Ok(Reason(reason.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The last day (UTC) an exemption covers, typed as `YYYY-MM-DD` (a date input's value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastDay(time::Date);

impl LastDay {
    pub fn parse(input: &str) -> Result<LastDay, Invalid> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(input.trim(), &format)
            .map(LastDay)
            .map_err(|_| Invalid("Enter the date as year-month-day, for example 2026-12-31."))
    }

    /// The instant the exemption ends: midnight UTC after the last day.
    pub fn end(self) -> i64 {
        self.0.midnight().assume_utc().unix_timestamp() + super::policy::DAY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_days_are_zero_to_ninety() {
        assert_eq!(GraceDays::parse(" 7 ").unwrap().days(), 7);
        assert_eq!(GraceDays::parse("0").unwrap().days(), 0);
        assert_eq!(GraceDays::parse("90").unwrap().days(), 90);
        for bad in ["91", "-1", "", "seven", "7.5", "99999999999999999999"] {
            assert!(GraceDays::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_reason_must_say_something_on_one_line() {
        assert_eq!(
            Reason::parse("  lost phone, ticket 42 ").unwrap().as_str(),
            "lost phone, ticket 42"
        );
        assert!(Reason::parse("   ").is_err());
        assert!(Reason::parse("a\nb").is_err());
        assert!(Reason::parse("ticket \u{202E}21").is_err());
        assert!(Reason::parse("a\u{2028}b").is_err());
        assert!(Reason::parse(&"x".repeat(501)).is_err());
        assert!(Reason::parse(&"é".repeat(500)).is_ok());
    }

    #[test]
    fn an_exemption_covers_its_whole_last_day() {
        // 2026-11-22T00:00:00Z is 1_795_305_600.
        assert_eq!(
            LastDay::parse("2026-11-22").unwrap().end(),
            1_795_305_600 + 86_400
        );
        for bad in ["22/11/2026", "2026-13-01", "", "2026-02-30"] {
            assert!(LastDay::parse(bad).is_err(), "{bad}");
        }
    }
}

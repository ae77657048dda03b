//! Times and durations in the words pages, mails and the audit log use. A leaf: it
//! knows nothing of the rest of the crate.

/// "1 minute", "15 minutes", "45 seconds": how long to wait, rounded up to minutes above one.
pub fn duration_words(seconds: i64) -> String {
    match seconds {
        ..=1 => "1 second".to_owned(),
        2..=59 => format!("{seconds} seconds"),
        60 => "1 minute".to_owned(),
        _ => format!("{} minutes", (seconds + 59) / 60),
    }
}

/// A date and time in UTC for a Unix time: `22 November 2026, 14:05 UTC`.
pub fn date_time(unix: i64) -> String {
    use time::macros::format_description;
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[day padding:none] [month repr:long] [year], [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// A human date for a Unix time: `22 November 2026`.
pub fn date(unix: i64) -> String {
    use time::macros::format_description;
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[day padding:none] [month repr:long] [year]"
            ))
            .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_naturally() {
        assert_eq!(date(1_795_305_600), "22 November 2026");
        assert_eq!(
            date_time(1_795_305_600 + 3_900),
            "22 November 2026, 01:05 UTC"
        );
    }

    #[test]
    fn waits_are_said_in_words() {
        assert_eq!(duration_words(1), "1 second");
        assert_eq!(duration_words(45), "45 seconds");
        assert_eq!(duration_words(60), "1 minute");
        assert_eq!(duration_words(61), "2 minutes");
        assert_eq!(duration_words(900), "15 minutes");
    }
}

//! Mail in the browser journeys goes to a real SMTP server (the test one the api suite uses),
//! sent by the function every instance's mail worker runs.

use crate::browser::Outcome;
use crate::common::TestApp;
use crate::journeys::ensure;
use crate::smtp::{Received, SmtpServer};

/// Sends `app`'s outbox to `smtp` and returns, oldest first, the links under the app's
/// address (as paths) in the mails to `email` whose subject contains `subject`, waiting
/// until there is at least one.
pub async fn mailed_links(
    app: &TestApp,
    smtp: &SmtpServer,
    email: &str,
    subject: &str,
) -> Outcome<Vec<String>> {
    let (settings, problems) = tessera::mail::MailSettings::from_parts(
        Some(smtp.url()),
        Some("Tessera <security@tessera.test>".into()),
        5_000,
        60,
        10,
    );
    ensure(problems.is_empty(), || format!("{problems:?}"))?;
    let sender = tessera::mail::Sender::new(&settings, &app.settings.data_dir, "localhost")
        .map_err(|e| e.to_string())?;
    tessera::mail::dispatch_due(&app.db, &sender, tessera::db::now())
        .await
        .map_err(|e| e.to_string())?;
    let matches = |m: &Received| m.header("Subject").is_some_and(|s| s.contains(subject));
    smtp.wait_for_where(email, matches).await;
    smtp.received()
        .await
        .into_iter()
        .filter(|m| m.to.iter().any(|t| t == email) && matches(m))
        .map(|m| {
            let text = m.text();
            let link = text
                .split_whitespace()
                .find(|w| w.starts_with("http"))
                .ok_or_else(|| format!("the mail “{subject}” to {email} has no link"))?;
            // Mails name the app as everything else does: localhost, with PUBLIC_URL unset.
            let named = crate::public_address(app);
            link.strip_prefix(&named)
                .map(str::to_owned)
                .ok_or_else(|| format!("the link {link} is not under {named}"))
        })
        .collect()
}

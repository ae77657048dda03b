//! Security keys and passkeys through the running app, answered by software authenticators
//! (webauthn-authenticator-rs's soft token and soft passkey) that sign like real keys.
//!
//! The apps run with no `PUBLIC_URL`, so it is `http://localhost:{port}` (relying party id
//! `localhost`); the authenticators sign for that origin while the client talks to
//! 127.0.0.1 (the server never compares the Host header with the origin).

use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::{security_keys, webauthn_ceremonies};
use url::Url;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_authenticator_rs::{AuthenticatorBackend, WebauthnAuthenticator};
use webauthn_rs_proto::{
    AllowCredentials, CreationChallengeResponse, PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions, ResidentKeyRequirement, UserVerificationPolicy,
};

use crate::helpers::*;

/// A software authenticator and what a browser would remember about its credential.
struct TestKey {
    backend: Box<dyn AuthenticatorBackend>,
    /// Registered as a passkey (the form's `passwordless` box).
    passkey: bool,
    /// The credential's id, once registered.
    id: Vec<u8>,
    /// The user handle the passkey stores, once registered (the soft passkey keeps none,
    /// so this plays the part of a discoverable credential, as a browser would).
    handle: Vec<u8>,
}

impl TestKey {
    /// A key without PIN: user presence only.
    fn security_key() -> TestKey {
        TestKey::of(Box::new(SoftToken::new(false).unwrap().0), false)
    }

    /// A passkey that verifies its user.
    fn passkey() -> TestKey {
        TestKey::of(Box::new(SoftPasskey::new(true)), true)
    }

    fn of(backend: Box<dyn AuthenticatorBackend>, passkey: bool) -> TestKey {
        TestKey {
            backend,
            passkey,
            id: Vec::new(),
            handle: Vec::new(),
        }
    }

    /// Answers a registration page's options (the browser's `create()`) from `origin`.
    fn answer_registration(&mut self, origin: Url, page: &Page) -> String {
        let all = page_options(page);
        let which = if self.passkey { "passkey" } else { "key" };
        let mut public_key: PublicKeyCredentialCreationOptions =
            serde_json::from_value(all[which].clone()).unwrap();
        if self.passkey {
            // The soft passkey cannot make a resident credential; the test remembers its
            // id and user handle instead, as a discoverable credential would.
            let selection = public_key.authenticator_selection.as_mut().unwrap();
            selection.resident_key = Some(ResidentKeyRequirement::Discouraged);
            selection.require_resident_key = false;
            self.handle = public_key.user.id.to_vec();
        }
        let answer = self
            .backend
            .do_registration(origin, CreationChallengeResponse { public_key })
            .unwrap();
        self.id = answer.raw_id.to_vec();
        serde_json::to_string(&answer).unwrap()
    }

    /// Answers a sign-in page's options (the browser's `get()`), as `origin`.
    fn answer(&mut self, origin: Url, mut options: PublicKeyCredentialRequestOptions) -> String {
        let discoverable = options.allow_credentials.is_empty();
        if discoverable {
            options.allow_credentials = vec![AllowCredentials {
                type_: "public-key".into(),
                id: self.id.clone(),
                transports: None,
            }];
        }
        let mut answer = self.backend.perform_auth(origin, options, 60_000).unwrap();
        if discoverable {
            answer.response.user_handle = Some(self.handle.clone());
        }
        serde_json::to_string(&answer).unwrap()
    }

    fn answer_page(&mut self, app: &TestApp, page: &Page) -> String {
        self.answer(origin(app), request_options(page))
    }
}

/// The origin a browser would send: the app under its name.
fn origin(app: &TestApp) -> Url {
    Url::parse(&app.public_url()).unwrap()
}

fn page_options(page: &Page) -> serde_json::Value {
    let json = between(&page.body, "id=\"webauthn-options\">", "</script>")
        .unwrap_or_else(|| panic!("the page has WebAuthn options: {}", page.body));
    serde_json::from_str(&json).unwrap()
}

fn request_options(page: &Page) -> PublicKeyCredentialRequestOptions {
    serde_json::from_value(page_options(page)).unwrap()
}

/// Registers `key` as `name` from the signed-in `client`; the page that answers.
async fn register(app: &TestApp, client: &Client, key: &mut TestKey, name: &str) -> Page {
    let page = client.get("/account/security-keys/new").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let answer = key.answer_registration(origin(app), &page);
    post_registration(client, &page, key.passkey, name, &answer).await
}

async fn post_registration(
    client: &Client,
    page: &Page,
    passkey: bool,
    name: &str,
    answer: &str,
) -> Page {
    let mut fields = vec![
        ("csrf_token", page.csrf()),
        ("name", name.to_owned()),
        ("credential", answer.to_owned()),
    ];
    if passkey {
        fields.push(("passwordless", "on".to_owned()));
    }
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    client.post_raw("/account/security-keys", &fields).await
}

/// A member signed in with the password only (no second factor yet).
async fn member(app: &TestApp, email: &str) -> (TestUser, Client) {
    let mut user = app.user(email);
    let client = app.client();
    client.sign_in(&mut user).await;
    (user, client)
}

/// A member whose only second factor is `key`, signed in.
async fn member_with(app: &TestApp, email: &str, key: &mut TestKey) -> (TestUser, Client) {
    let (user, client) = member(app, email).await;
    let page = register(app, &client, key, "My key").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.recovery_codes().len(), 10);
    (user, client)
}

/// The password step, then the key's answer on `/login/2fa`; the answer's page.
async fn sign_in_with_key(
    app: &TestApp,
    client: &Client,
    user: &TestUser,
    key: &mut TestKey,
) -> Page {
    let page = client.password_step(user).await;
    assert_eq!(page.location(), "/login/2fa");
    let page = client.get("/login/2fa").await;
    assert!(
        page.body.contains("id=\"use-security-key\""),
        "{}",
        page.body
    );
    let answer = key.answer_page(app, &page);
    post_key(client, &page, &answer).await
}

async fn post_key(client: &Client, page: &Page, answer: &str) -> Page {
    client
        .post_raw(
            "/login/security-key",
            &[("csrf_token", &page.csrf()), ("credential", answer)],
        )
        .await
}

async fn post_passkey(client: &Client, page: &Page, answer: &str) -> Page {
    client
        .post_raw(
            "/login/passkey",
            &[("csrf_token", &page.csrf()), ("credential", answer)],
        )
        .await
}

fn key_rows(app: &TestApp, user_id: &str) -> Vec<(String, i64, Option<i64>, bool)> {
    security_keys::table
        .filter(security_keys::user_id.eq(user_id))
        .select((
            security_keys::name,
            security_keys::sign_count,
            security_keys::last_used_at,
            security_keys::passwordless,
        ))
        .load(&mut *app.conn())
        .unwrap()
}

fn last_detail(app: &TestApp, kind: &str) -> String {
    app.audit_events(kind)
        .pop()
        .unwrap_or_else(|| panic!("no {kind} event"))
        .detail
}

#[tokio::test]
async fn a_security_key_without_a_pin_registers_and_signs_in_after_the_password() {
    let app = spawn_app().await;
    let (user, client) = member(&app, "ada@example.com").await;
    let other = app.client();
    other.password_step(&user).await;
    assert_eq!(other.get("/home").await.status, StatusCode::OK);

    let mut key = TestKey::security_key();
    let page = register(&app, &client, &mut key, "YubiKey on my keyring").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        page.recovery_codes().len(),
        10,
        "the first factor shows the codes"
    );
    // The other session ended: a first factor was added.
    assert_eq!(other.get("/home").await.status, StatusCode::SEE_OTHER);
    let security = client.get("/account/security").await;
    assert!(
        security.body.contains("class=\"security-key\""),
        "{}",
        security.body
    );
    assert!(security.body.contains("YubiKey on my keyring"));
    assert!(security.body.contains("Two-factor sign-in is on."));
    assert!(last_detail(&app, "key_added").contains("security key “YubiKey on my keyring”"));
    assert_eq!(
        app.outbox_kinds("ada@example.com"),
        ["security_key_added"],
        "the owner is told; the first factor needs no second mail"
    );

    client.post("/home", "/logout", &[]).await;
    let page = sign_in_with_key(&app, &client, &user, &mut key).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/home");
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    let rows = key_rows(&app, &user.id);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].1 >= 1, "the counter is stored: {rows:?}");
    assert!(rows[0].2.is_some(), "last used is set");
    assert!(
        last_detail(&app, "second_factor_succeeded")
            .contains("security key “YubiKey on my keyring”, for sign-in")
    );
    app.dispatch_mail().await;
}

#[tokio::test]
async fn a_passkey_signs_in_without_the_password() {
    let app = spawn_app().await;
    let mut key = TestKey::passkey();
    let (user, _) = member_with(&app, "ada@example.com", &mut key).await;
    assert!(key_rows(&app, &user.id)[0].3, "stored as passwordless");

    let client = app.client();
    let login = client.get("/login").await;
    assert!(
        login.body.contains("id=\"sign-in-with-passkey\""),
        "{}",
        login.body
    );
    let options = request_options(&login);
    assert!(options.allow_credentials.is_empty());
    assert_eq!(options.user_verification, UserVerificationPolicy::Required);
    let answer = key.answer(origin(&app), options);
    let page = post_passkey(&client, &login, &answer).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/home");
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    assert_eq!(client.get("/account/security").await.status, StatusCode::OK);
    assert!(last_detail(&app, "sign_in_succeeded").contains("passkey “My key” (both steps)"));

    // A passkey also serves as the second step after the password. The page asks for
    // verification as "preferred" (a PIN-less key may be in the same list); a browser then
    // verifies with an authenticator that can, which the soft passkey does only when told
    // "required".
    let client = app.client();
    client.password_step(&user).await;
    let page = client.get("/login/2fa").await;
    let mut options = request_options(&page);
    assert_eq!(options.user_verification, UserVerificationPolicy::Preferred);
    options.user_verification = UserVerificationPolicy::Required;
    let answer = key.answer(origin(&app), options);
    let page = post_key(&client, &page, &answer).await;
    assert_eq!(page.location(), "/home", "{}", page.body);
}

#[tokio::test]
async fn a_key_registered_without_user_verification_cannot_sign_in_alone() {
    let app = spawn_app().await;
    let mut key = TestKey::security_key();
    let (user, _) = member_with(&app, "ada@example.com", &mut key).await;
    // The key plays a discoverable credential with the user's handle.
    key.handle = tessera::auth::webauthn::user_handle(&user.id)
        .as_bytes()
        .to_vec();
    let client = app.client();
    let login = client.get("/login").await;
    let answer = key.answer_page(&app, &login);
    let page = post_passkey(&client, &login, &answer).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.alert().unwrap().contains("passkey was not accepted"));
    assert_eq!(client.get("/home").await.status, StatusCode::SEE_OTHER);
    assert!(last_detail(&app, "sign_in_failed").contains("registered without user verification"));
}

#[tokio::test]
async fn passkey_sign_in_without_user_verification_is_refused() {
    let app = spawn_app().await;
    let mut key = TestKey::passkey();
    member_with(&app, "ada@example.com", &mut key).await;
    let client = app.client();
    let login = client.get("/login").await;
    let mut options = request_options(&login);
    // The authenticator is told verification is not needed, so it only checks presence.
    options.user_verification = UserVerificationPolicy::Discouraged_DO_NOT_USE;
    let answer = key.answer(origin(&app), options);
    let page = post_passkey(&client, &login, &answer).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    assert_eq!(client.get("/home").await.status, StatusCode::SEE_OTHER);
    assert!(last_detail(&app, "sign_in_failed").contains("not verified"));
}

#[tokio::test]
async fn another_users_key_is_refused() {
    let app = spawn_app().await;
    let mut ada_key = TestKey::security_key();
    let (ada, _) = member_with(&app, "ada@example.com", &mut ada_key).await;
    let mut bob_key = TestKey::security_key();
    member_with(&app, "bob@example.com", &mut bob_key).await;

    let client = app.client();
    client.password_step(&ada).await;
    let page = client.get("/login/2fa").await;
    let mut options = request_options(&page);
    options.allow_credentials.push(AllowCredentials {
        type_: "public-key".into(),
        id: bob_key.id.clone(),
        transports: None,
    });
    options
        .allow_credentials
        .retain(|c| c.id.as_ref() as &[u8] == bob_key.id.as_slice());
    let answer = bob_key.answer(origin(&app), options);
    let refused = post_key(&client, &page, &answer).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.alert().unwrap().contains("key was not accepted"));
    assert_eq!(client.get("/home").await.status, StatusCode::SEE_OTHER);
    assert!(last_detail(&app, "second_factor_failed").contains("not registered to this account"));
}

#[tokio::test]
async fn an_assertion_for_another_origin_or_relying_party_is_refused() {
    let app = spawn_app().await;
    let mut key = TestKey::security_key();
    let (user, _) = member_with(&app, "ada@example.com", &mut key).await;
    let client = app.client();
    client.password_step(&user).await;

    let page = client.get("/login/2fa").await;
    let phishing = Url::parse("https://login.example.net").unwrap();
    let answer = key.answer(phishing, request_options(&page));
    assert_eq!(
        post_key(&client, &page, &answer).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(last_detail(&app, "second_factor_failed").contains("another origin"));

    let page = client.get("/login/2fa").await;
    let mut options = request_options(&page);
    options.rp_id = "example.com".into();
    let answer = key.answer(origin(&app), options);
    assert_eq!(
        post_key(&client, &page, &answer).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(last_detail(&app, "second_factor_failed").contains("another relying party"));
    assert_eq!(client.get("/home").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_replayed_or_doubly_submitted_assertion_is_refused() {
    let app = spawn_app().await;
    let mut key = TestKey::security_key();
    let (user, _) = member_with(&app, "ada@example.com", &mut key).await;

    // Two submissions of one answer at once: exactly one signs in.
    let client = app.client();
    client.password_step(&user).await;
    let page = client.get("/login/2fa").await;
    let answer = key.answer_page(&app, &page);
    let csrf = page.csrf();
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("credential", answer.as_str()),
    ];
    let (a, b) = tokio::join!(
        client.post_raw("/login/security-key", &fields),
        client.post_raw("/login/security-key", &fields)
    );
    // The loser either found the challenge taken (401) or, arriving after the winner
    // moved the session to a new id, no session at all (303 to /login); never /home.
    let to_home = [&a, &b]
        .iter()
        .filter(|p| p.status == StatusCode::SEE_OTHER && p.location() == "/home")
        .count();
    assert_eq!(to_home, 1, "{} {}", a.status, b.status);
    assert_eq!(
        app.audit_events("second_factor_succeeded")
            .iter()
            .filter(|e| e.detail.contains("security key"))
            .count(),
        1
    );

    // The same answer again later, after a new password step: a new challenge, refused.
    let client = app.client();
    client.password_step(&user).await;
    let page = client.get("/login/2fa").await;
    assert_eq!(
        post_key(&client, &page, &answer).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(last_detail(&app, "second_factor_failed").contains("challenge does not match"));
}

#[tokio::test]
async fn a_cloned_key_whose_counter_went_back_is_refused_audited_and_mailed() {
    let smtp = crate::smtp::SmtpServer::start().await;
    let app = spawn_app_with(&[
        ("SMTP_URL", &smtp.url()),
        ("MAIL_FROM", "Tessera <security@example.com>"),
    ])
    .await;
    let mut key = TestKey::security_key();
    let (user, _) = member_with(&app, "ada@example.com", &mut key).await;
    let client = app.client();
    assert_eq!(
        sign_in_with_key(&app, &client, &user, &mut key)
            .await
            .location(),
        "/home"
    );
    let stored = key_rows(&app, &user.id)[0].1;
    // The stored counter runs ahead of this key, as when a copy of it was used meanwhile on
    // another instance after this ceremony began: the statement's check-and-set refuses.
    diesel::update(security_keys::table.filter(security_keys::user_id.eq(&user.id)))
        .set(security_keys::sign_count.eq(stored + 100))
        .execute(&mut *app.conn())
        .unwrap();
    let client = app.client();
    let page = sign_in_with_key(&app, &client, &user, &mut key).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    assert_eq!(client.get("/home").await.status, StatusCode::SEE_OTHER);
    assert!(last_detail(&app, "key_counter_regression").contains("counter went backwards"));
    app.dispatch_mail().await;
    let mails: Vec<String> = smtp.received().await.iter().map(|m| m.text()).collect();
    assert!(
        mails.iter().any(|m| m.contains("counter went backwards")),
        "{mails:?}"
    );
}

#[tokio::test]
async fn a_credential_id_registered_to_another_account_is_refused() {
    let app = spawn_app().await;
    let mut ada_key = TestKey::security_key();
    let (ada, _) = member_with(&app, "ada@example.com", &mut ada_key).await;
    let (bob, bob_client) = member(&app, "bob@example.com").await;
    let mut bob_key = TestKey::security_key();
    let page = bob_client.get("/account/security-keys/new").await;
    let answer = bob_key.answer_registration(origin(&app), &page);
    // Ada's row now claims the id Bob's key is about to register.
    let bob_id = tessera::auth::webauthn::credential_id_text(&bob_key.id);
    diesel::update(security_keys::table.filter(security_keys::user_id.eq(&ada.id)))
        .set(security_keys::credential_id.eq(&bob_id))
        .execute(&mut *app.conn())
        .unwrap();
    let refused = post_registration(&bob_client, &page, false, "Mine", &answer).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(refused.alert().unwrap().contains("already registered"));
    assert!(key_rows(&app, &bob.id).is_empty());
    assert_eq!(
        app.count_rows("recovery_codes", &bob.id),
        0,
        "nothing else changed"
    );
}

#[tokio::test]
async fn a_challenge_is_single_use_bound_to_its_session_and_expires() {
    let app = spawn_app().await;
    let mut key = TestKey::security_key();
    let (user, _) = member_with(&app, "ada@example.com", &mut key).await;

    // Garbage spends the challenge; the right answer to it afterwards is refused.
    let client = app.client();
    client.password_step(&user).await;
    let page = client.get("/login/2fa").await;
    let answer = key.answer_page(&app, &page);
    assert_eq!(
        post_key(&client, &page, "{not json").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(last_detail(&app, "second_factor_failed").contains("not readable"));
    assert_eq!(
        post_key(&client, &page, &answer).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(last_detail(&app, "second_factor_failed").contains("challenge does not match"));

    // Another session's challenge: A's options answered, posted from B.
    let a = app.client();
    let b = app.client();
    a.password_step(&user).await;
    b.password_step(&user).await;
    let page_a = a.get("/login/2fa").await;
    let page_b = b.get("/login/2fa").await;
    let answer = key.answer_page(&app, &page_a);
    assert_eq!(
        post_key(&b, &page_b, &answer).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(b.get("/home").await.status, StatusCode::SEE_OTHER);

    // An expired challenge.
    let page = a.get("/login/2fa").await;
    let answer = key.answer_page(&app, &page);
    diesel::update(webauthn_ceremonies::table)
        .set(webauthn_ceremonies::expires_at.eq(tessera::db::now() - 1))
        .execute(&mut *app.conn())
        .unwrap();
    let refused = post_key(&a, &page, &answer).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body.contains("id=\"webauthn-options\""),
        "a fresh challenge is on the page"
    );
    assert_eq!(a.get("/home").await.status, StatusCode::SEE_OTHER);

    // A passkey challenge from before the password step is dead after it.
    let mut passkey = TestKey::passkey();
    let (carol, _) = member_with(&app, "carol@example.com", &mut passkey).await;
    let client = app.client();
    let login = client.get("/login").await;
    let answer = passkey.answer_page(&app, &login);
    client.password_step(&carol).await;
    let csrf = client.get("/login/2fa").await.csrf();
    let page = client
        .post_raw(
            "/login/passkey",
            &[("csrf_token", &csrf), ("credential", &answer)],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
}

#[tokio::test]
async fn key_attempts_count_against_the_account_and_the_network() {
    let app = spawn_app_with(&[("RATE_LIMIT_SECOND_FACTOR_PER_IP", "8")]).await;
    let mut key = TestKey::security_key();
    let (user, _) = member_with(&app, "ada@example.com", &mut key).await;
    let client = app.client();
    client.password_step(&user).await;
    // Five wrong answers lock the second step (SECOND_FACTOR_LOCK_AFTER = 5).
    for _ in 0..5 {
        let page = client.get("/login/2fa").await;
        assert_eq!(
            post_key(&client, &page, "{}").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert!(!app.audit_events("second_factor_locked").is_empty());
    // Locked: the right key is refused unchecked.
    let page = client.get("/login/2fa").await;
    let answer = key.answer_page(&app, &page);
    assert_eq!(
        post_key(&client, &page, &answer).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(last_detail(&app, "second_factor_failed").contains("refused unchecked"));
    // The network's bucket: the ninth attempt from this address is refused outright.
    let mut last = StatusCode::OK;
    for _ in 0..3 {
        let page = client.get("/login/2fa").await;
        last = post_key(&client, &page, "{}").await.status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn every_key_post_needs_its_csrf_token() {
    let app = spawn_app().await;
    let mut key = TestKey::security_key();
    let (_, client) = member_with(&app, "ada@example.com", &mut key).await;
    for path in [
        "/account/security-keys",
        "/account/security-keys/x/rename",
        "/account/security-keys/x/remove",
        "/login/passkey",
    ] {
        let page = client
            .post_raw(
                path,
                &[("credential", "{}"), ("name", "n"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
    }
    let anonymous = app.client();
    anonymous.get("/login").await;
    let page = anonymous
        .post_raw("/login/passkey", &[("credential", "{}")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let mut bobs = TestKey::security_key();
    let (bob, _) = member_with(&app, "bob@example.com", &mut bobs).await;
    let halfway = app.client();
    halfway.password_step(&bob).await;
    let page = halfway
        .post_raw("/login/security-key", &[("credential", "{}")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn removing_a_key_needs_the_password_and_the_last_factor_stays_while_required() {
    let app = spawn_app().await;
    let mut key = TestKey::security_key();
    let (user, client) = member_with(&app, "ada@example.com", &mut key).await;
    let id: String = security_keys::table
        .filter(security_keys::user_id.eq(&user.id))
        .select(security_keys::id)
        .get_result(&mut *app.conn())
        .unwrap();

    let renamed = client
        .post(
            "/account/security",
            &format!("/account/security-keys/{id}/rename"),
            &[("name", "Blue key")],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::SEE_OTHER);
    assert_eq!(key_rows(&app, &user.id)[0].0, "Blue key");
    let bad = client
        .post(
            "/account/security",
            &format!("/account/security-keys/{id}/rename"),
            &[("name", " ")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.alert().is_some());
    let other = client
        .post(
            "/account/security",
            "/account/security-keys/nope/rename",
            &[("name", "x")],
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);

    let remove = format!("/account/security-keys/{id}/remove");
    let wrong = client
        .post(
            "/account/security",
            &remove,
            &[("password", "not the password")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.alert().unwrap().contains("password is not right"));
    assert_eq!(key_rows(&app, &user.id).len(), 1);

    // The workspace requires 2FA: the last factor cannot go.
    let (_, admin) = enrolled_admin(&app, "acme", "boss@example.com").await;
    let on = admin
        .post(
            "/admin/workspace",
            "/admin/workspace",
            &[("require_2fa", "on"), ("grace_days", "7")],
        )
        .await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.body);
    let kept = client
        .post("/account/security", &remove, &[("password", PASSWORD)])
        .await;
    assert_eq!(kept.status, StatusCode::FORBIDDEN, "{}", kept.body);
    assert!(kept.alert().unwrap().contains("last second factor"));
    assert_eq!(key_rows(&app, &user.id).len(), 1);
    let off = admin
        .post(
            "/admin/workspace",
            "/admin/workspace",
            &[("grace_days", "7"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER, "{}", off.body);

    let removed = client
        .post("/account/security", &remove, &[("password", PASSWORD)])
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert!(key_rows(&app, &user.id).is_empty());
    assert_eq!(
        app.count_rows("recovery_codes", &user.id),
        0,
        "with the last factor"
    );
    assert!(last_detail(&app, "key_removed").contains("“Blue key”"));
    assert!(
        client
            .get("/account/security")
            .await
            .body
            .contains("Two-factor sign-in is off")
    );
    app.assert_counts_agree();
}

#[tokio::test]
async fn resets_remove_keys_too() {
    let app = spawn_app().await;
    let mut key = TestKey::security_key();
    let (user, _) = member_with(&app, "ada@example.com", &mut key).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@example.com").await;
    let page = admin
        .post(
            "/home",
            &format!("/admin/users/{}/reset-2fa", user.id),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(key_rows(&app, &user.id).is_empty());
    assert_eq!(app.count_rows("recovery_codes", &user.id), 0);
    let client = app.client();
    let page = client.password_step(&user).await;
    assert_eq!(page.location(), "/home", "no second step is left");
    app.assert_counts_agree();
}

#[tokio::test]
async fn a_demo_account_cannot_add_keys() {
    let app = spawn_app().await;
    let mut demo = crate::demo::demo_user(&app, "demo@example.com");
    let client = app.client();
    client.sign_in(&mut demo).await;
    let page = client.get("/account/security-keys/new").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.alert().unwrap().contains("demo account"));
    let page = client
        .post(
            "/account/security",
            "/account/security-keys",
            &[("name", "k"), ("credential", "{}")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_ip_public_url_disables_keys_with_a_clear_message() {
    let app = spawn_app_with(&[("PUBLIC_URL", "http://127.0.0.1:9")]).await;
    let (_, client) = member(&app, "ada@example.com").await;
    let page = client.get("/account/security-keys/new").await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(
        page.alert().unwrap().contains("IP address"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("register-security-key"));
    let login = app.client().get("/login").await;
    assert!(!login.body.contains("sign-in-with-passkey"));
    assert!(
        client
            .get("/account/security")
            .await
            .body
            .contains("not an IP address")
    );
}

#[tokio::test]
async fn no_credential_challenge_or_answer_is_logged_even_at_trace_level() {
    use std::process::{Command, Stdio};
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    // The real binary over the test's database, logging everything it can to a file.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = app.settings.data_dir.join("trace.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("serve")
        .env("DATABASE_URL", &app.settings.database_url)
        .env("DATA_DIR", &app.settings.data_dir)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env(
            "ENCRYPTION_KEY",
            app.settings.encryption_key.as_deref().unwrap(),
        )
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let client = Client {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let mut up = false;
    for _ in 0..200 {
        let health = client.http.get(format!("{}/healthz", client.base)).send();
        if health.await.is_ok_and(|r| r.status() == StatusCode::OK) {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "the server did not start");
    let origin = Url::parse(&format!("http://localhost:{port}")).unwrap();

    client.sign_in(&mut user).await;
    let mut key = TestKey::security_key();
    let page = client.get("/account/security-keys/new").await;
    let challenge = page_options(&page)["key"]["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = key.answer_registration(origin.clone(), &page);
    let added = post_registration(&client, &page, false, "Logged?", &answer).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    client.post("/account/security", "/logout", &[]).await;
    client.password_step(&user).await;
    let page = client.get("/login/2fa").await;
    let second_challenge = page_options(&page)["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed = post_key(&client, &page, &key.answer(origin, request_options(&page))).await;
    assert_eq!(signed.location(), "/home", "{}", signed.body);
    server.kill().unwrap();
    server.wait().unwrap();

    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("/account/security-keys") && logged.contains("/login/security-key"),
        "the requests are logged at all"
    );
    let credential_id = tessera::auth::webauthn::credential_id_text(&key.id);
    for secret in [credential_id.as_str(), &challenge, &second_challenge] {
        assert!(!logged.contains(secret), "{secret} is in the log");
    }
}

#[tokio::test]
async fn a_member_with_only_a_key_makes_new_recovery_codes_with_it() {
    let app = spawn_app().await;
    let mut key = TestKey::security_key();
    let (user, client) = member_with(&app, "ada@example.com", &mut key).await;
    let page = client.get("/account/security").await;
    assert!(
        page.body.contains("id=\"confirm-with-security-key\""),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("action=\"/account/2fa/disable\""),
        "no app to turn off"
    );

    // A wrong answer changes nothing.
    let refused = client
        .post_raw(
            "/account/2fa/recovery-codes",
            &[("csrf_token", &page.csrf()), ("credential", "{}")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.alert().unwrap().contains("key was not accepted"));
    assert_eq!(app.count_rows("recovery_codes", &user.id), 10);

    let page = client.get("/account/security").await;
    let answer = key.answer_page(&app, &page);
    let made = client
        .post_raw(
            "/account/2fa/recovery-codes",
            &[("csrf_token", &page.csrf()), ("credential", &answer)],
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    assert_eq!(made.recovery_codes().len(), 10);
    assert!(last_detail(&app, "second_factor_succeeded").contains("for new recovery codes"));
    assert!(!app.audit_events("recovery_codes_regenerated").is_empty());
}

/// Moves the sign-in of every session of `user_id` `seconds` into the past.
fn age_sign_in(app: &TestApp, user_id: &str, seconds: i64) {
    use tessera::db::schema::sessions;
    let rows: Vec<(String, String)> = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .select((sessions::id, sessions::state))
        .load(&mut *app.conn())
        .unwrap();
    assert!(!rows.is_empty());
    for (id, state) in rows {
        let marker = "authenticated_at";
        let at = state.find(marker).expect("a signed-in state") + marker.len();
        let digits_from = at + state[at..].find(|c: char| c.is_ascii_digit()).unwrap();
        let digits_to = digits_from
            + state[digits_from..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap();
        let then: i64 = state[digits_from..digits_to].parse().unwrap();
        let aged = format!(
            "{}{}{}",
            &state[..digits_from],
            then - seconds,
            &state[digits_to..]
        );
        diesel::update(sessions::table.find(&id))
            .set(sessions::state.eq(aged))
            .execute(&mut *app.conn())
            .unwrap();
    }
}

#[tokio::test]
async fn adding_a_key_long_after_signing_in_needs_the_password() {
    let app = spawn_app().await;
    let mut first = TestKey::security_key();
    let (user, client) = member_with(&app, "ada@example.com", &mut first).await;
    age_sign_in(&app, &user.id, 11 * 60);

    let mut second = TestKey::passkey();
    let page = client.get("/account/security-keys/new").await;
    assert!(page.body.contains("id=\"key-password\""), "{}", page.body);
    let answer = second.answer_registration(origin(&app), &page);
    let refused = post_registration(&client, &page, true, "Planted", &answer).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(refused.alert().unwrap().contains("enter your password"));
    assert_eq!(key_rows(&app, &user.id).len(), 1, "nothing was added");

    let page = client.get("/account/security-keys/new").await;
    let answer = second.answer_registration(origin(&app), &page);
    let added = client
        .post_raw(
            "/account/security-keys",
            &[
                ("csrf_token", &page.csrf()),
                ("name", "Laptop"),
                ("passwordless", "on"),
                ("password", PASSWORD),
                ("credential", &answer),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    assert_eq!(key_rows(&app, &user.id).len(), 2);
}

#[tokio::test]
async fn a_known_credential_id_cannot_lock_its_owner_out_from_the_sign_in_page() {
    let app = spawn_app().await;
    let mut key = TestKey::passkey();
    let (user, _) = member_with(&app, "ada@example.com", &mut key).await;
    // Someone who saw the credential id (the second step lists it) sends junk for it.
    let attacker = app.client();
    for _ in 0..6 {
        let login = attacker.get("/login").await;
        let mut forged: serde_json::Value =
            serde_json::from_str(&key.answer_page(&app, &login)).unwrap();
        forged["response"]["signature"] = serde_json::Value::String("AAAA".into());
        let page = post_passkey(&attacker, &login, &forged.to_string()).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    assert!(app.audit_events("second_factor_locked").is_empty());
    // The owner signs in with the passkey as ever.
    let client = app.client();
    let login = client.get("/login").await;
    let answer = key.answer_page(&app, &login);
    assert_eq!(
        post_passkey(&client, &login, &answer).await.location(),
        "/home"
    );
    let _ = user;
}

#[tokio::test]
async fn turning_the_app_off_keeps_the_keys_and_says_so() {
    let app = spawn_app().await;
    let (mut user, client) = enrolled_user(&app, "ada@example.com").await;
    let mut key = TestKey::security_key();
    let page = register(&app, &client, &mut key, "Backup key").await;
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "not the first factor: {}",
        page.body
    );
    let code = user.fresh_code().await;
    let off = client
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", PASSWORD), ("code", &code)],
        )
        .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER, "{}", off.body);
    assert_eq!(key_rows(&app, &user.id).len(), 1);
    assert_eq!(app.count_rows("recovery_codes", &user.id), 10);
    assert!(!app.audit_events("authenticator_removed").is_empty());
    assert!(app.audit_events("two_factor_disabled").is_empty());
    let client = app.client();
    let page = sign_in_with_key(&app, &client, &user, &mut key).await;
    assert_eq!(page.location(), "/home", "the key still signs in");
    app.assert_counts_agree();
}

#[tokio::test]
async fn the_last_key_stays_while_the_workspace_requires_keys() {
    use tessera::db::schema::workspaces;
    let app = spawn_app().await;
    let (mut user, client) = enrolled_user(&app, "ada@example.com").await;
    let mut key = TestKey::security_key();
    register(&app, &client, &mut key, "Only key").await;
    diesel::update(workspaces::table)
        .set((
            workspaces::require_keys_since.eq(Some(tessera::db::now())),
            workspaces::require_keys_deadline.eq(Some(tessera::db::now())),
        ))
        .execute(&mut *app.conn())
        .unwrap();
    let id: String = security_keys::table
        .select(security_keys::id)
        .get_result(&mut *app.conn())
        .unwrap();
    let kept = client
        .post(
            "/account/security",
            &format!("/account/security-keys/{id}/remove"),
            &[("password", PASSWORD)],
        )
        .await;
    assert_eq!(kept.status, StatusCode::FORBIDDEN, "{}", kept.body);
    assert!(kept.alert().unwrap().contains("requires a security key"));
    assert_eq!(
        key_rows(&app, &user.id).len(),
        1,
        "even with the app beside it"
    );
    let _ = user.fresh_code().await;
}

#[tokio::test]
async fn a_registration_for_another_relying_party_or_origin_is_refused() {
    let app = spawn_app().await;
    let (user, client) = member(&app, "ada@example.com").await;
    let mut key = TestKey::security_key();
    for (rp_id, origin) in [
        ("login.example.net", origin(&app)),
        (
            "localhost",
            Url::parse("https://login.example.net").unwrap(),
        ),
    ] {
        let page = client.get("/account/security-keys/new").await;
        let mut public_key: PublicKeyCredentialCreationOptions =
            serde_json::from_value(page_options(&page)["key"].clone()).unwrap();
        public_key.rp.id = rp_id.into();
        // The authenticator itself, without the browser's checks: what a phishing page's
        // relay would produce.
        let answer = key
            .backend
            .perform_register(origin, public_key, 60_000)
            .unwrap();
        let answer = serde_json::to_string(&answer).unwrap();
        let refused = post_registration(&client, &page, false, "Relayed", &answer).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{rp_id}");
        assert!(refused.alert().unwrap().contains("key was not accepted"));
    }
    assert!(key_rows(&app, &user.id).is_empty());
    let reasons: Vec<String> = app
        .audit_events("second_factor_failed")
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("another relying party")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("another origin")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_real_copy_of_a_key_is_refused_once_the_original_has_been_used() {
    let app = spawn_app().await;
    let (user, client) = member(&app, "ada@example.com").await;
    // Register with a token whose state can be copied: the copy is made right after.
    let page = client.get("/account/security-keys/new").await;
    let public_key: PublicKeyCredentialCreationOptions =
        serde_json::from_value(page_options(&page)["key"].clone()).unwrap();
    let mut token = SoftToken::new(false).unwrap().0;
    let answer = token
        .do_registration(origin(&app), CreationChallengeResponse { public_key })
        .unwrap();
    let id = answer.raw_id.to_vec();
    let answer = serde_json::to_string(&answer).unwrap();
    let added = post_registration(&client, &page, false, "Original", &answer).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    let copy = SoftToken::from_cbor(&token.to_cbor().unwrap()).unwrap();
    let mut original = TestKey::of(Box::new(token), false);
    original.id = id.clone();
    let mut copy = TestKey::of(Box::new(copy), false);
    copy.id = id;
    // The original signs in twice; the copy, a step behind, is refused by the library's
    // own comparison with the stored counter.
    for _ in 0..2 {
        let client = app.client();
        let page = sign_in_with_key(&app, &client, &user, &mut original).await;
        assert_eq!(page.location(), "/home", "{}", page.body);
    }
    let client = app.client();
    let page = sign_in_with_key(&app, &client, &user, &mut copy).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    assert!(last_detail(&app, "key_counter_regression").contains("“Original”"));
    assert!(last_detail(&app, "second_factor_failed").contains("counter went backwards"));
}

#[tokio::test]
async fn bad_registrations_get_a_message_and_store_nothing() {
    let app = spawn_app().await;
    let (user, client) = member(&app, "ada@example.com").await;
    let mut key = TestKey::security_key();

    let page = client.get("/account/security-keys/new").await;
    let answer = key.answer_registration(origin(&app), &page);
    // No name, then no answer at all (a browser without the script).
    let nameless = post_registration(&client, &page, false, "  ", &answer).await;
    assert_eq!(nameless.status, StatusCode::BAD_REQUEST);
    assert!(nameless.alert().unwrap().contains("name"));
    let page = client.get("/account/security-keys/new").await;
    let unanswered = post_registration(&client, &page, false, "Mine", "").await;
    assert_eq!(unanswered.status, StatusCode::BAD_REQUEST);
    assert!(unanswered.alert().unwrap().contains("touch your key"));
    // Junk for an answer.
    let page = client.get("/account/security-keys/new").await;
    let junk = post_registration(&client, &page, false, "Mine", "{\"id\":1}").await;
    assert_eq!(junk.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(junk.alert().unwrap().contains("could not be read"));
    // An answer to a challenge the page has since replaced (a reload in another tab).
    let page = client.get("/account/security-keys/new").await;
    let stale = key.answer_registration(origin(&app), &page);
    client.get("/account/security-keys/new").await;
    let replaced = post_registration(&client, &page, false, "Mine", &stale).await;
    assert_eq!(replaced.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(replaced.alert().unwrap().contains("key was not accepted"));
    // The key answered for a passkey but posted as a security key: the other challenge.
    let page = client.get("/account/security-keys/new").await;
    let mut passkey = TestKey::passkey();
    let as_passkey = passkey.answer_registration(origin(&app), &page);
    let mismatched = post_registration(&client, &page, false, "Mine", &as_passkey).await;
    assert_eq!(mismatched.status, StatusCode::UNPROCESSABLE_ENTITY);

    assert!(key_rows(&app, &user.id).is_empty());
    assert_eq!(
        app.count_rows("recovery_codes", &user.id),
        0,
        "no codes for a refusal"
    );
    assert!(app.outbox_kinds("ada@example.com").is_empty());
}

#[tokio::test]
async fn another_users_key_cannot_be_renamed_or_removed() {
    let app = spawn_app().await;
    let mut bobs = TestKey::security_key();
    let (bob, _) = member_with(&app, "bob@example.com", &mut bobs).await;
    let bob_key: String = security_keys::table
        .filter(security_keys::user_id.eq(&bob.id))
        .select(security_keys::id)
        .get_result(&mut *app.conn())
        .unwrap();
    let mut adas = TestKey::security_key();
    let (_, ada) = member_with(&app, "ada@example.com", &mut adas).await;
    for (action, field) in [
        ("rename", ("name", "Mine now")),
        ("remove", ("password", PASSWORD)),
    ] {
        let page = ada
            .post(
                "/account/security",
                &format!("/account/security-keys/{bob_key}/{action}"),
                &[field],
            )
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{action}");
    }
    assert_eq!(
        key_rows(&app, &bob.id)[0].0,
        "My key",
        "Bob's key is as it was"
    );
}

#[tokio::test]
async fn an_account_has_at_most_twenty_keys() {
    let app = spawn_app().await;
    let mut key = TestKey::security_key();
    let (user, client) = member_with(&app, "ada@example.com", &mut key).await;
    for i in 1..tessera::auth::factors::security_key::MOST_KEYS {
        diesel::insert_into(security_keys::table)
            .values((
                security_keys::id.eq(format!("k{i}")),
                security_keys::user_id.eq(&user.id),
                security_keys::name.eq(format!("Key {i}")),
                security_keys::credential_id.eq(format!("c{i}")),
                security_keys::credential.eq("{}"),
                security_keys::passwordless.eq(false),
                security_keys::sign_count.eq(0),
                security_keys::created_at.eq(0),
            ))
            .execute(&mut *app.conn())
            .unwrap();
    }
    let mut another = TestKey::security_key();
    let page = register(&app, &client, &mut another, "One too many").await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    assert!(
        page.alert()
            .unwrap()
            .contains("the most an account can have")
    );
    assert_eq!(key_rows(&app, &user.id).len(), 20);
    app.assert_counts_agree();
}

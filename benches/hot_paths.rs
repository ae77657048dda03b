//! Micro-benchmarks of the work one sign-in does besides the database: `cargo bench`.
//!
//! Parameters come from the same settings the server reads (environment or `.env`), so
//! `ARGON2_MEMORY_KIB=… cargo bench` measures other argon2 parameters, and
//! `RECOVERY_CODE_BCRYPT_COST` the recovery-code check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use askama::Template;
use criterion::{Criterion, criterion_group, criterion_main};
use tessera::auth::factors::recovery::{find_match, generate_set};
use tessera::auth::factors::totp::TotpSecret;
use tessera::auth::password::PasswordHasher;
use tessera::auth::secret_box::Keyring;
use tessera::config::Settings;
use tessera::domain::TotpCode;
use tessera::routes::login::LoginPage;
use tessera::web::views::Layout;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn settings() -> Settings {
    Settings::from_env().expect("the settings in the environment are valid")
}

fn totp(c: &mut Criterion) {
    let secret = TotpSecret::generate().unwrap();
    // A code that matches no step: the verifier tries all three tolerated steps.
    let code = TotpCode::parse("000000").unwrap();
    let now = 1_795_305_600;
    c.bench_function("totp: check a code (3 steps)", |b| {
        b.iter(|| {
            secret
                .matching_step(black_box(&code), black_box(now))
                .unwrap()
        })
    });
}

fn secret_box(c: &mut Criterion) {
    let keyring = Keyring::from_base64(KEY).unwrap();
    let user = "0123456789abcdef0123456789abcdef";
    let sealed = keyring.seal(user, &[7u8; 20]).unwrap();
    c.bench_function("secret box: open a TOTP secret", |b| {
        b.iter(|| keyring.open(black_box(user), black_box(&sealed)).unwrap())
    });
}

fn recovery(c: &mut Criterion) {
    let cost = settings().recovery_code_bcrypt_cost;
    let set = generate_set(cost).unwrap();
    let candidates: Vec<(String, String)> = set
        .hashes
        .iter()
        .enumerate()
        .map(|(i, h)| (i.to_string(), h.clone()))
        .collect();
    // Worst case: the right code is the last one compared.
    let last = set.codes.last().unwrap();
    let mut group = c.benchmark_group("recovery");
    group.sample_size(10);
    group.bench_function(
        format!("check a code, right one last (bcrypt cost {cost})"),
        |b| b.iter(|| assert!(find_match(black_box(last), &candidates).is_some())),
    );
    group.finish();
}

fn argon2(c: &mut Criterion) {
    let settings = settings();
    let hasher = PasswordHasher::new(settings.argon2, 1).unwrap();
    let stored = hasher
        .hash_blocking("correct horse battery staple")
        .unwrap();
    let a = settings.argon2;
    let mut group = c.benchmark_group("argon2id");
    group.sample_size(20);
    group.bench_function(
        format!(
            "verify (m={} KiB, t={}, p={})",
            a.memory_kib, a.iterations, a.parallelism
        ),
        |b| {
            b.iter(|| {
                assert!(
                    hasher
                        .verify_blocking(black_box("correct horse battery staple"), &stored)
                        .unwrap()
                )
            })
        },
    );
    group.finish();
}

fn render(c: &mut Criterion) {
    c.bench_function("render: the sign-in page", |b| {
        b.iter(|| {
            let page = LoginPage {
                layout: Layout {
                    title: "Sign in".into(),
                    csrf_token: "a".repeat(43),
                    user_email: None,
                    flash: None,
                    grace: None,
                    is_admin: false,
                    is_staff: false,
                },
                email: String::new(),
                next: String::new(),
                error: None,
                // The page carries a passkey challenge of this shape.
                passkey_options: Some(format!(
                    r#"{{"challenge":"{}","timeout":300000,"rpId":"login.example.com","allowCredentials":[],"userVerification":"required"}}"#,
                    "a".repeat(43)
                )),
            };
            black_box(page.render().unwrap())
        })
    });
}

criterion_group!(benches, totp, secret_box, recovery, argon2, render);
criterion_main!(benches);

//! The integration suite: the real application over HTTP, on SQLite by default and on
//! PostgreSQL when `TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod account;
mod admin;
#[path = "../common/mod.rs"]
mod common;
mod demo;
mod enforcement;
mod enrolment;
mod first_run;
mod guard;
mod hardening;
mod helpers;
mod import;
mod invites;
mod key_policy;
mod key_rotation;
mod limits;
mod loadflow;
mod mail;
mod members;
mod operations;
mod outage;
mod passwords;
mod recovery;
mod second_factor;
mod security_keys;
mod sessions;
mod sign_in;
mod smtp;
mod statements;
mod support;
mod sweeper;
mod your_sessions;

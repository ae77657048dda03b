//! Tessera: sign-in with a password and a second factor, for organisations split into
//! workspaces. The binary (`src/main.rs`) is a thin command line over this library.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod import;
pub mod limits;
pub mod mail;
pub mod random;
pub mod routes;
pub mod session_store;
pub mod startup;
pub mod state;
pub mod sweeper;
pub mod telemetry;
pub mod web;
pub mod words;

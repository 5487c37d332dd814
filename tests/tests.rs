//! End-to-end tests: each builds a project folder like a user's, runs the real `nurture`
//! binary in it and checks what the user sees (exit code, output, files, database).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abtest;
mod bounces;
mod cli;
mod daemon;
mod dashboard;
mod delivery;
mod dkim;
mod explain;
mod forms;
mod plan;
mod send;
mod simulate;
mod support;
mod validate;
mod webhook;

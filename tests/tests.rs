//! End-to-end tests: each builds a project folder like a user's, runs the real `nurture`
//! binary in it and checks what the user sees (exit code, output, files, database).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod daemon;
mod delivery;
mod explain;
mod forms;
mod plan;
mod send;
mod simulate;
mod support;
mod validate;

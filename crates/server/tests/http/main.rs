//! End-to-end tests of the HTTP routes: a real server on a free port, a real SQLite file per
//! test, and HTTP/1.1 requests written by hand.

#![allow(clippy::unwrap_used)]

mod bounces;
mod dashboard;
mod forms;
mod ingest;
mod limits;
mod links;
mod ops;
mod support;

//! The integration tests: one binary, one module per suite, all against real servers on 127.0.0.1 (see
//! [`common`] and the `testkit` crate). One link instead of one per suite; `cargo test --test it SUITE::` runs
//! one suite. The cluster/TLS test is its own binary (`tests/cluster_tls.rs`): it sets `SSL_CERT_FILE` for the
//! whole process.

mod common;

mod access;
mod access_handlers;
mod bad_input;
mod browser;
mod cache;
mod cache_full;
mod conditional;
mod convergence;
mod events;
mod exact;
mod expiry;
mod faults;
mod functions;
mod history;
mod listing;
mod local;
mod local_clients;
mod local_crash;
mod local_lock;
mod local_repair;
mod local_s3;
mod ofrep;
mod openapi;
mod pipeline;
mod push;
mod push_browser;
mod reconcile;
mod schemas;
mod watch;

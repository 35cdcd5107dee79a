//! The real `s3kv` binary against a running s3kv-local (its S3 endpoint, syncer, API and a valkey-server), one
//! behaviour a test, each on a stack of its own so they run in parallel: every command, its output and exit code,
//! `edit` racing a concurrent write, and an import of 1,000 files. Here rather than in tests/it because only a
//! package's own tests are told where its binary is (CARGO_BIN_EXE_s3kv). One test binary: the modules share
//! [`harness`].

mod configure;
mod console;
mod doctor;
mod doctor_storage;
mod edit;
mod exact;
mod harness;
mod history;
mod items;
mod redrive;
mod schema;
mod transfer;
mod usage;
mod validate;
mod watch_item;
mod watch_prefix;
mod watch_push;

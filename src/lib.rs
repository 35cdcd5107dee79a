//! s3kv: a tiny JSON key-value store whose source of truth is S3 and whose read path is Valkey.
//!
//! # Tour
//!
//! ```text
//!  PUT/POST/DELETE /items/{key}                      GET /items/{key}
//!        │                                                 │
//!   api::handle_write ──▶ write::Writer ──▶ S3 ◀── read::Reader ◀── api::handle_read
//!                                            │        │  ▲ miss / Valkey down: read S3
//!                          S3 notification   │        ▼  │
//!   s3_event::handle ──▶ sync::Syncer ───────┴──▶ Valkey (one string per item, ordered by sequencer)
//!                                    │
//!                                    └──▶ change feed (one Valkey stream) ──▶ watch: ?wait= and GET /changes
//! ```
//!
//! The crate is layered so that the rules live in one place and the edges stay thin:
//!
//! * **Concepts** (pure, no I/O): [`key`] (item key rules and the key ↔ object key ↔ cache key mapping),
//!   [`percent`] (the two URL encodings we receive), [`sequencer`] (S3's per-key event order),
//!   [`document`] (what counts as a JSON document), [`config`] (one validated struct from the environment),
//!   [`routes`] (the HTTP API's route table, which the API, s3kv-local's gateway, the tests and the template
//!   check all read), [`access`] (which API key may use which route on which items: grants from the
//!   configuration, checked before any I/O), [`audit`] (who wrote an item, as stored with it and answered on
//!   reads), [`schema`] (JSON Schemas per key prefix, compiled once per instance and refreshed by ETag: the
//!   writer refuses a document that breaks its prefix's schema, the syncer and reconcile count uploads that do),
//!   [`expiry`] (per-item expiry: the `ttl`/`expiresAt` rules, the one clock reads compare with, the reaper's
//!   index members).
//! * **Ports**: [`ports`] declares the small traits the use cases need, [`ports::ObjectStore`],
//!   [`ports::Cache`] and [`ports::Feed`] (the change feed), with error types that say whether a failure is worth
//!   retrying.
//! * **Use cases** (pure over the ports): [`write`](mod@write), [`read`], [`sync`], [`reconcile`]. They hold the semantics:
//!   create vs replace, cache-first reads with a safe fill, ordered and idempotent cache updates, and repairing
//!   the cache from the bucket without ever racing a sync into a rollback. An item's history is the bucket's
//!   versions: [`read::Reader::versions`] lists them, [`write::Writer::restore`] writes an old one again.
//!   [`watch`] waits for an item to change and follows the change feed the syncer appends to. [`reap`] deletes
//!   the objects of expired items (readers already treat them as gone), from an index the syncer keeps.
//! * **Event edges**: [`api`] dispatches API Gateway proxy requests by the route table to use-case calls and
//!   turns every error into an HTTP status (the HTTP contract lives there and only there, split by concern);
//!   [`s3_event`] turns S3 notification records into sync operations, and can also build records in AWS's
//!   format for local delivery and tests.
//! * **Adapters**: [`adapters::s3`] (aws-sdk-s3) and [`adapters::valkey`] (fred + one Lua script; the change
//!   feed is a stream beside the items, read by one blocking XREAD per process).
//! * **Metrics**: [`metrics`] writes CloudWatch Embedded Metric Format lines (cache hits, misses and bypasses;
//!   records applied, skipped and failed; propagation lag from `eventTime` to the cache write). An edge concern:
//!   the entrypoints write them from what the handlers report; the use cases never see them.
//! * **Retry**: [`retry`] is the only module that knows the `backoff` crate; every retry is bounded by the
//!   Lambda invocation's deadline.
//! * **In memory**: [`memory::MemoryStore`] is an [`ports::ObjectStore`] with S3's semantics and no I/O, for unit
//!   tests, fuzzing and benchmarks of the use cases; no function uses it.
//! * **Entrypoints**: `src/bin/{writer,syncer,reader,reconcile}.rs` build config and clients once, then hand
//!   each Lambda event to a handler from this library. Only they import `lambda_runtime`.
//!
//! Around this crate, in the workspace's `crates/` and never linked into a function: `s3kv-local` runs the same
//! handlers on 127.0.0.1 behind an S3 endpoint that emits notifications and an API that checks keys like API
//! Gateway; `s3kv-bench` is the benchmark harness; `testkit` starts the real servers the tests use.
//!
//! # Why the cache can never roll back
//!
//! Every cache write for an item is one Lua script call on one key (cluster-safe). The item's entry stores the
//! S3 `sequencer` of the event that produced it; an event whose sequencer is not newer changes nothing, and a
//! delete leaves a tombstone carrying its sequencer, so a late create cannot resurrect a deleted key. The
//! syncer reads the object with `If-Match: <event etag>`, so the body it stores is the body of that event;
//! if S3 already holds something newer the read fails with 412 and the newer event will do the work.
//! A reader fill after a miss only writes when the key is absent, so it never overwrites the syncer.

pub mod access;
pub mod adapters;
pub mod api;
pub mod audit;
pub mod config;
pub mod document;
pub mod expiry;
pub mod key;
pub mod memory;
pub mod metrics;
pub mod percent;
pub mod ports;
pub mod push;
pub mod read;
pub mod reap;
pub mod reconcile;
pub mod retry;
pub mod routes;
pub mod s3_event;
pub mod schema;
pub mod sequencer;
pub mod sync;
pub mod telemetry;
pub mod watch;
pub mod write;

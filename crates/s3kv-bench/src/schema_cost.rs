//! What schema validation costs a write (#20), in two parts, each against a baseline in the same run:
//!
//! * **CPU**, in process: compiling a schema (once per instance and schema ETag), and checking a 1 KiB document
//!   against it, valid and with three violations, next to the JSON check every write already makes
//!   ([`s3kv::document::validate`]).
//! * **A write**, [`Writer::put`] against the bench's S3 endpoint, with no schema in the bucket, with one governing
//!   the key, and with twenty (one governing), interleaved with the baseline of the same body stored by the S3
//!   adapter alone (one PUT, no checks). Every write lists the schemas (one S3 LIST) and compiles only what changed,
//!   so the difference between the rows is that LIST plus the check. A dry run (`?dryRun=true`) is the LIST and
//!   the check without the PUT.
//!
//! Every answer is checked: a write must be created, a violating document refused with its three violations.

use std::time::{Duration, Instant};

use bytes::Bytes;
use s3kv::adapters::s3::S3Store;
use s3kv::audit::Author;
use s3kv::key::{ItemKey, KeyPrefix};
use s3kv::ports::{ObjectStore, PutMode};
use s3kv::schema::{Schema, SchemaError};
use s3kv::write::{Precondition, WriteError, Writer};

use crate::data::json_body;
use crate::load::Sample;
use crate::read_path::Bench;
use crate::report::Metrics;
use crate::{BUCKET, READ_BODY_BYTES};

const SECTION: &str = "Schema validation per write";
/// Writes per variant and bucket state (`S3KV_BENCH_SCHEMA_WRITES`).
const DEFAULT_WRITES: usize = 300;
/// The prefix whose schema governs the written keys.
const GOVERNING: &str = "schema-bench/flags/";

/// A schema of the kind docs/src/http-api/schemas.md shows for a flag document, sized for [`json_body`]'s
/// documents.
const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["id", "name", "enabled", "tags"],
  "properties": {
    "id": {"type": "integer", "minimum": 0},
    "name": {"type": "string", "pattern": "^[a-z]+-[0-9]+$", "maxLength": 64},
    "enabled": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true, "maxItems": 10},
    "pad": {"type": "string", "maxLength": 4096}
  },
  "additionalProperties": false
}"#;

/// [`json_body`]'s shape with three violations: `id` a string, `enabled` missing, `extra` not allowed.
fn violating_body() -> String {
    let pad = "x".repeat(READ_BODY_BYTES - 120);
    format!(r#"{{"id":"seven","name":"write-7","tags":["bench","s3kv"],"extra":1,"pad":"{pad}"}}"#)
}

/// Median microseconds per call of `f`, timed in batches of 100 calls over about `budget`.
fn per_call_us(budget: Duration, mut f: impl FnMut()) -> f64 {
    const BATCH: u32 = 100;
    let mut batches = Vec::new();
    let started = Instant::now();
    while started.elapsed() < budget || batches.len() < 5 {
        let t = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        batches.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH));
    }
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}

impl Bench {
    pub(crate) async fn schema_cost(&self, m: &mut Metrics) {
        let writes: usize = std::env::var("S3KV_BENCH_SCHEMA_WRITES")
            .ok()
            .map(|n| n.parse().expect("S3KV_BENCH_SCHEMA_WRITES: a number"))
            .unwrap_or(DEFAULT_WRITES)
            .max(10);
        eprintln!("schema validation: CPU in process, then {writes} writes per variant");
        self.schema_cpu(m);
        self.schema_writes(writes, m).await;
    }

    fn schema_cpu(&self, m: &mut Metrics) {
        let budget = self.settings.phase;
        let valid = json_body("write", 7, READ_BODY_BYTES);
        let invalid = violating_body();
        let schema = Schema::compile(SCHEMA.as_bytes()).expect("the bench schema compiles");
        let check = |body: &str| {
            let document: serde_json::Value = serde_json::from_str(body).expect("JSON");
            schema.check(&document).len()
        };
        assert_eq!(check(&valid), 0, "the valid document meets the schema");
        assert_eq!(
            check(&invalid),
            3,
            "the violating document breaks it 3 times"
        );

        let json_check = per_call_us(budget, || {
            s3kv::document::validate(valid.as_bytes()).expect("valid JSON");
        });
        let valid_check = per_call_us(budget, || assert_eq!(check(&valid), 0));
        let invalid_check = per_call_us(budget, || assert_eq!(check(&invalid), 3));
        let compile = per_call_us(budget, || {
            Schema::compile(SCHEMA.as_bytes()).expect("compiles");
        });
        let kib = valid.len() as f64 / 1024.0;
        m.add(
            SECTION,
            "schema.cpu.json",
            &format!("the JSON check every write makes, {kib:.1} KiB document (baseline)"),
            "µs",
            json_check,
        );
        m.add(
            SECTION,
            "schema.cpu.valid",
            "parse + schema check, the same document, valid",
            "µs",
            valid_check,
        );
        m.add(
            SECTION,
            "schema.cpu.invalid",
            "parse + schema check, three violations collected",
            "µs",
            invalid_check,
        );
        m.add(
            SECTION,
            "schema.cpu.ratio",
            "valid check / JSON check",
            "x",
            valid_check / json_check,
        );
        m.add(
            SECTION,
            "schema.cpu.compile",
            "compiling the schema (once per instance and ETag)",
            "µs",
            compile,
        );
    }

    async fn schema_writes(&self, writes: usize, m: &mut Metrics) {
        let writer = Writer::new(S3Store::new(self.s3.clone(), BUCKET), &self.config);
        let store = S3Store::new(self.s3.clone(), BUCKET);
        let keys = self.config.key_map();
        let author = Author {
            key_name: Some("bench".into()),
            ..Default::default()
        };
        let deadline = || Instant::now() + Duration::from_secs(30);
        let valid = Bytes::from(json_body("write", 7, READ_BODY_BYTES));
        let invalid = Bytes::from(violating_body());
        let governing = KeyPrefix::parse(GOVERNING).expect("prefix");
        let others: Vec<KeyPrefix> = (0..19)
            .map(|i| KeyPrefix::parse(&format!("schema-bench/other{i:02}/")).expect("prefix"))
            .collect();

        let mut baseline = Sample::default();
        for (state, schemas) in [("none", 0), ("one", 1), ("twenty", 20)] {
            // The bucket's schemas for this state: the governing one, then nineteen others.
            let added: &[KeyPrefix] = match schemas {
                1 => std::slice::from_ref(&governing),
                20 => &others,
                _ => &[],
            };
            for prefix in added {
                writer
                    .put_schema(
                        prefix,
                        Bytes::from_static(SCHEMA.as_bytes()),
                        &Precondition::None,
                        &author,
                        deadline(),
                    )
                    .await
                    .expect("put a schema");
            }
            let listed = writer.schemas(deadline()).await.expect("list schemas");
            assert_eq!(listed.all().len(), schemas, "schemas in the bucket");
            // A first write compiles what is new; the measured ones find it compiled.
            let warm = ItemKey::parse(&format!("{GOVERNING}warm-{state}")).expect("key");
            writer
                .put(
                    &warm,
                    valid.clone(),
                    &Precondition::None,
                    &author,
                    deadline(),
                )
                .await
                .expect("warm-up write");

            let (mut with_writer, mut dry_runs) = (Sample::default(), Sample::default());
            for i in 0..writes {
                // Interleaved, so both see the same machine: the adapter's PUT alone, then the writer's write.
                let raw = keys.object_key(
                    &ItemKey::parse(&format!("schema-bench/raw/{state}-{i:05}")).expect("key"),
                );
                let t = Instant::now();
                store
                    .put(&raw, valid.clone(), PutMode::Overwrite, &author)
                    .await
                    .expect("baseline PUT");
                baseline.lat_ns.push(t.elapsed().as_nanos() as u64);

                let key = ItemKey::parse(&format!("{GOVERNING}{state}-{i:05}")).expect("key");
                let t = Instant::now();
                let written = writer
                    .put(
                        &key,
                        valid.clone(),
                        &Precondition::None,
                        &author,
                        deadline(),
                    )
                    .await
                    .expect("a valid write");
                with_writer.lat_ns.push(t.elapsed().as_nanos() as u64);
                assert!(written.created, "{key} is a new key");

                if schemas > 0 {
                    let t = Instant::now();
                    let checked = writer.check(&key, &valid, deadline()).await;
                    dry_runs.lat_ns.push(t.elapsed().as_nanos() as u64);
                    assert_eq!(
                        checked.expect("a valid dry run").as_deref(),
                        Some(GOVERNING)
                    );
                }
            }
            // A write that breaks the schema is refused, with every violation, and nothing stored.
            if schemas > 0 {
                let key = ItemKey::parse(&format!("{GOVERNING}refused-{state}")).expect("key");
                match writer
                    .put(
                        &key,
                        invalid.clone(),
                        &Precondition::None,
                        &author,
                        deadline(),
                    )
                    .await
                {
                    Err(WriteError::Schema(SchemaError::Violated(v))) => {
                        assert_eq!(v.count, 3, "{v:?}")
                    }
                    other => panic!("a violating write was not refused: {other:?}"),
                }
            }
            let label = match schemas {
                0 => "no schema in the bucket".to_owned(),
                n => format!(
                    "{n} schema{} in the bucket, one governing",
                    if n == 1 { "" } else { "s" }
                ),
            };
            for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
                m.add(
                    SECTION,
                    &format!("schema.write.{state}.{name}"),
                    &format!("Writer::put, {label}: {name}"),
                    "µs",
                    with_writer.pct_us(p),
                );
            }
            if !dry_runs.lat_ns.is_empty() {
                m.add(
                    SECTION,
                    &format!("schema.dry_run.{state}.p50"),
                    &format!("dry run (list + check, no PUT), {label}: p50"),
                    "µs",
                    dry_runs.pct_us(50.0),
                );
            }
        }
        let base_p50 = baseline.pct_us(50.0);
        for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
            m.add(
                SECTION,
                &format!("schema.write.baseline.{name}"),
                &format!(
                    "the same body stored by the S3 adapter alone, one PUT (baseline): {name}"
                ),
                "µs",
                baseline.pct_us(p),
            );
        }
        let value = |id: &str| {
            m.0.iter()
                .find(|x| x.id == id)
                .map(|x| x.value)
                .expect("measured")
        };
        let twenty = value("schema.write.twenty.p50");
        let none = value("schema.write.none.p50");
        m.add(
            SECTION,
            "schema.write.ratio",
            "Writer::put with 20 schemas / baseline PUT (p50)",
            "x",
            twenty / base_p50,
        );
        m.add(
            SECTION,
            "schema.write.added",
            "added by 20 schemas over none (p50)",
            "µs",
            twenty - none,
        );

        for prefix in std::iter::once(&governing).chain(&others) {
            writer
                .delete_schema(prefix, &Precondition::None, deadline())
                .await
                .expect("delete a schema");
        }
    }
}

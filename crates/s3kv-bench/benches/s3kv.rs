//! `cargo bench -p s3kv-bench --bench s3kv`: the harness lives in the crate (src/lib.rs describes it).

fn main() {
    s3kv_bench::main()
}

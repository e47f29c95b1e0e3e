//! The shared conformance suite, run against [`stent_postgres::PostgresBackend`]
//! on a fresh schema per test (dropped afterwards), so the tests run in
//! parallel. The server is `STENT_TEST_PG_URL`; see `common/mod.rs` for what
//! happens when it is unreachable.

mod common;

stent_conformance::conformance_tests!(optional: common::fixture());

//! Property tests ("fuzzing" with proptest) of everything that sees record
//! bytes: JSON decoding, column mapping, coercion, the binary cells sent by
//! COPY and as INSERT parameters, key and header handling, and the upsert
//! collapse. docs/testing.md ("Fuzzing") says what each target covers and
//! how to run a longer campaign.
//!
//! proptest rather than cargo-fuzz: it runs on stable inside `cargo test`,
//! so CI runs every target without a nightly toolchain. A failure is turned
//! into a named test in `regressions`; proptest's own regression files are
//! not written (`failure_persistence: None`), so the tree stays clean.

mod fields;
mod inputs;
mod numbers;
mod plans;
mod records;
mod regressions;
mod tree;
mod upsert;
mod wire;

use proptest::test_runner::Config;

/// `cases` per target in CI (the whole set takes about a minute); the
/// `PROPTEST_CASES` environment variable raises every target to at least
/// that many for a longer campaign.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .map_or(cases, |n: u32| n.max(cases));
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

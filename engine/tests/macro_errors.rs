//! Compile-time diagnostics pinned with trybuild: the `#[durable]`
//! attribute's errors, and the warnings for a durable effect written
//! without `.await`.

#[test]
fn durable_attribute_errors_are_clear() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

#[test]
fn a_durable_effect_not_awaited_is_flagged() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui_lints/*.rs");
}

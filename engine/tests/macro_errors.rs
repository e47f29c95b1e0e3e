//! The `#[durable]` attribute's compile errors, pinned with trybuild.

#[test]
fn durable_attribute_errors_are_clear() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

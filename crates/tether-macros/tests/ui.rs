//! Compile-time behaviour of `#[tether::service]`: what it accepts, and how it rejects misuse.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}

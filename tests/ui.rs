//! Compile-time behaviour of the macros: what compiles, and the errors
//! (with their locations) for what does not. Stable toolchain output only.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}

//! Compile-time behaviour of `#[tether::service]`: what it accepts, and how it rejects misuse.

use std::path::Path;

#[test]
fn ui() {
    use_the_workspace_profile();
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}

/// trybuild builds its cases as a project of its own under `target/tests/trybuild`, without the
/// workspace's `[profile]`, so with full debug info for every dependency: a fifth of this test's
/// time on a cold build. Cargo reads `.cargo/config.toml` from the directories above a project,
/// so one there gives that project the workspace's profile (line tables for our code, no debug
/// info for dependencies); nothing else is built below that directory.
fn use_the_workspace_profile() {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp");
    let config = target.join("tests/trybuild/.cargo");
    std::fs::create_dir_all(&config).expect("creating trybuild's cargo config directory");
    std::fs::write(
        config.join("config.toml"),
        "# Written by crates/tether-macros/tests/ui.rs: the workspace's dev profile.\n\
         [profile.dev]\ndebug = \"line-tables-only\"\n\
         [profile.dev.package.\"*\"]\ndebug = false\n",
    )
    .expect("writing trybuild's cargo config");
}

//! Where the binaries under test are.

use std::path::PathBuf;

/// The binary `name` (`sluice`, `sluice-bench`): the path in the
/// environment variable `env` if set, else the one beside the running
/// executable (a binary in `target/PROFILE/`) or one level up (a test in
/// `target/PROFILE/deps/`). Panics, saying how to build it, if it is
/// missing.
pub fn binary(name: &str, env: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env) {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the running executable's path");
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no {name} beside {}: run `cargo build --bin {name}` first \
                 (scripts/test.sh does), or set {env}",
                exe.display()
            )
        })
}

/// The `sluice` binary whose roles are started: `SLUICE_BIN`, or the one
/// beside the running executable.
pub fn sluice_binary() -> PathBuf {
    binary("sluice", "SLUICE_BIN")
}

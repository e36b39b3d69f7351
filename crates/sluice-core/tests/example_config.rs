//! The example config in the repository loads.

#![allow(clippy::unwrap_used)]

#[test]
fn the_example_config_loads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/sluice.example.toml"
    );
    let config = sluice_core::config::Config::load(std::path::Path::new(path)).unwrap();
    assert_eq!(
        config.route("mock-small").unwrap().providers,
        ["local-mock"]
    );
    assert_eq!(config.worker.prefetch(), 256);
}

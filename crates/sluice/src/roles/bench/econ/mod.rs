//! The economics benchmark's parts (issue: `sluice bench econ`). So far the
//! workload generator, which `sluice bench cache` runs on.

pub mod workload;

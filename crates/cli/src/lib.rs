//! The `portcullis` command: configuration (embedded defaults, a YAML file, environment
//! overrides) and the subcommands that use it.
#![forbid(unsafe_code)]

pub mod config;
pub mod policy;

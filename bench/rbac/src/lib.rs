//! Holder crate of the RBAC benchmarks (see `benches/`).

//! Nothing but the tests in `tests/`: see `Cargo.toml` for why this crate stands apart.

//! Empty: the self-tests are in `tests/wine.rs`.

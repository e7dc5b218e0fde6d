//! Where declared peers come from. Each source yields [`Declaration`]s for the core to
//! validate; the directory source is the embedded default.
//!
//! [`Declaration`]: crate::core::validate::Declaration

pub mod directory;
pub mod document;

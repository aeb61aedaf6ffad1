//! Sources of configuration. Each turns what it watches into [`crate::SourceEvent`]s.

pub mod files;
pub mod kubernetes;

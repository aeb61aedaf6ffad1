//! The work queue (being written).

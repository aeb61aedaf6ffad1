//! Sources of configuration. Each turns what it watches into [`SourceEvent`]s, the only thing
//! the reconciler hears from them.

pub mod files;
pub mod kubernetes;

use weir_contract::{Origin, SourceProblem};

use crate::kinds::{Object, ObjectKey};

/// What a source tells the store. The file source and the Kubernetes informers emit the same
/// events.
#[derive(Clone, Debug)]
pub enum SourceEvent {
    /// The object exists with this content (created or changed).
    Apply { object: Object, origin: Origin },
    /// The object is gone.
    Delete(ObjectKey),
    /// The source has delivered everything it held when it started.
    Synced { source: &'static str },
    /// The source's current problems, replacing those it reported before.
    Problems {
        source: &'static str,
        problems: Vec<SourceProblem>,
    },
}

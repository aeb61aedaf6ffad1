//! What the data plane tells the control plane: which AI providers it is skipping.
//!
//! Everything else in this crate goes from the control plane to the data plane. Ejection is
//! the one fact only the data plane knows (it sees the failures) and an operator looks for in
//! the AIModel's status, so the data plane publishes an [`EjectedProviders`] whenever it ejects
//! a provider and the binary hands it to the status writer. An ejection ends by time alone:
//! each entry carries its end, and nothing is published when that passes; whoever shows an
//! ejection stops showing it then.

use std::{collections::BTreeMap, time::SystemTime};

use crate::ids::NamespacedName;

/// AI providers skipped after consecutive failures, by model and provider name, each with
/// when its ejection ends.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use weir_contract::{EjectedProviders, NamespacedName};
///
/// let now = SystemTime::now();
/// let chat = NamespacedName::new("ai", "chat");
/// let mut ejected = EjectedProviders::default();
/// ejected.eject(&chat, "primary", now + Duration::from_secs(30));
/// assert_eq!(ejected.until(&chat, "primary"), Some(now + Duration::from_secs(30)));
/// ejected.forget_ended(now + Duration::from_secs(30));
/// assert!(ejected.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EjectedProviders {
    until_by_model: BTreeMap<NamespacedName, BTreeMap<String, SystemTime>>,
}

impl EjectedProviders {
    /// Records that `provider` of `model` is skipped until `until` (a later ejection of the
    /// same provider replaces an earlier one).
    pub fn eject(&mut self, model: &NamespacedName, provider: &str, until: SystemTime) {
        self.until_by_model
            .entry(model.clone())
            .or_default()
            .insert(provider.to_owned(), until);
    }

    /// Forgets every ejection that has ended by `now`.
    pub fn forget_ended(&mut self, now: SystemTime) {
        self.until_by_model.retain(|_, providers| {
            providers.retain(|_, until| *until > now);
            !providers.is_empty()
        });
    }

    /// When `provider` of `model` stops being skipped, if it is (or was: an ended ejection is
    /// kept until [`Self::forget_ended`]).
    pub fn until(&self, model: &NamespacedName, provider: &str) -> Option<SystemTime> {
        self.until_by_model.get(model)?.get(provider).copied()
    }

    /// The ejected providers of `model`, by name, with when each ejection ends.
    pub fn of_model(&self, model: &NamespacedName) -> impl Iterator<Item = (&str, SystemTime)> {
        self.until_by_model
            .get(model)
            .into_iter()
            .flatten()
            .map(|(provider, until)| (provider.as_str(), *until))
    }

    /// The models with an ejected provider.
    pub fn models(&self) -> impl Iterator<Item = &NamespacedName> {
        self.until_by_model.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.until_by_model.is_empty()
    }
}

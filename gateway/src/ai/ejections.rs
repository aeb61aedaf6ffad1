//! The AI providers this gateway skips after consecutive failures, published for whoever shows
//! them (the binary hands them to the control plane's status writer; the gateway never talks
//! to the API server).
//!
//! Published on ejection only, never per request: a provider's
//! [`ProviderHealth`](super::index::ProviderHealth) says when a failure ejects it, and the
//! request that saw that failure tells [`Ejections`]. An ejection ends by time alone, so
//! nothing is published when one ends; each entry carries its end, and ended entries are
//! dropped the next time something is published.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::watch;
use weir_contract::{EjectedProviders, NamespacedName};

/// Where ejections are published; clones publish to the same subscribers.
///
/// ```
/// use std::time::Duration;
/// use weir_contract::NamespacedName;
/// use weir_gateway::ai::Ejections;
///
/// let ejections = Ejections::default();
/// let ejected = ejections.subscribe();
/// let chat = NamespacedName::new("ai", "chat");
/// ejections.started(&chat, "primary", Duration::from_secs(30));
/// assert!(ejected.borrow().until(&chat, "primary").is_some());
/// ```
#[derive(Clone)]
pub struct Ejections {
    published: Arc<watch::Sender<EjectedProviders>>,
}

impl Default for Ejections {
    fn default() -> Self {
        let (published, _) = watch::channel(EjectedProviders::default());
        Self {
            published: Arc::new(published),
        }
    }
}

impl Ejections {
    /// Publishes that `provider` of `model` is skipped for `duration` from now.
    pub fn started(&self, model: &NamespacedName, provider: &str, duration: Duration) {
        let now = SystemTime::now();
        // An ejection too long to be a time is one nobody will see end; it is not shown.
        let Some(until) = now.checked_add(duration) else {
            return;
        };
        self.published.send_modify(|ejected| {
            ejected.forget_ended(now);
            ejected.eject(model, provider, until);
        });
    }

    /// The ejected providers, now and as they change.
    pub fn subscribe(&self) -> watch::Receiver<EjectedProviders> {
        self.published.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ejection_is_published_with_its_end() {
        let ejections = Ejections::default();
        let mut ejected = ejections.subscribe();
        let chat = NamespacedName::new("ai", "chat");
        let before = SystemTime::now();
        ejections.started(&chat, "primary", Duration::from_secs(30));
        assert!(ejected.has_changed().unwrap());
        let until = ejected.borrow_and_update().until(&chat, "primary").unwrap();
        assert!(until >= before + Duration::from_secs(30), "{until:?}");
        assert!(until <= SystemTime::now() + Duration::from_secs(30));
    }

    #[test]
    fn ended_ejections_are_dropped_when_the_next_one_is_published() {
        let ejections = Ejections::default();
        let ejected = ejections.subscribe();
        let chat = NamespacedName::new("ai", "chat");
        ejections.started(&chat, "primary", Duration::ZERO);
        ejections.started(&chat, "backup", Duration::from_secs(30));
        let ejected = ejected.borrow();
        let providers: Vec<&str> = ejected.of_model(&chat).map(|(name, _)| name).collect();
        assert_eq!(providers, ["backup"]);
    }
}

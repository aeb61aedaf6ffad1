//! The AI gateway's compiled configuration: which model a request names on its host, which
//! prompt a `/prompts/` path names there, which client key it carries, and how each provider
//! is reached.
//!
//! Built once per snapshot from [`AiConfig`] (and reused while the snapshot's `AiConfig` is
//! the same `Arc`), read by every AI request without a lock. Provider health (consecutive
//! failures, ejection) lives in [`ProviderHealth`], kept across tables by model and provider
//! name, so a table swap neither forgets nor resets an ejection; an ejection is also told to
//! [`Ejections`], for the AIModel's status.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use http::HeaderValue;
use tokio::sync::watch;
use weir_contract::{
    Access, AiAddress, AiApi, AiConfig, AiModel, AiPrompt, AiProvider, ClientKey, Eject,
    EjectedProviders, NamespacedName, Protocol,
};

use super::{Ejections, prompts::CompiledPrompt};
use crate::{
    state::StateMap,
    upstream::{Target, TargetAddress, TlsConnectorConfig},
};

/// The compiled AI configuration of one table.
pub struct AiIndex {
    /// The configuration it was compiled from (the same `Arc` means nothing changed).
    pub config: Arc<AiConfig>,
    models: Vec<CompiledModel>,
    exact_hosts: HashMap<Box<str>, Vec<usize>>,
    /// Keyed by the suffix with its leading dot.
    wildcard_hosts: HashMap<Box<str>, Vec<usize>>,
    any_host: Vec<usize>,
    keys: HashMap<[u8; 32], Arc<ClientKey>>,
    pub metrics: super::AiMetrics,
    /// Told when a request's failure ejects a provider.
    pub ejections: Ejections,
}

/// One model with its providers ready to be called.
pub struct CompiledModel {
    pub model: Arc<AiModel>,
    pub providers: Vec<CompiledProvider>,
    /// One per `model.prompts`, in its order.
    pub prompts: Vec<CompiledPrompt>,
}

/// One provider: its targets, its credential as a header, and its health.
pub struct CompiledProvider {
    /// Index into `model.providers`.
    pub index: usize,
    /// One per endpoint (a Service) or one (a URL); empty when it cannot be used.
    pub targets: Vec<Target>,
    /// The header its credential goes in, ready to send (marked sensitive).
    pub auth: Option<(http::HeaderName, HeaderValue)>,
    pub health: Arc<ProviderHealth>,
}

/// A provider's recent failures, kept across tables.
#[derive(Debug, Default)]
pub struct ProviderHealth {
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the provider is skipped; 0: not ejected.
    ejected_until_ms: AtomicU64,
    epoch: Option<Instant>,
}

impl ProviderHealth {
    fn new() -> Self {
        Self {
            epoch: Some(Instant::now()),
            ..Self::default()
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch
            .map_or(0, |epoch| epoch.elapsed().as_millis() as u64)
            .max(1)
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    pub fn succeeded(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts a failure; returns how long the provider is now skipped, if this failure
    /// ejected it.
    pub fn failed(&self, eject: Option<&Eject>) -> Option<Duration> {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        match eject {
            Some(eject) if failures >= eject.consecutive_failures => {
                self.consecutive_failures.store(0, Ordering::Relaxed);
                let until = self.now_ms() + eject.duration.as_millis() as u64;
                self.ejected_until_ms.store(until, Ordering::Relaxed);
                Some(eject.duration)
            }
            _ => None,
        }
    }
}

/// Long-lived state the AI gateway keeps across tables.
#[derive(Default)]
pub struct AiState {
    health: StateMap<(NamespacedName, String), ProviderHealth>,
    /// Where ejections are told, for every table's index.
    ejections: Ejections,
}

impl AiState {
    /// The providers ejected after consecutive failures, now and as they change.
    pub fn ejected_providers(&self) -> watch::Receiver<EjectedProviders> {
        self.ejections.subscribe()
    }
}

/// What a table compiler lends the AI index to build provider targets.
pub trait TlsConnectors {
    fn connector(&self, tls: &weir_contract::UpstreamTls) -> Option<Arc<TlsConnectorConfig>>;
}

impl AiIndex {
    pub fn compile(
        config: Arc<AiConfig>,
        state: &AiState,
        connectors: &dyn TlsConnectors,
        metrics: super::AiMetrics,
    ) -> Self {
        let mut exact_hosts: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut wildcard_hosts: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut any_host = Vec::new();
        let mut models = Vec::with_capacity(config.models.len());
        for (i, model) in config.models.iter().enumerate() {
            if model.hosts.is_empty() {
                any_host.push(i);
            }
            for host in &model.hosts {
                match host.strip_prefix('*') {
                    Some(suffix) => wildcard_hosts.entry(suffix.into()).or_default().push(i),
                    None => exact_hosts.entry(host.as_str().into()).or_default().push(i),
                }
            }
            let providers = model
                .providers
                .iter()
                .enumerate()
                .map(|(index, provider)| CompiledProvider {
                    index,
                    targets: if provider.unresolved.is_some() {
                        Vec::new()
                    } else {
                        targets(provider, model.timeouts.connect, connectors)
                    },
                    auth: auth_header(provider),
                    health: state.health.get_or_insert_with(
                        &(model.id.clone(), provider.name.clone()),
                        |_| true,
                        ProviderHealth::new,
                    ),
                })
                .collect();
            let prompts = model
                .prompts
                .iter()
                .enumerate()
                .map(|(index, prompt)| CompiledPrompt::compile(index, prompt))
                .collect();
            models.push(CompiledModel {
                model: model.clone(),
                providers,
                prompts,
            });
        }
        let keys = config
            .keys
            .iter()
            .map(|key| (key.sha256, key.clone()))
            .collect();
        Self {
            config,
            models,
            exact_hosts,
            wildcard_hosts,
            any_host,
            keys,
            metrics,
            ejections: state.ejections.clone(),
        }
    }

    /// Whether any model is served on `host` (lowercase, no port).
    pub fn serves_host(&self, host: &str) -> bool {
        !self.any_host.is_empty()
            || self.exact_hosts.contains_key(host)
            || wildcard_suffixes(host).any(|suffix| self.wildcard_hosts.contains_key(suffix))
    }

    /// The models served on `host`, most specific host first, then in `namespace/name` order.
    pub fn models_on<'a>(&'a self, host: &str) -> impl Iterator<Item = &'a CompiledModel> {
        let exact = self.exact_hosts.get(host).into_iter().flatten();
        let wildcard = wildcard_suffixes(host)
            .filter_map(|suffix| self.wildcard_hosts.get(suffix))
            .flatten();
        exact
            .chain(wildcard)
            .chain(self.any_host.iter())
            .map(|&i| &self.models[i])
    }

    /// The model named `name` on `host`.
    pub fn find<'a>(&'a self, host: &'a str, name: &str) -> Option<&'a CompiledModel> {
        self.models_on(host)
            .find(|model| model.model.names.iter().any(|n| n == name))
    }

    /// The prompt named `name` on `host`, and the model declaring it: the first model, in
    /// the order [`AiIndex::find`] looks, that declares it.
    pub fn find_prompt<'a>(
        &'a self,
        host: &str,
        name: &str,
    ) -> Option<(&'a CompiledModel, &'a CompiledPrompt)> {
        self.models_on(host).find_map(|model| {
            model
                .prompts
                .iter()
                .find(|prompt| model.prompt(prompt).name == name)
                .map(|prompt| (model, prompt))
        })
    }

    /// The client key whose SHA-256 is `digest`.
    pub fn key(&self, digest: &[u8; 32]) -> Option<&Arc<ClientKey>> {
        self.keys.get(digest)
    }
}

impl CompiledModel {
    /// Whether `key` (or no key) may call this model.
    pub fn allows(&self, key: Option<&ClientKey>) -> bool {
        match &self.model.access {
            Access::Public => true,
            Access::Keys {
                namespace,
                selector,
            } => key
                .is_some_and(|key| key.id.namespace == *namespace && selector.matches(&key.labels)),
        }
    }

    pub fn provider(&self, compiled: &CompiledProvider) -> &AiProvider {
        &self.model.providers[compiled.index]
    }

    pub fn prompt(&self, compiled: &CompiledPrompt) -> &AiPrompt {
        &self.model.prompts[compiled.index]
    }

    /// The order providers are tried in: by priority; within one priority, a weighted random
    /// order; providers that cannot be used are left out, and ejected ones go last (tried
    /// only when everything else failed).
    pub fn attempt_order(&self) -> Vec<&CompiledProvider> {
        let mut order: Vec<&CompiledProvider> = Vec::with_capacity(self.providers.len());
        let mut ejected = Vec::new();
        let usable = self
            .providers
            .iter()
            .filter(|p| !p.targets.is_empty() && self.provider(p).weight > 0);
        let mut group: Vec<&CompiledProvider> = Vec::new();
        let mut group_priority = None;
        for provider in usable {
            if provider.health.is_ejected() {
                ejected.push(provider);
                continue;
            }
            let priority = self.provider(provider).priority;
            if group_priority != Some(priority) {
                self.flush(&mut group, &mut order);
                group_priority = Some(priority);
            }
            group.push(provider);
        }
        self.flush(&mut group, &mut order);
        order.extend(ejected);
        order
    }
}

impl CompiledModel {
    /// Moves `group` into `order` in a weighted random order (sampling without replacement).
    fn flush<'a>(
        &self,
        group: &mut Vec<&'a CompiledProvider>,
        order: &mut Vec<&'a CompiledProvider>,
    ) {
        while !group.is_empty() {
            let total: u64 = group
                .iter()
                .map(|p| u64::from(self.provider(p).weight))
                .sum();
            let mut pick = crate::balance::random::below(total.max(1));
            let mut chosen = 0;
            for (i, p) in group.iter().enumerate() {
                let weight = u64::from(self.provider(p).weight);
                if pick < weight {
                    chosen = i;
                    break;
                }
                pick -= weight;
            }
            order.push(group.remove(chosen));
        }
    }
}

impl CompiledProvider {
    /// The target for this attempt: the one URL, or an endpoint of the Service at random.
    pub fn target(&self) -> &Target {
        let i = match self.targets.len() {
            1 => 0,
            n => crate::balance::random::below(n as u64) as usize,
        };
        &self.targets[i]
    }
}

fn wildcard_suffixes(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.').map(move |(i, _)| &host[i..])
}

/// A provider's targets, each connecting within the model's `timeouts.connect`.
fn targets(
    provider: &AiProvider,
    connect: std::time::Duration,
    connectors: &dyn TlsConnectors,
) -> Vec<Target> {
    let endpoint = &provider.endpoint;
    let tls = match &endpoint.tls {
        Some(tls) => match connectors.connector(tls) {
            Some(connector) => Some(connector),
            None => return Vec::new(),
        },
        None => None,
    };
    match &endpoint.address {
        AiAddress::Host { host, port } => {
            let address = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => TargetAddress::Socket((ip, *port).into()),
                Err(_) => TargetAddress::Host {
                    name: host.as_str().into(),
                    port: *port,
                },
            };
            vec![Target::new(address, Protocol::Http1, tls).with_connect_timeout(connect)]
        }
        AiAddress::Endpoints(endpoints) => endpoints
            .iter()
            .map(|e| {
                Target::new(
                    TargetAddress::Socket(e.address),
                    Protocol::Http1,
                    tls.clone(),
                )
                .with_connect_timeout(connect)
            })
            .collect(),
    }
}

fn auth_header(provider: &AiProvider) -> Option<(http::HeaderName, HeaderValue)> {
    let credential = provider.credential.as_ref()?;
    let (name, value) = match provider.api {
        AiApi::OpenAi => {
            let mut value = b"Bearer ".to_vec();
            value.extend_from_slice(credential.value.expose());
            (http::header::AUTHORIZATION, value)
        }
        AiApi::Anthropic => (
            http::HeaderName::from_static("x-api-key"),
            credential.value.expose().to_vec(),
        ),
    };
    let mut value = HeaderValue::from_bytes(&value).ok()?;
    value.set_sensitive(true);
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_is_ejected_on_the_configured_failure_in_a_row_and_says_for_how_long() {
        let health = ProviderHealth::new();
        let eject = Eject {
            consecutive_failures: 2,
            duration: Duration::from_secs(30),
        };
        assert_eq!(health.failed(Some(&eject)), None);
        assert!(!health.is_ejected());
        assert_eq!(health.failed(Some(&eject)), Some(Duration::from_secs(30)));
        assert!(health.is_ejected());
    }

    #[test]
    fn a_success_starts_the_count_again() {
        let health = ProviderHealth::new();
        let eject = Eject {
            consecutive_failures: 2,
            duration: Duration::from_secs(30),
        };
        assert_eq!(health.failed(Some(&eject)), None);
        health.succeeded();
        assert_eq!(health.failed(Some(&eject)), None);
        assert!(!health.is_ejected());
    }

    #[test]
    fn without_eject_failures_never_eject() {
        let health = ProviderHealth::new();
        for _ in 0..10 {
            assert_eq!(health.failed(None), None);
        }
        assert!(!health.is_ejected());
    }
}

//! Resolving references to what serves them: a Service port to its ready endpoints.
//!
//! Every lookup goes through a [`Lookup`], which records what was asked for — found or not — so
//! the reconciler can file it in the dependency index: a Route that names a Service that does
//! not exist yet is translated again the moment it appears.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
};

use k8s_openapi::{
    api::{core::v1::ServicePort, discovery::v1::EndpointSlice},
    apimachinery::pkg::util::intstr::IntOrString,
};
use weir_contract::{Endpoint, NamespacedName, Protocol, Unresolved};

use crate::{
    kinds::{Kind, ObjectKey},
    store::Store,
};

/// Reads the store on behalf of one translation, remembering every object it asked for.
pub struct Lookup<'a> {
    store: &'a Store,
    asked_for: BTreeSet<ObjectKey>,
}

impl<'a> Lookup<'a> {
    pub fn new(store: &'a Store) -> Self {
        Self {
            store,
            asked_for: BTreeSet::new(),
        }
    }

    /// Everything looked up, found or not.
    pub fn into_references(self) -> BTreeSet<ObjectKey> {
        self.asked_for
    }

    /// The protocol and ready endpoints of a Service port, endpoints sorted and without
    /// duplicates.
    pub fn service_port(
        &mut self,
        service_id: &NamespacedName,
        port: &IntOrString,
    ) -> Result<(Protocol, Vec<Endpoint>), Unresolved> {
        self.asked_for
            .insert(ObjectKey::new(Kind::Service, service_id.clone()));
        let service = self
            .store
            .service(service_id)
            .ok_or(Unresolved::BackendNotFound)?;
        let service_port = service
            .spec
            .as_ref()
            .and_then(|spec| spec.ports.as_ref())
            .into_iter()
            .flatten()
            .find(|p| match port {
                IntOrString::Int(number) => p.port == *number,
                IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
            })
            .ok_or(Unresolved::PortNotFound)?;
        let mut endpoints: Vec<Endpoint> = self
            .store
            .endpoint_slices_of(service_id)
            .flat_map(|slice| ready_addresses(slice, service_port))
            .map(|address| Endpoint { address })
            .collect();
        endpoints.sort_unstable();
        endpoints.dedup();
        Ok((Protocol::Http1, endpoints))
    }
}

/// The ready addresses of one slice, on the slice port named like the Service port.
fn ready_addresses<'a>(
    slice: &'a EndpointSlice,
    service_port: &ServicePort,
) -> impl Iterator<Item = SocketAddr> + 'a {
    let port_name = service_port.name.as_deref().unwrap_or_default();
    let target_port = slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok());
    let usable = matches!(slice.address_type.as_str(), "IPv4" | "IPv6");
    slice
        .endpoints
        .iter()
        .filter(move |_| usable && target_port.is_some())
        // An endpoint whose readiness is unknown counts as ready, as kube-proxy does.
        .filter(|endpoint| endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|endpoint| endpoint.addresses.iter())
        .filter_map(move |address| {
            let ip: IpAddr = address.parse().ok()?;
            Some(SocketAddr::new(ip, target_port?))
        })
}

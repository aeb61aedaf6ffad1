//! Discovery: which resources the API server serves, resolved at runtime.
//!
//! `deployments.apps` or `routes.weir.dev` becomes an [`ApiResource`] at the group's preferred
//! version, with its scope and verbs. Subresources (`pods/log`) are never listed. One group
//! that cannot be read (a broken aggregated API, say) is logged and skipped; it never hides
//! the others.

use kube::{
    Client,
    core::{ApiResource, GroupVersion},
    discovery::{ApiCapabilities, Scope, verbs},
};

/// A resource the server serves.
#[derive(Clone, Debug)]
pub struct DiscoveredResource {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl DiscoveredResource {
    /// Whether an informer can run on it: it supports both list and watch.
    pub fn watchable(&self) -> bool {
        self.verbs.iter().any(|v| v == verbs::LIST) && self.verbs.iter().any(|v| v == verbs::WATCH)
    }

    /// `plural.group`, or `plural` for the core group: the name users type.
    pub fn qualified_name(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }
}

/// Why discovery failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot list API groups: {0}")]
    ListGroups(#[source] kube::Error),
}

/// Every resource of every readable group, at each group's preferred version.
#[derive(Clone, Debug, Default)]
pub struct ResourceCatalog {
    resources: Vec<DiscoveredResource>,
    /// Groups that could not be read, with why.
    pub unavailable_groups: Vec<(String, String)>,
}

impl ResourceCatalog {
    /// Reads the server's groups and their preferred versions' resources.
    pub async fn discover(client: &Client) -> Result<Self, DiscoveryError> {
        let groups = client
            .list_api_groups()
            .await
            .map_err(DiscoveryError::ListGroups)?;
        let mut pinned: Vec<GroupVersion> = vec![GroupVersion::gv("", "v1")];
        for group in groups.groups {
            let version = group
                .preferred_version
                .map(|v| v.version)
                .or_else(|| group.versions.first().map(|v| v.version.clone()));
            if let Some(version) = version {
                pinned.push(GroupVersion::gv(&group.name, &version));
            }
        }
        let mut catalog = Self::default();
        for group_version in pinned {
            match kube::discovery::pinned_group(client, &group_version).await {
                Ok(group) => {
                    for (resource, capabilities) in group.recommended_resources() {
                        catalog.resources.push(discovered(resource, &capabilities));
                    }
                }
                Err(error) => {
                    tracing::warn!(group = %group_version.api_version(), %error, "API group unavailable; skipping it");
                    catalog
                        .unavailable_groups
                        .push((group_version.api_version(), error.to_string()));
                }
            }
        }
        Ok(catalog)
    }

    /// Resolves `plural.group`, `singular.group` or `Kind.group` (`plural` alone for the core group).
    pub fn resolve(&self, name: &str) -> Option<&DiscoveredResource> {
        let (head, group) = name.split_once('.').unwrap_or((name, ""));
        self.resources.iter().find(|r| {
            r.resource.group == group
                && (r.resource.plural == head || r.resource.kind.eq_ignore_ascii_case(head))
        })
    }

    /// Every discovered resource.
    pub fn resources(&self) -> &[DiscoveredResource] {
        &self.resources
    }
}

fn discovered(resource: ApiResource, capabilities: &ApiCapabilities) -> DiscoveredResource {
    DiscoveredResource {
        namespaced: capabilities.scope == Scope::Namespaced,
        verbs: capabilities.operations.clone(),
        resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> ResourceCatalog {
        let resource = |group: &str, version: &str, kind: &str, plural: &str| DiscoveredResource {
            resource: ApiResource {
                group: group.into(),
                version: version.into(),
                api_version: if group.is_empty() {
                    version.into()
                } else {
                    format!("{group}/{version}")
                },
                kind: kind.into(),
                plural: plural.into(),
            },
            namespaced: true,
            verbs: vec!["list".into(), "watch".into()],
        };
        ResourceCatalog {
            resources: vec![
                resource("", "v1", "Service", "services"),
                resource("apps", "v1", "Deployment", "deployments"),
                resource("weir.dev", "v1alpha1", "Route", "routes"),
            ],
            unavailable_groups: Vec::new(),
        }
    }

    #[test]
    fn resolves_plural_and_kind_names_with_their_group() {
        let catalog = catalog();
        assert_eq!(
            catalog.resolve("deployments.apps").unwrap().resource.kind,
            "Deployment"
        );
        assert_eq!(
            catalog.resolve("routes.weir.dev").unwrap().resource.version,
            "v1alpha1"
        );
        assert_eq!(
            catalog.resolve("services").unwrap().qualified_name(),
            "services"
        );
        assert_eq!(
            catalog.resolve("route.weir.dev").unwrap().resource.plural,
            "routes",
            "singular, as kubectl takes it"
        );
        assert_eq!(
            catalog.resolve("Route.weir.dev").unwrap().resource.plural,
            "routes"
        );
        assert!(
            catalog.resolve("deployments").is_none(),
            "the core group has no deployments"
        );
    }
}

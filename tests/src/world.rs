//! A test's whole world: echo backends, each behind a Service of its own name, a config
//! directory holding them and some Routes, and a gateway reading it.
//!
//! Files are laid out one object group per file, `service-<name>.yaml` and
//! `route-<name>.yaml`, so a test can edit or remove one Route without touching the rest.

use crate::{ConfigDir, Echo, Weir, manifests};

/// Backends, configuration and gateway of one test. Dropping it stops every process.
pub struct World {
    pub config: ConfigDir,
    backends: Vec<(String, Echo)>,
    pub weir: Weir,
}

impl World {
    /// Starts one echo backend per name, each behind a Service of that name, writes `routes`,
    /// and starts a gateway, ready with exactly this configuration.
    pub async fn start(
        backend_names: &[&str],
        routes: impl IntoIterator<Item = manifests::Route>,
    ) -> Self {
        let config = ConfigDir::new();
        let mut backends = Vec::new();
        for name in backend_names {
            let echo = Echo::start(name).await;
            config.write(
                &format!("service-{name}.yaml"),
                &manifests::service_with_endpoints(name, &[echo.address()]),
            );
            backends.push((name.to_string(), echo));
        }
        for route in routes {
            write_route(&config, route);
        }
        let weir = Weir::start(&config).await;
        Self {
            config,
            backends,
            weir,
        }
    }

    /// The echo backend started under `name`.
    pub fn backend(&self, name: &str) -> &Echo {
        self.backends
            .iter()
            .find_map(|(backend_name, echo)| (backend_name == name).then_some(echo))
            .unwrap_or_else(|| panic!("no backend named {name}"))
    }

    /// Writes (or rewrites) `route-<name>.yaml` with this Route alone.
    pub fn write_route(&self, route: manifests::Route) {
        write_route(&self.config, route);
    }

    /// Removes `route-<name>.yaml`.
    pub fn remove_route(&self, name: &str) {
        self.config.remove(&route_file(name));
    }
}

/// The file a Route named `name` lives in.
pub fn route_file(name: &str) -> String {
    format!("route-{name}.yaml")
}

fn write_route(config: &ConfigDir, route: manifests::Route) {
    let file = route_file(route.name());
    config.write(&file, &[route.into()]);
}

//! Gateway API status: a GatewayClass's `Accepted` and `supportedFeatures`; a Gateway's
//! addresses, conditions and per-listener status; an HTTPRoute's `parents`, one entry per
//! Weir Gateway it names. Every condition carries `observedGeneration`, as the spec and its
//! conformance suite require.

use std::time::SystemTime;

use serde_json::{Map, Value, json};
use weir_contract::{Condition, GatewayClassReport, GatewayReport, HttpRouteReport, ParentRef};

use super::{Conditions, Status, WrittenConditions};
use crate::translate::gateway_api::CONTROLLER_NAME;

fn add_all(conditions: &mut Conditions<'_>, list: &[Condition]) {
    for condition in list {
        conditions.add(
            condition.kind,
            condition.status,
            condition.reason,
            &condition.message,
        );
    }
}

/// A GatewayClass of Weir's controller.
pub(super) fn class_status(
    report: &GatewayClassReport,
    previous: Option<&WrittenConditions>,
    now: SystemTime,
) -> Status {
    let mut conditions = Conditions::new(report.generation, previous, now);
    add_all(&mut conditions, &report.conditions);
    let (list, conditions) = conditions.finish();
    let features: Vec<Value> = report
        .supported_features
        .iter()
        .map(|name| json!({"name": name}))
        .collect();
    Status {
        body: json!({"conditions": list, "supportedFeatures": features}),
        conditions,
        changes_at: None,
    }
}

/// A Gateway of a Weir class.
pub(super) fn gateway_status(
    report: &GatewayReport,
    previous: Option<&WrittenConditions>,
    now: SystemTime,
) -> Status {
    let mut written = WrittenConditions::default();
    let mut conditions = Conditions::new(report.generation, previous, now);
    add_all(&mut conditions, &report.conditions);
    let gateway_conditions = conditions.finish_into(&mut written);
    let listeners: Vec<Value> = report
        .listeners
        .iter()
        .map(|listener| {
            let mut conditions = Conditions::scoped(
                report.generation,
                previous,
                now,
                format!("listener/{}/", listener.name),
            );
            add_all(&mut conditions, &listener.conditions);
            let kinds: Vec<Value> = listener
                .supported_kinds
                .iter()
                .map(|(group, kind)| json!({"group": group, "kind": kind}))
                .collect();
            json!({
                "name": listener.name,
                "supportedKinds": kinds,
                "attachedRoutes": listener.attached_routes,
                "conditions": conditions.finish_into(&mut written),
            })
        })
        .collect();
    let addresses: Vec<Value> = report
        .addresses
        .iter()
        .map(|(kind, value)| json!({"type": kind, "value": value}))
        .collect();
    Status {
        body: json!({
            "addresses": addresses,
            "conditions": gateway_conditions,
            "listeners": listeners,
        }),
        conditions: written,
        changes_at: None,
    }
}

/// An HTTPRoute that names Weir Gateways.
pub(super) fn http_route_status(
    report: &HttpRouteReport,
    previous: Option<&WrittenConditions>,
    now: SystemTime,
) -> Status {
    let mut written = WrittenConditions::default();
    let parents: Vec<Value> = report
        .parents
        .iter()
        .map(|parent| {
            let mut conditions = Conditions::scoped(
                report.generation,
                previous,
                now,
                format!("parent/{}/", parent_key(&parent.parent)),
            );
            add_all(&mut conditions, &parent.conditions);
            json!({
                "parentRef": parent_ref(&parent.parent),
                "controllerName": CONTROLLER_NAME,
                "conditions": conditions.finish_into(&mut written),
            })
        })
        .collect();
    Status {
        body: json!({"parents": parents}),
        conditions: written,
        changes_at: None,
    }
}

/// The parent reference as the route wrote it: only the fields it set.
fn parent_ref(parent: &ParentRef) -> Value {
    let mut fields = Map::new();
    let mut set = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            fields.insert(name.to_owned(), value);
        }
    };
    set("group", parent.group.clone().map(Value::from));
    set("kind", parent.kind.clone().map(Value::from));
    set("namespace", parent.namespace.clone().map(Value::from));
    set("name", Some(Value::from(parent.name.clone())));
    set("sectionName", parent.section_name.clone().map(Value::from));
    set("port", parent.port.map(Value::from));
    Value::Object(fields)
}

fn parent_key(parent: &ParentRef) -> String {
    format!(
        "{}/{}/{}/{}",
        parent.namespace.as_deref().unwrap_or_default(),
        parent.name,
        parent.section_name.as_deref().unwrap_or_default(),
        parent.port.unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use weir_contract::{GatewayListenerReport, NamespacedName, Origin, RouteParentReport};

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn gateway(attached: u32, programmed: bool) -> GatewayReport {
        GatewayReport {
            id: NamespacedName::new("infra", "edge"),
            origin: Origin::Cluster,
            generation: Some(2),
            addresses: vec![("IPAddress", "127.0.1.7".into())],
            conditions: vec![Condition::new("Accepted", true, "Accepted", "")],
            listeners: vec![GatewayListenerReport {
                name: "http".into(),
                supported_kinds: vec![("gateway.networking.k8s.io", "HTTPRoute")],
                attached_routes: attached,
                conditions: vec![Condition::new(
                    "Programmed",
                    programmed,
                    if programmed { "Programmed" } else { "Invalid" },
                    "",
                )],
            }],
        }
    }

    #[test]
    fn a_gateway_has_addresses_and_listeners_with_their_own_transition_times() {
        let first = gateway_status(&gateway(0, true), None, at(1));
        let body = &first.body;
        assert_eq!(body["addresses"][0]["type"], "IPAddress");
        assert_eq!(body["addresses"][0]["value"], "127.0.1.7");
        assert_eq!(body["conditions"][0]["observedGeneration"], 2);
        let listener = &body["listeners"][0];
        assert_eq!(listener["name"], "http");
        assert_eq!(listener["supportedKinds"][0]["kind"], "HTTPRoute");
        assert_eq!(listener["attachedRoutes"], 0);

        let flipped = gateway_status(&gateway(1, false), Some(&first.conditions), at(5));
        assert_eq!(
            flipped.body["conditions"][0]["lastTransitionTime"], "1970-01-01T00:00:01Z",
            "the Gateway's Accepted did not change"
        );
        assert_eq!(
            flipped.body["listeners"][0]["conditions"][0]["lastTransitionTime"],
            "1970-01-01T00:00:05Z"
        );
        assert_eq!(flipped.body["listeners"][0]["attachedRoutes"], 1);
    }

    #[test]
    fn a_route_echoes_each_parent_ref_as_written() {
        let report = HttpRouteReport {
            id: NamespacedName::new("web", "shop"),
            origin: Origin::Cluster,
            generation: Some(4),
            parents: vec![RouteParentReport {
                parent: ParentRef {
                    group: Some("gateway.networking.k8s.io".into()),
                    kind: Some("Gateway".into()),
                    namespace: None,
                    name: "edge".into(),
                    section_name: Some("http".into()),
                    port: None,
                },
                conditions: vec![Condition::new(
                    "Accepted",
                    false,
                    "NotAllowedByListeners",
                    "no",
                )],
            }],
        };
        let status = http_route_status(&report, None, at(1));
        let parent = &status.body["parents"][0];
        assert_eq!(parent["controllerName"], CONTROLLER_NAME);
        assert_eq!(
            parent["parentRef"],
            json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge", "sectionName": "http"})
        );
        assert_eq!(parent["conditions"][0]["reason"], "NotAllowedByListeners");
        assert_eq!(parent["conditions"][0]["observedGeneration"], 4);
    }
}

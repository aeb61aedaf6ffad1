//! A container's environment and arguments, as the kubelet would give them, computed from the
//! pod alone: no API calls and no file system, so every rule is a unit test.
//!
//! Sources, in the kubelet's order: `envFrom` (ConfigMaps and Secrets, with their prefix),
//! then `env` in order, each `value` expanded against the variables before it (`$(VAR)`,
//! `$$` for a literal `$`), `valueFrom.fieldRef` from the pod's own fields and
//! `secretKeyRef`/`configMapKeyRef` from the objects [`Sources`] holds (fetched by the
//! caller). A container here is a process on the host, not in a mount namespace of its own,
//! so a value that names a file under a `volumeMount` is rewritten to where that volume
//! was written on the host (`/etc/secret-volume/crt` →
//! `<state>/pods/<uid>/volumes/secret-volume/crt`): echo-basic takes its certificate paths
//! from such variables.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{Container, EnvVar, ObjectFieldSelector};

/// Why a container cannot be given its environment.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("env {var}: fieldRef {path:?} is not supported by the process kubelet")]
    UnsupportedField { var: String, path: String },
    #[error("env {var}: only value, fieldRef, secretKeyRef and configMapKeyRef are supported")]
    UnsupportedSource { var: String },
    #[error("env {var}: {kind} {name:?} has no key {key:?}")]
    MissingKey {
        var: String,
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("env {var}: {kind} {name:?} does not exist")]
    MissingObject {
        var: String,
        kind: &'static str,
        name: String,
    },
}

/// The pod's own facts a `fieldRef` can name.
#[derive(Debug, Default)]
pub struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub node_name: String,
    pub pod_ip: String,
    pub host_ip: String,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A ConfigMap's or a Secret's data, by object name.
pub type Objects = HashMap<String, BTreeMap<String, Vec<u8>>>;

/// The ConfigMaps and Secrets the environment refers to, fetched beforehand; an object absent
/// here does not exist.
#[derive(Debug, Default)]
pub struct Sources {
    pub config_maps: Objects,
    pub secrets: Objects,
}

/// The ConfigMaps and the Secrets (by name) a container's environment refers to: what the
/// caller fetches into [`Sources`].
pub fn referenced_objects(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut config_maps, mut secrets) = (BTreeSet::new(), BTreeSet::new());
    for from in container.env_from.iter().flatten() {
        if let Some(c) = &from.config_map_ref {
            config_maps.insert(c.name.clone());
        }
        if let Some(s) = &from.secret_ref {
            secrets.insert(s.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(c) = &from.config_map_key_ref {
            config_maps.insert(c.name.clone());
        }
        if let Some(s) = &from.secret_key_ref {
            secrets.insert(s.name.clone());
        }
    }
    (config_maps, secrets)
}

/// Where each `volumeMount` of a container is on the host: mount path → directory.
pub type Mounts = Vec<(PathBuf, PathBuf)>;

/// The environment of `container`, in order (a later duplicate wins, as in the kubelet).
pub fn resolve(
    container: &Container,
    pod: &PodFacts,
    sources: &Sources,
    mounts: &Mounts,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(existing, _)| *existing != name);
        env.push((name, value));
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (kind, name, optional, objects) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(c), _) => ("ConfigMap", &c.name, c.optional, &sources.config_maps),
            (None, Some(s)) => ("Secret", &s.name, s.optional, &sources.secrets),
            (None, None) => continue,
        };
        match objects.get(name) {
            Some(data) => {
                for (key, value) in data {
                    let value = String::from_utf8_lossy(value).into_owned();
                    set(&mut env, format!("{prefix}{key}"), value);
                }
            }
            None if optional == Some(true) => {}
            None => {
                return Err(EnvError::MissingObject {
                    var: format!("envFrom {prefix}*"),
                    kind,
                    name: name.clone(),
                });
            }
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = value_of(var, pod, sources, &env)? {
            let value = rewrite_mounted_path(&value, mounts);
            set(&mut env, var.name.clone(), value);
        }
    }
    Ok(env)
}

/// The container's arguments (`args`; `command` names a file inside an image, which a
/// process kubelet does not have), expanded against its environment.
pub fn arguments(container: &Container, env: &[(String, String)], mounts: &Mounts) -> Vec<String> {
    container
        .args
        .iter()
        .flatten()
        .map(|arg| rewrite_mounted_path(&expand(arg, env), mounts))
        .collect()
}

/// One variable's value; `None` for an optional reference to something missing (the
/// variable is then left out).
fn value_of(
    var: &EnvVar,
    pod: &PodFacts,
    sources: &Sources,
    env: &[(String, String)],
) -> Result<Option<String>, EnvError> {
    let Some(from) = &var.value_from else {
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), env)));
    };
    if let Some(field) = &from.field_ref {
        return field_value(field, pod)
            .map(Some)
            .ok_or_else(|| EnvError::UnsupportedField {
                var: var.name.clone(),
                path: field.field_path.clone(),
            });
    }
    let (kind, name, key, optional, objects) =
        match (&from.config_map_key_ref, &from.secret_key_ref) {
            (Some(c), _) => (
                "ConfigMap",
                &c.name,
                &c.key,
                c.optional,
                &sources.config_maps,
            ),
            (None, Some(s)) => ("Secret", &s.name, &s.key, s.optional, &sources.secrets),
            (None, None) => {
                return Err(EnvError::UnsupportedSource {
                    var: var.name.clone(),
                });
            }
        };
    let optional = optional == Some(true);
    let Some(data) = objects.get(name) else {
        return if optional {
            Ok(None)
        } else {
            Err(EnvError::MissingObject {
                var: var.name.clone(),
                kind,
                name: name.clone(),
            })
        };
    };
    match data.get(key) {
        Some(value) => Ok(Some(String::from_utf8_lossy(value).into_owned())),
        None if optional => Ok(None),
        None => Err(EnvError::MissingKey {
            var: var.name.clone(),
            kind,
            name: name.clone(),
            key: key.clone(),
        }),
    }
}

/// A `fieldRef`'s value, as the downward API gives it.
fn field_value(field: &ObjectFieldSelector, pod: &PodFacts) -> Option<String> {
    let path = field.field_path.as_str();
    let value = match path {
        "metadata.name" => pod.name.clone(),
        "metadata.namespace" => pod.namespace.clone(),
        "metadata.uid" => pod.uid.clone(),
        "spec.nodeName" => pod.node_name.clone(),
        "spec.serviceAccountName" => pod.service_account.clone(),
        "status.podIP" | "status.podIPs" => pod.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => pod.host_ip.clone(),
        _ => {
            let (map, key) = if let Some(rest) = path.strip_prefix("metadata.labels") {
                (&pod.labels, rest)
            } else if let Some(rest) = path.strip_prefix("metadata.annotations") {
                (&pod.annotations, rest)
            } else {
                return None;
            };
            // metadata.labels['app'] (the quotes are part of the syntax).
            let key = key.strip_prefix("['")?.strip_suffix("']")?;
            map.get(key).cloned().unwrap_or_default()
        }
    };
    Some(value)
}

/// The kubelet's `$(VAR)` expansion: a reference to a variable defined before is replaced,
/// `$$` is a literal `$`, and anything else (an unknown name, an unclosed `$(`) stays as
/// written.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('(')
            && let Some(close) = reference.find(')')
        {
            let name = &reference[..close];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &reference[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `value` with a leading mount path replaced by where that volume is on the host; the
/// longest matching mount wins (a mount inside another mount), and only whole path
/// components match (`/etc/secret` is not under `/etc/sec`).
pub fn rewrite_mounted_path(value: &str, mounts: &Mounts) -> String {
    let path = Path::new(value);
    mounts
        .iter()
        .filter(|(mount, _)| path.starts_with(mount))
        .max_by_key(|(mount, _)| mount.as_os_str().len())
        .map(|(mount, host)| {
            let rest = path.strip_prefix(mount).expect("starts_with was checked");
            if rest.as_os_str().is_empty() {
                host.display().to_string()
            } else {
                host.join(rest).display().to_string()
            }
        })
        .unwrap_or_else(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVarSource, SecretKeySelector,
    };

    use super::*;

    fn pod() -> PodFacts {
        PodFacts {
            name: "infra-backend-v1-5d67db5d5b-4bs2n".into(),
            namespace: "gateway-conformance-infra".into(),
            uid: "0b5c".into(),
            node_name: "weir-node".into(),
            pod_ip: "10.233.0.2".into(),
            host_ip: "127.0.0.1".into(),
            labels: [("app".to_owned(), "infra-backend-v1".to_owned())].into(),
            ..Default::default()
        }
    }

    fn value(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(env: Vec<EnvVar>) -> Container {
        Container {
            name: "c".into(),
            env: Some(env),
            ..Default::default()
        }
    }

    fn resolved(env: Vec<EnvVar>) -> Vec<(String, String)> {
        resolve(&container(env), &pod(), &Sources::default(), &Vec::new()).unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn field_refs_give_the_pods_own_name_namespace_ip_and_node() {
        let env = resolved(vec![
            field("POD_NAME", "metadata.name"),
            field("NAMESPACE", "metadata.namespace"),
            field("POD_IP", "status.podIP"),
            field("NODE", "spec.nodeName"),
            field("APP", "metadata.labels['app']"),
        ]);
        assert_eq!(
            env,
            pairs(&[
                ("POD_NAME", "infra-backend-v1-5d67db5d5b-4bs2n"),
                ("NAMESPACE", "gateway-conformance-infra"),
                ("POD_IP", "10.233.0.2"),
                ("NODE", "weir-node"),
                ("APP", "infra-backend-v1"),
            ])
        );
    }

    #[test]
    fn an_unknown_field_ref_is_an_error_naming_the_variable() {
        let error = resolve(
            &container(vec![field("X", "status.phase")]),
            &pod(),
            &Sources::default(),
            &Vec::new(),
        )
        .unwrap_err();
        assert_eq!(
            error,
            EnvError::UnsupportedField {
                var: "X".into(),
                path: "status.phase".into()
            }
        );
    }

    #[test]
    fn values_expand_earlier_variables_and_keep_unknown_references() {
        let env = resolved(vec![
            value("HOST", "svc"),
            value("URL", "http://$(HOST):$(PORT)/$$(HOST)"),
        ]);
        assert_eq!(env[1].1, "http://svc:$(PORT)/$(HOST)");
    }

    #[test]
    fn expansion_leaves_a_lone_or_unclosed_dollar_as_written() {
        let env = pairs(&[("A", "1")]);
        assert_eq!(expand("cost $5", &env), "cost $5");
        assert_eq!(expand("$(A", &env), "$(A");
        assert_eq!(expand("$(A)$(A)", &env), "11");
        assert_eq!(expand("trailing $", &env), "trailing $");
    }

    #[test]
    fn a_later_duplicate_wins() {
        let env = resolved(vec![value("A", "1"), value("B", "2"), value("A", "3")]);
        assert_eq!(env, pairs(&[("B", "2"), ("A", "3")]));
    }

    #[test]
    fn values_under_a_mount_point_to_the_volume_on_the_host() {
        let mounts: Mounts = vec![
            (
                "/etc/secret-volume".into(),
                "/state/pods/u/volumes/secret".into(),
            ),
            (
                "/etc/secret-volume/nested".into(),
                "/state/pods/u/volumes/n".into(),
            ),
        ];
        let c = container(vec![
            value("TLS_SERVER_CERT", "/etc/secret-volume/crt"),
            value("NESTED", "/etc/secret-volume/nested/ca"),
            value("DIR", "/etc/secret-volume"),
            value("SIBLING", "/etc/secret-volume-2/crt"),
            value("PLAIN", "1"),
        ]);
        let env = resolve(&c, &pod(), &Sources::default(), &mounts).unwrap();
        assert_eq!(
            env,
            pairs(&[
                ("TLS_SERVER_CERT", "/state/pods/u/volumes/secret/crt"),
                ("NESTED", "/state/pods/u/volumes/n/ca"),
                ("DIR", "/state/pods/u/volumes/secret"),
                ("SIBLING", "/etc/secret-volume-2/crt"),
                ("PLAIN", "1"),
            ])
        );
    }

    #[test]
    fn key_refs_read_the_fetched_objects_and_optional_ones_may_be_missing() {
        let mut sources = Sources::default();
        sources.secrets.insert(
            "creds".into(),
            [("token".to_owned(), b"s3cret".to_vec())].into(),
        );
        let secret_ref = |name: &str, key: &str, optional| EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "creds".into(),
                    key: key.into(),
                    optional,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = container(vec![
            secret_ref("TOKEN", "token", None),
            secret_ref("MAYBE", "absent", Some(true)),
        ]);
        let env = resolve(&c, &pod(), &sources, &Vec::new()).unwrap();
        assert_eq!(env, pairs(&[("TOKEN", "s3cret")]));

        let c = container(vec![secret_ref("MUST", "absent", None)]);
        assert!(matches!(
            resolve(&c, &pod(), &sources, &Vec::new()),
            Err(EnvError::MissingKey { .. })
        ));
    }

    #[test]
    fn env_from_comes_first_with_its_prefix_and_env_overrides_it() {
        let mut sources = Sources::default();
        sources.config_maps.insert(
            "settings".into(),
            [
                ("MODE".to_owned(), b"a".to_vec()),
                ("LEVEL".to_owned(), b"1".to_vec()),
            ]
            .into(),
        );
        let mut c = container(vec![value("CFG_MODE", "b")]);
        c.env_from = Some(vec![EnvFromSource {
            prefix: Some("CFG_".into()),
            config_map_ref: Some(ConfigMapEnvSource {
                name: "settings".into(),
                optional: None,
            }),
            ..Default::default()
        }]);
        let env = resolve(&c, &pod(), &sources, &Vec::new()).unwrap();
        assert_eq!(env, pairs(&[("CFG_LEVEL", "1"), ("CFG_MODE", "b")]));
        assert_eq!(
            referenced_objects(&c),
            (["settings".to_owned()].into(), BTreeSet::new())
        );
    }

    #[test]
    fn a_missing_config_map_is_an_error_unless_optional() {
        let var = |optional| EnvVar {
            name: "X".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "absent".into(),
                    key: "k".into(),
                    optional,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sources = Sources::default();
        assert!(matches!(
            resolve(&container(vec![var(None)]), &pod(), &sources, &Vec::new()),
            Err(EnvError::MissingObject { .. })
        ));
        assert_eq!(
            resolve(
                &container(vec![var(Some(true))]),
                &pod(),
                &sources,
                &Vec::new()
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn arguments_expand_and_follow_mounts() {
        let mut c = container(vec![]);
        c.args = Some(vec!["--port=$(PORT)".into(), "/etc/cfg/file".into()]);
        let mounts: Mounts = vec![("/etc/cfg".into(), "/host/cfg".into())];
        assert_eq!(
            arguments(&c, &pairs(&[("PORT", "80")]), &mounts),
            vec!["--port=80".to_owned(), "/host/cfg/file".to_owned()]
        );
    }
}

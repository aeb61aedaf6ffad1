//! Pod volumes as plain directories on the host: `secret` and `configMap` volumes are
//! written out file by file, `emptyDir` is an empty directory, anything else is an empty
//! directory and a warning.
//!
//! Containers here share the host's file system, so nothing is mounted: each volume is
//! `<pod dir>/volumes/<volume name>/`, and [`crate::env`] points the environment at it.
//! Which files a volume holds is decided by [`files`], a pure function of the volume and
//! its object's data; [`write`] only puts them on disk.

use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
};

use k8s_openapi::api::core::v1::{KeyToPath, Volume};

/// Why a volume cannot be written.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: {kind} {name:?} has no key {key:?}")]
    MissingKey {
        volume: String,
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("volume {volume}: item path {path:?} must be relative and stay inside the volume")]
    BadPath { volume: String, path: String },
}

/// What a volume is made from.
#[derive(Debug, PartialEq)]
pub enum Source<'a> {
    /// A Secret's or ConfigMap's data.
    Object {
        kind: &'static str,
        name: &'a str,
        items: &'a [KeyToPath],
        optional: bool,
        default_mode: Option<i32>,
    },
    /// An empty directory (emptyDir, and every kind not supported).
    Empty { unsupported: Option<&'static str> },
}

/// What `volume` is made from.
pub fn source(volume: &Volume) -> Source<'_> {
    if let Some(secret) = &volume.secret {
        return Source::Object {
            kind: "Secret",
            name: secret.secret_name.as_deref().unwrap_or_default(),
            items: secret.items.as_deref().unwrap_or_default(),
            optional: secret.optional == Some(true),
            default_mode: secret.default_mode,
        };
    }
    if let Some(config_map) = &volume.config_map {
        return Source::Object {
            kind: "ConfigMap",
            name: &config_map.name,
            items: config_map.items.as_deref().unwrap_or_default(),
            optional: config_map.optional == Some(true),
            default_mode: config_map.default_mode,
        };
    }
    let unsupported = if volume.empty_dir.is_some() {
        None
    } else if volume.projected.is_some() {
        Some("projected")
    } else if volume.host_path.is_some() {
        Some("hostPath")
    } else if volume.downward_api.is_some() {
        Some("downwardAPI")
    } else {
        Some("this kind of volume")
    };
    Source::Empty { unsupported }
}

/// One file of a volume: path inside the volume, content, permission bits.
#[derive(Debug, PartialEq, Eq)]
pub struct File {
    pub path: PathBuf,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// The files of an object volume: every key as a file of that name, or with `items`, only
/// the keys listed, at the paths given (a missing listed key is an error unless the volume
/// is optional). The mode is the item's, else the volume's `defaultMode`, else 0644.
pub fn files(
    volume_name: &str,
    source: &Source<'_>,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<File>, VolumeError> {
    let Source::Object {
        kind,
        name,
        items,
        optional,
        default_mode,
    } = source
    else {
        return Ok(Vec::new());
    };
    let default_mode = default_mode.map_or(0o644, |m| m as u32 & 0o777);
    let relative = |path: &str| {
        let path = PathBuf::from(path);
        let inside = path.components().all(|c| matches!(c, Component::Normal(_)));
        if inside && !path.as_os_str().is_empty() {
            Ok(path)
        } else {
            Err(VolumeError::BadPath {
                volume: volume_name.to_owned(),
                path: path.display().to_string(),
            })
        }
    };
    if items.is_empty() {
        return data
            .iter()
            .map(|(key, content)| {
                Ok(File {
                    path: relative(key)?,
                    content: content.clone(),
                    mode: default_mode,
                })
            })
            .collect();
    }
    let mut files = Vec::new();
    for item in *items {
        let Some(content) = data.get(&item.key) else {
            if *optional {
                continue;
            }
            return Err(VolumeError::MissingKey {
                volume: volume_name.to_owned(),
                kind,
                name: (*name).to_owned(),
                key: item.key.clone(),
            });
        };
        files.push(File {
            path: relative(&item.path)?,
            content: content.clone(),
            mode: item.mode.map_or(default_mode, |m| m as u32 & 0o777),
        });
    }
    Ok(files)
}

/// Writes `files` into `dir` (created, with any parent directories an item path needs).
pub fn write(dir: &Path, files: &[File]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, &file.content)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, SecretVolumeSource};

    use super::*;

    fn data() -> BTreeMap<String, Vec<u8>> {
        [
            ("tls.crt".to_owned(), b"CERT".to_vec()),
            ("tls.key".to_owned(), b"KEY".to_vec()),
        ]
        .into()
    }

    fn item(key: &str, path: &str) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode: None,
        }
    }

    fn secret_volume(items: Option<Vec<KeyToPath>>, optional: Option<bool>) -> Volume {
        Volume {
            name: "secret-volume".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("tls-checks-certificate".into()),
                items,
                optional,
                default_mode: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn items_pick_keys_and_name_their_files() {
        let volume = secret_volume(
            Some(vec![item("tls.crt", "crt"), item("tls.key", "key")]),
            None,
        );
        let files = files("secret-volume", &source(&volume), &data()).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(paths, ["crt", "key"]);
        assert_eq!(files[0].content, b"CERT");
        assert_eq!(files[0].mode, 0o644);
    }

    #[test]
    fn without_items_every_key_is_a_file() {
        let volume = secret_volume(None, None);
        let files = files("secret-volume", &source(&volume), &data()).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(paths, ["tls.crt", "tls.key"]);
    }

    #[test]
    fn a_missing_listed_key_fails_unless_the_volume_is_optional() {
        let items = Some(vec![item("ca.crt", "ca")]);
        let volume = secret_volume(items.clone(), None);
        assert!(matches!(
            files("secret-volume", &source(&volume), &data()),
            Err(VolumeError::MissingKey { .. })
        ));
        let volume = secret_volume(items, Some(true));
        assert_eq!(
            files("secret-volume", &source(&volume), &data()),
            Ok(vec![])
        );
    }

    #[test]
    fn item_paths_cannot_leave_the_volume() {
        let volume = secret_volume(Some(vec![item("tls.crt", "../escape")]), None);
        assert!(matches!(
            files("secret-volume", &source(&volume), &data()),
            Err(VolumeError::BadPath { .. })
        ));
    }

    #[test]
    fn modes_come_from_the_item_then_the_volume() {
        let volume = Volume {
            name: "conf".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "coredns".into(),
                default_mode: Some(0o420),
                items: Some(vec![
                    KeyToPath {
                        mode: Some(0o600),
                        ..item("tls.crt", "a")
                    },
                    item("tls.key", "b"),
                ]),
                optional: None,
            }),
            ..Default::default()
        };
        let files = files("conf", &source(&volume), &data()).unwrap();
        assert_eq!((files[0].mode, files[1].mode), (0o600, 0o420));
    }

    #[test]
    fn empty_dirs_are_supported_and_other_kinds_are_named() {
        let empty = Volume {
            name: "scratch".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(source(&empty), Source::Empty { unsupported: None });
        let host = Volume {
            name: "h".into(),
            host_path: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(
            source(&host),
            Source::Empty {
                unsupported: Some("hostPath")
            }
        );
    }
}

//! The file source: standalone mode's configuration, a directory of Kubernetes manifests.
//!
//! Every `*.yaml`/`*.yml` file under the directory (recursively; names starting with `.` are
//! skipped, which also skips a mounted ConfigMap's `..data` twin) may hold several documents,
//! of any kind Weir reads ([`crate::kinds`]), exactly as they would be applied to a cluster.
//!
//! The invariant is "never lose a working config": a file that does not parse keeps every
//! object it last delivered, and a document that does not convert keeps its last good
//! version; both are reported with file, document number and reason. Changes are picked up
//! from filesystem notifications (the `notify` crate), debounced, and diffed per file by
//! content hash, so an edit costs a parse of the files that changed and nothing else.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
    sync::{Arc, mpsc as std_mpsc},
    thread,
    time::Duration,
};

use notify::{EventKind, RecursiveMode, Watcher, event::AccessKind};
use tokio::sync::mpsc;
use weir_contract::{Origin, SourceProblem};

use crate::{
    kinds::{DecodeError, Object, ObjectKey},
    source::SourceEvent,
};

/// The name this source reports itself under.
pub const SOURCE_NAME: &str = "files";

/// How long the directory must be quiet after a change before it is read again.
const QUIET_PERIOD: Duration = Duration::from_millis(20);

/// Why the file source could not start.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("config directory {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config directory {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("cannot watch config directory {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// Checks that `root` is a readable directory, the one thing the CLI must know up front.
pub fn check_directory(root: &Path) -> Result<(), FileSourceError> {
    let metadata = std::fs::metadata(root).map_err(|source| FileSourceError::Unreadable {
        path: root.to_owned(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(FileSourceError::NotADirectory {
            path: root.to_owned(),
        });
    }
    std::fs::read_dir(root).map_err(|source| FileSourceError::Unreadable {
        path: root.to_owned(),
        source,
    })?;
    Ok(())
}

/// Starts watching `root` and delivering its objects as events, on a thread of its own.
///
/// The watch is set up before the first read, so no change between the two is missed. The
/// thread ends when the receiver of `events` is dropped.
pub fn spawn(
    root: PathBuf,
    events: mpsc::Sender<SourceEvent>,
) -> Result<thread::JoinHandle<()>, FileSourceError> {
    check_directory(&root)?;
    let (changed, changes) = std_mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Our own reads show up as access events; only writes and renames mean a change.
        let is_read = matches!(&event, Ok(e) if matches!(e.kind, EventKind::Access(kind) if kind != AccessKind::Close(notify::event::AccessMode::Write)));
        if !is_read {
            let _ = changed.send(());
        }
    })
    .map_err(|source| FileSourceError::Watch {
        path: root.clone(),
        source,
    })?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .map_err(|source| FileSourceError::Watch {
            path: root.clone(),
            source,
        })?;

    let handle = thread::Builder::new()
        .name("weir-files".into())
        .spawn(move || {
            let _watcher = watcher;
            let mut directory = ManifestDirectory::new(root);
            let mut initial = directory.rescan();
            initial.push(SourceEvent::Synced {
                source: SOURCE_NAME,
            });
            if send_all(&events, initial).is_err() {
                return;
            }
            while changes.recv().is_ok() {
                // Let a burst of writes (an editor's save, a `cp -r`) settle before reading.
                while changes.recv_timeout(QUIET_PERIOD).is_ok() {}
                if send_all(&events, directory.rescan()).is_err() {
                    return;
                }
            }
        })
        .expect("spawning a thread only fails when the process is out of resources");
    Ok(handle)
}

fn send_all(events: &mpsc::Sender<SourceEvent>, batch: Vec<SourceEvent>) -> Result<(), ()> {
    for event in batch {
        events.blocking_send(event).map_err(|_| ())?;
    }
    Ok(())
}

/// What one file delivered the last time it was read.
#[derive(Default)]
struct LoadedFile {
    content_hash: u64,
    /// The objects this file owns and has delivered.
    objects: HashSet<ObjectKey>,
    problems: Vec<SourceProblem>,
}

/// The directory's files, what each delivered, and which file owns each object.
pub struct ManifestDirectory {
    root: PathBuf,
    files: BTreeMap<PathBuf, LoadedFile>,
    owners: HashMap<ObjectKey, PathBuf>,
}

impl ManifestDirectory {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            files: BTreeMap::new(),
            owners: HashMap::new(),
        }
    }

    /// Reads the files that changed since the last call; returns the events that bring the
    /// store up to date, ending with the directory's current problems.
    pub fn rescan(&mut self) -> Vec<SourceEvent> {
        let mut events = Vec::new();
        let mut listing_problems = Vec::new();
        let paths = list_manifests(&self.root, &mut listing_problems);

        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !paths.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            let file = self.files.remove(&path).unwrap_or_default();
            for key in file.objects {
                self.owners.remove(&key);
                events.push(SourceEvent::Delete(key));
            }
        }
        for path in &paths {
            self.reload(path, &mut events);
        }

        let mut problems = listing_problems;
        problems.extend(self.files.values().flat_map(|f| f.problems.iter().cloned()));
        events.push(SourceEvent::Problems {
            source: SOURCE_NAME,
            problems,
        });
        events
    }

    fn reload(&mut self, path: &Path, events: &mut Vec<SourceEvent>) {
        let display = self.display(path);
        let text = match read_manifest_file(path) {
            Ok(text) => text,
            Err(reason) => {
                let file = self.files.entry(path.to_owned()).or_default();
                file.problems = vec![problem(
                    &display,
                    format!("{reason}; keeping what it last held"),
                )];
                return;
            }
        };
        let content_hash = hash(&text);
        if self
            .files
            .get(path)
            .is_some_and(|f| f.content_hash == content_hash)
        {
            return;
        }
        let previous = self.files.remove(path).unwrap_or_default();
        let documents = match parse_documents(&text) {
            Ok(documents) => documents,
            Err(reason) => {
                self.files.insert(
                    path.to_owned(),
                    LoadedFile {
                        problems: vec![problem(
                            &display,
                            format!("{reason}; keeping the objects it last held"),
                        )],
                        ..previous
                    },
                );
                return;
            }
        };

        let mut loaded = LoadedFile {
            content_hash,
            ..Default::default()
        };
        let mut refused = 0;
        for (index, document) in documents {
            let origin = format!("{display}, document {}", index + 1);
            match document {
                Ok(object) => {
                    let key = object.key();
                    if let Some(owner) = self
                        .owners
                        .get(&key)
                        .filter(|owner| owner.as_path() != path)
                    {
                        let owner = self.display(owner);
                        loaded.problems.push(problem(
                            &origin,
                            format!("{key} is already defined in {owner}; ignored"),
                        ));
                        continue;
                    }
                    self.owners.insert(key.clone(), path.to_owned());
                    loaded.objects.insert(key);
                    events.push(SourceEvent::Apply {
                        object,
                        origin: Origin::File(Arc::from(origin)),
                    });
                }
                Err(error) => {
                    // A document that no longer converts keeps serving its last good version.
                    let key = match &error {
                        DecodeError::Invalid { key, .. } => Some(key.clone()),
                        _ => None,
                    };
                    let kept = key.filter(|k| previous.objects.contains(k));
                    let suffix = if kept.is_some() {
                        "; keeping its last good version"
                    } else {
                        ""
                    };
                    refused += 1;
                    if refused <= MAX_PROBLEMS_PER_FILE {
                        loaded
                            .problems
                            .push(problem(&origin, format!("{error}{suffix}")));
                    }
                    loaded.objects.extend(kept);
                }
            }
        }
        if refused > MAX_PROBLEMS_PER_FILE {
            loaded.problems.push(problem(
                &display,
                format!(
                    "and {} more documents that do not convert (only the first {MAX_PROBLEMS_PER_FILE} are listed)",
                    refused - MAX_PROBLEMS_PER_FILE
                ),
            ));
        }
        for key in previous.objects.difference(&loaded.objects) {
            self.owners.remove(key);
            events.push(SourceEvent::Delete(key.clone()));
        }
        self.files.insert(path.to_owned(), loaded);
    }

    fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// The largest manifest file read. A directory of generated Routes runs to a few MiB; a file
/// far beyond that is a mistake (a log, a dump) whose parse would hold many times its size in
/// memory, so it is refused and what it last held keeps serving.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Documents of one file reported one by one; beyond that, a count (a file of 100,000 broken
/// documents must not become 100,000 problems in `/debug/routes`).
const MAX_PROBLEMS_PER_FILE: usize = 20;

/// A manifest file's text, read only up to [`MAX_FILE_BYTES`] whatever its size claims (it may
/// grow while being read).
fn read_manifest_file(path: &Path) -> Result<String, String> {
    use std::io::Read;

    let file = std::fs::File::open(path).map_err(|error| format!("cannot read: {error}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read: {error}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than the {} MiB a manifest file may be",
            MAX_FILE_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|error| {
        format!(
            "not UTF-8 text (invalid bytes at offset {})",
            error.utf8_error().valid_up_to()
        )
    })
}

fn problem(origin: &str, reason: String) -> SourceProblem {
    SourceProblem {
        origin: origin.to_owned(),
        reason,
    }
}

fn hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// Every manifest file under `root`, sorted, following symlinks; hidden names skipped.
fn list_manifests(root: &Path, problems: &mut Vec<SourceProblem>) -> HashSet<PathBuf> {
    let mut found = HashSet::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) => {
                problems.push(problem(
                    &dir.display().to_string(),
                    format!("cannot list: {error}"),
                ));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                found.insert(path);
            }
        }
    }
    found
}

/// The parser's limits, raised for configuration directories: its defaults (1,024 documents,
/// 250,000 nodes a file) refuse a file of a few thousand Routes, which is an ordinary thing to
/// generate. Alias and anchor limits, the defence against YAML bombs, stay as they are.
fn parse_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::budget::Budget::default();
    budget.max_documents = 1_000_000;
    budget.max_nodes = 50_000_000;
    budget.max_events = 200_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// A document's index in its file, and what it converted to.
pub type ParsedDocument = (usize, Result<Object, DecodeError>);

/// Splits a file into documents and converts each; `Err` when the file is not YAML at all.
/// Public for the fuzz targets, which feed it any bytes.
///
/// ```
/// use weir_controlplane::source::files::parse_documents;
/// let documents = parse_documents("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n").unwrap();
/// assert!(documents[0].1.is_ok());
/// assert!(parse_documents("[unclosed").is_err());
/// ```
pub fn parse_documents(text: &str) -> Result<Vec<ParsedDocument>, String> {
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple_with_options(text, parse_options())
            .map_err(|error| format!("not valid YAML: {}", first_line(&error.to_string())))?;
    Ok(documents
        .into_iter()
        .enumerate()
        .filter(|(_, document)| !document.is_null())
        .map(|(index, document)| (index, Object::decode(document)))
        .collect())
}

/// The parser's first line says what and where (`line 1 column 7: unclosed bracket`); the
/// rest is a source snippet that does not survive a one-line log.
fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kind;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: echo}\nspec: {ports: [{name: http, port: 8080}]}\n";
    const ROUTE: &str = "apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: echo}\nspec:\n  rules:\n  - backends: [{service: {name: echo, port: 8080}}]\n";

    fn applied(events: &[SourceEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Apply { object, .. } => Some(object.key().to_string()),
                _ => None,
            })
            .collect()
    }

    fn deleted(events: &[SourceEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Delete(key) => Some(key.to_string()),
                _ => None,
            })
            .collect()
    }

    fn problems(events: &[SourceEvent]) -> Vec<SourceProblem> {
        match events.last() {
            Some(SourceEvent::Problems { problems, .. }) => problems.clone(),
            other => panic!("a rescan ends with its problems, got {other:?}"),
        }
    }

    #[test]
    fn reads_every_document_of_every_manifest_with_default_namespace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("all.yaml"),
            format!("{SERVICE}---\n{ROUTE}"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("nested")).unwrap();
        std::fs::write(dir.path().join("nested/notes.txt"), "not a manifest").unwrap();
        let events = ManifestDirectory::new(dir.path().into()).rescan();
        let mut keys = applied(&events);
        keys.sort();
        assert_eq!(keys, ["Route default/echo", "Service default/echo"]);
        assert!(problems(&events).is_empty());
    }

    #[test]
    fn broken_yaml_is_reported_and_keeps_what_the_file_held() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.yaml");
        std::fs::write(&file, ROUTE).unwrap();
        let mut directory = ManifestDirectory::new(dir.path().into());
        directory.rescan();

        std::fs::write(&file, "kind: [unclosed").unwrap();
        let events = directory.rescan();
        assert!(
            deleted(&events).is_empty(),
            "nothing is dropped: {events:?}"
        );
        let reported = problems(&events);
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].origin, "routes.yaml");
        assert!(
            reported[0].reason.starts_with("not valid YAML"),
            "{}",
            reported[0].reason
        );
    }

    #[test]
    fn a_document_that_stops_converting_keeps_its_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.yaml");
        std::fs::write(&file, format!("{SERVICE}---\n{ROUTE}")).unwrap();
        let mut directory = ManifestDirectory::new(dir.path().into());
        directory.rescan();

        std::fs::write(
            &file,
            format!(
                "{SERVICE}---\n{}",
                ROUTE.replace("  - backends:", "  - timeout: [1]\n    backends:")
            ),
        )
        .unwrap();
        let events = directory.rescan();
        assert!(deleted(&events).is_empty());
        let reported = problems(&events);
        assert_eq!(reported[0].origin, "routes.yaml, document 2");
        assert!(
            reported[0].reason.contains("spec.rules[0].timeout"),
            "{}",
            reported[0].reason
        );
        assert!(
            reported[0]
                .reason
                .ends_with("keeping its last good version")
        );
    }

    #[test]
    fn removing_a_document_or_a_file_deletes_its_objects() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("all.yml");
        std::fs::write(&file, format!("{SERVICE}---\n{ROUTE}")).unwrap();
        let mut directory = ManifestDirectory::new(dir.path().into());
        directory.rescan();

        std::fs::write(&file, SERVICE).unwrap();
        assert_eq!(deleted(&directory.rescan()), ["Route default/echo"]);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(deleted(&directory.rescan()), ["Service default/echo"]);
    }

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), ROUTE).unwrap();
        let mut directory = ManifestDirectory::new(dir.path().into());
        directory.rescan();
        assert!(applied(&directory.rescan()).is_empty());
    }

    #[test]
    fn the_same_object_in_two_files_is_reported_and_the_first_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), ROUTE).unwrap();
        let mut directory = ManifestDirectory::new(dir.path().into());
        directory.rescan();
        std::fs::write(dir.path().join("b.yaml"), ROUTE).unwrap();
        let events = directory.rescan();
        assert!(applied(&events).is_empty());
        assert!(
            problems(&events)[0]
                .reason
                .contains("already defined in a.yaml")
        );
    }

    #[test]
    fn unknown_kinds_and_nameless_objects_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Service\nmetadata: {}\n",
        )
        .unwrap();
        let reported = problems(&ManifestDirectory::new(dir.path().into()).rescan());
        assert_eq!(reported.len(), 2);
        assert!(
            reported[0]
                .reason
                .contains("unsupported kind \"Deployment\"")
        );
        assert!(reported[1].reason.contains("no metadata.name"));
    }

    #[test]
    fn a_file_of_thousands_of_documents_loads() {
        let dir = tempfile::tempdir().unwrap();
        let routes: Vec<String> = (0..3000)
            .map(|i| ROUTE.replace("name: echo}", &format!("name: r{i}}}")))
            .collect();
        std::fs::write(dir.path().join("many.yaml"), routes.join("---\n")).unwrap();
        let events = ManifestDirectory::new(dir.path().into()).rescan();
        assert_eq!(applied(&events).len(), 3000);
        assert!(problems(&events).is_empty(), "{:?}", problems(&events));
    }

    #[test]
    fn hidden_directories_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        std::fs::write(dir.path().join("..data/a.yaml"), ROUTE).unwrap();
        assert!(applied(&ManifestDirectory::new(dir.path().into()).rescan()).is_empty());
    }

    #[tokio::test]
    async fn follows_changes_to_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (events, mut received) = mpsc::channel(64);
        let _thread = spawn(dir.path().into(), events).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, received.recv())
                .await
                .unwrap()
                .unwrap()
            {
                SourceEvent::Synced { .. } => break,
                _ => continue,
            }
        }
        std::fs::write(dir.path().join("new.yaml"), ROUTE).unwrap();
        loop {
            let event = tokio::time::timeout_at(deadline, received.recv())
                .await
                .unwrap()
                .unwrap();
            if let SourceEvent::Apply { object, .. } = event {
                assert_eq!(object.key().kind, Kind::Route);
                break;
            }
        }
    }
}

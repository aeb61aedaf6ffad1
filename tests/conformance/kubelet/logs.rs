//! Container logs: every line a container prints, timestamped as it is read, and the HTTPS
//! endpoint through which the API server serves them (`kubectl logs`, `pods/log`).
//!
//! The API server proxies a log request to
//! `https://<node InternalIP>:<kubeletEndpoint port>/containerLogs/<ns>/<pod>/<container>`
//! with the options as query parameters, and does not verify the node's certificate unless
//! it was given a CA for it (the test API server is not), so a self-signed one does. The
//! conformance suite's mirror tests read the mirrored backend's log with `sinceTime` and
//! match echo-basic's request line, so `sinceTime` must be honoured: an old line must not
//! satisfy a later test. Selection is [`LogQuery::select`], a pure function.

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
};

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Lines kept per container; older ones are dropped (a weight test sends ~500 requests a
/// backend at most, each logging one line).
const MAX_LINES: usize = 100_000;

/// One line a container printed, without its newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub at: Timestamp,
    pub text: String,
}

/// The lines of one container, appended as they are read.
#[derive(Debug, Default)]
pub struct ContainerLog {
    lines: Mutex<VecDeque<LogLine>>,
}

impl ContainerLog {
    pub fn push(&self, text: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == MAX_LINES {
            lines.pop_front();
        }
        lines.push_back(LogLine {
            at: Timestamp::now(),
            text,
        });
    }

    fn render(&self, query: &LogQuery, now: Timestamp) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        query.select(lines.iter(), now)
    }
}

/// The logs of every running pod, by namespace and name; a pod's entry is tied to its uid,
/// so removing a deleted pod's logs never drops those of a newer pod of the same name.
#[derive(Debug, Default)]
pub struct LogStore {
    pods: Mutex<HashMap<(String, String), PodLogs>>,
}

#[derive(Debug)]
struct PodLogs {
    uid: String,
    containers: HashMap<String, Arc<ContainerLog>>,
}

impl LogStore {
    /// The log a container of a pod writes to (a fresh one for a new pod uid).
    pub fn open(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        container: &str,
    ) -> Arc<ContainerLog> {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pods
            .entry((namespace.to_owned(), pod.to_owned()))
            .or_insert_with(|| PodLogs {
                uid: uid.to_owned(),
                containers: HashMap::new(),
            });
        if entry.uid != uid {
            *entry = PodLogs {
                uid: uid.to_owned(),
                containers: HashMap::new(),
            };
        }
        entry
            .containers
            .entry(container.to_owned())
            .or_default()
            .clone()
    }

    /// Forgets a pod's logs, if they are still this uid's.
    pub fn remove(&self, namespace: &str, pod: &str, uid: &str) {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_owned(), pod.to_owned());
        if pods.get(&key).is_some_and(|p| p.uid == uid) {
            pods.remove(&key);
        }
    }

    fn get(&self, namespace: &str, pod: &str, container: &str) -> Option<Arc<ContainerLog>> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.get(&(namespace.to_owned(), pod.to_owned()))?
            .containers
            .get(container)
            .cloned()
    }
}

/// The options of a log request that change what is returned (`follow` and `limitBytes`
/// are ignored: the answer is what there is now).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub since_time: Option<Timestamp>,
    pub since_seconds: Option<i64>,
    pub tail_lines: Option<usize>,
    pub timestamps: bool,
}

impl LogQuery {
    /// Reads the query string of a kubelet log request; unknown or malformed options are
    /// ignored, as the API server has already validated them.
    pub fn parse(query: &str) -> Self {
        let mut parsed = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match key {
                "sinceTime" => parsed.since_time = value.parse().ok(),
                "sinceSeconds" => parsed.since_seconds = value.parse().ok(),
                "tailLines" => parsed.tail_lines = value.parse().ok(),
                "timestamps" => parsed.timestamps = value == "true" || value == "1",
                _ => {}
            }
        }
        parsed
    }

    /// The lines to answer with, one per line, from those a container printed: those at or
    /// after the since time (the kubelet's rule: not before it), then the last `tailLines`.
    pub fn select<'a>(&self, lines: impl Iterator<Item = &'a LogLine>, now: Timestamp) -> String {
        let since = match (self.since_time, self.since_seconds) {
            (Some(time), _) => Some(time),
            (None, Some(seconds)) => now.checked_sub(SignedDuration::from_secs(seconds)).ok(),
            (None, None) => None,
        };
        let selected: Vec<&LogLine> = lines.filter(|l| since.is_none_or(|s| l.at >= s)).collect();
        let skip = self
            .tail_lines
            .map_or(0, |tail| selected.len().saturating_sub(tail));
        let mut out = String::new();
        for line in &selected[skip..] {
            if self.timestamps {
                out.push_str(&line.at.to_string());
                out.push(' ');
            }
            out.push_str(&line.text);
            out.push('\n');
        }
        out
    }
}

/// `%XX` escapes and `+` decoded; a malformed escape stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/containerLogs/<namespace>/<pod>/<container>` → its three parts.
fn log_path(path: &str) -> Option<(&str, &str, &str)> {
    let mut parts = path.strip_prefix("/containerLogs/")?.split('/');
    let (namespace, pod, container) = (parts.next()?, parts.next()?, parts.next()?);
    let all_there = [namespace, pod, container].iter().all(|p| !p.is_empty());
    (all_there && parts.next().is_none()).then_some((namespace, pod, container))
}

/// Makes a self-signed certificate for the node's address with `openssl`, in `dir`.
pub fn self_signed_certificate(dir: &Path, ip: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    let output = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=weir-process-kubelet"])
        .arg("-addext")
        .arg(format!("subjectAltName=IP:{ip}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("running openssl to make the kubelet's serving certificate")?;
    anyhow::ensure!(
        output.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((cert, key))
}

/// The TLS side of the log endpoint, from a PEM certificate chain and key.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .context("reading the kubelet certificate")?
        .collect::<Result<Vec<_>, _>>()
        .context("reading the kubelet certificate")?;
    let key = PrivateKeyDer::from_pem_file(key).context("reading the kubelet key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves the logs over HTTPS on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    store: Arc<LogStore>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted.context("accepting a log connection")?,
            () = stop.cancelled() => return Ok(()),
        };
        let (acceptor, store) = (acceptor.clone(), store.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
            };
            let service = service_fn(move |request| {
                let store = store.clone();
                async move { Ok::<_, Infallible>(answer(&store, &request)) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %error, "log connection ended with an error");
            }
        });
    }
}

fn answer(store: &LogStore, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    let Some((namespace, pod, container)) = log_path(request.uri().path()) else {
        return reply(
            StatusCode::NOT_FOUND,
            format!(
                "the process kubelet serves only /containerLogs, not {}\n",
                request.uri().path()
            ),
        );
    };
    let query = LogQuery::parse(request.uri().query().unwrap_or(""));
    tracing::debug!(namespace, pod, container, ?query, "log request");
    match store.get(namespace, pod, container) {
        Some(log) => reply(StatusCode::OK, log.render(&query, Timestamp::now())),
        None => reply(
            StatusCode::NOT_FOUND,
            format!("no container {container} in pod {namespace}/{pod}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn lines() -> Vec<LogLine> {
        [
            ("2026-11-25T10:00:00.5Z", "one"),
            ("2026-11-25T10:00:01Z", "two"),
            ("2026-11-25T10:00:02.25Z", "three"),
        ]
        .iter()
        .map(|(time, text)| LogLine {
            at: at(time),
            text: (*text).to_owned(),
        })
        .collect()
    }

    fn select(query: &str) -> String {
        LogQuery::parse(query).select(lines().iter(), at("2026-11-25T10:00:03Z"))
    }

    #[test]
    fn without_options_every_line_is_returned() {
        assert_eq!(select(""), "one\ntwo\nthree\n");
    }

    #[test]
    fn since_time_keeps_lines_at_or_after_it() {
        assert_eq!(select("sinceTime=2026-11-25T10%3A00%3A01Z"), "two\nthree\n");
        assert_eq!(select("sinceTime=2026-11-25T10:00:01Z"), "two\nthree\n");
        assert_eq!(select("sinceTime=2026-11-25T10:00:05Z"), "");
    }

    #[test]
    fn since_seconds_counts_back_from_now() {
        assert_eq!(select("sinceSeconds=1"), "three\n");
    }

    #[test]
    fn tail_lines_keeps_the_last_ones_after_the_time_filter() {
        assert_eq!(select("tailLines=2"), "two\nthree\n");
        assert_eq!(
            select("tailLines=5&sinceTime=2026-11-25T10:00:02Z"),
            "three\n"
        );
    }

    #[test]
    fn timestamps_prefix_each_line_in_rfc3339() {
        assert_eq!(
            select("timestamps=true&tailLines=1"),
            "2026-11-25T10:00:02.25Z three\n"
        );
    }

    #[test]
    fn percent_escapes_and_plus_are_decoded() {
        assert_eq!(percent_decode("a%3Ab+c%2"), "a:b c%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn log_paths_have_exactly_namespace_pod_and_container() {
        assert_eq!(
            log_path("/containerLogs/ns/pod-1/web"),
            Some(("ns", "pod-1", "web"))
        );
        assert_eq!(log_path("/containerLogs/ns/pod-1"), None);
        assert_eq!(log_path("/containerLogs/ns/pod-1/web/extra"), None);
        assert_eq!(log_path("/exec/ns/pod-1/web"), None);
    }

    #[test]
    fn a_newer_pod_of_the_same_name_keeps_its_logs_when_the_old_one_is_removed() {
        let store = LogStore::default();
        store.open("ns", "p", "old-uid", "c").push("old".into());
        let new = store.open("ns", "p", "new-uid", "c");
        new.push("new".into());
        store.remove("ns", "p", "old-uid");
        let kept = store.get("ns", "p", "c").expect("the new pod's log");
        assert_eq!(kept.render(&LogQuery::default(), Timestamp::now()), "new\n");
    }
}

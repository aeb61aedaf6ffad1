//! The AI gateway in a cluster: an AIModel and its Secrets applied with kubectl, served by Weir
//! running as its restricted identity, which writes the AIModel's status: `Accepted` and
//! `ResolvedRefs` conditions, `providersReady`, and each provider's state, ejection included.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use weir_e2e::{
    MockLlm, Reply, Weir,
    cluster::{Cluster, cluster},
    eventually, eventually_within, manifests,
};

const CLIENT_KEY: &str = "weir-client-key-cluster-4e1d";
const PROVIDER_KEY: &str = "sk-provider-cluster-9a07";

/// A namespace with the AIModel CRD, a client key (`client-key`) and a provider key
/// (`provider-key`) applied, and a mock provider that accepts only that provider key.
async fn ai_namespace(test: &str) -> (&'static Cluster, String, MockLlm) {
    let cluster = cluster();
    cluster.install_route_crd();
    cluster.install_aimodel_crd();
    let namespace = cluster.namespace(test).await;
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    cluster.apply(
        &namespace,
        &[
            manifests::ai_client_key("client-key", CLIENT_KEY),
            manifests::ai_provider_key("provider-key", PROVIDER_KEY),
        ],
    );
    (cluster, namespace, mock)
}

/// A chat completion for `model` through Weir, with the client key.
async fn chat(weir: &Weir, model: &str) -> Reply {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
    weir.proxy()
        .request(Method::POST, "ai.test", "/v1/chat/completions")
        .header("authorization", &format!("Bearer {CLIENT_KEY}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
}

/// The AIModel as the API server has it.
fn aimodel(cluster: &Cluster, namespace: &str, name: &str) -> Value {
    let json = cluster.kubectl(&["get", "aimodel", name, "-n", namespace, "-o", "json"]);
    serde_json::from_str(&json).expect("kubectl prints JSON")
}

/// The condition of type `type_` in an AIModel's status, or `null`.
fn condition<'a>(model: &'a Value, type_: &str) -> &'a Value {
    model["status"]["conditions"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// `Ok` when `condition` has `status` and `reason` and is about `generation`.
fn expect_condition(
    condition: &Value,
    status: &str,
    reason: &str,
    generation: &Value,
) -> Result<(), String> {
    if condition["status"] == status
        && condition["reason"] == reason
        && condition["observedGeneration"] == *generation
    {
        Ok(())
    } else {
        Err(format!(
            "want {status}/{reason} at generation {generation}: {condition}"
        ))
    }
}

/// Must show: an AIModel and Secrets applied with kubectl are served through the restricted
/// identity, and its status conditions are written; a provider whose credentials Secret goes
/// missing is taken out of rotation with a condition naming the Secret, and comes back when
/// the reference is mended.
#[tokio::test]
async fn an_aimodel_and_its_secrets_applied_with_kubectl_serve_and_get_status_conditions() {
    let (cluster, namespace, mock) = ai_namespace("ai-status").await;
    cluster.apply(
        &namespace,
        &[manifests::ai_model(
            "chat",
            &format!("{}/v1", mock.url()),
            "mock-upstream",
            "provider-key",
            json!({}),
        )],
    );
    let weir = Weir::start_in_cluster(&cluster.weir_identity(&namespace).await, &namespace).await;

    eventually("a chat completion through Weir answers 200", async || {
        let reply = chat(&weir, "chat").await;
        match reply.status {
            StatusCode::OK => Ok(()),
            status => Err(format!("{status}: {}", reply.body)),
        }
    })
    .await;
    let served = eventually("Weir writes the AIModel's status", async || {
        let model = aimodel(cluster, &namespace, "chat");
        let generation = &model["metadata"]["generation"];
        expect_condition(
            condition(&model, "Accepted"),
            "True",
            "Accepted",
            generation,
        )?;
        expect_condition(
            condition(&model, "ResolvedRefs"),
            "True",
            "ResolvedRefs",
            generation,
        )?;
        match (
            &model["status"]["providersReady"],
            &model["status"]["providers"],
        ) {
            (ready, providers)
                if ready == "1/1" && *providers == json!([{"name": "primary", "ready": true}]) =>
            {
                Ok(model)
            }
            (ready, providers) => Err(format!("providersReady {ready}, providers {providers}")),
        }
    })
    .await;
    let accepted_since = condition(&served, "Accepted")["lastTransitionTime"].clone();
    let listed = cluster.kubectl(&["get", "aimodels", "-n", &namespace]);
    for column in ["NAMES", "PROVIDERS READY", "ACCEPTED", "AGE", "1/1", "True"] {
        assert!(
            listed.contains(column),
            "kubectl get lacks {column:?}:\n{listed}"
        );
    }

    // The provider's key now names a Secret that does not exist.
    cluster.kubectl(&[
        "patch",
        "aimodel",
        "chat",
        "-n",
        &namespace,
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/spec/providers/0/credentials/secretRef/name", "value": "missing-key"}]"#,
    ]);
    let missing = format!("Secret {namespace}/missing-key not found");
    let broken = eventually("ResolvedRefs=False names the missing Secret", async || {
        let model = aimodel(cluster, &namespace, "chat");
        let generation = &model["metadata"]["generation"];
        let resolved = condition(&model, "ResolvedRefs");
        expect_condition(resolved, "False", "InvalidCredentialsRef", generation)?;
        let message = resolved["message"].as_str().unwrap_or_default();
        if message.starts_with(&format!("provider primary: {missing}")) {
            Ok(model)
        } else {
            Err(format!("message {message:?}"))
        }
    })
    .await;
    assert_eq!(broken["metadata"]["generation"], 2);
    assert_eq!(broken["status"]["providersReady"], "0/1");
    let provider = &broken["status"]["providers"][0];
    assert_eq!(provider["ready"], false, "{provider}");
    assert!(
        provider["reason"]
            .as_str()
            .is_some_and(|reason| reason.starts_with(&missing)),
        "{provider}"
    );
    let accepted = condition(&broken, "Accepted");
    expect_condition(accepted, "True", "Accepted", &json!(2)).unwrap();
    assert_eq!(
        accepted["lastTransitionTime"], accepted_since,
        "Accepted did not flip, so its transition time stays"
    );
    // The model stays served, and says why it cannot answer; a provider without its key is
    // never tried.
    let requests_before = mock.requests().await.len();
    eventually("the model answers 503: no provider is ready", async || {
        let reply = chat(&weir, "chat").await;
        match reply.status {
            StatusCode::SERVICE_UNAVAILABLE if reply.body.contains("AIModel's status") => Ok(()),
            status => Err(format!("{status}: {}", reply.body)),
        }
    })
    .await;
    assert_eq!(mock.requests().await.len(), requests_before);

    // Mended: the provider serves again and the conditions say so.
    cluster.kubectl(&[
        "patch",
        "aimodel",
        "chat",
        "-n",
        &namespace,
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/spec/providers/0/credentials/secretRef/name", "value": "provider-key"}]"#,
    ]);
    eventually("the mended model answers 200 again", async || {
        let reply = chat(&weir, "chat").await;
        match reply.status {
            StatusCode::OK => Ok(()),
            status => Err(format!("{status}: {}", reply.body)),
        }
    })
    .await;
    eventually("ResolvedRefs=True again", async || {
        let model = aimodel(cluster, &namespace, "chat");
        expect_condition(
            condition(&model, "ResolvedRefs"),
            "True",
            "ResolvedRefs",
            &json!(3),
        )?;
        match &model["status"]["providersReady"] {
            ready if ready == "1/1" => Ok(()),
            ready => Err(format!("providersReady {ready}")),
        }
    })
    .await;
}

/// The data plane's ejection of a failing provider reaches the AIModel's status (through the
/// binary, not the API server), and leaves it when the ejection ends.
#[tokio::test]
async fn a_provider_ejected_after_failures_shows_in_the_status_until_its_ejection_ends() {
    let (cluster, namespace, mock) = ai_namespace("ai-eject").await;
    cluster.apply(
        &namespace,
        &[manifests::ai_model(
            "flaky",
            &format!("{}/v1", mock.url()),
            "mock+status-503",
            "provider-key",
            json!({"fallback": {"eject": {"consecutiveFailures": 1, "for": "4s"}}}),
        )],
    );
    let weir = Weir::start_in_cluster(&cluster.weir_identity(&namespace).await, &namespace).await;
    eventually("the model is served and its provider fails", async || {
        let reply = chat(&weir, "flaky").await;
        match reply.status {
            status if status.is_server_error() => Ok(()),
            status => Err(format!("{status}: {}", reply.body)),
        }
    })
    .await;
    assert_eq!(
        mock.requests().await.len(),
        1,
        "the provider was tried once"
    );

    let ejected = eventually("the status shows the provider ejected", async || {
        let model = aimodel(cluster, &namespace, "flaky");
        let provider = &model["status"]["providers"][0];
        match provider["ejectedUntil"].as_str() {
            Some(until) => Ok((until.to_owned(), model["status"]["providersReady"].clone())),
            None => Err(format!("provider {provider}")),
        }
    })
    .await;
    assert_eq!(
        ejected.1, "1/1",
        "an ejected provider's references still resolve"
    );
    eventually_within(
        Duration::from_secs(15),
        "the ejection leaves the status when it ends",
        async || {
            let model = aimodel(cluster, &namespace, "flaky");
            let provider = &model["status"]["providers"][0];
            match provider.get("ejectedUntil") {
                None if provider["name"] == "primary" => Ok(()),
                _ => Err(format!("provider {provider} (ejected until {})", ejected.0)),
            }
        },
    )
    .await;
}

/// The restricted identity can do what serving AIModels needs, and no more: list and watch
/// AIModels and Secrets, patch an AIModel's status; never read a Secret by name, change an
/// AIModel's spec, or write Secrets.
#[tokio::test]
async fn the_restricted_identity_may_serve_aimodels_and_no_more() {
    let cluster = cluster();
    cluster.install_aimodel_crd();
    let namespace = cluster.namespace("ai-rbac").await;
    cluster.weir_identity(&namespace).await;
    for allowed in [
        &["list", "aimodels.weir.dev"][..],
        &["watch", "aimodels.weir.dev"],
        &["patch", "aimodels.weir.dev", "--subresource=status"],
        &["list", "secrets"],
        &["watch", "secrets"],
    ] {
        assert!(
            cluster.weir_can(&namespace, allowed),
            "Weir needs to {allowed:?}"
        );
    }
    for denied in [
        &["get", "secrets"][..],
        &["create", "secrets"],
        &["update", "secrets"],
        &["get", "aimodels.weir.dev"],
        &["patch", "aimodels.weir.dev"],
        &["update", "aimodels.weir.dev", "--subresource=status"],
        &["delete", "aimodels.weir.dev"],
    ] {
        assert!(
            !cluster.weir_can(&namespace, denied),
            "Weir must not be able to {denied:?}"
        );
    }
}

//! Weir's `AIModel` (`weir.dev/v1alpha1`) into the contract's [`AiModel`], and client-key
//! Secrets into [`ClientKey`]s.
//!
//! Validation is the CRD crate's ([`weir_crds::validate_aimodel`]); this module resolves what
//! needs the store: each provider's endpoint (a URL, or a Service's ready endpoints) and its
//! API key (a Secret labelled `weir.dev/ai-credentials: "true"`). A provider whose references
//! do not resolve does not reject the model: it is left out of rotation and named in the
//! report, and the others keep serving. Prompts are parsed here once: their templates split
//! into text and variables, their defaults checked against their variables.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::{apis::meta::v1 as meta, util::intstr::IntOrString},
};
use weir_contract::{
    Access, AiAddress, AiApi, AiEndpoint, AiModel, AiPrompt, AiProvider, AiQuota, AiTimeouts,
    ClientKey, Credential, Eject, Fallback, LabelSelector, NamespacedName, PromptTemplate,
    PromptValue, PromptVariable, QuotaLimit, RefProblem, ResolvedRefsReason, SecretBytes,
    SelectorRequirement, TemplatePart as ContractPart, Unresolved, UpstreamTls, ValueProblem,
    VariableKind,
};
use weir_crds::{
    AIModelSpec, AIPrompt, AIProvider, validate_aimodel,
    validate_aimodel::{TemplatePart, parse_duration, template_parts},
};

use crate::{kinds::AI_CREDENTIALS_LABEL, resolve::Lookup};

/// The default `max_tokens` sent to an Anthropic provider for a client that gave none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A translated model. Providers that cannot be used say why in `unresolved`; they stay in
/// `model.providers` for the report but are never tried.
#[derive(Debug)]
pub struct TranslatedModel {
    pub model: AiModel,
}

/// Translates an AIModel's spec; `Err` holds every problem, each naming its field.
pub fn translate(
    id: &NamespacedName,
    spec: &AIModelSpec,
    lookup: &mut Lookup<'_>,
) -> Result<TranslatedModel, String> {
    validate_aimodel(spec).map_err(|invalid| invalid.to_string())?;
    let access = match &spec.access {
        Some(access) if access.public => Access::Public,
        access => Access::Keys {
            namespace: id.namespace.clone(),
            selector: match access.as_ref().and_then(|a| a.key_selector.as_ref()) {
                Some(selector) => {
                    label_selector(selector).map_err(|e| format!("spec.access.keySelector: {e}"))?
                }
                None => LabelSelector::default(),
            },
        },
    };

    let mut providers: Vec<AiProvider> = spec
        .providers
        .iter()
        .map(|provider| translate_provider(id, provider, lookup))
        .collect();
    // Tried by priority; equal priorities keep their written order (the data plane spreads
    // them by weight).
    providers.sort_by_key(|p| p.priority);

    let timeouts = spec.timeouts.as_ref();
    let duration = |value: Option<&String>, default| {
        value
            .and_then(|v| parse_duration(v).ok())
            .unwrap_or(default)
    };
    let defaults = AiTimeouts::default();
    let timeouts = AiTimeouts {
        connect: duration(timeouts.and_then(|t| t.connect.as_ref()), defaults.connect),
        first_byte: duration(
            timeouts.and_then(|t| t.first_byte.as_ref()),
            defaults.first_byte,
        ),
        idle: duration(timeouts.and_then(|t| t.idle.as_ref()), defaults.idle),
        request: duration(timeouts.and_then(|t| t.request.as_ref()), defaults.request),
    };

    let mut fallback = Fallback::default();
    if let Some(spec) = &spec.fallback {
        if !spec.when.is_empty() {
            fallback.on_connect_error = spec.when.iter().any(|w| w == "connect-error");
            fallback.on_timeout = spec.when.iter().any(|w| w == "timeout");
            fallback.on_closed = spec.when.iter().any(|w| w == "closed");
            let mut statuses: Vec<u16> = spec.when.iter().filter_map(|w| w.parse().ok()).collect();
            if spec.when.iter().any(|w| w == "5xx") {
                statuses.extend(500..=599);
            }
            statuses.sort_unstable();
            statuses.dedup();
            fallback.statuses = statuses;
        }
        if let Some(attempts) = spec.max_attempts {
            fallback.max_attempts = attempts;
        }
        if let Some(wait) = &spec.honor_retry_after_up_to {
            fallback.honor_retry_after_up_to = parse_duration(wait).unwrap_or_default();
        }
        fallback.eject = spec.eject.as_ref().map(|eject| Eject {
            consecutive_failures: eject.consecutive_failures,
            duration: parse_duration(&eject.duration).unwrap_or_default(),
        });
    }

    let quotas = spec
        .quotas
        .iter()
        .enumerate()
        .map(|(i, quota)| {
            let limit = |limit: &Option<weir_crds::aimodel::AILimit>| {
                limit.as_ref().map(|limit| QuotaLimit {
                    limit: limit.limit,
                    // Validated above: a duration of at least a second.
                    per: parse_duration(&limit.per).unwrap_or_default(),
                })
            };
            Ok(AiQuota {
                keys: label_selector(&quota.keys)
                    .map_err(|e| format!("spec.quotas[{i}].keys: {e}"))?,
                tokens: limit(&quota.tokens),
                requests: limit(&quota.requests),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;

    let prompts = spec
        .prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| translate_prompt(prompt, &format!("spec.prompts[{i}]")))
        .collect::<Result<_, _>>()?;

    let names = if spec.names.is_empty() {
        vec![id.name.clone()]
    } else {
        spec.names.clone()
    };
    Ok(TranslatedModel {
        model: AiModel {
            id: id.clone(),
            names,
            hosts: spec.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            access,
            providers,
            timeouts,
            fallback,
            quotas,
            prompts,
        },
    })
}

/// A validated prompt in the contract's terms: its templates split once into text and
/// variables, its defaults checked against their own variables (`at` names the prompt's field
/// for that error).
fn translate_prompt(prompt: &AIPrompt, at: &str) -> Result<AiPrompt, String> {
    let mut variables = Vec::with_capacity(prompt.variables.len());
    // A BTreeMap: sorted by name, as the contract keeps them.
    for (name, variable) in &prompt.variables {
        let kind = match variable.kind.as_str() {
            "integer" => VariableKind::Integer {
                minimum: variable.minimum,
                maximum: variable.maximum,
            },
            "number" => VariableKind::Number {
                minimum: variable.minimum,
                maximum: variable.maximum,
            },
            "boolean" => VariableKind::Boolean,
            _ => VariableKind::String {
                allowed: variable.allowed.clone(),
                max_length: variable.max_length,
            },
        };
        let mut translated = PromptVariable {
            name: name.clone(),
            kind,
            required: variable.required,
            default: None,
        };
        if let Some(default) = &variable.default {
            let field = format!("{at}.variables.{name}.default");
            let value = prompt_value(&translated.kind, default).ok_or_else(|| {
                let problem = ValueProblem::WrongType {
                    expected: translated.kind.type_name(),
                };
                format!("{field}: {problem}")
            })?;
            translated
                .check(&value)
                .map_err(|problem| format!("{field}: {problem}"))?;
            translated.default = Some(value);
        }
        variables.push(translated);
    }
    let template = |text: &str, turn: &str| {
        let parts = template_parts(text)
            .map(|part| match part {
                TemplatePart::Text(text) => Ok(ContractPart::Text(text.to_owned())),
                TemplatePart::Placeholder(name) => variables
                    .binary_search_by(|v| v.name.as_str().cmp(name))
                    .map(ContractPart::Variable)
                    .map_err(|_| format!("{at}.{turn}: {{{{{name}}}}} is not a declared variable")),
            })
            .collect::<Result<_, String>>()?;
        Ok::<_, String>(PromptTemplate { parts })
    };
    let system = match &prompt.system {
        Some(system) => Some(template(system, "system")?),
        None => None,
    };
    let user = template(&prompt.user, "user")?;
    let params_json = match &prompt.params {
        Some(params) if !params.is_empty() => {
            serde_json::to_string(params).map_err(|e| format!("{at}.params: {e}"))?
        }
        _ => String::new(),
    };
    Ok(AiPrompt {
        name: prompt.name.clone(),
        system,
        user,
        variables,
        params_json,
    })
}

/// A JSON value as a value of `kind`, if it is of that type (an integer written `100.0`
/// included).
fn prompt_value(kind: &VariableKind, value: &serde_json::Value) -> Option<PromptValue> {
    use serde_json::Value;
    Some(match (kind, value) {
        (VariableKind::String { .. }, Value::String(text)) => PromptValue::String(text.clone()),
        (VariableKind::Boolean, Value::Bool(flag)) => PromptValue::Boolean(*flag),
        (VariableKind::Integer { .. }, Value::Number(number)) => {
            PromptValue::Integer(number.as_i64().or_else(|| {
                number
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })?)
        }
        (VariableKind::Number { .. }, Value::Number(number)) => {
            PromptValue::Number(number.as_f64()?)
        }
        _ => return None,
    })
}

fn translate_provider(
    id: &NamespacedName,
    provider: &AIProvider,
    lookup: &mut Lookup<'_>,
) -> AiProvider {
    let api = match provider.kind.as_str() {
        "Anthropic" => AiApi::Anthropic,
        _ => AiApi::OpenAi,
    };
    let mut unresolved = None;
    let endpoint = match (&provider.endpoint.url, &provider.endpoint.service) {
        (Some(url), _) => url_endpoint(url),
        (None, Some(service)) => {
            let service_id = NamespacedName::new(id.namespace.clone(), service.name.clone());
            let problem = |reason, message: String| RefProblem { reason, message };
            let endpoints = match lookup
                .service_port(&service_id, &IntOrString::Int(i32::from(service.port)))
            {
                Ok((_, endpoints)) if endpoints.is_empty() => {
                    unresolved = Some(problem(
                        ResolvedRefsReason::NoReadyEndpoints,
                        format!("Service {service_id} has no ready endpoints"),
                    ));
                    endpoints
                }
                Ok((_, endpoints)) => endpoints,
                Err(Unresolved::PortNotFound) => {
                    unresolved = Some(problem(
                        ResolvedRefsReason::PortNotFound,
                        format!("Service {service_id} has no port {}", service.port),
                    ));
                    Vec::new()
                }
                // The only other way a Service port fails to resolve.
                Err(_) => {
                    unresolved = Some(problem(
                        ResolvedRefsReason::BackendNotFound,
                        format!("Service {service_id} not found"),
                    ));
                    Vec::new()
                }
            };
            let base_path = service.base_path.clone().unwrap_or_else(|| match api {
                AiApi::OpenAi => "/v1".to_owned(),
                AiApi::Anthropic => String::new(),
            });
            AiEndpoint {
                secure: false,
                authority: format!("{}.{}:{}", service.name, id.namespace, service.port),
                base_path: base_path.trim_end_matches('/').to_owned(),
                address: AiAddress::Endpoints(endpoints),
                tls: None,
            }
        }
        (None, None) => unreachable!("validated: an endpoint has a url or a service"),
    };
    let credential = provider.credentials.as_ref().and_then(|credentials| {
        let secret = &credentials.secret_ref;
        let source = NamespacedName::new(id.namespace.clone(), secret.name.clone());
        match lookup.provider_key(&source, &secret.key) {
            Ok(value) => Some(Credential {
                source,
                value: SecretBytes::new(value),
            }),
            Err(why) => {
                unresolved.get_or_insert(RefProblem {
                    reason: ResolvedRefsReason::InvalidCredentialsRef,
                    message: why,
                });
                None
            }
        }
    });
    AiProvider {
        name: provider.name.clone(),
        api,
        model: provider.model.clone(),
        endpoint,
        credential,
        priority: provider.priority,
        weight: provider.weight,
        default_max_tokens: provider.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        unresolved,
    }
}

/// A validated base URL as an endpoint.
fn url_endpoint(url: &str) -> AiEndpoint {
    let uri: http::Uri = url.parse().expect("validated: the URL parses");
    let secure = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    AiEndpoint {
        secure,
        authority: uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        base_path: uri.path().trim_end_matches('/').to_owned(),
        tls: secure.then(|| {
            Arc::new(UpstreamTls {
                server_name: host.clone(),
                ca_pem: None,
            })
        }),
        address: AiAddress::Host { host, port },
    }
}

/// A Kubernetes label selector in the contract's terms.
pub(crate) fn label_selector(selector: &meta::LabelSelector) -> Result<LabelSelector, String> {
    let match_labels = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut match_expressions = Vec::new();
    for term in selector.match_expressions.iter().flatten() {
        let values = term.values.clone().unwrap_or_default();
        match_expressions.push(match term.operator.as_str() {
            "In" => SelectorRequirement::In(term.key.clone(), values),
            "NotIn" => SelectorRequirement::NotIn(term.key.clone(), values),
            "Exists" => SelectorRequirement::Exists(term.key.clone()),
            "DoesNotExist" => SelectorRequirement::DoesNotExist(term.key.clone()),
            other => {
                return Err(format!(
                    "operator {other:?} is not In, NotIn, Exists or DoesNotExist"
                ));
            }
        });
    }
    Ok(LabelSelector {
        match_labels,
        match_expressions,
    })
}

/// A client-key Secret as the data plane holds it: the SHA-256 of `data.key` and the labels.
/// `None` when the Secret has no `key`.
pub fn client_key(id: &NamespacedName, secret: &Secret) -> Option<ClientKey> {
    let value = crate::resolve::secret_bytes(secret, "key")?;
    let value = trim_line_end(&value);
    if value.is_empty() {
        return None;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, value);
    let mut sha256 = [0; 32];
    sha256.copy_from_slice(digest.as_ref());
    let labels: BTreeMap<String, String> = secret.metadata.labels.clone().unwrap_or_default();
    Some(ClientKey {
        id: id.clone(),
        sha256,
        labels,
    })
}

/// A key written with `echo` into a file before `kubectl create secret --from-file` ends in a
/// newline no client sends.
pub fn trim_line_end(value: &[u8]) -> &[u8] {
    let mut end = value.len();
    while end > 0 && matches!(value[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &value[..end]
}

/// Why provider keys must be labelled, for the message of a provider whose Secret is missing.
pub fn provider_key_hint() -> String {
    format!("Weir reads only Secrets labelled {AI_CREDENTIALS_LABEL}: \"true\"")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The prompt of the issue, with `edit` applied.
    fn summarize(edit: impl FnOnce(&mut serde_json::Value)) -> AIPrompt {
        let mut prompt = json!({
            "name": "summarize",
            "system": "Summarise for {{audience}} in at most {{ words }} words.",
            "user": "{{text}}",
            "variables": {
                "text": {"type": "string", "required": true, "maxLength": 50000},
                "audience": {"type": "string", "enum": ["engineers", "executives"], "default": "engineers"},
                "words": {"type": "integer", "minimum": 10, "maximum": 500, "default": 100},
            },
            "params": {"temperature": 0.2, "max_tokens": 512},
        });
        edit(&mut prompt);
        serde_json::from_value(prompt).unwrap()
    }

    #[test]
    fn a_prompt_is_split_into_text_and_its_variables_by_index() {
        let prompt = translate_prompt(&summarize(|_| {}), "spec.prompts[0]").unwrap();
        let names: Vec<_> = prompt.variables.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["audience", "text", "words"]);
        assert_eq!(
            prompt.system.unwrap().parts,
            [
                ContractPart::Text("Summarise for ".into()),
                ContractPart::Variable(0),
                ContractPart::Text(" in at most ".into()),
                ContractPart::Variable(2),
                ContractPart::Text(" words.".into()),
            ]
        );
        assert_eq!(prompt.user.parts, [ContractPart::Variable(1)]);
        assert_eq!(
            prompt.variables[0].default,
            Some(PromptValue::String("engineers".into()))
        );
        assert_eq!(prompt.variables[2].default, Some(PromptValue::Integer(100)));
        assert!(prompt.variables[1].required);
        let params: serde_json::Value = serde_json::from_str(&prompt.params_json).unwrap();
        assert_eq!(params, json!({"temperature": 0.2, "max_tokens": 512}));
    }

    #[test]
    fn a_default_that_does_not_fit_its_variable_is_refused_naming_the_field() {
        let cases = [
            (
                "audience",
                json!("everyone"),
                "must be one of engineers, executives",
            ),
            ("words", json!("many"), "must be an integer"),
            ("words", json!(5), "must be at least 10"),
            ("text", json!(true), "must be a string"),
        ];
        for (variable, default, reason) in cases {
            let prompt = summarize(|p| p["variables"][variable]["default"] = default.clone());
            let error = translate_prompt(&prompt, "spec.prompts[1]").unwrap_err();
            assert_eq!(
                error,
                format!("spec.prompts[1].variables.{variable}.default: {reason}")
            );
        }
    }

    #[test]
    fn an_integer_default_may_be_written_as_a_whole_float() {
        let prompt = summarize(|p| p["variables"]["words"]["default"] = json!(120.0));
        let prompt = translate_prompt(&prompt, "spec.prompts[0]").unwrap();
        assert_eq!(prompt.variables[2].default, Some(PromptValue::Integer(120)));
    }
}

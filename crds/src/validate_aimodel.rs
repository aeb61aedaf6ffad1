//! Validation of an AIModel's spec beyond what its types and schema can say.
//!
//! As for Routes, every problem names its field (`spec.providers[1].endpoint.url`) and all of
//! them are reported at once. A prompt's free-text variables may appear only in its user
//! turn: a value a caller sends never becomes part of the system prompt.

use std::{collections::HashSet, fmt, time::Duration};

use crate::{
    aimodel::{AIModelSpec, AIPrompt},
    validate::{FieldError, check_dns_label, check_host, check_subdomain, write_all},
};

/// The provider types Weir speaks.
pub const PROVIDER_TYPES: [&str; 2] = ["OpenAI", "Anthropic"];

/// The fallback conditions that are not statuses.
const FALLBACK_CONDITIONS: [&str; 4] = ["connect-error", "timeout", "closed", "5xx"];

/// All problems found in one AIModel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidAIModel(pub Vec<FieldError>);

impl fmt::Display for InvalidAIModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_all(f, &self.0)
    }
}

/// Checks an AIModel's spec; `Ok` means the control plane can serve it.
pub fn validate_aimodel(spec: &AIModelSpec) -> Result<(), InvalidAIModel> {
    let mut errors = Vec::new();
    let mut fail = |field: String, reason: &str| {
        errors.push(FieldError {
            field,
            reason: reason.to_owned(),
        })
    };

    let mut names = HashSet::new();
    for (i, name) in spec.names.iter().enumerate() {
        if name.is_empty() || name.len() > 256 || name.chars().any(char::is_whitespace) {
            fail(
                format!("spec.names[{i}]"),
                "must be 1 to 256 characters without spaces",
            );
        } else if !names.insert(name) {
            fail(format!("spec.names[{i}]"), "is listed twice");
        }
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        if let Err(reason) = check_host(host) {
            fail(format!("spec.hosts[{i}]"), reason);
        }
    }
    if let Some(access) = &spec.access
        && access.public
        && access.key_selector.is_some()
    {
        fail(
            "spec.access".into(),
            "public and keySelector exclude each other",
        );
    }

    if spec.providers.is_empty() {
        fail("spec.providers".into(), "must name at least one provider");
    }
    let mut provider_names = HashSet::new();
    for (i, provider) in spec.providers.iter().enumerate() {
        let at = format!("spec.providers[{i}]");
        if check_dns_label(&provider.name).is_err() {
            fail(format!("{at}.name"), "must be a lowercase DNS label");
        } else if !provider_names.insert(&provider.name) {
            fail(format!("{at}.name"), "is used by another provider");
        }
        if !PROVIDER_TYPES.contains(&provider.kind.as_str()) {
            fail(format!("{at}.type"), "must be OpenAI or Anthropic");
        }
        if provider.model.is_empty() {
            fail(format!("{at}.model"), "must not be empty");
        }
        match (&provider.endpoint.url, &provider.endpoint.service) {
            (Some(url), None) => {
                if let Err(reason) = check_url(url) {
                    fail(format!("{at}.endpoint.url"), reason);
                }
            }
            (None, Some(service)) => {
                if check_subdomain(&service.name).is_err() {
                    fail(
                        format!("{at}.endpoint.service.name"),
                        "must be a Service name",
                    );
                }
                if service.port == 0 {
                    fail(format!("{at}.endpoint.service.port"), "must be 1 to 65535");
                }
                if let Some(path) = &service.base_path
                    && !(path.is_empty() || path.starts_with('/'))
                {
                    fail(
                        format!("{at}.endpoint.service.basePath"),
                        "must start with '/'",
                    );
                }
            }
            _ => fail(
                format!("{at}.endpoint"),
                "must set exactly one of url and service",
            ),
        }
        if let Some(credentials) = &provider.credentials {
            let secret = &credentials.secret_ref;
            if check_subdomain(&secret.name).is_err() {
                fail(
                    format!("{at}.credentials.secretRef.name"),
                    "must be a Secret name",
                );
            }
            if secret.key.is_empty() {
                fail(
                    format!("{at}.credentials.secretRef.key"),
                    "must not be empty",
                );
            }
        }
        if provider.weight > 1_000_000 {
            fail(format!("{at}.weight"), "must be at most 1000000");
        }
        if provider.default_max_tokens == Some(0) {
            fail(format!("{at}.defaultMaxTokens"), "must be at least 1");
        }
    }
    if !spec.providers.is_empty() && spec.providers.iter().all(|p| p.weight == 0) {
        fail(
            "spec.providers".into(),
            "at least one provider needs a weight above 0",
        );
    }

    if let Some(timeouts) = &spec.timeouts {
        for (field, value) in [
            ("connect", &timeouts.connect),
            ("firstByte", &timeouts.first_byte),
            ("idle", &timeouts.idle),
            ("request", &timeouts.request),
        ] {
            if let Some(value) = value
                && parse_duration(value).is_err()
            {
                fail(
                    format!("spec.timeouts.{field}"),
                    "must be a duration such as 2s or 500ms",
                );
            }
        }
    }

    if let Some(fallback) = &spec.fallback {
        for (i, condition) in fallback.when.iter().enumerate() {
            if let Err(reason) = check_fallback_condition(condition) {
                fail(format!("spec.fallback.when[{i}]"), reason);
            }
        }
        if let Some(attempts) = fallback.max_attempts
            && !(1..=10).contains(&attempts)
        {
            fail("spec.fallback.maxAttempts".into(), "must be 1 to 10");
        }
        if let Some(wait) = &fallback.honor_retry_after_up_to
            && parse_duration(wait).is_err()
        {
            fail(
                "spec.fallback.honorRetryAfterUpTo".into(),
                "must be a duration such as 2s",
            );
        }
        if let Some(eject) = &fallback.eject {
            if eject.consecutive_failures == 0 {
                fail(
                    "spec.fallback.eject.consecutiveFailures".into(),
                    "must be at least 1",
                );
            }
            if !matches!(parse_duration(&eject.duration), Ok(d) if !d.is_zero()) {
                fail(
                    "spec.fallback.eject.for".into(),
                    "must be a duration above 0, such as 30s",
                );
            }
        }
    }

    for (i, quota) in spec.quotas.iter().enumerate() {
        let at = format!("spec.quotas[{i}]");
        if quota.tokens.is_none() && quota.requests.is_none() {
            fail(at.clone(), "must limit tokens, requests or both");
        }
        for (field, limit) in [("tokens", &quota.tokens), ("requests", &quota.requests)] {
            let Some(limit) = limit else { continue };
            if limit.limit == 0 {
                fail(format!("{at}.{field}.limit"), "must be at least 1");
            }
            if !matches!(parse_duration(&limit.per), Ok(d) if d >= Duration::from_secs(1)) {
                fail(
                    format!("{at}.{field}.per"),
                    "must be a duration of at least 1s, such as 1m or 1h",
                );
            }
        }
    }

    let mut prompt_names = HashSet::new();
    for (i, prompt) in spec.prompts.iter().enumerate() {
        let at = format!("spec.prompts[{i}]");
        if check_dns_label(&prompt.name).is_err() {
            fail(format!("{at}.name"), "must be a lowercase DNS label");
        } else if !prompt_names.insert(&prompt.name) {
            fail(format!("{at}.name"), "is used by another prompt");
        }
        check_prompt(prompt, &at, &mut fail);
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(InvalidAIModel(errors))
    }
}

/// Parses a duration field (`2s`, `500ms`, `1h`).
pub fn parse_duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

/// A provider base URL: `http` or `https`, a host, no query or fragment.
fn check_url(url: &str) -> Result<(), &'static str> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "must be an http or https URL such as https://api.openai.com/v1")?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must start with http:// or https://");
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("must name a host");
    }
    if uri.query().is_some() || url.contains('#') {
        return Err("must not carry a query or fragment");
    }
    if url.contains('@') {
        return Err("must not carry credentials; use credentials.secretRef");
    }
    Ok(())
}

/// A fallback condition: a named failure, or a status that is not the client's to fix.
fn check_fallback_condition(condition: &str) -> Result<(), &'static str> {
    if FALLBACK_CONDITIONS.contains(&condition) {
        return Ok(());
    }
    let status: u16 = condition.parse().map_err(
        |_| "must be connect-error, timeout, closed, 5xx or a status such as \"429\" or \"503\"",
    )?;
    match status {
        408 | 409 | 429 | 500..=599 => Ok(()),
        400..=499 => Err(
            "a 4xx other than 408, 409 and 429 is the client's to fix, not a provider's failure",
        ),
        _ => Err("must be a status of 408, 409, 429 or 500 to 599"),
    }
}

fn check_prompt(prompt: &AIPrompt, at: &str, fail: &mut dyn FnMut(String, &str)) {
    if prompt.user.trim().is_empty() {
        fail(format!("{at}.user"), "must not be empty");
    }
    for (name, variable) in &prompt.variables {
        let field = format!("{at}.variables.{name}");
        if !is_variable_name(name) {
            fail(
                field.clone(),
                "a variable name is letters, digits and '_', starting with a letter",
            );
        }
        if !matches!(
            variable.kind.as_str(),
            "string" | "integer" | "number" | "boolean"
        ) {
            fail(
                format!("{field}.type"),
                "must be string, integer, number or boolean",
            );
        }
        if !variable.allowed.is_empty() && variable.kind != "string" {
            fail(
                format!("{field}.enum"),
                "only a string variable has an enum",
            );
        }
        if let (Some(min), Some(max)) = (variable.minimum, variable.maximum)
            && min > max
        {
            fail(format!("{field}.minimum"), "must not exceed maximum");
        }
    }
    for (turn, text) in [
        ("system", prompt.system.as_deref()),
        ("user", Some(&*prompt.user)),
    ] {
        let Some(text) = text else { continue };
        for placeholder in placeholders(text) {
            match prompt.variables.get(placeholder) {
                None => fail(
                    format!("{at}.{turn}"),
                    &format!("uses {{{{{placeholder}}}}}, which is not a declared variable"),
                ),
                Some(variable)
                    if turn == "system"
                        && variable.kind == "string"
                        && variable.allowed.is_empty() =>
                {
                    fail(
                        format!("{at}.system"),
                        &format!(
                            "uses free-text variable {{{{{placeholder}}}}}; free text goes only into the user turn (give it an enum, or move it)"
                        ),
                    )
                }
                Some(_) => {}
            }
        }
    }
}

/// The variable names a template's `{{name}}` placeholders use, in order.
///
/// ```
/// let names: Vec<_> = weir_crds::validate_aimodel::placeholders("a {{x}} b {{ y }} {{x").collect();
/// assert_eq!(names, ["x", "y"]);
/// ```
pub fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    let mut rest = template;
    std::iter::from_fn(move || {
        let start = rest.find("{{")?;
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let name = after[..end].trim();
        rest = &after[end + 2..];
        Some(name)
    })
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aimodel::AIModel;

    fn spec(json: serde_json::Value) -> AIModelSpec {
        let model: AIModel = serde_json::from_value(serde_json::json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "AIModel",
            "metadata": {"name": "m", "namespace": "ai"},
            "spec": json,
        }))
        .unwrap();
        model.spec
    }

    fn provider() -> serde_json::Value {
        serde_json::json!({"name": "p", "type": "OpenAI", "model": "gpt",
            "endpoint": {"url": "https://api.openai.com/v1"}})
    }

    fn fields(spec: &AIModelSpec) -> Vec<String> {
        match validate_aimodel(spec) {
            Ok(()) => vec![],
            Err(InvalidAIModel(errors)) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn accepts_a_minimal_model() {
        assert_eq!(
            fields(&spec(serde_json::json!({"providers": [provider()]}))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn names_the_field_of_every_provider_problem() {
        let spec = spec(serde_json::json!({"providers": [
            provider(),
            {"name": "p", "type": "Gemini", "model": "", "endpoint": {"url": "ftp://x"}},
            {"name": "q", "type": "Anthropic", "model": "c", "endpoint": {}},
            {"name": "r", "type": "OpenAI", "model": "c", "endpoint": {"url": "https://u:pw@x/v1"},
             "credentials": {"secretRef": {"name": "Bad_Name", "key": ""}}},
        ]}));
        assert_eq!(
            fields(&spec),
            [
                "spec.providers[1].name",
                "spec.providers[1].type",
                "spec.providers[1].model",
                "spec.providers[1].endpoint.url",
                "spec.providers[2].endpoint",
                "spec.providers[3].endpoint.url",
                "spec.providers[3].credentials.secretRef.name",
                "spec.providers[3].credentials.secretRef.key",
            ]
        );
    }

    #[test]
    fn fallback_never_moves_on_for_the_clients_own_mistakes() {
        let spec = spec(serde_json::json!({"providers": [provider()],
            "fallback": {"when": ["429", "5xx", "closed", "400", "401", "422", "on", "600"], "maxAttempts": 0}}));
        assert_eq!(
            fields(&spec),
            [
                "spec.fallback.when[3]",
                "spec.fallback.when[4]",
                "spec.fallback.when[5]",
                "spec.fallback.when[6]",
                "spec.fallback.when[7]",
                "spec.fallback.maxAttempts",
            ]
        );
    }

    #[test]
    fn free_text_variables_stay_out_of_the_system_turn() {
        let spec = spec(serde_json::json!({"providers": [provider()], "prompts": [{
            "name": "summarize",
            "system": "For {{audience}}, in {{words}} words, about {{text}}.",
            "user": "{{text}} {{missing}}",
            "variables": {
                "text": {"type": "string", "required": true},
                "audience": {"type": "string", "enum": ["engineers"]},
                "words": {"type": "integer", "minimum": 10, "maximum": 5},
            }
        }]}));
        let errors = validate_aimodel(&spec).unwrap_err().to_string();
        assert!(
            errors.contains("spec.prompts[0].variables.words.minimum"),
            "{errors}"
        );
        assert!(
            errors.contains("spec.prompts[0].system: uses free-text variable {{text}}"),
            "{errors}"
        );
        assert!(
            errors.contains("spec.prompts[0].user: uses {{missing}}"),
            "{errors}"
        );
        assert!(!errors.contains("audience"), "{errors}");
    }

    #[test]
    fn quotas_need_a_limit_and_a_window() {
        let spec = spec(serde_json::json!({"providers": [provider()], "quotas": [
            {"keys": {}},
            {"keys": {"matchLabels": {"tier": "free"}}, "tokens": {"limit": 0, "per": "1h"},
             "requests": {"limit": 10, "per": "10ms"}},
        ]}));
        assert_eq!(
            fields(&spec),
            [
                "spec.quotas[0]",
                "spec.quotas[1].tokens.limit",
                "spec.quotas[1].requests.per"
            ]
        );
    }
}

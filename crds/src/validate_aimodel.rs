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

/// The chat-completions fields a prompt's call is made of, which its `params` cannot set:
/// the model is the AIModel's, the messages are the rendered templates, and the caller
/// chooses whether to stream.
pub const PROMPT_RESERVED_PARAMS: [&str; 4] = ["model", "messages", "stream", "stream_options"];

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
        // A constraint the type cannot have would silently not apply.
        if variable.max_length.is_some() && variable.kind != "string" {
            fail(
                format!("{field}.maxLength"),
                "only a string variable has a maxLength",
            );
        }
        for (bound, value) in [("minimum", variable.minimum), ("maximum", variable.maximum)] {
            if value.is_some() && !matches!(variable.kind.as_str(), "integer" | "number") {
                fail(
                    format!("{field}.{bound}"),
                    &format!("only an integer or number variable has a {bound}"),
                );
            }
        }
    }
    for reserved in PROMPT_RESERVED_PARAMS {
        if prompt
            .params
            .as_ref()
            .is_some_and(|params| params.contains_key(reserved))
        {
            fail(
                format!("{at}.params.{reserved}"),
                "is set by Weir for each call; a prompt's params cannot change it",
            );
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
    template_parts(template).filter_map(|part| match part {
        TemplatePart::Placeholder(name) => Some(name),
        TemplatePart::Text(_) => None,
    })
}

/// A piece of a prompt template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplatePart<'a> {
    /// Text sent as it is.
    Text(&'a str),
    /// A `{{name}}` placeholder, by the name inside it (spaces around it trimmed).
    Placeholder(&'a str),
}

/// A template split into text and placeholders, in order: the one reading of the `{{name}}`
/// syntax, which validation checks and the control plane hands the data plane already split,
/// so a value is never read as a template. A `{{` with no `}}` after it is text.
///
/// ```
/// use weir_crds::validate_aimodel::{TemplatePart::*, template_parts};
/// let parts: Vec<_> = template_parts("Hi {{ who }}, {{x").collect();
/// assert_eq!(parts, [Text("Hi "), Placeholder("who"), Text(", {{x")]);
/// ```
pub fn template_parts(template: &str) -> impl Iterator<Item = TemplatePart<'_>> {
    let mut rest = template;
    let mut placeholder_next = None;
    std::iter::from_fn(move || {
        if let Some(name) = placeholder_next.take() {
            return Some(TemplatePart::Placeholder(name));
        }
        if rest.is_empty() {
            return None;
        }
        let split = rest.find("{{").and_then(|start| {
            let after = &rest[start + 2..];
            after.find("}}").map(|end| (start, start + 2 + end))
        });
        let Some((start, end)) = split else {
            return Some(TemplatePart::Text(std::mem::take(&mut rest)));
        };
        let text = &rest[..start];
        let name = rest[start + 2..end].trim();
        rest = &rest[end + 2..];
        if text.is_empty() {
            Some(TemplatePart::Placeholder(name))
        } else {
            placeholder_next = Some(name);
            Some(TemplatePart::Text(text))
        }
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

    /// The prompt of the issue: `summarize`, free text in the user turn only.
    fn summarize() -> serde_json::Value {
        serde_json::json!({
            "name": "summarize",
            "system": "Summarise for {{audience}} in at most {{words}} words.",
            "user": "{{text}}",
            "variables": {
                "text": {"type": "string", "required": true, "maxLength": 50000},
                "audience": {"type": "string", "enum": ["engineers", "executives"], "default": "engineers"},
                "words": {"type": "integer", "minimum": 10, "maximum": 500, "default": 100},
            },
            "params": {"temperature": 0.2, "max_tokens": 512},
        })
    }

    fn with_prompt(edit: impl FnOnce(&mut serde_json::Value)) -> AIModelSpec {
        let mut prompt = summarize();
        edit(&mut prompt);
        spec(serde_json::json!({"providers": [provider()], "prompts": [prompt]}))
    }

    #[test]
    fn a_prompt_with_free_text_only_in_the_user_turn_is_accepted() {
        assert_eq!(fields(&with_prompt(|_| {})), Vec::<String>::new());
    }

    #[test]
    fn a_system_turn_using_free_text_is_refused_naming_the_field() {
        let spec = with_prompt(|p| p["system"] = "Summarise {{text}} for {{audience}}.".into());
        assert_eq!(fields(&spec), ["spec.prompts[0].system"]);
        let message = validate_aimodel(&spec).unwrap_err().to_string();
        assert!(message.contains("free-text variable {{text}}"), "{message}");
    }

    #[test]
    fn a_string_with_an_enum_is_not_free_text() {
        let spec = with_prompt(|p| p["user"] = "{{text}} ({{audience}})".into());
        assert_eq!(fields(&spec), Vec::<String>::new());
    }

    #[test]
    fn an_undeclared_variable_is_refused_naming_its_turn() {
        let system = with_prompt(|p| p["system"] = "Be {{tone}}.".into());
        assert_eq!(fields(&system), ["spec.prompts[0].system"]);
        let user = with_prompt(|p| p["user"] = "{{text}} {{ missing }}".into());
        assert_eq!(fields(&user), ["spec.prompts[0].user"]);
        let message = validate_aimodel(&user).unwrap_err().to_string();
        assert!(message.contains("{{missing}}"), "{message}");
    }

    #[test]
    fn constraints_a_type_cannot_have_are_refused() {
        let spec = with_prompt(|p| {
            p["variables"]["words"]["maxLength"] = 3.into();
            p["variables"]["text"]["maximum"] = 3.into();
            p["variables"]["flag"] = serde_json::json!({"type": "boolean", "minimum": 1});
        });
        assert_eq!(
            fields(&spec),
            [
                "spec.prompts[0].variables.flag.minimum",
                "spec.prompts[0].variables.text.maximum",
                "spec.prompts[0].variables.words.maxLength",
            ]
        );
    }

    #[test]
    fn params_cannot_set_what_each_call_is_made_of() {
        let spec = with_prompt(|p| {
            p["params"]["model"] = "gpt-4o".into();
            p["params"]["stream"] = true.into();
        });
        assert_eq!(
            fields(&spec),
            [
                "spec.prompts[0].params.model",
                "spec.prompts[0].params.stream"
            ]
        );
    }

    #[test]
    fn templates_split_into_text_and_placeholders_once() {
        use TemplatePart::*;
        let parts: Vec<_> = template_parts("{{a}}{{ b }} and {{c}}.").collect();
        assert_eq!(
            parts,
            [
                Placeholder("a"),
                Placeholder("b"),
                Text(" and "),
                Placeholder("c"),
                Text(".")
            ]
        );
        assert_eq!(template_parts("").count(), 0);
        assert_eq!(
            template_parts("no }} {{ close").collect::<Vec<_>>(),
            [Text("no }} {{ close")]
        );
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

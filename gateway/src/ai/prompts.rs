//! Prompt endpoints: `POST /prompts/<name>` renders a model's prompt with the caller's
//! variables into a chat completion of that model; `GET /prompts/<name>/openapi.json`
//! describes the endpoint.
//!
//! A call is admitted as a chat completion of the model is (the same client key, the same
//! `access`; a caller who may not use the model is told the prompt does not exist). Its
//! variables are checked against their declared types and constraints, and a 400 names the
//! variable at fault (`param`: `variables.<name>`). The templates are then rendered in one
//! pass over their parts, already split by the control plane, so a value is inserted as it is
//! and never expanded, whatever `{{…}}` it holds; free text reaches only the user turn (the
//! control plane refuses a system template that uses it).
//!
//! The rendered turns, the prompt's `params` and the caller's `stream` make an OpenAI
//! chat-completions request of the model's first name, which joins the ordinary path at
//! [`super::call::call`]: fallback, translation for Anthropic providers, streaming and
//! accounting apply unchanged, and the answer is a `chat.completion` or its chunk stream.

use std::{fmt::Write as _, time::Instant};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use weir_ai_wire::{
    Dialect,
    errors::{ApiError, ErrorKind},
};
use weir_contract::{
    Access, AiModel, AiPrompt, PromptTemplate, PromptValue, PromptVariable, TemplatePart,
    ValueProblem, VariableKind,
};

use super::{
    AiContext, AiPath, call, client_key, error_response, index::CompiledModel, json_response,
    method_not_allowed, read_json_object,
};
use crate::proxy::ProxyBody;

/// The path prefix of every prompt endpoint.
const PREFIX: &str = "/prompts/";

/// A prompt endpoint's path: `/prompts/<name>` or `/prompts/<name>/openapi.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptPath<'p> {
    pub name: &'p str,
    pub page: PromptPage,
}

/// Which of a prompt's two endpoints a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptPage {
    /// `POST /prompts/<name>`.
    Call,
    /// `GET /prompts/<name>/openapi.json`.
    OpenApi,
}

impl<'p> PromptPath<'p> {
    /// The prompt endpoint `path` is, if it has that shape; whether a model declares the
    /// prompt is the index's to say.
    ///
    /// ```
    /// use weir_gateway::ai::{PromptPage, PromptPath};
    /// let call = PromptPath::of("/prompts/summarize").unwrap();
    /// assert_eq!((call.name, call.page), ("summarize", PromptPage::Call));
    /// let openapi = PromptPath::of("/prompts/summarize/openapi.json").unwrap();
    /// assert_eq!(openapi.page, PromptPage::OpenApi);
    /// assert_eq!(PromptPath::of("/prompts/summarize/other"), None);
    /// assert_eq!(PromptPath::of("/prompts/"), None);
    /// ```
    pub fn of(path: &'p str) -> Option<Self> {
        let rest = path.strip_prefix(PREFIX)?;
        let (name, page) = match rest.split_once('/') {
            None => (rest, PromptPage::Call),
            Some((name, "openapi.json")) => (name, PromptPage::OpenApi),
            Some(_) => return None,
        };
        (!name.is_empty()).then_some(PromptPath { name, page })
    }
}

/// A prompt endpoint some model served on the request's host declares.
pub struct PromptTarget<'i> {
    pub model: &'i CompiledModel,
    pub prompt: &'i CompiledPrompt,
    pub page: PromptPage,
}

/// A prompt as one table serves it: its `params` parsed once.
pub struct CompiledPrompt {
    /// Index into the model's `prompts`.
    pub index: usize,
    params: Map<String, Value>,
}

impl CompiledPrompt {
    pub fn compile(index: usize, prompt: &AiPrompt) -> Self {
        let params = match serde_json::from_str(&prompt.params_json) {
            Ok(Value::Object(params)) => params,
            _ if prompt.params_json.is_empty() => Map::new(),
            // The control plane wrote it from a JSON object; nothing else can be here.
            _ => {
                tracing::warn!(prompt = %prompt.name, "a prompt's params are not a JSON object; sent without them");
                Map::new()
            }
        };
        Self { index, params }
    }
}

/// Why a prompt call is refused; each names the request field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptError {
    #[error("variable `{name}` is required")]
    Missing { name: String },
    #[error("`{name}` is not a variable of this prompt (it takes {known})")]
    Unknown { name: String, known: String },
    #[error("variable `{name}` {problem}")]
    Invalid { name: String, problem: ValueProblem },
    #[error("`variables` must be a JSON object of variable values")]
    VariablesNotAnObject,
    #[error("`stream` must be true or false")]
    StreamNotABoolean,
    #[error("`stream_options` must be an object")]
    StreamOptionsNotAnObject,
    #[error("unknown field `{0}`: a prompt call takes `variables`, `stream` and `stream_options`")]
    UnknownField(String),
}

impl PromptError {
    /// The request field at fault, as OpenAI's `param` names it.
    pub fn param(&self) -> String {
        match self {
            PromptError::Missing { name }
            | PromptError::Unknown { name, .. }
            | PromptError::Invalid { name, .. } => format!("variables.{name}"),
            PromptError::VariablesNotAnObject => "variables".into(),
            PromptError::StreamNotABoolean => "stream".into(),
            PromptError::StreamOptionsNotAnObject => "stream_options".into(),
            PromptError::UnknownField(field) => field.clone(),
        }
    }

    /// OpenAI's machine-readable `code` for it.
    fn code(&self) -> &'static str {
        match self {
            PromptError::Missing { .. } => "missing_required_parameter",
            PromptError::Unknown { .. } | PromptError::UnknownField(_) => "unknown_parameter",
            PromptError::Invalid { problem, .. } => match problem {
                ValueProblem::WrongType { .. } => "invalid_type",
                ValueProblem::TooLong { .. } => "string_above_max_length",
                _ => "invalid_value",
            },
            PromptError::VariablesNotAnObject
            | PromptError::StreamNotABoolean
            | PromptError::StreamOptionsNotAnObject => "invalid_type",
        }
    }

    /// The 400 the caller gets.
    pub fn to_api_error(&self) -> ApiError {
        ApiError::invalid_request(self.param(), self.to_string()).with_code(self.code())
    }
}

/// A call's checked request: a value (given or default) per variable of the prompt, by the
/// variable's index, and whether to stream.
#[derive(Debug, PartialEq)]
pub struct PromptCall {
    pub values: Vec<Option<PromptValue>>,
    pub stream: bool,
    pub stream_options: Option<Value>,
}

impl PromptCall {
    /// Reads and checks a call's body (`{"variables": {...}, "stream": false}`): every
    /// variable given is declared and satisfies its type and constraints, every required one
    /// is given, and the others take their defaults.
    pub fn parse(prompt: &AiPrompt, body: Value) -> Result<PromptCall, PromptError> {
        let Value::Object(fields) = body else {
            return Err(PromptError::VariablesNotAnObject);
        };
        let mut given = Map::new();
        let mut stream = false;
        let mut stream_options = None;
        for (field, value) in fields {
            match (field.as_str(), value) {
                ("variables", Value::Object(variables)) => given = variables,
                ("variables", Value::Null) => {}
                ("variables", _) => return Err(PromptError::VariablesNotAnObject),
                ("stream", Value::Bool(flag)) => stream = flag,
                ("stream", Value::Null) => {}
                ("stream", _) => return Err(PromptError::StreamNotABoolean),
                ("stream_options", options @ Value::Object(_)) => stream_options = Some(options),
                ("stream_options", Value::Null) => {}
                ("stream_options", _) => return Err(PromptError::StreamOptionsNotAnObject),
                _ => return Err(PromptError::UnknownField(field)),
            }
        }
        if let Some(name) = given.keys().find(|name| prompt.variable(name).is_none()) {
            return Err(PromptError::Unknown {
                name: name.clone(),
                known: known_variables(prompt),
            });
        }
        let mut values = Vec::with_capacity(prompt.variables.len());
        for variable in &prompt.variables {
            let value = match given.remove(&variable.name) {
                Some(json) => Some(checked_value(variable, json)?),
                None if variable.required => {
                    return Err(PromptError::Missing {
                        name: variable.name.clone(),
                    });
                }
                None => variable.default.clone(),
            };
            values.push(value);
        }
        Ok(PromptCall {
            values,
            stream,
            stream_options,
        })
    }
}

fn known_variables(prompt: &AiPrompt) -> String {
    if prompt.variables.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = prompt.variables.iter().map(|v| v.name.as_str()).collect();
    names.join(", ")
}

/// A JSON value as a value of `variable`, if it is of its type and satisfies it.
fn checked_value(variable: &PromptVariable, json: Value) -> Result<PromptValue, PromptError> {
    let invalid = |problem| PromptError::Invalid {
        name: variable.name.clone(),
        problem,
    };
    let wrong_type = || {
        invalid(ValueProblem::WrongType {
            expected: variable.kind.type_name(),
        })
    };
    let value = match (&variable.kind, json) {
        (VariableKind::String { .. }, Value::String(text)) => PromptValue::String(text),
        (VariableKind::Boolean, Value::Bool(flag)) => PromptValue::Boolean(flag),
        // JSON Schema's integer is any whole number, `100.0` included.
        (VariableKind::Integer { .. }, Value::Number(number)) => number
            .as_i64()
            .or_else(|| {
                number
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .map(PromptValue::Integer)
            .ok_or_else(wrong_type)?,
        (VariableKind::Number { .. }, Value::Number(number)) => number
            .as_f64()
            .map(PromptValue::Number)
            .ok_or_else(wrong_type)?,
        _ => return Err(wrong_type()),
    };
    variable.check(&value).map_err(invalid)?;
    Ok(value)
}

/// A template with `values` (by variable index) in place of its variables, in one pass: a
/// value is copied as it is, never read as a template. A variable without a value (optional,
/// no default) renders as nothing.
///
/// ```
/// use weir_contract::{PromptTemplate, PromptValue, TemplatePart};
/// let template = PromptTemplate {
///     parts: vec![TemplatePart::Text("In ".into()), TemplatePart::Variable(0)],
/// };
/// let text = weir_gateway::ai::prompts::render(&template, &[Some(PromptValue::Integer(100))]);
/// assert_eq!(text, "In 100");
/// ```
pub fn render(template: &PromptTemplate, values: &[Option<PromptValue>]) -> String {
    let mut rendered = String::new();
    for part in &template.parts {
        match part {
            TemplatePart::Text(text) => rendered.push_str(text),
            TemplatePart::Variable(index) => match values.get(*index).and_then(Option::as_ref) {
                Some(PromptValue::String(text)) => rendered.push_str(text),
                Some(PromptValue::Integer(number)) => {
                    let _ = write!(rendered, "{number}");
                }
                Some(PromptValue::Number(number)) => {
                    let _ = write!(rendered, "{number}");
                }
                Some(PromptValue::Boolean(flag)) => {
                    rendered.push_str(if *flag { "true" } else { "false" })
                }
                None => {}
            },
        }
    }
    rendered
}

/// The OpenAI chat-completions request a call makes: the model's first name, the rendered
/// system turn (when the prompt has one and it is not empty) and user turn, the prompt's
/// params, and `stream` as the caller asked.
pub fn chat_request(
    model: &AiModel,
    prompt: &AiPrompt,
    params: &Map<String, Value>,
    call: PromptCall,
) -> Value {
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = &prompt.system {
        let system = render(system, &call.values);
        if !system.is_empty() {
            messages.push(json!({"role": "system", "content": system}));
        }
    }
    messages.push(json!({"role": "user", "content": render(&prompt.user, &call.values)}));
    let mut request = params.clone();
    let name = model.names.first().cloned().unwrap_or_default();
    request.insert("model".into(), Value::String(name));
    request.insert("messages".into(), Value::Array(messages));
    if call.stream {
        request.insert("stream".into(), Value::Bool(true));
        if let Some(options) = call.stream_options {
            request.insert("stream_options".into(), options);
        }
    }
    Value::Object(request)
}

/// Serves one request to a prompt endpoint.
pub(super) async fn handle(
    ctx: AiContext<'_>,
    target: PromptTarget<'_>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let model = target.model;
    let prompt = model.prompt(target.prompt);
    let (parts, body) = request.into_parts();
    let key = match client_key(ctx.index, &parts.headers) {
        Ok(key) => key,
        Err(error) => return error_response(&error, Dialect::OpenAi),
    };
    let allowed = match target.page {
        PromptPage::Call => Method::POST,
        PromptPage::OpenApi => Method::GET,
    };
    if parts.method != allowed {
        return error_response(&method_not_allowed(allowed.as_str()), Dialect::OpenAi);
    }
    if !model.allows(key.as_deref()) {
        return error_response(&not_found(&prompt.name), Dialect::OpenAi);
    }
    if target.page == PromptPage::OpenApi {
        return json_response(StatusCode::OK, &openapi(&model.model, prompt));
    }
    let model_label = model.model.id.to_string();
    let body = match read_json_object(body, ctx.settings).await {
        Ok(body) => body,
        Err(error) => return error_response(&error, Dialect::OpenAi),
    };
    let call = match PromptCall::parse(prompt, body) {
        Ok(call) => call,
        Err(error) => {
            ctx.index
                .metrics
                .prompt(&model_label, &prompt.name, "invalid");
            tracing::debug!(model = %model_label, prompt = %prompt.name, param = %error.param(), "prompt call refused");
            return error_response(&error.to_api_error(), Dialect::OpenAi);
        }
    };
    ctx.index
        .metrics
        .prompt(&model_label, &prompt.name, "rendered");
    let exchange = call::Exchange {
        path: AiPath::ChatCompletions,
        client_headers: &parts.headers,
        request: chat_request(&model.model, prompt, &target.prompt.params, call),
        model,
        key: key.as_deref(),
        started,
    };
    call::call(&ctx, exchange).await
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("The prompt `{name}` does not exist or you do not have access to it."),
    )
    .with_code("prompt_not_found")
}

/// The OpenAPI 3.1 document of a prompt's endpoint: its request schema from the declared
/// variables, and its answers (a `chat.completion`, or its chunk stream, and OpenAI-shaped
/// errors). The templates themselves are not shown.
pub fn openapi(model: &AiModel, prompt: &AiPrompt) -> Value {
    let mut properties = Map::new();
    for variable in &prompt.variables {
        properties.insert(variable.name.clone(), variable_schema(variable));
    }
    let required: Vec<&str> = prompt
        .variables
        .iter()
        .filter(|v| v.required)
        .map(|v| v.name.as_str())
        .collect();
    let mut variables = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    let mut request = json!({
        "type": "object",
        "properties": {
            "variables": {"$ref": "#/components/schemas/Variables"},
            "stream": {
                "type": "boolean",
                "default": false,
                "description": "Answer with a text/event-stream of chat.completion.chunk events, as /v1/chat/completions does.",
            },
            "stream_options": {
                "type": "object",
                "properties": {"include_usage": {"type": "boolean"}},
                "description": "As for /v1/chat/completions; used only when stream is true.",
            },
        },
        "additionalProperties": false,
    });
    if !required.is_empty() {
        variables["required"] = json!(required);
        request["required"] = json!(["variables"]);
    }
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        })
    };
    let path = format!("{PREFIX}{}", prompt.name);
    let model_name = model.names.first().map_or("", String::as_str);
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("Prompt {}", prompt.name),
            "version": "1",
            "description": format!(
                "Renders the prompt `{}` with the variables given and answers as a chat completion of the model `{model_name}`.",
                prompt.name
            ),
        },
        "paths": {
            path: {
                "post": {
                    "operationId": prompt.name,
                    "summary": format!("Call the prompt {}", prompt.name),
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "The model's answer: a chat.completion, or with stream: true its chunks as server-sent events, ending with data: [DONE].",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}},
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        },
                        "400": error("A variable is missing, unknown or invalid; error.param names it (variables.<name>)."),
                        "401": error("The API key is not known."),
                        "404": error("No such prompt, or the key may not use it."),
                        "429": error("A quota or a provider's rate limit refused the call."),
                    },
                },
            },
        },
        "components": {
            "schemas": {
                "Request": request,
                "Variables": variables,
                "ChatCompletion": chat_completion_schema(),
                "Error": error_schema(),
            },
        },
    });
    if !matches!(model.access, Access::Public) {
        document["components"]["securitySchemes"] = json!({
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        });
        document["security"] = json!([{"bearer": []}, {"apiKey": []}]);
    }
    document
}

/// A variable's JSON Schema: its type, constraints and default.
fn variable_schema(variable: &PromptVariable) -> Value {
    let mut schema = Map::new();
    schema.insert("type".into(), json!(variable.kind.type_name()));
    let bound = |value: f64, integer: bool| {
        if integer && value.fract() == 0.0 && value.abs() < 9.0e15 {
            json!(value as i64)
        } else {
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
        }
    };
    match &variable.kind {
        VariableKind::String {
            allowed,
            max_length,
        } => {
            if !allowed.is_empty() {
                schema.insert("enum".into(), json!(allowed));
            }
            if let Some(max) = max_length {
                schema.insert("maxLength".into(), json!(max));
            }
            if allowed.is_empty() {
                schema.insert(
                    "description".into(),
                    json!("Free text, sent as it is in the user turn only."),
                );
            }
        }
        VariableKind::Integer { minimum, maximum } | VariableKind::Number { minimum, maximum } => {
            let integer = matches!(variable.kind, VariableKind::Integer { .. });
            if let Some(minimum) = minimum {
                schema.insert("minimum".into(), bound(*minimum, integer));
            }
            if let Some(maximum) = maximum {
                schema.insert("maximum".into(), bound(*maximum, integer));
            }
        }
        VariableKind::Boolean => {}
    }
    if let Some(default) = &variable.default {
        let default = match default {
            PromptValue::String(text) => json!(text),
            PromptValue::Integer(number) => json!(number),
            PromptValue::Number(number) => bound(*number, false),
            PromptValue::Boolean(flag) => json!(flag),
        };
        schema.insert("default".into(), default);
    }
    Value::Object(schema)
}

/// OpenAI's `chat.completion`, as far as a caller of a prompt reads it.
fn chat_completion_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "chat.completion"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "message", "finish_reason"],
                    "properties": {
                        "index": {"type": "integer"},
                        "message": {
                            "type": "object",
                            "required": ["role"],
                            "properties": {
                                "role": {"const": "assistant"},
                                "content": {"type": ["string", "null"]},
                            },
                        },
                        "finish_reason": {"type": ["string", "null"]},
                    },
                },
            },
            "usage": {
                "type": "object",
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "completion_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                },
            },
        },
    })
}

/// OpenAI's error body.
fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use weir_contract::{AiTimeouts, Fallback, NamespacedName};

    use super::*;

    fn text(text: &str) -> TemplatePart {
        TemplatePart::Text(text.into())
    }

    fn variable(name: &str, kind: VariableKind) -> PromptVariable {
        PromptVariable {
            name: name.into(),
            kind,
            required: false,
            default: None,
        }
    }

    /// The prompt of the issue, as the control plane translates it.
    fn summarize() -> AiPrompt {
        AiPrompt {
            name: "summarize".into(),
            // "Summarise for {{audience}} in at most {{words}} words."
            system: Some(PromptTemplate {
                parts: vec![
                    text("Summarise for "),
                    TemplatePart::Variable(0),
                    text(" in at most "),
                    TemplatePart::Variable(2),
                    text(" words."),
                ],
            }),
            // "{{text}}"
            user: PromptTemplate {
                parts: vec![TemplatePart::Variable(1)],
            },
            variables: vec![
                PromptVariable {
                    default: Some(PromptValue::String("engineers".into())),
                    ..variable(
                        "audience",
                        VariableKind::String {
                            allowed: vec!["engineers".into(), "executives".into()],
                            max_length: None,
                        },
                    )
                },
                PromptVariable {
                    required: true,
                    ..variable(
                        "text",
                        VariableKind::String {
                            allowed: vec![],
                            max_length: Some(30),
                        },
                    )
                },
                PromptVariable {
                    default: Some(PromptValue::Integer(100)),
                    ..variable(
                        "words",
                        VariableKind::Integer {
                            minimum: Some(10.0),
                            maximum: Some(500.0),
                        },
                    )
                },
            ],
            params_json: r#"{"temperature":0.2,"max_tokens":512}"#.into(),
        }
    }

    fn model(access: Access) -> AiModel {
        AiModel {
            id: NamespacedName::new("ai", "chat"),
            names: vec!["chat".into(), "chat-alias".into()],
            hosts: vec![],
            access,
            providers: vec![],
            timeouts: AiTimeouts::default(),
            fallback: Fallback::default(),
            quotas: vec![],
            prompts: vec![summarize()],
        }
    }

    fn parse(body: Value) -> Result<PromptCall, PromptError> {
        PromptCall::parse(&summarize(), body)
    }

    /// The 400 a body gets: its `param` and `code`.
    fn refusal(body: Value) -> (String, &'static str) {
        let error = parse(body).unwrap_err().to_api_error();
        assert_eq!(error.status, 400);
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        (error.param.unwrap(), error.code.unwrap())
    }

    fn rendered(body: Value) -> Value {
        let prompt = summarize();
        let compiled = CompiledPrompt::compile(0, &prompt);
        let call = PromptCall::parse(&prompt, body).unwrap();
        chat_request(&model(Access::Public), &prompt, &compiled.params, call)
    }

    #[test]
    fn prompt_paths_are_the_call_and_its_openapi_document_only() {
        assert_eq!(
            PromptPath::of("/prompts/summarize"),
            Some(PromptPath {
                name: "summarize",
                page: PromptPage::Call
            })
        );
        assert_eq!(
            PromptPath::of("/prompts/summarize/openapi.json").map(|p| p.page),
            Some(PromptPage::OpenApi)
        );
        for other in [
            "/prompts",
            "/prompts/",
            "/prompts//openapi.json",
            "/prompts/summarize/",
            "/prompts/summarize/openapi.yaml",
            "/v1/prompts/summarize",
        ] {
            assert_eq!(PromptPath::of(other), None, "{other}");
        }
    }

    #[test]
    fn defaults_fill_what_the_caller_left_out_and_integers_render_plainly() {
        let request = rendered(json!({"variables": {"text": "The report."}}));
        assert_eq!(
            request["messages"],
            json!([
                {"role": "system", "content": "Summarise for engineers in at most 100 words."},
                {"role": "user", "content": "The report."},
            ])
        );
        let request = rendered(json!({"variables":
            {"text": "x", "audience": "executives", "words": 250.0}}));
        assert_eq!(
            request["messages"][0]["content"],
            "Summarise for executives in at most 250 words."
        );
    }

    #[test]
    fn a_value_that_looks_like_a_placeholder_is_inserted_as_it_is() {
        let request = rendered(json!({"variables": {"text": "{{audience}} {{words}}"}}));
        assert_eq!(request["messages"][1]["content"], "{{audience}} {{words}}");
        assert_eq!(
            request["messages"][0]["content"],
            "Summarise for engineers in at most 100 words."
        );
    }

    #[test]
    fn the_request_is_a_chat_completion_of_the_models_first_name_with_the_params() {
        let whole = rendered(json!({"variables": {"text": "t"}}));
        assert_eq!(whole["model"], "chat");
        assert_eq!(whole["temperature"], 0.2);
        assert_eq!(whole["max_tokens"], 512);
        assert_eq!(whole.get("stream"), None);
        let streamed = rendered(json!({"variables": {"text": "t"}, "stream": true,
            "stream_options": {"include_usage": true}}));
        assert_eq!(streamed["stream"], true);
        assert_eq!(streamed["stream_options"]["include_usage"], true);
    }

    #[test]
    fn numbers_booleans_and_missing_optional_values_render_as_text() {
        let template = PromptTemplate {
            parts: vec![
                TemplatePart::Variable(0),
                text("|"),
                TemplatePart::Variable(1),
                text("|"),
                TemplatePart::Variable(2),
                text("|"),
                TemplatePart::Variable(3),
            ],
        };
        let values = [
            Some(PromptValue::Number(0.25)),
            Some(PromptValue::Boolean(true)),
            Some(PromptValue::Integer(-3)),
            None,
        ];
        assert_eq!(render(&template, &values), "0.25|true|-3|");
    }

    #[test]
    fn a_missing_required_variable_is_named() {
        assert_eq!(
            refusal(json!({"variables": {"audience": "engineers"}})),
            ("variables.text".into(), "missing_required_parameter")
        );
        assert_eq!(
            refusal(json!({})),
            ("variables.text".into(), "missing_required_parameter")
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named() {
        assert_eq!(
            refusal(json!({"variables": {"text": "t", "words": "many"}})),
            ("variables.words".into(), "invalid_type")
        );
        assert_eq!(
            refusal(json!({"variables": {"text": 42}})),
            ("variables.text".into(), "invalid_type")
        );
        assert_eq!(
            refusal(json!({"variables": {"text": "t", "words": 12.5}})),
            ("variables.words".into(), "invalid_type")
        );
        let message = parse(json!({"variables": {"text": "t", "words": "many"}}))
            .unwrap_err()
            .to_string();
        assert_eq!(message, "variable `words` must be an integer");
    }

    #[test]
    fn a_string_above_its_max_length_is_named() {
        assert_eq!(
            refusal(json!({"variables": {"text": "x".repeat(31)}})),
            ("variables.text".into(), "string_above_max_length")
        );
        assert!(parse(json!({"variables": {"text": "é".repeat(30)}})).is_ok());
    }

    #[test]
    fn a_value_outside_its_enum_is_named() {
        let error = parse(json!({"variables": {"text": "t", "audience": "everyone"}}))
            .unwrap_err()
            .to_api_error();
        assert_eq!(error.param.as_deref(), Some("variables.audience"));
        assert_eq!(error.code, Some("invalid_value"));
        assert_eq!(
            error.message,
            "variable `audience` must be one of engineers, executives"
        );
    }

    #[test]
    fn a_number_out_of_range_is_named() {
        for words in [9, 501] {
            assert_eq!(
                refusal(json!({"variables": {"text": "t", "words": words}})),
                ("variables.words".into(), "invalid_value")
            );
        }
        assert!(parse(json!({"variables": {"text": "t", "words": 500}})).is_ok());
    }

    #[test]
    fn an_unknown_variable_or_field_is_named() {
        assert_eq!(
            refusal(json!({"variables": {"text": "t", "tone": "dry"}})),
            ("variables.tone".into(), "unknown_parameter")
        );
        let message = parse(json!({"variables": {"text": "t", "tone": "dry"}}))
            .unwrap_err()
            .to_string();
        assert!(message.contains("audience, text, words"), "{message}");
        assert_eq!(
            refusal(json!({"variables": {"text": "t"}, "model": "gpt-4o"})),
            ("model".into(), "unknown_parameter")
        );
        assert_eq!(
            refusal(json!({"variables": ["t"]})),
            ("variables".into(), "invalid_type")
        );
        assert_eq!(
            refusal(json!({"variables": {"text": "t"}, "stream": "yes"})),
            ("stream".into(), "invalid_type")
        );
    }

    #[test]
    fn the_openapi_document_describes_each_variable() {
        let model = model(Access::Keys {
            namespace: "ai".into(),
            selector: Default::default(),
        });
        let document = openapi(&model, &model.prompts[0]);
        assert_eq!(document["openapi"], "3.1.0");
        let variables = &document["components"]["schemas"]["Variables"];
        assert_eq!(variables["required"], json!(["text"]));
        assert_eq!(variables["additionalProperties"], false);
        let properties = &variables["properties"];
        assert_eq!(
            properties["text"],
            json!({"type": "string", "maxLength": 30,
                "description": "Free text, sent as it is in the user turn only."})
        );
        assert_eq!(
            properties["audience"],
            json!({"type": "string", "enum": ["engineers", "executives"], "default": "engineers"})
        );
        assert_eq!(
            properties["words"],
            json!({"type": "integer", "minimum": 10, "maximum": 500, "default": 100})
        );
        assert_eq!(
            document["components"]["schemas"]["Request"]["required"],
            json!(["variables"])
        );
        let post = &document["paths"]["/prompts/summarize"]["post"];
        let statuses: Vec<&String> = post["responses"].as_object().unwrap().keys().collect();
        assert_eq!(statuses, ["200", "400", "401", "404", "429"]);
        assert_eq!(
            post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ChatCompletion"
        );
        assert_eq!(
            document["security"],
            json!([{"bearer": []}, {"apiKey": []}])
        );
        // The templates are the operator's: not shown.
        assert!(!document.to_string().contains("Summarise"), "{document:#}");
    }

    #[test]
    fn every_reference_in_the_openapi_document_resolves() {
        let model = model(Access::Public);
        let document = openapi(&model, &model.prompts[0]);
        assert_eq!(document.get("security"), None);
        let text = document.to_string();
        let mut references = 0;
        for (at, _) in text.match_indices("\"$ref\":\"#/") {
            let start = at + "\"$ref\":\"#".len();
            let end = start + text[start..].find('"').unwrap();
            let pointer = &text[start..end];
            assert!(
                document.pointer(pointer).is_some(),
                "{pointer} does not resolve"
            );
            references += 1;
        }
        assert!(references >= 6, "{references}");
    }
}

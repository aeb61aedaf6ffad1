//! Request bodies: OpenAI chat completions ⇄ Anthropic messages.
//!
//! Each direction reads the client's body field by field and writes only fields the upstream
//! accepts (both providers refuse unknown fields). Content that can be carried is carried whole;
//! content that cannot is a 400 naming where it is.

use serde_json::{Map, Value, json};

use crate::errors::{ApiError, ErrorKind};

type Object = Map<String, Value>;

/// OpenAI chat request → Anthropic messages request.
///
/// - `model` is `upstream_model`; `max_completion_tokens` (or `max_tokens`) → `max_tokens`,
///   `default_max_tokens` when neither is set (Anthropic requires it).
/// - Every `system` and `developer` message, wherever it stands, → the top-level `system`, as text
///   blocks in order; `cache_control` on a text part is kept, so prompt caching works.
/// - Consecutive `tool` messages → one `user` message of `tool_result` blocks; assistant
///   `tool_calls` → `tool_use` blocks with `arguments` parsed (not a JSON object ⇒ 400).
/// - `image_url` parts → image blocks (`data:` URLs → base64 source, http(s) → url source); `file`
///   parts with `file_data` → document blocks.
/// - `tools`, `tool_choice` (auto → auto, required → any, {function} → tool, none → none),
///   `parallel_tool_calls: false` → `disable_parallel_tool_use`, `stop` → `stop_sequences`,
///   `temperature`, `top_p`, `stream`, `user` → `metadata.user_id`.
/// - 400 for what cannot be honoured: `n` other than 1, `logprobs: true`, a JSON
///   `response_format`, audio, legacy `functions`; other OpenAI-only options are dropped.
///
/// ```
/// use serde_json::json;
/// use weir_ai_wire::translate::chat_to_messages;
/// let chat = json!({"model": "chat-smart", "messages": [
///     {"role": "system", "content": "Be brief."},
///     {"role": "user", "content": "Hi"}]});
/// let messages = chat_to_messages(&chat, "claude-sonnet-4-5", 4096).unwrap();
/// assert_eq!(messages, json!({"model": "claude-sonnet-4-5", "max_tokens": 4096,
///     "system": [{"type": "text", "text": "Be brief."}],
///     "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}));
/// ```
pub fn chat_to_messages(
    request: &Value,
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<Value, ApiError> {
    let request = request.as_object().ok_or_else(|| {
        ApiError::new(ErrorKind::InvalidRequest, "the body must be a JSON object")
    })?;
    refuse_what_anthropic_cannot_honour(request)?;

    let mut translated = Object::new();
    translated.insert("model".to_owned(), upstream_model.into());
    let max_tokens = match positive_integer(request, "max_completion_tokens")? {
        Some(max_tokens) => max_tokens,
        None => positive_integer(request, "max_tokens")?.unwrap_or(default_max_tokens),
    };
    translated.insert("max_tokens".to_owned(), max_tokens.into());

    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid_request("messages", "messages must be an array"))?;
    let turns = anthropic_turns(messages)?;
    if !turns.system.is_empty() {
        translated.insert("system".to_owned(), Value::Array(turns.system));
    }
    translated.insert("messages".to_owned(), Value::Array(turns.messages));

    let tools = match request.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(tools) => anthropic_tools(tools)?,
    };
    // Without tools both providers refuse a tool_choice; clients that always send
    // `tool_choice: "none"` should not fail for it.
    if !tools.is_empty() {
        let mut tool_choice = match request.get("tool_choice") {
            None | Some(Value::Null) => None,
            Some(choice) => Some(anthropic_tool_choice(choice)?),
        };
        if request.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
            let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
            if choice["type"] != "none"
                && let Some(choice) = choice.as_object_mut()
            {
                choice.insert("disable_parallel_tool_use".to_owned(), Value::Bool(true));
            }
        }
        translated.insert("tools".to_owned(), Value::Array(tools));
        if let Some(choice) = tool_choice {
            translated.insert("tool_choice".to_owned(), choice);
        }
    }

    match request.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(stop)) => {
            translated.insert("stop_sequences".to_owned(), json!([stop]));
        }
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {
            if !stops.is_empty() {
                translated.insert("stop_sequences".to_owned(), Value::Array(stops.clone()));
            }
        }
        Some(_) => {
            return Err(ApiError::invalid_request(
                "stop",
                "stop must be a string or an array of strings",
            ));
        }
    }
    copy_number(request, "temperature", &mut translated)?;
    copy_number(request, "top_p", &mut translated)?;
    copy_bool(request, "stream", &mut translated)?;
    let user = ["user", "safety_identifier"]
        .iter()
        .find_map(|field| request.get(*field).and_then(Value::as_str))
        .filter(|user| !user.is_empty());
    if let Some(user) = user {
        translated.insert("metadata".to_owned(), json!({"user_id": user}));
    }
    Ok(Value::Object(translated))
}

/// Anthropic messages request → OpenAI chat request.
///
/// - `model` is `upstream_model`; `system` → the first message (`role: system`); `max_tokens` →
///   `max_completion_tokens`; `stop_sequences` → `stop`; `temperature`, `top_p`, `stream` kept;
///   `metadata.user_id` → `user`; when streaming, `stream_options.include_usage = true` so the
///   upstream reports usage.
/// - User blocks: text and image → content parts, PDF documents → file parts; each `tool_result`
///   → a `tool` message placed before the rest of the user turn (OpenAI wants tool answers right
///   after the assistant's calls), its content kept as is whether or not `is_error` (images in a
///   tool result move to the user turn, as OpenAI tool messages carry only text).
/// - Assistant blocks: text → `content` (joined without separator, as a stream would show them),
///   `tool_use` → `tool_calls` with `arguments` the JSON text of `input`; thinking is dropped.
/// - `tools[].input_schema` → `function.parameters`; `tool_choice` any → required, tool →
///   {function}, `disable_parallel_tool_use` → `parallel_tool_calls: false`. Server tools (a
///   `type` other than `custom`) are a 400; `top_k`, `thinking` and the like are dropped.
///
/// ```
/// use serde_json::json;
/// use weir_ai_wire::translate::messages_to_chat;
/// let messages = json!({"model": "claude", "max_tokens": 100, "system": "Be brief.",
///     "messages": [{"role": "user", "content": "Hi"}]});
/// let chat = messages_to_chat(&messages, "gpt-4o").unwrap();
/// assert_eq!(chat, json!({"model": "gpt-4o", "max_completion_tokens": 100, "messages": [
///     {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}));
/// ```
pub fn messages_to_chat(request: &Value, upstream_model: &str) -> Result<Value, ApiError> {
    let request = request.as_object().ok_or_else(|| {
        ApiError::new(ErrorKind::InvalidRequest, "the body must be a JSON object")
    })?;
    let mut translated = Object::new();
    translated.insert("model".to_owned(), upstream_model.into());

    let mut messages = Vec::new();
    match request.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(system)) => {
            if !system.is_empty() {
                messages.push(json!({"role": "system", "content": system}));
            }
        }
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (j, block) in blocks.iter().enumerate() {
                let at = format!("system[{j}]");
                match block_type(block, &at)? {
                    "text" => parts.push(text_part(required_str(block, "text", &at)?)),
                    other => {
                        return Err(ApiError::invalid_request(
                            format!("{at}.type"),
                            format!("{at}: system blocks must be text, not `{other}`"),
                        ));
                    }
                }
            }
            if !parts.is_empty() {
                messages.push(json!({"role": "system", "content": parts}));
            }
        }
        Some(_) => {
            return Err(ApiError::invalid_request(
                "system",
                "system must be a string or an array of text blocks",
            ));
        }
    }

    let source = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid_request("messages", "messages must be an array"))?;
    for (i, message) in source.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = message.get("role").and_then(Value::as_str).ok_or_else(|| {
            ApiError::invalid_request(format!("{at}.role"), format!("{at}.role must be a string"))
        })?;
        if role != "user" && role != "assistant" {
            return Err(ApiError::invalid_request(
                format!("{at}.role"),
                format!("{at}.role must be `user` or `assistant`, not `{role}`"),
            ));
        }
        match message.get("content") {
            Some(Value::String(text)) => messages.push(json!({"role": role, "content": text})),
            Some(Value::Array(blocks)) if role == "user" => {
                openai_user_turn(blocks, &at, &mut messages)?;
            }
            Some(Value::Array(blocks)) => messages.push(openai_assistant_turn(blocks, &at)?),
            _ => {
                return Err(ApiError::invalid_request(
                    format!("{at}.content"),
                    format!("{at}.content must be a string or an array of content blocks"),
                ));
            }
        }
    }
    translated.insert("messages".to_owned(), Value::Array(messages));

    let tools = match request.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(tools) => openai_tools(tools)?,
    };
    if !tools.is_empty() {
        if let Some(choice) = request
            .get("tool_choice")
            .filter(|choice| !choice.is_null())
        {
            translated.insert("tool_choice".to_owned(), openai_tool_choice(choice)?);
            if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
                translated.insert("parallel_tool_calls".to_owned(), Value::Bool(false));
            }
        }
        translated.insert("tools".to_owned(), Value::Array(tools));
    }

    match request.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {
            if !stops.is_empty() {
                translated.insert("stop".to_owned(), Value::Array(stops.clone()));
            }
        }
        Some(_) => {
            return Err(ApiError::invalid_request(
                "stop_sequences",
                "stop_sequences must be an array of strings",
            ));
        }
    }
    if let Some(max_tokens) = positive_integer(request, "max_tokens")? {
        translated.insert("max_completion_tokens".to_owned(), max_tokens.into());
    }
    copy_number(request, "temperature", &mut translated)?;
    copy_number(request, "top_p", &mut translated)?;
    copy_bool(request, "stream", &mut translated)?;
    if translated.get("stream") == Some(&Value::Bool(true)) {
        translated.insert("stream_options".to_owned(), json!({"include_usage": true}));
    }
    let user = request
        .get("metadata")
        .and_then(|metadata| metadata.get("user_id"))
        .and_then(Value::as_str)
        .filter(|user| !user.is_empty());
    if let Some(user) = user {
        translated.insert("user".to_owned(), user.into());
    }
    Ok(Value::Object(translated))
}

// ---- OpenAI → Anthropic -------------------------------------------------------------------------

fn refuse_what_anthropic_cannot_honour(request: &Object) -> Result<(), ApiError> {
    let present = |field: &str| request.get(field).filter(|value| !value.is_null());
    if let Some(n) = present("n")
        && n.as_u64() != Some(1)
    {
        return Err(ApiError::invalid_request(
            "n",
            "n must be 1: an Anthropic provider returns one choice",
        ));
    }
    if present("logprobs") == Some(&Value::Bool(true)) {
        return Err(ApiError::invalid_request(
            "logprobs",
            "logprobs are not available from an Anthropic provider",
        ));
    }
    if let Some(format) = present("response_format")
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        return Err(ApiError::invalid_request(
            "response_format",
            "response_format other than `text` is not supported by an Anthropic provider",
        ));
    }
    for legacy in ["functions", "function_call"] {
        if present(legacy).is_some() {
            return Err(ApiError::invalid_request(
                legacy,
                format!(
                    "the legacy `{legacy}` field cannot be translated; use `tools` and `tool_choice`"
                ),
            ));
        }
    }
    let wants_audio = present("audio").is_some()
        || present("modalities")
            .and_then(Value::as_array)
            .is_some_and(|modalities| modalities.iter().any(|modality| modality == "audio"));
    if wants_audio {
        return Err(ApiError::invalid_request(
            "modalities",
            "audio output is not available from an Anthropic provider",
        ));
    }
    Ok(())
}

/// What an OpenAI conversation becomes: Anthropic's top-level system blocks and its turns.
struct AnthropicTurns {
    system: Vec<Value>,
    messages: Vec<Value>,
}

fn anthropic_turns(messages: &[Value]) -> Result<AnthropicTurns, ApiError> {
    let mut turns = AnthropicTurns {
        system: Vec::new(),
        messages: Vec::with_capacity(messages.len()),
    };
    let mut tool_results: Vec<Value> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let message = message.as_object().ok_or_else(|| {
            ApiError::invalid_request(at.clone(), format!("{at} must be an object"))
        })?;
        let role = message.get("role").and_then(Value::as_str).ok_or_else(|| {
            ApiError::invalid_request(format!("{at}.role"), format!("{at}.role must be a string"))
        })?;
        if role != "tool" && !tool_results.is_empty() {
            let results = std::mem::take(&mut tool_results);
            turns
                .messages
                .push(json!({"role": "user", "content": results}));
        }
        let content = message.get("content");
        let content_at = format!("{at}.content");
        match role {
            "system" | "developer" => push_system_blocks(content, &content_at, &mut turns.system)?,
            "user" => {
                let blocks = user_blocks(content, &content_at)?;
                // An empty turn says nothing, and Anthropic refuses empty content.
                if !blocks.is_empty() {
                    turns
                        .messages
                        .push(json!({"role": "user", "content": blocks}));
                }
            }
            "assistant" => {
                let blocks = assistant_blocks(message, &at)?;
                if !blocks.is_empty() {
                    turns
                        .messages
                        .push(json!({"role": "assistant", "content": blocks}));
                }
            }
            "tool" => tool_results.push(tool_result_block(message, &at)?),
            "function" => {
                return Err(ApiError::invalid_request(
                    format!("{at}.role"),
                    format!(
                        "{at}: legacy `function` messages cannot be translated; use `tool` messages"
                    ),
                ));
            }
            other => {
                return Err(ApiError::invalid_request(
                    format!("{at}.role"),
                    format!("{at}.role `{other}` is not a chat role"),
                ));
            }
        }
    }
    if !tool_results.is_empty() {
        turns
            .messages
            .push(json!({"role": "user", "content": tool_results}));
    }
    Ok(turns)
}

fn push_system_blocks(
    content: Option<&Value>,
    at: &str,
    system: &mut Vec<Value>,
) -> Result<(), ApiError> {
    match content {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => push_text_block(system, text, None),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let part_at = format!("{at}[{j}]");
                match block_type(part, &part_at)? {
                    "text" => {
                        let text = required_str(part, "text", &part_at)?;
                        push_text_block(system, text, part.get("cache_control"));
                    }
                    other => {
                        return Err(ApiError::invalid_request(
                            format!("{part_at}.type"),
                            format!(
                                "{part_at}: system and developer messages hold text, not `{other}`"
                            ),
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(not_content(at)),
    }
    Ok(())
}

fn user_blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, ApiError> {
    let mut blocks = Vec::new();
    match content {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => push_text_block(&mut blocks, text, None),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let part_at = format!("{at}[{j}]");
                match block_type(part, &part_at)? {
                    "text" => {
                        let text = required_str(part, "text", &part_at)?;
                        push_text_block(&mut blocks, text, part.get("cache_control"));
                    }
                    "image_url" => {
                        let image =
                            image_block(part.get("image_url"), &format!("{part_at}.image_url"))?;
                        blocks.push(with_cache_control(image, part.get("cache_control")));
                    }
                    "file" => blocks.push(document_block(
                        part.get("file"),
                        &format!("{part_at}.file"),
                    )?),
                    other => {
                        return Err(ApiError::invalid_request(
                            format!("{part_at}.type"),
                            format!(
                                "{part_at}: `{other}` parts cannot be sent to an Anthropic provider"
                            ),
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(not_content(at)),
    }
    Ok(blocks)
}

fn assistant_blocks(message: &Object, at: &str) -> Result<Vec<Value>, ApiError> {
    let mut blocks = Vec::new();
    let content_at = format!("{at}.content");
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => push_text_block(&mut blocks, text, None),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let part_at = format!("{content_at}[{j}]");
                let kind = block_type(part, &part_at)?;
                match kind {
                    "text" | "refusal" => {
                        let text = required_str(part, kind, &part_at)?;
                        push_text_block(&mut blocks, text, part.get("cache_control"));
                    }
                    other => {
                        return Err(ApiError::invalid_request(
                            format!("{part_at}.type"),
                            format!("{part_at}: assistant messages hold text, not `{other}`"),
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(not_content(&content_at)),
    }
    if message
        .get("function_call")
        .is_some_and(|call| !call.is_null())
    {
        return Err(ApiError::invalid_request(
            format!("{at}.function_call"),
            format!("{at}: the legacy `function_call` cannot be translated; use `tool_calls`"),
        ));
    }
    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => return Ok(blocks),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            return Err(ApiError::invalid_request(
                format!("{at}.tool_calls"),
                format!("{at}.tool_calls must be an array"),
            ));
        }
    };
    for (j, call) in calls.iter().enumerate() {
        let call_at = format!("{at}.tool_calls[{j}]");
        if let Some(kind) = call.get("type").and_then(Value::as_str)
            && kind != "function"
        {
            return Err(ApiError::invalid_request(
                format!("{call_at}.type"),
                format!("{call_at}: `{kind}` tool calls cannot be sent to an Anthropic provider"),
            ));
        }
        let id = required_str(call, "id", &call_at)?;
        let function_at = format!("{call_at}.function");
        let function = call
            .get("function")
            .filter(|function| function.is_object())
            .ok_or_else(|| {
                ApiError::invalid_request(
                    function_at.clone(),
                    format!("{function_at} must be an object"),
                )
            })?;
        let name = required_str(function, "name", &function_at)?;
        let input = parsed_arguments(
            function.get("arguments"),
            &format!("{function_at}.arguments"),
        )?;
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(blocks)
}

/// A tool call's `arguments` (a string of JSON) as the object Anthropic's `input` must be.
/// An empty string is no arguments; a client that sent the object itself is taken at its word.
fn parsed_arguments(arguments: Option<&Value>, at: &str) -> Result<Value, ApiError> {
    match arguments {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(json!({})),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(input @ Value::Object(_)) => Ok(input),
            Ok(_) => Err(ApiError::invalid_request(
                at,
                format!("{at} must be a JSON object"),
            )),
            Err(error) => Err(ApiError::invalid_request(
                at,
                format!("{at} is not valid JSON ({error})"),
            )),
        },
        Some(input @ Value::Object(_)) => Ok(input.clone()),
        Some(_) => Err(ApiError::invalid_request(
            at,
            format!("{at} must be a string of JSON"),
        )),
    }
}

fn tool_result_block(message: &Object, at: &str) -> Result<Value, ApiError> {
    let tool_use_id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid_request(
                format!("{at}.tool_call_id"),
                format!("{at}.tool_call_id must be a string"),
            )
        })?;
    let content_at = format!("{at}.content");
    let content = match message.get("content") {
        None | Some(Value::Null) => Value::String(String::new()),
        Some(Value::String(text)) => Value::String(text.clone()),
        Some(Value::Array(_)) => Value::Array(user_blocks(message.get("content"), &content_at)?),
        Some(_) => return Err(not_content(&content_at)),
    };
    Ok(json!({"type": "tool_result", "tool_use_id": tool_use_id, "content": content}))
}

fn image_block(image_url: Option<&Value>, at: &str) -> Result<Value, ApiError> {
    let url = match image_url {
        Some(Value::String(url)) => url.as_str(),
        Some(Value::Object(image)) => image.get("url").and_then(Value::as_str).unwrap_or(""),
        _ => "",
    };
    let url_at = format!("{at}.url");
    if let Some(data_url) = url.strip_prefix("data:") {
        let (media_type, data) = base64_data_url(data_url).ok_or_else(|| {
            ApiError::invalid_request(
                url_at.clone(),
                format!("{url_at} must be a base64 `data:` URL"),
            )
        })?;
        return Ok(json!({"type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data}}));
    }
    if has_scheme(url, "https://") || has_scheme(url, "http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(ApiError::invalid_request(
        url_at.clone(),
        format!("{url_at} must be an http(s) or base64 `data:` URL"),
    ))
}

fn document_block(file: Option<&Value>, at: &str) -> Result<Value, ApiError> {
    let data_at = format!("{at}.file_data");
    let file_data = file
        .and_then(|file| file.get("file_data"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid_request(
                data_at.clone(),
                format!("{data_at} must be set: uploaded file ids cannot be sent to an Anthropic provider"),
            )
        })?;
    let (media_type, data) = file_data
        .strip_prefix("data:")
        .and_then(base64_data_url)
        .ok_or_else(|| {
            ApiError::invalid_request(
                data_at.clone(),
                format!("{data_at} must be a base64 `data:` URL"),
            )
        })?;
    Ok(json!({"type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data}}))
}

/// `<media type>;base64,<data>` → (media type, data).
fn base64_data_url(after_scheme: &str) -> Option<(&str, &str)> {
    let (meta, data) = after_scheme.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    (!media_type.is_empty()).then_some((media_type, data))
}

fn has_scheme(url: &str, scheme: &str) -> bool {
    url.get(..scheme.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
}

fn anthropic_tools(tools: &Value) -> Result<Vec<Value>, ApiError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| ApiError::invalid_request("tools", "tools must be an array"))?;
    let mut translated = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            None | Some("function") => {}
            Some(kind) => {
                return Err(ApiError::invalid_request(
                    format!("{at}.type"),
                    format!("{at}: `{kind}` tools cannot be sent to an Anthropic provider"),
                ));
            }
        }
        let function_at = format!("{at}.function");
        let function = tool
            .get("function")
            .filter(|function| function.is_object())
            .ok_or_else(|| {
                ApiError::invalid_request(
                    function_at.clone(),
                    format!("{function_at} must be an object"),
                )
            })?;
        let mut translated_tool = Object::new();
        translated_tool.insert(
            "name".to_owned(),
            required_str(function, "name", &function_at)?.into(),
        );
        if let Some(description) = function.get("description").and_then(Value::as_str) {
            translated_tool.insert("description".to_owned(), description.into());
        }
        let schema = match function.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(schema @ Value::Object(_)) => schema.clone(),
            Some(_) => {
                return Err(ApiError::invalid_request(
                    format!("{function_at}.parameters"),
                    format!("{function_at}.parameters must be a JSON Schema object"),
                ));
            }
        };
        translated_tool.insert("input_schema".to_owned(), schema);
        if let Some(cache_control) = tool.get("cache_control").filter(|value| value.is_object()) {
            translated_tool.insert("cache_control".to_owned(), cache_control.clone());
        }
        translated.push(Value::Object(translated_tool));
    }
    Ok(translated)
}

fn anthropic_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    let named = |name: &str| json!({"type": "tool", "name": name});
    match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(json!({"type": "auto"})),
            "required" => Ok(json!({"type": "any"})),
            "none" => Ok(json!({"type": "none"})),
            other => Err(ApiError::invalid_request(
                "tool_choice",
                format!("tool_choice `{other}` is not one of auto, required, none"),
            )),
        },
        Value::Object(choice) if choice.get("type").and_then(Value::as_str) == Some("function") => {
            choice
                .get("function")
                .and_then(|function| function.get("name"))
                .and_then(Value::as_str)
                .map(named)
                .ok_or_else(|| {
                    ApiError::invalid_request(
                        "tool_choice.function.name",
                        "tool_choice.function.name must be a string",
                    )
                })
        }
        _ => Err(ApiError::invalid_request(
            "tool_choice",
            "tool_choice must be auto, required, none or {\"type\": \"function\", \"function\": {\"name\": …}}",
        )),
    }
}

fn push_text_block(blocks: &mut Vec<Value>, text: &str, cache_control: Option<&Value>) {
    // Anthropic refuses empty text blocks; an empty part says nothing.
    if !text.is_empty() {
        blocks.push(with_cache_control(
            json!({"type": "text", "text": text}),
            cache_control,
        ));
    }
}

fn with_cache_control(mut block: Value, cache_control: Option<&Value>) -> Value {
    if let (Some(fields), Some(cache_control)) = (
        block.as_object_mut(),
        cache_control.filter(|value| value.is_object()),
    ) {
        fields.insert("cache_control".to_owned(), cache_control.clone());
    }
    block
}

// ---- Anthropic → OpenAI -------------------------------------------------------------------------

fn openai_user_turn(blocks: &[Value], at: &str, messages: &mut Vec<Value>) -> Result<(), ApiError> {
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let block_at = format!("{at}.content[{j}]");
        match block_type(block, &block_at)? {
            "text" => parts.push(text_part(required_str(block, "text", &block_at)?)),
            "image" => parts.push(image_url_part(
                block.get("source"),
                &format!("{block_at}.source"),
            )?),
            "document" => parts.push(document_part(block, &block_at)?),
            "tool_result" => messages.push(tool_message(block, &block_at, &mut parts)?),
            other => {
                return Err(ApiError::invalid_request(
                    format!("{block_at}.type"),
                    format!("{block_at}: `{other}` blocks cannot be sent to an OpenAI provider"),
                ));
            }
        }
    }
    if !parts.is_empty() {
        messages.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn openai_assistant_turn(blocks: &[Value], at: &str) -> Result<Value, ApiError> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let block_at = format!("{at}.content[{j}]");
        match block_type(block, &block_at)? {
            "text" => text.push_str(required_str(block, "text", &block_at)?),
            "tool_use" => {
                let id = required_str(block, "id", &block_at)?;
                let name = required_str(block, "name", &block_at)?;
                let arguments = match block.get("input") {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(input) => input.to_string(),
                };
                tool_calls.push(json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": arguments}}));
            }
            // The reasoning stays with the provider that produced it; OpenAI has no place for it.
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(ApiError::invalid_request(
                    format!("{block_at}.type"),
                    format!("{block_at}: `{other}` blocks cannot be sent to an OpenAI provider"),
                ));
            }
        }
    }
    let mut message = Object::new();
    message.insert("role".to_owned(), "assistant".into());
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    message.insert("content".to_owned(), content);
    if !tool_calls.is_empty() {
        message.insert("tool_calls".to_owned(), Value::Array(tool_calls));
    }
    Ok(Value::Object(message))
}

/// A `tool_result` block → an OpenAI `tool` message; images it holds go to `user_parts`.
fn tool_message(block: &Value, at: &str, user_parts: &mut Vec<Value>) -> Result<Value, ApiError> {
    let tool_call_id = required_str(block, "tool_use_id", at)?;
    let content_at = format!("{at}.content");
    let content = match block.get("content") {
        None | Some(Value::Null) => Value::String(String::new()),
        Some(Value::String(text)) => Value::String(text.clone()),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for (k, inner) in blocks.iter().enumerate() {
                let inner_at = format!("{content_at}[{k}]");
                match block_type(inner, &inner_at)? {
                    "text" => texts.push(required_str(inner, "text", &inner_at)?),
                    "image" => user_parts.push(image_url_part(
                        inner.get("source"),
                        &format!("{inner_at}.source"),
                    )?),
                    other => {
                        return Err(ApiError::invalid_request(
                            format!("{inner_at}.type"),
                            format!(
                                "{inner_at}: `{other}` blocks in a tool result cannot be sent to an OpenAI provider"
                            ),
                        ));
                    }
                }
            }
            match texts.as_slice() {
                [] => Value::String(String::new()),
                [only] => Value::String((*only).to_owned()),
                many => Value::Array(many.iter().map(|text| text_part(text)).collect()),
            }
        }
        Some(_) => return Err(not_content(&content_at)),
    };
    Ok(json!({"role": "tool", "tool_call_id": tool_call_id, "content": content}))
}

fn image_url_part(source: Option<&Value>, at: &str) -> Result<Value, ApiError> {
    let url = match source
        .and_then(|source| source.get("type"))
        .and_then(Value::as_str)
    {
        Some("base64") => {
            let source = source.unwrap_or(&Value::Null);
            let media_type = required_str(source, "media_type", at)?;
            let data = required_str(source, "data", at)?;
            format!("data:{media_type};base64,{data}")
        }
        Some("url") => required_str(source.unwrap_or(&Value::Null), "url", at)?.to_owned(),
        _ => {
            return Err(ApiError::invalid_request(
                format!("{at}.type"),
                format!(
                    "{at}: only base64 and url image sources can be sent to an OpenAI provider"
                ),
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn document_part(block: &Value, at: &str) -> Result<Value, ApiError> {
    let source_at = format!("{at}.source");
    let source = block.get("source").unwrap_or(&Value::Null);
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media_type = required_str(source, "media_type", &source_at)?;
            let data = required_str(source, "data", &source_at)?;
            let filename = block
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("document.pdf");
            Ok(json!({"type": "file", "file": {"filename": filename,
                "file_data": format!("data:{media_type};base64,{data}")}}))
        }
        Some("text") => Ok(text_part(required_str(source, "data", &source_at)?)),
        _ => Err(ApiError::invalid_request(
            format!("{source_at}.type"),
            format!(
                "{source_at}: only base64 and text documents can be sent to an OpenAI provider"
            ),
        )),
    }
}

fn openai_tools(tools: &Value) -> Result<Vec<Value>, ApiError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| ApiError::invalid_request("tools", "tools must be an array"))?;
    let mut translated = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(kind) => {
                return Err(ApiError::invalid_request(
                    format!("{at}.type"),
                    format!("{at}: the server tool `{kind}` has no OpenAI equivalent"),
                ));
            }
        }
        let mut function = Object::new();
        function.insert("name".to_owned(), required_str(tool, "name", &at)?.into());
        if let Some(description) = tool.get("description").and_then(Value::as_str) {
            function.insert("description".to_owned(), description.into());
        }
        let parameters = match tool.get("input_schema") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(schema @ Value::Object(_)) => schema.clone(),
            Some(_) => {
                return Err(ApiError::invalid_request(
                    format!("{at}.input_schema"),
                    format!("{at}.input_schema must be a JSON Schema object"),
                ));
            }
        };
        function.insert("parameters".to_owned(), parameters);
        translated.push(json!({"type": "function", "function": function}));
    }
    Ok(translated)
}

fn openai_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice.get("type").and_then(Value::as_str) {
        Some("auto") => Ok("auto".into()),
        Some("any") => Ok("required".into()),
        Some("none") => Ok("none".into()),
        Some("tool") => {
            let name = required_str(choice, "name", "tool_choice")?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(ApiError::invalid_request(
            "tool_choice.type",
            "tool_choice.type must be auto, any, tool or none",
        )),
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

// ---- shared -------------------------------------------------------------------------------------

fn block_type<'a>(block: &'a Value, at: &str) -> Result<&'a str, ApiError> {
    block.get("type").and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid_request(format!("{at}.type"), format!("{at}.type must be a string"))
    })
}

fn required_str<'a>(object: &'a Value, field: &str, at: &str) -> Result<&'a str, ApiError> {
    object.get(field).and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid_request(
            format!("{at}.{field}"),
            format!("{at}.{field} must be a string"),
        )
    })
}

fn not_content(at: &str) -> ApiError {
    ApiError::invalid_request(
        at,
        format!("{at} must be a string or an array of content parts"),
    )
}

fn positive_integer(request: &Object, field: &str) -> Result<Option<u64>, ApiError> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(count) if count > 0 => Ok(Some(count)),
            _ => Err(ApiError::invalid_request(
                field,
                format!("{field} must be a positive integer"),
            )),
        },
    }
}

fn copy_number(request: &Object, field: &str, translated: &mut Object) -> Result<(), ApiError> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(number @ Value::Number(_)) => {
            translated.insert(field.to_owned(), number.clone());
            Ok(())
        }
        Some(_) => Err(ApiError::invalid_request(
            field,
            format!("{field} must be a number"),
        )),
    }
}

fn copy_bool(request: &Object, field: &str, translated: &mut Object) -> Result<(), ApiError> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(flag @ Value::Bool(_)) => {
            translated.insert(field.to_owned(), flag.clone());
            Ok(())
        }
        Some(_) => Err(ApiError::invalid_request(
            field,
            format!("{field} must be true or false"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(messages: Value) -> Value {
        json!({"model": "chat-smart", "messages": messages})
    }

    fn to_messages(request: &Value) -> Value {
        chat_to_messages(request, "claude-x", 1024).unwrap()
    }

    fn refused(request: &Value) -> ApiError {
        chat_to_messages(request, "claude-x", 1024).unwrap_err()
    }

    fn weather_tool() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
    }

    fn with(mut request: Value, field: &str, value: Value) -> Value {
        request[field] = value;
        request
    }

    fn assistant_call(id: &str, arguments: &str) -> Value {
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}]})
    }

    // ---- OpenAI → Anthropic ----

    #[test]
    fn every_system_and_developer_message_reaches_system_in_order() {
        let request = chat(json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "system", "content": "Never apologise."},
        ]));
        let translated = to_messages(&request);
        assert_eq!(
            translated["system"],
            json!([{"type": "text", "text": "You are terse."},
                {"type": "text", "text": "Answer in French."},
                {"type": "text", "text": "Never apologise."}])
        );
        assert_eq!(
            translated["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
        );
    }

    #[test]
    fn model_is_the_upstream_model() {
        assert_eq!(to_messages(&chat(json!([])))["model"], "claude-x");
    }

    #[test]
    fn missing_max_tokens_is_the_default() {
        assert_eq!(to_messages(&chat(json!([])))["max_tokens"], 1024);
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let request = with(
            with(chat(json!([])), "max_tokens", json!(10)),
            "max_completion_tokens",
            json!(20),
        );
        assert_eq!(to_messages(&request)["max_tokens"], 20);
        assert_eq!(
            to_messages(&with(chat(json!([])), "max_tokens", json!(10)))["max_tokens"],
            10
        );
    }

    #[test]
    fn a_max_tokens_that_is_not_a_positive_integer_is_refused() {
        let error = refused(&with(chat(json!([])), "max_tokens", json!(0)));
        assert_eq!(
            (error.status, error.param.as_deref()),
            (400, Some("max_tokens"))
        );
    }

    #[test]
    fn tools_become_input_schemas() {
        let request = with(
            chat(json!([])),
            "tools",
            json!([weather_tool(),
            {"type": "function", "function": {"name": "now"}}]),
        );
        assert_eq!(
            to_messages(&request)["tools"],
            json!([
                {"name": "get_weather", "description": "Weather",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}},
            ])
        );
    }

    #[test]
    fn tool_choice_maps_every_variant() {
        let base = with(chat(json!([])), "tools", json!([weather_tool()]));
        for (choice, expected) in [
            (json!("auto"), json!({"type": "auto"})),
            (json!("required"), json!({"type": "any"})),
            (json!("none"), json!({"type": "none"})),
            (
                json!({"type": "function", "function": {"name": "get_weather"}}),
                json!({"type": "tool", "name": "get_weather"}),
            ),
        ] {
            let translated = to_messages(&with(base.clone(), "tool_choice", choice.clone()));
            assert_eq!(translated["tool_choice"], expected, "{choice}");
        }
    }

    #[test]
    fn parallel_tool_calls_false_disables_parallel_tool_use() {
        let base = with(
            with(chat(json!([])), "tools", json!([weather_tool()])),
            "parallel_tool_calls",
            json!(false),
        );
        assert_eq!(
            to_messages(&base)["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let required = with(base.clone(), "tool_choice", json!("required"));
        assert_eq!(
            to_messages(&required)["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        let none = with(base, "tool_choice", json!("none"));
        assert_eq!(to_messages(&none)["tool_choice"], json!({"type": "none"}));
    }

    #[test]
    fn tool_choice_without_tools_is_dropped() {
        let translated = to_messages(&with(chat(json!([])), "tool_choice", json!("none")));
        assert!(translated.get("tool_choice").is_none() && translated.get("tools").is_none());
    }

    #[test]
    fn an_unknown_tool_choice_is_refused() {
        let request = with(
            with(chat(json!([])), "tools", json!([weather_tool()])),
            "tool_choice",
            json!("sometimes"),
        );
        assert_eq!(refused(&request).param.as_deref(), Some("tool_choice"));
    }

    #[test]
    fn assistant_tool_calls_become_tool_use_with_parsed_input() {
        let request = chat(json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}]},
        ]));
        assert_eq!(
            to_messages(&request)["messages"][1],
            json!({"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "now", "input": {}}]})
        );
    }

    #[test]
    fn consecutive_tool_messages_become_one_user_turn_of_tool_results() {
        let request = chat(json!([
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "Rain"}]},
            {"role": "user", "content": "Thanks"},
        ]));
        let messages = to_messages(&request)["messages"].clone();
        assert_eq!(messages.as_array().unwrap().len(), 4);
        assert_eq!(
            messages[2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "Rain"}]}]})
        );
        assert_eq!(messages[3]["content"][0]["text"], "Thanks");
    }

    #[test]
    fn tool_results_that_end_the_conversation_are_kept() {
        let request = chat(json!([assistant_call("call_1", "{}"),
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]));
        assert_eq!(
            to_messages(&request)["messages"][1]["content"][0]["type"],
            "tool_result"
        );
    }

    #[test]
    fn invalid_arguments_json_is_a_400_naming_the_field() {
        let request = chat(json!([
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            assistant_call("call_1", "{\"city\": "),
        ]));
        let error = refused(&request);
        assert_eq!(error.status, 400);
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        assert_eq!(
            error.param.as_deref(),
            Some("messages[2].tool_calls[0].function.arguments")
        );
        assert!(
            error.message.contains("not valid JSON"),
            "{}",
            error.message
        );
    }

    #[test]
    fn arguments_that_are_not_an_object_are_a_400() {
        let error = refused(&chat(json!([assistant_call("call_1", "[1, 2]")])));
        assert_eq!(
            error.param.as_deref(),
            Some("messages[0].tool_calls[0].function.arguments")
        );
    }

    #[test]
    fn image_urls_become_image_blocks() {
        let request = chat(json!([{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}]));
        let content = &to_messages(&request)["messages"][0]["content"];
        assert_eq!(
            content[1],
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}})
        );
        assert_eq!(
            content[2],
            json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
        );
    }

    #[test]
    fn an_image_url_of_another_scheme_is_a_400_naming_it() {
        let request = chat(json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.jpg"}}]}]));
        assert_eq!(
            refused(&request).param.as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
    }

    #[test]
    fn cache_control_on_parts_is_kept_for_prompt_caching() {
        let request = chat(json!([{"role": "system", "content": [
            {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}]}]));
        assert_eq!(
            to_messages(&request)["system"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
    }

    #[test]
    fn sampling_stop_stream_and_user_are_carried() {
        let request = json!({"model": "m", "messages": [], "stop": "END", "temperature": 0.5,
            "top_p": 0.9, "stream": true, "user": "alice"});
        let translated = to_messages(&request);
        assert_eq!(translated["stop_sequences"], json!(["END"]));
        assert_eq!(translated["temperature"], 0.5);
        assert_eq!(translated["top_p"], 0.9);
        assert_eq!(translated["stream"], true);
        assert_eq!(translated["metadata"], json!({"user_id": "alice"}));
        let several = to_messages(&with(chat(json!([])), "stop", json!(["a", "b"])));
        assert_eq!(several["stop_sequences"], json!(["a", "b"]));
    }

    #[test]
    fn openai_only_options_are_dropped() {
        let request = json!({"model": "m", "messages": [], "stream_options": {"include_usage": true},
            "seed": 3, "frequency_penalty": 0.1, "presence_penalty": 0.1, "n": 1, "logprobs": false,
            "service_tier": "auto", "store": false, "response_format": {"type": "text"}});
        let translated = to_messages(&request);
        let mut fields: Vec<&String> = translated.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(fields, ["max_tokens", "messages", "model"]);
    }

    #[test]
    fn what_anthropic_cannot_honour_is_a_400_naming_the_field() {
        let cases = [
            ("n", json!(2)),
            ("logprobs", json!(true)),
            (
                "response_format",
                json!({"type": "json_schema", "json_schema": {}}),
            ),
            ("functions", json!([{"name": "f"}])),
            ("modalities", json!(["text", "audio"])),
        ];
        for (field, value) in cases {
            let error = refused(&with(chat(json!([])), field, value));
            assert_eq!(
                (error.status, error.param.as_deref()),
                (400, Some(field)),
                "{field}"
            );
        }
    }

    #[test]
    fn malformed_messages_are_a_400_naming_where() {
        let cases = [
            (json!({"model": "m"}), "messages"),
            (chat(json!([{"content": "no role"}])), "messages[0].role"),
            (
                chat(json!([{"role": "robot", "content": "x"}])),
                "messages[0].role",
            ),
            (
                chat(json!([{"role": "user", "content": 5}])),
                "messages[0].content",
            ),
            (
                chat(json!([{"role": "user", "content": [{"type": "input_audio"}]}])),
                "messages[0].content[0].type",
            ),
            (
                chat(json!([{"role": "tool", "content": "x"}])),
                "messages[0].tool_call_id",
            ),
        ];
        for (request, param) in cases {
            assert_eq!(refused(&request).param.as_deref(), Some(param), "{request}");
        }
    }

    #[test]
    fn a_body_that_is_not_an_object_is_a_400() {
        assert_eq!(refused(&json!([1])).status, 400);
    }

    #[test]
    fn empty_turns_are_left_out() {
        let request =
            chat(json!([{"role": "user", "content": ""}, {"role": "user", "content": "Hi"}]));
        assert_eq!(
            to_messages(&request)["messages"].as_array().unwrap().len(),
            1
        );
    }

    // ---- Anthropic → OpenAI ----

    fn anthropic(messages: Value) -> Value {
        json!({"model": "claude", "max_tokens": 256, "messages": messages})
    }

    fn to_chat(request: &Value) -> Value {
        messages_to_chat(request, "gpt-x").unwrap()
    }

    #[test]
    fn system_blocks_become_the_first_message() {
        let request = with(
            anthropic(json!([{"role": "user", "content": "Hi"}])),
            "system",
            json!([{"type": "text", "text": "One."}, {"type": "text", "text": "Two.", "cache_control": {"type": "ephemeral"}}]),
        );
        assert_eq!(
            to_chat(&request)["messages"][0],
            json!({"role": "system", "content": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]})
        );
    }

    #[test]
    fn tool_use_becomes_tool_calls_with_json_arguments_and_thinking_is_dropped() {
        let request = anthropic(json!([
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        ]));
        let assistant = &to_chat(&request)["messages"][1];
        assert_eq!(assistant["content"], "Checking.");
        assert_eq!(
            assistant["tool_calls"],
            json!([{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
        );
    }

    #[test]
    fn tool_only_assistant_turns_have_null_content() {
        let request = anthropic(json!([{"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}]}]));
        assert_eq!(to_chat(&request)["messages"][0]["content"], Value::Null);
    }

    #[test]
    fn tool_results_become_tool_messages_before_the_rest_of_the_turn() {
        let request = anthropic(json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                "content": [{"type": "text", "text": "city not found"}]},
            {"type": "text", "text": "And tomorrow?"},
        ]}]));
        assert_eq!(
            to_chat(&request)["messages"],
            json!([
                {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "city not found"},
                {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
            ])
        );
    }

    #[test]
    fn images_in_a_tool_result_move_to_the_user_turn() {
        let request = anthropic(json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "text", "text": "screenshot:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]}]));
        let messages = to_chat(&request)["messages"].clone();
        assert_eq!(messages[0]["content"], "screenshot:");
        assert_eq!(
            messages[1],
            json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]})
        );
    }

    #[test]
    fn anthropic_tools_and_tool_choice_map_to_functions() {
        let base = with(
            anthropic(json!([])),
            "tools",
            json!([{"name": "get_weather", "description": "Weather",
            "input_schema": {"type": "object", "properties": {}}}]),
        );
        let translated = to_chat(&base);
        assert_eq!(
            translated["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {}}}}])
        );
        for (choice, expected) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
            (
                json!({"type": "tool", "name": "get_weather"}),
                json!({"type": "function", "function": {"name": "get_weather"}}),
            ),
        ] {
            assert_eq!(
                to_chat(&with(base.clone(), "tool_choice", choice))["tool_choice"],
                expected
            );
        }
        let serial = to_chat(&with(
            base,
            "tool_choice",
            json!({"type": "any", "disable_parallel_tool_use": true}),
        ));
        assert_eq!(serial["parallel_tool_calls"], false);
    }

    #[test]
    fn server_tools_are_a_400_naming_the_tool() {
        let request = with(
            anthropic(json!([])),
            "tools",
            json!([{"type": "web_search_20250305", "name": "web_search"}]),
        );
        assert_eq!(
            messages_to_chat(&request, "gpt-x")
                .unwrap_err()
                .param
                .as_deref(),
            Some("tools[0].type")
        );
    }

    #[test]
    fn limits_stops_and_user_are_carried_and_thinking_dropped() {
        let request = json!({"model": "claude", "max_tokens": 256, "messages": [],
            "stop_sequences": ["END"], "temperature": 0.2, "top_k": 5,
            "thinking": {"type": "enabled", "budget_tokens": 100}, "metadata": {"user_id": "alice"}});
        assert_eq!(
            to_chat(&request),
            json!({"model": "gpt-x", "messages": [], "stop": ["END"], "max_completion_tokens": 256,
                "temperature": 0.2, "user": "alice"})
        );
    }

    #[test]
    fn a_streaming_request_asks_the_upstream_for_usage() {
        let translated = to_chat(&with(anthropic(json!([])), "stream", json!(true)));
        assert_eq!(translated["stream"], true);
        assert_eq!(translated["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn anthropic_images_become_image_url_parts() {
        let request = anthropic(json!([{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]));
        assert_eq!(
            to_chat(&request)["messages"][0]["content"][0],
            json!({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})
        );
    }

    #[test]
    fn anthropic_malformed_messages_are_a_400_naming_where() {
        let cases = [
            (
                anthropic(json!([{"role": "system", "content": "x"}])),
                "messages[0].role",
            ),
            (anthropic(json!([{"role": "user"}])), "messages[0].content"),
            (
                anthropic(json!([{"role": "user", "content": [{"type": "mystery"}]}])),
                "messages[0].content[0].type",
            ),
            (
                anthropic(
                    json!([{"role": "assistant", "content": [{"type": "tool_use", "name": "f"}]}]),
                ),
                "messages[0].content[0].id",
            ),
            (with(anthropic(json!([])), "system", json!(5)), "system"),
        ];
        for (request, param) in cases {
            assert_eq!(
                messages_to_chat(&request, "gpt-x")
                    .unwrap_err()
                    .param
                    .as_deref(),
                Some(param),
                "{request}"
            );
        }
    }

    #[test]
    fn a_conversation_with_tools_survives_a_round_trip() {
        let original = chat(json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            assistant_call("call_1", "{\"city\":\"Paris\"}"),
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        ]));
        let back = messages_to_chat(&to_messages(&original), "gpt-x").unwrap();
        assert_eq!(
            back["messages"],
            json!([
                {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
            ])
        );
    }
}

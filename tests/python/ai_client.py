"""Drives Weir's AI gateway with the official OpenAI and Anthropic Python SDKs.

One call per run, chosen by the first argument; prints one JSON line describing what the SDK
returned (or raised), for the Rust test to assert on:

  ai_client.py openai-chat   --base http://addr/v1 --key K --model M [--stream] [--include-usage] [--tools] [--prompt TEXT] [--prompt-bytes N]
  ai_client.py anthropic     --base http://addr    --key K --model M [--stream] [--tools] [--prompt TEXT]
  ai_client.py anthropic-count --base http://addr  --key K --model M
  ai_client.py openai-models --base http://addr/v1 --key K
  ai_client.py openai-embeddings --base http://addr/v1 --key K --model M
  ai_client.py openai-responses  --base http://addr/v1 --key K --model M [--stream]
  ai_client.py openai-prompt     --base http://addr    --key K --prompt-name P --variables JSON [--stream]
  ai_client.py openai-prompt-openapi --base http://addr --key K --prompt-name P

SDK retries are left at their defaults (2), as users run them: a test that counts upstream
calls sees what `x-should-retry` did to them.
"""

import argparse
import json
import sys

import anthropic
import openai

TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
TOOLS_ANTHROPIC = [
    {
        "name": "weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def error_of(exc):
    """What an SDK exception says, in the fields tests compare."""
    out = {"class": type(exc).__name__, "message": str(exc)[:500]}
    for field in ("status_code", "code", "param", "type"):
        value = getattr(exc, field, None)
        if value is not None:
            out[field] = value
    body = getattr(exc, "body", None)
    if body is not None:
        out["body"] = body
    response = getattr(exc, "response", None)
    if response is not None:
        out["headers"] = {k.lower(): v for k, v in response.headers.items()}
    return out


def prompt_text(args):
    if args.prompt_bytes:
        word = "lorem "
        return (word * (args.prompt_bytes // len(word) + 1))[: args.prompt_bytes]
    return args.prompt


def openai_chat(args):
    client = openai.OpenAI(base_url=args.base, api_key=args.key)
    messages = [
        {"role": "system", "content": "first system words"},
        {"role": "system", "content": "second system"},
        {"role": "user", "content": prompt_text(args)},
    ]
    kwargs = {"model": args.model, "messages": messages}
    if args.tools:
        kwargs["tools"] = TOOLS_OPENAI
    if args.max_tokens:
        kwargs["max_tokens"] = args.max_tokens
    if not args.stream:
        completion = client.chat.completions.create(**kwargs)
        choice = completion.choices[0]
        return {
            "model": completion.model,
            "content": choice.message.content,
            "finish_reason": choice.finish_reason,
            "tool_calls": [
                {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                for c in (choice.message.tool_calls or [])
            ],
            "usage": completion.usage.model_dump() if completion.usage else None,
        }
    if args.include_usage:
        kwargs["stream_options"] = {"include_usage": True}
    stream = client.chat.completions.create(stream=True, **kwargs)
    content, finish_reason, usage_chunks, chunks, roles = "", None, [], 0, 0
    tool_calls = {}
    last_was_usage = False
    for chunk in stream:
        chunks += 1
        last_was_usage = False
        if chunk.usage is not None:
            usage_chunks.append({"usage": chunk.usage.model_dump(), "choices": len(chunk.choices)})
            last_was_usage = True
        for choice in chunk.choices:
            delta = choice.delta
            if delta.role:
                roles += 1
            if delta.content:
                content += delta.content
            for call in delta.tool_calls or []:
                entry = tool_calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                if call.id:
                    entry["id"] = call.id
                if call.function and call.function.name:
                    entry["name"] += call.function.name
                if call.function and call.function.arguments:
                    entry["arguments"] += call.function.arguments
            if choice.finish_reason:
                finish_reason = choice.finish_reason
    return {
        "content": content,
        "finish_reason": finish_reason,
        "chunks": chunks,
        "role_chunks": roles,
        "usage_chunks": usage_chunks,
        "usage_chunk_last": last_was_usage,
        "tool_calls": [dict(tool_calls[i], index=i) for i in sorted(tool_calls)],
    }


def anthropic_messages(args):
    client = anthropic.Anthropic(base_url=args.base, api_key=args.key)
    kwargs = {
        "model": args.model,
        "max_tokens": args.max_tokens or 256,
        "system": "first system words",
        "messages": [{"role": "user", "content": prompt_text(args)}],
    }
    if args.tools:
        kwargs["tools"] = TOOLS_ANTHROPIC
    if args.stream:
        events = []
        with client.messages.stream(**kwargs) as stream:
            for event in stream:
                events.append(event.type)
            message = stream.get_final_message()
    else:
        events = None
        message = client.messages.create(**kwargs)
    return {
        "model": message.model,
        "content": "".join(b.text for b in message.content if b.type == "text"),
        "tool_uses": [
            {"id": b.id, "name": b.name, "input": b.input} for b in message.content if b.type == "tool_use"
        ],
        "stop_reason": message.stop_reason,
        "usage": message.usage.model_dump(),
        "events": events,
    }


def anthropic_count(args):
    client = anthropic.Anthropic(base_url=args.base, api_key=args.key)
    counted = client.messages.count_tokens(
        model=args.model, messages=[{"role": "user", "content": prompt_text(args)}]
    )
    return {"input_tokens": counted.input_tokens}


def openai_models(args):
    client = openai.OpenAI(base_url=args.base, api_key=args.key)
    return {"ids": sorted(m.id for m in client.models.list())}


def openai_embeddings(args):
    client = openai.OpenAI(base_url=args.base, api_key=args.key)
    result = client.embeddings.create(model=args.model, input=[prompt_text(args), "second input"])
    return {
        "count": len(result.data),
        "dims": len(result.data[0].embedding),
        "usage": result.usage.model_dump(),
    }


def openai_responses(args):
    client = openai.OpenAI(base_url=args.base, api_key=args.key)
    if args.stream:
        text, usage = "", None
        for event in client.responses.create(model=args.model, input=prompt_text(args), stream=True):
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type == "response.completed":
                usage = event.response.usage.model_dump()
        return {"text": text, "usage": usage}
    response = client.responses.create(model=args.model, input=prompt_text(args))
    return {"text": response.output_text, "usage": response.usage.model_dump()}


def openai_prompt(args):
    """POST /prompts/<name> through the SDK's own request machinery (auth, retries, errors),
    cast to the types a chat completion has: the endpoint answers as /v1/chat/completions does."""
    client = openai.OpenAI(base_url=args.base, api_key=args.key)
    body = {"variables": json.loads(args.variables)}
    path = f"/prompts/{args.prompt_name}"
    if not args.stream:
        completion = client.post(path, body=body, cast_to=openai.types.chat.ChatCompletion)
        choice = completion.choices[0]
        return {
            "object": completion.object,
            "model": completion.model,
            "content": choice.message.content,
            "finish_reason": choice.finish_reason,
            "usage": completion.usage.model_dump() if completion.usage else None,
        }
    body["stream"] = True
    stream = client.post(
        path,
        body=body,
        cast_to=openai.types.chat.ChatCompletion,
        stream=True,
        stream_cls=openai.Stream[openai.types.chat.ChatCompletionChunk],
    )
    content, finish_reason, chunks, objects = "", None, 0, set()
    for chunk in stream:
        chunks += 1
        objects.add(chunk.object)
        for choice in chunk.choices:
            if choice.delta.content:
                content += choice.delta.content
            if choice.finish_reason:
                finish_reason = choice.finish_reason
    return {
        "content": content,
        "finish_reason": finish_reason,
        "chunks": chunks,
        "objects": sorted(objects),
    }


def openai_prompt_openapi(args):
    client = openai.OpenAI(base_url=args.base, api_key=args.key)
    return client.get(f"/prompts/{args.prompt_name}/openapi.json", cast_to=object)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("call")
    parser.add_argument("--base", required=True)
    parser.add_argument("--key", default="none")
    parser.add_argument("--model", default="")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--include-usage", action="store_true")
    parser.add_argument("--tools", action="store_true")
    parser.add_argument("--prompt", default="say hello to the gateway")
    parser.add_argument("--prompt-bytes", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=0)
    parser.add_argument("--prompt-name", default="")
    parser.add_argument("--variables", default="{}")
    args = parser.parse_args()
    calls = {
        "openai-chat": openai_chat,
        "anthropic": anthropic_messages,
        "anthropic-count": anthropic_count,
        "openai-models": openai_models,
        "openai-embeddings": openai_embeddings,
        "openai-responses": openai_responses,
        "openai-prompt": openai_prompt,
        "openai-prompt-openapi": openai_prompt_openapi,
    }
    try:
        result = {"ok": calls[args.call](args)}
    except (openai.APIError, anthropic.APIError) as exc:
        result = {"error": error_of(exc)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())

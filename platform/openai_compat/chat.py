"""POST /v1/chat/completions for the organization's chat fine-tunes (`model: "ft:…"`), answered by an
inference worker through serving.services.chat — the same path as the native try-it. OpenAI's request and
`chat.completion` object; what Lathe does not do (streaming, n > 1, tools, …) is a 400 naming the parameter."""
from __future__ import annotations

import time

from core.errors import ApplicationError, NotFound, field_error
from serving import services as serving
from serving.models import Surface

from . import selectors

SUPPORTED = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream", "seed"}
IGNORED = {"user", "metadata", "store"}  # accepted, nothing to do with them here
NOT_SUPPORTED = {
    "stop": "stop sequences", "presence_penalty": "presence penalties", "frequency_penalty": "frequency penalties",
    "logit_bias": "logit bias", "logprobs": "log probabilities", "top_logprobs": "log probabilities",
    "tools": "tool calls", "tool_choice": "tool calls", "functions": "function calls", "function_call": "function calls",
    "parallel_tool_calls": "tool calls", "response_format": "structured output", "stream_options": "streaming",
    "modalities": "audio output", "audio": "audio output", "prediction": "predicted outputs",
    "reasoning_effort": "reasoning models", "service_tier": "service tiers", "web_search_options": "web search",
}


def completion_create(*, organization, data) -> dict:
    if not isinstance(data, dict):
        raise field_error("messages", "The body must be a JSON object with model and messages.")
    for name in data:
        if name in NOT_SUPPORTED and data[name] is not None:
            raise field_error(name, f"{name}: Lathe's chat completions do not support {NOT_SUPPORTED[name]}.",
                              code="unsupported_parameter")
        if name not in SUPPORTED | IGNORED | set(NOT_SUPPORTED):
            raise field_error(str(name)[:60], f"Unrecognized request argument supplied: {str(name)[:60]}.",
                              code="unknown_parameter")
    if data.get("stream") not in (None, False):
        raise field_error("stream", "stream: only stream=false is supported (the whole reply in one response).",
                          code="unsupported_parameter")
    if data.get("n") not in (None, 1) or isinstance(data.get("n"), bool):
        raise field_error("n", "n: only n=1 is supported (one choice a request).", code="unsupported_parameter")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise field_error("model", "model is required: a fine-tuned model's name (ft:…), as GET /v1/models lists it.")
    if data.get("max_tokens") is not None and data.get("max_completion_tokens") is not None:
        raise field_error("max_tokens", "Send max_completion_tokens or max_tokens, not both.")
    length_name = "max_completion_tokens" if data.get("max_completion_tokens") is not None else "max_tokens"
    if "messages" not in data or data["messages"] is None:
        raise field_error("messages", "messages is required: a list of {role, content}, ending on a user message.")
    try:
        job = selectors.fine_tuned_job_get(organization=organization, model_id=model)
    except NotFound:
        base = selectors.base_chat_models().filter(slug=model).exists()
        error = ApplicationError(
            f"The model {model[:120]!r} does not exist or you do not have access to it."
            + (" Base models are not served: fine-tune it, then call the ft:… model." if base else ""),
            code="model_not_found", status=404)
        error.openai_param = "model"
        raise error from None
    from jobs.model_sources import source_get

    source = source_get(organization=organization, job_id=job.pk, field="model")
    reply = serving.chat(organization=organization, source=source, messages=data["messages"],
                         max_new_tokens=data.get(length_name), temperature=data.get("temperature"),
                         top_p=data.get("top_p"), seed=data.get("seed"), surface=Surface.OPENAI,
                         names={"max_new_tokens": length_name})
    return {
        "id": f"chatcmpl-{reply['id']}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply["reply"]["content"], "refusal": None},
                     "logprobs": None, "finish_reason": reply["finish_reason"]}],
        "usage": reply["usage"], "system_fingerprint": None,
        "lathe": {"warm": reply["warm"], "latency_ms": reply["latency_ms"], "worker_ms": reply["worker_ms"],
                  "load_ms": reply["load_ms"], "variant": reply["model"]["variant"],
                  "device_class": reply["device_class"], "job_id": job.pk},
    }

"""A chat fine-tune tried end to end with a real inference worker: the native predict endpoint cold then warm
and the OpenAI SDK's client.chat.completions.create against a live server, each reply compared with greedy
generation run directly in this test; the SDK's errors for what is not supported."""
from __future__ import annotations

import openai
import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from billing.models import InferenceUsage
from corpora.services import dataset_upload
from jobs.models import JobKind
from serving.models import InferenceRequest, InferenceWorker, RequestState, Surface
from tenancy.actors import Actor
from tests.model_archives import zip_bytes
from tests.openai_compat.conftest import chat_jsonl

from .helpers import inference_worker, store_model, succeeded_job

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def greedy(folder, messages, max_new_tokens):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    new = out[0, ids.shape[1]:].tolist()
    return tokenizer.decode(new, skip_special_tokens=True).strip(), ids.shape[1], len(new)


@pytest.fixture
def chat_job(tenant_a, media, chat_model, tiny_llama_dir):
    version = dataset_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                             uploaded=SimpleUploadedFile("facts.jsonl", chat_jsonl()), task="chat")
    job = succeeded_job(tenant_a, version, kind=JobKind.CHAT_FINETUNE, name="facts", base_model=chat_model)
    store_model(job, zip_bytes(tiny_llama_dir))
    return job


def test_a_chat_model_through_predict_and_the_openai_sdk(settings, tmp_path, tenant_a, api_for, chat_job,
                                                        tiny_llama_dir, live_server):
    api = api_for(tenant_a.key())
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    content, prompt_tokens, completion_tokens = greedy(tiny_llama_dir, messages, 8)
    with inference_worker(settings, tmp_path) as _worker:
        cold = api.post(f"/api/v1/jobs/{chat_job.pk}/predict", {"messages": messages, "max_new_tokens": 8}, format="json")
        assert cold.status_code == 200, cold.content
        body = cold.json()
        assert body["object"] == "chat.reply" and body["warm"] is False and body["model"]["family"] == "chat"
        assert body["reply"] == {"role": "assistant", "content": content}
        assert body["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}
        assert body["finish_reason"] in ("stop", "length")
        # a classifier's inputs sent to a chat model: a 400 naming the field
        wrong = api.post(f"/api/v1/jobs/{chat_job.pk}/predict", {"inputs": ["hi"]}, format="json")
        assert wrong.status_code == 400 and "inputs" in wrong.json()["error"]["fields"]

        client = openai.OpenAI(base_url=live_server.url + "/v1", api_key=tenant_a.key(), max_retries=0)
        name = f"ft:tiny-llama:{tenant_a.organization.slug}::{chat_job.pk}"
        assert name in {m.id for m in client.models.list()}
        completion = client.chat.completions.create(model=name, messages=messages, max_completion_tokens=8)
        assert completion.object == "chat.completion" and completion.model == name and completion.id.startswith("chatcmpl-")
        assert len(completion.choices) == 1
        choice = completion.choices[0]
        assert choice.message.role == "assistant" and choice.message.content == content
        assert choice.finish_reason == body["finish_reason"]
        assert completion.usage.prompt_tokens == prompt_tokens and completion.usage.completion_tokens == completion_tokens
        assert completion.model_extra["lathe"]["warm"] is True  # the native call above loaded it

        longer, _p, longer_tokens = greedy(tiny_llama_dir, messages, 3)
        short = client.chat.completions.create(model=name, messages=messages, max_tokens=3)
        assert short.choices[0].message.content == longer and short.usage.completion_tokens == longer_tokens

        for kwargs, param in [({"stream": True}, "stream"), ({"n": 2}, "n"), ({"stop": ["\n"]}, "stop"),
                              ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
                              ({"temperature": 3}, "temperature"), ({"max_tokens": 0}, "max_tokens")]:
            with pytest.raises(openai.BadRequestError) as refused:
                client.chat.completions.create(model=name, messages=messages, **kwargs)
            assert refused.value.param == param, (kwargs, refused.value.body)
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=name, messages=[{"role": "robot", "content": "x"}])
        assert refused.value.param == "messages[0].role"
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert missing.value.code == "model_not_found" and missing.value.param == "model"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="tiny-llama", messages=messages)  # a base model is not served

    connection.close()
    answered = InferenceRequest.objects.filter(state=RequestState.SUCCEEDED).order_by("id")
    assert [r.surface for r in answered] == [Surface.API, Surface.OPENAI, Surface.OPENAI]
    assert InferenceUsage.objects.filter(organization=tenant_a.organization).count() == 3
    assert InferenceRequest.objects.count() == 3  # the refused requests wrote nothing

    # the worker is gone (a clean shutdown marks it stopped): a 503 at once, through the SDK too
    assert InferenceWorker.objects.get(queue=settings.LATHE_INFERENCE_QUEUE).stopped_at is not None
    with pytest.raises(openai.InternalServerError) as down:
        client.chat.completions.create(model=name, messages=messages)
    assert down.value.status_code == 503 and down.value.code == "no_inference_worker"
    assert down.value.response.headers.get("Retry-After")

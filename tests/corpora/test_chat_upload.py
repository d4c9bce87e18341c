"""Chat datasets through the API and the dashboard: token statistics with the
catalog's default chat model at upload, `chat_token_stats` for the jobs side,
hostile lines answered per line (never a 500), the conversation preview escaped."""
from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.files.storage import default_storage

from catalog.models import BaseModel, TaskFamily, WeightsSource
from catalog.tokenizers import cached_tokenizer_count, clear_tokenizer_cache
from corpora.models import DatasetVersion
from corpora.selectors import chat_token_stats
from core.errors import ApplicationError
from tests.chat_tokenizer import build_word_chat_tokenizer

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def word_tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("word-chat")
    build_word_chat_tokenizer(folder)
    return folder


@pytest.fixture(autouse=True)
def _fresh_tokenizers():
    clear_tokenizer_cache()
    yield
    clear_tokenizer_cache()


@pytest.fixture
def chat_model(db, word_tokenizer_dir):
    return BaseModel.objects.create(
        slug="word-chat", name="Word Chat", architecture="llama", task_family=TaskFamily.CHAT,
        source_kind=WeightsSource.PATH, source=str(word_tokenizer_dir), supported_tasks=["chat"], default_max_length=12,
        context_length=64, chat_template_source="model", is_default=True)


def jsonl(*lines) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def conversation(question, answer, **extra):
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}], **extra}


# <|im_start|> user Q <|im_end|> <|im_start|> assistant A <|im_end|>: 6 tokens + the words; A and <|im_end|> trained.
LINES = [conversation("hello there", "general kenobi"), conversation("what is the capital of france", "paris"),
         {"prompt": "hello", "completion": "yes"}, conversation("hello there", "general kenobi"),
         conversation("thanks", "yes no")]
# tokens: 10, 13, 8, 10, 9; trained: 3, 2, 2, 3, 3


def test_a_chat_upload_is_measured_with_the_default_chat_model(uploader, chat_model):
    response = uploader("talk.jsonl", jsonl(*LINES))
    assert response.status_code == 201, response.content
    version = DatasetVersion.objects.get()
    assert version.task == "chat" and version.dataset.task == "chat" and version.label_count == 0
    assert version.base_model == chat_model and version.max_length == 12  # the model's default_max_length
    tokens = version.report["tokens"]
    assert tokens["base_model"] == "word-chat" and tokens["chat_template"] == "model"
    assert (tokens["conversations"], tokens["p50"], tokens["max"], tokens["tokens"]) == (5, 10, 13, 50)
    assert tokens["trained_tokens"] == 3 + 2 + 2 + 3 + 3
    assert tokens["over_max_length"] == 1 and tokens["over_context_length"] == 0
    assert tokens["train"]["conversations"] == version.train_count
    assert tokens["validation"]["conversations"] == version.validation_count
    assert tokens["train"]["trained_tokens"] + tokens["validation"]["trained_tokens"] == 13
    assert version.report["lengths"]["unit"] == "tokens" and version.report["lengths"]["tokenizer"] == "word-chat"
    assert version.report["duplicates"]["exact_conversations"] == 1
    stored = [json.loads(line) for line in default_storage.open(version.train_file, "rb")]
    assert {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "yes"}]} in stored
    preview = uploader.client.get(f"/api/v1/datasets/{version.dataset_id}/versions/1/preview").json()
    assert preview["rows"][0]["messages"][0] == {"role": "user", "content": "hello there"}


def test_the_task_can_be_chosen(uploader, chat_model):
    response = uploader("talk.jsonl", jsonl(*LINES), task="chat")
    assert response.status_code == 201 and response.json()["task"] == "chat"


def test_without_a_chat_model_lengths_are_in_words_and_the_report_says_why(uploader):
    response = uploader("talk.jsonl", jsonl(*LINES))
    assert response.status_code == 201, response.content
    version = DatasetVersion.objects.get()
    assert version.report["tokens"] is None and version.base_model is None
    assert "no chat model" in version.report["tokens_unavailable"]
    assert version.report["lengths"]["unit"] == "words"


def test_a_classification_base_model_is_replaced_by_the_chat_model_with_a_warning(uploader, chat_model):
    response = uploader("talk.jsonl", jsonl(*LINES), base_model="all-minilm-l6-v2")
    assert response.status_code == 201, response.content
    version = DatasetVersion.objects.get()
    assert version.base_model == chat_model
    assert any("all-MiniLM-L6-v2 (base_model) is a classification model" in w for w in version.report["warnings"])


def test_an_unloadable_default_chat_model_leaves_the_upload_in_words(uploader, chat_model, tmp_path):
    BaseModel.objects.filter(pk=chat_model.pk).update(source=str(tmp_path / "missing"))
    response = uploader("talk.jsonl", jsonl(*LINES))
    assert response.status_code == 201, response.content
    assert "could not be loaded" in DatasetVersion.objects.get().report["tokens_unavailable"]


def test_a_chosen_chat_model_that_does_not_load_is_a_503(uploader, chat_model, tmp_path):
    BaseModel.objects.filter(pk=chat_model.pk).update(source=str(tmp_path / "missing"))
    response = uploader("talk.jsonl", jsonl(*LINES), base_model="word-chat")
    assert response.status_code == 503 and response.json()["error"]["code"] == "tokenizer_unavailable"


HOSTILE = [
    ('{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid JSON (nested too deeply)"),
    ('{"messages": [{"role": "user", "content": "a\\u0000b"}, {"role": "assistant", "content": "x"}]}', "NUL character"),
    ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x", "weight": 1e400}]}',
     "invalid weight: message 2 (assistant): weight must be 0 or 1, found Infinity"),
    ('{"messages": [{"role": "user", "content": 1e400}, {"role": "assistant", "content": "x"}]}',
     "content not a string"),
    ('{"prompt": "Hi", "completion": "x", "tools": [{"type": "function"}]}', "tool calling: not supported yet"),
]


@pytest.mark.parametrize("line,says", HOSTILE, ids=[says[:30] for _, says in HOSTILE])
def test_hostile_lines_are_refused_per_line(uploader, chat_model, line, says):
    good = [conversation(f"question {i}", f"answer {i}") for i in range(12)]
    response = uploader("talk.jsonl", jsonl(*good[:6], line, *good[6:]))
    assert response.status_code == 201, response.content
    (rejected,) = DatasetVersion.objects.get().report["rejected"]["examples"]
    assert rejected["line"] == 7 and says in rejected["reason"]


@pytest.mark.parametrize("line,says", HOSTILE[:3], ids=["deep", "nul", "1e400"])
def test_a_file_of_hostile_lines_is_a_400_naming_the_first(uploader, chat_model, line, says):
    response = uploader("talk.jsonl", jsonl(line, line), task="chat")
    assert response.status_code == 400, response.content
    body = response.json()["error"]
    assert body["code"] == "no_valid_rows" and "line 1" in body["message"] and says in body["message"]
    assert not DatasetVersion.objects.exists()


def test_a_huge_line_is_a_400_naming_it(uploader, chat_model):
    huge = conversation("x " * 1_000_001, "y")
    response = uploader("talk.jsonl", jsonl(LINES[0], huge))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "line_too_long" and "Line 2" in response.json()["error"]["message"]


def test_a_chat_csv_is_a_400_on_the_task(uploader):
    response = uploader("talk.csv", b"prompt,completion\nhi,there\n", task="chat")
    assert response.status_code == 400 and "task" in response.json()["error"]["fields"]


def test_the_preview_csv_holds_each_conversation_as_json(uploader, chat_model):
    uploader("talk.jsonl", jsonl(*LINES))
    version = DatasetVersion.objects.get()
    response = uploader.client.get(f"/api/v1/datasets/{version.dataset_id}/versions/1/preview.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == ["messages"] and len(rows) == 1 + version.train_count
    assert all(json.loads(row[0])[-1]["role"] == "assistant" for row in rows[1:])


# --- chat_token_stats: what the jobs side calls at submission ---------------------------------------

def test_chat_token_stats_reuses_the_uploads_statistics(uploader, chat_model):
    uploader("talk.jsonl", jsonl(*LINES))
    version = DatasetVersion.objects.get()
    assert chat_token_stats(version=version, base_model=chat_model, max_length=12) == version.report["tokens"]
    assert chat_token_stats(version=version, base_model=chat_model) == version.report["tokens"]


def test_chat_token_stats_measures_again_for_another_max_length_and_caches(uploader, chat_model):
    uploader("talk.jsonl", jsonl(*LINES))
    version = DatasetVersion.objects.get()
    stats = chat_token_stats(version=version, base_model=chat_model, max_length=10)
    assert stats["max_length"] == 10 and stats["over_max_length"] == 1 and stats["trained_tokens"] == 13
    # the 13-token conversation trains on its tokens 11–12: both are cut, so it is skipped
    assert stats["trained_tokens_kept"] == 11 and stats["skipped_after_truncation"] == 1
    for name in (version.train_file, version.validation_file):
        default_storage.delete(name)  # the files are gone: only the cache can answer now
    assert chat_token_stats(version=version, base_model=chat_model, max_length=10) == stats


def test_chat_token_stats_follows_an_edited_model(uploader, chat_model, word_tokenizer_dir):
    uploader("talk.jsonl", jsonl(*LINES))
    version = DatasetVersion.objects.get()
    chat_model.context_length = 11
    chat_model.save()
    stats = chat_token_stats(version=version, base_model=chat_model, max_length=12)
    assert stats["truncated_at"] == 11 and stats["over_context_length"] == 1


def test_chat_token_stats_names_a_mismatch(uploader, chat_model):
    uploader("rows.csv", b"text,label\n" + b"".join(b"row %d,%s\n" % (i, b"ab"[i % 2:i % 2 + 1]) for i in range(10)))
    classification = DatasetVersion.objects.get()
    with pytest.raises(ApplicationError) as caught:
        chat_token_stats(version=classification, base_model=chat_model, max_length=64)
    assert caught.value.code == "task_mismatch" and "dataset_id" in caught.value.fields
    uploader("talk.jsonl", jsonl(*LINES))
    chat = DatasetVersion.objects.get(task="chat")
    with pytest.raises(ApplicationError) as caught:
        chat_token_stats(version=chat, base_model=BaseModel.objects.get(slug="all-minilm-l6-v2"), max_length=64)
    assert caught.value.code == "task_mismatch" and "base_model" in caught.value.fields


def test_tokenizers_are_cached_bounded_and_offline(chat_model, word_tokenizer_dir):
    first = chat_model.load_tokenizer()
    assert chat_model.load_tokenizer() is first and cached_tokenizer_count() == 1
    for i in range(6):
        BaseModel.objects.create(slug=f"copy-{i}", name=f"Copy {i}", architecture="llama", task_family="chat",
                                 source_kind="path", source=str(word_tokenizer_dir)).load_tokenizer()
    assert cached_tokenizer_count() == 4
    hub = BaseModel.objects.create(slug="on-the-hub", name="On the hub", architecture="llama", source_kind="hub",
                                   source="someone/not-downloaded-here")
    with pytest.raises(OSError):
        hub.load_tokenizer()  # local files only: no download is tried


def test_lathes_default_template_is_applied_to_a_tokenizer_without_one(chat_model, tmp_path):
    from catalog.chat_templates import DEFAULT_CHAT_TEMPLATE

    build_word_chat_tokenizer(tmp_path / "plain", chat_template=None)
    plain = BaseModel.objects.create(slug="plain", name="Plain", architecture="llama", task_family="chat",
                                     source_kind="path", source=str(tmp_path / "plain"), chat_template_source="default")
    assert plain.load_tokenizer().chat_template == DEFAULT_CHAT_TEMPLATE == plain.chat_template()


# --- the dashboard ----------------------------------------------------------------------------------

@pytest.fixture
def owner_client(client, tenant_a):
    client.force_login(tenant_a.owner)
    return client


def test_the_dataset_page_shows_conversations_escaped_tokens_and_rejected_lines(uploader, chat_model, owner_client,
                                                                             tenant_a):
    hostile = conversation("<script>alert(1)</script> hello", "<b>bold</b> & done")
    lines = [hostile] + LINES + [{"messages": [{"role": "bot", "content": "x"}]}] + LINES * 2
    assert uploader("talk.jsonl", jsonl(*lines), validation_fraction=0.2).status_code == 201
    version = DatasetVersion.objects.get()
    page = owner_client.get(f"/o/{tenant_a.organization.slug}/datasets/{version.dataset_id}").content.decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; hello" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; done" in page and "<b>bold</b>" not in page
    assert 'data-role="user"' in page and 'data-role="assistant"' in page
    assert 'data-testid="token-stats"' in page and "Word Chat" in page
    trained = version.report["tokens"]["trained_tokens"]
    assert f'data-testid="trained-tokens">{trained} (' in page
    assert "cut at 12 tokens" in page
    assert 'data-testid="rejected"' in page and "<td>7</td><td>unknown role: message 1 has role &quot;bot&quot;" in page


def test_the_upload_form_offers_the_chat_task(owner_client, tenant_a):
    page = owner_client.get(f"/o/{tenant_a.organization.slug}/datasets").content.decode()
    assert '<option value="chat">Chat (JSONL conversations' in page


def test_the_upload_forms_first_model_is_the_default_of_the_pages_family(owner_client, tenant_a, uploader, chat_model):
    BaseModel.objects.filter(pk=chat_model.pk).update(name="A chat model")  # first by name
    listing = owner_client.get(f"/o/{tenant_a.organization.slug}/datasets").content.decode()
    assert '<option value="all-minilm-l6-v2" selected>' in listing
    uploader("talk.jsonl", jsonl(*LINES))
    dataset_id = DatasetVersion.objects.get().dataset_id
    detail = owner_client.get(f"/o/{tenant_a.organization.slug}/datasets/{dataset_id}").content.decode()
    assert '<option value="word-chat" selected>' in detail


def test_checking_a_chat_file_shows_its_first_conversations(owner_client, tenant_a, chat_model):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = owner_client.post(f"/o/{tenant_a.organization.slug}/datasets", {
        "file": SimpleUploadedFile("talk.jsonl", jsonl(conversation("<i>hi</i>", "yes"), *LINES)), "action": "check",
        "validation_fraction": "0.1", "seed": "13"})
    page = response.content.decode()
    assert response.status_code == 200 and 'data-testid="check-preview"' in page
    assert "&lt;i&gt;hi&lt;/i&gt;" in page and 'data-role="assistant"' in page
    assert not DatasetVersion.objects.exists()

"""workers/serving: one loader for every delivered variant, each answer checked against the model run
directly (an independent computation), and the LRU of loaded models."""
from __future__ import annotations

import threading

import pytest
import torch

from tests.tiny_model import build_tiny_classifier, build_tiny_llama, slice_rows
from workers.serving.cache import ModelCache
from workers.serving.runtime import CHAT, CLASSIFIER, LoadedModel, load_model

LABELS = ["card_arrival", "card_linking", "exchange_rate"]
TEXTS = ["When will my card arrive?", "How do I link my card?", "what exchange rate do you use", "hi"]


def direct_probabilities(model, tokenizer, texts):
    with torch.inference_mode():
        rows = []
        for text in texts:  # one at a time: no padding, so nothing the runtime's batching could share
            batch = tokenizer([text], truncation=True, max_length=64, return_tensors="pt")
            rows.append(torch.softmax(model(**batch).logits.float(), -1)[0].tolist())
    return rows


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clf")
    tokenizer, model = build_tiny_classifier(folder, LABELS)
    return folder, tokenizer, model


def check_against(loaded: LoadedModel, expected: list[list[float]], *, tolerance: float):
    answers = loaded.classify([{"text": t} for t in TEXTS], batch_size=3)  # 2 batches, padded
    assert len(answers) == len(TEXTS)
    for answer, probabilities in zip(answers, expected):
        assert list(answer.scores) == LABELS
        assert [answer.scores[label] for label in LABELS] == pytest.approx(probabilities, abs=tolerance)
        best = max(range(len(LABELS)), key=probabilities.__getitem__)
        assert answer.label == LABELS[best] and answer.score == pytest.approx(probabilities[best], abs=tolerance)


def test_fp32_classifier_answers_as_the_model_itself(classifier_folder):
    folder, tokenizer, model = classifier_folder
    loaded = load_model(str(folder))
    assert (loaded.kind, loaded.variant, loaded.labels) == (CLASSIFIER, "fp32", LABELS)
    assert loaded.size_bytes > 0
    check_against(loaded, direct_probabilities(model, tokenizer, TEXTS), tolerance=1e-5)
    with pytest.raises(ValueError, match="classifier"):
        loaded.reply([[{"role": "user", "content": "hi"}]])


def test_torch_int8_classifier_answers_as_the_quantized_model(classifier_folder, tmp_path):
    from workers.compression.quantize import quantize_dynamic_int8, save_int8
    from transformers import AutoModelForSequenceClassification

    folder, tokenizer, _ = classifier_folder
    quantized = quantize_dynamic_int8(AutoModelForSequenceClassification.from_pretrained(folder).eval())
    save_int8(quantized, tokenizer, str(tmp_path / "int8"))
    loaded = load_model(str(tmp_path / "int8"))
    assert loaded.variant == "torch_int8"
    check_against(loaded, direct_probabilities(quantized, tokenizer, TEXTS), tolerance=1e-4)


def test_onnx_int8_classifier_answers_as_its_session(classifier_folder, tmp_path):
    from workers.compression import onnx_export
    from transformers import AutoModelForSequenceClassification

    if not onnx_export.available():
        pytest.skip("onnxruntime is not installed")
    folder, tokenizer, _ = classifier_folder
    out = str(tmp_path / "onnx")
    onnx_export.export_int8(AutoModelForSequenceClassification.from_pretrained(folder).eval(), tokenizer, out,
                            task="text_classification")
    session = onnx_export.OnnxClassifier(out)
    loaded = load_model(out)
    assert loaded.variant == "onnx_int8"
    check_against(loaded, direct_probabilities(session, tokenizer, TEXTS), tolerance=1e-4)


def test_pair_classifier_reads_both_texts(tmp_path):
    tokenizer, model = build_tiny_classifier(tmp_path, ["yes", "no"])
    (tmp_path / "lathe.json").write_text('{"task": "text_pair_classification"}')
    loaded = load_model(str(tmp_path))
    answer = loaded.classify([{"text_a": "card arrive", "text_b": "link my card"}])[0]
    with torch.inference_mode():
        expected = torch.softmax(model(**tokenizer(["card arrive"], ["link my card"], return_tensors="pt")).logits, -1)[0]
    assert [answer.scores["yes"], answer.scores["no"]] == pytest.approx(expected.tolist(), abs=1e-5)


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("chat"))


def test_chat_model_replies_as_greedy_generate(chat_folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = load_model(str(chat_folder))
    assert (loaded.kind, loaded.variant) == (CHAT, "fp32")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    reply = loaded.reply([messages], max_new_tokens=6)[0]

    tokenizer = AutoTokenizer.from_pretrained(chat_folder)
    model = AutoModelForCausalLM.from_pretrained(chat_folder).eval()
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    input_ids = tokenizer(ids, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=6,
                             do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    new = out[0, input_ids.shape[1]:].tolist()
    assert reply.prompt_tokens == input_ids.shape[1]
    assert reply.completion_tokens == len(new)
    assert reply.content == tokenizer.decode(new, skip_special_tokens=True).strip()
    assert reply.finish_reason == ("stop" if new[-1] == tokenizer.eos_token_id or len(new) < 6 else "length")
    with pytest.raises(ValueError, match="generates text"):
        loaded.classify([{"text": "hi"}])


CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Tell me about the weather on the coast this weekend, please."}],
    [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "Sure."}, {"role": "user", "content": "thanks"}],
    [{"role": "user", "content": "Translate 'good morning' into German."}],
]


@pytest.fixture(scope="module")
def lively_chat_folder(tmp_path_factory):
    """The tiny LLaMA with weights drawn wide enough that greedy replies vary from token to token (the
    untrained one repeats a single token, which would hide a reply taken from the wrong row or position)."""
    from transformers import AutoModelForCausalLM

    folder = build_tiny_llama(tmp_path_factory.mktemp("lively"))
    model = AutoModelForCausalLM.from_pretrained(folder)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def test_batched_greedy_replies_are_the_replies_one_at_a_time(lively_chat_folder):
    """Left padding must not change a greedy reply; a row that stops early keeps none of the padding
    generated while the rest of its batch went on."""
    loaded = load_model(str(lively_chat_folder))
    assert len({len(loaded._prompt_ids(c)) for c in CONVERSATIONS}) == len(CONVERSATIONS)  # padding is exercised
    # Make one reply stop early: its third generated token becomes an end-of-turn token.
    early = loaded._prompt_ids(CONVERSATIONS[2])
    with torch.inference_mode():
        third = loaded.model.generate(input_ids=torch.tensor([early]), max_new_tokens=3, do_sample=False,
                                      pad_token_id=loaded.tokenizer.pad_token_id)[0, -1].item()
    base_eos = loaded.model.generation_config.eos_token_id
    loaded.model.generation_config.eos_token_id = [base_eos, third] if isinstance(base_eos, int) else [*base_eos, third]
    try:
        alone = [loaded.reply([c], max_new_tokens=10)[0] for c in CONVERSATIONS]
        batched = loaded.reply(CONVERSATIONS, max_new_tokens=10, batch_size=4)  # a batch of 4 and one of 1
    finally:
        loaded.model.generation_config.eos_token_id = base_eos
    assert batched == alone
    assert any(r.finish_reason == "stop" and r.completion_tokens <= 3 for r in batched)
    assert any(r.completion_tokens == 10 and r.finish_reason == "length" for r in batched)


def test_chat_sampling_is_seeded(chat_folder):
    loaded = load_model(str(chat_folder))
    messages = [[{"role": "user", "content": "Hello!"}]]
    first = loaded.reply(messages, max_new_tokens=8, temperature=1.5, seed=7)[0]
    again = loaded.reply(messages, max_new_tokens=8, temperature=1.5, seed=7)[0]
    assert first == again and first.completion_tokens >= 1


def test_an_unloadable_folder_is_an_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(Exception):
        load_model(str(tmp_path))


# --- the LRU ------------------------------------------------------------------------------------------

def fake(size: int) -> LoadedModel:
    return LoadedModel(kind=CLASSIFIER, variant="fp32", model=None, tokenizer=None, size_bytes=size)


def test_cache_keeps_the_most_recently_used_within_count_and_bytes():
    cache = ModelCache(max_models=2, max_bytes=100)
    loads = []

    def loader(key, size):
        return lambda: (loads.append(key), fake(size))[1]

    assert cache.get("a", loader("a", 40))[1] is False
    assert cache.get("b", loader("b", 40))[1] is False
    assert cache.get("a", loader("a", 40))[1] is True  # a is now the most recent
    cache.get("c", loader("c", 40))  # over the count: b (least recent) goes
    assert cache.keys() == ["a", "c"] and cache.evictions == 1
    cache.get("d", loader("d", 90))  # over the bytes: everything but d goes
    assert cache.keys() == ["d"] and cache.bytes_used() == 90
    big = cache.get("e", loader("e", 500))[0]  # larger than the whole budget: still served, alone
    assert big.size_bytes == 500 and cache.keys() == ["e"]
    assert loads == ["a", "b", "c", "d", "e"]


def test_cache_loads_a_model_once_when_asked_twice_at_once():
    cache = ModelCache(max_models=4, max_bytes=10**9)
    started, release, calls = threading.Event(), threading.Event(), []

    def slow_load():
        calls.append(1)
        started.set()
        release.wait(60)
        return fake(1)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("m", slow_load))) for _ in range(3)]
    for t in threads:
        t.start()
    assert started.wait(60)
    release.set()
    for t in threads:
        t.join(60)
    assert len(calls) == 1 and len(results) == 3
    assert sorted(warm for _m, warm in results) == [False, True, True]
    assert len({id(m) for m, _w in results}) == 1


def test_real_rows_classify_without_error(classifier_folder):
    folder, _tokenizer, _model = classifier_folder
    rows = [{"text": r["text"]} for r in slice_rows(40)]
    answers = load_model(str(folder)).classify(rows, batch_size=16)
    assert len(answers) == 40 and all(abs(sum(a.scores.values()) - 1) < 1e-4 for a in answers)

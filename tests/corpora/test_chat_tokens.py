"""Token statistics of chat conversations with a chat template (corpora/chat.py),
against a word-level tokenizer the test builds: every word is one token, so each
expected count below is written by hand."""
from __future__ import annotations

import pytest

from corpora.chat import ChatTokenCounter, conversation_tokens, warnings_for
from tests.chat_tokenizer import STRICT_TEMPLATE, build_word_chat_tokenizer

# A template that adds a system prompt when the conversation has none (as SmolLM2's does).
DEFAULT_SYSTEM_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|> system you are helpful <|im_end|> ' }}{% endif %}"
    "{{ '<|im_start|> ' + message['role'] + ' ' + message['content'] + ' <|im_end|> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|> assistant ' }}{% endif %}"
)
# A template that closes the whole conversation with an end marker ("thanks" here), as some add an EOS
# token at the very end: in a multi-turn conversation a rendered prefix is then no prefix of the whole.
END_MARKER_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|> ' + message['role'] + ' ' + message['content'] + ' <|im_end|> ' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|> assistant ' }}{% else %}{{ 'thanks' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_word_chat_tokenizer(tmp_path_factory.mktemp("word-chat-tokenizer"))


def chat(*turns, weights=None):
    roles = ["user", "assistant"] * len(turns)
    messages = [{"role": role, "content": text} for role, text in zip(roles, turns)]
    for index, weight in (weights or {}).items():
        messages[index]["weight"] = weight
    return {"messages": messages}


def test_trained_tokens_are_the_assistant_reply_and_its_end_marker(tokenizer):
    # <|im_start|> user hello there <|im_end|> | <|im_start|> assistant [general kenobi <|im_end|>]
    total, trained = conversation_tokens(tokenizer, chat("hello there", "general kenobi"))
    assert (total, trained) == (10, [7, 8, 9])
    ids = tokenizer(tokenizer.apply_chat_template(chat("hello there", "general kenobi")["messages"], tokenize=False),
                    add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens([ids[i] for i in trained]) == ["general", "kenobi", "<|im_end|>"]


def test_weight_zero_turns_are_not_trained(tokenizer):
    conversation = chat("hello", "no", "what", "yes paris", weights={1: 0})
    total, trained = conversation_tokens(tokenizer, conversation)
    # 4 messages of 3 + words: 4 + 4 + 4 + 5 = 17; only "yes paris <|im_end|>" (positions 14–16) is trained.
    assert total == 17 and trained == [14, 15, 16]
    conversation["messages"][1]["weight"] = 1
    assert conversation_tokens(tokenizer, conversation)[1] == [6, 7, 14, 15, 16]


def test_whole_prefixes_carry_the_templates_default_system_prompt(tokenizer):
    total, trained = conversation_tokens(tokenizer, chat("hello", "general kenobi"), DEFAULT_SYSTEM_TEMPLATE)
    # the template's system prompt (6 tokens) comes first: 6 + 4 + 5
    assert total == 15 and trained == [12, 13, 14]


def test_a_template_whose_prefixes_differ_is_counted_from_each_prefix_rendering(tokenizer):
    # One turn: the prefix property holds, the end marker is trained as part of the reply.
    assert conversation_tokens(tokenizer, chat("hello", "yes"), END_MARKER_TEMPLATE) == (9, [6, 7, 8])
    # Two turns: the first reply's rendering ends with the marker, the whole does not there. Each reply's
    # tokens are then those its own rendering adds to the prefix before it (tokens 6–8 and 14–16 of 17).
    total, trained = conversation_tokens(tokenizer, chat("hello", "yes", "what", "no"), END_MARKER_TEMPLATE)
    assert total == 17 and trained == [6, 7, 8, 14, 15, 16]


def test_statistics_truncation_and_context(tokenizer):
    # A message costs 3 tokens + its words; an assistant message trains on its words and <|im_end|>.
    counter = ChatTokenCounter(tokenizer, max_length=12, context_length=11)
    counter.add(chat("hello", "yes"), split="train", where="line 1")  # 8 tokens, trained 6–7
    counter.add(chat("hello there general kenobi", "yes no"), split="train", where="line 2")  # 12, trained 9–11
    counter.add(chat("what is the capital of france", "paris"), split="validation", where="line 3")  # 13, trained 11–12
    counter.add(chat("hello", "yes", "what", "no"), split="train", where="line 4")  # 16, trained 6–7 and 14–15
    report = counter.report(base_model="word", base_model_name="Word")
    assert report["truncated_at"] == 11  # the context is shorter than max_length
    assert (report["conversations"], report["p50"], report["p95"], report["max"], report["mean"]) == (4, 12, 16, 16, 12.25)
    assert report["tokens"] == 8 + 12 + 13 + 16
    assert report["over_max_length"] == 2 and report["over_context_length"] == 3 and report["truncated"] == 3
    assert report["tokens_cut"] == 1 + 2 + 5
    assert report["trained_tokens"] == 2 + 3 + 2 + 4
    # kept below position 11: line 1 both, line 2 positions 9–10, line 3 none (skipped), line 4 positions 6–7
    assert report["trained_tokens_kept"] == 2 + 2 + 0 + 2 and report["trained_tokens_cut"] == 5
    assert report["skipped_after_truncation"] == 1
    assert report["train"] == {"conversations": 3, "tokens": 36, "trained_tokens": 9, "trained_tokens_kept": 6}
    assert report["validation"] == {"conversations": 1, "tokens": 13, "trained_tokens": 2, "trained_tokens_kept": 0}
    assert "cut at 11 tokens" in report["truncation"]
    assert sum(report["histogram"]["counts"]) == 4
    warnings = " ".join(warnings_for(report))
    assert "longer than Word's context of 11 tokens" in warnings and "1 conversation(s) keep no trained token" in warnings


def test_conversations_the_template_refuses_are_reported_not_raised(tokenizer):
    counter = ChatTokenCounter(tokenizer, max_length=64, template=STRICT_TEMPLATE)
    counter.add(chat("hello", "yes"), split="train", where="line 1")
    counter.add({"messages": [{"role": "assistant", "content": "yes"}, {"role": "user", "content": "no"},
                              {"role": "assistant", "content": "yes"}]}, split="train", where="line 2")
    report = counter.report()
    assert report["conversations"] == 1
    assert report["template_errors"]["count"] == 1
    (example,) = report["template_errors"]["examples"]
    assert example["where"] == "line 2" and "roles must alternate" in example["reason"]
    assert "refuses 1 conversation(s) (first: line 2" in " ".join(warnings_for(report))

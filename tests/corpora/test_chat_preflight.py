"""Chat datasets' preflight (corpora/chat.py, preflight.run_chat_preflight), without
Django: every reason a line is refused, with its line number; detection; the
prompt/completion conversion; duplicates; a seeded split of whole conversations."""
from __future__ import annotations

import io
import json

import pytest

from corpora import parsing
from corpora.chat import MAX_MESSAGES
from corpora.preflight import PreflightOptions, run_preflight

GOOD = {"messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hello there"},
                     {"role": "assistant", "content": "General Kenobi"}]}


def _user(text="Hi"):
    return {"role": "user", "content": text}


def _assistant(text="Hello", **extra):
    return {"role": "assistant", "content": text, **extra}


def preflight(lines, tmp_path, *, name="chat.jsonl", **options):
    """Run the preflight on JSONL lines (objects are dumped, strings sent as they are)."""
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    info = parsing.detect_format(name)
    stream = parsing.open_text(io.BytesIO(text.encode()), info, max_decompressed_bytes=10**9)
    workdir = tmp_path / f"work-{len(list(tmp_path.iterdir()))}"
    workdir.mkdir()
    options.setdefault("max_rejected_fraction", 1.0)
    return run_preflight(stream, info, PreflightOptions(**options), str(workdir))


def stored(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


# (the bad line, the reason it is counted under, words its detail must say)
BAD_LINES = [
    ("[1, 2]", "expected a JSON object, found list", ""),
    ('{"messages": [', "invalid JSON", ""),
    ({"text": "hi", "label": "x"}, "no messages", "'label', 'text'"),
    ({"messages": "Hello"}, "messages not a list", "found a string"),
    ({"messages": {"role": "user"}}, "messages not a list", "found an object"),
    ({"messages": []}, "empty conversation", "'messages' is empty"),
    ({"messages": [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)}, "too many messages", f"at most {MAX_MESSAGES}"),
    ({"messages": ["Hello", _assistant()]}, "message not an object", "message 1"),
    ({"messages": [{"content": "Hi"}, _assistant()]}, "missing role", "message 1 has no 'role'"),
    ({"messages": [{"role": "bot", "content": "Hi"}, _assistant()]}, "unknown role", "role \"bot\""),
    ({"messages": [{"role": 7, "content": "Hi"}, _assistant()]}, "unknown role", "role 7"),
    ({"messages": [{"role": "user"}, _assistant()]}, "missing content", "message 1 (user) has no 'content'"),
    ({"messages": [_user(), {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]}, "content not a string",
     "message 2 (assistant): 'content' must be a string, found a list"),
    ({"messages": [_user(), {"role": "assistant", "content": None}]}, "content not a string", "found null"),
    ({"messages": [_user("   \n"), _assistant()]}, "empty content", "message 1 (user) has empty content"),
    ({"messages": [{"role": "user", "content": "Hi", "name": "bob"}, _assistant()]}, "unknown key",
     "names are not supported"),
    ({"messages": [_user(), _assistant()], "metadata": {"id": 1}}, "unknown key", "'metadata'"),
    ({"messages": [_user(), _assistant(weight=0.5)]}, "invalid weight", "weight must be 0 or 1, found 0.5"),
    ({"messages": [_user(), _assistant(weight=True)]}, "invalid weight", "found true"),
    ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x", "weight": 1e400}]}',
     "invalid weight", "found Infinity"),
    ({"messages": [{"role": "user", "content": "Hi", "weight": 1}, _assistant()]}, "weight on a non-assistant message",
     "message 1 (user) has a weight"),
    ({"messages": [{"role": "system", "content": "Be brief."}, _user()]}, "no assistant message", "nothing to train on"),
    ({"messages": [_user(), _assistant(weight=0)]}, "no trained assistant message", "every assistant message has weight 0"),
    ({"messages": [_user(), _assistant(), _user("And then?")]}, "assistant message not last",
     "the last message (message 3) is from the user"),
    ({"messages": [_user(), _assistant()], "tools": [{"type": "function"}]}, "tool calling", "not supported yet"),
    ({"messages": [_user(), {"role": "assistant", "content": "x", "tool_calls": []}]}, "tool calling",
     "message 2: 'tool_calls'"),
    ({"messages": [_user(), {"role": "tool", "content": "42"}, _assistant()]}, "tool calling", "role \"tool\""),
    ({"messages": [_user(), _assistant()], "functions": []}, "tool calling", "'functions'"),
    ({"messages": [_user(), {"role": "assistant", "content": "x", "function_call": {}}]}, "tool calling",
     "'function_call'"),
    ({"messages": [_user(), _assistant()], "prompt": "x"}, "messages and prompt/completion together", "not both"),
    ({"messages": [_user(), _assistant()], "split": "test"}, "invalid split", "found \"test\""),
    ({"prompt": "What is 2+2?"}, "missing content", "'completion' is missing"),
    ({"prompt": ["What"], "completion": "4"}, "content not a string", "'prompt' must be a string, found a list"),
    ({"prompt": "What is 2+2?", "completion": ""}, "empty content", "'completion' is empty"),
    ({"prompt": "What is 2+2?", "completion": "4", "id": 3}, "unknown key", "'id'"),
    ('{"messages": [{"role": "user", "content": "a\\u0000b"}, {"role": "assistant", "content": "x"}]}',
     "column 'messages' contains a NUL character (\\u0000)", ""),
    ('{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid JSON (nested too deeply)", ""),
    ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x", "weight": ' + "9" * 5000 + "}]}",
     "a number with 5,000 characters; at most 100 are accepted", ""),
]


def test_every_bad_line_is_reported_with_its_number_and_reason(tmp_path):
    lines = [GOOD] + [bad for bad, _, _ in BAD_LINES] + [GOOD]
    report = preflight(lines, tmp_path).report
    examples = {e["line"]: e["reason"] for e in report["rejected"]["examples"]}
    for number, (_bad, reason, detail) in enumerate(BAD_LINES, start=2):
        assert number in examples, f"line {number} ({reason}) was accepted"
        assert examples[number].startswith(reason), (number, examples[number])
        assert detail in examples[number], (number, examples[number])
    assert report["rows"] == {"total": len(lines), "accepted": 2, "rejected": len(BAD_LINES), "train": 2,
                              "validation": 0}
    counted = {}
    for _bad, reason, _detail in BAD_LINES:
        key = next(k for k in report["rejected"]["by_reason"] if reason.startswith(k) or k.startswith(reason))
        counted[key] = counted.get(key, 0) + 1
    assert {k: report["rejected"]["by_reason"][k] for k in counted} == counted
    assert sum(report["rejected"]["by_reason"].values()) == len(BAD_LINES)


def test_the_first_100_rejected_lines_are_listed_and_all_are_counted(tmp_path):
    lines = [GOOD] + [{"messages": [_user()]}] * 150
    report = preflight(lines, tmp_path).report
    assert len(report["rejected"]["examples"]) == 100
    assert [e["line"] for e in report["rejected"]["examples"]] == list(range(2, 102))
    assert report["rejected"]["by_reason"] == {"no assistant message": 150}


def test_a_trailing_user_message_is_accepted_when_the_assistant_messages_are_weighted(tmp_path):
    line = {"messages": [_user(), _assistant("Yes", weight=1), _user("Thanks")]}
    result = preflight([line], tmp_path)
    assert result.report["rows"]["rejected"] == 0
    assert stored(result.train_path) == [line]


def test_weights_are_kept_only_where_given(tmp_path):
    line = {"messages": [_user(), _assistant("Draft", weight=0), _user("Better?"), _assistant("Final", weight=1.0),
                         _user("Ok"), _assistant("Bye")]}
    (conversation,) = stored(preflight([line], tmp_path).train_path)
    assert [m.get("weight", "absent") for m in conversation["messages"]] == ["absent", 0, "absent", 1, "absent", "absent"]
    assert isinstance(conversation["messages"][3]["weight"], int)


def test_too_many_bad_lines_refuse_the_file_naming_the_first(tmp_path):
    lines = [GOOD] * 5 + [{"messages": [{"role": "bot", "content": "x"}]}] * 5
    with pytest.raises(parsing.DatasetFileError) as caught:
        preflight(lines, tmp_path, max_rejected_fraction=0.1)
    assert caught.value.code == "too_many_invalid_rows"
    assert "5 of 10 lines" in caught.value.message and "line 6: unknown role" in caught.value.message


def test_a_file_of_bad_lines_is_refused_naming_the_first(tmp_path):
    with pytest.raises(parsing.DatasetFileError) as caught:
        preflight([{"messages": [_user()]}, {"messages": []}], tmp_path)
    assert caught.value.code == "no_valid_rows"
    assert "line 1: no assistant message" in caught.value.message


def test_a_huge_line_is_a_clear_error_naming_it(tmp_path):
    huge = {"messages": [_user("x " * (parsing.MAX_JSONL_LINE_CHARS // 2)), _assistant()]}
    with pytest.raises(parsing.DatasetFileError) as caught:
        preflight([GOOD, huge], tmp_path)
    assert caught.value.code == "line_too_long" and caught.value.line == 2
    assert "Line 2 is longer than 2,000,000 characters" in caught.value.message


# --- detection ------------------------------------------------------------------------------------

@pytest.mark.parametrize("first", [GOOD, {"prompt": "Hi", "completion": "Hello"}])
def test_chat_jsonl_is_detected_by_itself(tmp_path, first):
    assert preflight([first, GOOD], tmp_path).report["task"] == "chat"


def test_detection_skips_lines_that_are_not_json(tmp_path):
    report = preflight(["{broken", GOOD], tmp_path).report
    assert report["task"] == "chat" and report["rejected"]["examples"][0]["line"] == 1


def test_classification_jsonl_is_still_classification(tmp_path):
    rows = [{"text": f"row {i}", "label": "ab"[i % 2]} for i in range(10)]
    assert preflight(rows, tmp_path).report["task"] == "text_classification"


def test_chat_chosen_explicitly_checks_every_line_as_a_conversation(tmp_path):
    report = preflight([{"text": "hi", "label": "x"}, GOOD], tmp_path, task="chat").report
    assert report["task"] == "chat"
    assert report["rejected"]["examples"] == [{"line": 1, "reason": "no messages: no 'messages' list (nor 'prompt' and "
                                                                   "'completion'); the line has 'label', 'text'"}]


def test_chat_needs_jsonl(tmp_path):
    with pytest.raises(parsing.DatasetFileError) as caught:
        preflight(["text,label", "a,b"], tmp_path, name="chat.csv", task="chat")
    assert caught.value.code == "chat_needs_jsonl" and caught.value.field == "task"


def test_column_names_do_not_apply_to_chat(tmp_path):
    with pytest.raises(parsing.DatasetFileError) as caught:
        preflight([GOOD], tmp_path, column_mapping={"text": "messages"})
    assert caught.value.field == "text_column"


# --- conversion, duplicates, split ------------------------------------------------------------------

def test_prompt_completion_rows_become_a_user_and_an_assistant_message(tmp_path):
    result = preflight([{"prompt": "What is 2+2?", "completion": " 4"}], tmp_path)
    assert stored(result.train_path) == [{"messages": [{"role": "user", "content": "What is 2+2?"},
                                                       {"role": "assistant", "content": " 4"}]}]
    assert result.report["conversations"]["from_prompt_completion"] == 1
    assert result.head == stored(result.train_path)


def test_exact_duplicate_conversations_are_reported(tmp_path):
    other = {"messages": [_user("Other"), _assistant()]}
    reweighted = {"messages": [_user("Other"), _assistant(weight=1)]}  # not the same: the weight differs
    report = preflight([GOOD, other, GOOD, reweighted, GOOD], tmp_path).report
    assert report["duplicates"]["exact_conversations"] == 2
    assert report["duplicates"]["examples"] == [{"line": 3}, {"line": 5}]
    assert any("2 exact duplicate conversation(s)" in w for w in report["warnings"])


def _numbered(n):
    return [{"messages": [_user(f"Question {i}"), _assistant(f"Answer {i}"), _user(f"More {i}"), _assistant(f"Yes {i}")]}
            for i in range(n)]


def test_the_split_keeps_conversations_whole_seeded(tmp_path):
    lines = _numbered(60) + [_numbered(1)[0]] * 3  # conversation 0 four times
    first = preflight(lines, tmp_path, validation_fraction=0.25, seed=5)
    train, validation = stored(first.train_path), stored(first.validation_path)
    assert len(validation) == round(63 * 0.25) or abs(len(validation) - 63 * 0.25) <= 4
    expected = sorted(json.dumps(c, sort_keys=True) for c in lines)
    assert sorted(json.dumps(c, sort_keys=True) for c in train + validation) == expected  # nothing cut or merged
    copies = [c for c in train + validation if c == lines[0]]
    assert len(copies) == 4 and (all(c in train for c in copies) or all(c in validation for c in copies))
    assert first.report["split"]["whole_conversations"] and first.report["leakage"]["texts_in_both_splits"] == 0
    again = preflight(lines, tmp_path, validation_fraction=0.25, seed=5)
    assert stored(again.validation_path) == validation
    other_seed = preflight(lines, tmp_path, validation_fraction=0.25, seed=6)
    assert stored(other_seed.validation_path) != validation


def test_a_split_given_in_the_file_is_used(tmp_path):
    lines = [{**c, "split": "validation" if i < 3 else "train"} for i, c in enumerate(_numbered(10))]
    result = preflight(lines, tmp_path)
    assert result.report["split"]["source"] == "given"
    assert [c["messages"][0]["content"] for c in stored(result.validation_path)] == ["Question 0", "Question 1", "Question 2"]
    assert all("split" not in c for c in stored(result.train_path))


def test_without_a_tokenizer_lengths_are_counted_in_words(tmp_path):
    report = preflight([GOOD, {"prompt": "one two three", "completion": "four"}], tmp_path).report
    assert report["tokens"] is None and report["tokens_unavailable"]
    assert report["lengths"]["unit"] == "words" and report["lengths"]["max"] == 7 and report["lengths"]["count"] == 2

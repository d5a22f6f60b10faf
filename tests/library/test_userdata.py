"""A user's own files: course.userdata.load_user_file and `python -m course.validate_data`.

Real files first (LLaMA-Factory's demo data, tests/fixtures/data/llamafactory/), with the counts
of accepted and rejected records, then each shape of record that used to crash or vanish:
JSON arrays, tool calls (ShareGPT and OpenAI), list-of-parts and null contents, a top-level
system field, images, unknown fields, column mappings. Every rejection names file, line or array
index, and field.
"""
from __future__ import annotations

import json
import re

import pytest

from course.data import (IGNORE_INDEX, DataFormatError, load_raw, to_messages,
                         tokenize_for_sft, validate_file)
from course.grading import load_reference
from course.templates import default_system_prompt
from course.userdata import ColumnMapping, load_user_file
from course.validate_data import main as validate_main
from real_fixtures import LLAMAFACTORY, real_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# file -> (format, accepted, rejected, {kind: count}, unused fields)
EXPECTED = {
    "alpaca_en_demo.json": ("alpaca", 200, 0, {}, {}),
    "identity.json": ("alpaca", 91, 0, {}, {}),
    "glaive_toolcall_en_demo.json": ("sharegpt", 41, 59, {"tool_calls": 59}, {}),
    "mllm_demo.json": ("messages", 0, 6, {"media": 6}, {}),
    "v1_sft_demo.jsonl": ("messages", 50, 0, {}, {}),  # text parts joined, loss_weight read
}


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(records: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


QA = [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Tom."}]


# --- real files --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_files_counts(name):
    fmt, accepted, rejected, kinds, unused = EXPECTED[name]
    data = load_user_file(LLAMAFACTORY / name)
    assert (data.format, len(data.records), len(data.rejected)) == (fmt, accepted, rejected)
    assert {k: len(v) for k, v in data.rejected_by_kind().items()} == kinds
    assert data.unused_fields == unused
    for r in data.rejected:  # every rejection says where: file[index] or file:line
        assert re.search(rf"{re.escape(name)}(\[\d+\]|:\d+)$", r.where), r
    assert data.total == accepted + rejected


def test_real_files_load_validate_normalise_label():
    """load -> validate -> normalise -> labels on the accepted records of every real file,
    with Qwen2.5's real tokenizer: every conversation trains something, and step 2's labels
    built by hand equal the template's."""
    tok = real_tokenizer("qwen2.5")
    step2 = load_reference("step2_masking", "masking_exercise")
    total = 0
    for name in sorted(EXPECTED):
        data = load_user_file(LLAMAFACTORY / name, tokenizer=tok)
        ds = data.dataset()
        if not len(ds):
            continue
        assert ds.column_names == ["id", "messages"]
        hand = ds.map(step2.labels_for_batch, batched=True, fn_kwargs={"tokenizer": tok},
                      remove_columns=ds.column_names, keep_in_memory=True)
        for record, labels in zip(data.records, hand["labels"]):
            assert record["messages"][0]["content"] == default_system_prompt(tok)
            lib = tokenize_for_sft(record["messages"], tok, record_id=record["id"])
            assert lib["labels"] == labels, record["id"]
            assert any(t != IGNORE_INDEX for t in labels), record["id"]
            total += 1
    assert total == 200 + 91 + 41 + 50


def test_dataset_info_mapping_gives_the_same_result():
    info = json.loads((LLAMAFACTORY / "dataset_info.json").read_text())
    for key, name in [("glaive_toolcall_en_demo", "glaive_toolcall_en_demo.json"),
                      ("mllm_demo", "mllm_demo.json"), ("identity", "identity.json")]:
        mapped = load_user_file(LLAMAFACTORY / name, mapping=info[key])
        detected = load_user_file(LLAMAFACTORY / name)
        assert mapped.records == detected.records, key
        assert [r.kind for r in mapped.rejected] == [r.kind for r in detected.rejected], key


# --- file layouts ------------------------------------------------------------------------------
def test_json_array_and_one_line_array_and_jsonl(tmp_path):
    records = [{"instruction": "Who?", "input": "", "output": "Tom."}] * 3
    pretty = write(tmp_path, "a.json", json.dumps(records, indent=2))
    one_line = write(tmp_path, "b.jsonl", json.dumps(records))
    lines = write(tmp_path, "c.jsonl", jsonl(records))
    for path, layout in [(pretty, "JSON array"), (one_line, "JSON array"), (lines, "JSON lines")]:
        data = load_user_file(path)
        assert (data.layout, len(data.records), data.rejected) == (layout, 3, []), path
    assert load_user_file(lines).records[1]["id"] == f"{lines}:2"  # named by its line
    assert load_user_file(pretty).records[1]["id"] == f"{pretty}[1]"  # by its array index


def test_invalid_json_is_named_by_line(tmp_path):
    path = write(tmp_path, "d.jsonl", jsonl([{"messages": QA}]) + "{oops\n\n" + "[1, 2]\n")
    data = load_user_file(path)
    assert len(data.records) == 1
    assert [(r.where, r.kind) for r in data.rejected] == [(f"{path}:2", "invalid_json"),
                                                          (f"{path}:4", "not_an_object")]
    broken = write(tmp_path, "e.json", '[\n  {"messages": []},\n  {oops}\n]')
    with pytest.raises(DataFormatError, match=r"e\.json:3: invalid JSON array"):
        load_user_file(broken)
    with pytest.raises(DataFormatError, match="cannot tell the format from the fields"):
        load_user_file(write(tmp_path, "f.jsonl", jsonl([{"text": "hello"}])))


# --- records that used to crash or vanish ------------------------------------------------------
def test_sharegpt_tool_calls_are_rejected_with_file_line_and_field(tmp_path):
    rows = [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"conversations": [{"from": "human", "value": "Weather?"},
                           {"from": "function_call", "value": "{\"name\": \"w\"}"},
                           {"from": "observation", "value": "{\"t\": 20}"},
                           {"from": "gpt", "value": "20 degrees."}]},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hi"}],
         "tools": "[{\"name\": \"w\"}]"},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "Hi"}]},
    ]
    path = write(tmp_path, "g.jsonl", jsonl(rows))
    data = load_user_file(path)
    assert len(data.records) == 1
    got = [(r.where, r.field, r.kind) for r in data.rejected]
    assert got == [(f"{path}:2", "conversations[1].from", "tool_calls"),
                   (f"{path}:3", "tools", "tool_calls"),
                   (f"{path}:4", "conversations[1].from", "unknown_role")]
    assert "tool calls are not supported" in str(data.rejected[0])


def test_openai_tool_calls_null_and_list_contents_are_rejected(tmp_path):
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "w", "arguments": "{}"}}]}
    rows = [{"messages": QA},
            {"messages": [QA[0], call, {"role": "tool", "content": "20"}, QA[1]]},
            {"messages": [QA[0], {"role": "assistant", "content": None}]},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "Who?"},
                                                        {"type": "image_url", "url": "x"}]},
                          QA[1]]},
            {"messages": [{"role": "user", "content": [{"type": "json", "value": "{}"}]},
                          QA[1]]},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "Who?"}]},
                          QA[1]]}]
    path = write(tmp_path, "h.jsonl", jsonl(rows))
    data = load_user_file(path)
    got = [(r.where, r.field, r.kind) for r in data.rejected]
    assert got == [(f"{path}:2", "messages[1].role", "tool_calls"),
                   (f"{path}:3", "messages[1].content", "missing_field"),
                   (f"{path}:4", "messages[0].content[1].type", "media"),
                   (f"{path}:5", "messages[0].content[0]", "content_parts")]
    assert [r["messages"] for r in data.records] == [QA, QA]  # OpenAI text parts are joined


def test_system_field_is_kept_and_unknown_fields_are_counted(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}],
             "system": "Be brief.", "source": "web", "score": i} for i in range(3)]
    rows[2]["source"] = None
    data = load_user_file(write(tmp_path, "i.jsonl", jsonl(rows)))
    assert data.records[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert data.unused_fields == {"score": 3, "source": 3}
    assert "not used by the course (ignored): 'score' (3 records)" in data.summary()
    system_turn = [{"from": "system", "value": "X"}]
    both = dict(rows[0], conversations=system_turn + rows[0]["conversations"])
    data = load_user_file(write(tmp_path, "j.jsonl", jsonl([both])))
    assert data.rejected[0].kind == "ambiguous_system"


def test_structure_checks(tmp_path):
    rows = [{"messages": [QA[1], QA[0]]},                      # assistant first
            {"messages": [QA[0]]},                             # no answer
            {"messages": [QA[0], {"role": "assistant", "content": "  "}]},
            {"messages": [QA[0], QA[1], {"role": "system", "content": "late"}, QA[0], QA[1]]},
            {"messages": [{"role": "system", "content": "S"}] + QA + QA}]
    data = load_user_file(write(tmp_path, "k.jsonl", jsonl(rows)))
    assert [(r.field, r.kind) for r in data.rejected] == [
        ("turn 0", "role_order"), ("turn 0", "no_answer"), ("turn 1", "empty_content"),
        ("turn 2", "role_order")]
    assert len(data.records) == 1 and len(data.records[0]["messages"]) == 5


def test_alpaca_column_mapping_with_history_and_system(tmp_path):
    rows = [{"q": "Where?", "ctx": "Tom ran home.", "a": "Home.", "sys": "Be brief.",
             "hist": [["Who?", "Tom."]]}]
    entry = {"file_name": "l.json", "columns": {"prompt": "q", "query": "ctx", "response": "a",
                                                 "system": "sys", "history": "hist"}}
    data = load_user_file(write(tmp_path, "l.json", json.dumps(rows)), mapping=entry)
    assert data.records[0]["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who?"},
        {"role": "assistant", "content": "Tom."},
        {"role": "user", "content": "Where?\n\nTom ran home."},
        {"role": "assistant", "content": "Home."}]
    assert ColumnMapping.from_dataset_info({"formatting": "sharegpt",
                                            "tags": {"role_tag": "role"}}).name == "messages"
    with pytest.raises(DataFormatError, match="formatting 'ranking'"):
        ColumnMapping.from_dataset_info({"formatting": "ranking"})


def test_errors_downstream_name_the_file_and_line(tmp_path):
    """Labels built from a user's file name the record by file:line, not by its row index."""
    path = write(tmp_path, "m.jsonl", jsonl([{"messages": QA}, {"messages": QA}]))
    data = load_user_file(path)
    step2 = load_reference("step2_masking", "masking_exercise")
    batch = {"id": [r["id"] for r in data.records],
             "messages": [r["messages"] for r in data.records]}
    batch["messages"][1] = [{"role": "user", "content": "Who?"}]  # corrupted after loading
    with pytest.raises(ValueError, match=re.escape(f"record {path}:2:")):
        step2.labels_for_batch(batch, tokenizer=real_tokenizer("qwen2.5"))


def test_the_course_loaders_point_to_the_user_file_loader():
    with pytest.raises(ValueError, match="load_user_file"):
        load_raw("my_data.jsonl")
    with pytest.raises(DataFormatError, match=r"identity\.json:1: invalid JSON .*load_user_file"):
        validate_file(LLAMAFACTORY / "identity.json")  # a JSON array, not JSON lines
    tool = {"id": "x-1", "conversations": [{"from": "human", "value": "Hi"},
                                           {"from": "function_call", "value": "{}"}]}
    with pytest.raises(DataFormatError, match="record x-1: ShareGPT role 'function_call'"):
        to_messages(tool)  # used to be a bare KeyError


# --- the command -------------------------------------------------------------------------------
def test_validate_data_command(capsys):
    files = [str(LLAMAFACTORY / n) for n in ("identity.json", "glaive_toolcall_en_demo.json")]
    assert validate_main(files) == 0
    out = capsys.readouterr().out
    assert "identity.json: alpaca (JSON array), 91 records: 91 accepted, 0 rejected" in out
    assert "100 records: 41 accepted, 59 rejected" in out
    assert "rejected    59  tool_calls: tool calls are not supported" in out
    assert "glaive_toolcall_en_demo.json[0] field 'tools'" in out
    assert validate_main(files + ["--strict"]) == 1
    assert validate_main([str(LLAMAFACTORY / "mllm_demo.json")]) == 1  # nothing usable
    info = str(LLAMAFACTORY / "dataset_info.json")
    assert validate_main([files[1], "--dataset-info", info]) == 0
    assert validate_main([str(LLAMAFACTORY / "nope.json")]) == 1
    assert "nope.json: cannot be read" in capsys.readouterr().out


# --- LLaMA-Factory's newer format: text parts and loss_weight ----------------------------------
def _turn(role: str, *texts: str, weight=None) -> dict:
    turn = {"role": role, "content": [{"type": "text", "value": t} for t in texts]}
    if weight is not None:
        turn["loss_weight"] = weight
    return turn


def test_llamafactory_v1_parts_are_joined_and_loss_weight_is_the_mask(tmp_path):
    first = json.loads((LLAMAFACTORY / "v1_sft_demo.jsonl").read_text().splitlines()[0])
    data = load_user_file(LLAMAFACTORY / "v1_sft_demo.jsonl")
    assert data.records[0]["messages"] == [
        {"role": m["role"], "content": m["content"][0]["value"]} for m in first["messages"]]
    rows = [
        {"messages": [_turn("user", "Who", "?", weight=0.0),
                      _turn("assistant", "Tom.", weight=0),        # context only
                      _turn("user", "Where?", weight=0),
                      _turn("assistant", "Ho", "me.", weight=1.0)]},
        {"messages": [_turn("user", "Who?", weight=0), _turn("assistant", "Tom.", weight=0.5)]},
        {"messages": [_turn("user", "Who?", weight=1), _turn("assistant", "Tom.", weight=1)]},
        {"messages": [_turn("user", "Who?"), _turn("assistant", "Tom.", weight=True)]},
        {"messages": [_turn("user", "Who?"), _turn("assistant", "Tom.", weight=0)]},
        {"messages": [_turn("user", "Who?"),
                      {"role": "assistant", "content": [{"type": "image", "value": "a.png"}]}]},
    ]
    path = write(tmp_path, "v1.jsonl", jsonl(rows))
    data = load_user_file(path)
    assert [(r.where, r.field, r.kind) for r in data.rejected] == [
        (f"{path}:2", "messages[1].loss_weight", "loss_weight"),
        (f"{path}:3", "messages[0].loss_weight", "loss_weight"),
        (f"{path}:4", "messages[1].loss_weight", "loss_weight"),
        (f"{path}:5", "messages[].loss_weight", "nothing_trained"),
        (f"{path}:6", "messages[1].content[0].type", "media")]
    assert "0.5: the course trains a turn fully or not at all" in data.rejected[0].reason
    assert "1 on a user turn" in data.rejected[1].reason
    [record] = data.records
    assert record["messages"] == [
        {"role": "user", "content": "Who?"},
        {"role": "assistant", "content": "Tom.", "train": False},
        {"role": "user", "content": "Where?"}, {"role": "assistant", "content": "Home."}]
    assert data.unused_fields == {}


@pytest.mark.parametrize("which", ["course", "qwen2.5"])  # {% generation %} markers / prefixes
def test_an_untrained_answer_is_context_only(which):
    from course.models import load_tokenizer

    tok = load_tokenizer() if which == "course" else real_tokenizer("qwen2.5")
    convo = [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Tom."},
             {"role": "user", "content": "Where?"}, {"role": "assistant", "content": "Home."}]
    full = tokenize_for_sft(convo, tok)
    masked = tokenize_for_sft([*convo[:1], dict(convo[1], train=False), *convo[2:]], tok)
    assert masked["input_ids"] == full["input_ids"]  # the same text: the answer stays in context
    trained = [i for i, t in enumerate(full["labels"]) if t != IGNORE_INDEX]
    kept = [i for i, t in enumerate(masked["labels"]) if t != IGNORE_INDEX]
    assert kept and set(kept) < set(trained)
    assert tok.decode([full["input_ids"][i] for i in kept]).startswith("Home.")
    assert tok.decode([full["input_ids"][i] for i in sorted(set(trained) - set(kept))]
                      ).startswith("Tom.")
    as_dataset = [dict(t, train=None) for t in convo]  # Arrow fills a missing key with None
    assert tokenize_for_sft(as_dataset, tok)["labels"] == full["labels"]

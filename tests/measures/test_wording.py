"""Loading a clinic's licensed wording: validated, returns new instruments, registry untouched."""

from __future__ import annotations

import copy
import json

import pytest

from ketaflow.measures.instruments import get_instrument
from ketaflow.measures.wording import WORDING_FORMAT, WordingError, load_wording_file, parse_wording


def cssrs_document() -> dict:
    items = {
        item_id: {"text": f"Licensed question {item_id}?", "options": {"0": "No", "1": "Yes"}}
        for item_id in ("1", "2", "3", "4", "5", "6", "6b")
    }
    return {
        "format": WORDING_FORMAT,
        "licence": "C-SSRS electronic sublicence 42, Example Clinic, to 2027-12-31",
        "instruments": [
            {"code": "c-ssrs", "instructions": "Past month, unless stated.", "items": items}
        ],
    }


def test_wording_is_applied_to_a_copy():
    reworded = parse_wording(cssrs_document())["C-SSRS"]
    assert reworded.item("6b").text == "Licensed question 6b?"
    assert reworded.instructions == "Past month, unless stated."
    assert reworded.full_wording
    assert reworded.wording_source.startswith("C-SSRS electronic sublicence 42")
    description = reworded.describe()
    assert all(item["text"] for item in description["items"])
    # The registry keeps its short labels only.
    shipped = get_instrument("C-SSRS")
    assert all(item.text is None for item in shipped.items)
    assert not shipped.full_wording


def test_scoring_is_unchanged_by_wording():
    reworded = parse_wording(cssrs_document())["C-SSRS"]
    answers = {"1": 1, "2": 1, "3": 1, "4": 0, "5": 0, "6": 0}
    assert reworded.score(answers) == get_instrument("C-SSRS").score(answers)


def test_option_labels_are_optional_and_partial():
    document = {
        "format": WORDING_FORMAT,
        "licence": "MOAA/S wording, Example Clinic",
        "instruments": [
            {
                "code": "MOAAS",
                "items": {"1": {"text": "Rate responsiveness", "options": {"5": "A"}}},
            }
        ],
    }
    moaas = parse_wording(document)["MOAA/S"]
    labels = {option.value: option.label for option in moaas.item("1").options}
    assert labels[5] == "A"
    assert labels[0] == "No response (loss of consciousness)"


def test_several_scales_in_one_file(tmp_path):
    document = cssrs_document()
    document["instruments"].append(
        {
            "code": "MADRS",
            "items": {str(i): {"text": f"MADRS item {i} licensed text"} for i in range(1, 11)},
        }
    )
    path = tmp_path / "wording.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    reworded = load_wording_file(path)
    assert set(reworded) == {"C-SSRS", "MADRS"}
    assert reworded["MADRS"].item("10").text == "MADRS item 10 licensed text"


def broken(mutate) -> dict:
    document = copy.deepcopy(cssrs_document())
    mutate(document)
    return document


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ([], ""),
        (broken(lambda d: d.update(format="v2")), "format"),
        (broken(lambda d: d.pop("licence")), "licence"),
        (broken(lambda d: d.update(licence="  ")), "licence"),
        (broken(lambda d: d.update(instruments=[])), "instruments"),
        (broken(lambda d: d.update(extra=1)), ""),
        (broken(lambda d: d["instruments"][0].update(code="HAM-D")), "instruments[0].code"),
        (broken(lambda d: d["instruments"].append(d["instruments"][0])), "instruments[1].code"),
        (broken(lambda d: d["instruments"][0]["items"].pop("6b")), "instruments[0].items.6b"),
        (
            broken(lambda d: d["instruments"][0]["items"].update({"7": {"text": "x"}})),
            "instruments[0].items.7",
        ),
        (
            broken(lambda d: d["instruments"][0]["items"]["2"].update(text="")),
            "instruments[0].items.2.text",
        ),
        (
            broken(lambda d: d["instruments"][0]["items"]["2"].update(text="x" * 2001)),
            "instruments[0].items.2.text",
        ),
        (
            broken(lambda d: d["instruments"][0]["items"]["2"]["options"].update({"2": "Maybe"})),
            "instruments[0].items.2.options.2",
        ),
        (
            broken(lambda d: d["instruments"][0]["items"]["2"]["options"].update({"y": "Yes"})),
            "instruments[0].items.2.options.y",
        ),
        (
            broken(lambda d: d["instruments"][0]["items"]["2"].update(note="?")),
            "instruments[0].items.2",
        ),
    ],
)
def test_invalid_documents_say_where(document, where):
    with pytest.raises(WordingError) as caught:
        parse_wording(document)
    assert caught.value.where == where
    assert isinstance(caught.value, ValueError)


def test_unreadable_files(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(WordingError, match="cannot read"):
        load_wording_file(missing)
    not_json = tmp_path / "bad.json"
    not_json.write_text("{\n  'single quotes': 1\n}", encoding="utf-8")
    with pytest.raises(WordingError, match="line 2"):
        load_wording_file(not_json)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"licence": "Åsberg"}'.encode("latin-1"))
    with pytest.raises(WordingError, match="not UTF-8"):
        load_wording_file(latin1)

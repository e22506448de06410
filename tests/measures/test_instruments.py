"""Rating scales: worked examples, band boundaries, validation, and Hypothesis properties."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketaflow.core.errors import InvalidInput
from ketaflow.measures.instruments import (
    INSTRUMENT_CODES,
    AnswerError,
    Instrument,
    Severity,
    UnknownInstrument,
    all_instruments,
    get_instrument,
)
from ketaflow.measures.instruments.cadss import CADSS6_ITEM_IDS, change_from_pre_dose
from ketaflow.measures.instruments.cssrs import CSSRS
from ketaflow.measures.instruments.phq9 import PHQ9, PRORATING_UNCONFIRMED

SUM_SCALES = [i for i in all_instruments() if i.code != "C-SSRS"]


def numbered(values: list[int]) -> dict[str, int]:
    return {str(number): value for number, value in enumerate(values, start=1)}


def answers_with_total(instrument: Instrument, total: int, keep_zero: tuple[str, ...] = ()) -> dict:
    """Fill scored items greedily, leaving `keep_zero` items at their minimum where possible."""
    items = [i for i in instrument.items if i.scored]
    answers = {i.id: i.min_value for i in items}
    remaining = total - sum(answers.values())
    order = [i for i in items if i.id not in keep_zero] + [i for i in items if i.id in keep_zero]
    for item in order:
        step = min(item.max_value - answers[item.id], remaining)
        answers[item.id] += step
        remaining -= step
    assert remaining == 0
    return answers


# -- registry -----------------------------------------------------------------------------------


def test_registry_holds_every_scale_of_the_issue():
    for code in ("PHQ-9", "GAD-7", "MADRS", "QIDS-SR16", "C-SSRS", "CADSS", "MOAA/S"):
        assert code in INSTRUMENT_CODES
        assert get_instrument(code).code == code


@pytest.mark.parametrize(
    ("alias", "code"),
    [
        ("phq-9", "PHQ-9"),
        ("PHQ9", "PHQ-9"),
        ("gad7", "GAD-7"),
        ("madrs", "MADRS"),
        ("qids-sr16", "QIDS-SR16"),
        ("c-ssrs", "C-SSRS"),
        ("CSSRS", "C-SSRS"),
        ("MOAAS", "MOAA/S"),
        ("moaa/s", "MOAA/S"),
        ("cadss", "CADSS"),
        ("bprs+", "BPRS+"),
    ],
)
def test_lookup_ignores_case_and_punctuation(alias, code):
    assert get_instrument(alias).code == code


def test_unknown_code_raises_naming_it():
    with pytest.raises(UnknownInstrument, match="HAM-D"):
        get_instrument("HAM-D")


# -- PHQ-9 (Kroenke et al. 2001) -----------------------------------------------------------------


def test_phq9_manual_worked_example():
    # PHQ instruction manual example: 3 items scored 1, 2 items scored 2 and 3 items scored 3
    # give a depression severity score of 16 (moderately severe, Kroenke et al. 2001).
    score = PHQ9.score(numbered([1, 1, 1, 2, 2, 3, 3, 3, 0]))
    assert score.total == 16
    assert score.band.code == "moderately_severe"
    assert score.flags == ()


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately_severe"),
        (19, "moderately_severe"),
        (20, "severe"),
        (27, "severe"),
    ],
)
def test_phq9_band_boundaries(total, band):
    score = PHQ9.score(answers_with_total(PHQ9, total, keep_zero=("9",)))
    assert (score.total, score.band.code) == (total, band)


@pytest.mark.parametrize("item9", [1, 2, 3])
def test_phq9_item9_flags_whatever_the_total(item9):
    score = PHQ9.score(numbered([0, 0, 0, 0, 0, 0, 0, 0, item9]))
    assert score.band.code == "minimal"
    (flag,) = score.flags
    assert flag.code == "suicidality_item_positive"
    assert flag.severity is Severity.CRITICAL
    assert flag.requires_acknowledgement
    assert flag.item_id == "9"


def test_phq9_difficulty_question_is_optional_and_unscored():
    without = PHQ9.score(numbered([2] * 8 + [0]))
    with_difficulty = PHQ9.score({**numbered([2] * 8 + [0]), "10": 3})
    assert without.total == with_difficulty.total == 16
    assert with_difficulty.answers["10"] == 3


def test_phq9_missing_item_is_an_error_naming_it_by_default():
    answers = numbered([1] * 9)
    del answers["4"]
    with pytest.raises(AnswerError) as caught:
        PHQ9.score(answers)
    assert caught.value.item_id == "4"
    assert str(caught.value) == "item 4: missing answer"
    # The API maps it like any InvalidInput (422) and the field names the item.
    assert isinstance(caught.value, InvalidInput)
    assert isinstance(caught.value, ValueError)
    assert caught.value.field_name == "answers.4"


def test_phq9_prorating_is_opt_in_and_recorded():
    answers = numbered([2, 2, 3, 3, 2, 2, 2, 2, 0])
    del answers["3"], answers["4"]
    score = PHQ9.score(answers, missing_item_rule=PRORATING_UNCONFIRMED)
    # 7 answered items sum to 12: mean 12/7, total 12 + 2 * 12/7 = 15.43 -> 15.
    assert score.total == 15
    assert score.imputed_items == ("3", "4")
    assert "unconfirmed" in score.missing_rule_applied
    assert "3" not in score.answers  # raw answers stay raw


def test_phq9_prorating_stops_at_two_missing_items():
    answers = numbered([1] * 9)
    del answers["1"], answers["2"], answers["3"]
    with pytest.raises(AnswerError, match="item 1: missing answer"):
        PHQ9.score(answers, missing_item_rule=PRORATING_UNCONFIRMED)


def test_phq9_safety_item_is_never_prorated():
    answers = numbered([1] * 9)
    del answers["9"]
    with pytest.raises(AnswerError) as caught:
        PHQ9.score(answers, missing_item_rule=PRORATING_UNCONFIRMED)
    assert caught.value.item_id == "9"


def test_phq9_ships_full_wording_and_loinc_codes_of_the_reference():
    description = PHQ9.describe()
    assert description["full_wording"] is True
    assert all(item["text"] for item in description["items"])
    assert description["total_loinc"] == {"code": "44261-6", "unconfirmed": False}
    assert description["panel_loinc"] == {"code": "44249-1", "unconfirmed": True}
    item_codes = [item["loinc"]["code"] for item in description["items"][:9]]
    assert item_codes == [
        "44250-9",
        "44255-8",
        "44259-0",
        "44254-1",
        "44251-7",
        "44258-2",
        "44252-5",
        "44253-3",
        "44260-8",
    ]
    answer_codes = [o["loinc"]["code"] for o in description["items"][0]["options"]]
    assert answer_codes == ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]
    assert description["items"][0]["options"][2]["label"] == "More than half the days"


# -- GAD-7 (Spitzer et al. 2006) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "severe"),
        (21, "severe"),
    ],
)
def test_gad7_band_boundaries(total, band):
    gad7 = get_instrument("GAD-7")
    score = gad7.score(answers_with_total(gad7, total))
    assert (score.total, score.band.code, score.flags) == (total, band, ())


def test_gad7_full_wording_and_codes():
    gad7 = get_instrument("GAD-7")
    assert gad7.full_wording
    assert gad7.item("2").text == "Not being able to stop or control worrying"
    assert gad7.total_loinc.code == "70274-6"
    assert gad7.panel_loinc.unconfirmed
    assert len(gad7.scored_items) == 7


# -- MADRS (Montgomery & Åsberg 1979; Snaith bands) ------------------------------------------------


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "absent"),
        (6, "absent"),
        (7, "mild"),
        (19, "mild"),
        (20, "moderate"),
        (34, "moderate"),
        (35, "severe"),
        (60, "severe"),
    ],
)
def test_madrs_snaith_band_boundaries(total, band):
    madrs = get_instrument("MADRS")
    score = madrs.score(answers_with_total(madrs, total, keep_zero=("10",)))
    assert (score.total, score.band.code) == (total, band)


def test_madrs_item10_is_the_suicidality_flag():
    madrs = get_instrument("MADRS")
    assert madrs.score(numbered([4] * 9 + [0])).flags == ()
    flagged = madrs.score(numbered([0] * 9 + [2]))
    assert flagged.flag_codes == ("suicidality_item_positive",)
    assert madrs.flag_rules[0].unconfirmed  # the cut-off is a clinic default


def test_madrs_items_are_0_to_6_and_labels_only():
    madrs = get_instrument("MADRS")
    with pytest.raises(AnswerError, match="item 5: 7 is outside 0-6"):
        madrs.score(numbered([0, 0, 0, 0, 7, 0, 0, 0, 0, 0]))
    assert not madrs.full_wording
    assert all(item.text is None for item in madrs.items)
    assert madrs.item("10").label == "Suicidal thoughts"
    assert madrs.total_loinc is None  # no code found (reference §3)


# -- QIDS-SR16 (Rush et al. 2003; ids-qids.org) ----------------------------------------------------


def test_qids_worked_example_takes_domain_maxima():
    qids = get_instrument("QIDS-SR16")
    # sleep 1-4: 1, 3, 0, 2 -> 3; mood 2; appetite/weight 6-9: 0, 2, 1, 0 -> 2;
    # items 10-14: 1, 2, 0, 1, 2; psychomotor 15-16: 1, 2 -> 2. Total 3+2+2+1+2+0+1+2+2 = 15.
    score = qids.score(numbered([1, 3, 0, 2, 2, 0, 2, 1, 0, 1, 2, 0, 1, 2, 1, 2]))
    assert score.total == 15
    assert score.band.code == "moderate"
    assert score.subscores["sleep"] == 3
    assert score.subscores["appetite_weight"] == 2
    assert score.subscores["psychomotor"] == 2
    assert score.flags == ()


def test_qids_all_items_at_maximum_is_27_not_48():
    qids = get_instrument("QIDS-SR16")
    assert qids.score(numbered([3] * 16)).total == 27


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "none"),
        (5, "none"),
        (6, "mild"),
        (10, "mild"),
        (11, "moderate"),
        (15, "moderate"),
        (16, "severe"),
        (20, "severe"),
        (21, "very_severe"),
        (27, "very_severe"),
    ],
)
def test_qids_band_boundaries(total, band):
    qids = get_instrument("QIDS-SR16")
    # one answer per domain: the first item of each domain carries the domain score
    domain_first_items = ["1", "5", "6", "10", "11", "13", "14", "15", "12"]
    answers = dict.fromkeys((str(i) for i in range(1, 17)), 0)
    remaining = total
    for item_id in domain_first_items:
        answers[item_id] = min(3, remaining)
        remaining -= answers[item_id]
    score = qids.score(answers)
    assert (score.total, score.band.code) == (total, band)


def test_qids_appetite_and_weight_are_either_or_pairs():
    qids = get_instrument("QIDS-SR16")
    answers = dict.fromkeys((str(i) for i in range(1, 17)), 1)
    del answers["7"], answers["8"]
    answers["6"] = 3
    score = qids.score(answers)
    assert score.subscores["appetite_weight"] == 3
    assert score.total == 3 + 8 * 1  # appetite/weight 3, eight other domains at 1
    del answers["6"]
    with pytest.raises(AnswerError, match=r"item 6: missing answer \(answer item 6 or 7\)"):
        qids.score(answers)


def test_qids_names_every_unanswered_pair_at_once():
    qids = get_instrument("QIDS-SR16")
    answers = {str(i): 1 for i in range(1, 17) if i not in (6, 7, 8, 9)}
    with pytest.raises(AnswerError) as caught:
        qids.score(answers)
    assert caught.value.problems == (
        ("6", "missing answer (answer item 6 or 7)"),
        ("8", "missing answer (answer item 8 or 9)"),
    )
    assert [e["field"] for e in caught.value.extensions()["errors"]] == ["answers.6", "answers.8"]
    assert qids.either_or_groups == (("6", "7"), ("8", "9"))
    assert qids.describe()["either_or_groups"] == [["6", "7"], ["8", "9"]]


def test_qids_item12_flags():
    qids = get_instrument("QIDS-SR16")
    answers = dict.fromkeys((str(i) for i in range(1, 17)), 0)
    assert qids.score({**answers, "12": 1}).flag_codes == ("suicidality_item_positive",)


# -- C-SSRS screener (Columbia triage) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "risk"),
    [
        ({"1": 0, "2": 0, "6": 0}, "none"),
        ({"1": 1, "2": 0, "6": 0}, "low"),
        ({"1": 1, "2": 1, "3": 0, "4": 0, "5": 0, "6": 0}, "low"),
        ({"1": 0, "2": 1, "3": 0, "4": 0, "5": 0, "6": 0}, "low"),
        ({"1": 1, "2": 1, "3": 1, "4": 0, "5": 0, "6": 0}, "moderate"),
        ({"1": 0, "2": 0, "6": 1, "6b": 0}, "moderate"),
        ({"1": 1, "2": 1, "3": 1, "4": 1, "5": 0, "6": 0}, "high"),
        ({"1": 1, "2": 1, "3": 0, "4": 0, "5": 1, "6": 0}, "high"),
        ({"1": 0, "2": 0, "6": 1, "6b": 1}, "high"),
    ],
)
def test_cssrs_triage(answers, risk):
    score = CSSRS.score(answers)
    assert score.total is None
    assert score.band.code == risk
    expected_flag = {
        "none": (),
        "low": ("cssrs_risk_low",),
        "moderate": ("cssrs_risk_moderate",),
        "high": ("cssrs_risk_high",),
    }[risk]
    assert score.flag_codes == expected_flag
    assert all(f.requires_acknowledgement == (risk in ("moderate", "high")) for f in score.flags)


def test_cssrs_accepts_booleans_for_yes_no():
    assert CSSRS.score({"1": True, "2": False, "6": False}).band.code == "low"


@pytest.mark.parametrize(
    ("answers", "item_id"),
    [
        ({"1": 1, "2": 0, "3": 0, "6": 0}, "3"),  # skipped when 2 is no: must be absent
        ({"1": 1, "2": 0, "5": 1, "6": 0}, "5"),
        ({"1": 0, "2": 0, "6": 0, "6b": 0}, "6b"),  # asked only when 6 is yes
        ({"1": 0, "2": 0, "6": 1}, "6b"),  # 6 yes needs the 3-month answer
        ({"1": 1, "2": 1, "3": 1, "5": 0, "6": 0}, "4"),  # 2 yes: 3-5 all needed
        ({"2": 0, "6": 0}, "1"),
        ({"1": 0, "2": 0, "6": 2}, "6"),
    ],
)
def test_cssrs_skip_logic_errors_name_the_item(answers, item_id):
    with pytest.raises(AnswerError) as caught:
        CSSRS.score(answers)
    assert caught.value.item_id == item_id


def test_cssrs_positional_answers_follow_skip_logic():
    assert CSSRS.answers_from_sequence([1, 0, 0]) == {"1": 1, "2": 0, "6": 0}
    assert CSSRS.answers_from_sequence([1, 1, 0, 0, 1, 1, 0]) == {
        "1": 1,
        "2": 1,
        "3": 0,
        "4": 0,
        "5": 1,
        "6": 1,
        "6b": 0,
    }
    with pytest.raises(ValueError, match="takes 3 answers"):
        CSSRS.answers_from_sequence([0, 0, 0, 1])


def test_cssrs_says_which_questions_follow_a_yes():
    assert CSSRS.describe()["asked_after"] == {
        "3": {"item": "2", "answer": 1},
        "4": {"item": "2", "answer": 1},
        "5": {"item": "2", "answer": 1},
        "6b": {"item": "6", "answer": 1},
    }
    assert PHQ9.describe()["asked_after"] == {} and PHQ9.either_or_groups == ()


def test_cssrs_codes_and_licence():
    codes = [item.loinc.code for item in CSSRS.items]
    assert codes == ["93246-7", "93247-5", "93248-3", "93249-1", "93250-9", "93267-3", "93269-9"]
    assert dict(CSSRS.other_loinc)["risk_level"].code == "93374-7"
    assert "sublicence" in CSSRS.licence_note
    assert all(item.text is None for item in CSSRS.items)


# -- CADSS, MOAA/S, BPRS+ ------------------------------------------------------------------------


def test_cadss_total_and_cadss6_subset():
    cadss = get_instrument("CADSS")
    answers = dict.fromkeys((str(i) for i in range(1, 24)), 0)
    for item_id in CADSS6_ITEM_IDS:
        answers[item_id] = 4
    answers["3"] = 2
    score = cadss.score(answers)
    assert score.total == 26
    assert score.subscores == {"cadss6": 24}
    assert score.band is None and score.flags == ()
    assert len(cadss.items) == 23 and cadss.total_max == 92
    assert change_from_pre_dose(3, 26) == 23


def test_cadss_items_are_0_to_4():
    cadss = get_instrument("CADSS")
    answers = dict.fromkeys((str(i) for i in range(1, 24)), 0)
    with pytest.raises(AnswerError, match="item 23: 5 is outside 0-4"):
        cadss.score({**answers, "23": 5})


@pytest.mark.parametrize(
    ("rating", "band", "flags"),
    [
        (5, "alert", ()),
        (4, "lethargic", ()),
        (3, "loud_name", ("deep_sedation",)),
        (2, "mild_prodding", ("deep_sedation",)),
        (1, "trapezius_squeeze", ("deep_sedation",)),
        (0, "no_response", ("loss_of_consciousness", "deep_sedation")),
    ],
)
def test_moaas_levels_and_flags(rating, band, flags):
    score = get_instrument("MOAAS").score({"1": rating})
    assert (score.total, score.band.code, score.flag_codes) == (rating, band, flags)


def test_bprs_plus_items_are_1_to_7():
    bprs = get_instrument("BPRS+")
    assert bprs.score(numbered([1, 1, 1, 1])).total == 4
    assert bprs.score(numbered([7, 7, 7, 7])).total == 28
    with pytest.raises(AnswerError, match="item 2: 0 is outside 1-7"):
        bprs.score(numbered([1, 0, 1, 1]))


# -- validation shared by all scales -----------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"11": 0}, "item 11: PHQ-9 has no such item"),
        ({"3": 2.0}, "item 3: 2.0 is not a whole number"),
        ({"3": "2"}, "item 3: '2' is not a whole number"),
        ({"3": True}, "item 3: True is not a whole number"),
        ({"3": -1}, "item 3: -1 is outside 0-3"),
    ],
)
def test_bad_answers_name_the_item(bad, message):
    answers = {**numbered([0] * 9), **bad}
    with pytest.raises(AnswerError) as caught:
        PHQ9.score(answers)
    assert str(caught.value) == message


def test_int_keys_and_explicit_nulls():
    answers: dict = dict.fromkeys(range(1, 10), 1)
    assert PHQ9.score(answers).total == 9
    with pytest.raises(AnswerError, match="item 2: missing answer"):
        PHQ9.score({**answers, 2: None})


@pytest.mark.parametrize(
    "twice",
    [{"1": 0, " 1": 3}, {1: 3, "1": 0}, {"1": 0, "1 ": None}, {"9": 0, "\t9\n": 2}],
)
def test_two_keys_naming_one_item_are_refused_not_overwritten(twice):
    answers = {**numbered([1] * 9), **twice}
    item_id = str(next(iter(twice))).strip()
    with pytest.raises(AnswerError) as caught:
        PHQ9.score(answers)
    assert caught.value.item_id == item_id
    assert caught.value.field_name == f"answers.{item_id}"
    assert "given twice" in str(caught.value)


def test_descriptions_are_json_and_respect_licences():
    for instrument in all_instruments():
        description = json.loads(json.dumps(instrument.describe()))
        assert description["code"] == instrument.code
        assert description["source"]
        assert description["licence_note"]
        has_text = [item["text"] is not None for item in description["items"]]
        # Full wording only for PHQ-9 and GAD-7 (reference §3, licensing).
        assert all(has_text) == (instrument.code in ("PHQ-9", "GAD-7"))
        assert any(has_text) == (instrument.code in ("PHQ-9", "GAD-7"))


def test_score_as_dict_round_trips_through_json():
    score = PHQ9.score(numbered([1, 2, 3, 0, 1, 2, 3, 0, 1]))
    data = json.loads(json.dumps(score.as_dict()))
    assert data["total"] == 13
    assert data["band"]["code"] == "moderate"
    assert data["flags"][0]["code"] == "suicidality_item_positive"
    assert data["answers"]["3"] == 3


# -- Hypothesis properties ---------------------------------------------------------------------


def answers_strategy(instrument: Instrument) -> st.SearchStrategy[dict[str, int]]:
    return st.fixed_dictionaries(
        {item.id: st.sampled_from(sorted(item.values)) for item in instrument.items if item.scored}
    )


@st.composite
def scale_and_answers(draw):
    instrument = draw(st.sampled_from(SUM_SCALES))
    return instrument, draw(answers_strategy(instrument))


@settings(max_examples=150, deadline=None)
@given(scale_and_answers())
def test_totals_always_in_range_and_banded(case):
    instrument, answers = case
    score = instrument.score(answers)
    assert instrument.total_min <= score.total <= instrument.total_max
    if instrument.bands:
        assert score.band is not None and score.band.contains(score.total)
    else:
        assert score.band is None


@settings(max_examples=150, deadline=None)
@given(scale_and_answers(), st.data())
def test_totals_are_monotone_in_each_item(case, data):
    instrument, answers = case
    item = data.draw(st.sampled_from([i for i in instrument.items if i.scored]))
    higher = [v for v in item.values if v > answers[item.id]]
    if not higher:
        return
    raised = {**answers, item.id: data.draw(st.sampled_from(sorted(higher)))}
    assert instrument.score(raised).total >= instrument.score(answers).total


@pytest.mark.parametrize("instrument", [i for i in all_instruments() if i.bands], ids=str)
def test_bands_partition_the_range(instrument):
    bands = sorted(instrument.bands, key=lambda band: band.low)
    low = instrument.total_min if instrument.total_min is not None else 0
    high = instrument.total_max if instrument.total_max is not None else bands[-1].high
    assert bands[0].low == low
    assert bands[-1].high == high
    for before, after in itertools.pairwise(bands):
        assert before.low <= before.high
        assert after.low == before.high + 1  # no gap, no overlap
    for total in range(low, high + 1):
        assert sum(band.contains(total) for band in bands) == 1


SUICIDALITY_ITEMS = {"PHQ-9": "9", "MADRS": "10", "QIDS-SR16": "12"}


@settings(max_examples=150, deadline=None)
@given(scale_and_answers())
def test_flags_exactly_when_their_rule_says(case):
    instrument, answers = case
    codes = set(instrument.score(answers).flag_codes)
    item_id = SUICIDALITY_ITEMS.get(instrument.code)
    assert ("suicidality_item_positive" in codes) == (item_id is not None and answers[item_id] > 0)
    if instrument.code == "MOAA/S":
        assert ("loss_of_consciousness" in codes) == (answers["1"] == 0)
        assert ("deep_sedation" in codes) == (answers["1"] <= 3)
    else:
        assert not codes & {"loss_of_consciousness", "deep_sedation"}


@st.composite
def cssrs_answers(draw):
    yes_no = st.sampled_from([0, 1])
    answers = {"1": draw(yes_no), "2": draw(yes_no)}
    if answers["2"]:
        answers.update({"3": draw(yes_no), "4": draw(yes_no), "5": draw(yes_no)})
    answers["6"] = draw(yes_no)
    if answers["6"]:
        answers["6b"] = draw(yes_no)
    return answers


RISK_ORDER = {"none": 0, "low": 1, "moderate": 2, "high": 3}


@settings(max_examples=150, deadline=None)
@given(cssrs_answers())
def test_cssrs_risk_follows_the_triage_rule(answers):
    score = CSSRS.score(answers)

    def yes(item_id: str) -> bool:
        return answers.get(item_id) == 1

    if yes("4") or yes("5") or (yes("6") and yes("6b")):
        expected = "high"
    elif yes("3") or yes("6"):
        expected = "moderate"
    elif yes("1") or yes("2"):
        expected = "low"
    else:
        expected = "none"
    assert score.band.code == expected
    assert score.subscores["risk_level"] == RISK_ORDER[expected]
    alert = {f.code for f in score.flags if f.requires_acknowledgement}
    assert alert == ({f"cssrs_risk_{expected}"} if expected in ("moderate", "high") else set())


@settings(max_examples=150, deadline=None)
@given(cssrs_answers(), st.data())
def test_cssrs_risk_is_monotone_in_each_yes(answers, data):
    # Items 1, 3, 4, 5 and 6b do not change which questions are asked: turning one to yes
    # never lowers the risk.
    candidates = [i for i in ("1", "3", "4", "5", "6b") if answers.get(i) == 0]
    if not candidates:
        return
    item_id = data.draw(st.sampled_from(candidates))
    before = RISK_ORDER[CSSRS.score(answers).band.code]
    after = RISK_ORDER[CSSRS.score({**answers, item_id: 1}).band.code]
    assert after >= before


def test_unknown_code_is_invalid_input_for_the_api():
    with pytest.raises(InvalidInput) as caught:
        get_instrument("BDI-II")
    assert caught.value.field_name == "instrument"
    assert isinstance(caught.value, KeyError)


def test_score_answers_looks_up_and_scores():
    from ketaflow.measures.instruments import score_answers

    score = score_answers("gad-7", numbered([1] * 7))
    assert (score.instrument_code, score.total, score.band.code) == ("GAD-7", 7, "mild")

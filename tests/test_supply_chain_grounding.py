"""The demo prints no number a small model invented as if it were a fact."""

from __future__ import annotations

from aaex_examples.supply_chain.grounding import ground, numbers_in

FACTS = "Stores S01 S02. Forecast 1,167 units over 7 days; MASE 0.678 against naive 1.241."


def test_a_sentence_with_an_invented_number_is_dropped_and_a_grounded_one_kept() -> None:
    text = ("Order 1167 units for next week. Add 220 more trucks to be safe. "
            "The forecast beats naive with MASE 0.68.")
    grounded = ground(text, FACTS)
    assert grounded.kept == "Order 1167 units for next week. The forecast beats naive with " \
                            "MASE 0.68."
    assert grounded.dropped == ("Add 220 more trucks to be safe.",)


def test_sentences_without_numbers_stay_and_nothing_backed_gives_empty() -> None:
    assert ground("Keep shelves stocked.", FACTS).kept == "Keep shelves stocked."
    assert ground("Serve 1000 other stores.", FACTS).kept == ""


def test_numbers_are_read_as_written() -> None:
    assert numbers_in("1,167 units, 0.678 and 12% more") == ["1167", "0.678", "12"]


def test_one_backed_number_does_not_carry_an_invented_one() -> None:
    """Every number of a sentence must be in the facts: a true figure beside a made-up one
    does not let the made-up one through."""
    text = "Order 1167 units and 220 more trucks over 7 days. MASE is 0.678."
    grounded = ground(text, FACTS)
    assert grounded.dropped == ("Order 1167 units and 220 more trucks over 7 days.",)
    assert grounded.kept == "MASE is 0.678."

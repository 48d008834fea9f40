"""Codes people can type: format, entropy, look-alikes, and typos caught by the check character."""

from __future__ import annotations

import math
import re

import pytest

from aigateway.vouchers import codes

FORMAT = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){4}$")


def test_codes_are_grouped_unguessable_and_free_of_look_alikes():
    issued = {codes.generate() for _ in range(2000)}
    assert len(issued) == 2000
    assert all(FORMAT.match(c) for c in issued)
    assert not set("ILOU") & set("".join(issued))
    assert codes.RANDOM_CHARS * math.log2(len(codes.ALPHABET)) >= 80


def test_entry_ignores_case_dashes_spaces_and_reads_look_alikes():
    code = codes.generate()
    canonical = code.replace("-", "")
    assert codes.normalise(code) == canonical
    assert codes.normalise(" " + code.lower().replace("-", " ") + " ") == canonical
    assert codes.normalise(canonical.lower()) == canonical
    if "0" in canonical or "1" in canonical:  # O and I/L are read as 0 and 1
        assert codes.normalise(canonical.replace("0", "o").replace("1", "l")) == canonical


def test_every_single_typo_is_caught_by_the_check_character():
    canonical = codes.normalise(codes.generate())
    for i in range(codes.LENGTH):
        for char in codes.ALPHABET:
            if char != canonical[i]:
                with pytest.raises(codes.CodeError, match="typo"):
                    codes.normalise(canonical[:i] + char + canonical[i + 1:])


def test_neighbour_swaps_are_caught():
    canonical = codes.normalise(codes.generate())
    for i in range(codes.LENGTH - 1):
        a, b = canonical[i], canonical[i + 1]
        if a != b and {a, b} != {"0", "Z"}:  # the one pair Luhn mod 32 cannot tell apart
            with pytest.raises(codes.CodeError):
                codes.normalise(canonical[:i] + b + a + canonical[i + 2:])


@pytest.mark.parametrize("entered", ["", "ABCD-EFGH", "ABCD-EFGH-JKMN-PQRS-TVWX-YZ00", "UUUU-UUUU-UUUU-UUUU-UUUU"])
def test_malformed_codes_are_refused(entered):
    with pytest.raises(codes.CodeError):
        codes.normalise(entered)

"""The shared input checks (fademem_core.checks): values accepted as given, the rest refused
with a message naming the value and the expected range."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fademem_core.checks import check_int, check_positive


@pytest.mark.parametrize("value,minimum,maximum", [
    (0, 0, None), (10**30, 0, None), (3, 3, 3), (0, 0, 3), (3, 0, 3), (-2, -5, -1),
    (np.int64(2), 0, 3), (np.uint8(255), 0, 255)])
def test_check_int_accepts_the_inclusive_range(value, minimum, maximum):
    got = check_int("x", value, minimum, maximum)
    assert got == value and type(got) is int


@pytest.mark.parametrize("value,minimum,maximum,message", [
    (-1, 0, None, "n must be an integer >= 0, got -1"),
    (4, 0, 3, r"n must be an integer in \[0, 3\], got 4"),
    (-1, 0, 3, r"n must be an integer in \[0, 3\], got -1"),
    (10**30, 1, 64, rf"n must be an integer in \[1, 64\], got {10**30}"),
    (np.int64(9), 0, 8, r"n must be an integer in \[0, 8\], got (np.int64\(9\)|9)"),  # numpy 2 / 1 repr
    (2.0, 0, 3, r"n must be an integer in \[0, 3\], got 2.0"),
    (True, 0, 3, r"n must be an integer in \[0, 3\], got True"),
    ("2", 0, 3, r"n must be an integer in \[0, 3\], got '2'"),
    (None, 0, None, "n must be an integer >= 0, got None")])
def test_check_int_refuses_what_is_outside_or_not_an_integer(value, minimum, maximum, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_int("n", value, minimum, maximum)


@pytest.mark.parametrize("value", [1e-12, 0.5, 5, np.float32(2.5), 10**30])
def test_check_positive_accepts_finite_numbers_above_zero(value):
    got = check_positive("s", value)
    assert got == float(value) and type(got) is float


@pytest.mark.parametrize("value", [0, -1.0, 0.0, math.inf, math.nan, True, "5", None])
def test_check_positive_refuses_the_rest_naming_it(value):
    with pytest.raises(ValueError, match=rf"^s must be a positive number, got {re.escape(repr(value))}$"):
        check_positive("s", value)

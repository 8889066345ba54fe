"""The consistency benchmark's verdict: a control is valid only at the margin the rule asks."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))  # its report module is a sibling
    try:
        spec = importlib.util.spec_from_file_location("bench_consistency", BENCH / "bench_consistency.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH))


def _rows(bench, full: np.ndarray, none: np.ndarray) -> dict:
    return {bench.CONTROL_FULL: {"lookup": full}, bench.CONTROL_NONE: {"lookup": none}}


def _half(bench, v: np.ndarray) -> float:
    return bench.ci(v)["half"]


def test_a_gap_of_three_half_widths_is_valid_and_a_smaller_one_is_not(bench) -> None:
    rng = np.random.default_rng(0)
    none = rng.uniform(0.0, 0.5, 200)
    half = max(_half(bench, none), _half(bench, none + 1))  # a shift leaves the spread alone
    wide = bench.validity(_rows(bench, none + 3.2 * half, none), "lookup")
    narrow = bench.validity(_rows(bench, none + 2.8 * half, none), "lookup")
    assert wide["valid"] and not narrow["valid"]
    np.testing.assert_allclose([wide["gap"], narrow["gap"]], [3.2 * half, 2.8 * half])
    assert wide["needed"] == pytest.approx(3 * half, rel=0.05)
    # every video gains the same: the paired gap is exact, the verdict still the stricter rule
    assert narrow["paired_gap"]["half"] < 1e-9


def test_memory_of_nothing_old_winning_is_never_valid(bench) -> None:
    v = np.linspace(0.2, 0.6, 100)
    assert not bench.validity(_rows(bench, v, v + 0.3), "lookup")["valid"]
    assert not bench.validity(_rows(bench, np.full(100, np.nan), v), "lookup")["valid"]  # undefined


def test_the_report_keeps_the_hand_written_findings(bench, tmp_path) -> None:
    from consistency_report import FINDINGS_MARKER, write_report

    doc = tmp_path / "consistency.md"
    doc.write_text("old tables" + FINDINGS_MARKER + "\nour reading\n")
    cell = {"mean": 0.3, "lo": 0.25, "hi": 0.35, "half": 0.05, "n": 32}
    v = bench.validity(_rows(bench, np.full(32, 0.6), np.linspace(0.1, 0.3, 32)), "lookup")
    row = {k: cell for k, _, _ in bench.METRICS} | {"cpu_seconds": 1.0}
    record = {"command": "python bench/bench_consistency.py", "wall_seconds": 60, "machine": "test", "returns": 32,
              "prefix": 150, "draws": 8, "entries": 16, "entry_at": 48, "videos": 8, "frames": 180,
              "samplers": {"TF": {"name": "euler", "steps": 4}}, "world": {k: cell for k, _, _ in bench.METRICS},
              "weights": {"TF": {"validity": {m: v for m in bench.RECALLS}, "fresh_check": v,
                                 "rows": {bench.CONTROL_FULL: row, bench.HEADLINE: row}}}}
    write_report(doc, record, {})
    text = doc.read_text()
    assert "old tables" not in text and text.endswith(FINDINGS_MARKER + "\nour reading\n")
    assert "→ **valid**" in text and "| FullCache | 1 | 0.30 ± 0.05 |" in text

"""benchmarks/wild_models' scoring against the true text (fast): hand-built CTC logits decoded
by the corpus's own greedy decoder, and the table that reports them."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "wild_models"))
import bars  # noqa: E402
import scoring  # noqa: E402

CHARSET = ["-", "a", "b", "c"]  # blank first
decode = scoring.ctc_greedy(CHARSET, blank=0, time_axis=0)


def logits(path: list[int]) -> list[np.ndarray]:
    """One sample's outputs: (T, 1, C) scores whose arg-max per step is ``path``."""
    x = np.zeros((len(path), 1, len(CHARSET)), np.float32)
    x[np.arange(len(path)), 0, path] = 1.0
    return [x]


def test_greedy_decoding_of_the_hand_built_logits() -> None:
    assert decode(logits([1, 1, 0, 1, 2, 2, 0])[0]) == "aab"


def test_against_truth_counts_exact_matches_and_the_right_readings_kept() -> None:
    truth = ["ab", "ca", "bb", "cc"]
    # float reads samples 0, 1 and 3 right; int8 reads 0 and 2 right, so it keeps 1 of 3.
    ref = [logits([1, 0, 2]), logits([3, 1]), logits([2]), logits([3, 0, 3])]
    out = [logits([1, 2]), logits([3, 3]), logits([2, 0, 2]), logits([3, 3])]
    got = scoring.against_truth(decode, truth, ref, out)
    assert got["float"] == 0.75
    assert got["int8"] == 0.5
    assert math.isclose(got["kept"], 1 / 3)


def test_against_truth_when_float_reads_nothing_right() -> None:
    got = scoring.against_truth(decode, ["c"], [logits([1])], [logits([3])])
    assert (got["float"], got["int8"]) == (0.0, 1.0)
    assert math.isnan(got["kept"])


def test_truth_table_lists_only_labelled_models() -> None:
    truth = {"float": 0.3, "int8": 0.25, "kept": 0.8}
    rows = [
        {"name": "reader", "variants": {"quanta_static": {"truth": truth}, "ort_static": {}}},
        {"name": "classifier", "variants": {"quanta_static": {"score": 1.0}}},
    ]
    lines = bars.truth_markdown(rows, ["quanta_static", "ort_static"])
    assert "| reader | 0.3000 | 0.2500 / 0.8000 | - |" in lines
    assert not any("classifier" in line for line in lines)
    assert bars.truth_markdown(rows[1:], ["quanta_static"]) == []

"""The benchmark scripts' own parsing and tables (their runs are measured, not tested)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from held_out_voices import EngineResult, engines_markdown  # noqa: E402
from recipe_sweep import parse_variant  # noqa: E402


def test_variant_keeps_the_commas_of_list_values():
    name, sets = parse_variant("all=augment.gain_db=[-6,6],augment.vtlp=[0.9,1.1],"
                               "augment.clip_prob=0.1")
    assert name == "all"
    assert sets == ["augment.gain_db=[-6,6]", "augment.vtlp=[0.9,1.1]", "augment.clip_prob=0.1"]
    assert parse_variant("base=") == ("base", [])
    with pytest.raises(SystemExit, match="NAME=KEY=VALUE"):
        parse_variant("=train.lr=0.001")


def test_engine_table_takes_the_median_per_variant_and_engine():
    def result(variant, seed, cer, cer_lm=None):
        return EngineResult(seed, "flite", 97, cer, 1.0, cer_lm, cer_lm, 0.2, 0.6, 0.2, 30,
                            1800, 5.0, variant)

    table = engines_markdown([result("base", 0, 0.50), result("base", 1, 0.60),
                              result("reverb", 0, 0.40, 0.30), result("reverb", 1, 0.44, 0.34)])
    rows = [line for line in table.splitlines() if line.startswith("| base") or
            line.startswith("| reverb")]
    assert rows[0].startswith("| base | flite | 0,1 | 97 | 55.0% |")
    assert "| - | - |" in rows[0]  # greedy only: no LM columns
    assert rows[1].startswith("| reverb | flite | 0,1 | 97 | 42.0% |")
    assert "| 32.0% |" in rows[1]

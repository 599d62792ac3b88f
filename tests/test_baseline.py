"""Baselines: save what torch computes, compare later, and sort what moved."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from checks import baseline, cli, matrix, seeded

SMALL = ["--ops", "relu,softmax,cross_entropy", "--dtype", "float32,float64", "--cases", "2"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("baseline") / "b.json"
    assert cli.main(["baseline", "save", str(path), *SMALL]) == 0
    return path


def _doctor(saved: Path, tmp_path: Path, change) -> Path:
    data = json.loads(saved.read_text())
    change(next(c for c in data["cells"]["softmax-cpu-float64"]["cases"] if c["values"]["forward"]["hex"]))
    path = tmp_path / "doctored.json"
    path.write_text(json.dumps(data))
    return path


def test_a_baseline_is_exact_readable_json(saved):
    data = baseline.load(saved)
    case = next(c for c in data["cells"]["softmax-cpu-float64"]["cases"] if c["values"]["forward"]["hex"])
    assert data["schema_version"] == baseline.SCHEMA_VERSION and data["environment"]["torch"] == torch.__version__
    assert all(isinstance(float.fromhex(v), float) for v in case["values"]["forward"]["hex"])  # every value parses back exactly
    assert case["values"]["forward"]["hex"][0].startswith(("0x", "-0x"))
    assert set(case["recipe"]) == {"seed", "regime", "shape", "knobs"} and "threads" in data["environment"]


def test_comparing_with_itself_finds_nothing(saved, capsys):
    assert cli.main(["baseline", "compare", str(saved)]) == 0
    result = baseline.compare_with(baseline.load(saved))
    notebook_values = sum(len(compute()) for _, compute in seeded.RECORDS.values())
    assert result.cases == 12 + notebook_values and not result.findings and not result.environment


def test_a_doctored_value_beyond_the_policy_is_flagged(saved, tmp_path, capsys):
    def change(case):
        v = float.fromhex(case["values"]["forward"]["hex"][0])
        case["values"]["forward"]["hex"][0] = (v * (1 + 1e-9) + 1e-300).hex()

    path = _doctor(saved, tmp_path, change)
    out = tmp_path / "findings.json"
    assert cli.main(["baseline", "compare", str(path), "--json", str(out), "--markdown", str(tmp_path / "f.md")]) == 1
    findings = json.loads(out.read_text())["findings"]
    assert [f["kind"] for f in findings] == ["moved"] and findings[0]["cell"] == "softmax-cpu-float64"
    assert "moved" in (tmp_path / "f.md").read_text()


def test_a_one_ulp_change_is_bitwise_only(saved, tmp_path, capsys):
    def change(case):
        v = float.fromhex(case["values"]["forward"]["hex"][0])
        case["values"]["forward"]["hex"][0] = float(torch.nextafter(torch.tensor(v, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))).hex()

    assert cli.main(["baseline", "compare", str(_doctor(saved, tmp_path, change))]) == 0
    assert "bitwise" in capsys.readouterr().out


def test_a_grown_worst_error_is_an_accuracy_regression(saved, tmp_path, capsys):
    def change(case):
        case["worst_ulp"]["forward"] = -5.0  # as if the recorded run had been 5 ULP better

    assert cli.main(["baseline", "compare", str(_doctor(saved, tmp_path, change))]) == 1
    assert "accuracy" in capsys.readouterr().out


def test_an_op_gone_from_the_registry_is_missing(saved, tmp_path):
    data = json.loads(saved.read_text())
    data["cells"]["relu-cpu-float32"]["op"] = "an_op_torch_dropped"
    path = tmp_path / "gone.json"
    path.write_text(json.dumps(data))
    assert [f.kind for f in baseline.compare_with(baseline.load(path)).findings] == ["missing"]
    assert [f.kind for f in baseline.new_cells(data, matrix.cells(ops_option="elu", dtype_option="float32"))] == ["new"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a readable JSON baseline"),
    (json.dumps({"hello": "world"}), "not a byhand baseline"),
    (json.dumps({"schema": "byhand-baseline", "schema_version": 99, "cells": {}}), "schema version 99"),
    (json.dumps([1, 2, 3]), "not a byhand baseline"),
])
def test_corrupt_or_foreign_files_are_clear_errors(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert cli.main(["baseline", "compare", str(path)]) == 2
    assert message in capsys.readouterr().out
    assert cli.main(["baseline", "compare", str(tmp_path / "absent.json")]) == 2


_CAPABILITY = torch.backends.cpu.get_cpu_capability()
# A capability can only be lowered (asking for AVX-512 on an AVX2 CPU dies with an illegal instruction).
_LOWER = {"AVX512": "avx2", "AVX2": "default"}.get(_CAPABILITY, "default" if _CAPABILITY not in ("DEFAULT", "NO AVX") else None)


@pytest.mark.skipif(_LOWER is None, reason=f"this CPU's capability is {_CAPABILITY}: there is none lower to compare with")
@(pytest.mark.background([sys.executable, "-m", "checks.cli", "baseline", "save", "{tmp}/b.json", *SMALL], env={"ATEN_CPU_CAPABILITY": _LOWER})
  if _LOWER else lambda test: test)  # nothing to start where the test skips
def test_a_lower_cpu_capability_is_within_tolerance_and_named_as_the_cause(background, capsys):
    """Saved under a lower capability (AVX-512 -> AVX2, AVX2 -> default) in a process of its own,
    compared here under the native one: values may move by an ULP or so (TORCH_NUMERICS.md), the
    comparison passes, and the capability change is reported (and named as the likely cause of any
    bitwise change)."""
    assert background.returncode == 0, background.stdout
    saved = re.search(r"saved \d+ cases of \d+ cells to (\S+)", background.stdout)
    assert saved, background.stdout
    assert cli.main(["baseline", "compare", saved.group(1)]) == 0
    out = capsys.readouterr().out
    assert "cpu_capability changed" in out
    assert "bitwise changes" not in out or "CPU vector capability" in out


def _doctor_data(saved: Path, tmp_path: Path, change) -> Path:
    data = json.loads(saved.read_text())
    change(data)
    path = tmp_path / "doctored.json"
    path.write_text(json.dumps(data))
    return path


def test_the_notebooks_seeded_results_are_recorded_exactly(saved):
    data = baseline.load(saved)
    init = data["notebooks"]["init 5-4-3"]["values"]["0.weight"]
    torch.manual_seed(seeded.SEED)
    weight = torch.nn.Linear(5, 4).weight.detach().double().flatten().tolist()
    assert init["shape"] == [4, 5] and [float.fromhex(v) for v in init["hex"]] == weight
    assert len(data["notebooks"]["adam trajectory"]["values"]["losses"]["hex"]) == seeded.TRAINING_STEPS


def test_a_moved_optimizer_trajectory_is_flagged(saved, tmp_path):
    """Adam's final weights 1e-4 relative off (an optimizer change): beyond k = 8 ULP x 30 roundings."""
    def change(data):
        values = data["notebooks"]["adam trajectory"]["values"]["0.weight"]["hex"]
        values[3] = (float.fromhex(values[3]) * (1 + 1e-4)).hex()

    findings = baseline.compare_with(baseline.load(_doctor_data(saved, tmp_path, change))).findings
    assert [(f.kind, f.cell) for f in findings] == [("moved", "notebook: adam trajectory")]


def test_a_changed_default_is_reported_but_does_not_fail(saved, tmp_path):
    def change(data):
        data["defaults"]["cross_entropy: torch.nn.functional.cross_entropy"]["label_smoothing"] = 0.1
        del data["defaults"]["mse_loss: torch.nn.functional.mse_loss"]["weight"]

    result = baseline.compare_with(baseline.load(_doctor_data(saved, tmp_path, change)))
    assert sorted(f.detail for f in result.findings) == ["cross_entropy: torch.nn.functional.cross_entropy: label_smoothing default 0.1 -> 0.0",
                                                         "mse_loss: torch.nn.functional.mse_loss: weight=None is new"]
    assert {f.kind for f in result.findings} == {"defaults"} and not result.failed


def test_a_baseline_without_notebook_records_says_so(saved, tmp_path):
    result = baseline.compare_with(baseline.load(_doctor_data(saved, tmp_path, lambda data: data.pop("notebooks"))))
    assert [(f.kind, f.cell) for f in result.findings] == [("missing", "notebooks")] and not result.failed


def test_changed_inputs_are_not_blamed_on_torch(saved, tmp_path):
    """numpy 1.26 and 2.4 draw 10**uniform(...) an ULP apart: the recipe then makes other inputs, and
    the comparison says so instead of reporting torch's outputs as moved."""
    def change(case):
        case["inputs_sha256"] = "0" * 64
        case["values"]["forward"]["hex"][0] = "0x1.0p+0"

    findings = baseline.compare_with(baseline.load(_doctor(saved, tmp_path, change))).findings
    assert [f.kind for f in findings] == ["inputs"]


def test_knobs_read_back_from_json_are_the_tuples_hypothesis_drew():
    """JSON turns tuples into lists; compare re-runs recipes with the knobs as drawn (a pooling's
    output_size (None, 3) is a pair, not a number, to its registry entry)."""
    knobs = {"output_size": (None, 3), "kernel_size": (2, (1, 2)), "reduction": "mean", "scale": None, "groups": 2}
    assert baseline.as_drawn(json.loads(json.dumps(knobs))) == knobs

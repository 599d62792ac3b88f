"""The ``byhand verify`` command: its table, its JSON, and its exit status."""
from __future__ import annotations

import dataclasses
import json

import torch.nn.functional as F

from checks import cli, matrix
from checks.registry import get


def test_verify_passes_and_writes_json(tmp_path, capsys):
    out = tmp_path / "verify.json"
    status = cli.main(["verify", "--ops", "relu,softmax,one_hot", "--dtype", "float32", "--examples", "3", "--json", str(out), "--quiet"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "softmax" in printed and "pass" in printed and "3 cells, 9 examples, 0 failed" in printed
    payload = json.loads(out.read_text())
    assert payload["schema_version"] == 1 and payload["passed"] is True
    assert payload["environment"]["torch"] and [c["op"] for c in payload["cells"]] == ["relu", "softmax", "one_hot"]
    assert {c["dtype"] for c in payload["cells"]} == {"float32", "int64"}


def test_verify_exits_1_and_explains_a_failure(monkeypatch, capsys):
    broken = dataclasses.replace(get("sigmoid"), functional=lambda input: F.sigmoid(input) * 1.001)
    monkeypatch.setattr(matrix, "cells", lambda *a, **k: [matrix.Cell(broken, "cpu", "float64")])
    assert cli.main(["verify", "--examples", "5", "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "FAIL" in printed and "DISAGREES" in printed and "reproduce:" in printed


def test_verify_rejects_unknown_names(capsys):
    assert cli.main(["verify", "--ops", "softmaxx"]) == 2
    assert "unknown softmaxx" in capsys.readouterr().out


def test_verify_reports_an_absent_device_as_skipped(capsys):
    status = cli.main(["verify", "--device", "mps", "--ops", "relu", "--dtype", "float64", "--examples", "2", "--quiet"])
    printed = capsys.readouterr().out
    assert status == 0 and ("skipped" in printed or "pass" in printed)


def test_derive_prints_steps_and_the_proof(capsys):
    assert cli.main(["derive", "cross_entropy", "--size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "definition:" in printed and "chain rule:" in printed and "PROVEN by cancel" in printed


def test_derive_prints_the_partials_of_an_op_proved_by_evaluation(capsys):
    """Huber's proof is by evaluation (its branches are cut differently); its partials still print."""
    assert cli.main(["derive", "huber_loss"]) == 0
    printed = capsys.readouterr().out
    assert "d/dx by sympy.diff:" in printed and "hand formula" in printed and "PROVEN by 50-digit evaluation" in printed


def test_derive_latex_and_unknown_ops(capsys):
    assert cli.main(["derive", "sigmoid", "--latex"]) == 0
    assert "\\frac" in capsys.readouterr().out
    assert cli.main(["derive", "swiglu"]) == 2
    assert "no derivation for 'swiglu'" in capsys.readouterr().out


def test_verify_accuracy_adds_the_ulp_table_to_output_and_json(tmp_path, capsys):
    out = tmp_path / "v.json"
    assert cli.main(["verify", "--ops", "sigmoid", "--dtype", "float32", "--examples", "3", "--accuracy", "--json", str(out), "--quiet"]) == 0
    assert "accuracy against the 50-digit truth" in capsys.readouterr().out
    accuracy = json.loads(out.read_text())["accuracy"]
    assert accuracy[0]["op"] == "sigmoid" and accuracy[0]["cases"] == 3 and "floored" in accuracy[0]["torch"]["forward"]

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

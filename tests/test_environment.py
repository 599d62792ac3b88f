"""The environment fingerprint, the settings verify's header names, the CPU configurations one machine
can stand in for, and how a changed environment shows in a baseline comparison."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from checks import baseline, cli, departures, devices, envmatrix, environment


def test_the_fingerprint_records_the_cpu_its_features_settings_and_the_quirks_that_show():
    env = environment.fingerprint()
    assert env["cpu_model"] and isinstance(env["cpu_features"], list)
    assert set(env["cpu_features"]) <= set(environment.KERNEL_FEATURES)
    assert env["knobs"]["mkldnn_enabled"] == torch.backends.mkldnn.enabled
    assert env["knobs"]["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert env["quirks"] == sorted(f"{d.id}@{device}" for d, device in departures.active_here(devices.available()))
    assert env["longdouble_mantissa_bits"] == np.finfo(np.longdouble).nmant
    json.dumps(env)  # JSON-ready as it is


@pytest.fixture
def restore_settings():
    precision, mkldnn = torch.get_float32_matmul_precision(), torch.backends.mkldnn.enabled
    yield
    torch.set_float32_matmul_precision(precision)
    torch.backends.mkldnn.enabled = mkldnn


def test_settings_that_change_numerics_are_named_while_they_are_on(restore_settings):
    torch.set_float32_matmul_precision("highest")
    torch.backends.mkldnn.enabled = True
    before = environment.settings_on()
    torch.set_float32_matmul_precision("medium")
    torch.backends.mkldnn.enabled = False
    now = environment.settings_on()
    assert any("'medium'" in s for s in now) and any("mkldnn.enabled = False" in s for s in now)
    assert not any("'medium'" in s or "mkldnn.enabled" in s for s in before)


def test_the_newer_per_backend_precision_settings_do_not_break_the_fingerprint():
    """torch.get_float32_matmul_precision() raises once fp32_precision is set the new way."""
    matmul = getattr(torch.backends.mkldnn, "matmul", None)
    if matmul is None or not hasattr(matmul, "fp32_precision"):
        pytest.skip(f"torch {torch.__version__} has no torch.backends.mkldnn.matmul.fp32_precision")
    before = matmul.fp32_precision
    try:
        matmul.fp32_precision = "bf16"
        precision = environment.float32_matmul_precision()
        assert precision == "highest" or "mkldnn matmul=bf16" in precision
        assert any("bf16" in s for s in environment.settings_on()) and environment.fingerprint()["quirks"] is not None
        assert departures.active("linear", "forward", "float32", "cpu") is not None  # the probes' cache key reads the settings too
    finally:
        matmul.fp32_precision = before


def test_flush_denormal_is_probed(restore_settings):
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals (torch.set_flush_denormal returned False)")
    try:
        assert environment.flush_denormal() and any("flush-denormal" in s for s in environment.settings_on())
    finally:
        torch.set_flush_denormal(False)
    assert not environment.flush_denormal()


@pytest.mark.parametrize("features, runs", [(["avx2", "fma"], False), (["avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"], True)])
def test_a_configuration_is_only_ever_lowered(features, runs):
    """ATEN_CPU_CAPABILITY=avx512 on a CPU without AVX-512 dies with an illegal instruction."""
    avx512 = next(c for c in envmatrix.CONFIGS if c.env.get("ATEN_CPU_CAPABILITY") == "avx512")
    assert (envmatrix.unsupported(avx512, features) is None) == runs
    assert envmatrix.unsupported(envmatrix.CONFIGS[0], []) is None  # native always runs


def test_the_matrix_passes_on_the_options_that_choose_cells():
    args = cli.build_parser().parse_args(["verify", "--matrix", "--ops", "relu", "--dtype", "float32", "--examples", "3"])
    assert cli._passed_on(args) == ["--examples", "3", "--dtype", "float32", "--ops", "relu"]


def test_verify_names_the_machine_and_the_quirks_that_show(capsys):
    assert cli.main(["verify", "--ops", "relu", "--dtype", "float64", "--examples", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "byhand verify: torch" in out and environment.cpu_model() in out and "quirks that show here" in out
    for quirk, device in departures.active_here(("cpu",), ("reverse",)):  # the quirks of the modes it checks
        assert quirk.id in out
    assert "layer-norm-nested-jvp-wrong" not in out  # a quirk of a mode it does not check


def _compared(tmp_path, change) -> baseline.Comparison:
    path = tmp_path / "b.json"
    assert cli.main(["baseline", "save", str(path), "--ops", "relu", "--dtype", "float64", "--cases", "1"]) == 0
    data = json.loads(path.read_text())
    change(data["environment"])
    path.write_text(json.dumps(data))
    return baseline.compare_with(baseline.load(path))


def test_a_quirk_that_appears_or_disappears_is_its_own_finding(tmp_path):
    shown = environment.fingerprint()["quirks"]
    absent = next(q.id for q in departures.QUIRKS if "cpu" in q.devices and f"{q.id}@cpu" not in shown)  # one that does not show here

    def change(env):
        env["quirks"] = shown[1:] + [f"{absent}@cpu"]

    result = _compared(tmp_path, change)
    quirks = [f for f in result.findings if f.kind == "quirks"]
    assert any(f.cell == absent and "disappeared" in f.detail for f in quirks)
    if shown:
        assert any(f.cell == shown[0].split("@")[0] and "appeared" in f.detail for f in quirks)
    assert not result.failed, "a quirk's coming or going explains; it does not fail by itself"


def test_a_different_cpu_is_named_as_the_likely_cause(tmp_path):
    def change(env):
        env["cpu_model"] = "Another CPU"
        env["cpu_features"] = env["cpu_features"] + ["amx_tile"]

    result = _compared(tmp_path, change)
    assert {"cpu_model", "cpu_features"} <= set(result.environment)
    assert "the CPU model" in result.likely_cause() and "the CPU's features" in result.likely_cause()

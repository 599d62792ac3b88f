"""Recordings: what torch computed on other machines and configurations, judged here by today's
references and declarations, as on the machine that recorded it.

tests/recordings/ holds this project's own recordings (``byhand record --matrix``: every
configuration this machine's matrix reaches) and the raw captures of ../shared/recordings/
converted (``byhand record --from-capture``); ../shared/recordings/ itself is judged too where that
folder exists. A declaration narrowed too far, or a test that asserts one machine's kernel, fails
here on any CPU. The captures' expected quirks are their README's statements, each checked there
against hand arithmetic ([1, 2, inf, 3, 4] ⋆ [0.5, 0.25] = [1, inf, inf, 2.5], gelu(+inf) = +inf).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from checks import cli, departures, recording

ROOT = Path(__file__).resolve().parent.parent
OWN = sorted((ROOT / "tests" / "recordings").glob("*/*.npz"))
SHARED = ROOT.parent / "shared" / "recordings"
CAPTURES = sorted(SHARED.glob("*.json")) if SHARED.is_dir() else []
# The default profile judges every PARTS-th cell of each own recording, a different slice in each
# (the 8 configurations together half of them; a case bit for bit its base's is judged there, as
# native's); the thorough profile judges them all.
PARTS = 1 if settings.get_current_profile_name() == "thorough" else 16
ZEN4 = ROOT / "tests" / "recordings" / "amd-epyc-zen4-avx512bf16"
# What each Zen 4 capture shows, by the capture's README: only these quirks explain its cases.
EXPECTED = {
    "native": {"bf16-dot-product-flushes-subnormals", "onednn-bf16-convolution-nan-spread", "onednn-avx512-gelu-nan-at-inf"},
    "onednn-avx512-core": {"onednn-bf16-odd-k-inf-nan", "onednn-bf16-convolution-nan-spread", "onednn-avx512-gelu-nan-at-inf"},
    "onednn-avx2": set(),
}


def _files() -> list:
    def parts(i: int, path: Path) -> tuple[int, int]:  # the converted captures are a few cases: judged whole
        return (0, 1) if path.parent == ZEN4 else (i % PARTS, PARTS)

    own = [pytest.param(path, parts(i, path)[0], marks=pytest.mark.beside(recording.judge_file, str(path), *parts(i, path)),
                        id=str(path.relative_to(ROOT / "tests" / "recordings"))) for i, path in enumerate(OWN)]
    return own + [pytest.param(path, 0, id=f"shared/{path.name}") for path in CAPTURES]


@pytest.mark.parametrize("path, part", _files())
def test_every_recording_is_judged_as_on_its_machine(request, path, part):
    verdict = request.getfixturevalue("beside") if request.node.get_closest_marker("beside") else recording.judge_file(path)
    assert verdict.cases + verdict.inherited > 0, f"{path}: nothing judged"
    assert not verdict.errors, f"{path}: {verdict.errors}"
    assert not verdict.unknown_ops, f"{path}: ops the registry no longer has: {verdict.unknown_ops}"
    assert verdict.passed, f"{path}: {len(verdict.failures)} failures, the first:\n{verdict.failures[0].message()}"


def test_the_project_records_every_configuration_its_matrix_reaches():
    from checks import envmatrix

    names = {path.stem for path in OWN if path.parent.name == "amd-epyc-zen3-avx2"}
    reached = {config.name for config in envmatrix.CONFIGS if not envmatrix.unsupported(config, ["avx2", "fma", "f16c"])}
    assert len(names) == len(reached) == 8, (names, reached)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_captures_cases_are_known_deviations_of_exactly_the_quirks_it_shows(name):
    verdict = recording.judge_file(ZEN4 / f"{name}.npz")
    assert verdict.passed and set(verdict.deviations) == EXPECTED[name], verdict.deviations


@pytest.mark.parametrize("name, quirk", [(n, q) for n, quirks in sorted(EXPECTED.items()) for q in sorted(quirks)])
def test_lifting_a_declaration_fails_the_captured_cases_it_explains(name, quirk):
    verdict = recording.judge_file(ZEN4 / f"{name}.npz", lifted=(quirk,))
    assert not verdict.passed and quirk not in verdict.deviations


def test_the_converted_captures_are_the_shared_ones():
    """tests/recordings/ keeps ../shared/recordings/ as test data: the same cases, verdicts and probe answers."""
    if not CAPTURES:
        pytest.skip("../shared/recordings/ is not beside this checkout: the converted copies are judged above")
    for capture in CAPTURES:
        name = capture.stem.removeprefix("amd-epyc-zen4-avx512bf16-").replace("_", "-").lower()
        raw, ours = recording.load(capture), recording.load(ZEN4 / f"{name}.npz")
        # a quirk declared since the conversion is absent from ours: it did not show there (departures.answer)
        declared_since = {q: a for q, a in raw[0]["probes"].items() if q not in ours[0]["probes"]}
        assert not any(answer for devices in declared_since.values() for answers in devices.values() for answer in answers.values())
        assert {q: a for q, a in raw[0]["probes"].items() if q in ours[0]["probes"]} == ours[0]["probes"] and raw[0]["machine"] == ours[0]["machine"]
        assert recording.judge(*raw).deviations == recording.judge(*ours).deviations


def _capture(output: list[float], shows: bool | None = None) -> tuple[dict, recording.Arrays]:
    """A raw capture of one bfloat16 conv1d, [1, 2, inf, 3, 4] ⋆ [0.5, 0.25]: by hand [1, inf, inf, 2.5]."""
    hexed = lambda values, shape: {"shape": shape, "hex": [float(v).hex() for v in values]}  # noqa: E731
    raw = {"format": recording.RAW_FORMAT, "machine": {"cpu_model": "test"}, "records": [
        {"op": "conv1d", "dtype": "bfloat16", "layout": "contiguous", "params": {},
         "inputs": {"input": hexed([1, 2, np.inf, 3, 4], [1, 1, 5]), "weight": hexed([0.5, 0.25], [1, 1, 2]), "bias": None},
         "torch": hexed(output, [1, 1, 4])}]}
    data, arrays = recording.from_capture(raw)
    if shows is not None:
        answers = data["probes"]["onednn-bf16-convolution-nan-spread"]["cpu"]
        answers.update({text: shows for text in answers})
    return data, arrays


def test_a_recorded_nan_spread_is_known_inside_its_region_and_a_failure_outside():
    quirk = "onednn-bf16-convolution-nan-spread"
    assert recording.judge(*_capture([1, np.inf, np.inf, 2.5])).passed  # the math: no quirk needed, none inferred
    spread = recording.judge(*_capture([np.nan, np.nan, np.inf, 2.5]))
    assert spread.passed and spread.deviations == {quirk: 2}  # out[0] reads x[1], just before the inf; out[1] holds the inf
    assert not recording.judge(*_capture([np.nan, np.nan, np.inf, 2.5], shows=False)).passed  # recorded as absent: judged as the math
    assert not recording.judge(*_capture([1, np.inf, np.inf, np.nan], shows=True)).passed  # out[3] reads 3 and 4 only


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("recording") / "here.npz"
    assert cli.main(["record", str(path), "--ops", "relu,linear,conv1d,cross_entropy,layer_norm", "--examples", "3", "--dtype", "bfloat16,float64"]) == 0
    return path


def test_a_recording_round_trips_here_with_nothing_failing(recorded, capsys):
    assert cli.main(["judge", str(recorded)]) == 0
    data, arrays = recording.load(recorded)
    cell = data["cells"]["conv1d-cpu-bfloat16"]
    assert [c["layout"] for c in cell["cases"]] == ["contiguous"] * 3 + ["strided"]
    assert data["probes"] == departures.answers(("cpu",)) and "cpu_features" in data["machine"]
    stored = cell["cases"][0]
    assert stored["forward"]["dtype"] == "bfloat16" and arrays.get(stored["forward"]).dtype == np.float64  # two bytes a value, exact


def _tampered(recorded: Path, tmp_path: Path, change) -> Path:
    data, stored = recording.load(recorded)
    arrays = recording.Arrays(dict(stored.stored))
    change(data, arrays)
    out = tmp_path / "tampered.npz"
    recording.write(out, data, arrays)
    return out


def test_a_recorded_output_off_by_a_sixteenth_fails_with_its_message(recorded, tmp_path, capsys):
    def change(data, arrays):
        entry = data["cells"]["layer_norm-cpu-float64"]["cases"][0]["forward"]
        arrays.stored[entry["key"]] = arrays.stored[entry["key"]] * (1 + 1 / 16) + 1e-3

    path = _tampered(recorded, tmp_path, change)
    assert cli.main(["judge", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "layer_norm forward via functional DISAGREES" in out


def test_a_file_that_is_not_a_recording_is_refused_by_name(tmp_path, capsys):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    assert cli.main(["judge", str(bad)]) == 2
    assert "not a readable byhand recording" in capsys.readouterr().out
    raw = tmp_path / "y.json"
    raw.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(recording.RecordingError, match="raw capture"):
        recording.load(raw)


def test_a_case_byhand_cannot_rebuild_is_byhands_error_not_a_failure(recorded, tmp_path):
    def break_params(data, arrays):
        data["cells"]["conv1d-cpu-float64"]["cases"][0]["params"]["stride"] = -1

    verdict = recording.judge_file(_tampered(recorded, tmp_path, break_params))
    assert verdict.errors and "byhand could not rebuild a recorded case" in verdict.errors[0] and not verdict.failures


def test_a_large_case_whose_inputs_this_numpy_draws_otherwise_is_counted_not_judged(recorded, tmp_path):
    def other_hash(data, arrays):
        data["cells"]["relu-cpu-float64"]["cases"][-1]["inputs_sha256"] = "0" * 64

    verdict = recording.judge_file(_tampered(recorded, tmp_path, other_hash))
    assert verdict.passed and verdict.unreproducible == 1


def test_a_recording_of_another_configuration_keeps_only_what_differs(recorded, tmp_path):
    data, arrays = recording.load(recorded)
    base = tmp_path / "native.npz"
    recording.write(base, data, arrays)
    same = tmp_path / "same.npz"
    assert recording.write(same, data, arrays, base=base) < base.stat().st_size / 5
    ours, theirs = recording.judge_file(same), recording.judge_file(base)
    assert ours.passed and ours.cases == 0 and ours.inherited == theirs.cases > 0  # every case its base's: judged there

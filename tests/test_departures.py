"""The declared departures: every quirk is checked on the machine at hand, both ways.

Where a quirk's probe says it shows, torch behaves as declared on the quirk's example (known
deviations, no failure) and lifting the declaration makes that example fail: the declaration is
load-bearing. Where it does not show, the same example agrees with the math. Its region stays
narrow: a wrong value outside it is a failure even where the quirk is in force. No test here asserts
one machine's kernel behaviour unconditionally.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from checks import departures, devices, modes
from checks.compare import compare
from checks.dtypes import DTYPE_NAMES
from checks.registry import BY_NAME, get
from checks.runner import Runner

ROOT = Path(__file__).resolve().parent.parent


def _quirk_devices(device: str) -> list:
    return [pytest.param(q, id=q.id) for q in departures.QUIRKS if device in q.devices]


def _example(quirk: departures.Departure, device: str) -> list:
    runner = Runner(get(quirk.ops[0]), device, quirk.example_dtype)
    if quirk.modes != ("reverse",):  # a quirk of another way of differentiating: its first mode
        return modes.run(runner, quirk.modes[0], quirk.example)
    return runner.run(quirk.example)


def _fails(quirk: departures.Departure, device: str) -> bool:
    """Its example disagrees with the math, or (a quirk that declares an error) raises."""
    try:
        return not all(r.passed for r in _example(quirk, device))
    except Exception:  # noqa: BLE001 - an undeclared error is the failure a raising quirk's lifting shows
        return bool(quirk.raises)


def _deviations(records: list, quirk_id: str) -> int:
    return sum(count for r in records for name, count in r.deviations if name == quirk_id)


@pytest.mark.parametrize("quirk", departures.QUIRKS, ids=[q.id for q in departures.QUIRKS])
def test_a_quirk_behaves_as_declared_where_it_shows_and_as_the_math_where_it_does_not(quirk, device):
    if device not in quirk.devices:
        pytest.skip(f"{quirk.id} concerns {', '.join(quirk.devices)}, not {device}")
    if reason := devices.unsupported_reason(device, quirk.example_dtype):
        pytest.skip(reason)
    records = _example(quirk, device)
    failures = [r.message() for r in records if not r.passed]
    assert not failures, "\n".join(failures)
    if not departures.shows(quirk, device):
        assert _deviations(records, quirk.id) == 0
        return
    if quirk.always:
        assert _deviations(records, quirk.id) > 0, f"{quirk.id} shows here (probe) but its example has no known deviation"
        with departures.lifted(quirk.id):
            assert _fails(quirk, device), f"lifting {quirk.id} does not fail its example: it is not load-bearing"


def test_every_quirk_example_reaches_its_region(device):
    """An example outside its region would test nothing, on any machine."""
    for quirk in departures.QUIRKS:
        if device not in quirk.devices or devices.unsupported_reason(device, quirk.example_dtype):
            continue
        if quirk.modes != ("reverse",):
            # a mode's quirk: its example's records are of its phases (a raising one's: its one record)
            phases = {r.context.phase for r in _example(quirk, device)}
            assert phases & {p for p in quirk.phases} or (quirk.raises and phases), f"{quirk.id}: its example never reaches {quirk.phases}"
            continue
        ev = Runner(get(quirk.ops[0]), device, quirk.example_dtype).evaluate(quirk.example)
        reached = [np.asarray(quirk.region(departures.Where(ev.case, phase, ev.grad_output, np.ones(()), quirk.ops[0]))).any() for phase in quirk.phases]
        assert any(reached), f"{quirk.id}: its example {quirk.example} never enters its region"


def test_declarations_name_real_ops_phases_dtypes_and_tests():
    for d in departures.DEPARTURES:
        assert set(d.modes) <= set(modes.ALL), d.id
        for op in d.ops:
            spec = BY_NAME[op]
            if d.modes == ("reverse",):
                assert set(d.phases) <= {"forward", *(f"grad[{name}]" for name in spec.grad_inputs)}, d.id
            else:  # a mode's phases: "jvp", "hvp[input]", ... (a raising quirk's: the mode's phase, "hvp")
                mode_phases = {modes.MODES[m].phase for m in d.modes}
                assert all(p in mode_phases or p.split("[")[0] in mode_phases for p in d.phases), d.id
        assert set(d.dtypes) <= set(DTYPE_NAMES) and set(d.devices) <= set(devices.DEVICES), d.id
        assert d.upstream and d.what and d.returns, d.id
        for test in d.tests:
            path, _, name = test.partition("::")
            assert f"def {name}(" in (ROOT / path).read_text(), f"{d.id}: {test} does not exist"


def _odd_k_case():
    quirk = departures.get("onednn-bf16-odd-k-inf-nan")
    ev = Runner(get("linear"), "cpu", "bfloat16").evaluate(quirk.example, gradient=False)
    expected = get("linear").forward(*ev.case.inputs.values())
    rows = np.isinf(ev.case.inputs["input"][:, -1])
    return quirk, ev.case, expected, rows


def _judge(quirk, case, actual, expected):
    from checks.compare import Context

    where = departures.Where(case, "forward", None, np.zeros(()), "linear")
    context = Context("linear", "forward", "functional", "cpu", "bfloat16", expected.shape)
    info = Runner(get("linear"), "cpu", "bfloat16").info
    return compare(actual, expected, scale=0.0, info=info, k=4, context=context,
                   quirks=departures.active("linear", "forward", "bfloat16", "cpu"), where=where)


def test_a_nan_row_is_a_known_deviation_only_where_the_odd_k_quirk_declares_it():
    """As on an AVX-512 CPU without native bf16 (the quirk forced on): NaN across a row whose last
    input is infinite is known; the same NaN in any other row is a failure."""
    quirk, case, expected, rows = _odd_k_case()
    assert rows.any() and (~rows).any()
    inside = np.where(rows[:, None], np.nan, expected)
    outside = inside.copy()
    outside[np.flatnonzero(~rows)[0], 0] = np.nan
    with departures.forced(quirk.id):
        known = _judge(quirk, case, inside, expected)
        assert known.passed and known.deviations == ((quirk.id, int(np.sum(rows[:, None] & ~np.isnan(expected)))),)
        stray = _judge(quirk, case, outside, expected)
        assert not stray.passed and stray.n_bad == 1 and "onednn" in stray.message()
    with departures.lifted(quirk.id):  # as where the quirk does not show (on this CPU it may)
        assert not _judge(quirk, case, inside, expected).passed, "where the quirk does not show, the NaN rows are failures"


def test_a_fault_outside_an_active_quirks_region_is_still_caught():
    """A relative error of 1/4 (16 bf16 ULPs) on an element outside the region fails, quirk or no quirk."""
    quirk, case, expected, rows = _odd_k_case()
    faulty = np.where(rows[:, None], np.nan, expected)
    i = np.flatnonzero(~rows & np.isfinite(expected).all(axis=1) & (np.abs(expected[:, 0]) > 1e-3))[0]
    faulty[i, 0] *= 1.25
    with departures.forced(quirk.id):
        record = _judge(quirk, case, faulty, expected)
    assert not record.passed and record.worst_index == (i, 0)


def test_a_flushed_product_is_known_only_as_far_as_the_quirk_allows():
    """As on a CPU with native bf16 (forced on): x = [tiny, -tiny], w = [-0.66, 0.957] sums two
    subnormal products to -1.9e-38 (hand math); -0.0 is known, +1.9e-38 is off by more than the
    two dropped products and stays a failure. Where the quirk does not show, -0.0 fails."""
    from checks.spec import Case

    quirk = departures.get("bf16-dot-product-flushes-subnormals")
    tiny = departures.cpu.BF16_TINY
    case = Case({"input": np.array([[tiny, -tiny], [1.0, 1.0]]), "weight": np.array([[-0.66015625, 0.95703125]]), "bias": None})
    expected = np.array([[tiny * -0.66015625 - tiny * 0.95703125], [-0.66015625 + 0.95703125]])
    assert expected[0, 0] == pytest.approx(-1.900994770470418e-38, rel=1e-12)
    flushed = np.array([[-0.0], [expected[1, 0]]])
    with departures.forced(quirk.id):
        record = _judge(quirk, case, flushed, expected)
        assert record.passed and record.deviations == ((quirk.id, 1),)
        assert not _judge(quirk, case, -expected, expected).passed
    with departures.lifted(quirk.id):  # as where the quirk does not show (on this CPU it may)
        assert not _judge(quirk, case, flushed, expected).passed


def _conv_judge(case, phase, actual, expected, g=None):
    from checks.compare import Context

    where = departures.Where(case, phase, g, np.zeros(()), "conv1d")
    context = Context("conv1d", phase, "functional", "cpu", "bfloat16", expected.shape)
    return compare(actual, expected, scale=0.0, info=Runner(get("conv1d"), "cpu", "bfloat16").info, k=4, context=context,
                   quirks=departures.active("conv1d", phase, "bfloat16", "cpu"), where=where)


@pytest.mark.parametrize("phase", ["forward", "grad[weight]"])
def test_a_flushed_convolution_is_known_only_for_its_subnormal_products(phase):
    """As on a CPU with native bf16 (forced on), s = 2^-127 (a bf16 subnormal). Forward: x = [s, s, s, s, 1]
    with w = [1, 1, 1, 1] is [4s, 1 + 3s] by hand; 0 for 4s = 2^-125 (two smallest normals) is the
    four flushed products, known. grad[weight] of x = [s]*8 + [1], w = [1, 1] at g = 1: tap 0 sums
    8s = 2^-124 from eight subnormal factors, 0 is known. Past what the products allow (2^-110
    there, or 0 where the sum is 1) it fails; with the quirk lifted, the flush fails too."""
    from checks.spec import Case

    quirk = departures.get("bf16-dot-product-flushes-subnormals")
    s = 2.0**-127
    params = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}
    if phase == "forward":
        case = Case({"input": np.array([[[s, s, s, s, 1.0]]]), "weight": np.ones((1, 1, 4)), "bias": None}, params)
        expected, g = np.array([[[4 * s, 1.0 + 3 * s]]]), None
        assert np.array_equal(get("conv1d").forward(*case.inputs.values(), **params), expected)
    else:
        case = Case({"input": np.array([[[s] * 8 + [1.0]]]), "weight": np.ones((1, 1, 2)), "bias": None}, params)
        g = np.ones((1, 1, 8))
        expected = np.array([[[8 * s, 1.0 + 7 * s]]])
        assert np.array_equal(get("conv1d").backward(g, *case.inputs.values(), **params)[1], expected)
    flushed, beyond, lost = np.array([[[0.0, 1.0]]]), np.array([[[2.0**-110, 1.0]]]), np.array([[[0.0, 0.0]]])
    with departures.forced(quirk.id):
        known = _conv_judge(case, phase, flushed, expected, g)
        assert known.passed and known.deviations == ((quirk.id, 1),)
        assert not _conv_judge(case, phase, beyond, expected, g).passed
        assert not _conv_judge(case, phase, lost, expected, g).passed
    with departures.lifted(quirk.id):
        assert not _conv_judge(case, phase, flushed, expected, g).passed

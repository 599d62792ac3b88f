"""A corpus of learners' modules (tests/learners/) and the verdict a fair teacher gives each function.

✓ agrees; ✗ wrong on the course's inputs, with the mistake named; ⚠ right on the course's inputs but
fragile or of another convention at an edge, with the lesson. Every verdict comes with words, never a
traceback, and `byhand verify --impl` and `pytest --impl` give the same ones.

Checking a module takes seconds (60 course cases and 3 × 30 edge cases per function): each module and
each command is run in the worker beside the suite (conftest.py), and these tests read the results.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from checks import cli, learner
from checks.registry import REGISTRY

CORPUS = Path(__file__).resolve().parent / "learners"
A, W, F = learner.AGREES, learner.WRONG, learner.FRAGILE

# (file, function): (verdict, words the explanation must contain)
FAIR = {
    ("textbook", "relu"): (A, "agrees"),
    ("textbook", "relu_backward"): (F, "for NaN that test is false"),
    ("textbook", "softmax"): (F, "empty input"),
    ("textbook", "linear"): (F, "bias=None"),
    ("textbook", "linear_backward"): (F, "one unbatched sample (a 1-D input)"),
    ("textbook", "cross_entropy"): (F, "torch also takes"),
    ("textbook", "mse_loss"): (A, "agrees"),
    ("textbook", "mse_loss_backward"): (A, "agrees"),
    ("notebook_002", "sigmoid"): (A, "agrees"),
    ("notebook_002", "softmax"): (F, "one global maximum underflows rows far below it"),
    ("softmax_axis", "softmax"): (F, "empty input"),
    ("fragile", "softmax"): (F, "subtract each row's maximum"),
    ("fragile", "elu"): (F, "np.expm1"),
    ("fragile", "binary_cross_entropy"): (F, "clamps each log at -100"),
    ("fragile", "relu_backward"): (F, "torch uses 0 there"),
    ("mistakes", "cross_entropy"): (W, "divide by N"),
    ("mistakes", "cross_entropy_backward"): (W, "divide by N"),
    ("mistakes", "mse_loss"): (W, "Did you forget the mean?"),
    ("mistakes", "sigmoid_backward"): (W, "multiply by grad_output"),
    ("mistakes", "l1_loss"): (W, "opposite sign"),
    ("mistakes", "linear"): (W, "your function raised ValueError"),
    ("returns", "relu"): (W, "You returned None: missing `return`?"),
    ("returns", "sigmoid"): (W, "You returned a Python list"),
    ("returns", "leaky_relu"): (W, "You returned a float32 torch tensor"),
    ("returns", "mse_loss"): (W, "Your function takes 1 argument (x); torch's mse_loss takes input, target"),
    ("raises", "l1_loss"): (W, "your function raised NotImplementedError: only vectors"),
    ("odd_ones", "linear"): (A, "agrees"),
    ("odd_ones", "linear_backward"): (W, "return the tuple (grad_input, grad_weight, grad_bias); you returned 2 values"),
    ("odd_ones", "relu"): (F, "Your function called sys.exit('empty!')"),
    ("odd_ones", "sigmoid"): (W, "You returned an array of <U5 values, not numbers"),
}
NOTES = {("softmax_axis", "softmax"): "torch calls your `axis` argument `dim`", ("notebook_002", "softmax"): "takes no `dim`"}

# The second course's corpus (CNNs and transformers): correct code in loops, einsum and strided-window
# styles, and each mistake students make, named by its diagnosis.
UNBATCHED = "one unbatched sample, without the batch dimension"
FAIR_COURSE2 = {
    ("course2_activations", "gelu"): (A, "agrees"),
    ("course2_activations", "gelu_backward"): (A, "agrees"),
    ("course2_activations", "silu"): (A, "agrees"),
    ("course2_activations", "silu_backward"): (A, "agrees"),
    ("course2_adaptive", "adaptive_avg_pool2d"): (A, "agrees"),
    ("course2_adaptive", "adaptive_avg_pool2d_backward"): (A, "agrees"),
    ("course2_attention", "scaled_dot_product_attention"): (F, "every key is masked attends to nothing"),
    ("course2_attention", "scaled_dot_product_attention_backward"): (F, "every key is masked attends to nothing"),
    ("course2_attention_einsum", "scaled_dot_product_attention"): (A, "agrees"),
    ("course2_attention_einsum", "scaled_dot_product_attention_backward"): (A, "agrees"),
    ("course2_batchnorm", "batch_norm"): (A, "agrees"),
    ("course2_batchnorm", "batch_norm_backward"): (A, "agrees"),
    ("course2_bn_no_running", "batch_norm"): (W, "torch updates running_mean in place: yours left it as it was"),
    ("course2_einsum_conv", "conv1d"): (F, UNBATCHED),
    ("course2_einsum_conv", "conv1d_backward"): (F, UNBATCHED),
    ("course2_einsum_conv", "conv2d"): (F, UNBATCHED),
    ("course2_einsum_conv", "conv2d_backward"): (F, UNBATCHED),
    ("course2_embedding", "embedding"): (A, "agrees"),
    ("course2_embedding", "embedding_backward"): (A, "agrees"),
    ("course2_flipped_kernel", "conv2d"): (W, "a true convolution (the kernel flipped)"),
    ("course2_groupnorm", "group_norm"): (A, "agrees"),
    ("course2_groupnorm", "group_norm_backward"): (A, "agrees"),
    ("course2_im2col", "conv2d"): (A, "agrees"),
    ("course2_im2col", "conv2d_backward"): (A, "agrees"),
    ("course2_layernorm", "layer_norm"): (A, "agrees"),
    ("course2_layernorm", "layer_norm_backward"): (A, "agrees"),
    ("course2_layernorm_gradw", "layer_norm_backward"): (W, "Your weight gradient sums grad_output · x"),
    ("course2_layernorm_plain", "layer_norm"): (A, "agrees"),
    ("course2_layernorm_plain", "layer_norm_backward"): (A, "agrees"),
    ("course2_loops_conv", "conv1d"): (F, UNBATCHED),
    ("course2_loops_conv", "conv1d_backward"): (F, UNBATCHED),
    ("course2_loops_conv", "conv2d"): (F, UNBATCHED),
    ("course2_loops_conv", "conv2d_backward"): (F, UNBATCHED),
    ("course2_loops_pool", "max_pool2d"): (F, UNBATCHED),
    ("course2_loops_pool", "max_pool2d_backward"): (F, "right on the course's inputs"),  # a window of two NaNs, or an unbatched sample
    ("course2_loops_pool", "avg_pool2d"): (F, UNBATCHED),
    ("course2_loops_pool", "avg_pool2d_backward"): (F, UNBATCHED),
    ("course2_mish", "mish"): (A, "agrees"),
    ("course2_mish", "mish_backward"): (A, "agrees"),
    ("course2_norm_ddof", "layer_norm"): (W, "the unbiased variance (ddof=1"),
    ("course2_norm_ddof", "batch_norm"): (W, "normalises each sample over its features"),
    ("course2_norm_eps", "gelu"): (W, "GELU's tanh approximation"),
    ("course2_norm_eps", "layer_norm"): (W, "divides by sqrt(var) + eps"),
    ("course2_one_side_pad", "conv2d"): (W, "the padding on one side only"),
    ("course2_pool_mask", "max_pool2d"): (F, UNBATCHED),
    ("course2_pool_mask", "max_pool2d_backward"): (F, "first maximum in row-major order"),
    ("course2_pool_mistakes", "max_pool2d"): (F, UNBATCHED),
    ("course2_pool_mistakes", "max_pool2d_backward"): (W, "spreads each window's grad_output evenly, as average pooling would"),
    ("course2_pool_mistakes", "avg_pool2d"): (W, "count_include_pad=True (torch's default) the padded zeros count"),
    ("course2_stride_backward", "conv2d"): (F, UNBATCHED),
    ("course2_stride_backward", "conv2d_backward"): (W, "the one for stride 1"),
    ("course2_strided_pool", "max_pool2d"): (A, "agrees"),
    ("course2_strided_pool", "avg_pool2d"): (A, "agrees"),
    ("course2_strided_pool", "avg_pool2d_backward"): (A, "agrees"),
    ("course2_transformer_mistakes", "embedding"): (A, "agrees"),
    ("course2_transformer_mistakes", "embedding_backward"): (W, "counts a repeated index once"),
    ("course2_transformer_mistakes", "scaled_dot_product_attention"): (W, "attention without the scale"),
    ("course2_typos", "silu"): (A, "agrees"),
}
FAIR = {**FAIR, **FAIR_COURSE2}



# `byhand verify --impl` draws 60 cases per stage; 30 give every verdict below the same (measured for
# the whole corpus) in half the time, and the thorough profile draws the full 60.
EXAMPLES = 60 if settings.get_current_profile_name() == "thorough" else 30


# The second course's 26 modules: the thorough profile checks every verdict at byhand's 60 cases a
# stage; the default profile, to stay in its budget, the ✗ verdicts (each mistake and its diagnosis,
# found in the course stage) at 10, the same verdicts as at 60 (measured). torch_control below
# covers ✓ on every op in the default profile.
THOROUGH = settings.get_current_profile_name() == "thorough"
EXAMPLES_COURSE2 = 60 if THOROUGH else 10
if not THOROUGH:
    FAIR = {key: verdict for key, verdict in FAIR.items() if not key[0].startswith("course2_") or verdict[0] == W}


def _ops(file: str) -> tuple[str, ...] | None:
    """The ops a course2 module's table entries name (its other functions are not run), or None: all."""
    if THOROUGH or not file.startswith("course2_"):
        return None
    return tuple(sorted({name.removesuffix("_backward") for f, name in FAIR if f == file}))


def _verdicts(file: str) -> pytest.MarkDecorator:
    examples = EXAMPLES_COURSE2 if file.startswith("course2_") else EXAMPLES
    return pytest.mark.beside(learner.verdicts_of, str(CORPUS / f"{file}.py"), examples, _ops(file))


def run_cli(*args: str) -> tuple[int, str]:
    """``byhand`` with ``args``: its exit code and what it printed (for the worker beside the suite)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(args))
    return code, out.getvalue()


@pytest.mark.parametrize("key", [pytest.param(key, marks=_verdicts(key[0]), id=f"{key[0]}-{key[1]}") for key in FAIR])
def test_each_function_gets_its_fair_verdict_in_words(beside, key):
    status, words = FAIR[key]
    verdict = beside[key[1]]
    assert verdict.status == status, verdict.explanation
    assert words in verdict.explanation, verdict.explanation
    assert "Traceback" not in verdict.explanation and 'File "' not in verdict.explanation
    if key in NOTES:
        assert any(NOTES[key] in note for note in verdict.notes)


@pytest.mark.parametrize("file", [pytest.param(file, marks=_verdicts(file)) for file in sorted({f for f, _ in FAIR})])
def test_every_function_of_the_corpus_has_a_verdict_in_the_table(beside, file):
    ops = _ops(file)
    assert {n for n in beside if ops is None or n.removesuffix("_backward") in ops} >= {name for f, name in FAIR if f == file}
    if ops is None:
        assert set(beside) == {name for f, name in FAIR if f == file}


@pytest.mark.parametrize("file, words", [
    ("syntax_error", "syntax_error.py:4: syntax error"),
    ("import_error", "could not be imported: No module named 'my_helpers'"),
    ("empty", "defines none of byhand's function names. byhand knows: sigmoid, sigmoid_backward, relu"),
    ("unrelated", "defines none of byhand's function names"),
])
def test_a_broken_or_empty_module_is_one_clear_line(file, words):
    code, out = run_cli("verify", "--impl", str(CORPUS / f"{file}.py"))
    assert code == 2
    assert words in out and "Traceback" not in out and len(out.strip().splitlines()) == 1


FRAGILE_MODULE = str(CORPUS / "fragile.py")


@pytest.mark.parametrize("args, code, words", [
    pytest.param(args, code, words, marks=pytest.mark.beside(run_cli, *args), id=name) for name, args, code, words in [
        ("fragile-passes", ("verify", "--impl", FRAGILE_MODULE, "--quiet"), 0, "⚠ softmax"),
        ("fragile-fails-strict", ("verify", "--impl", FRAGILE_MODULE, "--quiet", "--strict"), 1, "⚠ softmax"),
        ("wrong-fails", ("verify", "--impl", str(CORPUS / "mistakes.py"), "--quiet", "--ops", "mse_loss"), 1, "✗ mse_loss"),
    ]])
def test_only_a_wrong_function_fails_unless_strict(beside, args, code, words):
    assert beside[0] == code and words in beside[1], beside[1][-2000:]


def test_options_that_do_not_apply_are_refused_clearly(capsys):
    assert cli.main(["verify", "--impl", str(CORPUS / "fragile.py"), "--dtype", "float16"]) == 2
    assert "--dtype does not apply with --impl" in capsys.readouterr().out


# The control: torch's own functionals under every registry name (tests/learners/torch_control.py).
# Torch agrees with itself, so every verdict is ✓; anything else is byhand's fault. The thorough
# profile checks all 69 functions at byhand's 60 cases a stage; the default profile each stage's
# simplest case of the ops with a course stage of their own (the second course's: their own shapes
# and knobs), in two jobs beside the suite; the first course's generic draws have the corpus above.
CONTROL = str(CORPUS / "torch_control.py")
CONTROL_EXAMPLES = 60 if THOROUGH else 1
_OPS = [spec.name for spec in REGISTRY if THOROUGH or spec.course_shapes is not None or spec.course_knobs is not None]
CONTROL_PARTS = [tuple(_OPS[i::2]) for i in range(2)]


@pytest.mark.parametrize("ops", [pytest.param(ops, marks=pytest.mark.beside(learner.verdicts_of, CONTROL, CONTROL_EXAMPLES, ops), id=f"part{i}")
                                 for i, ops in enumerate(CONTROL_PARTS)])
def test_torch_itself_gets_a_tick_on_every_function_of_every_op(beside, ops):
    assert {name.removesuffix("_backward") for name in beside} == set(ops)
    wrong = [v.explanation for v in beside.values() if v.status != learner.AGREES]
    assert not wrong, "byhand's learner check is unfair to torch itself:\n" + "\n".join(wrong)


def test_the_typos_module_is_told_its_misspelled_ops_and_its_helpers():
    read = learner.names(learner.load(str(CORPUS / "course2_typos.py")))
    assert read.checked == ("silu",) and read.misspelled == {"layernorm": "layer_norm", "maxpool2d": "max_pool2d"}, read
    assert "sigmoid_np" in read.helpers

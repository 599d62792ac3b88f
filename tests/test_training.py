"""A seeded training loop, replayed by hand.

Like the notebooks' salary example: a small table of categorical codes and a min-max-scaled
target, TensorDataset + DataLoader(batch_size=4, shuffle=True) with a seeded generator,
Linear(4, 2) > Linear(2, 1), MSELoss, SGD, several epochs. The replay takes the batch order from a
DataLoader over the row *indices* with the same seed (torch's sampler is the randomness; every
number is computed in numpy): forward, loss, backward and update by hand. The loss at every step and
the final weights must match. Each step may add its chain's rounding (k ULPs per op, three ops), and
small-step SGD on a least-squares loss does not amplify earlier errors, so k grows with the step count
(k * 3 * 30 = 720 ULP; measured: at most 12 ULP in float64 and 9 in float32 over 30 steps, so the
bound is the derived worst case, not a fitted one; 720 ULP in float64 is still 1.6e-13 relative).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from checks import dtypes
from checks.compare import Context, assert_agrees, compare
from checks.tolerance import k_for
from reference import network, optim

ROWS, EPOCHS, LR, BATCH = 40, 3, 0.05, 4


def salary_table(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """experience level, employment type, company size (category codes), remote ratio, and a
    salary that depends on them, min-max scaled to [0, 1]."""
    features = np.column_stack([rng.integers(0, 4, ROWS), rng.integers(0, 4, ROWS), rng.choice([0, 50, 100], ROWS) / 100, rng.integers(0, 3, ROWS)]).astype(float)
    salary = 40_000 + 25_000 * features[:, 0] + 10_000 * features[:, 3] + 5_000 * features[:, 2] + rng.normal(0, 8_000, ROWS)
    return features, ((salary - salary.min()) / (salary.max() - salary.min()))[:, None]


def train_with_torch(features, target, dtype, seed):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 1)).to(dtype)
    initial = [p.detach().double().numpy().copy() for p in model.parameters()]
    loader = DataLoader(TensorDataset(torch.tensor(features, dtype=dtype), torch.tensor(target, dtype=dtype)), batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    losses = []
    for _ in range(EPOCHS):
        for x, y in loader:
            optimizer.zero_grad()
            loss = nn.MSELoss()(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return initial, losses, [p.detach().double().numpy() for p in model.parameters()]


def replay_by_hand(features, target, initial, seed):
    """The same loop in numpy; only the batch order comes from torch's seeded sampler."""
    w0, b0, w1, b1 = initial
    layers = [("linear", {"weight": w0, "bias": b0}), ("linear", {"weight": w1, "bias": b1})]
    order = DataLoader(TensorDataset(torch.arange(ROWS)), batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(seed))
    losses = []
    for _ in range(EPOCHS):
        for (rows,) in order:
            idx = rows.numpy()
            loss, grads = network.loss_and_gradients(layers, features[idx], target[idx], "mse_loss")
            layers = [(name, {k: optim.sgd_step(v, g[k], {}, lr=LR)[0] for k, v in params.items()}) for (name, params), g in zip(layers, grads)]
            losses.append(float(loss))
    return losses, [layers[0][1]["weight"], layers[0][1]["bias"], layers[1][1]["weight"], layers[1][1]["bias"]]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_loop_replayed_by_hand(dtype, seed):
    info = dtypes.get(dtype)
    features, target = salary_table(np.random.default_rng(seed))
    features, target = dtypes.round_to(features, info), dtypes.round_to(target, info)
    initial, torch_losses, torch_params = train_with_torch(features, target, info.torch, seed)
    hand_losses, hand_params = replay_by_hand(features, target, initial, seed)
    steps = len(torch_losses)
    assert steps == EPOCHS * ROWS // BATCH and torch_losses[-1] < torch_losses[0], "the loop trains"
    k = k_for("forward", dtype) * 3 * steps
    ctx = Context("training loop", "loss per step", "SGD", "cpu", dtype, (steps,), f"seed {seed}")
    assert_agrees(compare(np.array(torch_losses), np.array(hand_losses), scale=np.array(hand_losses), info=info, k=k, context=ctx))
    for name, theirs, ours in zip(("0.weight", "0.bias", "1.weight", "1.bias"), torch_params, hand_params):
        ctx = Context("training loop", f"final {name}", "SGD", "cpu", dtype, ours.shape, f"seed {seed}")
        assert_agrees(compare(theirs, ours, scale=np.abs(ours).max(), info=info, k=k, context=ctx))

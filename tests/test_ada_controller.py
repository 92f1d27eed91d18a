"""The ADA probability controller (training/ada.py): step size, direction, clamping, state."""

from __future__ import annotations

import json
import math

import pytest
import torch

from training.ada import AdaController


def _logits(n_pos: int, n_neg: int, n_zero: int = 0) -> torch.Tensor:
    return torch.cat([torch.full([n_pos], 2.5), torch.full([n_neg], -0.5), torch.zeros(n_zero)])


def test_step_size_by_hand():
    # 32 images x 4 steps / 500,000 images = 0.000256 per update.
    ada = AdaController(target=0.6, ada_kimg=500, batch=32)
    assert ada.step_size == 0.000256
    # 64 x 4 / 100,000 = 0.00256.
    assert AdaController(target=0.6, ada_kimg=100, batch=64, interval=4).step_size == 0.00256


def test_rt_is_the_mean_sign_and_p_moves_up_above_the_target():
    ada = AdaController(target=0.6, ada_kimg=500, batch=32, p=0.5)
    ada.accumulate(_logits(6, 1, 1).view(2, 4))  # (6 - 1 + 0) / 8 = 0.625 > 0.6
    ada.accumulate(_logits(2, 0))  # (5 + 2) / 10 = 0.7
    assert ada.accumulator.tolist() == [7.0, 10.0]
    assert ada.update() == 0.5 + 0.000256
    assert ada.last_rt == 0.7
    assert ada.accumulator.tolist() == [0.0, 0.0]  # reset


def test_p_moves_down_below_the_target_and_stays_at_it():
    ada = AdaController(target=0.6, ada_kimg=500, batch=32, p=0.5)
    ada.accumulate(_logits(1, 1))  # r_t = 0
    assert ada.update() == 0.5 - 0.000256 and ada.last_rt == 0.0
    ada.accumulate(_logits(4, 1))  # r_t = 3/5 = 0.6 exactly: sign(0) = 0
    assert ada.update() == 0.5 - 0.000256


def test_clamped_to_zero_and_one():
    low = AdaController(target=0.6, ada_kimg=1, batch=100, interval=4, p=0.1)  # step 0.4
    low.accumulate(_logits(0, 3))
    assert low.update() == 0.0
    high = AdaController(target=0.6, ada_kimg=1, batch=100, interval=4, p=0.9)
    high.accumulate(_logits(3, 0))
    assert high.update() == 1.0


def test_zero_count_leaves_p_alone():
    ada = AdaController(target=0.6, ada_kimg=500, batch=32, p=0.3)
    ada.accumulate(_logits(3, 0))
    ada.update()
    assert ada.last_rt == 1.0
    p = ada.p
    assert ada.update() == p and ada.last_rt is None
    assert ada.accumulator.tolist() == [0.0, 0.0]


def test_nan_logits_leave_p_alone():
    ada = AdaController(target=0.6, ada_kimg=500, batch=32, p=0.3)
    ada.accumulate(torch.tensor([1.0, float("nan")]))
    assert ada.update() == 0.3 and math.isnan(ada.last_rt)
    resumed = AdaController(target=0.6, ada_kimg=500, batch=32)
    resumed.load_state_dict(json.loads(json.dumps(ada.state_dict())))  # Python's json keeps NaN
    assert resumed.p == 0.3 and math.isnan(resumed.last_rt)


def test_due_every_interval_completed_steps():
    ada = AdaController(target=0.6, ada_kimg=500, batch=32, interval=4)
    assert [s for s in range(0, 13) if ada.due(s)] == [4, 8, 12]


def test_accumulator_sums_over_processes_like_one_process():
    # Two "processes" each see half the logits; summing their accumulators equals one process.
    logits = torch.randn(64, generator=torch.Generator().manual_seed(0))
    one = AdaController(target=0.6, ada_kimg=500, batch=64)
    one.accumulate(logits)
    ranks = [AdaController(target=0.6, ada_kimg=500, batch=64) for _ in range(2)]
    ranks[0].accumulate(logits[:32])
    ranks[1].accumulate(logits[32:])
    total = ranks[0].accumulator + ranks[1].accumulator
    for r in ranks:
        r.accumulator.copy_(total)  # what all_reduce(SUM) does in place
    assert [r.update() for r in ranks] == [one.update()] * 2 and ranks[0].last_rt == one.last_rt


def _drive(ada: AdaController, steps: int, seed: int) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for step in range(1, steps + 1):
        ada.accumulate(torch.randn(8, generator=gen) + 0.3)  # r_t hovers around 0.24 +- 0.17
        if ada.due(step):
            out.append(ada.update())
    return out


def test_state_round_trip_gives_identical_p_sequences():
    ada = AdaController(target=0.2, ada_kimg=0.5, batch=8, interval=4, p=0.05)
    _drive(ada, 10, seed=1)  # stops between updates: the accumulator holds 2 steps
    state = json.loads(json.dumps(ada.state_dict()))  # through JSON, as state/ stores it
    assert state["accumulator"][1] == 16.0 and isinstance(state["p"], float)
    resumed = AdaController(target=0.2, ada_kimg=0.5, batch=8, interval=4)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == ada.state_dict()
    a = _drive(ada, 40, seed=2)
    b = _drive(resumed, 40, seed=2)
    assert a == b and len(set(a)) > 2  # p did move, both ways or at least several times
    assert resumed.last_rt == ada.last_rt


def test_load_state_rejects_bad_state():
    ada = AdaController(target=0.6, ada_kimg=500, batch=32)
    with pytest.raises(ValueError, match="expected \\['accumulator', 'last_rt', 'p'\\]"):
        ada.load_state_dict({"p": 0.1})
    with pytest.raises(ValueError, match="p=1.5"):
        ada.load_state_dict({"p": 1.5, "accumulator": [0.0, 0.0], "last_rt": None})
    with pytest.raises(ValueError, match="accumulator"):
        ada.load_state_dict({"p": 0.5, "accumulator": [0.0], "last_rt": None})


def test_reaches_one_after_the_predicted_number_of_updates():
    batch, interval, ada_kimg = 32, 4, 5  # step 32 * 4 / 5000 = 0.0256: 1 / 0.0256 = 39.06 -> 40 updates
    ada = AdaController(target=0.6, ada_kimg=ada_kimg, batch=batch, interval=interval)
    predicted = math.ceil(ada_kimg * 1000 / (batch * interval))
    assert predicted == 40
    ps = []
    step = 0
    while not ps or ps[-1] < 1.0:
        step += 1
        ada.accumulate(_logits(9, 1))  # r_t = 0.8 > 0.6 every time
        if ada.due(step):
            ps.append(ada.update())
        assert step < 10_000
    assert len(ps) == predicted and step == predicted * interval
    assert ps[-2] < 1.0 and ps[-1] == 1.0
    assert ps[0] == pytest.approx(0.0256) and ps[-2] == pytest.approx(39 * 0.0256)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": 0.0}, "target=0.0"),
        ({"target": 1.0}, "target=1.0"),
        ({"ada_kimg": 0}, "ada_kimg=0"),
        ({"ada_kimg": float("inf")}, "ada_kimg=inf"),
        ({"batch": 0}, "batch=0"),
        ({"batch": 2.5}, "batch=2.5"),
        ({"interval": 0}, "interval=0"),
        ({"p": -0.1}, "p=-0.1"),
    ],
)
def test_validation(kwargs, message):
    args = {"target": 0.6, "ada_kimg": 500, "batch": 32} | kwargs
    with pytest.raises(ValueError, match=message) as info:
        AdaController(**args)
    assert "\n" not in str(info.value)

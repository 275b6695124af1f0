"""Learning-rate schedules: one per-step table that every engine reads."""

import numpy as np
import pytest

from netfit.schedules import SCHEDULES, lr_table
from netfit.spec import ScheduleSpec, spec_from_dict


def schedule(value):
    return spec_from_dict({"train": {"schedule": value}}).train.schedule


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_gives_one_positive_rate_per_step(name):
    rates = lr_table(schedule(name), 0.1, steps_per_epoch=7, epochs=5)
    assert rates.shape == (35,)
    assert np.all(rates > 0) and np.all(rates <= 0.1 + 1e-12)


def test_constant_and_warmup():
    assert np.all(lr_table(schedule("constant"), 0.1, 10, 3) == 0.1)
    warm = lr_table(schedule({"name": "warmup", "warmup_epochs": 1}), 0.1, 10, 3)
    assert np.allclose(warm[:10], 0.1 * np.arange(1, 11) / 10) and np.all(warm[10:] == 0.1)


def test_step_decays_every_step_epochs():
    rates = lr_table(schedule({"name": "step", "step_epochs": 2, "gamma": 0.5}), 1.0, 4, 6)
    assert rates[::4].tolist() == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_cosine_runs_from_lr_to_the_floor():
    rates = lr_table(schedule({"name": "cosine", "min_lr_ratio": 0.1}), 1.0, 10, 10)
    assert rates[0] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.1, abs=0.01) and rates.min() > 0.1
    assert np.all(np.diff(rates) <= 1e-12)


def test_one_cycle_rises_to_lr_then_falls_far_below_the_start():
    opts = schedule({"name": "one_cycle", "pct_start": 0.3, "div_factor": 25, "final_div_factor": 1e4})
    rates = lr_table(opts, 0.01, 10, 10)
    peak = int(np.argmax(rates))
    assert rates[peak] == pytest.approx(0.01) and peak == 29
    assert rates[0] == pytest.approx(0.01 / 25)
    assert rates[-1] == pytest.approx(0.01 / 25 / 1e4)
    assert np.all(np.diff(rates[:peak + 1]) >= 0) and np.all(np.diff(rates[peak:]) <= 0)


def test_one_cycle_matches_torch_onecycle():
    import torch

    opts = schedule({"name": "one_cycle", "pct_start": 0.25})
    ours = lr_table(opts, 0.02, 8, 5)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.02, total_steps=40, pct_start=0.25,
                                              cycle_momentum=False, anneal_strategy="cos")
    theirs = []
    for _ in range(40):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert np.allclose(ours, theirs, rtol=1e-6)


def test_options_of_another_schedule_are_refused():
    from netfit import NetfitError

    with pytest.raises(NetfitError, match="unknown key 'train.schedule.gamma'"):
        schedule({"name": "cosine", "gamma": 0.5})

"""Tests of apply_step, train and the plotting helpers of lesson 02, with torch.optim.SGD as the reference."""
import logging
import math
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.gradient_descent import (
    DivergenceError,
    TrainingHistory,
    apply_step,
    binary_cross_entropy,
    binary_error_rate,
    compare_learning_rates,
    explore_learning_rate,
    logistic,
    make_roller_coaster_speeds,
    make_two_class_points,
    mse,
    plot_fit_snapshots,
    plot_loss_curves,
    quadratic,
    train,
    validate_lr,
    widgets_available,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def speeds():
    return make_roller_coaster_speeds()


def sgd_reference(start, model, loss_func, x, y, lr, steps):
    "Return the parameters after `steps` steps of torch.optim.SGD from `start`."
    params = start.clone().requires_grad_()
    optimizer = torch.optim.SGD([params], lr=lr)
    for _ in range(steps):
        loss_func(model(x, params), y).backward()
        optimizer.step()
        optimizer.zero_grad()
    return params.detach()


@pytest.mark.parametrize("lr", [0.01, 0.3, 0.8])
def test_apply_step_matches_sgd_regression(speeds, lr):
    time, speed = speeds
    start = torch.tensor([1.0, -2.0, 0.5])
    params = start.clone().requires_grad_()
    expected = start.clone().requires_grad_()
    optimizer = torch.optim.SGD([expected], lr=lr)
    for _ in range(6):
        apply_step(params, quadratic, mse, time, speed, lr)
        mse(quadratic(time, expected), speed).backward()
        optimizer.step()
        optimizer.zero_grad()
        assert torch.allclose(params, expected, atol=1e-5)
        assert params.grad is None


def test_apply_step_matches_sgd_classification():
    features, classes = make_two_class_points()
    params = torch.tensor([-0.5, 0.0]).requires_grad_()
    for _ in range(8):
        apply_step(params, logistic, binary_cross_entropy, features, classes, lr=1.0)
    expected = sgd_reference(torch.tensor([-0.5, 0.0]), logistic, binary_cross_entropy, features, classes, 1.0, 8)
    assert torch.allclose(params.detach(), expected, atol=1e-5)


def test_apply_step_list_of_parameters(speeds):
    time, speed = speeds
    weights = torch.tensor([1.0, -2.0]).requires_grad_()
    bias = torch.tensor(0.5).requires_grad_()

    def model(x, params):
        w, b = params
        return w[0] * x**2 + w[1] * x + b

    expected_weights = weights.detach().clone().requires_grad_()
    expected_bias = bias.detach().clone().requires_grad_()
    optimizer = torch.optim.SGD([expected_weights, expected_bias], lr=0.2)
    for _ in range(5):
        apply_step([weights, bias], model, mse, time, speed, lr=0.2)
        mse(model(time, [expected_weights, expected_bias]), speed).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.allclose(weights, expected_weights, atol=1e-5)
    assert torch.allclose(bias, expected_bias, atol=1e-5)


def test_apply_step_ignores_stale_gradient(speeds):
    time, speed = speeds
    params = torch.tensor([1.0, 1.0, 1.0]).requires_grad_()
    mse(quadratic(time, params), speed).backward()  # a stray backward() before the step
    apply_step(params, quadratic, mse, time, speed, lr=0.3)
    expected = sgd_reference(torch.tensor([1.0, 1.0, 1.0]), quadratic, mse, time, speed, 0.3, 1)
    assert torch.allclose(params.detach(), expected, atol=1e-6)


def test_apply_step_returns_predictions(speeds):
    time, speed = speeds
    start = torch.tensor([1.0, 1.0, 1.0])
    preds = apply_step(start.clone().requires_grad_(), quadratic, mse, time, speed, lr=0.3)
    assert not preds.requires_grad
    assert torch.allclose(preds, quadratic(time, start))


def test_apply_step_prints_loss(speeds, capsys):
    time, speed = speeds
    params = torch.tensor([1.0, 1.0, 1.0]).requires_grad_()
    for i in range(2):
        apply_step(params, quadratic, mse, time, speed, lr=0.3, show=True, step=i)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"step 0: loss {mse(quadratic(time, torch.ones(3)), speed).item():.4f}"
    assert lines[1].startswith("step 1: loss ")


def test_apply_step_requires_grad_message(speeds):
    time, speed = speeds
    with pytest.raises(ValueError, match=r"params does not require gradients.*call params.requires_grad_\(\)"):
        apply_step(torch.tensor([1.0, 1.0, 1.0]), quadratic, mse, time, speed, lr=0.1)
    bias = torch.tensor(0.0)
    with pytest.raises(ValueError, match=r"call params\[1\].requires_grad_\(\)"):
        apply_step([torch.ones(2).requires_grad_(), bias], lambda x, p: p[0][0] * x + p[1], mse, time, speed, lr=0.1)


def test_apply_step_rejects_integer_and_nonleaf(speeds):
    time, speed = speeds
    with pytest.raises(TypeError, match="dtype torch.int64"):
        apply_step(torch.tensor([1, 1, 1]), quadratic, mse, time, speed, lr=0.1)
    computed = torch.ones(3).requires_grad_() * 2
    with pytest.raises(ValueError, match="computed from other tensors"):
        apply_step(computed, quadratic, mse, time, speed, lr=0.1)
    with pytest.raises(TypeError, match="params is a dict"):
        apply_step({"a": torch.ones(1)}, quadratic, mse, time, speed, lr=0.1)


@pytest.mark.parametrize("lr", [0, 0.0, -0.1, -5, float("nan"), float("inf"), float("-inf")])
def test_apply_step_rejects_nonpositive_lr(speeds, lr):
    time, speed = speeds
    params = torch.ones(3).requires_grad_()
    with pytest.raises(ValueError, match=re.escape(f"lr={lr!r} is not a positive number")):
        apply_step(params, quadratic, mse, time, speed, lr=lr)
    assert torch.equal(params.detach(), torch.ones(3))  # nothing was updated


@pytest.mark.parametrize("lr", ["0.1", None, True, [0.1]])
def test_apply_step_rejects_nonnumeric_lr(speeds, lr):
    time, speed = speeds
    with pytest.raises(TypeError, match=re.escape(f"lr={lr!r} is not a number")):
        apply_step(torch.ones(3).requires_grad_(), quadratic, mse, time, speed, lr=lr)


def test_validate_lr_accepts_numbers():
    assert validate_lr(1) == 1.0
    assert validate_lr(np.float32(0.5)) == 0.5
    assert validate_lr(torch.tensor(0.25)) == 0.25


def test_apply_step_nan_loss_names_step(speeds):
    time, speed = speeds
    params = torch.tensor([float("nan"), 1.0, 1.0]).requires_grad_()
    with pytest.raises(DivergenceError, match=r"the loss is nan at step 4 with lr=0.5.*smaller learning rate, such as lr=0.05"):
        apply_step(params, quadratic, mse, time, speed, lr=0.5, step=4)


def test_apply_step_infinite_loss_message(speeds):
    time, speed = speeds
    params = torch.tensor([1e30, 1.0, 1.0]).requires_grad_()
    with pytest.raises(DivergenceError, match=r"the loss is inf in this step") as caught:
        apply_step(params, quadratic, mse, time, speed, lr=0.1)
    assert caught.value.step is None
    assert caught.value.lr == 0.1


def test_train_large_lr_diverges(speeds):
    time, speed = speeds
    params = torch.ones(3).requires_grad_()
    with pytest.raises(DivergenceError, match="at step") as caught:
        train(params, quadratic, mse, time, speed, lr=3.0, steps=200)
    error = caught.value
    assert error.step is not None
    assert error.step > 0
    assert error.history.diverged
    assert len(error.history.losses) == error.step
    assert all(math.isfinite(loss) for loss in error.history.losses)


def test_apply_step_nan_data_message(speeds):
    time, speed = speeds
    speed = speed.clone()
    speed[3] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN or infinite values"):
        apply_step(torch.ones(3).requires_grad_(), quadratic, mse, time, speed, lr=0.1)


def test_apply_step_loss_without_gradient(speeds):
    time, speed = speeds
    with pytest.raises(ValueError, match="the loss does not depend on params"):
        apply_step(torch.ones(3).requires_grad_(), lambda x, p: x * 2.0, mse, time, speed, lr=0.1)


def test_apply_step_nonscalar_loss(speeds):
    time, speed = speeds
    unreduced = lambda preds, targets: (preds - targets) ** 2
    with pytest.raises(ValueError, match=r"loss_func returned \(20,\).*\.mean\(\)"):
        apply_step(torch.ones(3).requires_grad_(), quadratic, unreduced, time, speed, lr=0.1)


def test_apply_step_unused_parameter_warning(speeds, caplog):
    time, speed = speeds
    used, unused = torch.ones(3).requires_grad_(), torch.ones(2).requires_grad_()
    with caplog.at_level(logging.WARNING, logger="helpers.gradient_descent"):
        apply_step([used, unused], lambda x, p: quadratic(x, p[0]), mse, time, speed, lr=0.1)
    assert "params[1] received no gradient" in caplog.text
    assert torch.equal(unused.detach(), torch.ones(2))
    assert not torch.equal(used.detach(), torch.ones(3))


def test_train_records_history(speeds):
    time, speed = speeds
    params = torch.ones(3).requires_grad_()
    history = train(params, quadratic, mse, time, speed, lr=0.3, steps=30)
    assert isinstance(history, TrainingHistory)
    assert len(history.losses) == 30
    assert len(history.params) == 31
    assert torch.equal(history.params[0], torch.ones(3))
    assert torch.equal(history.params[-1], params.detach())
    assert history.losses[0] == pytest.approx(mse(quadratic(time, torch.ones(3)), speed).item())
    assert all(later < earlier for earlier, later in zip(history.losses, history.losses[1:]))
    assert history.final_loss < 0.5
    assert not history.diverged


def test_train_matches_sgd(speeds):
    time, speed = speeds
    params = torch.tensor([0.0, 0.0, 0.0]).requires_grad_()
    train(params, quadratic, mse, time, speed, lr=0.5, steps=25)
    expected = sgd_reference(torch.zeros(3), quadratic, mse, time, speed, 0.5, 25)
    assert torch.allclose(params.detach(), expected, atol=1e-5)


def test_train_show_every_prints(speeds, capsys):
    time, speed = speeds
    train(torch.ones(3).requires_grad_(), quadratic, mse, time, speed, lr=0.3, steps=10, show_every=5)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["step 0", "step 5"]


def test_train_rejects_invalid_lr(speeds):
    time, speed = speeds
    with pytest.raises(ValueError, match="lr=-1"):
        train(torch.ones(3).requires_grad_(), quadratic, mse, time, speed, lr=-1)


def test_losses_and_metrics_match_torch():
    preds = torch.tensor([0.9, 0.2, 0.6, 0.0, 1.0])
    targets = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0])
    assert torch.allclose(binary_cross_entropy(preds, targets), F.binary_cross_entropy(preds, targets), atol=1e-5)
    assert torch.isclose(binary_error_rate(preds, targets), torch.tensor(0.2))
    assert torch.isclose(mse(preds, targets), F.mse_loss(preds, targets))


def test_compare_learning_rates_cases(speeds):
    time, speed = speeds
    start = torch.ones(3)
    too_small, about_right, too_large, far_too_large = compare_learning_rates(
        start, quadratic, mse, time, speed, lrs=[0.01, 0.3, 1.0, 3.0], steps=40
    )
    assert about_right.final_loss < too_small.final_loss < too_small.losses[0]
    assert too_large.final_loss > too_large.losses[0]
    assert far_too_large.diverged
    assert not start.requires_grad  # the starting values were copied, not trained
    assert plot_loss_curves([too_small, about_right, far_too_large]).get_yscale() == "log"


def test_plot_fit_snapshots_panels(speeds):
    time, speed = speeds
    history = train(torch.ones(3).requires_grad_(), quadratic, mse, time, speed, lr=0.3, steps=12)
    fig = plot_fit_snapshots(time, speed, quadratic, history, max_plots=4)
    titles = [ax.get_title() for ax in fig.axes if ax.has_data()]
    assert titles[0].startswith("step 0: loss")
    assert titles[-1] == "after step 11"
    assert len(titles) == 4


def test_explore_learning_rate_static_figure(speeds):
    time, speed = speeds
    assert not widgets_available()  # pytest runs outside a Jupyter kernel
    fig = explore_learning_rate(torch.ones(3), quadratic, mse, time, speed, lr=1.1, steps=20)
    assert len(fig.axes) == 2
    assert "lr=1.1" in fig.axes[0].get_title()


def test_explore_learning_rate_slider_redraws(speeds, monkeypatch):
    import IPython.display
    import ipywidgets

    import helpers.gradient_descent as gradient_descent

    displayed = []
    monkeypatch.setattr(gradient_descent, "widgets_available", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda *objects: displayed.extend(objects))
    time, speed = speeds
    fig = explore_learning_rate(torch.ones(3), quadratic, mse, time, speed, lr=0.3, steps=10)
    assert "lr=0.3" in fig.axes[0].get_title()

    box = displayed[0]
    assert isinstance(box, ipywidgets.VBox)
    slider, output = box.children
    assert isinstance(slider, ipywidgets.FloatLogSlider)
    assert isinstance(output, ipywidgets.Output)

    figures_before = set(plt.get_fignums())
    slider.value = 0.05
    new_figures = [plt.figure(number) for number in set(plt.get_fignums()) - figures_before]
    assert len(new_figures) == 1
    assert "lr=0.05" in new_figures[0].axes[0].get_title()


def test_one_argument_model_explained():
    "A model written as model(x) fails with a message that names the signature apply_step calls."
    params = torch.zeros(2, requires_grad=True)
    x, y = torch.linspace(0, 1, 5), torch.linspace(1, 4, 5)
    with pytest.raises(TypeError, match=r"define it as def model\(x, params\)"):
        apply_step(params, lambda x: x * 2, lambda preds, y: ((preds - y) ** 2).mean(), x, y, lr=0.1)

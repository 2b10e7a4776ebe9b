"""Tests of the self-checks: each check must accept correct learner code and name each classic mistake."""
import pytest
import torch

from helpers.exercises import Feedback, check_apply_step, check_perceptron_update
from helpers.gradient_descent import apply_step
from helpers.neurons import perceptron_update, step_function

# Learner versions of apply_step(params, model, loss_func, x, y, lr), right and wrong.


def step_with_no_grad(params, model, loss_func, x, y, lr):
    preds = model(x, params)
    loss_func(preds, y).backward()
    with torch.no_grad():
        params -= lr * params.grad
    params.grad.zero_()
    return preds


def step_resetting_first(params, model, loss_func, x, y, lr):
    params.grad = None
    preds = model(x, params)
    loss_func(preds, y).backward()
    params.data -= lr * params.grad
    return preds


def step_without_reset(params, model, loss_func, x, y, lr):
    preds = model(x, params)
    loss_func(preds, y).backward()
    params.data -= lr * params.grad
    return preds


def step_with_wrong_sign(params, model, loss_func, x, y, lr):
    preds = model(x, params)
    loss_func(preds, y).backward()
    params.data += lr * params.grad
    params.grad = None
    return preds


def step_recorded_by_autograd(params, model, loss_func, x, y, lr):
    preds = model(x, params)
    loss_func(preds, y).backward()
    params -= lr * params.grad
    params.grad = None
    return preds


def step_ignoring_lr(params, model, loss_func, x, y, lr):
    preds = model(x, params)
    loss_func(preds, y).backward()
    params.data -= params.grad
    params.grad = None
    return preds


def step_dividing_by_lr(params, model, loss_func, x, y, lr):
    preds = model(x, params)
    loss_func(preds, y).backward()
    params.data -= params.grad / lr
    params.grad = None
    return preds


def step_with_lr_squared(params, model, loss_func, x, y, lr):
    preds = model(x, params)
    loss_func(preds, y).backward()
    params.data -= lr * lr * params.grad
    params.grad = None
    return preds


def step_rebinding_params(params, model, loss_func, x, y, lr):
    preds = model(x, params)
    loss_func(preds, y).backward()
    params = params.detach() - lr * params.grad
    return preds


def step_following_sign(params, model, loss_func, x, y, lr):
    preds = model(x, params)
    loss_func(preds, y).backward()
    params.data -= lr * params.grad.sign()
    params.grad = None
    return preds


def step_returning_nothing(params, model, loss_func, x, y, lr):
    step_with_no_grad(params, model, loss_func, x, y, lr)


def step_returning_loss(params, model, loss_func, x, y, lr):
    loss = loss_func(model(x, params), y)
    loss.backward()
    params.data -= lr * params.grad
    params.grad = None
    return loss


def step_zeroing_missing_gradient(params, model, loss_func, x, y, lr):
    params.grad.zero_()
    return step_without_reset(params, model, loss_func, x, y, lr)


def step_with_name_error(params, model, loss_func, x, y, lr):
    return undefined_name  # noqa: F821


def step_dropping_tracking(params, model, loss_func, x, y, lr):
    preds = step_with_no_grad(params, model, loss_func, x, y, lr)
    params.requires_grad_(False)
    return preds


@pytest.mark.parametrize("learner_step", [apply_step, step_with_no_grad, step_resetting_first])
def test_check_apply_step_accepts_correct(learner_step):
    feedback = check_apply_step(learner_step)
    assert isinstance(feedback, Feedback)
    assert feedback.correct, feedback.message
    assert repr(feedback).startswith("Correct: ")


@pytest.mark.parametrize(
    "learner_step, expected_phrase",
    [
        (step_without_reset, "gradient is not reset"),
        (step_with_wrong_sign, "wrong sign"),
        (step_recorded_by_autograd, "recorded by autograd"),
        (step_ignoring_lr, "ignores the learning rate"),
        (step_dividing_by_lr, "divides the gradient by the learning rate"),
        (step_with_lr_squared, "0.1 times `lr * params.grad`"),
        (step_rebinding_params, "parameters did not change"),
        (step_following_sign, "does not follow the gradient"),
        (step_returning_nothing, "does not return the predictions"),
        (step_returning_loss, "does not return the predictions"),
        (step_zeroing_missing_gradient, "`params.grad` is None before the first `backward()`"),
        (step_with_name_error, "raised NameError"),
        (step_dropping_tracking, "no longer require gradients"),
    ],
)
def test_check_apply_step_names_mistake(learner_step, expected_phrase):
    feedback = check_apply_step(learner_step)
    assert not feedback.correct
    assert expected_phrase in feedback.message
    assert repr(feedback).startswith("Not yet: ")


# Learner versions of perceptron_update(weights, bias, x, target, lr), right and wrong.


def update_in_place(weights, bias, x, target, lr):
    error = target - step_function(x @ weights + bias)
    weights += lr * error * x
    bias += lr * error
    return weights, bias


def update_with_float_bias(weights, bias, x, target, lr):
    prediction = 1.0 if float(x @ weights + bias) > 0 else 0.0
    error = target - prediction
    return weights + lr * error * x, float(bias) + lr * error


def update_with_wrong_sign(weights, bias, x, target, lr):
    error = step_function(x @ weights + bias) - target
    return weights + lr * error * x, bias + lr * error


def update_always(weights, bias, x, target, lr):
    return weights + lr * target * x, bias + lr * target


def update_ignoring_lr(weights, bias, x, target, lr):
    error = target - step_function(x @ weights + bias)
    return weights + error * x, bias + error


def update_without_bias(weights, bias, x, target, lr):
    error = target - step_function(x @ weights + bias)
    return weights + lr * error * x, bias


def update_bias_without_lr(weights, bias, x, target, lr):
    error = target - step_function(x @ weights + bias)
    return weights + lr * error * x, bias + error


def update_stub(weights, bias, x, target, lr):
    return weights, bias


def update_returning_weights_only(weights, bias, x, target, lr):
    return perceptron_update(weights, bias, x, target, lr)[0]


def update_summing_weights(weights, bias, x, target, lr):
    new_weights, new_bias = perceptron_update(weights, bias, x, target, lr)
    return new_weights.sum(), new_bias


def update_raising(weights, bias, x, target, lr):
    raise NotImplementedError("write the rule here")


@pytest.mark.parametrize("learner_update", [perceptron_update, update_in_place, update_with_float_bias])
def test_check_perceptron_update_accepts_correct(learner_update):
    feedback = check_perceptron_update(learner_update)
    assert feedback.correct, feedback.message


@pytest.mark.parametrize(
    "learner_update, expected_phrase",
    [
        (update_with_wrong_sign, "wrong sign"),
        (update_always, "already classified correctly"),
        (update_ignoring_lr, "ignores the learning rate"),
        (update_without_bias, "the bias did not change"),
        (update_bias_without_lr, "the bias moved by 1 instead of `lr * error` = 0.5"),
        (update_stub, "Nothing changed on a misclassified example"),
        (update_returning_weights_only, "should return two values"),
        (update_summing_weights, "returned weights have shape ()"),
        (update_raising, "raised NotImplementedError: write the rule here"),
    ],
)
def test_check_perceptron_update_names_mistake(learner_update, expected_phrase):
    feedback = check_perceptron_update(learner_update)
    assert not feedback.correct
    assert expected_phrase in feedback.message

"""Tests of the neuron, perceptron and network-type code of lesson 01, with torch.nn as the reference."""
import logging

import pytest
import torch
from PIL import Image
from torch import nn

from helpers.neurons import (
    Perceptron,
    binary_accuracy,
    conv_parameter_count,
    convolve_and_pool,
    edge_kernels,
    linear_parameter_count,
    logic_gate_data,
    make_hidden_layer_network,
    make_separable_points,
    neuron,
    perceptron_update,
    plot_decision_boundary,
    plot_perceptron_snapshots,
    relu,
    sigmoid,
    step_function,
    threshold_unit,
    to_grayscale_tensor,
    train_binary_classifier,
    unroll_rnn,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def test_activations_match_torch():
    z = torch.linspace(-30, 30, 601)
    assert torch.allclose(sigmoid(z), torch.sigmoid(z), atol=1e-7)
    assert torch.equal(relu(z), torch.relu(z))
    assert torch.equal(step_function(z), torch.heaviside(z, torch.tensor(0.0)))


@pytest.mark.parametrize(
    "activation, torch_activation",
    [(sigmoid, torch.sigmoid), (relu, torch.relu), (None, lambda z: z)],
)
def test_neuron_layer_matches_nn_linear(activation, torch_activation):
    torch.manual_seed(1)
    layer = nn.Linear(in_features=5, out_features=3)
    batch = torch.randn(7, 5)
    with torch.no_grad():
        expected = torch_activation(layer(batch))
        ours = neuron(batch, layer.weight.T, layer.bias, activation=activation)
    assert ours.shape == (7, 3)
    assert torch.allclose(ours, expected, atol=1e-6)


def test_neuron_single_example_matches_nn_linear():
    torch.manual_seed(2)
    layer = nn.Linear(in_features=4, out_features=1)
    example = torch.randn(4)
    with torch.no_grad():
        expected = torch.sigmoid(layer(example)).squeeze()
        ours = neuron(example, layer.weight[0], layer.bias[0])
    assert torch.allclose(ours, expected, atol=1e-6)


def test_neuron_rejects_mismatched_weights():
    with pytest.raises(ValueError, match=r"inputs have 3 features but weights has shape \(4,\)"):
        neuron(torch.ones(3), torch.ones(4), bias=0.0)


def test_threshold_units_compute_logic():
    pairs = [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert threshold_unit(pairs, [1, 1], threshold=2).tolist() == [0, 0, 0, 1]
    assert threshold_unit(pairs, [1, 1], threshold=1).tolist() == [0, 1, 1, 1]
    assert threshold_unit([[0], [1]], [-1], threshold=0).tolist() == [1, 0]


def test_perceptron_update_rule_cases():
    weights, bias = torch.tensor([0.5, -1.0]), torch.tensor(-0.5)
    x = torch.tensor([1.0, 2.0])

    missed_positive = perceptron_update(weights, bias, x, target=1.0, lr=0.5)
    assert missed_positive[0].tolist() == [1.0, 0.0]
    assert missed_positive[1].item() == 0.0

    right_negative = perceptron_update(weights, bias, x, target=0.0, lr=0.5)
    assert torch.equal(right_negative[0], weights)
    assert torch.equal(right_negative[1], bias)


@pytest.mark.parametrize("gate", ["and", "or"])
def test_perceptron_converges_on_gate(gate):
    x, y = logic_gate_data(gate)
    perceptron = Perceptron(n_inputs=2).fit(x, y, max_epochs=20)
    assert perceptron.converged
    assert perceptron.epochs < 20
    assert perceptron.snapshots[-1].mistakes == 0
    assert torch.equal(perceptron.predict(x), y)


def test_perceptron_reports_xor_nonconvergence(caplog):
    x, y = logic_gate_data("xor")
    with caplog.at_level(logging.WARNING, logger="helpers.neurons"):
        perceptron = Perceptron(n_inputs=2).fit(x, y, max_epochs=50)
    assert not perceptron.converged
    assert perceptron.epochs == 50
    assert all(snapshot.mistakes > 0 for snapshot in perceptron.snapshots)
    assert "did not converge in 50 epochs" in caplog.text


def test_perceptron_converges_on_separable_points():
    points, classes = make_separable_points()
    perceptron = Perceptron(n_inputs=2).fit(points, classes, max_epochs=100)
    assert perceptron.converged
    assert torch.equal(perceptron.predict(points), classes)


def test_perceptron_rejects_invalid_examples():
    perceptron = Perceptron(n_inputs=2)
    with pytest.raises(ValueError, match=r"x has shape \(4, 3\), expected \(n_examples, 2\)"):
        perceptron.fit(torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"y has shape \(3,\), expected \(4,\)"):
        perceptron.fit(torch.zeros(4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"targets must be 0 or 1, got \[2.0\]"):
        perceptron.fit(torch.zeros(2, 2), torch.tensor([0.0, 2.0]))


def test_logic_gate_data_unknown_gate():
    with pytest.raises(ValueError, match="unknown gate 'nand'"):
        logic_gate_data("nand")


def test_hidden_layer_network_solves_xor():
    x, y = logic_gate_data("xor")
    network = make_hidden_layer_network(n_hidden=8, seed=0)
    losses = train_binary_classifier(network, x, y, epochs=300, lr=1.0)
    assert binary_accuracy(network, x, y) == 1.0
    assert losses[-1] < 0.1 < losses[0]


def test_hidden_layer_network_seed_is_local():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = make_hidden_layer_network(seed=5)
    assert torch.equal(torch.rand(3), expected_next)  # the global random state was left alone
    second = make_hidden_layer_network(seed=5)
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)


def test_train_binary_classifier_rejects_inputs():
    x, y = logic_gate_data("xor")
    with pytest.raises(ValueError, match="lr=0"):
        train_binary_classifier(make_hidden_layer_network(seed=0), x, y, lr=0)
    with pytest.raises(ValueError, match=r"x has shape \(4,\), expected \(n_examples, n_inputs\)"):
        train_binary_classifier(make_hidden_layer_network(seed=0), [0.0, 1.0, 1.0, 0.0], y)
    network = make_hidden_layer_network(seed=0)
    losses = train_binary_classifier(network, x.tolist(), y.tolist(), epochs=5)  # plain lists are accepted
    assert len(losses) == 5


@pytest.mark.parametrize(
    "in_features, out_features, bias",
    [(3 * 128 * 128, 64, True), (10, 1, False), (1, 1, True)],
)
def test_linear_parameter_count_matches_torch(in_features, out_features, bias):
    layer = nn.Linear(in_features, out_features, bias=bias)
    assert linear_parameter_count(in_features, out_features, bias) == sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize(
    "in_channels, out_channels, kernel_size, bias",
    [(3, 64, 3, True), (64, 128, (3, 5), False), (1, 1, 1, True)],
)
def test_conv_parameter_count_matches_torch(in_channels, out_channels, kernel_size, bias):
    layer = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)
    expected = sum(p.numel() for p in layer.parameters())
    assert conv_parameter_count(in_channels, out_channels, kernel_size, bias) == expected


def test_edge_kernels_find_vertical_edge():
    image = torch.zeros(1, 1, 8, 8)
    image[..., 4:] = 1.0  # dark left half, bright right half
    feature_maps, pooled = convolve_and_pool(image, edge_kernels())
    vertical, horizontal = feature_maps[0]
    assert vertical[:, 3:5].min() > 0  # the edge between columns 3 and 4 responds
    assert vertical[:, :2].abs().max() == 0  # flat regions give nothing
    assert horizontal[1:-1].abs().max() == 0  # no horizontal edge inside the image
    assert pooled.shape == (1, 2, 4, 4)


def test_convolve_and_pool_real_photograph(shared_data):
    photo_path = shared_data / "photos" / "flower.jpg"
    with Image.open(photo_path) as photo:
        grey = to_grayscale_tensor(photo.convert("RGB"))
    height, width = grey.shape[-2:]
    assert grey.min() >= 0
    assert grey.max() <= 1

    feature_maps, pooled = convolve_and_pool(grey, edge_kernels())
    assert feature_maps.shape == (1, 2, height, width)
    assert pooled.shape == (1, 2, height // 2, width // 2)
    assert feature_maps.min() >= 0  # ReLU was applied
    assert torch.equal(pooled[0, 0, 0, 0], feature_maps[0, 0, :2, :2].max())

    conv = nn.Conv2d(1, 2, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(edge_kernels())
        assert torch.allclose(torch.relu(conv(grey)), feature_maps, atol=1e-5)


def test_grayscale_tensor_of_rgba_and_grey():
    rgba = Image.new("RGBA", (4, 3), (255, 255, 255, 0))
    grey = Image.new("L", (4, 3), 0)
    assert torch.allclose(to_grayscale_tensor(rgba), torch.ones(1, 1, 3, 4))
    assert torch.equal(to_grayscale_tensor(grey), torch.zeros(1, 1, 3, 4))


def test_convolve_and_pool_rejects_channels():
    with pytest.raises(ValueError, match=r"image has shape \(1, 3, 8, 8\) but the kernels expect 1 channel"):
        convolve_and_pool(torch.zeros(1, 3, 8, 8), edge_kernels())


def test_unroll_rnn_matches_nn_rnn():
    torch.manual_seed(3)
    rnn = nn.RNN(input_size=3, hidden_size=4)
    sequence = torch.randn(6, 3)
    initial = torch.randn(4)
    with torch.no_grad():
        ours = unroll_rnn(sequence, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0 + rnn.bias_hh_l0, initial)
        expected, last = rnn(sequence.unsqueeze(1), initial.reshape(1, 1, 4))
    assert ours.shape == (6, 4)
    assert torch.allclose(ours, expected.squeeze(1), atol=1e-6)
    assert torch.allclose(ours[-1], last.reshape(4), atol=1e-6)


def test_unroll_rnn_rejects_sequence_shape():
    with pytest.raises(ValueError, match=r"sequence has shape \(5,\), expected \(steps, 1\)"):
        unroll_rnn(torch.zeros(5), torch.zeros(2, 1), torch.zeros(2, 2), torch.zeros(2))


def test_plot_decision_boundary_draws_points():
    x, y = logic_gate_data("and")
    ax = plot_decision_boundary(lambda points: (points.sum(dim=1) > 1.5).float(), x, y, title="and")
    assert ax.get_title() == "and"
    assert len(ax.collections) >= 3  # the shading and one scatter per class


def test_plot_perceptron_snapshots_needs_fit():
    x, y = logic_gate_data("or")
    with pytest.raises(ValueError, match="call `fit` before plotting"):
        plot_perceptron_snapshots(Perceptron(n_inputs=2), x, y)
    fig = plot_perceptron_snapshots(Perceptron(n_inputs=2).fit(x, y), x, y, max_plots=2)
    assert sum(ax.has_data() for ax in fig.axes) == 2

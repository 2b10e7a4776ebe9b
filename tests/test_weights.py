"""Pretrained weights: found in the torch hub cache, or a plain fallback to random weights offline."""
import urllib.request

import pytest
import torch
import torchvision

from helpers.weights import find_pretrained_weights, hub_checkpoint_path


@pytest.fixture
def no_network(monkeypatch):
    "Make any attempt to open a URL fail the test."
    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected network access: {args[:1]}")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_empty_cache_offline_falls_back(isolated_cache, no_network):
    status = find_pretrained_weights()
    assert not status.available
    assert "random weights" in status.message
    assert status.message.count(". ") == 0, "the explanation should be one sentence"
    assert not status.path.exists()


def test_download_refused_network_reports(isolated_cache, monkeypatch):
    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    status = find_pretrained_weights(download=True)
    assert not status.available
    assert "could not be downloaded" in status.message


def test_cached_checkpoint_used_by_vision_learner(isolated_cache, no_network):
    from fastai.vision.all import resnet18, vision_learner
    from helpers.sample_data import make_sample_paintings
    from helpers.training import painting_dataloaders

    checkpoint = hub_checkpoint_path()
    assert checkpoint.name == "resnet18-f37072fd.pth"
    checkpoint.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18().state_dict()
    torch.save(reference, checkpoint)

    status = find_pretrained_weights()
    assert status.available and status.path == checkpoint

    dls = painting_dataloaders(make_sample_paintings(isolated_cache / "data", n_per_class=4, size=32), bs=4)
    learn = vision_learner(dls, resnet18, pretrained=True)
    first_conv = learn.model[0][0].weight.detach()
    assert torch.equal(first_conv, reference["conv1.weight"])
    # A pretrained learner starts frozen: only the head and the batch norms train.
    assert not learn.model[0][0].weight.requires_grad


def test_random_start_trains_whole_network(isolated_cache, no_network):
    from fastai.vision.all import error_rate, resnet18, vision_learner
    from helpers.sample_data import make_sample_paintings
    from helpers.training import painting_dataloaders

    dls = painting_dataloaders(make_sample_paintings(isolated_cache / "data", n_per_class=4, size=32), bs=4)
    learn = vision_learner(dls, resnet18, metrics=error_rate, pretrained=False)
    assert all(parameter.requires_grad for parameter in learn.model.parameters())

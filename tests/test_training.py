"""Training on real paintings from random weights, as the course does offline."""
import pytest

from helpers.training import majority_class_rate, painting_dataloaders

# Bound on the validation error rate after 8 epochs from random weights at 128 px. On this data
# the majority-class rate of the validation split is about 0.45; runs measured about 0.05 to 0.15.
REAL_PAINTINGS_ERROR_BOUND = 0.25


def test_real_paintings_beat_bound(shared_data, isolated_cache):
    from fastai.vision.all import error_rate, resnet18, set_seed, vision_learner

    set_seed(42, reproducible=True)
    dls = painting_dataloaders(shared_data / "paintings")
    assert dls.vocab == ["monet", "vangogh"]
    learn = vision_learner(dls, resnet18, metrics=error_rate, pretrained=False, path=isolated_cache)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(8, 3e-3)
    final_error = float(learn.validate()[1])
    assert final_error <= REAL_PAINTINGS_ERROR_BOUND
    assert final_error < majority_class_rate(dls)

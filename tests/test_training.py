"""Training on the real paintings from random weights, as the course does offline, and the training subsets of the comparison."""
import pytest

from helpers.training import TrainSubsetSplitter, majority_class_rate, painting_dataloaders

# Bound on the validation error rate after 8 epochs of `fit_one_cycle(8, 3e-3)` from random weights at
# 128 px, as lesson 04 trains offline. The validation split (seed 42, 58 images) has a majority-class
# error rate of 0.47, and runs measured about 0.05 to 0.15 (0.10 with seed 42 on one thread of a 2-core
# CPU). The bound leaves room for other CPUs and library versions but still fails when training breaks
# (stuck at the majority class, or no learning).
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


def test_subset_splitter_keeps_validation():
    items = list(range(290))
    full_train, full_valid = TrainSubsetSplitter(seed=42)(items)
    quarter_train, quarter_valid = TrainSubsetSplitter(seed=42, train_fraction=0.25)(items)
    assert quarter_valid == full_valid
    assert len(full_train) == 232
    assert len(quarter_train) == 58
    assert set(quarter_train) < set(full_train)
    assert not set(quarter_train) & set(quarter_valid)
    assert TrainSubsetSplitter(seed=42, train_fraction=0.25)(items) == (quarter_train, quarter_valid)
    assert TrainSubsetSplitter(seed=7, train_fraction=0.25)(items)[0] != quarter_train


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5])
def test_subset_splitter_rejects_fraction(fraction):
    with pytest.raises(ValueError, match="train_fraction must be in"):
        TrainSubsetSplitter(train_fraction=fraction)


def test_quarter_dataloaders_real_paintings(shared_data):
    full = painting_dataloaders(shared_data / "paintings", size=32)
    quarter = painting_dataloaders(shared_data / "paintings", size=32, train_fraction=0.25)
    assert list(quarter.valid_ds.items) == list(full.valid_ds.items)
    assert len(quarter.train_ds) == 58
    assert set(quarter.train_ds.items) < set(full.train_ds.items)
    assert {path.parent.name for path in quarter.train_ds.items} == {"monet", "vangogh"}
    assert quarter.one_batch()[0].shape[-2:] == (32, 32)

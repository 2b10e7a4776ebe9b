"""Training throughput of a fastai Learner against a plain PyTorch loop on the same model and tensors.

Run: .venv/bin/python bench/throughput.py [--size 64] [--bs 16] [--batches 30]
Prints images per second for both and their ratio (fastai / plain). Both loops train copies of
one model (resnet18 with fastai's head, as `vision_learner` builds it), on the same pre-made
tensors, with the same batch size, Adam at the same learning rate, and cross-entropy loss.
fastai uses its own Adam and callbacks; that is the overhead being measured.
"""
import argparse
import copy
import json
import time

import torch
from fastai.callback.core import Callback
from fastai.data.load import DataLoader
from fastai.optimizer import Adam
from fastai.vision.all import CrossEntropyLossFlat, DataLoaders, Learner, create_vision_model, resnet18, set_seed


def make_tensors(count: int, size: int):
    "Return random images and labels, made once so both loops read the same data."
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(count, 3, size, size, generator=generator)
    labels = torch.randint(0, 2, (count,), generator=generator)
    return images, labels


def plain_loop(model, images, labels, bs: int, lr: float) -> float:
    "Train one pass with a hand-written loop and return images per second."
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_function = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for first in range(0, len(images) - bs + 1, bs):
        batch, targets = images[first:first + bs], labels[first:first + bs]
        loss = loss_function(model(batch), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (len(images) // bs * bs) / (time.perf_counter() - start)


class TrainingTimer(Callback):
    "Measure the wall time of the training phase only, leaving out validation."
    def before_train(self): self.start = time.perf_counter()
    def after_train(self): self.seconds = time.perf_counter() - self.start


def fastai_loop(model, images, labels, bs: int, lr: float) -> float:
    "Train one epoch with a fastai Learner and return images per second of its training phase."
    items = list(zip(images, labels))
    train = DataLoader(items, bs=bs, shuffle=False, drop_last=True)
    valid = DataLoader(items[:bs], bs=bs)
    timer = TrainingTimer()
    learn = Learner(DataLoaders(train, valid), model, loss_func=CrossEntropyLossFlat(), opt_func=Adam, cbs=timer)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, lr)
    return (len(images) // bs * bs) / timer.seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (lesson 04 uses 64 on the sample)")
    parser.add_argument("--bs", type=int, default=16, help="batch size (lesson 04 uses 16)")
    parser.add_argument("--batches", type=int, default=30, help="batches per measured pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes per loop; the best is kept")
    arguments = parser.parse_args()

    set_seed(0)
    images, labels = make_tensors(arguments.bs * arguments.batches, arguments.size)
    # The model that vision_learner builds for lesson 04: resnet18 body and fastai's head, two classes.
    template = create_vision_model(resnet18, 2, pretrained=False)

    plain, fast = [], []
    for _ in range(arguments.repeats):
        plain.append(plain_loop(copy.deepcopy(template), images, labels, arguments.bs, 1e-3))
        fast.append(fastai_loop(copy.deepcopy(template), images, labels, arguments.bs, 1e-3))
    result = {"plain_images_per_second": max(plain), "fastai_images_per_second": max(fast),
              "ratio_fastai_to_plain": max(fast) / max(plain), "size": arguments.size, "bs": arguments.bs,
              "images_per_pass": len(images), "torch_threads": torch.get_num_threads()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Export: the file lesson 04 writes loads in a fresh process and predicts exactly what the trained learner predicts."""
import json
import subprocess
import sys

import pytest
import torch

from helpers.training import export_learner, exported_model_path, pickled_main_references

# Runs in a new Python process: load the exported learner and print its probabilities for each image.
PREDICT_SCRIPT = """
import json, sys
from fastai.vision.all import load_learner
learn = load_learner(sys.argv[1])
dl = learn.dls.test_dl(sys.argv[2:])
with learn.no_bar():
    probabilities, _ = learn.get_preds(dl=dl)
print(json.dumps({"vocab": list(learn.dls.vocab), "probabilities": probabilities.tolist()}))
"""


def trained_learner(paintings, arch, cache):
    "Train `arch` from random weights for one epoch on the real paintings at 32 px."
    from fastai.vision.all import error_rate, set_seed, vision_learner
    from helpers.training import painting_dataloaders

    set_seed(0, reproducible=True)
    dls = painting_dataloaders(paintings, size=32)
    learn = vision_learner(dls, arch, metrics=error_rate, pretrained=False, path=cache)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 3e-3)
    return learn


def test_exported_model_path_stable(isolated_cache, shared_data):
    paintings = shared_data / "paintings"
    path = exported_model_path(paintings)
    assert path == exported_model_path(str(paintings) + "/")
    assert path.parent == isolated_cache / "course-cache" / "models"
    assert path.name.startswith("painting_classifier_paintings_")
    assert path.suffix == ".pkl"
    assert exported_model_path(shared_data / "other_paintings") != path


@pytest.mark.parametrize("arch_name", ["resnet18", "course_resnet"])
def test_export_predicts_in_new_process(shared_data, isolated_cache, arch_name):
    from fastai.vision.all import resnet18
    from helpers.pretrain import course_resnet

    paintings = shared_data / "paintings"
    learn = trained_learner(paintings, {"resnet18": resnet18, "course_resnet": course_resnet}[arch_name], isolated_cache)
    model_file = export_learner(learn, exported_model_path(paintings))
    assert sorted(path.name for path in model_file.parent.iterdir()) == [model_file.name], "no temporary file may remain"
    assert pickled_main_references(model_file) == []

    # Paintings from both classes, a third painter and a photograph: none of them needs to be classified right.
    images = [*sorted((paintings / "monet").iterdir())[:2], *sorted((paintings / "vangogh").iterdir())[:2],
              sorted((shared_data / "other_paintings" / "turner").iterdir())[0], sorted((shared_data / "photos").iterdir())[0]]
    with learn.no_bar():
        expected, _ = learn.get_preds(dl=learn.dls.test_dl(images))

    completed = subprocess.run([sys.executable, "-c", PREDICT_SCRIPT, str(model_file), *map(str, images)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    assert answer["vocab"] == ["monet", "vangogh"]
    reloaded = torch.tensor(answer["probabilities"])
    assert reloaded.shape == (len(images), 2)
    assert torch.allclose(reloaded, expected, atol=1e-5), (reloaded, expected)
    assert reloaded.argmax(1).tolist() == expected.argmax(1).tolist()


def test_export_rejects_notebook_function(shared_data, isolated_cache, monkeypatch):
    from fastai.vision.all import CategoryBlock, DataBlock, ImageBlock, RandomSplitter, Resize, get_image_files
    from fastai.vision.all import resnet18, vision_learner

    # A label function as a notebook defines it: its module is `__main__`.
    def label_from_folder(file):
        return file.parent.name
    label_from_folder.__module__ = "__main__"
    label_from_folder.__qualname__ = "label_from_folder"
    monkeypatch.setattr(sys.modules["__main__"], "label_from_folder", label_from_folder, raising=False)

    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, splitter=RandomSplitter(seed=0),
                      get_y=label_from_folder, item_tfms=Resize(32))
    learn = vision_learner(block.dataloaders(shared_data / "paintings", bs=8, num_workers=0), resnet18,
                           pretrained=False, path=isolated_cache)
    target = isolated_cache / "exports" / "notebook.pkl"
    target.parent.mkdir()
    with pytest.raises(ValueError, match="__main__.label_from_folder"):
        export_learner(learn, target)
    assert list(target.parent.iterdir()) == [], "a rejected export leaves no file"


@pytest.mark.parametrize("pickle_module_name", ["pickle", "cloudpickle"])
def test_main_references_found(tmp_path, monkeypatch, pickle_module_name):
    import importlib

    # Plain pickle stores `__main__.NAME` as a reference, and cloudpickle copies the function into the file.
    def label_from_folder(file):
        return file.parent.name
    label_from_folder.__module__ = "__main__"
    label_from_folder.__qualname__ = "label_from_folder"
    monkeypatch.setattr(sys.modules["__main__"], "label_from_folder", label_from_folder, raising=False)

    saved = tmp_path / "saved.pth"
    torch.save({"get_y": label_from_folder, "weights": torch.ones(2)}, saved,
               pickle_module=importlib.import_module(pickle_module_name), pickle_protocol=2)
    assert pickled_main_references(saved) == ["__main__.label_from_folder"]

    clean = tmp_path / "clean.pth"
    torch.save({"get_y": json.dumps, "weights": torch.ones(2)}, clean)
    assert pickled_main_references(clean) == []

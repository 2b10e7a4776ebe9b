"""Tests of helpers.image_block on real paintings and real awkward image files from the shared data folder."""

import pickle
import shutil
import subprocess
import sys
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from fastai.data.block import CategoryBlock, DataBlock, TransformBlock
from fastai.data.transforms import IntToFloatTensor, FuncSplitter, RandomSplitter, get_image_files, parent_label
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.data import ImageBlock
from PIL import Image

import helpers.datachecks
import helpers.image_block as image_block
from helpers.image_block import WHITE, RobustImageBlock, RobustPILImage
from helpers.images import image_files
from conftest import SHARED_DATA
from test_datachecks import CONVERTED_BY_BOTH, NEEDS_ROBUST_LOADING, copy_paintings

PAINTINGS = SHARED_DATA / "paintings"
ODD = SHARED_DATA / "odd_images"

pytestmark = pytest.mark.skipif(not PAINTINGS.is_dir(), reason=f"real test data not found at {SHARED_DATA}")


def decodable_odd_images(dest: Path) -> Path:
    "Copy the odd images that decode into dest/odd/ and return that folder."
    folder = dest / "odd"
    folder.mkdir(parents=True)
    for name in [*NEEDS_ROBUST_LOADING, *CONVERTED_BY_BOTH, "hopper.tif", "app13-multiple.jpg", "junk_jpeg_header.jpg"]:
        shutil.copy(ODD / name, folder / name)
    return folder


def odd_batch(folder: Path, image_block) -> dict[str, torch.Tensor]:
    "Build real DataLoaders over every image in `folder` and return each image of the one batch by file name."
    block = DataBlock(blocks=(image_block,), get_items=image_files, splitter=FuncSplitter(lambda path: False),
                      item_tfms=Resize(64, method=ResizeMethod.Squish))
    files = image_files(folder)
    dls = block.dataloaders(folder, bs=len(files), shuffle=False, drop_last=False, num_workers=0)
    (images,) = dls.train.one_batch()
    assert images.shape == (len(files), 3, 64, 64)
    return {Path(item).name: image for item, image in zip(dls.train_ds.items, images)}


def export_painting_learner(data: Path, learner_file: Path, image_block=None):
    "Build an untrained small learner on `data` with `image_block`, by default a blue-background `RobustImageBlock`, and export it to `learner_file`."
    from fastai.layers import SimpleCNN
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat

    image_block = image_block or RobustImageBlock(background=(0, 0, 255))
    block = DataBlock(blocks=(image_block, CategoryBlock), get_items=get_image_files,
                      splitter=RandomSplitter(valid_pct=0.2, seed=42), get_y=parent_label, item_tfms=Resize(32))
    dls = block.dataloaders(data, bs=4, num_workers=0)
    learn = Learner(dls, SimpleCNN([3, 8, 2]), loss_func=CrossEntropyLossFlat(), path=learner_file.parent)
    learn.export(learner_file)


def pickle_stream(learner_file: Path) -> str:
    "Return the pickle stream inside a file written by `torch.save`, decoded as Latin-1 so that module names can be searched."
    with zipfile.ZipFile(learner_file) as archive:
        name = next(name for name in archive.namelist() if name.endswith("/data.pkl"))
        return archive.read(name).decode("latin-1")


@pytest.mark.skipif(not ODD.is_dir(), reason=f"odd images not found at {ODD}")
def test_odd_images_collate_robust_block(tmp_path):
    magenta = (255, 0, 255)
    robust = odd_batch(decodable_odd_images(tmp_path), RobustImageBlock(background=magenta))
    plain = odd_batch(tmp_path / "odd", ImageBlock())

    # 16-bit greyscale keeps its contrast instead of turning white.
    sixteen_bit = robust["16bit.cropped.tif"]
    assert sixteen_bit.min() < 0.1
    assert sixteen_bit.max() > 0.9
    assert plain["16bit.cropped.tif"].min() == 1.0

    # The EXIF rotation is applied: the rotated file now matches hopper.tif, the same picture stored upright.
    assert (robust["hopper_orientation_6.jpg"] - robust["hopper.tif"]).abs().mean() < 0.05
    assert (plain["hopper_orientation_6.jpg"] - plain["hopper.tif"]).abs().mean() > 0.15

    # transparent.png is fully transparent in its first 10 of 200 columns. After resizing to 64, the first 2
    # columns are averaged from those alone.
    alpha = np.asarray(Image.open(ODD / "transparent.png"))[:, :, 3]
    assert (alpha[:, :10] == 0).all()
    edge = robust["transparent.png"][:, :, :2]
    expected = torch.tensor(magenta, dtype=torch.float32).div(255).view(3, 1, 1)
    assert torch.allclose(edge, expected.expand_as(edge), atol=1 / 255)
    assert not torch.allclose(plain["transparent.png"][:, :, :2], expected.expand_as(edge), atol=0.1)

    for name, image in robust.items():
        assert image.min() >= 0, name
        assert image.max() <= 1, name


def test_robust_image_accepts_other_inputs():
    file = sorted((PAINTINGS / "monet").glob("*.jpg"))[0]
    from_path = np.asarray(RobustPILImage.create(file))

    assert np.array_equal(np.asarray(RobustPILImage.create(file.read_bytes())), from_path)
    assert np.array_equal(np.asarray(RobustPILImage.create(str(file))), from_path)
    assert np.array_equal(np.asarray(RobustPILImage.create(from_path)), from_path)
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert RobustPILImage.create(rgba, background=(1, 2, 3)).getpixel((0, 0)) == (1, 2, 3)
    assert isinstance(RobustPILImage.create(rgba), RobustPILImage)


def test_robust_block_rejects_bad_background():
    with pytest.raises(ValueError, match=r"background must be three integers from 0 to 255.*got \(255, 255\)"):
        RobustImageBlock(background=(255, 255))
    with pytest.raises(ValueError, match="got \\(0, 0, 300\\)"):
        RobustImageBlock(background=(0, 0, 300))


def test_robust_block_learner_round_trip(tmp_path):
    from fastai.learner import load_learner

    learner_file = tmp_path / "learner.pkl"
    export_painting_learner(copy_paintings(tmp_path / "data", {"monet": 6, "vangogh": 6}), learner_file)

    reloaded = load_learner(learner_file)
    label, _, probabilities = reloaded.predict(ODD / "transparent.png")

    assert label in {"monet", "vangogh"}
    assert probabilities.shape == (2,)
    assert "chelpers.image_block\nRobustPILImage\n" in pickle_stream(learner_file)  # the GLOBAL opcode of protocol 2
    assert pickle.loads(pickle.dumps(RobustImageBlock(background=(0, 0, 255)).type_tfms))


def test_predict_accepts_every_input_kind(tmp_path):
    "learn.predict takes a str path as fastai's own ImageBlock does, and a Path, the file's bytes or a Pillow image."
    from fastai.learner import load_learner

    learner_file = tmp_path / "learner.pkl"
    export_painting_learner(copy_paintings(tmp_path / "data", {"monet": 6, "vangogh": 6}), learner_file)
    learn = load_learner(learner_file)
    image = next(iter(sorted((tmp_path / "data" / "monet").iterdir())))

    from_path = learn.predict(image)[2]
    from_str = learn.predict(str(image))[2]
    from_bytes = learn.predict(image.read_bytes())[2]
    from_pillow = learn.predict(Image.open(image))[2]
    assert torch.allclose(from_path, from_str)
    assert torch.allclose(from_path, from_bytes)
    assert torch.allclose(from_path, from_pillow)


def test_datachecks_forwards_moved_names():
    assert helpers.datachecks.RobustImageBlock is RobustImageBlock
    assert helpers.datachecks.RobustPILImage is RobustPILImage
    assert helpers.datachecks.WHITE == WHITE
    with pytest.raises(AttributeError, match="module 'helpers.datachecks' has no attribute 'RobustBlock'"):
        helpers.datachecks.RobustBlock


def test_learner_exported_from_datachecks_loads(tmp_path, monkeypatch):
    # Learners exported while RobustPILImage lived in helpers.datachecks refer to it there, and to _in_memory_to_rgb,
    # which its create method calls. Setting __module__ to helpers.datachecks on the class, on create's function and
    # on _in_memory_to_rgb makes learn.export write the same references. Pickle accepts them because
    # helpers.datachecks returns the same objects.
    learner_file = tmp_path / "learner.pkl"
    data = copy_paintings(tmp_path / "data", {"monet": 6, "vangogh": 6})
    with monkeypatch.context() as patch:
        for moved in [RobustPILImage, RobustPILImage.create.__func__, image_block._in_memory_to_rgb]:
            patch.setattr(moved, "__module__", "helpers.datachecks")
        # The block as helpers.datachecks built it for a background other than white.
        old_block = TransformBlock(type_tfms=partial(RobustPILImage.create, background=(0, 0, 255)), batch_tfms=IntToFloatTensor)
        export_painting_learner(data, learner_file, old_block)
    stream = pickle_stream(learner_file)
    assert "chelpers.datachecks\nRobustPILImage\n" in stream
    assert "chelpers.datachecks\n_in_memory_to_rgb\n" in stream
    assert "chelpers.image_block\n" not in stream

    # A fresh interpreter has not imported helpers.image_block, so loading must go through helpers.datachecks.
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from fastai.learner import load_learner\n"
        f"learn = load_learner({str(learner_file)!r})\n"
        f"print(learn.predict(Path({str(ODD / 'transparent.png')!r}))[0])\n"
        "print('helpers.image_block' in sys.modules)\n"
    )
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    label, image_block_imported = finished.stdout.splitlines()[-2:]
    assert label in {"monet", "vangogh"}
    assert image_block_imported == "True"

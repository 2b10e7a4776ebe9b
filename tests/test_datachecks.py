"""Tests of helpers.datachecks on real paintings and real awkward image files from the shared data folder.

Each test copies the files it needs into tmp_path, except those that only read the paintings folder.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.transforms import RandomSplitter, get_image_files, parent_label
from fastai.vision.augment import Resize
from fastai.vision.data import ImageBlock

from helpers.datachecks import (
    DatasetError,
    check_dataset,
    difference_hash,
    near_duplicate_pairs,
)
from helpers.images import open_image_rgb
from conftest import SHARED_DATA

PAINTINGS = SHARED_DATA / "paintings"
TURNER = SHARED_DATA / "other_paintings" / "turner"
ODD = SHARED_DATA / "odd_images"

pytestmark = pytest.mark.skipif(not PAINTINGS.is_dir(), reason=f"real test data not found at {SHARED_DATA}")

# The Monet folder contains three pairs of files that show one painting at two sizes.
MONET_PAIRS = {("monet_37.jpg", "monet_43.jpg"), ("monet_173.jpg", "monet_179.jpg"), ("monet_14.jpg", "monet_21.jpg")}

# Odd files that decode, and that fastai's ImageBlock turns into a wrong picture, with the reason check_dataset gives.
NEEDS_ROBUST_LOADING = {
    "16bit.cropped.tif": "16-bit greyscale (I;16)",
    "i_trns.png": "16-bit greyscale (I;16), transparency (I;16)",
    "hopper_orientation_6.jpg": "EXIF orientation 6",
    "exif_imagemagick_orientation.png": "EXIF orientation 3",
    "transparent.png": "transparency (RGBA)",
    "transparent.webp": "transparency (RGBA)",
    "p_trns_single.png": "transparency (P)",
    "rgb32bf-rgba.bmp": "transparency (RGBA)",
    "pillow.ico": "transparency (RGBA)",
    "iss634.webp": "transparency (RGBA), 42 frames, the first is used",
}
# Odd files that decode, and that fastai's convert("RGB") handles, with the note check_dataset gives.
CONVERTED_BY_BOTH = {
    "hopper_gray.jpg": "greyscale (L)",
    "uncompressed_l.png": "greyscale (L)",
    "hopper_bw_500.png": "black and white (1)",
    "pil_sample_cmyk.jpg": "CMYK",
    "tiff_strip_cmyk_jpeg.tif": "CMYK",
    "iss634.gif": "palette (P), 42 frames, the first is used",
    "multipage.tiff": "palette (P), 3 frames, the first is used",
}
# Odd files that get_image_files lists but that do not decode, with the reason check_dataset gives.
UNDECODABLE = {
    "zero_bytes.jpg": "empty file (0 bytes)",
    "anchor_horizontal.svg": "SVG is not a raster image",
    "hopper.heif": "HEIF needs the pillow-heif plugin",
    "broken.png": "corrupt PNG: Pillow cannot read its header",
    "zero_width.gif": "corrupt GIF: Pillow cannot read its header",
    "decompression_bomb.gif": "decompression bomb: 4364696535 pixels",
    "truncated_image.png": "truncated: image file is truncated",
    "truncated_end_chunk.png": "truncated: Truncated File Read",
    "truncated_jpeg.jpg": "truncated: image file is truncated (8 bytes not processed)",
    "00010.jpg": "Git-LFS pointer: run git lfs pull",
    "%27Au_Petit-Gennevilliers%27_by_Claude_Monet%2C_1874.jpg": "not an image: HTML page",
}


def copy_paintings(dest: Path, per_class: dict[str, int]) -> Path:
    "Copy the first n real paintings of each named class into dest/class_name/ and return dest."
    for name, count in per_class.items():
        source = TURNER if name == "turner" else PAINTINGS / name
        (dest / name).mkdir(parents=True, exist_ok=True)
        for file in sorted(source.glob("*.jpg"))[:count]:
            shutil.copy(file, dest / name / file.name)
    return dest


def seed_where(items, condition) -> int:
    "Return the first seed for which `condition(train, valid)` is true on RandomSplitter's split of `items`."
    for seed in range(1000):
        with torch.random.fork_rng(devices=[]):
            train, valid = RandomSplitter(valid_pct=0.2, seed=seed)(items)
        if condition({Path(items[i]) for i in train}, {Path(items[i]) for i in valid}):
            return seed
    raise AssertionError("no seed below 1000 gives the wanted split")


def only(report, check: str):
    "Return the single finding of `check` in `report`."
    findings = report[check]
    assert len(findings) == 1, report
    return findings[0]


# Folder, layout and classes

def test_missing_folder_raises(tmp_path):
    with pytest.raises(DatasetError) as raised:
        check_dataset(tmp_path / "nowhere")

    finding = only(raised.value.report, "missing_folder")
    assert finding.severity == "error"
    assert finding.message.startswith(f"Dataset folder not found: {tmp_path / 'nowhere'}. Pass the folder that contains")
    assert "raise_on_error=False" in str(raised.value)


def test_file_instead_of_folder(tmp_path):
    painting = copy_paintings(tmp_path, {"monet": 1}) / "monet" / "monet_0.jpg"

    report = check_dataset(painting, raise_on_error=False)

    assert only(report, "missing_folder").message.startswith(f"{painting} is a file, not a folder.")


def test_empty_folder_reported(tmp_path):
    with pytest.raises(DatasetError) as raised:
        check_dataset(tmp_path)

    message = only(raised.value.report, "no_images").message
    assert message == (f"No image files in {tmp_path}: get_image_files found nothing. The expected layout is one "
                       f"folder per class with images inside, such as {tmp_path / 'monet' / 'painting.jpg'}.")


def test_folder_without_images_names_files(tmp_path):
    (tmp_path / "monet").mkdir()
    (tmp_path / "monet" / "notes.txt").write_text("paintings to download")

    report = check_dataset(tmp_path, raise_on_error=False)

    message = only(report, "no_images").message
    assert "The folder contains 1 other file, such as monet/notes.txt." in message


def test_images_in_root_reported(tmp_path):
    copy_paintings(tmp_path, {"monet": 10, "vangogh": 10})
    stray = sorted((PAINTINGS / "vangogh").glob("*.jpg"))[-1]
    shutil.copy(stray, tmp_path / stray.name)

    report = check_dataset(tmp_path, bs=4, raise_on_error=False)

    finding = only(report, "layout")
    assert finding.severity == "error"
    assert finding.message.startswith(f"Found 1 image directly in {tmp_path}, outside any class folder. parent_label "
                                      f"would label them '{tmp_path.name}', a class that does not exist.")
    assert finding.message.endswith(f"\n    {stray.name}")
    assert finding.files == (tmp_path / stray.name,)
    # The made-up class is the layout check's finding, not a class without training images.
    assert report["no_training_images"] == []
    assert report["no_validation_images"] == []


def test_nested_images_reported(tmp_path):
    copy_paintings(tmp_path, {"monet": 10, "vangogh": 10})
    (tmp_path / "monet" / "early").mkdir()
    for file in sorted((tmp_path / "monet").glob("*.jpg"))[:3]:
        file.rename(tmp_path / "monet" / "early" / file.name)

    report = check_dataset(tmp_path, bs=4, raise_on_error=False)

    finding = only(report, "layout")
    moved = sorted(path.name for path in (tmp_path / "monet" / "early").iterdir())
    assert finding.message.startswith("Found 3 images deeper than class_name/image. parent_label labels an image by "
                                      "its innermost folder, so monet/early/")
    assert "would get the label 'early' instead of 'monet'" in finding.message
    for name in moved:
        assert f"\n    monet/early/{name}" in finding.message


def test_single_class_reported(tmp_path):
    copy_paintings(tmp_path, {"monet": 12})

    with pytest.raises(DatasetError) as raised:
        check_dataset(tmp_path, bs=4)

    message = only(raised.value.report, "single_class").message
    assert message == ("Only one class, 'monet' (12 images). A classifier needs at least two classes: add a folder of "
                       f"images for each other class beside {tmp_path / 'monet'}.")


def test_single_class_beside_stray_image(tmp_path):
    copy_paintings(tmp_path, {"monet": 12})
    shutil.copy(sorted((PAINTINGS / "vangogh").glob("*.jpg"))[0], tmp_path / "stray.jpg")

    report = check_dataset(tmp_path, bs=4, raise_on_error=False)

    assert only(report, "single_class").message.startswith("Only one class, 'monet' (12 images).")
    assert only(report, "layout").severity == "error"


# The split

def test_class_without_training_images(tmp_path):
    copy_paintings(tmp_path, {"monet": 10, "vangogh": 10, "turner": 1})
    items = get_image_files(tmp_path)
    seed = seed_where(items, lambda train, valid: any(path.parent.name == "turner" for path in valid))

    report = check_dataset(tmp_path, seed=seed, bs=4, raise_on_error=False)

    finding = only(report, "no_training_images")
    assert finding.severity == "error"
    assert finding.message == (
        f"Class 'turner' has 1 image, and RandomSplitter(valid_pct=0.2, seed={seed}) puts all of them in the validation "
        "set. fastai builds the vocabulary from the training set, so training would stop at the first validation batch "
        "with KeyError: \"Label 'turner' was not included in the training dataset\". Add images to "
        f"{tmp_path / 'turner'}, remove the class, or choose another seed.")
    assert report.class_counts["turner"] == (0, 1)

    # The message describes what fastai does with the same split.
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                      splitter=RandomSplitter(valid_pct=0.2, seed=seed), get_y=parent_label)
    datasets = block.datasets(tmp_path)
    assert "turner" not in datasets.vocab
    turner_index = [parent_label(item) for item in datasets.valid.items].index("turner")
    with pytest.raises(KeyError, match="Label 'turner' was not included in the training dataset"):
        datasets.valid[turner_index]


def test_class_without_validation_images(tmp_path):
    copy_paintings(tmp_path, {"monet": 10, "vangogh": 10, "turner": 2})
    items = get_image_files(tmp_path)
    seed = seed_where(items, lambda train, valid: all(path.parent.name != "turner" for path in valid))

    report = check_dataset(tmp_path, seed=seed, bs=4, raise_on_error=False)

    finding = only(report, "no_validation_images")
    assert finding.severity == "warning"
    assert finding.message == (
        f"Class 'turner' has 2 images, and RandomSplitter(valid_pct=0.2, seed={seed}) puts none of them in the "
        f"validation set, so error_rate does not measure 'turner'. Add images to {tmp_path / 'turner'}, or choose "
        "another seed.")
    assert report.ok


def test_small_dataset_no_full_batch(tmp_path):
    copy_paintings(tmp_path, {"monet": 6, "vangogh": 6})

    report = check_dataset(tmp_path, bs=16, raise_on_error=False)

    finding = only(report, "no_full_batch")
    assert finding.message == (
        "The training set has 10 images, fewer than bs=16. fastai's training DataLoader drops the last incomplete "
        "batch, so each epoch would train on no batch at all and report a nan training loss. Pass bs=8 or smaller, "
        "or add images.")
    assert check_dataset(tmp_path, bs=8).ok

    # The message describes what fastai does: no training batch at bs=16, one at bs=8.
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                      splitter=RandomSplitter(valid_pct=0.2, seed=42), get_y=parent_label, item_tfms=Resize(32))
    assert len(block.dataloaders(tmp_path, bs=16, num_workers=0).train) == 0
    assert len(block.dataloaders(tmp_path, bs=8, num_workers=0).train) == 1


def test_one_training_image_rejected(tmp_path):
    copy_paintings(tmp_path, {"monet": 1, "vangogh": 1})

    report = check_dataset(tmp_path, valid_pct=0.5, bs=1, raise_on_error=False)

    assert only(report, "no_full_batch").message == (
        "The training set has 1 image. Training needs at least 2, because the BatchNorm1d layer in the head that "
        "vision_learner builds fails on a batch of one image. Add images.")


def test_empty_validation_set_reported(tmp_path):
    copy_paintings(tmp_path, {"monet": 2, "vangogh": 2})

    report = check_dataset(tmp_path, bs=2, raise_on_error=False)

    assert only(report, "empty_validation").message == (
        "The validation set is empty: valid_pct=0.2 of 4 images rounds down to 0, so fit would report no valid_loss "
        "and no error_rate. Add images, or raise valid_pct until at least one image is held out.")


def test_split_matches_datablock_split():
    report = check_dataset(PAINTINGS, seed=7, raise_on_error=False, progress=False)
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                      splitter=RandomSplitter(valid_pct=0.2, seed=7), get_y=parent_label)
    # check_dataset resolves its folder, so give fastai the same resolved path (../shared may be a link).
    datasets = block.datasets(PAINTINGS.resolve())

    assert list(report.valid_files) == list(datasets.valid.items)
    assert list(report.train_files) == list(datasets.train.items)
    assert sum(valid for _, valid in report.class_counts.values()) == int(0.2 * 290)


def test_check_keeps_torch_random_state(tmp_path):
    copy_paintings(tmp_path, {"monet": 5, "vangogh": 5})
    torch.manual_seed(123)
    expected = torch.rand(3)

    torch.manual_seed(123)
    check_dataset(tmp_path, bs=2, progress=False)

    assert torch.equal(torch.rand(3), expected)


def test_invalid_arguments_rejected(tmp_path):
    with pytest.raises(ValueError, match="valid_pct must be between 0 and 1, such as 0.2; got 0"):
        check_dataset(tmp_path, valid_pct=0)
    with pytest.raises(ValueError, match="bs must be a positive integer, such as 16; got 0"):
        check_dataset(tmp_path, bs=0)


# Files and image modes

def listed_by_fastai(folder: Path, expected: dict) -> dict:
    "Keep the entries of `expected` whose files get_image_files lists; its extensions differ between machines."
    listed = {path.name for path in get_image_files(folder)}
    return {name: value for name, value in expected.items() if name in listed}


def test_undecodable_files_named_with_reason(tmp_path):
    copy_paintings(tmp_path, {"monet": 8, "vangogh": 8})
    for name in UNDECODABLE:
        shutil.copy(ODD / name, tmp_path / "monet" / name)
    expected = listed_by_fastai(tmp_path, UNDECODABLE)

    with pytest.raises(DatasetError) as raised:
        check_dataset(tmp_path, bs=4)

    finding = only(raised.value.report, "undecodable")
    assert len(expected) > 10
    assert finding.message.startswith(
        f"{len(expected)} of {16 + len(expected)} files that get_image_files lists cannot be decoded, so "
        "training would crash on them in the middle of an epoch. Move them out with "
        f"helpers.images.verify_images('{tmp_path}'), or delete them:")
    listed = finding.message.split("\n    ")[1:]
    listed_reasons = dict(line.split(": ", 1) for line in listed if not line.startswith("... and"))
    assert len(listed_reasons) == 10
    assert listed[-1] == f"... and {len(expected) - 10} more"
    for relative, reason in listed_reasons.items():
        assert reason == expected[relative.removeprefix("monet/")], relative
    assert {path.name for path in finding.files} == set(expected)


def test_odd_modes_reported(tmp_path):
    copy_paintings(tmp_path, {"monet": 8, "vangogh": 8})
    for name in [*NEEDS_ROBUST_LOADING, *CONVERTED_BY_BOTH]:
        shutil.copy(ODD / name, tmp_path / "vangogh" / name)

    report = check_dataset(tmp_path, bs=4, raise_on_error=False, max_distance=0)
    needs_robust_loading = listed_by_fastai(tmp_path, NEEDS_ROBUST_LOADING)
    converted_by_both = listed_by_fastai(tmp_path, CONVERTED_BY_BOTH)

    warning = only(report, "image_conversion")
    assert warning.severity == "warning"
    assert warning.message.startswith(
        f"Found {len(needs_robust_loading)} images that fastai's ImageBlock would read wrongly: fastai's ImageBlock "
        "clips 16-bit values at 255, which often makes the image all white; fastai's ImageBlock ignores the EXIF "
        "orientation, so the image is shown rotated or mirrored; fastai's ImageBlock drops transparency, so "
        "transparent pixels show whatever colour the file stores. Use RobustImageBlock() from helpers.image_block in "
        "place of ImageBlock:")
    note = only(report, "image_modes")
    assert note.severity == "info"
    assert note.message.startswith(f"Found {len(converted_by_both)} images in a mode other than 8-bit RGB. Both "
                                   "ImageBlock and RobustImageBlock convert them correctly:")
    # Ten lines are listed at most, so check the files and then each listed line.
    assert {path.name for path in warning.files} == set(needs_robust_loading)
    assert {path.name for path in note.files} == set(converted_by_both)
    for finding, expected in [(warning, needs_robust_loading), (note, converted_by_both)]:
        for line in finding.message.split("\n    ")[1:]:
            relative, described = line.split(": ", 1)
            assert described == expected[relative.removeprefix("vangogh/")], line
    assert report.ok


def test_skipped_extension_reported(tmp_path, monkeypatch):
    import fastai.data.transforms

    copy_paintings(tmp_path, {"monet": 8, "vangogh": 8})
    shutil.copy(ODD / "hopper.webp", tmp_path / "vangogh" / "hopper.webp")
    # Some machines' mimetypes do not list .webp; take it out of fastai's list to be such a machine.
    monkeypatch.setattr(fastai.data.transforms, "image_extensions", fastai.data.transforms.image_extensions - {".webp"})

    report = check_dataset(tmp_path, bs=4, raise_on_error=False)

    finding = only(report, "skipped_files")
    assert finding.severity == "warning"
    assert finding.message == (
        "get_image_files skips 1 image file, because Python's mimetypes on this machine does not list their extensions "
        "(.webp). They will not be used for training. Convert them to JPEG or PNG to include them:\n    vangogh/hopper.webp")


# Near-duplicates

@pytest.fixture(scope="module")
def straddling_seed() -> int:
    "Return a seed for which some of the Monet pairs straddle the split of the paintings folder, and some do not."
    items = get_image_files(PAINTINGS)

    def straddles(valid, first, second):
        return (PAINTINGS / "monet" / first in valid) != (PAINTINGS / "monet" / second in valid)

    return seed_where(items, lambda train, valid: 0 < sum(straddles(valid, *pair) for pair in MONET_PAIRS) < 3)


@pytest.fixture(scope="module")
def paintings_report(straddling_seed):
    return check_dataset(PAINTINGS, seed=straddling_seed, raise_on_error=False, progress=False)


def test_monet_near_duplicates_found(paintings_report):
    found = {tuple(sorted((pair.first.name, pair.second.name))) for pair in paintings_report.near_duplicates}

    assert {tuple(sorted(pair)) for pair in MONET_PAIRS} <= found
    # 290 paintings make 41,905 pairs; distinct paintings must not be reported in bulk.
    assert len(found) <= 5
    assert all(pair.first.parent == pair.second.parent for pair in paintings_report.near_duplicates)
    assert all(pair.distance < 0.23 for pair in paintings_report.near_duplicates)


def test_duplicates_across_split_reported(paintings_report, straddling_seed):
    straddling = [pair for pair in paintings_report.near_duplicates if pair.straddles_split]
    finding = only(paintings_report, "duplicates_across_split")

    assert straddling
    assert finding.severity == "warning"
    assert finding.message.startswith(
        f"Near-duplicate pairs across the split: {len(straddling)}. In each pair one image is in the training set and "
        "the other in the validation set, so the validation score looks better than it is. Keep one image of each pair:")
    for pair in straddling:
        assert (f"\n    monet/{pair.first.name} ({pair.first_set}) and monet/{pair.second.name} ({pair.second_set}), "
                f"distance {pair.distance:.2f}") in finding.message
        assert {pair.first_set, pair.second_set} == {"train", "valid"}
    assert paintings_report.ok
    assert paintings_report.class_counts.keys() == {"monet", "vangogh"}


def test_duplicates_same_set_noted(paintings_report):
    same_set = [pair for pair in paintings_report.near_duplicates if not pair.straddles_split]
    finding = only(paintings_report, "duplicates")

    assert same_set
    assert finding.severity == "info"
    assert finding.message.startswith(f"Near-duplicate pairs in the same set and class: {len(same_set)}. They leak "
                                          "nothing between training and validation, but each counts twice:")


def test_duplicates_across_classes_reported(tmp_path):
    data = copy_paintings(tmp_path, {"monet": 10, "vangogh": 10})
    original = data / "monet" / "monet_0.jpg"
    open_image_rgb(original).resize((300, 200)).save(data / "vangogh" / "small_copy.png")

    report = check_dataset(data, bs=4, raise_on_error=False)

    finding = only(report, "duplicates_across_classes")
    pair = next(pair for pair in report.near_duplicates if pair.second.name == "small_copy.png")
    assert finding.message.startswith("Near-duplicate pairs in two different classes: 1. One image of each pair has the "
                                      "wrong label. Keep the one in the right class:")
    assert finding.message.endswith(
        f"\n    monet/monet_0.jpg ({pair.first_set}) and vangogh/small_copy.png ({pair.second_set}), "
        f"distance {pair.distance:.2f}, labels 'monet' and 'vangogh'")
    assert pair.first == original


def test_difference_hash_survives_resizing():
    first, second = sorted((PAINTINGS / "vangogh").glob("*.jpg"))[:2]
    image = open_image_rgb(first)
    hashes = [difference_hash(image), difference_hash(image.resize((image.width // 3, image.height // 3))),
              difference_hash(open_image_rgb(second))]

    distances = {(i, j): distance for i, j, distance in near_duplicate_pairs(hashes, max_distance=1.0)}

    assert hashes[0].shape == (512,)
    assert distances[(0, 1)] < 0.1
    assert distances[(0, 2)] > 0.3
    assert distances[(1, 2)] > 0.3


def test_pair_search_matches_brute_force():
    # 700 hashes of 512 bits need several blocks of rows; planted copies with a few flipped bits must be found.
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2, (700, 512)).astype(bool)
    for original, copy in [(3, 650), (100, 101), (400, 699)]:
        hashes[copy] = hashes[original]
        hashes[copy, rng.choice(512, 40, replace=False)] ^= True

    found = near_duplicate_pairs(hashes, max_distance=0.2)

    differing = (hashes[:, None, :] != hashes[None, :, :]).sum(axis=2) / 512
    expected = [(i, j) for i in range(700) for j in range(i + 1, 700) if differing[i, j] <= 0.2]
    assert sorted((i, j) for i, j, _ in found) == expected == [(3, 650), (100, 101), (400, 699)]
    assert all(distance == differing[i, j] for i, j, distance in found)

"""Tests of helpers.images on real awkward image files and real paintings from the shared data folder."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastai.data.transforms import get_image_files
from PIL import Image

from helpers.images import (
    IMAGE_EXTENSIONS,
    TooManyBrokenImagesError,
    check_image,
    image_files,
    open_image_rgb,
    verify_images,
)
from conftest import SHARED_DATA

ODD = SHARED_DATA / "odd_images"
PAINTINGS = SHARED_DATA / "paintings"

pytestmark = pytest.mark.skipif(not ODD.is_dir(), reason=f"real test data not found at {SHARED_DATA}")

# Files that a robust pipeline keeps, with their size after EXIF rotation.
GOOD = {
    "16bit.cropped.tif": (64, 64),
    "app13-multiple.jpg": (256, 160),
    "exif_imagemagick_orientation.png": (512, 512),
    "hopper.avif": (128, 128),
    "hopper.tif": (128, 128),
    "hopper.webp": (128, 128),
    "hopper_bw_500.png": (500, 500),
    "hopper_gray.jpg": (128, 128),
    "hopper_orientation_6.jpg": (128, 128),
    "i_trns.png": (64, 64),
    "iss634.gif": (245, 245),
    "iss634.webp": (245, 245),
    "junk_jpeg_header.jpg": (1024, 768),
    "multipage.tiff": (10, 10),
    "p_trns_single.png": (64, 64),
    "pil_sample_cmyk.jpg": (100, 100),
    "pillow.ico": (256, 256),
    "rgb32bf-rgba.bmp": (127, 64),
    "tiff_strip_cmyk_jpeg.tif": (100, 100),
    "transparent.png": (200, 150),
    "transparent.webp": (200, 150),
    "uncompressed_l.png": (128, 128),
}

# Files that must be rejected, with the start of the expected reason.
BROKEN = {
    "zero_bytes.jpg": "empty file (0 bytes)",
    "anchor_horizontal.svg": "SVG is not a raster image",
    "broken.png": "corrupt PNG",
    "decompression_bomb.gif": "decompression bomb: 4364696535 pixels",
    "hopper.heif": "HEIF needs the pillow-heif plugin",
    "test-ole-file.doc": "not an image: Microsoft Office document",
    "truncated_end_chunk.png": "truncated",
    "truncated_image.png": "truncated",
    "truncated_jpeg.jpg": "truncated",
    "zero_width.gif": "corrupt GIF",
    "%27Au_Petit-Gennevilliers%27_by_Claude_Monet%2C_1874.jpg": "not an image: HTML page",
    "00010.jpg": "Git-LFS pointer: run git lfs pull",
}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_odd_image_opens_as_rgb(name):
    assert check_image(ODD / name) is None
    image = open_image_rgb(ODD / name)
    assert image.mode == "RGB"
    assert image.size == GOOD[name]


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_odd_image_gives_reason(name):
    reason = check_image(ODD / name)
    assert reason is not None
    assert reason.startswith(BROKEN[name]), reason
    assert "\n" not in reason


def test_odd_image_lists_are_complete():
    names = {path.name for path in ODD.iterdir() if path.name != "INDEX.md"}
    assert names == set(GOOD) | set(BROKEN)


def test_exif_orientation_6_is_applied():
    reference = pixels(open_image_rgb(ODD / "hopper.tif"))
    upright = pixels(open_image_rgb(ODD / "hopper_orientation_6.jpg"))
    stored = pixels(Image.open(ODD / "hopper_orientation_6.jpg").convert("RGB"))
    assert np.abs(upright - reference).mean() < 10
    assert np.abs(stored - reference).mean() > 40


def test_png_exif_orientation_is_applied():
    upright = np.asarray(open_image_rgb(ODD / "exif_imagemagick_orientation.png"))
    stored = np.asarray(Image.open(ODD / "exif_imagemagick_orientation.png").convert("RGB"))
    assert np.array_equal(upright, stored[::-1, ::-1])


def test_16_bit_grey_is_rescaled():
    grey = np.asarray(open_image_rgb(ODD / "16bit.cropped.tif"))
    naive = np.asarray(Image.open(ODD / "16bit.cropped.tif").convert("RGB"))
    assert naive.min() == 255  # the failure this guards against: an all-white image
    assert grey.min() == 0
    assert grey.max() == 255
    assert np.array_equal(grey[..., 0], grey[..., 2])


def test_16_bit_transparency_uses_background():
    source = np.asarray(Image.open(ODD / "i_trns.png"))
    transparent = source == Image.open(ODD / "i_trns.png").info["transparency"]
    image = np.asarray(open_image_rgb(ODD / "i_trns.png", background=(0, 0, 255)))
    assert transparent.any()
    assert (image[transparent] == (0, 0, 255)).all()


def test_palette_transparency_uses_background():
    with Image.open(ODD / "p_trns_single.png") as source:
        transparent = np.asarray(source) == source.info["transparency"]
    image = np.asarray(open_image_rgb(ODD / "p_trns_single.png", background=(1, 2, 3)))
    assert transparent.any()
    assert (image[transparent] == (1, 2, 3)).all()
    assert not (image[~transparent] == (1, 2, 3)).all(axis=-1).any()


def test_alpha_composites_onto_background():
    with Image.open(ODD / "transparent.png") as source:
        alpha = np.asarray(source.getchannel("A"))
    white = np.asarray(open_image_rgb(ODD / "transparent.png"))
    black = np.asarray(open_image_rgb(ODD / "transparent.png", background=(0, 0, 0)))
    assert (white[alpha == 0] == 255).all()
    assert (black[alpha == 0] == 0).all()
    assert np.array_equal(white[alpha == 255], black[alpha == 255])


@pytest.mark.parametrize("name", ["iss634.gif", "iss634.webp", "multipage.tiff"])
def test_first_frame_is_used(name):
    with Image.open(ODD / name) as source:
        assert getattr(source, "n_frames", 1) > 1
        source.seek(0)
        first = np.asarray(source.convert("RGBA"))
    image = np.asarray(open_image_rgb(ODD / name))
    opaque = first[..., 3] == 255
    assert np.array_equal(image[opaque], first[..., :3][opaque])


@pytest.mark.parametrize("name", ["pil_sample_cmyk.jpg", "tiff_strip_cmyk_jpeg.tif"])
def test_cmyk_becomes_rgb(name):
    assert Image.open(ODD / name).mode == "CMYK"
    image = open_image_rgb(ODD / name)
    assert image.mode == "RGB"
    assert np.asarray(image).std() > 10


def test_bomb_limit_stays_in_force():
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(Image.DecompressionBombError):
        open_image_rgb(ODD / "decompression_bomb.gif")
    assert Image.MAX_IMAGE_PIXELS == limit == 89478485  # Pillow's default; DecompressionBombError comes at twice this


def test_every_real_painting_passes_check():
    if not PAINTINGS.is_dir():
        pytest.skip(f"paintings not found at {PAINTINGS}")
    files = image_files(PAINTINGS)
    assert len(files) == 290
    assert [path for path in files if check_image(path) is not None] == []


def test_image_files_uses_fixed_extensions(tmp_path):
    for name in ["a.webp", "b.JPG", "c.svg", "d.heic", ".hidden.png", "e.txt"]:
        (tmp_path / "class").mkdir(exist_ok=True)
        (tmp_path / "class" / name).write_bytes(b"")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "f.png").write_bytes(b"")
    assert [path.name for path in image_files(tmp_path)] == ["a.webp", "b.JPG", "d.heic"]
    assert ".webp" in IMAGE_EXTENSIONS
    assert ".svg" not in IMAGE_EXTENSIONS


def test_image_files_rejects_missing_folder(tmp_path):
    with pytest.raises(NotADirectoryError, match="missing"):
        image_files(tmp_path / "missing")


def make_dataset(root: Path, n_good: int, broken: list[str]) -> Path:
    "Copy `n_good` real paintings per class and the named odd files into root/paintings/<class>/."
    dataset = root / "paintings"
    for painter in ["monet", "vangogh"]:
        (dataset / painter).mkdir(parents=True)
        for path in sorted((PAINTINGS / painter).iterdir())[:n_good]:
            shutil.copy(path, dataset / painter / path.name)
    for index, name in enumerate(broken):
        painter = ["monet", "vangogh"][index % 2]
        shutil.copy(ODD / name, dataset / painter / name)
    return dataset


BROKEN_WITH_IMAGE_EXTENSIONS = [name for name in BROKEN if Path(name).suffix.lower() in IMAGE_EXTENSIONS]


def test_verify_images_quarantines_broken_files(tmp_path):
    dataset = make_dataset(tmp_path, n_good=12, broken=BROKEN_WITH_IMAGE_EXTENSIONS)
    failed = verify_images(dataset, progress=False)
    quarantine = tmp_path / "_quarantine" / "paintings"

    assert sorted(item.path.name for item in failed) == sorted(BROKEN_WITH_IMAGE_EXTENSIONS)
    assert len(get_image_files(dataset)) == 24
    assert len(image_files(dataset)) == 24
    assert all(check_image(path) is None for path in image_files(dataset))
    assert all(item.moved_to.exists() and quarantine in item.moved_to.parents for item in failed)
    with open(quarantine / "reasons.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    reasons = {Path(row["file"]).name: row["reason"] for row in rows}
    assert reasons["00010.jpg"] == "Git-LFS pointer: run git lfs pull"
    assert reasons["truncated_jpeg.jpg"].startswith("truncated")
    assert verify_images(dataset, progress=False) == []


def test_verify_images_class_folder_quarantine(tmp_path):
    dataset = make_dataset(tmp_path, n_good=3, broken=["truncated_jpeg.jpg"])
    failed = verify_images(dataset / "monet", progress=False)
    assert len(failed) == 1
    assert failed[0].moved_to == tmp_path / "_quarantine" / "paintings" / "monet" / "truncated_jpeg.jpg"
    assert len(get_image_files(dataset)) == 6


def test_verify_images_refuses_mass_failure(tmp_path):
    dataset = tmp_path / "pointers" / "monet"
    dataset.mkdir(parents=True)
    for index in range(9):
        shutil.copy(ODD / "00010.jpg", dataset / f"{index}.jpg")
    shutil.copy(PAINTINGS / "monet" / "monet_0.jpg", dataset / "real.jpg")
    with pytest.raises(TooManyBrokenImagesError, match="9 of 10 .*Git-LFS pointer"):
        verify_images(tmp_path / "pointers", progress=False)
    assert len(image_files(dataset)) == 10
    assert not (tmp_path / "_quarantine").exists()


def test_verify_images_report_only_moves_nothing(tmp_path):
    dataset = make_dataset(tmp_path, n_good=2, broken=["broken.png"])
    failed = verify_images(dataset, move=False, progress=False)
    assert [(item.path.name, item.moved_to) for item in failed] == [("broken.png", None)]
    assert (dataset / "monet" / "broken.png").exists()


def test_check_image_missing_file(tmp_path):
    assert check_image(tmp_path / "nothing.jpg") == "file not found"


def test_verify_images_root_beside_photos(tmp_path):
    dataset = make_dataset(tmp_path / "data", n_good=2, broken=["broken.png"])
    photos = tmp_path / "data" / "photos"
    photos.mkdir()
    shutil.copy(PAINTINGS / "monet" / "monet_0.jpg", photos / "photo.jpg")
    failed = verify_images(dataset, progress=False)
    assert failed[0].moved_to == tmp_path / "data" / "_quarantine" / "paintings" / "monet" / "broken.png"


def test_verify_images_accepts_file_list(tmp_path):
    dataset = make_dataset(tmp_path, n_good=3, broken=["zero_bytes.jpg", "hopper.heif"])
    failed = verify_images(get_image_files(dataset), progress=False)
    quarantine = tmp_path / "_quarantine" / "paintings"
    assert sorted(item.moved_to for item in failed) == [quarantine / "monet" / "zero_bytes.jpg",
                                                        quarantine / "vangogh" / "hopper.heif"]
    assert len(image_files(dataset)) == 6

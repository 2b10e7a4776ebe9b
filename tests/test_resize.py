"""Tests of helpers.resize on real paintings and real awkward image files from the shared data folder."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from fastai.vision.all import PILImage
from PIL import Image

import helpers.resize as resize
from helpers.images import open_image_rgb
from helpers.resize import ALL_METHODS, ResizeExplorer, resize_explorer, resize_transforms, show_resize_comparison
from conftest import SHARED_DATA

PAINTINGS = SHARED_DATA / "paintings"
ODD = SHARED_DATA / "odd_images"

pytestmark = pytest.mark.skipif(not PAINTINGS.is_dir(), reason=f"real test data not found at {SHARED_DATA}")

METHODS = ["crop", "squish", "pad (zeros)", "pad (reflection)", "pad (border)", "RandomResizedCrop"]
PAD_METHODS = ["pad (zeros)", "pad (reflection)", "pad (border)"]


def aspect_ratio(file: Path) -> float:
    with Image.open(file) as image:
        return image.width / image.height


@pytest.fixture
def wide_and_tall() -> list[Path]:
    "Return the widest and the tallest real painting."
    files = sorted(PAINTINGS.glob("*/*.jpg"))
    return [max(files, key=aspect_ratio), min(files, key=aspect_ratio)]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def panel_pixels(figure) -> list[np.ndarray]:
    "Return the image array shown in each panel of a figure, in panel order."
    return [np.asarray(axis.get_images()[0].get_array()) for axis in figure.axes]


def test_comparison_has_titled_panels(wide_and_tall):
    figure = show_resize_comparison(wide_and_tall, size=64)

    assert len(figure.axes) == 2 * 6
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == [f"{method} 64×64" for method in METHODS] * 2
    for pixels in panel_pixels(figure):
        assert pixels.shape == (64, 64, 3)


def test_comparison_method_subset(wide_and_tall):
    figure = show_resize_comparison(wide_and_tall[:1], size=40, methods=["squish", "pad (border)"])

    assert [axis.get_title() for axis in figure.axes] == ["squish 40×40", "pad (border) 40×40"]


def test_comparison_rejects_unknown_method(wide_and_tall):
    with pytest.raises(ValueError, match=r"Unknown resize methods \['stretch'\]; choose from"):
        show_resize_comparison(wide_and_tall, methods=["stretch"])
    with pytest.raises(ValueError, match="at least one image file"):
        show_resize_comparison([])
    with pytest.raises(ValueError, match="size must be a positive number of pixels"):
        show_resize_comparison(wide_and_tall, size=0)


def test_comparison_differs_between_methods(wide_and_tall):
    # On a far from square painting, each Resize method must give a different picture.
    figure = show_resize_comparison(wide_and_tall[:1], size=64, methods=METHODS[:5])
    pixels = panel_pixels(figure)

    for first in range(len(pixels)):
        for second in range(first + 1, len(pixels)):
            assert not np.array_equal(pixels[first], pixels[second]), (METHODS[first], METHODS[second])


def test_validation_crop_is_repeatable(wide_and_tall):
    first = panel_pixels(show_resize_comparison(wide_and_tall, size=48, methods=["crop"]))
    second = panel_pixels(show_resize_comparison(wide_and_tall, size=48, methods=["crop"]))
    random_crops = [panel_pixels(show_resize_comparison(wide_and_tall[:1], size=48, methods=["RandomResizedCrop"]))[0]
                    for _ in range(4)]

    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert any(not np.array_equal(random_crops[0], other) for other in random_crops[1:])


@pytest.mark.parametrize("width, height", [(36, 128), (128, 36), (3, 200)])
def test_pad_modes_narrow_image(wide_and_tall, width, height):
    painting = open_image_rgb(wide_and_tall[0])
    strip = painting.resize((width, height))

    for name in PAD_METHODS:
        padded = np.asarray(resize_transforms(128)[name](PILImage.create(strip), split_idx=1))
        assert padded.shape == (128, 128, 3), name

    figure = show_resize_comparison([wide_and_tall[0]], size=128, methods=PAD_METHODS)
    assert len(figure.axes) == 3


def test_pad_modes_fill_correctly(wide_and_tall):
    strip = np.asarray(open_image_rgb(wide_and_tall[0]).resize((36, 128)))
    left = (128 - 36) // 2
    padded = {name: np.asarray(resize_transforms(128)[name](PILImage.create(strip), split_idx=1)) for name in PAD_METHODS}

    for name in PAD_METHODS:
        assert (padded[name][:, left:left + 36] == strip).all(), name
    assert (padded["pad (zeros)"][:, :left] == 0).all()
    assert (padded["pad (border)"][:, :left] == strip[:, :1]).all()
    assert (padded["pad (reflection)"][:, left - 1] == strip[:, 1]).all()
    assert not (padded["pad (reflection)"][:, :left] == 0).all()


@pytest.mark.skipif(not ODD.is_dir(), reason=f"odd images not found at {ODD}")
def test_comparison_applies_exif_rotation():
    # hopper_orientation_6.jpg stores the picture of hopper.tif rotated, with an EXIF orientation tag of 6.
    rotated, upright = ODD / "hopper_orientation_6.jpg", ODD / "hopper.tif"
    figure = show_resize_comparison([rotated, upright], size=64, methods=["squish"])
    shown_rotated, shown_upright = (pixels.astype(float) for pixels in panel_pixels(figure))
    stored = np.asarray(PILImage.create(rotated).resize((64, 64)), dtype=float)

    assert np.abs(shown_rotated - shown_upright).mean() < 12
    assert np.abs(stored - shown_upright).mean() > 40


def test_explorer_redraws_on_change(wide_and_tall):
    explorer = ResizeExplorer(wide_and_tall, size=32)
    assert [axis.get_title() for axis in explorer.figure.axes] == [f"{method} 32×32" for method in METHODS] * 2

    explorer.size_slider.value = 64
    assert explorer.figure.axes[0].get_title() == "crop 64×64"

    explorer.method_menu.value = "pad (reflection)"
    assert [axis.get_title() for axis in explorer.figure.axes] == ["pad (reflection) 64×64"] * 2

    explorer.method_menu.value = ALL_METHODS
    assert len(explorer.figure.axes) == 2 * 6


def test_explorer_waits_without_draw(wide_and_tall):
    explorer = ResizeExplorer(wide_and_tall, size=32, draw=False)
    assert explorer.figure is None

    explorer.size_slider.value = 48
    assert explorer.figure.axes[0].get_title() == "crop 48×48"


def test_explorer_static_without_kernel(wide_and_tall):
    # pytest runs without a Jupyter kernel, so only the static figure is drawn.
    assert not resize.widgets_available()
    before = set(plt.get_fignums())

    explorer = resize_explorer(wide_and_tall, size=32, methods=["crop", "squish"])

    assert explorer is None
    new_figures = [plt.figure(number) for number in set(plt.get_fignums()) - before]
    assert len(new_figures) == 1
    assert [axis.get_title() for axis in new_figures[0].axes] == ["crop 32×32", "squish 32×32"] * 2


def test_explorer_widget_with_kernel(wide_and_tall, monkeypatch):
    import IPython.display

    displayed = []
    monkeypatch.setattr(resize, "widgets_available", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda *objects: displayed.extend(objects))

    explorer = resize_explorer(wide_and_tall, size=32)

    assert isinstance(explorer, ResizeExplorer)
    assert len(displayed) == 2
    static_figure, widget = displayed
    assert [axis.get_title() for axis in static_figure.axes][:2] == ["crop 32×32", "squish 32×32"]
    assert widget is explorer.widget
    assert explorer.figure is None

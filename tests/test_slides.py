"""Lessons as slides: slide metadata on copies of the real lessons, and offline decks checked in headless Chromium."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chromium import Chromium, find_chromium
from helpers.platform import cell_source, read_notebook
from helpers.slides import (SLIDE_TYPES, add_slide_metadata, build_slides, count_slides, export_deck,
                            mark_slides, slide_type_for)
from helpers.workshop import LESSONS

REPOSITORY = Path(__file__).resolve().parents[1]
NODE_MODULES = REPOSITORY / "node_modules"
ARTIFACTS = REPOSITORY / "build" / "test-artifacts" / "slides"


@pytest.fixture
def lesson_copies(tmp_path) -> Path:
    "Copy the five lessons and pyproject.toml (for nbdev-clean's settings) into a temporary project."
    shutil.copy(REPOSITORY / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "nbs").mkdir()
    for name in LESSONS:
        shutil.copy(REPOSITORY / "nbs" / f"{name}.ipynb", tmp_path / "nbs" / f"{name}.ipynb")
    return tmp_path / "nbs"


def slide_types(path: Path) -> list:
    return [((cell.get("metadata") or {}).get("slideshow") or {}).get("slide_type") for cell in read_notebook(path)["cells"]]


def test_mark_lessons_twice_same_bytes(lesson_copies):
    for name in LESSONS:
        path = lesson_copies / f"{name}.ipynb"
        add_slide_metadata(path)
        first = path.read_bytes()
        assert add_slide_metadata(path) == 0, name
        assert path.read_bytes() == first, name

        notebook = read_notebook(path)
        assert all(slide_type in SLIDE_TYPES for slide_type in slide_types(path)), name
        assert notebook["metadata"]["rise"]["scroll"] is True, name
        headings = [cell for cell in notebook["cells"]
                    if cell["cell_type"] == "markdown" and re.match(r"#{1,2} ", cell_source(cell).lstrip())]
        assert headings, f"{name} has no # or ## heading to start a slide"
        assert count_slides(notebook) >= len(headings), name


def test_nbdev_clean_keeps_slide_metadata(lesson_copies):
    for name in LESSONS:
        add_slide_metadata(lesson_copies / f"{name}.ipynb")
    before = {name: slide_types(lesson_copies / f"{name}.ipynb") for name in LESSONS}
    rise_before = read_notebook(lesson_copies / "01_neurons.ipynb")["metadata"]["rise"]

    nbdev_clean = Path(sys.executable).with_name("nbdev-clean")
    result = subprocess.run([str(nbdev_clean), "--fname", str(lesson_copies)], capture_output=True, text=True,
                            cwd=lesson_copies.parent, timeout=120)
    assert result.returncode == 0, result.stderr

    for name in LESSONS:
        assert slide_types(lesson_copies / f"{name}.ipynb") == before[name], f"nbdev-clean changed the slide types of {name}"
    assert read_notebook(lesson_copies / "01_neurons.ipynb")["metadata"].get("rise") == rise_before


def test_hand_set_type_kept(lesson_copies):
    path = lesson_copies / "03_datablock.ipynb"
    notebook = read_notebook(path)
    code_index = next(index for index, cell in enumerate(notebook["cells"])
                      if cell["cell_type"] == "code" and slide_type_for(cell) == "-")
    notebook["cells"][code_index]["metadata"]["slideshow"] = {"slide_type": "fragment"}
    path.write_text(json.dumps(notebook))

    add_slide_metadata(path)
    assert slide_types(path)[code_index] == "fragment"
    add_slide_metadata(path, overwrite=True)
    assert slide_types(path)[code_index] == "-"


def test_remote_image_rejected(tmp_path):
    notebook = {"cells": [{"cell_type": "markdown", "id": "a", "metadata": {},
                           "source": "# Title\n\n![a painting](https://upload.example.org/monet.jpg)"}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "remote.ipynb"
    path.write_text(json.dumps(notebook))
    with pytest.raises(ValueError, match="upload.example.org/monet.jpg"):
        export_deck(path, tmp_path / "decks")
    assert not (tmp_path / "decks" / "remote.slides.html").exists()


def test_build_without_node_modules(tmp_path):
    with pytest.raises(FileNotFoundError, match="npm ci"):
        build_slides(tmp_path / "decks", node_modules=tmp_path / "missing")


def title_is_painted(screenshot: Path, box: dict) -> bool:
    "Return True when the screenshot has dark text pixels inside the title's bounding box."
    image = Image.open(screenshot).convert("L")
    region = np.asarray(image.crop((int(box["left"]), int(box["top"]), int(box["right"]), int(box["bottom"]))))
    return (region < 100).mean() > 0.01


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> Path:
    "Build the five decks from the lesson sources into a temporary folder."
    if not (NODE_MODULES / "reveal.js").is_dir() or not (NODE_MODULES / "mathjax").is_dir():
        pytest.skip(f"reveal.js and mathjax not installed in {NODE_MODULES}; run `npm ci` (make test does)")
    output = tmp_path_factory.mktemp("slides")
    build_slides(output, executed=output / "no-executed-lessons")
    return output


@pytest.mark.skipif(find_chromium() is None, reason="Chromium not found; install Debian's chromium package (make test does)")
def test_decks_load_offline_in_chromium(decks):
    with Chromium() as browser:
        for name in LESSONS:
            notebook = read_notebook(REPOSITORY / "nbs" / f"{name}.ipynb")
            mark_slides(notebook)
            title = next(match.group(1).strip() for cell in notebook["cells"]
                         if cell["cell_type"] == "markdown" and (match := re.match(r"#\s+(.+)", cell_source(cell).strip())))

            deck = decks / f"{name}.slides.html"
            with browser.open(deck.as_uri()) as page:
                page.wait_for("typeof Reveal !== 'undefined' && Reveal.isReady()", timeout=60)
                if "$$" in json.dumps(notebook):
                    page.wait_for("document.querySelectorAll('mjx-container').length > 0", timeout=30)
                page.pump(1)

                assert page.failed == [], f"{name}: failed requests {page.failed}"
                assert page.exceptions == [], f"{name}: JavaScript errors {page.exceptions}"
                assert page.console_errors == [], f"{name}: console errors {page.console_errors}"
                remote = [url for url in page.requests.values() if not url.startswith(("file:", "data:"))]
                assert remote == [], f"{name}: requests that leave the disk {remote}"
                assert page.evaluate("Reveal.getHorizontalSlides().length") == count_slides(notebook), name

                # innerText is the visible text: without the hidden anchor link, in the theme's capitals.
                heading = page.evaluate("document.querySelector('.reveal .slides section.present h1').innerText")
                assert heading.strip().lower() == re.sub(r"[`*]", "", title).lower(), name
                box = page.evaluate("JSON.parse(JSON.stringify(document.querySelector('.reveal .slides section.present h1')"
                                    ".getBoundingClientRect()))")
                screenshot = page.screenshot(ARTIFACTS / f"{name}.png")
                assert box["top"] >= 0, f"{name}: the title is above the screen at {box}"
                assert box["bottom"] <= browser.height, f"{name}: the title is below the screen at {box}"
                assert title_is_painted(screenshot, box), f"{name}: no title text in {screenshot}"

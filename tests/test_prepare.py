"""`python -m helpers.prepare` against servers on 127.0.0.1, with temporary caches, and its readiness report."""
import functools
import json
import os
import subprocess
import sys
from collections import Counter
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from helpers.images import image_files
from helpers.prepare import LESSON_NEEDS, check_readiness, lesson_imports, main
from helpers.workshop import LESSONS
from image_server import ImageServer
from loopback import LoopbackServer

REPOSITORY = Path(__file__).resolve().parents[1]


class FileServer(LoopbackServer):
    "Serve the files of a folder on 127.0.0.1 and count the requests per path; use it as a context manager."

    def __init__(self, folder: Path):
        self.hits = Counter()
        hits = self.hits

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                hits[self.path] += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        super().__init__(functools.partial(Handler, directory=str(folder)))


def test_prepare_fetches_from_local_servers(isolated_cache, shared_data, monkeypatch, capsys):
    mirror_folder = isolated_cache / "mirror"
    mirror_folder.mkdir()
    (mirror_folder / "resnet18-f37072fd.pth").write_bytes(b"a file that is not resnet18's checkpoint")

    with ImageServer(paintings=shared_data / "paintings") as images, FileServer(mirror_folder) as mirror:
        monkeypatch.setenv("WIKIMEDIA_API_ENDPOINT", f"{images.url}/w/api.php")
        status = main(["--max-images", "4", "--weights-mirror", mirror.url])
        api_requests = images.hits_for("/w/api.php")
    output = capsys.readouterr().out

    assert status == 0, output  # every lesson still runs, some of them degraded
    cache = isolated_cache / "course-cache"
    assert len(image_files(cache / "paintings" / "monet")) == 4
    assert len(image_files(cache / "paintings" / "vangogh")) == 4
    assert all(path.parent.name == "monet" for path in image_files(cache / "paintings" / "monet"))
    assert api_requests >= 2
    assert "Downloaded images: monet 4, vangogh 4" in output

    assert mirror.hits["/resnet18-f37072fd.pth"] == 1
    assert "ImageNet weights: download failed" in output
    assert "does not start with f37072fd" in output
    checkpoints = isolated_cache / "torch" / "hub" / "checkpoints"
    assert not (checkpoints / "resnet18-f37072fd.pth").exists()
    assert list(checkpoints.glob("*")) == [], "the rejected download left files behind"
    assert "random weights instead of resnet18's ImageNet weights" in output
    assert f"set COURSE_DATA={cache / 'paintings'}" in output
    assert "Every lesson can run." in output


def test_report_with_weights_and_data(isolated_cache, shared_data, monkeypatch, capsys):
    checkpoint = isolated_cache / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"stands in for the checkpoint; the report only checks that it is there")
    monkeypatch.setenv("COURSE_DATA", str(shared_data / "paintings"))

    assert main(["--check"]) == 0
    output = capsys.readouterr().out
    assert f"ImageNet weights: present ({checkpoint})" in output
    assert f"COURSE_DATA={shared_data / 'paintings'} (290 images)" in output
    for lesson in LESSONS:
        assert f"  {lesson}" in output
    assert "degraded" not in output
    assert not (isolated_cache / "course-cache" / "paintings").exists()  # --check fetches nothing


def test_report_failed_import_exits_1(isolated_cache, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # what a missing package looks like to `import`
    assert main(["--check"]) == 1
    output = capsys.readouterr().out
    states = {lesson.lesson: lesson for lesson in check_readiness().lessons}
    assert not states["01_neurons"].runs
    assert not states["05_bias"].runs
    assert states["03_datablock"].runs
    assert "`import sklearn.datasets` failed" in output
    assert "Some lessons cannot run" in output


def test_report_unwritable_cache_exits_1(isolated_cache, monkeypatch, capsys):
    blocker = isolated_cache / "a-file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("COURSE_CACHE", str(blocker / "cache"))
    assert main(["--check"]) == 1
    output = capsys.readouterr().out
    assert "NOT writable" in output
    states = {lesson.lesson: lesson for lesson in check_readiness().lessons}
    assert [name for name, state in states.items() if not state.runs] == ["03_datablock", "04_transfer_learning", "05_bias"]


def test_report_missing_data_folder(isolated_cache, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(isolated_cache / "no-such-folder"))
    states = {lesson.lesson: lesson for lesson in check_readiness().lessons}
    assert not states["04_transfer_learning"].runs
    assert "not a folder" in states["04_transfer_learning"].problems[0]
    assert states["01_neurons"].runs


def test_module_entry_point_check(isolated_cache):
    environment = {**os.environ, "COURSE_CACHE": str(isolated_cache / "course-cache"), "TORCH_HOME": str(isolated_cache / "torch")}
    result = subprocess.run([sys.executable, "-m", "helpers.prepare", "--check"], capture_output=True, text=True,
                            env=environment, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Course readiness" in result.stdout
    assert "Every lesson can run." in result.stdout


def test_lesson_needs_cover_packages():
    assert list(LESSON_NEEDS) == list(LESSONS)
    for name, needs in LESSON_NEEDS.items():
        listed = {module.split(".")[0] for module in (*needs.modules, *needs.optional)}
        for module in lesson_imports(REPOSITORY / "nbs" / f"{name}.ipynb"):
            package = module.split(".")[0]
            if package in sys.stdlib_module_names or package in ("helpers", "IPython"):  # IPython comes with every kernel
                continue
            assert package in listed, f"{name} imports {module}; add {package} to LESSON_NEEDS['{name}'] in helpers.prepare"


def test_readiness_reads_lesson_imports(isolated_cache, tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    cell = {"cell_type": "code", "execution_count": None, "id": "a", "metadata": {}, "outputs": [],
            "source": "%matplotlib inline\nimport json\nfrom helpers.no_such_module import something\n"
                      "def later():\n    import another_missing_module"}
    (nbs / "01_neurons.ipynb").write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    states = {lesson.lesson: lesson for lesson in check_readiness(nbs=nbs).lessons}
    assert states["01_neurons"].problems == [
        "`import helpers.no_such_module` failed: ModuleNotFoundError: No module named 'helpers.no_such_module'"]
    assert states["02_gradient_descent"].runs  # no notebook in nbs: the table alone

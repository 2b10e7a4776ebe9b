"""The Colab and Kaggle set-up cell, run for real with `subprocess.run` replaced, and its place in the lessons."""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.platform import (PLATFORM_VARIABLES, SETUP_MARKER, add_platform_cells, cell_source, colab_url,
                              detect_platform, kaggle_url, read_notebook, repository_url, setup_cell_source)
from helpers.workshop import LESSONS

REPOSITORY = Path(__file__).resolve().parents[1]
ALL_VARIABLES = [name for names in PLATFORM_VARIABLES.values() for name in names]
REPOSITORY_URL = repository_url(REPOSITORY / "pyproject.toml")


class PipCalls:
    "A stand-in for `subprocess.run` that records each command and answers with a fixed exit status."

    def __init__(self, returncode: int = 0, stderr: str = ""):
        self.commands, self.returncode, self.stderr = [], returncode, stderr

    def __call__(self, command, **options):
        self.commands.append(command)
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


@pytest.fixture
def hosted(monkeypatch):
    "Clear the platform variables, make `helpers` look missing, and return the recorder that replaces subprocess.run."
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, package=None: None if name == "helpers" else real_find_spec(name, package))
    calls = PipCalls()
    monkeypatch.setattr(subprocess, "run", calls)
    return calls


def run_setup_cell(source: str | None = None):
    exec(compile(source or setup_cell_source(REPOSITORY_URL), "<set-up cell>", "exec"), {"__name__": "__main__"})


@pytest.mark.parametrize("variable,value", [("COLAB_RELEASE_TAG", "release-colab_20250101-060000"),
                                            ("COLAB_GPU", "1"), ("KAGGLE_KERNEL_RUN_TYPE", "Interactive")])
def test_setup_cell_installs_when_hosted(hosted, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    run_setup_cell()
    assert hosted.commands == [[sys.executable, "-m", "pip", "install", "--quiet",
                                f"painting-course @ git+{REPOSITORY_URL}"]]
    assert detect_platform() in ("colab", "kaggle")


def test_setup_cell_idle_elsewhere(hosted):
    run_setup_cell()
    assert hosted.commands == []
    assert detect_platform() is None


def test_setup_cell_idle_when_installed(hosted, monkeypatch):
    monkeypatch.setenv("COLAB_GPU", "1")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: object())
    run_setup_cell()
    assert hosted.commands == []


def test_setup_cell_failed_install_explained(hosted, monkeypatch):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    hosted.returncode, hosted.stderr = 1, "ERROR: Could not resolve host: github.com"
    with pytest.raises(RuntimeError) as error:
        run_setup_cell()
    assert "Could not resolve host: github.com" in str(error.value)
    assert "turn on Internet" in str(error.value)


def test_setup_cell_in_fresh_interpreter(tmp_path):
    "The cell imports nothing from the course, so it runs in an interpreter that cannot import `helpers`."
    script = tmp_path / "cell.py"
    script.write_text(setup_cell_source(REPOSITORY_URL))
    environment = {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    result = subprocess.run([sys.executable, "-I", "-S", str(script)], capture_output=True, text=True,
                            cwd=tmp_path, env=environment, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_lessons_have_current_setup_cell():
    for name in LESSONS:
        path = REPOSITORY / "nbs" / f"{name}.ipynb"
        cells = read_notebook(path)["cells"]
        setup = [cell for cell in cells if cell["cell_type"] == "code" and SETUP_MARKER in cell_source(cell)]
        advice = f"{path.name}: run `python -m helpers.platform` to insert or update it"
        assert len(setup) == 1, f"{advice} (found {len(setup)} set-up cells)"
        assert cell_source(setup[0]) == setup_cell_source(REPOSITORY_URL), advice
        first_code = next(cell for cell in cells if cell["cell_type"] == "code")
        assert first_code is setup[0], f"{path.name}: the set-up cell must be the first code cell"
        header = cell_source(cells[0])
        assert colab_url(f"nbs/{name}.ipynb", REPOSITORY_URL) in header, advice
        assert kaggle_url(f"nbs/{name}.ipynb", REPOSITORY_URL) in header, advice


def test_add_platform_cells_twice_same_bytes(tmp_path):
    for name in LESSONS:
        copy = tmp_path / f"{name}.ipynb"
        shutil.copy(REPOSITORY / "nbs" / f"{name}.ipynb", copy)
        cells_before = len(read_notebook(copy)["cells"])
        had_cell = any(SETUP_MARKER in cell_source(cell) for cell in read_notebook(copy)["cells"])

        add_platform_cells(copy, REPOSITORY_URL)
        first = copy.read_bytes()
        assert not add_platform_cells(copy, REPOSITORY_URL), name
        assert copy.read_bytes() == first, name

        cells = read_notebook(copy)["cells"]
        assert len(cells) == cells_before + (0 if had_cell else 1), name
        assert sum(SETUP_MARKER in cell_source(cell) for cell in cells) == 1, name
        assert cell_source(cells[0]).count("colab.research.google.com") == 1, name
        json.loads(first)  # still valid JSON

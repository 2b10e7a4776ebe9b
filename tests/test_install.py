"""`helpers` outside the repository: built as a wheel, installed into fresh virtual environments, imported in a
notebook run by nbclient in that environment's kernel, and light to import."""
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPOSITORY = Path(__file__).resolve().parents[1]

# Modules that must not import torch or fastai when imported: every module that does not train, and the course's
# tools (slides, prepare, platform). The lesson modules bias, exercises, gradient_descent and neurons need torch,
# and image_block defines a fastai image type.
LIGHT_MODULES = ["helpers", "helpers.core", "helpers.sample_data", "helpers.workshop", "helpers.weights",
                 "helpers.training", "helpers.pretrain", "helpers.resize", "helpers.images", "helpers.download",
                 "helpers.datachecks", "helpers.search", "helpers.platform", "helpers.slides", "helpers.prepare"]


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> Path:
    "Copy the files a package build reads (pyproject.toml, README.md, helpers/) into a temporary folder."
    tree = tmp_path_factory.mktemp("source")
    shutil.copy(REPOSITORY / "pyproject.toml", tree)
    shutil.copy(REPOSITORY / "README.md", tree)
    shutil.copytree(REPOSITORY / "helpers", tree / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    return tree


@pytest.fixture(scope="module")
def wheel(source_tree, tmp_path_factory) -> Path:
    "Build the wheel with `pip wheel --no-deps`, using the installed setuptools so that no download is needed."
    folder = tmp_path_factory.mktemp("wheels")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--wheel-dir", str(folder), str(source_tree)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = folder.glob("painting_course-*.whl")
    return built


def make_venv(path: Path) -> Path:
    """Create a virtual environment that can import this interpreter's packages (torch, fastai, ipykernel) but not
    its `helpers`, and return its Python.

    `--system-site-packages` would not do when this interpreter is itself a virtual environment, because a venv
    made from it gets the base installation's packages only. A `.pth` line with this interpreter's
    site-packages folders adds them after the new environment's own, and the `.pth` files inside those folders,
    the editable install of `helpers` among them, are not run.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "outer_site_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def pip_install(python: Path, *arguments: str):
    "Install into the environment of `python` with this interpreter's pip, offline and without dependencies."
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                             "--no-build-isolation", *arguments], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def run_notebook_in(python: Path, tmp_path: Path, monkeypatch) -> list[str]:
    "Run a small notebook that imports `helpers` with nbclient, in a kernel of `python`, and return its text outputs."
    kernel = tmp_path / "jupyter" / "kernels" / "fresh-venv"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import sys\nimport helpers\nprint(sys.executable)\nprint(helpers.__file__)"),
        nbformat.v4.new_code_cell("from helpers.sample_data import course_data, is_synthetic\n"
                                  "path = course_data()\nprint(is_synthetic(path), len(list(path.glob('*/*.png'))))"),
    ])
    # The kernel starts in tmp_path: from the repository folder it would import the checkout's `helpers`.
    NotebookClient(notebook, kernel_name="fresh-venv", timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return [output["text"] for cell in notebook.cells for output in cell.outputs if output.get("name") == "stdout"]


def test_wheel_holds_every_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for module in (REPOSITORY / "helpers").glob("*.py"):
        assert f"helpers/{module.name}" in names, module.name
    assert not [name for name in names if name.startswith(("nbs/", "tests/"))]
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "course-prepare = helpers.prepare:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_wheel_install_runs_notebook(wheel, tmp_path, monkeypatch):
    python = make_venv(tmp_path / "venv")
    pip_install(python, str(wheel))
    stdout = "".join(run_notebook_in(python, tmp_path, monkeypatch))
    lines = stdout.splitlines()
    assert lines[0] == str(python), stdout
    assert lines[1].startswith(str(tmp_path / "venv")), f"helpers was not imported from the new environment: {lines[1]}"
    assert lines[2] == "True 160", stdout  # the synthetic sample: 80 images for each of two classes

    result = subprocess.run([str(tmp_path / "venv" / "bin" / "course-prepare"), "--check"], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path, env={**os.environ, "TORCH_HOME": str(tmp_path / "torch")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Course readiness" in result.stdout


def test_local_path_install_runs_notebook(source_tree, tmp_path, monkeypatch):
    python = make_venv(tmp_path / "venv")
    pip_install(python, str(source_tree))
    stdout = "".join(run_notebook_in(python, tmp_path, monkeypatch))
    assert stdout.splitlines()[1].startswith(str(tmp_path / "venv")), stdout


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_import_helpers_stays_light(module):
    # A star import also reads the module's __all__, which must not name anything that imports fastai.
    script = (
        "import sys\n"
        f"from {module} import *\n"
        "print(' '.join(name for name in ('torch', 'fastai') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"importing {module} imports {result.stdout.strip()}"

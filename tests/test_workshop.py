"""The workshop runner executes real notebooks in real kernels and writes pages and a summary."""
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from chromium import Chromium, find_chromium
from helpers.workshop import copy_mathjax, main, notebook_to_html, run_workshop

NODE_MODULES = Path(__file__).resolve().parents[1] / "node_modules"


def write_notebook(path, *sources):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    nbformat.write(notebook, path)


@pytest.fixture
def lessons(tmp_path):
    "Two small lessons: one that records a result and plots, one that fails."
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(
        folder / "good.ipynb",
        "from helpers.core import record_result\nimport matplotlib.pyplot as plt",
        "#| net\nraise RuntimeError('network cell should have been skipped')",
        "plt.plot([0, 1], [1, 0]);\nrecord_result('good', 'error_rate', 0.125)",
    )
    write_notebook(folder / "bad.ipynb", "raise ValueError('broken lesson')")
    return folder


def test_summary_pages_and_results(lessons, tmp_path, isolated_cache):
    output = tmp_path / "build"
    runs = run_workshop(output=output, lessons=("good", "bad"), nbs=lessons, timeout=120)
    good, bad = runs
    assert good.ok
    assert good.results == {"error_rate": 0.125}
    assert not bad.ok
    assert "broken lesson" in bad.error

    for name in ("good.ipynb", "good.html", "bad.html", "index.html", "summary.md", "summary.json"):
        assert (output / name).is_file(), name
    assert "data:image/png;base64" in (output / "good.html").read_text()
    index = (output / "index.html").read_text()
    assert "href='good.html'" in index
    assert "error_rate=0.1250" in index
    assert "synthetic" in json.loads((output / "summary.json").read_text())["data"]


def test_missing_data_folder_named(tmp_path, lessons):
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        run_workshop(data=str(tmp_path / "no-such-folder"), output=tmp_path / "build", lessons=("good",), nbs=lessons)


def test_command_line_exit_status(lessons, tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setattr("helpers.workshop.repository_root", lambda: lessons.parent)
    assert main(["--output", str(tmp_path / "ok"), "--lessons", "good"]) == 0
    assert main(["--output", str(tmp_path / "bad"), "--lessons", "good", "bad"]) == 1


def test_module_runs_as_script(tmp_path):
    result = subprocess.run([sys.executable, "-m", "helpers.workshop", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "--data" in result.stdout


def test_command_line_mistyped_data(tmp_path, capsys):
    "A DATA folder that does not exist gives one line on stderr and exit status 2, not a traceback."
    assert main(["--data", str(tmp_path / "paintngs"), "--output", str(tmp_path / "build")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: DATA folder not found:")
    assert "paintngs" in error
    assert "Traceback" not in error


def formula_notebook():
    "Return a small executed notebook with a display formula, inline maths and a plot-free output."
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Formulas\n\nThe update rule:\n\n$$w \\leftarrow w - \\eta \\, \\nabla L$$\n\nwith $\\eta > 0$."),
                      nbformat.v4.new_code_cell("1 + 1", outputs=[nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)])]
    return notebook


def test_page_loads_nothing_remote():
    "A lesson page has no script, style or module from another host, with or without MathJax."
    for mathjax in (None, "mathjax/tex-chtml-full.js"):
        page = notebook_to_html(formula_notebook(), mathjax)
        remote = re.findall(r"""(?:src=|import\s*\(?|@import\s+url\()["']?(https?://[^"')\s]+)""", page)
        assert remote == [], f"mathjax={mathjax}: {remote}"
        assert ("tex-chtml-full.js" in page) == (mathjax is not None)


@pytest.mark.skipif(find_chromium() is None, reason="Chromium not found; install Debian's chromium package (make test does)")
def test_page_formulas_render_offline(tmp_path):
    "With MathJax copied from node_modules, Chromium typesets the formulas without any request off the disk."
    if not copy_mathjax(tmp_path, NODE_MODULES):
        pytest.skip(f"mathjax not installed in {NODE_MODULES}; run `npm ci` (make test does)")
    page_file = tmp_path / "formulas.html"
    page_file.write_text(notebook_to_html(formula_notebook(), "mathjax/tex-chtml-full.js"), encoding="utf-8")
    with Chromium() as browser, browser.open(page_file.as_uri()) as page:
        page.wait_for("document.querySelectorAll('mjx-container').length >= 2", timeout=30)
        page.pump(1)
        assert page.failed == []
        assert page.exceptions == []
        remote = [url for url in page.requests.values() if not url.startswith(("file:", "data:"))]
        assert remote == []

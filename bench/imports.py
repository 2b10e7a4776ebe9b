"""Import cost of `helpers` and each of its modules against `import fastai.vision.all`.

Run: .venv/bin/python bench/imports.py [--repeats 5]
Each import runs in a fresh interpreter (a cold start for Python, warm for the disk cache),
and the median of the repeats is kept. Prints seconds and the ratio to fastai.vision.all.
"""
import argparse
import json
import pkgutil
import statistics
import subprocess
import sys
import time

import helpers


def import_seconds(module: str, repeats: int) -> float:
    "Return the median wall time of `python -c 'import MODULE'` over `repeats` fresh interpreters."
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters per module")
    arguments = parser.parse_args()

    baseline = import_seconds("fastai.vision.all", arguments.repeats)
    empty = import_seconds("sys", arguments.repeats)
    modules = ["helpers"] + sorted(f"helpers.{info.name}" for info in pkgutil.iter_modules(helpers.__path__)
                                   if not info.name.startswith("_"))
    rows = {}
    for module in modules:
        seconds = import_seconds(module, arguments.repeats)
        rows[module] = {"seconds": round(seconds, 3), "ratio_to_fastai": round(seconds / baseline, 3)}
    print(json.dumps({"fastai.vision.all_seconds": round(baseline, 3), "python_start_seconds": round(empty, 3),
                      "modules": rows}, indent=2))


if __name__ == "__main__":
    main()

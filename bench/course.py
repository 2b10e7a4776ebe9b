"""The whole course offline: wall time and peak memory against the floor of five cold fastai imports.

Run: .venv/bin/python bench/course.py [--output build/bench/course]
The floor is the summed wall time of five `python -c "import fastai.vision.all"` runs, one per
lesson, measured in the same session. The course is `python -m helpers.workshop` on the
synthetic sample, in a child process, run twice with one new, empty course cache: the first run is a
learner's first run (it draws the sample and pretrains the course's texture body), the second reuses
the cache. Peak resident memory is the largest of the runner and the kernels it starts, as getrusage
reports for waited-for children. The target applies to the first run, the slower one.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_course(output: Path, cache: Path) -> dict:
    "Run the workshop into `output` with the course cache at `cache`; return its times."
    start = time.perf_counter()
    # The workshop's report goes to stderr, so that stdout contains only this script's JSON.
    completed = subprocess.run([sys.executable, "-m", "helpers.workshop", "--output", str(output)],
                               env={**os.environ, "COURSE_CACHE": str(cache)}, stdout=sys.stderr)
    seconds = time.perf_counter() - start
    summary = json.loads((output / "summary.json").read_text())
    lessons = {run["lesson"]: round(run["seconds"], 1) for run in summary["lessons"]}
    return {"course_seconds": round(seconds, 1), "lesson_seconds": lessons,
            "slowest_lesson_seconds": max(lessons.values()), "all_lessons_passed": completed.returncode == 0}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="build/bench/course", help="build folder for the workshop runs")
    arguments = parser.parse_args()

    floor_runs = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import fastai.vision.all"], check=True)
        floor_runs.append(time.perf_counter() - start)
    floor = sum(floor_runs)

    with tempfile.TemporaryDirectory(prefix="course-bench-cache-") as cache:
        first = run_course(Path(arguments.output) / "first-run", Path(cache))
        second = run_course(Path(arguments.output) / "second-run", Path(cache))
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    for run in (first, second):
        run["ratio_to_floor"] = round(run["course_seconds"] / floor, 2)
    result = {
        "floor_seconds": round(floor, 1), "first_run": first, "second_run": second,
        "peak_resident_mib": round(peak_mib), "cpus": os.cpu_count(),
        "load_average_at_end": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result, indent=2))
    return 0 if first["all_lessons_passed"] and second["all_lessons_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

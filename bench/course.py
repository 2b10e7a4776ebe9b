"""The whole course offline: wall time and peak memory against the floor of five cold fastai imports.

Run: .venv/bin/python bench/course.py [--output build/bench/course]
The floor is the summed wall time of five `python -c "import fastai.vision.all"` runs, one per
lesson, measured in the same session. The course is `python -m helpers.workshop` on the
synthetic sample, in a child process. Its peak resident memory is the largest of that process
and the kernels it starts, as getrusage reports for waited-for children.
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="build/bench/course", help="build folder for the workshop run")
    arguments = parser.parse_args()

    floor_runs = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import fastai.vision.all"], check=True)
        floor_runs.append(time.perf_counter() - start)
    floor = sum(floor_runs)

    start = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "helpers.workshop", "--output", arguments.output])
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    summary = json.loads((Path(arguments.output) / "summary.json").read_text())
    lessons = {run["lesson"]: round(run["seconds"], 1) for run in summary["lessons"]}
    result = {
        "course_seconds": round(seconds, 1), "floor_seconds": round(floor, 1),
        "ratio_to_floor": round(seconds / floor, 2), "lesson_seconds": lessons,
        "slowest_lesson_seconds": max(lessons.values()), "peak_resident_mib": round(peak_mib),
        "all_lessons_passed": completed.returncode == 0,
    }
    print(json.dumps(result, indent=2))
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())

"""Compare helpers.download.download_images with fastai's download_images on a loopback server.

Both download the same URLs from `tests/image_server.py` on 127.0.0.1, which waits `--latency` seconds
before every response. Most URLs are real paintings from ../shared/data/paintings; the rest are broken
(404, truncated JPEG, HTML page served as image/jpeg, empty body, Git-LFS pointer). Every run starts with
an empty destination and an empty download cache. For each tool the script reports the wall time, the
throughput in URLs per second, the CPU time of the downloading process, the valid images saved, and the
bad files kept (files in the destination that `helpers.images.check_image` rejects).

Run from the repository root:

    python bench/download.py --urls 200 --latency 0.05 --repeats 5 --markdown

Without --markdown it prints the result as JSON, as the other benchmarks do.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from urllib.parse import quote

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))

from image_server import SHARED_DATA, painting_names  # noqa: E402

# Broken URLs mixed into every run, by fault name and count.
BROKEN_MIX = {"404.jpg": 5, "truncated.jpg": 5, "html.jpg": 4, "empty.jpg": 3, "lfs-pointer.jpg": 3}


def build_urls(base: str, total: int) -> list[str]:
    "Return `total` URLs on the server at `base`: real images, then the broken mix, each broken URL made distinct by a query."
    broken = [f"{base}/fault/{name}?copy={index}" for name, count in BROKEN_MIX.items() for index in range(count)]
    names = painting_names(SHARED_DATA / "paintings")[: total - len(broken)]
    if len(names) < total - len(broken):
        raise SystemExit(f"Only {len(names)} real images are available; ask for at most {len(names) + len(broken)} URLs.")
    return [f"{base}/images/{quote(name)}" for name in names] + broken


def count_results(dest: Path) -> tuple[int, int]:
    "Return (valid images, bad files) among the image files in `dest`."
    from helpers.images import check_image, image_files

    files = image_files(dest)
    bad = sum(check_image(path) is not None for path in files)
    return len(files) - bad, bad


def run_fastai(dest: Path, urls: list[str]) -> tuple[float, float]:
    "Run fastai's download_images and return (wall time, CPU time of this process) in seconds."
    from fastai.vision.utils import download_images

    start, start_cpu = time.perf_counter(), time.process_time()
    download_images(dest, urls=urls)  # fastai's defaults: 8 threads, timeout 4 s
    return time.perf_counter() - start, time.process_time() - start_cpu


def default_workers() -> int:
    "Return the default n_workers of helpers.download.download_images."
    from helpers.download import download_images

    return inspect.signature(download_images).parameters["n_workers"].default


def run_helpers(dest: Path, urls: list[str], n_workers: int | None = None) -> tuple[float, float]:
    "Run helpers.download.download_images and return (wall time, CPU time of this process) in seconds."
    from helpers.download import download_images

    options = {} if n_workers is None else {"n_workers": n_workers}
    start, start_cpu = time.perf_counter(), time.process_time()
    download_images(dest, urls, progress=False, **options)  # default threads and timeout; full decode check
    return time.perf_counter() - start, time.process_time() - start_cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=200, help="number of URLs, broken ones included (default 200)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server waits before each response (default 0.05)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each tool; the median time is reported (default 3)")
    parser.add_argument("--workers", type=int, default=None, help="threads for helpers.download (default: its own default)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead of JSON")
    arguments = parser.parse_args()
    if not (SHARED_DATA / "paintings").is_dir():
        raise SystemExit(f"The real paintings are missing: {SHARED_DATA / 'paintings'} not found.")
    warnings.filterwarnings("ignore")

    times = {"fastai": [], "helpers": []}
    cpu_times = {"fastai": [], "helpers": []}
    counts = {}
    # The server runs in its own process, as a real one would, so that it does not compete for this
    # process's interpreter lock with the downloads being measured.
    server = subprocess.Popen([sys.executable, str(REPOSITORY / "tests" / "image_server.py"), "--latency", str(arguments.latency)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        urls = build_urls(server.stdout.readline().strip(), arguments.urls)
        for repeat in range(arguments.repeats):
            for name, run in [("fastai", run_fastai), ("helpers", partial(run_helpers, n_workers=arguments.workers))]:
                with tempfile.TemporaryDirectory() as scratch:
                    os.environ["COURSE_CACHE"] = str(Path(scratch) / "cache")
                    dest = Path(scratch) / "dest"
                    # Progress bars go to stderr, so that stdout contains only the result.
                    with contextlib.redirect_stdout(sys.stderr):
                        wall, cpu = run(dest, urls)
                    times[name].append(wall)
                    cpu_times[name].append(cpu)
                    counts[name] = count_results(dest)
    finally:
        server.stdin.close()
        server.wait(timeout=30)

    result = {
        "urls": len(urls), "broken_urls": sum(BROKEN_MIX.values()), "latency_seconds": arguments.latency,
        "repeats": arguments.repeats, "cpus": os.cpu_count(), "load_average_at_end": round(os.getloadavg()[0], 1),
        "helpers_n_workers": arguments.workers or default_workers(),
    }
    for name in times:
        median = statistics.median(times[name])
        result[name] = {
            "median_seconds": round(median, 3), "urls_per_second": round(len(urls) / median, 1),
            "median_cpu_seconds": round(statistics.median(cpu_times[name]), 3),
            "valid_images_saved": counts[name][0], "bad_files_kept": counts[name][1],
            "all_seconds": [round(value, 3) for value in times[name]],
        }
    result["throughput_ratio_helpers_to_fastai"] = round(result["helpers"]["urls_per_second"] / result["fastai"]["urls_per_second"], 2)
    if arguments.markdown:
        print_markdown(result)
    else:
        print(json.dumps(result, indent=2))


def print_markdown(result: dict):
    "Print the result as the table that docs/benchmarks.md records."
    print(f"{result['urls']} URLs ({result['broken_urls']} broken), server latency {result['latency_seconds'] * 1000:.0f} ms, "
          f"{result['repeats']} runs each, {result['cpus']} CPUs, load average {result['load_average_at_end']} at the end")
    print()
    print("| tool | median wall time (s) | URLs/s | median CPU time (s) | valid images saved | bad files kept |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, label in [("fastai", "fastai 2.8 `download_images` (8 threads)"),
                        ("helpers", f"`helpers.download.download_images` ({result['helpers_n_workers']} threads)")]:
        row = result[name]
        print(f"| {label} | {row['median_seconds']:.2f} | {row['urls_per_second']:.0f} | {row['median_cpu_seconds']:.2f} | "
              f"{row['valid_images_saved']} | {row['bad_files_kept']} |")
    print()
    print(f"Throughput ratio (helpers / fastai): {result['throughput_ratio_helpers_to_fastai']:.2f}")


if __name__ == "__main__":
    main()

"""Tests of helpers.download against a loopback server that serves real paintings and injects faults."""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

import helpers.download as download
from helpers.download import _open_cache, _url_key, download_images, read_manifest
from helpers.images import check_image, image_files
from image_server import SHARED_DATA, ImageServer

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "paintings").is_dir(), reason=f"real test data not found at {SHARED_DATA}")

FAST = dict(timeout=2, max_bytes=4_000_000, retries=2, max_retry_after=5, backoff=0.05, progress=False)
TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def course_cache(tmp_path, monkeypatch):
    "Give every test its own download cache."
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def server():
    with ImageServer() as running:
        yield running


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def saved_files(dest: Path) -> list[Path]:
    return sorted(path for path in dest.iterdir() if path.is_file() and not path.name.startswith(".") and path.name != "manifest.csv")


def test_download_keeps_only_valid_images(tmp_path, server):
    dest = tmp_path / "dest"
    good = server.image_urls(20)
    copies = [url.replace("/images/", "/copy/") for url in good[:3]]
    faults = server.fault_urls()
    summary = download_images(dest, good + copies + list(faults.values()), **FAST)

    originals = {sha256(server.paintings / name) for name in server.images[:20]}
    png = sha256(server.odd / "transparent.png")
    files = saved_files(dest)
    assert {sha256(path) for path in files} == originals | {png}
    assert len(files) == len(originals) + 1
    assert all(check_image(path) is None for path in files)
    assert set(image_files(dest)) == set(files)

    failed = {url.rsplit("/", 1)[1]: reason for url, reason in summary.failed.items()}
    assert set(failed) == {"404.jpg", "429-long.jpg", "slow.jpg", "truncated.jpg", "html.jpg", "empty.jpg", "bomb.gif",
                           "redirect-loop.jpg", "huge-declared.jpg", "huge-streamed.jpg", "lfs-pointer.jpg"}
    assert failed["404.jpg"] == "HTTP 404 Not Found"
    assert failed["slow.jpg"] == "timed out after 2 s"
    assert failed["truncated.jpg"].startswith("truncated")
    assert failed["html.jpg"] == "not an image: HTML page"
    assert failed["empty.jpg"] == "empty file (0 bytes)"
    assert failed["bomb.gif"] == "decompression bomb: 4364696535 pixels"
    assert failed["redirect-loop.jpg"].startswith("too many redirects")
    assert failed["huge-declared.jpg"].startswith("too large: Content-Length")
    assert failed["huge-streamed.jpg"] == "too large: over the cap of 4000000 bytes"
    assert failed["lfs-pointer.jpg"] == "Git-LFS pointer: run git lfs pull"
    assert "max_retry_after" in failed["429-long.jpg"]


def test_extension_comes_from_content(tmp_path, server):
    dest = tmp_path / "dest"
    summary = download_images(dest, [server.fault_urls()["png-as-jpg.jpg"]], **FAST)
    [path] = summary.saved.values()
    assert path.suffix == ".png"
    assert path.name == sha256(path)[:16] + ".png"


def test_server_names_cannot_escape_dest(tmp_path, server):
    dest = tmp_path / "dest"
    urls = [server.fault_urls()["evil-name.jpg"], f"{server.url}/images/../../../../etc/passwd",
            f"{server.url}/images/%2e%2e/%2e%2e/secret.jpg"]
    download_images(dest, urls, **FAST)
    assert not list(tmp_path.rglob("escaped.jpg"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cache", "dest"]
    assert all(path.parent == dest for path in dest.rglob("*"))
    assert len(saved_files(dest)) == 1


def test_retries_500_then_succeeds(tmp_path, server):
    summary = download_images(tmp_path / "dest", [server.fault_urls()["500-then-ok.jpg"]], **FAST)
    assert len(summary.saved) == 1
    assert server.hits["/fault/500-then-ok.jpg"] == 2


def test_retry_after_is_honoured(tmp_path, server):
    summary = download_images(tmp_path / "dest", [server.fault_urls()["429-then-ok.jpg"]], **FAST)
    times = [moment for moment, path, _, _ in server.log if path == "/fault/429-then-ok.jpg"]
    assert len(summary.saved) == 1
    assert len(times) == 2
    assert times[1] - times[0] >= 0.9  # the server sent Retry-After: 1


def test_long_retry_after_fails_without_waiting(tmp_path, server):
    summary = download_images(tmp_path / "dest", [server.fault_urls()["429-long.jpg"]], **FAST)
    [reason] = summary.failed.values()
    assert "asked to wait 3600 s" in reason
    assert server.hits["/fault/429-long.jpg"] == 1


def test_second_run_downloads_nothing(tmp_path, server):
    dest = tmp_path / "dest"
    faults = server.fault_urls()
    urls = server.image_urls(10) + [faults[name] for name in ["404.jpg", "html.jpg", "truncated.jpg", "bomb.gif"]]
    first = download_images(dest, urls, **FAST)
    files_before = saved_files(dest)
    server.hits.clear()

    second = download_images(dest, urls, **FAST)
    assert sum(server.hits.values()) == 0
    assert len(second.saved) == 0
    assert set(second.present) == set(first.saved)
    assert set(second.failed_before) == set(first.failed)
    assert saved_files(dest) == files_before


def test_second_run_retries_transient_failures(tmp_path, server):
    dest = tmp_path / "dest"
    urls = server.image_urls(3) + [server.fault_urls()["slow.jpg"]]
    download_images(dest, urls, **FAST)
    server.hits.clear()
    again = download_images(dest, urls, **FAST)
    assert dict(server.hits) == {"/fault/slow.jpg": 1}
    assert list(again.failed.values()) == ["timed out after 2 s"]


def test_missing_file_is_fetched_again(tmp_path, server):
    dest = tmp_path / "dest"
    urls = server.image_urls(2)
    first = download_images(dest, urls, use_cache=False, **FAST)
    first.saved[urls[0]].unlink()
    server.hits.clear()
    again = download_images(dest, urls, use_cache=False, **FAST)
    assert list(again.saved) == [urls[0]]
    assert sum(server.hits.values()) == 1


def test_cache_serves_an_offline_machine(tmp_path):
    urls = None
    with ImageServer() as server:
        urls = server.image_urls(8)
        download_images(tmp_path / "online", urls, **FAST)
    offline = download_images(tmp_path / "offline", urls, **FAST)
    assert len(offline.saved) == 8
    assert offline.failed == {}
    assert {sha256(path) for path in saved_files(tmp_path / "offline")} == {sha256(path) for path in saved_files(tmp_path / "online")}


def test_duplicates_are_saved_once(tmp_path, server):
    dest = tmp_path / "dest"
    urls = server.image_urls(3)
    summary = download_images(dest, urls + [url.replace("/images/", "/copy/") for url in urls], **FAST)
    assert len(summary.saved) == 3
    assert len(summary.duplicates) == 3
    assert len(saved_files(dest)) == 3


def test_manifest_records_search_credits(tmp_path, server):
    from helpers.search import ImageResult

    url = server.image_urls(1)[0]
    record = ImageResult(url, page_url="https://commons.wikimedia.org/wiki/File:X.jpg", title="Water Lilies",
                         license="Public domain", author="Claude Monet", source="wikimedia")
    summary = download_images(tmp_path / "dest", [record], **FAST)
    row = read_manifest(tmp_path / "dest")[url]
    assert row["status"] == "saved"
    assert (row["page_url"], row["license"], row["author"], row["title"]) == (
        "https://commons.wikimedia.org/wiki/File:X.jpg", "Public domain", "Claude Monet", "Water Lilies")
    assert row["sha256"] == sha256(summary.saved[url])
    assert row["file"] == summary.saved[url].name


def test_manifest_skips_cut_off_row(tmp_path, server):
    dest = tmp_path / "dest"
    urls = server.image_urls(2)
    download_images(dest, urls, **FAST)
    with open(dest / "manifest.csv", "a") as file:
        file.write(f"{server.url}/images/cut,saved,abc")
    assert set(read_manifest(dest)) == set(urls)


def test_file_urls_from_folder_search(tmp_path):
    from helpers.search import search_images

    results = search_images("monet", source="folder", folder=SHARED_DATA / "paintings", max_images=5)
    summary = download_images(tmp_path / "dest", results, **FAST)
    assert len(summary.saved) == 5
    assert {sha256(path) for path in summary.saved.values()} == {
        sha256(Path(result.content_url.removeprefix("file://"))) for result in results}


def test_unsupported_schemes_are_rejected(tmp_path):
    urls = ["ftp://example.org/a.jpg", "data:image/png;base64,iVBORw0KGgo=", "javascript:alert(1)", "file://other-host/etc/passwd"]
    summary = download_images(tmp_path / "dest", urls, **FAST)
    assert summary.failed["ftp://example.org/a.jpg"].startswith("unsupported URL scheme 'ftp'")
    assert summary.failed["data:image/png;base64,iVBORw0KGgo="].startswith("unsupported URL scheme 'data'")
    assert summary.failed["file://other-host/etc/passwd"].startswith("file URL names another host")
    assert saved_files(tmp_path / "dest") == []


def test_url_file_works_like_fastai(tmp_path, server):
    url_file = tmp_path / "urls.txt"
    url_file.write_text("\n".join(server.image_urls(3)) + "\n\n")
    summary = download_images(tmp_path / "dest", url_file=url_file, **FAST)
    assert len(summary.saved) == 3


def test_stale_temporary_files_are_removed(tmp_path, server):
    "A temporary file an hour old is left over from a killed run; a new one may belong to a run still writing it."
    dest = tmp_path / "dest"
    dest.mkdir()
    stale, live = dest / ".download-0123.part", dest / ".download-4567.part"
    stale.write_bytes(b"\xff\xd8\xff half a JPEG")
    live.write_bytes(b"\xff\xd8\xff being written")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    download_images(dest, server.image_urls(1), **FAST)
    assert not stale.exists()
    assert live.exists()


def test_killed_download_leaves_nothing_partial(tmp_path, server):
    dest = tmp_path / "dest"
    urls = server.image_urls(4) + [server.fault_urls()["slow.jpg"]]
    script = textwrap.dedent(f"""
        from helpers.download import download_images
        download_images({str(dest)!r}, {urls!r}, n_workers=2, timeout=600, progress=False)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], env={**os.environ}, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if server.hits["/fault/slow.jpg"] and len(saved_files(dest)) == 4:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the slow download never started")
        time.sleep(1)  # let the slow body arrive a few bytes at a time
        assert process.poll() is None, "the downloading process ended before it could be killed mid-download"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == -signal.SIGKILL
    assert len(saved_files(dest)) == 4  # the slow image left no file under an image name...
    assert all(check_image(path) is None for path in image_files(dest))
    leftovers = [path.name for path in dest.iterdir() if path.name != "manifest.csv" and path not in saved_files(dest)]
    assert all(name.startswith(".download-") and name.endswith(".part") for name in leftovers), leftovers  # ...only temporary names

    download_images(dest, urls[:4], **FAST)
    assert list(dest.glob(".download-*.part")) == []
    assert len(saved_files(dest)) == 4


def test_interrupt_keeps_manifest_complete(tmp_path, server):
    dest = tmp_path / "dest"
    urls = server.image_urls(4) + [server.fault_urls()["slow.jpg"]] + server.image_urls(40)[4:]
    script = textwrap.dedent(f"""
        from helpers.download import download_images
        try:
            download_images({str(dest)!r}, {urls!r}, n_workers=1, timeout=3, retries=0, progress=False)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise SystemExit(130)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], env={**os.environ}, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not server.hits["/fault/slow.jpg"]:
            time.sleep(0.05)
        assert server.hits["/fault/slow.jpg"], "the slow download never started"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)  # the running download ends within its 3 s timeout
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "interrupted" in output
    assert len(saved_files(dest)) == 4  # the URLs queued after the interrupt were dropped
    assert all(check_image(path) is None for path in image_files(dest))
    assert list(dest.glob(".download-*.part")) == []
    manifest = read_manifest(dest)  # every saved file is recorded, and the download cut short as a timeout to retry
    assert sorted(row["status"] for row in manifest.values()) == ["failed"] + ["saved"] * 4
    assert manifest[server.fault_urls()["slow.jpg"]]["transient"] == "True"


def test_bodies_in_memory_are_capped(tmp_path, server, monkeypatch):
    "When checking falls behind fetching, fetching waits, so at most n_workers + 2 × check threads bodies wait in memory."
    held, most = [0], [0]
    lock = threading.Lock()
    fetch_one, place_one = download._fetch_one, download._place_one

    def counting_fetch(*args, **kwargs):
        row, body, store = fetch_one(*args, **kwargs)
        if body is not None:
            with lock:
                held[0] += 1
                most[0] = max(most[0], held[0])
        return row, body, store

    def slow_place(*args, **kwargs):
        time.sleep(0.05)
        try:
            return place_one(*args, **kwargs)
        finally:
            with lock:
                held[0] -= 1

    monkeypatch.setattr(download, "_fetch_one", counting_fetch)
    monkeypatch.setattr(download, "_place_one", slow_place)
    monkeypatch.setattr(download, "_check_threads", lambda: 1)
    summary = download_images(tmp_path / "dest", server.image_urls(30), n_workers=2, **FAST)
    assert len(summary.saved) == 30
    assert most[0] == 2 + 2 * 1


@pytest.fixture
def proxy(monkeypatch):
    "A second image server set as http_proxy; it answers proxy requests because it reads only the path of a URL."
    with ImageServer() as running:
        monkeypatch.setenv("http_proxy", running.url)
        yield running


def test_environment_proxy_and_no_proxy(tmp_path, server, proxy, monkeypatch):
    "An http_proxy from the environment carries the requests, except for hosts listed in no_proxy."
    monkeypatch.setenv("no_proxy", "localhost")
    name = server.images[0]
    # example.invalid never resolves: only the proxy on 127.0.0.1 can answer for it.
    via_proxy = download_images(tmp_path / "proxied", [f"http://example.invalid/images/{name}"], **FAST)
    assert len(via_proxy.saved) == 1
    assert proxy.hits[f"/images/{name}"] == 1
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    direct = download_images(tmp_path / "direct", server.image_urls(1), **FAST)
    assert len(direct.saved) == 1
    assert proxy.hits[f"/images/{name}"] == 1  # no second request through the proxy
    assert server.hits[f"/images/{name}"] == 1


def test_malformed_url_is_recorded_as_failed(tmp_path, server):
    # urlsplit raises ValueError on this URL; one bad URL must not stop the whole download.
    bad = "http://[::1/x.jpg"
    summary = download_images(tmp_path / "dest", [bad] + server.image_urls(2), **FAST)
    assert bad in summary.failed
    assert len(summary.saved) == 2


@pytest.mark.parametrize("content", [b"", b"\xff\xfe"], ids=["empty", "not-utf8"])
def test_damaged_cache_index_is_ignored(tmp_path, server, content):
    # An empty index names the images folder itself; a non-UTF-8 one fails to decode. Both must count as a cache miss.
    urls = server.image_urls(2)
    download_images(tmp_path / "first", urls, **FAST)
    (_open_cache().urls / f"{_url_key(urls[0])}.txt").write_bytes(content)
    summary = download_images(tmp_path / "second", urls, **FAST)
    assert set(summary.saved) == set(urls)


def test_corrupt_cache_blob_is_replaced(tmp_path, server):
    # After a corrupt blob is found and the URL fetched again, the good bytes must go back into the cache.
    url = server.image_urls(1)[0]
    download_images(tmp_path / "first", [url], **FAST)
    cache = _open_cache()
    blob = cache.images / (cache.urls / f"{_url_key(url)}.txt").read_text()
    data = blob.read_bytes()
    blob.unlink()  # break the hard link to the file in `first`
    blob.write_bytes(data[: len(data) // 2])
    download_images(tmp_path / "second", [url], **FAST)
    assert blob.read_bytes() == data
    hits = server.hits_for(urlsplit(url).path)
    download_images(tmp_path / "third", [url], **FAST)
    assert server.hits_for(urlsplit(url).path) == hits, "the third run should be served from the cache"


def test_concurrent_call_keeps_part_files(tmp_path, server, monkeypatch):
    # A second download_images call (another thread or process) that starts while the first has written a
    # temporary file but not yet renamed it must not delete that file.
    dest = tmp_path / "dest"
    write_new_file, started = download._write_new_file, []

    def write_then_start_another_call(path, data):
        write_new_file(path, data)
        if path.name.startswith(".download-") and not started:
            started.append(path)
            download_images(dest, [], **FAST)

    monkeypatch.setattr(download, "_write_new_file", write_then_start_another_call)
    summary = download_images(dest, server.image_urls(3), **FAST)
    assert len(summary.saved) == 3


def test_thread_download_exits_cleanly(tmp_path):
    # When the main thread ends, concurrent.futures rejects new work, so `check_pool.submit` raises RuntimeError.
    # The fetch thread drops that URL without a result, so the caller waits forever and the process never exits.
    script = textwrap.dedent(f"""
        import sys, threading, time
        sys.path[:0] = [{str(TESTS.parent)!r}, {str(TESTS)!r}]
        from image_server import ImageServer
        from helpers.download import download_images
        server = ImageServer(latency=0.3).__enter__()
        def work():
            download_images({str(tmp_path / "dest")!r}, server.image_urls(40), n_workers=4, timeout=2, retries=1, progress=False)
        threading.Thread(target=work).start()
        time.sleep(0.5)
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1", COURSE_CACHE=str(tmp_path / "cache"))
    try:
        completed = subprocess.run([sys.executable, "-c", script], env=env, timeout=90, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        pytest.fail("the process did not exit: download_images waits for a result that never comes")
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_refused_proxy_reason_names_the_proxy(tmp_path, server, monkeypatch):
    # "connection failed: ProxyError" does not say which proxy failed nor where it was set.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    for name in ["HTTP_PROXY", "no_proxy", "NO_PROXY"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://learner:s3cret@127.0.0.1:{port}")
    url = server.image_urls(1)[0]
    summary = download_images(tmp_path / "dest", [url], use_cache=False, **FAST)
    reason = summary.failed[url]
    assert f"proxy http://127.0.0.1:{port} failed" in reason
    assert "http_proxy" in reason
    assert "s3cret" not in reason  # the password in the proxy setting stays out of the manifest


def test_redirect_applies_no_proxy_to_new_host(tmp_path, server, proxy, monkeypatch):
    "A redirect from a proxied host to a host in no_proxy goes direct, as it would without a redirect."
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    name = server.images[0]
    target = f"{server.url}/images/{name}"
    # example.invalid never resolves: only the proxy on 127.0.0.1 can answer the first request.
    summary = download_images(tmp_path / "dest", [f"http://example.invalid/redirect?to={quote(target, safe='')}"], **FAST)
    assert len(summary.saved) == 1
    assert proxy.hits["/redirect"] == 1
    assert proxy.hits[f"/images/{name}"] == 0  # the redirect target was not fetched through the proxy
    assert server.hits[f"/images/{name}"] == 1

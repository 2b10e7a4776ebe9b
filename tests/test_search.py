"""Tests of helpers.search against a loopback server that speaks the search APIs' shapes."""

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import requests

from helpers.download import download_images
from helpers.search import (
    BingRetiredError,
    ImageResult,
    SearchError,
    looks_like_key,
    search_images,
    search_images_bing,
)
from image_server import SHARED_DATA, ImageServer

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "paintings").is_dir(), reason=f"real test data not found at {SHARED_DATA}")

BING_KEY = "0123456789abcdef0123456789abcdef"
SERPAPI_KEY = "5e" * 32
WRONG_SERPAPI_KEY = "1a2b3c4d" * 8


@pytest.fixture(autouse=True)
def course_cache(tmp_path, monkeypatch):
    "Give every test its own search cache, and no keys from the environment."
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    for name in ["SERPAPI_KEY", "AZURE_SEARCH_KEY", "BING_SEARCH_ENDPOINT", "SERPAPI_ENDPOINT", "WIKIMEDIA_API_ENDPOINT"]:
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def server():
    with ImageServer() as running:
        yield running


@pytest.fixture
def block_dns(monkeypatch):
    "Make public host names fail to resolve, as on a machine without DNS, and let loopback through."
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def requests_to(server: ImageServer, path: str) -> list[dict]:
    return [query for _, logged_path, query, _ in server.log if logged_path == path]


def test_folder_search_finds_real_paintings():
    paintings = SHARED_DATA / "paintings"
    monet = search_images("monet", source="folder", folder=paintings, max_images=1000)
    van_gogh = search_images("Van Gogh", source="folder", folder=paintings, max_images=1000)
    assert len(monet) == 159
    assert len(van_gogh) == 131
    assert all(result.content_url.startswith("file://") and "/monet/" in result.content_url for result in monet)
    assert all(result.width and result.height for result in van_gogh)


def test_folder_search_missing_folder(tmp_path):
    with pytest.raises(SearchError, match="is not a folder"):
        search_images("monet", source="folder", folder=tmp_path / "missing")


def test_wikimedia_category_pages_with_credits(server):
    server.maxlag_left = 1
    results = search_images("Category:Paintings by Claude Monet", endpoint=f"{server.url}/w/api.php", max_images=35)
    queries = requests_to(server, "/w/api.php")
    times = [moment for moment, path, _, _ in server.log if path == "/w/api.php"]

    assert len(results) == 35
    assert len(queries) == 2  # one maxlag error response, then one page of 50 files
    assert times[1] - times[0] >= 0.9  # the maxlag error response sent Retry-After: 1
    assert server.max_active == 1
    assert queries[1]["generator"] == "categorymembers"
    assert queries[1]["gcmtitle"] == "Category:Paintings by Claude Monet"
    assert queries[1]["gcmtype"] == "file"
    assert all(query["maxlag"] == "5" for query in queries)
    assert queries[1]["iiprop"] == "url|size|mime|extmetadata"
    assert "iiurlwidth" in queries[1]
    assert {result.author for result in results} == {"Claude Monet"}
    assert {result.license for result in results} == {"Public domain"}
    assert not any(result.content_url.endswith(".svg") for result in results)
    user_agent = server.log[0][3]["User-Agent"]
    assert user_agent.startswith("painting-course/")
    assert "github.com" in user_agent


def test_wikimedia_category_visits_subcategories(server):
    results = search_images("Category:Paintings by Claude Monet", endpoint=f"{server.url}/w/api.php", max_images=200)
    queries = requests_to(server, "/w/api.php")
    categories = [query.get("gcmtitle") or query.get("cmtitle") for query in queries]
    assert len(results) == 159
    assert len({result.content_url for result in results}) == 159
    # The top category's files, its subcategory list, then two pages of files from each subcategory.
    assert categories == ["Category:Paintings by Claude Monet", "Category:Paintings by Claude Monet",
                          "Category:Paintings by Claude Monet in museums", "Category:Paintings by Claude Monet in museums",
                          "Category:Paintings by Claude Monet by year", "Category:Paintings by Claude Monet by year"]
    assert queries[1]["list"] == "categorymembers"
    assert queries[1]["cmtype"] == "subcat"


def test_wikimedia_depth_zero_stays_in_category(server):
    results = search_images("Category:Paintings by Claude Monet", endpoint=f"{server.url}/w/api.php", max_images=200, depth=0)
    assert len(results) == 40
    assert server.hits["/w/api.php"] == 1


def test_wikimedia_pages_follow_continue(server):
    results = search_images("van gogh", endpoint=f"{server.url}/w/api.php", max_images=120)
    queries = requests_to(server, "/w/api.php")
    assert len(results) == 120
    assert [query.get("gsroffset") for query in queries] == [None, "50", "100"]


def test_wikimedia_full_text_search(server):
    results = search_images("claude monet", endpoint=f"{server.url}/w/api.php", max_images=10)
    [query] = requests_to(server, "/w/api.php")
    assert len(results) == 10
    assert query["generator"] == "search"
    assert query["gsrnamespace"] == "6"


def test_wikimedia_endpoint_from_environment(server, monkeypatch):
    monkeypatch.setenv("WIKIMEDIA_API_ENDPOINT", f"{server.url}/w/api.php")
    assert len(search_images("van gogh", max_images=5)) == 5
    assert server.hits["/w/api.php"] == 1


def test_bing_v7_pages_by_offset(server):
    results = search_images("claude monet", source="bing", key=BING_KEY, endpoint=f"{server.url}/v7.0/images/search", max_images=200)
    queries = requests_to(server, "/v7.0/images/search")
    assert len(results) == 159
    assert [(query["count"], query["offset"]) for query in queries] == [("150", "0"), ("50", "150"), ("41", "159")]
    assert server.log[0][3]["Ocp-Apim-Subscription-Key"] == BING_KEY
    assert results.attrgot("content_url") == results.attrgot("contentUrl")
    assert results[0].page_url == results[0].hostPageUrl
    assert (results[0].width, results[0].height) == (512, 384)


@pytest.mark.parametrize("status", [401, 403, 410])
def test_bing_rejection_means_retired(status):
    with ImageServer(bing_status=status) as server:
        with pytest.raises(BingRetiredError, match="11 August 2025") as error:
            search_images("monet", source="bing", key=BING_KEY, endpoint=f"{server.url}/v7.0/images/search")
    assert f"HTTP {status}" in str(error.value)
    assert "source='wikimedia'" in str(error.value)
    assert BING_KEY not in str(error.value)


def test_bing_unresolvable_host_means_retired(block_dns):
    with pytest.raises(BingRetiredError, match="does not resolve") as error:
        search_images("monet", source="bing", key=BING_KEY)
    assert "api.bing.microsoft.com" in str(error.value)
    assert BING_KEY not in str(error.value)


def test_bing_without_key_explains(server):
    with pytest.raises(ValueError, match="AZURE_SEARCH_KEY"):
        search_images("monet", source="bing", endpoint=f"{server.url}/v7.0/images/search")


def test_serpapi_pages_with_key_from_environment(server, monkeypatch):
    monkeypatch.setenv("SERPAPI_KEY", SERPAPI_KEY)
    results = search_images("van gogh", source="serpapi", endpoint=f"{server.url}/search", max_images=100)
    queries = requests_to(server, "/search")
    assert len(results) == 100
    assert [(query["first"], query["count"]) for query in queries] == [("1", "100")]
    assert all(query["engine"] == "bing_images" and query["api_key"] == SERPAPI_KEY for query in queries)
    assert all("/vangogh/" in result.content_url for result in results)
    assert results[0].source == "serpapi"


def test_serpapi_key_never_leaks(server, tmp_path, caplog, capsys, course_cache):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SearchError) as error:
        search_images("monet", source="serpapi", key=WRONG_SERPAPI_KEY, endpoint=f"{server.url}/search")
    results = search_images("monet", source="serpapi", key=SERPAPI_KEY, endpoint=f"{server.url}/search", max_images=5)
    download_images(tmp_path / "dest", results, progress=False)
    captured = capsys.readouterr()

    assert "Invalid API key" in str(error.value)
    assert any("api_key=REDACTED" in record.getMessage() for record in caplog.records)
    for key in [WRONG_SERPAPI_KEY, SERPAPI_KEY]:
        assert key not in str(error.value)
        assert key not in caplog.text
        assert key not in captured.out + captured.err
        assert key not in (tmp_path / "dest" / "manifest.csv").read_text()
        for path in course_cache.rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes(), path


def test_bing_key_never_leaks(server, caplog, course_cache):
    caplog.set_level(logging.DEBUG)
    search_images("monet", source="bing", key=BING_KEY, endpoint=f"{server.url}/v7.0/images/search", max_images=5)
    assert BING_KEY not in caplog.text
    assert not any(BING_KEY.encode() in path.read_bytes() for path in course_cache.rglob("*") if path.is_file())


@pytest.fixture
def duckduckgo_on_loopback(server, monkeypatch):
    "Point ddgs's DuckDuckGo images engine at the loopback server: ddgs has no endpoint setting."
    from ddgs.engines import ENGINES
    from ddgs.engines.duckduckgo_images import DuckduckgoImages
    from ddgs.utils import _extract_vqd

    class LoopbackImages(DuckduckgoImages):
        search_url = f"{server.url}/i.js"

        def _get_vqd(self, query: str) -> str:
            page = self.http_client.request("GET", f"{server.url}/", params={"q": query}).content
            return _extract_vqd(page, query)

    monkeypatch.setitem(ENGINES["images"], "duckduckgo", LoopbackImages)
    return server


def test_ddg_pages_with_pause(duckduckgo_on_loopback):
    server = duckduckgo_on_loopback
    results = search_images("claude monet", source="ddg", max_images=150, pause=0.5)
    queries = requests_to(server, "/i.js")
    times = [moment for moment, path, _, _ in server.log if path == "/i.js"]
    assert len(results) == 150
    assert [query.get("s") for query in queries] == [None, "100"]
    assert times[1] - times[0] >= 0.5
    assert {result.source for result in results} == {"ddg"}


def test_ddg_block_gives_clear_error(duckduckgo_on_loopback):
    duckduckgo_on_loopback.ddg_blocked = True
    with pytest.raises(SearchError, match="rate-limits or blocks") as error:
        search_images("claude monet", source="ddg")
    assert "source='wikimedia'" in str(error.value)


def test_cache_avoids_second_request(server, course_cache):
    endpoint = f"{server.url}/w/api.php"
    first = search_images("Category:Paintings by Claude Monet", endpoint=endpoint, max_images=20)
    server.hits.clear()
    again = search_images("Category:Paintings by Claude Monet", endpoint=endpoint, max_images=20)
    assert len(again) == 20
    assert again == first
    assert sum(server.hits.values()) == 0
    assert len(list((course_cache / "searches").glob("wikimedia-*.json"))) == 1

    search_images("Category:Paintings by Claude Monet", endpoint=endpoint, max_images=21)
    search_images("Category:Paintings by Claude Monet", endpoint=endpoint, max_images=20, use_cache=False)
    assert server.hits["/w/api.php"] == 2


def test_cache_serves_offline_machine(course_cache, block_dns):
    with ImageServer() as server:
        endpoint = f"{server.url}/search"
        online = search_images("monet", source="serpapi", key=SERPAPI_KEY, endpoint=endpoint, max_images=5)
    offline = search_images("monet", source="serpapi", key=SERPAPI_KEY, endpoint=endpoint, max_images=5)
    assert offline == online


def test_unreadable_cache_is_ignored(server, course_cache):
    endpoint = f"{server.url}/w/api.php"
    search_images("van gogh", endpoint=endpoint, max_images=3)
    [cache] = (course_cache / "searches").glob("*.json")
    cache.write_text("{not json")
    assert len(search_images("van gogh", endpoint=endpoint, max_images=3)) == 3
    assert json.loads(cache.read_text())["term"] == "van gogh"


def test_search_rejects_invalid_arguments():
    with pytest.raises(ValueError, match="Unknown source 'google'"):
        search_images("monet", source="google")
    with pytest.raises(ValueError, match="max_images"):
        search_images("monet", source="folder", max_images=0)
    with pytest.raises(ValueError, match="non-empty search term"):
        search_images("  ")


def test_key_shape_detection():
    assert looks_like_key(BING_KEY)
    assert looks_like_key(SERPAPI_KEY)
    assert looks_like_key("f" * 64)
    assert not looks_like_key("claude monet")
    assert not looks_like_key("pneumonoultramicroscopicsilicovolcanoconiosis")


def test_seed_call_returns_records(server):
    results = search_images_bing(BING_KEY, "claude monet", endpoint=f"{server.url}/v7.0/images/search", max_images=10)
    assert len(results) == 10
    assert isinstance(results[0], ImageResult)
    assert results.attrgot("content_url") == results.attrgot("contentUrl")
    assert requests_to(server, "/v7.0/images/search")[0]["q"] == "claude monet"


def test_seed_call_with_serpapi_key(server):
    results = search_images_bing(SERPAPI_KEY, "van gogh", endpoint=f"{server.url}/search", max_images=10)
    assert len(results) == 10
    assert {result.source for result in results} == {"serpapi"}


def test_placeholder_key_reaches_bing():
    with ImageServer(bing_status=401) as server:
        with pytest.raises(BingRetiredError, match="11 August 2025"):
            search_images_bing("XXX", "grizzly bear", endpoint=f"{server.url}/v7.0/images/search")
        assert requests_to(server, "/v7.0/images/search")[0]["q"] == "grizzly bear"


def test_swapped_call_explains_order():
    with pytest.raises(TypeError, match=r"takes the key first.*search_images_bing\(key, 'claude monet'\)") as error:
        search_images_bing("claude monet", BING_KEY)
    assert BING_KEY not in str(error.value)
    with pytest.raises(TypeError, match="needs a search term"):
        search_images_bing(BING_KEY)


def test_fastai_call_reaches_fastai(block_dns):
    # fastai's own function requests https://serpapi.com; with DNS blocked its requests error shows it ran.
    with pytest.raises(requests.ConnectionError, match="serpapi.com"):
        search_images_bing("claude monet", key=SERPAPI_KEY)
    with pytest.raises(ValueError, match="SerpApi key needed"):
        search_images_bing("claude monet")


IMPORT_ORDERS = {
    "helpers first": "from helpers.search import search_images_bing\nfrom fastai.vision.all import *\n",
    "fastai first": "from fastai.vision.all import *\nfrom helpers.search import search_images_bing\n",
}


@pytest.mark.parametrize("order", sorted(IMPORT_ORDERS))
def test_import_order_keeps_seed_call(order, server, tmp_path):
    script = IMPORT_ORDERS[order] + textwrap.dedent(f"""
        assert search_images_bing.__module__ == "helpers.search", search_images_bing.__module__
        results = search_images_bing({BING_KEY!r}, "claude monet", max_images=7)
        print(len(results), len(results.attrgot("content_url")), results[0].source)
    """)
    environment = {**os.environ, "BING_SEARCH_ENDPOINT": f"{server.url}/v7.0/images/search", "COURSE_CACHE": str(tmp_path)}
    finished = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split() == ["7", "7", "bing"]


def run_fresh_python(script: str) -> list[str]:
    "Run `script` in a new interpreter and return the lines it prints."
    finished = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    return finished.stdout.splitlines()


# An expression for the scripts below: the number of hooks that helpers.search has on sys.meta_path
# while it waits for fastai.vision.utils to be imported.
COUNT_HOOKS = "sum(type(finder).__name__ == '_FastaiUtilsHook' for finder in sys.meta_path)"


def test_import_leaves_fastai_unloaded():
    lines = run_fresh_python(f"""
        import sys
        import helpers.search
        print('fastai' in sys.modules, 'torch' in sys.modules, {COUNT_HOOKS})
        from fastai.vision.all import *
        import fastai.vision.utils
        print(search_images_bing.__module__, fastai.vision.utils.search_images_bing is search_images_bing)
        print(search_images_bing.fastai_original.__module__, {COUNT_HOOKS})
    """)
    assert lines[0] == "False False 1"
    assert lines[1] == "helpers.search True"
    assert lines[2] == "fastai.vision.utils 0"


def test_import_after_fastai_installs_at_once():
    lines = run_fresh_python(f"""
        import sys
        from fastai.vision.all import *
        print(search_images_bing.__module__)
        import helpers.search
        from fastai.vision.all import *
        import fastai.vision.utils
        print(search_images_bing.__module__, fastai.vision.utils.search_images_bing is search_images_bing)
        print(search_images_bing.fastai_original.__module__, {COUNT_HOOKS})
    """)
    assert lines[0] == "fastai.vision.utils"
    assert lines[1] == "helpers.search True"
    assert lines[2] == "fastai.vision.utils 0"


def test_fastai_call_imports_fastai_when_needed():
    lines = run_fresh_python("""
        import sys
        from helpers.search import search_images_bing
        print('fastai' in sys.modules)
        try:
            search_images_bing("claude monet")
        except ValueError as error:
            print(error)
        print(sys.modules['fastai.vision.utils'].search_images_bing is search_images_bing)
    """)
    assert lines[0] == "False"
    assert "SerpApi key needed" in lines[1]  # fastai's own message, so fastai's function ran
    assert lines[2] == "True"


def test_fastai_call_without_fastai_uses_serpapi():
    lines = run_fresh_python(f"""
        import sys
        sys.modules['fastai'] = None  # what an environment without fastai looks like to `import`
        from helpers.search import search_images_bing
        try:
            search_images_bing("claude monet")
        except ValueError as error:
            print(error)
        print({COUNT_HOOKS}, hasattr(search_images_bing, 'fastai_original'))
    """)
    assert lines[0].startswith("source='serpapi' needs a SerpApi key")
    assert lines[1] == "1 False"


def test_reload_keeps_one_hook():
    lines = run_fresh_python(f"""
        import importlib, sys
        import helpers.search
        importlib.reload(helpers.search)
        importlib.reload(helpers.search)
        print({COUNT_HOOKS})
        import fastai.vision.utils
        course = helpers.search.search_images_bing
        print(fastai.vision.utils.search_images_bing is course, course.fastai_original.__module__, {COUNT_HOOKS})
        importlib.reload(helpers.search)
        course = helpers.search.search_images_bing
        print(fastai.vision.utils.search_images_bing is course, course.fastai_original.__module__, {COUNT_HOOKS})
    """)
    assert lines[0] == "1"
    assert lines[1] == "True fastai.vision.utils 0"
    assert lines[2] == "True fastai.vision.utils 0"


def test_fastai_reload_restores_fastai_function():
    lines = run_fresh_python("""
        import importlib, sys
        from helpers.search import search_images_bing
        import fastai.vision.all
        import fastai.vision.utils
        fastai_function = search_images_bing.fastai_original
        importlib.reload(fastai.vision.utils)
        print(fastai.vision.utils.search_images_bing.__module__, type(fastai.vision.utils.__loader__).__name__)
        print(fastai.vision.all.search_images_bing is search_images_bing, search_images_bing.fastai_original is fastai_function)
    """)
    assert lines[0] == "fastai.vision.utils SourceFileLoader"
    assert lines[1] == "True True"

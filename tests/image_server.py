"""A loopback HTTP server for tests and benchmarks: real images, search API responses and injected faults.

`ImageServer` runs a `ThreadingHTTPServer` on 127.0.0.1 on a free port. It serves:

- `/images/<class>/<file>`: real paintings from a folder (normally `../shared/data/paintings`);
- `/copy/<class>/<file>`: the same bytes under a second URL, for duplicate detection;
- `/odd/<file>`: files from `../shared/data/odd_images`;
- `/fault/...`: broken responses, listed in `FAULTS`;
- `/redirect?to=<URL>`: a 302 redirect to any URL;
- `/v7.0/images/search`: the Bing Image Search v7 API shape;
- `/search`: SerpApi's Bing Images engine shape;
- `/w/api.php`: the MediaWiki API shape (categorymembers and search generators, subcategory lists, imageinfo,
  continue, maxlag);
- `/` and `/i.js`: DuckDuckGo's image search shape, as the `ddgs` package requests it.

Every request is counted per path in `hits`, and timed in `log`, so tests can check what a client asked for.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

MONET_CATEGORY = "Category:Paintings by Claude Monet"

# Paths under /fault/ and what each one sends.
FAULTS = {
    "404.jpg": "404 Not Found",
    "500-then-ok.jpg": "500 on the first request, then a real JPEG",
    "429-then-ok.jpg": "429 with Retry-After: 1 on the first request, then a real JPEG",
    "429-long.jpg": "429 with Retry-After: 3600 every time",
    "slow.jpg": "headers at once, then the body a few bytes at a time, far slower than a client timeout",
    "truncated.jpg": "the first half of a real JPEG",
    "html.jpg": "an HTML error page with Content-Type image/jpeg",
    "empty.jpg": "a zero-byte body with status 200",
    "bomb.gif": "a 44-byte GIF whose header declares about 4.4 gigapixels (odd_images/decompression_bomb.gif)",
    "redirect-loop.jpg": "a 302 redirect to itself",
    "huge-declared.jpg": "a Content-Length of 10 GB, and a real JPEG body",
    "huge-streamed.jpg": "a body of 5 MB of JPEG-looking bytes without Content-Length",
    "evil-name.jpg": "a real JPEG with Content-Disposition: filename=\"../../escaped.jpg\"",
    "png-as-jpg.jpg": "a real PNG behind a .jpg URL",
    "lfs-pointer.jpg": "a Git-LFS pointer text (odd_images/00010.jpg)",
}


def painting_names(folder: Path) -> list[str]:
    "Return the `<class>/<file>` names of the images in `folder`, sorted; the server serves them under /images/."
    return sorted(path.relative_to(folder).as_posix() for path in Path(folder).glob("*/*") if path.is_file())


class _QuietServer(ThreadingHTTPServer):
    "A ThreadingHTTPServer that does not print a traceback when a client drops a connection."
    daemon_threads = True
    # Room for many connections at once, as a real image host has. With the default of 5, some of 32
    # connections opened together are dropped and retried a second later.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class ImageServer:
    "A loopback server with real images, search API shapes and faults; use it as a context manager."

    def __init__(
        self,
        paintings: Path | None = None,  # folder of class folders of images; default ../shared/data/paintings
        latency: float = 0.0,  # seconds added before every response
        bing_key: str = "0123456789abcdef0123456789abcdef",  # the one key the Bing v7 shape accepts
        serpapi_key: str = "5e" * 32,  # the one key the SerpApi shape accepts
        bing_status: int | None = None,  # respond to every Bing v7 request with this status, as the retired API does
        maxlag_first: int = 0,  # respond to this many MediaWiki requests with a maxlag error first
        ddg_blocked: bool = False,  # respond to DuckDuckGo's image requests with 403, as when it blocks an address
    ):
        self.paintings = Path(paintings or SHARED_DATA / "paintings")
        self.odd = SHARED_DATA / "odd_images"
        self.images = painting_names(self.paintings)
        self.latency, self.bing_key, self.serpapi_key = latency, bing_key, serpapi_key
        self.bing_status, self.maxlag_left, self.ddg_blocked = bing_status, maxlag_first, ddg_blocked
        self.hits: Counter = Counter()
        self.log: list[tuple[float, str, dict, dict]] = []  # (time, path, query, headers) of each request
        self.active = self.max_active = 0
        self._bodies: dict[Path, bytes] = {}
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "ImageServer":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exception):
        self._server.shutdown()
        self._server.server_close()

    def image_urls(self, limit: int | None = None) -> list[str]:
        "Return the URLs of the real images, at most `limit`."
        return [f"{self.url}/images/{quote(name)}" for name in self.images[:limit]]

    def fault_urls(self) -> dict[str, str]:
        "Return the URL of every fault, by name."
        return {name: f"{self.url}/fault/{name}" for name in FAULTS}

    def read(self, path: Path) -> bytes:
        "Return the bytes of an image file, read from disk once, so the server spends little CPU per request."
        with self._lock:
            body = self._bodies.get(path)
        if body is None:
            body = path.read_bytes()
            with self._lock:
                self._bodies[path] = body
        return body

    def hits_for(self, path: str) -> int:
        return self.hits[path]

    def _handler_class(self):
        server = self

        class Handler(_Handler):
            owner = server

        return Handler


class _Handler(BaseHTTPRequestHandler):
    owner: ImageServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # Sending helpers

    def _send(self, status: int, body: bytes, content_type: str = "application/octet-stream", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, body: dict, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _image(self, name: str, headers: dict | None = None):
        path = (self.owner.paintings / name).resolve()
        if self.owner.paintings.resolve() not in path.parents or not path.is_file():
            return self._send(404, b"not found", "text/plain")
        self._send(200, self.owner.read(path), "image/jpeg", headers)

    # Dispatch

    def do_GET(self):
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        owner = self.owner
        with owner._lock:
            owner.hits[path] += 1
            owner.log.append((time.monotonic(), path, query, dict(self.headers)))
            owner.active += 1
            owner.max_active = max(owner.max_active, owner.active)
        try:
            if owner.latency:
                time.sleep(owner.latency)
            self._route(path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with owner._lock:
                owner.active -= 1

    def _route(self, path: str, query: dict):
        if path.startswith("/images/"):
            return self._image(path.removeprefix("/images/"))
        if path.startswith("/copy/"):
            return self._image(path.removeprefix("/copy/"))
        if path.startswith("/odd/"):
            name = Path(path).name
            file = self.owner.odd / name
            return self._send(200, file.read_bytes(), "image/jpeg") if file.is_file() else self._send(404, b"", "text/plain")
        if path.startswith("/fault/"):
            return self._fault(path.removeprefix("/fault/"))
        if path == "/redirect":  # a 302 to the URL in ?to=, as image hosts send to their CDNs
            self.send_response(302)
            self.send_header("Location", query.get("to", "/"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if path == "/v7.0/images/search":
            return self._bing(query)
        if path == "/search":
            return self._serpapi(query)
        if path == "/w/api.php":
            return self._mediawiki(query)
        if path == "/":
            return self._send(200, b'<html><script>vqd="4-1234567890";</script></html>', "text/html")
        if path == "/i.js":
            return self._duckduckgo(query)
        self._send(404, b"not found", "text/plain")

    # Faults

    def _first_real_jpeg(self) -> bytes:
        return (self.owner.paintings / self.owner.images[0]).read_bytes()

    def _fault(self, name: str):
        owner = self.owner
        count = owner.hits[f"/fault/{name}"]

        if name == "404.jpg":
            return self._send(404, b"<html>Not Found</html>", "text/html")

        if name == "500-then-ok.jpg":
            if count == 1:
                return self._send(500, b"Internal Server Error", "text/plain")
            return self._image(owner.images[1])

        if name == "429-then-ok.jpg":
            if count == 1:
                return self._send(429, b"Too Many Requests", "text/plain", {"Retry-After": "1"})
            return self._image(owner.images[2])

        if name == "429-long.jpg":
            return self._send(429, b"Too Many Requests", "text/plain", {"Retry-After": "3600"})

        if name == "slow.jpg":
            body = self._first_real_jpeg()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for start in range(0, len(body), 64):
                self.wfile.write(body[start:start + 64])
                self.wfile.flush()
                time.sleep(0.2)
            return None

        if name == "truncated.jpg":
            body = self._first_real_jpeg()
            return self._send(200, body[: len(body) // 2], "image/jpeg")

        if name == "html.jpg":
            return self._send(200, (owner.odd / "%27Au_Petit-Gennevilliers%27_by_Claude_Monet%2C_1874.jpg").read_bytes(), "image/jpeg")

        if name == "empty.jpg":
            return self._send(200, b"", "image/jpeg")

        if name == "bomb.gif":
            return self._send(200, (owner.odd / "decompression_bomb.gif").read_bytes(), "image/gif")

        if name == "redirect-loop.jpg":
            self.send_response(302)
            self.send_header("Location", "/fault/redirect-loop.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None

        if name == "huge-declared.jpg":
            body = self._first_real_jpeg()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(10 * 10**9))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return None

        if name == "huge-streamed.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff\xe0")
            for _ in range(80):
                self.wfile.write(b"\x00" * 65536)
            self.close_connection = True
            return None

        if name == "evil-name.jpg":
            return self._image(owner.images[3], {"Content-Disposition": 'attachment; filename="../../escaped.jpg"'})

        if name == "png-as-jpg.jpg":
            return self._send(200, (owner.odd / "transparent.png").read_bytes(), "image/jpeg")

        if name == "lfs-pointer.jpg":
            return self._send(200, (owner.odd / "00010.jpg").read_bytes(), "image/jpeg")
        return self._send(404, b"unknown fault", "text/plain")

    # Search API shapes

    def _result_images(self, term: str) -> list[str]:
        "Return the image names whose class folder matches `term` (all images for an unknown term)."
        words = ["".join(character for character in word if character.isalnum()) for word in term.lower().split()]
        words = [word for word in words if len(word) > 2]
        matching = [name for name in self.owner.images if any(word in name.split("/")[0] for word in words)]
        return matching or self.owner.images

    def _bing(self, query: dict):
        owner = self.owner
        if owner.bing_status:
            return self._json({"error": {"code": str(owner.bing_status), "message": "Access denied."}}, owner.bing_status)
        if self.headers.get("Ocp-Apim-Subscription-Key") != owner.bing_key:
            return self._json({"error": {"code": "401", "message": "Access denied due to invalid subscription key."}}, 401)
        names = self._result_images(query.get("q", ""))
        count, offset = min(int(query.get("count", 35)), 150), int(query.get("offset", 0))
        page = names[offset: offset + count]
        value = [{"name": Path(name).stem, "contentUrl": f"{owner.url}/images/{quote(name)}",
                  "thumbnailUrl": f"{owner.url}/images/{quote(name)}", "hostPageUrl": f"{owner.url}/page/{quote(name)}",
                  "width": 512, "height": 384, "encodingFormat": "jpeg"} for name in page]
        self._json({"_type": "Images", "totalEstimatedMatches": len(names), "nextOffset": offset + len(page), "value": value})

    def _serpapi(self, query: dict):
        owner = self.owner
        if query.get("api_key") != owner.serpapi_key:
            return self._json({"error": "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key"}, 401)
        names = self._result_images(query.get("q", ""))
        first, count = int(query.get("first", 1)), int(query.get("count", 35))
        page = names[first - 1: first - 1 + count]
        results = [{"position": first + index, "title": Path(name).stem, "original": f"{owner.url}/images/{quote(name)}",
                    "thumbnail": f"{owner.url}/images/{quote(name)}", "link": f"{owner.url}/page/{quote(name)}",
                    "source": f"{owner.url}/page/{quote(name)}"} for index, name in enumerate(page)]
        self._json({"search_metadata": {"status": "Success"}, "images_results": results})

    def _category_files(self, title: str) -> list[str]:
        "Return the images of a category: Monet's top category holds 40 files and its two subcategories the rest."
        monet = [name for name in self.owner.images if name.startswith("monet/")]
        split = {MONET_CATEGORY: monet[:40], f"{MONET_CATEGORY} in museums": monet[40:100],
                 f"{MONET_CATEGORY} by year": monet[90:]}  # ten files are in both subcategories
        if title in split:
            return split[title]
        return self._result_images(title.removeprefix("Category:"))

    def _mediawiki(self, query: dict):
        owner = self.owner
        with owner._lock:
            lagging = owner.maxlag_left > 0
            owner.maxlag_left -= 1 if lagging else 0
        if lagging:
            return self._json({"error": {"code": "maxlag", "info": "Waiting for a replica: 1 seconds lagged", "lag": 1}},
                              headers={"Retry-After": "1", "X-Database-Lag": "1"})

        if query.get("list") == "categorymembers":
            subcategories = [f"{MONET_CATEGORY} in museums", f"{MONET_CATEGORY} by year"] if query.get("cmtitle") == MONET_CATEGORY else []
            return self._json({"batchcomplete": True, "query": {"categorymembers": [
                {"ns": 14, "title": title} for title in subcategories]}})
        if query.get("generator") == "categorymembers":
            continue_key, limit = "gcmcontinue", int(query.get("gcmlimit", 10))
            names = self._category_files(query.get("gcmtitle", ""))
        else:
            continue_key, limit = "gsroffset", int(query.get("gsrlimit", 10))
            names = self._result_images(query.get("gsrsearch", ""))

        start = int(query.get(continue_key, 0))
        pages = []
        for index, name in enumerate(names[start: start + limit]):
            pages.append({"pageid": 1000 + start + index, "ns": 6, "index": start + index, "title": f"File:{Path(name).name}",
                          "imageinfo": [{"url": f"{owner.url}/images/{quote(name)}", "descriptionurl": f"{owner.url}/wiki/{quote(name)}",
                                         "thumburl": f"{owner.url}/images/{quote(name)}", "thumbwidth": 320, "thumbheight": 240,
                                         "width": 768, "height": 576, "size": 100000, "mime": "image/jpeg",
                                         "extmetadata": {"ObjectName": {"value": Path(name).stem},
                                                         "LicenseShortName": {"value": "Public domain"},
                                                         "Artist": {"value": '<a href="//commons.wikimedia.org/wiki/Creator:Claude_Monet">Claude&nbsp;Monet</a>'}}}]})

        pages.append({"pageid": 1, "ns": 6, "index": 10**6, "title": "File:Drawing.svg",
                      "imageinfo": [{"url": f"{owner.url}/drawing.svg", "mime": "image/svg+xml", "width": 10, "height": 10}]})
        response = {"batchcomplete": True, "query": {"pages": pages}}
        if start + limit < len(names):
            response["continue"] = {continue_key: str(start + limit), "continue": f"{continue_key}||"}
        self._json(response)

    def _duckduckgo(self, query: dict):
        owner = self.owner
        if owner.ddg_blocked:
            return self._send(403, b"<html>blocked</html>", "text/html")
        names = self._result_images(query.get("q", ""))
        start = int(query.get("s", 0))
        page = names[start: start + 100]
        results = [{"title": Path(name).stem, "image": f"{owner.url}/images/{quote(name)}",
                    "thumbnail": f"{owner.url}/images/{quote(name)}", "url": f"{owner.url}/page/{quote(name)}",
                    "height": 384, "width": 512, "source": "Bing"} for name in page]
        self._json({"results": results, "next": "i.js?next" if start + 100 < len(names) else None})


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Serve real paintings, search API shapes and faults on 127.0.0.1 until stdin closes.")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before every response (default 0)")
    arguments = parser.parse_args()
    with ImageServer(latency=arguments.latency) as running:
        print(running.url, flush=True)
        sys.stdin.read()

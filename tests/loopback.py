"""A base for the small HTTP servers that tests start on 127.0.0.1."""
import threading
from http.server import ThreadingHTTPServer


class LoopbackServer:
    "Serve `handler` on a free port of 127.0.0.1 from a background thread; use it as a context manager."

    def __init__(self, handler):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exception):
        self._server.shutdown()
        self._server.server_close()

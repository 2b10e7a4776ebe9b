"""Pretrained weights: found in the torch hub cache, downloaded from a mirror with a hash check, or a plain fallback offline."""
import hashlib
import io
import socket
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler

import pytest
import torch
import torchvision

from helpers.weights import (MIRROR_ENV, WeightsDownloadError, download_weights, find_pretrained_weights,
                             hub_checkpoint_path)
from loopback import LoopbackServer

TORCHVISION_BASE = "https://download.pytorch.org/models"


@pytest.fixture
def no_network(monkeypatch):
    "Make any attempt to open a URL fail the test."
    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected network access: {args[:1]}")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


class CheckpointServer(LoopbackServer):
    "A loopback HTTP server that answers GET /models/NAME with the bytes in `files`, and counts requests."

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()  # names whose response declares the full length but sends half the body
        self.hits: Counter = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.removeprefix("/models/")
                server.hits[name] += 1
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in server.truncate else body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        super().__init__(Handler)
        self.mirror = f"{self.url}/models"


@pytest.fixture
def server():
    with CheckpointServer() as running:
        yield running


def make_checkpoint() -> tuple[str, bytes, dict]:
    "Return a file name in torchvision's NAME-HASHPREFIX.pth form, its bytes, and the state dict they hold."
    torch.manual_seed(0)
    state = torch.nn.Conv2d(3, 4, 3).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    return f"tinyconv-{hashlib.sha256(data).hexdigest()[:8]}.pth", data, state


def closed_port_url() -> str:
    "Return a loopback URL on a port that nothing listens on."
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/models"


def leftover_files(isolated_cache) -> list[str]:
    folder = hub_checkpoint_path().parent
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_empty_cache_offline_falls_back(isolated_cache, no_network):
    status = find_pretrained_weights()
    assert not status.available
    assert "random weights" in status.message
    assert status.message.count(". ") == 0, "the explanation should be one sentence"
    assert not status.path.exists()


def test_download_good_checkpoint(isolated_cache, server):
    name, data, state = make_checkpoint()
    server.files[name] = data

    path = download_weights(f"{TORCHVISION_BASE}/{name}", mirror=server.mirror, progress=False)
    assert path == isolated_cache / "torch" / "hub" / "checkpoints" / name
    assert path.read_bytes() == data
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["weight"], state["weight"])
    assert leftover_files(isolated_cache) == [name], "no temporary file may remain"
    assert server.hits[name] == 1


def test_download_reuses_verified_file(isolated_cache, server):
    name, data, _ = make_checkpoint()
    server.files[name] = data
    first = download_weights(f"{TORCHVISION_BASE}/{name}", mirror=server.mirror, progress=False)
    second = download_weights(f"{TORCHVISION_BASE}/{name}", mirror=server.mirror, progress=False)
    assert first == second
    assert server.hits[name] == 1, "a cached file that matches its hash is not downloaded again"


def test_download_replaces_damaged_cache(isolated_cache, server):
    name, data, _ = make_checkpoint()
    server.files[name] = data
    damaged = hub_checkpoint_path(f"{TORCHVISION_BASE}/{name}")
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(data[:100])

    path = download_weights(f"{TORCHVISION_BASE}/{name}", mirror=server.mirror, progress=False)
    assert path.read_bytes() == data
    assert server.hits[name] == 1


def test_mirror_from_environment(isolated_cache, server, monkeypatch):
    name, data, _ = make_checkpoint()
    server.files[name] = data
    monkeypatch.setenv(MIRROR_ENV, server.mirror + "/")
    path = download_weights(f"{TORCHVISION_BASE}/{name}", progress=False)
    assert path.read_bytes() == data
    assert server.hits[name] == 1


def test_corrupt_checkpoint_rejected(isolated_cache, server):
    name, data, _ = make_checkpoint()
    server.files[name] = data[:-1] + bytes([data[-1] ^ 0xFF])

    with pytest.raises(WeightsDownloadError) as caught:
        download_weights(f"{TORCHVISION_BASE}/{name}", mirror=server.mirror, progress=False)
    assert caught.value.reason == "SHA-256 mismatch"
    assert name in str(caught.value)
    assert leftover_files(isolated_cache) == [], "nothing may be left in the cache"


def test_truncated_download_rejected(isolated_cache, server):
    name, data, _ = make_checkpoint()
    server.files[name] = data
    server.truncate.add(name)

    with pytest.raises(WeightsDownloadError) as caught:
        download_weights(f"{TORCHVISION_BASE}/{name}", mirror=server.mirror, progress=False)
    assert f"of {len(data)} bytes" in caught.value.reason
    assert leftover_files(isolated_cache) == []


def test_missing_file_reports_http_status(isolated_cache, server):
    name, _, _ = make_checkpoint()
    with pytest.raises(WeightsDownloadError) as caught:
        download_weights(f"{TORCHVISION_BASE}/{name}", mirror=server.mirror, progress=False)
    assert caught.value.reason.startswith("HTTP 404")
    assert leftover_files(isolated_cache) == []


def test_server_down_one_sentence(isolated_cache):
    name, _, _ = make_checkpoint()
    mirror = closed_port_url()
    with pytest.raises(WeightsDownloadError) as caught:
        download_weights(f"{TORCHVISION_BASE}/{name}", mirror=mirror, progress=False)
    message = str(caught.value)
    assert mirror in message
    assert MIRROR_ENV in message
    assert message.endswith(".")
    assert message.count(". ") == 0, "the failure should be one sentence"
    assert leftover_files(isolated_cache) == []

    status = find_pretrained_weights(download=True, mirror=mirror)
    assert not status.available
    assert "could not be downloaded" in status.message
    assert "random weights" in status.message
    assert status.message.count(". ") == 0


def test_online_switch_downloads(isolated_cache, server, monkeypatch):
    name, data, _ = make_checkpoint()
    server.files[name] = data
    monkeypatch.setenv(MIRROR_ENV, server.mirror)
    url = f"{TORCHVISION_BASE}/{name}"

    assert not find_pretrained_weights(url), "without COURSE_ONLINE=1 nothing is downloaded"
    assert server.hits[name] == 0

    monkeypatch.setenv("COURSE_ONLINE", "1")
    status = find_pretrained_weights(url)
    assert status.available
    assert status.message.startswith("Downloaded")
    assert status.path.read_bytes() == data


def test_resnet18_name_checked(isolated_cache, server):
    # Any file served as resnet18-f37072fd.pth must hash to f37072fd…, and a random state dict does not.
    buffer = io.BytesIO()
    torch.save(torchvision.models.resnet18().state_dict(), buffer)
    server.files["resnet18-f37072fd.pth"] = buffer.getvalue()

    status = find_pretrained_weights(download=True, mirror=server.mirror)
    assert not status.available
    assert "SHA-256 mismatch" in status.message
    assert server.hits["resnet18-f37072fd.pth"] == 1
    assert leftover_files(isolated_cache) == []


def test_cached_checkpoint_used_by_vision_learner(isolated_cache, no_network):
    from fastai.vision.all import resnet18, vision_learner
    from helpers.sample_data import make_sample_paintings
    from helpers.training import painting_dataloaders

    checkpoint = hub_checkpoint_path()
    assert checkpoint.name == "resnet18-f37072fd.pth"
    checkpoint.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18().state_dict()
    torch.save(reference, checkpoint)

    status = find_pretrained_weights()
    assert status.available
    assert status.path == checkpoint
    assert status.message.startswith("Using")

    dls = painting_dataloaders(make_sample_paintings(isolated_cache / "data", n_per_class=4, size=32), bs=4)
    learn = vision_learner(dls, resnet18, pretrained=True)
    first_conv = learn.model[0][0].weight.detach()
    assert torch.equal(first_conv, reference["conv1.weight"])
    # A pretrained learner starts frozen: only the head and the batch norms train.
    assert not learn.model[0][0].weight.requires_grad


def test_random_start_trains_whole_network(isolated_cache, no_network):
    from fastai.vision.all import error_rate, resnet18, vision_learner
    from helpers.sample_data import make_sample_paintings
    from helpers.training import painting_dataloaders

    dls = painting_dataloaders(make_sample_paintings(isolated_cache / "data", n_per_class=4, size=32), bs=4)
    learn = vision_learner(dls, resnet18, metrics=error_rate, pretrained=False)
    assert all(parameter.requires_grad for parameter in learn.model.parameters())

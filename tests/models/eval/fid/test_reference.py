"""The reference argument, built-in batches in the lina cache, the resumable download and the feature cache.

Downloads are served by a small HTTP server on 127.0.0.1 started by the test; nothing leaves the machine.
"""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from models.errors import EvalInputError, ReferenceUnavailableError
from models.eval.fid.constants import BUILTIN_REFERENCES, BuiltinReference
from models.eval.fid.download import download_file, fetch_reference, reference_path
from models.eval.fid.images import scan_images
from models.eval.fid.reference import cached_features, open_reference, parse_reference
from tests.models.eval.fid.helpers import random_images, write_images

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture(autouse=True)
def lina_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LINA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def server():
    """Serves PAYLOAD at /file; honours `Range: bytes=N-` unless `server.ranges` is False. Yields the base URL."""
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.headers.get("Range"))
            start = 0
            if self.headers.get("Range") and state["ranges"]:
                start = int(self.headers["Range"].removeprefix("bytes=").removesuffix("-"))
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(PAYLOAD) - start))
            self.end_headers()
            self.wfile.write(PAYLOAD[start:])

        def log_message(self, *args):
            pass

    state = {"ranges": True, "requests": requests}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/file"
    yield state
    httpd.shutdown()
    thread.join()


def test_download_resumes_a_partial_file(tmp_path, server):
    target = tmp_path / "ref.npz"
    (tmp_path / "ref.npz.part").write_bytes(PAYLOAD[:1000])
    seen = []
    download_file(server["url"], target, sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=lambda *a: seen.append(a))
    assert target.read_bytes() == PAYLOAD and not (tmp_path / "ref.npz.part").exists()
    assert server["requests"] == ["bytes=1000-"]
    assert seen[-1][1:] == (len(PAYLOAD), len(PAYLOAD))


def test_download_restarts_when_the_server_ignores_ranges(tmp_path, server):
    server["ranges"] = False
    (tmp_path / "ref.npz.part").write_bytes(b"x" * 500)
    download_file(server["url"], tmp_path / "ref.npz", sha256=None)
    assert (tmp_path / "ref.npz").read_bytes() == PAYLOAD


def test_a_complete_part_is_finished_without_downloading(tmp_path, server):
    (tmp_path / "ref.npz.part").write_bytes(PAYLOAD)
    download_file(server["url"], tmp_path / "ref.npz", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert (tmp_path / "ref.npz").read_bytes() == PAYLOAD


def test_a_wrong_hash_deletes_the_download(tmp_path, server):
    with pytest.raises(ReferenceUnavailableError, match="expected 0000"):
        download_file(server["url"], tmp_path / "ref.npz", sha256="0" * 64)
    assert not (tmp_path / "ref.npz").exists() and not (tmp_path / "ref.npz.part").exists()


def test_fetch_reference_downloads_into_the_lina_cache(lina_cache, server):
    reference = BuiltinReference("test", "test.npz", server["url"], hashlib.sha256(PAYLOAD).hexdigest(), 32, "test")
    path = fetch_reference(reference)
    assert path == lina_cache / "fid-references" / "test.npz" and path.read_bytes() == PAYLOAD
    server["requests"].clear()
    assert fetch_reference(reference, offline=True) == path and server["requests"] == []  # cached: no request


def test_missing_reference_offline_says_how_to_get_it(lina_cache, monkeypatch):
    builtin = BUILTIN_REFERENCES["imagenet"]
    expected = str(lina_cache / "fid-references" / "VIRTUAL_imagenet256_labeled.npz")
    with pytest.raises(ReferenceUnavailableError) as error:
        open_reference(parse_reference("imagenet"), resize=False, offline=True)
    message = str(error.value)
    assert builtin.url in message and expected in message
    assert "--ref /path/to/VIRTUAL_imagenet256_labeled.npz" in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ReferenceUnavailableError, match="offline mode is on"):
        fetch_reference(builtin)


def test_no_network_says_how_to_get_it():
    unreachable = BuiltinReference("x", "x.npz", "http://127.0.0.1:9/x.npz", None, 256, "nothing listens on port 9")
    with pytest.raises(ReferenceUnavailableError, match=r"could not download x.npz .*Download http://127.0.0.1:9/x.npz"):
        fetch_reference(unreachable)


def test_a_builtin_reference_already_in_the_cache_is_used(lina_cache):
    target = reference_path(BUILTIN_REFERENCES["imagenet"])
    target.parent.mkdir(parents=True)
    np.savez(target, mu=np.zeros(4), sigma=np.eye(4))
    opened = open_reference(parse_reference("imagenet"), resize=False, offline=True)
    assert opened.path == target and opened.images is None
    np.testing.assert_array_equal(opened.statistics.sigma, np.eye(4))


def test_parse_reference(tmp_path):
    assert parse_reference("imagenet-512").image_size == 512
    (tmp_path / "imgs").mkdir()
    assert parse_reference(tmp_path / "imgs").kind == "folder"
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2), sigma=np.eye(2))
    assert parse_reference(str(tmp_path / "stats.npz")).kind == "npz"
    with pytest.raises(EvalInputError, match="give one of imagenet, imagenet-512, an ADM .npz batch"):
        parse_reference("imagenet-1024")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"mu": np.zeros(2)}, "has 'mu' but no 'sigma'"),
        ({"labels": np.zeros(2)}, "holds neither 'mu'/'sigma' statistics nor 'arr_0' images"),
        ({"arr_0": random_images(3, seed=0, size=256)}, "no 'mu'/'sigma' and only 3 image\\(s\\); .* at least 4"),
    ],
)
def test_bad_reference_npz(tmp_path, arrays, message):
    np.savez(tmp_path / "ref.npz", **arrays)
    with pytest.raises(EvalInputError, match=message):
        open_reference(parse_reference(tmp_path / "ref.npz"), resize=False)


def test_a_reference_folder_needs_enough_images(tmp_path):
    write_images(tmp_path / "ref", random_images(2, seed=1, size=256))
    with pytest.raises(EvalInputError, match="only 2 image"):
        open_reference(parse_reference(tmp_path / "ref"), resize=False)


def test_feature_cache_is_keyed_by_content_and_weights(tmp_path):
    write_images(tmp_path / "ref", random_images(4, seed=2, size=256))
    images = scan_images(tmp_path / "ref", 256, resize=False, reject_duplicates=False)
    calls = []

    def compute():
        calls.append(1)
        return np.random.default_rng(len(calls)).normal(size=(4, 8)).astype(np.float32)

    first, hit = cached_features(images, "a" * 64, compute)
    assert not hit
    again, hit = cached_features(images, "a" * 64, compute)
    assert hit and len(calls) == 1
    np.testing.assert_array_equal(again, first)
    _, hit = cached_features(images, "b" * 64, compute)  # other weights, other features
    assert not hit and len(calls) == 2

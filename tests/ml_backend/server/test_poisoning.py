"""Item 2 of issue 12: a prediction is cached under an image only when the pixels scored are
that image's, and a task is answered from image X's cache only when its reference is image X."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.ml_backend.server.support import World, labels, task


def test_a_claimed_image_id_with_other_pixels_is_neither_stored_nor_served(
    backend: World,
) -> None:
    client = backend.client()
    cached, uncached, other = backend.ids[0], backend.ids[2], backend.ids[3]
    decoy = backend.settings.data_root / "decoy.png"
    shutil.copy(backend.png(other), decoy)
    for ref in (str(decoy), backend.local(other)):
        response = client.post("/predict", json={"tasks": [task(ref, uncached)]})
        assert response.status_code == 200, response.text
        assert not backend.cached(uncached)  # image `other`'s boxes are not `uncached`'s
        response = client.post("/predict", json={"tasks": [task(ref, cached)]})
        assert labels(response) == [["BI-RADS 5"]]  # computed, not image `cached`'s 4A


def test_a_claimed_image_whose_bytes_match_is_stored_and_served(backend: World) -> None:
    client = backend.client()
    cached, uncached = backend.ids[0], backend.ids[2]
    copy_of_uncached = backend.settings.data_root / "same-pixels.png"
    shutil.copy(backend.png(uncached), copy_of_uncached)
    response = client.post("/predict", json={"tasks": [task(str(copy_of_uncached), uncached)]})
    assert response.status_code == 200 and backend.cached(uncached)
    copy_of_cached = backend.settings.data_root / "cached-pixels.png"
    shutil.copy(backend.png(cached), copy_of_cached)
    response = client.post("/predict", json={"tasks": [task(str(copy_of_cached), cached)]})
    assert labels(response) == [["BI-RADS 4A"]]  # verified by sha256: the cache answers


def test_fetched_pixels_are_stored_only_when_their_sha256_matches(backend: World) -> None:
    pngs = {"/right.png": backend.png(backend.ids[2]), "/wrong.png": backend.png(backend.ids[3])}

    class Host(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = pngs[self.path].read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Host)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        client = backend.client(studio_url=base)

        def ask(path: str, image_id: int) -> Any:
            return client.post("/predict", json={"tasks": [task(base + path, image_id)]})

        wrong = ask("/wrong.png", backend.ids[2])
        assert wrong.status_code == 200 and not backend.cached(backend.ids[2])
        right = ask("/right.png", backend.ids[2])
        assert right.status_code == 200 and backend.cached(backend.ids[2])
        cached = client.post(
            "/predict", json={"tasks": [task(f"{base}/wrong.png", backend.ids[0])]}
        )
        assert labels(cached) == [["BI-RADS 5"]]
    finally:
        server.shutdown()
        server.server_close()


def test_our_png_path_is_its_image_whatever_id_is_claimed(backend: World) -> None:
    client = backend.client()
    response = client.post(
        "/predict", json={"tasks": [task(backend.local(backend.ids[0]), backend.ids[2])]}
    )
    assert labels(response) == [["BI-RADS 4A"]]  # the pixels are ids[0]'s: its cache answers
    assert not backend.cached(backend.ids[2])

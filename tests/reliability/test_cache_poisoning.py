"""Issue 12 item 2: a prediction is stored under an image id only for that image's own pixels.

`/predict` with `data.image_id` of image A and the picture of image B (Label Studio's upload URL,
B's source file under the data root, B's stored PNG by path) used to store B's boxes as A's
pre-label; readers were then judged against them. The response may carry B's boxes, but A's
stored prediction must not appear or change.
"""

from __future__ import annotations

import json

from bench.support.harness import (
    UPLOAD,
    Backend,
    Home,
    cached_ids,
    column,
    images,
    local_ref,
    predict_body,
)
from bench.support.loopback import Loopback


def _stored(home: Home, image_id: int) -> list[str]:
    sql = (
        "SELECT p.boxes FROM predictions p JOIN active_models a "
        "ON a.model_version_id = p.model_version_id AND a.kind = 'detector' WHERE p.image_id = ?"
    )
    return [json.dumps(b, sort_keys=True) for b in column(home.db, sql, image_id)]


def _pictures_of_b(backend: Backend, studio: Loopback) -> list[str]:
    """Image B (the last one) named four ways; B's upload is what `studio` serves."""
    b_id, b_png = images(backend.home)[-1]
    source = column(backend.home.db, "SELECT source_id FROM images WHERE id = ?", b_id)[0]
    return [
        f"{studio.url}{UPLOAD}",
        f"busbra_mini/Images/{source}.png",
        local_ref(b_png),
        str(backend.home.home / b_png),
    ]


def test_another_images_pixels_never_become_its_prediction(
    backend: Backend, studio_files: Loopback
) -> None:
    home = backend.home
    ids = [i for i, _ in images(home)]
    uncached = [i for i in ids[:-1] if i not in cached_ids(home)]
    cached = [i for i in ids[:-1] if i in cached_ids(home)]
    a, c = uncached[0], cached[0]
    before_c = _stored(home, c)
    with backend.client() as client:
        setup = client.post("/setup", json={"hostname": studio_files.url, "access_token": "t"})
        assert setup.status_code == 200, setup.text
        for ref in _pictures_of_b(backend, studio_files):
            for victim in (a, c):
                response = client.post("/predict", json=predict_body(ref, victim))
                assert response.status_code < 500, (ref, response.status_code, response.text)
        assert _stored(home, a) == [], "B's boxes were stored as A's pre-label"
        assert _stored(home, c) == before_c, "A cached pre-label was replaced"
        a_png = dict(images(home))[a]
        own = client.post("/predict", json=predict_body(local_ref(a_png), a))
        assert own.status_code == 200, own.text
    assert len(_stored(home, a)) == 1  # A's own pixels are cached as usual

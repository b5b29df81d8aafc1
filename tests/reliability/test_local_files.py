"""Issue 12 item 1: the backend reads only image files it owns, and acknowledged writes survive.

Asking `/predict` to read the database as an image made the server open and close labeler.db;
closing any descriptor drops the process's POSIX locks, so the next `labeler status` deleted the
WAL under the running server and every later "stored" webhook was lost. Each hostile reference
(the database, its -wal/-shm, .secrets.json, .id_salt, a lock file, a PNG under home but outside
images/, in every spelling: traversal, percent-encoding, absolute, a symlink under the data root,
Label Studio's own URL) must get a 4xx; then webhooks answered "stored", with `labeler status`
runs from other processes in between, must all be in the database, and it must be intact.
"""

from __future__ import annotations

import os
from urllib.parse import quote

import httpx
from PIL import Image as PILImage

from bench.support.harness import (
    Backend,
    Home,
    cli,
    images,
    integrity,
    local_ref,
    post_event,
    predict_body,
    running_backend,
    stored_annotation_ids,
)

SECRETS = (".secrets.json", ".id_salt", "retrain.lock", "logs/leak.png", "models/leak.png")
DATABASE = ("labeler.db", "labeler.db-wal", "labeler.db-shm", "labeler.db-journal")


def _plant_decoys(home: Home) -> None:
    """Files a real home holds (secrets, a lock) and valid PNGs under home but not ours."""
    (home.home / ".secrets.json").write_text('{"studio_admin_password": "decoy"}')
    (home.home / ".id_salt").write_text("decoy-salt")
    (home.home / "retrain.lock").write_text("1")
    for name in ("logs/leak.png", "models/leak.png"):
        (home.home / name).parent.mkdir(parents=True, exist_ok=True)
        PILImage.new("L", (64, 64), 128).save(home.home / name)


def _spellings(home: Home, name: str, studio_url: str) -> list[str]:
    """Ways one file under home may be named in a task's image field."""
    link = home.root / f"link-{name.replace('/', '-')}"
    if not link.is_symlink():
        os.symlink(home.home / name, link)
    absolute = str(home.home / name)
    return [
        local_ref(name),
        local_ref(f"./{name}"),
        local_ref(f"images/../{name}"),
        local_ref(f"images/%2e%2e/{name}"),
        "/data/local-files/?d=" + quote(name, safe=""),
        "/data/local-files/?d=" + "".join(f"%{b:02X}" for b in name.encode()),
        local_ref(absolute),
        f"{studio_url}{local_ref(name)}",
        absolute,
        f"../home/{name}",
        f"file://{absolute}",
        link.name,
    ]


def _hostile_round(
    backend: Backend, client: httpx.Client, studio_url: str, names: tuple[str, ...]
) -> list[str]:
    """Every spelling of every named file; returns what was not refused with a 4xx."""
    wrong = []
    for name in names:
        for ref in _spellings(backend.home, name, studio_url):
            for image_id in (None, 1):
                response = client.post("/predict", json=predict_body(ref, image_id))
                if not 400 <= response.status_code < 500:
                    wrong.append(f"{ref!r} (image_id {image_id}) -> {response.status_code}")
    return wrong


def test_protected_files_are_refused_and_acknowledged_webhooks_survive(fresh_home: Home) -> None:
    _plant_decoys(fresh_home)
    studio_url = "http://127.0.0.1:9"
    acked: list[int] = []
    with running_backend(fresh_home) as backend, backend.client() as client:
        own = images(fresh_home)[0]
        control = client.post("/predict", json=predict_body(local_ref(own[1]), own[0]))
        assert control.status_code == 200, control.text  # the server does answer real images
        wrong = _hostile_round(backend, client, studio_url, DATABASE + SECRETS)
        for round_ in range(2):
            for k in range(40):
                ann = 1000 * (round_ + 1) + k
                if post_event(client, ann):
                    acked.append(ann)
            status = cli(fresh_home, "status")  # another process opens and closes the db
            assert status.returncode == 0, status.stderr[-2000:]
            wrong += _hostile_round(backend, client, studio_url, DATABASE[:1])
        assert client.get("/health").status_code == 200
    missing = sorted(set(acked) - stored_annotation_ids(fresh_home))
    assert (len(acked), missing) == (80, []), f"{len(missing)} acknowledged webhooks lost"
    assert integrity(fresh_home.db) == "ok"
    assert wrong == [], f"{len(wrong)} protected reads not refused, e.g. {wrong[:5]}"


def test_images_it_owns_and_data_root_images_are_still_read(backend: Backend, seed: Home) -> None:
    """The guard must not refuse the legitimate cases: our PNGs and files under the data root."""
    image_id, png = images(seed)[1]
    source = next((seed.sample / "Images").glob("*.png"))
    with backend.client() as client:
        ours = client.post("/predict", json=predict_body(local_ref(png), image_id))
        assert ours.status_code == 200, ours.text
        rel = source.relative_to(seed.root).as_posix()
        from_root = client.post("/predict", json=predict_body(rel))
        assert from_root.status_code == 200, from_root.text

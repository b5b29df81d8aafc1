"""Similar-lesion search: `labeler encoder index` builds the index, `labeler similar` asks it.

Output names images by database id and public dataset source id, never by patient or lesion
key (those are pseudonymous patient identifiers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from labeler.cli.common import JsonOpt, app_context, emit
from labeler.progress import ProgressBar

if TYPE_CHECKING:
    from labeler.jobs.similar import SimilarResult


def encoder_index(
    ctx: typer.Context,
    batch_size: Annotated[int, typer.Option(min=1, help="Crops per encoder batch.")] = 32,
    as_json: JsonOpt = False,
) -> None:
    """Build (or rebuild) the active encoder's index of confirmed lesions."""
    from labeler.jobs.similar import build_index

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    with ProgressBar("embed lesions") as bar:
        summary = build_index(app_ctx, batch_size=batch_size, start=bar.start, advance=bar.advance)
    lines = [
        f"{summary.encoder_version}: {summary.confirmed} confirmed lesion boxes indexed, "
        f"{summary.probes} pre-labeled images' top boxes stored as queries",
        f"  {summary.path}",
    ]
    emit(
        {
            "encoder_version": summary.encoder_version,
            "path": summary.path,
            "confirmed": summary.confirmed,
            "probes": summary.probes,
            "detector_version": summary.detector_version,
        },
        as_json,
        lines,
    )


def similar(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="Database image id or dataset source id.")],
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="How many matches.")] = 9,
    as_json: JsonOpt = False,
) -> None:
    """The confirmed lesions most similar to IMAGE's lesion (its other view first)."""
    from labeler.jobs.similar import similar as search

    app_ctx = app_context(ctx)
    app_ctx.require_schema()
    result = search(app_ctx, image, k=k)
    emit(as_dict(result), as_json, as_lines(result))


def as_dict(result: SimilarResult) -> dict[str, Any]:
    q = result.query
    return {
        "encoder_version": result.encoder_version,
        "query": {
            "image_id": q.image_id,
            "dataset": q.dataset,
            "source_id": q.source_id,
            "box": list(q.box),
            "box_origin": q.origin,
            "birads": q.birads,
        },
        "matches": [
            {
                "rank": m.rank,
                "image_id": m.row.image_id,
                "dataset": m.row.dataset,
                "source_id": m.row.source_id,
                "birads": m.row.birads.value if m.row.birads else None,
                "pathology": m.row.pathology.value if m.row.pathology else None,
                "distance": round(m.distance, 4),
                "same_lesion": m.same_lesion,
                "label": m.row.origin.value,
            }
            for m in result.matches
        ],
    }


def as_lines(result: SimilarResult) -> list[str]:
    q = result.query
    name = f"image {q.image_id}" + (f" ({q.source_id})" if q.source_id else "")
    lines = [f"{name}, {q.origin} box, encoder {result.encoder_version}"]
    lines.append(
        f"{'rank':>4}  {'image':>6}  {'source id':<16} {'BI-RADS':<7} {'pathology':<9} dist"
    )
    for m in result.matches:
        birads = m.row.birads.value if m.row.birads else "-"
        pathology = m.row.pathology.value if m.row.pathology else "-"
        source = (m.row.source_id or "-") + (" *" if m.same_lesion else "")
        lines.append(
            f"{m.rank:>4}  {m.row.image_id:>6}  {source:<16} {birads:<7} {pathology:<9} "
            f"{m.distance:.4f}"
        )
    if any(m.same_lesion for m in result.matches):
        lines.append("* another view of the same lesion (listed first)")
    if not result.matches:
        lines.append("no confirmed lesions besides this image's own")
    return lines

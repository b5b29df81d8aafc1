"""`labeler`: the command line. Thin: each command parses, calls one function, prints."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from db import migrate, queries
from db.settings import Settings
from labeler.context import AppContext, DatabaseNotReadyError
from labeler.importing.datasets import DatasetLayoutError
from labeler.importing.paths import OutsideDataRootError
from labeler.importing.pipeline import run_import
from labeler.importing.summary import ImportSummary
from labeler.progress import ProgressBar, TrainProgress

app = typer.Typer(
    help="Human-in-the-loop BI-RADS labeling of breast ultrasound.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
models_app = typer.Typer(
    help="Registered model versions: list, promote, roll back.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "tests" / "data"


class DatasetName(StrEnum):
    folder = "folder"
    busbra = "busbra"
    breast_lesions_usg = "breast-lesions-usg"


def _ctx(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppContext)
    return obj


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code)


def _emit(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        for line in lines:
            typer.echo(line)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        raise _fail(f"invalid settings: {exc}") from None
    level = logging.DEBUG if verbose else getattr(logging, settings.log_level.upper(), logging.INFO)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
    ctx.obj = AppContext(settings)


@app.command()
def init(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create LABELER_HOME and bring the database schema up to date."""
    app_ctx = _ctx(ctx)
    revision = app_ctx.ensure_schema()
    data = {
        "home": str(app_ctx.settings.home),
        "db_url": make_url(app_ctx.settings.db_url).render_as_string(hide_password=True),
        "data_root": str(app_ctx.settings.data_root),
        "revision": revision,
    }
    _emit(data, as_json, [f"{k}: {v}" for k, v in data.items()])


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = "head") -> None:
    """Upgrade the schema (default: to the newest revision)."""
    app_ctx = _ctx(ctx)
    migrate.upgrade(app_ctx.engine, revision)
    typer.echo(f"database at {migrate.current_revision(app_ctx.engine)}")


@db_app.command("downgrade")
def db_downgrade(ctx: typer.Context, revision: str) -> None:
    """Downgrade the schema to REVISION ('base' drops every table: data is lost)."""
    app_ctx = _ctx(ctx)
    migrate.downgrade(app_ctx.engine, revision)
    typer.echo(f"database at {migrate.current_revision(app_ctx.engine) or 'base'}")


@db_app.command("current")
def db_current(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the schema revision of the database and the newest one this code knows."""
    app_ctx = _ctx(ctx)
    data = {"current": migrate.current_revision(app_ctx.engine), "head": migrate.head_revision()}
    _emit(data, as_json, [f"current: {data['current'] or 'none'}", f"head: {data['head']}"])


@app.command("import")
def import_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A folder (or file) under LABELER_DATA_ROOT.")],
    dataset: Annotated[
        DatasetName, typer.Option(help="How to read PATH: plain images or a known dataset.")
    ] = DatasetName.folder,
    workers: Annotated[int | None, typer.Option(min=1, help="Conversion processes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import PNG/JPEG/DICOM images (DICOM de-identified) with their dataset's labels.

    Exit code 0: all files imported or already present; 1: some files failed (the rest were
    imported, see errors); 2: nothing imported (bad path, outside the data root, wrong layout).
    """
    app_ctx = _ctx(ctx)
    if workers is not None:
        app_ctx.settings.import_workers = workers
    summary = _import(app_ctx, path, dataset)
    _emit(summary.to_dict(), as_json, _summary_lines(summary))
    if summary.errors:
        raise typer.Exit(1)


def _import(app_ctx: AppContext, path: Path, dataset: DatasetName) -> ImportSummary:
    app_ctx.ensure_schema()
    try:
        with ProgressBar(f"import {dataset.value}") as bar:
            return run_import(
                path,
                dataset=dataset.value,
                settings=app_ctx.settings,
                sessions=app_ctx.sessions,
                progress=bar,
            )
    except (OutsideDataRootError, DatasetLayoutError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None


def _summary_lines(s: ImportSummary) -> list[str]:
    d = s.to_dict()
    lines = [
        f"{d['dataset']}: {d['images']} images ({d['added']} added, "
        f"{d['already_present']} already present) in {d['seconds']} s",
        f"  BI-RADS: {d['birads'] or '-'}   pathology: {d['pathology'] or '-'}",
        f"  splits: {d['splits'] or '-'}   unlabeled: {d['unlabeled']}",
    ]
    if s.dicom_deidentified:
        lines.append(
            f"  DICOM de-identified: {s.dicom_deidentified}, "
            f"burned-in annotation: {d['dicom']['burned_in_annotation']}"
        )
    lines += [f"  warning: {w}" for w in s.warnings]
    lines += [f"  error: {e}" for e in s.errors]
    return lines


@app.command()
def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """What the database holds: images per dataset, split, BI-RADS and pathology."""
    app_ctx = _ctx(ctx)
    try:
        app_ctx.require_schema()
    except DatabaseNotReadyError as exc:
        raise _fail(str(exc)) from None
    with app_ctx.sessions() as session:
        counts = queries.image_counts(session)
    data = {
        "images": counts.total,
        "patients": counts.patients,
        "datasets": counts.by_dataset,
        "splits": counts.by_split,
        "birads": counts.by_birads,
        "pathology": counts.by_pathology,
    }
    _emit(data, as_json, [f"{k}: {v}" for k, v in data.items()])


@app.command()
def demo(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Set up a working database from the bundled real sample (safe to run again)."""
    app_ctx = _ctx(ctx)
    samples = [
        (SAMPLE_DIR / "busbra_mini", DatasetName.busbra),
        (SAMPLE_DIR / "breast_lesions_usg_mini", DatasetName.breast_lesions_usg),
    ]
    results = []
    for folder, dataset in samples:
        if not folder.is_dir():
            raise _fail(
                f"bundled sample {folder} is missing: run from a checkout of the repository"
            )
        summary = _import(app_ctx, folder, dataset)
        results.append(summary.to_dict())
        if not as_json:
            typer.echo("\n".join(_summary_lines(summary)))
    data = {"home": str(app_ctx.settings.home), "imports": results}
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(f"\nready: database and PNGs under {app_ctx.settings.home}")
        typer.echo("next: `labeler status` shows what is in the database")
    if any(r["errors"] for r in results):
        raise typer.Exit(1)


class ConfigName(StrEnum):
    small = "small"
    r101_800 = "r101-800"


class SplitName(StrEnum):
    train = "train"
    val = "val"
    test = "test"


@app.command()
def train(
    ctx: typer.Context,
    config: Annotated[ConfigName, typer.Option(help="Detector preset.")] = ConfigName.small,
    exclude_birads: Annotated[
        str | None, typer.Option(help="'4': train without BI-RADS 4 (the 4A/4B splitter).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the preset.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the last unfinished run.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a detector on the train split and register it; prints the new version id."""
    from labeler.jobs.train import NoTrainingDataError, make_config, train_detector
    from ml_backend.training.engine import NonFiniteLossError

    if exclude_birads not in (None, "4"):
        raise _fail(f"--exclude-birads only takes 4 (got {exclude_birads!r})")
    app_ctx = _ctx(ctx)
    app_ctx.ensure_schema()
    cfg = make_config(config.value, exclude_4=exclude_birads == "4", epochs=epochs)
    try:
        with TrainProgress() as hooks:
            out = train_detector(
                app_ctx, config=cfg, exclude_4=exclude_birads == "4", resume=resume, hooks=hooks
            )
    except (NoTrainingDataError, NonFiniteLossError, ValueError) as exc:
        raise _fail(str(exc), code=1) from None
    data = dataclasses.asdict(out)
    _emit(
        data,
        as_json,
        [out.version_id] + ([f"promoted: {out.kind} now serves it"] if out.promoted else []),
    )


@app.command()
def evaluate(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="Version id (default: active detector).")
    ] = None,
    split: Annotated[SplitName, typer.Option(help="Patient-disjoint split.")] = SplitName.test,
    as_json: JsonOpt = False,
) -> None:
    """Score a model on a split (Tables I-III, COCO mAP) and store it in the database."""
    from db.models import Split
    from labeler.jobs.evaluate import evaluate_version
    from ml_backend.registry import RegistryError

    app_ctx = _ctx(ctx)
    app_ctx.ensure_schema()
    try:
        with ProgressBar(f"evaluate {split.value}") as bar:
            result = evaluate_version(
                app_ctx,
                version_id=model,
                split=Split(split.value),
                start=bar.start,
                advance=bar.advance,
            )
    except (LookupError, RegistryError) as exc:
        raise _fail(str(exc)) from None
    m = result["metrics"]
    lines = [
        f"{result['model']} on {result['split']} ({m['n_images']} images)",
        f"  mAP@0.5 {m['map50']}  mAP@[.5:.95] {m['map50_95']}  lesion recall@0.5 "
        f"{m['lesion_recall50']}  FP/image {m['fp_per_image']}",
        f"  screening ACC {(m['screening'].get('ACC') or {}).get('value')}  AUC "
        f"{m['screening'].get('auc')}  (plain 4 counted as {m['screening']['plain_4_counted_as']})",
    ]
    _emit(result, as_json, lines)


@app.command()
def predict(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="Version id (default: active detector).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pre-label every image that has no prediction from the model yet (resumable)."""
    from labeler.jobs.predict import predict_pool
    from ml_backend.registry import RegistryError

    app_ctx = _ctx(ctx)
    app_ctx.ensure_schema()
    try:
        with ProgressBar("pre-label") as bar:
            summary = predict_pool(app_ctx, version_id=model, start=bar.start, advance=bar.advance)
    except (LookupError, RegistryError) as exc:
        raise _fail(str(exc)) from None
    data = dataclasses.asdict(summary)
    _emit(
        data,
        as_json,
        [
            f"{summary.model}: {summary.predicted} images pre-labeled, "
            f"{summary.already_predicted} already were"
        ],
    )


def _registry(app_ctx: AppContext) -> Any:
    from ml_backend.registry import ModelRegistry

    app_ctx.ensure_schema()
    return ModelRegistry.for_settings(app_ctx.settings, app_ctx.sessions)


def _version_dict(v: Any) -> dict[str, Any]:
    return {
        "id": v.id,
        "kind": v.kind,
        "active": v.active,
        "parent": v.parent_id,
        "label_space": list(v.label_space),
        "created_at": str(v.created_at),
        "metrics": v.metrics,
    }


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="detector or detector_no4")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Registered versions, newest first; * marks the active one of its kind."""
    versions = [_version_dict(v) for v in _registry(_ctx(ctx)).list_versions(kind)]
    lines = [
        f"{'*' if v['active'] else ' '} {v['id']}  {v['kind']}  {v['created_at']}" for v in versions
    ]
    _emit({"versions": versions}, as_json, lines or ["no models yet: `labeler train`"])


@models_app.command("promote")
def models_promote(ctx: typer.Context, version: str, as_json: JsonOpt = False) -> None:
    """Make VERSION the active model of its kind."""
    from ml_backend.registry import RegistryError

    try:
        v = _registry(_ctx(ctx)).promote(version, actor="labeler models promote")
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    _emit(_version_dict(v), as_json, [f"active {v.kind}: {v.id}"])


@models_app.command("rollback")
def models_rollback(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help="detector or detector_no4")] = "detector",
    as_json: JsonOpt = False,
) -> None:
    """Move the active pointer back to the version that served before."""
    from ml_backend.registry import RegistryError

    try:
        v = _registry(_ctx(ctx)).rollback(kind, actor="labeler models rollback")
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    _emit(_version_dict(v), as_json, [f"active {v.kind}: {v.id}"])

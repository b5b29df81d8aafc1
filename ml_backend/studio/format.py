"""Label config, prediction regions and annotation parsing: Label Studio JSON <-> our records.

Readers see one rectangle per lesion labeled "BI-RADS <category>", a required review choice
(pre-label correct / corrected / reject, hotkeys 1-3) and an optional pathology choice. An image
with no box reads as BI-RADS 1. A read-only text area shows the similar confirmed lesions the
backend attaches when a lesion encoder is active (ml_backend/studio/similar.py); annotations
never read it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar
from xml.sax.saxutils import quoteattr

from label_studio_sdk.label_interface.interface import LabelInterface

from core.birads import Birads, Pathology, UnknownBiradsError, parse_birads
from core.errors import BadInputError
from core.settings import Settings
from db.models import Verdict
from db.schemas import BoxRecord
from ml_backend.prelabel.category import ShownBoxes, most_suspicious
from ml_backend.studio.boxes import PercentRect, to_percent, to_pixels
from ml_backend.studio.schema import (
    BOXES,
    IMAGE,
    PATHOLOGY,
    REVIEW,
    SIMILAR,
    MalignancyPayload,
    Prediction,
    RectangleRegion,
    RectangleValue,
)

__all__ = ["BOXES", "IMAGE", "PATHOLOGY", "REVIEW", "SIMILAR"]  # re-exported control names

REVIEW_CHOICES: dict[str, Verdict] = {
    "Pre-label correct": Verdict.ACCEPT,
    "Corrected": Verdict.CORRECT,
    "Reject": Verdict.REJECT,
}
_COLOURS = {
    Birads.B1: "#8bc34a",
    Birads.B2: "#4caf50",
    Birads.B3: "#ffc107",
    Birads.B4: "#ff9800",
    Birads.B4A: "#ff9800",
    Birads.B4B: "#ff5722",
    Birads.B4C: "#f44336",
    Birads.B5: "#b71c1c",
}
T = TypeVar("T")
CATEGORIES: tuple[Birads, ...] = tuple(Birads)
"""Every category a pre-label or a reader can carry, plain "4" included, always.

A detector trained on the five-way space (core.birads.FIVE_WAY_SPACE, as BUS-BRA labels) predicts
plain 4; without a "BI-RADS 4" label Label Studio drops those regions ("Prediction validation
failed") and readers see boxes with no label. The config is fixed rather than derived from the
active models: one config for every project and every model swap (no config change when a
BI-RADS-4 splitter is activated or retired, which Label Studio may refuse once annotations use a
label), `labeler studio config` needs no database, and a reader may mark a lesion 4 when the
subcategory cannot be judged. Consensus and the dashboards read plain 4 as BI-RADS 4.
"""


class StudioFormatError(BadInputError):
    """An annotation or task Label Studio sent that does not fit our label config."""


@dataclass(frozen=True)
class StudioAnnotation:
    """One reader's annotation, in pixels, as the consensus rules need it."""

    boxes: tuple[BoxRecord, ...]
    verdict: Verdict | None
    pathology: Pathology | None

    @property
    def image_birads(self) -> Birads:
        return image_birads(self.boxes)


def label_name(category: Birads) -> str:
    return f"BI-RADS {category.value}"


@cache
def label_config() -> str:
    """The project's labeling interface (Label Studio XML), checked by Label Studio's own
    parser once per process: a config Label Studio would refuse never leaves here."""
    config = _label_config_xml()
    label_interface(config).validate()  # type: ignore[no-untyped-call]
    return config


def label_interface(config: str | None = None) -> LabelInterface:
    """Label Studio's reading of a label config (ours by default): controls, labels, and the
    validation of regions against them."""
    return LabelInterface(config if config is not None else label_config())


def prediction_errors(prediction: Prediction, config: str | None = None) -> list[str]:
    """What Label Studio finds wrong with a prediction under a label config (ours by default);
    empty when it would accept it."""
    found = label_interface(config).validate_prediction(prediction.body(), return_errors=True)  # type: ignore[no-untyped-call]
    return [str(e) for e in found or ()]


def _label_config_xml() -> str:
    labels = "\n".join(
        f"        <Label value={quoteattr(label_name(c))} background={quoteattr(_COLOURS[c])}/>"
        for c in CATEGORIES
    )
    reviews = "\n".join(
        f'        <Choice value={quoteattr(name)} hotkey="{i}"/>'
        for i, name in enumerate(REVIEW_CHOICES, start=1)
    )
    pathologies = "\n".join(f"        <Choice value={quoteattr(p.value)}/>" for p in Pathology)
    return f"""<View>
  <Style>
    .birads-similar form, .birads-similar textarea, .birads-similar button {{ display: none; }}
  </Style>
  <View style="display: flex; align-items: flex-start; gap: 16px;">
    <View style="flex: 1 1 auto; min-width: 0;">
      <Image name="{IMAGE}" value="$image" zoom="true"/>
      <RectangleLabels name="{BOXES}" toName="{IMAGE}" canRotate="false" strokeWidth="2">
{labels}
      </RectangleLabels>
    </View>
    <View style="flex: 0 0 280px;">
      <Header value="Pre-label review"/>
      <Choices name="{REVIEW}" toName="{IMAGE}" choice="single-radio" required="true">
{reviews}
      </Choices>
      <Header value="Pathology (if known)"/>
      <Choices name="{PATHOLOGY}" toName="{IMAGE}" choice="single-radio">
{pathologies}
      </Choices>
      <View className="birads-similar">
        <Header value="Similar confirmed lesions (lesion encoder)"/>
        <TextArea name="{SIMILAR}" toName="{IMAGE}" editable="false" maxSubmissions="1"
          showSubmitButton="false" rows="2"/>
      </View>
    </View>
  </View>
</View>"""


def prelabel_rule(settings: Settings) -> ShownBoxes:
    """The boxes readers are shown (prelabel.category.ShownBoxes); consensus judges them."""
    return ShownBoxes.from_settings(settings)


def image_birads(boxes: Sequence[BoxRecord]) -> Birads:
    """The most suspicious box decides; no box is BI-RADS 1."""
    return most_suspicious(b.birads for b in boxes if b.birads is not None)  # prelabel.category


def prediction_regions(
    boxes: Sequence[BoxRecord], *, width: int, height: int, rule: ShownBoxes
) -> list[RectangleRegion]:
    """Rectangle regions for a prediction, each with its own score."""
    regions = []
    for i, box in enumerate(rule.pick(boxes)):
        assert box.birads is not None
        rect = to_percent(box.xyxy, width=width, height=height)
        regions.append(
            RectangleRegion(
                id=f"p{i}",
                original_width=width,
                original_height=height,
                value=RectangleValue(**rect, rectanglelabels=[label_name(box.birads)]),
                score=round(float(box.score), 4) if box.score is not None else None,
            )
        )
    return regions


def shown_probability(boxes: Sequence[BoxRecord], rule: ShownBoxes) -> float | None:
    """The image's P(malignant) as the pre-label pipeline stored it: the grader's (calibrated)
    probability of the top shown box, which is the image's (prelabel.category). None when no
    box is shown or the boxes predate the grader's probability (migration 0008)."""
    shown = rule.pick(boxes)
    return shown[0].malignancy if shown else None


def prediction_payload(
    boxes: Sequence[BoxRecord],
    *,
    width: int,
    height: int,
    model_version: str,
    rule: ShownBoxes,
) -> Prediction:
    """One prediction as /predict returns it and as the bulk push sends it.

    The score Label Studio shows is `shown_probability`, the calibrated P(malignant) a reader
    may read as such; it is never the active-learning queue position (that is task data, see
    labeler.studio.push.queue_order). No shown box: no score.
    """
    score = shown_probability(boxes, rule)
    graded = [b.malignancy for b in rule.pick(boxes)]
    return Prediction(
        result=list(prediction_regions(boxes, width=width, height=height, rule=rule)),
        score=round(score, 4) if score is not None else None,
        model_version=model_version,
        malignancy=(
            MalignancyPayload(image=score, boxes=graded)
            if any(p is not None for p in graded)
            else None
        ),
    )


def parse_annotation(result: object, *, width: int, height: int) -> StudioAnnotation:
    """Read boxes, the review choice and pathology from an annotation's `result` list.

    `result` may be any JSON (it comes from outside): anything that does not fit our label
    config raises StudioFormatError, never another exception.
    """
    if not isinstance(result, list):
        raise StudioFormatError(f"result must be a list of regions, got {_kind(result)}")
    boxes: list[BoxRecord] = []
    verdict: Verdict | None = None
    pathology: Pathology | None = None
    for region in result:
        if not isinstance(region, dict):
            raise StudioFormatError(f"a region must be an object, got {_kind(region)}")
        name, value = region.get("from_name"), region.get("value")
        value = {} if value is None else value
        if not isinstance(value, dict):
            raise StudioFormatError(f"a region's value must be an object, got {_kind(value)}")
        if name == BOXES:
            boxes.append(_box(value, region, width=width, height=height))
        elif name == REVIEW:
            verdict = _choice(value, REVIEW_CHOICES, REVIEW)
        elif name == PATHOLOGY:
            pathology = _choice(value, {p.value: p for p in Pathology}, PATHOLOGY)
    return StudioAnnotation(tuple(boxes), verdict, pathology)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _box(value: dict[str, Any], region: dict[str, Any], *, width: int, height: int) -> BoxRecord:
    labels = value.get("rectanglelabels")
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        raise StudioFormatError(f"a box needs exactly one BI-RADS label, got {_short(labels)}")
    try:
        category = parse_birads(labels[0])
    except UnknownBiradsError as exc:
        raise StudioFormatError(_ascii(str(exc), 200)) from exc
    rect = PercentRect(
        x=_number(value, "x"),
        y=_number(value, "y"),
        width=_number(value, "width"),
        height=_number(value, "height"),
        rotation=_number(value, "rotation", 0.0),
    )
    w = _size(region, "original_width", width)
    h = _size(region, "original_height", height)
    try:
        return BoxRecord(xyxy=to_pixels(rect, width=w, height=h), birads=category)
    except ValueError as exc:  # rotated, or not x0 <= x1 (negative width or height)
        raise StudioFormatError(f"malformed rectangle: {_ascii(str(exc), 200)}") from exc


def _number(value: dict[str, Any], key: str, default: float | None = None) -> float:
    raw = value.get(key, default)
    if isinstance(raw, int | float) and not isinstance(raw, bool) and -1e6 <= raw <= 1e6:
        return float(raw)  # NaN and the infinities fail the range check
    raise StudioFormatError(f"malformed rectangle: {key} must be a finite percentage")


def _size(region: dict[str, Any], key: str, default: int) -> int:
    raw = region.get(key)
    if raw is None:
        return default
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 < raw <= 1_000_000:
        raise StudioFormatError(f"malformed region: {key} must be a positive pixel count")
    return raw


def _choice(value: dict[str, Any], options: dict[str, T], name: str) -> T:
    chosen = value.get("choices")
    if not isinstance(chosen, list) or len(chosen) != 1 or not isinstance(chosen[0], str):
        raise StudioFormatError(f"{name}: expected one of {sorted(options)}, got {_short(chosen)}")
    if chosen[0] not in options:
        raise StudioFormatError(
            f"{name}: expected one of {sorted(options)}, got {_short(chosen[0])}"
        )
    return options[chosen[0]]


def _short(value: object) -> str:
    """An outside value in a message: a short string quoted, anything else by its kind only
    (never the repr of a nested structure of unknown depth and size)."""
    if isinstance(value, str):
        return _ascii(repr(value[:60]), 80)
    if isinstance(value, list) and all(isinstance(v, str) for v in value[:5]) and len(value) < 5:
        return _ascii(repr([v[:60] for v in value]), 200)
    return f"a list of {len(value)} items" if isinstance(value, list) else _kind(value)


def _ascii(text: str, limit: int) -> str:
    """ASCII only (a lone surrogate cannot reach a log or a database) and bounded."""
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."

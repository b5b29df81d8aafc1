"""The reader's line of similar lesions, and the label config's read-only TextArea."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from core.birads import Birads, Pathology
from db.lesion_boxes import BoxOrigin
from ml_backend.encoder.index import IndexRow, Match
from ml_backend.studio.format import label_config
from ml_backend.studio.similar import declares_similar, similar_region, similar_text

BOX = (0.0, 0.0, 10.0, 10.0)
MATCHES = (
    Match(
        1,
        IndexRow(
            12, BOX, BoxOrigin.REFERENCE, Birads.B4, Pathology.MALIGNANT, source_id="bus_0001-r"
        ),
        0.051,
        True,
    ),
    Match(2, IndexRow(30, BOX, BoxOrigin.ACCEPTED, Birads.B4A, None), 0.1234, False),
)


def test_text_names_image_category_pathology_and_distance() -> None:
    assert similar_text(MATCHES) == (
        "Similar confirmed lesions: #12 bus_0001-r (same lesion, other view) BI-RADS 4 "
        "malignant d=0.051; #30 BI-RADS 4A d=0.123"
    )
    assert similar_text(()) == "Similar confirmed lesions: none indexed yet."


def test_region_is_readonly_text_with_machine_readable_meta() -> None:
    region = similar_region(MATCHES, encoder_version="encoder-1").body()
    assert region["type"] == "textarea" and region["readonly"] is True
    assert region["meta"]["encoder_version"] == "encoder-1"
    assert [
        (m["image_id"], m["birads"], m["pathology"], m["distance"])
        for m in region["meta"]["matches"]
    ] == [
        (12, "4", "malignant", 0.051),
        (30, "4A", None, 0.1234),
    ]


def test_only_a_config_with_the_text_area_declares_it() -> None:
    config = label_config()
    area = ET.fromstring(config).find(".//TextArea")
    assert (
        area is not None and area.get("editable") == "false" and area.get("maxSubmissions") == "1"
    )
    assert declares_similar(config)
    assert not declares_similar(None) and not declares_similar("<View><oops")
    assert not declares_similar('<View><TextArea name="notes" toName="image"/></View>')

"""DICOM on the way in: de-identify (PS3.15 Annex E basic profile), then convert to 8-bit pixels.

Rules, applied recursively into sequences:
- by VR: person names (PN) emptied; dates and times (DA, DT, TM) emptied; ages (AS) removed;
  UIDs (UI) replaced by a salted, deterministic 2.25 UID, except DICOM's own class and transfer
  syntax UIDs (root 1.2.840.10008), so a study's structure survives but not its identity;
- by attribute: Table E.1-1's IDs, addresses, institution, station, serial numbers, free-text
  descriptions and comments (the `_REMOVE` and `_EMPTY` sets below);
- private tags, overlays (60xx) and curves (50xx) removed.
Burned-in text cannot be removed from the header: BurnedInAnnotation is reported for review.
Nothing here logs or raises with a header value in the message.
"""

from __future__ import annotations

import hashlib
import hmac
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut

from labeler.importing.rasters import (
    Pixels,
    UnreadableImageError,
    check_pixels,
    collapse_gray,
    scale_to_uint8,
)

METHOD = "DICOM PS3.15 E.1 Basic Profile (birads-labeler)"  # VR LO: <= 64 chars
_STANDARD_UID_ROOT = "1.2.840.10008."

_EMPTY = {  # type-2 attributes: keep the element, drop the value (action Z)
    "PatientID",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
}
_REMOVE = {  # action X
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientBirthTime",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "MilitaryRank",
    "BranchOfService",
    "MedicalRecordLocator",
    "EthnicGroup",
    "Occupation",
    "AdditionalPatientHistory",
    "PatientComments",
    "PatientReligiousPreference",
    "ResponsiblePerson",
    "ResponsibleOrganization",
    "CountryOfResidence",
    "RegionOfResidence",
    "IssuerOfPatientID",
    "PatientInsurancePlanCodeSequence",
    "PregnancyStatus",
    "MedicalAlerts",
    "Allergies",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "InstitutionCodeSequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecordIdentificationSequence",
    "PerformingPhysicianIdentificationSequence",
    "OperatorIdentificationSequence",
    "RequestingPhysician",
    "RequestingService",
    "StationName",
    "DeviceSerialNumber",
    "DetectorID",
    "ImageComments",
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "DerivationDescription",
    "RequestAttributesSequence",
    "ReferencedPatientSequence",
    "ScheduledProcedureStepDescription",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepID",
    "PerformedLocation",
    "AdmissionID",
    "CurrentPatientLocation",
    "PatientState",
    "ContentSequence",
    "FrameComments",
    "SourceApplicationEntityTitle",
    "TextString",
    "TextComments",
    "DigitalSignaturesSequence",
}


@dataclass
class DicomImage:
    pixels: Pixels
    patient_key: str | None
    view: str | None
    modality: str | None
    device: str | None
    burned_in_annotation: bool | None
    warnings: list[str] = field(default_factory=list)


def read_dicom(path: Path, *, salt: bytes, max_pixels: int) -> DicomImage:
    """Read, de-identify, convert. Raises UnreadableImageError with a value-free message.

    The pixel data is read lazily (defer_size), so Rows x Columns is checked against the limit
    before a byte of it is decoded; only the first frame of a cine loop is ever decoded.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warnings may quote header values
        try:
            ds = pydicom.dcmread(path, defer_size="256 KB")
        except InvalidDicomError:
            raise UnreadableImageError("not a DICOM file (no DICM preamble)") from None
        except Exception as exc:
            raise UnreadableImageError(f"cannot parse DICOM ({type(exc).__name__})") from None
        check_pixels(_int(ds.get("Columns")), _int(ds.get("Rows")), limit=max_pixels)
        patient_key = patient_key_for(str(ds.get("PatientID", "") or ""), salt=salt)
        deidentify(ds, salt=salt)
        pixels, notes = dicom_pixels(ds)
    return DicomImage(
        pixels=pixels,
        patient_key=patient_key,
        view=_laterality(ds),
        modality=str(ds.get("Modality", "")) or None,
        device=" ".join(
            str(ds.get(k, "")) for k in ("Manufacturer", "ManufacturerModelName") if ds.get(k)
        )
        or None,
        burned_in_annotation=_yes_no(ds.get("BurnedInAnnotation")),
        warnings=notes,
    )


def patient_key_for(patient_id: str, *, salt: bytes) -> str | None:
    """A salted hash: views of one patient stay together, the PatientID never leaves this call."""
    if not patient_id.strip():
        return None
    digest = hmac.new(salt, patient_id.strip().encode(), hashlib.sha256).hexdigest()
    return f"pt-{digest[:24]}"


def deidentify(ds: Dataset, *, salt: bytes) -> None:
    """Apply the basic profile in place and mark the dataset as de-identified."""
    ds.remove_private_tags()
    _scrub(ds, salt)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        if "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = _new_uid(str(meta.MediaStorageSOPInstanceUID), salt)
        if "SourceApplicationEntityTitle" in meta:
            del meta.SourceApplicationEntityTitle
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = [code]


def _scrub(ds: Dataset, salt: bytes) -> None:
    for elem in list(ds):
        group = elem.tag.group
        if (
            ((0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF) and group % 2 == 0)
            or elem.keyword in _REMOVE
            or elem.VR == "AS"
        ):
            del ds[elem.tag]
        elif elem.keyword in _EMPTY or elem.VR in ("PN", "DA", "DT", "TM"):
            elem.value = None
        elif elem.VR == "UI" and elem.value:
            elem.value = _map_uids(elem.value, salt)
        elif elem.VR == "SQ":
            for item in elem.value:
                _scrub(item, salt)


def _map_uids(value: Any, salt: bytes) -> Any:
    if isinstance(value, MultiValue | list):
        return [_new_uid(str(v), salt) for v in value]
    return _new_uid(str(value), salt)


def _new_uid(uid: str, salt: bytes) -> str:
    if uid.startswith(_STANDARD_UID_ROOT):
        return uid
    digest = hmac.new(salt, uid.encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def dicom_pixels(ds: Dataset) -> tuple[Pixels, list[str]]:
    """Pixels as displayed: modality and VOI LUTs applied, MONOCHROME1 inverted, first frame."""
    if "PixelData" not in ds:
        raise UnreadableImageError("DICOM has no pixel data")
    try:
        ds.pixel_array_options(index=0)  # the first frame only, however many there are
        arr = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise UnreadableImageError(
            f"cannot decode DICOM pixel data (transfer syntax {syntax}, {type(exc).__name__})"
        ) from None
    notes: list[str] = []
    frames = _int(ds.get("NumberOfFrames", 1)) or 1
    if frames > 1:
        notes.append(f"multi-frame DICOM ({frames} frames): imported the first frame")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    elif int(ds.get("SamplesPerPixel", 1)) == 1:
        arr = apply_voi_lut(apply_modality_lut(arr, ds), ds)
    if arr.dtype != np.uint8:
        arr = scale_to_uint8(np.asarray(arr, dtype=np.float64))
    if photometric == "MONOCHROME1":
        arr = 255 - arr
    return collapse_gray(np.ascontiguousarray(arr)), notes


def _int(value: Any) -> int:
    """A header integer (IS/US); anything unreadable counts as 0."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _laterality(ds: Dataset) -> str | None:
    side = str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or "").upper()
    return {"L": "left", "R": "right", "B": "both"}.get(side)


def _yes_no(value: Any) -> bool | None:
    text = str(value or "").strip().upper()
    return True if text == "YES" else False if text == "NO" else None

"""Build real DICOM files with identifiers in every place they hide, for de-identification tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid


@dataclass(frozen=True)
class Identity:
    name: str = "DOE^JANE^Q"
    patient_id: str = "MRN-5550123"
    birth_date: str = "19610203"
    institution: str = "St Example Hospital"
    address: str = "1 Secret Road Springfield"
    accession: str = "ACC998877"
    physician: str = "HOUSE^GREGORY"

    def secrets(self) -> list[str]:
        return [
            self.name,
            self.name.split("^")[0],
            self.patient_id,
            self.birth_date,
            self.institution,
            self.address,
            self.accession,
            self.physician.split("^")[0],
        ]


def make_dicom(
    path: Path,
    who: Identity,
    *,
    photometric: str = "MONOCHROME2",
    burned_in: str | None = "YES",
    rows: int = 48,
    cols: int = 64,
) -> list[str]:
    """Write a 12-bit ultrasound DICOM; return the identifying strings and UIDs it contains."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = who.name, who.patient_id, who.birth_date
    ds.PatientAddress, ds.InstitutionName = who.address, who.institution
    ds.InstitutionAddress, ds.AccessionNumber = who.address, who.accession
    ds.ReferringPhysicianName, ds.StudyDate, ds.StudyTime = who.physician, "20240102", "101500"
    ds.OtherPatientIDs, ds.PatientAge = who.patient_id + "-B", "063Y"
    ds.Modality, ds.Manufacturer, ds.ImageLaterality = "US", "Acme Medical", "L"
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    nested = Dataset()
    nested.PersonName = who.name
    nested.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ds.ReferencedImageSequence = [nested]
    ds.private_block(0x0009, "ACME 1.0", create=True).add_new(0x01, "LO", who.name)
    gradient = np.linspace(100, 3000, rows * cols).reshape(rows, cols).astype(np.uint16)
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PhotometricInterpretation = photometric
    ds.PixelData = gradient.tobytes()
    ds.save_as(path, enforce_file_format=True)
    uids = [str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)]
    return who.secrets() + uids

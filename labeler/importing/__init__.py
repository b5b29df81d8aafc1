"""Import: source images (PNG/JPEG/DICOM, public datasets) -> de-identified 8-bit PNGs + db rows."""

"""README.TXT, the first entry of every ZIP (IHE PDI style): one template, three kinds of ZIP.

Nothing in it comes from patient data or from the client's headers. Every variable part is a
validated UID, a validated transfer syntax or media type, a count, or the proxy's public
address (:func:`~zipproxy.forwarding.public_base`: never the upstream's internal URL), so
neither CR/LF nor quotes can be injected. Lines end in CR LF (it is opened on Windows too).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from . import __version__
from .negotiation import ZipRequest
from .routes import Resource, Search

DICOM_ZIP: Final = ("DICOM ZIP file-set (PS3.12 Annex V), written by zipproxy following DICOM "
                    "Supplement 211.")
LAYOUT: Final = ("Instances are under DICOM/ as STnnnnnn/SEnnnnnn/IMnnnnnn (study, series, "
                 "instance).")
CONFIDENTIAL: Final = ("This archive contains medical images: keep it as confidential as the "
                       "images themselves.")
ENCRYPTED_NOTE: Final = (
    "Every entry except this README is encrypted with AES-256 (WinZip AE-2). Open it with",
    "7-Zip, WinZip, Keka or The Unarchiver and the password you chose when downloading;",
    "Windows Explorer and macOS Archive Utility cannot open AES-encrypted ZIP files.",
    "",
)


def compose(intro: Sequence[str], fields: Sequence[tuple[str, str]] = (),
            encrypted: bool = False) -> bytes:
    """The template: what the ZIP is, the fields (aligned ``Name:   value`` lines), the
    confidentiality line, and how to open it when it is encrypted."""
    lines = [*intro, ""]
    if fields:
        lines += [f"{name + ':':<17}{value}" for name, value in fields] + [""]
    lines += [CONFIDENTIAL, ""]
    if encrypted:
        lines += ENCRYPTED_NOTE
    return "\r\n".join(lines).encode("ascii", "replace")


def _made() -> list[tuple[str, str]]:
    return [("Created (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")),
            ("Software", f"zipproxy {__version__}")]


def for_resource(resource: Resource, zipreq: ZipRequest, origin: str,
                 encrypted: bool = False) -> bytes:
    """A study, series or instance retrieved as a DICOM ZIP."""
    ts = {None: "upstream default (Explicit VR Little Endian per PS3.18)",
          "*": "as stored by the upstream"}.get(zipreq.transfer_syntax, zipreq.transfer_syntax)
    intro = [
        DICOM_ZIP,
        "",
        "DICOMDIR (the last entry) is the index of every DICOM instance in this archive; the",
        "instances are under DICOM/ as STnnnnnn/SEnnnnnn/IMnnnnnn (study, series, instance).",
        "Open it with any DICOM viewer that reads DICOMDIR or media (Weasis, Horos, OsiriX,",
        "RadiAnt, 3D Slicer, pydicom.fileset), after extracting the archive.",
    ]
    fields = [("Source server", origin),
              ("Resource", f"{resource.level} {'/'.join(resource.uids)}"),
              ("Transfer syntax", str(ts)),
              *_made(),
              ("Counts", "in the ZIP archive comment and in DICOMDIR.")]
    return compose(intro, fields, encrypted)


def for_collection(search: Search, count: int, encrypted: bool = False) -> bytes:
    """The studies (or the series of one study) a search found, in one DICOM ZIP."""
    what = f"{count} series of study {search.study}" if search.study else f"{count} studies"
    intro = [
        DICOM_ZIP,
        "",
        f"A collection: {what} found by a QIDO-RS search, retrieved one after another.",
        "DICOMDIR (the last entry) indexes every instance; MANIFEST.CSV, when present, lists",
        "each with its checksum (CRC-32 by default, SHA-256 when asked for).",
        LAYOUT,
    ]
    return compose(intro, encrypted=encrypted)


def for_rendered(level: str, uids: Sequence[str], media_type: str, origin: str,
                 encrypted: bool = False) -> bytes:
    """The upstream's renderings of a study or series: pictures, not DICOM data."""
    intro = [
        f"Rendered images ({media_type}) of a DICOM {level}, written by zipproxy: the",
        "source server's renderings (PS3.18 10.4.1.1.3), pictures for viewing, not DICOM data.",
        "IMAGES/STnnnnnn/SEnnnnnn/IMnnnnnn: study, series, instance (_Fnnnn: frame).",
        "MANIFEST.CSV: one row per instance or frame with UIDs, size, SHA-256 and the server's",
        "status; a row with an empty path was not rendered (reports, key objects, PDFs...).",
    ]
    fields = [("Source server", origin), ("Resource", f"{level} {'/'.join(uids)}"), *_made()]
    return compose(intro, fields, encrypted)

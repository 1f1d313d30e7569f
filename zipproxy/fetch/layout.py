"""``--layout``: where ``--extract`` puts each instance, from a template of DICOM keywords.

``{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm`` is the default. The
placeholders are DICOM keywords (PS3.6) that are columns of MANIFEST.CSV; each value becomes
part of one path component, never a path of its own. Values come from the server (patient IDs
can hold anything), so every value is sanitised (:func:`component`), the template is checked
once at start (relative, no ``..``), and the final path is checked to stay inside DIR.
"""

from __future__ import annotations

import hashlib
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from pydicom.datadict import tag_for_keyword

from .errors import LayoutError, UsageError

DEFAULT_LAYOUT: Final = "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"
NAME_MAX: Final = 255  # bytes of one path component (Linux, macOS, Windows NTFS in UTF-16)
KEEP: Final = 200  # bytes kept of an over-long value; the rest is replaced by a hash
# Characters no value may bring into a path: separators, and those Windows refuses, so a
# cohort copied to another machine keeps its names.
_UNSAFE: Final = frozenset('/\\:*?"<>|')
RESERVED: Final = frozenset({".zipproxy", "cohort.csv"})  # the command's own names in DIR


def component(value: str) -> str:
    """A value as a safe part of one path component:

    1. control characters (NUL included), separators and ``:*?"<>|`` become ``_``;
    2. surrounding spaces and dots go, so no value is ``.``, ``..`` or a hidden file, and
       Windows' trailing-dot rule does not bite;
    3. an empty result is ``_``;
    4. a value over 200 UTF-8 bytes keeps its first 200 and a hash of the whole, so long
       distinct values stay distinct and every component stays under NAME_MAX."""
    text = "".join("_" if not ch.isprintable() or ch in _UNSAFE else ch for ch in value)
    text = text.strip(" .") or "_"
    raw = text.encode("utf-8")
    if len(raw) > KEEP:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        text = raw[:KEEP].decode("utf-8", "ignore") + "~" + digest
    return text


@dataclass(frozen=True)
class Layout:
    template: str
    fields: tuple[str, ...]

    def relative(self, row: Mapping[str, str]) -> str:
        """The POSIX path below DIR for one manifest row."""
        missing = [f for f in self.fields if f not in row]
        if missing:
            raise LayoutError(f"--layout uses {{{missing[0]}}}, which is not a MANIFEST.CSV "
                              f"column (columns: {', '.join(row)})")
        values = {f: component(row[f]) for f in self.fields}
        parts = PurePosixPath(self.template.format_map(values)).parts
        for part in parts:
            if len(part.encode("utf-8")) > NAME_MAX:
                raise LayoutError(f"--layout makes a path component over {NAME_MAX} bytes")
        if parts and parts[0] in RESERVED:
            raise LayoutError(f"--layout makes a path in {parts[0]}, which zipproxy fetch uses")
        return "/".join(parts)

    def place(self, root: Path, row: Mapping[str, str]) -> Path:
        """The absolute destination of a row, checked to be inside ``root``."""
        relative = self.relative(row)
        target = root / relative
        real_root = os.path.realpath(root)
        real_parent = os.path.realpath(target.parent)
        if os.path.commonpath([real_root, real_parent]) != real_root:
            raise LayoutError(f"--layout places {relative!r} outside DIR")
        return target


def parse_layout(template: str) -> Layout:
    """Check a template once, at start: keywords only, relative, no ``.``/``..`` parts."""
    fields: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(f"--layout: {exc}") from exc
    for literal, name, spec, conversion in parsed:
        if "\0" in literal:
            raise UsageError("--layout holds a NUL character")
        if name is None:
            continue
        if spec or conversion or not name.isidentifier() or tag_for_keyword(name) is None:
            raise UsageError(f"--layout: {{{name}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}} is not a plain DICOM keyword")
        fields.append(name)
    if not fields:
        raise UsageError("--layout needs at least one {Keyword}, e.g. {SOPInstanceUID}")
    skeleton = string.Formatter().vformat(template, (), dict.fromkeys(fields, "x"))
    if skeleton.startswith(("/", "\\")) or any(
            p in ("", ".", "..") for p in skeleton.replace("\\", "/").split("/")):
        raise UsageError("--layout must be a relative path without empty, '.' or '..' parts")
    return Layout(template, tuple(dict.fromkeys(fields)))

"""``--layout``: hostile values from the server never make a path that leaves DIR."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zipproxy.fetch.errors import LayoutError, UsageError
from zipproxy.fetch.layout import DEFAULT_LAYOUT, KEEP, NAME_MAX, component, parse_layout

ROW = {"PatientID": "P1", "StudyInstanceUID": "1.2.3", "SeriesInstanceUID": "1.2.3.4",
       "SOPInstanceUID": "1.2.3.4.5", "Modality": "CT", "path": "DICOM/ST000001/SE000001/IM000001"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("../../etc", "_.._etc"),
        ("..", "_"),
        (".", "_"),
        ("", "_"),
        ("   ", "_"),
        (".hidden", "hidden"),
        ("/etc/passwd", "_etc_passwd"),
        ("C:\\Windows", "C__Windows"),
        ("a\0b", "a_b"),
        ("line\nbreak\ttab", "line_break_tab"),
        ('q"u<o>t|e?s*', "q_u_o_t_e_s_"),
        ("Müller^Jürgen", "Müller^Jürgen"),
        ("山田^太郎", "山田^太郎"),
        ("trailing. ", "trailing"),
    ],
)
def test_component(value: str, expected: str) -> None:
    assert component(value) == expected


def test_long_values_are_cut_and_stay_distinct() -> None:
    a, b = "x" * 1000 + "a", "x" * 1000 + "b"
    assert component(a) != component(b)
    for value in (a, "é" * 300, "山" * 200):
        part = component(value)
        assert len(part.encode()) <= KEEP + 17 <= NAME_MAX
        assert part.encode().decode() == part  # not cut inside a character


def test_default_layout() -> None:
    layout = parse_layout(DEFAULT_LAYOUT)
    assert layout.relative(ROW) == "P1/1.2.3/1.2.3.4/1.2.3.4.5.dcm"


@pytest.mark.parametrize(
    "patient",
    ["../../../../tmp/evil", "/etc/cron.d/x", "..", "\0", ".zipproxy", "cohort.csv/..",
     "a/../../b", "x" * 5000],
)
def test_hostile_values_stay_inside(tmp_path: Path, patient: str) -> None:
    layout = parse_layout(DEFAULT_LAYOUT)
    target = layout.place(tmp_path, {**ROW, "PatientID": patient})
    resolved = Path(os.path.realpath(target))
    assert resolved.is_relative_to(os.path.realpath(tmp_path))
    relative = target.relative_to(tmp_path)
    assert len(relative.parts) == 4 and ".." not in relative.parts
    assert relative.parts[0] not in (".zipproxy", "cohort.csv")
    assert all(len(p.encode()) <= NAME_MAX and "\0" not in p for p in relative.parts)


def test_a_symlink_inside_dir_cannot_lead_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "P1").symlink_to(outside)
    with pytest.raises(LayoutError, match="outside DIR"):
        parse_layout(DEFAULT_LAYOUT).place(root, ROW)


def test_the_command_s_own_names_are_refused() -> None:
    for template in ("cohort.csv/{SOPInstanceUID}", ".zipproxy/{SOPInstanceUID}"):
        with pytest.raises(LayoutError, match="zipproxy fetch uses"):
            parse_layout(template).relative(ROW)
    # A value cannot reach them: its leading dot goes.
    layout = parse_layout("{Modality}/{SOPInstanceUID}")
    assert layout.relative({**ROW, "Modality": ".zipproxy"}) == "zipproxy/1.2.3.4.5"


def test_a_keyword_that_is_not_a_manifest_column() -> None:
    with pytest.raises(LayoutError, match=r"not a MANIFEST\.CSV column"):
        parse_layout("{AccessionNumber}/{SOPInstanceUID}").relative(ROW)


@pytest.mark.parametrize(
    "template",
    ["../{SOPInstanceUID}", "/abs/{SOPInstanceUID}", "\\\\server\\{SOPInstanceUID}",
     "a//{SOPInstanceUID}", "./{SOPInstanceUID}", "{SOPInstanceUID}/..", "no-keyword.dcm",
     "{NotAKeyword}", "{SOPInstanceUID:>10}", "{SOPInstanceUID!r}", "{0}", "{SOPInstanceUID",
     "a\0{SOPInstanceUID}"],
)
def test_bad_templates_fail_at_start(template: str) -> None:
    with pytest.raises(UsageError):
        parse_layout(template)

"""The sample generators make distinct UIDs (a collision once made a bench study abort)."""

from __future__ import annotations

from pathlib import Path

from zipproxy.demo.samples import make_bulk_study


def test_bulk_study_uids_are_unique(tmp_path: Path) -> None:
    info = make_bulk_study(tmp_path, 12, 12, 4, 4)
    sops = [i.sop_uid for i in info.instances]
    assert len(sops) == len(set(sops)) == 144
    assert len(set(info.series_uids)) == 12

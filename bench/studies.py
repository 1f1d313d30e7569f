"""The bench's studies: specs, generation (cached under the workdir) and upload to Orthanc.

- A: 4 series x 500 CT slices 512x512 16-bit (2,000 x 0.5 MiB, ~1 GiB)
- B: 10 multi-frame instances of 200 frames 512x512 16-bit (~100 MiB each, ~1 GiB)
- T500: 5 series x 100 tiny CT images 32x16 16-bit (~2 KiB each: 1 KiB of pixels + header)
- T20K: 20 series x 1,000 of the same tiny images (20,000 in one study): per-instance costs
- A4 (``--big``): 4 series x 2,000 slices (8,000 instances, ~4 GiB)
- T100K (``--big``): 100 series x 1,000 tiny images (100,000 in one study, the default
  ``--max-collection-instances``): memory flatness to the largest ZIP zipproxy makes by default

``quick`` divides every instance count (B: its frames) by ten.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.common import KiB, MiB, log
from zipproxy.demo import samples
from zipproxy.demo.orthanc import Orthanc
from zipproxy.demo.samples import StudyInfo, make_bulk_study

ALL_NAMES = ("A", "B", "T500", "T20K", "A4", "T100K")
DEFAULT_NAMES = ("A", "B", "T500", "T20K")


@dataclass(frozen=True)
class StudySpec:
    name: str
    n_series: int
    per_series: int
    rows: int
    cols: int
    frames: int
    key: str

    @property
    def instances(self) -> int:
        return self.n_series * self.per_series

    @property
    def pixel_bytes(self) -> int:
        return self.rows * self.cols * 2 * self.frames

    def describe(self) -> str:
        each = self.pixel_bytes
        size = f"{each / MiB:.3g} MiB" if each >= MiB // 4 else f"{each / KiB:.3g} KiB of pixels"
        frames = f"x{self.frames} frames " if self.frames > 1 else ""
        return (f"{self.instances:,} x {size} ({self.n_series} series, "
                f"{self.rows}x{self.cols} {frames}16-bit)")


def study_specs(quick: bool, names: tuple[str, ...] = DEFAULT_NAMES) -> list[StudySpec]:
    """The specs of ``names`` (in the order of ALL_NAMES)."""
    div = 10 if quick else 1
    tag = "q" if quick else ""
    specs = [
        StudySpec("A", 4, 500 // div, 512, 512, 1, f"zipbench-ct-A{tag}"),
        StudySpec("B", 1, 10, 512, 512, 200 // div, f"zipbench-ct-B{tag}"),
        StudySpec("T500", 5, 100 // div, 32, 16, 1, f"zipbench-tiny-T500{tag}"),
        StudySpec("T20K", 20, 1000 // div, 32, 16, 1, f"zipbench-tiny-T20K{tag}"),
        # 4 series of 2,000, not 16 of 500: before commit 3292587 make_bulk_study repeated SOP
        # Instance UIDs in studies of 10+ series, which zipproxy rightly aborts.
        StudySpec("A4", 4, 2000 // div, 512, 512, 1, f"zipbench-ct-A4{tag}"),
        StudySpec("T100K", 100, 1000 // div, 32, 16, 1, f"zipbench-tiny-T100K{tag}"),
    ]
    return [s for s in specs if s.name in names]


def ct_like_pixels(rows: int, cols: int, frames: int, seed: int = 1) -> bytes:
    """16-bit CT-like frames: an elliptic body and a dense core with Gaussian noise.

    ``make_bulk_study``'s own byte ramp deflates about 160:1 at several hundred MiB/s, which makes
    Orthanc's ``/media`` ZIP look 20x faster than with real images; this deflates about 2.4:1 at
    ~10 MiB/s (zlib level 6), like real CT. The proxy stores entries, so it does not care.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    r2 = ((y - rows / 2) / (rows * 0.42)) ** 2 + ((x - cols / 2) / (cols * 0.36)) ** 2
    body = r2 < 1
    base = np.where(body, 1064, 24).astype(np.float32)
    base[r2 < 0.05] = 1324
    out = np.empty((frames, rows, cols), dtype="<u2")
    for f in range(frames):
        noise = rng.normal(0, 12, (rows, cols)).astype(np.float32)
        out[f] = np.clip(base + np.where(body, noise, noise / 4), 0, 4095)
    return out.tobytes()


@contextlib.contextmanager
def realistic_pixels(spec: StudySpec) -> Iterator[None]:
    """Make ``make_bulk_study`` (which calls ``samples.pixel_pattern`` once) use CT-like pixels."""
    buffer = ct_like_pixels(spec.rows, spec.cols, spec.frames)
    original = samples.pixel_pattern

    def pattern(nbytes: int, offset: int = 0) -> bytes:
        return buffer if nbytes == len(buffer) else original(nbytes, offset)

    samples.pixel_pattern = pattern
    try:
        yield
    finally:
        samples.pixel_pattern = original


@dataclass
class CachedStudy:
    spec: StudySpec
    study_uid: str
    files: list[Path]

    @property
    def file_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)


def generate(spec: StudySpec, workdir: Path) -> CachedStudy:
    """Write the study once; a manifest next to it marks a complete set of files."""
    root = workdir / "studies" / spec.key
    manifest = workdir / "studies" / f"{spec.key}.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        files = [root / p for p in data["files"]]
        sample = files[:: max(1, len(files) // 50)]
        if len(files) == spec.instances and all(p.exists() for p in sample):
            return CachedStudy(spec, data["study_uid"], files)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    log(f"generating study {spec.name}: {spec.describe()} in {root} ...")
    t0 = time.monotonic()
    with realistic_pixels(spec):
        info: StudyInfo = make_bulk_study(
            root, spec.n_series, spec.per_series, spec.rows, spec.cols, spec.frames,
            patient_id=f"ZP-BENCH-{spec.name}", key=spec.key,
        )
    study = CachedStudy(spec, info.study_uid, list(info.files))
    log(f"  {len(info.files)} files, {study.file_bytes / MiB:.0f} MiB in "
        f"{time.monotonic() - t0:.1f} s")
    manifest.write_text(json.dumps({
        "study_uid": info.study_uid,
        "files": [str(p.relative_to(root)) for p in info.files],
    }))
    return study


def instances_in_orthanc(orthanc: Orthanc, study_uid: str) -> int:
    """NumberOfStudyRelatedInstances from QIDO-RS (0 when the study is not there)."""
    r = requests.get(f"{orthanc.dicomweb}/studies",
                     params={"StudyInstanceUID": study_uid, "includefield": "00201208"},
                     headers={"Accept": "application/dicom+json"}, timeout=60)
    if r.status_code == 204 or not r.content.strip():
        return 0
    r.raise_for_status()
    answer = r.json()
    if not answer:
        return 0
    value = answer[0].get("00201208", {}).get("Value", [0])
    return int(value[0])


def ensure_loaded(orthanc: Orthanc, study: CachedStudy) -> None:
    """Upload the study unless QIDO-RS shows it complete.

    Parallel ``POST /instances``: 8 at a time for small files (Orthanc's cost is per instance:
    its index and storage writes), 4 for large ones (each is read into memory).
    """
    spec = study.spec
    have = instances_in_orthanc(orthanc, study.study_uid)
    if have == spec.instances:
        log(f"study {spec.name}: already in Orthanc ({have} instances)")
        return
    workers = 8 if spec.pixel_bytes < MiB else 4
    log(f"study {spec.name}: Orthanc has {have}/{spec.instances}; uploading "
        f"({workers} parallel POST /instances) ...")
    t0 = time.monotonic()
    orthanc.upload(study.files, workers=workers)
    elapsed = time.monotonic() - t0
    log(f"  uploaded {len(study.files)} files, {study.file_bytes / MiB:.0f} MiB in "
        f"{elapsed:.1f} s ({len(study.files) / elapsed:.0f} instances/s)")
    have = instances_in_orthanc(orthanc, study.study_uid)
    if have != spec.instances:
        raise RuntimeError(f"study {spec.name}: Orthanc has {have} instances after upload")

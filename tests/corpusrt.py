"""Radiotherapy objects of the test corpus: RT Structure Set, RT Plan, RT Dose, RT Record.

The structure set is shaped like an auto-contouring result: ``ROIS`` organs and targets, each
contoured on every 2 mm slice it spans with a dense closed polygon, so that its size (20-50 MiB
in the corpus) is all ROI Contour Sequence, before any pixel data -- the shape that broke the
header parser. Its contours are encoded by ``corpusraw`` (pydicom is too slow for 50 MiB).
"""

from __future__ import annotations

import math
import struct
from typing import Any

from corpusiods import Ctx, image_pixels, sop_ref
from corpusraw import element, item
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_BEAMS_RECORD = "1.2.840.10008.5.1.4.1.1.481.4"

#: (name, RT ROI Interpreted Type, centre x/y mm, radii mm, first/last slice z mm)
ROIS = [
    ("BODY", "EXTERNAL", (0, 0), (180, 120), (-150, 148)),
    ("PTV_70", "PTV", (20, -10), (45, 38), (-40, 30)),
    ("CTV_70", "CTV", (20, -10), (38, 31), (-36, 26)),
    ("GTV", "GTV", (22, -12), (25, 20), (-30, 20)),
    ("SpinalCord", "ORGAN", (0, 60), (6, 6), (-150, 148)),
    ("Brainstem", "ORGAN", (0, 40), (12, 14), (90, 140)),
    ("Parotid_L", "ORGAN", (-55, 20), (18, 22), (40, 90)),
    ("Parotid_R", "ORGAN", (55, 20), (18, 22), (40, 90)),
    ("Mandible", "ORGAN", (0, -45), (50, 30), (0, 50)),
    ("Esophagus", "ORGAN", (0, 35), (9, 8), (-150, 20)),
    ("Larynx", "ORGAN", (0, -20), (20, 18), (-40, 10)),
    ("OralCavity", "ORGAN", (0, -30), (35, 25), (20, 60)),
    ("Lung_L", "ORGAN", (-80, 10), (60, 80), (-150, -60)),
    ("Lung_R", "ORGAN", (80, 10), (60, 80), (-150, -60)),
    ("Thyroid", "ORGAN", (0, -10), (30, 12), (-60, -20)),
    ("Cochlea_L", "ORGAN", (-45, 30), (4, 4), (110, 118)),
]
SLICE_MM = 2.0


def _polygon(cx: float, cy: float, rx: float, ry: float, z: float, points: int) -> bytes:
    """A closed planar contour as DS "x\\y\\z\\..." (PS3.3 C.8.8.6.3), lobed like anatomy."""
    coords = []
    for k in range(points):
        angle = 2 * math.pi * k / points
        wobble = 1 + 0.08 * math.sin(5 * angle + z / 17) + 0.03 * math.sin(13 * angle)
        coords += (cx + rx * wobble * math.cos(angle), cy + ry * wobble * math.sin(angle))
    return ((f"%.2f\\%.2f\\{z:.1f}\\" * points)[:-1] % tuple(coords)).encode()


MAX_POINTS = 2400  # a DS value has a 16-bit length in Explicit VR (PS3.5 7.1.2): < 64 KiB


def _rois(target_bytes: int) -> tuple[list[tuple[str, str, Any, Any, Any]], int]:
    """The ROIs (``ROIS``, repeated as BODY_2... when needed) and points per contour."""
    slices = sum(int((z1 - z0) / SLICE_MM) + 1 for *_, (z0, z1) in ROIS)
    per_point = sum(len(_polygon(cx, cy, rx, ry, z0, 64)) / 64
                    for _, _, (cx, cy), (rx, ry), (z0, _) in ROIS) / len(ROIS)
    copies = math.ceil(target_bytes / (slices * per_point * MAX_POINTS))
    points = max(16, int(target_bytes / (copies * slices * per_point)))
    rois = [(name if n == 0 else f"{name}_{n + 1}", *rest)
            for n in range(copies) for name, *rest in ROIS]
    return rois, points


def _contour_items(target_bytes: int) -> list[tuple[int, bytes]]:
    """(ROI number, encoded ROI Contour item) for all ROIs, sized to about ``target_bytes``."""
    rois, points = _rois(target_bytes)
    out = []
    for number, (_, _, (cx, cy), (rx, ry), (z0, z1)) in enumerate(rois, start=1):
        contours = []
        for n in range(int((z1 - z0) / SLICE_MM) + 1):
            z = z0 + n * SLICE_MM
            taper = 1 - 0.5 * (abs(2 * (z - z0) / max(z1 - z0, 1) - 1) ** 3)
            data = _polygon(cx, cy, rx * taper, ry * taper, z, points)
            contours.append(item(element(0x30060042, "CS", b"CLOSED_PLANAR")
                                 + element(0x30060046, "IS", b"%d" % points)
                                 + element(0x30060048, "IS", b"%d" % (n + 1))
                                 + element(0x30060050, "DS", data)))
        color = b"%d\\%d\\%d" % ((number * 67) % 256, (number * 131) % 256, (number * 29) % 256)
        out.append((number, item(element(0x3006002A, "IS", color)
                                 + element(0x30060040, "SQ", b"".join(contours))
                                 + element(0x30060084, "IS", b"%d" % number))))
    return out


def structure_set(ds: Dataset, ctx: Ctx, size: int = 64 * 1024) -> None:
    """RT Structure Set (PS3.3 A.19): about ``size`` bytes of ROI contours."""
    ds.StructureSetLabel = "AUTO_SEG" if ctx.first else f"AUTO_SEG_{ctx.index + 1}"
    ds.StructureSetName = "Auto-contouring"
    ds.StructureSetDate, ds.StructureSetTime = "20240301", "120000"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = ctx.frame_of_reference, ""
    series = Dataset()
    series.SeriesInstanceUID = ctx.image_series
    series.ContourImageSequence = Sequence([sop_ref(*ref) for ref in ctx.images])
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    study.ReferencedSOPInstanceUID = ctx.study
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = ctx.frame_of_reference
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    rois, observations = [], []
    for number, (name, kind, *_) in enumerate(_rois(size)[0], start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID = number, ctx.frame_of_reference
        roi.ROIName, roi.ROIGenerationAlgorithm = name, "AUTOMATIC"
        rois.append(roi)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType, obs.ROIInterpreter = kind, ""
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(rois)
    ctx.raw[0x30060039] = element(0x30060039, "SQ", b"".join(b for _, b in _contour_items(size)))
    ds.RTROIObservationsSequence = Sequence(observations)
    ds.ApprovalStatus = "UNAPPROVED"


def plan(ds: Dataset, ctx: Ctx) -> None:
    """RT Plan (PS3.3 A.20): two fraction-group beams, referencing the structure set."""
    ds.RTPlanLabel = "HN_70Gy" if ctx.first else f"HN_70Gy_{ctx.index + 1}"
    ds.RTPlanName, ds.RTPlanDate, ds.RTPlanTime = "Head and neck", "20240302", "080000"
    ds.RTPlanGeometry = "PATIENT"
    if "RTSTRUCT" in ctx.references:
        ds.ReferencedStructureSetSequence = Sequence([sop_ref(*ctx.references["RTSTRUCT"])])
    group = Dataset()
    group.FractionGroupNumber, group.NumberOfFractionsPlanned = 1, 35
    group.NumberOfBeams, group.NumberOfBrachyApplicationSetups = 2, 0
    beams = []
    for number in (1, 2):
        ref = Dataset()
        ref.ReferencedBeamNumber, ref.BeamMeterset = number, 100.0
        beams.append(ref)
    group.ReferencedBeamSequence = Sequence(beams)
    ds.FractionGroupSequence = Sequence([group])
    beam_items = []
    for number, angle in ((1, 0.0), (2, 180.0)):
        beam = Dataset()
        beam.BeamNumber, beam.BeamName, beam.BeamType = number, f"B{number}", "STATIC"
        beam.TreatmentMachineName = "LINAC1"
        beam.RadiationType, beam.TreatmentDeliveryType = "PHOTON", "TREATMENT"
        beam.PrimaryDosimeterUnit, beam.SourceAxisDistance = "MU", 1000.0
        limiting = Dataset()
        limiting.RTBeamLimitingDeviceType, limiting.NumberOfLeafJawPairs = "ASYMX", 1
        beam.BeamLimitingDeviceSequence = Sequence([limiting])
        beam.NumberOfWedges, beam.NumberOfCompensators, beam.NumberOfBoli = 0, 0, 0
        beam.NumberOfBlocks, beam.FinalCumulativeMetersetWeight = 0, 1.0
        beam.NumberOfControlPoints = 2
        points = []
        for index, weight in ((0, 0.0), (1, 1.0)):
            point = Dataset()
            point.ControlPointIndex, point.CumulativeMetersetWeight = index, weight
            if index == 0:
                point.NominalBeamEnergy, point.GantryAngle = 6.0, angle
                point.GantryRotationDirection = "NONE"
                point.BeamLimitingDeviceAngle, point.BeamLimitingDeviceRotationDirection = (
                    0.0, "NONE")
                point.PatientSupportAngle, point.PatientSupportRotationDirection = 0.0, "NONE"
                point.TableTopEccentricAngle = 0.0
                point.TableTopEccentricRotationDirection = "NONE"
                point.IsocenterPosition = [0.0, 0.0, 0.0]
                position = Dataset()
                position.RTBeamLimitingDeviceType = "ASYMX"
                position.LeafJawPositions = [-50.0, 50.0]
                point.BeamLimitingDevicePositionSequence = Sequence([position])
            points.append(point)
        beam.ControlPointSequence = Sequence(points)
        beam_items.append(beam)
    ds.BeamSequence = Sequence(beam_items)
    ds.ApprovalStatus = "UNAPPROVED"


def _dvh_items(rois: int, bins: int) -> list[bytes]:
    """DVH Sequence items (PS3.3 C.8.8.4): cumulative DVHs, ``bins`` dose bins each."""
    out = []
    for number in range(1, rois + 1):
        values = []
        for k in range(bins):
            values += (0.1, 100.0 * (1 - k / bins) ** (1 + number / 5))
        data = "\\".join(f"{v:.4g}" for v in values).encode()
        ref = item(element(0x30040062, "CS", b"INCLUDED")
                   + element(0x30060084, "IS", b"%d" % number))
        out.append(item(element(0x30040001, "CS", b"CUMULATIVE")
                        + element(0x30040002, "CS", b"GY")
                        + element(0x30040004, "CS", b"PHYSICAL")
                        + element(0x30040052, "DS", b"1")
                        + element(0x30040054, "CS", b"PERCENT")
                        + element(0x30040056, "IS", b"%d" % bins)
                        + element(0x30040058, "DS", data)
                        + element(0x30040060, "SQ", ref)))
    return out


def dose(ds: Dataset, ctx: Ctx, dvh_rois: int = 4, dvh_bins: int = 200) -> None:
    """RT Dose (PS3.3 A.18) with a 3-D dose grid (32-bit pixels) and a DVH per ROI."""
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = ctx.frame_of_reference, ""
    ds.ImagePositionPatient = [-100.0, -100.0, -20.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SliceThickness = [6.25, 6.25], 4.0
    frames = 10
    ds.NumberOfFrames, ds.FrameIncrementPointer = frames, 0x3004000C
    ds.GridFrameOffsetVector = [4.0 * k for k in range(frames)]
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "PLAN"
    ds.DoseGridScaling = 1e-5
    grid = b"".join(struct.pack("<I", (x * y * z) % 7_000_000)
                    for z in range(frames) for y in range(32) for x in range(32))
    image_pixels(ds, 32, 32, grid, bits=32)
    if "RTPLAN" in ctx.references:
        ds.ReferencedRTPlanSequence = Sequence([sop_ref(*ctx.references["RTPLAN"])])
    if "RTSTRUCT" in ctx.references:
        ds.ReferencedStructureSetSequence = Sequence([sop_ref(*ctx.references["RTSTRUCT"])])
    ds.DVHNormalizationDoseValue = 70.0
    ctx.raw[0x30040050] = element(0x30040050, "SQ", b"".join(_dvh_items(dvh_rois, dvh_bins)))


def treatment_record(ds: Dataset, ctx: Ctx) -> None:
    """RT Beams Treatment Record (PS3.3 A.29): one session of one beam."""
    if not ctx.first:  # Type 2 in the instance and in the record: empty in the first
        ds.TreatmentDate, ds.TreatmentTime = "20240310", "091500"
    else:
        ds.TreatmentDate, ds.TreatmentTime = None, None
    if "RTPLAN" in ctx.references:
        ds.ReferencedRTPlanSequence = Sequence([sop_ref(*ctx.references["RTPLAN"])])
    machine = Dataset()
    machine.TreatmentMachineName, machine.Manufacturer = "LINAC1", "ZIPPROXY CORPUS"
    machine.InstitutionName, machine.ManufacturerModelName = "", ""
    machine.DeviceSerialNumber = ""
    ds.TreatmentMachineSequence = Sequence([machine])
    ds.NumberOfFractionsPlanned, ds.PrimaryDosimeterUnit = 35, "MU"
    session = Dataset()
    session.ReferencedBeamNumber, session.BeamName, session.BeamType = 1, "B1", "STATIC"
    session.RadiationType, session.TreatmentDeliveryType = "PHOTON", "TREATMENT"
    session.NumberOfWedges, session.NumberOfCompensators, session.NumberOfBoli = 0, 0, 0
    session.NumberOfBlocks, session.CurrentFractionNumber = 0, 1
    session.TreatmentTerminationStatus, session.TreatmentVerificationStatus = "NORMAL", ""
    session.NumberOfControlPoints = 0
    session.ControlPointDeliverySequence = Sequence()
    session.BeamLimitingDeviceLeafPairsSequence = Sequence()
    ds.TreatmentSessionBeamSequence = Sequence([session])
    ds.OperatorsName = "Therapist^Theo"

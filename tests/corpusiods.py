"""The IOD-specific modules of the test corpus, one builder per kind of instance.

Each builder adds to a data set that already carries the Patient, General Study, Series,
General Equipment and SOP Common attributes (``dicomcorpus._common``). ``KINDS`` maps a kind to
``(expected record type, SOP Class UID, Modality, builder)``; the record type is what PS3.3
F.4/F.5 gives that SOP Class (see /work/notes/dicomdir-records.md), written out here rather than
taken from pydicom or zipproxy, so that the corpus judges them instead of agreeing with them.
The bulky objects (RT Structure Set, SR content tree, RT Dose DVHs) live in ``dicomcorpus``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence


@dataclass
class Ctx:
    """What a builder may refer to: the study's images and frame of reference, the position."""

    seed: str
    study: str = ""  # the instance's Study Instance UID
    index: int = 0  # 0-based position of this instance in its series
    first: bool = True
    images: list[tuple[str, str]] = field(default_factory=list)  # (SOP Class, SOP Instance)
    image_series: str = ""
    frame_of_reference: str = ""
    references: dict[str, tuple[str, str]] = field(default_factory=dict)  # kind -> (class, uid)
    raw: dict[int, bytes] = field(default_factory=dict)  # hand-encoded elements (corpusraw)


Builder = Callable[[Dataset, Ctx], None]


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def sop_ref(sop_class: str, sop_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_uid
    return item


def image_pixels(ds: Dataset, rows: int, cols: int, pixels: bytes | None, bits: int = 16) -> None:
    """Image Pixel module (PS3.3 C.7.6.3), MONOCHROME2, unsigned."""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits if bits == 32 else 12, (
        bits - 1 if bits == 32 else 11)
    ds.PixelRepresentation = 0
    if pixels is not None:
        ds.PixelData = pixels
        ds["PixelData"].VR = "OW"


def content_identification(ds: Dataset, ctx: Ctx, label: str) -> None:
    """Content Identification Macro (PS3.3 Table 10-12); the first of a series has no creator."""
    ds.ContentLabel = label
    ds.ContentDescription = f"{label.title()} {ctx.index + 1}"
    ds.ContentCreatorName = "" if ctx.first else "Planner^Pat"


def ct(ds: Dataset, ctx: Ctx) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = ctx.frame_of_reference, ""
    ds.ImagePositionPatient = [-250.0, -250.0, -150.0 + 2.0 * ctx.index]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceThickness, ds.PixelSpacing = 2.0, [7.8125, 7.8125]
    ds.KVP, ds.AcquisitionNumber, ds.PatientPosition = 120, 1, "HFS"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    image_pixels(ds, 64, 64, bytes(range(256)) * 32)


def sc(ds: Dataset, ctx: Ctx) -> None:
    ds.ConversionType = "WSD"
    image_pixels(ds, 8, 8, bytes(range(128)))


def sc_without_rows(ds: Dataset, ctx: Ctx) -> None:
    """A Secondary Capture that lacks Rows (and its pixels): still an image SOP Class."""
    ds.ConversionType = "WSD"


def presentation(ds: Dataset, ctx: Ctx) -> None:
    """Grayscale Softcopy Presentation State (PS3.3 A.33.1), referencing the study's images."""
    content_identification(ds, ctx, "PRESENTATION")
    ds.PresentationCreationDate, ds.PresentationCreationTime = "20240301", "101010"
    series = Dataset()
    series.SeriesInstanceUID = ctx.image_series
    series.ReferencedImageSequence = Sequence([sop_ref(*ref) for ref in ctx.images])
    ds.ReferencedSeriesSequence = Sequence([series])
    area = Dataset()
    area.ReferencedImageSequence = Sequence([sop_ref(*ref) for ref in ctx.images])
    area.DisplayedAreaTopLeftHandCorner, area.DisplayedAreaBottomRightHandCorner = [1, 1], [64, 64]
    area.PresentationSizeMode, area.PresentationPixelSpacing = "SCALE TO FIT", [7.8125, 7.8125]
    ds.DisplayedAreaSelectionSequence = Sequence([area])
    ds.PresentationLUTShape = "IDENTITY"


def blending(ds: Dataset, ctx: Ctx) -> None:
    """Blending Softcopy Presentation State: Blending Sequence, no Referenced Series Sequence."""
    content_identification(ds, ctx, "BLENDING")
    ds.PresentationCreationDate, ds.PresentationCreationTime = "20240301", "111111"
    items = []
    for position in ("UNDERLYING", "SUPERIMPOSED"):
        series = Dataset()
        series.SeriesInstanceUID = ctx.image_series
        series.ReferencedImageSequence = Sequence([sop_ref(*ref) for ref in ctx.images])
        study = Dataset()
        study.BlendingPosition = position
        study.StudyInstanceUID = ctx.study
        study.ReferencedSeriesSequence = Sequence([series])
        items.append(study)
    ds.BlendingSequence = Sequence(items)


def waveform(ds: Dataset, ctx: Ctx) -> None:
    """12-Lead ECG (PS3.3 A.34.3): one multiplex group of 12 channels, 10 samples each."""
    ds.ContentDate, ds.ContentTime = "20240301", "090000"
    ds.AcquisitionDateTime = "20240301090000"
    group = Dataset()
    group.MultiplexGroupTimeOffset, group.WaveformOriginality = 0.0, "ORIGINAL"
    group.NumberOfWaveformChannels, group.NumberOfWaveformSamples = 12, 10
    group.SamplingFrequency, group.WaveformBitsAllocated = 500.0, 16
    group.WaveformSampleInterpretation = "SS"
    channels = []
    for n in range(12):
        channel = Dataset()
        channel.WaveformChannelNumber = n + 1
        channel.ChannelSourceSequence = Sequence([code(f"5.6.3-9-{n + 1}", "SCPECG",
                                                       f"Lead {n + 1}")])
        channel.ChannelSensitivity, channel.ChannelBaseline = 1.0, 0.0
        channel.ChannelSensitivityUnitsSequence = Sequence([code("uV", "UCUM", "microvolt")])
        channel.ChannelSensitivityCorrectionFactor, channel.ChannelSampleSkew = 1.0, 0.0
        channel.WaveformBitsStored = 16
        channels.append(channel)
    group.ChannelDefinitionSequence = Sequence(channels)
    group.WaveformData = bytes(12 * 10 * 2)
    ds.WaveformSequence = Sequence([group])


def spectroscopy(ds: Dataset, ctx: Ctx) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SPECTROSCOPY", "NONE"]
    ds.ContentDate, ds.ContentTime = "20240301", "091500"
    ds.AcquisitionDateTime = "20240301091500"
    ds.FrameOfReferenceUID = ctx.frame_of_reference
    ds.NumberOfFrames, ds.Rows, ds.Columns = 1, 1, 1
    ds.DataPointRows, ds.DataPointColumns = 1, 16
    ds.DataRepresentation, ds.SignalDomainColumns = "COMPLEX", "FREQUENCY"
    # A 1C key "required if present in the spectroscopy instance" (F.5-27), but Type 1 to
    # dciodvfy 20220618, so every instance has it.
    ds.ReferencedImageEvidenceSequence = Sequence([sop_ref(*ctx.images[0])])
    ds.SpectroscopyData = bytes(16 * 2 * 4)
    ds["SpectroscopyData"].VR = "OF"


def raw_data(ds: Dataset, ctx: Ctx) -> None:
    ds.ContentDate, ds.ContentTime = "20240301", "092000"
    if ctx.first:  # Instance Number is Type 2 in the Raw Data IOD and in the RAW DATA record
        ds.InstanceNumber = None
    ds.CreatorVersionUID = "1.2.826.0.1.3680043.8.498.1"


def registration(ds: Dataset, ctx: Ctx) -> None:
    content_identification(ds, ctx, "REGISTRATION")
    ds.ContentDate, ds.ContentTime = "20240301", "093000"
    ds.FrameOfReferenceUID = ctx.frame_of_reference
    matrix = Dataset()
    matrix.FrameOfReferenceTransformationMatrixType = "RIGID"
    matrix.FrameOfReferenceTransformationMatrix = [1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0, 0,
                                                   0, 0, 0, 1.0]
    reg = Dataset()
    reg.FrameOfReferenceUID = ctx.frame_of_reference
    reg.MatrixRegistrationSequence = Sequence([Dataset()])
    reg.MatrixRegistrationSequence[0].MatrixSequence = Sequence([matrix])
    ds.RegistrationSequence = Sequence([reg])


def fiducial(ds: Dataset, ctx: Ctx) -> None:
    content_identification(ds, ctx, "FIDUCIALS")
    ds.ContentDate, ds.ContentTime = "20240301", "094000"
    point = Dataset()
    point.FiducialIdentifier, point.ShapeType = "F1", "POINT"
    point.NumberOfContourPoints, point.ContourData = 1, [1.0, 2.0, 3.0]
    point.FiducialUID = f"1.2.826.0.1.3680043.8.498.9{len(ctx.seed)}"
    fid = Dataset()
    fid.FrameOfReferenceUID = ctx.frame_of_reference
    fid.FiducialSequence = Sequence([point])
    ds.FiducialSetSequence = Sequence([fid])


def value_map(ds: Dataset, ctx: Ctx) -> None:
    content_identification(ds, ctx, "RWV_MAP")
    ds.ContentDate, ds.ContentTime = "20240301", "095000"
    mapping = Dataset()
    mapping.RealWorldValueFirstValueMapped, mapping.RealWorldValueLastValueMapped = 0, 4095
    mapping.RealWorldValueIntercept, mapping.RealWorldValueSlope = -1024.0, 1.0
    mapping.LUTExplanation, mapping.LUTLabel = "HU", "HU"
    mapping.MeasurementUnitsCodeSequence = Sequence([code("[hnsf'U]", "UCUM", "Hounsfield unit")])
    item = Dataset()
    item.ReferencedImageSequence = Sequence([sop_ref(*ref) for ref in ctx.images])
    item.RealWorldValueMappingSequence = Sequence([mapping])
    ds.ReferencedImageRealWorldValueMappingSequence = Sequence([item])


def stereometric(ds: Dataset, ctx: Ctx) -> None:
    pair = Dataset()
    pair.LeftImageSequence = Sequence([sop_ref(*ctx.images[0])])
    pair.RightImageSequence = Sequence([sop_ref(*ctx.images[-1])])
    ds.StereoPairsSequence = Sequence([pair])


def hanging_protocol(ds: Dataset, ctx: Ctx) -> None:
    """Hanging Protocol (PS3.3 A.44): F.5-31 keys, including Name, Description and Level."""
    ds.HangingProtocolName = f"CHEST CT {ctx.index + 1}"
    ds.HangingProtocolDescription = "Chest CT, one image set"
    ds.HangingProtocolLevel = "SITE"
    ds.HangingProtocolCreator = "PACS^Admin"
    ds.HangingProtocolCreationDateTime = "20240301100000"
    definition = Dataset()
    definition.Modality = "CT"
    # Type 2, "zero or more Items" (F.5-31), but dciodvfy 20220618 wants 1-n: give one each.
    definition.ProcedureCodeSequence = Sequence([code("77477000", "SCT", "CT of chest")])
    definition.ReasonForRequestedProcedureCodeSequence = Sequence([
        code("363358000", "SCT", "Malignant tumor of lung")])
    ds.HangingProtocolDefinitionSequence = Sequence([definition])
    ds.NumberOfPriorsReferenced = 0
    ds.HangingProtocolUserIdentificationCodeSequence = Sequence()
    image_set = Dataset()
    selector = Dataset()
    selector.ImageSetSelectorUsageFlag, selector.SelectorAttribute = "MATCH", 0x00080060
    selector.SelectorValueNumber, selector.SelectorAttributeVR = 1, "CS"
    selector.SelectorCSValue = "CT"
    image_set.ImageSetSelectorSequence = Sequence([selector])
    time_based = Dataset()
    time_based.ImageSetNumber, time_based.ImageSetSelectorCategory = 1, "RELATIVE_TIME"
    time_based.RelativeTime, time_based.RelativeTimeUnits = [0, 0], "MINUTES"
    image_set.TimeBasedImageSetsSequence = Sequence([time_based])
    ds.ImageSetsSequence = Sequence([image_set])
    ds.NumberOfScreens = 1
    screen = Dataset()
    screen.NumberOfVerticalPixels, screen.NumberOfHorizontalPixels = 1024, 1280
    screen.DisplayEnvironmentSpatialPosition = [0.0, 0.0, 1.0, 1.0]
    ds.NominalScreenDefinitionSequence = Sequence([screen])


def palette(ds: Dataset, ctx: Ctx) -> None:
    ds.ContentLabel = f"HOT_IRON_{ctx.index + 1}"
    ds.ContentDescription = "" if ctx.first else "Hot iron"
    ds.RedPaletteColorLookupTableDescriptor = [256, 0, 8]
    ds.GreenPaletteColorLookupTableDescriptor = [256, 0, 8]
    ds.BluePaletteColorLookupTableDescriptor = [256, 0, 8]
    for name in ("Red", "Green", "Blue"):
        setattr(ds, f"{name}PaletteColorLookupTableData", bytes(range(256)))
        ds[f"{name}PaletteColorLookupTableData"].VR = "OW"


def implant(ds: Dataset, ctx: Ctx) -> None:
    ds.ImplantName, ds.ImplantPartNumber = "Hip stem", f"HS-{ctx.index + 1:03d}"
    if not ctx.first:  # Implant Size: 1C "required if present in the referenced instance"
        ds.ImplantSize = "12"
    ds.EffectiveDateTime, ds.ImplantTemplateVersion = "20240101000000", "1"
    ds.ImplantType, ds.ImplantTargetAnatomySequence = "DERIVED", Sequence()
    ds.ImplantRegulatoryDisapprovalCodeSequence = Sequence()
    ds.OverallTemplateSpatialTolerance, ds.MaterialsCodeSequence = 0.1, Sequence()
    ds.CoatingMaterialsCodeSequence, ds.ImplantTypeCodeSequence = Sequence(), Sequence()
    ds.FixationMethodCodeSequence, ds.InformationSummary = Sequence(), "Test template"


def implant_assembly(ds: Dataset, ctx: Ctx) -> None:
    ds.ImplantAssemblyTemplateName = f"Hip assembly {ctx.index + 1}"
    ds.ImplantAssemblyTemplateIssuer, ds.ImplantAssemblyTemplateVersion = "Maker", "1"
    ds.ImplantAssemblyTemplateType = "ORIGINAL"
    ds.ProcedureTypeCodeSequence = Sequence([code("P1-48100", "SRT", "Hip replacement")])
    ds.SurgicalTechnique, ds.ComponentTypesSequence = "Posterior", Sequence()


def implant_group(ds: Dataset, ctx: Ctx) -> None:
    ds.ImplantTemplateGroupName = f"Hip stems {ctx.index + 1}"
    ds.ImplantTemplateGroupIssuer = "Maker"
    ds.ImplantTemplateGroupVersion = "1"
    ds.ImplantTemplateGroupMembersSequence = Sequence()


def delivery_instruction(ds: Dataset, ctx: Ctx) -> None:
    """RT Beams Delivery Instruction (Modality PLAN: PLAN record, PS3.3 F.5.40)."""
    if "RTPLAN" in ctx.references:
        ds.ReferencedRTPlanSequence = Sequence([sop_ref(*ctx.references["RTPLAN"])])
    ds.BeamTaskSequence = Sequence()


def measurement(ds: Dataset, ctx: Ctx) -> None:
    """Lensometry Measurements (MEASUREMENT record: Content Date/Time + Content Identification)."""
    content_identification(ds, ctx, "LENSOMETRY")
    ds.ContentDate, ds.ContentTime = "20240301", "101500"
    ds.MeasurementLaterality = "B"


def surface(ds: Dataset, ctx: Ctx) -> None:
    content_identification(ds, ctx, "SURFACES")
    ds.ContentDate, ds.ContentTime = "20240301", "102000"
    ds.FrameOfReferenceUID = ctx.frame_of_reference
    ds.NumberOfSurfaces = 0
    ds.SurfaceSequence = Sequence()


def surface_scan(ds: Dataset, ctx: Ctx) -> None:
    ds.ContentDate, ds.ContentTime = "20240301", "102500"
    ds.FrameOfReferenceUID = ctx.frame_of_reference
    ds.NumberOfSurfaces, ds.SurfaceSequence = 0, Sequence()


def tract(ds: Dataset, ctx: Ctx) -> None:
    content_identification(ds, ctx, "TRACTS")
    ds.ContentDate, ds.ContentTime = "20240301", "103000"
    ds.FrameOfReferenceUID = ctx.frame_of_reference
    ds.TrackSetSequence = Sequence()


def assessment(ds: Dataset, ctx: Ctx) -> None:
    """Content Assessment Results: the ASSESSMENT record's Type 1 Instance Creation Date is Type
    3 in the instance, so the first of the series goes without it (the FSC must supply it)."""
    if ctx.first:
        del ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.ContentDate, ds.ContentTime = "20240301", "103500"
    content_identification(ds, ctx, "ASSESSMENT")
    ds.AssessmentSummary = "PASSED"
    ds.AssessedSOPInstanceSequence = Sequence([sop_ref(*ctx.images[0])])


def rt_intent(ds: Dataset, ctx: Ctx) -> None:
    """RT Physician Intent (RT Second Generation, Modality RTINTENT: RADIOTHERAPY record)."""
    ds.ContentDescription = "Curative intent"
    ds.ContentCreatorName = "Oncologist^Olga"
    if not ctx.first:  # 1C: "Required if User Content Label (3010,0033) is present"
        ds.UserContentLabel = "INTENT_1"
        ds.UserContentLongLabel = "Physician intent, curative"
    ds.RTTreatmentPhaseIntervalSequence = Sequence()
    ds.RTPhysicianIntentSequence = Sequence()


def private(ds: Dataset, ctx: Ctx) -> None:
    """A SOP Class outside the standard: PRIVATE record, Private Record UID = the class."""
    block = ds.private_block(0x0009, "ZIPPROXY CORPUS", create=True)
    block.add_new(0x10, "LO", "private payload")


_STORAGE = "1.2.840.10008.5.1.4.1.1."
PRIVATE_SOP_CLASS = "1.2.826.0.1.3680043.8.498.77.1"

#: kind -> (record type, SOP Class UID, Modality, builder). Modality "" leaves it out.
KINDS: dict[str, tuple[str, str, str, Builder]] = {
    "CT": ("IMAGE", f"{_STORAGE}2", "CT", ct),
    "SC": ("IMAGE", f"{_STORAGE}7", "OT", sc),
    "SC_NO_ROWS": ("IMAGE", f"{_STORAGE}7", "OT", sc_without_rows),
    "PR": ("PRESENTATION", f"{_STORAGE}11.1", "PR", presentation),
    "PR_BLENDING": ("PRESENTATION", f"{_STORAGE}11.4", "PR", blending),
    "ECG": ("WAVEFORM", f"{_STORAGE}9.1.1", "ECG", waveform),
    "MRS": ("SPECTROSCOPY", f"{_STORAGE}4.2", "MR", spectroscopy),
    "RAW": ("RAW DATA", f"{_STORAGE}66", "OT", raw_data),
    "REG": ("REGISTRATION", f"{_STORAGE}66.1", "REG", registration),
    "FID": ("FIDUCIAL", f"{_STORAGE}66.2", "FID", fiducial),
    "RWV": ("VALUE MAP", f"{_STORAGE}67", "RWV", value_map),
    "STEREO": ("STEREOMETRIC", f"{_STORAGE}77.1.5.3", "OP", stereometric),
    "HP": ("HANGING PROTOCOL", "1.2.840.10008.5.1.4.38.1", "", hanging_protocol),
    "PALETTE": ("PALETTE", "1.2.840.10008.5.1.4.39.1", "", palette),
    "IMPLANT": ("IMPLANT", "1.2.840.10008.5.1.4.43.1", "", implant),
    "IMPLANT_ASSY": ("IMPLANT ASSY", "1.2.840.10008.5.1.4.44.1", "", implant_assembly),
    "IMPLANT_GROUP": ("IMPLANT GROUP", "1.2.840.10008.5.1.4.45.1", "", implant_group),
    "DELIVERY": ("PLAN", "1.2.840.10008.5.1.4.34.7", "PLAN", delivery_instruction),
    "LENSOMETRY": ("MEASUREMENT", f"{_STORAGE}78.1", "LEN", measurement),
    "SURFACE_SEG": ("SURFACE", f"{_STORAGE}66.5", "SEG", surface),
    "SURFACE_SCAN": ("SURFACE SCAN", f"{_STORAGE}68.1", "OSS", surface_scan),
    "TRACT": ("TRACT", f"{_STORAGE}66.6", "MR", tract),
    "ASSESSMENT": ("ASSESSMENT", f"{_STORAGE}90.1", "ASMT", assessment),
    "RT_INTENT": ("RADIOTHERAPY", f"{_STORAGE}481.10", "RTINTENT", rt_intent),
    "PRIVATE": ("PRIVATE", PRIVATE_SOP_CLASS, "OT", private),
}

#: Record types that PS3.3 F.4 puts in the root directory entity (no PATIENT above them).
SINGLE_LEVEL = frozenset({"HANGING PROTOCOL", "PALETTE", "IMPLANT", "IMPLANT ASSY",
                          "IMPLANT GROUP"})

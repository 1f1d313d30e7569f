"""Documents of the test corpus: Comprehensive SR, Key Object Selection, PDF and CDA.

The SR's root Content Sequence holds, in order: a HAS CONCEPT MOD (language), a HAS OBS
CONTEXT (observer), a CONTAINS container with ``size`` bytes of findings, and a second HAS
CONCEPT MOD (procedure reported) *after* the bulk -- PS3.3 F.5-25 wants exactly the two HAS
CONCEPT MOD items in the directory record ("All, and only, Content Items with the HAS CONCEPT
MOD relationship from the root Content Item"). A VERIFIED document has three Verifying
Observer items whose latest Verification DateTime is the middle one, so neither "the first"
nor "the last" item is the right answer for the record's Verification DateTime (F.5-25: "Most
recent Date and Time of verification among those defined in the Verifying Observer Sequence").
"""

from __future__ import annotations

from corpusiods import Ctx, code, sop_ref
from corpusraw import code as raw_code
from corpusraw import element, encode_item, item
from pydicom.charset import python_encoding
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
ENCAPSULATED_CDA = "1.2.840.10008.5.1.4.1.1.104.2"

#: (Verification DateTime, observer) of a VERIFIED SR; the latest is deliberately not last.
VERIFIERS = [("20240305081500", "Radiologist^Ann"), ("20240307163000", "Oncologist^Ben"),
             ("20240306120000", "Physicist^Cy")]
LATEST_VERIFICATION = max(dt for dt, _ in VERIFIERS)
HL7_INSTANCE_IDENTIFIER = "2.16.840.1.113883.19.5.99999.1^TT988"


def _encoding(ds: Dataset) -> str:
    return python_encoding.get(str(ds.get("SpecificCharacterSet", "") or "ISO_IR 6"), "ascii")


def concept_modifier(value: str, scheme: str, meaning: str, concept: Dataset) -> Dataset:
    modifier = Dataset()
    modifier.RelationshipType, modifier.ValueType = "HAS CONCEPT MOD", "CODE"
    modifier.ConceptNameCodeSequence = Sequence([code(value, scheme, meaning)])
    modifier.ConceptCodeSequence = Sequence([concept])
    return modifier


def _findings(size: int, encoding: str) -> bytes:
    """A CONTAINS CONTAINER item whose TEXT children add up to about ``size`` bytes."""
    text = "Befund: unauffällig, keine Raumforderung. " * 6
    children = []
    total, n = 0, 0
    while total < size:
        n += 1
        child = item(element(0x0040A010, "CS", b"CONTAINS") + element(0x0040A040, "CS", b"TEXT")
                     + element(0x0040A043, "SQ", raw_code("121071", "DCM", "Finding"))
                     + element(0x0040A160, "UT", f"{n}. {text}".encode(encoding)))
        children.append(child)
        total += len(child)
    return item(element(0x0040A010, "CS", b"CONTAINS") + element(0x0040A040, "CS", b"CONTAINER")
                + element(0x0040A043, "SQ", raw_code("121070", "DCM", "Findings"))
                + element(0x0040A050, "CS", b"SEPARATE")
                + element(0x0040A730, "SQ", b"".join(children)))


def root_modifiers(ds: Dataset) -> list[Dataset]:
    """The root's HAS CONCEPT MOD items of ``structured_report`` (what the record must hold)."""
    return [concept_modifier("121049", "DCM", "Language of Content Item and Descendants",
                             code("en-US", "RFC5646", "English (United States)")),
            concept_modifier("121058", "DCM", "Procedure reported",
                             code("77477000", "SCT", "CT of chest"))]


def structured_report(ds: Dataset, ctx: Ctx, size: int = 32 * 1024,
                      verified: bool = False) -> None:
    """Comprehensive SR (PS3.3 A.35.3) with a content tree of about ``size`` bytes."""
    encoding = _encoding(ds)
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([code("18748-4", "LN", "Diagnostic imaging report")])
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "2000"
    ds.ContentTemplateSequence = Sequence([template])
    ds.ContentDate, ds.ContentTime = "20240304", "174500"
    ds.CompletionFlag = "COMPLETE" if verified else "PARTIAL"
    ds.VerificationFlag = "VERIFIED" if verified else "UNVERIFIED"
    if verified:
        observers = []
        for when, name in VERIFIERS:
            observer = Dataset()
            observer.VerifyingObserverName, observer.VerificationDateTime = name, when
            observer.VerifyingOrganization = "Radiotherapy Department"
            observer.VerifyingObserverIdentificationCodeSequence = Sequence()
            observers.append(observer)
        ds.VerifyingObserverSequence = Sequence(observers)
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    evidence = Dataset()
    evidence.StudyInstanceUID = ctx.study
    series = Dataset()
    series.SeriesInstanceUID = ctx.image_series
    series.ReferencedSOPSequence = Sequence([sop_ref(*ref) for ref in ctx.images])
    evidence.ReferencedSeriesSequence = Sequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    language, procedure = root_modifiers(ds)
    observer = Dataset()
    observer.RelationshipType, observer.ValueType = "HAS OBS CONTEXT", "PNAME"
    observer.ConceptNameCodeSequence = Sequence([code("121008", "DCM", "Person Observer Name")])
    observer.PersonName = "Radiologist^Ann"
    ctx.raw[0x0040A730] = element(0x0040A730, "SQ", b"".join([
        encode_item(language, encoding), encode_item(observer, encoding),
        _findings(size, encoding), encode_item(procedure, encoding)]))


def key_objects(ds: Dataset, ctx: Ctx) -> None:
    """Key Object Selection (PS3.3 A.35.4, TID 2010); only the last one has a concept modifier."""
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([code("113000", "DCM", "Of Interest")])
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "2010"
    ds.ContentTemplateSequence = Sequence([template])
    ds.ContentDate, ds.ContentTime = "20240304", "180000"
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    evidence = Dataset()
    evidence.StudyInstanceUID = ctx.study
    series = Dataset()
    series.SeriesInstanceUID = ctx.image_series
    series.ReferencedSOPSequence = Sequence([sop_ref(*ref) for ref in ctx.images])
    evidence.ReferencedSeriesSequence = Sequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    items = []
    if not ctx.first:
        items.append(concept_modifier("113011", "DCM", "Document Title Modifier",
                                      code("113013", "DCM", "Best In Set")))
    for ref in ctx.images:
        image = Dataset()
        image.RelationshipType, image.ValueType = "CONTAINS", "IMAGE"
        image.ReferencedSOPSequence = Sequence([sop_ref(*ref)])
        items.append(image)
    ds.ContentSequence = Sequence(items)


def _encapsulate(ds: Dataset, ctx: Ctx, document: bytes, mime: str) -> None:
    ds.ConversionType, ds.BurnedInAnnotation = "WSD", "YES"
    if ctx.first:  # Type 2 in the IOD and in the ENCAP DOC record
        ds.ContentDate, ds.ContentTime, ds.DocumentTitle = None, None, None
        ds.ConceptNameCodeSequence = Sequence()
    else:
        ds.ContentDate, ds.ContentTime = "20240305", "090000"
        ds.DocumentTitle = "Treatment summary"
        ds.ConceptNameCodeSequence = Sequence([code("18748-4", "LN",
                                                    "Diagnostic imaging report")])
    ds.AcquisitionDateTime = None
    ds.MIMETypeOfEncapsulatedDocument = mime
    ds.EncapsulatedDocument = document + (b"\x00" if len(document) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(document)


def pdf(ds: Dataset, ctx: Ctx, document: bytes) -> None:
    _encapsulate(ds, ctx, document, "application/pdf")


def cda(ds: Dataset, ctx: Ctx) -> None:
    """Encapsulated CDA: an HL7 Structured Document, so the record needs HL7 Instance Identifier
    (PS3.3 F.5-32 1C), copied from the instance's (0040,E001) (C.24.2, Type 1C there too)."""
    root, extension = HL7_INSTANCE_IDENTIFIER.split("^")
    document = (f'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3">'
                f'<id root="{root}" extension="{extension}"/></ClinicalDocument>\n').encode()
    _encapsulate(ds, ctx, document, "text/XML")
    ds.HL7InstanceIdentifier = HL7_INSTANCE_IDENTIFIER

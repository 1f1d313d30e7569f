"""The directory record keys of PS3.3 F.5 (current edition) and the record type of a SOP Class.

Written out from the standard (see /work/notes/dicomdir-records.md for the sources), not taken
from zipproxy or from pydicom's recorders, so that the checker judges both. ``KEYS[type]`` is
``{keyword: Type}`` with Type "1", "2" or "1C"; the 1C conditions are in ``dicomdircheck``.
"""

from __future__ import annotations

from pydicom.fileset import _FOUR_LEVEL_SOP_CLASSES, _SINGLE_LEVEL_SOP_CLASSES
from pydicom.uid import UID

_CIM = {"InstanceNumber": "1", "ContentLabel": "1", "ContentDescription": "2",
        "ContentCreatorName": "2"}  # Content Identification Macro, PS3.3 Table 10-12
_CONTENT = {"ContentDate": "1", "ContentTime": "1"}

KEYS: dict[str, dict[str, str]] = {
    "PATIENT": {"PatientName": "2", "PatientID": "1"},  # F.5-1
    "STUDY": {"StudyDate": "1", "StudyTime": "1", "StudyDescription": "2",
              "StudyInstanceUID": "1C", "StudyID": "1", "AccessionNumber": "2"},  # F.5-2
    "SERIES": {"Modality": "1", "SeriesInstanceUID": "1", "SeriesNumber": "1"},  # F.5-3
    "IMAGE": {"InstanceNumber": "1"},  # F.5-4
    "RT DOSE": {"InstanceNumber": "1", "DoseSummationType": "1"},  # F.5-19
    "RT STRUCTURE SET": {"InstanceNumber": "1", "StructureSetLabel": "1",
                         "StructureSetDate": "2", "StructureSetTime": "2"},  # F.5-20
    "RT PLAN": {"InstanceNumber": "1", "RTPlanLabel": "1", "RTPlanDate": "2",
                "RTPlanTime": "2"},  # F.5-21
    "RT TREAT RECORD": {"InstanceNumber": "1", "TreatmentDate": "2",
                        "TreatmentTime": "2"},  # F.5-22
    "PRESENTATION": {"PresentationCreationDate": "1", "PresentationCreationTime": "1", **_CIM,
                     "ReferencedSeriesSequence": "1C", "BlendingSequence": "1C"},  # F.5-23
    "WAVEFORM": {"InstanceNumber": "1", **_CONTENT},  # F.5-24
    "SR DOCUMENT": {"InstanceNumber": "1", "CompletionFlag": "1", "VerificationFlag": "1",
                    **_CONTENT, "VerificationDateTime": "1C", "ConceptNameCodeSequence": "1",
                    "ContentSequence": "1C"},  # F.5-25
    "KEY OBJECT DOC": {"InstanceNumber": "1", **_CONTENT, "ConceptNameCodeSequence": "1",
                       "ContentSequence": "1C"},  # F.5-26
    "SPECTROSCOPY": {"ImageType": "1", **_CONTENT, "InstanceNumber": "1",
                     "ReferencedImageEvidenceSequence": "1C", "NumberOfFrames": "1",
                     "Rows": "1", "Columns": "1", "DataPointRows": "1",
                     "DataPointColumns": "1"},  # F.5-27
    "RAW DATA": {**_CONTENT, "InstanceNumber": "2"},  # F.5-28
    "REGISTRATION": {**_CONTENT, **_CIM},  # F.5-29
    "FIDUCIAL": {**_CONTENT, **_CIM},  # F.5-30
    "HANGING PROTOCOL": {"HangingProtocolName": "1", "HangingProtocolDescription": "1",
                         "HangingProtocolLevel": "1", "HangingProtocolCreator": "1",
                         "HangingProtocolCreationDateTime": "1",
                         "HangingProtocolDefinitionSequence": "1",
                         "NumberOfPriorsReferenced": "1",
                         "HangingProtocolUserIdentificationCodeSequence": "2"},  # F.5-31
    "ENCAP DOC": {"ContentDate": "2", "ContentTime": "2", "InstanceNumber": "1",
                  "DocumentTitle": "2", "HL7InstanceIdentifier": "1C",
                  "ConceptNameCodeSequence": "2",
                  "MIMETypeOfEncapsulatedDocument": "1"},  # F.5-32
    "VALUE MAP": {**_CONTENT, **_CIM},  # F.5-34
    # F.5-35 lists Specific Character Set only; dicom3tools' dciodvfy requires the Content
    # Identification Macro, so zipproxy writes it (supplied when the instance lacks it).
    "STEREOMETRIC": {"InstanceNumber": "1", "ContentLabel": "1", "ContentDescription": "2"},
    "PALETTE": {"ContentLabel": "1", "ContentDescription": "2"},  # F.5-36
    "IMPLANT": {"Manufacturer": "1", "ImplantName": "1", "ImplantSize": "1C",
                "ImplantPartNumber": "1"},  # F.5-37
    "IMPLANT ASSY": {"ImplantAssemblyTemplateName": "1", "Manufacturer": "1",
                     "ProcedureTypeCodeSequence": "1"},  # F.5-38
    "IMPLANT GROUP": {"ImplantTemplateGroupName": "1",
                      "ImplantTemplateGroupIssuer": "1"},  # F.5-39
    "PLAN": {},  # F.5-40
    "MEASUREMENT": {**_CONTENT, **_CIM},  # F.5-41
    "SURFACE": {**_CONTENT, **_CIM},  # F.5-42
    "SURFACE SCAN": dict(_CONTENT),  # F.5-43
    "TRACT": {**_CONTENT, **_CIM},  # F.5-44
    "ASSESSMENT": {"InstanceNumber": "1", "InstanceCreationDate": "1",
                   "InstanceCreationTime": "2"},  # F.5-45
    "RADIOTHERAPY": {"InstanceNumber": "1", "UserContentLabel": "1C",
                     "UserContentLongLabel": "1C", "ContentDescription": "2",
                     "ContentCreatorName": "2"},  # F.5-46
    "PRIVATE": {},
}
#: PS3.3 F.4: records of the root directory entity (no PATIENT above them).
SINGLE_LEVEL = frozenset({"HANGING PROTOCOL", "PALETTE", "IMPLANT", "IMPLANT ASSY",
                          "IMPLANT GROUP"})
#: Keys that "Required if present in the (referenced) instance" (F.5-27, F.5-37, F.5-46).
IF_PRESENT = frozenset({"ReferencedImageEvidenceSequence", "ImplantSize", "UserContentLabel",
                        "UserContentLongLabel", "BlendingSequence"})
#: IODs that include the Presentation State Relationship Module (F.5-23's condition for
#: Referenced Series Sequence): Grayscale, Color, Pseudo-Color and XA/XRF Grayscale Softcopy PS.
PS_RELATIONSHIP_IODS = frozenset(f"1.2.840.10008.5.1.4.1.1.11.{n}" for n in (1, 2, 3, 5))
_STORAGE = "1.2.840.10008.5.1.4.1.1."
_EXTRA_CLASSES = {f"{_STORAGE}481.5": "RT PLAN", f"{_STORAGE}481.8": "RT PLAN"}


def expected_record_type(sop_class: str, modality: str) -> str:
    """PS3.3 F.4/F.5: the record type an instance of ``sop_class`` gets, whatever it carries."""
    if modality in ("RTINTENT", "RTSEGANN", "RTRAD"):
        return "RADIOTHERAPY"  # F.5-46: RT Second Generation IODs, by Modality (A.86.1)
    if modality == "PLAN":
        return "PLAN"
    table = {**_FOUR_LEVEL_SOP_CLASSES, **_SINGLE_LEVEL_SOP_CLASSES, **_EXTRA_CLASSES}
    if sop_class in table:
        return str(table[sop_class])  # type: ignore[index]
    if sop_class.startswith(f"{_STORAGE}104."):
        return "ENCAP DOC"
    uid = UID(sop_class)
    if uid.is_valid and uid.name != sop_class and uid.name.endswith("Storage"):
        return "IMAGE"  # any other standard storage SOP Class is an image (F.5.4)
    return "PRIVATE"

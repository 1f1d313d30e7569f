"""The stand-in Orthanc reads deploy/docker-compose.yml's variables as orthancteam/orthanc does."""

from __future__ import annotations

from pathlib import Path

import yaml  # type: ignore[import-untyped,unused-ignore]
from orthanc_entrypoint import DICOMWEB_PLUGIN, config_from, key_name, value_of

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.yml"


def test_the_compose_files_environment() -> None:
    env = yaml.safe_load(COMPOSE.read_text())["services"]["orthanc"]["environment"]
    config = config_from({**env, "PATH": "/usr/bin"})
    assert config["Plugins"] == [DICOMWEB_PLUGIN]
    assert config["DicomWeb"] == {"Enable": True, "Root": "/dicom-web/"}
    assert config["AuthenticationEnabled"] is False
    assert config["RemoteAccessAllowed"] is True
    assert config["Name"] == "zipproxy-demo"
    # The compose file's volume is mounted where the storage is.
    (volume,) = yaml.safe_load(COMPOSE.read_text())["services"]["orthanc"]["volumes"]
    assert volume.split(":")[1] == config["StorageDirectory"] == config["IndexDirectory"]


def test_defaults_without_variables() -> None:
    config = config_from({})
    assert config["AuthenticationEnabled"] is True, "like the real image: auth unless turned off"
    assert config["Plugins"] == [] and config["HttpPort"] == 8042


def test_names_and_values() -> None:
    assert key_name("DICOM_WEB") == "DicomWeb"
    assert key_name("REMOTE_ACCESS_ALLOWED") == "RemoteAccessAllowed"
    assert value_of("true") is True and value_of("8042") == 8042
    assert value_of('{"alice": "pw"}') == {"alice": "pw"}
    assert value_of("/dicom-web/") == "/dicom-web/"
    users = config_from({"ORTHANC__REGISTERED_USERS": '{"alice": "pw"}'})
    assert users["RegisteredUsers"] == {"alice": "pw"}

#!/usr/bin/env python3
"""Entrypoint of the stand-in for ``orthancteam/orthanc`` (no registry is reachable here).

The stand-in image is Debian's ``orthanc`` and ``orthanc-dicomweb`` packages (built by
scripts/container.sh with mmdebstrap). deploy/docker-compose.yml configures the real image with
environment variables, so this entrypoint reads the same ones before it execs Orthanc:

- ``ORTHANC__<KEY>[__<SUBKEY>...]=<value>`` sets a key of orthanc.json. Each ``__``-separated
  part is UPPER_SNAKE_CASE for the PascalCase key (``DICOM_WEB__ROOT`` is ``DicomWeb.Root``,
  ``REMOTE_ACCESS_ALLOWED`` is ``RemoteAccessAllowed``); a value that parses as JSON (``true``,
  ``8042``, ``{"alice": "pw"}``) is used as JSON, anything else as a string.
- ``DICOM_WEB_PLUGIN_ENABLED=true`` loads the DICOMweb plugin.

Like the real image: storage in /var/lib/orthanc/db, HTTP on 8042, authentication on unless
turned off. Only what the compose file uses is imitated; it is not a copy of that image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BINARY = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
CONFIG = Path("/tmp/orthanc.json")
PREFIX = "ORTHANC__"

DEFAULTS: dict[str, Any] = {
    "StorageDirectory": "/var/lib/orthanc/db",
    "IndexDirectory": "/var/lib/orthanc/db",
    "HttpPort": 8042,
    "AuthenticationEnabled": True,
    "Plugins": [],
}


def key_name(part: str) -> str:
    """``DICOM_WEB`` -> ``DicomWeb``."""
    return "".join(word.capitalize() for word in part.split("_"))


def value_of(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def config_from(env: Mapping[str, str]) -> dict[str, Any]:
    """orthanc.json for the environment ``env``."""
    config: dict[str, Any] = json.loads(json.dumps(DEFAULTS))  # a deep copy
    for name in sorted(env):
        if not name.startswith(PREFIX):
            continue
        *parents, leaf = [key_name(p) for p in name.removeprefix(PREFIX).split("__")]
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value_of(env[name])
    if env.get("DICOM_WEB_PLUGIN_ENABLED", "").lower() == "true":
        config["Plugins"] = [*config["Plugins"], DICOMWEB_PLUGIN]
        config.setdefault("DicomWeb", {}).setdefault("Enable", True)
    return config


def main() -> None:
    config = config_from(os.environ)
    CONFIG.write_text(json.dumps(config, indent=2))
    Path(config["StorageDirectory"]).mkdir(parents=True, exist_ok=True)
    print(f"orthanc stand-in: {CONFIG}: {json.dumps(config)}", flush=True)
    os.execv(BINARY, [BINARY, str(CONFIG)])  # Orthanc is PID 1 and gets SIGTERM itself


if __name__ == "__main__":
    main()

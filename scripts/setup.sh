#!/usr/bin/env bash
# Install what zipproxy needs on Debian 12: system packages (only those missing), then a venv.
#   scripts/setup.sh          runtime + demo (Orthanc and its DICOMweb plugin, the demo extra)
#   scripts/setup.sh --test   also the test clients (dcmtk, dicom3tools, 7zip, bsdtar, unzip,
#                             Java, Chromium), the Python test tools, and what
#                             scripts/container.sh builds and runs the image with: podman with
#                             runc (crun, its default here, cannot run on this cgroup setup),
#                             mmdebstrap (the stand-in base images) and the CNI dnsname plugin
#                             (compose services find each other by name)
#   scripts/setup.sh --bench  also what bench/ needs: nginx-light (the bench starts its own nginx
#                             on a loopback port; the package's service is not used) and 7zip
#                             (checks the encrypted ZIPs)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --bench) want_bench=1 ;;
    *) echo "setup: unknown option $arg (--test, --bench)" >&2; exit 2 ;;
  esac
done

pkgs=(orthanc orthanc-dicomweb python3-venv python3-pip curl ca-certificates)
[ $want_test = 1 ] && pkgs+=(dcmtk dicom3tools 7zip libarchive-tools unzip default-jdk-headless chromium
                             podman runc mmdebstrap golang-github-containernetworking-plugin-dnsname)
[ $want_bench = 1 ] && pkgs+=(nginx-light 7zip)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extra="[demo]"  # the demo's (and the bench's) Orthanc loader; the proxy alone needs no extra
[ $want_test = 1 ] && extra="[test]"
log=$(mktemp)
if ! { .venv/bin/python -m pip install -q --upgrade pip &&
       .venv/bin/python -m pip install -q -e ".$extra"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup: pip install failed" >&2
  exit 1
fi
rm -f "$log"

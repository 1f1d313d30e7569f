#!/usr/bin/env bash
# Build deploy/Dockerfile with podman and run the image for real (scripts/test.sh runs this):
#   1. stand-in base images from Debian's packages (no registry is reachable here), made with
#      mmdebstrap once and kept in podman's storage: python:3.11-slim's and orthancteam/orthanc's
#   2. podman build -> localhost/zipproxy:<version> and localhost/zipproxy:latest, with this
#      machine's pip index settings passed in (tests/container/pipconf.py); prints the image size
#   3. the image against a real Orthanc: ZIPs (zipfile CRCs, dciodvfy, ...), uid 10001,
#      HEALTHCHECK, SIGTERM with ZIPs in flight (tests/container/check.py image)
#   4. deploy/docker-compose.yml with podman-compose (tests/container/check.py compose)
# The containers, network and volume it made are removed and the Orthanc it started is stopped
# on every exit path. Needs what scripts/setup.sh --test installs.
set -euo pipefail
cd "$(dirname "$0")/.."
# Rootful podman (rootless would need subordinate uids and slirp4netns), as scripts/setup.sh
# uses sudo for apt when not root.
if [ "$(id -u)" -ne 0 ]; then
  echo "container: podman and mmdebstrap run as root: sudo $0" >&2
  exec sudo --preserve-env "$0" "$@"
fi

# podman 4.3 on these machines needs runc, cgroupfs and no default ulimits: a project file,
# not the machine's /etc/containers/containers.conf.
export CONTAINERS_CONF="$PWD/tests/container/containers.conf"
PY=.venv/bin/python
version=$($PY -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
run_id="zipproxy-test-$$"
work=$(mktemp -d "${TMPDIR:-/tmp}/zipproxy-container.XXXXXX")
compose_image="localhost/zipproxy-compose:$run_id"

say() { echo "container: $*"; }

# Long steps run as a child that a signal to this script reaches (bash would otherwise wait for a
# foreground command to end before running its trap); check.py turns SIGTERM into its cleanup.
child=""
step() {
  local rc=0
  "$@" & child=$!
  wait "$child" || rc=$?
  child=""
  return "$rc"
}
forward() { if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; wait "$child"; fi; }

cleanup() {
  local status=$? ids pid
  set +e
  trap - EXIT INT TERM
  forward
  # Containers of this run only: by label (check.py's) and by compose project, removed by ID.
  ids=$( { podman ps -a -q --filter "label=zipproxy.test.run=$run_id"
           podman ps -a -q --filter "label=io.podman.compose.project=$run_id"; } 2>/dev/null | sort -u)
  [ -n "$ids" ] && podman rm -f -t 0 $ids >/dev/null 2>&1
  podman network rm "${run_id}_default" >/dev/null 2>&1
  podman volume rm "${run_id}_orthanc-db" >/dev/null 2>&1
  podman rmi "$compose_image" >/dev/null 2>&1
  # The Orthanc check.py started, by PID, if it still runs (its command line names $work).
  if [ -f "$work/orthanc.pid" ]; then
    pid=$(cat "$work/orthanc.pid")
    if grep -qF "$work" "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'forward; exit 130' INT
trap 'forward; exit 143' TERM

# --- 1. stand-in base images --------------------------------------------------------------------
# Debian bookworm (Python 3.11) without docs, man pages and locales, like the slim images.
debootstrap_args=(--variant=apt --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*')

# standin NAME CHANGES [FILE...] -- MMDEBSTRAP-ARGS: make the image once (podman import of an
# mmdebstrap tarball, CHANGES one Dockerfile instruction a line). Its tag is a hash of the recipe
# and of the FILEs it copies in, so a changed recipe makes a new image. Prints the image name.
standin() {
  local name=$1 changes=$2 files=() tag image line change_args=()
  shift 2
  while [ "$1" != "--" ]; do files+=("$1"); shift; done
  shift
  tag=$( { printf '%s\n' "$changes" "${debootstrap_args[@]}" "$@"; cat /dev/null "${files[@]}"; } |
         sha256sum | cut -c1-12)
  image="localhost/zipproxy-standin/$name:$tag"
  if ! podman image exists "$image"; then
    say "making the stand-in $image with mmdebstrap (once; kept in podman's storage)" >&2
    if ! mmdebstrap "${debootstrap_args[@]}" "$@" bookworm "$work/$name.tar" >"$work/$name.log" 2>&1
    then
      tail -n 40 "$work/$name.log" >&2
      return 1
    fi
    while IFS= read -r line; do change_args+=(--change "$line"); done <<<"$changes"
    podman import --quiet "${change_args[@]}" "$work/$name.tar" "$image" >/dev/null
    rm -f "$work/$name.tar"
  fi
  echo "$image"
}

# python:3.11-slim's stand-in: Debian's Python 3.11 and pip, `python` on PATH, groupadd/useradd,
# and pip allowed to install into it as in the official image (no EXTERNALLY-MANAGED marker).
python_base=$(standin python 'CMD ["python3"]' -- \
  --include=python3,python3-pip,python-is-python3,passwd,ca-certificates \
  --customize-hook='rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED')
# orthancteam/orthanc's stand-in: Debian's Orthanc 1.10 and DICOMweb plugin, configured from
# the same environment variables as the real image.
entrypoint=tests/container/orthanc_entrypoint.py
orthanc_base=$(standin orthanc 'ENTRYPOINT ["python3", "/usr/local/bin/orthanc_entrypoint.py"]
EXPOSE 8042' "$entrypoint" -- \
  --include=orthanc,orthanc-dicomweb,python3 \
  --customize-hook="copy-in $entrypoint /usr/local/bin")
say "stand-in base images: $python_base, $orthanc_base"

# --- 2. the image ----------------------------------------------------------------------------
mapfile -t pip_args < <($PY tests/container/pipconf.py "$work/pip")
# docker format: the OCI image config has no HEALTHCHECK, podman would drop it. No layer cache:
# every run builds as an operator's first build does (and leaves no intermediate images).
build_args=(--format docker --layers=false --build-arg "BASE_IMAGE=$python_base" "${pip_args[@]}")
old=$(podman image inspect -f '{{.Id}}' localhost/zipproxy:latest 2>/dev/null || true)
started=$SECONDS
if ! step podman build "${build_args[@]}" -f deploy/Dockerfile --iidfile "$work/iid" \
     -t "localhost/zipproxy:$version" -t localhost/zipproxy:latest . >"$work/build.log" 2>&1; then
  tail -n 60 "$work/build.log" >&2
  say "podman build failed" >&2
  exit 1
fi
image=$(cat "$work/iid")
image=${image#sha256:}
mb() { echo $(( ($(podman image inspect -f '{{.Size}}' "$1") + 500000) / 1000000 )); }  # as podman images
say "built localhost/zipproxy:$version and :latest (${image:0:12}) in $((SECONDS - started)) s;" \
    "image size $(mb "$image") MB, of which the stand-in base $(mb "$python_base") MB"
# The image this build replaced, once nothing names or uses it (by ID; never a global prune).
if [ -n "$old" ] && [ "$old" != "$image" ] &&
   [ "$(podman image inspect -f '{{len .RepoTags}}' "$old" 2>/dev/null)" = 0 ]; then
  podman rmi "$old" >/dev/null 2>&1 || true
fi

# --- 3. the image against a real Orthanc ------------------------------------------------------
step $PY tests/container/check.py image --image "$image" --run-id "$run_id" --work "$work"

# --- 4. the compose file ----------------------------------------------------------------------
export STANDIN_ORTHANC_IMAGE=$orthanc_base
step $PY tests/container/check.py compose \
  --image "$compose_image" --run-id "$run_id" --work "$work" -- "${build_args[@]}"
say "all checks passed"

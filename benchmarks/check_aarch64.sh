#!/usr/bin/env bash
# Checks that every runtime dependency installs on Raspberry Pi OS 64-bit (Bookworm: aarch64,
# glibc 2.36, Python 3.11): binary wheels for manylinux_2_17 ... 2_36 aarch64 (pip does not widen
# a single platform tag, so each is passed), plus pyalsaaudio's source (built there with
# libasound2-dev, python3-dev and gcc).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
platforms=()
for x in $(seq 17 36); do platforms+=(--platform "manylinux_2_${x}_aarch64"); done
.venv/bin/python -m pip download -q --only-binary=:all: --python-version 3.11 "${platforms[@]}" -d "$out" \
  -c constraints.txt numpy ai-edge-litert python-gammu soxr soundfile psutil click
.venv/bin/python -m pip download -q --no-binary=:all: --no-deps -d "$out" -c constraints.txt pyalsaaudio
ls "$out"
rm -rf "$out"
echo "pyalsaaudio is built from source on the Pi: sudo apt install libasound2-dev python3-dev gcc"

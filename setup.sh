#!/usr/bin/env bash
# Installs what the detector needs on Debian 12 / Raspberry Pi OS (Bookworm): system packages,
# then a virtual environment in .venv/ with pinned versions (constraints.txt).
#   ./setup.sh           the detector (runtime only: no TensorFlow, no librosa)
#   ./setup.sh --train   + TensorFlow and librosa, to train and export models
#   ./setup.sh --test    + the above, pytest and ruff, espeak-ng, and PulseAudio for the real-time tests
set -euo pipefail
cd "$(dirname "$0")"

extras=""
apt_packages="python3-venv python3-dev gcc libasound2-dev alsa-utils libatomic1"
case "${1:-}" in
  "") ;;
  --train) extras="[train]" ;;
  --test) extras="[train,test]"; apt_packages="$apt_packages espeak-ng pulseaudio pulseaudio-utils libasound2-plugins" ;;
  *) echo "usage: $0 [--train|--test]" >&2; exit 2 ;;
esac

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if command -v apt-get >/dev/null; then
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $apt_packages >/dev/null
else
  echo "no apt-get: install by hand: $apt_packages" >&2
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".$extras"
echo "installed into $(pwd)/.venv"

#!/usr/bin/env bash
# Install the system tools studio's animatic profile and its tests use, where
# missing: ffmpeg, espeak-ng, fluidsynth with a General MIDI soundfont, a
# font that renders Japanese, and the fallback fonts for other scripts and
# emoji (README: Fonts). Safe to run repeatedly; needs root (or sudo)
# only when something is missing.
#
# --tests also installs the servers the test suite starts on loopback: nginx
# (WebDAV PUT, the HTTP remote cache) and moto's S3 server (from PyPI), and
# Debian's headless Chromium with its chromedriver for the dashboard's browser
# test (about 12 s to install once the package lists are fresh).
set -euo pipefail
tests=false
[ "${1:-}" = "--tests" ] && tests=true

packages=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || packages+=("$2"); }
need_file() { [ -e "$1" ] || packages+=("$2"); }

need_cmd ffmpeg ffmpeg
need_cmd ffprobe ffmpeg
need_cmd espeak-ng espeak-ng
need_cmd fluidsynth fluidsynth
need_file /usr/share/sounds/sf2/FluidR3_GM.sf2 fluid-soundfont-gm
need_file /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc fonts-noto-cjk
need_file /usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf fonts-noto-core
need_file /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf fonts-noto-color-emoji
need_file /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf fonts-dejavu-core
need_cmd python3 python3   # ../shared/tools/media-report, used by tests when present
need_cmd pgrep procps      # tests check that no tool outlives an interrupted build
if $tests; then
    need_cmd nginx nginx
    need_cmd chromium chromium
    need_cmd chromedriver chromium-driver
    python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
fi

install_moto() {
    $tests || return 0
    python3 -c "import moto.server, flask_cors" 2>/dev/null && return 0
    echo "installing: moto[server] (pip)" >&2
    # Debian's own python3 refuses pip installs outside a venv (PEP 668).
    python3 -m pip install -q 'moto[server]' 2>/dev/null ||
        python3 -m pip install -q --break-system-packages 'moto[server]'
}

if [ ${#packages[@]} -eq 0 ]; then
    install_moto
    exit 0
fi
# Deduplicate (ffmpeg provides two commands).
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
echo "installing: ${packages[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
install_moto

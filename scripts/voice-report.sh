#!/usr/bin/env bash
# How the sample's characters sound: builds the episode's voice lines (with
# the default profile: Piper when the voices venv is there) and prints, per
# speaker, the median pitch (F0, by autocorrelation), its spread, the
# loudness of the speech and the speaking rate. Usage:
#   scripts/voice-report.sh [EPISODE] (default ep01)
# STUDIO_BIN=path picks the studio binary (default target/release/studio,
# else target/debug/studio).
set -euo pipefail
cd "$(dirname "$0")/.."
episode="${1:-ep01}"
bin="${STUDIO_BIN:-target/release/studio}"
[ -x "$bin" ] || bin=target/debug/studio
[ -x "$bin" ] || { echo "build studio first (cargo build --release)" >&2; exit 2; }
venv="${STUDIO_VOICES:-${XDG_DATA_HOME:-$HOME/.local/share}/studio/voices}"
[ -x "$venv/bin/python" ] || { echo "no voices venv at $venv: run scripts/deps.sh" >&2; exit 2; }
lines="$(mktemp)"
trap 'rm -f "$lines"' EXIT
# node id, wav, speaker, text: one line per dialogue line of the screenplay.
python3 - "$episode" >"$lines" <<'PY'
import sys, yaml
ep = sys.argv[1]
doc = yaml.safe_load(open(f"episodes/{ep}.yaml", encoding="utf-8"))
for scene in doc["scenes"]:
    for shot in scene["shots"]:
        for i, d in enumerate(shot.get("dialogue") or [], 1):
            rel = f"{ep}/{scene['id']}/{shot['id']}"
            text = " ".join(str(d["text"]).split())
            print(f"voice_line:{rel}/{i}\tout/{rel}/voice-{i}.wav\t{d['speaker']}\t{text}")
PY
cut -f1 "$lines" | xargs "$bin" build >&2
"$venv/bin/python" scripts/voice_report.py "$lines"

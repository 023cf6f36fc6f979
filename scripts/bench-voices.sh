#!/usr/bin/env bash
# Voice lines per second: one warm worker for N lines vs one process per
# line (what studio would pay without persistent workers). Uses the worker
# script studio runs, in the voices venv (scripts/deps.sh).
# Usage: scripts/bench-voices.sh [piper|kokoro_ja] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
engine="${1:-piper}"
n="${2:-10}"
venv="${STUDIO_VOICES:-${XDG_DATA_HOME:-$HOME/.local/share}/studio/voices}"
py="$venv/bin/python"
[ -x "$py" ] || { echo "no voices venv at $venv: run scripts/deps.sh" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [ "$engine" = piper ]; then
    text="The night mail came in late, and nobody signed for it."
    req() { printf '{"id":%d,"text":"%s","out":"%s/%d.wav","seed":%d,"length_scale":1.0,"noise_scale":0.667,"noise_w_scale":0.8}\n' "$1" "$text" "$tmp" "$1" "$1"; }
else
    text="夜の郵便は遅れて届いた。"
    req() { printf '{"id":%d,"text":"%s","out":"%s/%d.wav","voice":"jf_alpha","speed":1.0}\n' "$1" "$text" "$tmp" "$1"; }
fi
now() { date +%s.%N; }
t0=$(now)
for i in $(seq 1 "$n"); do req "$i"; done | "$py" -u scripts/workers/voice_worker.py "$engine" 1 2>/dev/null | grep -c '"ok": true' >/dev/null
t1=$(now)
for i in $(seq 1 "$n"); do req "$i" | "$py" -u scripts/workers/voice_worker.py "$engine" 1 2>/dev/null >/dev/null; done
t2=$(now)
audio=$("$py" -c "import wave,sys,glob; print(sum(wave.open(f).getnframes()/wave.open(f).getframerate() for f in glob.glob(sys.argv[1]+'/*.wav')))" "$tmp")
awk -v n="$n" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v a="$audio" -v e="$engine" 'BEGIN {
    w = t1 - t0; c = t2 - t1
    printf "%s, %d lines (%.1f s of speech):\n", e, n, a
    printf "  warm worker:       %6.2f s  %5.2f lines/s\n", w, n / w
    printf "  process per line:  %6.2f s  %5.2f lines/s  (%.1fx slower)\n", c, n / c, c / w
}'

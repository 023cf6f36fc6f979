#!/usr/bin/env bash
# Cold animatic build of the sample episode, as a ratio of build time to
# episode length, with the neural voices (Piper, a worker in the voices
# venv) and with espeak-ng (STUDIO_VOICES names a missing venv, so every
# line falls back to espeak). Each build runs in a fresh clone of this
# repository's HEAD (no out/, no cache/): nothing is reused between them.
# Usage: scripts/bench-cold.sh [TARGET] (default ep01).
# STUDIO_BIN=path uses that studio binary instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-ep01}"
if [ -z "${STUDIO_BIN:-}" ]; then
    cargo build --release --locked >&2
    STUDIO_BIN="$PWD/target/release/studio"
fi
bin="$(realpath "$STUDIO_BIN")"
[ -x "$bin" ] || { echo "no studio binary at $bin" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
now() { date +%s.%N; }

# cold NAME [ENV...]: build TARGET in a fresh clone; prints "seconds episode_seconds".
cold() {
    local name="$1"
    shift
    git clone --quiet --no-hardlinks . "$tmp/$name"
    local t0 t1
    t0=$(now)
    (cd "$tmp/$name" && env "$@" "$bin" build "$target" >"$tmp/$name.log" 2>&1) || {
        echo "the $name build failed; its log:" >&2
        tail -20 "$tmp/$name.log" >&2
        exit 1
    }
    t1=$(now)
    local video="$tmp/$name/out/$target/$target.mp4"
    local length
    length=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$video")
    awk -v a="$t0" -v b="$t1" -v l="$length" 'BEGIN { printf "%.1f %.1f\n", b - a, l }'
}

read -r neural_s length < <(cold neural)
[ -f "$tmp/neural/cache/workers/piper.log" ] || { echo "no Piper worker ran: run scripts/deps.sh" >&2; exit 2; }
read -r espeak_s _ < <(cold espeak STUDIO_VOICES="$tmp/no-voices-venv")
load=$(cut -d' ' -f1-3 /proc/loadavg)
awk -v n="$neural_s" -v e="$espeak_s" -v l="$length" -v t="$target" -v load="$load" -v c="$(nproc)" 'BEGIN {
    printf "%s, %.1f s long, cold animatic build (%d cores, load average %s):\n", t, l, c, load
    printf "  neural voices (piper): %7.1f s  %5.2fx the episode length\n", n, n / l
    printf "  espeak-ng:             %7.1f s  %5.2fx the episode length\n", e, e / l
}'

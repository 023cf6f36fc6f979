#!/usr/bin/env bash
# Set up and start a real ComfyUI 0.8.0 on CPU, on loopback, for the opt-in
# test tests/comfy/real.rs (README: ComfyUI, "Against a real ComfyUI").
# Nothing here runs in CI: torch alone is about 3 GB.
#
#   scripts/real-comfyui.sh setup DIR   # DIR: ComfyUI v0.8.0's source tree
#   scripts/real-comfyui.sh start DIR [PORT]   # default port 18188
#   scripts/real-comfyui.sh stop DIR
#
# DIR is a copy of ComfyUI at tag v0.8.0 (commit 3cd7b32f; e.g. `git clone
# --depth 1 --branch v0.8.0` of comfyanonymous/ComfyUI, or `git archive` of
# that commit from any clone). `setup` makes one venv, DIR/.venv, with its
# requirements.txt and torch from PyPI (the CUDA build runs with --cpu),
# plus `requests` (server.py imports it; 0.8.0's requirements.txt does not
# list it), then empties pip's cache. `start` runs `main.py --cpu --listen
# 127.0.0.1`, waits until /system_stats answers and prints the line that
# turns the test on; the server's log is DIR/studio-server.log.
set -euo pipefail

usage() {
    sed -n '6,8p' "$0" | sed 's/^# *//'
    exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$(cd "$2" && pwd)
port=${3:-18188}
[ -f "$dir/main.py" ] && [ -f "$dir/comfyui_version.py" ] || {
    echo "$dir is not a ComfyUI source tree (no main.py, comfyui_version.py)" >&2
    exit 2
}

case "$cmd" in
    setup)
        version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$dir/comfyui_version.py")
        [ "$version" = "0.8.0" ] || echo "warning: $dir is ComfyUI $version; the test was written against 0.8.0" >&2
        [ -x "$dir/.venv/bin/python" ] || python3 -m venv "$dir/.venv"
        "$dir/.venv/bin/pip" install --no-cache-dir -r "$dir/requirements.txt" requests
        "$dir/.venv/bin/pip" cache purge >/dev/null 2>&1 || true
        echo "ready: scripts/real-comfyui.sh start $dir"
        ;;
    start)
        [ -x "$dir/.venv/bin/python" ] || { echo "run: scripts/real-comfyui.sh setup $dir" >&2; exit 2; }
        url="http://127.0.0.1:$port"
        if curl -fsS "$url/system_stats" >/dev/null 2>&1; then
            echo "something already answers at $url" >&2
            exit 1
        fi
        cd "$dir"
        nohup .venv/bin/python main.py --cpu --listen 127.0.0.1 --port "$port" \
            </dev/null >"$dir/studio-server.log" 2>&1 &
        echo $! >"$dir/studio-server.pid"
        disown
        for _ in $(seq 1 180); do
            if curl -fsS "$url/system_stats" >/dev/null 2>&1; then
                echo "ComfyUI answers at $url (log: $dir/studio-server.log). Run:"
                echo "  STUDIO_REAL_COMFYUI=$url cargo test --test comfy real::"
                exit 0
            fi
            if ! kill -0 "$(cat "$dir/studio-server.pid")" 2>/dev/null; then
                echo "ComfyUI exited; the end of its log:" >&2
                tail -20 "$dir/studio-server.log" >&2
                exit 1
            fi
            sleep 1
        done
        echo "ComfyUI did not answer at $url within 3 minutes (log: $dir/studio-server.log)" >&2
        exit 1
        ;;
    stop)
        pid_file="$dir/studio-server.pid"
        [ -f "$pid_file" ] || { echo "no server started by this script in $dir" >&2; exit 1; }
        kill "$(cat "$pid_file")" 2>/dev/null || true
        rm -f "$pid_file"
        ;;
    *) usage ;;
esac

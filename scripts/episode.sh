#!/usr/bin/env bash
# Build an episode of the sample project as an animatic, installing what it
# needs first. Usage: scripts/episode.sh [TARGET] (default ep01).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cargo build --release --locked
./target/release/studio build "${1:-ep01}"
echo "the episode is in out/${1:-ep01}/" >&2

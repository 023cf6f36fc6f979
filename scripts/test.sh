#!/usr/bin/env bash
# Run studio's whole test suite, installing what the tests need first.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh --tests

cargo test --locked --workspace "$@"

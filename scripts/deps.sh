#!/usr/bin/env bash
# Install the system tools studio's builds and tests use, where missing.
# Safe to run repeatedly; needs root (or sudo) only when something is missing.
set -euo pipefail

# The Debian packages studio uses, and a command each provides.
packages=()
need() { command -v "$1" >/dev/null 2>&1 || packages+=("$2"); }
# (none yet for the sim profile; the animatic profile adds ffmpeg, espeak-ng, …)

if [ ${#packages[@]} -eq 0 ]; then
    exit 0
fi
echo "installing: ${packages[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"

#!/usr/bin/env bash
# Screenshots of the built documentation site as a reader sees it, in headless
# Chromium (Debian: apt-get install chromium), to check by eye:
#   bash scripts/screenshot_docs.sh [build dir] [out dir] [page ...]
# Default: docs/_build/html, docs/_build/screenshots, the index and one gallery page;
# STN_SCREENSHOT_HEIGHT (default 1400) sets the window's height in pixels.
# The pages' formulas are typeset by MathJax, which the site loads from its CDN;
# on a machine without a network, build with a local copy (npm install mathjax@3):
#   sphinx-build -b html -D mathjax_path=file://$PWD/node_modules/mathjax/es5/tex-mml-chtml.js docs DIR
set -euo pipefail
cd "$(dirname "$0")/.."

build="${1:-docs/_build/html}"
out="${2:-docs/_build/screenshots}"
shift $(( $# < 2 ? $# : 2 ))
pages=("$@")
[ ${#pages[@]} -gt 0 ] || pages=(index auto_examples/plot_register_affine)

mkdir -p "$out"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
for page in "${pages[@]}"; do
    # the flags keep Chromium off the network, which this machine's CI does not have
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --hide-scrollbars --window-size=1280,${STN_SCREENSHOT_HEIGHT:-1400} \
        --screenshot="$out/${page//\//_}.png" "file://$(realpath "$build")/$page.html" 2>/dev/null
done
ls "$out"

#!/usr/bin/env bash
# What a visitor downloads and keeps: clones this repository's HEAD with `git clone --depth 1`
# (over file://, so git packs it as a server would) into a temporary folder and prints the bytes
# received (the pack), the working tree, the largest folders, and the sum on disk.
#
#   bash tools/clone_size.sh [REPO]        # REPO: a path or URL, default this checkout
set -euo pipefail
repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
[ -e "$repo" ] && repo="file://$(cd "$repo" && pwd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git clone -q --depth 1 --no-local "$repo" "$tmp/clone"
pack=$(du -cb "$tmp"/clone/.git/objects/pack/*.pack | tail -n 1 | cut -f1)
git_dir=$(du -sb "$tmp/clone/.git" | cut -f1)
total=$(du -sb "$tmp/clone" | cut -f1)
tree=$((total - git_dir))
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
echo "clone --depth 1 of $(git -C "$tmp/clone" rev-parse --short HEAD): received $(mb "$pack") (pack)"
echo "working tree: $(mb "$tree"); .git: $(mb "$git_dir"); on disk in all: $(mb "$total")"
echo "largest folders of the working tree:"
(cd "$tmp/clone" && du -b --max-depth 2 --exclude=.git . | sort -rn | sed -n '2,9p' | while read -r b d; do printf '  %10s  %s\n' "$(mb "$b")" "${d#./}"; done)

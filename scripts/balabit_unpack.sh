#!/usr/bin/env bash
# balabit_unpack.sh - unpacks the Balabit Mouse Dynamics archive into a
# git-ignored cache folder (once) and prints that folder.
#
# usage: scripts/balabit_unpack.sh
# env:   WHISKER_DATA (../shared/data next to the repository), WHISKER_CACHE
#        (build/ in the repository; the data lands in $WHISKER_CACHE/balabit)
# The archive is unpacked into a temporary folder beside the target and renamed
# into place, so an interrupted unpack never leaves a half-filled cache.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data=${WHISKER_DATA:-$root/../shared/data}
cache=${WHISKER_CACHE:-$root/build}
tarball=$data/balabit/balabit-mouse-dynamics.tar.xz
dest=$cache/balabit

if [[ -d $dest/training_files && -d $dest/test_files ]]; then
  echo "$dest"
  exit 0
fi
if [[ ! -f $tarball ]]; then
  echo "balabit_unpack.sh: $tarball not found (set WHISKER_DATA)" >&2
  exit 1
fi
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/balabit.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "balabit_unpack.sh: unpacking $tarball into $dest" >&2
tar -xJf "$tarball" -C "$tmp"
if [[ ! -d $tmp/training_files || ! -d $tmp/test_files ]]; then
  echo "balabit_unpack.sh: $tarball has no training_files/ and test_files/" >&2
  exit 1
fi
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$dest"

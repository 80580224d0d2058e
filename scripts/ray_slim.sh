#!/usr/bin/env bash
# Ray's wheel for the GPU machine (CPython 3.12, x86-64) as a tarball of its files without
# ray/jars (Java workers), ray/dashboard/client (the dashboard's web page) and ray/rllib: about
# 30 MB instead of 79, so that it fits one device call's 64 MiB carry beside the other wheels.
# scripts/device_serve.sh unpacks it into the install target.
# Usage: scripts/ray_slim.sh VERSION DIR   (writes DIR/ray-VERSION-cp312-slim.tar.xz)
set -euo pipefail
version=${1:?usage: scripts/ray_slim.sh VERSION DIR}
dir=${2:?usage: scripts/ray_slim.sh VERSION DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux2014_x86_64 -d "$work" "ray==$version"
(cd "$work" && python3 -m zipfile -e ray-*.whl unpacked)
rm -rf "$work/unpacked/ray/jars" "$work/unpacked/ray/dashboard/client" "$work/unpacked/ray/rllib"
mkdir -p "$dir"
tar -C "$work/unpacked" -cf - . | xz -T0 -6 >"$dir/ray-$version-cp312-slim.tar.xz"
ls -l "$dir/ray-$version-cp312-slim.tar.xz"

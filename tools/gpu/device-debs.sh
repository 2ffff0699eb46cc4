#!/usr/bin/env bash
# The Debian packages that build kvworld-cli and test_cuda_ops on the GPU machine, fetched into .debs (ignored by
# git; carry it) and slimmed to fit what travels there (64 MiB with the tree, which holds two models): the static
# OpenBLAS archive (58 MB unpacked, 4.9 MB packed) is dropped from libopenblas-pthread-dev, since the build links
# the shared library. On the GPU machine: bash .debs/unpack-debs.sh .debs (tools/gpu/v2_run.sh's build phase).
#   tools/gpu/device-debs.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
../shared/device/fetch-debs.sh nlohmann-json3-dev libopenblas-dev libcli11-dev libstb-dev libgtest-dev
for deb in .debs/libopenblas-pthread-dev_*.deb; do
  stage=$(mktemp -d)
  dpkg-deb -R "$deb" "$stage"
  find "$stage" -name '*.a' -delete
  sed -i '/\.a$/d' "$stage/DEBIAN/md5sums"
  dpkg-deb -b -Zxz "$stage" "$deb" > /dev/null
  rm -rf "$stage"
done
du -sh .debs

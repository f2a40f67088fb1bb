#!/usr/bin/env bash
# `make deb`: build dist/dhcp-hotbackup_<version>_all.deb with debhelper and
# pybuild, in a copy of the source tree outside the checkout (nothing is
# written into the checkout but dist/), then run lintian on the result.
#
#   packaging/build-deb.sh [--no-lintian]
#
# Needs: dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all
# python3-setuptools help2man (lintian for the check); scripts/setup.sh installs them.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
lintian=1
[ "${1:-}" = "--no-lintian" ] && lintian=0

say() { printf 'deb: %s\n' "$*"; }

# Debian's python3 and tools, whatever this shell has first on PATH (a pyenv
# or a venv would otherwise build against another interpreter).
export PATH=/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME PYTHONSTARTUP

version=$(sed -n '1s/^dhcp-hotbackup (\([^)]*\)).*/\1/p' packaging/debian/changelog)
upstream=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' appliance/__init__.py)
if [ "$version" != "$upstream" ]; then
  say "ERROR: packaging/debian/changelog says $version, appliance/__init__.py says $upstream" >&2
  say "add a changelog entry (dch -v $upstream) before building" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dhcp-hotbackup-deb.XXXXXX")
trap '[ -n "${DEB_KEEP_WORK:-}" ] && say "kept $work" || rm -rf "$work"' EXIT
src="$work/dhcp-hotbackup-$version"
mkdir -p "$src"

# The tree as git sees it: tracked files and new files that are not ignored
# (so an uncommitted change is built, and .venv, caches and dist/ are not).
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$top" ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar -C "$top" --null -T - -cf - | tar -C "$src" -xf -
else
  tar -C "$top" --exclude-vcs --exclude-vcs-ignores --exclude=./dist -cf - . \
    | tar -C "$src" -xf -
fi
rm -rf "$src/debian"
cp -a packaging/debian "$src/debian"

say "building $version in $src"
(cd "$src" && dpkg-buildpackage -b -us -uc --no-sign) > "$work/build.log" 2>&1 || {
  tail -n 60 "$work/build.log" >&2
  say "ERROR: dpkg-buildpackage failed (last 60 lines above)" >&2
  exit 1
}

deb="dhcp-hotbackup_${version}_all.deb"
mkdir -p dist
cp "$work/$deb" dist/
say "built dist/$deb"

if [ "$lintian" = 1 ]; then
  if command -v lintian >/dev/null; then
    # Errors fail the build; warnings and the rest are printed.
    lintian --fail-on error --info "dist/$deb" || {
      say "ERROR: lintian reports errors for dist/$deb" >&2
      exit 1
    }
    say "lintian: no errors"
  else
    say "lintian not installed: not checked"
  fi
fi

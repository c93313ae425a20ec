#!/bin/bash
# Installs the real HA engine API (masakari-api from PyPI) for the lab.
#
# It lives in its own virtualenv under the lab cache so that its large
# OpenStack dependency set never mixes with the monitor's .venv. The
# dependency versions are pinned by lab/masakari/constraints.txt (a set
# known to work together), so a new upstream release cannot break the lab
# overnight. Safe to run again: when the virtualenv already holds the
# wanted version under the same pins, it returns at once.
set -euo pipefail

MASAKARI_VERSION=22.0.0
LAB_CACHE=${LAB_CACHE:-/var/cache/guest-health-monitor-lab}
VENV=$LAB_CACHE/masakari-venv
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONSTRAINTS=$HERE/masakari/constraints.txt
STAMP=$VENV/.lab-installed
PIP_LOG=$LAB_CACHE/masakari-pip.log

started=$(date +%s.%N)

elapsed() {
    awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

# The stamp names everything the install depends on; any change rebuilds.
wanted="masakari==$MASAKARI_VERSION constraints=$(sha256sum <"$CONSTRAINTS" | cut -d' ' -f1)"

installed_version() {
    "$VENV/bin/python" -c \
        'import importlib.metadata as m; print(m.version("masakari"))' \
        2>/dev/null || true
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ] &&
    [ "$(installed_version)" = "$MASAKARI_VERSION" ] &&
    [ -x "$VENV/bin/masakari-api" ] &&
    [ -f "$VENV/etc/masakari/api-paste.ini" ]; then
    echo "masakari-setup: masakari $MASAKARI_VERSION already in $VENV ($(elapsed) s)"
    exit 0
fi

echo "masakari-setup: installing masakari $MASAKARI_VERSION into $VENV"
mkdir -p "$LAB_CACHE"
rm -rf "$VENV"
python3 -m venv "$VENV"

# pip is chatty; keep its output in a log and show the end of it on failure.
if ! "$VENV/bin/pip" install --no-input \
    -c "$CONSTRAINTS" "masakari==$MASAKARI_VERSION" >"$PIP_LOG" 2>&1; then
    tail -n 30 "$PIP_LOG" >&2
    echo "masakari-setup: pip install failed after $(elapsed) s (full log: $PIP_LOG)" >&2
    exit 1
fi

# masakari-api runs its own eventlet WSGI server and reads the paste
# pipeline the wheel ships under the prefix; check both are really there.
for needed in "$VENV/bin/masakari-api" "$VENV/bin/masakari-manage" \
    "$VENV/etc/masakari/api-paste.ini"; do
    if [ ! -e "$needed" ]; then
        echo "masakari-setup: $needed missing after install" >&2
        exit 1
    fi
done

echo "$wanted" >"$STAMP"
echo "masakari-setup: masakari $(installed_version) installed in $VENV ($(elapsed) s)"

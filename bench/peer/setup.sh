#!/bin/bash
# Installs the peer for the head-to-head benchmarks: Masakari's own
# introspective instance monitor (masakari-monitors from PyPI, the release
# of the same cycle as the lab's masakari-api 22.0.0). The same package
# gives the masakari-instancemonitor the lab runs beside the monitor
# (lab/instancemonitor.py); make lab runs this script.
#
# It gets a virtualenv of its own under the lab cache, apart from the
# monitor's .venv and the masakari-api virtualenv. masakari-monitors does not
# declare libvirt-python (distributions ship it), so it is installed next to
# it, built against the host's libvirt as the monitor's is. Versions are
# pinned by bench/peer/constraints.txt. Safe to run again: when the
# virtualenv already holds the wanted versions, it returns at once.
set -euo pipefail

MONITORS_VERSION=22.0.0
LIBVIRT_PYTHON_VERSION=12.8.0
LAB_CACHE=${LAB_CACHE:-/var/cache/guest-health-monitor-lab}
VENV=$LAB_CACHE/masakari-monitors-venv
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONSTRAINTS=$HERE/constraints.txt
STAMP=$VENV/.bench-installed
PIP_LOG=$LAB_CACHE/masakari-monitors-pip.log

started=$(date +%s.%N)

elapsed() {
    awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

# The stamp names everything the install depends on; any change rebuilds.
wanted="masakari-monitors==$MONITORS_VERSION libvirt-python==$LIBVIRT_PYTHON_VERSION"
wanted="$wanted constraints=$(sha256sum <"$CONSTRAINTS" | cut -d' ' -f1)"

usable() {
    "$VENV/bin/python" -c 'import libvirt, libvirtmod_qemu, masakarimonitors.introspectiveinstancemonitor.instance, masakarimonitors.instancemonitor.instance' \
        >/dev/null 2>&1
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ] &&
    [ -x "$VENV/bin/masakari-introspectiveinstancemonitor" ] &&
    [ -x "$VENV/bin/masakari-instancemonitor" ] && usable; then
    echo "peer-setup: masakari-monitors $MONITORS_VERSION already in $VENV ($(elapsed) s)"
    exit 0
fi

echo "peer-setup: installing masakari-monitors $MONITORS_VERSION into $VENV"
mkdir -p "$LAB_CACHE"
rm -rf "$VENV"
python3 -m venv "$VENV"

# pip is chatty; keep its output in a log and show the end of it on failure.
if ! "$VENV/bin/pip" install --no-input -c "$CONSTRAINTS" \
    "masakari-monitors==$MONITORS_VERSION" \
    "libvirt-python==$LIBVIRT_PYTHON_VERSION" >"$PIP_LOG" 2>&1; then
    tail -n 30 "$PIP_LOG" >&2
    echo "peer-setup: pip install failed after $(elapsed) s (full log: $PIP_LOG)" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/masakari-introspectiveinstancemonitor" ] ||
    [ ! -x "$VENV/bin/masakari-instancemonitor" ] || ! usable; then
    echo "peer-setup: the instance monitors do not import in $VENV" >&2
    exit 1
fi

echo "$wanted" >"$STAMP"
echo "peer-setup: masakari-monitors $MONITORS_VERSION installed in $VENV ($(elapsed) s)"

#!/bin/bash
# Bring up the lab host: Debian packages, the QEMU user, libvirt's runtime
# directories, virtlogd and libvirtd (started by hand: there is no systemd).
#
# Safe to run again: every step checks first and does nothing when the host
# is already in shape, so a second run only costs the final libvirt probe.
set -euo pipefail

started=$(date +%s.%N)
log() { echo "host-setup: $*"; }

[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

URI=qemu:///system
# Where virtlogd and libvirtd are (the lab's tests start a stand-in).
SBIN_DIR=${SBIN_DIR:-/usr/sbin}
PACKAGES=(
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-system
    libvirt-clients libvirt-dev qemu-system-x86 qemu-guest-agent
    busybox-static cpio gzip xz-utils pkg-config python3-venv
    python3-dev gcc make sqlite3
    # mkfs.ext4: the lab guest's filesystem disk (lab/guests.py).
    e2fsprogs
    # The Alertmanager driver's lab tests run real Alertmanagers; promtool
    # (in prometheus) checks and unit-tests the shipped alert rules.
    prometheus-alertmanager prometheus
)

missing_packages() {
    local pkg status
    for pkg in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = "install ok installed" ] || echo "$pkg"
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    [ "${#missing[@]}" -gt 0 ] || return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Package lists may be absent or stale on a fresh host; refresh them only
    # when the install cannot find what it needs.
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

ensure_qemu_user() {
    # libvirt runs QEMU as libvirt-qemu:libvirt-qemu (Debian's build
    # default), a member of kvm. libvirt-daemon-system's postinst makes them;
    # a domain cannot start when they are missing.
    getent group kvm >/dev/null || groupadd --system kvm
    getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
    if ! getent passwd libvirt-qemu >/dev/null; then
        useradd --system --gid kvm --groups libvirt-qemu \
            --home-dir /var/lib/libvirt --no-create-home \
            --shell /usr/sbin/nologin libvirt-qemu
    fi
    if ! id -nG libvirt-qemu | grep -qw libvirt-qemu; then
        usermod --append --groups libvirt-qemu libvirt-qemu
    fi
}

ensure_dirs() {
    # Normally made by systemd-tmpfiles, which does not run here.
    mkdir -p /var/log/libvirt/qemu /var/run/libvirt /var/lib/libvirt/qemu \
        /var/cache/libvirt/qemu
}

ensure_kvm_node() {
    # Without udev nobody applies Debian's rule for /dev/kvm (root:kvm 0660).
    # libvirt then sees KVM in QEMU's capabilities but not for the QEMU user
    # and re-probes QEMU on every API call (about 4 s each). Domains still run
    # under TCG (type 'qemu'); this only makes the capability cache stick.
    [ -c /dev/kvm ] || return 0
    [ "$(stat -c %G:%a /dev/kvm)" = kvm:660 ] && return 0
    chgrp kvm /dev/kvm
    chmod 0660 /dev/kvm
}

# A daemon counts as running when its pid file names a live (not zombie)
# process of that name: a killed daemon leaves its pid file behind.
running() {
    local pidfile=$1 name=$2 pid stat
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ "$stat" == "$pid ($name) "[RSD]* ]]
}

# Run a command with no descriptor open but stdin, stdout and stderr.
# A daemon keeps what it inherits for as long as it runs: started under
# `flock LOCKFILE make test`, libvirtd would hold the lab lock for ever.
without_inherited_fds() {
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then
                eval "exec $fd>&-"
            fi
        done
        exec "$@"
    )
}

start_daemon() {
    local name=$1
    if running "/var/run/$name.pid" "$name"; then
        return 0
    fi
    log "starting $name"
    without_inherited_fds "$SBIN_DIR/$name" -d
}

wait_libvirt() {
    local deadline=$((SECONDS + 60))
    until virsh -q -c "$URI" version >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "libvirtd did not answer on $URI within 60 s"
            virsh -c "$URI" version || true
            exit 1
        fi
        sleep 0.2
    done
}

# Sourced (the lab's tests do, for the functions above): run nothing.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

install_packages
ensure_qemu_user
ensure_dirs
ensure_kvm_node
start_daemon virtlogd
start_daemon libvirtd
wait_libvirt

virsh -c "$URI" version | sed 's/^/host-setup: /'
log "$(awk -v s="$started" -v e="$(date +%s.%N)" \
    'BEGIN { printf "host ready in %.1f s", e - s }')"

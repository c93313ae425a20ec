#!/bin/bash
# Build the lab guest image into $LAB_CACHE/guest/: Debian's kernel (taken
# from its package, not installed on the host; stored uncompressed when it
# supports PVH boot) and a small busybox initramfs whose init runs qemu-ga on
# the agent port and reads fault-injection commands from a second
# virtio-serial port (see lab/guest/init).
#
# The image is rebuilt only when an input changes: these scripts, the kernel
# package, busybox, qemu-ga or the libraries qemu-ga is linked against.
set -euo pipefail

started=$(date +%s.%N)
log() { echo "build-guest: $*"; }

LAB_CACHE=${LAB_CACHE:-/var/cache/guest-health-monitor-lab}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$LAB_CACHE/guest
DEBS=$LAB_CACHE/debs
# virtio_blk: the optional data disk (disk-writer); pvpanic and pvpanic-mmio:
# the optional <panic model='isa'/> device, which Linux 5.12 and later drive
# through pvpanic-mmio (ACPI QEMU0001) on top of the shared pvpanic module;
# watchdog and i6300esb: the optional <watchdog model='i6300esb'/> device.
# crc16, crc32c_generic, mbcache, jbd2 and ext4 (in that order: ext4
# needs the others): the optional data disk with a filesystem that qemu-ga
# can freeze (Guest(fs_disk=True)).
# Without those devices the modules load and stay idle.
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev
         virtio_pci virtio_console virtio_blk pvpanic pvpanic-mmio
         watchdog i6300esb crc16 crc32c_generic mbcache jbd2 ext4)
QEMU_GA=/usr/sbin/qemu-ga
BUSYBOX=/bin/busybox

elapsed() {
    awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'
}

# The kernel flavour the linux-image-amd64 metapackage points at.
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-amd64$/ { print $2; exit }'
}

candidate_version() {
    apt-cache policy "$1" | awk '$1 == "Candidate:" { print $2 }'
}

installed_version() {
    dpkg-query -W -f='${Version}' "$1"
}

# Shared libraries qemu-ga needs, as resolved on this host.
agent_libraries() {
    ldd "$QEMU_GA" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
}

# The vmlinux inside a bzImage: the first compressed stream (xz, gzip or
# zstd) that unpacks to an ELF file.
extract_vmlinux() {
    python3 - "$1" "$2" <<'PYTHON'
import lzma, subprocess, sys, zlib
data = open(sys.argv[1], 'rb').read()
def unpack_xz(blob):
    return lzma.LZMADecompressor().decompress(blob)
def unpack_gzip(blob):
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)
def unpack_zstd(blob):
    return subprocess.run(['zstd', '-qdc'], input=blob, capture_output=True).stdout
for magic, unpack in ((b'\xfd7zXZ\x00', unpack_xz), (b'\x1f\x8b\x08', unpack_gzip),
                      (b'\x28\xb5\x2f\xfd', unpack_zstd)):
    start = data.find(magic)
    while start >= 0:
        try:
            elf = unpack(data[start:])
        except (lzma.LZMAError, zlib.error, OSError):
            elf = b''
        if elf[:4] == b'\x7fELF':
            open(sys.argv[2], 'wb').write(elf)
            sys.exit(0)
        start = data.find(magic, start + 1)
sys.exit('no compressed ELF kernel found in %s' % sys.argv[1])
PYTHON
}

KERNEL_PKG=$(kernel_package)
if [ -z "$KERNEL_PKG" ]; then
    apt-get update -q
    KERNEL_PKG=$(kernel_package)
fi
[ -n "$KERNEL_PKG" ] || { log "cannot resolve linux-image-amd64"; exit 1; }
KERNEL_VERSION=$(candidate_version "$KERNEL_PKG")
[ -x "$QEMU_GA" ] && [ -x "$BUSYBOX" ] || {
    log "qemu-ga or busybox missing: run lab/host-setup.sh first"; exit 1; }

inputs() {
    echo "kernel $KERNEL_PKG $KERNEL_VERSION"
    echo "qemu-guest-agent $(installed_version qemu-guest-agent)"
    echo "busybox-static $(installed_version busybox-static)"
    local lib
    for lib in $(agent_libraries); do
        echo "lib $lib $(readlink -f "$lib")"
    done
    sha256sum "$HERE/build-guest.sh" "$HERE"/guest/* | sed "s|$HERE/||"
}
INPUTS=$(inputs)
HASH=$(sha256sum <<<"$INPUTS" | cut -c1-16)

if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$HASH" ] &&
        [ -f "$OUT/kernel" ] && [ -f "$OUT/initramfs.gz" ]; then
    log "guest image up to date ($HASH) in $OUT ($(elapsed) s)"
    exit 0
fi
log "building guest image $HASH ($KERNEL_PKG $KERNEL_VERSION)"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The package is kept so that a change to the scripts alone does not fetch
# it again; older kernels are dropped.
mkdir -p "$DEBS"
deb=$(ls "$DEBS/${KERNEL_PKG}_"*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ] || [ "$(dpkg-deb -f "$deb" Version)" != "$KERNEL_VERSION" ]; then
    rm -f "$DEBS"/linux-image-*.deb
    if ! (cd "$DEBS" && apt-get download -q -o APT::Sandbox::User=root \
            "$KERNEL_PKG=$KERNEL_VERSION"); then
        # Stale package lists name a kernel the archive no longer has:
        # refresh them once and start over with the current one.
        [ -z "${GUEST_BUILD_RETRIED:-}" ] || exit 1
        apt-get update -q
        rm -rf "$WORK"
        GUEST_BUILD_RETRIED=1 exec bash "$0" "$@"
    fi
    deb=$(ls "$DEBS/${KERNEL_PKG}_"*.deb | head -n1)
fi
dpkg -x "$deb" "$WORK/kernel"

ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,lib/modules,proc,sys,dev,run,tmp,var,etc}
ln -s ../run "$ROOT/var/run"

# Modules go in flat, uncompressed: busybox insmod takes a plain file.
for module in "${MODULES[@]}"; do
    file=$(find "$WORK/kernel/lib/modules" -name "$module.ko*" | head -n1)
    if [ -z "$file" ]; then
        if grep -q "/$module.ko\$" "$WORK"/kernel/lib/modules/*/modules.builtin; then
            continue
        fi
        log "module $module not found in $KERNEL_PKG"
        exit 1
    fi
    case "$file" in
        *.ko) cp "$file" "$ROOT/lib/modules/$module.ko" ;;
        *.ko.xz) xz -dc "$file" > "$ROOT/lib/modules/$module.ko" ;;
        *.ko.zst) zstd -qdc "$file" > "$ROOT/lib/modules/$module.ko" ;;
        *.ko.gz) gzip -dc "$file" > "$ROOT/lib/modules/$module.ko" ;;
        *) log "unknown module format: $file"; exit 1 ;;
    esac
done

cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ -e "$ROOT/bin/$applet" ] || ln -s busybox "$ROOT/bin/$applet"
done
install -m 0755 "$HERE/guest/init" "$ROOT/init"
install -m 0755 "$HERE/guest/shutdown" "$ROOT/sbin/shutdown"
install -D -m 0755 "$HERE/guest/fsfreeze-hook" "$ROOT/etc/qemu/fsfreeze-hook"

cp "$QEMU_GA" "$ROOT/usr/sbin/qemu-ga"
for lib in $(agent_libraries); do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
done

mkdir -p "$OUT"
kernel=$(ls "$WORK"/kernel/boot/vmlinuz-* | head -n1)
config=$(ls "$WORK"/kernel/boot/config-* | head -n1)
if grep -q '^CONFIG_PVH=y' "$config"; then
    # Under TCG the bzImage's own xz decompression costs about 2 s of every
    # boot; QEMU boots the uncompressed ELF directly via its PVH entry.
    extract_vmlinux "$kernel" "$OUT/kernel.new"
else
    cp "$kernel" "$OUT/kernel.new"
fi
(cd "$ROOT" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) |
    gzip -6 > "$OUT/initramfs.gz.new"
mv "$OUT/kernel.new" "$OUT/kernel"
mv "$OUT/initramfs.gz.new" "$OUT/initramfs.gz"
printf '%s\n' "$INPUTS" > "$OUT/inputs.txt"
echo "$HASH" > "$OUT/stamp"

log "built $OUT: kernel $(du -h "$OUT/kernel" | cut -f1)," \
    "initramfs.gz $(du -h "$OUT/initramfs.gz" | cut -f1) in $(elapsed) s"

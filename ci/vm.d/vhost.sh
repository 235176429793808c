# shellcheck shell=sh
# vhost-user checks of the ci/vm guest, sourced by /init (busybox sh). The disk is a
# vhost-user-blk-pci device whose back end runs on the host (strata-tgt's vhost-blk controller,
# or qemu-storage-daemon with STRATA_VM_VHOST_BACKEND=qsd on the host); the guest drives it with
# its own virtio_pci and virtio_blk. Steps: vhost-blk (a pattern written and read back through
# /dev/vdX), vhost-blk-restart (a long write is in flight when the host kills the back end and
# starts it again; QEMU reconnects, the back end resubmits the guest's in-flight requests, and
# the write completes with every byte read back right); vhost-blk-packed: with a second
# vhost-user-blk-pci device (packed=on; strata-tgt's controller offers packed_ring) the guest's
# virtio_blk runs on packed virtqueues (VIRTIO_F_RING_PACKED read from the device's negotiated
# features): a pattern written and read back; a SKIP when no such device is attached;
# vhost-blk-packed-restart: during vhost-blk-restart a second long write runs on the packed
# disk (the back end resubmits a packed queue's in-flight requests from DPDK's packed inflight
# layout) and is read back right;
# vhost-scsi (when the kernel command line
# has strata.vhost_scsi=MIB: a vhost-user-scsi-pci device on a second strata-tgt's vhost-scsi
# controller; the guest loads virtio_scsi and sd_mod, finds the sd disk whose sysfs path is under
# a virtio device (the iSCSI checks make sd disks too) and writes and reads back a pattern).
# strata.vhost_blk=0: the vhost-user-blk device is absent (its back end did not start).
# Uses nvmf.sh's load_module_set, nvmf_pattern and nvmf_dd_check (sourced before this file).

# The disk's size on the host (ci/vm writes it to the kernel command line as strata.vhost_mib).
VHOST_MIB=64

# vhost_packed NAME: whether virtio block device NAME negotiated VIRTIO_F_RING_PACKED (bit 34
# of the features string in sysfs, bit 0 first).
vhost_packed() {
    [ "$(cut -c35 "/sys/block/$1/device/features" 2>/dev/null)" = 1 ]
}

# vhost_disk [packed]: the first virtio block device on split rings (with "packed": on packed
# rings), waited for up to 10 s.
vhost_disk() {
    i=0
    while [ "$i" -lt 100 ]; do
        for b in /sys/block/vd*; do
            [ -e "$b" ] || continue
            if vhost_packed "${b##*/}"; then p=packed; else p=; fi
            [ "$p" = "${1:-}" ] && { echo "/dev/${b##*/}"; return 0; }
        done
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# vscsi_disk: the sd disk of a virtio-scsi host (its sysfs path runs through the virtio
# device), waited for up to 30 s (the device is hot-plugged).
vscsi_disk() {
    i=0
    while [ "$i" -lt 300 ]; do
        for b in /sys/block/sd*; do
            [ -e "$b" ] || continue
            case "$(readlink -f "$b")" in
            */virtio[0-9]*/host*) echo "/dev/${b##*/}"; return 0 ;;
            esac
        done
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

vscsi_checks() {
    load_module_set vscsi
    # ci/vm hot-plugs the vhost-user-scsi-pci device now (at boot SeaBIOS would drive it).
    say "vhost-scsi plug now"
    if ! dev=$(vscsi_disk); then
        say "vhost-scsi FAIL (no sd disk under a virtio device 30 s after the plug; insmod failures:${bad:- none}; sd disks:$(for b in /sys/block/sd*; do [ -e "$b" ] && printf ' %s' "$(readlink -f "$b")"; done))"
        return 1
    fi
    name=${dev#/dev/}
    bytes=$(($(cat "/sys/block/$name/size") * 512))
    if [ "$bytes" -ne $((VHOST_SCSI_MIB * 1048576)) ]; then
        say "vhost-scsi FAIL ($dev has $bytes bytes, the host's disk $VHOST_SCSI_MIB MiB)"
        return 1
    fi
    vendor=$(cat "/sys/block/$name/device/vendor" 2>/dev/null | tr -s ' ')
    model=$(cat "/sys/block/$name/device/model" 2>/dev/null | tr -s ' ')
    if out=$(nvmf_pattern "$dev" 2>&1); then
        say "vhost-scsi PASS ($dev, $vendor$model, $VHOST_SCSI_MIB MiB, $(cat "/sys/block/$name/queue/logical_block_size")-byte blocks, $(ls "/sys/block/$name/mq" | wc -l) queue(s); $out)"
    else
        say "vhost-scsi FAIL ($out)"
        return 1
    fi
}

vhost_main() {
    vhost_t0=$(cut -d' ' -f1 /proc/uptime)
    [ "${VHOST_SCSI_MIB:-0}" -gt 0 ] && vscsi_checks
    [ "${VHOST_BLK:-1}" = 1 ] && vhost_checks
    say "vhost-time $(awk -v t0="$vhost_t0" '{printf "%.1f", $1 - t0}' /proc/uptime)s for the vhost-user checks"
}

vhost_checks() {
    load_module_set vhost
    if ! dev=$(vhost_disk); then
        say "vhost-blk FAIL (no virtio block device after 10 s; insmod failures:${bad:- none})"
        return 1
    fi
    name=${dev#/dev/}
    bytes=$(($(cat "/sys/block/$name/size") * 512))
    if [ "$bytes" -ne $((VHOST_MIB * 1048576)) ]; then
        say "vhost-blk FAIL ($dev has $bytes bytes, the host's disk $VHOST_MIB MiB)"
        return 1
    fi
    if out=$(nvmf_pattern "$dev" 2>&1); then
        say "vhost-blk PASS ($dev, $VHOST_MIB MiB, $(cat "/sys/block/$name/queue/logical_block_size")-byte blocks, $(ls "/sys/block/$name/mq" | wc -l) queue(s); $out)"
    else
        say "vhost-blk FAIL ($out)"
        return 1
    fi

    # Packed rings.
    ppid=
    if pdev=$(vhost_disk packed); then
        if out=$(nvmf_pattern "$pdev" 2>&1); then
            say "vhost-blk-packed PASS ($pdev, VIRTIO_F_RING_PACKED negotiated, $(ls "/sys/block/${pdev#/dev/}/mq" | wc -l) queue(s); $out)"
            # Across the restart below: 16 MiB at 8 MiB of the 32 MiB packed disk.
            dd if=/dev/urandom of=/tmp/vhost-ppattern bs=1048576 count=16 2>/dev/null
            dd if=/tmp/vhost-ppattern of="$pdev" bs=4096 seek=$((8 * 256)) oflag=direct \
                conv=notrunc,fsync 2>/tmp/vhost-pdd.err &
            ppid=$!
        else
            say "vhost-blk-packed FAIL ($out)"
            say "vhost-blk-packed-restart SKIP (the packed disk failed before the restart)"
        fi
    else
        say "vhost-blk-packed SKIP (no virtio block device on packed rings)"
        say "vhost-blk-packed-restart SKIP (no virtio block device on packed rings)"
    fi

    # The restart: 16 MiB written in 4 KiB requests (thousands of them, seconds under TCG) from
    # the background; the host kills the back end as soon as it reads "vhost restart now" and
    # starts it again.
    n=$((16 * 1048576))
    dd if=/dev/urandom of=/tmp/vhost-pattern bs=1048576 count=16 2>/dev/null
    dd if=/tmp/vhost-pattern of="$dev" bs=4096 seek=$((8 * 256)) oflag=direct conv=notrunc,fsync \
        2>/tmp/vhost-dd.err &
    ddpid=$!
    sleep 0.2
    say "vhost restart now"
    waited=0
    while kill -0 "$ddpid" 2>/dev/null && [ "$waited" -lt 600 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    [ -z "$ppid" ] || vhost_packed_restart_check "$pdev" "$ppid"
    if kill -0 "$ddpid" 2>/dev/null; then
        kill "$ddpid" 2>/dev/null
        say "vhost-blk-restart FAIL (the write did not complete within 60 s of the restart)"
        return 1
    fi
    if ! wait "$ddpid"; then
        say "vhost-blk-restart FAIL (the write failed: $(tail -n1 /tmp/vhost-dd.err))"
        return 1
    fi
    if ! dd if="$dev" of=/tmp/vhost-readback bs=1048576 count=16 skip=8 iflag=direct 2>/tmp/vhost-dd.err; then
        say "vhost-blk-restart FAIL (read back: $(tail -n1 /tmp/vhost-dd.err))"
        return 1
    fi
    if ! cmp -s /tmp/vhost-pattern /tmp/vhost-readback; then
        say "vhost-blk-restart FAIL (miscompare after the restart: $(cmp /tmp/vhost-pattern /tmp/vhost-readback 2>&1 | head -n1))"
        return 1
    fi
    say "vhost-blk-restart PASS ($((n / 1048576)) MiB in 4 KiB writes across a back-end restart, $((waited / 10)).$((waited % 10)) s after the signal, read back right)"
}

# vhost_packed_restart_check DEV PID: the packed disk's write (PID) across the restart
# completes within 60 s and reads back right.
vhost_packed_restart_check() {
    w=0
    while kill -0 "$2" 2>/dev/null && [ "$w" -lt 600 ]; do
        sleep 0.1
        w=$((w + 1))
    done
    if kill -0 "$2" 2>/dev/null; then
        kill "$2" 2>/dev/null
        say "vhost-blk-packed-restart FAIL (the write did not complete within 60 s of the restart)"
    elif ! wait "$2"; then
        say "vhost-blk-packed-restart FAIL (the write failed: $(tail -n1 /tmp/vhost-pdd.err))"
    elif ! dd if="$1" of=/tmp/vhost-preadback bs=1048576 count=16 skip=8 iflag=direct 2>/tmp/vhost-pdd.err; then
        say "vhost-blk-packed-restart FAIL (read back: $(tail -n1 /tmp/vhost-pdd.err))"
    elif ! cmp -s /tmp/vhost-ppattern /tmp/vhost-preadback; then
        say "vhost-blk-packed-restart FAIL (miscompare after the restart: $(cmp /tmp/vhost-ppattern /tmp/vhost-preadback 2>&1 | head -n1))"
    else
        say "vhost-blk-packed-restart PASS ($1: 16 MiB in 4 KiB writes on packed rings across the back-end restart, read back right)"
    fi
    rm -f /tmp/vhost-ppattern /tmp/vhost-preadback
}

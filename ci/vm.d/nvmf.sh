# NVMe over TCP interop in the ci/vm guest, sourced by /init (busybox sh; uses its say and step).
# Every check prints one "STRATA-VM: <check> PASS|FAIL|SKIP (...)" line that ci/vm greps:
#   nvmf-setup           the kernel's NVMe/TCP host and target modules (ci/vm copies them in
#                        dependency order, from modprobe --show-depends), lo up, configfs
#   nvmf-kernel          Linux initiator -> Linux target (nvmet over configfs, a memory-backed
#                        null_blk on 127.0.0.1:4420): connect through /dev/nvme-fabrics, two 1 MiB
#                        patterns written with O_DIRECT (4 KiB and 128 KiB writes), read back and
#                        compared, disconnect; then all of it again with header and data digests
#   nvmf-kernel-discovery   the same target's discovery controller (nvme discover with nvme-cli
#                        when ci/vm found it on the host, a raw discovery connect otherwise)
#   nvmf-strata-identify    Strata initiator -> Linux target: strata-nvme-identify -r 'trtype:TCP ...'
#   nvmf-strata-verify      Strata initiator -> Linux target: bdevperf -w verify over bdev_nvme (TCP)
#   nvmf-strata-verify-digest   the same with header and data digests
#   nvmf-tgt             Linux initiator -> strata-tgt (a malloc bdev on 127.0.0.1:4421, set up by
#                        a JSON config): as nvmf-kernel, without and with digests
#   nvmf-tgt-uuid        the kernel sees the malloc bdev's UUID as the namespace's (Identify
#                        namespace identification descriptors)
#   nvmf-tgt-discovery   strata-tgt's discovery service, through the kernel
#   nvmf-tgt-stop        strata-tgt exits 0 on SIGTERM afterwards
#   pcap-nvmet, pcap-strata-init, pcap-strata-tgt   captures of a small run of each pair (when
#                        ci/vm copied tcpdump in), sent to the host on /dev/ttyS1, where ci/vm has
#                        tshark dissect them (its pcap-* checks)
# The Strata checks print SKIP, not FAIL, while the binaries lack NVMe/TCP: the initiator's
# "(PCIe only)" refusal of trtype TCP (or of the hdgst/ddgst parameters, for the digest check),
# or a strata-tgt that knows no 'nvmf' subsystem / nvmf_* method. Once the binaries have it, any
# failure is a FAIL.

NVMF_KNQN=nqn.2026-12.io.strata:vm-nvmet
NVMF_SNQN=nqn.2026-12.io.strata:vm-tgt
NVMF_DNQN=nqn.2014-08.org.nvmexpress.discovery
NVMF_KPORT=4420
NVMF_SPORT=4421
NVMF_SERIAL=STRATAVMTGT0001
NVMF_UUID=5f1c2a0e-3b7d-4c69-9e41-0d2b8a6f7c13
NVMF_CFS=/sys/kernel/config/nvmet
NVMF_SECONDS=${SECONDS_PER_RUN:-2}

# nvmf_connect OPTIONS: a fabrics connect through /dev/nvme-fabrics (what nvme-cli does: write
# the options, read "instance=N,cntlid=M" back on the same descriptor); prints N.
nvmf_connect() {
    exec 3<>/dev/nvme-fabrics || return 1
    if ! printf '%s' "$1" >&3 2>/tmp/nvmf-connect.err; then
        exec 3>&-
        return 1
    fi
    reply=
    read -r reply <&3
    exec 3>&-
    case "$reply" in
    instance=*) reply="${reply#instance=}"; echo "${reply%%,*}" ;;
    *) echo "unexpected reply '$reply'" >/tmp/nvmf-connect.err; return 1 ;;
    esac
}

# nvmf_disconnect N: deletes controller nvmeN and waits for it to go.
nvmf_disconnect() {
    [ -e "/sys/class/nvme/nvme$1/delete_controller" ] || return 1
    echo 1 > "/sys/class/nvme/nvme$1/delete_controller" || return 1
    i=0
    while [ -e "/sys/class/nvme/nvme$1" ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    [ ! -e "/sys/class/nvme/nvme$1" ]
}

# nvmf_ns_dev N: the block device of controller nvmeN's first namespace, waiting for it (with
# native multipath, nvme-core's default here, the disk is the subsystem's nvmeSnI head and the
# controller only has the hidden path nvmeScNnI).
nvmf_ns_dev() {
    i=0
    while [ "$i" -lt 50 ]; do
        for e in /sys/class/nvme/nvme$1/nvme*n*; do
            [ -e "$e" ] || continue
            name=$(basename "$e")
            head=$(echo "$name" | sed "s/c$1n/n/")
            if [ -b "/dev/$head" ]; then echo "/dev/$head"; return 0; fi
        done
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# nvmf_dd_check DEV WBS RBS OFFSET_MIB [BYTES]: writes BYTES (default 1 MiB) of random data at
# OFFSET_MIB in WBS-byte blocks with O_DIRECT, reads it back in RBS-byte blocks with O_DIRECT,
# compares.
nvmf_dd_check() {
    n=${5:-1048576}
    dd if=/dev/urandom of=/tmp/nvmf-pattern bs=4096 count=$((n / 4096)) 2>/dev/null
    if ! dd if=/tmp/nvmf-pattern of="$1" bs="$2" count=$((n / $2)) seek=$(($4 * 1048576 / $2)) \
        oflag=direct conv=notrunc,fsync 2>/tmp/nvmf-dd.err; then
        echo "write to $1 (bs=$2) failed: $(tail -n1 /tmp/nvmf-dd.err)"
        return 1
    fi
    if ! dd if="$1" of=/tmp/nvmf-readback bs="$3" count=$((n / $3)) skip=$(($4 * 1048576 / $3)) \
        iflag=direct 2>/tmp/nvmf-dd.err; then
        echo "read from $1 (bs=$3) failed: $(tail -n1 /tmp/nvmf-dd.err)"
        return 1
    fi
    if ! cmp -s /tmp/nvmf-pattern /tmp/nvmf-readback; then
        echo "miscompare on $1 (written bs=$2, read bs=$3): $(cmp /tmp/nvmf-pattern /tmp/nvmf-readback 2>&1 | head -n1)"
        return 1
    fi
}

# nvmf_pattern DEV [BYTES]: two patterns of BYTES (default 1 MiB), one written in 4 KiB and read
# in 128 KiB blocks (or BYTES when smaller), one the other way round (a 128 KiB write needs R2T
# and H2CData beyond the in-capsule data size).
nvmf_pattern() {
    n=${2:-1048576}
    big=131072
    [ "$n" -lt "$big" ] && big=$n
    nvmf_dd_check "$1" 4096 "$big" 1 "$n" || return 1
    nvmf_dd_check "$1" "$big" 4096 2 "$n" || return 1
    echo "2 x $((n / 1024)) KiB written and read back (4K/$((big / 1024))K I/O)"
}

# Captures for tshark on the host (ci/vm dissects them; ci/nvmf-pcap-check): when ci/vm copied
# tcpdump in, nvmf_cap_start NAME PORT captures lo for that port into /tmp/NAME.pcap and
# nvmf_cap_send NAME PORT stops it and sends the file base64-encoded on the second serial port
# (/dev/ttyS1) between "STRATA-PCAP: begin NAME PORT" and "STRATA-PCAP: end NAME" lines.
# --immediate-mode: without it the packet ring hands packets over in blocks, after up to a
# second, and a short run's packets were lost when tcpdump was stopped.
NVMF_CAP_PID=
nvmf_cap_start() {
    [ -x /strata/tcpdump ] && [ -c /dev/ttyS1 ] || return 0
    # tcpdump -Z looks the user up.
    [ -e /etc/passwd ] || { mkdir -p /etc; echo 'root:x:0:0:root:/:/bin/sh' > /etc/passwd; }
    rm -f "/tmp/$1.pcap"
    tcpdump -Z root --immediate-mode -i lo -U -s 0 -w "/tmp/$1.pcap" "tcp port $2" > "/tmp/$1.tcpdump.log" 2>&1 &
    NVMF_CAP_PID=$!
    i=0
    while ! grep -q 'listening on' "/tmp/$1.tcpdump.log" && [ "$i" -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
}
nvmf_cap_stop() {
    [ -n "$NVMF_CAP_PID" ] || return 1
    sleep 0.2
    kill -INT "$NVMF_CAP_PID"
    wait "$NVMF_CAP_PID"
    NVMF_CAP_PID=
}
nvmf_cap_send() {
    nvmf_cap_stop || return 0
    [ -s "/tmp/$1.pcap" ] || return 0
    stty -F /dev/ttyS1 115200 -onlcr 2>/dev/null
    t0=$(cut -d' ' -f1 /proc/uptime)
    {
        echo "STRATA-PCAP: begin $1 $2"
        base64 "/tmp/$1.pcap"
        echo "STRATA-PCAP: end $1"
    } > /dev/ttyS1
    say "$1 captured ($(wc -c < "/tmp/$1.pcap") bytes, sent in $(awk -v t0="$t0" '{printf "%.1f", $1 - t0}' /proc/uptime)s; tcpdump: $(grep -m1 'packets captured' "/tmp/$1.tcpdump.log"))"
}

# nvmf_cap_kernel NAME ADDR PORT NQN SERIAL: a small captured run of the kernel initiator with
# digests (two 32 KiB patterns: 4 KiB writes read back in one 32 KiB read, and one 32 KiB write,
# which takes R2T and H2CData beyond the target's in-capsule data size, read back in 4 KiB) and
# its discovery, for the host's tshark; small because the serial port carries about 160 KB/s
# of base64 under TCG.
nvmf_cap_kernel() {
    [ -x /strata/tcpdump ] || return 0
    nvmf_cap_start "$1" "$3"
    out=$(nvmf_kernel_io "$2" "$3" "$4" "$5" ",hdr_digest,data_digest" 32768) ||
        say "$1 FAIL (the captured run: $out)"
    [ -x /strata/nvme ] && nvme discover -t tcp -a "$2" -s "$3" > /dev/null 2>&1
    nvmf_cap_send "$1" "$3"
}

# nvmf_kernel_io ADDR PORT NQN SERIAL [OPTIONS [BYTES]]: the Linux initiator's check against a
# target (OPTIONS: more connect options, e.g. ",hdr_digest,data_digest"; BYTES: pattern size);
# prints what it did or why it failed, status 1 on failure.
nvmf_kernel_io() {
    if ! inst=$(nvmf_connect "transport=tcp,traddr=$1,trsvcid=$2,nqn=$3${5:-}"); then
        echo "connect to $1:$2 $3: $(cat /tmp/nvmf-connect.err 2>/dev/null | tail -n1); $(dmesg | grep -i nvme | tail -n1)"
        return 1
    fi
    ctrl=/sys/class/nvme/nvme$inst
    info="nvme$inst: $(cat "$ctrl/transport" 2>/dev/null) $(cat "$ctrl/address" 2>/dev/null | tr '\n' ' ')model '$(cat "$ctrl/model" 2>/dev/null | sed 's/ *$//')'"
    if [ -n "${4:-}" ] && [ "$(sed 's/ *$//' "$ctrl/serial" 2>/dev/null)" != "$4" ]; then
        echo "$info: serial '$(cat "$ctrl/serial" 2>/dev/null)', expected '$4'"
        nvmf_disconnect "$inst"
        return 1
    fi
    if ! dev=$(nvmf_ns_dev "$inst"); then
        echo "$info: no namespace block device appeared"
        nvmf_disconnect "$inst"
        return 1
    fi
    info="$info, $dev uuid '$(cat "/sys/block/${dev#/dev/}/uuid" 2>/dev/null)'"
    if ! out=$(nvmf_pattern "$dev" "${6:-}"); then
        echo "$info: $out"
        nvmf_disconnect "$inst"
        return 1
    fi
    if ! nvmf_disconnect "$inst"; then
        echo "$info: $out; nvme$inst still there after delete_controller"
        return 1
    fi
    echo "$info; $out; disconnected"
}

# nvmf_kernel_both NAME ADDR PORT NQN SERIAL: nvmf_kernel_io without digests, then with header
# and data digests (crc32c, checked by both ends); one line.
nvmf_kernel_both() {
    : > "/tmp/$1.info"
    name=$1
    shift
    if ! plain=$(nvmf_kernel_io "$@"); then
        say "$name FAIL (no digests: $plain)"
        return 1
    fi
    if ! dig=$(nvmf_kernel_io "$@" ",hdr_digest,data_digest"); then
        say "$name FAIL (no digests: PASS; header and data digests: $dig)"
        return 1
    fi
    echo "$plain" > "/tmp/$name.info"
    say "$name PASS (no digests: $plain; header and data digests: $dig)"
}

# nvmf_discovery NAME ADDR PORT WANT_NQN: the kernel's discovery. With nvme-cli: nvme discover
# must list WANT_NQN. Without: a connect to the discovery NQN must give a controller that
# reports it, then a disconnect.
nvmf_discovery() {
    name=$1
    if [ -x /strata/nvme ]; then
        if ! nvme discover -t tcp -a "$2" -s "$3" > "/tmp/$name.out" 2>&1; then
            cat "/tmp/$name.out"
            say "$name FAIL (nvme discover -t tcp -a $2 -s $3: $(tail -n1 "/tmp/$name.out"))"
            return 1
        fi
        cat "/tmp/$name.out"
        n=$(grep -c '^subnqn:' "/tmp/$name.out")
        if grep -q "^subnqn: *$4\$" "/tmp/$name.out"; then
            say "$name PASS (nvme discover: $n log entries, $4 among them)"
        else
            say "$name FAIL (nvme discover: $n log entries, $4 not among them)"
        fi
        return 0
    fi
    if ! inst=$(nvmf_connect "transport=tcp,traddr=$2,trsvcid=$3,nqn=$NVMF_DNQN"); then
        say "$name FAIL (discovery connect to $2:$3: $(tail -n1 /tmp/nvmf-connect.err))"
        return 1
    fi
    got=$(cat "/sys/class/nvme/nvme$inst/subsysnqn" 2>/dev/null)
    nvmf_disconnect "$inst"
    if [ "$got" = "$NVMF_DNQN" ]; then
        say "$name PASS (discovery controller nvme$inst connected and deleted; no nvme-cli for the log page)"
    else
        say "$name FAIL (discovery controller reports subsysnqn '$got')"
    fi
}

# nvmf_kernel_target: nvmet over configfs, one subsystem (any host) with a memory-backed
# null_blk namespace, one TCP port on 127.0.0.1:4420.
nvmf_kernel_target() {
    s="$NVMF_CFS/subsystems/$NVMF_KNQN"
    p="$NVMF_CFS/ports/1"
    mkdir "$s" &&
        echo 1 > "$s/attr_allow_any_host" &&
        echo STRATAVMNVMET01 > "$s/attr_serial" &&
        mkdir "$s/namespaces/1" &&
        echo -n /dev/nullb0 > "$s/namespaces/1/device_path" &&
        echo 1 > "$s/namespaces/1/enable" &&
        mkdir "$p" &&
        echo tcp > "$p/addr_trtype" &&
        echo ipv4 > "$p/addr_adrfam" &&
        echo 127.0.0.1 > "$p/addr_traddr" &&
        echo "$NVMF_KPORT" > "$p/addr_trsvcid" &&
        ln -s "$s" "$p/subsystems/$NVMF_KNQN"
}

# nvmf_skip_or_fail NAME FILE MSG: SKIP when FILE shows the binary has no NVMe/TCP yet.
nvmf_skip_or_fail() {
    if grep -q "PCIe only" "$2"; then
        say "$1 SKIP (this Strata initiator has no NVMe/TCP yet: $(grep -m1 'PCIe only' "$2"))"
    elif grep -qE "unknown parameter '(hdgst|ddgst)'" "$2"; then
        say "$1 SKIP (this Strata initiator has no NVMe/TCP digests yet: $(grep -m1 -E "unknown parameter" "$2"))"
    elif grep -qE "unknown subsystem 'nvmf'|nvmf_[a-z_]*.*Method not found|Method not found.*nvmf_" "$2"; then
        say "$1 SKIP (this strata-tgt has no NVMe-oF target yet: $(grep -m1 -E 'nvmf' "$2"))"
    else
        say "$1 FAIL ($3)"
    fi
}

# nvmf_strata_verify NAME EXTRA_PARAMS SECONDS: bdevperf -w verify (4 KiB, QD 16) on nvmet's
# namespace through bdev_nvme_attach_controller trtype TCP (EXTRA_PARAMS: more JSON members).
nvmf_strata_verify() {
    cat > "/tmp/$1.json" <<JSON
{"subsystems":[{"subsystem":"bdev","config":[
 {"method":"bdev_nvme_attach_controller","params":{"name":"NvmeT","trtype":"TCP","adrfam":"IPv4",
  "traddr":"127.0.0.1","trsvcid":"$NVMF_KPORT","subnqn":"$NVMF_KNQN"$2}}]}]}
JSON
    say "$1 running: bdevperf -c /tmp/$1.json -q 16 -o 4096 -w verify -t $3"
    timeout 90 bdevperf -c "/tmp/$1.json" -q 16 -o 4096 -w verify -t "$3" > "/tmp/$1.out" 2>&1
    rc=$?
    cat "/tmp/$1.out"
    if [ "$rc" -ne 0 ]; then
        nvmf_skip_or_fail "$1" "/tmp/$1.out" "bdevperf exit $rc"
        return
    fi
    fail=$(awk '$1 == "Total" {print $5}' "/tmp/$1.out")
    ios=$(awk '$1 == "Total" {print $3}' "/tmp/$1.out")
    case "$fail:$ios" in
    0.00:0.00 | : | *:) say "$1 FAIL (no I/O completed: IOPS '$ios', Fail/s '$fail')" ;;
    0.00:*) say "$1 PASS (bdevperf 4K verify QD16 over TCP to nvmet${2:+ with header and data digests}: $ios IOPS, no miscompare)" ;;
    *) say "$1 FAIL (Fail/s $fail)" ;;
    esac
}

# tgt_start NAME OUT CONFIG SOCK: starts strata-tgt with CONFIG (RPC socket SOCK, output in
# OUT; sets TGT_PID) on the second CPU when there is one (its reactor polls, the kernel's
# initiator needs the other), says "NAME running", waits up to 30 s for 'framework
# initialized'. Status 0: running; 1: it exited while loading (its status in TGT_RC); 2: it
# never initialized (killed). Shared with iscsi.sh.
tgt_start() {
    mask=0x1
    [ "$(grep -c ^processor /proc/cpuinfo)" -gt 1 ] && mask=0x2
    say "$1 running: strata-tgt -m $mask -c $3"
    strata-tgt -m "$mask" -r "$4" -c "$3" > "$2" 2>&1 &
    TGT_PID=$!
    i=0
    while kill -0 "$TGT_PID" 2>/dev/null && ! grep -q 'framework initialized' "$2" && [ "$i" -lt 300 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if ! kill -0 "$TGT_PID" 2>/dev/null; then
        wait "$TGT_PID"
        TGT_RC=$?
        return 1
    fi
    if ! grep -q 'framework initialized' "$2"; then
        kill -9 "$TGT_PID"
        return 2
    fi
    return 0
}

# tgt_stop NAME OUT: SIGTERM to TGT_PID; "NAME PASS" when it exits 0 within 10 s.
tgt_stop() {
    kill -TERM "$TGT_PID"
    i=0
    while kill -0 "$TGT_PID" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$TGT_PID" 2>/dev/null; then
        kill -9 "$TGT_PID"
        cat "$2"
        say "$1 FAIL (strata-tgt still running 10 s after SIGTERM)"
    else
        wait "$TGT_PID"
        rc=$?
        cat "$2"
        if [ "$rc" -eq 0 ]; then say "$1 PASS"; else say "$1 FAIL (exit $rc)"; fi
    fi
}

# nvmf_strata_tgt CONFIG: starts strata-tgt with CONFIG, runs the kernel initiator's checks
# against it, stops it (SIGTERM, exit 0 expected).
nvmf_strata_tgt() {
    tgt_start nvmf-tgt /tmp/nvmf-tgt.out "$1" /tmp/strata-tgt.sock
    case $? in
    1)
        cat /tmp/nvmf-tgt.out
        nvmf_skip_or_fail nvmf-tgt /tmp/nvmf-tgt.out "strata-tgt exited ($TGT_RC) while loading the config"
        say "nvmf-tgt-discovery SKIP (no strata-tgt running)"
        return 0
        ;;
    2)
        cat /tmp/nvmf-tgt.out
        say "nvmf-tgt FAIL (strata-tgt not initialized after 30 s)"
        return 1
        ;;
    esac
    nvmf_kernel_both nvmf-tgt 127.0.0.1 "$NVMF_SPORT" "$NVMF_SNQN" "$NVMF_SERIAL"
    # The namespace identification descriptors carry the bdev's UUID (the kernel shows it).
    if grep -q "uuid '$NVMF_UUID'" /tmp/nvmf-tgt.info; then
        say "nvmf-tgt-uuid PASS (the kernel sees the malloc bdev's UUID $NVMF_UUID)"
    elif [ -s /tmp/nvmf-tgt.info ]; then
        say "nvmf-tgt-uuid FAIL (the kernel's namespace: $(grep -o "uuid '[^']*'" /tmp/nvmf-tgt.info), expected the bdev's $NVMF_UUID)"
    fi
    nvmf_discovery nvmf-tgt-discovery 127.0.0.1 "$NVMF_SPORT" "$NVMF_SNQN"
    [ -s /tmp/nvmf-tgt.info ] &&
        nvmf_cap_kernel pcap-strata-tgt 127.0.0.1 "$NVMF_SPORT" "$NVMF_SNQN" "$NVMF_SERIAL"
    tgt_stop nvmf-tgt-stop /tmp/nvmf-tgt.out
}

nvmf_main() {
    nvmf_t0=$(cut -d' ' -f1 /proc/uptime)
    nvmf_checks
    say "nvmf-time $(awk -v t0="$nvmf_t0" '{printf "%.1f", $1 - t0}' /proc/uptime)s for the NVMe/TCP checks ($(awk '/^MemAvailable/ {print int($2 / 1024)}' /proc/meminfo) MiB available after them)"
}

# load_module_set SET: insmod /lib/modules/SET/order's modules in that order (ci/vm copies each
# set with its dependencies), skipping those an earlier set loaded; the failures go to $bad as
# " name(error)". Used by the iSCSI and vhost checks too.
load_module_set() {
    bad=
    for ko in $(cat "/lib/modules/$1/order"); do
        m=$(echo "${ko%.ko}" | tr - _)
        [ -d "/sys/module/$m" ] && continue
        args=
        case "$ko" in null_blk.ko) args="nr_devices=1 gb=1 memory_backed=1" ;; esac
        insmod "/lib/modules/$1/$ko" $args 2>/tmp/insmod.err || bad="$bad ${ko%.ko}($(tail -n1 /tmp/insmod.err))"
    done
}

nvmf_checks() {
    # ---- modules, loopback, configfs ----
    load_module_set nvmf
    ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
    mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
    missing=
    for m in nvme_tcp nvmet_tcp null_blk; do [ -d "/sys/module/$m" ] || missing="$missing $m"; done
    [ -c /dev/nvme-fabrics ] || missing="$missing /dev/nvme-fabrics"
    [ -b /dev/nullb0 ] || missing="$missing /dev/nullb0"
    [ -d "$NVMF_CFS" ] || missing="$missing $NVMF_CFS"
    ip addr show lo | grep -q 'inet 127.0.0.1' || missing="$missing lo(127.0.0.1)"
    if [ -n "$missing" ]; then
        say "nvmf-setup FAIL (missing:$missing; insmod failures:${bad:- none})"
        return 1
    fi
    # crct10dif-pclmul and the like may refuse a CPU without their instructions: harmless.
    say "nvmf-setup PASS ($(wc -w < /lib/modules/nvmf/order) modules, lo up, configfs${bad:+; optional ones that did not load:$bad})"

    # ---- Linux initiator -> Linux target ----
    if ! nvmf_kernel_target 2>/tmp/nvmet.err; then
        say "nvmf-kernel FAIL (nvmet configfs setup: $(tail -n1 /tmp/nvmet.err))"
        return 1
    fi
    nvmf_kernel_both nvmf-kernel 127.0.0.1 "$NVMF_KPORT" "$NVMF_KNQN" STRATAVMNVMET01
    nvmf_discovery nvmf-kernel-discovery 127.0.0.1 "$NVMF_KPORT" "$NVMF_KNQN"
    nvmf_cap_kernel pcap-nvmet 127.0.0.1 "$NVMF_KPORT" "$NVMF_KNQN" STRATAVMNVMET01

    # ---- Strata initiator -> Linux target ----
    trid="trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:$NVMF_KPORT subnqn:$NVMF_KNQN"
    say "nvmf-strata-identify running: strata-nvme-identify -r '$trid'"
    nvmf_cap_start pcap-strata-init "$NVMF_KPORT"
    timeout 60 strata-nvme-identify -r "$trid" > /tmp/nvmf-strata-identify.out 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then nvmf_cap_send pcap-strata-init "$NVMF_KPORT"; else nvmf_cap_stop; fi
    cat /tmp/nvmf-strata-identify.out
    if [ "$rc" -ne 0 ]; then
        nvmf_skip_or_fail nvmf-strata-identify /tmp/nvmf-strata-identify.out "exit $rc"
    elif grep -q '^sn  *: STRATAVMNVMET01' /tmp/nvmf-strata-identify.out &&
        grep -q '^mn  *: Linux' /tmp/nvmf-strata-identify.out && grep -q '^nsze' /tmp/nvmf-strata-identify.out; then
        say "nvmf-strata-identify PASS (nvmet's controller: mn Linux, sn STRATAVMNVMET01, namespace data)"
    else
        say "nvmf-strata-identify FAIL (exit 0, but no 'sn : STRATAVMNVMET01' / 'mn : Linux' / nsze in the output)"
    fi
    nvmf_strata_verify nvmf-strata-verify "" "$NVMF_SECONDS"
    nvmf_strata_verify nvmf-strata-verify-digest ',"hdgst":true,"ddgst":true' 1

    # ---- Linux initiator -> strata-tgt ----
    cat > /tmp/nvmf-tgt.json <<JSON
{"subsystems":[
 {"subsystem":"bdev","config":[
  {"method":"bdev_malloc_create","params":{"name":"Malloc0","num_blocks":16384,"block_size":512,
   "uuid":"$NVMF_UUID"}}]},
 {"subsystem":"nvmf","config":[
  {"method":"nvmf_create_transport","params":{"trtype":"TCP"}},
  {"method":"nvmf_create_subsystem","params":{"nqn":"$NVMF_SNQN","allow_any_host":true,
   "serial_number":"$NVMF_SERIAL","model_number":"Strata ci/vm"}},
  {"method":"nvmf_subsystem_add_ns","params":{"nqn":"$NVMF_SNQN","namespace":{"bdev_name":"Malloc0"}}},
  {"method":"nvmf_subsystem_add_listener","params":{"nqn":"$NVMF_SNQN","listen_address":
   {"trtype":"TCP","adrfam":"IPv4","traddr":"127.0.0.1","trsvcid":"$NVMF_SPORT"}}}]}]}
JSON
    nvmf_strata_tgt /tmp/nvmf-tgt.json
}

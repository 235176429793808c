# iSCSI interop in the ci/vm guest, sourced by /init (busybox sh; uses its say, and nvmf.sh's
# nvmf_pattern / nvmf_dd_check for the data checks and tgt_start / tgt_stop for strata-tgt). Linux's own initiator: the kernel's iscsi_tcp driven by
# open-iscsi's iscsid and iscsiadm (ci/vm copies them in from Debian's open-iscsi .debs, with
# /etc/iscsi/initiatorname.iscsi and an iscsid.conf whose node settings carry the CHAP
# credentials). Every check prints one "STRATA-VM: <check> PASS|FAIL|SKIP (...)" line that
# ci/vm greps:
#   iscsi-setup     modules (iscsi_tcp, sd_mod, LIO's target_core_mod/target_core_file/
#                   iscsi_target_mod, in dependency order), configfs, iscsid running
#   iscsi-lio       Linux initiator -> LIO, the kernel's own target (configfs by hand: a 64 MiB
#                   fileio LUN on tmpfs, one ACL for our initiator name with one-way CHAP) on
#                   127.0.0.1:3260: SendTargets discovery, login with CHAP, the SCSI disk
#                   /dev/sdX found through sysfs, two 1 MiB patterns written with O_DIRECT and
#                   read back (4 KiB / 128 KiB I/O), logout, the disk gone
#   iscsi-lio-badchap   the same target refuses a login with a wrong CHAP secret
#   iscsi-lio-mutual    a login with mutual CHAP (the target proves its secret too), logout
#   iscsi-tgt       the same as iscsi-lio against strata-tgt (a malloc bdev, portal
#                   127.0.0.1:3261, an auth group with the CHAP secrets, require_chap), set up
#                   by a JSON config in SPDK's iscsi_* methods; then iscsi-tgt-badchap,
#                   iscsi-tgt-mutual and iscsi-tgt-stop (exit 0 on SIGTERM). SKIP while
#                   strata-tgt has no iSCSI target ("unknown subsystem 'iscsi'", iscsi_*:
#                   "Method not found"); once it has one, any failure is a FAIL.

ISCSI_INI=iqn.2026-12.io.strata:vm-initiator
ISCSI_LIO=iqn.2026-12.io.strata:vm-lio
ISCSI_TGT=iqn.2026-12.io.strata:vm-tgt
ISCSI_LPORT=3260
ISCSI_SPORT=3261
ISCSI_USER=strata-vm-initiator
ISCSI_SECRET=strata-vm-secret-0001
ISCSI_MUSER=strata-vm-target
ISCSI_MSECRET=strata-vm-msecret-002
ISCSI_CFS=/sys/kernel/config/target


# iscsi_lio_target: LIO over configfs, one fileio LUN, one portal, one ACL with CHAP (the
# credentials written without a newline: LIO keeps it, and CHAP_N would not match).
iscsi_lio_target() {
    dd if=/dev/zero of=/tmp/lio.img bs=1M count=0 seek=64 2>/dev/null
    b="$ISCSI_CFS/core/fileio_0/vmdisk"
    t="$ISCSI_CFS/iscsi/$ISCSI_LIO/tpgt_1"
    mkdir -p "$b" &&
        echo "fd_dev_name=/tmp/lio.img,fd_dev_size=67108864" > "$b/control" &&
        echo 1 > "$b/enable" &&
        mkdir -p "$t/lun/lun_0" &&
        ln -s "$b" "$t/lun/lun_0/vmdisk" &&
        mkdir "$t/np/127.0.0.1:$ISCSI_LPORT" &&
        mkdir -p "$t/acls/$ISCSI_INI/lun_0" &&
        ln -s "$t/lun/lun_0" "$t/acls/$ISCSI_INI/lun_0/lun" &&
        printf %s "$ISCSI_USER" > "$t/acls/$ISCSI_INI/auth/userid" &&
        printf %s "$ISCSI_SECRET" > "$t/acls/$ISCSI_INI/auth/password" &&
        printf %s "$ISCSI_MUSER" > "$t/acls/$ISCSI_INI/auth/userid_mutual" &&
        printf %s "$ISCSI_MSECRET" > "$t/acls/$ISCSI_INI/auth/password_mutual" &&
        echo 0 > "$t/attrib/generate_node_acls" &&
        echo 1 > "$t/attrib/authentication" &&
        echo 1 > "$t/enable"
}

# iscsi_disk TARGET: the block device of TARGET's session (LUN 0), waiting for the scan.
iscsi_disk() {
    i=0
    while [ "$i" -lt 100 ]; do
        for s in /sys/class/iscsi_session/session*; do
            [ "$(cat "$s/targetname" 2>/dev/null)" = "$1" ] || continue
            for blk in "$s"/device/target*/*/block/*; do
                [ -e "$blk" ] || continue
                if [ -b "/dev/$(basename "$blk")" ]; then echo "/dev/$(basename "$blk")"; return 0; fi
            done
        done
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# iscsi_node TARGET PORT NAME VALUE: sets a node record setting.
iscsi_node() {
    iscsiadm -m node -T "$1" -p "127.0.0.1:$2" -o update -n "$3" -v "$4" > /dev/null 2>&1
}

# iscsi_logout TARGET PORT: logs out, waits for the session to go.
iscsi_logout() {
    iscsiadm -m node -T "$1" -p "127.0.0.1:$2" --logout > /tmp/iscsi-logout.out 2>&1 || return 1
    i=0
    while grep -qx "$1" /sys/class/iscsi_session/session*/targetname 2>/dev/null && [ "$i" -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    ! grep -qx "$1" /sys/class/iscsi_session/session*/targetname 2>/dev/null
}

# iscsi_check NAME TARGET PORT: discovery, CHAP login, pattern, logout; then a wrong secret
# (NAME-badchap) and mutual CHAP (NAME-mutual). One line each.
iscsi_check() {
    name=$1
    if ! iscsiadm -m discovery -t sendtargets -p "127.0.0.1:$3" > "/tmp/$name.disc" 2>&1; then
        say "$name FAIL (SendTargets discovery on 127.0.0.1:$3: $(tail -n1 "/tmp/$name.disc"))"
        return 1
    fi
    if ! grep -q " $2\$" "/tmp/$name.disc"; then
        say "$name FAIL (discovery did not list $2: $(tr '\n' ' ' < "/tmp/$name.disc"))"
        return 1
    fi
    # One-way CHAP (the settings iscsid.conf gave the new node record).
    if ! iscsiadm -m node -T "$2" -p "127.0.0.1:$3" --login > "/tmp/$name.login" 2>&1; then
        say "$name FAIL (CHAP login: $(tail -n1 "/tmp/$name.login"); $(dmesg | grep -i iscsi | tail -n1))"
        return 1
    fi
    if ! dev=$(iscsi_disk "$2"); then
        say "$name FAIL (logged in, but no SCSI disk appeared; $(dmesg | grep -iE 'scsi|sd ' | tail -n1))"
        iscsi_logout "$2" "$3"
        return 1
    fi
    info="$dev $(cat "/sys/block/${dev#/dev/}/device/vendor" 2>/dev/null | sed 's/ *$//') $(cat "/sys/block/${dev#/dev/}/device/model" 2>/dev/null | sed 's/ *$//'), $(($(cat "/sys/block/${dev#/dev/}/size") / 2048)) MiB"
    if ! out=$(nvmf_pattern "$dev"); then
        say "$name FAIL ($info: $out)"
        iscsi_logout "$2" "$3"
        return 1
    fi
    if ! iscsi_logout "$2" "$3"; then
        say "$name FAIL ($info: $out; logout: $(tail -n1 /tmp/iscsi-logout.out))"
        return 1
    fi
    i=0
    while [ -b "$dev" ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -b "$dev" ]; then
        say "$name FAIL ($info: $out; $dev still there after logout)"
        return 1
    fi
    say "$name PASS (discovery, one-way CHAP login, $info: $out; logout, $dev gone)"

    # A wrong secret must be refused.
    iscsi_node "$2" "$3" node.session.auth.password wrong-secret-0001
    if iscsiadm -m node -T "$2" -p "127.0.0.1:$3" --login > "/tmp/$name-badchap.login" 2>&1; then
        iscsi_logout "$2" "$3"
        say "$name-badchap FAIL (a login with a wrong CHAP secret succeeded)"
    else
        say "$name-badchap PASS (wrong CHAP secret refused: $(grep -m1 -iE 'auth|fail' "/tmp/$name-badchap.login"))"
    fi
    iscsi_node "$2" "$3" node.session.auth.password "$ISCSI_SECRET"

    # Mutual CHAP: the target answers our challenge with its own secret.
    iscsi_node "$2" "$3" node.session.auth.username_in "$ISCSI_MUSER"
    iscsi_node "$2" "$3" node.session.auth.password_in "$ISCSI_MSECRET"
    if ! iscsiadm -m node -T "$2" -p "127.0.0.1:$3" --login > "/tmp/$name-mutual.login" 2>&1; then
        say "$name-mutual FAIL (mutual CHAP login: $(tail -n1 "/tmp/$name-mutual.login"))"
    elif ! dev=$(iscsi_disk "$2") || ! out=$(nvmf_dd_check "$dev" 4096 4096 3 65536); then
        iscsi_logout "$2" "$3"
        say "$name-mutual FAIL (logged in with mutual CHAP, then: ${out:-no SCSI disk})"
    elif ! iscsi_logout "$2" "$3"; then
        say "$name-mutual FAIL (logout: $(tail -n1 /tmp/iscsi-logout.out))"
    else
        say "$name-mutual PASS (mutual CHAP login, 64 KiB written and read back on $dev, logout)"
    fi
    iscsiadm -m node -T "$2" -p "127.0.0.1:$3" -o delete > /dev/null 2>&1
}

# iscsi_strata_tgt: strata-tgt with a JSON config, the same checks, SIGTERM.
iscsi_strata_tgt() {
    cat > /tmp/iscsi-tgt.json <<JSON
{"subsystems":[
 {"subsystem":"bdev","config":[
  {"method":"bdev_malloc_create","params":{"name":"Malloc0","num_blocks":131072,"block_size":512}}]},
 {"subsystem":"iscsi","config":[
  {"method":"iscsi_create_auth_group","params":{"tag":1,"secrets":[{"user":"$ISCSI_USER",
   "secret":"$ISCSI_SECRET","muser":"$ISCSI_MUSER","msecret":"$ISCSI_MSECRET"}]}},
  {"method":"iscsi_create_portal_group","params":{"tag":1,
   "portals":[{"host":"127.0.0.1","port":"$ISCSI_SPORT"}]}},
  {"method":"iscsi_create_initiator_group","params":{"tag":1,"initiators":["$ISCSI_INI"],
   "netmasks":["127.0.0.1/32"]}},
  {"method":"iscsi_create_target_node","params":{"name":"$ISCSI_TGT","alias_name":"ci-vm",
   "pg_ig_maps":[{"pg_tag":1,"ig_tag":1}],"luns":[{"bdev_name":"Malloc0","lun_id":0}],
   "queue_depth":64,"require_chap":true,"chap_group":1}}]}]}
JSON
    tgt_start iscsi-tgt /tmp/iscsi-tgt.out /tmp/iscsi-tgt.json /tmp/strata-tgt-iscsi.sock
    case $? in
    1)
        why=$(grep -m1 -E "unknown subsystem 'iscsi'|\(iscsi_[a-z_]*\): Method not found|Method not found: 'iscsi_" /tmp/iscsi-tgt.out)
        if [ -n "$why" ]; then
            for c in iscsi-tgt iscsi-tgt-badchap iscsi-tgt-mutual iscsi-tgt-stop; do
                say "$c SKIP (this strata-tgt has no iSCSI target yet: $why)"
            done
        else
            cat /tmp/iscsi-tgt.out
            say "iscsi-tgt FAIL (strata-tgt exited ($TGT_RC) while loading the config)"
        fi
        return 0
        ;;
    2)
        cat /tmp/iscsi-tgt.out
        say "iscsi-tgt FAIL (strata-tgt not initialized after 30 s)"
        return 1
        ;;
    esac
    iscsi_check iscsi-tgt "$ISCSI_TGT" "$ISCSI_SPORT"
    tgt_stop iscsi-tgt-stop /tmp/iscsi-tgt.out
}

iscsi_main() {
    iscsi_t0=$(cut -d' ' -f1 /proc/uptime)
    iscsi_checks
    say "iscsi-time $(awk -v t0="$iscsi_t0" '{printf "%.1f", $1 - t0}' /proc/uptime)s for the iSCSI checks"
}

iscsi_checks() {
    load_module_set iscsi
    ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
    mountpoint -q /sys/kernel/config 2>/dev/null ||
        mount -t configfs configfs /sys/kernel/config 2>/dev/null
    # LIO's fabric directory appears when made (what targetcli does).
    [ -d "$ISCSI_CFS" ] && mkdir -p "$ISCSI_CFS/iscsi" 2>/tmp/lio.err
    mkdir -p /run/lock/iscsi /etc/iscsi/nodes /etc/iscsi/send_targets /etc/iscsi/ifaces
    # iscsid serves only root, found by name (getpwuid of the peer): "daemon access denied"
    # without a passwd entry.
    grep -q '^root:' /etc/passwd 2>/dev/null || echo 'root:x:0:0:root:/:/bin/sh' >> /etc/passwd
    iscsid -f > /tmp/iscsid.log 2>&1 &
    i=0
    while ! pidof iscsid > /dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    missing=
    for m in iscsi_tcp sd_mod iscsi_target_mod target_core_file; do
        [ -d "/sys/module/$m" ] || missing="$missing $m"
    done
    [ -d "$ISCSI_CFS/iscsi" ] || missing="$missing $ISCSI_CFS/iscsi"
    pidof iscsid > /dev/null || missing="$missing iscsid($(tail -n1 /tmp/iscsid.log))"
    if [ -n "$missing" ]; then
        say "iscsi-setup FAIL (missing:$missing; insmod failures:${bad:- none})"
        return 1
    fi
    say "iscsi-setup PASS ($(wc -w < /lib/modules/iscsi/order) modules, configfs, iscsid $(iscsiadm --version 2>/dev/null | awk '{print $NF}')${bad:+; optional ones that did not load:$bad})"

    # ---- Linux initiator -> LIO ----
    if ! iscsi_lio_target 2>/tmp/lio.err; then
        say "iscsi-lio FAIL (LIO configfs setup: $(tail -n1 /tmp/lio.err))"
    else
        iscsi_check iscsi-lio "$ISCSI_LIO" "$ISCSI_LPORT"
    fi

    # ---- Linux initiator -> strata-tgt ----
    iscsi_strata_tgt
}

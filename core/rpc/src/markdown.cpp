#include <algorithm>
#include <string_view>

#include <fmt/format.h>

#include <strata/rpc/registry.h>

namespace strata::rpc {

namespace {
std::string_view allowed_name(Allowed a) {
    switch (a) {
        case Allowed::startup: return "startup only (before `framework_start_init`)";
        case Allowed::runtime: return "runtime (after initialization)";
        case Allowed::both: return "startup and runtime";
    }
    return "?";
}
std::string cell(std::string s) {
    std::string out;
    for (char c : s) {
        if (c == '|') {
            out += "\\|";
        } else if (c == '\n') {
            out += ' ';
        } else {
            out += c;
        }
    }
    return out;
}
// Hand-written part of docs/user/rpc.md (the rest is generated from the registry).
constexpr std::string_view kSpdkCompatibility = R"(## SPDK compatibility

SPDK's own `scripts/rpc.py` (v24.09) and configs saved by SPDK's `spdk_tgt` are meant to work
against `strata-tgt` unchanged. `scenarios/test_spdk_compat.py` replays the exact requests an
unmodified rpc.py sends (captured from SPDK's rpc.py into `scenarios/data/spdk/`) and checks the
replies' shapes against SPDK's; it also loads an SPDK-style saved config and checks that
Strata's own save_config names only SPDK methods.

**Accepted as SPDK accepts them.** Every parameter in SPDK's decoder table of a method Strata
has, with SPDK's types and defaults; rpc.py sends store_true flags as `false` and those are
accepted. Results have SPDK's shape: `bdev_error_create` returns `true`; `bdev_get_bdevs` has
the `preferred_write_alignment`, `preferred_write_granularity`, `optimal_write_size`,
`preferred_unmap_alignment`, `preferred_unmap_granularity` fields (0: Strata's modules set no
preference) and `claim_type` only for a claimed bdev; raid levels and `trtype` are
case-insensitive; `bdev_split_create` lowers a split count to what fits, as SPDK;
`bdev_set_qos_limit` rounds an IOPS limit up to a multiple of 1000 and refuses a call with no
limit ("No rate limits specified"); `bdev_get_histogram` returns SPDK's encoding (base64 of
`spdk_histogram_data` buckets, bucket_shift 7, tsc_rate 1e9: ticks are nanoseconds), counted
from the `bdev_enable_histogram` call on, of one I/O type with `opc`;
`bdev_set_qd_sampling_period` samples the I/O outstanding every period and `bdev_get_iostat`
then has SPDK's `queue_depth_polling_period`, `queue_depth`, `io_time` and `weighted_io_time`
(microseconds). `bdev_nvme_disable_controller` deletes the controller's I/O qpairs and holds
its bdevs' I/O until `bdev_nvme_enable_controller` (a reset, then qpairs again); the lvol
methods `bdev_lvol_set_parent`, `bdev_lvol_set_parent_bdev`, `bdev_lvol_start_shallow_copy`
and `bdev_lvol_check_shallow_copy` behave as SPDK's (a copy's read-only and size checks end
the copy in error, as there).

**Accepted and recorded, with a logged notice, changing nothing** (Strata has no such
mechanism; save_config writes the values back): `bdev_set_options` pool and cache sizes
(Strata's bdev_io pools are per Thread, sized at build time), `iobuf_set_options` (no shared
iobuf pool; `iobuf_get_stats` returns `[]`), `framework_set_scheduler` with `static`
(its period), the SPDK-only `bdev_nvme_set_options` parameters at their defaults, and
`accel_set_options`' iobuf and sequence sizes.

**Subsystems.** A config may name SPDK's subsystems `iobuf`, `keyring`, `vmd` and `scheduler`
(with the setters above); SPDK subsystems Strata has no module for (`nbd`, `ublk`,
`vhost_scsi`, `vhost_blk`, `vfu_tgt`, `fsdev`) are skipped with a notice when their config is
empty, as SPDK skips subsystems it lacks, and refused when they carry entries. Any other unknown
subsystem name is an error. Strata's own `log`, `lvol` and `sim` subsystems appear in its saved
configs; SPDK skips them when loading such a file.

**Refused with an error naming the feature** (accepted only at SPDK's default): per-block
metadata and DIF/DIX on malloc and null bdevs (`md_size`, `md_interleave`, `dif_type`,
`dif_is_head_of_md`, `dif_pi_format`) and a `physical_block_size`; on
`bdev_nvme_attach_controller` protection checks (`prchk_reftag`, `prchk_guard`), multipath
(`multipath` other than `disable`, `priority`), TLS (`psk`), DH-HMAC-CHAP (`dhchap_key`,
`dhchap_ctrlr_key`) and `allow_unrecognized_csi`; `bdev_set_options` with
`bdev_auto_examine` false (so `bdev_examine` fails as SPDK's does under auto examine);
`bdev_get_iostat` `per_channel` without a name;
`bdev_raid_set_options` with a rebuild bandwidth limit; raid5f; schedulers other than
`static`; `vmd_enable`.

**NVMe error injection and passthrough.** `bdev_nvme_add_error_injection` /
`bdev_nvme_remove_error_injection` arm the driver's per-queue injection as SPDK's
`spdk_nvme_qpair_add_cmd_error_injection` does (admin queue, or the I/O qpair of each channel
that has one when called; one entry per opcode; without `do_not_submit` the device's completion
carries the injected status, with it the command is never sent and completes after
`timeout_in_us`). `bdev_nvme_send_cmd` returns SPDK's `cpl` (the 16-byte completion entry; the
driver reports dw0, dw1 and the status, sqhd/sqid/cid are 0) and `data` in base64's URL-safe
alphabet; an `io` command goes to the app Thread's qpair of the controller; `timeout_ms` is
accepted and ignored as SPDK ignores it; separate metadata (`metadata`, `metadata_len`) is
refused.

)";

}  // namespace

std::string render_markdown(const Registry& registry) {
    std::string md;
    md += "# JSON-RPC methods\n\n";
    md += "<!-- Generated by strata-rpc-doc from the method registry. Do not edit by hand:\n"
          "     regenerate with `build/<preset>/core/stack/strata-rpc-doc > docs/user/rpc.md`\n"
          "     (ctest rpc_doc_up_to_date fails when this file is stale). -->\n\n";
    md += "Requests are JSON-RPC 2.0 objects sent to the Unix socket of `strata-tgt` (default "
          "`/var/tmp/strata.sock`), or in-process through `strata.World.rpc()`. Params are "
          "passed by name; unknown or mistyped params are rejected with error -32602 naming "
          "the field. Methods called in a state they do not allow get error -1. See "
          "docs/design/rpc.md for framing, batches, notifications and error codes.\n\n";
    md += kSpdkCompatibility;
    md += "## Methods\n\n";
    md += "| Method | Allowed | Description |\n|---|---|---|\n";
    for (const MethodSpec* m : registry.methods()) {
        md += fmt::format("| [`{}`](#{}) | {} | {} |\n", m->name, m->name,
                          allowed_name(m->allowed), cell(m->description));
    }
    if (!registry.aliases().empty()) {
        md += "\nAliases (same method under another name):\n\n";
        auto aliases = registry.aliases();
        std::sort(aliases.begin(), aliases.end());
        for (const auto& [alias, target] : aliases) {
            md += fmt::format("- `{}` → `{}`\n", alias, target);
        }
    }
    for (const MethodSpec* m : registry.methods()) {
        md += fmt::format("\n## {}\n\n{}\n\n", m->name, m->description);
        md += fmt::format("Allowed: {}.", allowed_name(m->allowed));
        if (!m->subsystem.empty()) md += fmt::format(" Subsystem: `{}`.", m->subsystem);
        md += "\n\n";
        if (m->params.empty()) {
            md += "No parameters.\n";
            continue;
        }
        md += "| Parameter | Type | Required | Default | Description |\n|---|---|---|---|---|\n";
        for (const auto& p : m->params) {
            md += fmt::format("| `{}` | {} | {} | {} | {} |\n", p.name, param_type_name(p.type),
                              p.required ? "yes" : "no",
                              p.default_value.is_null() ? std::string("")
                                                        : "`" + p.default_value.dump() + "`",
                              cell(p.description));
        }
        if (!m->strict) md += "\nOther members are accepted and passed on.\n";
    }
    return md;
}

}  // namespace strata::rpc

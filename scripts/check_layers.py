#!/usr/bin/python3
"""The layering check (ctest `layering`; docs/design/layers.md draws the result).

Reads every #include of the library code (include/, src/, spec/ of each module; not tests/,
testing/, bench/ or tools/, which may use anything below the top floor) and fails when:
  - a module includes a module that LAYERS does not list among its dependencies (an arrow
    running up or sideways: add it to the table only if the design really changed);
  - a file reaches into another module's directory by a relative path ("../core/x/src/...");
  - the table itself has a cycle.

Usage: scripts/check_layers.py [REPO_ROOT]   (default: the repository this script is in)
"""
import os
import re
import sys

# Module -> the modules its library code may include. A module is core/<name>, a bdev module
# bdev/<name> (core/bdev/modules/<name>; each may use the bdev layer), hwemu/<name>
# (hw-emulation/<name>), or the top floor's bindings and fuzz.
LAYERS = {
    "base": [],
    "runtime": ["base"],
    "env": ["base", "runtime"],
    "rpc": ["base", "runtime"],
    "sock": ["base", "runtime", "rpc"],
    "nvme": ["base", "runtime", "env", "sock"],
    "ioat": ["base", "runtime", "env"],
    "virtio": ["base", "env"],
    "accel": ["base", "runtime", "env", "rpc", "ioat"],
    "hwemu/faults": ["base"],
    "hwemu/media": ["base"],
    "hwemu/pci": ["base", "runtime", "env"],
    "hwemu/nvme": ["base", "runtime", "env", "nvme", "hwemu/pci", "hwemu/faults", "hwemu/media"],
    "hwemu/ioat": ["base", "runtime", "env", "ioat", "hwemu/pci", "hwemu/faults"],
    "hwemu/virtio": ["base", "runtime", "env", "virtio", "hwemu/pci"],
    "hwemu/rpc": ["runtime", "env", "rpc", "hwemu/pci", "hwemu/faults", "hwemu/nvme",
                  "hwemu/ioat"],
    "bdev": ["base", "runtime", "env", "rpc", "accel"],
    "blob": ["base", "runtime", "bdev"],
    "lvol": ["base", "runtime", "rpc", "bdev", "blob"],
    "scsi": ["base", "runtime", "rpc", "bdev"],
    "iscsi": ["base", "runtime", "rpc", "sock", "accel", "bdev", "scsi"],
    "nvmf": ["base", "runtime", "env", "rpc", "sock", "accel", "nvme", "bdev"],
    "vhost": ["base", "runtime", "rpc", "bdev", "scsi", "virtio"],
    # The top floor: the module table, and what assembles a process.
    "stack": ["runtime", "rpc", "sock", "accel", "bdev", "lvol", "scsi", "iscsi", "nvmf", "vhost",
              "hwemu/rpc"],
    "apps": ["base", "runtime", "env", "rpc", "nvme", "bdev", "vhost", "stack"],
    "bindings": ["base", "runtime", "env", "rpc", "sock", "nvme", "bdev", "iscsi", "stack",
                 "hwemu/pci", "hwemu/nvme", "hwemu/faults"],
    "fuzz": ["base", "runtime", "env", "rpc", "sock", "accel", "nvme", "ioat", "bdev", "blob",
             "scsi", "iscsi", "nvmf", "vhost", "stack", "hwemu/pci", "hwemu/nvme",
             "hwemu/faults"],
}
# What every bdev module may use besides the layer itself (its driver, its transport).
BDEV_MODULE_BASE = ["base", "runtime", "env", "rpc", "accel", "bdev"]
BDEV_MODULE_EXTRA = {"nvme": ["nvme"], "virtio": ["virtio"]}

# Arrows that are known to run the wrong way, each with the reason it is still here. The check
# reports them but does not fail on them; remove an entry when its arrow is gone.
KNOWN = {
    ("apps", "hwemu/nvme"): "nvme-perf/nvme-identify create the NVMe model directly "
                            "(core/apps/common/nvme_tool.h) instead of through the sim RPCs",
    ("apps", "hwemu/pci"): "the same (the tools' emulated PCI bus)",
}
KNOWN_REACHES = {}

SKIP_DIRS = {"tests", "testing", "bench", "tools"}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')


def module_of_path(rel):
    parts = rel.split("/")
    if parts[0] == "core" and len(parts) > 2:
        if parts[1] == "bdev" and parts[2] == "modules" and len(parts) > 4:
            return "bdev/" + parts[3]
        return parts[1]
    if parts[0] == "hw-emulation" and len(parts) > 2:
        return "hwemu/" + parts[1]
    if parts[0] in ("bindings", "fuzz"):
        return parts[0]
    return None


def module_of_include(path):
    m = re.match(r"strata/hwemu/([a-z_]+)", path)
    if m:
        name = m.group(1)
        return "hwemu/rpc" if name.startswith("sim_rpc") else "hwemu/" + name
    m = re.match(r"strata/([a-z_]+)/", path)
    return m.group(1) if m else None


def allowed(module):
    if module.startswith("bdev/"):
        return set(BDEV_MODULE_BASE) | set(BDEV_MODULE_EXTRA.get(module[5:], []))
    return set(LAYERS.get(module, []))


def find_cycle():
    state = {}

    def visit(m, path):
        state[m] = 1
        for d in LAYERS.get(m, []):
            if state.get(d) == 1:
                return path + [m, d]
            if d not in state:
                c = visit(d, path + [m])
                if c:
                    return c
        state[m] = 2
        return None

    for m in LAYERS:
        if m not in state:
            c = visit(m, [])
            if c:
                return c
    return None


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))
    errors, known_seen = [], set()
    cycle = find_cycle()
    if cycle:
        errors.append("LAYERS has a cycle: " + " -> ".join(cycle))
    files = 0
    for top in ("core", "hw-emulation", "bindings", "fuzz"):
        for d, dirs, names in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and x != "corpus")
            for name in sorted(names):
                if not name.endswith((".h", ".cpp", ".cc", ".h.in")):
                    continue
                rel = os.path.relpath(os.path.join(d, name), root)
                module = module_of_path(rel)
                if module is None:
                    continue
                if module not in LAYERS and not module.startswith("bdev/"):
                    errors.append(f"{rel}: module {module} is not in LAYERS "
                                  "(scripts/check_layers.py): place it on a floor")
                    continue
                files += 1
                with open(os.path.join(d, name), errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        inc = m.group(1)
                        if ".." in inc.split("/"):
                            target = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
                            if module_of_path(target) in (module, None):
                                continue
                            if (module, inc) in KNOWN_REACHES:
                                known_seen.add(("reach", module, inc))
                                continue
                            errors.append(f"{rel}:{lineno}: reaches into {target}: include a "
                                          "published header (include/ or testing/) instead")
                            continue
                        target = module_of_include(inc)
                        if target is None or target == module:
                            continue
                        if module.startswith("bdev/") and target == "bdev":
                            continue
                        if target in allowed(module):
                            continue
                        if (module, target) in KNOWN:
                            known_seen.add(("dep", module, target))
                            continue
                        errors.append(f"{rel}:{lineno}: {module} includes {target} "
                                      f"(<{inc}>), which is not below it in LAYERS")
    for kind, module, what in sorted(known_seen):
        why = KNOWN.get((module, what)) or KNOWN_REACHES.get((module, what))
        print(f"known: {module} -> {what}: {why}")
    for e in errors:
        print(e)
    print(f"layering: {files} files, {len(errors)} violation(s), {len(known_seen)} known")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

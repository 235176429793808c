// DPDK 22.11 (ABI 23) PCI bus structures that DPDK no longer installs.
//
// Since 22.11 the definitions of struct rte_device, rte_driver, rte_pci_device and rte_pci_driver
// live in "driver SDK" headers (dev_driver.h, bus_pci_driver.h) that Debian's libdpdk-dev does not
// ship; the public headers only forward-declare them. A PCI driver outside DPDK's tree (SPDK does
// the same) must therefore declare the layouts itself. They are fixed for the whole 22.11 LTS
// series (ABI version 23), which CMake enforces (libdpdk >= 22.11, < 23.0), and the offsets below
// are static-asserted; dpdk_pci.cpp also checks at run time that a scanned device's name and
// address agree with DPDK's own accessors before trusting the layout.
//
// Only dpdk_pci.cpp includes this file.
#pragma once

#include <cstddef>
#include <cstdint>

#include <rte_bus_pci.h>
#include <rte_dev.h>
#include <rte_os.h>
#include <rte_pci.h>
#include <rte_version.h>

#if RTE_VERSION < RTE_VERSION_NUM(22, 11, 0, 0) || RTE_VERSION >= RTE_VERSION_NUM(23, 0, 0, 0)
#error "strata's dpdk backend declares DPDK 22.11 (ABI 23) PCI structures; other versions differ"
#endif

extern "C" {

struct rte_bus;
struct rte_devargs;
struct rte_intr_handle;

struct rte_driver {
    RTE_TAILQ_ENTRY(rte_driver) next;
    const char* name;
    const char* alias;
};

struct rte_device {
    RTE_TAILQ_ENTRY(rte_device) next;
    const char* name;
    const char* bus_info;
    const struct rte_driver* driver;  // set once a driver has probed the device
    const struct rte_bus* bus;
    int numa_node;
    struct rte_devargs* devargs;
};

enum rte_pci_kernel_driver {
    RTE_PCI_KDRV_UNKNOWN = 0,
    RTE_PCI_KDRV_IGB_UIO,
    RTE_PCI_KDRV_VFIO,
    RTE_PCI_KDRV_UIO_GENERIC,
    RTE_PCI_KDRV_NIC_UIO,
    RTE_PCI_KDRV_NONE,
    RTE_PCI_KDRV_NET_UIO,
};

struct rte_pci_device {
    RTE_TAILQ_ENTRY(rte_pci_device) next;
    struct rte_device device;
    struct rte_pci_addr addr;
    struct rte_pci_id id;
    struct rte_mem_resource mem_resource[PCI_MAX_RESOURCE];  // BARs; addr set once mapped
    struct rte_intr_handle* intr_handle;
    struct rte_pci_driver* driver;
    uint16_t max_vfs;
    enum rte_pci_kernel_driver kdrv;
    char name[PCI_PRI_STR_SIZE + 1];
    char* bus_info;
    struct rte_intr_handle* vfio_req_intr_handle;
};

typedef int(rte_pci_probe_t)(struct rte_pci_driver*, struct rte_pci_device*);
typedef int(rte_pci_remove_t)(struct rte_pci_device*);
typedef int(pci_dma_map_t)(struct rte_pci_device*, void*, uint64_t, size_t);
typedef int(pci_dma_unmap_t)(struct rte_pci_device*, void*, uint64_t, size_t);

struct rte_pci_driver {
    RTE_TAILQ_ENTRY(rte_pci_driver) next;
    struct rte_driver driver;
    rte_pci_probe_t* probe;
    rte_pci_remove_t* remove;
    pci_dma_map_t* dma_map;
    pci_dma_unmap_t* dma_unmap;
    const struct rte_pci_id* id_table;  // terminated by an entry with vendor_id 0
    uint32_t drv_flags;
};

// Flags of rte_pci_driver::drv_flags (bus_pci_driver.h).
#define STRATA_RTE_PCI_DRV_NEED_MAPPING 0x0001

// Exported by librte_bus_pci with version tag INTERNAL.
void rte_pci_register(struct rte_pci_driver* driver);
void rte_pci_unregister(struct rte_pci_driver* driver);

}  // extern "C"

// Layout checks (x86-64 / LP64), computed from the 22.11 definitions.
static_assert(sizeof(void*) == 8, "LP64 only");
static_assert(sizeof(rte_device) == 64);
static_assert(offsetof(rte_pci_device, device) == 16);
static_assert(offsetof(rte_pci_device, addr) == 80);
static_assert(offsetof(rte_pci_device, id) == 88);
static_assert(offsetof(rte_pci_device, mem_resource) == 104);
static_assert(offsetof(rte_pci_device, intr_handle) == 248);
static_assert(offsetof(rte_pci_device, kdrv) == 268);
static_assert(offsetof(rte_pci_device, name) == 272);
static_assert(sizeof(rte_pci_device) == 312);
static_assert(offsetof(rte_pci_driver, driver) == 16);
static_assert(offsetof(rte_pci_driver, probe) == 48);
static_assert(offsetof(rte_pci_driver, id_table) == 80);
static_assert(sizeof(rte_pci_driver) == 96);

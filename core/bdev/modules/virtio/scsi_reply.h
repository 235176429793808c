// virtio_scsi's reading of a device's replies, kept pure (no device, no I/O) so the scan and
// sense paths are unit-tested against hostile replies: a used length shorter than the response
// header, a residual beyond the transfer, garbage in response or status, short INQUIRY and
// READ CAPACITY data, and sense in fixed or descriptor format.
#pragma once

#include <cstdint>
#include <string>

#include <strata/base/status.h>
#include <strata/virtio/spec/scsi.h>

namespace strata::bdev::vscsi {

// SCSI status bytes.
inline constexpr uint8_t kStatusGood = 0x00;
inline constexpr uint8_t kStatusCheckCondition = 0x02;
inline constexpr uint8_t kStatusBusy = 0x08;
inline constexpr uint8_t kStatusReservationConflict = 0x18;
inline constexpr uint8_t kStatusTaskSetFull = 0x28;

// Sense keys.
inline constexpr uint8_t kSenseNotReady = 0x2;
inline constexpr uint8_t kSenseMediumError = 0x3;
inline constexpr uint8_t kSenseIllegalRequest = 0x5;
inline constexpr uint8_t kSenseUnitAttention = 0x6;
inline constexpr uint8_t kSenseDataProtect = 0x7;
inline constexpr uint8_t kSenseAbortedCommand = 0xb;
inline constexpr uint8_t kSenseMiscompare = 0xe;

struct Sense {
    bool valid = false;
    uint8_t key = 0, asc = 0, ascq = 0;
};

// What one command's reply says. `data_in` is how many bytes of data-in the device transferred.
struct Reply {
    Errc code = Errc::ok;  // the bdev error it maps to
    uint8_t response = 0;  // virtio-scsi response code
    uint8_t status = 0;    // SCSI status
    Sense sense;
    uint32_t data_in = 0;
    std::string why;  // set when code is not ok: what the device said, for errors and logs
};

// Fixed (0x70/0x71) or descriptor (0x72/0x73) format; anything else is not valid sense.
Sense parse_sense(const uint8_t* sense, uint32_t len) noexcept;

// Maps a response to a bdev error. used_len: what the device put in the used ring (bytes
// written: the RespCmd, then data-in). data_in_len: the data-in buffer's length (0 for none).
Reply read_reply(const virtio::spec::scsi::RespCmd& resp, uint32_t used_len, uint32_t data_in_len);

struct Inquiry {
    uint8_t qualifier = 0;    // peripheral qualifier (0: a device is connected)
    uint8_t device_type = 0;  // 0: direct access block device
    std::string vendor, product;
};
// Standard INQUIRY data; at least 36 bytes are needed.
Result<Inquiry> parse_inquiry(const uint8_t* data, uint32_t len);

struct Capacity {
    uint64_t num_blocks = 0;
    uint32_t block_size = 0;
    bool lbpme = false;  // logical block provisioning (UNMAP) enabled: READ CAPACITY(16) only
};
// READ CAPACITY(10): 8 bytes; READ CAPACITY(16): 32 bytes (the first 16 needed). The block size
// must be a power of two of 512 or more, the capacity at least one block.
Result<Capacity> parse_read_capacity10(const uint8_t* data, uint32_t len);
Result<Capacity> parse_read_capacity16(const uint8_t* data, uint32_t len);

}  // namespace strata::bdev::vscsi

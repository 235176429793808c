// Canary fuzz target: crashes on inputs starting with "CANARY". libFuzzer finds it within
// seconds (one comparison per byte guides it); CI's fuzz smoke expects this target to crash,
// which proves the fuzz stage really fuzzes. Not replayed by ctest.
#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size >= 6 && data[0] == 'C' && data[1] == 'A' && data[2] == 'N' && data[3] == 'A' &&
        data[4] == 'R' && data[5] == 'Y') {
        __builtin_trap();
    }
    return 0;
}

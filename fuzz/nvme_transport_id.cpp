// Fuzz target: SPDK's transport id text (parse_transport_id), as typed on bdev_nvme_attach_controller
// and the tools' -r. A parsed id stays within SPDK's field limits, and printing it and parsing the
// text again gives the same id (what save_config and the tools' output rely on).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <strata/nvme/transport_id.h>

#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace strata::nvme;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    auto id = parse_transport_id(text);
    if (!id) {
        CHECK(!id.error().message().empty());
        return 0;
    }
    CHECK(id->traddr.size() <= kTraddrMaxLen);
    CHECK(id->trsvcid.size() <= kTrsvcidMaxLen);
    CHECK(id->subnqn.size() <= kNqnMaxLen);
    CHECK(id->hostnqn.size() <= kNqnMaxLen);
    auto again = parse_transport_id(to_string(*id));
    CHECK(again.ok());
    CHECK(again->trtype == id->trtype);
    CHECK(again->adrfam == id->adrfam);
    CHECK(again->traddr == id->traddr);
    CHECK(again->trsvcid == id->trsvcid);
    CHECK(again->subnqn == id->subnqn);
    CHECK(again->hostnqn == id->hostnqn);
    CHECK(again->hostaddr == id->hostaddr);
    CHECK(again->hostsvcid == id->hostsvcid);
    CHECK(again->priority == id->priority);
    CHECK(again->nsid == id->nsid);
    return 0;
}

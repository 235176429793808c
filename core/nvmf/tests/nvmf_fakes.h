// Fakes shared by the NVMe-oF core tests (nvmf_core_test under the simulator, nvmf_real_test on
// reactor OS threads): a transport that only records listeners, a qpair that records its
// completions (on its own Thread), a command with its data buffer, and SQE builders.
#pragma once

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <strata/nvme/spec/spec.h>
#include <strata/nvmf/transport.h>
#include <strata/runtime/thread.h>

namespace strata::nvmf::test {

namespace spec = nvme::spec;

inline constexpr const char* kNqn = "nqn.2016-06.io.spdk:cnode1";
inline constexpr const char* kHost = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
inline constexpr const char* kOtherHost = "nqn.2016-06.io.spdk:host2";

class FakeTransport final : public Transport {
public:
    std::string_view name() const noexcept override { return "TCP"; }
    spec::TransportType trtype() const noexcept override { return spec::TransportType::tcp; }
    const TransportLimits& limits() const noexcept override { return limits_; }
    Status listen(const TransportAddress& a) override {
        if (a.trsvcid == "1") return Status(Errc::permission_denied);
        listening.push_back(a);
        return Status();
    }
    void stop_listening(const TransportAddress& a) override {
        listening.erase(std::find(listening.begin(), listening.end(), a));
    }
    std::string options_json() const override { return R"({"trtype":"TCP","max_queue_depth":128})"; }

    TransportLimits limits_{};
    std::vector<TransportAddress> listening;
};

class FakeQpair final : public Qpair {
public:
    using Qpair::Qpair;
    void complete(Request& req) noexcept override {
        EXPECT_TRUE(&thread() == runtime::current_thread());
        completed.push_back(&req);
    }
    void disconnect() noexcept override {
        ++disconnects;
        if (!slow_disconnect) closed();
    }
    void released() noexcept override { is_released = true; }
    bool done(const Request& r) const {
        return std::find(completed.begin(), completed.end(), &r) != completed.end();
    }

    std::vector<Request*> completed;
    int disconnects = 0;
    bool is_released = false;
    bool slow_disconnect = false;  // a transport still flushing: closed() comes later
};

// A command and its data buffer.
struct Cmd {
    Request req;
    std::vector<uint8_t> data;

    explicit Cmd(spec::Sqe sqe, size_t bytes = 0, XferDir dir = XferDir::none) {
        req.cmd = sqe;
        data.assign(bytes, 0);
        if (bytes != 0) {
            req.iov[0] = {data.data(), bytes};
            req.iovcnt = 1;
        }
        req.length = static_cast<uint32_t>(bytes);
        req.xfer = bytes ? (dir == XferDir::none ? xfer_direction(sqe) : dir) : XferDir::none;
    }
    spec::StatusField sf() const { return req.rsp.sf(); }
    uint8_t sc() const { return static_cast<uint8_t>(req.rsp.sc()); }
    uint8_t sct() const { return static_cast<uint8_t>(req.rsp.sct()); }
};

inline spec::Sqe fabrics_sqe(spec::FabricsCommandType type) {
    spec::Sqe s{};
    s.opc = spec::fabrics_opcode;
    s.nsid = static_cast<uint8_t>(type);  // FCTYPE is byte 4
    return s;
}

inline spec::Sqe connect_sqe(uint16_t qid, uint16_t sqsize, uint32_t kato = 0, uint16_t recfmt = 0) {
    spec::ConnectCommand c{};
    c.opcode = spec::fabrics_opcode;
    c.fctype = static_cast<uint8_t>(spec::FabricsCommandType::connect);
    c.qid = qid;
    c.sqsize = sqsize;
    c.kato = kato;
    c.recfmt = recfmt;
    return std::bit_cast<spec::Sqe>(c);
}

inline spec::Sqe property_sqe(bool set, uint32_t ofst, uint64_t value, bool eight) {
    if (set) {
        spec::PropertySetCommand c{};
        c.opcode = spec::fabrics_opcode;
        c.fctype = static_cast<uint8_t>(spec::FabricsCommandType::property_set);
        c.attrib = eight ? 1 : 0;
        c.ofst = ofst;
        c.value = value;
        return std::bit_cast<spec::Sqe>(c);
    }
    spec::PropertyGetCommand c{};
    c.opcode = spec::fabrics_opcode;
    c.fctype = static_cast<uint8_t>(spec::FabricsCommandType::property_get);
    c.attrib = eight ? 1 : 0;
    c.ofst = ofst;
    return std::bit_cast<spec::Sqe>(c);
}

inline spec::Sqe admin_sqe(spec::AdminOpcode op, uint32_t nsid = 0, uint32_t cdw10 = 0, uint32_t cdw11 = 0) {
    spec::Sqe s{};
    s.opc = static_cast<uint8_t>(op);
    s.nsid = nsid;
    s.cdw10 = cdw10;
    s.cdw11 = cdw11;
    return s;
}

inline spec::Sqe io_sqe(spec::NvmOpcode op, uint32_t nsid, uint64_t slba, uint32_t nlb) {
    spec::Sqe s{};
    s.opc = static_cast<uint8_t>(op);
    s.nsid = nsid;
    s.set_slba(slba);
    s.cdw12 = nlb - 1;
    return s;
}

}  // namespace strata::nvmf::test

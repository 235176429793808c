// World's NVMe: the controller model (hw-emulation/nvme) on the World's emulated bus, and a
// handle on the NVMe driver (core/nvme) attached to it, for scenarios. Both are driven on the
// World's simulator: model calls run on the "devices" Thread (the model's), driver calls on an
// "nvme_host" Thread (admin and I/O qpair). strata/nvme.py is the Python face; this file only
// converts and dispatches.
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/env/memory.h>
#include <strata/hwemu/faults/fault_plan.h>
#include <strata/hwemu/nvme/controller.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/nvme/controller.h>
#include <strata/nvme/qpair.h>
#include <strata/runtime/task.h>

#include "json_py.h"
#include "world.h"

namespace pyb = pybind11;
using Json = nlohmann::json;

namespace strata::py {

namespace {

constexpr uint64_t kControlTimeoutNs = 600ull * 1'000'000'000ull;

std::string canonical(const std::string& address) {
    auto a = env::PciAddress::parse(address);
    if (!a.ok()) throw pyb::value_error(a.error().message());
    return a->to_string();
}

// One driver command in flight. Owned by the waiting Python call, or by the callback once the
// call gave up waiting (abandoned): every command completes exactly once, so nothing leaks.
struct HostIo {
    void* buf = nullptr;
    size_t len = 0;
    bool done = false;
    bool abandoned = false;
    nvme::Completion cpl;
    ~HostIo() {
        if (buf) env::dma_free(buf);
    }
    static void cb(void* ctx, const nvme::Completion& c) {
        auto* io = static_cast<HostIo*>(ctx);
        if (io->abandoned) {
            delete io;
            return;
        }
        io->cpl = c;
        io->done = true;
    }
};

pyb::dict completion_error(const nvme::Completion& c) {
    pyb::dict d;
    d["status"] = (static_cast<unsigned>(c.status.sct()) << 8) | c.status.sc();
    d["sct"] = c.status.sct();
    d["sc"] = c.status.sc();
    d["dnr"] = c.status.dnr();
    d["name"] = std::string(c.name().view());
    d["errc"] = std::string(errc_name(c.errc()));
    return d;
}

hwemu::nvme::LatencySpec latency_from(const Json& j, const std::string& key) {
    // [kind, a_ns, b_ns] as strata/nvme.py normalises it.
    hwemu::nvme::LatencySpec l;
    // Python ints arrive as signed JSON integers: accept any non-negative integer.
    auto non_negative = [](const Json& v) { return v.is_number_integer() && v.get<int64_t>() >= 0; };
    if (!j.is_array() || j.size() != 3 || !j[0].is_string() || !non_negative(j[1]) ||
        !non_negative(j[2]))
        throw pyb::value_error("latency['" + key + "']: expected [kind, a_ns, b_ns]");
    const std::string kind = j[0].get<std::string>();
    if (kind == "fixed") l.kind = hwemu::nvme::LatencySpec::Kind::fixed;
    else if (kind == "uniform") l.kind = hwemu::nvme::LatencySpec::Kind::uniform;
    else if (kind == "exponential") l.kind = hwemu::nvme::LatencySpec::Kind::exponential;
    else throw pyb::value_error("latency['" + key + "']: kind must be fixed, uniform or exponential");
    l.a_ns = j[1].get<uint64_t>();
    l.b_ns = j[2].get<uint64_t>();
    return l;
}

hwemu::nvme::NamespaceConfig namespace_from(const Json& j) {
    hwemu::nvme::NamespaceConfig n;
    if (!j.is_object()) throw pyb::value_error("a namespace must be a dict");
    for (auto& [k, v] : j.items()) {
        if (k == "nsid") n.nsid = v.get<uint32_t>();
        else if (k == "num_blocks") n.num_blocks = v.get<uint64_t>();
        else if (k == "block_size") n.block_size_bytes = v.get<uint32_t>();
        else if (k == "backing_file") n.backing_file = v.get<std::string>();
        else throw pyb::value_error("namespace: unknown key '" + k + "'");
    }
    return n;
}

}  // namespace

struct World::Nvme {
    runtime::Thread* host = nullptr;  // the driver's admin and I/O Thread
    std::map<std::string, std::unique_ptr<hwemu::nvme::Controller>> models;
    struct Host {
        std::unique_ptr<nvme::Controller> ctrl;
        std::unique_ptr<nvme::QPair> qp;
    };
    std::map<std::string, Host> hosts;
};

void World::NvmeDeleter::operator()(Nvme* n) const { delete n; }

World::Nvme& World::nvme() {
    devices();  // the bus and the devices Thread
    if (!nvme_) {
        nvme_.reset(new Nvme());
        nvme_->host = own_thread("nvme_host");
        if (nvme_->host == nullptr) nvme_->host = sched_->create_thread("nvme_host");
    }
    return *nvme_;
}

// Runs fn on `t` under the simulator (GIL released by the caller) and waits for it.
bool World::run_on(runtime::Thread* t, const std::function<void()>& fn, uint64_t timeout_ns) {
    auto done = std::make_shared<bool>(false);
    if (!t->post([fn, done] {
             fn();
             *done = true;
         }).ok())
        return false;
    return sched_->run_until([&] { return *done; }, sched_->now_ns() + timeout_ns);
}

// Frees the qpair, detaches and destroys the driver's controller (GIL released by the caller).
// Returns the detach error, if any.
std::optional<std::string> World::release_nvme_host(void* host) {
    auto& h = *static_cast<Nvme::Host*>(host);
    Nvme& n = *nvme_;
    std::optional<std::string> err;
    if (h.qp && h.ctrl) {
        bool freed = false;
        nvme::Controller* c = h.ctrl.get();
        nvme::QPair* qp = h.qp.release();
        run_on(n.host, [c, qp, &freed] {
            c->free_io_qpair(std::unique_ptr<nvme::QPair>(qp),
                             [](void* p) { *static_cast<bool*>(p) = true; }, &freed);
        });
        sched_->run_until([&] { return freed; }, sched_->now_ns() + kControlTimeoutNs);
    }
    if (h.ctrl) {
        std::optional<Result<void>> r;
        runtime::spawn(*n.host, h.ctrl->detach(), [&r](Result<void> v) { r.emplace(std::move(v)); });
        sched_->run_until([&] { return r.has_value(); }, sched_->now_ns() + kControlTimeoutNs);
        if (!r) err = "detach did not finish";
        else if (!r->ok()) err = r->error().message();
        run_on(n.host, [&h] { h.ctrl.reset(); });
    }
    return err;
}

void World::close_nvme() {
    if (!nvme_) return;
    Nvme& n = *nvme_;
    pyb::gil_scoped_release nogil;
    for (auto& [addr, h] : n.hosts) (void)release_nvme_host(&h);
    n.hosts.clear();
    runtime::Thread* t = devices_thread();
    run_on(t, [&n] { n.models.clear(); });
    nvme_.reset();
}

void World::add_nvme(const std::string& address, pyb::object config) {
    Guard g(*this);
    check_open();
    const std::string addr = canonical(address);
    Json cfg = config.is_none() ? Json::object() : from_python(config);
    if (!cfg.is_object()) throw pyb::type_error("config must be a dict");
    hwemu::nvme::ControllerConfig c;
    c.seed = sched_->seed();
    Json faults = Json::array();
    bool zero_latency = false;
    try {
        for (auto& [k, v] : cfg.items()) {
            if (k == "namespaces") {
                for (const auto& n : v) c.namespaces.push_back(namespace_from(n));
            } else if (k == "latency") {
                for (auto& [op, spec] : v.items()) c.io_latency[static_cast<uint8_t>(std::stoul(op))] = latency_from(spec, op);
            } else if (k == "faults") {
                faults = v;
            } else if (k == "mdts") {
                c.mdts = v.get<uint8_t>();
            } else if (k == "sgl") {
                c.sgl = v.get<bool>();
            } else if (k == "serial") {
                c.serial = v.get<std::string>();
            } else if (k == "model") {
                c.model = v.get<std::string>();
            } else if (k == "firmware") {
                c.firmware = v.get<std::string>();
            } else if (k == "max_queue_entries") {
                c.max_queue_entries = v.get<uint32_t>();
            } else if (k == "max_io_queues") {
                c.max_io_queues = v.get<uint16_t>();
            } else if (k == "enable_delay_ns") {
                c.enable_delay_ns = v.get<uint64_t>();
            } else if (k == "volatile_write_cache") {
                c.volatile_write_cache = v.get<bool>();
            } else if (k == "seed") {
                c.seed = v.get<uint64_t>();
            } else if (k == "zero_latency") {
                zero_latency = v.get<bool>();
            } else {
                throw pyb::value_error("add_nvme: unknown option '" + k + "'");
            }
        }
    } catch (const Json::exception& e) {
        throw pyb::value_error(std::string("add_nvme: bad option value: ") + e.what());
    }
    std::vector<hwemu::FaultRule> rules;
    for (const auto& f : faults) {
        auto r = hwemu::fault_rule_from_json(f);
        if (!r.ok()) throw pyb::value_error("fault rule: " + r.error().message());
        rules.push_back(std::move(*r));
    }
    Nvme& n = nvme();
    if (n.models.count(addr)) throw pyb::value_error("an NVMe controller already sits at " + addr);
    runtime::Thread* t = devices_thread();
    hwemu::PciBus& bus = devices_bus();
    std::optional<Error> err;
    {
        pyb::gil_scoped_release nogil;
        env::PciAddress pa = *env::PciAddress::parse(addr);
        run_on(t, [&] {
            auto m = hwemu::nvme::Controller::create(bus, pa, c, *t);
            if (!m.ok()) {
                err = m.error();
                return;
            }
            for (auto& r : rules) (*m)->faults().add(r);
            (*m)->set_zero_latency(zero_latency);
            n.models[addr] = std::move(*m);
        });
    }
    if (err) throw pyb::value_error("add_nvme " + addr + ": " + err->message());
}

pyb::object World::nvme_device(const std::string& address, const std::string& op, pyb::object arg) {
    Guard g(*this);
    check_open();
    const std::string addr = canonical(address);
    Nvme& n = nvme();
    auto it = n.models.find(addr);
    if (it == n.models.end()) throw pyb::key_error("no NVMe controller model at " + addr);
    hwemu::nvme::Controller* m = it->second.get();
    runtime::Thread* t = devices_thread();
    Json in = arg.is_none() ? Json() : from_python(arg);
    Json out;
    std::optional<std::string> err;
    auto run = [&](const std::function<void()>& fn) {
        pyb::gil_scoped_release nogil;
        run_on(t, fn);
    };
    if (op == "stats") {
        auto s = m->stats();
        out = {{"commands", s.commands},           {"admin_commands", s.admin_commands},
               {"completions", s.completions},     {"doorbell_writes", s.doorbell_writes},
               {"dropped_completions", s.dropped_completions},
               {"injected_errors", s.injected_errors}, {"invalid_doorbells", s.invalid_doorbells},
               {"dma_faults", s.dma_faults},       {"held_completions", s.held_completions}};
    } else if (op == "fault_add") {
        auto r = hwemu::fault_rule_from_json(in);
        if (!r.ok()) throw pyb::value_error("fault rule: " + r.error().message());
        uint32_t id = 0;
        run([&] { id = m->faults().add(*r); });
        out = id;
    } else if (op == "fault_remove") {
        bool removed = false;
        const uint32_t id = in.get<uint32_t>();
        run([&] { removed = m->faults().remove(id); });
        out = removed;
    } else if (op == "fault_clear") {
        run([&] { m->faults().clear(); });
    } else if (op == "fault_list") {
        out = Json::array();
        run([&] {
            for (const auto& e : m->faults().entries()) {
                Json r = hwemu::to_json(e.rule);
                r["id"] = e.id;
                r["matched"] = e.matched;
                r["hits"] = e.hits;
                out.push_back(std::move(r));
            }
        });
    } else if (op == "power_cut") {
        const bool torn = in.is_boolean() && in.get<bool>();
        run([&] { m->power_cut(torn); });
    } else if (op == "set_zero_latency") {
        const bool on = in.get<bool>();
        run([&] { m->set_zero_latency(on); });
    } else if (op == "add_namespace") {
        hwemu::nvme::NamespaceConfig nc;
        try {
            nc = namespace_from(in);
        } catch (const Json::exception& e) {
            throw pyb::value_error(std::string("add_namespace: ") + e.what());
        }
        run([&] {
            auto r = m->add_namespace(nc);
            if (!r.ok()) err = r.error().message();
        });
    } else if (op == "remove_namespace") {
        const uint32_t nsid = in.get<uint32_t>();
        run([&] {
            auto r = m->remove_namespace(nsid);
            if (!r.ok()) err = r.error().message();
        });
    } else {
        throw pyb::value_error("nvme_device: unknown op '" + op + "'");
    }
    if (err) throw pyb::value_error(op + ": " + *err);
    return to_python(out);
}

void World::nvme_attach(const std::string& address, pyb::object options) {
    Guard g(*this);
    check_open();
    const std::string addr = canonical(address);
    Json o = options.is_none() ? Json::object() : from_python(options);
    nvme::ControllerOptions co;
    nvme::QPairOptions qo;
    try {
        for (auto& [k, v] : o.items()) {
            if (k == "timeout_us") co.timeout_us = v.get<uint64_t>();
            else if (k == "admin_timeout_us") co.admin_timeout_us = v.get<uint64_t>();
            else if (k == "shutdown_on_detach") co.shutdown_on_detach = v.get<bool>();
            else if (k == "use_sgl") co.use_sgl = v.get<bool>();
            else if (k == "queue_entries") qo.queue_entries = v.get<uint32_t>();
            else throw pyb::value_error("nvme_attach: unknown option '" + k + "'");
        }
    } catch (const Json::exception& e) {
        throw pyb::value_error(std::string("nvme_attach: bad option value: ") + e.what());
    }
    Nvme& n = nvme();
    if (n.hosts.count(addr)) throw pyb::value_error("the driver is already attached to " + addr);
    std::optional<Result<std::unique_ptr<nvme::Controller>>> r;
    std::optional<std::string> err;
    Nvme::Host h;
    {
        pyb::gil_scoped_release nogil;
        env::PciAddress pa = *env::PciAddress::parse(addr);
        runtime::spawn(*n.host, nvme::Controller::attach(pa, co),
                       [&r](Result<std::unique_ptr<nvme::Controller>> v) { r.emplace(std::move(v)); });
        sched_->run_until([&] { return r.has_value(); }, sched_->now_ns() + kControlTimeoutNs);
        if (!r) {
            err = "attach did not finish";
        } else if (!r->ok()) {
            err = r->error().message();
        } else {
            h.ctrl = std::move(**r);
            run_on(n.host, [&] {
                auto q = h.ctrl->alloc_io_qpair(*n.host, qo);
                if (!q.ok()) err = "qpair: " + q.error().message();
                else h.qp = std::move(*q);
            });
            if (h.qp) {
                nvme::QPair* q = h.qp.get();
                if (!sched_->run_until([q] { return q->connected(); }, sched_->now_ns() + kControlTimeoutNs))
                    err = "the I/O qpair did not connect";
            }
        }
    }
    if (err) {
        {
            pyb::gil_scoped_release nogil;
            (void)release_nvme_host(&h);
        }
        throw std::runtime_error("nvme attach " + addr + ": " + *err);
    }
    n.hosts[addr] = std::move(h);
}

pyb::object World::nvme_host(const std::string& address, const std::string& op, pyb::object arg,
                             pyb::object payload, uint64_t timeout_ns) {
    Guard g(*this);
    check_open();
    const std::string addr = canonical(address);
    Nvme& n = nvme();
    auto it = n.hosts.find(addr);
    if (it == n.hosts.end()) throw pyb::key_error("the driver is not attached to " + addr);
    Nvme::Host& h = it->second;
    nvme::Controller& c = *h.ctrl;
    Json in = arg.is_none() ? Json::object() : from_python(arg);

    if (op == "detach") {
        std::optional<std::string> err;
        {
            pyb::gil_scoped_release nogil;
            err = release_nvme_host(&h);
        }
        n.hosts.erase(it);
        if (err) throw std::runtime_error("nvme detach " + addr + ": " + *err);
        return pyb::none();
    }
    if (op == "reset") {
        std::optional<Result<void>> r;
        {
            pyb::gil_scoped_release nogil;
            runtime::spawn(*n.host, c.reset(), [&r](Result<void> v) { r.emplace(std::move(v)); });
            sched_->run_until([&] { return r.has_value(); }, sched_->now_ns() + kControlTimeoutNs);
        }
        if (!r) throw std::runtime_error("nvme reset " + addr + ": did not finish");
        if (!r->ok()) throw std::runtime_error("nvme reset " + addr + ": " + r->error().message());
        return pyb::none();
    }
    if (op == "identify") {
        const auto& id = c.identify();
        auto s = [](const char* p, size_t len) {
            std::string v(p, strnlen(p, len));
            while (!v.empty() && v.back() == ' ') v.pop_back();
            return v;
        };
        Json j = {{"vid", id.vid},       {"ssvid", id.ssvid},   {"sn", s(id.sn.data(), id.sn.size())},
                  {"mn", s(id.mn.data(), id.mn.size())},     {"fr", s(id.fr.data(), id.fr.size())},
                  {"rab", id.rab},       {"cmic", id.cmic},     {"mdts", id.mdts},
                  {"cntlid", id.cntlid}, {"ver", id.ver},       {"oaes", id.oaes},
                  {"oacs", id.oacs},     {"acl", id.acl},       {"aerl", id.aerl},
                  {"lpa", id.lpa},       {"elpe", id.elpe},     {"sqes", id.sqes},
                  {"cqes", id.cqes},     {"nn", id.nn},         {"oncs", id.oncs},
                  {"vwc", id.vwc},       {"sgls", id.sgls},
                  {"subnqn", s(id.subnqn.data(), id.subnqn.size())},
                  {"max_transfer_bytes", c.max_transfer_bytes()},
                  {"io_queues", c.io_queues_granted()},
                  {"state", state_name(c.state())}};
        return to_python(j);
    }
    if (op == "namespaces") {
        Json list = Json::array();
        for (const nvme::Namespace* ns : c.namespaces())
            list.push_back({{"nsid", ns->id},
                            {"block_size", ns->block_size_bytes},
                            {"num_blocks", ns->num_blocks},
                            {"size_bytes", ns->size_bytes()},
                            {"max_io_blocks", ns->max_io_blocks},
                            {"nsze", ns->identify.nsze},
                            {"nuse", ns->identify.nuse}});
        return to_python(list);
    }
    if (op == "stats") {
        const auto& s = c.stats();
        Json j = {{"state", state_name(c.state())}, {"admin_commands", s.admin_commands},
                  {"async_events", s.async_events},  {"timeouts", s.timeouts},
                  {"aborts_sent", s.aborts_sent},    {"resets", s.resets},
                  {"failed_resets", s.failed_resets}, {"bad_completions", s.bad_completions}};
        if (h.qp) {
            const auto& q = h.qp->stats();
            j["qpair"] = {{"submitted", q.submitted},   {"completed", q.completed},
                          {"errors", q.errors},         {"waited_for_room", q.waited_for_room},
                          {"doorbells", q.doorbells},   {"bad_completions", q.bad_completions},
                          {"timeouts", q.timeouts},     {"reconnects", q.reconnects},
                          {"outstanding", h.qp->outstanding()}};
        }
        return to_python(j);
    }

    // I/O commands.
    if (!h.qp) throw std::runtime_error("nvme " + addr + ": no I/O qpair");
    const uint32_t nsid = in.value("nsid", 1u);
    const nvme::Namespace* ns = c.find_namespace(nsid);
    if (ns == nullptr) throw pyb::value_error(fmt::format("nvme {}: namespace {} is not active", addr, nsid));
    const uint64_t lba = in.value("lba", uint64_t{0});
    uint64_t blocks = in.value("blocks", uint64_t{0});
    const bool fua = in.value("fua", false);
    std::string data;
    if (op == "write" || op == "compare") {
        if (!pyb::isinstance<pyb::bytes>(payload)) throw pyb::type_error(op + ": data must be bytes");
        data = payload.cast<std::string>();
        if (data.empty() || data.size() % ns->block_size_bytes != 0)
            throw pyb::value_error(fmt::format("{}: data length {} is not a non-zero multiple of the block size {}", op,
                                               data.size(), ns->block_size_bytes));
        blocks = data.size() / ns->block_size_bytes;
    }
    const bool needs_blocks = op != "flush";
    if (needs_blocks && (blocks == 0 || blocks > ns->max_io_blocks))
        throw pyb::value_error(fmt::format("{}: block count {} must be in [1, {}] (max_io_blocks)", op, blocks,
                                           ns->max_io_blocks));
    auto* io = new HostIo();
    io->len = needs_blocks && op != "write_zeroes" && op != "deallocate" ? blocks * ns->block_size_bytes : 0;
    if (io->len) {
        auto p = env::dma_alloc(io->len, 4096, true);
        if (!p.ok()) {
            delete io;
            throw std::runtime_error(p.error().message());
        }
        io->buf = *p;
        if (!data.empty()) std::memcpy(io->buf, data.data(), io->len);
    }
    Status submitted;
    bool done = false;
    {
        pyb::gil_scoped_release nogil;
        nvme::QPair* qp = h.qp.get();
        const auto b32 = static_cast<uint32_t>(blocks);
        run_on(n.host, [&] {
            if (op == "read") submitted = qp->read(*ns, io->buf, lba, b32, HostIo::cb, io, fua ? nvme::kIoFua : 0);
            else if (op == "write") submitted = qp->write(*ns, io->buf, lba, b32, HostIo::cb, io, fua ? nvme::kIoFua : 0);
            else if (op == "compare") submitted = qp->compare(*ns, io->buf, lba, b32, HostIo::cb, io);
            else if (op == "flush") submitted = qp->flush(*ns, HostIo::cb, io);
            else if (op == "write_zeroes")
                submitted = qp->write_zeroes(*ns, lba, b32, HostIo::cb, io,
                                             in.value("deallocate", false) ? nvme::kIoDeallocate : 0);
            else if (op == "deallocate") {
                nvme::spec::DsmRange range{};
                range.nlb = b32;
                range.slba = lba;
                submitted = qp->deallocate(*ns, std::span<const nvme::spec::DsmRange>(&range, 1), HostIo::cb, io);
            } else submitted = Status(Errc::not_supported);
        });
        if (submitted.ok())
            done = sched_->run_until([io] { return io->done; }, sched_->now_ns() + timeout_ns);
    }
    if (submitted.code() == Errc::not_supported && op != "read" && op != "write") {
        delete io;
        throw pyb::value_error("nvme_host: unknown op '" + op + "'");
    }
    if (!submitted.ok()) {
        delete io;
        pyb::dict d;
        d["submit_error"] = std::string(errc_name(submitted.code()));
        d["message"] = submitted.to_string();
        return std::move(d);
    }
    if (!done) {
        io->abandoned = true;  // the callback frees it when the command finally completes
        pyb::dict d;
        d["timeout"] = true;
        return std::move(d);
    }
    std::unique_ptr<HostIo> owned(io);
    if (!io->cpl.ok()) return completion_error(io->cpl);
    if (op == "read") return pyb::bytes(static_cast<const char*>(io->buf), io->len);
    return pyb::none();
}

}  // namespace strata::py

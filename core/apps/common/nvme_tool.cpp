#include "nvme_tool.h"

#include <time.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include <strata/nvme/spec/opcodes.h>

namespace strata::apps {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    size_t start = 0;
    for (size_t i = 0; i <= s.size(); ++i) {
        if (i == s.size() || s[i] == sep) {
            out.push_back(trim(s.substr(start, i - start)));
            start = i + 1;
        }
    }
    return out;
}

// A non-negative decimal number (fraction allowed) followed by a suffix.
bool parse_number(std::string_view text, double& value, std::string& suffix) {
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
        ++i;
    if (i == 0) return false;
    std::string num(text.substr(0, i));
    char* end = nullptr;
    value = std::strtod(num.c_str(), &end);
    if (end != num.c_str() + num.size() || !std::isfinite(value) || value < 0) return false;
    suffix.clear();
    for (char c : text.substr(i)) suffix.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    return true;
}

void sleep_us(long us) {
    struct timespec ts{us / 1'000'000, (us % 1'000'000) * 1000L};
    nanosleep(&ts, nullptr);
}

}  // namespace

Result<uint64_t> parse_size(std::string_view text) {
    text = trim(text);
    double v = 0;
    std::string suffix;
    if (!parse_number(text, v, suffix))
        return Error(Errc::invalid_argument, fmt::format("'{}': not a size (e.g. 4096, 4k, 256M, 1G)", text));
    if (!suffix.empty() && suffix.back() == 'b') suffix.pop_back();   // "GB", "GiB"
    if (suffix.size() == 2 && suffix[1] == 'i') suffix.pop_back();    // "Gi"
    double mult = 1;
    if (suffix.empty()) mult = 1;
    else if (suffix == "k") mult = 1024.0;
    else if (suffix == "m") mult = 1024.0 * 1024;
    else if (suffix == "g") mult = 1024.0 * 1024 * 1024;
    else if (suffix == "t") mult = 1024.0 * 1024 * 1024 * 1024;
    else
        return Error(Errc::invalid_argument, fmt::format("'{}': unknown size unit (use k, M, G or T)", text));
    const double bytes = v * mult;
    if (bytes > 1.8e19 || bytes != std::floor(bytes))
        return Error(Errc::invalid_argument, fmt::format("'{}': not a whole number of bytes", text));
    return static_cast<uint64_t>(bytes);
}

Result<uint64_t> parse_duration_ns(std::string_view text) {
    text = trim(text);
    double v = 0;
    std::string suffix;
    if (!parse_number(text, v, suffix))
        return Error(Errc::invalid_argument, fmt::format("'{}': not a duration (e.g. 10us, 1.5ms)", text));
    double mult = 0;
    if (suffix == "ns") mult = 1;
    else if (suffix == "us" || suffix.empty()) mult = 1e3;
    else if (suffix == "ms") mult = 1e6;
    else if (suffix == "s") mult = 1e9;
    else
        return Error(Errc::invalid_argument, fmt::format("'{}': unknown time unit (ns, us, ms, s)", text));
    const double ns = v * mult;
    if (ns > 1e18) return Error(Errc::invalid_argument, fmt::format("'{}': too long", text));
    return static_cast<uint64_t>(std::llround(ns));
}

Result<env::PciAddress> parse_transport_id(std::string_view text) {
    text = trim(text);
    std::string_view addr = text;
    if (text.find(':') != std::string_view::npos &&
        (text.find("traddr") != std::string_view::npos || text.find("trtype") != std::string_view::npos)) {
        addr = {};
        size_t i = 0;
        while (i < text.size()) {
            size_t j = text.find_first_of(" \t", i);
            if (j == std::string_view::npos) j = text.size();
            std::string_view kv = text.substr(i, j - i);
            i = j + 1;
            if (kv.empty()) continue;
            size_t sep = kv.find_first_of(":=");
            if (sep == std::string_view::npos)
                return Error(Errc::invalid_argument, fmt::format("transport id '{}': '{}' is not key:value", text, kv));
            std::string key(kv.substr(0, sep));
            for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            std::string_view val = kv.substr(sep + 1);
            if (key == "trtype") {
                std::string t(val);
                for (auto& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                if (t != "pcie")
                    return Error(Errc::not_supported,
                                 fmt::format("transport id '{}': trtype {} is not supported (PCIe only)", text, val));
            } else if (key == "traddr") {
                addr = val;
            } else {
                return Error(Errc::invalid_argument, fmt::format("transport id '{}': unknown key '{}'", text, key));
            }
        }
        if (addr.empty()) return Error(Errc::invalid_argument, fmt::format("transport id '{}': no traddr", text));
    }
    auto a = env::PciAddress::parse(addr);
    if (!a) return Error(Errc::invalid_argument, fmt::format("'{}': not a PCI address (0000:01:00.0)", addr));
    return *a;
}

Result<std::vector<std::vector<hwemu::nvme::NamespaceConfig>>> parse_emulate(std::string_view spec) {
    std::vector<std::vector<hwemu::nvme::NamespaceConfig>> out;
    spec = trim(spec);
    if (spec.empty()) {
        out.emplace_back();  // the model's default namespace
        return out;
    }
    for (std::string_view ctrl : split(spec, ';')) {
        std::vector<hwemu::nvme::NamespaceConfig> nss;
        uint32_t next_nsid = 1;
        for (std::string_view ns : split(ctrl, ',')) {
            if (ns.empty()) continue;
            hwemu::nvme::NamespaceConfig c;
            c.nsid = next_nsid;
            uint64_t size = 1ull << 30;
            for (std::string_view kv : split(ns, ':')) {
                size_t eq = kv.find('=');
                if (eq == std::string_view::npos)
                    return Error(Errc::invalid_argument,
                                 fmt::format("--emulate '{}': '{}' is not key=value (ns, size, bs, file)", ns, kv));
                std::string_view key = kv.substr(0, eq), val = kv.substr(eq + 1);
                if (key == "ns" || key == "nsid") {
                    uint32_t id = 0;
                    auto [p, ec] = std::from_chars(val.data(), val.data() + val.size(), id);
                    if (ec != std::errc() || p != val.data() + val.size() || id == 0)
                        return Error(Errc::invalid_argument, fmt::format("--emulate '{}': bad nsid '{}'", ns, val));
                    c.nsid = id;
                } else if (key == "size") {
                    auto s = parse_size(val);
                    if (!s) return Error(Errc::invalid_argument, fmt::format("--emulate '{}': size {}", ns, s.error().message()));
                    size = *s;
                } else if (key == "bs" || key == "block_size") {
                    auto s = parse_size(val);
                    if (!s || (*s != 512 && *s != 4096))
                        return Error(Errc::invalid_argument, fmt::format("--emulate '{}': bs must be 512 or 4096", ns));
                    c.block_size_bytes = static_cast<uint32_t>(*s);
                } else if (key == "file") {
                    c.backing_file = std::string(val);
                } else {
                    return Error(Errc::invalid_argument,
                                 fmt::format("--emulate '{}': unknown key '{}' (ns, size, bs, file)", ns, key));
                }
            }
            if (size == 0 || size % c.block_size_bytes != 0)
                return Error(Errc::invalid_argument,
                             fmt::format("--emulate '{}': size {} is not a non-zero multiple of the block size {}",
                                         ns, size, c.block_size_bytes));
            c.num_blocks = size / c.block_size_bytes;
            for (const auto& o : nss)
                if (o.nsid == c.nsid)
                    return Error(Errc::invalid_argument, fmt::format("--emulate: nsid {} given twice", c.nsid));
            next_nsid = c.nsid + 1;
            nss.push_back(std::move(c));
        }
        if (nss.empty()) return Error(Errc::invalid_argument, "--emulate: a controller without namespaces");
        out.push_back(std::move(nss));
    }
    return out;
}

namespace {
Result<hwemu::nvme::LatencySpec> parse_one_latency(std::string_view text) {
    using K = hwemu::nvme::LatencySpec::Kind;
    hwemu::nvme::LatencySpec l;
    auto parts = split(text, ':');
    std::string_view kind = parts.size() > 1 ? parts[0] : "fixed";
    size_t first = parts.size() > 1 ? 1 : 0;
    auto a = parse_duration_ns(parts[first]);
    if (!a) return a.error();
    l.a_ns = *a;
    if (kind == "fixed" || kind == "exp" || kind == "exponential") {
        if (parts.size() != first + 1)
            return Error(Errc::invalid_argument, fmt::format("--latency '{}': {} takes one duration", text, kind));
        l.kind = kind == "fixed" ? K::fixed : K::exponential;
    } else if (kind == "uniform") {
        if (parts.size() != 3)
            return Error(Errc::invalid_argument, fmt::format("--latency '{}': uniform:MIN:MAX", text));
        auto b = parse_duration_ns(parts[2]);
        if (!b) return b.error();
        if (*b < l.a_ns) return Error(Errc::invalid_argument, fmt::format("--latency '{}': MAX below MIN", text));
        l.kind = K::uniform;
        l.b_ns = *b;
    } else {
        return Error(Errc::invalid_argument,
                     fmt::format("--latency '{}': unknown kind '{}' (fixed, uniform, exp)", text, kind));
    }
    return l;
}
}  // namespace

Result<std::map<uint8_t, hwemu::nvme::LatencySpec>> parse_latency(std::string_view spec) {
    namespace op = nvme::spec;
    static const std::pair<const char*, uint8_t> kOps[] = {
        {"read", static_cast<uint8_t>(op::NvmOpcode::read)},
        {"write", static_cast<uint8_t>(op::NvmOpcode::write)},
        {"flush", static_cast<uint8_t>(op::NvmOpcode::flush)},
        {"compare", static_cast<uint8_t>(op::NvmOpcode::compare)},
        {"write_zeroes", static_cast<uint8_t>(op::NvmOpcode::write_zeroes)},
        {"dsm", static_cast<uint8_t>(op::NvmOpcode::dataset_management)}};
    std::map<uint8_t, hwemu::nvme::LatencySpec> out;
    spec = trim(spec);
    if (spec.empty()) return out;
    if (spec.find('=') == std::string_view::npos) {
        auto l = parse_one_latency(spec);
        if (!l) return l.error();
        for (const auto& [n, code] : kOps) out[code] = *l;
        return out;
    }
    for (std::string_view item : split(spec, ',')) {
        size_t eq = item.find('=');
        if (eq == std::string_view::npos)
            return Error(Errc::invalid_argument, fmt::format("--latency '{}': expected OPCODE=SPEC", item));
        std::string_view name = item.substr(0, eq);
        bool found = false;
        for (const auto& [n, code] : kOps) {
            if (name == n) {
                auto l = parse_one_latency(item.substr(eq + 1));
                if (!l) return l.error();
                out[code] = *l;
                found = true;
            }
        }
        if (!found)
            return Error(Errc::invalid_argument,
                         fmt::format("--latency: unknown opcode '{}' (read, write, flush, compare, write_zeroes, dsm)", name));
    }
    return out;
}

// ---- Harness -----------------------------------------------------------------------------

Harness::Harness(runtime::Scheduler& sched) : sched_(sched) {
    if (sched.simulated()) sim_ = static_cast<runtime::SimScheduler*>(&sched);
}

bool Harness::wait(const std::function<bool()>& pred, uint64_t timeout_ns) {
    const uint64_t start = sched_.now_ns();
    const uint64_t deadline = timeout_ns > UINT64_MAX - start ? UINT64_MAX : start + timeout_ns;
    if (sim_) return pred() || sim_->run_until(pred, deadline);
    while (!pred()) {
        if (sched_.now_ns() >= deadline) return false;
        sleep_us(200);
    }
    return true;
}

bool Harness::on(runtime::Thread& t, const std::function<void()>& fn, uint64_t timeout_ns) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    Status s = t.post([fn, done] {
        fn();
        done->store(true);
    });
    if (!s.ok()) return false;
    return wait([&] { return done->load(); }, timeout_ns);
}

// ---- EmulatedControllers -------------------------------------------------------------------

EmulatedControllers::~EmulatedControllers() { destroy(); }

Result<void> EmulatedControllers::create(const std::vector<hwemu::nvme::ControllerConfig>& configs) {
    if (!bus_) bus_ = std::make_unique<hwemu::PciBus>();
    Result<void> result;
    for (size_t i = 0; i < configs.size(); ++i) {
        env::PciAddress addr = kFirstEmulatedAddress;
        addr.device = static_cast<uint8_t>(addr.device + i);
        std::optional<Result<void>> r;
        h_.on(thread_, [&] {
            auto m = hwemu::nvme::Controller::create(*bus_, addr, configs[i], thread_);
            if (!m) {
                r = Result<void>(m.error());
                return;
            }
            models_.push_back(std::move(*m));
            r = Result<void>();
        });
        if (!r) return Error(Errc::timeout, "creating the emulated controller timed out");
        if (!r->ok())
            return Error(r->code(), fmt::format("emulated controller {}: {}", addr.to_string(), r->error().message()));
        addresses_.push_back(addr);
    }
    return result;
}

void EmulatedControllers::set_zero_latency(bool on) {
    h_.on(thread_, [&] {
        for (auto& m : models_) m->set_zero_latency(on);
    });
}

std::vector<hwemu::nvme::Controller::Stats> EmulatedControllers::stats() const {
    std::vector<hwemu::nvme::Controller::Stats> out;
    for (const auto& m : models_) out.push_back(m->stats());
    return out;
}

void EmulatedControllers::destroy() {
    if (!models_.empty()) h_.on(thread_, [&] { models_.clear(); });
    models_.clear();
    addresses_.clear();
    bus_.reset();
}

Result<std::vector<env::PciAddress>> nvme_functions(const std::optional<env::PciAddress>& only) {
    env::PciFilter f;
    f.class_code = kNvmeClassCode;
    if (only) f.address = *only;
    auto list = env::enumerate(f);
    if (!list) return list.error();
    std::vector<env::PciAddress> out;
    for (const auto& info : *list)
        if (info.claimable) out.push_back(info.address);
    if (out.empty()) {
        if (only)
            return Error(Errc::not_found,
                         fmt::format("no NVMe controller at {} (class 0x010802, bound to vfio-pci for --env dpdk)",
                                     only->to_string()));
        return Error(Errc::not_found, "no NVMe controller found (class 0x010802, bound to vfio-pci for --env dpdk)");
    }
    return out;
}

}  // namespace strata::apps

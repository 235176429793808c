// strata-nvme-identify: attaches the NVMe driver to one controller (or every NVMe function the
// environment sees) and prints the Identify Controller and Identify Namespace data in the
// layout of nvme-cli's `nvme id-ctrl` / `nvme id-ns` (or as JSON with the same field names).
// --env sim (the default) creates emulated controllers (--emulate) and runs under the seeded
// simulator; --env dpdk uses real VFIO devices on a real reactor.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/nvme/controller.h>
#include <strata/nvme/transport_id.h>
#include <strata/runtime/scheduler.h>

#include "../common/env_cli.h"
#include "../common/nvme_tool.h"

namespace {

using namespace strata;
using Json = nlohmann::ordered_json;

// A field printed as nvme-cli does (name padded to `width`, then " : value") and stored in
// the JSON object under the same name.
class Printer {
public:
    Printer(Json& j, int width, bool text) : j_(j), width_(width), text_(text) {}
    // %#x as printf prints it: "0" for zero, "0x1b36" otherwise.
    void hex(const char* name, uint64_t v) {
        line(name, v == 0 ? std::string("0") : fmt::format("{:#x}", v));
        j_[name] = v;
    }
    void dec(const char* name, uint64_t v) {
        line(name, fmt::format("{}", v));
        j_[name] = v;
    }
    void str(const char* name, const char* p, size_t n) {
        std::string s(p, n);
        for (auto& c : s)
            if (c == '\0') c = ' ';
        line(name, s);
        j_[name] = s;
    }
    void raw(const char* name, const std::string& shown, Json value) {
        line(name, shown);
        j_[name] = std::move(value);
    }
    void line(const char* name, const std::string& value) {
        if (text_) std::printf("%-*s: %s\n", width_, name, value.c_str());
    }

private:
    Json& j_;
    int width_;
    bool text_;
};

std::string u128(const nvme::spec::Uint128Le& v) {
    if (v.hi() == 0) return fmt::format("{}", v.lo());
    // 128-bit decimal from two words.
    unsigned __int128 x = (static_cast<unsigned __int128>(v.hi()) << 64) | v.lo();
    std::string s;
    while (x != 0) {
        s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(x % 10)));
        x /= 10;
    }
    return s;
}

template <size_t N>
std::string hex_bytes(const std::array<uint8_t, N>& a) {
    std::string s;
    for (uint8_t b : a) s += fmt::format("{:02x}", b);
    return s;
}

std::string uuid(const std::array<uint8_t, 16>& g) {
    std::string h = hex_bytes(g);
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" +
           h.substr(20);
}

Json print_controller(const nvme::Controller& c, bool text) {
    const nvme::spec::IdentifyController& id = c.identify();
    Json j;
    if (text) std::printf("NVME Identify Controller:\n");
    Printer p(j, 10, text);
    p.hex("vid", id.vid);
    p.hex("ssvid", id.ssvid);
    p.str("sn", id.sn.data(), id.sn.size());
    p.str("mn", id.mn.data(), id.mn.size());
    p.str("fr", id.fr.data(), id.fr.size());
    p.dec("rab", id.rab);
    const uint32_t ieee = id.ieee[0] | (id.ieee[1] << 8) | (id.ieee[2] << 16);
    p.raw("ieee", fmt::format("{:02x}{:02x}{:02x}", id.ieee[2], id.ieee[1], id.ieee[0]), ieee);
    p.hex("cmic", id.cmic);
    p.dec("mdts", id.mdts);
    p.hex("cntlid", id.cntlid);
    p.hex("ver", id.ver);
    p.hex("rtd3r", id.rtd3r);
    p.hex("rtd3e", id.rtd3e);
    p.hex("oaes", id.oaes);
    p.hex("ctratt", id.ctratt);
    p.hex("rrls", id.rrls);
    p.dec("cntrltype", id.cntrltype);
    p.raw("fguid", uuid(id.fguid), uuid(id.fguid));
    p.dec("crdt1", id.crdt1);
    p.dec("crdt2", id.crdt2);
    p.dec("crdt3", id.crdt3);
    p.dec("nvmsr", id.nvmsr);
    p.dec("vwci", id.vwci);
    p.dec("mec", id.mec);
    p.hex("oacs", id.oacs);
    p.dec("acl", id.acl);
    p.dec("aerl", id.aerl);
    p.hex("frmw", id.frmw);
    p.hex("lpa", id.lpa);
    p.dec("elpe", id.elpe);
    p.dec("npss", id.npss);
    p.hex("avscc", id.avscc);
    p.hex("apsta", id.apsta);
    p.dec("wctemp", id.wctemp);
    p.dec("cctemp", id.cctemp);
    p.dec("mtfa", id.mtfa);
    p.dec("hmpre", id.hmpre);
    p.dec("hmmin", id.hmmin);
    p.raw("tnvmcap", u128(id.tnvmcap), id.tnvmcap.saturated());
    p.raw("unvmcap", u128(id.unvmcap), id.unvmcap.saturated());
    p.hex("rpmbs", id.rpmbs);
    p.dec("edstt", id.edstt);
    p.dec("dsto", id.dsto);
    p.dec("fwug", id.fwug);
    p.dec("kas", id.kas);
    p.hex("hctma", id.hctma);
    p.dec("mntmt", id.mntmt);
    p.dec("mxtmt", id.mxtmt);
    p.hex("sanicap", id.sanicap);
    p.dec("hmminds", id.hmminds);
    p.dec("hmmaxd", id.hmmaxd);
    p.dec("nsetidmax", id.nsetidmax);
    p.dec("endgidmax", id.endgidmax);
    p.dec("anatt", id.anatt);
    p.dec("anacap", id.anacap);
    p.dec("anagrpmax", id.anagrpmax);
    p.dec("nanagrpid", id.nanagrpid);
    p.dec("pels", id.pels);
    p.dec("domainid", id.domainid);
    p.raw("megcap", u128(id.megcap), id.megcap.saturated());
    p.hex("sqes", id.sqes);
    p.hex("cqes", id.cqes);
    p.dec("maxcmd", id.maxcmd);
    p.dec("nn", id.nn);
    p.hex("oncs", id.oncs);
    p.hex("fuses", id.fuses);
    p.hex("fna", id.fna);
    p.hex("vwc", id.vwc);
    p.dec("awun", id.awun);
    p.dec("awupf", id.awupf);
    p.dec("icsvscc", id.icsvscc);
    p.dec("nwpc", id.nwpc);
    p.dec("acwu", id.acwu);
    p.hex("ocfs", id.ocfs);
    p.hex("sgls", id.sgls);
    p.dec("mnan", id.mnan);
    p.raw("maxdna", u128(id.maxdna), id.maxdna.saturated());
    p.dec("maxcna", id.maxcna);
    const size_t nqn_len = strnlen(id.subnqn.data(), id.subnqn.size());
    p.raw("subnqn", std::string(id.subnqn.data(), nqn_len), std::string(id.subnqn.data(), nqn_len));
    p.dec("ioccsz", id.ioccsz);
    p.dec("iorcsz", id.iorcsz);
    p.dec("icdoff", id.icdoff);
    p.hex("fcatt", id.fcatt);
    p.dec("msdbd", id.msdbd);
    p.dec("ofcs", id.ofcs);
    Json psds = Json::array();
    const uint32_t nps = std::min<uint32_t>(id.npss + 1u, 32u);
    for (uint32_t i = 0; i < nps; ++i) {
        const auto& ps = id.psd[i];
        const double watts = ps.mp * (ps.mxps() ? 0.0001 : 0.01);
        if (text) {
            std::printf("ps %4u : mp:%.2fW %soperational enlat:%u exlat:%u rrt:%u rrl:%u\n", i, watts,
                        ps.nops() ? "non-" : "", ps.enlat, ps.exlat, ps.rrt & 0x1f, ps.rrl & 0x1f);
            std::printf("          rwt:%u rwl:%u idle_power:%s active_power:%s\n", ps.rwt & 0x1f,
                        ps.rwl & 0x1f, ps.idlp ? fmt::format("{}", ps.idlp).c_str() : "-",
                        ps.actp ? fmt::format("{}", ps.actp).c_str() : "-");
        }
        psds.push_back({{"max_power", ps.mp}, {"flags", ps.flags}, {"entry_lat", ps.enlat},
                        {"exit_lat", ps.exlat}, {"read_tput", ps.rrt}, {"read_lat", ps.rrl},
                        {"write_tput", ps.rwt}, {"write_lat", ps.rwl}, {"idle_power", ps.idlp},
                        {"active_power", ps.actp}});
    }
    j["psds"] = std::move(psds);
    return j;
}

Json print_namespace(const nvme::Namespace& n, bool text) {
    const nvme::spec::IdentifyNamespace& id = n.identify;
    Json j;
    j["nsid"] = n.id;
    if (text) std::printf("NVME Identify Namespace %u:\n", n.id);
    Printer p(j, 8, text);
    p.hex("nsze", id.nsze);
    p.hex("ncap", id.ncap);
    p.hex("nuse", id.nuse);
    p.hex("nsfeat", id.nsfeat);
    p.dec("nlbaf", id.nlbaf);
    p.hex("flbas", id.flbas);
    p.hex("mc", id.mc);
    p.hex("dpc", id.dpc);
    p.hex("dps", id.dps);
    p.hex("nmic", id.nmic);
    p.hex("rescap", id.rescap);
    p.hex("fpi", id.fpi);
    p.dec("dlfeat", id.dlfeat);
    p.dec("nawun", id.nawun);
    p.dec("nawupf", id.nawupf);
    p.dec("nacwu", id.nacwu);
    p.dec("nabsn", id.nabsn);
    p.dec("nabo", id.nabo);
    p.dec("nabspf", id.nabspf);
    p.dec("noiob", id.noiob);
    p.raw("nvmcap", u128(id.nvmcap), id.nvmcap.saturated());
    if (id.nsfeat & 0x10) {  // NPWG..NOWS valid
        p.dec("npwg", id.npwg);
        p.dec("npwa", id.npwa);
        p.dec("npdg", id.npdg);
        p.dec("npda", id.npda);
        p.dec("nows", id.nows);
    }
    p.dec("mssrl", id.mssrl);
    p.dec("mcl", id.mcl);
    p.dec("msrc", id.msrc);
    p.dec("nulbaf", id.nulbaf);
    p.dec("anagrpid", id.anagrpid);
    p.dec("nsattr", id.nsattr);
    p.dec("nvmsetid", id.nvmsetid);
    p.dec("endgid", id.endgid);
    p.raw("nguid", hex_bytes(id.nguid), hex_bytes(id.nguid));
    p.raw("eui64", hex_bytes(id.eui64), hex_bytes(id.eui64));
    Json lbafs = Json::array();
    const uint32_t count = id.lba_format_count();
    const uint32_t in_use = id.flbas_index();
    for (uint32_t i = 0; i < count; ++i) {
        const auto& f = id.lbaf[i];
        if (text)
            std::printf("lbaf %2u : ms:%-3u lbads:%-2u rp:%#x %s\n", i, f.ms, f.lbads,
                        f.relative_performance(), i == in_use ? "(in use)" : "");
        lbafs.push_back({{"ms", f.ms}, {"ds", f.lbads}, {"rp", f.relative_performance()}});
    }
    j["lbafs"] = std::move(lbafs);
    return j;
}

int fail(const std::string& msg) {
    std::fprintf(stderr, "strata-nvme-identify: %s\n", msg.c_str());
    return 1;
}

int identify_fabrics(const nvme::TransportId& t, const std::vector<uint32_t>& nsids,
                     bool no_namespaces, bool text) {
    runtime::RealSchedulerOptions so;
    so.cores = {0};
    so.pin = false;
    runtime::RealScheduler sched(so);
    runtime::Thread* admin = sched.create_thread("nvme_identify", 0);
    sched.start();
    int rc = 0;
    {
        apps::Harness h(sched);
        nvme::ControllerOptions opts;
        opts.keep_alive_timeout_ms = 0;
        const std::string where = nvme::to_string(t);
        auto connected = h.run(*admin, nvme::Controller::connect(t, opts));
        if (!connected || !*connected) {
            rc = fail(fmt::format("{}: connect failed: {}", where,
                                  connected ? (*connected).error().message() : "timed out"));
        } else {
            std::unique_ptr<nvme::Controller> ctrl = std::move(**connected);
            Json cj;
            cj["transport_id"] = where;
            h.on(*admin, [&] {
                cj["controller"] = print_controller(*ctrl, text);
                Json nss = Json::array();
                if (!no_namespaces) {
                    for (const nvme::Namespace* n : ctrl->namespaces()) {
                        if (!nsids.empty() && std::find(nsids.begin(), nsids.end(), n->id) == nsids.end())
                            continue;
                        if (text) std::printf("\n");
                        nss.push_back(print_namespace(*n, text));
                    }
                }
                cj["namespaces"] = std::move(nss);
            });
            if (!text)
                std::printf("%s\n", Json{{"controllers", Json::array({std::move(cj)})}}.dump(2).c_str());
            std::fflush(stdout);
            auto d = h.run(*admin, ctrl->detach());
            if (!d || !*d) rc = fail(fmt::format("{}: disconnect failed", where));
            h.on(*admin, [&] { ctrl.reset(); });
        }
    }
    sched.stop();
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{
        "strata-nvme-identify: Identify Controller and Identify Namespace data of NVMe controllers "
        "(nvme-cli id-ctrl / id-ns layout)"};
    std::string trid, emulate, output = "normal", log_level;
    std::vector<uint32_t> nsids;
    bool no_namespaces = false;
    uint64_t seed = 1;
    apps::EnvCli env_cli;
    cli.add_option("-r,--transport-id", trid,
                   "Controller to identify: 'trtype:PCIe traddr:0000:01:00.0', a BDF, or "
                   "'trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:...' (NVMe/TCP) "
                   "(default: every NVMe function the environment sees)");
    cli.add_option("-n,--namespace-id", nsids, "Only these namespaces (repeatable; default: all active)");
    cli.add_flag("--controller-only", no_namespaces, "Print the controller data only");
    cli.add_option("-o,--output-format", output, "normal or json")->capture_default_str();
    cli.add_option("--emulate", emulate,
                   "sim: emulated controllers, ';' between controllers, ',' between namespaces, "
                   "e.g. 'ns=1:size=1G:bs=512,ns=2:size=256M:bs=4096' (default: one 1 GiB "
                   "512-byte namespace)");
    cli.add_option("--seed", seed, "sim: simulator seed")->capture_default_str();
    cli.add_option("--log-level", log_level, "Global log level: ERROR WARN NOTICE INFO DEBUG");
    apps::add_env_options(cli, env_cli);
    CLI11_PARSE(cli, argc, argv);

    if (output != "normal" && output != "json")
        return fail(fmt::format("--output-format '{}': expected normal or json", output));
    const bool text = output == "normal";
    if (!log_level.empty()) {
        auto l = log_level_parse(log_level);
        if (!l) return fail(fmt::format("--log-level '{}': expected ERROR, WARN, NOTICE, INFO or DEBUG", log_level));
        log_set_global_level(*l);
    } else {
        log_set_global_level(LogLevel::warn);  // attach/detach notices would clutter the output
    }
    // NVMe-oF: 'trtype:TCP adrfam:IPv4 traddr:... trsvcid:... subnqn:...' connects through the
    // NVMe/TCP initiator on a real reactor (no environment, no emulation).
    if (auto t = nvme::parse_transport_id(trid); !trid.empty() && t && t->trtype == nvme::TrType::tcp)
        return identify_fabrics(*t, nsids, no_namespaces, text);
    std::optional<env::PciAddress> only;
    if (!trid.empty()) {
        auto a = apps::parse_transport_id(trid);
        if (!a) return fail(fmt::format("-r: {}", a.error().message()));
        only = *a;
    }
    auto controllers = apps::parse_emulate(emulate);
    if (!controllers) return fail(controllers.error().message());
    if (!emulate.empty() && env_cli.env != "sim") return fail("--emulate needs --env sim");
    if (auto r = apps::init_env(env_cli, {0}); !r) return fail(r.error().message());

    const bool sim = env::backend_name() == "sim";
    std::unique_ptr<runtime::Scheduler> sched;
    runtime::RealScheduler* real = nullptr;
    if (sim) {
        sched = std::make_unique<runtime::SimScheduler>(seed, 1);
    } else {
        runtime::RealSchedulerOptions so;
        so.cores = {0};
        so.pin = false;
        auto r = std::make_unique<runtime::RealScheduler>(so);
        real = r.get();
        sched = std::move(r);
    }
    runtime::Thread* admin = sched->create_thread("nvme_identify", 0);
    runtime::Thread* model_thread = sim ? sched->create_thread("nvme_model", 0) : nullptr;
    if (real) real->start();
    apps::Harness h(*sched);

    int rc = 0;
    {
        std::unique_ptr<apps::EmulatedControllers> emulated;
        if (sim) {
            emulated = std::make_unique<apps::EmulatedControllers>(h, *model_thread);
            std::vector<hwemu::nvme::ControllerConfig> cfgs;
            for (auto& nss : *controllers) {
                hwemu::nvme::ControllerConfig c;
                c.namespaces = nss;
                c.serial = fmt::format("STRATA{:08d}", cfgs.size() + 1);
                cfgs.push_back(std::move(c));
            }
            if (auto r = emulated->create(cfgs); !r) {
                emulated.reset();
                if (real) real->stop();
                return fail(r.error().message());
            }
        }
        auto addrs = apps::nvme_functions(only);
        if (!addrs) {
            rc = fail(addrs.error().message());
        } else {
            Json all = Json::array();
            for (const auto& addr : *addrs) {
                auto attached = h.run(*admin, nvme::Controller::attach(addr));
                if (!attached || !*attached) {
                    rc = fail(fmt::format("{}: attach failed: {}", addr.to_string(),
                                          attached ? (*attached).error().message() : "timed out"));
                    continue;
                }
                std::unique_ptr<nvme::Controller> ctrl = std::move(**attached);
                Json cj;
                cj["address"] = addr.to_string();
                if (text) {
                    if (addrs->size() > 1) std::printf("%s=== %s ===\n", &addr == &addrs->front() ? "" : "\n",
                                                       addr.to_string().c_str());
                }
                h.on(*admin, [&] {
                    cj["controller"] = print_controller(*ctrl, text);
                    Json nss = Json::array();
                    if (!no_namespaces) {
                        std::vector<const nvme::Namespace*> list;
                        if (nsids.empty()) {
                            list = ctrl->namespaces();
                        } else {
                            for (uint32_t id : nsids) {
                                const nvme::Namespace* n = ctrl->find_namespace(id);
                                if (n == nullptr) {
                                    std::fprintf(stderr, "strata-nvme-identify: %s: namespace %u is not active\n",
                                                 addr.to_string().c_str(), id);
                                    rc = 1;
                                    continue;
                                }
                                list.push_back(n);
                            }
                        }
                        for (const nvme::Namespace* n : list) {
                            if (text) std::printf("\n");
                            nss.push_back(print_namespace(*n, text));
                        }
                    }
                    cj["namespaces"] = std::move(nss);
                });
                all.push_back(std::move(cj));
                auto d = h.run(*admin, ctrl->detach());
                if (!d || !*d)
                    rc = fail(fmt::format("{}: detach failed: {}", addr.to_string(),
                                          d ? (*d).error().message() : "timed out"));
                h.on(*admin, [&] { ctrl.reset(); });
            }
            if (!text) std::printf("%s\n", Json{{"controllers", std::move(all)}}.dump(2).c_str());
            std::fflush(stdout);
        }
        emulated.reset();
    }
    if (real) real->stop();
    sched.reset();
    env::fini();
    return rc;
}

// The RPCs the file bdev modules (aio, uring) have in common: bdev_<m>_create with filename,
// name, block_size and uuid (plus the module's own params), bdev_<m>_delete and bdev_<m>_rescan.
// A module hands its option parser and entry points; the param list, the block_size check and
// the replies are written once here. Control path only (app Thread).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <strata/bdev/module.h>
#include <strata/bdev/rpc_internal.h>

namespace strata::bdev {

template <class Options>
struct FileBdevRpcs {
    std::string module;  // "aio": bdev_aio_create / bdev_aio_delete / bdev_aio_rescan
    std::string create_description;
    std::string delete_description;
    std::string rescan_description;
    std::vector<rpc::ParamSpec> extra_params;  // the module's own create params, after block_size
    void (*parse_extra)(const rpc::Json& params, Options& options) = nullptr;  // nullptr: none
    Result<Bdev*> (*create)(const Options& options) = nullptr;
    void (*destroy)(const std::string& name, std::function<void(Result<void>)> done) = nullptr;
    Result<void> (*rescan)(const std::string& name) = nullptr;
};

template <class Options>
void add_file_bdev_rpcs(rpc::App& app, FileBdevRpcs<Options> spec) {
    using PT = rpc::ParamType;
    std::vector<rpc::ParamSpec> params = {
        {"filename", PT::string, true, "Path of an existing file or block device", nullptr},
        {"name", PT::string, true, "Bdev name", nullptr},
        {"block_size", PT::uint, false,
         "Block size in bytes (512..65536, power of two; default: detected)", nullptr}};
    params.insert(params.end(), spec.extra_params.begin(), spec.extra_params.end());
    params.push_back({"uuid", PT::string, false, "UUID (default: generated)", nullptr});

    add_rpc(app, {"bdev_" + spec.module + "_create", std::move(spec.create_description),
                  std::move(params), rpc::Allowed::runtime, "", true,
                  [parse_extra = spec.parse_extra, create = spec.create](const rpc::Json& p,
                                                                         rpc::Responder r) {
                      const uint64_t bs = rpc::param_or<uint64_t>(p, "block_size", 0);
                      if (bs > UINT32_MAX) {
                          r.error(Error(Errc::invalid_argument,
                                        fmt::format("block_size {} is out of range", bs)));
                          return;
                      }
                      Options o;
                      o.filename = p.at("filename").get<std::string>();
                      o.name = p.at("name").get<std::string>();
                      o.block_size = static_cast<uint32_t>(bs);
                      o.uuid = rpc::param_or<std::string>(p, "uuid", "");
                      if (parse_extra != nullptr) parse_extra(p, o);
                      auto b = create(o);
                      if (!b) r.error(b.error());
                      else r.result((*b)->name());
                  }});
    add_rpc(app, {"bdev_" + spec.module + "_delete", std::move(spec.delete_description),
                  {{"name", PT::string, true, "Bdev name", nullptr}}, rpc::Allowed::runtime, "",
                  true, [destroy = spec.destroy](const rpc::Json& p, rpc::Responder r) {
                      auto rp = std::make_shared<rpc::Responder>(std::move(r));
                      destroy(p.at("name").get<std::string>(), [rp](Result<void> res) {
                          if (!res) rp->error(res.error());
                          else rp->result(true);
                      });
                  }});
    add_rpc(app, {"bdev_" + spec.module + "_rescan", std::move(spec.rescan_description),
                  {{"name", PT::string, true, "Bdev name", nullptr}}, rpc::Allowed::runtime, "",
                  true, [rescan = spec.rescan](const rpc::Json& p, rpc::Responder r) {
                      auto res = rescan(p.at("name").get<std::string>());
                      if (!res) r.error(res.error());
                      else r.result(true);
                  }});
}

}  // namespace strata::bdev

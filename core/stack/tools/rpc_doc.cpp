// strata-rpc-doc: prints docs/user/rpc.md, generated from the method registry after every
// module of the explicit table has registered (so the doc lists exactly what strata-tgt
// serves).  Usage: strata-rpc-doc > docs/user/rpc.md
#include <cstdio>

#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/scheduler.h>

int main() {
    strata::runtime::SimScheduler sim(1);
    strata::rpc::App app(sim);
    strata::stack::register_all_modules(app);
    std::string md = strata::rpc::render_markdown(app.registry());
    std::fwrite(md.data(), 1, md.size(), stdout);
    return 0;
}

// SIGINT and SIGTERM run `handler` (apps pass one calling rpc::App::request_stop_from_signal);
// SIGPIPE is ignored (a socket peer going away is an error return, not death). strata-tgt and
// bdevperf.
#pragma once

#include <signal.h>

namespace strata::apps {

inline void install_stop_signals(void (*handler)(int)) {
    struct sigaction sa {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
}

}  // namespace strata::apps

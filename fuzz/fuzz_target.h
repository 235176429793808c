// How a fuzz target keeps the state its inputs share (an App, a simulator, a built image), so the
// same target runs under libFuzzer, the replay main and in process from Python
// (strata.fuzz.Target, docs/user/fuzzing.md):
//
//     struct State { State(); ... };                    // the set-up, default-constructible
//     int run_input(State&, const uint8_t*, size_t);   // one input
//     STRATA_FUZZ_TARGET(State, run_input)
//
// - libFuzzer and fuzz/replay_main.cpp: LLVMFuzzerTestOneInput with one State for the whole run
//   (the fuzzer process owns it and never destroys it).
// - the copy compiled into _strata (fuzz/CMakeLists.txt defines STRATA_FUZZ_PY_NAME): C entry
//   points strata_fuzz_{new,run,free}_<name>. Each State then belongs to one Python object, is
//   built, run and destroyed inside that object's own runtime::Host, and is destroyed when the
//   object is closed: two of them, or one and a World, never share anything.
// A target with no state defines LLVMFuzzerTestOneInput itself and does not include this header
// (fuzz/CMakeLists.txt renames its entry point for _strata).
//
// Nothing process-wide: quiet_logs() silences the log sink only in a fuzzer process (in _strata
// the sink is Python's, strata.set_log_callback, so a replay from Python shows the stack's logs);
// env_ready() starts the env backend unless something in the process already did.
#pragma once

#include <cstddef>
#include <cstdint>

#include <strata/base/log.h>
#if __has_include(<strata/env/env.h>)
#include <strata/env/env.h>
#define STRATA_FUZZ_HAS_ENV 1
#endif

namespace strata::fuzz {

#ifdef STRATA_FUZZ_PY_NAME
inline constexpr bool kInPython = true;
#else
inline constexpr bool kInPython = false;
#endif

inline void quiet_logs() {
    if constexpr (!kInPython) log_set_sink([](const LogRecord&) {});
}

#ifdef STRATA_FUZZ_HAS_ENV
inline bool env_ready() { return env::initialized() || env::init().ok(); }
#endif

}  // namespace strata::fuzz

#define STRATA_FUZZ_CAT2(a, b) a##b
#define STRATA_FUZZ_CAT(a, b) STRATA_FUZZ_CAT2(a, b)

#ifdef STRATA_FUZZ_PY_NAME
#define STRATA_FUZZ_TARGET(State, fn)                                                           \
    extern "C" void* STRATA_FUZZ_CAT(strata_fuzz_new_, STRATA_FUZZ_PY_NAME)() {                \
        return new State();                                                                     \
    }                                                                                           \
    extern "C" int STRATA_FUZZ_CAT(strata_fuzz_run_, STRATA_FUZZ_PY_NAME)(                      \
        void* state, const uint8_t* data, size_t size) {                                        \
        return fn(*static_cast<State*>(state), data, size);                                     \
    }                                                                                           \
    extern "C" void STRATA_FUZZ_CAT(strata_fuzz_free_, STRATA_FUZZ_PY_NAME)(void* state) {      \
        delete static_cast<State*>(state);                                                      \
    }
#else
#define STRATA_FUZZ_TARGET(State, fn)                                                           \
    extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {                   \
        static State* state = new State(); /* the fuzzer process's, never destroyed */          \
        return fn(*state, data, size);                                                          \
    }
#endif

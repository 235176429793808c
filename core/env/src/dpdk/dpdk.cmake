# The env's dpdk backend. From core/env/CMakeLists.txt:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/src/dpdk/dpdk.cmake)
#   strata_env_add_dpdk(strata_env)        # after add_library/strata_add_library of strata_env
#   strata_env_add_dpdk_tests()
#   strata_env_add_dpdk_bench()
# strata_env_add_dpdk builds the static library strata_env_dpdk (EAL bring-up, DMA memory on
# DPDK, PCI through DPDK's bus: src/dpdk/{eal,dpdk_memory,dpdk_pci}.cpp; depends on strata_base
# only) and, when given a target, adds the adapter to the env's backend interface
# (src/dpdk/dpdk_backend.cpp, if present) to it, links it with strata_env_dpdk and defines
# STRATA_ENV_HAVE_DPDK=1 on it (PUBLIC, so the backend table and tests can tell).
#
# Linking: only DPDK's EAL and its PCI bus are linked, statically (librte_*.a from libdpdk-dev).
# Linked against DPDK's shared libraries, EAL would load every poll-mode driver in
# /usr/lib/<triplet>/dpdk/pmds-23.0/ at start (~190 plugins, some of which probe any vfio or virtio
# function they recognise); statically linked, EAL loads no plugins, so no device Strata did not
# claim is touched and start-up is faster. Debian builds the static archives position-independent,
# so they also go into the Python module. Options:
#   STRATA_WITH_DPDK (ON): build the backend when libdpdk 22.11 is found; OFF, or DPDK missing,
#   leaves the env with the sim backend only.
option(STRATA_WITH_DPDK "Build the env dpdk backend (needs libdpdk-dev 22.11)" ON)

function(strata_env_add_dpdk)
  set(target "${ARGV0}")
  if(NOT STRATA_WITH_DPDK)
    message(STATUS "env: dpdk backend disabled (STRATA_WITH_DPDK=OFF)")
    return()
  endif()
  # 22.11 only: dpdk_abi.h declares that release's PCI structures.
  pkg_check_modules(DPDK QUIET libdpdk>=22.11)
  if(NOT DPDK_FOUND OR NOT DPDK_VERSION VERSION_LESS 23.0)
    message(WARNING "env: libdpdk 22.11 not found (apt install libdpdk-dev; found "
                    "'${DPDK_VERSION}'): dpdk backend not built")
    return()
  endif()
  foreach(_name bus_pci pci eal kvargs telemetry)
    find_library(STRATA_DPDK_${_name}_A NAMES librte_${_name}.a HINTS ${DPDK_LIBDIR} ${DPDK_LIBRARY_DIRS}
                 NO_CACHE)
    if(NOT STRATA_DPDK_${_name}_A)
      message(WARNING "env: librte_${_name}.a not found next to libdpdk: dpdk backend not built")
      return()
    endif()
    if(NOT TARGET strata_dpdk_${_name})
      add_library(strata_dpdk_${_name} STATIC IMPORTED GLOBAL)
      set_target_properties(strata_dpdk_${_name} PROPERTIES IMPORTED_LOCATION ${STRATA_DPDK_${_name}_A})
    endif()
  endforeach()
  find_library(STRATA_NUMA_LIB numa REQUIRED)
  find_library(STRATA_BSD_LIB bsd REQUIRED)

  set(_dir ${CMAKE_CURRENT_FUNCTION_LIST_DIR})
  if(NOT TARGET strata_env_dpdk)
    set(_srcs ${_dir}/eal.cpp ${_dir}/dpdk_pci.cpp ${_dir}/dpdk_memory.cpp)
    add_library(strata_env_dpdk STATIC ${_srcs})
    # DPDK's headers: system includes (they trip -Wvolatile under C++20), rte_config.h first, and
    # the experimental device-event / DMA-map API. Not DPDK's -march flag: nothing here needs it.
    target_compile_options(strata_env_dpdk PRIVATE -Wall -Wextra -Wno-unused-parameter
                           "SHELL:-include rte_config.h")
    target_compile_definitions(strata_env_dpdk PRIVATE ALLOW_EXPERIMENTAL_API)
    target_include_directories(strata_env_dpdk SYSTEM PRIVATE ${DPDK_INCLUDE_DIRS})
    # Consumers include "dpdk/eal.h" etc.: private to core/env (adapter and tests).
    target_include_directories(strata_env_dpdk PUBLIC ${_dir}/.. ${_dir}/../../include)
    # The PCI bus registers itself from a constructor: keep the whole archive.
    target_link_libraries(strata_env_dpdk
      PUBLIC strata_base strata_runtime
      PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,strata_dpdk_bus_pci>"
              strata_dpdk_pci strata_dpdk_eal strata_dpdk_kvargs strata_dpdk_telemetry
              ${STRATA_NUMA_LIB} ${STRATA_BSD_LIB} ${CMAKE_DL_LIBS} m Threads::Threads)
  endif()
  if(target AND EXISTS ${_dir}/dpdk_backend.cpp)
    # The adapter to the env's backend interface is compiled into the env library itself.
    target_sources(${target} PRIVATE ${_dir}/dpdk_backend.cpp)
    set_source_files_properties(${_dir}/dpdk_backend.cpp PROPERTIES
      COMPILE_OPTIONS "-include;rte_config.h" COMPILE_DEFINITIONS "ALLOW_EXPERIMENTAL_API")
    target_include_directories(${target} SYSTEM PRIVATE ${DPDK_INCLUDE_DIRS})
    target_link_libraries(${target} PRIVATE strata_env_dpdk)
    target_compile_definitions(${target} PUBLIC STRATA_ENV_HAVE_DPDK=1)
  endif()
  message(STATUS "env: dpdk backend on DPDK ${DPDK_VERSION} (static EAL + PCI bus)")
endfunction()

# strata_env_add_dpdk_tests()
#   The dpdk-specific tests (core/env/tests/dpdk_*). EAL initialises once per process, so each
#   EAL configuration is its own executable: dpdk_eal_args_test (no EAL), dpdk_nohuge_test
#   (--no-huge --no-pci) and dpdk_hugepages_test (real hugepages + PCI scan; skips without free
#   hugepages unless STRATA_REQUIRE_HUGEPAGES=1, which ci/test sets after ci/hugepages).
function(strata_env_add_dpdk_tests)
  if(NOT STRATA_BUILD_TESTS OR NOT TARGET strata_env_dpdk)
    return()
  endif()
  set(_tests ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/../../tests)
  foreach(_t eal_args nohuge hugepages)
    strata_add_test(NAME dpdk_${_t}_test SOURCES ${_tests}/dpdk_${_t}_test.cpp
                    DEPS strata_env_dpdk strata_runtime_testing)
  endforeach()
  # The env's public API on the dpdk backend, once the adapter is compiled into strata_env.
  if(TARGET strata_env AND EXISTS ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/dpdk_backend.cpp)
    strata_add_test(NAME dpdk_env_test SOURCES ${_tests}/dpdk_env_test.cpp DEPS strata_env)
    strata_add_test(NAME dpdk_env_pci_test SOURCES ${_tests}/dpdk_env_pci_test.cpp DEPS strata_env)
    # The env's memory tests (memory_test.cpp, parameterised by backend) on dpdk, no-huge.
    strata_add_test(NAME env_memory_dpdk_test SOURCES ${_tests}/memory_test.cpp
                    DEPS strata_env strata_runtime_testing)
    target_compile_definitions(env_memory_dpdk_test PRIVATE STRATA_ENV_MEMORY_TEST_DPDK=1)
    strata_add_test(NAME env_memory_dpdk_hugepages_test SOURCES ${_tests}/memory_test.cpp
                    DEPS strata_env strata_runtime_testing)
    target_compile_definitions(env_memory_dpdk_hugepages_test PRIVATE
                               STRATA_ENV_MEMORY_TEST_DPDK=1 STRATA_ENV_MEMORY_TEST_DPDK_HUGEPAGES=1)
  endif()
endfunction()

# strata_env_add_dpdk_bench(): strata-env-dpdk-bench (core/env/tests/dpdk_bench.cpp), figures for
# the dpdk backend's memory primitives (docs/performance.md).
function(strata_env_add_dpdk_bench)
  if(NOT STRATA_BUILD_BENCH OR NOT TARGET strata_env_dpdk)
    return()
  endif()
  strata_add_executable(NAME strata-env-dpdk-bench
                        SOURCES ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/../../tests/dpdk_bench.cpp
                        DEPS strata_env_dpdk strata_runtime)
endfunction()

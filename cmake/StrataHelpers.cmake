# strata_add_library(NAME <target> SOURCES ... DEPS ... [PRIVATE_DEPS ...])
#   One library per module; public headers live in include/ (included as <strata/<mod>/x.h>).
#   Header-only modules pass no SOURCES and get an INTERFACE library.
function(strata_add_library)
  cmake_parse_arguments(A "" "NAME" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  if(A_SOURCES)
    add_library(${A_NAME} STATIC ${A_SOURCES})
    target_include_directories(${A_NAME} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
    target_link_libraries(${A_NAME} PUBLIC ${A_DEPS} PRIVATE ${A_PRIVATE_DEPS})
    target_compile_options(${A_NAME} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  else()
    add_library(${A_NAME} INTERFACE)
    target_include_directories(${A_NAME} INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/include)
    target_link_libraries(${A_NAME} INTERFACE ${A_DEPS})
  endif()
  add_library(strata::${A_NAME} ALIAS ${A_NAME})
endfunction()

# strata_tsan_targets(<target>...): what the tsan CI stage builds (the `strata_tsan_tests` target
#   made at the end of the top-level CMakeLists): the executables its `ctest -L tsan` runs, so it
#   does not build the whole tree a second time.
function(strata_tsan_targets)
  set_property(GLOBAL APPEND PROPERTY STRATA_TSAN_TARGETS ${ARGN})
endfunction()

# strata_add_test(NAME <exe> SOURCES ... DEPS ... [LABELS ...] [TIMEOUT s]
#                 [LONG <gtest filter> [LONG_ENVIRONMENT VAR=value] [LONG_TIMEOUT s]])
#   A GoogleTest executable registered with ctest. Every test gets the label `unit`
#   (run by the asan stage); tests of the real, multi-OS-thread scheduler add `tsan`.
#   Each test is its own ctest (gtest_discover_tests), which reports a GTEST_SKIP as ctest
#   "Skipped" (its SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]"), so CI counts it apart from passes.
#   LONG: the tests the filter names (e.g. `Suite.Long`) get the label `long` instead, alone (not
#   `unit`: neither the default ctest stage nor the sanitizer stages run them, `ci/test --long`
#   does), with LONG_ENVIRONMENT (one variable: discovery flattens lists) and LONG_TIMEOUT
#   (default 1800 s).
function(strata_add_test)
  if(NOT STRATA_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(A "" "NAME;TIMEOUT;LONG;LONG_ENVIRONMENT;LONG_TIMEOUT"
                        "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${A_NAME} ${A_SOURCES})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS} GTest::gtest GTest::gtest_main)
  target_compile_options(${A_NAME} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  include(GoogleTest)
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  # gtest_discover_tests flattens a list inside PROPERTIES, so a test gets ONE label: `unit`,
  # or `unit-<labels>` such as `unit-tsan`. ctest -L takes a regex: -L unit selects both,
  # -L tsan selects the latter.
  set(label unit)
  foreach(l IN LISTS A_LABELS)
    string(APPEND label "-${l}")
  endforeach()
  if("tsan" IN_LIST A_LABELS)
    strata_tsan_targets(${A_NAME})
  endif()
  set(filter "")
  if(A_LONG)
    set(filter TEST_FILTER "-${A_LONG}")
  endif()
  gtest_discover_tests(${A_NAME} ${filter}
    PROPERTIES LABELS ${label} TIMEOUT ${A_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
  if(A_LONG)
    if(NOT A_LONG_TIMEOUT)
      set(A_LONG_TIMEOUT 1800)
    endif()
    set(env "")
    if(A_LONG_ENVIRONMENT)
      set(env ENVIRONMENT ${A_LONG_ENVIRONMENT})
    endif()
    gtest_discover_tests(${A_NAME} TEST_FILTER "${A_LONG}"
      PROPERTIES LABELS long TIMEOUT ${A_LONG_TIMEOUT} ${env}
      DISCOVERY_TIMEOUT 60)
  endif()
endfunction()

# strata_gtest_whole_test(NAME <exe> [LABELS ...] [TIMEOUT s])
#   Registers a GoogleTest executable (built by the caller) as ONE ctest, for tests that need a
#   label list discovery would flatten (`unit;tsan`). A GTEST_SKIP inside must still show: the
#   run goes through gtest_whole.sh, which exits 77 (SKIP_RETURN_CODE: ctest "Skipped") when the
#   binary passed with a skipped test. Not SKIP_REGULAR_EXPRESSION: a match wins over a non-zero
#   exit, so one skipped test would hide another's failure.
function(strata_gtest_whole_test)
  cmake_parse_arguments(A "" "NAME;TIMEOUT" "LABELS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  add_test(NAME ${A_NAME}
           COMMAND bash ${PROJECT_SOURCE_DIR}/cmake/gtest_whole.sh $<TARGET_FILE:${A_NAME}>)
  set_tests_properties(${A_NAME} PROPERTIES LABELS "${A_LABELS}" TIMEOUT ${A_TIMEOUT}
                       SKIP_RETURN_CODE 77)
endfunction()

# strata_add_executable(NAME <exe> SOURCES ... DEPS ...)
function(strata_add_executable)
  cmake_parse_arguments(A "" "NAME" "SOURCES;DEPS" ${ARGN})
  add_executable(${A_NAME} ${A_SOURCES})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS})
  target_compile_options(${A_NAME} PRIVATE -Wall -Wextra -Wno-unused-parameter)
endfunction()

# strata_spec_test(NAME <test> MODULE <nvme|ioat|virtio|...> SOURCES ... DEPS ...)
#   A spec library's test: its SOURCES plus "every header compiles alone", one generated
#   translation unit per header under spec/include/strata/<MODULE>/spec/, including only that
#   header (twice, to check the include guard). Built with -Wconversion -Wshadow -Werror.
function(strata_spec_test)
  if(NOT STRATA_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(A "" "NAME;MODULE" "SOURCES;DEPS" ${ARGN})
  file(GLOB headers CONFIGURE_DEPENDS
       ${CMAKE_CURRENT_SOURCE_DIR}/spec/include/strata/${A_MODULE}/spec/*.h)
  set(checks)
  foreach(h IN LISTS headers)
    get_filename_component(name ${h} NAME_WE)
    set(inc "strata/${A_MODULE}/spec/${name}.h")
    set(out ${CMAKE_CURRENT_BINARY_DIR}/spec_header_checks/${name}_alone.cpp)
    file(CONFIGURE OUTPUT ${out}
         CONTENT "// Generated: checks that <${inc}> compiles on its own.\n#include <${inc}>\n#include <${inc}>\n")
    list(APPEND checks ${out})
  endforeach()
  strata_add_test(NAME ${A_NAME} SOURCES ${A_SOURCES} ${checks} DEPS ${A_DEPS})
  target_compile_options(${A_NAME} PRIVATE -Wconversion -Wshadow -Werror)
endfunction()

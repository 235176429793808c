# ctest rpc_doc_up_to_date: compares `strata-rpc-doc` output with docs/user/rpc.md.
execute_process(COMMAND ${GEN} OUTPUT_VARIABLE generated RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "strata-rpc-doc failed (${rc})")
endif()
if(NOT EXISTS ${DOC})
  message(FATAL_ERROR "${DOC} is missing. Regenerate it: ${GEN} > ${DOC}")
endif()
file(READ ${DOC} checked_in)
if(NOT generated STREQUAL checked_in)
  message(FATAL_ERROR "${DOC} is stale (an RPC method or parameter changed). Regenerate it:\n"
                      "  ${GEN} > ${DOC}")
endif()

add_executable(test_executor ${CMAKE_SOURCE_DIR}/tests/unit/test_executor.c)
target_link_libraries(test_executor PRIVATE zsupervisor PkgConfig::CMOCKA)
target_compile_definitions(test_executor PRIVATE ZMESH_POLICY_DIR="${ZMESH_POLICY_DIR}"
                           ZMESH_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_test(NAME unit_executor COMMAND test_executor)

# Unit tests of auth.c: tokens, password hashes, API keys.
add_executable(test_auth ${CMAKE_SOURCE_DIR}/tests/unit/test_auth.c)
target_link_libraries(test_auth PRIVATE zsupervisor PkgConfig::CMOCKA)
add_test(NAME unit_auth COMMAND test_auth)

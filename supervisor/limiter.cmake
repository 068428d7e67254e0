add_executable(test_limiter ${CMAKE_SOURCE_DIR}/tests/unit/test_limiter.c)
target_link_libraries(test_limiter PRIVATE zsupervisor PkgConfig::CMOCKA)
add_test(NAME unit_limiter COMMAND test_limiter)

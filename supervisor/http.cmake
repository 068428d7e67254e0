# The HTTP layer: router unit tests, and a small server on the layer alone
# driven over real sockets by pytest.
add_executable(test_http ${CMAKE_SOURCE_DIR}/tests/unit/test_http.c)
target_link_libraries(test_http PRIVATE zsupervisor PkgConfig::CMOCKA)
add_test(NAME unit_http COMMAND test_http)

add_executable(http_echo_server ${CMAKE_SOURCE_DIR}/tests/http_echo_server.c)
target_link_libraries(http_echo_server PRIVATE zsupervisor)
add_test(NAME http_layer
         COMMAND /usr/bin/python3 -m pytest -q -p no:cacheprovider
                 ${CMAKE_SOURCE_DIR}/tests/integration/test_http_layer.py)
set_tests_properties(http_layer PROPERTIES
  ENVIRONMENT "ZMESH_HTTP_ECHO=$<TARGET_FILE:http_echo_server>" TIMEOUT 300)

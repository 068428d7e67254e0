# The control-plane database layer (db.c, pgembed.c). Its test starts real
# PostgreSQL clusters: it needs root and the postgres system user, and exits
# 77 (reported as skipped) without them.
add_executable(test_db ${CMAKE_SOURCE_DIR}/tests/unit/test_db.c)
target_link_libraries(test_db PRIVATE zsupervisor PkgConfig::CMOCKA)
target_compile_definitions(test_db PRIVATE ZMESH_SQL_DIR="${CMAKE_SOURCE_DIR}/sql")
add_test(NAME unit_db COMMAND test_db)
set_tests_properties(unit_db PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)

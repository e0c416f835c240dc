# Every dependency comes from Debian 12 (scripts/install-deps.sh installs them).

find_package(Threads REQUIRED)
find_package(OpenSSL 3.0 REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(fmt CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(yaml-cpp CONFIG REQUIRED)
find_package(ZLIB REQUIRED)
find_package(zstd CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(HYPERSCAN REQUIRED IMPORTED_TARGET libhs>=5.4)
pkg_check_modules(BROTLI REQUIRED IMPORTED_TARGET libbrotlienc libbrotlidec)
pkg_check_modules(PSL REQUIRED IMPORTED_TARGET libpsl)
# The compliance store's PostgreSQL backend (Debian: libpq-dev).
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)

find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

# The appliance allocates and frees in small blocks on every request and every minted
# leaf (OpenSSL objects, parsers, verdicts), from several worker threads: tcmalloc
# (gperftools, as Envoy links it) costs less per request and per cache eviction than
# glibc's malloc and keeps less resident per idle connection (figures in bench/README.md).
# Sanitizers and libFuzzer bring their own allocator, so they keep theirs.
set(EGRESSGUARD_USE_TCMALLOC OFF)
if(EGRESSGUARD_TCMALLOC AND NOT EGRESSGUARD_SANITIZE AND NOT EGRESSGUARD_FUZZ)
  pkg_check_modules(TCMALLOC REQUIRED IMPORTED_TARGET libtcmalloc_minimal)
  set(EGRESSGUARD_USE_TCMALLOC ON)
endif()

# Links `target` (an executable) with the appliance's allocator, --no-as-needed for it
# alone (a link feature keeps the flags around the library wherever CMake places it):
# nothing calls into tcmalloc by name, it replaces malloc by being loaded.
set(CMAKE_LINK_LIBRARY_USING_EGRESSGUARD_NO_AS_NEEDED
    "LINKER:--push-state,--no-as-needed" "<LINK_ITEM>" "LINKER:--pop-state")
set(CMAKE_LINK_LIBRARY_USING_EGRESSGUARD_NO_AS_NEEDED_SUPPORTED TRUE)
function(egressguard_link_allocator target)
  if(EGRESSGUARD_USE_TCMALLOC)
    target_link_libraries(${target} PRIVATE "$<LINK_LIBRARY:EGRESSGUARD_NO_AS_NEEDED,${TCMALLOC_LINK_LIBRARIES}>")
  endif()
endfunction()

if(TARGET zstd::libzstd_shared)
  set(EGRESSGUARD_ZSTD zstd::libzstd_shared)
else()
  set(EGRESSGUARD_ZSTD zstd::libzstd_static)
endif()

# Boost.Asio is header-only; it must not pull in the deprecated io_service names.
add_library(egressguard_asio INTERFACE)
target_link_libraries(egressguard_asio INTERFACE Boost::headers Threads::Threads)
target_compile_definitions(egressguard_asio INTERFACE BOOST_ASIO_NO_DEPRECATED BOOST_ASIO_NO_TS_EXECUTORS)

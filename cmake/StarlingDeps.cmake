# Third-party dependencies, all from Debian 12's packages (deploy/install-deps.sh installs them).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

# mbedTLS 2.28 ships no CMake config in Debian: plain library names.
find_path(MBEDTLS_INCLUDE_DIR mbedtls/ssl.h REQUIRED)
find_library(MBEDTLS_LIB mbedtls REQUIRED)
find_library(MBEDX509_LIB mbedx509 REQUIRED)
find_library(MBEDCRYPTO_LIB mbedcrypto REQUIRED)
add_library(starling_mbedtls INTERFACE)
target_include_directories(starling_mbedtls SYSTEM INTERFACE ${MBEDTLS_INCLUDE_DIR})
target_link_libraries(starling_mbedtls INTERFACE ${MBEDTLS_LIB} ${MBEDX509_LIB} ${MBEDCRYPTO_LIB})
add_library(starling::mbedtls ALIAS starling_mbedtls)

# OpenSSL's libcrypto: only its SHA-1/SHA-256 block functions, which use SHA-NI, for PBKDF2 in
# xmpp/sasl/scram.cpp and broker/src/admin/scram_pair.cpp (bulk account provisioning: mbedTLS
# 2.28 does not use SHA-NI). OpenSSL's libssl: the broker's TLS engine (xmpp/tls/openssl_server.hpp:
# TLS 1.3, record buffers released while idle); mbedTLS stays the clients' engine.
find_package(OpenSSL REQUIRED COMPONENTS Crypto SSL)

# zlib: XEP-0138 stream compression in xmpp/zlib/ (so every build of libstarling-xmpp needs it).
find_package(ZLIB REQUIRED)

# libidn: stringprep profiles for JID normalisation of non-ASCII parts.
pkg_check_modules(LIBIDN REQUIRED IMPORTED_TARGET libidn)

if(STARLING_BUILD_BROKER OR STARLING_BUILD_AGENT OR STARLING_BUILD_BENCH)
  pkg_check_modules(PUGIXML REQUIRED IMPORTED_TARGET pugixml)
endif()
if(STARLING_BUILD_SHIM OR STARLING_BUILD_BROKER OR STARLING_BUILD_AGENT)
  find_package(FlatBuffers CONFIG REQUIRED)
  find_program(FLATC flatc REQUIRED)
endif()
if(STARLING_BUILD_BROKER)
  find_package(RocksDB CONFIG REQUIRED)
  find_package(prometheus-cpp CONFIG REQUIRED)
  # The HTTP server of /metrics, /health and /ready (prometheus-cpp's own, used directly).
  if(NOT TARGET civetweb::civetweb)
    find_package(civetweb CONFIG REQUIRED)
  endif()
endif()
if(STARLING_BUILD_BENCH)
  find_package(benchmark REQUIRED)
  find_package(EXPAT REQUIRED)
endif()
if(STARLING_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
  include(GoogleTest)
endif()

# Cross-build for arm64 (aarch64) Linux with Debian's cross compiler and multiarch libraries:
#   apt-get install crossbuild-essential-arm64 qemu-user (and the :arm64 -dev packages that
#   deploy/install-deps.sh --cross lists)
#   cmake -S . -B build/arm64 -G Ninja --toolchain cmake/aarch64-linux-gnu.cmake \
#     -DSTARLING_BUILD_BROKER=OFF -DSTARLING_BUILD_BENCH=OFF -DSTARLING_BUILD_TESTS=OFF \
#     -DSTARLING_BUILD_AGENT=ON -DCMAKE_BUILD_TYPE=MinSizeRel
#   cmake --build build/arm64 --target starling-agent
# Runs under qemu-user: qemu-aarch64 -L /usr/aarch64-linux-gnu build/arm64/edge-agent/starling-agent
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(STARLING_CROSS_TRIPLET aarch64-linux-gnu)
include(${CMAKE_CURRENT_LIST_DIR}/cross-debian.cmake)

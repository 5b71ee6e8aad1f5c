# Cross-build for armhf (32-bit ARMv7, hard float) Linux with Debian's cross compiler; see
# cmake/aarch64-linux-gnu.cmake for the commands (crossbuild-essential-armhf, :armhf packages,
# qemu-arm -L /usr/arm-linux-gnueabihf).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(STARLING_CROSS_TRIPLET arm-linux-gnueabihf)
include(${CMAKE_CURRENT_LIST_DIR}/cross-debian.cmake)

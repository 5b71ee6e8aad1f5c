# Shared part of the Debian cross toolchain files: compilers <triplet>-gcc/g++, libraries and
# headers from the multiarch folders (/usr/lib/<triplet>, /usr/include/<triplet>), pkg-config
# looking only there, and host tools (flatc) from the build machine.
set(CMAKE_C_COMPILER ${STARLING_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${STARLING_CROSS_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${STARLING_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH /usr/${STARLING_CROSS_TRIPLET} /usr/lib/${STARLING_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
# Libraries and headers: the target's multiarch folders first, then the shared /usr (headers
# and arch-independent CMake configs live there).
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-${CMAKE_SYSTEM_PROCESSOR};-L;/usr/${STARLING_CROSS_TRIPLET})
if(CMAKE_SYSTEM_PROCESSOR STREQUAL "aarch64")
  set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;/usr/${STARLING_CROSS_TRIPLET})
endif()
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${STARLING_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

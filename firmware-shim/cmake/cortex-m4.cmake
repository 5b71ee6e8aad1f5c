# Toolchain file for Cortex-M4 with Debian's gcc-arm-none-eabi (and libstdc++-arm-none-eabi-newlib
# for C++ users of the shim). Produces static libraries only: firmware links them.
#   cmake -S firmware-shim -B build/m4 --toolchain firmware-shim/cmake/cortex-m4.cmake
#   cmake --build build/m4
# Floating point: STARLING_SHIM_M4_FLOAT_ABI=hard (default, Cortex-M4F with FPv4-SP), softfp, or
# soft for an M4 without FPU. Must match the firmware that links the library.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)

find_program(STARLING_ARM_GCC arm-none-eabi-gcc REQUIRED)
get_filename_component(_arm_bin ${STARLING_ARM_GCC} DIRECTORY)
set(CMAKE_C_COMPILER ${_arm_bin}/arm-none-eabi-gcc)
set(CMAKE_CXX_COMPILER ${_arm_bin}/arm-none-eabi-g++)
set(CMAKE_ASM_COMPILER ${_arm_bin}/arm-none-eabi-gcc)
set(CMAKE_AR ${_arm_bin}/arm-none-eabi-ar CACHE FILEPATH "")
set(CMAKE_RANLIB ${_arm_bin}/arm-none-eabi-ranlib CACHE FILEPATH "")
set(CMAKE_NM ${_arm_bin}/arm-none-eabi-nm CACHE FILEPATH "")
set(CMAKE_OBJCOPY ${_arm_bin}/arm-none-eabi-objcopy CACHE FILEPATH "")
set(CMAKE_SIZE ${_arm_bin}/arm-none-eabi-size CACHE FILEPATH "")

# No OS to run a test executable: check the compiler with a static library.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(STARLING_SHIM_M4_FLOAT_ABI hard CACHE STRING "hard, softfp or soft")
if(STARLING_SHIM_M4_FLOAT_ABI STREQUAL "soft")
  set(_fpu "-mfloat-abi=soft")
else()
  set(_fpu "-mfloat-abi=${STARLING_SHIM_M4_FLOAT_ABI} -mfpu=fpv4-sp-d16")
endif()
set(_arch "-mcpu=cortex-m4 -mthumb ${_fpu}")
set(CMAKE_C_FLAGS_INIT "${_arch} -ffunction-sections -fdata-sections")
set(CMAKE_CXX_FLAGS_INIT
  "${_arch} -ffunction-sections -fdata-sections -fno-exceptions -fno-rtti -fno-threadsafe-statics")
set(CMAKE_ASM_FLAGS_INIT "${_arch}")
set(CMAKE_C_FLAGS_MINSIZEREL_INIT "-Os -DNDEBUG")
set(CMAKE_CXX_FLAGS_MINSIZEREL_INIT "-Os -DNDEBUG")
# Probes in examples/footprint link an image: newlib-nano, no syscalls, unused sections dropped.
set(CMAKE_EXE_LINKER_FLAGS_INIT "--specs=nano.specs --specs=nosys.specs -Wl,--gc-sections")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

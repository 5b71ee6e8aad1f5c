# ctest -P script: fails if the static library LIB references or defines an allocator,
# exception or RTTI symbol. Usage: cmake -DNM=<nm> -DLIB=<lib.a> -P check_no_heap.cmake
if(NOT NM OR NOT LIB)
  message(FATAL_ERROR "usage: cmake -DNM=<nm> -DLIB=<lib.a> -P check_no_heap.cmake")
endif()
execute_process(COMMAND ${NM} -A ${LIB} OUTPUT_VARIABLE out ERROR_VARIABLE err
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed (${rc}): ${err}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(bad)
set(count 0)
foreach(line IN LISTS lines)
  # "<archive>:<member>: [address] <type> <symbol>"
  if(line MATCHES "[ \t]([A-Za-z])[ \t]+([^ \t]+)$")
    math(EXPR count "${count} + 1")
    set(sym ${CMAKE_MATCH_2})
    if(sym MATCHES "^_?(malloc|free|calloc|realloc|reallocarray|aligned_alloc|posix_memalign|memalign|valloc|pvalloc|strdup|strndup|sbrk|_sbrk|_malloc_r|_free_r|_calloc_r|_realloc_r)$"
       OR sym MATCHES "^_Z(nw|na|dl|da)"              # operator new/delete, all overloads
       OR sym MATCHES "^__cxa_(allocate_exception|throw|begin_catch)$"
       OR sym MATCHES "^_ZTI")                          # typeinfo: RTTI
      list(APPEND bad "${line}")
    endif()
  endif()
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "no symbols read from ${LIB}; is NM (${NM}) right for it?")
endif()
if(bad)
  string(REPLACE ";" "\n  " bad "${bad}")
  message(FATAL_ERROR "allocator/exception/RTTI symbols in ${LIB}:\n  ${bad}")
endif()
message(STATUS "${LIB}: ${count} symbols, none from an allocator")

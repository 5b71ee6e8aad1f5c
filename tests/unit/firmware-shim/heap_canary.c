/* Not part of the shim: a library that does allocate, so the nm check is shown to fail on one
 * (test shim_no_heap_check_catches_malloc, WILL_FAIL). */
#include <stdlib.h>

void *starling_shim_test_heap_canary(size_t n);

void *starling_shim_test_heap_canary(size_t n)
{
    return malloc(n);
}

/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/invalid_free_small_region_far.c at commit
 * 42005ed5e9b591bebdca303fc07453f0f1d4cf48.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <stdlib.h>

#include "test_util.h"

#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

OPTNONE int main(void) {
    char *p = malloc(16);
    if (!p) {
        return 1;
    }
    char *q = p + 1024 * 1024 * 1024;
    free(q);
    return 0;
}

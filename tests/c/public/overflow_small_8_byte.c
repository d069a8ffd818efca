/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/overflow_small_8_byte.c at commit
 * 570ea7ece911ae35f42bda6179eb7c2e81a859c7.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <malloc.h>
#include <stdlib.h>

#include "test_util.h"

OPTNONE int main(void) {
    char *p = malloc(8);
    if (!p) {
        return 1;
    }
    size_t size = malloc_usable_size(p);
    // XOR is used to avoid the test having a 1/256 chance to fail
    *(p + size + 7) ^= 1;
    free(p);
    return 0;
}

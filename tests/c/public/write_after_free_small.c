/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/write_after_free_small.c at commit
 * 570ea7ece911ae35f42bda6179eb7c2e81a859c7.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

OPTNONE int main(void) {
    char *p = malloc(128);
    if (!p) {
        return 1;
    }
    free(p);

    p[65] = 'a';

    // trigger reuse of the allocation
    for (size_t i = 0; i < 100000; i++) {
        free(malloc(128));
    }
    return 0;
}

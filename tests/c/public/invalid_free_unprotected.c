/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/invalid_free_unprotected.c at commit
 * 570ea7ece911ae35f42bda6179eb7c2e81a859c7.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <stdlib.h>

#include <sys/mman.h>

#include "test_util.h"

OPTNONE int main(void) {
    free(malloc(16));
    char *p = mmap(NULL, 4096 * 16, PROT_READ|PROT_WRITE, MAP_ANONYMOUS|MAP_PRIVATE, -1, 0);
    if (p == MAP_FAILED) {
        return 1;
    }
    free(p + 4096 * 8);
    return 0;
}

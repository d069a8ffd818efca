/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/quarantine_double_free_extended_delayed.c at commit
 * a4e45ad1c6efb821504371e3800f9ecf925aaa22.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <stdlib.h>

#include "test_util.h"

OPTNONE int main(void) {
    void *p = malloc(65536);
    if (!p) {
        return 1;
    }
    void *allocs[100];
    for (int i = 0; i < 100; i++) {
        allocs[i] = malloc(65536);
        if (!allocs[i]) {
            return 1;
        }
    }
    free(p);
    for (int i = 0; i < 100; i++) {
        free(allocs[i]);
    }
    free(p);
    return 0;
}

/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/read_after_free_large.c at commit
 * 570ea7ece911ae35f42bda6179eb7c2e81a859c7.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

OPTNONE int main(void) {
    char *p = malloc(256 * 1024);
    if (!p) {
        return 1;
    }
    memset(p, 'a', 16);
    free(p);
    for (size_t i = 0; i < 256 * 1024; i++) {
        printf("%x\n", p[i]);
        if (p[i] != '\0') {
            return 1;
        }
    }
    return 0;
}

/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/string_overflow.c at commit
 * 570ea7ece911ae35f42bda6179eb7c2e81a859c7.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <malloc.h>

#include "test_util.h"

OPTNONE int main(void) {
    char *p = malloc(16);
    if (!p) {
        return 1;
    }

    size_t size = malloc_usable_size(p);
    memset(p, 'a', size);
    printf("overflow by %zu bytes\n", strlen(p) - size);

    return 0;
}

/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/unaligned_free_large.c at commit
 * 84eadd8568c95698000338c7ec7cd38ff006f59b.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <stdlib.h>

#include "test_util.h"

OPTNONE int main(void) {
    char *p = malloc(256 * 1024);
    if (!p) {
        return 1;
    }
    free(p + 1);
    return 0;
}

/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/double_free_small.c at commit
 * 84eadd8568c95698000338c7ec7cd38ff006f59b.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <stdlib.h>

#include "test_util.h"

OPTNONE int main(void) {
    void *p = malloc(16);
    if (!p) {
        return 1;
    }
    free(p);
    free(p);
    return 0;
}

/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/quarantine_double_free_extended.c at commit
 * a4e45ad1c6efb821504371e3800f9ecf925aaa22.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <stdlib.h>

#include "test_util.h"

OPTNONE int main(void) {
    void *p = malloc(32768);
    if (!p) {
        return 1;
    }
    free(p);
    free(p);
    return 0;
}

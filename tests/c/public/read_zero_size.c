/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/read_zero_size.c at commit
 * 84eadd8568c95698000338c7ec7cd38ff006f59b.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <stdlib.h>
#include <stdio.h>

#include "test_util.h"

OPTNONE int main(void) {
    char *p = malloc(0);
    if (!p) {
        return 1;
    }
    printf("%c\n", *p);
    return 0;
}

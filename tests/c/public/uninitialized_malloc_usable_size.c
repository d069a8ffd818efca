/* Copied verbatim (below this comment) from GrapheneOS/hardened_malloc,
 * https://github.com/GrapheneOS/hardened_malloc, file test/uninitialized_malloc_usable_size.c at commit
 * 570ea7ece911ae35f42bda6179eb7c2e81a859c7.
 * Licence: MIT, Copyright (c) 2018-2026 GrapheneOS; full text in
 * LICENSE.hardened_malloc next to this file. */
#include <malloc.h>

#include "test_util.h"

OPTNONE int main(void) {
    malloc_usable_size((void *)1);
    return 0;
}

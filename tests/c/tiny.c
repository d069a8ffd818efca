/* tiny.c - the tinymalloc C API of include/tinymalloc.h.
 *
 * Built linked with libtinymalloc (shared and static) by
 * capi/tests/c_api.rs. Prints nothing and exits 0 when every check passes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "tinymalloc.h"

#pragma GCC diagnostic ignored "-Wuse-after-free" /* failed reallocs */

static char global_buf[64];
static volatile size_t huge_size = SIZE_MAX - 4096;
static volatile size_t half_max = SIZE_MAX / 2;

static void test_alloc_free(void) {
  void *a = tinymalloc(0), *b = tinymalloc(0); /* unique, freeable */
  CHECK(a && b && a != b && tinymalloc_owns(a) && tinymalloc_owns(b));
  tinyfree(a);
  tinyfree(b);
  const size_t sizes[] = {1, 100, 1000, 20000, 100000, 5 << 20};
  for (int i = 0; i < 6; i++) {
    char *p = tinymalloc(sizes[i]);
    CHECK(p && ALIGNED(p, 16) && tinymalloc_owns(p));
    CHECK(tinymalloc_usable_size(p) >= sizes[i]);
    CHECK(!tinymalloc_owns(p + 16)); /* interior pointers are not blocks */
    memset(p, 1, tinymalloc_usable_size(p));
    errno = 99;
    tinyfree(p); /* preserves errno */
    CHECK(errno == 99);
    CHECK(!tinymalloc_owns(p));
  }
  tinyfree(NULL);
  CHECK(tinymalloc_usable_size(NULL) == 0);
  errno = 0;
  CHECK(tinymalloc(huge_size) == NULL && errno == ENOMEM);
  /* malloc is tinymalloc's too when the library is linked */
  void *m = malloc(10);
  CHECK(tinymalloc_owns(m));
  free(m);
}

static void test_owns_foreign(void) {
  char local[64];
  CHECK(!tinymalloc_owns(NULL));
  CHECK(!tinymalloc_owns(local));
  CHECK(!tinymalloc_owns(global_buf));
  CHECK(!tinymalloc_owns((void *)(uintptr_t)0x1000));
  CHECK(!tinymalloc_owns((void *)(UINTPTR_MAX & ~(uintptr_t)15)));
}

static void test_calloc_realloc(void) {
  unsigned char *p = tinycalloc(100, 10);
  CHECK(p != NULL);
  for (int i = 0; p && i < 1000; i++)
    if (p[i]) { CHECK(!"tinycalloc memory not zeroed"); break; }
  errno = 0;
  CHECK(tinycalloc(half_max, 3) == NULL && errno == ENOMEM);
  fill(p, 1000, 5);
  p = tinyrealloc(p, 300000); /* grow: contents kept */
  CHECK(p && filled(p, 1000, 5));
  p = tinyrealloc(p, 500); /* shrink: prefix kept */
  CHECK(p && filled(p, 500, 5));
  errno = 0; /* failure: NULL + ENOMEM, block intact */
  CHECK(tinyrealloc(p, huge_size) == NULL && errno == ENOMEM);
  CHECK(tinymalloc_owns(p) && filled(p, 500, 5));
  void *z = tinyrealloc(p, 0); /* size 0: a minimal block, not NULL */
  CHECK(z != NULL && tinymalloc_owns(z));
  tinyfree(z);
  z = tinyrealloc(NULL, 42); /* NULL: as tinymalloc */
  CHECK(z != NULL && tinymalloc_usable_size(z) >= 42);
  tinyfree(z);
}

static void test_aligned(void) {
  for (size_t a = 1; a <= (2u << 20); a *= 2) {
    void *p = tinymalloc_aligned(a, 1000);
    CHECK(p && ALIGNED(p, a) && tinymalloc_owns(p));
    CHECK(tinymalloc_usable_size(p) >= 1000);
    tinyfree(p);
  }
  errno = 0;
  CHECK(tinymalloc_aligned(48, 10) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(tinymalloc_aligned(0, 10) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(tinymalloc_aligned(64, huge_size) == NULL && errno == ENOMEM);
}

static void test_misc(void) {
  int t = tinymalloc_trim();
  CHECK(t == 0 || t == 1);
  CHECK(strcmp(tinymalloc_version(), TINYMALLOC_VERSION) == 0);
  CHECK(TINYMALLOC_VERSION_NUMBER == TINYMALLOC_VERSION_MAJOR * 10000 +
                                         TINYMALLOC_VERSION_MINOR * 100 +
                                         TINYMALLOC_VERSION_PATCH);
  /* tinymalloc_print_stats writes to stderr: capture it through a pipe */
  int fds[2], saved = dup(2);
  CHECK(pipe(fds) == 0);
  dup2(fds[1], 2);
  tinymalloc_print_stats();
  dup2(saved, 2);
  close(fds[1]);
  char buf[4096] = {0};
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  close(saved);
  CHECK(n > 0 && strstr(buf, "tinymalloc") != NULL);
}

int main(void) {
  test_alloc_free();
  test_owns_foreign();
  test_calloc_realloc();
  test_aligned();
  test_misc();
  return check_failures();
}

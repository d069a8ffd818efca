/* api.c - the malloc family exported by libtinymalloc, rule by rule.
 *
 * Built three ways by capi/tests/c_api.rs: linked with -ltinymalloc,
 * linked with libtinymalloc.a, and plain (-DTM_PRELOAD) then run with
 * LD_PRELOAD. Prints nothing and exits 0 when every check passes. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* Failed reallocs leave the block valid, and mallinfo is tested on purpose. */
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

/* Not declared by glibc's headers, but exported by it and by tinymalloc. */
void *__libc_malloc(size_t);
void __libc_free(void *);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void *__libc_valloc(size_t);
void *__libc_pvalloc(size_t);

/* Functions glibc 2.36 does not let a program link to (tinymalloc_owns,
 * free_sized, ...; its cfree is a compatibility symbol): looked up at run
 * time when preloaded (-DTM_PRELOAD: not linked with tinymalloc), called
 * directly when linked with tinymalloc. */
static int (*owns)(const void *);
static void (*cfree_fn)(void *);
static void (*free_sized_fn)(void *, size_t);
static void (*free_aligned_sized_fn)(void *, size_t, size_t);
#ifdef TM_PRELOAD
#define RESOLVE(var, name) (var = (__typeof__(var))dlsym(RTLD_DEFAULT, #name))
#else
int tinymalloc_owns(const void *);
void cfree(void *);
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);
#define RESOLVE(var, name) (var = name)
#endif

static int resolve(void) {
  return RESOLVE(owns, tinymalloc_owns) && RESOLVE(cfree_fn, cfree) &&
         RESOLVE(free_sized_fn, free_sized) &&
         RESOLVE(free_aligned_sized_fn, free_aligned_sized);
}

/* Sizes that reach every allocator path: small, medium, large, huge. */
static const size_t sizes[] = {1,     8,      16,     24,      100,
                               1000,  4096,   32768,  65536,   100000,
                               1 << 20, 3 << 20, 8 << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Too big for any machine; volatile so the compiler cannot see it. */
static volatile size_t huge_size = SIZE_MAX - 4096;
static volatile size_t half_max = SIZE_MAX / 2; /* times 3 or 4 overflows */

static void check_block(void *p, size_t n, size_t align) {
  CHECK(p != NULL);
  if (!p) return;
  CHECK(ALIGNED(p, align));
  CHECK(owns(p));
  size_t u = malloc_usable_size(p);
  CHECK(u >= n);
  memset(p, 0x5a, u); /* the whole usable size is writable */
}

static void test_malloc_free(void) {
  void *a = malloc(0), *b = malloc(0);
  CHECK(a && b && a != b); /* malloc(0): unique pointers */
  check_block(a, 0, 16);
  free(a);
  free(b);
  for (size_t i = 0; i < NSIZES; i++) {
    void *p = malloc(sizes[i]);
    check_block(p, sizes[i], 16);
    errno = 4321; /* free preserves errno, on every path */
    free(p);
    CHECK(errno == 4321);
  }
  free(NULL);
  CHECK(malloc_usable_size(NULL) == 0);
  errno = 0;
  CHECK(malloc(huge_size) == NULL && errno == ENOMEM);
}

static int zeroed(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

static void test_calloc(void) {
  for (size_t i = 0; i < NSIZES; i++) {
    /* dirty a block of that size first, so reuse would show */
    void *d = malloc(sizes[i]);
    memset(d, 0xaa, sizes[i]);
    free(d);
    unsigned char *p = calloc(1, sizes[i]);
    CHECK(p != NULL && zeroed(p, sizes[i]));
    check_block(p, sizes[i], 16); /* dirties p: the next calloc may reuse it */
    free(p);
    p = calloc(sizes[i], 1);
    CHECK(p != NULL && zeroed(p, sizes[i]));
    free(p);
  }
  void *z1 = calloc(0, 10), *z2 = calloc(10, 0);
  CHECK(z1 && z2 && z1 != z2);
  free(z1);
  free(z2);
  errno = 0; /* overflow of n * size */
  CHECK(calloc(half_max, 4) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(calloc(1, huge_size) == NULL && errno == ENOMEM);
}

static void test_realloc(void) {
  const size_t steps[] = {10, 100, 1000, 100000, 3 << 20, 10 << 20, 5000, 10};
  char *p = realloc(NULL, 10); /* realloc(NULL, n) is malloc(n) */
  CHECK(p != NULL && owns(p));
  fill(p, 10, 7);
  size_t have = 10;
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    char *q = realloc(p, steps[i]);
    CHECK(q != NULL);
    if (!q) break;
    size_t keep = have < steps[i] ? have : steps[i];
    CHECK(filled(q, keep, 7)); /* contents kept on growth and shrink */
    CHECK(malloc_usable_size(q) >= steps[i]);
    fill(q, steps[i], 7);
    p = q;
    have = steps[i];
  }
  errno = 0; /* failure: NULL, ENOMEM, the block untouched */
  CHECK(realloc(p, huge_size) == NULL && errno == ENOMEM);
  CHECK(owns(p) && filled(p, have, 7));
  /* realloc(p, 0) frees p and returns NULL (glibc) */
  CHECK(realloc(p, 0) == NULL);
  CHECK(!owns(p));
  /* reallocarray: like realloc, but overflow is ENOMEM, p untouched */
  p = reallocarray(NULL, 4, 4);
  CHECK(p != NULL);
  fill(p, 16, 3);
  errno = 0;
  CHECK(reallocarray(p, half_max, 3) == NULL && errno == ENOMEM);
  CHECK(owns(p) && filled(p, 16, 3));
  char *q = reallocarray(p, 100, 10);
  CHECK(q != NULL && filled(q, 16, 3) && malloc_usable_size(q) >= 1000);
  free(q);
}

static void test_aligned(void) {
  const size_t n[] = {1, 100, 5000, 300000};
  for (size_t a = 8; a <= (2u << 20); a *= 2)
    for (size_t i = 0; i < 4; i++) {
      void *p = (void *)1;
      CHECK(posix_memalign(&p, a, n[i]) == 0);
      check_block(p, n[i], a);
      free(p);
      if (a < 16) continue;
      p = aligned_alloc(a, n[i]);
      check_block(p, n[i], a);
      free(p);
      p = memalign(a, n[i]);
      check_block(p, n[i], a);
      free(p);
    }
  /* posix_memalign: EINVAL for bad alignments; errno and *memptr untouched */
  const size_t bad[] = {0, 1, 3, 4, 24, 48, (size_t)1 << 63 | 8};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *p = (void *)&bad;
    errno = 77;
    CHECK(posix_memalign(&p, bad[i], 16) == EINVAL);
    CHECK(p == (void *)&bad && errno == 77);
  }
  void *p = (void *)&bad;
  errno = 77;
  CHECK(posix_memalign(&p, 64, huge_size) == ENOMEM);
  CHECK(p == (void *)&bad && errno == 77);
  /* aligned_alloc: NULL + EINVAL when not a power of two (glibc 2.38) */
  errno = 0;
  CHECK(aligned_alloc(3, 10) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(aligned_alloc(0, 10) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(aligned_alloc(64, huge_size) == NULL && errno == ENOMEM);
  /* memalign rounds a bad alignment up to the next power of two */
  p = memalign(24, 100);
  check_block(p, 100, 32);
  free(p);
  p = memalign(0, 100);
  check_block(p, 100, 16);
  free(p);
  errno = 0;
  CHECK(memalign(SIZE_MAX, 10) == NULL && errno == EINVAL);
  /* valloc and pvalloc: page aligned; pvalloc rounds to whole pages */
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  p = valloc(100);
  check_block(p, 100, page);
  free(p);
  p = pvalloc(100);
  check_block(p, page, page);
  free(p);
  p = pvalloc(0);
  check_block(p, page, page);
  free(p);
  errno = 0;
  CHECK(pvalloc(SIZE_MAX - 10) == NULL && errno == ENOMEM);
}

static void test_sized_free(void) {
  for (size_t i = 0; i < NSIZES; i++) {
    void *p = malloc(sizes[i]);
    CHECK(p != NULL);
    free_sized_fn(p, sizes[i]);
  }
  free_sized_fn(NULL, 10);
  void *p = aligned_alloc(256, 1000);
  check_block(p, 1000, 256);
  free_aligned_sized_fn(p, 256, 1000);
}

static void test_glibc_extras(void) {
  void *p = __libc_malloc(100);
  check_block(p, 100, 16);
  p = __libc_realloc(p, 5000);
  check_block(p, 5000, 16);
  __libc_free(p);
  p = __libc_calloc(10, 10);
  check_block(p, 100, 16);
  cfree_fn(p);
  p = __libc_memalign(4096, 10);
  check_block(p, 10, 4096);
  __libc_free(p);
  p = __libc_valloc(10);
  check_block(p, 10, 4096);
  __libc_free(p);
  p = __libc_pvalloc(10);
  check_block(p, 4096, 4096);
  __libc_free(p);
}

/* Frees a lot, then trims: 1 the first time, 0 with nothing left. */
static void test_trim(void) {
  enum { N = 1024 };
  static void *blocks[N];
  for (int i = 0; i < N; i++) blocks[i] = malloc(60000);
  for (int i = 0; i < N; i++) free(blocks[i]);
  void *h = malloc(16 << 20);
  free(h);
  CHECK(malloc_trim(0) == 1);
  CHECK(malloc_trim(0) == 0);
}

/* mallinfo2: bytes in use (small and huge blocks) and huge mappings. */
static void test_mallinfo(void) {
  struct mallinfo2 before = mallinfo2();
  enum { N = 4096 };
  static void *blocks[N];
  for (int i = 0; i < N; i++) blocks[i] = malloc(1000); /* ~4 MiB live */
  void *h = malloc(8 << 20);
  struct mallinfo2 m = mallinfo2();
  struct mallinfo old = mallinfo(); /* legacy int fields: the same values */
  CHECK(m.uordblks >= before.uordblks + N * 1000 + (8 << 20));
  CHECK(m.hblks >= before.hblks + 1 && m.hblkhd >= before.hblkhd + (8 << 20));
  CHECK(m.arena + m.hblkhd >= m.uordblks && m.arena > 0);
  CHECK((size_t)old.uordblks == m.uordblks && (size_t)old.arena == m.arena);
  CHECK((size_t)old.hblks == m.hblks && (size_t)old.hblkhd == m.hblkhd);
  for (int i = 0; i < N; i++) free(blocks[i]);
  free(h);
  struct mallinfo2 after = mallinfo2();
  CHECK(after.uordblks + N * 1000 + (8 << 20) <= m.uordblks);
  CHECK(after.hblks + 1 <= m.hblks && after.hblkhd + (8 << 20) <= m.hblkhd);
}

/* malloc_stats writes a summary to stderr: capture it through a pipe. */
static void test_malloc_stats(void) {
  int fds[2], saved = dup(2);
  CHECK(pipe(fds) == 0);
  dup2(fds[1], 2);
  malloc_stats();
  dup2(saved, 2);
  close(fds[1]);
  char buf[4096] = {0};
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  close(saved);
  CHECK(n > 0 && strstr(buf, "tinymalloc") != NULL);
}

int main(void) {
  if (!resolve()) {
    fprintf(stderr, "api: tinymalloc is not loaded (LD_PRELOAD?)\n");
    return 1;
  }
  test_malloc_free();
  test_calloc();
  test_realloc();
  test_aligned();
  test_sized_free();
  test_glibc_extras();
  test_trim();
  test_mallinfo();
  test_malloc_stats();
  return check_failures();
}

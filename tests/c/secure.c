/* secure.c - misuse that only secure mode catches, and correct programs
 * that secure mode must not flag.
 *
 * Usage: secure CASE. A misuse case prints the bad address on stdout,
 * makes the bad call, then prints "undetected" and exits 0 (what default
 * mode does: it does not look for these). capi/tests/secure.rs runs each
 * case with and without TINYMALLOC_SECURE=1 and checks the outcome: in
 * secure mode SIGABRT after one report line naming the fault and the
 * address, or SIGSEGV / SIGBUS on a guard page. An "ok-" case must print
 * nothing and exit 0 in both modes. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "check.h"
#include "tinymalloc.h"

/* These calls are wrong on purpose. */
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

/* Hides where a pointer comes from, so the compiler cannot reason about
 * (or reject) the bad access. */
static char *launder(void *p) {
  void *volatile v = p;
  return v;
}

/* Prints the address the report must name. */
static char *announce(void *p) {
  printf("%p\n", p);
  return p;
}

/* Writes `len` bytes past the `size` requested, then frees the block. */
static void overflow(size_t size, size_t len) {
  char *p = launder(malloc(size));
  memset(p, 'u', size);
  announce(p);
  memset(p + size, 'v', len); /* a NUL at p[size] would match the canary */
  free(p);
}

/* Writes into a freed block, then frees and allocates that size class
 * many times: the block leaves the quarantine, is checked, and reused. */
static void write_after_free(size_t size) {
  char *p = launder(malloc(size));
  free(announce(p));
  p[size / 2] = 1;
  for (int i = 0; i < 5000; i++) free(launder(malloc(size)));
}

/* Writes a forged pointer into a block just freed (tcache poisoning), then
 * allocates once of that size: the write is seen at once, not only when
 * the block leaves the quarantine. */
static void write_after_free_recent(void) {
  char *a = launder(malloc(128));
  char *b = launder(malloc(128));
  free(a);
  free(announce(b));
  memset(b, 0x41, 8);
  free(launder(malloc(128)));
}

/* Reads (or writes) a freed block. */
static void access_after_free(size_t size, int write) {
  char *p = launder(malloc(size));
  memset(p, 7, size);
  free(announce(p));
  if (write)
    p[size / 2] = 1;
  else
    printf("read %d\n", ((volatile char *)p)[size / 2]);
}

/* Frees a block, frees SLOTS-many others, then frees the block again. */
static void double_free_after_quarantine(void) {
  enum { N = 1000 };
  static void *others[N];
  for (int i = 0; i < N; i++) others[i] = malloc(48);
  void *p = malloc(48);
  free(p);
  for (int i = 0; i < N; i++) free(others[i]);
  free(announce(p));
}

/* Finds the last 16 KiB block of the last-but-one 64 KiB page of a 4 MiB
 * segment, and writes one byte past its end: into the segment's last page,
 * a guard page in secure mode. */
static void slab_guard(void) {
  enum { N = 4000, SIZE = 16000 };
  static char *blocks[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = launder(malloc(SIZE));
    if (((uintptr_t)blocks[i] & ((4u << 20) - 1)) == 62 * 65536 + 3 * 16384) {
      announce(blocks[i])[16384] = 1;
      return;
    }
  }
  fprintf(stderr, "secure: no block at the end of a segment's page 62\n");
  exit(4);
}

/* Prints how many of 200 consecutive 100-byte blocks follow the one
 * before them directly (slots taken in order). */
static void slot_order(void) {
  enum { N = 200 };
  static char *b[N];
  int next = 0;
  for (int i = 0; i < N; i++) {
    b[i] = malloc(100);
    if (i > 0 && b[i] == b[i - 1] + 112) next++;
  }
  for (int i = 0; i < N; i++) free(b[i]);
  printf("%d\n", next);
}

/* Prints how many of 100 blocks freed and at once replaced by a block of
 * the same size were handed out again as that replacement. */
static void reuse(void) {
  int same = 0;
  for (int i = 0; i < 100; i++) {
    void *p = malloc(48);
    free(p);
    void *q = malloc(48);
    if (q == p) same++;
    free(q);
  }
  printf("%d\n", same);
}

/* --- correct programs ------------------------------------------------ */

static void ok_blocks(void) {
  /* Every size and alignment is fully writable, zeroed when asked,
   * realloc keeps contents, usable size covers the request. */
  static const size_t sizes[] = {0,    1,     7,      8,      15,      16,
                                 17,   24,    63,     64,     65,      1000,
                                 4084, 4085,  32756,  32768,  40000,   100000,
                                 1 << 20, (2 << 20) + 1, 5 << 20};
  enum { NS = sizeof sizes / sizeof sizes[0] };
  for (size_t i = 0; i < NS; i++) {
    size_t n = sizes[i];
    unsigned char *p = malloc(n);
    CHECK(p && ALIGNED(p, 16) && malloc_usable_size(p) >= n);
    fill(p, n, (unsigned)i);
    CHECK(filled(p, n, (unsigned)i));
    unsigned char *z = calloc(1, n);
    CHECK(z != NULL);
    for (size_t j = 0; j < n; j++)
      if (z[j]) {
        CHECK(z[j] == 0);
        break;
      }
    fill(z, n, 3);
    free(z);
    for (size_t a = 32; a <= (1 << 21); a *= 4) {
      void *q = aligned_alloc(a, (n + a - 1) / a * a);
      CHECK(q && ALIGNED(q, a));
      fill(q, n, 5);
      CHECK(filled(q, n, 5));
      free(q);
    }
    p = realloc(p, n + 100);
    CHECK(p && filled(p, n, (unsigned)i));
    fill(p, n + 100, 9);
    p = realloc(p, n / 2 + 1);
    CHECK(p && filled(p, n / 2 + 1, 9));
    free(p);
  }
  /* Blocks freed in another order than allocated, reused many times. */
  static void *live[512];
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 512; i++) {
      size_t n = (size_t)(i * 37 + round) % 3000;
      live[i] = malloc(n);
      CHECK(live[i] != NULL);
      fill(live[i], n, (unsigned)i);
    }
    for (int i = 511; i >= 0; i -= 2) free(live[i]);
    for (int i = 0; i < 512; i += 2) {
      size_t n = (size_t)(i * 37 + round) % 3000;
      CHECK(filled(live[i], n, (unsigned)i));
      free(live[i]);
    }
  }
}

static void ok_zero(void) {
  /* malloc(0): unique, freeable, realloc-able, sized free with 0. */
  void *a = malloc(0), *b = malloc(0);
  CHECK(a && b && a != b && malloc_usable_size(a) == malloc_usable_size(b));
  free(a);
  b = realloc(b, 10);
  CHECK(b != NULL);
  memset(b, 1, 10);
  free(b);
  void *c = malloc(0);
  free_sized(c, 0);
}

static void ok_sized(void) {
  for (size_t n = 1; n < 300000; n = n * 3 + 1) {
    void *p = malloc(n);
    memset(p, 2, n);
    free_sized(p, n);
    void *q = aligned_alloc(64, (n + 63) / 64 * 64);
    free_aligned_sized(q, 64, (n + 63) / 64 * 64);
  }
}

int main(int argc, char **argv) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core); /* dying on purpose: no core file */
  setvbuf(stdout, NULL, _IONBF, 0); /* so that printf does not allocate */
  const char *c = argc > 1 ? argv[1] : "";
  if (!strcmp(c, "overflow-1-small")) overflow(24, 1);
  else if (!strcmp(c, "overflow-8-small")) overflow(40, 8);
  else if (!strcmp(c, "overflow-1-medium")) overflow(1000, 1);
  else if (!strcmp(c, "overflow-8-medium")) overflow(3000, 8);
  else if (!strcmp(c, "overflow-1-large")) overflow(100001, 1);
  else if (!strcmp(c, "overflow-realloc")) {
    char *p = launder(malloc(24));
    announce(p)[24] = 'v';
    p = realloc(p, 100);
    printf("realloc returned %p\n", (void *)p);
  } else if (!strcmp(c, "overflow-aligned")) {
    char *p = launder(aligned_alloc(64, 64));
    memset(announce(p), 1, 72);
    free(p);
  } else if (!strcmp(c, "overflow-large-far")) {
    char *p = launder(malloc(100000));
    announce(p)[100000 + 100] = 1;
  } else if (!strcmp(c, "overflow-huge-far")) {
    char *p = launder(malloc(8 << 20));
    announce(p)[(8 << 20) + 100] = 1;
  } else if (!strcmp(c, "write-after-free-small")) write_after_free(32);
  else if (!strcmp(c, "write-after-free-medium")) write_after_free(2000);
  else if (!strcmp(c, "write-after-free-recent")) write_after_free_recent();
  else if (!strcmp(c, "read-after-free-large")) access_after_free(100000, 0);
  else if (!strcmp(c, "write-after-free-large")) access_after_free(100000, 1);
  else if (!strcmp(c, "read-after-free-huge")) access_after_free(8 << 20, 0);
  else if (!strcmp(c, "write-after-free-huge")) access_after_free(8 << 20, 1);
  else if (!strcmp(c, "zero-read")) {
    char *p = launder(malloc(0));
    printf("read %d\n", ((volatile char *)announce(p))[0]);
  } else if (!strcmp(c, "zero-write")) {
    char *p = launder(malloc(0));
    ((volatile char *)announce(p))[0] = 1;
  } else if (!strcmp(c, "zero-double-free")) {
    void *p = malloc(0);
    free(p);
    free(announce(p));
  } else if (!strcmp(c, "double-free-after-quarantine")) double_free_after_quarantine();
  else if (!strcmp(c, "slab-guard")) slab_guard();
  else if (!strcmp(c, "slot-order")) {
    slot_order();
    return 0;
  } else if (!strcmp(c, "reuse")) {
    reuse();
    return 0;
  } else if (!strcmp(c, "string-read")) {
    /* hardened_malloc's string_overflow: an unterminated string of the
     * whole usable size, its neighbour filled too; prints how far strlen
     * read past the end. */
    char *p = launder(malloc(16)), *q = launder(malloc(16));
    memset(q, 'b', malloc_usable_size(q));
    size_t size = malloc_usable_size(p);
    memset(p, 'a', size);
    printf("%zu\n", strlen(p) - size);
    return 0;
  } else if (!strcmp(c, "usable-size")) {
    void *p = malloc(24);
    printf("%zu\n", malloc_usable_size(p));
    free(p);
    return 0;
  } else if (!strcmp(c, "ok-blocks")) {
    ok_blocks();
    return check_failures();
  } else if (!strcmp(c, "ok-zero")) {
    ok_zero();
    return check_failures();
  } else if (!strcmp(c, "ok-sized")) {
    ok_sized();
    return check_failures();
  } else {
    fprintf(stderr, "secure: unknown case '%s'\n", c);
    return 2;
  }
  printf("undetected\n");
  return 0;
}

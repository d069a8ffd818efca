/* oom.c - out of memory through the C API (run by tests/fault.rs, linked
 * with libtinymalloc.so).
 *
 * Usage: oom HEADROOM_MIB
 * Limits the address space (RLIMIT_AS) to what the process uses now plus
 * HEADROOM_MIB, then for each size range (small, medium, large, huge)
 * allocates until malloc returns NULL, and checks that
 *   - NULL comes with errno == ENOMEM (malloc, calloc, realloc,
 *     posix_memalign's return value, aligned_alloc, memalign), and for
 *     large and huge sizes every one of them fails;
 *   - a failed realloc leaves its block intact;
 *   - every block allocated before the failure still holds its pattern;
 *   - after freeing half of the blocks, allocating works again;
 *   - after freeing everything, a block of every size can be had again.
 * Prints one line "oom: <range> <n> blocks, <nulls> NULLs" per range and
 * "oom: ok <faults>" at the end; exits non-zero on any failed check. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check.h"

enum { MAXB = 1 << 20 };
static void *blocks[MAXB];

static size_t vm_size(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f) {
    if (fscanf(f, "%lu", &pages) != 1) pages = 0;
    fclose(f);
  }
  return pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Checks only a few words of big blocks: the address-space limit is what
 * runs out, not memory, and touching pages is slow. */
static void mark(void *p, size_t n, unsigned seed) {
  size_t k = n < 4096 ? n : 64;
  fill(p, k, seed);
  if (n > k) fill((char *)p + n - 64, 64, seed + 1);
}

static int marked(const void *p, size_t n, unsigned seed) {
  size_t k = n < 4096 ? n : 64;
  return filled(p, k, seed) && (n <= k || filled((const char *)p + n - 64, 64, seed + 1));
}

static unsigned long faults;

/* `expr` must give NULL with ENOMEM, or (unless `must_fail`) a block. */
#define FAILS_CLEANLY(expr, must_fail)  \
  do {                                  \
    errno = 0;                          \
    void *q_ = (expr);                  \
    if (q_ != NULL) {                   \
      CHECK(!(must_fail));              \
      free(q_);                         \
    } else {                            \
      CHECK(errno == ENOMEM);           \
      faults++;                         \
    }                                   \
  } while (0)

int main(int argc, char **argv) {
  size_t headroom = (argc > 1 ? (size_t)atol(argv[1]) : 64) << 20;
  static const size_t sizes[] = {100, 20000, 1 << 20, 16 << 20};
  static const char *names[] = {"small", "medium", "large", "huge"};
  /* stdio buffers before the limit. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("oom: start\n");
  struct rlimit rl;
  getrlimit(RLIMIT_AS, &rl);
  rl.rlim_cur = vm_size() + headroom;
  if (setrlimit(RLIMIT_AS, &rl) != 0) {
    perror("setrlimit");
    return 2;
  }
  for (int r = 0; r < 4; r++) {
    size_t size = sizes[r];
    size_t n = 0;
    void *p;
    errno = 0;
    while (n < MAXB && (p = malloc(size)) != NULL) {
      mark(p, size, (unsigned)n);
      blocks[n++] = p;
    }
    CHECK(n < MAXB);
    CHECK(errno == ENOMEM);
    faults++;
    /* The other entry points fail the same way, and cleanly. (An aligned
     * small or medium request may still fit in a page of another class
     * that has room: then it succeeds, which is fine.) */
    errno = 0;
    CHECK(calloc(1, size) == NULL && errno == ENOMEM);
    faults++;
    FAILS_CLEANLY(aligned_alloc(4096, size), r >= 2);
    FAILS_CLEANLY(memalign(64, size), r >= 2);
    void *q = (void *)1;
    int rc = posix_memalign(&q, 256, size);
    if (rc == 0) {
      CHECK(r < 2);
      free(q);
    } else {
      CHECK(rc == ENOMEM);
      CHECK(q == (void *)1); /* untouched on failure */
      faults++;
    }
    if (n > 0) {
      /* Growing the last block fails without harming it (past any room
       * the huge mapping has, and past any cached mapping). */
      errno = 0;
      CHECK(realloc(blocks[n - 1], size + (256u << 20)) == NULL && errno == ENOMEM);
      faults++;
      CHECK(marked(blocks[n - 1], size, (unsigned)(n - 1)));
    }
    /* Nothing allocated before the failure was harmed. */
    for (size_t i = 0; i < n; i++) CHECK(marked(blocks[i], size, (unsigned)i));
    /* Free half: allocation works again. */
    size_t freed = 0;
    for (size_t i = 0; i < n; i += 2, freed++) {
      free(blocks[i]);
      blocks[i] = NULL;
    }
    size_t again = 0;
    for (size_t i = 0; i < n; i += 2) {
      blocks[i] = malloc(size);
      if (blocks[i] == NULL) break;
      mark(blocks[i], size, (unsigned)i);
      again++;
    }
    if (n > 1) CHECK(again * 2 >= freed);
    for (size_t i = 0; i < n; i++)
      if (blocks[i]) {
        CHECK(marked(blocks[i], size, (unsigned)i));
        free(blocks[i]);
        blocks[i] = NULL;
      }
    printf("oom: %s %zu blocks of %zu bytes, then NULL; %zu again after freeing half\n",
           names[r], n, size, again);
    CHECK(n > 0);
  }
  /* Everything is free: every size can be had again. */
  for (int r = 0; r < 4; r++) {
    void *p = malloc(sizes[r]);
    CHECK(p != NULL);
    free(p);
  }
  printf("oom: ok %lu faults\n", faults);
  return check_failures();
}

/* check.h - tiny assertion helpers shared by the C test programs.
 *
 * CHECK(cond) reports the failed condition with its line on stderr and
 * counts it; a program returns check_failures() != 0 from main so that it
 * prints nothing and exits 0 when every check passed. */
#ifndef TM_CHECK_H
#define TM_CHECK_H

#include <stdint.h>
#include <stdio.h>

static int check_failed_count;

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
              #cond);                                                    \
      check_failed_count++;                                              \
    }                                                                    \
  } while (0)

/* True when p is aligned to a (a power of two). */
#define ALIGNED(p, a) ((((uintptr_t)(p)) & ((uintptr_t)(a) - 1)) == 0)

static inline int check_failures(void) { return check_failed_count != 0; }

/* Fills n bytes at p with a pattern derived from seed. */
static inline void fill(void *p, size_t n, unsigned seed) {
  unsigned char *b = (unsigned char *)p;
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 31u + seed);
}

/* True when the n bytes at p still hold fill(p, n, seed)'s pattern. */
static inline int filled(const void *p, size_t n, unsigned seed) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != (unsigned char)(i * 31u + seed)) return 0;
  return 1;
}

#endif

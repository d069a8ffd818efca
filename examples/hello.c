/* hello.c - using the tinymalloc C API.
 *
 * Build (from the repository root, after `cargo build --release`):
 *
 *     cc examples/hello.c -Iinclude -Ltarget/release -ltinymalloc -o hello
 *     LD_LIBRARY_PATH=target/release ./hello
 *
 * (or add -Wl,-rpath,$PWD/target/release instead of LD_LIBRARY_PATH).
 * Installed (`make install`), it is simply:
 *
 *     cc hello.c $(pkg-config --cflags --libs tinymalloc) -o hello
 *
 * Linking libtinymalloc also makes it the program's malloc/free, so the
 * strdup() below is served by tinymalloc as well. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinymalloc.h"

int main(void) {
  /* tinymalloc/tinyfree: as malloc/free. */
  char *greeting = tinymalloc(64);
  if (!greeting) return 1;
  snprintf(greeting, 64, "hello from tinymalloc %s", tinymalloc_version());

  /* tinycalloc: zeroed; tinyrealloc: grows, keeping the contents. */
  int *squares = tinycalloc(10, sizeof *squares);
  if (!squares) return 1;
  for (int i = 0; i < 10; i++) squares[i] = i * i;
  int *more = tinyrealloc(squares, 1000 * sizeof *more);
  if (!more) return 1;
  squares = more;

  /* Aligned memory, e.g. for SIMD or a cache line of its own. */
  double *vec = tinymalloc_aligned(64, 8 * sizeof(double));
  if (!vec) return 1;

  /* strdup uses malloc, which is tinymalloc too in this program. */
  char *copy = strdup(greeting);
  printf("%s\n", copy);
  printf("squares[9] = %d, usable bytes: %zu, owned: %d %d\n", squares[9],
         tinymalloc_usable_size(squares), tinymalloc_owns(squares),
         tinymalloc_owns(copy));

  free(copy);
  tinyfree(vec);
  tinyfree(squares);
  tinyfree(greeting);
  tinymalloc_trim(); /* give free memory back to the OS */
  return 0;
}

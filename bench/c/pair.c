/* One malloc/free pair per iteration, for instruction counts under callgrind. */
#include <stdlib.h>
#include <stdio.h>
int main(int argc, char **argv) {
  size_t size = argc > 1 ? strtoul(argv[1], 0, 0) : 16;
  long n = argc > 2 ? strtol(argv[2], 0, 0) : 1000000;
  void *volatile sink = 0;
  void *keep = malloc(size); /* keep the page non-empty */
  for (long i = 0; i < n; i++) { void *p = malloc(size); sink = p; free(p); }
  free(keep);
  (void)sink;
  return 0;
}

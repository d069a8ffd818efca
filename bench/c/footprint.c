/* How much memory an allocator's new blocks spread over, under the suite's
 * larson pattern at one thread (bench/src/workloads/larson.rs: SLOTS live
 * blocks of MIN..MAX bytes, uniform; each step frees a random one and
 * allocates a replacement, which the program then writes whole).
 *
 * Prints the distinct 64-byte lines that the blocks handed out during the
 * last WINDOW steps cover, and the lines the live blocks cover at the end.
 * The first is what the program's writes into new blocks keep in cache:
 * an allocator that hands back the block just freed keeps it near the live
 * set; one that sweeps the free blocks of half-used pages spreads it.
 *
 *   footprint [STEPS [WINDOW [SLOTS [MIN [MAX]]]]]
 *   LD_PRELOAD=... footprint 600000 20000 1000 8 1000
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t state = 88172645463325252ull;
static uint64_t next(void) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

/* An open-addressing set of line numbers (static: no allocation). */
#define SET (1u << 22)
static uintptr_t set[SET];
static long count;

static void add_lines(uintptr_t p, size_t n) {
  for (uintptr_t l = p >> 6; l <= (p + n - 1) >> 6; l++) {
    size_t h = (size_t)((l * 0x9E3779B97F4A7C15ull) >> 42) & (SET - 1);
    while (set[h] && set[h] != l) h = (h + 1) & (SET - 1);
    if (!set[h]) {
      set[h] = l;
      count++;
    }
  }
}

int main(int argc, char **argv) {
  long steps = argc > 1 ? atol(argv[1]) : 600000;
  long window = argc > 2 ? atol(argv[2]) : 20000;
  long slots = argc > 3 ? atol(argv[3]) : 1000;
  long min = argc > 4 ? atol(argv[4]) : 8, max = argc > 5 ? atol(argv[5]) : 1000;
  if (steps < window || slots < 1 || min < 1 || max < min) {
    fprintf(stderr, "footprint: bad arguments\n");
    return 2;
  }
  char **p = calloc(slots, sizeof *p);
  size_t *size = calloc(slots, sizeof *size);
  if (!p || !size) return 1;
  for (long i = 0; i < slots; i++) {
    size[i] = min + next() % (max - min + 1);
    if (!(p[i] = malloc(size[i]))) return 1;
    memset(p[i], 1, size[i]);
  }
  for (long k = 0; k < steps; k++) {
    long i = next() % slots;
    free(p[i]);
    size[i] = min + next() % (max - min + 1);
    if (!(p[i] = malloc(size[i]))) return 1;
    memset(p[i], 1, size[i]);
    if (k >= steps - window) add_lines((uintptr_t)p[i], size[i]);
  }
  long window_lines = count, live = 0;
  memset(set, 0, sizeof set);
  count = 0;
  for (long i = 0; i < slots; i++) {
    add_lines((uintptr_t)p[i], size[i]);
    live += size[i];
  }
  printf("new blocks of the last %ld steps: %ld lines (%ld KiB); live blocks: %ld lines "
         "(%ld KiB), %ld bytes requested\n",
         window, window_lines, window_lines * 64 / 1024, count, count * 64 / 1024, live);
  return 0;
}

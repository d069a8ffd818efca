/* The cost of a cross-thread free, alone: thread A allocates N blocks and
 * waits (alive, idle); thread B frees them all, timing only its loop.
 * Repeated R times; prints the median and the lowest ns per free (the
 * lowest is B running where A's lines are still close; the median, where
 * they must come from A's core).
 *
 *   remote_free [SIZE [REPS]]      (defaults 32, 21) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define N 200000
#define MAXREPS 101
static void *blocks[N];
static size_t size;
static int reps;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ready = -1, done = -1; /* the last round A filled, B emptied */

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static void publish(int *what, int r) {
  pthread_mutex_lock(&mu);
  *what = r;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static void await(int *what, int r) {
  pthread_mutex_lock(&mu);
  while (*what < r) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
}

static void *owner(void *arg) {
  (void)arg;
  for (int r = 0; r < reps; r++) {
    for (int i = 0; i < N; i++) {
      blocks[i] = malloc(size);
      if (!blocks[i]) abort();
      *(volatile char *)blocks[i] = 1;
    }
    publish(&ready, r);
    await(&done, r);
  }
  return 0;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  size = argc > 1 ? strtoul(argv[1], 0, 0) : 32;
  reps = argc > 2 ? atoi(argv[2]) : 21;
  if (reps < 1 || reps > MAXREPS) reps = 21;
  double ns[MAXREPS];
  pthread_t a;
  pthread_create(&a, 0, owner, 0);
  for (int r = 0; r < reps; r++) {
    await(&ready, r);
    double t0 = now_ns();
    for (int i = 0; i < N; i++) free(blocks[i]);
    ns[r] = (now_ns() - t0) / N;
    publish(&done, r);
  }
  pthread_join(a, 0);
  qsort(ns, reps, sizeof ns[0], cmp);
  printf("%.2f %.2f\n", ns[reps / 2], ns[0]);
  return 0;
}

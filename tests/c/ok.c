/* ok.c - correct programs that tinymalloc must run without complaint.
 *
 * Usage: ok CASE, with CASE one of:
 *   threads-exit   threads allocate and exit; other threads free later
 *   fork           fork from a parent whose threads are allocating; each
 *                  child allocates and exits 0
 *   exit-busy      the program exits while its threads allocate
 *   calloc-overflow calloc(n, size) overflowing: NULL with ENOMEM
 * Prints nothing and exits 0 on success. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* A few sizes from every path: small, medium, large, huge. */
static size_t size_of(unsigned i) {
  static const size_t s[] = {16, 40, 200, 1000, 5000, 40000, 150000, 3 << 20};
  return s[i % 8];
}

/* --- threads-exit: blocks outlive the threads that allocated them. --- */
enum { PRODUCERS = 4, PER_THREAD = 500 };
static void *blocks[PRODUCERS][PER_THREAD];

static void *produce(void *arg) {
  void **mine = arg;
  for (unsigned i = 0; i < PER_THREAD; i++) {
    mine[i] = malloc(size_of(i));
    fill(mine[i], 16, i);
  }
  return NULL; /* the thread exits; its blocks stay live */
}

static void *consume(void *arg) {
  void **theirs = arg;
  for (unsigned i = 0; i < PER_THREAD; i++) {
    CHECK(filled(theirs[i], 16, i));
    free(theirs[i]);
  }
  return NULL;
}

static void threads_exit(void) {
  for (int round = 0; round < 10; round++) {
    pthread_t t[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++)
      pthread_create(&t[i], NULL, produce, blocks[i]);
    for (int i = 0; i < PRODUCERS; i++) pthread_join(t[i], NULL);
    /* consumers free the dead producers' blocks while new producers run */
    pthread_t c[PRODUCERS], p[PRODUCERS];
    static void *fresh[PRODUCERS][PER_THREAD];
    for (int i = 0; i < PRODUCERS; i++) {
      pthread_create(&c[i], NULL, consume, blocks[(i + 1) % PRODUCERS]);
      pthread_create(&p[i], NULL, produce, fresh[i]);
    }
    for (int i = 0; i < PRODUCERS; i++) pthread_join(p[i], NULL);
    for (int i = 0; i < PRODUCERS; i++) pthread_join(c[i], NULL);
    for (int i = 0; i < PRODUCERS; i++) consume(fresh[i]); /* main frees */
  }
}

/* --- busy threads for fork and exit-busy. --- */
static atomic_int stop;

static void *churn(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  void *keep[16] = {0};
  while (!atomic_load(&stop)) {
    unsigned k = (seed = seed * 1103515245u + 12345u) >> 16;
    free(keep[k % 16]);
    keep[k % 16] = malloc(size_of(k));
    if (keep[k % 16]) memset(keep[k % 16], 1, 16);
  }
  for (int i = 0; i < 16; i++) free(keep[i]);
  return NULL;
}

static void fork_busy(void) {
  pthread_t t[3];
  for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)i);
  for (int round = 0; round < 30; round++) {
    pid_t pid = fork();
    if (pid == 0) {
      alarm(20); /* a deadlocked child dies by SIGALRM instead of hanging */
      for (unsigned i = 0; i < 2000; i++) {
        void *p = malloc(size_of(i));
        CHECK(p != NULL);
        if (p) memset(p, 2, size_of(i) < 64 ? size_of(i) : 64);
        free(p);
      }
      _exit(check_failures());
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (WIFSIGNALED(status))
      fprintf(stderr, "ok: fork child killed by signal %d\n", WTERMSIG(status));
    else if (WEXITSTATUS(status))
      fprintf(stderr, "ok: fork child exited with %d\n", WEXITSTATUS(status));
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
}

/* --- exit-busy: exit() runs while other threads are inside malloc. --- */
static void exit_busy(void) {
  pthread_t t;
  for (int i = 0; i < 4; i++) pthread_create(&t, NULL, churn, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < 20000; i++) free(malloc(size_of(i))); /* overlap */
  exit(check_failures()); /* threads still running */
}

int main(int argc, char **argv) {
  const char *c = argc > 1 ? argv[1] : "";
  if (!strcmp(c, "threads-exit")) threads_exit();
  else if (!strcmp(c, "fork")) fork_busy();
  else if (!strcmp(c, "exit-busy")) exit_busy();
  else if (!strcmp(c, "calloc-overflow")) {
    volatile size_t n = SIZE_MAX / 8 + 1;
    errno = 0;
    CHECK(calloc(n, 16) == NULL && errno == ENOMEM);
  } else {
    fprintf(stderr, "ok: unknown case '%s'\n", c);
    return 2;
  }
  return check_failures();
}

/* misuse.c - one bad call per case; tinymalloc must abort on it.
 *
 * Usage: misuse CASE. The program prints the bad address on stdout, then
 * makes the bad call. capi/tests/misuse.rs checks that it dies by SIGABRT
 * after one stderr line naming tinymalloc, the fault and that address. If
 * the bad call returns, the program says so and exits 3. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

/* These calls are wrong on purpose. */
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Wuse-after-free"

static char global_buf[256];

/* Hides where a pointer comes from, so the compiler cannot reason about
 * (or reject) the bad call. */
static void *launder(void *p) {
  void *volatile v = p;
  return v;
}

/* Prints the address the report must name. */
static void *announce(void *p) {
  printf("%p\n", p);
  return p;
}

/* Double free from another thread: `other` frees after `sem_go`. */
static sem_t sem_go, sem_done;
static void *shared;
static void *free_in_thread(void *arg) {
  (void)arg;
  sem_wait(&sem_go);
  free(shared);
  sem_post(&sem_done);
  return NULL;
}

/* Frees p, then frees it again after other blocks were freed. */
static void double_free_delayed(size_t size) {
  void *others[64];
  for (int i = 0; i < 64; i++) others[i] = malloc(size);
  void *p = malloc(size);
  free(p);
  for (int i = 0; i < 64; i++) free(others[i]);
  free(announce(p));
}

static void double_free(size_t size) {
  void *p = malloc(size);
  free(p);
  free(announce(p));
}

int main(int argc, char **argv) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core); /* aborting on purpose: no core file */
  setvbuf(stdout, NULL, _IONBF, 0); /* so that printf does not allocate */
  const char *c = argc > 1 ? argv[1] : "";
  /* The thread cases start the thread first: pthread_create allocates. */
  pthread_t t;
  if (!strncmp(c, "thread-", 7)) {
    sem_init(&sem_go, 0, 0);
    sem_init(&sem_done, 0, 0);
    pthread_create(&t, NULL, free_in_thread, NULL);
  }
  char stack_buf[64];
  if (!strcmp(c, "double-free-small")) double_free(32);
  else if (!strcmp(c, "double-free-medium")) double_free(1000);
  else if (!strcmp(c, "double-free-large")) double_free(100 << 10);
  else if (!strcmp(c, "double-free-huge")) double_free(8 << 20);
  else if (!strcmp(c, "double-free-delayed")) double_free_delayed(48);
  else if (!strcmp(c, "double-free-delayed-large")) double_free_delayed(200 << 10);
  else if (!strcmp(c, "thread-double-free")) {
    /* main frees, then another thread frees the same block again */
    shared = malloc(64);
    free(shared);
    announce(shared);
    sem_post(&sem_go);
    pthread_join(t, NULL);
  } else if (!strcmp(c, "thread-free-then-local-free")) {
    /* another thread frees main's block, then main frees it again */
    shared = malloc(64);
    sem_post(&sem_go);
    sem_wait(&sem_done);
    free(announce(shared));
  } else if (!strcmp(c, "free-stack")) free(announce(launder(stack_buf)));
  else if (!strcmp(c, "free-static")) free(announce(launder(global_buf)));
  else if (!strcmp(c, "free-mmap")) {
    void *m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    free(announce(m));
  } else if (!strcmp(c, "free-interior-small")) {
    char *p = malloc(1000);
    free(announce(p + 16));
  } else if (!strcmp(c, "free-interior-large")) {
    char *p = malloc(100 << 10);
    free(announce(p + 4096));
  } else if (!strcmp(c, "free-interior-huge")) {
    char *p = malloc(8 << 20);
    free(announce(p + 16));
  } else if (!strcmp(c, "realloc-freed")) {
    void *p = malloc(100);
    free(p);
    void *q = realloc(announce(p), 200);
    printf("realloc returned %p\n", q);
  } else if (!strcmp(c, "realloc-stack")) {
    void *q = realloc(announce(launder(stack_buf)), 200);
    printf("realloc returned %p\n", q);
  } else if (!strcmp(c, "usable-size-bogus")) {
    size_t n = malloc_usable_size(announce(launder(stack_buf + 8)));
    printf("usable size %zu\n", n);
  } else {
    fprintf(stderr, "misuse: unknown case '%s'\n", c);
    return 2;
  }
  fprintf(stderr, "misuse: %s was not detected\n", c);
  return 3;
}

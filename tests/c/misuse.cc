// misuse.cc - bad C++ deletes; tinymalloc must abort on each.
//
// Usage: misuse_cxx CASE. As misuse.c: prints the bad address, then makes
// the bad call; capi/tests/misuse.rs expects SIGABRT and one report line.
#include <sys/resource.h>

#include <cstdio>
#include <cstring>
#include <new>

// These calls are wrong on purpose.
#pragma GCC diagnostic ignored "-Wuse-after-free"

// Deleting a Derived through a Base without a virtual destructor: C++14
// sized deallocation passes sizeof(Base), far from the block's size.
struct Base {
  int x;
};
struct Derived : Base {
  char big[4000];
};

static void *announce(void *p) {
  std::printf("%p\n", p);
  return p;
}

int main(int argc, char **argv) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);  // aborting on purpose: no core file
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  const char *c = argc > 1 ? argv[1] : "";
  if (!std::strcmp(c, "delete-wrong-size")) {
    Base *b = new Derived;
    announce(b);
    delete b;  // calls operator delete(b, sizeof(Base))
  } else if (!std::strcmp(c, "delete-wrong-size-explicit")) {
    void *p = ::operator new(100000);
    ::operator delete(announce(p), 16);
  } else if (!std::strcmp(c, "delete-double")) {
    int *p = new int[300];
    delete[] p;
    announce(p);
    delete[] p;
  } else if (!std::strcmp(c, "delete-stack")) {
    int local[4];
    int *volatile p = local;  // hide the stack origin from the compiler
    ::operator delete(announce(p));
  } else {
    std::fprintf(stderr, "misuse_cxx: unknown case '%s'\n", c);
    return 2;
  }
  std::fprintf(stderr, "misuse_cxx: %s was not detected\n", c);
  return 3;
}

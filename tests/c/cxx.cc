// cxx.cc - C++ new/delete in every form must reach tinymalloc, and correct
// programs must not be flagged. Prints nothing and exits 0 on success.
//
// Built linked with -ltinymalloc and plain then LD_PRELOADed; looks up
// tinymalloc_owns at run time so that both builds can use it.
#include <dlfcn.h>
#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <new>
#include <string>
#include <vector>

static int failures;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,   \
                   __LINE__, #cond);                                 \
      failures++;                                                    \
    }                                                                \
  } while (0)

static int (*owns)(const void *);

struct alignas(256) Aligned {  // over-aligned: aligned new and delete
  char data[300];
};
struct Node {  // non-trivial destructor: new[] stores a count cookie
  std::string name = "node";
  ~Node() {}
};

static volatile std::size_t too_big = SIZE_MAX / 4;

int main() {
  owns = (int (*)(const void *))dlsym(RTLD_DEFAULT, "tinymalloc_owns");
  if (!owns) {
    std::fprintf(stderr, "cxx: tinymalloc is not loaded\n");
    return 1;
  }
  int *i = new int(42);  // plain new, sized delete
  CHECK(owns(i) && malloc_usable_size(i) >= sizeof(int));
  delete i;
  char *big = new char[100000];  // large array, unsized delete[]
  CHECK(owns(big) && malloc_usable_size(big) >= 100000);
  delete[] big;
  Aligned *a = new Aligned;  // aligned new, sized aligned delete
  CHECK(owns(a) && reinterpret_cast<std::uintptr_t>(a) % 256 == 0);
  delete a;
  Aligned *as = new Aligned[5];  // aligned new[], aligned delete[]
  CHECK(owns(as) && reinterpret_cast<std::uintptr_t>(as) % 256 == 0);
  delete[] as;
  Node *n = new Node[10];  // the block starts at the cookie, before n
  CHECK(!owns(n) && owns(reinterpret_cast<char *>(n) - sizeof(std::size_t)));
  delete[] n;
  int *nt = new (std::nothrow) int[10];  // nothrow new and delete
  CHECK(owns(nt));
  ::operator delete[](nt, std::nothrow);
  void *p = ::operator new(64, std::align_val_t(4096));
  CHECK(owns(p) && reinterpret_cast<std::uintptr_t>(p) % 4096 == 0);
  ::operator delete(p, 64, std::align_val_t(4096));
  // Every exported operator delete, called explicitly.
  const std::align_val_t al = std::align_val_t(64);
  ::operator delete(::operator new(10));
  ::operator delete[](::operator new[](10));
  ::operator delete(::operator new(10), 10);
  ::operator delete[](::operator new[](10), 10);
  ::operator delete(::operator new(10, al), al);
  ::operator delete[](::operator new[](10, al), al);
  ::operator delete(::operator new(10, al), 10, al);
  ::operator delete[](::operator new[](10, al), 10, al);
  ::operator delete(::operator new(10), std::nothrow);
  ::operator delete[](::operator new[](10), std::nothrow);
  ::operator delete(::operator new(10, al), al, std::nothrow);
  ::operator delete[](::operator new[](10, al), al, std::nothrow);
  bool thrown = false;  // libstdc++'s new throws when malloc fails
  try {
    char *x = new char[too_big];
    delete[] x;
  } catch (const std::bad_alloc &) {
    thrown = true;
  }
  CHECK(thrown);
  CHECK(new (std::nothrow) char[too_big] == nullptr);
  // Containers: many sized deletes with the right sizes.
  std::map<std::string, std::vector<int>> m;
  for (int k = 0; k < 20000; k++) {
    m[std::to_string(k % 1000)].push_back(k);
  }
  std::size_t total = 0;
  for (auto &kv : m) total += kv.second.size();
  CHECK(total == 20000);
  return failures != 0;
}

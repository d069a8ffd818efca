// Compiled by capi/tests/real_programs.rs with g++ preloaded (cc1plus, as,
// collect2 and ld allocate through libtinymalloc.so): its object file must
// be the same byte for byte as without the library, and so must the output
// of the program it becomes. Templates and virtual classes give cc1plus work.
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

template <int N> struct Shape {
  virtual ~Shape() = default;
  virtual long area(long x) const { return x * N + N; }
};
template <int N> struct Square : Shape<N> {
  long area(long x) const override { return x * x + N; }
};

template <int N> long work(std::map<std::string, std::vector<long>> &m) {
  std::vector<std::unique_ptr<Shape<N>>> shapes;
  for (int i = 0; i < 2000; i++) {
    if (i % 3) shapes.emplace_back(new Square<N>());
    else shapes.emplace_back(new Shape<N>());
  }
  long s = 0;
  for (size_t i = 0; i < shapes.size(); i++) s += shapes[i]->area(long(i));
  std::ostringstream key;
  key << "w" << N;
  m[key.str()].push_back(s);
  return s;
}

template <int... Ns> long all(std::map<std::string, std::vector<long>> &m) {
  return (work<Ns>(m) + ...);
}

int main() {
  std::map<std::string, std::vector<long>> m;
  long total = all<1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
                   20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32>(m);
  std::unordered_map<long, std::string> u;
  for (long i = 0; i < 100000; i++) u[i * 7919 % 100003] = std::to_string(i);
  std::vector<std::string> words;
  for (auto &kv : u) words.push_back(kv.second + "/" + std::to_string(kv.first));
  std::sort(words.begin(), words.end());
  std::cout << total << " " << m.size() << " " << words.front() << " " << words.back()
            << " " << std::accumulate(words.begin(), words.end(), 0L,
                                      [](long a, const std::string &w) { return a + long(w.size()); })
            << "\n";
}

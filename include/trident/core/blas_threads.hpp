#pragma once
// A host BLAS runs each call on a thread pool of its own. Where trident runs many small
// products at once from its own threads (attention's heads on a host space with several
// threads), each call must stay on the thread that made it, or the two pools fight over the
// cores. OneThreadedBlas keeps OpenBLAS to one thread for its scope; OpenBLAS is looked up at
// run time, so any BLAS links. A BLAS built with OpenMP keeps to one thread inside a parallel
// region by itself; others are left as they are.

#if __has_include(<dlfcn.h>)
#include <dlfcn.h>
#endif

namespace trident {

class OneThreadedBlas {
 public:
  OneThreadedBlas() {
    const Controls& blas = controls();
    if (blas.set == nullptr) return;
    m_saved = blas.get();
    if (m_saved != 1) blas.set(1);
  }
  ~OneThreadedBlas() {
    if (m_saved > 1) controls().set(m_saved);
  }
  OneThreadedBlas(const OneThreadedBlas&) = delete;
  OneThreadedBlas& operator=(const OneThreadedBlas&) = delete;

  // Whether the BLAS in this process has a thread count to set (OpenBLAS).
  static bool controls_threads() { return controls().set != nullptr; }

 private:
  struct Controls {
    int (*get)() = nullptr;
    void (*set)(int) = nullptr;
  };

  static const Controls& controls() {
    static const Controls found = [] {
      Controls c;
#if __has_include(<dlfcn.h>)  // POSIX
      c.get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
      c.set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
      if (c.get == nullptr || c.set == nullptr) c = Controls{};
#endif
      return c;
    }();
    return found;
  }

  int m_saved = 0;
};

}  // namespace trident

// Starts a thread (kept alive), then calls the bootstrap: it must fail and say why.
#include <future>
#include <iostream>
#include <thread>

#include "patchbay/bootstrap.hpp"
#include "patchbay/error.hpp"

int main() {
  std::promise<void> release;
  std::thread t([done = release.get_future()]() mutable { done.wait(); });
  int rc = 0;
  try {
    patchbay::enter_user_namespace();
    std::cout << "bootstrap unexpectedly succeeded\n";
  } catch (const patchbay::Error& e) {
    std::cout << e.what() << "\n";
    rc = 1;
  }
  release.set_value();
  t.join();
  return rc;
}

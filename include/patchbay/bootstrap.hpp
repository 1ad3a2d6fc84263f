// Process bootstrap: enter a private user and mount namespace before any thread starts.
//
// Every lab lives in network namespaces owned by a user namespace of this process, so tests
// run without root and can never change the host's network. Creating a user namespace is only
// possible while the process has a single thread, so call this first thing in main():
//
//   int main(int argc, char** argv) {
//     patchbay::enter_user_namespace();  // throws patchbay::Error(kBootstrap) on failure
//     ...start threads, create labs...
//   }
//
// The GoogleTest plugin's main (patchbay::gtest_main) does this for you.
#pragma once

#include <string>

namespace patchbay {

struct BootstrapReport {
  bool entered = false;    // the process now runs in its own user + mount namespace
  unsigned outer_uid = 0;  // uid outside the namespace (mapped to 0 inside)
  unsigned outer_gid = 0;
  std::string error;  // why entering failed, empty on success
};

// Enters a new user namespace (uid/gid 0 mapped to the caller's ids, setgroups denied) and a
// private mount namespace. Idempotent: later calls return the first result (or rethrow its
// error). Throws Error(kBootstrap) if the process already has more than one thread or the
// kernel refuses.
const BootstrapReport& enter_user_namespace();

// Like enter_user_namespace() but never throws; the report says what happened.
const BootstrapReport& try_enter_user_namespace() noexcept;

// Number of threads of this process, read from /proc/self/status.
int current_thread_count();

}  // namespace patchbay

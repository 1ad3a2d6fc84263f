// patchbay::Error — the one exception type the library throws.
//
// Every failure at the API boundary is an Error carrying what went wrong (`kind()`), the
// node, interface or field at fault (`culprit()`) and, for kernel failures, the errno.
// Inside a test body an uncaught Error fails the test with its message, so most tests
// never catch it; tests of error paths match on `kind()` and the message:
//
//   try {
//     lab.add_router("dc").build();
//     lab.add_router("dc").build();
//   } catch (const patchbay::Error& e) {
//     EXPECT_EQ(e.kind(), patchbay::ErrorKind::kAlreadyExists);
//     EXPECT_EQ(e.culprit(), "dc");  // e.what(): "router 'dc' already exists"
//   }
#pragma once

#include <stdexcept>
#include <string>

namespace patchbay {

enum class ErrorKind {
  kInvalidArgument,  // a name, address or option the caller passed is malformed
  kAlreadyExists,    // a node or interface name is taken
  kNotFound,         // an unknown node, interface or gateway
  kRemoved,          // the node (or its lab) no longer exists
  kKernel,           // a netlink, nftables, sysctl or namespace operation failed
  kBootstrap,        // the process could not enter its user namespace
  kProcess,          // a command could not be started or waited for
  kTimeout,          // an operation did not finish in time
};

// Returns the kind's name, e.g. "kernel".
const char* to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  // `message` is the complete human-readable text; when `sys_errno` is non-zero its
  // strerror text is appended (": Operation not permitted").
  Error(ErrorKind kind, std::string culprit, const std::string& message, int sys_errno = 0);

  ErrorKind kind() const { return kind_; }
  // The node, interface or field at fault; empty when nothing specific is.
  const std::string& culprit() const { return culprit_; }
  // errno of the failed system call or netlink request, 0 if none.
  int sys_errno() const { return sys_errno_; }

 private:
  ErrorKind kind_;
  std::string culprit_;
  int sys_errno_;
};

}  // namespace patchbay

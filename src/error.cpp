#include "patchbay/error.hpp"

#include <cstring>

namespace patchbay {
namespace {

std::string compose(const std::string& message, int sys_errno) {
  if (sys_errno == 0) return message;
  return message + ": " + std::strerror(sys_errno);
}

}  // namespace

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument:
      return "invalid argument";
    case ErrorKind::kAlreadyExists:
      return "already exists";
    case ErrorKind::kNotFound:
      return "not found";
    case ErrorKind::kRemoved:
      return "removed";
    case ErrorKind::kKernel:
      return "kernel";
    case ErrorKind::kBootstrap:
      return "bootstrap";
    case ErrorKind::kProcess:
      return "process";
    case ErrorKind::kTimeout:
      return "timeout";
  }
  return "unknown";
}

Error::Error(ErrorKind kind, std::string culprit, const std::string& message, int sys_errno)
    : std::runtime_error(compose(message, sys_errno)),
      kind_(kind),
      culprit_(std::move(culprit)),
      sys_errno_(sys_errno) {}

}  // namespace patchbay

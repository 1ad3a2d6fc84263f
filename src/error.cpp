#include "patchbay/error.hpp"

#include <cstring>
#include <string>

namespace patchbay {
namespace {

std::string compose(const std::string& message, int sys_errno) {
  if (sys_errno == 0) return message;
  const std::string suffix = std::string(": ") + std::strerror(sys_errno);
  // An error re-thrown with more context already carries the text; say it once.
  if (message.size() >= suffix.size() &&
      message.compare(message.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return message;
  }
  return message + suffix;
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

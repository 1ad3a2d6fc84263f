// A scratch network namespace for kernel tests: a worker thread that lives in a fresh network
// namespace, and a RouteSocket opened there.
//
//   ScratchNetns a{"a"};
//   ScratchNetns m{"m", ScratchNetns::Ipv6::kOff};  // no link-local, RS or MLD of its own
//   a.sock().add_veth(VethEnd{"to-m", -1, std::nullopt, true, 0, std::nullopt},
//                     VethEnd{"to-a", m.fd(), std::nullopt, true, 0, std::nullopt});
//   UniqueFd s = a.thread().invoke([] { return UniqueFd(::socket(AF_INET, SOCK_DGRAM, 0)); });
//
// The namespace lives as long as the object: its fd, the worker and every socket opened in it
// hold it. Sockets created with thread().invoke() belong to it and may be used from any thread.
#pragma once

#include <string>
#include <utility>

#include "netns.hpp"
#include "route_socket.hpp"
#include "sysctl.hpp"
#include "unique_fd.hpp"
#include "worker_thread.hpp"

namespace patchbay::internal {

class ScratchNetns {
 public:
  enum class Ipv6 {
    kOn,
    // Set before any interface exists (conf/default), so every interface created later starts
    // with IPv6 off: only the test's own traffic crosses links that are watched frame by frame.
    kOff,
  };

  explicit ScratchNetns(std::string name, Ipv6 ipv6 = Ipv6::kOn)
      : name_(std::move(name)),
        thread_("ns-" + name_,
                [this, ipv6] {
                  fd_ = create_netns_on_this_thread(name_);
                  if (ipv6 == Ipv6::kOff) {
                    write_sysctl("net/ipv6/conf/default/disable_ipv6", "1", name_);
                    write_sysctl("net/ipv6/conf/all/disable_ipv6", "1", name_);
                  }
                }),
        // If the start hook threw, this rethrows its error: the object is never half-made.
        sock_(thread_.invoke([this] { return RouteSocket::open_in_current_netns(name_); })) {}

  ScratchNetns(const ScratchNetns&) = delete;
  ScratchNetns& operator=(const ScratchNetns&) = delete;

  const std::string& name() const { return name_; }
  RouteSocket& sock() { return sock_; }
  WorkerThread& thread() { return thread_; }
  // The namespace's fd, e.g. for VethEnd::netns_fd.
  int fd() const { return fd_.get(); }

 private:
  std::string name_;
  UniqueFd fd_;  // written by the worker's start hook, before any call() returns
  WorkerThread thread_;
  RouteSocket sock_;
};

}  // namespace patchbay::internal

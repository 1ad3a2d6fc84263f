#include "node_runtime.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process.hpp>
#include <boost/process/extend.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <future>
#include <system_error>
#include <utility>

#include "netns.hpp"
#include "patchbay/error.hpp"
#include "process_state.hpp"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace patchbay::internal {
namespace {

namespace bp = boost::process;

// Boost.Process creates its exec-error pipe with pipe() and only then marks the write end
// close-on-exec. A fork on another thread in between would inherit that write end, and the
// spawning thread would then block until that unrelated child exits. All our launches take
// this lock so they never interleave.
std::mutex g_launch_mu;

// Log file names keep [A-Za-z0-9_.-]; everything else becomes '_'.
std::string sanitize_label(const std::string& text) {
  std::string out;
  for (char c : text) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    out.push_back(ok ? c : '_');
  }
  if (out.empty() || out == "." || out == "..") out = "cmd" + out;
  return out;
}

UniqueFd open_or_throw(const std::filesystem::path& path, int flags, const std::string& node) {
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC, 0644));
  if (!fd.valid()) {
    throw Error(ErrorKind::kProcess, node, "cannot open '" + path.string() + "'", errno);
  }
  return fd;
}

// In the forked child (async-signal-safe calls only): makes `fd` the descriptor `target`
// without close-on-exec.
bool install_fd(int fd, int target) {
  if (fd == target) return ::fcntl(fd, F_SETFD, 0) == 0;
  return ::dup2(fd, target) == target;
}

}  // namespace

NodeRuntime::NodeRuntime(NodeRuntimeConfig config) : config_(std::move(config)) {}

NodeRuntime::~NodeRuntime() { shutdown(); }

void NodeRuntime::enter_namespace() const { enter_netns(config_.netns_fd, config_.node_name); }

std::shared_ptr<WorkerThread> NodeRuntime::blocking_worker() {
  std::lock_guard lock(mu_);
  if (shut_down_) {
    throw Error(ErrorKind::kRemoved, config_.node_name,
                "node '" + config_.node_name + "' was removed");
  }
  if (!blocking_) {
    std::string thread_name = config_.kind.substr(0, 1) + config_.node_name + ":sw";
    blocking_ = std::make_shared<WorkerThread>(thread_name, [this] { enter_namespace(); });
  }
  // A copy: a concurrent shutdown() cannot destroy the worker under a caller's feet.
  return blocking_;
}

void NodeRuntime::run_blocking(const std::function<void()>& job) { blocking_worker()->call(job); }

boost::asio::io_context& NodeRuntime::io_context() {
  std::lock_guard lock(mu_);
  if (shut_down_) {
    throw Error(ErrorKind::kRemoved, config_.node_name,
                "node '" + config_.node_name + "' was removed");
  }
  if (io_) return *io_;
  auto io = std::make_unique<boost::asio::io_context>();
  auto guard = boost::asio::make_work_guard(*io);
  std::promise<void> entered;
  std::future<void> entered_result = entered.get_future();
  std::string thread_name = config_.kind.substr(0, 1) + config_.node_name + ":io";
  // The thread owns the promise: the caller may return (destroying its future) as soon as the
  // value is set.
  std::thread thread(
      [this, entered = std::move(entered), thread_name, io_ptr = io.get()]() mutable {
        set_current_thread_name(thread_name);
        try {
          enter_namespace();
        } catch (...) {
          entered.set_exception(std::current_exception());
          return;
        }
        entered.set_value();
        for (;;) {
          try {
            io_ptr->run();
            return;
          } catch (const std::exception& e) {
            // A handler let an exception escape (co_spawn with use_future never does). Report it
            // and keep serving the node's other work rather than terminating the test process.
            std::fprintf(stderr, "patchbay: exception escaped a handler on node '%s': %s\n",
                         config_.node_name.c_str(), e.what());
          } catch (...) {
            std::fprintf(stderr, "patchbay: exception escaped a handler on node '%s'\n",
                         config_.node_name.c_str());
          }
        }
      });
  try {
    entered_result.get();
  } catch (...) {
    thread.join();
    throw;
  }
  io_ = std::move(io);
  io_guard_.emplace(std::move(guard));
  io_thread_ = std::move(thread);
  return *io_;
}

void NodeRuntime::start_user_thread(std::function<void(std::stop_token)> body) {
  std::lock_guard lock(mu_);
  if (shut_down_) {
    throw Error(ErrorKind::kRemoved, config_.node_name,
                "node '" + config_.node_name + "' was removed");
  }
  std::promise<void> entered;
  std::future<void> entered_result = entered.get_future();
  join_finished_user_threads();
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::string thread_name =
      config_.kind.substr(0, 1) + config_.node_name + ":u" + std::to_string(user_threads_.size());
  // The thread captures copies, not `this`: user code runs on it without touching the runtime's
  // members, which shutdown() moves away before joining.
  std::jthread thread([entered = std::move(entered), thread_name, fd = config_.netns_fd,
                       node = config_.node_name, body = std::move(body),
                       done](std::stop_token stop) mutable {
    struct MarkDone {
      std::atomic<bool>& flag;
      ~MarkDone() { flag = true; }
    } mark{*done};
    set_current_thread_name(thread_name);
    try {
      enter_netns(fd, node);
    } catch (...) {
      entered.set_exception(std::current_exception());
      return;
    }
    entered.set_value();
    body(std::move(stop));
  });
  try {
    entered_result.get();
  } catch (...) {
    thread.join();
    throw;
  }
  user_threads_.push_back(UserThread{std::move(thread), std::move(done)});
}

void NodeRuntime::join_finished_user_threads() {
  // Finished threads keep their stacks until joined; a node that runs many short threads must
  // not accumulate them.
  std::erase_if(user_threads_, [](UserThread& t) { return t.done->load(); });
}

Process NodeRuntime::spawn(const Command& command) {
  const std::string& node = config_.node_name;
  if (command.argv().empty() || command.argv().front().empty()) {
    throw Error(ErrorKind::kInvalidArgument, node, "empty command for node '" + node + "'");
  }
  std::shared_ptr<ProcessState> state;
  // Forked from the blocking worker: the child inherits that thread's network namespace, and
  // the worker's pid_for_children namespace (set below) makes it a member of the lab's PID
  // namespace.
  blocking_worker()->call([&] {
    if (!pidns_entered_ && config_.pid_namespace_fd) {
      int pidns_fd = config_.pid_namespace_fd();
      if (::setns(pidns_fd, CLONE_NEWPID) != 0) {
        throw Error(ErrorKind::kKernel, node,
                    "cannot enter the lab's PID namespace for node '" + node + "'", errno);
      }
      pidns_entered_ = true;
    }

    const std::string& argv0 = command.argv().front();
    std::string exe = argv0;
    if (argv0.find('/') == std::string::npos) {
      exe = bp::search_path(argv0).string();
      if (exe.empty()) {
        throw Error(ErrorKind::kProcess, node,
                    "cannot start '" + argv0 + "' in '" + node + "': not found in PATH");
      }
    }
    std::vector<std::string> args(command.argv().begin() + 1, command.argv().end());

    std::filesystem::path outdir = config_.outdir.empty() ? "." : config_.outdir;
    std::error_code dir_error;
    std::filesystem::create_directories(outdir, dir_error);
    if (dir_error) {
      throw Error(
          ErrorKind::kProcess, node,
          "cannot create output directory '" + outdir.string() + "': " + dir_error.message());
    }
    std::string base =
        sanitize_label(command.label().empty() ? std::filesystem::path(argv0).filename().string()
                                               : command.label());
    std::string label = base;
    {
      std::lock_guard lock(mu_);
      for (int n = 2;
           std::find(used_labels_.begin(), used_labels_.end(), label) != used_labels_.end(); ++n) {
        label = base + "." + std::to_string(n);
      }
      used_labels_.push_back(label);
    }
    std::string stem = config_.kind + "." + node + "." + label;
    auto next = std::make_shared<ProcessState>();
    next->stdout_path = outdir / (stem + ".stdout.log");
    next->stderr_path = outdir / (stem + ".stderr.log");

    // Opened here with O_CLOEXEC (Boost.Process's `std_out > path` opens without O_TRUNC or
    // O_CLOEXEC, so stale output would survive and concurrent forks would inherit the fds).
    UniqueFd in_fd = open_or_throw("/dev/null", O_RDONLY, node);
    UniqueFd out_fd = open_or_throw(next->stdout_path, O_WRONLY | O_CREAT | O_TRUNC, node);
    UniqueFd err_fd = open_or_throw(next->stderr_path, O_WRONLY | O_CREAT | O_TRUNC, node);

    bp::environment env = boost::this_process::environment();
    for (const auto& [key, value] : command.env()) env[key] = value;

    std::error_code launch_error;
    pid_t failed_pid = -1;
    pid_t pid = -1;
    {
      std::lock_guard launch_lock(g_launch_mu);
      // Passing an error_code makes Boost.Process report failures through it and call
      // on_error with the executor — the only place the pid of a child whose exec failed is
      // visible. Boost never reaps that child itself.
      bp::child child(
          bp::exe = exe, bp::args = args, env,
          bp::extend::on_exec_setup =
              [&](auto& exec) {
                // Runs in the forked child: async-signal-safe calls only.
                if (!install_fd(in_fd.get(), STDIN_FILENO) ||
                    !install_fd(out_fd.get(), STDOUT_FILENO) ||
                    !install_fd(err_fd.get(), STDERR_FILENO)) {
                  exec.set_error(std::error_code(errno, std::system_category()), "dup2 failed");
                  ::_exit(127);
                }
                // Own process group: kill() reaches the helpers the command forks.
                ::setpgid(0, 0);
                // The blocking worker forked us; if it (or the test process) dies, so do we.
                ::prctl(PR_SET_PDEATHSIG, SIGKILL);
                // The command gets only stdio, not the test process's sockets and pipes
                // (the exec-error pipe is close-on-exec already, so marking it again is fine).
                ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
                // Do not pass on signal state of the test process (e.g. SIGPIPE ignored, or a
                // mask blocking signals on this thread).
                struct sigaction dfl {};
                dfl.sa_handler = SIG_DFL;
                for (int sig = 1; sig < NSIG; ++sig) {
                  if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
                }
                sigset_t none;
                ::sigemptyset(&none);
                ::sigprocmask(SIG_SETMASK, &none, nullptr);
              },
          bp::extend::on_error = [&](auto& exec, const std::error_code&) { failed_pid = exec.pid; },
          launch_error);
      if (!launch_error) {
        pid = child.id();
        // We reap the child ourselves (ProcessState); a detached bp::child never touches it.
        child.detach();
      }
    }
    if (launch_error) {
      if (failed_pid > 0) {
        // The child wrote the error and exited; reap it so no zombie is left behind.
        ::kill(failed_pid, SIGKILL);
        while (::waitpid(failed_pid, nullptr, 0) < 0 && errno == EINTR) {
        }
      }
      throw Error(ErrorKind::kProcess, node,
                  "cannot start '" + argv0 + "' in '" + node + "': " + launch_error.message());
    }

    next->pid = pid;
    next->pidfd = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!next->pidfd.valid()) {
      int err = errno;
      next->kill();
      throw Error(ErrorKind::kProcess, node,
                  "cannot watch '" + argv0 + "' in '" + node + "' (pidfd_open)", err);
    }
    if (config_.on_event) {
      std::string cmdline;
      for (const std::string& arg : command.argv()) cmdline += (cmdline.empty() ? "" : " ") + arg;
      config_.on_event("command_spawned", {{"node", node},
                                           {"pid", pid},
                                           {"cmd", cmdline},
                                           {"stdout", next->stdout_path.filename().string()},
                                           {"stderr", next->stderr_path.filename().string()}});
      next->on_exit = [on_event = config_.on_event, node](pid_t exited, int code) {
        on_event("command_exited", {{"node", node}, {"pid", exited}, {"exit_code", code}});
      };
    }
    state = std::move(next);
  });

  std::lock_guard lock(mu_);
  if (shut_down_) {
    // Shut down while we were launching: the child must not outlive the node.
    state->kill();
    throw Error(ErrorKind::kRemoved, node, "node '" + node + "' was removed");
  }
  // Drop children that have exited and been reaped, so a node starting many short commands
  // does not accumulate pidfds; callers' Process handles keep their own reference.
  std::erase_if(processes_, [](const std::shared_ptr<ProcessState>& p) { return !p->running(); });
  processes_.push_back(state);
  return Process(state);
}

bool NodeRuntime::owns_current_thread() const {
  std::lock_guard lock(mu_);
  auto self = std::this_thread::get_id();
  return (blocking_ && blocking_->on_worker_thread()) || io_thread_.get_id() == self ||
         std::any_of(user_threads_.begin(), user_threads_.end(),
                     [&](const UserThread& t) { return t.thread.get_id() == self; });
}

void NodeRuntime::begin_shutdown() {
  std::vector<std::shared_ptr<ProcessState>> processes;
  {
    if (owns_current_thread()) {
      // Joining a thread from itself would deadlock (or throw from a destructor): refuse early,
      // before anything is torn down.
      throw Error(ErrorKind::kInvalidArgument, config_.node_name,
                  "node '" + config_.node_name + "' cannot be shut down from its own thread");
    }
    std::lock_guard lock(mu_);
    if (shut_down_) return;
    shut_down_ = true;
    retired_.blocking = std::move(blocking_);
    io_guard_.reset();
    retired_.io = std::move(io_);
    retired_.io_thread = std::move(io_thread_);
    retired_.user_threads = std::move(user_threads_);
    processes = std::move(processes_);
  }
  // Children first: threads (of this node or others) may be blocked waiting for them.
  for (auto& p : processes) p->kill();
  if (retired_.io) retired_.io->stop();
  for (auto& t : retired_.user_threads) t.thread.request_stop();
}

void NodeRuntime::finish_shutdown() {
  Retired retired;
  {
    std::lock_guard lock(mu_);
    retired = std::move(retired_);
  }
  if (retired.io_thread.joinable()) retired.io_thread.join();
  retired.io.reset();  // destroys pending coroutines (their futures report broken_promise)
  retired.user_threads.clear();  // joins
  // Last: user threads may still have had run_blocking() calls in flight. stop() drains and
  // joins now, even if a caller still holds a reference to the worker.
  if (retired.blocking) retired.blocking->stop();
  retired.blocking.reset();
}

std::size_t NodeRuntime::thread_count() {
  std::lock_guard lock(mu_);
  join_finished_user_threads();
  return (blocking_ ? 1 : 0) + (io_thread_.joinable() ? 1 : 0) + user_threads_.size();
}

}  // namespace patchbay::internal

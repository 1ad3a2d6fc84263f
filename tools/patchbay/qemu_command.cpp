#include "qemu_command.hpp"

#include "guest_init.hpp"

namespace patchbay::cli {

std::string qemu_escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

std::vector<std::string> qemu_command(const QemuSetup& s) {
  std::vector<std::string> a = {s.qemu, "-name", "patchbay-vm", "-machine", "q35"};
  if (s.kvm) {
    a.insert(a.end(), {"-accel", "kvm", "-cpu", "host"});
  } else {
    // ERMS/FSRM make the kernel clear and copy pages with rep stosb/movsb, which TCG emulates
    // slowly (about 1 s per boot).
    a.insert(a.end(), {"-accel", "tcg", "-cpu", "max,-erms,-fsrm"});
  }
  a.insert(a.end(), {"-m", std::to_string(s.memory_mib), "-smp", std::to_string(s.cpus)});
  a.insert(a.end(), {"-kernel", s.kernel.string(), "-initrd", s.initramfs.string()});
  // panic=-1 with -no-reboot: a guest panic ends QEMU at once instead of hanging to the timeout.
  // init_on_alloc=0: Debian zeroes every allocation by default, costly under TCG.
  std::string cmdline = "console=ttyS0 quiet panic=-1 mitigations=off init_on_alloc=0 tsc=reliable";
  for (const std::string& w : s.append) cmdline += " " + w;
  a.insert(a.end(), {"-append", cmdline});
  a.insert(a.end(), {"-display", "none", "-nodefaults", "-no-user-config", "-no-reboot"});
  a.insert(a.end(), {"-chardev", "file,id=console,path=" + qemu_escape(s.console_log.string()),
                     "-serial", "chardev:console"});
  // multidevs=remap: / spans several host filesystems, whose inode numbers could collide.
  a.insert(a.end(),
           {"-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=" + std::string(kHostRootTag)});
  a.insert(
      a.end(),
      {"-fsdev", "local,id=pbrun,path=" + qemu_escape(s.run_dir.string()) + ",security_model=none",
       "-device", "virtio-9p-pci,fsdev=pbrun,mount_tag=" + std::string(kRunDirTag)});
  for (const GuestShare& share : s.shares) {
    a.insert(a.end(), {"-fsdev",
                       "local,id=" + share.tag + ",path=" + qemu_escape(share.path.string()) +
                           ",security_model=none,multidevs=remap",
                       "-device", "virtio-9p-pci,fsdev=" + share.tag + ",mount_tag=" + share.tag});
  }
  // Output ports: virtio-serial flow control holds the guest's writes until QEMU has handed the
  // bytes to us, so output streams live and none is lost at power-off. /dev/fd/N reopens the
  // pipe we passed, so QEMU's O_NONBLOCK does not leak onto our end.
  a.insert(a.end(), {"-device", "virtio-serial-pci,id=vser"});
  a.insert(
      a.end(),
      {"-chardev", "file,id=pbout,append=on,path=/dev/fd/" + std::to_string(s.stdout_fd), "-device",
       "virtserialport,bus=vser.0,nr=1,chardev=pbout,name=" + std::string(kStdoutPort)});
  a.insert(
      a.end(),
      {"-chardev", "file,id=pberr,append=on,path=/dev/fd/" + std::to_string(s.stderr_fd), "-device",
       "virtserialport,bus=vser.0,nr=2,chardev=pberr,name=" + std::string(kStderrPort)});
  return a;
}

}  // namespace patchbay::cli

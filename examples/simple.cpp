// The smallest complete program: enter the namespaces, build a home network, ping out.
#include <iostream>

#include <patchbay/patchbay.hpp>

int main() {
  try {
    patchbay::enter_user_namespace();  // first, while the process has one thread

    patchbay::LabOptions options;
    options.label = "simple";
    patchbay::Lab lab(options);
    auto dc = lab.add_router("dc").preset(patchbay::RouterPreset::Public).build();
    auto home = lab.add_router("home").preset(patchbay::RouterPreset::Home).build();
    auto server = lab.add_device("server").iface("eth0", dc).build();
    auto laptop = lab.add_device("laptop").iface("eth0", home).build();

    std::cout << "laptop " << laptop.ip()->to_string() << " behind "
              << home.uplink_ip()->to_string() << ", server " << server.ip()->to_string() << "\n";
    auto r = laptop.run_command({"ping", "-c", "3", "-i", "0.2", server.ip()->to_string()});
    std::cout << r.stdout_text;
    return r.exit_code;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

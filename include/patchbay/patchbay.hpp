// patchbay: realistic networks — routers, NATs, firewalls, devices — built from Linux network
// namespaces, per test case, running real code.
//
//   #include <patchbay/patchbay.hpp>
//
//   patchbay::enter_user_namespace();  // once, first thing in main (gtest_main does it)
//   patchbay::Lab lab;
//   auto dc = lab.add_router("dc").preset(patchbay::RouterPreset::Public).build();
//   auto home = lab.add_router("home").preset(patchbay::RouterPreset::Home).build();
//   auto server = lab.add_device("server").iface("eth0", dc).build();
//   auto laptop = lab.add_device("laptop").iface("eth0", home).build();
//   auto r = laptop.run_command({"ping", "-c1", server.ip()->to_string()});
#pragma once

#include "patchbay/addresses.hpp"
#include "patchbay/bootstrap.hpp"
#include "patchbay/error.hpp"
#include "patchbay/firewall.hpp"
#include "patchbay/lab.hpp"
#include "patchbay/link_condition.hpp"
#include "patchbay/nat.hpp"
#include "patchbay/nat_probe.hpp"
#include "patchbay/node.hpp"
#include "patchbay/presets.hpp"
#include "patchbay/process.hpp"
#include "patchbay/region.hpp"

// patchbay::gtest_main: enters the namespaces before GoogleTest (or anything else) starts a
// thread, then runs the tests with the artifact listener installed.
#include <gtest/gtest.h>

#include "patchbay/gtest.hpp"

int main(int argc, char** argv) {
  patchbay::testing::init(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  patchbay::testing::install_listener();
  return RUN_ALL_TESTS();
}

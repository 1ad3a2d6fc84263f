# patchbay_add_vm_test: registers a ctest test that runs a command inside a QEMU guest with a
# netem-capable kernel, through `patchbay vm run` (docs/vm.md).
#
#   patchbay_add_vm_test(NAME <test name>
#                        TARGET <executable target> | COMMAND <program> [<arg>...]
#                        [ARGS <arg>...]              # appended to the target/command
#                        [TIMEOUT <seconds>]          # guest timeout, default 300
#                        [ENVIRONMENT <KEY=VALUE>...] # set in the guest command's environment
#                        [SHARE <host dir>...]        # read-write in the guest, same path
#                        [MEMORY <MiB>] [CPUS <n>]
#                        [WORKING_DIRECTORY <dir>]
#                        [LABELS <label>...]          # added to the label `vm`
#                        [GTEST_NO_SKIP])             # a gtest binary: fail if a test skips
#                                                     # or none ran
#
# Every such test has the label `vm` (`ctest -L vm` runs them, `-LE vm` leaves them out) and
# RUN_SERIAL, because TCG guests are CPU-bound and their timing-sensitive tests must not share
# two cores with other tests. ctest's own TIMEOUT is the guest timeout plus a margin, so the
# runner's timeout fires first, kills QEMU and says so (exit code 124).
#
# PATCHBAY_VM_TESTS (default: ON if qemu-system-x86_64 is found) switches the registration
# on; with it OFF the function does nothing, so a developer without QEMU can still run ctest.
# CI installs QEMU (scripts/install-deps.sh), where the tests run and must pass.

find_program(PATCHBAY_QEMU_SYSTEM qemu-system-x86_64)
if(PATCHBAY_QEMU_SYSTEM AND PATCHBAY_BUILD_TOOLS)
  set(_patchbay_vm_default ON)
else()
  set(_patchbay_vm_default OFF)
endif()
option(PATCHBAY_VM_TESTS "Register the tests that run in a QEMU guest (label vm)"
       ${_patchbay_vm_default})
if(NOT PATCHBAY_VM_TESTS)
  message(STATUS "patchbay: VM tests (label vm) off: no qemu-system-x86_64 or "
                 "PATCHBAY_BUILD_TOOLS=OFF (install qemu-system-x86 and reconfigure)")
endif()

function(patchbay_add_vm_test)
  cmake_parse_arguments(PARSE_ARGV 0 vm "GTEST_NO_SKIP"
    "NAME;TARGET;TIMEOUT;MEMORY;CPUS;WORKING_DIRECTORY" "COMMAND;ARGS;ENVIRONMENT;SHARE;LABELS")
  if(NOT vm_NAME)
    message(FATAL_ERROR "patchbay_add_vm_test: NAME is required")
  endif()
  if((vm_TARGET AND vm_COMMAND) OR (NOT vm_TARGET AND NOT vm_COMMAND))
    message(FATAL_ERROR "patchbay_add_vm_test(${vm_NAME}): give exactly one of TARGET, COMMAND")
  endif()
  if(vm_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "patchbay_add_vm_test(${vm_NAME}): unknown arguments ${vm_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT PATCHBAY_VM_TESTS)
    return()
  endif()
  if(NOT TARGET patchbay_cli)
    message(FATAL_ERROR "patchbay_add_vm_test(${vm_NAME}) needs PATCHBAY_BUILD_TOOLS=ON")
  endif()
  if(NOT vm_TIMEOUT)
    set(vm_TIMEOUT 300)
  endif()

  set(runner $<TARGET_FILE:patchbay_cli> vm run --timeout ${vm_TIMEOUT})
  if(vm_MEMORY)
    list(APPEND runner --memory ${vm_MEMORY})
  endif()
  if(vm_CPUS)
    list(APPEND runner --cpus ${vm_CPUS})
  endif()
  foreach(env IN LISTS vm_ENVIRONMENT)
    list(APPEND runner --env ${env})
  endforeach()
  foreach(dir IN LISTS vm_SHARE)
    list(APPEND runner --share ${dir})
  endforeach()
  if(vm_TARGET)
    set(command $<TARGET_FILE:${vm_TARGET}>)
  else()
    set(command ${vm_COMMAND})
  endif()
  if(vm_WORKING_DIRECTORY)
    set(workdir WORKING_DIRECTORY ${vm_WORKING_DIRECTORY})
  else()
    set(workdir)
  endif()
  add_test(NAME ${vm_NAME} COMMAND ${runner} -- ${command} ${vm_ARGS} ${workdir})
  math(EXPR ctest_timeout "${vm_TIMEOUT} + 60")
  set_tests_properties(${vm_NAME} PROPERTIES
    LABELS "vm;${vm_LABELS}" TIMEOUT ${ctest_timeout} RUN_SERIAL TRUE)
  if(vm_GTEST_NO_SKIP)
    # The point of running in the VM is that nothing is skipped there; gtest 1.12 has no flag
    # for that, so its summary lines decide.
    set_tests_properties(${vm_NAME} PROPERTIES
      FAIL_REGULAR_EXPRESSION "\\[  SKIPPED \\]|\\[  PASSED  \\] 0 tests")
  endif()
endfunction()

// Link emulation benchmarks (link_bench.cpp), registered by patchbay_bench's main.
#pragma once

void register_link_benchmarks();

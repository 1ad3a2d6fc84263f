#!/usr/bin/env bash
# Prints the host's addresses, routes, links and nftables ruleset, for before/after comparison.
# Counters and timers are stripped so only configuration differences show.
set -u
ip -o link show | sed -E 's/ qlen [0-9]+//' | awk '{$1=""; print}' | sort
ip -o addr show | sed -E 's/(valid_lft|preferred_lft) [^ ]+//g' | awk '{$1=""; print}' | sort
ip route show table all | sort
ip -6 route show table all | sed -E 's/ expires [^ ]+//' | sort
nft list ruleset 2>/dev/null || true

#include "downlink_rules.hpp"

#include <netinet/in.h>  // before the linux/ headers, which would define in_addr again

#include <linux/netfilter.h>
#include <linux/netfilter_bridge.h>

namespace patchbay::internal {

NftTableSpec plan_downlink_divert(bool wanted) {
  NftTableSpec table{NFPROTO_BRIDGE, kDownlinkTable};
  if (!wanted) return table;
  table.wanted = true;
  NftChainSpec out{"out", "filter", NF_BR_LOCAL_OUT, kPrioFilter, {}};
  out.rules.push_back([](RuleBuilder& r) { r.drop(); });
  table.chains.push_back(std::move(out));
  return table;
}

}  // namespace patchbay::internal

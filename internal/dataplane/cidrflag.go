package dataplane

import (
	"fmt"
	"net/netip"
	"strings"
)

// cidrList is a flag holding address ranges, given comma-separated or by
// repeating the flag; a bare address is the range of that one address.
type cidrList struct{ p *[]netip.Prefix }

func (l cidrList) Type() string { return "cidrs" }

func (l cidrList) String() string {
	if l.p == nil {
		return ""
	}
	s := make([]string, len(*l.p))
	for i, p := range *l.p {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l cidrList) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := parseCIDR(part)
		if err != nil {
			return err
		}
		*l.p = append(*l.p, p)
	}
	return nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is neither an address range (CIDR, such as 10.0.0.0/8 or ::1/128) nor an address", s)
}

// proxyProtocolSourcesUsage is the help of --proxy-protocol-allowed-cidrs.
const proxyProtocolSourcesUsage = "peer address ranges (CIDRs, comma-separated or repeated) allowed to connect to the PROXY protocol listener; others are closed at accept (default: any peer; ztunnels with LOCALHOST_APP_TUNNEL connect from 127.0.0.1)"

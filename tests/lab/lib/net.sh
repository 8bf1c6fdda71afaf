# shellcheck shell=bash
# The lab network: one bridge per lab carrying a /24, one network namespace per host joined to
# it by a veth pair. No default route anywhere: the mirror on the bridge address is all a host
# can reach besides its peers.

# Picks the third octet of the lab's 10.213.X.0/24: derived from the name, moved on when another
# lab or any interface/route on this machine already uses it. Caller holds the allocation lock.
allocate_octet() { # LAB
	local start x i taken
	start=$((16#$(printf '%s' "$1" | sha256sum | cut -c1-4) % 250 + 2))
	taken=$(cat "$LAB_RUN"/*/lab.env 2>/dev/null | sed -n 's/^LAB_OCTET=//p' || true)
	for ((i = 0; i < 250; i++)); do
		x=$(((start - 2 + i) % 250 + 2))
		grep -qx "$x" <<<"$taken" && continue
		ip -4 route show | grep -q "^$LAB_SUBNET_PREFIX\.$x\." && continue
		ip -4 -o addr show | grep -q " $LAB_SUBNET_PREFIX\.$x\." && continue
		printf '%s\n' "$x"
		return 0
	done
	die "no free $LAB_SUBNET_PREFIX.X.0/24 left for a lab; take labs down with: $0 down --name NAME"
}

net_up() { # LAB (after load_state)
	local br
	br=$(lab_bridge "$1")
	if ! ip link show "$br" >/dev/null 2>&1; then
		# The bridge's own netfilter hooks stay off: a firewall on this machine (Docker's
		# FORWARD DROP, say) must not filter traffic between lab hosts.
		ip link add "$br" type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0
	fi
	ip addr replace "$LAB_GATEWAY/24" dev "$br"
	ip link set "$br" up
}

host_net_up() { # LAB HOST (after load_state)
	local ns veth br
	ns=$(host_netns "$1" "$2")
	veth=$(host_veth "$1" "$2")
	br=$(lab_bridge "$1")
	# A namespace file left from before a reboot of this machine no longer holds a namespace.
	if ! ip -n "$ns" link show lo >/dev/null 2>&1; then
		ip netns del "$ns" 2>/dev/null || rm -f "/run/netns/$ns"
		ip netns add "$ns"
	fi
	if ! ip link show "$veth" >/dev/null 2>&1; then
		ip -n "$ns" link del eth0 2>/dev/null || true
		ip link add "$veth" type veth peer name eth0 netns "$ns"
	fi
	ip link set "$veth" master "$br" up
	ip -n "$ns" addr replace "$(host_ip "$2")/24" dev eth0
	ip -n "$ns" link set lo up
	ip -n "$ns" link set eth0 up
}

# Partition = the host's cable is pulled at the switch: its link stays up, nothing gets through.
host_partition() { ip link set "$(host_veth "$1" "$2")" nomaster; }
host_heal() { ip link set "$(host_veth "$1" "$2")" master "$(lab_bridge "$1")" up; }
host_partitioned() { ! ip -o link show "$(host_veth "$1" "$2")" 2>/dev/null | grep -q " master "; }

# Removes every namespace, veth and bridge named after LAB, whether or not its state survives.
net_down() { # LAB
	local ns link short
	short=$(lab_short "$1")
	while read -r ns _; do
		if [[ $ns =~ ^il-$1-(master|worker)-[0-9]+$ ]]; then ip netns del "$ns" 2>/dev/null || true; fi
	done < <(ip netns list 2>/dev/null)
	while read -r link; do
		ip link del "$link" 2>/dev/null || true
	done < <(ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' |
		grep -E "^lv-$short-[mw][0-9]+$" || true)
	ip link del "$(lab_bridge "$1")" 2>/dev/null || true
}

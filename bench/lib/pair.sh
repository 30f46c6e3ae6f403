# Sourced by the bench scripts: a server and a client network namespace
# joined by a veth pair. pair S C IFS IFC N makes namespaces S and C, with
# IFS (10.210.N.1, fd00:210:N::1) in S and IFC (10.210.N.2,
# fd00:210:N::2) in C. The server's default route points at the client,
# as a host's uplink does, so reverse-path checks pass for any source and
# nothing answers a spoofed source anywhere but into the client namespace,
# which does not forward. pairlink S C IFS IFC N does the same between two
# namespaces that exist (one client namespace can serve several servers).
pair() {
	ip netns add "$1"
	ip netns add "$2"
	ip -n "$1" link set lo up
	ip -n "$2" link set lo up
	pairlink "$@"
}
pairlink() {
	local s=$1 c=$2 ifs=$3 ifc=$4 n=$5
	ip -n "$s" link add "$ifs" type veth peer name "$ifc" netns "$c"
	ip -n "$s" addr add "10.210.$n.1/24" dev "$ifs"
	ip -n "$c" addr add "10.210.$n.2/24" dev "$ifc"
	ip -n "$s" addr add "fd00:210:$n::1/64" dev "$ifs" nodad
	ip -n "$c" addr add "fd00:210:$n::2/64" dev "$ifc" nodad
	ip -n "$s" link set "$ifs" up
	ip -n "$c" link set "$ifc" up
	ip -n "$s" route add default via "10.210.$n.2"
	ip -n "$s" -6 route add default via "fd00:210:$n::2"
	for _ in $(seq 50); do ip -n "$c" link show "$ifc" | grep -q LOWER_UP && break; sleep 0.1; done
}

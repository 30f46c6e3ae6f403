// Command knockbench measures port-knock doors under a spoofed-source SYN
// flood (bench/knock/run.sh drives it). It has two parts:
//
//	knockbench flood -dst ADDR -port P -pps N -src PREFIX -exclude PREFIX
//	knockbench probe -mode moat-kernel|moat-daemon|moat-spa|knockd|fwknopd -client-ns NS ...
//
// flood runs in the client namespace and sends TCP SYNs with random source
// addresses from raw sockets until it is signalled. probe runs in the
// server namespace: it starts flood, lets it reach a steady state, runs
// knockd's `knock` client from the client namespace a number of times,
// and for each knock times the last knock packet's arrival (a packet
// socket) against the grant (an nftables set element, or knockd's command
// creating a file), then prints one Markdown table row.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "flood":
		err = floodMain(os.Args[2:])
	case "probe":
		err = probeMain(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "knockbench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: knockbench flood|probe [flags] (-h for the flags)")
	os.Exit(2)
}

// Command etcd is a thin wrapper around the upstream etcd server entry point,
// so tests/envtest/build can compile etcd from Go modules at a pinned version.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

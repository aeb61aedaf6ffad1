//! A test host: a network namespace of this test binary's own, reached over a veth pair.
//!
//! The Kubernetes API server refuses loopback addresses in EndpointSlices, so backends that a
//! cluster test points a Service at listen on a host of their own instead: a network
//! namespace with address `10.231.N.2`, its peer `10.231.N.1` on this side. Traffic never
//! leaves the machine. Like the API server, it is torn down when the test binary exits: a
//! shell holding it waits for its stdin to close, then deletes the namespace and the link.

use std::{
    io::{BufRead, BufReader},
    net::IpAddr,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
};

/// The network namespace backends run in, and its address.
pub struct TestHost {
    /// The `ip netns` name.
    pub namespace: String,
    pub address: IpAddr,
    _lifeline: Mutex<(Child, ChildStdin)>,
}

/// This test binary's test host, set up on first use (needs root and iproute2).
pub fn test_host() -> &'static TestHost {
    static HOST: OnceLock<TestHost> = OnceLock::new();
    HOST.get_or_init(TestHost::create)
}

impl TestHost {
    fn create() -> Self {
        let pid = std::process::id();
        let subnet = pid % 250 + 1;
        let (namespace, outside, inside) = (
            format!("weir-e2e-{pid}"),
            format!("wo{pid}"),
            format!("wi{pid}"),
        );
        let script = format!(
            "set -e
             ip netns del {namespace} 2>/dev/null || true
             ip link del {outside} 2>/dev/null || true
             trap 'ip netns del {namespace} 2>/dev/null; ip link del {outside} 2>/dev/null' EXIT
             ip netns add {namespace}
             ip link add {outside} type veth peer name {inside}
             ip link set {inside} netns {namespace}
             ip addr add 10.231.{subnet}.1/30 dev {outside}
             ip link set {outside} up
             ip netns exec {namespace} ip addr add 10.231.{subnet}.2/30 dev {inside}
             ip netns exec {namespace} ip link set {inside} up
             ip netns exec {namespace} ip link set lo up
             echo ready
             cat >/dev/null"
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running sh");
        let stdin = child.stdin.take().expect("stdin is piped");
        let mut first_line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut first_line)
            .expect("reading the test host setup");
        assert_eq!(
            first_line.trim(),
            "ready",
            "cannot create the test host network namespace (cluster tests need root and iproute2)"
        );
        Self {
            namespace,
            address: format!("10.231.{subnet}.2")
                .parse()
                .expect("a valid address"),
            _lifeline: Mutex::new((child, stdin)),
        }
    }
}
